//! Choosing a literal anchor for each body signature.
//!
//! The anchor is what the Aho-Corasick automaton looks for: a run of fully
//! fixed bytes (preferring rare bytes, at most [`MAX_RUN`] long) or, when a
//! signature has no fixed run of two bytes, one anchor per alternative of a
//! short `( | )` group, widened with the fixed bytes around it. What lies
//! before the anchor is kept reversed (it is verified backwards from the
//! anchor), what lies after it is kept in order.

use super::parse::{ByteM, Elem};

/// Longest anchor taken from a fixed run.
pub const MAX_RUN: usize = 8;
/// Longest anchor made from an expanded alternative.
pub const MAX_ALT_ANCHOR: usize = 16;
/// Most alternatives a group may have to be expanded into anchors.
const MAX_EXPANDED_ALTS: usize = 16;

/// One anchor of a signature and the rest of the signature around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub bytes: Vec<u8>,
    /// The elements before the anchor, last first, each reversed.
    pub prefix_rev: Box<[Elem]>,
    /// The elements after the anchor.
    pub suffix: Box<[Elem]>,
}

fn rarity(b: u8) -> u32 {
    match b {
        0x00 | 0xff | 0x20 | 0x0a | 0x0d | 0x90 | 0xcc | 0x30 | 0x01 => 1,
        _ => 3,
    }
}

fn score(bytes: &[u8]) -> u32 {
    bytes.iter().map(|&b| rarity(b)).sum()
}

/// Reverse a run of elements (for backward verification).
pub fn reverse(elems: &[Elem]) -> Vec<Elem> {
    elems
        .iter()
        .rev()
        .map(|e| match e {
            Elem::Seq(v) => Elem::Seq(v.iter().rev().copied().collect()),
            Elem::Alt(a) => Elem::Alt(
                a.iter()
                    .map(|v| v.iter().rev().copied().collect())
                    .collect(),
            ),
            Elem::NotAlt(a) => Elem::NotAlt(
                a.iter()
                    .map(|v| v.iter().rev().copied().collect())
                    .collect(),
            ),
            Elem::Gap { min, max } => Elem::Gap {
                min: *min,
                max: *max,
            },
        })
        .collect()
}

/// Elements before position (`ei`, byte `off` of a `Seq`).
fn prefix(elems: &[Elem], ei: usize, off: usize) -> Vec<Elem> {
    let mut out: Vec<Elem> = elems[..ei.min(elems.len())].to_vec();
    match elems.get(ei) {
        Some(Elem::Seq(v)) if off > 0 => out.push(Elem::Seq(v[..off.min(v.len())].to_vec())),
        _ => {}
    }
    out
}

/// Elements from position (`ei`, byte `off` of a `Seq`) on.
fn suffix(elems: &[Elem], ei: usize, off: usize) -> Vec<Elem> {
    let mut out = Vec::new();
    match elems.get(ei) {
        None => return out,
        Some(Elem::Seq(v)) => {
            if off < v.len() {
                out.push(Elem::Seq(v[off..].to_vec()));
            }
        }
        Some(other) => out.push(other.clone()),
    }
    out.extend_from_slice(&elems[ei + 1..]);
    out
}

fn piece(elems: &[Elem], bytes: Vec<u8>, left: (usize, usize), right: (usize, usize)) -> Piece {
    Piece {
        bytes,
        prefix_rev: reverse(&prefix(elems, left.0, left.1)).into_boxed_slice(),
        suffix: suffix(elems, right.0, right.1).into_boxed_slice(),
    }
}

/// The best fixed window: (score, element, start, len).
fn best_fixed(elems: &[Elem]) -> Option<(u32, usize, usize, usize)> {
    let mut best: Option<(u32, usize, usize, usize)> = None;
    for (ei, e) in elems.iter().enumerate() {
        let Elem::Seq(v) = e else { continue };
        let mut i = 0;
        while i < v.len() {
            if !v[i].is_exact() {
                i += 1;
                continue;
            }
            let start = i;
            while i < v.len() && v[i].is_exact() {
                i += 1;
            }
            let run: Vec<u8> = v[start..i].iter().map(|b| b.val).collect();
            if run.len() < 2 {
                continue;
            }
            let w = run.len().min(MAX_RUN);
            for s in 0..=run.len() - w {
                let sc = score(&run[s..s + w]);
                if best.is_none_or(|b| sc > b.0) {
                    best = Some((sc, ei, start + s, w));
                }
            }
        }
    }
    best
}

fn exact_bytes(v: &[ByteM]) -> Option<Vec<u8>> {
    v.iter().map(|b| b.is_exact().then_some(b.val)).collect()
}

/// Anchors from one alternative group, widened with neighbouring fixed bytes.
fn alt_pieces(elems: &[Elem], ei: usize) -> Option<(u32, Vec<Piece>)> {
    let Elem::Alt(alts) = &elems[ei] else {
        return None;
    };
    if alts.len() > MAX_EXPANDED_ALTS {
        return None;
    }
    let alts: Vec<Vec<u8>> = alts.iter().map(|a| exact_bytes(a)).collect::<Option<_>>()?;
    // Fixed bytes just before the group (end of the previous Seq).
    let (tail, left) = match ei.checked_sub(1).and_then(|p| elems.get(p)) {
        Some(Elem::Seq(v)) => {
            let n = v.iter().rev().take_while(|b| b.is_exact()).count().min(3);
            let t: Vec<u8> = v[v.len() - n..].iter().map(|b| b.val).collect();
            (t, (ei - 1, v.len() - n))
        }
        _ => (Vec::new(), (ei, 0)),
    };
    let (head, right) = match elems.get(ei + 1) {
        Some(Elem::Seq(v)) => {
            let n = v.iter().take_while(|b| b.is_exact()).count().min(3);
            (v[..n].iter().map(|b| b.val).collect(), (ei + 1, n))
        }
        _ => (Vec::new(), (ei + 1, 0)),
    };
    let mut pieces = Vec::with_capacity(alts.len());
    let mut worst = u32::MAX;
    for a in alts {
        let mut bytes = tail.clone();
        bytes.extend_from_slice(&a);
        bytes.extend_from_slice(&head);
        if bytes.len() < 2 || bytes.len() > MAX_ALT_ANCHOR {
            return None;
        }
        worst = worst.min(score(&bytes));
        pieces.push(piece(elems, bytes, left, right));
    }
    Some((worst, pieces))
}

/// Pick the anchors for a signature; `None` when it has no usable literal.
pub fn choose(elems: &[Elem]) -> Option<Vec<Piece>> {
    let fixed = best_fixed(elems);
    // A strong fixed run (two rare bytes or more) is always good enough.
    match fixed {
        Some((sc, ei, s, w)) if sc >= 6 => return Some(vec![fixed_piece(elems, ei, s, w)]),
        _ => {}
    }
    let alt = (0..elems.len())
        .filter_map(|ei| alt_pieces(elems, ei))
        .max_by_key(|(sc, _)| *sc);
    match (fixed, alt) {
        (Some((fsc, ..)), Some((asc, pieces))) if asc > fsc => Some(pieces),
        (Some((_, ei, s, w)), _) => Some(vec![fixed_piece(elems, ei, s, w)]),
        (None, Some((_, pieces))) => Some(pieces),
        (None, None) => None,
    }
}

fn fixed_piece(elems: &[Elem], ei: usize, s: usize, w: usize) -> Piece {
    let Elem::Seq(v) = &elems[ei] else {
        // best_fixed only returns Seq elements.
        return piece(elems, Vec::new(), (ei, 0), (ei, 0));
    };
    let bytes = v[s..s + w].iter().map(|b| b.val).collect();
    piece(elems, bytes, (ei, s), (ei, s + w))
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse_hex;
    use super::*;

    #[test]
    fn picks_a_rare_fixed_run_and_splits_around_it() {
        let e = parse_hex(b"0000000000000000??4142434445464748494a").unwrap();
        let p = choose(&e).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].bytes, b"ABCDEFGH");
        // Prefix reversed: "4a49" after, 9 bytes before (8 zeros + ??).
        assert_eq!(p[0].suffix.len(), 1);
        let Elem::Seq(pre) = &p[0].prefix_rev[0] else {
            panic!()
        };
        assert_eq!(pre.len(), 9);
        assert_eq!(pre[0].mask, 0); // the ?? is the byte just before the anchor
    }

    #[test]
    fn expands_short_alternatives() {
        let e = parse_hex(b"aa(bb|cc)dd").unwrap();
        // Fixed runs are single bytes: the alternative group is widened.
        let p = choose(&e).unwrap();
        let mut anchors: Vec<Vec<u8>> = p.iter().map(|p| p.bytes.clone()).collect();
        anchors.sort();
        assert_eq!(
            anchors,
            vec![vec![0xaa, 0xbb, 0xdd], vec![0xaa, 0xcc, 0xdd]]
        );
        assert!(
            p.iter()
                .all(|p| p.prefix_rev.is_empty() && p.suffix.is_empty())
        );
    }

    #[test]
    fn no_anchor_when_nothing_fixed() {
        assert!(choose(&parse_hex(b"a?*?b").unwrap()).is_none());
        assert!(choose(&parse_hex(b"aa*bb").unwrap()).is_none());
        assert!(choose(&parse_hex(b"(a?|bb)*c?").unwrap()).is_none());
    }

    #[test]
    fn reverse_reverses_everything() {
        let e = parse_hex(b"0102(0304|05)!(0607)*").unwrap();
        let r = reverse(&e);
        assert_eq!(r[0], Elem::Gap { min: 0, max: None });
        assert_eq!(r[1], Elem::NotAlt(vec![vec![7, 6]]));
        assert_eq!(
            r[2],
            Elem::Alt(vec![
                vec![ByteM::exact(4), ByteM::exact(3)],
                vec![ByteM::exact(5)]
            ])
        );
        assert_eq!(r[3], Elem::Seq(vec![ByteM::exact(2), ByteM::exact(1)]));
    }
}

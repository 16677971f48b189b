//! Choosing a literal anchor for each body signature.
//!
//! The anchor is what the prefilter ([`super::prefilter`]) looks for: a
//! window of fully fixed bytes (at most [`MAX_RUN`] long) or one anchor per
//! alternative of a short `( | )` group, widened with the fixed bytes
//! around it, whichever is estimated rarer in files by byte frequencies
//! ([`score`]). What lies
//! before the anchor is kept reversed (it is verified backwards from the
//! anchor), what lies after it is kept in order.

use super::parse::{ByteM, Elem};

/// Longest anchor taken from a fixed run.
pub const MAX_RUN: usize = 8;
/// Longest anchor made from an expanded alternative.
pub const MAX_ALT_ANCHOR: usize = 16;
/// Most alternatives a group may have to be expanded into anchors.
const MAX_EXPANDED_ALTS: usize = 16;

/// One anchor of a signature, and where the rest of the signature lies
/// around it: the elements before `left` are verified backwards from the
/// anchor's start, those from `right` on forwards from its end. A position
/// is (element, byte of a `Seq`) in the element list the anchor was chosen
/// from; the set copies both sides into its pool ([`super::pool`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    bytes: [u8; MAX_ALT_ANCHOR],
    len: u8,
    pub left: (usize, usize),
    pub right: (usize, usize),
}

impl Piece {
    /// `None` when `bytes` is longer than any anchor ([`MAX_ALT_ANCHOR`]).
    pub fn new(bytes: &[u8], left: (usize, usize), right: (usize, usize)) -> Option<Piece> {
        let mut b = [0u8; MAX_ALT_ANCHOR];
        b.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Piece {
            bytes: b,
            len: bytes.len() as u8,
            left,
            right,
        })
    }

    /// The anchor's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// How rare each byte is in files: `-8 * log2` of its frequency (eighths
/// of a bit; 0x00 is 15, a space 29, most bytes 60-89). Measured by
/// `bench/byte_costs.py` over 90 MB of this machine's executables
/// (/usr/bin), Python sources, documentation and Windows launchers.
#[rustfmt::skip]
const BYTE_COST: [u8; 256] = [
    15, 57, 61, 68, 65, 67, 74, 74, 59, 75, 53, 77, 77, 77, 62, 51, // 00
    63, 77, 77, 81, 77, 75, 82, 83, 69, 82, 84, 84, 80, 82, 84, 66, // 10
    29, 81, 65, 71, 56, 72, 84, 63, 61, 65, 79, 79, 62, 67, 62, 74, // 20
    61, 60, 72, 74, 75, 71, 78, 79, 71, 69, 67, 80, 76, 66, 77, 84, // 30
    68, 55, 68, 69, 59, 62, 74, 74, 44, 60, 81, 80, 57, 70, 72, 74, // 40
    70, 83, 72, 68, 65, 71, 78, 77, 75, 79, 83, 73, 69, 71, 81, 60, // 50
    77, 51, 66, 57, 57, 45, 56, 65, 60, 51, 82, 72, 55, 62, 51, 51, // 60
    59, 82, 51, 51, 47, 57, 71, 70, 68, 68, 82, 80, 76, 79, 84, 83, // 70
    70, 79, 80, 62, 64, 61, 81, 83, 78, 50, 87, 55, 80, 59, 83, 81, // 80
    74, 86, 87, 87, 83, 84, 86, 85, 82, 86, 86, 86, 84, 85, 87, 86, // 90
    81, 89, 87, 86, 86, 88, 86, 86, 81, 87, 87, 87, 85, 87, 89, 87, // a0
    81, 87, 88, 87, 84, 85, 76, 83, 77, 83, 77, 85, 82, 83, 78, 80, // b0
    61, 72, 74, 70, 75, 78, 75, 70, 77, 79, 83, 85, 84, 85, 84, 84, // c0
    76, 82, 77, 84, 85, 85, 83, 84, 79, 85, 83, 81, 85, 86, 82, 77, // d0
    75, 82, 80, 84, 82, 82, 81, 80, 58, 67, 82, 75, 78, 81, 80, 76, // e0
    77, 83, 77, 79, 82, 82, 74, 77, 74, 79, 77, 67, 77, 75, 69, 44, // f0
];

/// Estimated rarity of `bytes` at a position, in eighths of a bit: the sum
/// of the bytes' costs, where a byte repeating the one before it (`prev`
/// first) counts a quarter (runs of zeros, 0xff or spaces are far more
/// common than the product of their bytes' frequencies).
fn cost(bytes: &[u8], mut prev: Option<u8>) -> u32 {
    let mut c = 0;
    for &b in bytes {
        let k = u32::from(BYTE_COST[b as usize]);
        c += if prev == Some(b) { k / 4 } else { k };
        prev = Some(b);
    }
    c
}

/// How selective `bytes` are as an anchor (higher is rarer). The index
/// finds an anchor by its key (first four bytes; shorter anchors: first
/// two), so the key's rarity decides how often a position is looked up;
/// the next four bytes only tell apart patterns sharing a key.
pub fn score(bytes: &[u8]) -> u32 {
    let key = if bytes.len() >= 4 {
        4
    } else {
        bytes.len().min(2)
    };
    let rest = &bytes[key..bytes.len().min(key + 4)];
    4 * cost(&bytes[..key], None) + cost(rest, key.checked_sub(1).map(|k| bytes[k]))
}

/// The score of a set of `n` anchors whose least selective scores `worst`:
/// each adds its positions, about `log2(n)` bits less selective.
fn set_score(worst: u32, n: usize) -> u32 {
    let bits = usize::BITS - n.saturating_sub(1).leading_zeros();
    worst.saturating_sub(4 * 8 * bits)
}

/// Reverse a run of elements (for backward verification).
#[cfg(test)]
pub fn reverse(elems: &[Elem]) -> Vec<Elem> {
    elems.iter().rev().map(reverse_elem).collect()
}

/// One element read backwards.
#[cfg(test)]
fn reverse_elem(e: &Elem) -> Elem {
    match e {
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
    }
}

/// The elements before position (`ei`, byte `off` of a `Seq`), reversed:
/// nearest first, each read backwards (as [`super::pool::Pool::push_prefix_rev`]
/// pools them).
#[cfg(test)]
pub(crate) fn prefix_rev(elems: &[Elem], ei: usize, off: usize) -> Box<[Elem]> {
    let before = &elems[..ei.min(elems.len())];
    let mut out = Vec::with_capacity(before.len() + 1);
    match elems.get(ei) {
        Some(Elem::Seq(v)) if off > 0 => out.push(Elem::Seq(
            v[..off.min(v.len())].iter().rev().copied().collect(),
        )),
        _ => {}
    }
    out.extend(before.iter().rev().map(reverse_elem));
    out.into_boxed_slice()
}

/// Elements from position (`ei`, byte `off` of a `Seq`) on (as
/// [`super::pool::Pool::push_suffix`] pools them).
#[cfg(test)]
pub(crate) fn suffix(elems: &[Elem], ei: usize, off: usize) -> Box<[Elem]> {
    let Some(first) = elems.get(ei) else {
        return Box::default();
    };
    let mut out = Vec::with_capacity(elems.len() - ei);
    match first {
        Elem::Seq(v) => {
            if off < v.len() {
                out.push(Elem::Seq(v[off..].to_vec()));
            }
        }
        other => out.push(other.clone()),
    }
    out.extend_from_slice(&elems[ei + 1..]);
    out.into_boxed_slice()
}

/// The best fixed window: (score, element, start, len). Windows are up
/// to [`MAX_RUN`] bytes of a run of fixed bytes: from any point of a run of
/// four or more while four remain (the key must be four bytes), from any
/// point of a shorter run while two remain.
fn best_fixed(elems: &[Elem]) -> Option<(u32, usize, usize, usize)> {
    let mut best: Option<(u32, usize, usize, usize)> = None;
    let mut consider = |sc: u32, ei: usize, s: usize, w: usize| {
        if best.is_none_or(|b| sc > b.0) {
            best = Some((sc, ei, s, w));
        }
    };
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
            let run = &v[start..i];
            let n = run.len();
            if n < 2 {
                continue;
            }
            let key = if n >= 4 { 4 } else { 2 };
            if n > LONG_RUN {
                let bytes: Vec<u8> = run.iter().map(|b| b.val).collect();
                for s in 0..=n - key {
                    let w = (n - s).min(MAX_RUN);
                    consider(score(&bytes[s..s + w]), ei, start + s, w);
                }
                continue;
            }
            // Prefix sums of each byte's cost after the byte before it:
            // each window's score (as `score` gives it) in a few additions.
            let mut sums = [0u32; LONG_RUN + 1];
            let (mut acc, mut prev) = (0u32, None);
            for (sum, b) in sums[1..].iter_mut().zip(run) {
                acc += cost(&[b.val], prev);
                *sum = acc;
                prev = Some(b.val);
            }
            let sum = |a: usize, b: usize| sums[b] - sums[a];
            for s in 0..=n - key {
                let w = (n - s).min(MAX_RUN);
                let first = u32::from(BYTE_COST[run[s].val as usize]);
                let sc = 4 * (first + sum(s + 1, s + key)) + sum(s + key, s + w.min(key + 4));
                consider(sc, ei, start + s, w);
            }
        }
    }
    best
}

/// Runs longer than this are scored window by window.
const LONG_RUN: usize = 128;

fn exact_bytes(v: &[ByteM]) -> Option<Vec<u8>> {
    v.iter().map(|b| b.is_exact().then_some(b.val)).collect()
}

/// Anchors from one alternative group, widened with neighbouring fixed bytes.
fn alt_anchors(elems: &[Elem], ei: usize) -> Option<AltAnchors> {
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
    let n = alts.len();
    let mut anchors = Vec::with_capacity(n);
    let mut worst = u32::MAX;
    for a in alts {
        let mut bytes = tail.clone();
        bytes.extend_from_slice(&a);
        bytes.extend_from_slice(&head);
        if bytes.len() < 2 || bytes.len() > MAX_ALT_ANCHOR {
            return None;
        }
        worst = worst.min(score(&bytes));
        anchors.push(bytes);
    }
    Some(AltAnchors {
        score: set_score(worst, n),
        anchors,
        left,
        right,
    })
}

/// The anchors of one alternative group, before the pieces around them
/// are built (only for the group chosen).
struct AltAnchors {
    score: u32,
    anchors: Vec<Vec<u8>>,
    left: (usize, usize),
    right: (usize, usize),
}

/// Pick the anchors for a signature; `None` when it has no usable literal.
/// The rarest fixed window (by [`score`]) or the rarest set of anchors
/// expanded from an alternative group, whichever is more selective.
pub fn choose(elems: &[Elem]) -> Option<Vec<Piece>> {
    let fixed = best_fixed(elems);
    let alt = elems
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Elem::Alt(_)))
        .filter_map(|(ei, _)| alt_anchors(elems, ei))
        .max_by_key(|a| a.score);
    let alt_pieces = |a: AltAnchors| {
        a.anchors
            .iter()
            .map(|bytes| Piece::new(bytes, a.left, a.right))
            .collect()
    };
    match (fixed, alt) {
        (Some((fsc, ..)), Some(a)) if a.score > fsc => alt_pieces(a),
        (Some((_, ei, s, w)), _) => Some(vec![fixed_piece(elems, ei, s, w)?]),
        (None, Some(a)) => alt_pieces(a),
        (None, None) => None,
    }
}

fn fixed_piece(elems: &[Elem], ei: usize, s: usize, w: usize) -> Option<Piece> {
    // best_fixed only returns windows of Seq elements.
    let Elem::Seq(v) = elems.get(ei)? else {
        return None;
    };
    let mut bytes = [0u8; MAX_RUN];
    for (o, b) in bytes.iter_mut().zip(v.get(s..s + w)?) {
        *o = b.val;
    }
    Piece::new(bytes.get(..w)?, (ei, s), (ei, s + w))
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
        // The rarest window of the letters, not the zeros.
        assert_eq!(p[0].bytes(), b"CDEFGHIJ");
        assert!(suffix(&e, p[0].right.0, p[0].right.1).is_empty());
        // Prefix reversed: "BA", the ??, then 8 zeros.
        let pre = prefix_rev(&e, p[0].left.0, p[0].left.1);
        let Elem::Seq(pre) = &pre[0] else { panic!() };
        assert_eq!(pre.len(), 11);
        assert_eq!(pre[0], ByteM::exact(b'B'));
        assert_eq!(pre[2].mask, 0);
    }

    #[test]
    fn window_scores_equal_score_of_the_window() {
        let bytes = b"\0\0\0\x48\x48\x89\xe5\xff\xff\xffAAB";
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let e = parse_hex(hex.as_bytes()).unwrap();
        let (sc, _, s, w) = best_fixed(&e).unwrap();
        assert_eq!(sc, score(&bytes[s..s + w]));
        let best = (0..=bytes.len() - 4)
            .map(|s| score(&bytes[s..s + (bytes.len() - s).min(MAX_RUN)]))
            .max()
            .unwrap();
        assert_eq!(sc, best);
    }

    #[test]
    fn rare_key_beats_common_bytes() {
        // Zero and 0xff runs are common: the key is taken where the bytes
        // are rare, even if that leaves the anchor only four bytes.
        let e = parse_hex(b"00000000ffffffff4889e5c3").unwrap();
        let p = choose(&e).unwrap();
        assert_eq!(p[0].bytes(), [0x48, 0x89, 0xe5, 0xc3]);
        assert!(score(b"\0\0\0\0") < score(b"\xff\xff\xff\xff"));
        assert!(score(b"\xff\xff\xff\xff") < score(b"AZq~"));
        // A 4-byte key always beats a 2-byte one of the same bytes.
        assert!(score(b"AZ") < score(b"AZq~"));
    }

    #[test]
    fn expands_short_alternatives() {
        let e = parse_hex(b"aa(bb|cc)dd").unwrap();
        // Fixed runs are single bytes: the alternative group is widened.
        let p = choose(&e).unwrap();
        let mut anchors: Vec<Vec<u8>> = p.iter().map(|p| p.bytes().to_vec()).collect();
        anchors.sort();
        assert_eq!(
            anchors,
            vec![vec![0xaa, 0xbb, 0xdd], vec![0xaa, 0xcc, 0xdd]]
        );
        assert!(
            p.iter()
                .all(|p| prefix_rev(&e, p.left.0, p.left.1).is_empty()
                    && suffix(&e, p.right.0, p.right.1).is_empty())
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

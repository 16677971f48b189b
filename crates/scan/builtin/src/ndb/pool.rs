//! The elements every anchor verifies, in one pool.
//!
//! Each anchor of a body signature is verified by walking the elements
//! after it forwards and the elements before it backwards. Those element
//! lists live in four flat arrays of fixed-size records ([`Pool`]): the
//! elements, the alternatives of `(..|..)` and `!(..)` groups and the
//! pattern bytes, each list a [`Span`] of one of them, and the gaps'
//! bounds. Building the set appends to the arrays instead of allocating a
//! list per anchor side and a byte vector per element, and the
//! compiled-set cache writes and reads each array as one record segment
//! (BENCHMARKS.md, "Cold load: the anchors' elements in one pool").

use super::parse::{ByteM, Elem};
use crate::cache::codec::{Fields, FieldsMut, Word};

/// `len` records of a pool array from `start`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        let s = self.start as usize;
        s..s.saturating_add(self.len as usize)
    }

    /// The records from `start` to the array's end `end`. Pools are far
    /// below 4 Gi records (a ClamAV-scale set holds tens of millions of
    /// bytes); past that the span saturates and [`Pool::validate`] fails.
    fn between(start: usize, end: usize) -> Span {
        let at = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Span {
            start: at(start),
            len: at(end.saturating_sub(start)),
        }
    }
}

/// One element of a pooled element list ([`Elem`] with its vectors
/// replaced by spans).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PElem {
    /// Consecutive pattern bytes: a span of [`Pool`]'s bytes.
    Seq(Span),
    /// One of these sequences: a span of [`Pool`]'s alternatives.
    Alt(Span),
    /// Bytes equal to none of these sequences (all of one length, exact
    /// bytes): a span of [`Pool`]'s alternatives.
    NotAlt(Span),
    /// Skip `min..=max` bytes: entry `n` of [`Pool`]'s gaps (see
    /// [`Pool::gap`]).
    Gap(u32),
}

/// The flat arrays element lists are spans of.
#[derive(Debug, Default)]
pub struct Pool {
    elems: Vec<PElem>,
    alts: Vec<Span>,
    bytes: Vec<ByteM>,
    /// Gap bounds `(min, max)`, `max` [`u64::MAX`] when unbounded: kept
    /// apart so that an element is a tag and two `u32`s.
    gaps: Vec<(u64, u64)>,
}

impl Pool {
    /// A pool with room for `elems` elements and `bytes` pattern bytes.
    pub fn with_capacity(elems: usize, bytes: usize) -> Pool {
        Pool {
            elems: Vec::with_capacity(elems),
            alts: Vec::new(),
            bytes: Vec::with_capacity(bytes),
            gaps: Vec::new(),
        }
    }

    /// The bounds of a [`PElem::Gap`]: skip `min..=max` bytes (`None`:
    /// unbounded). An index out of bounds (ruled out by
    /// [`Pool::validate`]) is a gap nothing satisfies.
    #[inline]
    pub fn gap(&self, g: u32) -> (u64, Option<u64>) {
        match self.gaps.get(g as usize) {
            Some(&(min, u64::MAX)) => (min, None),
            Some(&(min, max)) => (min, Some(max)),
            None => (1, Some(0)),
        }
    }

    /// The element list `s` (empty when `s` is out of bounds, which
    /// [`Pool::validate`] rules out for a pool read from the cache).
    #[inline]
    pub fn elems(&self, s: Span) -> &[PElem] {
        self.elems.get(s.range()).unwrap_or(&[])
    }

    /// The pattern bytes of a [`PElem::Seq`] (or of one alternative).
    #[inline]
    pub fn seq(&self, s: Span) -> &[ByteM] {
        self.bytes.get(s.range()).unwrap_or(&[])
    }

    /// The sequences of a [`PElem::Alt`] or [`PElem::NotAlt`].
    #[inline]
    pub fn alts(&self, s: Span) -> impl Iterator<Item = &[ByteM]> + '_ {
        self.alts
            .get(s.range())
            .unwrap_or(&[])
            .iter()
            .map(|&a| self.seq(a))
    }

    /// Append `b` to the bytes, reversed when `rev`.
    fn push_bytes(&mut self, b: impl Iterator<Item = ByteM>, rev: bool) -> Span {
        let start = self.bytes.len();
        self.bytes.extend(b);
        if rev {
            self.bytes[start..].reverse();
        }
        Span::between(start, self.bytes.len())
    }

    fn push_alts<I: Iterator<Item = ByteM>>(
        &mut self,
        alts: impl Iterator<Item = I>,
        rev: bool,
    ) -> Span {
        // Only bytes are pushed between two spans: a group's are adjacent.
        let start = self.alts.len();
        for a in alts {
            let s = self.push_bytes(a, rev);
            self.alts.push(s);
        }
        Span::between(start, self.alts.len())
    }

    /// `e` as a pooled element, its bytes reversed when `rev`.
    fn pooled(&mut self, e: &Elem, rev: bool) -> PElem {
        match e {
            Elem::Seq(v) => PElem::Seq(self.push_bytes(v.iter().copied(), rev)),
            Elem::Alt(a) => PElem::Alt(self.push_alts(a.iter().map(|v| v.iter().copied()), rev)),
            Elem::NotAlt(a) => PElem::NotAlt(
                self.push_alts(a.iter().map(|v| v.iter().map(|&b| ByteM::exact(b))), rev),
            ),
            Elem::Gap { min, max } => {
                let g = u32::try_from(self.gaps.len()).unwrap_or(u32::MAX);
                // `max` u64::MAX bytes is as unbounded as no maximum.
                self.gaps.push((*min, max.unwrap_or(u64::MAX)));
                PElem::Gap(g)
            }
        }
    }

    /// The elements from position (`ei`, byte `off` of a `Seq`) on, in
    /// order: what is verified forwards from an anchor's end.
    pub fn push_suffix(&mut self, elems: &[Elem], ei: usize, off: usize) -> Span {
        let start = self.elems.len();
        if let Some(first) = elems.get(ei) {
            match first {
                Elem::Seq(v) => {
                    if off < v.len() {
                        let s = self.push_bytes(v[off..].iter().copied(), false);
                        self.elems.push(PElem::Seq(s));
                    }
                }
                other => {
                    let p = self.pooled(other, false);
                    self.elems.push(p);
                }
            }
            for e in &elems[ei + 1..] {
                let p = self.pooled(e, false);
                self.elems.push(p);
            }
        }
        Span::between(start, self.elems.len())
    }

    /// The elements before position (`ei`, byte `off` of a `Seq`),
    /// nearest first, each read backwards: what is verified backwards from
    /// an anchor's start.
    pub fn push_prefix_rev(&mut self, elems: &[Elem], ei: usize, off: usize) -> Span {
        let start = self.elems.len();
        if let Some(Elem::Seq(v)) = elems.get(ei)
            && off > 0
        {
            let s = self.push_bytes(v[..off.min(v.len())].iter().copied(), true);
            self.elems.push(PElem::Seq(s));
        }
        for e in elems[..ei.min(elems.len())].iter().rev() {
            let p = self.pooled(e, true);
            self.elems.push(p);
        }
        Span::between(start, self.elems.len())
    }

    /// Whether every span in the pool lies inside its array and every gap
    /// is well formed: a pool read from the cache is checked before use.
    pub fn validate(&self) -> Result<(), String> {
        // A span's range never ends before it starts (it saturates).
        let within = |s: Span, n: usize| s.range().end <= n;
        for (i, e) in self.elems.iter().enumerate() {
            let ok = match *e {
                PElem::Seq(s) => within(s, self.bytes.len()),
                PElem::Alt(s) | PElem::NotAlt(s) => within(s, self.alts.len()),
                PElem::Gap(g) => self.gaps.get(g as usize).is_some_and(|&(lo, hi)| lo <= hi),
            };
            if !ok {
                return Err(format!("body signature element {i} out of bounds"));
            }
        }
        if let Some(i) = self.alts.iter().position(|&s| !within(s, self.bytes.len())) {
            return Err(format!("body signature alternative {i} out of bounds"));
        }
        Ok(())
    }

    /// Write the four arrays to the compiled-set cache, one record
    /// segment each.
    pub(crate) fn write_cache(&self, w: &mut crate::cache::SegWriter<'_>) -> std::io::Result<()> {
        w.put_records(&self.elems)?;
        w.put_records(&self.alts)?;
        w.put_records(&self.bytes)?;
        w.put_records(&self.gaps)
    }

    /// A pool [`Pool::write_cache`] wrote, validated.
    pub(crate) fn read_cache(r: &mut crate::cache::SegReader<'_>) -> Result<Pool, String> {
        let pool = Pool {
            elems: r.get_records()?,
            alts: r.get_records()?,
            bytes: r.get_records()?,
            gaps: r.get_records()?,
        };
        pool.validate()?;
        Ok(pool)
    }

    /// Whether `s` is a span of the elements.
    pub fn has_elems(&self, s: Span) -> bool {
        s.range().end <= self.elems.len()
    }
}

impl Word for Span {
    const SIZE: usize = 8;
    fn put(self, out: &mut [u8]) {
        let mut f = FieldsMut(out);
        f.set(0, self.start);
        f.set(4, self.len);
    }
    fn get(b: &[u8]) -> Span {
        let f = Fields(b);
        Span {
            start: f.at(0),
            len: f.at(4),
        }
    }
}

const TAG_SEQ: u8 = 0;
const TAG_ALT: u8 = 1;
const TAG_NOT_ALT: u8 = 2;
const TAG_GAP: u8 = 3;

/// A tag, then a span or a gap's index.
impl Word for PElem {
    const SIZE: usize = 1 + 4 + 4;
    fn put(self, out: &mut [u8]) {
        let (tag, s) = match self {
            PElem::Seq(s) => (TAG_SEQ, s),
            PElem::Alt(s) => (TAG_ALT, s),
            PElem::NotAlt(s) => (TAG_NOT_ALT, s),
            PElem::Gap(g) => (TAG_GAP, Span { start: g, len: 0 }),
        };
        out[0] = tag;
        s.put(&mut out[1..]);
    }
    fn get(b: &[u8]) -> PElem {
        let s = Span::get(&b[1..]);
        match b[0] {
            TAG_SEQ => PElem::Seq(s),
            TAG_ALT => PElem::Alt(s),
            TAG_NOT_ALT => PElem::NotAlt(s),
            TAG_GAP => PElem::Gap(s.start),
            // Not a tag this version writes: a gap that does not exist,
            // which `Pool::validate` refuses.
            _ => PElem::Gap(u32::MAX),
        }
    }
}

/// A gap's bounds.
impl Word for (u64, u64) {
    const SIZE: usize = 16;
    fn put(self, out: &mut [u8]) {
        let mut f = FieldsMut(out);
        f.set(0, self.0);
        f.set(8, self.1);
    }
    fn get(b: &[u8]) -> (u64, u64) {
        let f = Fields(b);
        (f.at(0), f.at(8))
    }
}

#[cfg(test)]
mod tests {
    use super::super::anchor;
    use super::super::parse::parse_hex;
    use super::*;

    /// A pooled list back as elements.
    fn unpool(p: &Pool, s: Span) -> Vec<Elem> {
        p.elems(s)
            .iter()
            .map(|e| match *e {
                PElem::Seq(s) => Elem::Seq(p.seq(s).to_vec()),
                PElem::Alt(s) => Elem::Alt(p.alts(s).map(<[ByteM]>::to_vec).collect()),
                PElem::NotAlt(s) => Elem::NotAlt(
                    p.alts(s)
                        .map(|a| a.iter().map(|b| b.val).collect())
                        .collect(),
                ),
                PElem::Gap(g) => {
                    let (min, max) = p.gap(g);
                    Elem::Gap { min, max }
                }
            })
            .collect()
    }

    #[test]
    fn pooled_sides_equal_the_element_lists_they_replace() {
        let e = parse_hex(b"0102(0304|05)!(0607){2-5}0809*0a0b??0c").unwrap();
        for ei in 0..e.len() {
            for off in 0..3 {
                let mut p = Pool::default();
                let pre = p.push_prefix_rev(&e, ei, off);
                let suf = p.push_suffix(&e, ei, off);
                p.validate().unwrap();
                assert_eq!(unpool(&p, pre), anchor::prefix_rev(&e, ei, off).to_vec());
                assert_eq!(unpool(&p, suf), anchor::suffix(&e, ei, off).to_vec());
            }
        }
    }

    #[test]
    fn records_round_trip_and_unknown_tags_fail_validation() {
        for e in [
            PElem::Seq(Span { start: 3, len: 9 }),
            PElem::Alt(Span { start: 1, len: 2 }),
            PElem::NotAlt(Span { start: 0, len: 1 }),
            PElem::Gap(7),
        ] {
            let mut b = [0u8; PElem::SIZE];
            e.put(&mut b);
            assert_eq!(PElem::get(&b), e);
        }
        let mut b = [0u8; PElem::SIZE];
        b[0] = 9;
        assert_eq!(PElem::get(&b), PElem::Gap(u32::MAX));
        let p = Pool {
            elems: vec![PElem::get(&b)],
            ..Pool::default()
        };
        assert!(p.validate().is_err());
        let p = Pool {
            elems: vec![PElem::Seq(Span { start: 0, len: 1 })],
            ..Pool::default()
        };
        assert!(p.validate().is_err());
    }
}

//! Finding anchor candidates: a bitmap of hashed 4-byte grams.
//!
//! Every anchor of four bytes or more is indexed by its first four bytes
//! (its "gram"); shorter anchors (2–3 bytes) by their first two bytes in an
//! exact 65,536-bit table. Scanning tests one bit per position. Unlike an
//! Aho-Corasick automaton, whose next state depends on the previous one (so
//! with tens of thousands of anchors every byte can be a dependent cache
//! miss), these probes are independent and the CPU overlaps them: measured
//! on this project's benchmark set (20,000 random anchors, random data) an
//! Aho-Corasick contiguous NFA ran at 19–50 MB/s and a DFA at 13 MB/s, while
//! this filter runs at memory speed.
//!
//! A position whose gram (or short prefix) is indexed is then told apart
//! from the other patterns with that gram by the eight bytes after its key,
//! under a mask: the rest of the anchor and, as far as the caller knows
//! them, the signature's bytes right after it (wildcards and nibbles
//! masked), and by the eight bytes before the anchor the same way. Only
//! positions passing those tests are reported; the caller confirms the
//! whole anchor (unless the tests covered it) and verifies the signature.

/// Multiplier of the gram hash (Fibonacci hashing).
const K: u32 = 0x9e37_79b1;
/// Bitmap size: 2^22 bits (512 KiB, fits in L2). About 0.5 % of positions
/// are false candidates with 20,000 anchors.
const BITS_LOG2: u32 = 22;
const WORDS: usize = 1 << (BITS_LOG2 - 6);
const SHIFT: u32 = 32 - BITS_LOG2;

#[inline(always)]
fn slot(g: u32) -> (usize, u64) {
    let h = g.wrapping_mul(K) >> SHIFT;
    ((h >> 6) as usize & (WORDS - 1), 1u64 << (h & 63))
}

/// What the index knows of one pattern: its anchor bytes and the bytes
/// that follow the anchor in every signature it finds, under a mask.
#[derive(Debug, Clone, Copy)]
pub struct Pattern<'a> {
    pub anchor: &'a [u8],
    /// The bytes right after the anchor (`after[k] & after_mask[k]`
    /// must equal `after[k]`); mask 0 where unknown.
    pub after: [u8; 8],
    pub after_mask: [u8; 8],
    /// The bytes right before the anchor, nearest first (`before[k]` is
    /// `k + 1` bytes before it), under `before_mask`.
    pub before: [u8; 8],
    pub before_mask: [u8; 8],
}

impl<'a> Pattern<'a> {
    /// A pattern known by its anchor bytes alone.
    pub fn anchor(anchor: &'a [u8]) -> Pattern<'a> {
        Pattern {
            anchor,
            after: [0; 8],
            after_mask: [0; 8],
            before: [0; 8],
            before_mask: [0; 8],
        }
    }

    /// The eight bytes before the anchor as (value, mask) little-endian
    /// words of the bytes in file order (the nearest byte is the top one).
    fn head(&self) -> (u64, u64) {
        let (mut v, mut m) = ([0u8; 8], [0u8; 8]);
        for k in 0..8 {
            m[7 - k] = self.before_mask[k];
            v[7 - k] = self.before[k] & self.before_mask[k];
        }
        (u64::from_le_bytes(v), u64::from_le_bytes(m))
    }

    /// The eight bytes after the first `key` bytes of the anchor, as
    /// (value, mask) little-endian words.
    fn tail(&self, key: usize) -> (u64, u64) {
        let mut v = [0u8; 8];
        let mut m = [0u8; 8];
        for k in 0..8 {
            let j = key + k;
            if let Some(&b) = self.anchor.get(j) {
                v[k] = b;
                m[k] = 0xff;
            } else if let Some(i) = j.checked_sub(self.anchor.len()).filter(|&i| i < 8) {
                m[k] = self.after_mask[i];
                v[k] = self.after[i] & m[k];
            }
        }
        (u64::from_le_bytes(v), u64::from_le_bytes(m))
    }
}

/// The candidate index over all anchors.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct GramIndex {
    /// Cached as a record segment after the rest, as `grams` is (see
    /// [`GramIndex::write_records`]).
    #[serde(skip, default = "no_bits")]
    bits: Box<[u64; WORDS]>,
    /// Set bits of `bits` before each block of [`BLOCK`] words.
    rank_hi: Vec<u32>,
    /// Set bits of `bits` before each word, counted from its block's start.
    #[serde(with = "crate::cache::codec::words")]
    rank_lo: Box<[u16; WORDS]>,
    /// The `r`-th set bit's patterns are `grams[bucket[r]..bucket[r + 1]]`.
    bucket: Vec<u32>,
    /// Patterns by bit, then gram, then those whose next four bytes are
    /// all known first (sorted by them, found by binary search), then the
    /// others (compared under their mask).
    #[serde(skip)]
    grams: Vec<GramEntry>,
    /// One bit per 2-byte prefix of a short anchor.
    #[serde(with = "crate::cache::codec::words")]
    short_bits: Box<[u64; SHORT_WORDS]>,
    /// Set bits of `short_bits` before each word.
    #[serde(with = "crate::cache::codec::words")]
    short_rank: Box<[u16; SHORT_WORDS]>,
    /// The `r`-th prefix's short anchors are `shorts[short_bucket[r]..short_bucket[r + 1]]`.
    short_bucket: Vec<u32>,
    /// Short anchors, sorted by their first two bytes.
    #[serde(with = "crate::cache::codec::records")]
    shorts: Vec<ShortEntry>,
}

/// A per-object copy of the short-anchor prefix bits, with the prefixes
/// whose patterns can find nothing more in the object cleared (see
/// [`GramIndex::scan`]).
pub type ShortLive = Option<Box<[u64; SHORT_WORDS]>>;

/// Words per block of the rank table (`BLOCK * 64` set bits fit a `u16`).
const BLOCK: usize = 512;
pub const SHORT_WORDS: usize = (1 << 16) / 64;

/// One indexed pattern: its first four bytes, the next eight (as far as
/// the pattern has them) and the mask of those it has.
#[derive(Debug, Clone, Copy)]
struct GramEntry {
    tail: u64,
    mask: u64,
    /// The eight bytes before the gram, under `pre_mask`.
    pre: u64,
    pre_mask: u64,
    gram: u32,
    /// Bytes 4..8 of the pattern when all four are known (the binary
    /// search key of full entries), else 0.
    tail_lo: u32,
    pid: u32,
    /// 0 when the pattern knows all four bytes after the gram, else 1
    /// (sorts full ones first).
    partial: u8,
    /// The key and the masked tail cover the whole anchor: a position
    /// passing them needs no further confirmation of the anchor.
    covers: bool,
}

/// One short anchor: its first two bytes and the next eight under a mask.
#[derive(Debug, Clone, Copy)]
struct ShortEntry {
    tail: u64,
    mask: u64,
    pre: u64,
    pre_mask: u64,
    pid: u32,
    key: u16,
    covers: bool,
}

/// The four words both kinds of entry begin with (`tail`, `mask`, `pre`,
/// `pre_mask`), at bytes 0..32 of their cache record.
fn put_masks(f: &mut crate::cache::codec::FieldsMut<'_>, words: [u64; 4]) {
    for (k, w) in words.into_iter().enumerate() {
        f.set(8 * k, w);
    }
}

/// The words [`put_masks`] wrote.
fn get_masks(r: &crate::cache::codec::Fields<'_>) -> [u64; 4] {
    std::array::from_fn(|k| r.at(8 * k))
}

/// Fixed-size records in the compiled-set cache: decoded in one pass, where
/// postcard's varints of four 64-bit masks each were a tenth of a warm load.
impl crate::cache::codec::Word for GramEntry {
    const SIZE: usize = 4 * 8 + 3 * 4 + 2;
    fn put(self, out: &mut [u8]) {
        let mut f = crate::cache::codec::FieldsMut(out);
        put_masks(&mut f, [self.tail, self.mask, self.pre, self.pre_mask]);
        f.set(32, self.gram);
        f.set(36, self.tail_lo);
        f.set(40, self.pid);
        out[44] = self.partial;
        out[45] = u8::from(self.covers);
    }
    fn get(b: &[u8]) -> GramEntry {
        let r = crate::cache::codec::Fields(b);
        let [tail, mask, pre, pre_mask] = get_masks(&r);
        GramEntry {
            tail,
            mask,
            pre,
            pre_mask,
            gram: r.at(32),
            tail_lo: r.at(36),
            pid: r.at(40),
            partial: b[44],
            covers: b[45] != 0,
        }
    }
}

impl crate::cache::codec::Word for ShortEntry {
    const SIZE: usize = 4 * 8 + 4 + 2 + 1;
    fn put(self, out: &mut [u8]) {
        let mut f = crate::cache::codec::FieldsMut(out);
        put_masks(&mut f, [self.tail, self.mask, self.pre, self.pre_mask]);
        f.set(32, self.pid);
        f.set(36, self.key);
        out[38] = u8::from(self.covers);
    }
    fn get(b: &[u8]) -> ShortEntry {
        let r = crate::cache::codec::Fields(b);
        let [tail, mask, pre, pre_mask] = get_masks(&r);
        ShortEntry {
            tail,
            mask,
            pre,
            pre_mask,
            pid: r.at(32),
            key: r.at(36),
            covers: b[38] != 0,
        }
    }
}

#[inline]
fn gram_at(w: &[u8]) -> u32 {
    u32::from_le_bytes([w[0], w[1], w[2], w[3]])
}

/// The eight bytes of `w` at `i` and the mask of those `w` has (bytes
/// past its end are unknown: they pass every test).
#[inline]
fn word_at(w: &[u8], i: usize) -> (u64, u64) {
    if let Some(b) = w.get(i..i + 8) {
        let b: [u8; 8] = b.try_into().unwrap_or([0; 8]);
        return (u64::from_le_bytes(b), u64::MAX);
    }
    let mut v = [0u8; 8];
    let mut m = [0u8; 8];
    for (k, &b) in w.get(i..).unwrap_or(&[]).iter().take(8).enumerate() {
        v[k] = b;
        m[k] = 0xff;
    }
    (u64::from_le_bytes(v), u64::from_le_bytes(m))
}

/// The eight bytes of `w` before `i` and the mask of those `w` has.
#[inline]
fn word_before(w: &[u8], i: usize) -> (u64, u64) {
    if let Some(b) = i.checked_sub(8).and_then(|s| w.get(s..i)) {
        let b: [u8; 8] = b.try_into().unwrap_or([0; 8]);
        return (u64::from_le_bytes(b), u64::MAX);
    }
    let (mut v, mut m) = ([0u8; 8], [0u8; 8]);
    for k in 0..i.min(8) {
        v[7 - k] = w[i - 1 - k];
        m[7 - k] = 0xff;
    }
    (u64::from_le_bytes(v), u64::from_le_bytes(m))
}

/// Bucket start offsets of `len` entries sorted by bit (`bits`: each
/// entry's bit, in order): one start per distinct bit, then `len`.
fn buckets(bits: impl Iterator<Item = usize>, len: usize) -> Vec<u32> {
    let mut out = Vec::new();
    let mut last = None;
    for (i, b) in bits.enumerate() {
        if last != Some(b) {
            out.push(i as u32);
            last = Some(b);
        }
    }
    out.push(len as u32);
    out
}

/// The bits set below bit `b` of a word.
#[inline(always)]
fn below(word: u64, b: u32) -> u32 {
    (word & ((1u64 << b) - 1)).count_ones()
}

/// The bitmap before [`GramIndex::read_records`] fills it.
fn no_bits() -> Box<[u64; WORDS]> {
    Box::new([0u64; WORDS])
}

impl GramIndex {
    /// The bitmap and the entries, the index's largest arrays, as record
    /// segments of the compiled-set cache (after the index's other fields).
    pub(crate) fn write_records(&self, w: &mut crate::cache::SegWriter<'_>) -> std::io::Result<()> {
        w.put_records(&self.bits[..])?;
        w.put_records(&self.grams)
    }

    /// The segments [`GramIndex::write_records`] wrote.
    pub(crate) fn read_records(
        &mut self,
        r: &mut crate::cache::SegReader<'_>,
    ) -> Result<(), String> {
        let bits: Vec<u64> = r.get_records()?;
        let n = bits.len();
        self.bits = bits
            .into_boxed_slice()
            .try_into()
            .map_err(|_| format!("gram bitmap of {n} words, {WORDS} expected"))?;
        self.grams = r.get_records()?;
        Ok(())
    }

    /// Index `patterns` by their anchor bytes alone (each at least two
    /// bytes; shorter ones are ignored). Pattern ids are positions in the slice.
    pub fn build(patterns: &[&[u8]]) -> GramIndex {
        let p: Vec<Pattern<'_>> = patterns.iter().map(|a| Pattern::anchor(a)).collect();
        GramIndex::build_with(&p)
    }

    /// Index `patterns` (anchors of at least two bytes; shorter ones are
    /// ignored) with what is known of the bytes after each anchor. Pattern
    /// ids are positions in the slice.
    pub fn build_with(patterns: &[Pattern<'_>]) -> GramIndex {
        let long = patterns.iter().filter(|p| p.anchor.len() >= 4).count();
        let mut grams = Vec::with_capacity(long);
        let mut shorts = Vec::with_capacity(patterns.len() - long);
        for (pid, p) in patterns.iter().enumerate() {
            let pid = pid as u32;
            let a = p.anchor;
            if a.len() >= 4 {
                let (tail, mask) = p.tail(4);
                let (pre, pre_mask) = p.head();
                let full = mask as u32 == u32::MAX;
                grams.push(GramEntry {
                    pre,
                    pre_mask,
                    gram: gram_at(a),
                    partial: u8::from(!full),
                    tail_lo: if full { tail as u32 } else { 0 },
                    tail,
                    mask,
                    pid,
                    covers: a.len() <= 12,
                });
            } else if a.len() >= 2 {
                let (tail, mask) = p.tail(2);
                let (pre, pre_mask) = p.head();
                shorts.push(ShortEntry {
                    pre,
                    pre_mask,
                    key: u16::from_le_bytes([a[0], a[1]]),
                    tail,
                    mask,
                    pid,
                    covers: true,
                });
            }
        }
        let hash = |g: u32| g.wrapping_mul(K) >> SHIFT;
        grams.sort_unstable_by_key(|e| (hash(e.gram), e.gram, e.partial, e.tail_lo, e.pid));
        shorts.sort_unstable_by_key(|e| (e.key, e.pid));
        let mut bits = Box::new([0u64; WORDS]);
        for e in &grams {
            let (w, b) = slot(e.gram);
            bits[w] |= b;
        }
        let mut rank_hi = Vec::with_capacity(WORDS / BLOCK);
        let mut rank_lo = Box::new([0u16; WORDS]);
        let mut total = 0u32;
        for (w, &word) in bits.iter().enumerate() {
            if w % BLOCK == 0 {
                rank_hi.push(total);
            }
            rank_lo[w] = (total - rank_hi[w / BLOCK]) as u16;
            total += word.count_ones();
        }
        let bucket = buckets(grams.iter().map(|e| hash(e.gram) as usize), grams.len());
        let mut short_bits = Box::new([0u64; SHORT_WORDS]);
        for e in &shorts {
            short_bits[(e.key >> 6) as usize] |= 1 << (e.key & 63);
        }
        let mut short_rank = Box::new([0u16; SHORT_WORDS]);
        let mut total = 0u32;
        for (w, &word) in short_bits.iter().enumerate() {
            short_rank[w] = total as u16;
            total += word.count_ones();
        }
        let short_bucket = buckets(shorts.iter().map(|e| e.key as usize), shorts.len());
        GramIndex {
            bits,
            rank_hi,
            rank_lo,
            bucket,
            grams,
            short_bits,
            short_rank,
            short_bucket,
            shorts,
        }
    }

    /// Heap bytes used.
    pub fn memory_bytes(&self) -> usize {
        WORDS * (8 + 2)
            + self.rank_hi.len() * 4
            + self.bucket.len() * 4
            + self.grams.len() * std::mem::size_of::<GramEntry>()
            + SHORT_WORDS * (8 + 2)
            + self.short_bucket.len() * 4
            + self.shorts.len() * std::mem::size_of::<ShortEntry>()
    }

    /// Report the patterns whose gram is `g` (its bit, `wd`/`b`, is set)
    /// and whose next bytes, as far as `w` has them, are those at `i + 4`,
    /// at position `i`.
    #[inline]
    fn candidates<E>(
        &self,
        w: &[u8],
        g: u32,
        i: usize,
        (wd, b): (usize, u32),
        f: &mut impl FnMut(usize, u32, bool) -> Result<bool, E>,
    ) -> Result<(), E> {
        let r = self.rank_hi[wd / BLOCK] as usize
            + self.rank_lo[wd] as usize
            + below(self.bits[wd], b) as usize;
        let (Some(&lo), Some(&hi)) = (self.bucket.get(r), self.bucket.get(r + 1)) else {
            return Ok(());
        };
        let range = self.grams.get(lo as usize..hi as usize).unwrap_or(&[]);
        // Other grams sharing the bit are rare: skip them in order.
        let start = range.iter().take_while(|e| e.gram < g).count();
        let end = start + range[start..].partition_point(|e| e.gram == g);
        let same = &range[start..end];
        // Near the end of the window only the bytes it has are compared
        // (the caller confirms the rest).
        let (t, have) = word_at(w, i + 4);
        let (p, phave) = word_before(w, i);
        let pre_ok = |e: &GramEntry| (p ^ e.pre) & e.pre_mask & phave == 0;
        if have != u64::MAX {
            for e in same.iter().filter(|e| (t ^ e.tail) & e.mask & have == 0) {
                if pre_ok(e) {
                    f(i, e.pid, false)?;
                }
            }
            return Ok(());
        }
        let full = same.partition_point(|e| e.partial == 0);
        let (full_part, partial) = same.split_at(full);
        let lo = t as u32;
        let from = if full_part.len() <= 4 {
            0
        } else {
            full_part.partition_point(|e| e.tail_lo < lo)
        };
        // Sorted by bytes 4..8: stop past them.
        for e in full_part[from..].iter().take_while(|e| e.tail_lo <= lo) {
            if e.tail_lo == lo && t & e.mask == e.tail && pre_ok(e) {
                f(i, e.pid, e.covers)?;
            }
        }
        for e in partial.iter().filter(|e| t & e.mask == e.tail && pre_ok(e)) {
            f(i, e.pid, e.covers)?;
        }
        Ok(())
    }

    /// Report the short anchors starting at `i` (`w` has `i + 1`; the
    /// prefix's bit is set); clear the prefix in `live` when the caller
    /// says its patterns are exhausted.
    #[inline]
    fn short_candidates<E>(
        &self,
        w: &[u8],
        i: usize,
        live: &mut ShortLive,
        f: &mut impl FnMut(usize, u32, bool) -> Result<bool, E>,
    ) -> Result<(), E> {
        let s = u16::from_le_bytes([w[i], w[i + 1]]);
        let wd = (s >> 6) as usize;
        let bit = 1u64 << (s & 63);
        let (t, have) = word_at(w, i + 2);
        let (p, phave) = word_before(w, i);
        let sure = have == u64::MAX;
        let mut exhausted = false;
        for e in self.short_entries(s) {
            if (t ^ e.tail) & e.mask & have == 0 && (p ^ e.pre) & e.pre_mask & phave == 0 {
                exhausted |= f(i, e.pid, sure && e.covers)?;
            }
        }
        if exhausted {
            live.get_or_insert_with(|| self.short_bits.clone())[wd] &= !bit;
        }
        Ok(())
    }

    /// The short anchors whose first two bytes are `s`.
    #[inline]
    fn short_entries(&self, s: u16) -> &[ShortEntry] {
        let wd = (s >> 6) as usize;
        if self.short_bits[wd] & (1 << (s & 63)) == 0 {
            return &[];
        }
        let r =
            self.short_rank[wd] as usize + below(self.short_bits[wd], u32::from(s & 63)) as usize;
        let (Some(&lo), Some(&hi)) = (self.short_bucket.get(r), self.short_bucket.get(r + 1))
        else {
            return &[];
        };
        self.shorts.get(lo as usize..hi as usize).unwrap_or(&[])
    }

    /// The patterns of the short anchors whose first two bytes are `s`.
    pub fn short_pids(&self, s: u16) -> impl Iterator<Item = u32> + '_ {
        self.short_entries(s).iter().map(|e| e.pid)
    }

    #[inline(always)]
    fn short_bit(bits: &[u64; SHORT_WORDS], s: u16) -> bool {
        bits[(s >> 6) as usize] & (1 << (s & 63)) != 0
    }

    /// Call `f(i, pattern, sure)` for every position `i < limit` of `w`
    /// where the pattern's first four (short anchors: two) bytes start and
    /// the bytes after them (as far as `w` has them) pass the pattern's
    /// mask, in order of position (multi-part signatures rely on it).
    /// `sure`: the whole anchor is known to be there; else the caller must
    /// compare it. Positions whose four bytes are not all in `w` are only
    /// tested for short anchors.
    ///
    /// `f` returns `true` for a short anchor when no pattern with its first
    /// two bytes can find anything more in this object: the prefix is then
    /// cleared in `live` (the object's copy of the prefix bits, made on
    /// the first such answer) and no longer looked up. Zero and 0xff runs
    /// would otherwise keep looking up weak short anchors that matched.
    #[inline]
    pub fn scan<E>(
        &self,
        w: &[u8],
        limit: usize,
        live: &mut ShortLive,
        mut f: impl FnMut(usize, u32, bool) -> Result<bool, E>,
    ) -> Result<(), E> {
        let limit = limit.min(w.len());
        let full = if self.grams.is_empty() {
            0
        } else {
            limit.min(w.len().saturating_sub(3))
        };
        let shorts = !self.shorts.is_empty();
        let short_end = limit.min(w.len().saturating_sub(1));
        let bits: &[u64; WORDS] = &self.bits;
        let mut i = 0;
        // Eight positions per step from two 8-byte loads: a mask of the
        // positions whose gram (bit 0-7) or short prefix (bit 8-15) is
        // indexed, then those positions in order.
        while i + 12 <= full + 3 {
            let x = u64::from_le_bytes(w[i..i + 8].try_into().unwrap_or([0; 8]));
            let y = u64::from_le_bytes(w[i + 4..i + 12].try_into().unwrap_or([0; 8]));
            let mut hit = 0u32;
            for k in 0..4 {
                let (a, ab) = slot((x >> (8 * k)) as u32);
                let (b, bb) = slot((y >> (8 * k)) as u32);
                hit |= u32::from(bits[a] & ab != 0) << k;
                hit |= u32::from(bits[b] & bb != 0) << (k + 4);
            }
            if shorts {
                let sb: &[u64; SHORT_WORDS] = live.as_deref().unwrap_or(&self.short_bits);
                for k in 0..4 {
                    hit |= u32::from(Self::short_bit(sb, (x >> (8 * k)) as u16)) << (k + 8);
                    hit |= u32::from(Self::short_bit(sb, (y >> (8 * k)) as u16)) << (k + 12);
                }
            }
            let mut at = (hit | (hit >> 8)) & 0xff;
            while at != 0 {
                let k = at.trailing_zeros();
                at &= at - 1;
                let pos = i + k as usize;
                if hit & (1 << (k + 8)) != 0 {
                    self.short_candidates(w, pos, live, &mut f)?;
                }
                if hit & (1 << k) != 0 {
                    let g = gram_at(&w[pos..]);
                    let h = g.wrapping_mul(K) >> SHIFT;
                    let s = ((h >> 6) as usize & (WORDS - 1), h & 63);
                    self.candidates(w, g, pos, s, &mut f)?;
                }
            }
            i += 8;
        }
        while i < full.max(short_end) {
            let sb: &[u64; SHORT_WORDS] = live.as_deref().unwrap_or(&self.short_bits);
            if shorts && i < short_end && Self::short_bit(sb, u16::from_le_bytes([w[i], w[i + 1]]))
            {
                self.short_candidates(w, i, live, &mut f)?;
            }
            if i < full {
                let g = gram_at(&w[i..]);
                let h = g.wrapping_mul(K) >> SHIFT;
                let s = ((h >> 6) as usize & (WORDS - 1), h & 63);
                if bits[s.0] & (1 << s.1) != 0 {
                    self.candidates(w, g, i, s, &mut f)?;
                }
            }
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(idx: &GramIndex, w: &[u8], limit: usize) -> Vec<(usize, u32)> {
        let mut v = Vec::new();
        idx.scan::<()>(w, limit, &mut None, |i, p, _| {
            v.push((i, p));
            Ok(false)
        })
        .unwrap();
        v.sort();
        v
    }

    #[test]
    fn many_patterns_sharing_a_gram_are_told_apart() {
        let owned: Vec<Vec<u8>> = (0u8..40)
            .map(|k| [b"\0\0\0\0".as_ref(), &[k, 1, 2, 3, 9, 9]].concat())
            .chain([b"\0\0\0\0\x05\x01".to_vec(), b"\0\0\0\0\x05".to_vec()])
            .collect();
        let pats: Vec<&[u8]> = owned.iter().map(|v| v.as_slice()).collect();
        let idx = GramIndex::build(&pats);
        let w = b"xx\0\0\0\0\x05\x01\x02\x03\x09\x09yy";
        // Pattern 5 (full next bytes) and the two shorter ones (40, 41).
        assert_eq!(found(&idx, w, w.len()), vec![(2, 5), (2, 40), (2, 41)]);
        // Bytes past the window's end are unknown: they pass.
        assert_eq!(found(&idx, &w[..10], 10), vec![(2, 5), (2, 40), (2, 41)]);
        assert_eq!(found(&idx, b"\0\0\0\0\x06\x01\x02\x04", 8), vec![]);
    }

    #[test]
    fn bytes_after_the_anchor_filter_candidates_under_their_mask() {
        // "ABCD" then a wildcard, a nibble 6? and 'Z'; "XY" after 'W',
        // then ?? and 'Q'.
        let pats = [
            Pattern {
                anchor: b"ABCD",
                after: [0, 0x60, b'Z', 0, 0, 0, 0, 0],
                after_mask: [0, 0xf0, 0xff, 0, 0, 0, 0, 0],
                ..Pattern::anchor(b"")
            },
            Pattern {
                anchor: b"XY",
                after: [0, b'Q', 0, 0, 0, 0, 0, 0],
                after_mask: [0, 0xff, 0, 0, 0, 0, 0, 0],
                before: [b'W', 0, 0, 0, 0, 0, 0, 0],
                before_mask: [0xff, 0, 0, 0, 0, 0, 0, 0],
            },
        ];
        let idx = GramIndex::build_with(&pats);
        let w = b"ABCD.aZ.........ABCD.pZ.........ABCD.aY.........WXY.Q...-XY.Q...WXY.R...";
        let mut v = Vec::new();
        idx.scan::<()>(w, w.len(), &mut None, |i, p, _| {
            v.push((i, p));
            Ok(false)
        })
        .unwrap();
        // 16: the nibble differs; 32: the third byte; 57: the byte before
        // "XY"; 65: the byte after ??.
        assert_eq!(v, vec![(0, 0), (49, 1)]);
    }

    #[test]
    fn finds_gram_and_short_prefixes() {
        let pats: Vec<&[u8]> = vec![b"ABCDEF", b"ABCDxx", b"XY", b"XYZ", b"Q", b"0123"];
        let idx = GramIndex::build(&pats);
        let w = b"..ABCDEF..XYZ";
        // Patterns sharing a gram are told apart by their next bytes.
        assert_eq!(found(&idx, w, w.len()), vec![(2, 0), (10, 2), (10, 3)]);
        // Positions at or past the limit are left for the next window.
        assert_eq!(found(&idx, w, 10), vec![(2, 0)]);
        // A gram cut by the end of the window is not reported.
        assert_eq!(found(&idx, b"..ABC", 5), vec![]);
        // Near the end of the window only the bytes it has are compared:
        // "ABCDxx" is told apart by its 'x', "ABCDEF"'s 'F' is unknown.
        assert_eq!(found(&idx, b"..ABCDE", 7), vec![(2, 0)]);
        assert_eq!(found(&idx, b"..ABCD", 6), vec![(2, 0), (2, 1)]);
        // Every position of a long window, through the 8-at-a-time path and its tail.
        for len in 4..40 {
            for at in 0..=len - 4 {
                let mut w = vec![b'.'; len];
                w[at..at + 4].copy_from_slice(b"0123");
                assert_eq!(found(&idx, &w, len), vec![(at, 5)], "len {len} at {at}");
            }
        }
    }
}

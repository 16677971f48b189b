//! Whole-file hash signatures: `.hdb`/`.hdu` (MD5) and `.hsb`/`.hsu` (MD5,
//! SHA-1 or SHA-256, told apart by the digest length).
//!
//! A line is `HASH:SIZE:Name[:MinFL[:MaxFL]]` (`.mdb`/`.msb`:
//! `SIZE:HASH:Name...`); `SIZE` may be `*` (any size), which ClamAV accepts
//! only with a `MinFL` of at least 73 (except in `.imp`). Functionality
//! levels are otherwise ignored. Signatures are kept in sorted vectors of fixed-size entries (the
//! name is an index into the shared name arena), so a million SHA-256
//! signatures take about 44 MB, plus a sorted list of the distinct sizes per
//! hash type to decide cheaply whether an object needs that hash at all.

use rayon::prelude::*;
use std::sync::Arc;

/// Which kind of hash file a line comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFile {
    /// `.hdb` / `.hdu`: MD5 only.
    Hdb,
    /// `.hsb` / `.hsu`: MD5, SHA-1 or SHA-256 by hex length.
    Hsb,
    /// `.mdb` / `.msb` (and PUA `.mdu` / `.msu`): PE section hashes,
    /// `SIZE:HASH:Name`, any of the three digests.
    Mdb,
    /// `.imp`: import-table hashes, `HASH:SIZE:Name`; `*` always allowed
    /// (the others need a minimum functionality level of 73 for `*`, as
    /// `cli_loadhash`).
    Imp,
}

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    Md5,
    Sha1,
    Sha256,
}

impl HashKind {
    /// Digest length in bytes.
    #[allow(clippy::len_without_is_empty)] // a digest length is never zero
    pub fn len(self) -> usize {
        match self {
            HashKind::Md5 => 16,
            HashKind::Sha1 => 20,
            HashKind::Sha256 => 32,
        }
    }
}

/// One parsed hash line. `name` borrows from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedHash<'a> {
    pub kind: HashKind,
    /// The digest in its first `kind.len()` bytes.
    pub digest: [u8; 32],
    /// `None` for the `*` wildcard size.
    pub size: Option<u64>,
    pub name: &'a [u8],
}

/// Why a hash line was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashLineError {
    #[error("expected HASH:SIZE:Name, found {0} field(s)")]
    MissingFields(usize),
    #[error("hash is not hexadecimal")]
    BadHex,
    #[error("hash has {len} hex digits; {file} expects {expected}")]
    BadLength {
        len: usize,
        file: &'static str,
        expected: &'static str,
    },
    #[error("size {0:?} is neither a number nor '*'")]
    BadSize(String),
    #[error("empty signature name")]
    EmptyName,
    #[error("a '*' size needs a minimum functionality level of at least 73")]
    WildcardNeedsFlevel,
}

/// Parse one hash signature line (see the module docs).
pub fn parse_hash_line(line: &str, file: HashFile) -> Result<ParsedHash<'_>, HashLineError> {
    parse_hash_bytes(line.as_bytes(), file)
}

/// [`parse_hash_line`] on raw bytes (names need not be UTF-8).
pub fn parse_hash_bytes(line: &[u8], file: HashFile) -> Result<ParsedHash<'_>, HashLineError> {
    let line = line.trim_ascii();
    let missing = || HashLineError::MissingFields(line.split(|&b| b == b':').count());
    let c1 = memchr::memchr(b':', line).ok_or_else(missing)?;
    let (first, rest) = (&line[..c1], &line[c1 + 1..]);
    let c2 = memchr::memchr(b':', rest).ok_or_else(missing)?;
    let (second, rest) = (&rest[..c2], &rest[c2 + 1..]);
    // Fields after the name (functionality levels) are ignored, except
    // that `.mdb` wildcard sizes need a minimum level of 73.
    let (name, min_fl) = match memchr::memchr(b':', rest) {
        Some(c3) => {
            let fl = &rest[c3 + 1..];
            let fl = memchr::memchr(b':', fl).map_or(fl, |c| &fl[..c]);
            (&rest[..c3], parse_u64(fl))
        }
        None => (rest, None),
    };
    let (hash, size) = match file {
        HashFile::Mdb => (second, first),
        _ => (first, second),
    };
    let kind = match (file, hash.len()) {
        (_, 32) => HashKind::Md5,
        (HashFile::Hsb | HashFile::Mdb | HashFile::Imp, 40) => HashKind::Sha1,
        (HashFile::Hsb | HashFile::Mdb | HashFile::Imp, 64) => HashKind::Sha256,
        (HashFile::Hdb, len) => {
            return Err(HashLineError::BadLength {
                len,
                file: "hdb",
                expected: "32 (MD5)",
            });
        }
        (_, len) => {
            return Err(HashLineError::BadLength {
                len,
                file: match file {
                    HashFile::Mdb => "mdb",
                    HashFile::Imp => "imp",
                    _ => "hsb",
                },
                expected: "32, 40 or 64 (MD5, SHA-1, SHA-256)",
            });
        }
    };
    let mut digest = [0u8; 32];
    decode_hex(hash, &mut digest[..kind.len()]).ok_or(HashLineError::BadHex)?;
    let bad_size = || HashLineError::BadSize(String::from_utf8_lossy(size).into_owned());
    let size = if size == b"*" {
        // As `cli_loadhash`: every hash format but `.imp` needs a minimum
        // functionality level of at least 73 for a wildcard size.
        if file != HashFile::Imp && min_fl.is_none_or(|f| f < 73) {
            return Err(HashLineError::WildcardNeedsFlevel);
        }
        None
    } else {
        let n = parse_u64(size).ok_or_else(bad_size)?;
        // ClamAV refuses 0 and sizes from 2^32 - 1 for these formats.
        if matches!(file, HashFile::Mdb | HashFile::Imp) && (n == 0 || n >= 0xffff_ffff) {
            return Err(bad_size());
        }
        Some(n)
    };
    if name.is_empty() {
        return Err(HashLineError::EmptyName);
    }
    Ok(ParsedHash {
        kind,
        digest,
        size,
        name,
    })
}

const fn hex_table() -> [u8; 256] {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
}

/// Hex digit values; 0xff for non-hex bytes.
pub(crate) const HEX: [u8; 256] = hex_table();

/// Decode `2 * out.len()` hex digits into `out`.
pub(crate) fn decode_hex(hex: &[u8], out: &mut [u8]) -> Option<()> {
    if hex.len() != out.len() * 2 {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let hi = HEX[pair[0] as usize];
        let lo = HEX[pair[1] as usize];
        if (hi | lo) & 0xf0 != 0 {
            return None;
        }
        *o = (hi << 4) | lo;
    }
    Some(())
}

/// A plain decimal `u64` (no sign, no spaces), `None` on overflow.
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// The size value standing for `*`.
const ANY_SIZE: u64 = u64::MAX;

/// One hash signature: digest, size (or `*`) and name index. 28/32/44 bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HashEntry<const N: usize> {
    key: [u8; N],
    size_lo: u32,
    size_hi: u32,
    name: u32,
}

impl<const N: usize> HashEntry<N> {
    pub(crate) fn new(digest: &[u8], size: Option<u64>, name: u32) -> Option<HashEntry<N>> {
        let key: [u8; N] = digest.get(..N)?.try_into().ok()?;
        let size = size.unwrap_or(ANY_SIZE);
        Some(HashEntry {
            key,
            size_lo: size as u32,
            size_hi: (size >> 32) as u32,
            name,
        })
    }

    #[inline]
    fn prefix(&self) -> u64 {
        let mut p = [0u8; 8];
        let n = N.min(8);
        p[..n].copy_from_slice(&self.key[..n]);
        u64::from_be_bytes(p)
    }

    fn size(&self) -> u64 {
        (u64::from(self.size_hi) << 32) | u64::from(self.size_lo)
    }

    /// The name id (local to the parse block that made the entry).
    pub(crate) fn name_id(&self) -> u32 {
        self.name
    }

    /// Whether this entry's digest is `key`.
    pub(crate) fn key_is(&self, key: &[u8]) -> bool {
        self.key[..] == *key
    }

    /// Whether this entry stands for a signature of `size` (`None`: `*`).
    pub(crate) fn has_size(&self, size: Option<u64>) -> bool {
        self.size() == size.unwrap_or(ANY_SIZE)
    }
}

/// The entries of a sorted run whose digest is `key`.
pub(crate) fn equal_range<'r, const N: usize>(
    run: &'r [HashEntry<N>],
    key: &[u8],
) -> &'r [HashEntry<N>] {
    let Ok(key) = <[u8; N]>::try_from(key) else {
        return &[];
    };
    let start = run.partition_point(|e| e.key < key);
    let len = run[start..].partition_point(|e| e.key == key);
    &run[start..start + len]
}

/// Entries of a shared parse block that a later version of its file no
/// longer holds, by the block-local name id (bit set: dead). A reload that
/// found some lines of a changed file gone marks them here instead of
/// building the block's runs again (see `load::Delta`).
pub(crate) type Mask = Arc<Vec<u64>>;

/// Whether `mask` marks name id `id` dead.
#[inline]
pub(crate) fn is_dead(mask: Option<&Mask>, id: u32) -> bool {
    mask.is_some_and(|m| {
        m.get((id / 64) as usize)
            .is_some_and(|w| (w >> (id % 64)) & 1 == 1)
    })
}

/// One parse block's entries of one digest type, sorted by digest and
/// trimmed. Shared: a reload reuses the runs of unchanged files.
pub(crate) type Run<const N: usize> = Arc<Vec<HashEntry<N>>>;

/// Sort `entries` by digest, trim them and make them a [`Run`].
pub(crate) fn freeze_run<const N: usize>(mut entries: Vec<HashEntry<N>>) -> Run<N> {
    // Digests are near-uniform: compare an 8-byte big-endian prefix as an
    // integer and only fall back to the whole key on a tie.
    entries.sort_unstable_by(|x, y| x.prefix().cmp(&y.prefix()).then_with(|| x.key.cmp(&y.key)));
    entries.shrink_to_fit();
    Arc::new(entries)
}

/// All signatures of one digest type, kept in the sorted runs the parse
/// produced: each parse block's vector (one block is 4 MiB of signature
/// text, about 50,000 signatures), sorted by digest and trimmed, kept as it
/// is, with the base to add to its name ids and the block's [`Mask`] of
/// dead entries, if a reload left it one. A lookup binary-searches every
/// run (a few dozen even for ClamAV's main database: microseconds per
/// object); in exchange a load never holds the entries twice, which a
/// merged table needs while it is built, and a reload can share the runs
/// of files that did not change (see ARCHITECTURE.md, "Signature memory").
#[derive(Debug, Default)]
pub(crate) struct HashTable<const N: usize> {
    runs: Vec<(Run<N>, u32, Option<Mask>)>,
    len: usize,
    /// Distinct exact sizes, sorted.
    sizes: Vec<u64>,
    any_size: bool,
}

/// Runs being collected, each with the base of its name ids and its
/// block's mask of dead entries.
#[derive(Debug, Default)]
pub(crate) struct Buckets<const N: usize>(pub(crate) Vec<(Run<N>, u32, Option<Mask>)>);

impl<const N: usize> Buckets<N> {
    /// Share `run`, its name ids offset by `base`, without the entries
    /// `dead` marks.
    pub(crate) fn absorb(&mut self, run: &Run<N>, base: u32, dead: Option<&Mask>) {
        if !run.is_empty() {
            self.0.push((Arc::clone(run), base, dead.cloned()));
        }
    }
}

impl<const N: usize> HashTable<N> {
    /// Collect the sizes of the (already sorted) runs.
    pub(crate) fn build(chunks: Buckets<N>) -> HashTable<N> {
        let mut runs = chunks.0;
        runs.shrink_to_fit();
        // Distinct sizes of the live entries per run first (in parallel),
        // then of their union: sizes repeat (section sizes are
        // file-alignment multiples), so the union is small; sorting every
        // entry's size was a tenth of the load of a million section hashes.
        // The live entries are counted on the way.
        let per_run: Vec<(usize, Vec<u64>)> = runs
            .par_iter()
            .map(|(r, _, dead)| {
                let mut s: Vec<u64> = r
                    .iter()
                    .filter(|e| !is_dead(dead.as_ref(), e.name))
                    .map(HashEntry::size)
                    .collect();
                let live = s.len();
                s.sort_unstable();
                s.dedup();
                (live, s)
            })
            .collect();
        let len = per_run.iter().map(|(live, _)| live).sum();
        let mut sizes: Vec<u64> = per_run.into_iter().flat_map(|(_, s)| s).collect();
        sizes.sort_unstable();
        sizes.dedup();
        let any_size = sizes.last() == Some(&ANY_SIZE);
        if any_size {
            sizes.pop();
        }
        sizes.shrink_to_fit();
        HashTable {
            runs,
            len,
            sizes,
            any_size,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes the table's entries take in a compiled-set cache entry.
    pub(crate) fn cache_bytes(&self) -> usize {
        self.runs
            .iter()
            .map(|(r, _, _)| r.len() * entry_bytes(N))
            .sum()
    }

    /// Whether some signature could match an object of this size.
    pub(crate) fn wants(&self, size: u64) -> bool {
        self.any_size || self.sizes.binary_search(&size).is_ok()
    }

    /// Push the name ids of every signature matching `digest` and `size`.
    pub(crate) fn lookup(&self, digest: &[u8], size: u64, out: &mut Vec<u32>) {
        for (run, base, dead) in &self.runs {
            for e in equal_range(run, digest) {
                let s = e.size();
                if (s == ANY_SIZE || s == size) && !is_dead(dead.as_ref(), e.name) {
                    out.push(e.name.wrapping_add(*base));
                }
            }
        }
    }
}

/// Bytes per entry of a run in the compiled-set cache: the digest, then
/// `size_lo`, `size_hi` and `name` little-endian.
const fn entry_bytes(n: usize) -> usize {
    n + 12
}

/// A run in the cache: its entries as one byte string.
struct RunBytes<'a, const N: usize>(&'a [HashEntry<N>]);

impl<const N: usize> serde::Serialize for RunBytes<'_, N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = Vec::with_capacity(self.0.len() * entry_bytes(N));
        for e in self.0 {
            out.extend_from_slice(&e.key);
            out.extend_from_slice(&e.size_lo.to_le_bytes());
            out.extend_from_slice(&e.size_hi.to_le_bytes());
            out.extend_from_slice(&e.name.to_le_bytes());
        }
        s.serialize_bytes(&out)
    }
}

fn run_from_bytes<const N: usize>(b: &[u8]) -> Result<Run<N>, String> {
    let chunks = b.chunks_exact(entry_bytes(N));
    if !chunks.remainder().is_empty() {
        return Err(format!("hash run of {} bytes", b.len()));
    }
    let le = |c: &[u8], at: usize| {
        u32::from_le_bytes([c[N + at], c[N + at + 1], c[N + at + 2], c[N + at + 3]])
    };
    let mut v = Vec::with_capacity(b.len() / entry_bytes(N));
    for c in chunks {
        let mut key = [0u8; N];
        key.copy_from_slice(&c[..N]);
        v.push(HashEntry {
            key,
            size_lo: le(c, 0),
            size_hi: le(c, 4),
            name: le(c, 8),
        });
    }
    Ok(Arc::new(v))
}

type RunRepr = (crate::cache::codec::ByteBuf, u32, Option<Vec<u64>>);

impl<const N: usize> HashTable<N> {
    /// Write the table to the compiled-set cache: a header, then one
    /// segment per run (the entries as one byte string).
    pub(crate) fn write_cache(&self, w: &mut crate::cache::SegWriter<'_>) -> std::io::Result<()> {
        w.put(&(
            self.runs.len() as u64,
            self.len as u64,
            &self.sizes,
            self.any_size,
        ))?;
        for (run, base, mask) in &self.runs {
            w.put(&(RunBytes(run), *base, mask.as_deref()))?;
        }
        Ok(())
    }

    /// A table [`HashTable::write_cache`] wrote.
    pub(crate) fn read_cache(r: &mut crate::cache::SegReader<'_>) -> Result<HashTable<N>, String> {
        let (n, len, sizes, any_size): (u64, u64, Vec<u64>, bool) = r.get()?;
        let mut runs = Vec::new();
        for _ in 0..n {
            let (bytes, base, mask): RunRepr = r.get()?;
            runs.push((run_from_bytes::<N>(&bytes.0)?, base, mask.map(Arc::new)));
        }
        Ok(HashTable {
            runs,
            len: usize::try_from(len).map_err(|e| e.to_string())?,
            sizes,
            any_size,
        })
    }
}

impl HashDb {
    pub(crate) fn write_cache(&self, w: &mut crate::cache::SegWriter<'_>) -> std::io::Result<()> {
        self.md5.write_cache(w)?;
        self.sha1.write_cache(w)?;
        self.sha256.write_cache(w)
    }

    pub(crate) fn read_cache(r: &mut crate::cache::SegReader<'_>) -> Result<HashDb, String> {
        Ok(HashDb {
            md5: HashTable::read_cache(r)?,
            sha1: HashTable::read_cache(r)?,
            sha256: HashTable::read_cache(r)?,
        })
    }
}

/// The three hash tables.
#[derive(Debug, Default)]
pub(crate) struct HashDb {
    pub(crate) md5: HashTable<16>,
    pub(crate) sha1: HashTable<20>,
    pub(crate) sha256: HashTable<32>,
}

impl HashDb {
    pub(crate) fn build(b: HashBuckets) -> HashDb {
        HashDb {
            md5: HashTable::build(b.md5),
            sha1: HashTable::build(b.sha1),
            sha256: HashTable::build(b.sha256),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.md5.len() + self.sha1.len() + self.sha256.len() == 0
    }

    /// Bytes the three tables' entries take in a compiled-set cache entry.
    pub(crate) fn cache_bytes(&self) -> usize {
        self.md5.cache_bytes() + self.sha1.cache_bytes() + self.sha256.cache_bytes()
    }

    /// Whether any table has a signature for this size (or `*`).
    pub(crate) fn wants(&self, size: u64) -> bool {
        self.md5.wants(size) || self.sha1.wants(size) || self.sha256.wants(size)
    }

    /// Hash what `feed` produces with every digest some signature of
    /// `size` could need, and push the matching name ids. `feed` gets a
    /// sink for the bytes and returns the size when it is only known at
    /// the end (import strings); `size` is then `None`.
    pub(crate) fn scan_with<E>(
        &self,
        size: Option<u64>,
        out: &mut Vec<u32>,
        feed: impl FnOnce(&mut dyn FnMut(&[u8])) -> Result<u64, E>,
    ) -> Result<(), E> {
        use md5::Md5;
        use sha1::Sha1;
        use sha2::{Digest, Sha256};
        let need = |len: usize, wants: bool| len > 0 && size.is_none_or(|_| wants);
        let sz = size.unwrap_or(0);
        let mut m = need(self.md5.len(), self.md5.wants(sz)).then(Md5::new);
        let mut s1 = need(self.sha1.len(), self.sha1.wants(sz)).then(Sha1::new);
        let mut s2 = need(self.sha256.len(), self.sha256.wants(sz)).then(Sha256::new);
        if m.is_none() && s1.is_none() && s2.is_none() {
            return Ok(());
        }
        let total = feed(&mut |d: &[u8]| {
            if let Some(h) = m.as_mut() {
                h.update(d);
            }
            if let Some(h) = s1.as_mut() {
                h.update(d);
            }
            if let Some(h) = s2.as_mut() {
                h.update(d);
            }
        })?;
        let size = size.unwrap_or(total);
        if let Some(h) = m {
            self.md5.lookup(&h.finalize(), size, out);
        }
        if let Some(h) = s1 {
            self.sha1.lookup(&h.finalize(), size, out);
        }
        if let Some(h) = s2 {
            self.sha256.lookup(&h.finalize(), size, out);
        }
        Ok(())
    }
}

/// Entries of the three digest types being collected.
#[derive(Debug, Default)]
pub(crate) struct HashBuckets {
    pub(crate) md5: Buckets<16>,
    pub(crate) sha1: Buckets<20>,
    pub(crate) sha256: Buckets<32>,
}

/// One block's parsed entries of the three digest types.
#[derive(Debug, Default)]
pub(crate) struct HashVecs {
    pub(crate) md5: Vec<HashEntry<16>>,
    pub(crate) sha1: Vec<HashEntry<20>>,
    pub(crate) sha256: Vec<HashEntry<32>>,
}

impl HashVecs {
    /// Add one parsed line under name id `id`; false if it did not fit.
    pub(crate) fn push(&mut self, p: &ParsedHash<'_>, id: u32) -> bool {
        match p.kind {
            HashKind::Md5 => HashEntry::new(&p.digest, p.size, id).map(|e| self.md5.push(e)),
            HashKind::Sha1 => HashEntry::new(&p.digest, p.size, id).map(|e| self.sha1.push(e)),
            HashKind::Sha256 => HashEntry::new(&p.digest, p.size, id).map(|e| self.sha256.push(e)),
        }
        .is_some()
    }
}

impl HashVecs {
    /// Sort and share the three vectors.
    pub(crate) fn freeze(self) -> HashRuns {
        HashRuns {
            md5: freeze_run(self.md5),
            sha1: freeze_run(self.sha1),
            sha256: freeze_run(self.sha256),
        }
    }
}

/// One block's sorted runs of the three digest types.
#[derive(Debug, Default, Clone)]
pub(crate) struct HashRuns {
    pub(crate) md5: Run<16>,
    pub(crate) sha1: Run<20>,
    pub(crate) sha256: Run<32>,
}

impl HashBuckets {
    pub(crate) fn absorb(&mut self, v: &HashRuns, base: u32, dead: Option<&Mask>) {
        self.md5.absorb(&v.md5, base, dead);
        self.sha1.absorb(&v.sha1, base, dead);
        self.sha256.absorb(&v.sha256, base, dead);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5_EMPTY: &str = "d41d8cd98f00b204e9800998ecf8427e";

    #[test]
    fn parses_hdb_md5_with_size_and_extra_fields() {
        let line = format!("{MD5_EMPTY}:0:Test.Empty:73");
        let p = parse_hash_line(&line, HashFile::Hdb).unwrap();
        assert_eq!(p.kind, HashKind::Md5);
        assert_eq!(hex::encode(&p.digest[..16]), MD5_EMPTY);
        assert_eq!(p.size, Some(0));
        assert_eq!(p.name, b"Test.Empty");
    }

    #[test]
    fn parses_star_size_and_uppercase_hex() {
        let line = format!("{}:*:Any.Size:73", MD5_EMPTY.to_uppercase());
        let p = parse_hash_line(&line, HashFile::Hdb).unwrap();
        assert_eq!(p.size, None);
        assert_eq!(hex::encode(&p.digest[..16]), MD5_EMPTY);
        // Without a functionality level of 73 or more, clamscan refuses it.
        let m = MD5_EMPTY;
        for (l, f) in [
            (format!("{m}:*:Any"), HashFile::Hdb),
            (format!("{m}:*:Any:72"), HashFile::Hdb),
            (format!("{m}:*:Any"), HashFile::Hsb),
            (format!("*:{m}:Any:72"), HashFile::Mdb),
        ] {
            assert_eq!(
                parse_hash_line(&l, f),
                Err(HashLineError::WildcardNeedsFlevel),
                "{l}"
            );
        }
    }

    #[test]
    fn hsb_picks_kind_by_length() {
        let sha1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
        let sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            parse_hash_line(&format!("{sha1}:0:S1"), HashFile::Hsb)
                .unwrap()
                .kind,
            HashKind::Sha1
        );
        assert_eq!(
            parse_hash_line(&format!("{sha256}:*:S256:73:255"), HashFile::Hsb)
                .unwrap()
                .kind,
            HashKind::Sha256
        );
        assert_eq!(
            parse_hash_line(&format!("{MD5_EMPTY}:0:M"), HashFile::Hsb)
                .unwrap()
                .kind,
            HashKind::Md5
        );
        // SHA-256 in an .hdb is an error.
        assert!(matches!(
            parse_hash_line(&format!("{sha256}:0:S"), HashFile::Hdb),
            Err(HashLineError::BadLength { len: 64, .. })
        ));
    }

    #[test]
    fn rejects_malformed_lines() {
        assert_eq!(
            parse_hash_line("abc", HashFile::Hdb),
            Err(HashLineError::MissingFields(1))
        );
        assert_eq!(
            parse_hash_line(&format!("{MD5_EMPTY}:12"), HashFile::Hdb),
            Err(HashLineError::MissingFields(2))
        );
        let bad_hex = "z41d8cd98f00b204e9800998ecf8427e";
        assert_eq!(
            parse_hash_line(&format!("{bad_hex}:1:N"), HashFile::Hdb),
            Err(HashLineError::BadHex)
        );
        assert!(matches!(
            parse_hash_line(&format!("{MD5_EMPTY}:-1:N"), HashFile::Hdb),
            Err(HashLineError::BadSize(_))
        ));
        assert!(matches!(
            parse_hash_line(
                &format!("{MD5_EMPTY}:99999999999999999999999:N"),
                HashFile::Hdb
            ),
            Err(HashLineError::BadSize(_))
        ));
        assert_eq!(
            parse_hash_line(&format!("{MD5_EMPTY}:1:"), HashFile::Hdb),
            Err(HashLineError::EmptyName)
        );
    }

    #[test]
    fn mdb_lines_put_the_size_first_and_gate_wildcards_on_flevel() {
        let l1 = format!("28160:{MD5_EMPTY}:Sect.Md5");
        let p = parse_hash_line(&l1, HashFile::Mdb).unwrap();
        assert_eq!(
            (p.kind, p.size, p.name),
            (HashKind::Md5, Some(28160), &b"Sect.Md5"[..])
        );
        let sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let l2 = format!("*:{sha256}:Sect.Any:73");
        let p = parse_hash_line(&l2, HashFile::Mdb).unwrap();
        assert_eq!((p.kind, p.size), (HashKind::Sha256, None));
        for bad in [
            format!("*:{sha256}:Sect.Any"),
            format!("*:{sha256}:Sect.Any:72"),
        ] {
            assert_eq!(
                parse_hash_line(&bad, HashFile::Mdb),
                Err(HashLineError::WildcardNeedsFlevel)
            );
        }
        assert!(matches!(
            parse_hash_line(&format!("0:{MD5_EMPTY}:Zero"), HashFile::Mdb),
            Err(HashLineError::BadSize(_))
        ));
        // .imp: hash first, wildcard without a level.
        let l3 = format!("{MD5_EMPTY}:*:Imp.Any");
        let p = parse_hash_line(&l3, HashFile::Imp).unwrap();
        assert_eq!(p.size, None);
    }

    fn table<const N: usize>(entries: Vec<HashEntry<N>>) -> HashTable<N> {
        let mut b = Buckets::default();
        b.absorb(&freeze_run(entries), 0, None);
        HashTable::build(b)
    }

    #[test]
    fn lookup_searches_every_run() {
        let (k1, k2, k3) = ([1u8; 20], [2u8; 20], [3u8; 20]);
        let mut b = Buckets::<20>::default();
        b.absorb(
            &freeze_run(vec![
                HashEntry::new(&k3, Some(1), 0).unwrap(),
                HashEntry::new(&k1, Some(1), 1).unwrap(),
            ]),
            0,
            None,
        );
        b.absorb(&freeze_run(Vec::new()), 2, None);
        b.absorb(
            &freeze_run(vec![
                HashEntry::new(&k1, None, 0).unwrap(),
                HashEntry::new(&k2, Some(2), 1).unwrap(),
            ]),
            10,
            None,
        );
        let t = HashTable::build(b);
        assert_eq!(t.len(), 4);
        let mut out = vec![];
        t.lookup(&k1, 1, &mut out);
        assert_eq!(out, vec![1, 10]);
        out.clear();
        t.lookup(&k2, 2, &mut out);
        t.lookup(&k3, 1, &mut out);
        assert_eq!(out, vec![11, 0]);
        out.clear();
        t.lookup(&[4u8; 20], 1, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn lookup_and_sizes_skip_entries_a_mask_marks_dead() {
        let (k1, k2) = ([1u8; 16], [2u8; 16]);
        let run = freeze_run(vec![
            HashEntry::new(&k1, Some(5), 0).unwrap(),
            HashEntry::new(&k1, Some(5), 1).unwrap(),
            HashEntry::new(&k2, Some(9), 2).unwrap(),
        ]);
        // Name 1 and name 2 dead.
        let mask: Mask = Arc::new(vec![0b110]);
        let mut b = Buckets::<16>::default();
        b.absorb(&run, 100, Some(&mask));
        let t = HashTable::build(b);
        assert_eq!(t.len(), 1);
        assert!(t.wants(5) && !t.wants(9));
        let mut out = vec![];
        t.lookup(&k1, 5, &mut out);
        t.lookup(&k2, 9, &mut out);
        assert_eq!(out, vec![100]);
        assert_eq!(equal_range(&run, &k1).len(), 2);
        assert!(equal_range(&run, &[3u8; 16]).is_empty());
        assert!(is_dead(Some(&mask), 2) && !is_dead(Some(&mask), 0) && !is_dead(None, 2));
        assert!(!is_dead(Some(&mask), 700));
    }

    #[test]
    fn table_lookup_honours_size_and_wildcard() {
        let k1 = [1u8; 16];
        let k2 = [2u8; 16];
        let t = table::<16>(vec![
            HashEntry::new(&k2, None, 7).unwrap(),
            HashEntry::new(&k1, Some(100), 3).unwrap(),
            HashEntry::new(&k1, Some(5_000_000_000), 4).unwrap(),
        ]);
        assert!(t.wants(100) && t.wants(5_000_000_000) && t.wants(1));
        let mut out = vec![];
        t.lookup(&k1, 100, &mut out);
        assert_eq!(out, vec![3]);
        out.clear();
        t.lookup(&k1, 5_000_000_000, &mut out);
        assert_eq!(out, vec![4]);
        out.clear();
        t.lookup(&k1, 99, &mut out);
        assert!(out.is_empty());
        t.lookup(&k2, 12345, &mut out);
        assert_eq!(out, vec![7]);

        let exact = table::<16>(vec![HashEntry::new(&k1, Some(10), 0).unwrap()]);
        assert!(exact.wants(10) && !exact.wants(11));

        // Keys sharing the 8-byte sort prefix are still fully ordered.
        let mut a = [7u8; 32];
        let mut b = [7u8; 32];
        a[31] = 2;
        b[31] = 1;
        let t = table::<32>(vec![
            HashEntry::new(&a, Some(1), 0).unwrap(),
            HashEntry::new(&b, Some(1), 1).unwrap(),
            HashEntry::new(&[0u8; 32], Some(1), 2).unwrap(),
        ]);
        for (k, id) in [(a, 0), (b, 1), ([0u8; 32], 2)] {
            let mut out = vec![];
            t.lookup(&k, 1, &mut out);
            assert_eq!(out, vec![id]);
        }
        assert!(exact.wants(10) && !exact.wants(11));
    }
}

//! The compiled-set cache: a loaded signature set written to disk, so that
//! the next load of the same files reads the compiled set instead of
//! parsing and compiling every signature again.
//!
//! An entry ([`moat_core::disk_cache`]: magic, digest, atomic replacement,
//! one entry per configured set) is named by two digests: the configured
//! paths, and everything the compiled set depends on: the identity of
//! each signature file the loader would read (path, device, inode, size,
//! modification and change times, as a reload decides that a file did not
//! change; the change time moves on every write and cannot be set back),
//! the load options, this crate's version, the format of the entry and the
//! identity of the running executable (its size and modification time, so
//! that a rebuilt binary, whose structures may have changed, never reads an
//! older build's entry). Hashing the files' content instead was a third of
//! reading the set from the cache at ClamAV's scale. The body is the compiled
//! set in `postcard` form; PCRE subsignatures hold their source and are
//! compiled again when read.
//!
//! Measured (BENCHMARKS.md, "Compiled-set cache"): reading an entry is a
//! fraction of a compile; a miss costs the compile plus writing the entry.

use crate::LoadOptions;
use crate::hashdb::HashDb;
use crate::ldb::LdbSet;
use crate::names::NameArena;
use crate::ndb::NdbSet;
use moat_core::disk_cache::{self, CacheError, Kind, field};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub use moat_core::disk_cache::CacheOutcome;

const KIND: Kind = Kind {
    magic: b"MOATBIC1",
    ext: "mbc",
    max_entry: 16 << 30,
};
/// Bumped when the body's layout changes in a way the executable identity
/// would not reveal (it always does for a rebuilt binary).
const FORMAT: &str = "4";

/// The compiled parts of an engine, as cached.
pub(crate) struct Compiled {
    pub names: NameArena,
    pub hashes: HashDb,
    pub allow: HashDb,
    pub mdb: HashDb,
    pub imp: HashDb,
    pub ndb: NdbSet,
    pub ldb: LdbSet,
    pub meta: Meta,
}

/// What the load reported, and the one flag derived from the set.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Meta {
    pub layer_sigs: bool,
    pub signature_version: String,
    pub signatures: BTreeMap<String, u64>,
    pub unsupported: BTreeMap<String, u64>,
    pub skipped: BTreeMap<String, u64>,
    pub load_errors: Vec<String>,
    pub error_total: u64,
}

/// The compiled parts of a loaded engine, borrowed for writing.
pub(crate) struct CompiledRef<'a> {
    pub names: &'a NameArena,
    pub hashes: &'a HashDb,
    pub allow: &'a HashDb,
    pub mdb: &'a HashDb,
    pub imp: &'a HashDb,
    pub ndb: &'a NdbSet,
    pub ldb: &'a LdbSet,
    pub meta: MetaRef<'a>,
}

#[derive(serde::Serialize)]
pub(crate) struct MetaRef<'a> {
    pub layer_sigs: bool,
    pub signature_version: &'a str,
    pub signatures: &'a BTreeMap<String, u64>,
    pub unsupported: &'a BTreeMap<String, u64>,
    pub skipped: &'a BTreeMap<String, u64>,
    pub load_errors: &'a [String],
    pub error_total: u64,
}

/// Writes an entry's body as a sequence of segments, each a length and a
/// postcard value: the large tables go one run or block per segment, so
/// that neither writing nor reading an entry holds more than one of them
/// beside the compiled set itself.
pub(crate) struct SegWriter<'a> {
    w: &'a mut dyn Write,
}

impl<'a> SegWriter<'a> {
    pub(crate) fn new(w: &'a mut dyn Write) -> SegWriter<'a> {
        SegWriter { w }
    }

    /// One segment: its length (from a counting pass), then the value
    /// streamed through a small buffer. Serialised into a buffer of its
    /// own first, a segment's bytes were written to fresh pages and
    /// copied again (BENCHMARKS.md, "Cold load: the anchors' elements in
    /// one pool").
    pub(crate) fn put<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> std::io::Result<()> {
        let size = postcard::serialize_with_flavor(v, postcard::ser_flavors::Size::default())
            .map_err(std::io::Error::other)?;
        self.w.write_all(&(size as u64).to_le_bytes())?;
        let out = std::io::BufWriter::with_capacity(1 << 16, &mut *self.w);
        postcard::to_io(v, out).map_err(std::io::Error::other)?;
        Ok(())
    }

    /// One segment of fixed-size records, converted from `v` through a
    /// small buffer: its length is known without a counting pass, and the
    /// array is never copied whole (BENCHMARKS.md, "Cold load: the
    /// anchors' elements in one pool").
    pub(crate) fn put_records<W: codec::Word>(&mut self, v: &[W]) -> std::io::Result<()> {
        let len = v
            .len()
            .checked_mul(W::SIZE)
            .ok_or_else(|| std::io::Error::other("record segment too long"))?;
        self.w.write_all(&(len as u64).to_le_bytes())?;
        let mut buf = [0u8; 8192];
        for chunk in v.chunks((buf.len() / W::SIZE).max(1)) {
            let n = chunk.len() * W::SIZE;
            let out = buf
                .get_mut(..n)
                .ok_or_else(|| std::io::Error::other("record larger than the buffer"))?;
            codec::put_records(chunk, out);
            self.w.write_all(out)?;
        }
        Ok(())
    }
}

/// Reads what a [`SegWriter`] wrote.
pub(crate) struct SegReader<'a> {
    r: &'a mut dyn Read,
    buf: Vec<u8>,
    /// Body bytes not yet read: a segment's length is checked against it
    /// before its buffer is sized (a corrupt length cannot allocate past
    /// the entry).
    left: u64,
}

impl SegReader<'_> {
    pub(crate) fn get<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, String> {
        self.segment(decode)
    }

    /// A segment [`SegWriter::put_records`] wrote.
    pub(crate) fn get_records<W: codec::Word>(&mut self) -> Result<Vec<W>, String> {
        self.segment(codec::get_records)
    }

    /// The next segment, read into the reader's buffer and decoded by `f`.
    fn segment<T>(&mut self, f: impl FnOnce(&[u8]) -> Result<T, String>) -> Result<T, String> {
        let mut buf = std::mem::take(&mut self.buf);
        let v = self.read_into(&mut buf).and_then(|()| f(&buf));
        self.buf = buf;
        v
    }

    fn read_into(&mut self, buf: &mut Vec<u8>) -> Result<(), String> {
        let mut len = [0u8; 8];
        self.r.read_exact(&mut len).map_err(|e| e.to_string())?;
        let len = u64::from_le_bytes(len);
        self.left = self.left.saturating_sub(8);
        if len > self.left {
            return Err("segment longer than the rest of the entry".into());
        }
        self.left -= len;
        let n = usize::try_from(len).map_err(|e| e.to_string())?;
        // Sized once: growing the buffer as read (doubling, copying) was a
        // tenth of reading a 3.6 MB entry.
        buf.clear();
        buf.reserve_exact(n);
        #[allow(clippy::disallowed_methods)] // bounded by take(len) and by the entry's length
        let got = (&mut self.r)
            .take(len)
            .read_to_end(buf)
            .map_err(|e| e.to_string())?;
        if got != n {
            return Err("truncated segment".into());
        }
        Ok(())
    }
}

/// A segment's value from its bytes.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    postcard::from_bytes(b).map_err(|e| e.to_string())
}

/// The cache key of a set: `None` when the set cannot be cached (a file
/// could not be read: the load reports it).
pub(crate) fn key(
    paths: &[PathBuf],
    inputs: &[PathBuf],
    opts: &LoadOptions,
) -> Option<disk_cache::Key> {
    let mut s = Sha256::new();
    for p in paths {
        field(&mut s, p.as_os_str().as_encoded_bytes());
    }
    let mut c = Sha256::new();
    field(&mut c, env!("CARGO_PKG_VERSION").as_bytes());
    field(&mut c, FORMAT.as_bytes());
    field(&mut c, std::env::consts::ARCH.as_bytes());
    field(&mut c, executable_identity().as_bytes());
    field(
        &mut c,
        format!(
            "pua={} verify={} all_match={} keys={:?}",
            opts.detect_pua, opts.verify_signatures, opts.all_match, opts.public_keys
        )
        .as_bytes(),
    );
    for p in paths {
        field(&mut c, p.as_os_str().as_encoded_bytes());
    }
    for p in inputs {
        use std::os::unix::fs::MetadataExt;
        field(&mut c, p.as_os_str().as_encoded_bytes());
        let m = std::fs::metadata(p).ok()?;
        for v in [
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime() as u64,
            m.mtime_nsec() as u64,
            m.ctime() as u64,
            m.ctime_nsec() as u64,
        ] {
            c.update(v.to_le_bytes());
        }
    }
    Some(disk_cache::Key::new(s, c))
}

/// The running executable's size and modification time.
fn executable_identity() -> String {
    std::env::current_exe()
        .and_then(std::fs::metadata)
        .map(|m| {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{}:{mtime}", m.len())
        })
        .unwrap_or_default()
}

/// Entries below this size are always written: reading them takes a few
/// milliseconds (3.6 MB in under 10 ms, BENCHMARKS.md "Compiled-set cache").
const ALWAYS_WORTH: usize = 32 << 20;
/// What reading an entry costs per byte, measured: 476 MB read and decoded
/// in about 1 s (ClamAV's scale, warm page cache).
const READ_BYTES_PER_SEC: f64 = 480e6;

/// Whether an entry of about `bytes` is worth writing after a compile that
/// took `compile`: small entries always; large ones only when reading is
/// expected to take at most half the compile. At ClamAV's scale (6.5 million
/// signatures, almost all hashes) the entry is 476 MB, reading it took what
/// compiling did and the first run paid 1.6 to 2.6 s more to write it.
pub(crate) fn worth_writing(bytes: usize, compile: std::time::Duration) -> bool {
    bytes < ALWAYS_WORTH || compile.as_secs_f64() >= 2.0 * bytes as f64 / READ_BYTES_PER_SEC
}

/// The cached set for `key`, `Ok(None)` when there is none.
pub(crate) fn read(dir: &Path, key: &disk_cache::Key) -> Result<Option<Compiled>, CacheError> {
    disk_cache::read_with(dir, &KIND, key, |r, len| {
        let mut r = SegReader {
            r,
            buf: Vec::new(),
            left: len,
        };
        // A decoding panic (an entry the structures' own checks refuse) is
        // a corrupt entry, not a crash.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Ok(Compiled {
                meta: r.get()?,
                names: NameArena::read_cache(&mut r)?,
                hashes: HashDb::read_cache(&mut r)?,
                allow: HashDb::read_cache(&mut r)?,
                mdb: HashDb::read_cache(&mut r)?,
                imp: HashDb::read_cache(&mut r)?,
                ndb: NdbSet::read_cache(&mut r)?,
                ldb: r.get()?,
            })
        }))
        .unwrap_or_else(|_| Err("decoding panicked".into()))
    })
}

/// Write the entry for `key`.
pub(crate) fn write(
    dir: &Path,
    key: &disk_cache::Key,
    c: &CompiledRef<'_>,
) -> Result<(), CacheError> {
    disk_cache::write_with(dir, &KIND, key, |w| {
        let mut w = SegWriter::new(w);
        w.put(&c.meta)?;
        c.names.write_cache(&mut w)?;
        for h in [c.hashes, c.allow, c.mdb, c.imp] {
            h.write_cache(&mut w)?;
        }
        c.ndb.write_cache(&mut w)?;
        w.put(c.ldb)
    })
}

/// The default cache directory of commands other than `moat serve`:
/// `$XDG_CACHE_HOME/moat/builtin`, else `~/.cache/moat/builtin`.
pub fn default_cache_dir() -> Option<PathBuf> {
    disk_cache::default_dir("builtin")
}

/// serde codecs for the compiled structures' large arrays: written as one
/// byte string each rather than element by element.
pub(crate) mod codec {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    /// A byte string read back.
    pub(crate) struct ByteBuf(pub Vec<u8>);

    impl<'de> serde::Deserialize<'de> for ByteBuf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteBuf, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = ByteBuf;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a byte string")
                }
                fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v.to_vec()))
                }
                fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v))
                }
            }
            d.deserialize_byte_buf(V)
        }
    }

    /// `Vec<u8>` as a byte string.
    pub(crate) mod bytes {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            <ByteBuf as serde::Deserialize>::deserialize(d).map(|b| b.0)
        }
    }

    /// A fixed-size word array, little-endian.
    pub(crate) trait Word: Copy {
        const SIZE: usize;
        /// Write the record into `out`, exactly [`Word::SIZE`] bytes.
        fn put(self, out: &mut [u8]);
        fn get(b: &[u8]) -> Self;
    }

    impl Word for u64 {
        const SIZE: usize = 8;
        fn put(self, out: &mut [u8]) {
            out.copy_from_slice(&self.to_le_bytes());
        }
        fn get(b: &[u8]) -> u64 {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        }
    }

    impl Word for u16 {
        const SIZE: usize = 2;
        fn put(self, out: &mut [u8]) {
            out.copy_from_slice(&self.to_le_bytes());
        }
        fn get(b: &[u8]) -> u16 {
            u16::from_le_bytes([b[0], b[1]])
        }
    }

    impl Word for u32 {
        const SIZE: usize = 4;
        fn put(self, out: &mut [u8]) {
            out.copy_from_slice(&self.to_le_bytes());
        }
        fn get(b: &[u8]) -> u32 {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        }
    }

    /// A pattern byte as its value and mask: a pattern's bytes (`Vec<ByteM>`)
    /// decode in one pass into one allocation ([`records`]), where postcard's
    /// element-by-element decoding was most of reading a body-signature set.
    impl Word for crate::ndb::parse::ByteM {
        const SIZE: usize = 2;
        fn put(self, out: &mut [u8]) {
            out.copy_from_slice(&[self.val, self.mask]);
        }
        fn get(b: &[u8]) -> Self {
            crate::ndb::parse::ByteM {
                val: b[0],
                mask: b[1],
            }
        }
    }

    /// Little-endian fields of a fixed-size record, by byte offset (the
    /// caller's record size covers every offset it reads).
    pub(crate) struct Fields<'a>(pub &'a [u8]);

    impl Fields<'_> {
        pub(crate) fn at<W: Word>(&self, at: usize) -> W {
            W::get(&self.0[at..at + W::SIZE])
        }
    }

    /// Writes little-endian fields of a fixed-size record, by byte offset.
    pub(crate) struct FieldsMut<'a>(pub &'a mut [u8]);

    impl FieldsMut<'_> {
        pub(crate) fn set<W: Word>(&mut self, at: usize, w: W) {
            w.put(&mut self.0[at..at + W::SIZE]);
        }
    }

    /// Write `v` into `out` (`v.len() * W::SIZE` bytes), one record after
    /// another.
    pub(crate) fn put_records<W: Word>(v: &[W], out: &mut [u8]) {
        for (&w, rec) in v.iter().zip(out.chunks_exact_mut(W::SIZE)) {
            w.put(rec);
        }
    }

    /// The records `b` holds, refused unless it is a whole number of them.
    pub(crate) fn get_records<W: Word>(b: &[u8]) -> Result<Vec<W>, String> {
        if !b.len().is_multiple_of(W::SIZE) {
            return Err(format!(
                "{} bytes are no whole number of {}-byte records",
                b.len(),
                W::SIZE
            ));
        }
        Ok(b.chunks_exact(W::SIZE).map(W::get).collect())
    }

    /// Call `f` with the records' bytes, one after another: in a buffer on
    /// the stack when they are few (a pattern's bytes: most of the
    /// byte strings of a body-signature set, each written on its own).
    fn with_record_bytes<W: Word, R>(v: &[W], f: impl FnOnce(&[u8]) -> R) -> R {
        const STACK: usize = 512;
        let n = v.len() * W::SIZE;
        let fill = |out: &mut [u8]| put_records(v, out);
        if n <= STACK {
            let mut buf = [0u8; STACK];
            fill(&mut buf[..n]);
            f(&buf[..n])
        } else {
            let mut buf = vec![0u8; n];
            fill(&mut buf);
            f(&buf)
        }
    }

    /// `Vec<W>` as one byte string of fixed-size records.
    pub(crate) mod records {
        use super::*;

        #[allow(clippy::ptr_arg)] // serde's `with` passes the field as it is
        pub(crate) fn serialize<S: Serializer, W: Word>(
            v: &Vec<W>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            with_record_bytes(v, |b| s.serialize_bytes(b))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>, W: Word>(
            d: D,
        ) -> Result<Vec<W>, D::Error> {
            struct V<W>(std::marker::PhantomData<W>);
            impl<W: Word> Visitor<'_> for V<W> {
                type Value = Vec<W>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    write!(f, "records of {} bytes", W::SIZE)
                }
                fn visit_bytes<E: Error>(self, b: &[u8]) -> Result<Vec<W>, E> {
                    super::get_records(b).map_err(E::custom)
                }
            }
            d.deserialize_bytes(V::<W>(std::marker::PhantomData))
        }
    }

    /// `Box<[W; N]>` as a byte string of `N` little-endian words.
    pub(crate) mod words {
        use super::*;

        #[allow(clippy::borrowed_box)] // serde's `with` passes the field as it is
        pub(crate) fn serialize<S: Serializer, W: Word, const N: usize>(
            v: &Box<[W; N]>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            with_record_bytes(&v[..], |b| s.serialize_bytes(b))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>, W: Word, const N: usize>(
            d: D,
        ) -> Result<Box<[W; N]>, D::Error> {
            let v: Vec<W> = super::records::deserialize(d)?;
            let n = v.len();
            v.into_boxed_slice()
                .try_into()
                .map_err(|_| D::Error::custom(format!("word array of {n} words, {N} expected")))
        }
    }
}

#[cfg(test)]
mod worth_tests {
    use super::worth_writing;
    use std::time::Duration;

    #[test]
    fn a_large_entry_is_written_only_when_reading_it_saves_half_the_compile() {
        // Small entries: always, however quick the compile.
        assert!(worth_writing(4 << 20, Duration::from_micros(1)));
        // ClamAV's scale: 476 MB after a one-second compile is not worth it.
        assert!(!worth_writing(476_000_000, Duration::from_millis(1050)));
        // The same entry after a compile four times as long is.
        assert!(worth_writing(476_000_000, Duration::from_secs(4)));
    }
}

#[cfg(test)]
mod codec_tests {
    use crate::ndb::parse::ByteM;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct T {
        #[serde(with = "super::codec::records")]
        words: Vec<u64>,
        #[serde(with = "super::codec::records")]
        seq: Vec<ByteM>,
        #[serde(with = "super::codec::words")]
        fixed: Box<[u16; 3]>,
    }

    fn sample() -> T {
        T {
            words: vec![0, 1, u64::MAX, 0x0102_0304_0506_0708],
            seq: vec![
                ByteM::exact(0x41),
                ByteM {
                    val: 0x40,
                    mask: 0xf0,
                },
            ],
            fixed: Box::new([1, 0xffff, 7]),
        }
    }

    #[test]
    fn fixed_size_codecs_read_back_what_they_wrote() {
        let b = postcard::to_stdvec(&sample()).unwrap();
        assert_eq!(super::decode::<T>(&b).unwrap(), sample());
    }

    #[test]
    fn fixed_size_codecs_refuse_a_partial_record() {
        // The same layout with one byte short in each byte string in turn.
        #[derive(serde::Serialize)]
        struct Raw<'a>(
            #[serde(with = "serde_bytes_like")] &'a [u8],
            #[serde(with = "serde_bytes_like")] &'a [u8],
            #[serde(with = "serde_bytes_like")] &'a [u8],
        );
        mod serde_bytes_like {
            pub fn serialize<S: serde::Serializer>(v: &&[u8], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(v)
            }
        }
        let (w, q, f) = (vec![0u8; 32], vec![0u8; 4], vec![0u8; 6]);
        assert!(super::decode::<T>(&postcard::to_stdvec(&Raw(&w, &q, &f)).unwrap()).is_ok());
        for bad in [
            Raw(&w[..31], &q, &f),
            Raw(&w, &q[..3], &f),
            Raw(&w, &q, &f[..5]),
        ] {
            let err = super::decode::<T>(&postcard::to_stdvec(&bad).unwrap());
            assert!(err.is_err(), "a partial record decoded");
        }
    }
}

#[cfg(test)]
pub(crate) mod ndb_segment_tests {
    use super::{SegReader, SegWriter};
    use crate::ndb::{NdbSet, set_from_lines};

    /// `set` as the cache writes it.
    pub(crate) fn written(set: &NdbSet) -> Vec<u8> {
        let mut out = Vec::new();
        set.write_cache(&mut SegWriter::new(&mut out)).unwrap();
        out
    }

    /// A set read back from [`written`]'s bytes.
    pub(crate) fn read(bytes: &[u8]) -> Result<NdbSet, String> {
        let mut r = bytes;
        NdbSet::read_cache(&mut SegReader {
            r: &mut r,
            buf: Vec::new(),
            left: bytes.len() as u64,
        })
    }

    #[test]
    fn body_signatures_read_back_scan_as_before() {
        let (set, errs) = set_from_lines(&[
            "A:0:*:41424344454647",
            "B:0:*:3132??3435{2-4}3839",
            "C:0:*:6162(6364|6566)!(6768)*7172737475",
        ]);
        assert!(errs.is_empty());
        let back = read(&written(&set)).unwrap();
        for data in [
            &b"..ABCDEFG.."[..],
            b"--12x45ab89--",
            b"abcdxxqrstu",
            b"abcdghqrstu",
            b"nothing here",
        ] {
            assert_eq!(
                back.scan_slice(data, None).unwrap(),
                set.scan_slice(data, None).unwrap()
            );
        }
        assert!(!back.scan_slice(b"..ABCDEFG..", None).unwrap().is_empty());
        assert!(!back.scan_slice(b"abcdxxqrstu", None).unwrap().is_empty());
    }

    #[test]
    fn record_segments_read_back_and_a_partial_record_is_refused() {
        let v: Vec<u32> = (0..5000).collect();
        let mut out = Vec::new();
        let mut w = SegWriter::new(&mut out);
        w.put_records(&v).unwrap();
        w.put_records::<u32>(&[]).unwrap();
        w.put_records(&[1u32, 2, 3]).unwrap();
        let mut r = &out[..];
        let mut seg = SegReader {
            r: &mut r,
            buf: Vec::new(),
            left: out.len() as u64,
        };
        assert_eq!(seg.get_records::<u32>().unwrap(), v);
        assert!(seg.get_records::<u32>().unwrap().is_empty());
        // Twelve bytes are no whole number of eight-byte records.
        let err = seg.get_records::<u64>().unwrap_err();
        assert!(err.contains("whole number"), "{err}");
    }

    #[test]
    fn a_truncated_set_is_refused() {
        let (set, _) = set_from_lines(&["A:0:*:41424344454647", "B:0:*:3132??3435{2-4}3839"]);
        let w = written(&set);
        for cut in [8, w.len() / 2, w.len() - 1] {
            assert!(read(&w[..cut]).is_err(), "cut at {cut} decoded");
        }
    }
}

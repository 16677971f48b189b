//! Content to scan: bytes in memory or an open file read with positional reads.
//!
//! Temporary files are anonymous (`tempfile::tempfile_in`: O_TMPFILE or
//! create-then-unlink, mode 0600), so they carry no name from user input and
//! disappear when the last handle closes, on every path including a crash.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Scannable content. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub enum Blob {
    Memory(Arc<Vec<u8>>),
    File { file: Arc<File>, len: u64 },
}

impl Blob {
    pub fn from_vec(v: Vec<u8>) -> Blob {
        Blob::Memory(Arc::new(v))
    }

    /// Open an existing file. Its length is taken once, now; reads past a
    /// later truncation return short reads, never a crash.
    pub fn open(path: &Path) -> io::Result<Blob> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(Blob::File {
            file: Arc::new(file),
            len: meta.len(),
        })
    }

    pub fn len(&self) -> u64 {
        match self {
            Blob::Memory(v) => v.len() as u64,
            Blob::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, when the blob lives in memory.
    pub fn as_slice(&self) -> Option<&[u8]> {
        match self {
            Blob::Memory(v) => Some(v.as_slice()),
            Blob::File { .. } => None,
        }
    }

    /// Read up to `buf.len()` bytes at `offset`; returns how many were read
    /// (fewer only at the end of the content).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Blob::Memory(v) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(v.len());
                let n = buf.len().min(v.len() - start);
                buf[..n].copy_from_slice(&v[start..start + n]);
                Ok(n)
            }
            Blob::File { file, len } => {
                let mut done = 0;
                let max = (*len).saturating_sub(offset).min(buf.len() as u64) as usize;
                while done < max {
                    match file.read_at(&mut buf[done..max], offset + done as u64) {
                        Ok(0) => break,
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                }
                Ok(done)
            }
        }
    }

    /// A fresh reader from the start. Independent of other readers.
    pub fn reader(&self) -> BlobReader {
        BlobReader {
            blob: self.clone(),
            pos: 0,
        }
    }

    /// SHA-256 of the whole content, streamed.
    pub fn sha256(&self) -> io::Result<[u8; 32]> {
        let mut h = Sha256::new();
        match self {
            Blob::Memory(v) => h.update(v.as_slice()),
            Blob::File { .. } => {
                let mut r = self.reader();
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = r.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
        }
        Ok(h.finalize().into())
    }

    /// The first `n` bytes (fewer if the content is shorter).
    pub fn head(&self, n: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; n.min(self.len() as usize)];
        let got = self.read_at(0, &mut buf)?;
        buf.truncate(got);
        Ok(buf)
    }
}

/// A `Read + Seek` view of a [`Blob`] with its own position.
#[derive(Debug)]
pub struct BlobReader {
    blob: Blob,
    pos: u64,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.blob.read_at(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlobReader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let len = self.blob.len() as i128;
        let new = match pos {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => len + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if new < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before start",
            ));
        }
        self.pos = new as u64;
        Ok(self.pos)
    }
}

/// Collects streamed content: in memory up to `threshold` bytes, then in an
/// anonymous 0600 temporary file. Hashes (SHA-256) as it goes and refuses to
/// grow past `limit` (an `io::ErrorKind::FileTooLarge`-like error, see [`Spool::is_over_limit`]).
pub struct Spool {
    mem: Vec<u8>,
    file: Option<File>,
    len: u64,
    threshold: usize,
    limit: u64,
    dir: PathBuf,
    /// `None` once [`Spool::unhashed`] turned hashing off.
    hasher: Option<Sha256>,
    over: bool,
}

/// The error message a spool returns when content exceeds its limit.
pub const SPOOL_LIMIT_MSG: &str = "content exceeds the size limit";

impl Spool {
    /// `dir` is where a temporary file goes once `threshold` is passed.
    pub fn new(threshold: usize, limit: u64, dir: impl Into<PathBuf>) -> Spool {
        Spool {
            mem: Vec::new(),
            file: None,
            len: 0,
            threshold,
            limit,
            dir: dir.into(),
            hasher: Some(Sha256::new()),
            over: false,
        }
    }

    /// Don't hash while writing (for content whose digest nobody needs, e.g.
    /// a multipart body whose parts are hashed one by one). Finish with
    /// [`Spool::finish_blob`]; [`Spool::finish`] would read the content back
    /// to hash it.
    pub fn unhashed(mut self) -> Spool {
        self.hasher = None;
        self
    }

    /// Reserve memory for `expected` bytes (capped at the threshold), so a
    /// body of known length is not copied while its buffer grows.
    pub fn reserve(mut self, expected: u64) -> Spool {
        let n = usize::try_from(expected)
            .unwrap_or(usize::MAX)
            .min(self.threshold);
        self.mem.reserve_exact(n);
        self
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether a write was refused because the content passed the limit.
    pub fn is_over_limit(&self) -> bool {
        self.over
    }

    /// Finish: the content and its SHA-256.
    pub fn finish(mut self) -> io::Result<(Blob, [u8; 32])> {
        let hasher = self.hasher.take();
        let blob = self.finish_blob()?;
        let digest = match hasher {
            Some(h) => h.finalize().into(),
            None => blob.sha256()?,
        };
        Ok((blob, digest))
    }

    /// Finish without the digest.
    pub fn finish_blob(mut self) -> io::Result<Blob> {
        match self.file.take() {
            None => Ok(Blob::Memory(Arc::new(std::mem::take(&mut self.mem)))),
            Some(mut f) => {
                f.flush()?;
                f.seek(SeekFrom::Start(0))?;
                Ok(Blob::File {
                    file: Arc::new(f),
                    len: self.len,
                })
            }
        }
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.len + buf.len() as u64 > self.limit {
            self.over = true;
            return Err(io::Error::other(SPOOL_LIMIT_MSG));
        }
        if let Some(h) = &mut self.hasher {
            h.update(buf);
        }
        self.len += buf.len() as u64;
        if self.file.is_none() && self.mem.len() + buf.len() > self.threshold {
            let mut f = tempfile::tempfile_in(&self.dir)?;
            f.write_all(&self.mem)?;
            self.mem = Vec::new();
            self.file = Some(f);
        }
        match &mut self.file {
            Some(f) => f.write_all(buf)?,
            None => self.mem.extend_from_slice(buf),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_stays_in_memory_under_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::new(16, 100, dir.path());
        s.write_all(b"hello").unwrap();
        let (b, d) = s.finish().unwrap();
        assert_eq!(b.as_slice(), Some(&b"hello"[..]));
        assert_eq!(hex::encode(d), hex::encode(Sha256::digest(b"hello")));
    }

    #[test]
    fn spool_spills_to_an_unnamed_file_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::new(4, 1000, dir.path());
        s.write_all(b"hello world, spilled").unwrap();
        let (b, _) = s.finish().unwrap();
        assert!(b.as_slice().is_none());
        assert_eq!(b.len(), 20);
        let mut out = vec![0u8; 5];
        assert_eq!(b.read_at(6, &mut out).unwrap(), 5);
        assert_eq!(&out, b"world");
        // The temporary file has no name in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn unhashed_spool_keeps_content_and_finish_still_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::new(4, 100, dir.path()).unhashed().reserve(1 << 30);
        s.write_all(b"hello world").unwrap();
        let (b, d) = s.finish().unwrap();
        assert_eq!(b.len(), 11);
        assert_eq!(hex::encode(d), hex::encode(Sha256::digest(b"hello world")));
        let mut s = Spool::new(64, 100, dir.path()).unhashed().reserve(11);
        s.write_all(b"hello world").unwrap();
        let b = s.finish_blob().unwrap();
        assert_eq!(b.as_slice(), Some(&b"hello world"[..]));
    }

    #[test]
    fn spool_refuses_past_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::new(4, 8, dir.path());
        assert!(s.write_all(b"0123456789").is_err());
        assert!(s.is_over_limit());
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // bounded by take()
    fn reader_reads_and_seeks() {
        let b = Blob::from_vec(b"abcdef".to_vec());
        let mut r = b.reader();
        r.seek(SeekFrom::End(-2)).unwrap();
        let mut s = String::new();
        r.take(100).read_to_string(&mut s).unwrap();
        assert_eq!(s, "ef");
        assert_eq!(b.read_at(10, &mut [0u8; 4]).unwrap(), 0);
    }
}

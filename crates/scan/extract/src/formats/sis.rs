//! SIS: Symbian OS installation packages (EPOC, before Symbian 9), read as
//! ClamAV reads them (`libclamav/sis.c`: `cli_scansis`, `real_scansis`), so
//! that signatures written against ClamAV's output match here too.
//!
//! A SIS file starts with four UIDs, the third `0x10000419`, and a 68-byte
//! header: the number of languages and of file records, flags (bit 3: the
//! files are stored, not zlib-compressed) and where the language list and
//! the file records are. Each file record holds, per language, the
//! length, offset and original length of one version of the file; every
//! version with data is a member, its zlib stream inflated unless the
//! package is stored. Members are named as ClamAV names the files it
//! extracts: `sis00`, `sis01`... in the order written.
//!
//! ClamAV's quirks, reproduced (the oracle is clamscan):
//! * Its type signature finds the UID at offsets 8 to 20, but only a file
//!   whose third UID (offset 8) is it is read as this format.
//! * The records are read with a buffered reader that, however it refills,
//!   amounts to a cursor: a 32-bit word is read if 4 bytes remain, a skip
//!   succeeds if it does not pass the end; anything else ends the records.
//! * A file record is the ER6 layout (type, details, name lengths and
//!   offsets, then per language the lengths, the offsets, the original
//!   lengths, then 8 bytes skipped) whatever the package's version.
//!   A language-file record (type 1) skips as many *bytes* as there are
//!   languages; an option record (2) skips its count times languages times
//!   8 (in 32 bits); `#if`/`#elsif` (3, 4) skip their size; the others
//!   skip nothing.
//! * A version is skipped when its length is 0, its offset is inside the
//!   84-byte header, it is past the end of the file, it is larger than
//!   the member size limit (ClamAV's file size limit) or it does not
//!   inflate completely into its buffer. That buffer is 3 times the
//!   compressed length (computed in 32 bits) when the original length
//!   fits in it and that size is within the limit, else the original
//!   length, else the version is skipped; an original length of 0 with
//!   the tripled length over the limit makes ClamAV's allocation of 0
//!   bytes fail, which ends the package.
//! * Nothing else in the header (names, dependencies, capabilities)
//!   changes what is extracted: ClamAV only prints it.
//! * Symbian 9 packages (first UID `0x10201a7a`): ClamAV's
//!   `real_scansis9x` reads its first field at offset 0, which is that UID
//!   rather than the `Contents` field type (12) it wants, so it never
//!   extracts anything; neither does this, and [`is_sis`] leaves them out.
//!
//! As for any file, ClamAV then looks for archives embedded in the raw
//! bytes (`scanraw`); the walker does that after this reader.
//!
//! Bounded: at most 65 535 records of at most 99 versions each are read;
//! each member is streamed (inflated once to check it ends where ClamAV's
//! `uncompress` would succeed, then again into the walker) and limited by
//! the member size and ratio limits; the compressed bytes read and the
//! output of failed inflations count against the walk's expanded-bytes
//! budget, so a package that points every record at one large stream ends.
//! Where ClamAV skips a version silently, it is a problem here (corrupt or
//! a limit): content that was not scanned.

use super::{INPUT_BUFFER, read_at_full};
use crate::walk::{Member, Step, Walker};
use crate::{Limits, WalkError};
use moat_core::Blob;
use std::io::{self, Read};

/// The third UID (`0x10000419`, little-endian) of an EPOC SIS file.
pub(crate) const UID3: [u8; 4] = [0x19, 0x04, 0x00, 0x10];
/// The UIDs and the header: no file data may start inside it.
const HEADER_END: u64 = 16 + 68;
/// ClamAV's `MAXLANG`: the languages it names (a package has fewer).
const MAX_LANG: u16 = 100;
/// The flag of a package whose files are stored, not compressed.
const NOT_COMPRESSED: u16 = 0x0008;
/// File type `FTnull`: a record for a file the package does not carry.
const FT_NULL: u32 = 4;
/// Most problems one package records for its files; then one summary.
const MAX_PROBLEMS: u32 = 64;

/// How many leading bytes ClamAV's file typing looks at (`CL_FILE_MBUFF_SIZE`).
pub(crate) const TYPE_BUFFER: usize = 1024;

/// ClamAV's magic numbers at offset 0 (`0:0:` type signatures) short
/// enough for a package's first UID, an application's, to start with:
/// such a file gets that type before any SIS signature is tried. (GZip,
/// BMP, BZip, MP3, executables, ARJ, old cpio, Flash.)
const STATIC_MAGICS: &[&[u8]] = &[
    b"\x1f\x8b",
    b"BM",
    b"BZh",
    b"ID3",
    b"MZ",
    b"\x60\xea",
    b"\x71\xc7",
    b"\xc7\x71",
    b"\xff\xfb\x90",
    b"FWS",
];

/// Content ClamAV reads as an EPOC SIS file: its type signature
/// (`1:8,12:19040010`) matched with the UID `0x10000419` at offset 8, and
/// not overruled: the file does not start with one of [`STATIC_MAGICS`],
/// and among the type signatures matched in the first 1024 bytes the last
/// one of a higher type, an SFX type or an executable wins ([`retyped`]).
pub(crate) fn is_sis(head: &[u8]) -> bool {
    let head = &head[..head.len().min(TYPE_BUFFER)];
    head.get(8..12) == Some(&UID3[..])
        && !STATIC_MAGICS.iter().any(|m| head.starts_with(m))
        && !retyped(head)
}

/// Whether one of ClamAV's built-in type signatures that take precedence
/// over SIS's (`cli_ac_scanbuff` in `AC_SCAN_FT` mode takes a match whose
/// type is higher, an SFX type or `CL_TYPE_MSEXE`) matches in `head`: an
/// executable (`MZ`, then `PE\0\0` 60 to 300 bytes after it: the file is
/// then typed an executable), an SFX archive (zip, rar, cab, 7z, arj: the
/// file is then plain data, since `cli_determine_fmap_type` leaves SFX
/// types to the raw scan), NSIS or AutoIt data, a PDF header, a boot
/// sector's `55 aa` at 510. (Its HTML and mail signatures, text that a
/// package's first kilobyte does not hold in practice, are not checked.)
fn retyped(head: &[u8]) -> bool {
    use memchr::memmem::find_iter;
    const ANYWHERE: &[&[u8]] = &[
        b"PK\x03\x04",
        b"Rar!\x1a\x07\x00",
        b"MSCF\0\0\0\0",
        b"7z\xbc\xaf\x27\x1c",
        b"\xef\xbe\xad\xdeNullsoftInst",
    ];
    if ANYWHERE
        .iter()
        .any(|m| memchr::memmem::find(head, m).is_some())
    {
        return true;
    }
    let pe = find_iter(head, b"MZ")
        .any(|i| (i + 62..=i + 302).any(|j| head.get(j..j + 4) == Some(&b"PE\0\0"[..])));
    let arj =
        find_iter(head, b"\x60\xea").any(|i| matches!(head.get(i + 9..i + 11), Some([0..=2, 2])));
    let pdf = find_iter(head, b"%PDF-")
        .chain(find_iter(head, b"%pdf-"))
        .any(|i| head.get(i + 6) == Some(&b'.'));
    let autoit = find_iter(head, super::autoit::MAGIC)
        .any(|i| matches!(head.get(i + 23), Some(b'5' | b'6')));
    let mbr = head.get(510..512) == Some(&[0x55, 0xaa][..]);
    pe || arj || pdf || autoit || mbr
}

/// ClamAV's `GETD2`/`SKIP` over the record table: a cursor that reads
/// 32-bit words and skips forward, failing at the end of the file.
struct Cursor<'b> {
    blob: &'b Blob,
    at: u64,
}

impl Cursor<'_> {
    fn word(&mut self) -> io::Result<Option<u32>> {
        let mut b = [0u8; 4];
        if read_at_full(self.blob, self.at, &mut b)? < 4 {
            return Ok(None);
        }
        self.at += 4;
        Ok(Some(u32::from_le_bytes(b)))
    }

    fn skip(&mut self, n: u32) -> bool {
        let to = self.at + u64::from(n);
        if to > self.blob.len() {
            return false;
        }
        self.at = to;
        true
    }
}

/// Per-file problems of one package, so that a package of a million broken
/// records does not make a million problems.
struct Problems {
    count: u32,
}

impl Problems {
    fn corrupt<E>(&mut self, w: &mut Walker<'_, E>, location: &str, detail: &str) {
        self.count += 1;
        if self.count <= MAX_PROBLEMS {
            w.corrupt(location, format!("sis: {detail}"));
        }
    }

    fn limit<E>(&mut self, w: &mut Walker<'_, E>, location: &str, what: &str) {
        self.count += 1;
        if self.count <= MAX_PROBLEMS {
            w.limit(location, what);
        }
    }

    fn summary<E>(&self, w: &mut Walker<'_, E>, location: &str) {
        if self.count > MAX_PROBLEMS {
            w.corrupt(
                location,
                format!(
                    "sis: {} more files could not be extracted",
                    self.count - MAX_PROBLEMS
                ),
            );
        }
    }
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let mut problems = Problems { count: 0 };
    let result = records(w, blob, location, depth, &mut problems);
    problems.summary(w, location);
    result
}

fn records<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
    problems: &mut Problems,
) -> Result<(), WalkError<E>> {
    let mut h = [0u8; HEADER_END as usize];
    if read_at_full(blob, 0, &mut h).map_err(WalkError::Io)? < h.len() {
        w.corrupt(location, "sis: header cut short");
        return Ok(());
    }
    let (le16, le32) = (moat_exe::le16, moat_exe::le32);
    let langs = le16(&h, 16 + 2);
    let files = le16(&h, 16 + 4);
    let flags = le16(&h, 16 + 20);
    let plangs = le32(&h, 16 + 32);
    let pfiles = le32(&h, 16 + 36);
    if langs == 0 || langs >= MAX_LANG {
        w.corrupt(location, format!("sis: {langs} languages"));
        return Ok(());
    }
    // ClamAV needs the language list in the file, though it only prints it.
    if u64::from(plangs) + 2 * u64::from(langs) > blob.len() {
        w.corrupt(location, "sis: language list past the end");
        return Ok(());
    }
    if u64::from(pfiles) < HEADER_END {
        w.corrupt(location, "sis: file records inside the header");
        return Ok(());
    }
    let compressed = flags & NOT_COMPRESSED == 0;
    let mut cur = Cursor {
        blob,
        at: u64::from(pfiles),
    };
    let mut z = Zlib::new(blob);
    let mut written: u32 = 0;
    // Compressed bytes read and failed inflations' output, counted against
    // the expanded-bytes budget with what the walker counts.
    let mut work: u64 = 0;
    let cut = |w: &mut Walker<'_, E>| w.corrupt(location, "sis: file records cut short");
    for _ in 0..files {
        if w.stopped {
            return Ok(());
        }
        let Some(pkgtype) = cur.word().map_err(WalkError::Io)? else {
            cut(w);
            return Ok(());
        };
        let skip = match pkgtype {
            // A language-dependent file: ClamAV skips one byte per language.
            1 => u32::from(langs),
            0 => {
                // Type, options, source name length and offset, destination
                // name length and offset, then lengths, offsets and original
                // lengths per language.
                let mut words = vec![0u32; 6 + 3 * usize::from(langs)];
                for v in words.iter_mut() {
                    let Some(x) = cur.word().map_err(WalkError::Io)? else {
                        cut(w);
                        return Ok(());
                    };
                    *v = x;
                }
                let ftype = words[0];
                let n = usize::from(langs);
                let (lens, rest) = words[6..].split_at(n);
                let (ptrs, olens) = rest.split_at(n);
                if ftype != FT_NULL {
                    for ((&len, &ptr), &olen) in lens.iter().zip(ptrs).zip(olens) {
                        let version = Version { ptr, len, olen };
                        match version.extract(
                            w,
                            blob,
                            location,
                            depth,
                            compressed,
                            &mut z,
                            &mut written,
                            &mut work,
                            problems,
                        )? {
                            Step::Next | Step::ReadFailed => {}
                            Step::Stop => return Ok(()),
                        }
                    }
                }
                8
            }
            2 => {
                let Some(count) = cur.word().map_err(WalkError::Io)? else {
                    cut(w);
                    return Ok(());
                };
                count.wrapping_mul(u32::from(langs) * 8)
            }
            3 | 4 => {
                let Some(size) = cur.word().map_err(WalkError::Io)? else {
                    cut(w);
                    return Ok(());
                };
                size
            }
            _ => 0,
        };
        if !cur.skip(skip) {
            cut(w);
            return Ok(());
        }
    }
    Ok(())
}

/// One language's version of a file, as its record gives it.
struct Version {
    ptr: u32,
    len: u32,
    olen: u32,
}

impl Version {
    /// Hand this version to the walker as `sisNN` if ClamAV extracts it.
    /// [`Step::Stop`] ends the package.
    #[allow(clippy::too_many_arguments)]
    fn extract<E>(
        &self,
        w: &mut Walker<'_, E>,
        blob: &Blob,
        location: &str,
        depth: u32,
        compressed: bool,
        z: &mut Zlib<'_>,
        written: &mut u32,
        work: &mut u64,
        problems: &mut Problems,
    ) -> Result<Step, WalkError<E>> {
        let name = format!("sis{:02}", *written);
        let here = format!("{location}>{name}");
        let l = w.limits;
        let len = u64::from(self.len);
        if len == 0 {
            return Ok(Step::Next);
        }
        if u64::from(self.ptr) < HEADER_END {
            problems.corrupt(w, &here, "file data inside the header");
            return Ok(Step::Next);
        }
        if len > l.max_member_size {
            problems.limit(w, &here, "member_size");
            return Ok(Step::Next);
        }
        let ptr = u64::from(self.ptr);
        if ptr + len > blob.len() {
            problems.corrupt(w, &here, "file data past the end");
            return Ok(Step::Next);
        }
        let step = if compressed {
            // ClamAV's output buffer, with its file size limit as ours.
            let tripled = self.len.wrapping_mul(3);
            let capacity = if self.olen <= tripled && u64::from(tripled) <= l.max_member_size {
                u64::from(tripled)
            } else if u64::from(self.olen) <= l.max_member_size {
                u64::from(self.olen)
            } else {
                problems.limit(w, &here, "member_size");
                return Ok(Step::Next);
            };
            if capacity == 0 {
                // cli_max_malloc(0) fails: ClamAV gives up the package.
                problems.corrupt(w, &here, "original size 0");
                return Ok(Step::Stop);
            }
            *work = work.saturating_add(len);
            if w.report.expanded_bytes.saturating_add(*work) > l.max_expanded_bytes {
                w.limit(location, "expanded_bytes");
                w.stopped = true;
                return Ok(Step::Stop);
            }
            let (max, what) = bound(l, len, capacity);
            z.open(ptr, len);
            let size = match z.measure(max) {
                Ok(n) if n <= max => n,
                Ok(n) => {
                    *work = work.saturating_add(n);
                    if what == "capacity" {
                        // uncompress: Z_BUF_ERROR, "Unpacking failure".
                        problems.corrupt(w, &here, "file larger than its original size");
                    } else {
                        problems.limit(w, &here, what);
                    }
                    return Ok(Step::Next);
                }
                Err((n, e)) => {
                    *work = work.saturating_add(n);
                    problems.corrupt(w, &here, &format!("inflate: {e}"));
                    return Ok(Step::Next);
                }
            };
            z.open(ptr, len);
            let mut reader = (&mut *z).take(size);
            w.member(
                Member {
                    reader: &mut reader,
                    name: &name,
                    stored_size: len,
                    declared_size: Some(size),
                },
                location,
                depth + 1,
            )?
        } else {
            let mut reader = Range {
                blob,
                at: ptr,
                left: len,
            };
            w.member(
                Member {
                    reader: &mut reader,
                    name: &name,
                    stored_size: len,
                    declared_size: Some(len),
                },
                location,
                depth + 1,
            )?
        };
        *written += 1;
        Ok(step)
    }
}

/// The most a version stored in `stored` bytes may inflate to: ClamAV's
/// buffer (`capacity`), or less when the member size or ratio limit says
/// so; and which of them it is.
fn bound(l: &Limits, stored: u64, capacity: u64) -> (u64, &'static str) {
    let ratio = stored
        .max(1)
        .saturating_mul(l.max_ratio)
        .max(l.ratio_min_size);
    [
        (capacity, "capacity"),
        (l.max_member_size, "member_size"),
        (ratio, "ratio"),
    ]
    .into_iter()
    .min_by_key(|&(n, _)| n)
    .unwrap_or((capacity, "capacity"))
}

/// `left` bytes of a blob from `at`.
struct Range<'b> {
    blob: &'b Blob,
    at: u64,
    left: u64,
}

impl Read for Range<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.blob.read_at(self.at, &mut buf[..want])?;
        self.at += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

/// zlib's `uncompress` as a stream over a range of a blob: the output up to
/// the end of the zlib stream (its checksum checked), or an error where
/// `uncompress` fails (bad data, input that ends first). What follows the
/// stream in the range is ignored, as `uncompress` ignores it.
struct Zlib<'b> {
    blob: &'b Blob,
    at: u64,
    end: u64,
    inflate: flate2::Decompress,
    input: Vec<u8>,
    pos: usize,
    filled: usize,
    done: bool,
    /// Where [`Zlib::measure`] inflates to, kept between versions (a
    /// package can hold thousands of them).
    scratch: Vec<u8>,
}

impl<'b> Zlib<'b> {
    fn new(blob: &'b Blob) -> Self {
        Zlib {
            blob,
            at: 0,
            end: 0,
            inflate: flate2::Decompress::new(true),
            input: Vec::new(),
            pos: 0,
            filled: 0,
            done: false,
            scratch: Vec::new(),
        }
    }

    /// Start over on the stream in `[at, at + len)`.
    fn open(&mut self, at: u64, len: u64) {
        self.inflate.reset(true);
        self.at = at;
        self.end = at + len;
        self.pos = 0;
        self.filled = 0;
        self.done = false;
    }

    /// How many bytes the stream inflates to, reading no further than one
    /// past `max`; or how many came before it failed, and why.
    fn measure(&mut self, max: u64) -> Result<u64, (u64, io::Error)> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.resize(INPUT_BUFFER, 0);
        let mut total: u64 = 0;
        let res = loop {
            if total > max {
                break Ok(total);
            }
            match self.read(&mut buf) {
                Ok(0) => break Ok(total),
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err((total, e)),
            }
        };
        self.scratch = buf;
        res
    }
}

impl Read for Zlib<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.done {
                return Ok(0);
            }
            if self.pos == self.filled && self.at < self.end {
                let want = usize::try_from(self.end - self.at)
                    .unwrap_or(usize::MAX)
                    .min(INPUT_BUFFER);
                self.input.resize(want, 0);
                let n = read_at_full(self.blob, self.at, &mut self.input)?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                self.at += n as u64;
                self.pos = 0;
                self.filled = n;
            }
            let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(
                    &self.input[self.pos..self.filled],
                    out,
                    flate2::FlushDecompress::None,
                )
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let used = (self.inflate.total_in() - in0) as usize;
            let made = (self.inflate.total_out() - out0) as usize;
            self.pos += used;
            if status == flate2::Status::StreamEnd {
                self.done = true;
            }
            if made > 0 {
                return Ok(made);
            }
            if self.done {
                return Ok(0);
            }
            if used == 0 && self.pos == self.filled && self.at >= self.end {
                // uncompress: Z_BUF_ERROR with room left, a Z_DATA_ERROR.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "zlib stream cut short",
                ));
            }
            if used == 0 && self.pos < self.filled {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "zlib stream makes no progress",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WalkReport;
    use crate::tests::limit_whats as whats;
    use std::io::Write;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A one-language package of `files` (stored as given), each record
    /// declaring the given original length.
    fn package(stored: bool, files: &[(&[u8], u32)]) -> Vec<u8> {
        let pfiles = 86u32;
        let pdata = pfiles + 48 * files.len() as u32;
        let mut v = Vec::new();
        for uid in [0x1000_0001u32, 0x1000_3a12, 0x1000_0419, 0] {
            v.extend(uid.to_le_bytes());
        }
        for h in [0u16, 1, files.len() as u16, 0, 0, 0, 0, 0] {
            v.extend(h.to_le_bytes());
        }
        v.extend(200u32.to_le_bytes());
        for h in [if stored { 8u16 } else { 0 }, 0, 1, 0] {
            v.extend(h.to_le_bytes());
        }
        for w in [0u32, 84, pfiles, 0, 0, 0, 0, 0, 0, 0] {
            v.extend(w.to_le_bytes());
        }
        v.extend(1u16.to_le_bytes());
        let mut at = pdata;
        for (data, olen) in files {
            for w in [0u32, 0, 0, 0, 0, 0, 0, data.len() as u32, at, *olen, 0, 0] {
                v.extend(w.to_le_bytes());
            }
            at += data.len() as u32;
        }
        for (data, _) in files {
            v.extend(*data);
        }
        v
    }

    /// The walk's report and (location, content) of what it handed over.
    fn run(data: Vec<u8>, limits: &Limits) -> (WalkReport, Vec<(String, Vec<u8>)>) {
        let (report, seen) = crate::tests::run(data, "p.sis", limits);
        (report, seen.into_iter().map(|(l, _, c)| (l, c)).collect())
    }

    #[test]
    fn compressed_and_stored_files_are_members_named_as_clamav_names_them() {
        let z = zlib(b"hello, symbian");
        let (r, seen) = run(package(false, &[(&z, 14), (&z, 14)]), &Limits::default());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(
            seen,
            vec![
                ("p.sis>sis00".to_string(), b"hello, symbian".to_vec()),
                ("p.sis>sis01".to_string(), b"hello, symbian".to_vec()),
            ]
        );
        let (r, seen) = run(package(true, &[(b"raw bytes", 9)]), &Limits::default());
        assert!(r.problems.is_empty());
        assert_eq!(
            seen,
            vec![("p.sis>sis00".to_string(), b"raw bytes".to_vec())]
        );
    }

    #[test]
    fn detection_is_clamav_file_typing() {
        let p = package(true, &[(b"x", 1)]);
        assert!(is_sis(&p));
        // Symbian 9 (the UID elsewhere), executables, SFX archives in the
        // first kilobyte.
        let mut nine = p.clone();
        nine[8..12].copy_from_slice(&[0; 4]);
        nine[12..16].copy_from_slice(&UID3);
        assert!(!is_sis(&nine));
        for magic in [&b"MZ"[..], b"BM", b"\x1f\x8b"] {
            let mut m = p.clone();
            m[..magic.len()].copy_from_slice(magic);
            assert!(!is_sis(&m), "{magic:?}");
        }
        for tail in [&b"PK\x03\x04"[..], b"%PDF-1.4", b"MSCF\0\0\0\0"] {
            assert!(!is_sis(&[&p[..], tail].concat()), "{tail:?}");
            let mut far = p.clone();
            far.resize(TYPE_BUFFER, 0);
            far.extend(tail);
            assert!(is_sis(&far), "{tail:?} past the typed bytes");
        }
        let mut pe = p.clone();
        pe.extend(b"MZ");
        pe.extend([0u8; 100]);
        pe.extend(b"PE\0\0");
        assert!(!is_sis(&pe));
        assert!(!is_sis(&p[..11]));
    }

    #[test]
    fn truncated_and_mutated_packages_never_panic() {
        let z = zlib(&[7u8; 3000]);
        let whole = package(false, &[(&z, 3000), (b"\x78\x9cjunk", 50), (&z, 0)]);
        for n in 0..whole.len() {
            let (_, seen) = run(whole[..n].to_vec(), &Limits::default());
            assert!(seen.iter().all(|(_, d)| d == &[7u8; 3000]));
        }
        // Every byte of the header and records set to hostile values.
        let mut x: u32 = 0x1234_5678;
        for i in 0..whole.len().min(200) {
            for v in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut m = whole.clone();
                m[i] = v;
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let j = (x as usize) % m.len();
                m[j] = (x >> 8) as u8;
                run(m, &Limits::default());
            }
        }
        // Many languages and records, all pointing at nothing.
        let mut h = whole[..84].to_vec();
        h[18..20].copy_from_slice(&99u16.to_le_bytes());
        h[20..22].copy_from_slice(&u16::MAX.to_le_bytes());
        h.extend([0xffu8; 4000]);
        let (r, seen) = run(h, &Limits::default());
        assert!(seen.is_empty());
        assert!(!r.problems.is_empty());
    }

    #[test]
    fn limits_are_honoured() {
        // The member size limit skips the file before inflating it.
        let big = vec![0u8; 200_000];
        let z = zlib(&big);
        let limits = Limits {
            max_member_size: 100_000,
            ..Limits::default()
        };
        let (r, seen) = run(package(false, &[(&z, 200_000)]), &limits);
        assert!(seen.is_empty());
        assert_eq!(whats(&r), ["member_size"]);
        // The ratio limit stops a bomb.
        let bomb = vec![0u8; 4 << 20];
        let z = zlib(&bomb);
        let (r, seen) = run(package(false, &[(&z, 4 << 20)]), &Limits::default());
        assert!(seen.is_empty());
        assert_eq!(whats(&r), ["ratio"]);
        // Records that all point at one stream end at the budget.
        let z = zlib(&vec![1u8; 500_000]);
        let files: Vec<(&[u8], u32)> = (0..50).map(|_| (&z[..], 500_000)).collect();
        let limits = Limits {
            max_expanded_bytes: 3_000_000,
            ..Limits::default()
        };
        let (r, seen) = run(package(false, &files), &limits);
        assert!(seen.len() <= 6, "{}", seen.len());
        assert!(whats(&r).contains(&"expanded_bytes"));
        assert!(r.expanded_bytes <= 3_000_000);
        // A member count limit.
        let limits = Limits {
            max_members: 3,
            ..Limits::default()
        };
        let files: Vec<(&[u8], u32)> = (0..10).map(|_| (&b"abc"[..], 3)).collect();
        let (r, seen) = run(package(true, &files), &limits);
        assert_eq!(seen.len(), 3);
        assert_eq!(whats(&r), ["members"]);
    }

    #[test]
    fn broken_files_are_problems_bounded_in_number() {
        let files: Vec<(&[u8], u32)> = (0..500).map(|_| (&b"not zlib"[..], 8)).collect();
        let (r, seen) = run(package(false, &files), &Limits::default());
        assert!(seen.is_empty());
        assert_eq!(r.problems.len(), MAX_PROBLEMS as usize + 1);
    }

    #[test]
    fn an_original_size_of_zero_past_the_limit_ends_the_package() {
        // ClamAV's buffer would be 0 bytes: its allocation fails.
        let z = zlib(&[3u8; 4000]);
        let limits = Limits {
            max_member_size: 50,
            ..Limits::default()
        };
        let (r, seen) = run(package(false, &[(&z[..], 0), (&b"stored"[..], 6)]), &limits);
        assert!(seen.is_empty());
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    }
}

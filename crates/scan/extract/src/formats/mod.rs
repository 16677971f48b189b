//! One module per container format. Each walks its members through
//! [`Walker::member`](crate::walk::Walker::member).

pub(crate) mod aplib;
pub(crate) mod arj;
pub(crate) mod aspack;
pub(crate) mod autoit;
pub(crate) mod binhex;
pub(crate) mod cab;
pub(crate) mod chm;
pub(crate) mod cpio;
pub(crate) mod fsg;
pub(crate) mod html;
pub(crate) mod iscab;
pub(crate) mod ishield;
pub(crate) mod iso;
pub(crate) mod lzx;
pub(crate) mod mail;
pub(crate) mod mew;
pub(crate) mod nsis;
pub(crate) mod nspack;
pub(crate) mod ole1;
pub(crate) mod ole2;
pub(crate) mod packed;
pub(crate) mod pdf;
pub(crate) mod pdfcrypt;
pub(crate) mod pe;
pub(crate) mod petite;
pub(crate) mod rebuildpe;
pub(crate) mod rtf;
pub(crate) mod sevenz;
pub(crate) mod sis;
pub(crate) mod spin;
pub(crate) mod stream;
pub(crate) mod szdd;
pub(crate) mod tar;
pub(crate) mod tnef;
pub(crate) mod upack;
pub(crate) mod upx;
pub(crate) mod wwpack;
pub(crate) mod yc;
pub(crate) mod zip;

use crate::WalkError;
use crate::walk::{Member, Step, Walker};
use moat_core::Blob;
use std::io::{self, Read};

/// Read-ahead buffer in front of a blob, so decoders don't issue tiny reads.
pub(crate) const INPUT_BUFFER: usize = 64 * 1024;

/// Reads until `buf` is full or the input ends; how many bytes came.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// One byte, or `None` at the end of the input (put a `BufReader` in
/// front of anything slower than memory).
pub(crate) fn read_byte(r: &mut impl Read) -> io::Result<Option<u8>> {
    let mut b = [0u8; 1];
    Ok((read_full(r, &mut b)? == 1).then_some(b[0]))
}

/// Copies what `buf` can take of `out` from `*pos` on, for decoders that
/// hand out a buffer of decoded bytes; how many were copied.
pub(crate) fn drain(out: &[u8], pos: &mut usize, buf: &mut [u8]) -> usize {
    let n = buf.len().min(out.len() - *pos);
    buf[..n].copy_from_slice(&out[*pos..*pos + n]);
    *pos += n;
    n
}

/// Reads at `at` until `buf` is full or the blob ends; how many bytes came.
pub(crate) fn read_at_full(blob: &Blob, mut at: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = blob.read_at(at, &mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
        at += k as u64;
    }
    Ok(n)
}

/// Offsets of each needle in `blob`, at most `caps[i]` of needle `i`, in
/// one pass over chunks that overlap by the longest needle's length.
pub(crate) fn find_all<const N: usize>(
    blob: &Blob,
    needles: [&[u8]; N],
    caps: [usize; N],
) -> io::Result<[Vec<u64>; N]> {
    let finders = needles.map(memchr::memmem::Finder::new);
    let mut found: [Vec<u64>; N] = std::array::from_fn(|_| Vec::new());
    // A blob in memory is searched where it is: no copies, no reads.
    if let Some(all) = blob.as_slice() {
        for ((finder, f), cap) in finders.iter().zip(found.iter_mut()).zip(caps) {
            f.extend(finder.find_iter(all).take(cap).map(|i| i as u64));
        }
        return Ok(found);
    }
    let overlap = needles.iter().map(|n| n.len()).max().unwrap_or(1) - 1;
    let mut buf = vec![0u8; INPUT_BUFFER];
    let mut at = 0;
    let full = |found: &[Vec<u64>; N]| found.iter().zip(caps).all(|(f, cap)| f.len() >= cap);
    while at < blob.len() && !full(&found) {
        let n = read_at_full(blob, at, &mut buf)?;
        if n == 0 {
            break;
        }
        for ((finder, f), cap) in finders.iter().zip(found.iter_mut()).zip(caps) {
            if cap == 0 {
                continue;
            }
            for i in finder.find_iter(&buf[..n]) {
                if f.len() >= cap {
                    break;
                }
                // A match inside the overlap is found again in the next chunk.
                if f.last() != Some(&(at + i as u64)) {
                    f.push(at + i as u64);
                }
            }
        }
        if at + (n as u64) >= blob.len() || n <= overlap {
            break;
        }
        at += (n - overlap) as u64;
    }
    Ok(found)
}

/// ClamAV's `CLI_ISCONTAINED` on offsets, which its unpackers use for every
/// bounds check: `[sb, sb + sb_size)` lies within `[bb, bb + bb_size)` and
/// neither is empty.
/// Computed wide, so no sum of offsets can overflow.
pub(crate) fn contained(
    bb: impl Into<i128>,
    bb_size: impl Into<i128>,
    sb: impl Into<i128>,
    sb_size: impl Into<i128>,
) -> bool {
    let (bb, bb_size, sb, sb_size) = (bb.into(), bb_size.into(), sb.into(), sb_size.into());
    bb_size > 0
        && sb_size > 0
        && sb_size <= bb_size
        && sb >= bb
        && sb + sb_size <= bb + bb_size
        && sb < bb + bb_size
}

/// Reads and drops `n` bytes; fewer before the end is an error.
pub(crate) fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
    let got = io::copy(&mut r.take(n), &mut io::sink())?;
    if got < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// A source of decoded frames: cabinet data blocks, CHM's LZX frames.
pub(crate) trait Frames {
    /// The next frame into `out` (replacing what it held); false after the last.
    fn next_frame(&mut self, out: &mut Vec<u8>) -> io::Result<bool>;
}

/// A frame source read as one stream, counting the bytes handed out: the
/// position in it, from which the members cut from it are found.
pub(crate) struct Framed<F> {
    pub src: F,
    out: Vec<u8>,
    pos: usize,
    pub produced: u64,
}

impl<F> Framed<F> {
    pub(crate) fn new(src: F) -> Self {
        Framed {
            src,
            out: Vec::new(),
            pos: 0,
            produced: 0,
        }
    }
}

impl<F: Frames> Read for Framed<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            self.pos = 0;
            if !self.src.next_frame(&mut self.out)? {
                self.out.clear();
                return Ok(0);
            }
        }
        let n = drain(&self.out, &mut self.pos, buf);
        self.produced += n as u64;
        Ok(n)
    }
}

/// One member laid out in a decoded stream: where it starts, how long it is,
/// its name.
pub(crate) struct Cut<'a> {
    pub offset: u64,
    pub length: u64,
    pub name: &'a str,
}

/// Hands `cuts` (sorted by offset) out of the stream `open` makes (a cab
/// folder, a CHM section) as members at `depth + 1`. The bytes between them
/// are decoded and dropped, counted in `skipped` against the walk's
/// expanded-bytes budget; a member that starts before the position reached
/// (files that overlap) reads the stream again from its start. `stored` is
/// the compressed size the ratio check compares with. [`Step::Stop`] when the
/// container's walk must end; after a broken stream, whose later members
/// cannot be read, [`Step::Next`] (the container's other streams may still be).
pub(crate) fn cut_members<E, F: Frames>(
    w: &mut Walker<'_, E>,
    location: &str,
    depth: u32,
    cuts: &[Cut<'_>],
    skipped: &mut u64,
    mut open: impl FnMut() -> io::Result<Framed<F>>,
    stored: impl Fn(&Framed<F>) -> u64,
) -> Result<Step, WalkError<E>> {
    let mut reader: Option<Framed<F>> = None;
    for cut in cuts {
        if w.stopped {
            return Ok(Step::Stop);
        }
        let stream = match reader.take().filter(|r| r.produced <= cut.offset) {
            Some(r) => reader.insert(r),
            None => match open() {
                Ok(r) => reader.insert(r),
                Err(e) => {
                    w.corrupt(location, e);
                    return Ok(Step::Next);
                }
            },
        };
        let gap = cut.offset - stream.produced;
        *skipped += gap;
        if w.report.expanded_bytes.saturating_add(*skipped) > w.limits.max_expanded_bytes {
            w.limit(location, "expanded_bytes");
            return Ok(Step::Stop);
        }
        if let Err(e) = skip(stream, gap) {
            w.corrupt(&format!("{location}>{}", cut.name), e);
            return Ok(Step::Next);
        }
        let stored_size = stored(stream);
        let mut member = stream.take(cut.length);
        let step = w.member(
            Member {
                reader: &mut member,
                name: cut.name,
                stored_size,
                declared_size: Some(cut.length),
            },
            location,
            depth + 1,
        )?;
        match step {
            Step::Stop => return Ok(Step::Stop),
            Step::ReadFailed => return Ok(Step::Next),
            Step::Next => {}
        }
    }
    Ok(Step::Next)
}

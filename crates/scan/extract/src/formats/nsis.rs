//! NSIS installers (the Nullsoft Scriptable Install System, a common way to
//! ship Windows software and malware alike): the data after the installer's
//! first header, found embedded in the installer's executable. It is either
//! solid (one compressed stream of length-prefixed items) or one block per
//! item (a length whose high bit says compressed), compressed with zlib's
//! deflate or LZMA. The first item is the installer's header (its compiled
//! script), then come the files it installs; they are members named
//! `headers`, `content.001`, `content.002`... as ClamAV names them
//! (`libclamav/nsis/nulsft.c`, whose solid and compression guesses this
//! follows; file names would need the script interpreted). NSIS's own bzip2
//! variant is `unsupported`.

use super::read_at_full;
use crate::walk::{Member, Step, Walker};
use crate::{Problem, WalkError};
use moat_core::Blob;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

/// The first header's signature, 4 bytes after its start.
pub(crate) const MAGIC: [u8; 16] = *b"\xef\xbe\xad\xdeNullsoftInst";
const FIRST_HEADER: u64 = 28;
/// Largest LZMA dictionary accepted (NSIS allows up to 1 GiB; its default
/// is 8 MiB): the decoder allocates it whole.
const MAX_DICT: u32 = 128 << 20;
/// Most blocks looked at while guessing whether the data is solid.
const MAX_BLOCKS: usize = 1 << 20;

pub(crate) fn is_nsis(head: &[u8]) -> bool {
    head.get(4..20) == Some(&MAGIC[..])
}

/// The archive size the first header declares (from its start), if sane.
pub(crate) fn declared_size(head: &[u8]) -> Option<u64> {
    let b = head.get(0x18..0x1c)?;
    let size = u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    (size > FIRST_HEADER).then_some(size)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comp {
    Zlib,
    Lzma,
    Bzip2,
}

/// ClamAV's `nsis_detcomp`: `1` starts NSIS's bzip2, LZMA properties
/// `5d` with a dictionary size below 2^24 bytes are LZMA, anything else is deflate.
fn detect_comp(b: [u8; 4]) -> Comp {
    if b[0] == b'1' {
        Comp::Bzip2
    } else if u32::from_le_bytes(b) & !0x8000_0000 == 0x5d {
        Comp::Lzma
    } else {
        Comp::Zlib
    }
}

fn u32_at(blob: &Blob, at: u64) -> io::Result<Option<u32>> {
    let mut b = [0u8; 4];
    Ok((read_at_full(blob, at, &mut b)? == 4).then(|| u32::from_le_bytes(b)))
}

fn bytes_at(blob: &Blob, at: u64) -> io::Result<[u8; 4]> {
    let mut b = [0u8; 4];
    read_at_full(blob, at, &mut b)?;
    Ok(b)
}

/// A decoder of `comp` over `input`, or the problem that there is none.
fn decoder<'a, R: Read + 'a>(
    comp: Comp,
    mut input: R,
    location: &str,
) -> Result<Box<dyn Read + 'a>, Problem> {
    let unsupported = |what: String| Problem::Unsupported {
        location: location.to_string(),
        what,
    };
    let corrupt = |detail: String| Problem::Corrupt {
        location: location.to_string(),
        detail,
    };
    match comp {
        Comp::Zlib => Ok(Box::new(flate2::read::DeflateDecoder::new(input))),
        Comp::Lzma => {
            let mut props = [0u8; 5];
            input
                .read_exact(&mut props)
                .map_err(|e| corrupt(format!("nsis lzma properties: {e}")))?;
            let dict = u32::from_le_bytes([props[1], props[2], props[3], props[4]]);
            if dict > MAX_DICT {
                return Err(unsupported(format!(
                    "nsis lzma dictionary of {} MiB",
                    dict >> 20
                )));
            }
            lzma_rust2::LzmaReader::new_with_props(input, u64::MAX, props[0], dict, None)
                .map(|r| Box::new(r) as Box<dyn Read>)
                .map_err(|e| corrupt(format!("nsis lzma: {e}")))
        }
        Comp::Bzip2 => Err(unsupported("nsis bzip2 compression".into())),
    }
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let mut head = [0u8; FIRST_HEADER as usize];
    let n = read_at_full(blob, 0, &mut head).map_err(WalkError::Io)?;
    let Some(declared) = declared_size(&head[..n]) else {
        w.corrupt(location, "nsis first header");
        return Ok(());
    };
    // A truncated installer is read as far as it goes, as ClamAV does.
    let end = declared.min(blob.len());
    if end < FIRST_HEADER + 4 {
        return Ok(());
    }
    let data_len = end - FIRST_HEADER;

    // Solid unless the data reads as a chain of length-prefixed blocks.
    let mut solid = false;
    let mut block_comp = None;
    let mut pos = 0u64;
    // (The last 4 bytes may be the archive's CRC, not a block.)
    for _ in 0..MAX_BLOCKS {
        if pos + 4 >= data_len {
            break;
        }
        let Some(v) = u32_at(blob, FIRST_HEADER + pos).map_err(WalkError::Io)? else {
            break;
        };
        if v & 0x8000_0000 != 0 && block_comp.is_none() {
            block_comp = Some(detect_comp(
                bytes_at(blob, FIRST_HEADER + pos + 4).map_err(WalkError::Io)?,
            ));
        }
        pos += 4 + u64::from(v & 0x7fff_ffff);
        if pos > data_len {
            solid = true;
            break;
        }
    }
    if solid {
        let comp = detect_comp(bytes_at(blob, FIRST_HEADER).map_err(WalkError::Io)?);
        walk_solid(w, blob, location, depth, comp, data_len)
    } else {
        walk_blocks(
            w,
            blob,
            location,
            depth,
            block_comp.unwrap_or(Comp::Zlib),
            data_len,
        )
    }
}

fn item_name(index: usize) -> String {
    if index == 0 {
        "headers".to_string()
    } else {
        format!("content.{index:03}")
    }
}

fn data_reader(
    blob: &Blob,
    at: u64,
    len: u64,
) -> io::Result<io::Take<BufReader<moat_core::blob::BlobReader>>> {
    let mut r = blob.reader();
    r.seek(SeekFrom::Start(at))?;
    Ok(BufReader::new(r).take(len))
}

fn walk_blocks<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
    comp: Comp,
    data_len: u64,
) -> Result<(), WalkError<E>> {
    let mut pos = 0u64;
    let mut index = 0usize;
    while pos + 4 < data_len && !w.stopped {
        let Some(v) = u32_at(blob, FIRST_HEADER + pos).map_err(WalkError::Io)? else {
            break;
        };
        pos += 4;
        let size = u64::from(v & 0x7fff_ffff);
        if size == 0 {
            continue;
        }
        if size > data_len - pos {
            w.corrupt(location, "nsis block past the archive's end");
            break;
        }
        let raw = data_reader(blob, FIRST_HEADER + pos, size).map_err(WalkError::Io)?;
        pos += size;
        let mut reader: Box<dyn Read> = if v & 0x8000_0000 != 0 {
            match decoder(comp, raw, location) {
                Ok(d) => d,
                Err(p) => {
                    w.problem(p);
                    return Ok(());
                }
            }
        } else {
            Box::new(raw)
        };
        let name = item_name(index);
        index += 1;
        let step = w.member(
            Member {
                reader: &mut reader,
                name: &name,
                stored_size: size,
                declared_size: None,
            },
            location,
            depth + 1,
        )?;
        if step == Step::Stop {
            break;
        }
    }
    Ok(())
}

fn walk_solid<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
    comp: Comp,
    data_len: u64,
) -> Result<(), WalkError<E>> {
    let raw = data_reader(blob, FIRST_HEADER, data_len).map_err(WalkError::Io)?;
    let mut stream = match decoder(comp, raw, location) {
        Ok(d) => d,
        Err(p) => {
            w.problem(p);
            return Ok(());
        }
    };
    let mut index = 0usize;
    while !w.stopped {
        let mut len = [0u8; 4];
        match super::read_full(&mut stream, &mut len) {
            Ok(4) => {}
            // The end of the stream (or of what decodes) ends the items.
            Ok(_) => break,
            Err(e) => {
                w.corrupt(location, format!("nsis solid stream: {e}"));
                break;
            }
        }
        let size = u64::from(u32::from_le_bytes(len));
        if size == 0 {
            continue;
        }
        let name = item_name(index);
        index += 1;
        let mut item = (&mut stream).take(size);
        let step = w.member(
            Member {
                reader: &mut item,
                name: &name,
                stored_size: data_len,
                declared_size: Some(size),
            },
            location,
            depth + 1,
        )?;
        // A limit that stopped the item (already a problem) leaves the
        // stream mid-item: the items after it cannot be found.
        if step != Step::Next || item.limit() > 0 {
            break;
        }
    }
    Ok(())
}

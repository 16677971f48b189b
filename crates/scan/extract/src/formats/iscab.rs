//! InstallShield's own cabinets (`ISc(`): a setup's `data1.hdr` lists the
//! files stored in its `dataN.cab` files, each file a series of chunks (a
//! 16-bit length, then raw deflate). Read as ClamAV reads them
//! (`libclamav/ishield.c`, `is_parse_hdr` and `is_extract_cab`): files
//! flagged as stored inside a cabinet, not duplicates of an earlier one,
//! are members by name.

use super::read_at_full;
use crate::WalkError;
use crate::walk::{Member, Step, Walker};
use moat_core::Blob;
use std::io::{self, Read};

const MAGIC: u32 = 0x2863_5349;
/// `sizeof(struct IS_FILEITEM)` (packed).
const FILE_ITEM: usize = 87;
/// Largest header read whole.
const MAX_HEADER: u64 = 16 << 20;
/// Most file items read.
const MAX_FILES: u32 = 1 << 20;
/// Flags of a file stored inside a cabinet.
const INTERNAL: u16 = 4;

/// Where a setup's `data1.hdr` and `dataN.cab` files are: (offset, size) of
/// the header and (cabinet number, offset, size) of each cabinet.
pub(crate) struct Parts {
    pub header: (u64, u64),
    pub cabs: Vec<(u16, u64, u64)>,
}

impl Parts {
    /// From a setup's overlay files `(name, offset, size)`.
    pub(crate) fn find(files: &[(String, u64, u64)]) -> Option<Parts> {
        let mut header = None;
        let mut cabs = Vec::new();
        for (name, at, size) in files {
            let lower = name.to_ascii_lowercase();
            let Some(rest) = lower.strip_prefix("data") else {
                continue;
            };
            if rest == "1.hdr" {
                header.get_or_insert((*at, *size));
            } else if let Some(n) = rest
                .strip_suffix(".cab")
                .and_then(|n| n.parse::<u16>().ok())
                && n > 0
            {
                cabs.push((n, *at, *size));
            }
        }
        let header = header?;
        (!cabs.is_empty()).then_some(Parts { header, cabs })
    }
}

fn le16(b: &[u8], i: usize) -> Option<u16> {
    b.get(i..i + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn le32(b: &[u8], i: usize) -> Option<u32> {
    b.get(i..i + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn le64(b: &[u8], i: usize) -> Option<u64> {
    b.get(i..i + 8).map(|s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

fn c_string(b: &[u8], at: usize) -> Option<String> {
    let rest = b.get(at..)?;
    let end = rest.iter().take(1024).position(|&c| c == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
    parts: &Parts,
) -> Result<(), WalkError<E>> {
    let (hdr_at, hdr_size) = parts.header;
    if !(16..=MAX_HEADER).contains(&hdr_size) {
        return Ok(());
    }
    let mut hdr = vec![0u8; hdr_size as usize];
    if read_at_full(blob, hdr_at, &mut hdr).map_err(WalkError::Io)? < hdr.len() {
        return Ok(());
    }
    let (Some(MAGIC), Some(data_off)) = (le32(&hdr, 0), le32(&hdr, 12)) else {
        return Ok(());
    };
    let data_off = data_off as usize;
    let (Some(dirs_off), Some(files), Some(dir_sz2)) = (
        le32(&hdr, data_off + 12),
        le32(&hdr, data_off + 40),
        le32(&hdr, data_off + 44),
    ) else {
        return Ok(());
    };
    let base = data_off.saturating_add(dirs_off as usize);
    let mut off = base.saturating_add(dir_sz2 as usize);
    for _ in 0..files.min(MAX_FILES) {
        if w.stopped {
            return Ok(());
        }
        let Some(item) = hdr.get(off..off + FILE_ITEM) else {
            return Ok(());
        };
        off += FILE_ITEM;
        let (Some(flags), Some(size), Some(csize), Some(stream), Some(name_off), Some(cab)) = (
            le16(item, 0),
            le64(item, 2),
            le64(item, 10),
            le64(item, 18),
            le32(item, 58),
            le16(item, 85),
        ) else {
            continue;
        };
        let has_prev_dup = item[84] & 1 != 0;
        if flags != INTERNAL || has_prev_dup || size == 0 {
            continue;
        }
        let Some(&(_, cab_at, cab_size)) = parts.cabs.iter().find(|c| c.0 == cab) else {
            continue;
        };
        if stream.saturating_add(csize) > cab_size {
            continue;
        }
        let name = c_string(&hdr, base.saturating_add(name_off as usize))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("file{}", off / FILE_ITEM));
        let mut reader = Chunks {
            blob: blob.clone(),
            at: cab_at + stream,
            left: csize,
            out: Vec::new(),
            pos: 0,
        };
        let step = w.member(
            Member {
                reader: &mut reader,
                name: &name,
                stored_size: csize,
                declared_size: Some(size),
            },
            location,
            depth + 1,
        )?;
        if step == Step::Stop {
            return Ok(());
        }
    }
    Ok(())
}

/// A file's chunks: a 16-bit length, then that many bytes of raw deflate,
/// each chunk inflated on its own.
struct Chunks {
    blob: Blob,
    at: u64,
    left: u64,
    out: Vec<u8>,
    pos: usize,
}

impl Chunks {
    /// The next chunk into `out`; false after the last.
    fn next_chunk(&mut self) -> io::Result<bool> {
        loop {
            if self.left < 2 {
                return Ok(false);
            }
            let mut len = [0u8; 2];
            read_at_full(&self.blob, self.at, &mut len)?;
            self.at += 2;
            self.left -= 2;
            let len = u64::from(u16::from_le_bytes(len));
            if len == 0 {
                continue;
            }
            if len > self.left {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "installshield chunk past the file's data",
                ));
            }
            let mut data = vec![0u8; len as usize];
            read_at_full(&self.blob, self.at, &mut data)?;
            self.at += len;
            self.left -= len;
            self.out.clear();
            self.pos = 0;
            // A chunk inflates to at most 64 KiB in InstallShield's writer;
            // the walker's limits bound the whole file.
            #[allow(clippy::disallowed_methods)] // bounded by take()
            flate2::read::DeflateDecoder::new(&data[..])
                .take(1 << 20)
                .read_to_end(&mut self.out)?;
            return Ok(true);
        }
    }
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        Ok(super::drain(&self.out, &mut self.pos, buf))
    }
}

//! InstallShield setups that carry their files after the program (the
//! `InstallShield` stream ClamAV reads in `libclamav/ishield.c`,
//! `cli_scanishield_msi`): a count, then per file a 312-byte block (name,
//! compressed size) and its data, each byte nibble-swapped and XORed with a
//! key made from the file's name, then zlib. Every file is a member.

use super::read_at_full;
use crate::WalkError;
use crate::walk::{Member, Step, Walker};
use moat_core::Blob;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

pub(crate) const MAGIC: &[u8] = b"InstallShield\0";
/// The header after the magic: the file count, then zeros.
const HEADER: u64 = 0x20;
/// A file's block: its name (`MAX_PATH`), then sizes and unknown fields.
const FILE_BLOCK: usize = 0x104 + 52;
const SIZE_AT: usize = 0x104 + 8;
const KEY: [u8; 4] = [0xec, 0xca, 0x79, 0xf8];
/// Most files read from one stream.
const MAX_FILES: u32 = 1 << 16;

/// The magic, a file count, the zeros after it and, when the head holds it,
/// the first file block's constant 6 (ClamAV's file-type rule).
pub(crate) fn is_ishield(head: &[u8]) -> bool {
    let m = MAGIC.len();
    if !head.starts_with(MAGIC) || head.len() < m + HEADER as usize {
        return false;
    }
    let count = u32::from_le_bytes([head[m], head[m + 1], head[m + 2], head[m + 3]]);
    let zeros = head[m + 8..m + HEADER as usize].iter().all(|&b| b == 0);
    let six = m + HEADER as usize + 0x104;
    count != 0
        && zeros
        && head
            .get(six..six + 8)
            .is_none_or(|b| b == [6, 0, 0, 0, 0, 0, 0, 0])
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let mut head = [0u8; 4];
    let mut at = MAGIC.len() as u64;
    read_at_full(blob, at, &mut head).map_err(WalkError::Io)?;
    let count = u32::from_le_bytes(head).min(MAX_FILES);
    at += HEADER;
    for _ in 0..count {
        if w.stopped {
            return Ok(());
        }
        let mut block = [0u8; FILE_BLOCK];
        if read_at_full(blob, at, &mut block).map_err(WalkError::Io)? < FILE_BLOCK {
            w.corrupt(location, "installshield file block truncated");
            return Ok(());
        }
        at += FILE_BLOCK as u64;
        let name_len = block[..0x103].iter().position(|&b| b == 0).unwrap_or(0x103);
        let name = String::from_utf8_lossy(&block[..name_len]).into_owned();
        let mut size = [0u8; 8];
        size.copy_from_slice(&block[SIZE_AT..SIZE_AT + 8]);
        let size = u64::from_le_bytes(size);
        if name_len == 0 || size > blob.len().saturating_sub(at) {
            w.corrupt(
                location,
                format!("installshield file {name:?} past the end"),
            );
            return Ok(());
        }
        let key: Vec<u8> = block[..name_len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ KEY[i & 3])
            .collect();
        let mut raw = blob.reader();
        raw.seek(SeekFrom::Start(at)).map_err(WalkError::Io)?;
        at += size;
        let plain = Unmask {
            inner: BufReader::new(raw.take(size)),
            key,
            index: 0,
        };
        let mut reader = flate2::read::ZlibDecoder::new(plain);
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
            return Ok(());
        }
    }
    Ok(())
}

/// Undoes the obfuscation: each byte's nibbles swapped, then XORed with the
/// key, whose position restarts every 1,024 bytes.
struct Unmask<R> {
    inner: R,
    key: Vec<u8>,
    index: usize,
}

impl<R: Read> Read for Unmask<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for b in &mut buf[..n] {
            *b = b.rotate_left(4) ^ self.key[(self.index & 0x3ff) % self.key.len()];
            self.index += 1;
        }
        Ok(n)
    }
}

//! PESpin 1.1-protected executables, unpacked as ClamAV unpacks them
//! (`libclamav/spin.c` and the PESpin part of `cli_scanpe`): the stub is
//! decrypted in three layers (a falling byte key, two LFSR keys, one of
//! them derived from a checksum of the file), the sections are decrypted
//! (an LFSR xor, then a short polymorphic routine emulated byte by byte),
//! the compressed ones decompressed with FSG's aPLib-style decoder, and the
//! whole rebuilt with [`rebuild`](super::rebuildpe::rebuild) (with the
//! fixed base and entry point ClamAV gives it).
//!
//! Every read and write is checked; data that does not decode leaves the
//! file scanned as it is.

use super::aplib::unfsg;
use super::rebuildpe::rebuild;
use moat_exe::{ExeInfo, Section, le32};

/// Whether the entry point is PESpin's (`cli_scanpe`'s test).
pub(crate) fn recognised(info: &ExeInfo, epbuff: &[u8]) -> bool {
    let n = info.sections.len();
    if n < 2 {
        return false;
    }
    let last = info.sections[n - 1];
    let end = last.rva.wrapping_add(last.rsz);
    info.vep >= last.rva
        && 0x3217 - 4 <= end
        && info.vep < end.wrapping_sub(0x3217).wrapping_sub(4)
        && epbuff.get(4..14) == Some(b"\xe8\x00\x00\x00\x00\x8b\x1c\x24\x83\xc3")
}

/// `exec86`: the polymorphic routine at `code` (0x24 bytes and the
/// `stosb` after them) on one byte; `None` on an instruction ClamAV does
/// not know or a routine of the wrong length.
fn exec86(mut al: u8, cl: u8, code: &[u8]) -> Option<u8> {
    let at = |i: usize| code.get(i).copied();
    let mut len = 0usize;
    while len < 0x24 {
        let op = at(len)?;
        len += 1;
        match op {
            0xeb => len += 2,
            0x0a => len += 1,
            0x90 | 0xf8 | 0xf9 => {}
            0x02 => {
                al = al.wrapping_add(cl);
                len += 1;
            }
            0x2a => {
                al = al.wrapping_sub(cl);
                len += 1;
            }
            0x04 => {
                al = al.wrapping_add(at(len)?);
                len += 1;
            }
            0x2c => {
                al = al.wrapping_sub(at(len)?);
                len += 1;
            }
            0x32 => {
                al ^= cl;
                len += 1;
            }
            0x34 => {
                al ^= at(len)?;
                len += 1;
            }
            0xfe => {
                al = if at(len)? == 0xc0 {
                    al.wrapping_add(1)
                } else {
                    al.wrapping_sub(1)
                };
                len += 1;
            }
            0xc0 => {
                let rol = at(len)? == 0xc0;
                len += 1;
                let by = u32::from(at(len)? & 7);
                al = if rol {
                    al.rotate_left(by)
                } else {
                    al.rotate_right(by)
                };
                len += 1;
            }
            _ => return None,
        }
    }
    (len == 0x24 && at(len)? == 0xaa).then_some(al)
}

/// `summit`: PESpin's checksum of the file's first `size` bytes.
fn summit(src: &[u8]) -> u32 {
    let (mut eax, mut ebx) = (u32::MAX, u32::MAX);
    for &b in src {
        eax ^= u32::from(b) << 8;
        eax = eax >> 3 & 0x1fff_ffff;
        for _ in 0..4 {
            eax ^= ebx >> 8 & 0xff;
            eax = eax.wrapping_add(0x7801_a108);
            eax ^= ebx;
            eax = eax.rotate_right(ebx & 0x1f);
            std::mem::swap(&mut eax, &mut ebx);
        }
    }
    ebx
}

/// An LFSR xor over `data`: shift right, and xor in `poly` when the bit
/// shifted out is `tap_when`.
fn lfsr_xor(data: &mut [u8], mut key: u32, poly: u32, tap_when: u32) {
    for b in data {
        let out = key & 1;
        key >>= 1;
        if out == tap_when {
            key ^= poly;
        }
        *b ^= key as u8;
    }
}

/// `unspin` over the whole file `src`; the rebuilt program (at most
/// `max` bytes), `None` when it does not unpack, `Err(size)` when the
/// sections it would grow exceed `max`.
pub(crate) fn unpack(info: &ExeInfo, mut file: Vec<u8>, max: u64) -> Result<Option<Vec<u8>>, u64> {
    let src = &mut file[..];
    let n = info.sections.len() - 1;
    let sections = &info.sections[..n];
    let last = info.sections[n];
    let ssize = src.len();
    macro_rules! tryo {
        ($e:expr) => {
            match $e {
                Some(v) => v,
                None => return Ok(None),
            }
        };
    }
    let range = |at: i64, len: usize, total: usize| -> Option<std::ops::Range<usize>> {
        let at = usize::try_from(at).ok()?;
        (len > 0 && at.checked_add(len)? <= total).then(|| at..at + len)
    };
    // Decrypt the stub in a copy of the packer's section.
    let raw = last.raw as usize;
    let mut spinned = tryo!(src.get(raw..raw + last.rsz as usize)).to_vec();
    let ep = i64::from(info.vep) - i64::from(last.rva);
    let sp = |i: i64| usize::try_from(ep + i).ok();
    let byte = |buf: &[u8], i: i64| sp(i).and_then(|o| buf.get(o).copied());
    let word = |buf: &[u8], i: i64| sp(i).and_then(|o| buf.get(o..o + 4)).map(|b| le32(b, 0));
    if byte(&spinned, 0xdb) != Some(0xbb) {
        return Ok(None);
    }
    let mut key8 = tryo!(byte(&spinned, 0xdc));
    if byte(&spinned, 0xe0) != Some(0xb9) || word(&spinned, 0xe1) != Some(0x11fe) {
        return Ok(None);
    }
    let len = 0x11feusize;
    tryo!(range(ep, len + 0x1fe5 - 1, spinned.len()));
    for k in (0..len).rev() {
        let b = tryo!(sp(0x1fe5 + k as i64).and_then(|o| spinned.get_mut(o)));
        *b ^= key8;
        key8 = key8.wrapping_sub(1);
    }
    tryo!(range(ep + 0x3217, 4, spinned.len()));
    let key32 = tryo!(word(&spinned, 0x26eb));
    if word(&spinned, 0x26eb + 5) != Some(0x5a0) {
        return Ok(None);
    }
    let r = tryo!(range(ep + 0x2d5, 0x5a0, spinned.len()));
    lfsr_xor(&mut spinned[r], key32, 0x8c32_8834, 1);
    let sub = tryo!(word(&spinned, 0x429));
    let sum_len = (ssize as u32).wrapping_sub(sub);
    if sum_len >= ssize as u32 {
        return Ok(None);
    }
    let key32 = tryo!(word(&spinned, 0x3217)).wrapping_sub(summit(&src[..sum_len as usize]));
    src[raw..raw + spinned.len()].copy_from_slice(&spinned);
    // From here on the stub is read in the file.
    let ep = i64::from(info.vep) + i64::from(last.raw) - i64::from(last.rva);
    tryo!(range(ep + 0x3207, 4, ssize));
    let at = |i: i64| (ep + i) as usize;
    let word = |src: &[u8], i: i64| le32(src, at(i));
    // Sections xored with an LFSR keyed by the checksum.
    let mut bitmap = word(src, 0x3207);
    for s in sections {
        if bitmap & 1 != 0 {
            let r = tryo!(range(i64::from(s.raw), s.rsz as usize, ssize));
            lfsr_xor(&mut src[r], key32, 0xed43_af31, 0);
        }
        bitmap >>= 1;
    }
    if word(src, 0x644) != 0x180 {
        return Ok(None);
    }
    let key = word(src, 0x644 + 0x0c);
    let r = tryo!(range(ep + 0x28d3, 0x180, ssize));
    lfsr_xor(&mut src[r], key, 0xed43_af32, 1);
    if word(src, 0x28dd) != 0x1a1 {
        return Ok(None);
    }
    // The first polymorphic layer decrypts the second's routine.
    let poly1 = at(0x28dd + 0xf);
    let emu = tryo!(range(ep + 0x6d4, 0x1a1, ssize));
    let code = src[poly1..(poly1 + 0x27).min(ssize)].to_vec();
    for (k, i) in emu.enumerate() {
        src[i] = tryo!(exec86(src[i], (0x1a1 - k) as u8, &code));
    }
    let mut bitmap = word(src, 0x6f1);
    let code = tryo!(range(ep + 0x755, 0x24, ssize));
    let code = src[code.start..(code.start + 0x27).min(ssize)].to_vec();
    for s in sections {
        if bitmap & 1 != 0 && s.rsz != 0 {
            let r = tryo!(range(i64::from(s.raw), s.rsz as usize, ssize));
            let len = r.len();
            for (k, i) in r.enumerate() {
                src[i] = tryo!(exec86(src[i], (len - k) as u8, &code));
            }
        }
        bitmap >>= 1;
    }
    // Decompress the compressed sections.
    let mut bitman = word(src, 0x3061);
    let grown: u64 = sections
        .iter()
        .enumerate()
        .filter(|(j, _)| bitman.wrapping_shr(*j as u32) & 1 != 0 && *j < 32)
        .map(|(_, s)| u64::from(s.vsz))
        .sum();
    if grown > max {
        return Err(grown);
    }
    let mut sects: Vec<Vec<u8>> = Vec::with_capacity(n);
    let mut failed = false;
    for (j, s) in sections.iter().enumerate() {
        let data = tryo!(src.get(s.raw as usize..s.raw as usize + s.rsz as usize));
        if j < 32 && bitman >> j & 1 != 0 {
            let mut out = vec![0u8; s.vsz as usize];
            if unfsg(data, &mut out).is_none() {
                failed = true;
            }
            sects.push(out);
        } else {
            sects.push(data.to_vec());
        }
    }
    if failed {
        return Ok(None);
    }
    // Resources compressed from an offset on.
    let res = word(src, 0x2fee);
    if res != 0
        && let Some(j) = sections.iter().position(|s| {
            s.rva <= res && res - s.rva < s.vsz && res - s.rva > 0 && res - s.rva <= s.rsz
        })
        && bitman & 1u32.wrapping_shl(j as u32) == 0
        && grown + u64::from(sections[j].vsz) <= max
    {
        let s = sections[j];
        let k = (res - s.rva) as usize;
        let mut out = vec![0u8; s.vsz as usize];
        out[..k].copy_from_slice(&src[s.raw as usize..s.raw as usize + k]);
        let from = &src[s.raw as usize + k..s.raw as usize + s.rsz as usize];
        if unfsg(from, &mut out[k..]).is_some() {
            sects[j] = out;
            bitman |= 1u32.wrapping_shl(j as u32);
        }
    }
    // Lay the sections out one after another and rebuild.
    let mut blob = Vec::new();
    let mut rebuilt: Vec<Section> = Vec::with_capacity(n);
    for (j, s) in sections.iter().enumerate() {
        let grown = j < 32 && bitman >> j & 1 != 0;
        let rsz = if grown { s.vsz } else { s.rsz };
        let raw = rebuilt
            .last()
            .map_or(0, |p: &Section| p.raw.wrapping_add(p.rsz));
        rebuilt.push(Section {
            raw,
            rsz,
            rva: s.rva,
            vsz: s.vsz,
            ..Section::default()
        });
        blob.extend_from_slice(tryo!(sects[j].get(..rsz as usize)));
    }
    Ok(rebuild(&blob, &rebuilt, 0x40_0000, 0x1000, (0, 0), 0, max))
}

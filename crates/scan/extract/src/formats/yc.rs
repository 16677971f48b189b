//! yoda's Crypter (yC 1.x) executables, decrypted as ClamAV decrypts them
//! (`libclamav/yc.c` and the yC part of `cli_scanpe`): yC encrypts each
//! section byte by byte with a short polymorphic routine (add, subtract,
//! xor, rotate of one register); ClamAV runs that routine's few
//! instructions on every byte, first over the second-stage decryptor, then
//! over the sections, drops yC's own section and restores the entry point.
//!
//! Differences from ClamAV: where its bounds check fails (a decryptor or
//! section reaching past the file) ClamAV also raises the heuristic alert
//! `Heuristics.BoundsCheck`; moat leaves that file scanned as it is.

use moat_exe::{ExeInfo, le32};

/// Section names (first four bytes, little-endian) yC leaves alone.
const SKIPPED: [u32; 8] = [
    0x6372_7372, // rsrc
    0x7273_722e, // .rsr
    0x6f6c_6572, // relo
    0x6c65_722e, // .rel
    0x6164_652e, // .eda
    0x6164_722e, // .rda
    0x6164_692e, // .ida
    0x736c_742e, // .tls
];

/// The stub's layout: (bytes the first stage decrypts, offset of the
/// stub's variant), when the entry point is yC's.
pub(crate) fn recognised(info: &ExeInfo, epbuff: &[u8], fsize: u64) -> Option<(u32, i32)> {
    let n = info.sections.len();
    if n < 2 || info.vep != info.sections[n - 1].rva.wrapping_add(0x60) {
        return None;
    }
    let r32 = |o: usize| le32(epbuff, o);
    let at = |o: usize, pat: &[u8]| epbuff.get(o..o + pat.len()) == Some(pat);
    let (mut ecx, mut offset) = (0u32, 0i32);
    if at(
        0,
        b"\x55\x8B\xEC\x53\x56\x57\x60\xE8\x00\x00\x00\x00\x5D\x81\xED",
    ) && at(
        0x26,
        b"\x8D\x3A\x8B\xF7\x33\xC0\xEB\x04\x90\xEB\x01\xC2\xAC",
    ) && epbuff[0x13] == 0xb9
        && u16::from_le_bytes([epbuff[0x18], epbuff[0x19]]) == 0xe981
        && at(0x1e, b"\x8B\xD5\x81\xC2")
    {
        offset = 0;
        if 0x6cu32.wrapping_sub(r32(0xf)).wrapping_add(r32(0x22)) == 0xc6 {
            ecx = r32(0x14).wrapping_sub(r32(0x1a));
        }
    }
    if ecx == 0
        && at(0, b"\x55\x8B\xEC\x83\xEC\x40\x53\x56\x57")
        && at(0x17, b"\xe8\x00\x00\x00\x00\x5d\x81\xed")
        && epbuff[0x23] == 0xb9
    {
        offset = 0x10;
        if 0x6cu32.wrapping_sub(r32(0x1f)).wrapping_add(r32(0x32)) == 0xc6 {
            ecx = r32(0x24).wrapping_sub(r32(0x2a));
        }
    }
    if ecx == 0
        && at(0, b"\x60\xe8\x00\x00\x00\x00\x5d\x81\xed")
        && epbuff[0xd] == 0xb9
        && u16::from_le_bytes([epbuff[0x12], epbuff[0x13]]) == 0xbd8d
        && at(0x18, b"\x8b\xf7\xac")
    {
        offset = -0x18;
        if 0x66u32.wrapping_sub(r32(0x9)).wrapping_add(r32(0x14)) == 0xae {
            ecx = r32(0xe);
        }
    }
    let last = info.sections[n - 1];
    let needed = i64::from(last.raw) + 0xc6 + i64::from(ecx) + i64::from(offset);
    let ok = ecx > 0x800
        && ecx < 0x2000
        && at((0x63 + offset) as usize, b"\xaa\xe2\xcc")
        && i64::try_from(fsize).unwrap_or(i64::MAX) >= needed;
    ok.then_some((ecx, offset))
}

/// Most jumps the emulator follows in one call (ClamAV's `max_jmp_loop`).
const MAX_JUMPS: u32 = 100_000_000;

/// Positions of the decryptor routine (ClamAV runs it while `j < 0x30`).
const ROUTINE: usize = 0x30;

/// `yc_poly_emulator`: run the decryptor at `dec` over `count` bytes at
/// `code` (at most `max`). `None` where ClamAV fails (bounds, an
/// instruction it does not know, its jump budget spent).
fn emulate(f: &mut [u8], dec: usize, code: usize, count: u32, max: u32) -> Option<()> {
    let mut cl = count as u8;
    let mut jumps = MAX_JUMPS;
    for i in 0..count.min(max) as usize {
        let at = code.checked_add(i)?;
        let al = decrypt_byte(f, dec, *f.get(at)?, cl, &mut jumps)?;
        cl = cl.wrapping_sub(1);
        f[at] = al;
    }
    Some(())
}

/// One byte through the decryptor routine at `dec`, taking its jumps from
/// the call's budget `jumps`.
///
/// A routine that jumps back into itself loops for ever: control flow
/// depends only on the position (no instruction branches on `al` or
/// `cl`, and nothing is written while one byte is decrypted), so a byte
/// whose routine takes more jumps than it has positions has repeated one.
/// ClamAV follows such a loop until its budget of 100,000,000 jumps is
/// spent, per call and so per section, and then fails; moat fails at
/// once: the same result without the seconds of CPU a hostile file could
/// buy with it (found by the `archive_walker` fuzz target).
fn decrypt_byte(f: &[u8], dec: usize, mut al: u8, cl: u8, jumps: &mut u32) -> Option<u8> {
    let op = |j: usize| f.get(dec.checked_add(j)?).copied();
    let mut j = 0usize;
    let mut byte_jumps = 0usize;
    while j < ROUTINE {
        match op(j)? {
            0xeb => {
                j += 1;
                *jumps = jumps.checked_sub(1)?;
                byte_jumps += 1;
                if byte_jumps > ROUTINE {
                    tracing::debug!("yC: the decryptor loops for ever");
                    return None;
                }
                // A signed displacement, wrapping as ClamAV's unsigned
                // index does (a jump far back ends the routine).
                j = j.wrapping_add(op(j)? as i8 as isize as usize);
            }
            0xfe => {
                al = al.wrapping_sub(1);
                j += 1;
            }
            0x2a => {
                al = al.wrapping_sub(cl);
                j += 1;
            }
            0x02 => {
                al = al.wrapping_add(cl);
                j += 1;
            }
            0x32 => {
                al ^= cl;
                j += 1;
            }
            0x04 => {
                j += 1;
                al = al.wrapping_add(op(j)?);
            }
            0x34 => {
                j += 1;
                al ^= op(j)?;
            }
            0x2c => {
                j += 1;
                al = al.wrapping_sub(op(j)?);
            }
            0xc0 => {
                j += 1;
                let rol = op(j)? == 0xc0;
                j += 1;
                let by = u32::from(op(j)? & 7);
                al = if rol {
                    al.rotate_left(by)
                } else {
                    al.rotate_right(by)
                };
            }
            0xd2 => {
                j += 1;
                let ror = op(j)? == 0xc8;
                // ClamAV steps past one more byte than the instruction has.
                j += 1;
                let by = u32::from(cl & 7);
                al = if ror {
                    al.rotate_right(by)
                } else {
                    al.rotate_left(by)
                };
            }
            0x90 | 0xf8 | 0xf9 => {}
            other => {
                tracing::debug!(opcode = other, "yC: unhandled opcode");
                return None;
            }
        }
        j = j.wrapping_add(1);
    }
    Some(al)
}

/// `yc_decrypt` over the whole file `f` (`ecx`, `offset` from
/// [`recognised`]); the decrypted program, or `None`.
pub(crate) fn unpack(
    info: &ExeInfo,
    mut f: Vec<u8>,
    e_lfanew: u32,
    ecx: u32,
    offset: i32,
) -> Option<Vec<u8>> {
    let n = info.sections.len() - 1;
    let last = info.sections[n];
    let ycsect = last.raw.wrapping_add(offset as u32) as usize;
    let pe = e_lfanew as usize;
    let opt_size = usize::from(u16::from_le_bytes([*f.get(pe + 20)?, *f.get(pe + 21)?]));
    let names = pe + opt_size + 0x18;
    emulate(&mut f, ycsect + 0x93, ycsect + 0xc6, ecx, ecx)?;
    let size = (f.len() as u32).wrapping_sub(last.ursz);
    let stage2 = ycsect + if offset == -0x18 { 0x3ea } else { 0x457 };
    for (i, s) in info.sections[..n].iter().enumerate() {
        let name = le32(f.get(names + i * 0x28..names + i * 0x28 + 4)?, 0);
        if s.raw == 0 || s.rsz == 0 || SKIPPED.contains(&name) || name & 0xffff == 0x4379 {
            continue;
        }
        let max = size.wrapping_sub(s.raw);
        if max > size {
            return None;
        }
        emulate(&mut f, stage2, s.raw as usize, s.ursz, max)?;
    }
    let opt = pe + 24;
    let oep = le32(f.get(ycsect + 0xa0f..ycsect + 0xa13)?, 0);
    let header = f.get_mut(pe..opt + 0x70)?;
    header[6..8].copy_from_slice(&(n as u16).to_le_bytes());
    header[24 + 0x68..24 + 0x70].fill(0);
    header[24 + 16..24 + 20].copy_from_slice(&oep.to_le_bytes());
    let image = le32(header, 24 + 0x38).wrapping_sub(last.vsz);
    header[24 + 0x38..24 + 0x3c].copy_from_slice(&image.to_le_bytes());
    f.truncate(size as usize);
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A routine of `ops` padded with `nop`s to its 0x30 positions.
    fn routine(ops: &[u8]) -> Vec<u8> {
        let mut r = ops.to_vec();
        r.resize(ROUTINE, 0x90);
        r
    }

    #[test]
    fn a_decryptor_that_loops_for_ever_fails_without_spending_the_jump_budget() {
        // `xor al, 0x10`, then `jmp $-2` back onto itself.
        let r = routine(&[0x34, 0x10, 0xeb, 0xfe]);
        let mut budget = MAX_JUMPS;
        assert_eq!(decrypt_byte(&r, 0, 0x41, 7, &mut budget), None);
        assert!(MAX_JUMPS - budget <= ROUTINE as u32 + 1, "{budget}");
        // The whole call fails as ClamAV's does, and writes nothing.
        let mut f = [r.clone(), vec![0x41; 64]].concat();
        let before = f.clone();
        assert_eq!(emulate(&mut f, 0, ROUTINE, 64, 64), None);
        assert_eq!(f, before);
    }

    #[test]
    fn jumps_forward_and_far_back_still_decrypt_every_byte() {
        // Each jump lands on the next instruction; 24 jumps in all (fewer
        // than the routine's positions), then `add al, cl`; the last
        // `jmp` goes far back, which ends the routine as in ClamAV.
        let mut ops = Vec::new();
        for _ in 0..20 {
            ops.extend_from_slice(&[0xeb, 0x00]);
        }
        ops.extend_from_slice(&[0x02, 0xc1, 0xeb, 0x80]);
        let r = routine(&ops);
        let mut budget = MAX_JUMPS;
        assert_eq!(decrypt_byte(&r, 0, 0x41, 2, &mut budget), Some(0x43));
        assert_eq!(MAX_JUMPS - budget, 21);
        // Over a buffer: cl counts down from the length, byte by byte.
        let mut f = [r, vec![0x10; 4]].concat();
        assert_eq!(emulate(&mut f, 0, ROUTINE, 4, 4), Some(()));
        assert_eq!(&f[ROUTINE..], &[0x14, 0x13, 0x12, 0x11]);
    }
}

//! Upack-packed executables, unpacked as ClamAV unpacks them
//! (`libclamav/upack.c` and the Upack part of `cli_scanpe`), so that the
//! rebuilt program hashes as clamscan's does.
//!
//! Upack 0.39 comes in two layouts: three sections with a 0x148-byte
//! optional header (ClamAV's `upack` flag), or two sections (Upack 0.39 and
//! 1.1/1.2). `cli_scanpe` lays the file out in one buffer, `unupack` follows
//! the stub's jumps to find the LZMA model's parameters, the compressed
//! data and where the output goes, `unupack399` decodes (an LZMA variant
//! with 32-bit probabilities; the bit routines are shared with MEW in
//! [`mew`](super::mew)), the stub's E8/E9 call filter is undone, and the
//! output becomes a one-section PE with `cli_rebuildpe`.
//!
//! ClamAV works with raw pointers into the buffer; here they are `i64`
//! offsets from its start, and each pointer computation keeps C's mix of
//! zero-extended unsigned and sign-extended signed 32-bit values, since
//! that decides which hostile values land inside the buffer.

use super::mew::{Fuel, Mem, Rc, at, upack_bit, upack_len, upack_tree};
use super::packed::Outcome;
use super::read_at_full;
use super::rebuildpe::rebuild;
use moat_core::Blob;
use moat_exe::{ExeInfo, Section};
use std::io;

/// A signed 32-bit value (`cli_readint32`) added to a pointer.
fn sx(v: u32) -> i64 {
    i64::from(v as i32)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V399,
    V11_12,
    V0151477,
    V0297729,
}

/// `unupack399`: decode into `init_edi..end_edi` of `m`, the model at
/// `init_ebx` (range coder state, then six state words, then the
/// probabilities), the input at `paddr`. `None` where ClamAV returns -1.
#[allow(clippy::too_many_arguments)]
fn unupack399(
    m: &mut Mem<'_>,
    init_eax: u32,
    init_ebx: i64,
    init_ecx: u32,
    init_edi: i64,
    end_edi: i64,
    shlsize: u32,
    paddr: i64,
    fuel: &mut Fuel,
) -> Option<()> {
    let loc_ebx = init_ebx;
    let mut rc = Rc {
        p0: paddr,
        p1: m.rd32(init_ebx)?,
        p2: m.rd32(init_ebx + 4)?,
    };
    let mut state = [0u32; 6];
    for (i, s) in state.iter_mut().enumerate() {
        *s = m.rd32(loc_ebx + 4 * i as i64)?;
    }
    let (mut loc_ecx, mut eax_copy) = (init_ecx, init_eax);
    let mut loc_edi = init_edi;
    let mut loc_ebp: u32;
    let mut loc_edx: i64;
    loop {
        let mut loc_eax = eax_copy;
        loc_edx = at(loc_ebx, loc_eax << 2) + 0x58;
        if upack_bit(&mut rc, m, loc_edx, fuel)? != 0 {
            // loc_483927: a match.
            let al = if loc_eax & 0xff >= 7 { 11 } else { 8 };
            loc_eax = (loc_eax & 0xffff_ff00) | al;
            loc_ebp = state[2];
            loc_ecx = (loc_ecx & 0xffff_ff00) | 0x30;
            loc_edx = at(loc_edx, loc_ecx);
            if upack_bit(&mut rc, m, loc_edx, fuel)? == 0 {
                // loc_48397c: a new distance.
                loc_eax = loc_eax.wrapping_sub(1);
                let t = loc_ebp;
                loc_ebp = state[4];
                state[4] = state[3];
                state[3] = t;
                eax_copy = loc_eax;
                loc_edx = loc_ebx + 0xbc0;
                state[5] = loc_ebp;
                let temp = upack_len(&mut rc, m, loc_eax, &mut loc_ecx, &mut loc_edx, fuel)?;
                let jakas_kopia = temp;
                loc_eax = temp.wrapping_sub(1).min(3);
                loc_ecx = 0x40;
                loc_eax <<= 6;
                let ebp8 = at(loc_ebx, (loc_eax << 2).wrapping_add(0x378));
                loc_eax = upack_tree(&mut rc, m, 1, loc_ecx, &mut loc_edx, ebp8, fuel)?;
                loc_ebp = loc_eax;
                if loc_eax & 0xff >= 4 {
                    // loc_4839af
                    loc_ebp = 2 + (loc_eax & 1);
                    loc_eax = (loc_eax >> 1).wrapping_sub(1);
                    // xchg eax, ecx (eax is overwritten below).
                    loc_ecx = loc_eax;
                    loc_ebp = loc_ebp.wrapping_shl(loc_ecx & 0xff);
                    loc_edx = at(loc_ebx, loc_ebp << 2) + 0x178;
                    if loc_ecx & 0xff > 5 {
                        // loc_4839c6: direct bits.
                        loc_ecx = (loc_ecx & 0xffff_ff00) | (((loc_ecx & 0xff) - 4) & 0xff);
                        loc_eax = 0;
                        loop {
                            fuel.burn(1)?;
                            if !m.has(rc.p0, 4) {
                                return None;
                            }
                            let mut edx = m.rd32(rc.p0)?.swap_bytes();
                            rc.p1 >>= 1;
                            edx = edx.wrapping_sub(rc.p2);
                            loc_eax <<= 1;
                            if edx >= rc.p1 {
                                loc_eax = loc_eax.wrapping_add(1);
                                rc.p2 = rc.p2.wrapping_add(rc.p1);
                            }
                            if rc.p1 & 0xff00_0000 == 0 {
                                rc.p2 <<= 8;
                                rc.p1 <<= 8;
                                rc.p0 += 1;
                            }
                            loc_ecx = loc_ecx.wrapping_sub(1);
                            if loc_ecx == 0 {
                                break;
                            }
                        }
                        loc_ecx = (loc_ecx & 0xffff_ff00) | 4;
                        loc_eax <<= 4;
                        loc_ebp = loc_ebp.wrapping_add(loc_eax);
                        loc_edx = loc_ebx + 0x18;
                    }
                    // loc4839f1: the low bits, reversed.
                    loc_eax = 1u32.wrapping_shl(loc_ecx & 0xff);
                    let ebp8 = loc_edx;
                    let t = loc_ecx;
                    loc_ecx = loc_eax;
                    loc_eax = upack_tree(&mut rc, m, 1, loc_ecx, &mut loc_edx, ebp8, fuel)?;
                    loc_ecx = t;
                    let mut r = ((loc_eax as i32) >> 31) as u32;
                    loop {
                        r = r.wrapping_add(r).wrapping_add(loc_eax & 1);
                        loc_eax >>= 1;
                        loc_ecx = loc_ecx.wrapping_sub(1);
                        if loc_ecx == 0 {
                            break;
                        }
                        fuel.burn(1)?;
                    }
                    loc_ebp = loc_ebp.wrapping_add(r);
                }
                loc_ebp = loc_ebp.wrapping_add(1);
                loc_ecx = jakas_kopia;
            } else {
                // loc_48393a: a repeated distance, or one byte from it.
                loc_edx = at(loc_edx, loc_ecx);
                if upack_bit(&mut rc, m, loc_edx, fuel)? != 0 {
                    loc_edx += 0x60;
                    if upack_bit(&mut rc, m, loc_edx, fuel)? != 0 {
                        loc_edx = at(loc_edx, loc_ecx);
                        let ret = upack_bit(&mut rc, m, loc_edx, fuel)?;
                        let t = loc_ebp;
                        loc_ebp = state[4];
                        state[4] = state[3];
                        state[3] = t;
                        if ret != 0 {
                            std::mem::swap(&mut loc_ebp, &mut state[5]);
                        }
                    } else {
                        std::mem::swap(&mut loc_ebp, &mut state[3]);
                    }
                } else {
                    loc_edx = at(loc_edx, loc_ecx);
                    if upack_bit(&mut rc, m, loc_edx, fuel)? == 0 {
                        // loc_483946: the byte at the last distance.
                        loc_eax |= 1;
                        eax_copy = loc_eax;
                        let from = loc_edi - i64::from(state[2]);
                        loc_ecx = (loc_ecx & 0xffff_ff00) | 0x80;
                        if !m.has(from, 1) || !m.has(loc_edi, 1) {
                            return None;
                        }
                        let b = m.byte(from)?;
                        m.set(loc_edi, b)?;
                        fuel.burn(1)?;
                        loc_edi += 1;
                        if loc_edi < end_edi {
                            continue;
                        }
                        return Some(());
                    }
                }
                // loc_48396a
                eax_copy = loc_eax;
                loc_edx = loc_ebx + 0x778;
                let temp = upack_len(&mut rc, m, loc_eax, &mut loc_ecx, &mut loc_edx, fuel)?;
                loc_eax = loc_ecx;
                loc_ecx = temp;
            }
            // loc_483a0b: the copy.
            let from = loc_edi - i64::from(loc_ebp);
            if !m.has(loc_edi, u64::from(loc_ecx))
                || !m.has(from, u64::from(loc_ecx.wrapping_add(1)))
            {
                return None;
            }
            state[2] = loc_ebp;
            fuel.burn(u64::from(loc_ecx))?;
            for _ in 0..loc_ecx {
                let b = m.byte(loc_edi - i64::from(loc_ebp))?;
                m.set(loc_edi, b)?;
                loc_edi += 1;
            }
            loc_eax = (loc_eax & 0xffff_ff00) | u32::from(m.byte(loc_edi - i64::from(loc_ebp))?);
            loc_ecx = 0x80;
        } else {
            // loc_4838d8: a literal.
            loop {
                let mut al = loc_eax & 0xff;
                al = if al + 0xfd > 0xff { al - 3 } else { 0 };
                loc_eax = (loc_eax & 0xffff_ff00) | al;
                if al < 7 {
                    break;
                }
            }
            eax_copy = loc_eax;
            let prev = if loc_edi > init_edi && loc_edi < m.b.len() as i64 {
                u32::from(m.byte(loc_edi - 1)?) >> shlsize
            } else {
                0
            };
            let ebp8 = at(
                loc_ebx,
                (prev.wrapping_mul(0x300) << 2).wrapping_add(0x1008),
            );
            let edi_copy = loc_edi;
            loc_eax = (loc_eax & 0xffff_ff00) | 1;
            if loc_ecx != 0 {
                // Matched: the bits of the byte at the last distance.
                let mut cl = (loc_ecx & 0xff) as u8;
                let mbyte = loc_edi - i64::from(state[2]);
                if !m.has(mbyte, 1) {
                    return None;
                }
                loop {
                    // Read again on every pass, as ClamAV does: the bit
                    // decoder writes its probabilities into the same
                    // buffer, which crafted input can make overlap.
                    let mb = m.byte(mbyte)?;
                    let ah = if mb & cl != 0 { 0x200 } else { 0x100 };
                    loc_eax = (loc_eax & 0xffff_00ff) | ah;
                    loc_edx = at(ebp8, loc_eax << 2);
                    let ret = upack_bit(&mut rc, m, loc_edx, fuel)?;
                    let al = (loc_eax & 0xff)
                        .wrapping_add(loc_eax & 0xff)
                        .wrapping_add(ret)
                        & 0xff;
                    loc_eax = (loc_eax & 0xffff_ff00) | al;
                    cl >>= 1;
                    if cl == 0 {
                        break;
                    }
                    let ah = (((loc_eax >> 8) & 0xff).wrapping_sub(al)) & 1;
                    if ah == 0 {
                        loc_eax = (loc_eax & 0xffff_0000) | (ah << 8) | al;
                        loc_eax = upack_tree(&mut rc, m, loc_eax, 0x100, &mut loc_edx, ebp8, fuel)?;
                        break;
                    }
                }
            } else {
                loc_ecx = (loc_ecx & 0xffff_00ff) | 0x100;
                loc_eax = upack_tree(&mut rc, m, loc_eax, loc_ecx, &mut loc_edx, ebp8, fuel)?;
            }
            loc_ecx = 0;
            loc_edi = edi_copy;
        }
        // loc_483a19
        if !m.has(loc_edi, 1) {
            return None;
        }
        m.set(loc_edi, loc_eax as u8)?;
        fuel.burn(1)?;
        loc_edi += 1;
        if loc_edi >= end_edi {
            return Some(());
        }
    }
}

/// `unupack`: `dest` is the laid-out file (`dsize` bytes), `buff` the
/// bytes at the entry point, `vma`/`ep`/`base`/`va` as `cli_scanpe`
/// computes them. The rebuilt PE, or `None` where ClamAV fails.
#[allow(clippy::too_many_arguments)]
fn unupack(
    upack: bool,
    dest: &mut [u8],
    buff: &[u8; 4096],
    vma: u32,
    ep: u32,
    base: u32,
    va: u32,
    max: u64,
) -> Option<Vec<u8>> {
    let dsize = dest.len() as u64;
    let mut fuel = Fuel::for_buffer(dest.len());
    let mut m = Mem { b: dest };
    let rd = |b: &[u8], at: usize| moat_exe::le32(b, at);
    let mut version = Version::V399;
    let (original_ep, alvalue, pushed_esi, start, end_edi, mut save3);
    if upack {
        if buff[5] == 0xff && buff[6] == 0x36 {
            version = Version::V0297729;
        }
        let mut loc_esi = at(0, rd(buff, 1).wrapping_sub(vma));
        if !m.has(loc_esi, 12) {
            return None;
        }
        original_ep = m.rd32(loc_esi)?.wrapping_sub(vma);
        loc_esi += 8;
        let mut loc_edi;
        let mut alv;
        let lngjmpoff: u32;
        let epa = at(0, ep);
        if version == Version::V399 {
            // jmp 1
            loc_edi = at(0, m.rd32(loc_esi)?.wrapping_sub(vma));
            if !m.has(epa + 0xa, 2) || m.byte(epa + 0xa)? != 0xeb {
                return None;
            }
            // A signed char.
            loc_esi = i64::from(m.byte(epa + 0xb)? as i8) + epa + 0xc;
            // jmp 2 + 0xa
            alv = loc_esi + 0x1a;
            if !m.has(alv, 2) || m.byte(alv)? != 0xeb {
                return None;
            }
            alv += 1;
            alv += i64::from(m.byte(alv)?) + 1 + 0xa;
            lngjmpoff = 8;
        } else {
            loc_edi = 0;
            if !m.has(epa + 7, 5) || m.byte(epa + 7)? != 0xe9 {
                return None;
            }
            loc_esi = sx(m.rd32(epa + 8)?) + epa + 0xc;
            alv = loc_esi + 0x25;
            lngjmpoff = 10;
        }
        if !m.has(alv, 2) || m.byte(alv)? != 0xb5 {
            return None;
        }
        alv += 1;
        let mut count = u32::from(m.byte(alv)?);
        if !m.has(alv, u64::from(lngjmpoff + 5)) || m.byte(alv + i64::from(lngjmpoff))? != 0xe9 {
            return None;
        }
        // A long jump to the head of the unpacking routine.
        let mut shlsize = m.rd32(alv + i64::from(lngjmpoff) + 1)?;
        shlsize = if version == Version::V399 {
            let b = i64::from(m.byte(loc_esi + 0x1b)? as i8);
            (i64::from(shlsize) + loc_esi + b + 0x1c + 0x18) as u32
        } else {
            // No extra jump in 0297729.
            (i64::from(shlsize) + loc_esi + 0x35) as u32
        };
        // 43: the jecxz, in 0.39.
        alv = at(0, shlsize) + 43;
        let (mut aljump, mut shroff): (u32, u32) = (8, 24);
        if !m.has(alv - 1, 2) || m.byte(alv - 1)? != 0xe3 {
            // At 46 in 0297729 and 0151477.
            alv = at(0, shlsize) + 46;
            if !m.has(alv - 1, 2) || m.byte(alv - 1)? != 0xe3 {
                return None;
            }
            if version != Version::V0297729 {
                version = Version::V0151477;
            }
            aljump = 7;
            shroff = 26;
        }
        // Do the jecxz.
        alv += i64::from(m.byte(alv)?) + 1;
        if !m.has(alv, u64::from(aljump + 5)) || m.byte(alv + i64::from(aljump))? != 0xe9 {
            return None;
        }
        // The jump, then 27 to its `cmp al, xx` (a 32-bit sum: backwards
        // jumps land far outside the buffer, as on ClamAV's 64-bit builds).
        let ret = m.rd32(alv + i64::from(aljump) + 1)?;
        alv = at(alv, ret.wrapping_add(aljump).wrapping_add(1 + 4 + 27));
        if version == Version::V0297729 {
            alv += 2;
        }
        // shr ebp, n: the context bits.
        let shr = at(at(0, shlsize), shroff);
        if !m.has(shr, 3) || m.byte(shr)? != 0xc1 || m.byte(shr + 1)? != 0xed {
            return None;
        }
        shlsize = u32::from(m.byte(shr + 2)?);
        count *= 0x100;
        if !(2..=8).contains(&shlsize) {
            tracing::debug!("upack: context bits out of bounds");
            return None;
        }
        if version == Version::V0297729 {
            if !m.has(loc_esi + 6, 10)
                || m.byte(loc_esi + 6)? != 0xbe
                || m.byte(loc_esi + 11)? != 0xbf
            {
                return None;
            }
            let v = m.rd32(loc_esi + 7)?;
            if v < base || v > vma {
                return None;
            }
            loc_edi = at(0, m.rd32(loc_esi + 12)?.wrapping_sub(vma));
            loc_esi = at(0, v.wrapping_sub(base));
        } else {
            if !m.has(loc_esi + 7, 5) || m.byte(loc_esi + 7)? != 0xbe {
                return None;
            }
            loc_esi = at(0, m.rd32(loc_esi + 8)?.wrapping_sub(vma));
        }
        // The model's parameters: 0x16 or 0x27 dwords.
        let words: i64 = if version == Version::V0297729 {
            0x16
        } else {
            0x27
        };
        let last = if version == Version::V0297729 {
            0x64
        } else {
            0x34
        };
        if !m.has(loc_edi, (words * 4 + 24) as u64 + 4 * u64::from(count))
            || !m.has(loc_esi, (words * 4 + last + 4) as u64)
        {
            return None;
        }
        for _ in 0..words {
            let v = m.rd32(loc_esi)?;
            m.wr32(loc_edi, v)?;
            loc_esi += 4;
            loc_edi += 4;
        }
        save3 = m.rd32(loc_esi + 4)?;
        let paddr = i64::from(m.rd32(loc_edi - 4)?) - i64::from(vma);
        let loc_ebx = loc_edi;
        m.wr32(loc_edi, 0xffff_ffff)?;
        m.wr32(loc_edi + 4, 0)?;
        loc_edi += 8;
        for _ in 0..4 {
            m.wr32(loc_edi, 1)?;
            loc_edi += 4;
        }
        for _ in 0..count {
            m.wr32(loc_edi, 0x400)?;
            loc_edi += 4;
        }
        let mut out = sx(m.rd32(loc_esi + 0xc)?) - i64::from(vma);
        if version == Version::V0297729 {
            // ClamAV's own XXX: not enough samples to be sure of it.
            out = i64::from(vma) - i64::from(base);
        }
        let end = if version == Version::V0297729 {
            save3 = m.rd32(loc_esi + 0x40)?;
            sx(m.rd32(loc_esi + 0x64)?) - i64::from(vma)
        } else {
            sx(m.rd32(loc_esi + 0x34)?) - i64::from(vma)
        };
        if out > end {
            tracing::debug!("upack: loc_edi > end_edi");
            return None;
        }
        unupack399(&mut m, 0, loc_ebx, 0, out, end, shlsize, paddr, &mut fuel)?;
        (alvalue, pushed_esi, start, end_edi) = (alv, out, out, end);
    } else {
        let mut loc_esi = at(at(0, vma), ep);
        // Yet another dummy characteristic.
        if buff[0] == 0xbe && buff[5] == 0xad && buff[6] == 0x8b && buff[7] == 0xf8 {
            version = Version::V11_12;
        }
        let (ep_jmp_offs, rep_stosd_count_offs, context_bits_offs, alv) =
            if version == Version::V11_12 {
                (0x1a4, 0x1b, 0x41, loc_esi + 0x184)
            } else {
                (0x217, 0x3a, 0x5f, loc_esi + 0x1c1)
            };
        if !m.has(loc_esi, ep_jmp_offs + 4) {
            return None;
        }
        let ep_jmp_offs = ep_jmp_offs as i64;
        let save1 = m.rd32(loc_esi + ep_jmp_offs)?;
        // A pointer difference, kept to 32 bits.
        let oep = ((loc_esi + ep_jmp_offs + 4) as u32).wrapping_add(save1);
        let mut count = u32::from(m.byte(loc_esi + rep_stosd_count_offs)?);
        let shlsize = 8u32.wrapping_sub(u32::from(m.byte(loc_esi + context_bits_offs)?));
        if !(2..=8).contains(&shlsize) {
            tracing::debug!("upack: context bits out of bounds");
            return None;
        }
        count *= 0x100;
        let (loc_ebx, out, end, paddr);
        let mut loc_ecx: u32;
        if version == Version::V399 {
            loc_esi += 4;
            loc_ecx = m.rd32(loc_esi + 2)?;
            m.wr32(loc_esi + 2, 0)?;
            if loc_ecx == 0 {
                tracing::debug!("upack: something's wrong");
                return None;
            }
            loc_esi -= i64::from(loc_ecx.wrapping_sub(2));
            if !m.has(loc_esi, 12) {
                return None;
            }
            let ebx_u = (loc_esi - (sx(m.rd32(loc_esi)?) - i64::from(base))) as u32;
            loc_esi += 4;
            let save2 = sx(m.rd32(loc_esi)?) - i64::from(base);
            let mut loc_edi = save2;
            loc_esi += 4;
            // A signed count, as ClamAV reads it.
            let j = m.rd32(loc_esi)? as i32;
            if j < 0 {
                tracing::debug!("upack: probably hand-crafted data");
                return None;
            }
            let j = j as u32;
            loc_esi += 4;
            if (u64::from(count) + u64::from(j)) * 4 > u64::from(u32::MAX) {
                return None;
            }
            if !m.has(loc_esi, u64::from(j) * 4)
                || !m.has(loc_edi, (u64::from(j) + u64::from(count)) * 4)
            {
                return None;
            }
            for _ in 0..j {
                let v = m.rd32(loc_esi)?;
                m.wr32(loc_edi, v)?;
                loc_edi += 4;
                loc_esi += 4;
            }
            if !m.has(save2, 8) {
                return None;
            }
            loc_ecx = m.rd32(save2)?;
            let save2 = save2 + 4;
            // `do { esi += ebx + 4 } while (--ecx)`: 2^32 rounds for 0.
            let rounds = if loc_ecx == 0 {
                1i128 << 32
            } else {
                i128::from(loc_ecx)
            };
            let far = i128::from(save2) + rounds * (i128::from(ebx_u) + 4);
            loc_esi = i64::try_from(far).ok()?;
            loc_ecx = 0;
            if !m.has(loc_esi, 4) {
                return None;
            }
            let fill = m.rd32(loc_esi)?;
            loc_esi += 4;
            for _ in 0..count {
                m.wr32(loc_edi, fill)?;
                loc_edi += 4;
            }
            if !m.has(loc_esi + 0x10, 4) {
                return None;
            }
            let v = m.rd32(loc_esi + 0x10)?.wrapping_add(ebx_u);
            m.wr32(loc_esi + 0x10, v)?;
            loc_ebx = loc_esi + 0x14;
            loc_esi = save2;
            out = i64::from(m.rd32(loc_esi)?) - i64::from(base);
            loc_esi += 4;
            if !m.has(loc_ebx - 4, 12 + 4 * 4)
                || !m.has(loc_esi + 0x24, 4)
                || !m.has(loc_esi + 0x40, 4)
            {
                return None;
            }
            paddr = sx(m.rd32(loc_ebx - 4)?) - i64::from(base);
            end = sx(m.rd32(loc_esi + 0x24)?) - i64::from(base);
            // Swap the range coder's two words.
            let a = m.rd32(loc_ebx)?;
            let b = m.rd32(loc_ebx + 4)?;
            m.wr32(loc_ebx, b)?;
            m.wr32(loc_ebx + 4, a)?;
        } else {
            // 1.1/1.2: between 0.39's two layouts.
            loc_esi = 0x148;
            let mut loc_edi = sx(m.rd32(loc_esi)?) - i64::from(base);
            loc_esi += 4;
            paddr = i64::from(m.rd32(loc_esi)?) - i64::from(base);
            loc_esi += 4;
            loc_edi += 4;
            loc_ebx = loc_edi;
            if (u64::from(count) + 6) * 4 > u64::from(u32::MAX) {
                return None;
            }
            if !m.has(loc_edi, (6 + u64::from(count)) * 4) {
                return None;
            }
            m.wr32(loc_edi, 0xffff_ffff)?;
            m.wr32(loc_edi + 4, 0)?;
            loc_edi += 8;
            for _ in 0..4 {
                m.wr32(loc_edi, 1)?;
                loc_edi += 4;
            }
            for _ in 0..count {
                m.wr32(loc_edi, 0x400)?;
                loc_edi += 4;
            }
            out = sx(m.rd32(loc_esi)?) - i64::from(base);
            loc_esi += 8;
            loc_ecx = 0;
            end = sx(m.rd32(loc_esi - 0x28)?) - i64::from(base);
        }
        if out > end {
            tracing::debug!("upack: loc_edi > end_edi");
            return None;
        }
        unupack399(
            &mut m, loc_ecx, loc_ebx, loc_ecx, out, end, shlsize, paddr, &mut fuel,
        )?;
        let save3 = if version == Version::V399 {
            m.rd32(loc_esi + 0x40)?
        } else {
            m.rd32(at(at(0, vma), ep) + 0x174)?
        };
        return finish(
            m, alv, out, save3, out, end, upack, dsize, base, oep, va, &mut fuel, max,
        );
    }
    finish(
        m,
        alvalue,
        pushed_esi,
        save3,
        start,
        end_edi,
        upack,
        dsize,
        base,
        original_ep,
        va,
        &mut fuel,
        max,
    )
}

/// The end of `unupack`: undo the call filter, then rebuild.
#[allow(clippy::too_many_arguments)]
fn finish(
    mut m: Mem<'_>,
    alvalue: i64,
    pushed_esi: i64,
    mut save3: u32,
    loc_edi: i64,
    end_edi: i64,
    upack: bool,
    dsize: u64,
    base: u32,
    original_ep: u32,
    va: u32,
    fuel: &mut Fuel,
    max: u64,
) -> Option<Vec<u8>> {
    // Calls: E8/E9 whose operand's low byte is the stub's `cmp al, xx`
    // value hold a big-endian absolute address in the upper three bytes.
    if !m.has(alvalue, 1) {
        tracing::debug!("upack: alvalue out of bounds");
        return None;
    }
    let searchval = u32::from(m.byte(alvalue)?);
    let mut loc_ecx: u32 = 0;
    while save3 != 0 {
        fuel.burn(1)?;
        let p = at(pushed_esi, loc_ecx);
        if !m.has(p, 1) {
            return None;
        }
        let op = m.byte(p)?;
        if op == 0xe8 || op == 0xe9 {
            let adr = p + 1;
            loc_ecx = loc_ecx.wrapping_add(1);
            if !m.has(adr, 4) {
                return None;
            }
            let v = m.rd32(adr)?;
            if v & 0xff != searchval {
                continue;
            }
            let v = (v & 0xffff_ff00)
                .swap_bytes()
                .wrapping_sub(loc_ecx)
                .wrapping_sub(4);
            m.wr32(adr, v)?;
            loc_ecx = loc_ecx.wrapping_add(4);
            save3 -= 1;
        } else {
            loc_ecx = loc_ecx.wrapping_add(1);
        }
    }
    let size = (end_edi - loc_edi) as u32;
    // bb#11282: ClamAV returns 0 here, a failure to its caller.
    if (!upack && u64::from(va.wrapping_add(size)) > dsize) || (upack && u64::from(size) > dsize) {
        tracing::debug!("upack: rebuilt section exceeds the buffer");
        return None;
    }
    let section = Section {
        raw: 0,
        rva: va,
        rsz: size,
        vsz: size,
        ..Section::default()
    };
    let from = if upack { 0 } else { va as usize };
    rebuild(
        m.b.get(from..)?,
        &[section],
        base,
        original_ep,
        (0, 0),
        0,
        max,
    )
}

/// `SizeOfOptionalHeader`, and each section's `PointerToRawData` as the
/// header has it (ClamAV's `uraw`), for the sections `info` kept (ClamAV
/// drops those whose data starts past the end of the file). `None` when
/// the table does not line up with `info`, or when neither an empty
/// section (`found`) nor Upack's optional-header size says the file may be
/// Upack's: the table is read only then, not for every executable.
fn header_fields(
    blob: &Blob,
    e_lfanew: u32,
    info: &ExeInfo,
    found: bool,
) -> io::Result<Option<(u16, Vec<u32>)>> {
    let pe = u64::from(e_lfanew);
    let mut fh = [0u8; 24];
    if read_at_full(blob, pe, &mut fh)? < fh.len() {
        return Ok(None);
    }
    let nsec = u16::from_le_bytes([fh[6], fh[7]]);
    let opt = u16::from_le_bytes([fh[20], fh[21]]);
    if !found && (info.pe32plus || opt != 0x148) {
        return Ok(None);
    }
    let table = pe + 24 + u64::from(opt);
    let mut uraw = Vec::new();
    for k in 0..u64::from(nsec) {
        let mut h = [0u8; 40];
        if read_at_full(blob, table + 40 * k, &mut h)? < h.len() {
            return Ok(None);
        }
        let (ursz, raw) = (moat_exe::le32(&h, 16), moat_exe::le32(&h, 20));
        if ursz != 0 && u64::from(raw) >= blob.len() {
            continue;
        }
        uraw.push(raw);
    }
    Ok((uraw.len() == info.sections.len()).then_some((opt, uraw)))
}

/// The Upack part of `cli_scanpe` (after MEW, before FSG and UPX; with at
/// least 168 bytes at the entry point): unpack `blob` if Upack packed it.
pub(crate) fn unpack(
    blob: &Blob,
    info: &ExeInfo,
    epbuff: &[u8; 4096],
    e_lfanew: u32,
    max: u64,
) -> io::Result<Outcome> {
    let found = super::mew::empty_section(info).is_some();
    let Some((opt, uraw)) = header_fields(blob, e_lfanew, info, found)? else {
        return Ok(Outcome::NotPacked);
    };
    let upack = !info.pe32plus && opt == 0x148;
    if !found && !upack {
        return Ok(Outcome::NotPacked);
    }
    let s = &info.sections;
    let base = info.image_base32;
    let min = s.iter().map(|s| s.rva).min().unwrap_or(0);
    let rd = moat_exe::le32;
    let esi = rd(epbuff, 1);
    let three = upack
        && s.len() == 3
        && epbuff[0] == 0xbe
        && esi.wrapping_sub(base) > min
        && ((epbuff[5] == 0xad && epbuff[6] == 0x50) || (epbuff[5] == 0xff && epbuff[6] == 0x36));
    let two = !upack
        && s.len() == 2
        && ((epbuff[0] == 0x60 && epbuff[1] == 0xe8 && rd(epbuff, 2) == 9)
            || (epbuff[0] == 0xbe
                && esi.wrapping_sub(base) < min
                && (esi as i32) > (base as i32)
                && epbuff[5] == 0xad
                && epbuff[6] == 0x8b
                && epbuff[7] == 0xf8));
    if !three && !two {
        return Ok(Outcome::NotPacked);
    }
    let (a, b) = (s[0].vsz, s[1].vsz);
    let (c, ssize, off, vma) = if upack {
        (
            s[2].vsz,
            s[0].ursz.wrapping_add(uraw[0]),
            s[0].rva,
            base.wrapping_add(s[0].rva),
        )
    } else {
        (s[1].rva, uraw[1], 0, s[1].rva.wrapping_sub(uraw[1]))
    };
    let dsize = a.wrapping_add(b).wrapping_add(c);
    // CLI_UNPSIZELIMITS: ClamAV stops here, the file unscanned further.
    let need = u64::from(dsize.max(ssize).max(s[1].ursz));
    if need > max {
        return Ok(Outcome::TooLarge(need));
    }
    // CLI_ISCONTAINED_0_TO: within a buffer that starts at zero.
    let c0 = |size: u32, at: u32, n: u32| super::contained(0, size, at, n);
    let s1_at = s[1].rva.wrapping_sub(off);
    let s2_at = if upack {
        s[2].rva.wrapping_sub(s[0].rva)
    } else {
        0
    };
    if !c0(dsize, s1_at, s[1].ursz) || (upack && !c0(dsize, s2_at, ssize)) || ssize > dsize {
        tracing::debug!("upack: probably malformed pe-header");
        return Ok(Outcome::NotPacked);
    }
    let mut dest = vec![0u8; dsize as usize];
    let ssz = ssize as usize;
    if read_at_full(blob, 0, &mut dest[..ssz])? < ssz {
        return Ok(Outcome::NotPacked);
    }
    if upack {
        dest.copy_within(..ssz, s2_at as usize);
    }
    let (at1, n1) = (s1_at as usize, s[1].ursz as usize);
    if read_at_full(blob, u64::from(uraw[1]), &mut dest[at1..at1 + n1])? < n1 {
        return Ok(Outcome::NotPacked);
    }
    let ep = info.ep.map_or(0, |e| e as u32);
    Ok(
        match unupack(upack, &mut dest, epbuff, vma, ep, base, s[0].rva, max) {
            Some(image) => Outcome::Unpacked {
                image,
                packed: blob.len(),
            },
            None => {
                tracing::debug!("upack: unpacking failed");
                Outcome::NotPacked
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: u64, n: usize) -> Vec<u8> {
        crate::tests::noise_bytes(n, seed)
    }

    #[test]
    fn the_decoder_stays_in_bounds_on_noise() {
        // A model at 0x100 (range coder words, six state words, then the
        // probabilities), random input, output in the second half.
        for seed in 1..60u64 {
            let mut buf = noise(seed, 0x20000);
            buf[0x100..0x108].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
            for i in 0..0x1c00usize {
                let at = 0x100 + 24 + 4 * i;
                buf[at..at + 4].copy_from_slice(&0x400u32.to_le_bytes());
            }
            let mut m = Mem { b: &mut buf };
            let mut fuel = Fuel::for_buffer(0x20000);
            let shl = 2 + (seed % 7) as u32;
            let _ = unupack399(
                &mut m,
                0,
                0x100,
                (seed % 2) as u32 * 0x80,
                0x10000,
                0x18000,
                shl,
                0x8000,
                &mut fuel,
            );
        }
    }

    #[test]
    fn unupack_never_panics_on_noise() {
        for seed in 1..200u64 {
            let mut dest = noise(seed, 0x3000);
            let mut ep = [0u8; 4096];
            ep[..64].copy_from_slice(&noise(seed ^ 9, 64));
            ep[0] = 0xbe;
            let upack = seed % 2 == 0;
            let _ = unupack(
                upack,
                &mut dest,
                &ep,
                0x40_1000,
                0x18,
                0x40_0000,
                0x1000,
                1 << 20,
            );
        }
    }

    #[test]
    fn the_fuel_stops_a_decoder_that_never_consumes_input() {
        // Probabilities of exactly 0x800 never adapt and never shrink the
        // range: ClamAV would decode 0 bits forever in `lzma_upack_esi_50`
        // once its value wraps to 0. The fuel ends it.
        let mut buf = vec![0u8; 0x100];
        for i in 0..16 {
            buf[4 * i..4 * i + 4].copy_from_slice(&0x800u32.to_le_bytes());
        }
        let mut m = Mem { b: &mut buf };
        let mut rc = Rc {
            p0: 0x80,
            p1: 0xffff_ffff,
            p2: 0,
        };
        let mut fuel = Fuel::for_buffer(0x100);
        let mut edx = 0;
        assert_eq!(
            upack_tree(&mut rc, &mut m, 0, 0x100, &mut edx, 0, &mut fuel),
            None
        );
    }
}

//! MEW-packed executables, unpacked as ClamAV unpacks them
//! (`libclamav/mew.c`, `unmew` in `packlibs.c`, and the MEW part of
//! `cli_scanpe`), so that the rebuilt program hashes as clamscan's does.
//!
//! MEW 11 keeps an empty section (the image) followed by the packer's
//! section; the entry point jumps to a stub at file offset 0x154 or 0x158
//! whose `mov esi` points at the packed data. Both sections are laid out in
//! one buffer (the image's virtual size, then the packer's), the data is
//! decompressed in place, block by block, either with the aPLib-like coder
//! (`unmew`) or, when the stub calls one, with MEW's LZMA variant
//! (`mew_lzma`), and the image becomes a PE again with ClamAV's
//! `cli_rebuildpe_align`.
//!
//! ClamAV's decoders are disassembled x86 working on raw pointers into that
//! one buffer (compressed source, output and the LZMA model's probabilities
//! all live in it, and may overlap). Here a pointer is an `i64` offset from
//! the buffer's start and every access is checked as ClamAV's
//! `CLI_ISCONTAINED` checks it (or, where ClamAV does not check, fails
//! instead of reading outside). The range-decoder state and the
//! adaptive-bit routines Upack shares ([`Rc`], [`upack_bit`],
//! [`upack_tree`], [`upack_len`]) live here as they do in `mew.c`.
//!
//! One departure, for hostile input only: ClamAV's block loops can be made
//! to decode the same buffer over and over (quadratic time) or, with
//! crafted probabilities, to spin without consuming input. A [`Fuel`]
//! budget of decoded bits and written bytes, far above what a real program
//! needs, makes those fail (the file is then scanned as it is).

use super::packed::Outcome;
use super::rebuildpe::rebuild;
use super::{contained, read_at_full};
use moat_core::Blob;
use moat_exe::pe::pe_salign;
use moat_exe::{ExeInfo, Section};
use std::io;

/// A pointer plus a 32-bit value, as C adds an unsigned offset.
pub(crate) fn at(p: i64, off: u32) -> i64 {
    p + i64::from(off)
}

/// ClamAV's working buffer: pointers are offsets from its start.
pub(crate) struct Mem<'a> {
    pub(crate) b: &'a mut [u8],
}

impl Mem<'_> {
    /// `CLI_ISCONTAINED(buffer, size, p, n)`.
    pub(crate) fn has(&self, p: i64, n: u64) -> bool {
        contained(0, self.b.len() as u64, p, n)
    }

    pub(crate) fn byte(&self, p: i64) -> Option<u8> {
        self.b.get(usize::try_from(p).ok()?).copied()
    }

    pub(crate) fn set(&mut self, p: i64, v: u8) -> Option<()> {
        *self.b.get_mut(usize::try_from(p).ok()?)? = v;
        Some(())
    }

    pub(crate) fn rd32(&self, p: i64) -> Option<u32> {
        let p = usize::try_from(p).ok()?;
        let s = self.b.get(p..p.checked_add(4)?)?;
        Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    pub(crate) fn wr32(&mut self, p: i64, v: u32) -> Option<()> {
        let p = usize::try_from(p).ok()?;
        self.b
            .get_mut(p..p.checked_add(4)?)?
            .copy_from_slice(&v.to_le_bytes());
        Some(())
    }
}

/// The work a decoder may still do (bits decoded, bytes written); see the
/// module documentation.
pub(crate) struct Fuel(u64);

impl Fuel {
    /// Enough for every byte of a `size`-byte buffer to be decoded a few
    /// times over: a literal byte costs about nine bit decodes and a write,
    /// so 24 steps a byte leaves room for real programs while a tiny file
    /// declaring a 128 MiB image stays within a few seconds of work.
    pub(crate) fn for_buffer(size: usize) -> Fuel {
        Fuel((size as u64).saturating_mul(24).saturating_add(1 << 20))
    }

    pub(crate) fn burn(&mut self, n: u64) -> Option<()> {
        self.0 = self.0.checked_sub(n)?;
        Some(())
    }
}

/// ClamAV's `struct lzmastate`: the input position (`p0`), the range
/// (`p1`) and the code (`p2`).
pub(crate) struct Rc {
    pub(crate) p0: i64,
    pub(crate) p1: u32,
    pub(crate) p2: u32,
}

// ---- unmew: the aPLib-like coder, in one shared buffer ----

/// `doubledl` over the source `[start, start + size)` of the shared buffer
/// (ClamAV never reads its last byte here).
fn doubledl(m: &Mem<'_>, scur: &mut i64, dl: &mut u8, start: i64, size: i64) -> Option<u32> {
    let old = *dl;
    let mut new = old.wrapping_mul(2);
    let mut from = old;
    if old & 0x7f == 0 {
        if *scur < start || *scur >= start + size - 1 {
            return None;
        }
        from = m.byte(*scur)?;
        new = from.wrapping_mul(2).wrapping_add(1);
        *scur += 1;
    }
    *dl = new;
    Some(u32::from(from >> 7))
}

/// `unmew`: decompress from `source` (`ssize` bytes) to `dest` (room for
/// `dsize`), both in `m`, which may overlap. The ends of the source and of
/// the output, or `None` where ClamAV fails.
fn unmew(
    m: &mut Mem<'_>,
    source: i64,
    dest: i64,
    ssize: u32,
    dsize: u32,
    fuel: &mut Fuel,
) -> Option<(i64, i64)> {
    // ClamAV passes the sizes as `int`.
    let (ss, ds) = (i64::from(ssize as i32), i64::from(dsize as i32));
    let mut dl: u8 = 0x80;
    let mut oldback: u32 = 0;
    let mut lostbit: u32 = 1;
    let (mut csrc, mut cdst) = (source, dest);
    // The first byte, unchecked in ClamAV (its caller checked both).
    let first = m.byte(csrc)?;
    m.set(cdst, first)?;
    csrc += 1;
    cdst += 1;
    let gamma = |m: &Mem<'_>, s: &mut i64, dl: &mut u8| -> Option<u32> {
        let mut v: u32 = 1;
        loop {
            v = v
                .wrapping_mul(2)
                .wrapping_add(doubledl(m, s, dl, source, ss)?);
            if doubledl(m, s, dl, source, ss)? == 0 {
                return Some(v);
            }
        }
    };
    loop {
        if doubledl(m, &mut csrc, &mut dl, source, ss)? == 0 {
            // 15d: a literal.
            if cdst < dest || cdst >= dest + ds || csrc < source || csrc >= source + ss {
                return None;
            }
            let b = m.byte(csrc)?;
            m.set(cdst, b)?;
            fuel.burn(1)?;
            cdst += 1;
            csrc += 1;
            lostbit = 1;
            continue;
        }
        let (backbytes, backsize);
        if doubledl(m, &mut csrc, &mut dl, source, ss)? == 1 {
            if doubledl(m, &mut csrc, &mut dl, source, ss)? == 1 {
                // 170: a short back reference, or a zero byte.
                lostbit = 1;
                let mut b: u32 = 0x10;
                while b < 0x100 {
                    b = b * 2 + doubledl(m, &mut csrc, &mut dl, source, ss)?;
                }
                b &= 0xff;
                if b == 0 {
                    if cdst >= dest + ds {
                        return None;
                    }
                    m.set(cdst, 0)?;
                    fuel.burn(1)?;
                    cdst += 1;
                    continue;
                }
                (backbytes, backsize) = (b, 1);
            } else {
                // 18f: a byte of offset and length; offset 0 ends the data.
                if csrc >= source + ss {
                    return None;
                }
                let b = u32::from(m.byte(csrc)?);
                csrc += 1;
                let size = b & 1;
                let b = b >> 1;
                if b == 0 {
                    return Some((csrc, cdst));
                }
                oldback = b;
                lostbit = 0;
                (backbytes, backsize) = (b, size + 2);
            }
        } else {
            // 180: gamma-coded offset (or the previous one) and length.
            let v = gamma(m, &mut csrc, &mut dl)?
                .wrapping_sub(1)
                .wrapping_sub(lostbit);
            if v == 0 {
                backsize = gamma(m, &mut csrc, &mut dl)?;
                backbytes = oldback;
            } else {
                if csrc >= source + ss {
                    return None;
                }
                let b = u32::from(m.byte(csrc)?).wrapping_add(v.wrapping_sub(1) << 8);
                csrc += 1;
                let size = super::aplib::longer(b, gamma(m, &mut csrc, &mut dl)?);
                oldback = b;
                (backbytes, backsize) = (b, size);
            }
            lostbit = 0;
        }
        let n = u64::from(backsize);
        let from = cdst - i64::from(backbytes);
        let dsz = ds as u64;
        if !contained(dest, dsz, cdst, n) || !contained(dest, dsz, from, n) {
            return None;
        }
        fuel.burn(n)?;
        for k in 0..n as i64 {
            let b = m.byte(from + k)?;
            m.set(cdst + k, b)?;
        }
        cdst += n as i64;
    }
}

// ---- mew_lzma: MEW's LZMA variant (16-bit probabilities) ----

impl Rc {
    /// `lzma_bswap_4861dc`: the code is the big-endian word after the
    /// first byte at `p`.
    fn mew_init(m: &Mem<'_>, p: i64) -> Option<Rc> {
        Some(Rc {
            p2: m.rd32(p + 1)?.swap_bytes(),
            p1: 0xffff_ffff,
            p0: p + 5,
        })
    }

    /// `lzma_486248`: one adaptive bit with the 16-bit probability at
    /// `*ecx` (the upper half of its dword kept). Normalising moves `*ecx`
    /// to the input, as the original's register reuse does.
    fn bit(&mut self, m: &mut Mem<'_>, ecx: &mut i64, fuel: &mut Fuel) -> Option<u32> {
        if !m.has(*ecx, 4) || !m.has(self.p0, 1) {
            return None;
        }
        fuel.burn(1)?;
        let mut esi = self.p1;
        let mut eax = esi >> 11;
        let mut cv = m.rd32(*ecx)?;
        let prob = cv & 0xffff;
        eax = eax.wrapping_mul(prob);
        let mut edi = self.p2;
        let ret;
        if edi < eax {
            self.p1 = eax;
            // An arithmetic shift of the (possibly negative) difference.
            edi = ((0x800u32.wrapping_sub(prob) as i32) >> 5) as u32;
            edi = edi.wrapping_add((eax & 0xffff_0000) | prob);
            cv = (cv & 0xffff_0000) | (edi & 0xffff);
            m.wr32(*ecx, cv)?;
            ret = 0;
        } else {
            esi = esi.wrapping_sub(eax);
            edi = edi.wrapping_sub(eax);
            self.p1 = esi;
            self.p2 = edi;
            eax = (eax & 0xffff_0000) | prob;
            esi = (esi & 0xffff_0000) | (prob >> 5);
            eax = eax.wrapping_sub(esi);
            cv = (cv & 0xffff_0000) | (eax & 0xffff);
            m.wr32(*ecx, cv)?;
            ret = 1;
        }
        if self.p1 < 0x100_0000 {
            *ecx = self.p0;
            let b = u32::from(m.byte(self.p0)?);
            self.p2 = (self.p2 << 8) | b;
            *ecx += 1;
            self.p1 <<= 8;
            self.p0 = *ecx;
        }
        Some(ret)
    }

    /// `lzma_48635C`: a literal decoded against the byte at the match
    /// distance (`znaczek`), tree at `*ecx`.
    fn matched_literal(
        &mut self,
        m: &mut Mem<'_>,
        mut z: u8,
        ecx: &mut i64,
        fuel: &mut Fuel,
    ) -> Option<u32> {
        let mut esi = u32::from(z >> 7);
        z <<= 1;
        let mut ret = esi << 9;
        let edi = *ecx;
        *ecx = at(edi, ret + 0x202);
        ret = self.bit(m, ecx, fuel)?;
        let mut ebx = ret | 2;
        while esi == ret {
            if ebx >= 0x100 {
                return Some((ret & 0xffff_ff00) | (ebx & 0xff));
            }
            esi = u32::from(z >> 7);
            z <<= 1;
            ret = ((esi + 1) << 8).wrapping_add(ebx);
            *ecx = at(edi, ret.wrapping_mul(2));
            ret = self.bit(m, ecx, fuel)?;
            ebx = ebx.wrapping_add(ebx) | ret;
        }
        while ebx < 0x100 {
            ebx = ebx.wrapping_add(ebx);
            *ecx = at(edi, ebx);
            ret = self.bit(m, ecx, fuel)?;
            ebx |= ret;
        }
        Some((ret & 0xffff_ff00) | (ebx & 0xff))
    }

    /// `lzma_4862e0`: an `*edx`-bit tree at `*ecx`; `*edx` becomes
    /// `1 << bits`.
    fn tree(
        &mut self,
        m: &mut Mem<'_>,
        ecx: &mut i64,
        edx: &mut u32,
        fuel: &mut Fuel,
    ) -> Option<u32> {
        let ebx = *edx;
        let mut ret: u32 = 1;
        let edi = *ecx;
        if ebx != 0 && ebx & 0x8000_0000 == 0 {
            for _ in 0..ebx {
                let esi = ret.wrapping_add(ret);
                *ecx = at(edi, esi);
                ret = self.bit(m, ecx, fuel)?.wrapping_add(esi);
            }
        }
        *edx = 1u32.checked_shl(ebx & 0xff).unwrap_or(0);
        Some(ret.wrapping_sub(*edx))
    }

    /// `lzma_4863da`: a length (choice bits, then a 3- or 8-bit tree) for
    /// position state `var0`.
    fn length(
        &mut self,
        m: &mut Mem<'_>,
        var0: u32,
        ecx: &mut i64,
        edx: &mut u32,
        fuel: &mut Fuel,
    ) -> Option<u32> {
        let esi = *ecx;
        if self.bit(m, ecx, fuel)? != 0 {
            *ecx = esi + 2;
            if self.bit(m, ecx, fuel)? != 0 {
                *edx = 8;
                *ecx = esi + 0x204;
                Some(self.tree(m, ecx, edx, fuel)?.wrapping_add(0x10))
            } else {
                *edx = 3;
                *ecx = at(esi + 0x104, var0 << 4);
                Some(self.tree(m, ecx, edx, fuel)?.wrapping_add(8))
            }
        } else {
            *edx = 3;
            *ecx = at(esi + 4, var0 << 4);
            self.tree(m, ecx, edx, fuel)
        }
    }

    /// `lzma_486204`: `n` bits straight from the range coder.
    fn direct(&mut self, m: &Mem<'_>, n: u32, fuel: &mut Fuel) -> Option<u32> {
        let (mut esi, mut edi, mut eax) = (self.p1, self.p2, 0u32);
        if n != 0 && n & 0x8000_0000 == 0 {
            fuel.burn(u64::from(n))?;
            for _ in 0..n {
                esi >>= 1;
                eax <<= 1;
                if edi >= esi {
                    edi = edi.wrapping_sub(esi);
                    eax |= 1;
                }
                if esi < 0x100_0000 {
                    if !m.has(self.p0, 1) {
                        return None;
                    }
                    edi = (edi << 8) | u32::from(m.byte(self.p0)?);
                    esi <<= 8;
                    self.p0 += 1;
                }
            }
        }
        self.p2 = edi;
        self.p1 = esi;
        Some(eax)
    }

    /// `lzma_48631a`: an `*edx`-bit reverse tree at `*ecx`.
    fn reverse(
        &mut self,
        m: &mut Mem<'_>,
        ecx: &mut i64,
        edx: &mut u32,
        fuel: &mut Fuel,
    ) -> Option<u32> {
        let n = *edx;
        let ebx = *ecx;
        *edx = 1;
        let mut v: u32 = 0;
        let mut i: u32 = 0;
        while i < n {
            let esi = edx.wrapping_add(*edx);
            *ecx = at(ebx, esi);
            let ret = self.bit(m, ecx, fuel)?;
            *edx = esi.wrapping_add(ret);
            v |= ret.checked_shl(i & 0xff).unwrap_or(0);
            i += 1;
        }
        Some(v)
    }
}

/// `mew_lzma`: decode the LZMA blocks described at `buf` into `m`. With
/// `special` (the stub pushes `eax`), one block whose E8/E9 call targets
/// are then made relative again. `Some` where ClamAV returns 0.
fn mew_lzma(m: &mut Mem<'_>, buf: i64, vma: u32, special: bool, fuel: &mut Fuel) -> Option<()> {
    let mut source = buf;
    let mut pushed_edx: u32 = 0;
    if special {
        pushed_edx = m.rd32(source)?;
        source += 4;
    }
    let temp = m.rd32(source)?.wrapping_sub(vma);
    source += 4;
    let mut pushed_ebx = source;
    let new_ebx = at(0, temp);
    let mut filled = false;
    loop {
        // loc_486450: a block header (count, output, input size, input).
        let (var28, var18, mut rc);
        let mut pushed_esi = 0;
        loop {
            if !special {
                source = pushed_ebx;
                if !m.has(source, 16) {
                    return None;
                }
                if m.rd32(source)? == 0 {
                    return Some(());
                }
            } else if !m.has(source, 12) {
                return None;
            }
            let count = m.rd32(source)?;
            source += 4;
            let out = at(0, m.rd32(source)?.wrapping_sub(vma));
            if special {
                pushed_esi = out;
            }
            source += 4;
            let insize = m.rd32(source)?;
            source += 5; // yes, five
            let var2c = source;
            source = at(source, insize);
            pushed_ebx = source;
            if !m.has(new_ebx, 0x6e6c) {
                return None;
            }
            // The model: 0x1b9b dwords of 0x04000400 (every probability
            // 0x400). Refilling before any decoding writes the same bytes.
            if !filled {
                for i in 0..0x1b9b {
                    m.wr32(new_ebx + 4 * i, 0x0400_0400)?;
                }
                filled = true;
            }
            if !m.has(var2c, 5) {
                return None;
            }
            rc = Rc::mew_init(m, var2c)?;
            if count != 0 {
                (var28, var18) = (count, out);
                break;
            }
        }
        filled = false;
        let mut var1: u8 = 0;
        let (mut loc_esi, mut var08, mut var20): (u32, u32, u32) = (0, 0, 0);
        let mut loc_edi: u32 = 1;
        let (mut var14, mut var10, mut var24): (u32, u32, u32) = (1, 1, 1);
        let mut new_edx: u32 = 0;
        let mut new_ecx: i64;
        loop {
            // loc_4864a5
            let pos = var08 & 3;
            new_ecx = at(new_ebx, ((loc_esi << 4).wrapping_add(pos)).wrapping_mul(2));
            let mut var0c = pos;
            if rc.bit(m, &mut new_ecx, fuel)? != 0 {
                // loc_486549: a match or a repeat.
                new_ecx = at(new_ebx, loc_esi.wrapping_mul(2).wrapping_add(0x180));
                var20 = 1;
                if rc.bit(m, &mut new_ecx, fuel)? != 1 {
                    // loc_486627: a new distance.
                    var24 = var10;
                    var10 = var14;
                    let st = if loc_esi >= 7 { 10 } else { 7 };
                    new_ecx = new_ebx + 0x664;
                    var14 = loc_edi;
                    loc_esi = st;
                    var0c = rc.length(m, var0c, &mut new_ecx, &mut new_edx, fuel)?;
                    let mut new_eax = if var0c >= 4 { 3 } else { var0c };
                    new_edx = 6;
                    new_eax <<= 7;
                    new_ecx = at(new_ebx + 0x360, new_eax);
                    let slot = rc.tree(m, &mut new_ecx, &mut new_edx, fuel)?;
                    if slot < 4 {
                        loc_edi = slot;
                    } else {
                        let mut loc_ecx = ((slot as i32) >> 1).wrapping_sub(1) as u32;
                        loc_edi = ((slot & 1) | 2).checked_shl(loc_ecx & 0xff).unwrap_or(0);
                        if slot >= 0xe {
                            new_edx = loc_ecx.wrapping_sub(4);
                            let d = rc.direct(m, new_edx, fuel)?;
                            loc_edi = loc_edi.wrapping_add(d << 4);
                            new_edx = 4;
                            new_ecx = new_ebx + 0x644;
                        } else {
                            new_edx = loc_ecx;
                            loc_ecx = loc_edi.wrapping_sub(slot);
                            new_ecx = at(new_ebx, loc_ecx.wrapping_mul(2).wrapping_add(0x55e));
                        }
                        let r = rc.reverse(m, &mut new_ecx, &mut new_edx, fuel)?;
                        loc_edi = loc_edi.wrapping_add(r);
                    }
                    loc_edi = loc_edi.wrapping_add(1);
                } else {
                    // loc_486568: a repeated distance.
                    new_ecx = at(new_ebx, loc_esi.wrapping_mul(2).wrapping_add(0x198));
                    if rc.bit(m, &mut new_ecx, fuel)? != 0 {
                        new_ecx = at(new_ebx, loc_esi.wrapping_mul(2).wrapping_add(0x1b0));
                        let dist;
                        if rc.bit(m, &mut new_ecx, fuel)? != 0 {
                            new_ecx = at(new_ebx, loc_esi.wrapping_mul(2).wrapping_add(0x1c8));
                            if rc.bit(m, &mut new_ecx, fuel)? != 0 {
                                dist = var24;
                                var24 = var10;
                            } else {
                                dist = var10;
                            }
                            var10 = var14;
                        } else {
                            dist = var14;
                        }
                        var14 = loc_edi;
                        loc_edi = dist;
                    } else {
                        // loc_48657e
                        let idx = ((loc_esi.wrapping_add(0xf)) << 4).wrapping_add(var0c);
                        new_ecx = at(new_ebx, idx.wrapping_mul(2));
                        if rc.bit(m, &mut new_ecx, fuel)? == 0 {
                            // loc_486593: one byte from the last distance.
                            let loc_ecx = var08.wrapping_sub(loc_edi);
                            loc_esi = if loc_esi >= 7 { 11 } else { 9 };
                            let from = at(var18, loc_ecx);
                            if !m.has(from, 1) {
                                return None;
                            }
                            var1 = m.byte(from)?;
                            let to = at(var18, var08);
                            var08 = var08.wrapping_add(1);
                            if !m.has(to, 1) {
                                return None;
                            }
                            m.set(to, var1)?;
                            fuel.burn(1)?;
                            // `continue` in the do-while: its condition.
                            if var08 < var28 {
                                continue;
                            }
                            break;
                        }
                    }
                    // loc_4865fe
                    new_ecx = new_ebx + 0xa68;
                    var0c = rc.length(m, var0c, &mut new_ecx, &mut new_edx, fuel)?;
                    loc_esi = if loc_esi >= 7 { 11 } else { 8 };
                }
                // loc_4866cd: distance 0 ends the block.
                if loc_edi == 0 {
                    break;
                }
                var0c = var0c.wrapping_add(2);
                let mut d = var08;
                let mut s = var08.wrapping_sub(loc_edi);
                let rest = u64::from(var28.wrapping_sub(d));
                let n = u64::from(var0c);
                // ClamAV's check, as written: the rest of the block must
                // fit at both ends whatever the length.
                if (var0c < var28.wrapping_sub(d)
                    && (!m.has(at(var18, s), n) || !m.has(at(var18, d), n)))
                    || !m.has(at(var18, s), rest)
                    || !m.has(at(var18, d), rest)
                {
                    return None;
                }
                loop {
                    let b = m.byte(at(var18, s))?;
                    m.set(at(var18, d), b)?;
                    fuel.burn(1)?;
                    d = d.wrapping_add(1);
                    s = s.wrapping_add(1);
                    var0c = var0c.wrapping_sub(1);
                    if var0c == 0 || d >= var28 {
                        break;
                    }
                }
                var08 = d;
            } else {
                // loc_4864C8: a literal, with 16 contexts of the previous
                // byte's high nibble.
                let base = at(new_ebx + 0xe6c, (u32::from(var1 >> 4) * 3) << 9);
                new_ecx = base;
                loc_esi = if loc_esi >= 4 {
                    if loc_esi >= 10 {
                        loc_esi - 6
                    } else {
                        loc_esi - 3
                    }
                } else {
                    0
                };
                if var20 == 0 {
                    let mut sym: u32 = 1;
                    loop {
                        sym = sym.wrapping_add(sym);
                        new_ecx += i64::from(sym);
                        let keep = sym;
                        sym = rc.bit(m, &mut new_ecx, fuel)? | keep;
                        if sym < 0x100 {
                            new_ecx = base;
                        } else {
                            break;
                        }
                    }
                    var1 = sym as u8;
                } else {
                    let from = at(var18, var08.wrapping_sub(loc_edi));
                    if !m.has(from, 1) {
                        return None;
                    }
                    let t = m.byte(from)?;
                    let r = rc.matched_literal(m, t, &mut new_ecx, fuel)?;
                    var20 = 0;
                    var1 = r as u8;
                }
                let to = at(var18, var08);
                var08 = var08.wrapping_add(1);
                if !m.has(to, 1) {
                    return None;
                }
                m.set(to, var1)?;
                fuel.burn(1)?;
            }
            if var08 >= var28 {
                break;
            }
        }
        if special {
            // Fix the calls: E8/E9 operands were stored big-endian and
            // absolute. Failing here is no failure in ClamAV.
            if pushed_edx < 5 || !m.has(pushed_esi, u64::from(pushed_edx)) {
                return Some(());
            }
            let mut i: u32 = 0;
            while i < pushed_edx - 5 {
                let op = m.byte(pushed_esi + i64::from(i))?;
                if op == 0xe8 || op == 0xe9 {
                    let adr = pushed_esi + i64::from(i) + 1;
                    let v = m.rd32(adr)?.swap_bytes().wrapping_sub(i).wrapping_sub(1);
                    m.wr32(adr, v)?;
                    i += 4;
                }
                i += 1;
            }
            return Some(());
        }
    }
}

// ---- Upack's LZMA routines (32-bit probabilities), kept in mew.c ----

/// What [`upack_bit`] returns where ClamAV's `lzma_upack_esi_00` fails:
/// most of its callers do not check, and take it for a 1 bit.
pub(crate) const UPACK_ERR: u32 = 0xffff_ffff;

/// `lzma_upack_esi_00`: one adaptive bit with the 32-bit probability at
/// `ecx`, the code read afresh (big-endian) at `p0` each time.
/// [`UPACK_ERR`] where ClamAV returns it; `None` when the fuel is out.
pub(crate) fn upack_bit(rc: &mut Rc, m: &mut Mem<'_>, ecx: i64, fuel: &mut Fuel) -> Option<u32> {
    fuel.burn(1)?;
    if !m.has(ecx, 4) || !m.has(rc.p0, 4) {
        return Some(UPACK_ERR);
    }
    let mut eax = rc.p1 >> 11;
    let prob = m.rd32(ecx)?;
    eax = eax.wrapping_mul(prob);
    let edi = m.rd32(rc.p0)?.swap_bytes().wrapping_sub(rc.p2);
    let ret = if edi < eax {
        rc.p1 = eax;
        m.wr32(ecx, prob.wrapping_add(0x800u32.wrapping_sub(prob) >> 5))?;
        0
    } else {
        rc.p2 = rc.p2.wrapping_add(eax);
        rc.p1 = rc.p1.wrapping_sub(eax);
        m.wr32(ecx, prob.wrapping_sub(prob >> 5))?;
        1
    };
    if rc.p1 & 0xff00_0000 == 0 {
        rc.p2 <<= 8;
        rc.p1 <<= 8;
        rc.p0 += 1;
    }
    Some(ret)
}

/// `lzma_upack_esi_50`: a bit tree from `eax` until it reaches `ecx`,
/// probabilities at `ebp`; `*edx` is left at the last one. `None` where
/// ClamAV fails (or the fuel is out).
pub(crate) fn upack_tree(
    rc: &mut Rc,
    m: &mut Mem<'_>,
    eax: u32,
    ecx: u32,
    edx: &mut i64,
    ebp: i64,
    fuel: &mut Fuel,
) -> Option<u32> {
    let mut v = eax;
    loop {
        *edx = at(ebp, v << 2);
        let ret = upack_bit(rc, m, *edx, fuel)?;
        if ret == UPACK_ERR {
            return None;
        }
        v = v.wrapping_add(v).wrapping_add(ret);
        if v >= ecx {
            return Some(v.wrapping_sub(ecx));
        }
    }
}

/// `lzma_upack_esi_54`: a match length (two choice bits, then a 3- or
/// 8-bit tree), coder at `*edx`; `*ecx` becomes the tree's size.
pub(crate) fn upack_len(
    rc: &mut Rc,
    m: &mut Mem<'_>,
    eax: u32,
    ecx: &mut u32,
    edx: &mut i64,
    fuel: &mut Fuel,
) -> Option<u32> {
    *ecx = (*ecx & 0xffff_ff00) | 8;
    let ret = upack_bit(rc, m, *edx, fuel)?;
    *edx += 4;
    let mut v = (eax & 0xffff_ff00) | 1;
    if ret != 0 {
        let ret = upack_bit(rc, m, *edx, fuel)?;
        v |= 8;
        if ret != 0 {
            *ecx <<= 5;
            v = 0x11;
        }
    }
    let base = at(*edx, v << 2);
    let t = upack_tree(rc, m, 1, *ecx, edx, base, fuel)?;
    Some(v.wrapping_add(t))
}

// ---- unmew11: the blocks, then the PE ----

/// `unmew11`: unpack `src` (the image section's `dsize` bytes, then the
/// packer's section; `ssize + dsize` in all) whose data starts `off` into
/// the packer's section. `base` is the image base, `vadd` the first
/// section's address, `uselzma` where the LZMA routine is (0: none). The
/// rebuilt PE, or `None` where ClamAV fails.
#[allow(clippy::too_many_arguments)]
fn unmew11(
    src: &mut [u8],
    off: u32,
    ssize: u32,
    dsize: u32,
    base: u32,
    vadd: u32,
    uselzma: u32,
    max: u64,
) -> Option<Vec<u8>> {
    let vma = base.checked_add(vadd)?;
    let size_sum = ssize.checked_add(dsize)?;
    if src.len() != size_sum as usize {
        return None;
    }
    let mut fuel = Fuel::for_buffer(src.len());
    let sz = u64::from(size_sum);
    let mut m = Mem { b: src };
    if !m.has(i64::from(off), 12) {
        return None;
    }
    let source = i64::from(dsize) + i64::from(off);
    let mut lesi = source + 12;
    let entry_point = m.rd32(source + 4)?;
    let newedi = m.rd32(source + 8)?;
    let mut ledi = at(0, newedi.wrapping_sub(vma));
    let mut loc_ds = size_sum.wrapping_sub(newedi.wrapping_sub(vma));
    let mut loc_ss = ssize.wrapping_sub(12).wrapping_sub(off);
    let mut sections: Vec<Section> = Vec::new();
    let mut i = 0usize;
    let f1 = loop {
        tracing::trace!(i, lesi, ledi, "mew: unpacking section");
        if !contained(0, sz, lesi, u64::from(loc_ss)) || !contained(0, sz, ledi, u64::from(loc_ds))
        {
            return None;
        }
        let (f1, f2) = unmew(&mut m, lesi, ledi, loc_ss, loc_ds, &mut fuel)?;
        if !m.has(f1, 4) {
            return None;
        }
        loc_ss = loc_ss.wrapping_sub((f1 + 4 - lesi) as u32);
        lesi = f1 + 4;
        let next = m.rd32(f1)?;
        ledi = at(0, next.wrapping_sub(vma));
        loc_ds = size_sum.wrapping_sub(next.wrapping_sub(vma));
        if uselzma == 0 {
            // Each block ends a section, at the next page.
            let val = pe_salign(u32::try_from(f2).ok()?, 0x1000);
            if i > 0 && val < sections[i].raw {
                return None;
            }
            // More sections than cli_rebuildpe takes: it would fail.
            if i + 1 > 96 {
                return None;
            }
            if i == 0 {
                sections.push(Section::default());
            }
            sections[0].raw = 0;
            sections[0].rva = vadd;
            sections.push(Section {
                raw: val,
                rva: val.wrapping_add(vadd),
                ..Section::default()
            });
            let size = if i > 0 { val - sections[i].raw } else { val };
            sections[i].rsz = size;
            sections[i].vsz = size;
            if sections[i].raw.wrapping_add(size) > dsize {
                return None;
            }
        }
        i += 1;
        if next == 0 {
            break f1;
        }
    };
    if uselzma != 0 {
        // Everything in one section.
        let tag = at(0, uselzma) + 8;
        if !m.has(tag, 1) {
            return None;
        }
        // 0x50: push eax.
        let special = m.byte(tag)? == 0x50;
        tracing::trace!(special, "mew: lzma was used");
        if !m.has(f1 + 4, 20 + 4 + 5) {
            return None;
        }
        mew_lzma(&mut m, f1 + 4, vma, special, &mut fuel)?;
        sections = vec![Section {
            raw: 0,
            rva: vadd,
            rsz: dsize,
            vsz: dsize,
            ..Section::default()
        }];
    } else {
        sections.truncate(i);
    }
    rebuild(
        m.b,
        &sections,
        base,
        entry_point.wrapping_sub(base),
        (0, 0),
        0x1000,
        max,
    )
}

/// The first section without file data but with a size, followed by one
/// with both (`cli_scanpe`'s `found`): its index.
pub(crate) fn empty_section(info: &ExeInfo) -> Option<usize> {
    let s = &info.sections;
    (0..s.len().saturating_sub(1))
        .find(|&i| s[i].rsz == 0 && s[i].vsz != 0 && s[i + 1].rsz != 0 && s[i + 1].vsz != 0)
}

/// The MEW part of `cli_scanpe`: unpack `blob` (laid out as `info`, with
/// `epsize` bytes of `epbuff` read at its entry point) if MEW packed it.
pub(crate) fn unpack(
    blob: &Blob,
    info: &ExeInfo,
    epbuff: &[u8; 4096],
    epsize: usize,
    max: u64,
) -> io::Result<Outcome> {
    let Some(i) = empty_section(info) else {
        return Ok(Outcome::NotPacked);
    };
    if epsize < 16 || epbuff[0] != 0xe9 {
        return Ok(Outcome::NotPacked);
    }
    let rd = moat_exe::le32;
    // The jump's target read as a file offset (ClamAV's own TODO wonders
    // whether it should be). Win9x compatibility puts the stub at 0x154.
    let fileoffset = info.vep.wrapping_add(rd(epbuff, 1)).wrapping_add(5);
    if fileoffset != 0x154 && fileoffset != 0x158 {
        return Ok(Outcome::NotPacked);
    }
    let mut tbuff = [0u8; 0xb0];
    if read_at_full(blob, u64::from(fileoffset), &mut tbuff)? < tbuff.len() {
        return Ok(Outcome::NotPacked);
    }
    let (img, mew) = (info.sections[i], info.sections[i + 1]);
    // `mov esi`: the packed data, in the packer's section (bounded, as
    // ClamAV bounds it, by its file offset rather than its size).
    let mut offdiff = rd(&tbuff, 1).wrapping_sub(info.image_base32);
    if offdiff <= mew.rva || offdiff >= mew.rva.wrapping_add(mew.raw).wrapping_sub(4) {
        tracing::debug!("mew: ESI is not in proper section");
        return Ok(Outcome::NotPacked);
    }
    offdiff -= mew.rva;
    let (ssize, dsize) = (mew.vsz, img.vsz);
    let Some(sum) = ssize.checked_add(dsize) else {
        return Ok(Outcome::NotPacked);
    };
    if offdiff >= sum {
        return Ok(Outcome::NotPacked);
    }
    // CLI_UNPSIZELIMITS: ClamAV stops here, the file unscanned further.
    let need = u64::from(sum.max(mew.rsz));
    if need > max {
        return Ok(Outcome::TooLarge(need));
    }
    if mew.rsz < offdiff.wrapping_add(12) || mew.rsz > ssize {
        tracing::debug!(rsz = mew.rsz, "mew: size mismatch");
        return Ok(Outcome::NotPacked);
    }
    let mut src = vec![0u8; sum as usize];
    let packed = &mut src[dsize as usize..dsize as usize + mew.rsz as usize];
    if read_at_full(blob, u64::from(mew.raw), packed)? < packed.len() {
        // CL_EREAD: ClamAV's scan of the file ends.
        return Ok(Outcome::Declined);
    }
    // A call (0xe8) at 0x7b: MEW's LZMA routine, which must lie in the
    // second section (section 1, whichever the MEW one is).
    let uselzma = if tbuff[0x7b] == 0xe8 {
        let s1 = info.sections.get(1).copied().unwrap_or_default();
        let call = rd(&tbuff, 0x7c).wrapping_add(fileoffset).wrapping_add(0x80);
        if !contained(i64::from(s1.rva), u64::from(s1.vsz), i64::from(call), 4) {
            tracing::debug!("mew: lzma proc out of bounds");
            return Ok(Outcome::NotPacked);
        }
        let s0 = info.sections[0].rva;
        rd(&tbuff, 0x7c).wrapping_sub(s0.wrapping_sub(fileoffset).wrapping_sub(0x80))
    } else {
        0
    };
    Ok(
        match unmew11(
            &mut src,
            offdiff,
            ssize,
            dsize,
            info.image_base32,
            info.sections[0].rva,
            uselzma,
            max,
        ) {
            Some(image) => Outcome::Unpacked {
                image,
                packed: blob.len(),
            },
            None => {
                tracing::debug!("mew: unpacking failed");
                Outcome::NotPacked
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `unmew`'s bit stream: tag bytes of eight bits, most significant
    /// first, each placed where the decoder first needs one of its bits.
    struct Enc {
        out: Vec<u8>,
        tag: usize,
        used: u32,
    }

    impl Enc {
        fn bit(&mut self, b: bool) {
            if self.used == 8 {
                self.tag = self.out.len();
                self.out.push(0);
                self.used = 0;
            }
            if b {
                self.out[self.tag] |= 0x80 >> self.used;
            }
            self.used += 1;
        }
    }

    /// Literals, zero bytes (the 4-bit form), short back references (the
    /// byte form: distance < 128, length 2 or 3) and the end marker.
    fn encode(data: &[u8]) -> Vec<u8> {
        let mut e = Enc {
            out: vec![data[0]],
            tag: 0,
            used: 8,
        };
        let mut pos = 1;
        while pos < data.len() {
            let best = (1..pos.min(127) + 1)
                .map(|d| {
                    let l = (0..3)
                        .take_while(|&k| pos + k < data.len() && data[pos + k] == data[pos + k - d])
                        .count();
                    (l, d)
                })
                .max()
                .unwrap_or((0, 0));
            if best.0 >= 2 {
                for b in [true, true, false] {
                    e.bit(b);
                }
                e.out.push(((best.1 as u8) << 1) | (best.0 as u8 - 2));
                pos += best.0;
            } else if data[pos] == 0 {
                for b in [true, true, true, false, false, false, false] {
                    e.bit(b);
                }
                pos += 1;
            } else {
                e.bit(false);
                e.out.push(data[pos]);
                pos += 1;
            }
        }
        for b in [true, true, false] {
            e.bit(b);
        }
        e.out.push(0);
        // ClamAV never reads the source's last byte.
        e.out.push(0);
        e.out
    }

    fn noise(seed: u64, n: usize) -> Vec<u8> {
        crate::tests::noise_bytes(n, seed)
    }

    #[test]
    fn unmew_round_trips_in_one_shared_buffer() {
        let mut data = b"MEW MEW MEW packs this text; MEW packs it again.".repeat(9);
        data.extend([0u8; 40]);
        data.extend(b"end");
        let packed = encode(&data);
        // The output first, the source after it, as unmew11 lays them out.
        let mut buf = vec![0u8; data.len() + packed.len()];
        let src = data.len();
        buf[src..].copy_from_slice(&packed);
        let mut m = Mem { b: &mut buf };
        let mut fuel = Fuel::for_buffer(m.b.len());
        let (end_src, end_dst) = unmew(
            &mut m,
            src as i64,
            0,
            packed.len() as u32,
            data.len() as u32,
            &mut fuel,
        )
        .unwrap();
        assert_eq!(end_dst, data.len() as i64);
        assert_eq!(end_src, (src + packed.len() - 1) as i64);
        assert_eq!(&buf[..data.len()], &data[..]);
    }

    #[test]
    fn unmew_stops_at_the_end_of_its_output() {
        let data = b"0123456789abcdef".repeat(4);
        let packed = encode(&data);
        let mut buf = vec![0u8; 32 + packed.len()];
        buf[32..].copy_from_slice(&packed);
        let mut m = Mem { b: &mut buf };
        let mut fuel = Fuel::for_buffer(64);
        assert_eq!(
            unmew(&mut m, 32, 0, packed.len() as u32, 32, &mut fuel),
            None
        );
    }

    #[test]
    fn truncated_or_noisy_data_never_panics() {
        let data = b"some text some text some more text".repeat(20);
        let packed = encode(&data);
        for cut in 1..packed.len() {
            let mut buf = vec![0u8; data.len() + cut];
            buf[data.len()..].copy_from_slice(&packed[..cut]);
            let mut m = Mem { b: &mut buf };
            let mut fuel = Fuel::for_buffer(m.b.len());
            let _ = unmew(
                &mut m,
                data.len() as i64,
                0,
                cut as u32,
                data.len() as u32,
                &mut fuel,
            );
        }
        for seed in 0..300u64 {
            let n = 64 + (seed as usize * 37) % 0x8000;
            let mut buf = noise(seed, n);
            let mut fuel = Fuel::for_buffer(n);
            let mut m = Mem { b: &mut buf };
            let _ = unmew(
                &mut m,
                (n / 2) as i64,
                0,
                (n / 2) as u32,
                (n / 2) as u32,
                &mut fuel,
            );
            let mut buf = noise(seed, n);
            let mut m = Mem { b: &mut buf };
            let special = seed % 2 == 0;
            let _ = mew_lzma(
                &mut m,
                (seed % 64) as i64,
                seed as u32 & 0xff,
                special,
                &mut fuel,
            );
            let mut buf = noise(seed ^ 0x55, n);
            let off = (seed as u32 * 13) % 256;
            let _ = unmew11(
                &mut buf,
                off,
                (n / 2) as u32,
                (n - n / 2) as u32,
                0x40_0000,
                0x1000,
                (seed % 3) as u32 * 7,
                1 << 20,
            );
        }
    }

    #[test]
    fn lzma_decodes_noise_within_the_buffer() {
        // Valid block headers around random range-coder input: the
        // decoder runs through all its paths and stays in bounds.
        for seed in 1..40u64 {
            for special in [false, true] {
                let mut buf = noise(seed, 0x10000);
                let mut h = Vec::new();
                if special {
                    h.extend(0x800u32.to_le_bytes());
                }
                h.extend(0x8000u32.to_le_bytes()); // the model
                h.extend(0x4000u32.to_le_bytes()); // bytes to decode
                h.extend(0x100u32.to_le_bytes()); // output
                h.extend(0x1000u32.to_le_bytes()); // input size
                buf[..h.len()].copy_from_slice(&h);
                let mut m = Mem { b: &mut buf };
                let mut fuel = Fuel::for_buffer(0x10000);
                let _ = mew_lzma(&mut m, 0, 0, special, &mut fuel);
            }
        }
    }

    #[test]
    fn lzma_blocks_whose_model_is_outside_the_buffer_fail() {
        // A block header: 16 bytes of model pointer past the end.
        let mut buf = vec![0u8; 0x100];
        buf[..4].copy_from_slice(&0xf000u32.to_le_bytes());
        buf[4..8].copy_from_slice(&5u32.to_le_bytes());
        let mut m = Mem { b: &mut buf };
        let mut fuel = Fuel::for_buffer(0x100);
        assert_eq!(mew_lzma(&mut m, 0, 0, false, &mut fuel), None);
    }

    #[test]
    fn fuel_runs_out() {
        let mut f = Fuel(3);
        assert_eq!(f.burn(2), Some(()));
        assert_eq!(f.burn(2), None);
    }

    /// A MEW layout: the image section (no data), the packer's section,
    /// the stub at 0x154 whose `mov esi` points 0x1c into the latter.
    fn mew_file(packer_vsz: u32) -> (Blob, ExeInfo, [u8; 4096]) {
        let base = 0x40_0000;
        let info = ExeInfo {
            kind: moat_exe::ExeKind::Pe,
            ep: Some(0x200),
            sections: vec![
                Section {
                    rva: 0x1000,
                    vsz: 0x5000,
                    ..Section::default()
                },
                Section {
                    rva: 0x6000,
                    vsz: packer_vsz,
                    raw: 0x200,
                    rsz: 0x400,
                    ursz: 0x400,
                    chr: 0,
                },
            ],
            hdr_size: 0x1000,
            pe32plus: false,
            import_dir: (0, 0),
            resource_dir: (0, 0),
            vep: 0x6000,
            image_base32: base,
        };
        let mut file = noise(7, 0x600);
        file[0x155..0x159].copy_from_slice(&(base + 0x6000 + 0x1c).to_le_bytes());
        file[0x154 + 0x7b] = 0;
        let mut ep = [0u8; 4096];
        ep[0] = 0xe9;
        ep[1..5].copy_from_slice(&(0x154u32.wrapping_sub(0x6000 + 5)).to_le_bytes());
        (Blob::from_vec(file), info, ep)
    }

    #[test]
    fn an_image_over_the_limit_is_too_large_and_noise_is_not_packed() {
        let (blob, info, ep) = mew_file(0x1000_0000);
        assert!(matches!(
            unpack(&blob, &info, &ep, 4096, 128 << 20).unwrap(),
            Outcome::TooLarge(n) if n == 0x1000_5000
        ));
        let (blob, info, ep) = mew_file(0x1000);
        assert!(matches!(
            unpack(&blob, &info, &ep, 4096, 128 << 20).unwrap(),
            Outcome::NotPacked
        ));
        // Too few bytes at the entry point: not even looked at.
        assert!(matches!(
            unpack(&blob, &info, &ep, 15, 128 << 20).unwrap(),
            Outcome::NotPacked
        ));
    }
}

//! NsPack-packed Windows executables, unpacked as ClamAV unpacks them: the
//! NsPack case of `cli_scanpe` (`libclamav/pe.c`, the last unpacker it
//! tries, after ASPack), `unspack` and `very_real_unpack` with their bit
//! readers (`libclamav/unsp.c`), and `cli_rebuildpe` ([`rebuild`]).
//!
//! The layout `cli_scanpe` reads: the entry point (or, when it starts with
//! `jmp rel32`, the jump's target: "bitched headers") holds NsPack's stub,
//! `pushfd; pushad; call $+5; pop ebp; mov eax, 7`. The stub's dword at 17
//! gives, as `0x54 - dword` bytes before the stub, a dword that is the
//! distance from the stub to the packed block. The block (after a zero
//! dword, which is skipped) is a 13-byte header, the LZMA properties byte,
//! four bytes ClamAV does not read, the block's size counting the header
//! (`ssize`) and the unpacked size (`dsize`, the first section's virtual
//! size), then the compressed data. The original entry point is the target
//! of the `jmp rel32` 0x27a bytes after the stub's start.
//!
//! The compression is LZMA (the properties byte is `(pb * 5 + lp) * 9 +
//! lc`, the probability model and the range decoder are LZMA's), decoded
//! into one buffer rebuilt as one section at the first section's address.
//! ClamAV does not undo the call/jump (E8/E9) filter NsPack's stub applies
//! after decompressing, so neither does moat. ClamAV's decoder differs from
//! LZMA SDK's where the stream is wrong or ends early, and those quirks are
//! reproduced:
//!
//! - reading past the data yields `0xff` and a flag that is only looked at
//!   when the next symbol starts: a stream whose last bytes are missing
//!   still succeeds if its last symbol fills the buffer;
//! - the buffer full is success at once, whatever data remains;
//! - a match reaching past the end of the buffer fails (LZMA SDK would cut
//!   it short);
//! - the end marker (distance 0xffffffff) is success, with the rest of
//!   the buffer as `malloc` left it: uninitialised in ClamAV, zeros here
//!   (the one place moat's image can differ from ClamAV's).
//!
//! Each decoded symbol writes at least one byte or ends the decoding, so
//! the work is bounded by the unpacked size: no fuel budget is needed.
//!
//! Every check that fails `break`s out of ClamAV's NsPack case and, NsPack
//! being the last unpacker, the file is scanned as it is
//! ([`Outcome::NotPacked`]), as is a stream that does not decode ("Unpacking
//! failed"). Sizes over the limit are [`Outcome::TooLarge`]
//! (`CLI_UNPSIZELIMITS`). Two limits differ, and only with a member size
//! limit below what they need: `unspack`'s `cli_checklimits` on its
//! probability table (at most 6 MiB) makes ClamAV scan the file as it is,
//! and `cli_rebuildpe` knows no limit but `CLI_MAX_ALLOCATION`; moat
//! reports both as limits rather than leave a recognised packer unread.

use super::packed::Outcome;
use super::rebuildpe::rebuild;
use super::{contained, read_at_full};
use moat_core::Blob;
use moat_exe::pe::rawaddr;
use moat_exe::{ExeInfo, Section, le32};
use std::io;

/// NsPack's stub: `pushfd; pushad; call $+5; pop ebp; mov eax, 7`.
const STUB: &[u8; 13] = b"\x9c\x60\xe8\x00\x00\x00\x00\x5d\xb8\x07\x00\x00\x00";

/// `fmap_need_off_once`: `len` bytes at `at`, or `None` when the file
/// does not hold them all.
fn need(blob: &Blob, at: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
    if at
        .checked_add(len as u64)
        .is_none_or(|end| end > blob.len())
    {
        return Ok(None);
    }
    let mut buf = vec![0u8; len];
    if read_at_full(blob, at, &mut buf)? < len {
        return Ok(None);
    }
    Ok(Some(buf))
}

/// Unpack `blob` (laid out as `info`, with `epbuff` read at its entry
/// point; `cli_scanpe` comes here only with at least 200 bytes there) if
/// NsPack packed it; `max` bounds every buffer.
pub(crate) fn unpack(
    blob: &Blob,
    info: &ExeInfo,
    epbuff: &[u8; 4096],
    max: u64,
) -> io::Result<Outcome> {
    let Some(ep) = info.ep else {
        return Ok(Outcome::NotPacked);
    };
    let fsize = blob.len();
    let rawaddr = |rva: u32| rawaddr(rva, &info.sections, fsize, info.hdr_size);
    // `peinfo->ep`, a `uint32_t`.
    let mut rep = ep as u32;
    let mut eprva = info.vep;
    let mut src = epbuff[..24].to_vec();
    if epbuff[0] == 0xe9 {
        eprva = le32(epbuff, 1).wrapping_add(info.vep).wrapping_add(5);
        let Some(r) = rawaddr(eprva) else {
            return Ok(Outcome::NotPacked);
        };
        rep = r;
        let Some(b) = need(blob, rep.into(), 24)? else {
            return Ok(Outcome::NotPacked);
        };
        src = b;
    }
    if src[..13] != STUB[..] {
        return Ok(Outcome::NotPacked);
    }
    // `nowinldr`: how far before the stub the pointer to the data lies.
    let nowinldr = 0x54u32.wrapping_sub(le32(&src, 17));
    let Some(b) = need(blob, rep.wrapping_sub(nowinldr).into(), 4)? else {
        return Ok(Outcome::NotPacked);
    };
    let mut start = rep.wrapping_add(le32(&b, 0));
    let Some(mut head) = need(blob, start.into(), 20)? else {
        return Ok(Outcome::NotPacked);
    };
    // A zero dword first is skipped ("FIXME: more to do").
    if le32(&head, 0) == 0 {
        start = start.wrapping_add(4);
        head.drain(..4);
    }
    // The size ClamAV maps is the block's with its low byte set.
    let ssize = le32(&head, 5) | 0xff;
    let dsize = le32(&head, 9);
    if u64::from(ssize.max(dsize)) > max {
        return Ok(Outcome::TooLarge(ssize.max(dsize).into()));
    }
    let Some(first) = info.sections.first() else {
        return Ok(Outcome::NotPacked);
    };
    if dsize == 0 || dsize != first.vsz {
        return Ok(Outcome::NotPacked);
    }
    let Some(stuff) = need(blob, start.into(), ssize as usize)? else {
        return Ok(Outcome::NotPacked);
    };
    // The stub's jump to the program, 0x27a bytes in.
    let eprva = eprva.wrapping_add(0x27a);
    let Some(rep) = rawaddr(eprva) else {
        return Ok(Outcome::NotPacked);
    };
    let Some(jmp) = need(blob, rep.into(), 5)? else {
        return Ok(Outcome::NotPacked);
    };
    let oep = eprva.wrapping_add(5).wrapping_add(le32(&jmp, 1));
    Ok(
        match unspack(&stuff, first.rva, info.image_base32, oep, max) {
            Ok(Some(image)) => Outcome::Unpacked {
                image,
                packed: fsize,
            },
            // "Unpacking failed": the file is scanned as it is.
            Ok(None) => Outcome::NotPacked,
            Err(size) => Outcome::TooLarge(size),
        },
    )
}

/// `unspack`: decode the block at `stuff` (its header first) and rebuild
/// it as one section at `rva`. `Ok(None)` where ClamAV's fails, `Err` with
/// a size over `max`.
pub(crate) fn unspack(
    stuff: &[u8],
    rva: u32,
    base: u32,
    ep: u32,
    max: u64,
) -> Result<Option<Vec<u8>>, u64> {
    let Some(&c) = stuff.first() else {
        return Ok(None);
    };
    if c >= 0xe1 {
        return Ok(None);
    }
    // `c / 45` subtractions of 45 (by adding 0xd3 to a byte), then of 9.
    let (pb, c) = (u32::from(c / 45), c % 45);
    let (lp, lc) = (u32::from(c / 9), u32::from(c % 9));
    let entries = (0x300u32 << (lc + lp)) + 0x736;
    let tablesz = u64::from(entries) * 2;
    // `cli_checklimits("nspack", tablesz)`; at most 6 MiB.
    if tablesz > max {
        return Err(tablesz);
    }
    let (Some(ssize), Some(dsize)) = (dword(stuff, 5), dword(stuff, 9)) else {
        return Ok(None);
    };
    if ssize <= 13 {
        return Ok(None);
    }
    if u64::from(dsize) > max {
        return Err(dsize.into());
    }
    // The data runs from after the header to `ssize` bytes from its start.
    let Some(src) = stuff.get(13..ssize as usize) else {
        return Ok(None);
    };
    let mut table = vec![0x400u16; entries as usize];
    // `malloc`ed, not zeroed, in ClamAV: only an end marker leaves bytes
    // unwritten.
    let mut dst = vec![0u8; dsize as usize];
    if !very_real_unpack(&mut table, lc, lp, pb, src, &mut dst) {
        return Ok(None);
    }
    let section = [Section {
        raw: 0,
        rsz: dsize,
        vsz: dsize,
        rva,
        ..Section::default()
    }];
    // `cli_rebuildpe` fails only on sizes (one section, never 96): here,
    // the headers and the image over `max`.
    match rebuild(&dst, &section, base, ep, (0, 0), 0, max) {
        Some(pe) => Ok(Some(pe)),
        None => Err(u64::from(dsize).saturating_add(0x1000)),
    }
}

fn dword(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// `struct UNSP`: the range decoder over the compressed data, with the
/// probability table its bit readers index.
struct Unsp<'a> {
    src: &'a [u8],
    pos: usize,
    /// The range.
    bitmap: u32,
    /// The code.
    oldval: u32,
    /// Set by a read past the data (or outside the table); the main loop
    /// looks at it once per symbol.
    error: bool,
    table: &'a mut [u16],
}

impl Unsp<'_> {
    /// `get_byte`: the next byte, `0xff` past the end.
    fn get_byte(&mut self) -> u32 {
        match self.src.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                u32::from(b)
            }
            None => {
                self.error = true;
                0xff
            }
        }
    }

    /// `getbit_from_table`: one bit with the probability at `at`,
    /// normalising after it (LZMA SDK normalises before).
    fn bit(&mut self, at: u32) -> u32 {
        let Some(p) = self.table.get_mut(at as usize) else {
            self.error = true;
            return 0xff;
        };
        let prob = u32::from(*p);
        let nval = prob.wrapping_mul(self.bitmap >> 0xb);
        let ret = if self.oldval < nval {
            self.bitmap = nval;
            // `CLI_SRS((int32_t)(0x800 - p), 5) + p`, stored in 16 bits.
            let sval = ((0x800u32.wrapping_sub(prob) as i32) >> 5) as u32;
            *p = sval.wrapping_add(prob) as u16;
            0
        } else {
            self.bitmap = self.bitmap.wrapping_sub(nval);
            self.oldval = self.oldval.wrapping_sub(nval);
            *p = (prob - (prob >> 5)) as u16;
            1
        };
        if self.bitmap < 0x100_0000 {
            self.oldval = (self.oldval << 8) | self.get_byte();
            self.bitmap <<= 8;
        }
        ret
    }

    /// `get_100_bits_from_tablesize`: a literal after a match, with the
    /// byte at the last distance (the low byte of `ssize`) steering the
    /// probabilities until a bit differs from it.
    fn matched_literal(&mut self, base: u32, mut ssize: u32) -> u32 {
        let mut count: u32 = 1;
        while count < 0x100 {
            let lpos = ssize & 0xff;
            ssize = (ssize & 0xffff_ff00) | ((lpos << 1) & 0xff);
            let lpos = lpos >> 7;
            let tpos = self.bit(base.wrapping_add(((lpos + 1) << 8).wrapping_add(count)));
            count = count.wrapping_mul(2) | tpos;
            if lpos != tpos {
                while count < 0x100 {
                    count = count.wrapping_mul(2) | self.bit(base.wrapping_add(count));
                }
            }
        }
        count & 0xff
    }

    /// `get_100_bits_from_table`: a plain literal.
    fn literal(&mut self, base: u32) -> u32 {
        let mut count: u32 = 1;
        while count < 0x100 {
            count = count.wrapping_mul(2) | self.bit(base.wrapping_add(count));
        }
        count & 0xff
    }

    /// `get_n_bits_from_table`: a bit tree of `bits` levels.
    fn tree(&mut self, base: u32, bits: u32) -> u32 {
        let mut count: u32 = 1;
        for _ in 0..bits {
            count = count
                .wrapping_mul(2)
                .wrapping_add(self.bit(base.wrapping_add(count)));
        }
        count.wrapping_sub(1u32.wrapping_shl(bits & 0xff))
    }

    /// `get_n_bits_from_tablesize`: a match length less 2, for the
    /// position state `backsize`.
    fn length(&mut self, base: u32, backsize: u32) -> u32 {
        if self.bit(base) == 0 {
            return self.tree(base.wrapping_add((backsize << 3).wrapping_add(2)), 3);
        }
        if self.bit(base.wrapping_add(1)) == 0 {
            return 8u32
                .wrapping_add(self.tree(base.wrapping_add((backsize << 3).wrapping_add(0x82)), 3));
        }
        0x10u32.wrapping_add(self.tree(base.wrapping_add(0x102), 8))
    }

    /// `get_bb`: `back` bits of a reverse bit tree.
    fn reverse(&mut self, base: u32, back: u32) -> u32 {
        if back as i32 <= 0 {
            return 0;
        }
        let (mut pos, mut bb) = (1u32, 0u32);
        for i in 0..back {
            let bit = self.bit(base.wrapping_add(pos));
            pos = pos.wrapping_mul(2).wrapping_add(bit);
            bb |= bit.wrapping_shl(i);
        }
        bb
    }

    /// `get_bitmap`: `bits` direct bits.
    fn direct(&mut self, bits: u32) -> u32 {
        if bits as i32 <= 0 {
            return 0;
        }
        let mut retv = 0u32;
        for _ in 0..bits {
            self.bitmap >>= 1;
            retv <<= 1;
            if self.oldval >= self.bitmap {
                self.oldval -= self.bitmap;
                retv |= 1;
            }
            if self.bitmap < 0x100_0000 {
                self.bitmap <<= 8;
                self.oldval = (self.oldval << 8) | self.get_byte();
            }
        }
        retv
    }
}

/// `very_real_unpack`: decode `src` into all of `dst` with the model
/// `table` (`lc`, `lp`, `pb`: ClamAV's `tre`, `allocsz`, `firstbyte`).
/// `false` where ClamAV's returns non-zero. The variable names are
/// ClamAV's: `damian` is LZMA's state, `bielle` the previous byte (or 1
/// inside a match), `backbytes` and its elders the last four distances.
fn very_real_unpack(
    table: &mut [u16],
    lc: u32,
    lp: u32,
    pb: u32,
    src: &[u8],
    dst: &mut [u8],
) -> bool {
    let dsize = dst.len() as u32;
    let mut rs = Unsp {
        src,
        pos: 0,
        bitmap: 0xffff_ffff,
        oldval: 0,
        error: false,
        table,
    };
    let mut previous_bit: u32 = 0;
    let mut u: u32 = 0;
    let (mut backbytes, mut oldbackbytes, mut old_oldbackbytes, mut old_old_oldbackbytes) =
        (1u32, 1u32, 1u32, 1u32);
    let mut damian: u32 = 0;
    let put = (1u32 << lp) - 1;
    let mut bielle: u32 = 0;
    let firstbyte = (1u32 << pb) - 1;
    for _ in 0..5 {
        rs.oldval = (rs.oldval << 8) | rs.get_byte();
    }
    if rs.error {
        return false;
    }
    // The byte `dst[u - backbytes]`, if inside the buffer.
    let back =
        |dst: &[u8], u: u32, backbytes: u32| dst.get(u.wrapping_sub(backbytes) as usize).copied();
    loop {
        let mut backsize = firstbyte & u;
        if rs.error {
            return false;
        }
        if rs.bit((damian << 4).wrapping_add(backsize)) == 0 {
            // A literal.
            let shft = 8u32.wrapping_sub(lc) & 0xff;
            let mut tpos = (bielle >> shft).wrapping_add((put & u) << lc);
            tpos = tpos.wrapping_mul(3) << 8;
            damian = if (damian as i32) >= 4 {
                if (damian as i32) >= 0xa {
                    damian.wrapping_sub(6)
                } else {
                    damian.wrapping_sub(3)
                }
            } else {
                0
            };
            let base = tpos.wrapping_add(0x736);
            if previous_bit != 0 {
                let Some(b) = back(dst, u, backbytes) else {
                    return false;
                };
                bielle = rs.matched_literal(base, u32::from(b));
                previous_bit = 0;
            } else {
                bielle = rs.literal(base);
            }
            let Some(d) = dst.get_mut(u as usize) else {
                return false;
            };
            *d = bielle as u8;
            u += 1;
            if u >= dsize {
                return true;
            }
            continue;
        }
        bielle = 1;
        previous_bit = 1;
        if rs.bit(damian.wrapping_add(0xc0)) != 0 {
            if rs.bit(damian.wrapping_add(0xcc)) == 0 {
                let tpos = (damian.wrapping_add(0xf) << 4).wrapping_add(backsize);
                if rs.bit(tpos) == 0 {
                    // A one-byte repeat of the last distance.
                    if u == 0 {
                        return false;
                    }
                    damian = 2 * u32::from((damian as i32) >= 7) + 9;
                    let Some(b) = back(dst, u, backbytes) else {
                        return false;
                    };
                    bielle = u32::from(b);
                    let Some(d) = dst.get_mut(u as usize) else {
                        return false;
                    };
                    *d = b;
                    u += 1;
                    if u >= dsize {
                        return true;
                    }
                    continue;
                }
            } else {
                // One of the three older distances.
                let tpos = if rs.bit(damian.wrapping_add(0xd8)) == 0 {
                    oldbackbytes
                } else {
                    let tpos = if rs.bit(damian.wrapping_add(0xe4)) == 0 {
                        old_oldbackbytes
                    } else {
                        let t = old_old_oldbackbytes;
                        old_old_oldbackbytes = old_oldbackbytes;
                        t
                    };
                    old_oldbackbytes = oldbackbytes;
                    tpos
                };
                oldbackbytes = backbytes;
                backbytes = tpos;
            }
            // A repeat of the last distance (or of the one just chosen).
            backsize = rs.length(0x534, backsize);
            let d = u32::from((damian as i32) >= 7);
            damian = (d.wrapping_sub(1) & 0xffff_fffd).wrapping_add(0xb);
        } else {
            // A match with a new distance.
            old_old_oldbackbytes = old_oldbackbytes;
            old_oldbackbytes = oldbackbytes;
            oldbackbytes = backbytes;
            let d = u32::from((damian as i32) >= 7);
            damian = (d.wrapping_sub(1) & 0xffff_fffd).wrapping_add(0xa);
            backsize = rs.length(0x332, backsize);
            let mut tpos = if (backsize as i32) >= 4 { 3 } else { backsize };
            tpos <<= 6;
            tpos = rs.tree(0x1b0u32.wrapping_add(tpos), 6);
            let temp = if tpos >= 4 {
                let s = (tpos >> 1).wrapping_sub(1);
                // Shifts by 32 or more (only after a read outside the
                // table) are undefined in C; x86 masks the count.
                let temp = ((tpos & bielle) | 2).wrapping_shl(s & 0xff);
                if (tpos as i32) < 0xe {
                    temp.wrapping_add(rs.reverse(temp.wrapping_sub(tpos).wrapping_add(0x2af), s))
                } else {
                    let s = s.wrapping_add(0xffff_fffc);
                    let t = rs.direct(s).wrapping_shl(4);
                    temp.wrapping_add(t).wrapping_add(rs.reverse(0x322, 4))
                }
            } else {
                tpos
            };
            backbytes = temp.wrapping_add(1);
        }
        // checkloop_and_backcopy: the end marker is success, with the
        // rest of the buffer unwritten.
        if backbytes == 0 {
            return true;
        }
        if backbytes > u {
            return false;
        }
        let backsize = backsize.wrapping_add(2);
        // The whole copy must fit: no match is cut at the end.
        if !contained(0u32, dsize, u, backsize) || !contained(0u32, dsize, u - backbytes, backsize)
        {
            return false;
        }
        let (from, to) = ((u - backbytes) as usize, u as usize);
        // Byte by byte: the source may overlap what is being written.
        for k in 0..backsize as usize {
            let Some(&b) = dst.get(from + k) else {
                return false;
            };
            let Some(d) = dst.get_mut(to + k) else {
                return false;
            };
            *d = b;
            bielle = u32::from(b);
        }
        u += backsize;
        if u >= dsize {
            return true;
        }
    }
}

#[cfg(test)]
#[path = "../../tests/common/nspack.rs"]
mod build;

#[cfg(test)]
mod tests {
    use super::build::{self, BASE, Layout};
    use super::*;

    /// What `packed::unpack` hands the unpacker, then its outcome.
    fn run(file: &[u8], max: u64) -> Outcome {
        let blob = Blob::from_vec(file.to_vec());
        match crate::formats::packed::at_entry(&blob).unwrap() {
            Some(e) => unpack(&blob, &e.info, &e.epbuff, max).unwrap(),
            None => Outcome::NotPacked,
        }
    }

    fn image(o: Outcome) -> Vec<u8> {
        match o {
            Outcome::Unpacked { image, .. } => image,
            o => panic!("not unpacked: {o:?}"),
        }
    }

    const MAX: u64 = 1 << 24;

    /// The rebuilt PE's sections: (name, rva, vsz, raw, rsz).
    fn sections(pe: &[u8]) -> Vec<(String, u32, u32, u32, u32)> {
        let n = usize::from(u16::from_le_bytes([pe[0xd6], pe[0xd7]]));
        (0..n)
            .map(|k| {
                let h = 0x1c8 + 40 * k;
                let r = |a| le32(pe, h + a);
                let name = String::from_utf8_lossy(&pe[h..h + 8]);
                let name = name.trim_end_matches('\0').to_string();
                (name, r(12), r(8), r(20), r(16))
            })
            .collect()
    }

    /// The unpacked image's bytes in the rebuilt PE.
    fn data(pe: &[u8]) -> &[u8] {
        let s = sections(pe);
        let last = s.last().unwrap();
        &pe[last.3 as usize..(last.3 + last.4) as usize]
    }

    fn padded(text: &[u8], dsize: u32) -> Vec<u8> {
        let mut v = text.to_vec();
        v.resize(dsize as usize, 0);
        v
    }

    #[test]
    fn unpacks_one_section_at_the_first_with_the_stubs_entry_point() {
        let text = build::text("nspack", 0x2345);
        let l = Layout::default();
        let pe = image(run(&build::nspack(&text, 0x3000, 0x1234, &l), MAX));
        assert_eq!(
            sections(&pe),
            [(".clam01".into(), 0x1000, 0x3000, 0x200, 0x3000)]
        );
        assert_eq!(data(&pe), padded(&text, 0x3000));
        assert_eq!(le32(&pe, 0xd0 + 40), 0x1234, "entry point");
        assert_eq!(le32(&pe, 0xd0 + 52), BASE);
        assert_eq!(pe.len(), 0x3200);
    }

    #[test]
    fn every_layout_and_model_unpacks() {
        let text = build::text("layouts", 0x1f00);
        let layouts = [
            Layout {
                jump: true,
                ..Layout::default()
            },
            Layout {
                zero: true,
                ..Layout::default()
            },
            Layout {
                first_data: true,
                third: true,
                ..Layout::default()
            },
            Layout {
                lc: 0,
                lp: 2,
                pb: 0,
                jump: true,
                zero: true,
                ..Layout::default()
            },
            Layout {
                lc: 8,
                lp: 4,
                pb: 4,
                ..Layout::default()
            },
            Layout {
                lc: 1,
                lp: 1,
                pb: 1,
                third: true,
                ..Layout::default()
            },
        ];
        for l in &layouts {
            let pe = image(run(&build::nspack(&text, 0x2000, 0x1010, l), MAX));
            assert_eq!(data(&pe), padded(&text, 0x2000), "{l:?}");
            assert_eq!(le32(&pe, 0xd0 + 40), 0x1010, "{l:?}");
        }
    }

    #[test]
    fn a_first_section_far_from_the_headers_gets_clamavs_empty_section() {
        let text = build::text("ghost", 0x1800);
        let l = Layout {
            first_rva: 0x3000,
            ..Layout::default()
        };
        let pe = image(run(&build::nspack(&text, 0x2000, 0x3100, &l), MAX));
        assert_eq!(
            sections(&pe),
            [
                ("empty".into(), 0x1000, 0x2000, 0, 0),
                (".clam01".into(), 0x3000, 0x2000, 0x400, 0x2000)
            ]
        );
        assert_eq!(data(&pe), padded(&text, 0x2000));
    }

    #[test]
    fn the_end_marker_ends_the_image_early() {
        let text = build::text("marker", 0x1500);
        let l = Layout {
            end_marker: true,
            ..Layout::default()
        };
        let pe = image(run(&build::nspack(&text, 0x2000, 0x1000, &l), MAX));
        assert_eq!(data(&pe), padded(&text, 0x2000));
    }

    #[test]
    fn a_size_other_than_the_first_sections_or_bad_properties_are_not_packed() {
        let text = build::text("sizes", 0x1000);
        let file = build::nspack(&text, 0x2000, 0x1000, &Layout::default());
        // The block's header, at the packer section's start.
        let at = 0x200;
        let mut f = file.clone();
        f[at + 9..at + 13].copy_from_slice(&0x1000u32.to_le_bytes());
        assert!(matches!(run(&f, MAX), Outcome::NotPacked));
        let mut f = file.clone();
        f[at] = 0xe1;
        assert!(matches!(run(&f, MAX), Outcome::NotPacked));
        // A block shorter than its header.
        let mut f = file.clone();
        f[at + 5..at + 9].copy_from_slice(&13u32.to_le_bytes());
        assert!(matches!(run(&f, MAX), Outcome::NotPacked));
        // Not the stub.
        let mut f = file;
        let ep = f.len() - 0x200 - 0x300;
        let stub = f.windows(2).position(|w| w == [0x9c, 0x60]).unwrap();
        assert!(stub >= ep - 0x300);
        f[stub + 8] = 0xb9;
        assert!(matches!(run(&f, MAX), Outcome::NotPacked));
    }

    #[test]
    fn sizes_over_the_limit_are_too_large() {
        let text = build::text("limit", 0x1000);
        let file = build::nspack(&text, 0x4000, 0x1000, &Layout::default());
        assert!(matches!(run(&file, 0x3fff), Outcome::TooLarge(0x4000)));
        assert!(matches!(
            run(&file, 0x4000 + 0x200),
            Outcome::Unpacked { .. }
        ));
        // The probability table: 6 MiB with lc 8 and lp 4.
        let l = Layout {
            lc: 8,
            lp: 4,
            ..Layout::default()
        };
        let file = build::nspack(&text, 0x4000, 0x1000, &l);
        let table = ((0x300u64 << 12) + 0x736) * 2;
        assert!(matches!(run(&file, table - 1), Outcome::TooLarge(t) if t == table));
        assert!(matches!(run(&file, table), Outcome::Unpacked { .. }));
    }

    /// Decode `image`'s stream into `dsize` bytes.
    fn decode(stream: &[u8], l: &Layout, dsize: usize) -> Option<Vec<u8>> {
        let mut table = vec![0x400u16; (0x300 << (l.lc + l.lp)) + 0x736];
        let mut dst = vec![0u8; dsize];
        very_real_unpack(&mut table, l.lc, l.lp, l.pb, stream, &mut dst).then_some(dst)
    }

    #[test]
    fn a_match_past_the_end_fails_where_lzma_would_cut_it() {
        let l = Layout::default();
        // A literal, then one match of 255.
        let stream = build::compress(&[b'a'; 256], &l);
        assert_eq!(decode(&stream, &l, 256), Some(vec![b'a'; 256]));
        assert_eq!(decode(&stream, &l, 255), None);
        // Fewer bytes than the literal: done at once.
        assert_eq!(decode(&stream, &l, 1), Some(vec![b'a']));
    }

    #[test]
    fn missing_last_bytes_fail_only_when_a_symbol_still_needs_them() {
        let l = Layout::default();
        let text = build::text("tail", 0x800);
        let stream = build::compress(&text, &l);
        assert_eq!(decode(&stream, &l, text.len()).as_deref(), Some(&text[..]));
        // The flush writes more than the decoder needs: the flag set by
        // reading past the end is never looked at.
        assert_eq!(
            decode(&stream[..stream.len() - 1], &l, text.len()).as_deref(),
            Some(&text[..])
        );
        assert_eq!(decode(&stream[..stream.len() / 2], &l, text.len()), None);
        assert_eq!(decode(&stream[..4], &l, text.len()), None);
    }

    fn noise(seed: u64, n: usize) -> Vec<u8> {
        crate::tests::noise_bytes(n, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    #[test]
    fn noise_decodes_within_the_buffer() {
        for seed in 0..300u64 {
            let l = Layout {
                lc: (seed % 9) as u32,
                lp: (seed % 5) as u32,
                pb: (seed / 5 % 5) as u32,
                ..Layout::default()
            };
            let src = noise(seed, 64 + (seed as usize * 37) % 2000);
            let _ = decode(&src, &l, 1 + (seed as usize * 101) % 0x3000);
        }
    }

    #[test]
    fn truncated_or_mutated_files_never_panic() {
        let text = build::text("hostile", 0x1400);
        let files = [
            build::nspack(&text, 0x2000, 0x1000, &Layout::default()),
            build::nspack(
                &text,
                0x2000,
                0x1000,
                &Layout {
                    jump: true,
                    zero: true,
                    end_marker: true,
                    ..Layout::default()
                },
            ),
        ];
        for file in &files {
            for n in 0..file.len() {
                let _ = run(&file[..n], MAX);
            }
            for seed in 0..1500u64 {
                let mut f = file.clone();
                let r = noise(seed, 8);
                for k in 0..1 + (r[0] % 4) as usize {
                    // Mostly the headers and the block, sometimes the stub.
                    let span = if r[1] & 1 == 0 { 0x300 } else { f.len() };
                    let at = (u16::from_le_bytes([r[2 + k], r[3 + k]]) as usize) % span;
                    f[at] ^= r[k + 4] | 1;
                }
                let _ = run(&f, MAX);
            }
        }
    }
}

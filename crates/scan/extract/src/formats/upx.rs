//! UPX-packed Windows executables, unpacked as ClamAV unpacks them
//! (`libclamav/upx.c` and the UPX part of `cli_scanpe` in `pe.c`), so that
//! signatures written for the program inside match here as they do in
//! clamscan.
//!
//! The packed layout: an empty section (`UPX0`: no raw data, the unpacked
//! image's virtual size) followed by one holding the compressed data and
//! the decompression stub (`UPX1`). The stub's code at the entry point tells
//! the algorithm: NRV2B, NRV2D, NRV2E (UCL's bit-oriented LZ77) or LZMA.
//! The decompressed image is then given PE headers again: the program's own,
//! found after its import data (or by searching backwards for `PE\0\0`),
//! with every section laid out at its virtual address; failing that, a
//! minimal one-section PE around the image. Like ClamAV, imports are not
//! rebuilt and UPX's E8/E9 call filter is not undone.
//!
//! Bounded: the unpacked image is at most the caller's limit; a larger one
//! from a recognised UPX stub is a limit, not a silent skip. Every read and copy is checked; hostile input makes
//! decompression fail, which leaves the file scanned as it is (as ClamAV
//! does).

use super::contained;
use super::packed::Outcome;
use super::rebuildpe::DOS_STUB;
use moat_core::Blob;
use moat_exe::ExeInfo;
use moat_exe::pe::{pe_align, pe_salign};
use std::io::{self, Read};
/// What ClamAV allocates past the image for the rebuilt headers.
const SLACK: usize = 8192;

const NRV2B: &[u8; 24] = b"\x11\xdb\x11\xc9\x01\xdb\x75\x07\x8b\x1e\x83\xee\xfc\x11\xdb\x11\xc9\x11\xc9\x75\x20\x41\x01\xdb";
const NRV2D: &[u8; 24] = b"\x83\xf0\xff\x74\x78\xd1\xf8\x89\xc5\xeb\x0b\x01\xdb\x75\x07\x8b\x1e\x83\xee\xfc\x11\xdb\x11\xc9";
const NRV2E: &[u8; 24] = b"\xeb\x52\x31\xc9\x83\xe8\x03\x72\x11\xc1\xe0\x08\x8a\x06\x46\x83\xf0\xff\x74\x75\xd1\xf8\x89\xc5";
const LZMA1_FIRST: &[u8; 8] = b"\x56\x83\xc3\x04\x53\x50\xc7\x03";
const LZMA1_SECOND: &[u8; 8] = b"\x90\x90\x90\x55\x57\x56\x53\x83";
const LZMA2: &[u8; 20] =
    b"\x56\x83\xc3\x04\x53\x50\xc7\x03\x03\x00\x02\x00\x90\x90\x90\x90\x90\x55\x57\x56";

/// The one-section PE header ClamAV wraps around an image whose own headers
/// it cannot find (0x120 bytes).
const FAKEPE: &[u8; 0x120] = b"\
\x50\x45\x00\x00\x4C\x01\x01\x00\x43\x4C\x41\x4D\x00\x00\x00\x00\
\x00\x00\x00\x00\xE0\x00\x83\x8F\x0B\x01\x00\x00\x00\x10\x00\x00\
\x00\x10\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00\x00\x10\x00\x00\
\x00\x10\x00\x00\x00\x00\x40\x00\x00\x10\x00\x00\x00\x02\x00\x00\
\x01\x00\x00\x00\x00\x00\x00\x00\x03\x00\x0A\x00\x00\x00\x00\x00\
\xFF\xFF\xFF\xFF\x00\x02\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\
\x00\x00\x10\x00\x00\x10\x00\x00\x00\x00\x10\x00\x00\x10\x00\x00\
\x00\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x00\x00\x00\x00\x2e\x63\x6c\x61\x6d\x30\x31\x00\
\xFF\xFF\xFF\xFF\x00\x10\x00\x00\xFF\xFF\xFF\xFF\x00\x02\x00\x00\
\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff";

/// Which decompressor the stub looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nrv {
    B,
    D,
    E,
}

#[cfg(test)]
pub(crate) const ALL_NRV: [Nrv; 3] = [Nrv::B, Nrv::D, Nrv::E];

impl Nrv {
    /// Where the stub keeps the offset of the import data (`pefromupx`'s
    /// `magic`).
    fn magic(self) -> &'static [u32] {
        match self {
            Nrv::B => &[0x108, 0x110, 0xd5],
            Nrv::D => &[0x11c, 0x124],
            Nrv::E => &[0x128, 0x130],
        }
    }
}

fn rd32(b: &[u8], at: usize) -> u32 {
    moat_exe::le32(b, at)
}

fn wr32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// `cli_memstr(haystack, needle)`: whether `needle` occurs in `haystack`.
fn memstr(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack.len() >= needle.len()
        && memchr::memmem::find(haystack, needle).is_some()
}

/// Unpack `blob` (laid out as `info`, with `epbuff` read at its entry
/// point) if it is a UPX-packed PE; `max` bounds the image.
pub(crate) fn unpack(
    blob: &Blob,
    info: &ExeInfo,
    epbuff: &[u8; 4096],
    max: u64,
) -> io::Result<Outcome> {
    // The first empty section followed by one with data.
    let s = &info.sections;
    let Some(i) = (0..s.len().saturating_sub(1))
        .find(|&i| s[i].rsz == 0 && s[i].vsz != 0 && s[i + 1].rsz != 0 && s[i + 1].vsz != 0)
    else {
        return Ok(Outcome::NotPacked);
    };
    let ssize = s[i + 1].rsz;
    let dsize = u64::from(s[i].vsz) + u64::from(s[i + 1].vsz);
    let stub = stub_kind(epbuff);
    if dsize > max {
        // Only a recognised stub makes this a packed file: an ordinary
        // program with a large uninitialised section looks the same so far.
        return Ok(if stub.is_some() || lzma_props(epbuff).is_some() {
            Outcome::TooLarge(dsize)
        } else {
            Outcome::NotPacked
        });
    }
    let dsize = dsize as u32;
    if ssize <= 0x19 || dsize <= ssize {
        // ClamAV looks no further at this file.
        return Ok(Outcome::Declined);
    }
    let mut packed = vec![0u8; ssize as usize];
    let mut r = blob.reader();
    io::Seek::seek(&mut r, io::SeekFrom::Start(u64::from(s[i + 1].raw)))?;
    if super::read_full(&mut r.by_ref().take(u64::from(ssize)), &mut packed)? < packed.len() {
        return Ok(Outcome::Declined);
    }
    let mut dest = vec![0u8; dsize as usize + SLACK];
    Ok(
        match decompress(info, i, epbuff, &packed, &mut dest, dsize) {
            Some(len) => {
                dest.truncate(len);
                Outcome::Unpacked {
                    image: dest,
                    packed: u64::from(ssize),
                }
            }
            None => Outcome::NotPacked,
        },
    )
}

/// The NRV decompressor the stub at the entry point looks like.
fn stub_kind(epbuff: &[u8; 4096]) -> Option<Nrv> {
    let at = |o: usize| &epbuff[o..o + 13];
    [(NRV2B, Nrv::B), (NRV2D, Nrv::D), (NRV2E, Nrv::E)]
        .into_iter()
        .find(|(sig, _)| memstr(&sig[..], at(0x69)) || memstr(&sig[..], at(0x69 + 8)))
        .map(|(_, k)| k)
}

/// An LZMA stub: (the unpacked size it declares, the LZMA properties).
fn lzma_props(epbuff: &[u8; 4096]) -> Option<(u32, u32)> {
    if epbuff[0x2f..0x2f + 20] == LZMA2[..] {
        Some((rd32(epbuff, 0x21), 0x20003))
    } else if epbuff[0x39..0x41] == LZMA1_FIRST[..] && epbuff[0x45..0x4d] == LZMA1_SECOND[..] {
        Some((rd32(epbuff, 0x2b), rd32(epbuff, 0x41)))
    } else {
        None
    }
}

/// `cli_scanpe`'s UPX sequence: the stub's decompressor (skewed, then not),
/// then each NRV variant unskewed and 0x15 bytes in, then LZMA when the stub
/// says so. The length of the output on success.
fn decompress(
    info: &ExeInfo,
    i: usize,
    epbuff: &[u8; 4096],
    src: &[u8],
    dest: &mut [u8],
    dsize: u32,
) -> Option<usize> {
    let (upx0, upx1) = (info.sections[i].rva, info.sections[i + 1].rva);
    let (vep, ssize) = (info.vep, src.len() as u32);
    let mut out = None;
    let preferred = stub_kind(epbuff);
    if let Some(kind) = preferred {
        let raw_skew = rd32(epbuff, 2)
            .wrapping_sub(info.image_base32)
            .wrapping_sub(upx1) as i32;
        // A skew ClamAV does not believe, or one past the data, is none.
        let believed = epbuff[1] == 0xbe && raw_skew > 0 && raw_skew <= 0xfff;
        let skew = if believed && raw_skew as u32 <= ssize {
            raw_skew as u32
        } else {
            0
        };
        out = nrv(
            kind,
            &src[skew as usize..],
            dest,
            dsize,
            upx0,
            upx1,
            vep.wrapping_sub(skew),
        );
        if out.is_none() && skew != 0 {
            out = nrv(kind, src, dest, dsize, upx0, upx1, vep);
        }
    }
    for kind in [Nrv::B, Nrv::D, Nrv::E] {
        if out.is_some() || preferred == Some(kind) {
            continue;
        }
        out = nrv(kind, src, dest, dsize, upx0, upx1, vep).or_else(|| {
            nrv(
                kind,
                &src[0x15..],
                dest,
                dsize,
                upx0,
                upx1,
                vep.wrapping_sub(0x15),
            )
        });
    }
    if let Some((strict, props)) = lzma_props(epbuff) {
        let skew = if ssize > 0x15 && epbuff[0] == 0x60 && epbuff[1] == 0xbe {
            let s = rd32(epbuff, 2)
                .wrapping_sub(upx1)
                .wrapping_sub(info.image_base32);
            if s == 0x15 { 0x15 } else { 0 }
        } else {
            0
        };
        if strict <= dsize {
            // The LZMA branch's verdict replaces the NRV ones; its output is
            // written at the outer size, whatever the rebuild made of it.
            out =
                lzma(&src[skew..], dest, strict, upx0, upx1, vep, props).then_some(dsize as usize);
        }
    }
    out
}

/// UCL's bit reader as the stub runs it (`doubleebx`): 32-bit little-endian
/// words, most significant bit first, with a sentinel bit.
struct Bits<'a> {
    src: &'a [u8],
    ebx: u32,
    cur: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let old = self.ebx;
        self.ebx = old.wrapping_mul(2);
        if old & 0x7fff_ffff == 0 {
            let w = rd32(self.src.get(self.cur..self.cur + 4)?, 0);
            self.ebx = w.wrapping_mul(2).wrapping_add(1);
            self.cur += 4;
            return Some(w >> 31);
        }
        Some(old >> 31)
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.src.get(self.cur)?;
        self.cur += 1;
        Some(b)
    }

    /// `v * 2 + bit`, refusing what ClamAV refuses (`limit`).
    fn shift_in(&mut self, v: u32, limit: u32) -> Option<u32> {
        let b = self.bit()?;
        (u64::from(v) + u64::from(b) <= u64::from(limit)).then(|| v.wrapping_mul(2) + b)
    }

    /// The gamma code that ends on a 1 bit.
    fn gamma(&mut self, mut v: u32) -> Option<u32> {
        loop {
            v = self.shift_in(v, u32::MAX / 2)?;
            if self.bit()? != 0 {
                return Some(v);
            }
        }
    }
}

/// One NRV variant into `dest[..dsize]`, then the PE rebuild; the output's
/// length, `None` when the data does not decode.
fn nrv(
    kind: Nrv,
    src: &[u8],
    dest: &mut [u8],
    dsize: u32,
    upx0: u32,
    upx1: u32,
    ep: u32,
) -> Option<usize> {
    let dend = nrv_decode(kind, src, &mut dest[..dsize as usize])?;
    Some(pefromupx(
        src,
        dest,
        dsize,
        ep,
        upx0,
        upx1,
        kind.magic(),
        dend,
    ))
}

/// Decode `src` into `dst` (its length is the image size); the decoded
/// length, `None` when the data does not decode.
pub(crate) fn nrv_decode(kind: Nrv, src: &[u8], dst: &mut [u8]) -> Option<usize> {
    let mut b = Bits {
        src,
        ebx: 0,
        cur: 0,
    };
    let mut dcur = 0usize;
    let mut unp_offset: i32 = -1;
    let (i32_half, limit_far) = (
        i32::MAX as u32 / 2,
        if kind == Nrv::B {
            0xfffff300
        } else {
            0xfffffb00
        },
    );
    loop {
        while b.bit()? == 1 {
            let byte = b.byte()?;
            *dst.get_mut(dcur)? = byte;
            dcur += 1;
        }
        let mut backbytes: u32 = 1;
        loop {
            backbytes = b.shift_in(backbytes, i32_half)?;
            if b.bit()? != 0 {
                break;
            }
            if kind != Nrv::B {
                backbytes = backbytes.wrapping_sub(1);
                backbytes = b.shift_in(backbytes, i32_half)?;
            }
        }
        let backbytes = backbytes as i32 - 3;
        // The bit carried into the length (UPX's carry flag).
        let mut carry: Option<u32> = None;
        if backbytes >= 0 {
            if backbytes as u32 & 0xff00_0000 != 0 {
                return None;
            }
            let v = ((backbytes as u32) << 8 | u32::from(b.byte()?)) ^ 0xffff_ffff;
            if v == 0 {
                break;
            }
            let v = v as i32;
            if kind == Nrv::B {
                unp_offset = v;
            } else {
                carry = Some((v & 1) as u32);
                unp_offset = v >> 1;
            }
        } else if kind != Nrv::B {
            carry = Some(b.bit()?);
        }
        let mut backsize: u32 = match kind {
            Nrv::B => {
                let first = b.bit()?;
                b.shift_in(first, u32::MAX / 2)?
            }
            Nrv::D => b.shift_in(carry.unwrap_or(0), u32::MAX / 2)?,
            Nrv::E => {
                if carry.unwrap_or(0) != 0 {
                    b.bit()?
                } else if b.bit()? != 0 {
                    2 + b.bit()?
                } else {
                    b.gamma(1)?.checked_add(2)?
                }
            }
        };
        if kind != Nrv::E && backsize == 0 {
            backsize = b.gamma(1)?;
            if backsize > u32::MAX - 2 {
                return None;
            }
            backsize += 2;
        }
        if (unp_offset as u32) < limit_far {
            backsize = backsize.checked_add(1)?;
        }
        backsize = backsize.checked_add(if kind == Nrv::E { 2 } else { 1 })?;
        let from = dcur as i64 + i64::from(unp_offset);
        let len = i64::from(backsize);
        let total = dst.len() as i64;
        if unp_offset >= 0
            || !contained(0, total, from, len)
            || !contained(0, total, dcur as i64, len)
        {
            return None;
        }
        let from = from as usize;
        for k in 0..backsize as usize {
            dst[dcur + k] = dst[from + k];
        }
        dcur += backsize as usize;
    }
    Some(dcur)
}

/// `upx_inflatelzma`: raw LZMA with the stub's properties, dictionary and
/// output the unpacked size; `false` on a data error.
fn lzma(
    src: &[u8],
    dest: &mut [u8],
    strict: u32,
    upx0: u32,
    upx1: u32,
    ep: u32,
    props: u32,
) -> bool {
    let (lc, lp, pb) = (props & 0xff, (props >> 8) & 0xff, (props >> 16) & 0xff);
    if lc >= 9 || lp >= 5 || pb >= 5 {
        return false;
    }
    let prop = (lc + 9 * (5 * pb + lp)) as u8;
    let input = src.get(2..).unwrap_or_default();
    let Ok(mut r) =
        lzma_rust2::LzmaReader::new_with_props(input, u64::from(strict), prop, strict, None)
    else {
        // ClamAV's decoder refused to start: success with nothing decoded.
        return true;
    };
    let out = &mut dest[..strict as usize];
    let mut got = 0usize;
    while got < out.len() {
        match r.read(&mut out[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            // Input that ends early is not a data error to ClamAV.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(_) => return false,
        }
    }
    pefromupx(
        src,
        dest,
        strict,
        ep,
        upx0,
        upx1,
        &[0xb16, 0xb1e],
        strict as usize,
    );
    true
}

/// `checkpe`: a PE header at `at` whose section table fits in
/// `dst[..dsize]`: (section table offset, section alignment, count).
fn checkpe(dst: &[u8], dsize: usize, at: usize) -> Option<(usize, u32, usize)> {
    if !contained(0, dsize as i64, at as i64, 0xf8) || rd32(dst, at) != 0x4550 {
        return None;
    }
    let valign = rd32(dst, at + 0x38);
    let count = usize::from(u16::from_le_bytes([dst[at + 6], dst[at + 7]]));
    if valign == 0 || count == 0 {
        return None;
    }
    let sections = at + 0xf8;
    contained(0, dsize as i64, sections as i64, (count * 0x28) as i64)
        .then_some((sections, valign, count))
}

/// `pefromupx`: give the image in `dst[..dend]` PE headers again. Returns
/// the output's length (the image as it is, `dsize`, when no rebuild
/// succeeds, as in ClamAV, where that is still success).
#[allow(clippy::too_many_arguments)]
fn pefromupx(
    src: &[u8],
    dst: &mut [u8],
    dsize: u32,
    ep: u32,
    upx0: u32,
    upx1: u32,
    magic: &[u32],
    dend: usize,
) -> usize {
    let ssize = src.len() as i64;
    let dsz = dsize as usize;
    let base = i64::from(ep) - i64::from(upx1);
    // Where the stub loads the import data's offset: `lea edi, [esi + X]`.
    let mut valign = magic
        .iter()
        .copied()
        .find(|&m| {
            let at = base + i64::from(m) - 2;
            contained(0, ssize - 5, at, 2)
                && src[at as usize] == 0x8d
                && src[at as usize + 1] == 0xbe
        })
        .unwrap_or(0);
    if valign == 0 && contained(0, ssize - 8, base + 0x80, 8) {
        let mut pt = (base + 0x80) as usize;
        let end = (ssize - 8) as usize;
        while pt < end {
            let Some(p) = memchr::memmem::find(&src[pt..end], b"\x8d\xbe").map(|p| p + pt) else {
                break;
            };
            if src[p + 6] == 0x8b && src[p + 7] == 0x07 {
                valign = (p as i64 + 2 - base) as u32;
                break;
            }
            pt = p + 1;
        }
    }
    let mut pehdr: Option<(usize, usize, u32, usize)> = None; // (pehdr, sections, valign, count)
    let mut realstuffsz = 0usize;
    let imp_at = base + i64::from(valign);
    if valign != 0 && contained(0, ssize, imp_at, 4) {
        let imports = rd32(src, imp_at as usize) as usize;
        realstuffsz = imports;
        if imports < dsz {
            // Skip the import data: per DLL, 8 bytes and name strings.
            let mut p = imports;
            let within = |p: usize, n: usize| contained(0, dsz as i64, p as i64, n as i64);
            while within(p, 8) && rd32(dst, p) != 0 {
                p += 8;
                while within(p, 2) && dst[p] != 0 {
                    p += 1;
                    while within(p, 2) && dst[p] != 0 {
                        p += 1;
                    }
                    p += 1;
                }
                p += 1;
            }
            p += 4;
            pehdr = checkpe(dst, dsz, p).map(|(s, a, c)| (p, s, a, c));
        }
    }
    if pehdr.is_none() && dend > 0xf8 + 0x28 {
        // Search backwards for the program's PE header.
        let mut p = dend - 0xf8 - 0x28;
        while p > 0 {
            if let Some((s, a, c)) = checkpe(dst, dsz, p) {
                pehdr = Some((p, s, a, c));
                break;
            }
            p = match memchr::memmem::rfind(
                &dst[..p.min(dsz).saturating_add(3).min(dst.len())],
                b"PE\0\0",
            ) {
                Some(q) if q < p => q,
                _ => 0,
            };
        }
        realstuffsz = p;
    }
    let Some((pehdr, mut sections, valign, count)) = pehdr else {
        // Wrap the image in a minimal one-section PE.
        let rebsz = pe_salign(dend as u32, 0x1000);
        dst.copy_within(0..dend, 0x200);
        dst[..0xd0].copy_from_slice(DOS_STUB);
        dst[0xd0..0x1f0].copy_from_slice(FAKEPE);
        dst[0x1f0..0x200].fill(0);
        wr32(dst, 0xd0 + 0x50, rebsz.wrapping_add(0x1000));
        wr32(dst, 0xd0 + 0x100, rebsz);
        wr32(dst, 0xd0 + 0x108, rebsz);
        return (rebsz as usize + 0x200).min(dst.len());
    };
    let mut foffset = pe_salign(0xd0 + 0xf8 + 0x28 * count as u32, valign);
    for _ in 0..count {
        let vsize = pe_salign(rd32(dst, sections + 8), valign);
        let urva = pe_align(rd32(dst, sections + 12), valign);
        if !contained(
            i64::from(upx0),
            realstuffsz as i64,
            i64::from(urva),
            i64::from(vsize),
        ) {
            return dsz;
        }
        wr32(dst, sections + 8, vsize);
        wr32(dst, sections + 12, urva);
        wr32(dst, sections + 16, vsize);
        wr32(dst, sections + 20, foffset);
        let Some(next) = foffset.checked_add(vsize) else {
            return dsz;
        };
        foffset = next;
        sections += 0x28;
    }
    wr32(dst, pehdr + 8, 0x4d41_4c43);
    wr32(dst, pehdr + 0x3c, valign);
    let foffset = foffset as usize;
    let hdr_len = 0xf8 + 0x28 * count;
    if foffset > dsz + SLACK || 0xd0 + hdr_len > foffset {
        return dsz;
    }
    let mut out = vec![0u8; foffset];
    out[..0xd0].copy_from_slice(DOS_STUB);
    out[0xd0..0xd0 + hdr_len].copy_from_slice(&dst[pehdr..pehdr + hdr_len]);
    let mut s = pehdr + 0xf8;
    for _ in 0..count {
        let (raw, size, rva) = (
            rd32(dst, s + 20) as usize,
            rd32(dst, s + 16) as usize,
            rd32(dst, s + 12),
        );
        if raw > foffset || size > foffset || raw + size > foffset {
            return dsz;
        }
        let from = rva.wrapping_sub(upx0) as usize;
        if from > dsz || from + size > dst.len() {
            return dsz;
        }
        out[raw..raw + size].copy_from_slice(&dst[from..from + size]);
        s += 0x28;
    }
    dst[..foffset].copy_from_slice(&out);
    foffset
}

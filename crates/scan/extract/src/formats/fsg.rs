//! FSG-packed Windows executables, unpacked as ClamAV unpacks them: the
//! three FSG cases of `cli_scanpe` (`libclamav/pe.c`, versions 2.0, 1.33
//! and 1.31, tried in that order), `unfsg_200` and `unfsg_133`
//! (`libclamav/fsg.c`) around `cli_unfsg` ([`unfsg`]) and `cli_rebuildpe`
//! ([`rebuild`]).
//!
//! The packed layout: an empty section (no file data, the unpacked image's
//! virtual size) followed by one holding the compressed data (`cli_scanpe`'s
//! `found` test, [`empty_section`]). The code at the entry point tells the
//! version and where the stub keeps its parameters:
//!
//! - 2.0, `xchg esp, [imm32]`: a pointer to a fake stack in the packed
//!   section holding the destination, the source and a table whose fourth
//!   entry is the original entry point. One block, rebuilt as one section.
//! - 1.33, `mov esi, imm32` below the first section: a table in the
//!   headers' padding holding the destination, the source, and the address
//!   (+1) of each further original section, zero-terminated.
//! - 1.31, `mov ebx, imm32; mov edi, imm32; mov esi, imm32`: the same
//!   table in the padding, as 16-bit page numbers (+2), ended by 1 or 2.
//!
//! 1.33 and 1.31 decompress one block per original section, one after the
//! other, and rebuild a PE with the sections sorted by address.
//!
//! What ClamAV does when something does not fit is reproduced: a layout
//! whose sizes make no sense stops it looking at the file
//! ([`Outcome::Declined`]); the other checks, and data that does not
//! decompress, leave the file to the next unpacker (UPX, which then takes
//! the same empty section: [`Outcome::NotPacked`]); an image or table
//! larger than the limit is [`Outcome::TooLarge`] (`CLI_UNPSIZELIMITS`).
//! When the data decompressed but `cli_rebuildpe` refused the sections
//! (more than 96), ClamAV scans the bare decompressed buffer instead
//! (`FSGCASE`: "scan raw data after upx block"), and so does moat.

use super::aplib::unfsg;
use super::mew::empty_section;
use super::packed::Outcome;
use super::rebuildpe::rebuild;
use super::{contained, read_at_full};
use moat_core::Blob;
use moat_exe::pe::{pe_salign, rawaddr};
use moat_exe::{ExeInfo, Section, le32};
use std::io;

/// Most sections `cli_rebuildpe` writes (its ghost `empty` one included).
const MAX_REBUILT_SECTIONS: u64 = 96;

/// Unpack `blob` (laid out as `info`, with `epbuff` read at its entry
/// point; `cli_scanpe` comes here only with at least 168 bytes there) if
/// FSG packed it; `max` bounds every buffer.
pub(crate) fn unpack(
    blob: &Blob,
    info: &ExeInfo,
    epbuff: &[u8; 4096],
    max: u64,
) -> io::Result<Outcome> {
    let Some(i) = empty_section(info) else {
        return Ok(Outcome::NotPacked);
    };
    let f = Fsg {
        blob,
        info,
        epbuff,
        max,
        img: info.sections[i],
        packed: info.sections[i + 1],
        base: info.image_base32,
    };
    // `peinfo->min`: the lowest section address.
    let min = info.sections.iter().map(|s| s.rva).min().unwrap_or(0);
    let imm1 = le32(epbuff, 1).wrapping_sub(f.base);
    // Each case that gives up `break`s out of its loop into the next
    // cases, whose first bytes cannot match, and on to UPX.
    if epbuff[0] == 0x87 && epbuff[1] == 0x25 {
        return f.v200();
    }
    if epbuff[0] == 0xbe && imm1 < min {
        return f.v133();
    }
    // The last test compares the entry point's offset in the packed
    // section with that section's address (sic), less 0xe0.
    let vep = info.vep;
    if epbuff[0] == 0xbb
        && imm1 < min
        && epbuff[5] == 0xbf
        && epbuff[10] == 0xbe
        && vep >= f.packed.rva
        && vep - f.packed.rva > f.packed.rva.wrapping_sub(0xe0)
    {
        return f.v131();
    }
    Ok(Outcome::NotPacked)
}

/// What the three cases share.
struct Fsg<'a> {
    blob: &'a Blob,
    info: &'a ExeInfo,
    epbuff: &'a [u8; 4096],
    max: u64,
    /// `sections[i]`: the empty section, the image's room.
    img: Section,
    /// `sections[i + 1]`: the compressed data.
    packed: Section,
    base: u32,
}

/// `CLI_UNPSIZELIMITS`: ClamAV stops here, the file a limit.
fn over(size: u32, max: u64) -> Option<Outcome> {
    (u64::from(size) > max).then_some(Outcome::TooLarge(size.into()))
}

/// Offset of `rva` in the packed section's data (may be negative).
fn off(rva: u32, packed: Section) -> i64 {
    i64::from(rva) - i64::from(packed.rva)
}

/// A little-endian dword of `b` at `at`, if it lies within `b`.
fn dword(b: &[u8], at: i64) -> Option<u32> {
    let at = usize::try_from(at).ok()?;
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl Fsg<'_> {
    /// `ssize` and `dsize`, after the checks every case makes on them:
    /// `Err` with the outcome that stops ClamAV.
    fn sizes(&self) -> Result<(u32, u32), Outcome> {
        let (ssize, dsize) = (self.packed.rsz, self.img.vsz);
        if let Some(o) = over(ssize.max(dsize), self.max) {
            return Err(o);
        }
        // "Size mismatch": `return CL_CLEAN`, no other unpacker tried.
        if ssize <= 0x19 || dsize <= ssize {
            return Err(Outcome::Declined);
        }
        Ok((ssize, dsize))
    }

    /// The packed section's `ssize` bytes (`fmap_need_off_once`); `None`
    /// where ClamAV cannot read them (and gives up on the file).
    fn packed_data(&self, ssize: u32) -> io::Result<Option<Vec<u8>>> {
        let mut src = vec![0u8; ssize as usize];
        if ssize == 0 || read_at_full(self.blob, self.packed.raw.into(), &mut src)? < src.len() {
            return Ok(None);
        }
        Ok(Some(src))
    }

    /// FSG 2.0: `xchg esp, [imm32]` swaps in a stack that `popad` loads.
    fn v200(&self) -> io::Result<Outcome> {
        let (p, base) = (self.packed, self.base);
        let (ssize, dsize) = match self.sizes() {
            Ok(s) => s,
            Err(o) => return Ok(o),
        };
        // The pointer to the new stack, inside the packed section.
        let newedx = le32(self.epbuff, 2).wrapping_sub(base);
        if !contained(p.rva, p.rsz, newedx, 4) {
            return Ok(Outcome::NotPacked);
        }
        let Some(src) = self.packed_data(ssize)? else {
            return Ok(Outcome::Declined);
        };
        let at = off(newedx, p);
        if newedx < p.rva || !contained(0, ssize, at, 4) {
            return Ok(Outcome::NotPacked);
        }
        // The stack, 32 bytes (the eight registers `popad` loads).
        let Some(esp) = dword(&src, at) else {
            return Ok(Outcome::NotPacked);
        };
        let newedx = esp.wrapping_sub(base);
        if !contained(p.rva, p.rsz, newedx, 4) {
            return Ok(Outcome::NotPacked);
        }
        let stack = off(newedx, p);
        if !contained(0, ssize, stack, 32) {
            return Ok(Outcome::NotPacked);
        }
        let reg = |k: i64| dword(&src, stack + k).unwrap_or(0).wrapping_sub(base);
        let (newedi, newesi, newebx) = (reg(0), reg(4), reg(16));
        if newedi != self.img.rva {
            return Ok(Outcome::NotPacked);
        }
        if newesi < p.rva || newesi - p.rva >= p.rsz {
            return Ok(Outcome::NotPacked);
        }
        // `ebx`: the stub's table of functions; its fourth entry is where
        // the program starts.
        if !contained(p.rva, p.rsz, newebx, 16) {
            return Ok(Outcome::NotPacked);
        }
        let oldep = dword(&src, off(newebx, p) + 12)
            .unwrap_or(0)
            .wrapping_sub(base);
        let mut dest = vec![0u8; dsize as usize];
        // `unfsg_200`: one block, from `esi` to the end of the section.
        let from = (newesi - p.rva) as usize;
        if src.get(from..).and_then(|s| unfsg(s, &mut dest)).is_none() {
            // "Unpacking failed": on to UPX.
            return Ok(Outcome::NotPacked);
        }
        // One section, the whole buffer (decompressed or not).
        let sections = [Section {
            raw: 0,
            rsz: dsize,
            vsz: dsize,
            rva: newedi,
            ..Section::default()
        }];
        Ok(self.rebuilt(dest, Some(&sections), 1, oldep))
    }

    /// FSG 1.33: `mov esi, imm32`, the table in the headers' padding.
    fn v133(&self) -> io::Result<Outcome> {
        let (p, base) = (self.packed, self.base);
        let (ssize, dsize) = match self.sizes() {
            Ok(s) => s,
            Err(o) => return Ok(o),
        };
        let Some(t) = self.support_at(le32(self.epbuff, 1).wrapping_sub(base)) else {
            return Ok(Outcome::NotPacked);
        };
        let mut sup = match self.support(t)? {
            Ok(s) => s,
            Err(o) => return Ok(o),
        };
        let gp = sup.gp;
        let (Some(edi), Some(esi)) = (sup.dword(4)?, sup.dword(8)?) else {
            return Ok(Outcome::NotPacked);
        };
        let (newedi, newesi) = (edi.wrapping_sub(base), esi.wrapping_sub(base));
        if newesi < p.rva || newesi - p.rva >= p.rsz {
            return Ok(Outcome::NotPacked);
        }
        if newedi != self.img.rva {
            return Ok(Outcome::NotPacked);
        }
        // Counting the original sections: addresses (+1) up to a zero, each
        // inside the image (one that is not ends the count, counted, and
        // then fails the test below). Misaligned ones are only remarked on.
        let mut sectcnt: u32 = 0;
        let mut k: u32 = 12;
        while k < gp.wrapping_sub(4) {
            let Some(rva) = sup.dword(k.into())? else {
                return Ok(Outcome::NotPacked);
            };
            if rva == 0 {
                break;
            }
            let rva = rva.wrapping_sub(base.wrapping_add(1));
            sectcnt += 1;
            if rva < self.img.rva || rva - self.img.rva >= self.img.vsz {
                break;
            }
            k += 4;
        }
        if k >= gp.wrapping_sub(4) || sup.dword(k.into())? != Some(0) {
            return Ok(Outcome::NotPacked);
        }
        let count = u64::from(sectcnt) + 1;
        // Their addresses, when `cli_rebuildpe` may take them (more sections
        // than it writes make it fail whatever their addresses).
        let mut rvas = vec![newedi];
        if count <= MAX_REBUILT_SECTIONS {
            for n in 1..=sectcnt {
                let Some(rva) = sup.dword(8 + 4 * u64::from(n))? else {
                    return Ok(Outcome::NotPacked);
                };
                rvas.push(rva.wrapping_sub(1).wrapping_sub(base));
            }
        }
        let Some(src) = self.packed_data(ssize)? else {
            return Ok(Outcome::Declined);
        };
        // The stub's jump to the program: `jmp rel32` 161 bytes in.
        let oldep = self
            .info
            .vep
            .wrapping_add(161 + 6)
            .wrapping_add(le32(self.epbuff, 163));
        Ok(self.v133_unpack(&src, newesi, dsize, count, &rvas, oldep))
    }

    /// FSG 1.31: `mov ebx, imm32; mov edi, imm32; mov esi, imm32`, the
    /// table as page numbers.
    fn v131(&self) -> io::Result<Outcome> {
        let (p, base) = (self.packed, self.base);
        let Some(t) = self.support_at(le32(self.epbuff, 1).wrapping_sub(base)) else {
            return Ok(Outcome::NotPacked);
        };
        let newesi = le32(self.epbuff, 11).wrapping_sub(base);
        let newedi = le32(self.epbuff, 6).wrapping_sub(base);
        // Bounded by the section's file offset, not its size (sic): a
        // source past the data makes `cli_unfsg` fail below.
        if newesi < p.rva || newesi - p.rva >= p.raw {
            return Ok(Outcome::NotPacked);
        }
        if newedi != self.img.rva {
            return Ok(Outcome::NotPacked);
        }
        let (ssize, dsize) = match self.sizes() {
            Ok(s) => s,
            Err(o) => return Ok(o),
        };
        let mut sup = match self.support(t)? {
            Ok(s) => s,
            Err(o) => return Ok(o),
        };
        let gp = sup.gp;
        // Counting the original sections: 16-bit page numbers (+2) up to a
        // 1 or a 2, read through `char`, which is signed: a byte of 0x80
        // or more spreads ones over the bits above it.
        let mut sectcnt: u32 = 0;
        let mut k: u32 = 0;
        while k < gp.wrapping_sub(2) {
            let Some(w) = sup.word(k.into())? else {
                return Ok(Outcome::NotPacked);
            };
            if w == 2 || w == 1 {
                break;
            }
            let rva = (w.wrapping_sub(2) << 12).wrapping_sub(base);
            sectcnt += 1;
            if rva < self.img.rva || rva - self.img.rva >= self.img.vsz {
                break;
            }
            k += 2;
        }
        if k >= gp.wrapping_sub(10) || sup.dword(u64::from(k) + 6)? != Some(2) {
            return Ok(Outcome::NotPacked);
        }
        // No section counted: ClamAV's loop over them runs to `sectcnt - 1`
        // unsigned, 4 billion, writing past its one-entry array; it does
        // not survive that. moat stops looking at the file.
        if sectcnt == 0 {
            return Ok(Outcome::Declined);
        }
        let count = u64::from(sectcnt) + 1;
        let mut rvas = vec![newedi];
        if count <= MAX_REBUILT_SECTIONS {
            for n in 0..u64::from(sectcnt) {
                let Some(w) = sup.word(2 * n)? else {
                    return Ok(Outcome::NotPacked);
                };
                rvas.push((w.wrapping_sub(2) << 12).wrapping_sub(base));
            }
        }
        let Some(src) = self.packed_data(ssize)? else {
            return Ok(Outcome::Declined);
        };
        // The stub's jump to the program, 0xda bytes in (0xe0 when it
        // starts with a call): a `jcc rel32` read from the packed section's
        // data at the entry point's offset in that section, which ClamAV
        // does not bound (the entry point lies past the data); it reads
        // the file there, as moat does.
        let g = 0xda + 6 * u32::from(self.epbuff[16] == 0xe8);
        let at = u64::from(p.raw) + u64::from(g) + 2 + u64::from(self.info.vep.wrapping_sub(p.rva));
        let mut rel = [0u8; 4];
        if read_at_full(self.blob, at, &mut rel)? < 4 {
            return Ok(Outcome::NotPacked);
        }
        let oldep = self
            .info
            .vep
            .wrapping_add(g + 6)
            .wrapping_add(u32::from_le_bytes(rel));
        Ok(self.v133_unpack(&src, newesi, dsize, count, &rvas, oldep))
    }

    /// `cli_rawaddr` of the support table's address with no sections: only
    /// inside the headers (and the file).
    fn support_at(&self, rva: u32) -> Option<u32> {
        rawaddr(rva, &[], self.blob.len(), self.info.hdr_size)
    }

    /// The support table: the `gp` bytes from `t` to the packed section's
    /// data, or the outcome that stops ClamAV.
    fn support(&self, t: u32) -> io::Result<Result<Support<'_>, Outcome>> {
        let gp = self.packed.raw.wrapping_sub(t);
        if let Some(o) = over(gp, self.max) {
            return Ok(Err(o));
        }
        let mut win = vec![0u8; gp as usize];
        // `fmap_need_off_once` of nothing, or past the end: `CL_EREAD`.
        if gp == 0 || read_at_full(self.blob, t.into(), &mut win)? < win.len() {
            return Ok(Err(Outcome::Declined));
        }
        Ok(Ok(Support {
            blob: self.blob,
            t: t.into(),
            gp,
            win,
            more_at: 0,
            more: Vec::new(),
        }))
    }

    /// `unfsg_133` (1.33 and 1.31): `count` blocks one after another from
    /// `esi`, each the data of one section, then those sorted by address
    /// and rebuilt. `rvas` holds the sections' addresses when there are
    /// few enough to rebuild.
    fn v133_unpack(
        &self,
        src: &[u8],
        newesi: u32,
        dsize: u32,
        count: u64,
        rvas: &[u32],
        oldep: u32,
    ) -> Outcome {
        let mut dest = vec![0u8; dsize as usize];
        // From `esi` to the end of the section (1.31 may start past it: a
        // size of zero or less, which `cli_unfsg` refuses).
        let Some(src) = src.get((newesi - self.packed.rva) as usize..) else {
            return Outcome::NotPacked;
        };
        let mut sections = Vec::with_capacity(rvas.len());
        let (mut s, mut d) = (0usize, 0usize);
        // Each block takes at least three bytes, so this ends well before
        // `count` when that is large.
        for n in 0..count {
            let (Some(from), Some(to)) = (src.get(s..), dest.get_mut(d..)) else {
                return Outcome::NotPacked;
            };
            let Some((ds, dd)) = unfsg(from, to) else {
                // "Unpacking failed": on to UPX.
                return Outcome::NotPacked;
            };
            if let Some(&rva) = rvas.get(n as usize) {
                sections.push(Section {
                    rva,
                    raw: d as u32,
                    rsz: dd as u32,
                    ..Section::default()
                });
            }
            s += ds;
            d += dd;
        }
        if count > MAX_REBUILT_SECTIONS {
            return self.rebuilt(dest, None, count, oldep);
        }
        // Sorted by address with a bubble sort: stable, as `sort_by_key`.
        sections.sort_by_key(|s| s.rva);
        // Each virtual size up to the next section; the last one's what is
        // left of `dsize`.
        let mut lastsz = dsize;
        for n in 0..sections.len() {
            sections[n].vsz = match sections.get(n + 1) {
                Some(next) => {
                    let gap = next.rva.wrapping_sub(sections[n].rva);
                    lastsz = lastsz.wrapping_sub(gap);
                    gap
                }
                None => lastsz,
            };
        }
        self.rebuilt(dest, Some(&sections), count, oldep)
    }

    /// `cli_rebuildpe` of `sections` of `dest` (`None`: too many to list),
    /// `count` of them, entry point `ep`. When it refuses them ClamAV
    /// scans the decompressed buffer itself.
    fn rebuilt(&self, dest: Vec<u8>, sections: Option<&[Section]>, count: u64, ep: u32) -> Outcome {
        let packed = self.blob.len();
        let raw = |image: Vec<u8>| Outcome::Unpacked { image, packed };
        let Some(sections) = sections.filter(|_| count <= MAX_REBUILT_SECTIONS) else {
            return raw(dest);
        };
        let Some(first) = sections.first() else {
            return raw(dest);
        };
        // Its ghost section, when the first starts past the headers.
        let headers = |n: u64| pe_salign((0x148 + 0x80 + 0x28 * n) as u32, 0x200);
        let ghost = first.rva > pe_salign(headers(count), 0x1000);
        if count + u64::from(ghost) > MAX_REBUILT_SECTIONS {
            return raw(dest);
        }
        match rebuild(&dest, sections, self.base, ep, (0, 0), 0, self.max) {
            Some(image) => Outcome::Unpacked { image, packed },
            None => {
                let data: u64 = sections
                    .iter()
                    .map(|s| u64::from(pe_salign(s.rsz, 0x200)))
                    .sum();
                Outcome::TooLarge(u64::from(headers(count + u64::from(ghost))) + data)
            }
        }
    }
}

/// The support table ClamAV reads through a pointer into its map of the
/// file: `gp` bytes from `t`, though the 1.33 and 1.31 loops read past
/// them when `gp` is small (their bounds `gp - 4`, `gp - 10` wrap). Those
/// reads are of the file's bytes that follow, read here in pieces.
struct Support<'a> {
    blob: &'a Blob,
    t: u64,
    gp: u32,
    win: Vec<u8>,
    more_at: u64,
    more: Vec<u8>,
}

impl Support<'_> {
    fn bytes<const N: usize>(&mut self, k: u64) -> io::Result<Option<[u8; N]>> {
        let end = k + N as u64;
        if end <= self.win.len() as u64 {
            let mut b = [0u8; N];
            b.copy_from_slice(&self.win[k as usize..end as usize]);
            return Ok(Some(b));
        }
        let at = self.t + k;
        if at < self.more_at || at + N as u64 > self.more_at + self.more.len() as u64 {
            self.more.resize(64 << 10, 0);
            let n = read_at_full(self.blob, at, &mut self.more)?;
            self.more.truncate(n);
            self.more_at = at;
        }
        let from = (at - self.more_at) as usize;
        Ok(self.more.get(from..from + N).map(|s| {
            let mut b = [0u8; N];
            b.copy_from_slice(s);
            b
        }))
    }

    fn dword(&mut self, k: u64) -> io::Result<Option<u32>> {
        Ok(self.bytes::<4>(k)?.map(u32::from_le_bytes))
    }

    /// `support[k] | (support[k + 1] << 8)` with `char` signed.
    fn word(&mut self, k: u64) -> io::Result<Option<u32>> {
        Ok(self
            .bytes::<2>(k)?
            .map(|[lo, hi]| (i32::from(lo as i8) | (i32::from(hi as i8) << 8)) as u32))
    }
}

#[cfg(test)]
#[path = "../../tests/common/fsg.rs"]
mod build;

#[cfg(test)]
mod tests {
    use super::build::{self, BASE, IMG_RVA};
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

    /// The rebuilt PE's sections: (rva, vsz, raw, rsz).
    fn sections(pe: &[u8]) -> Vec<(u32, u32, u32, u32)> {
        let n = usize::from(u16::from_le_bytes([pe[0xd6], pe[0xd7]]));
        (0..n)
            .map(|k| {
                let h = 0x1c8 + 40 * k;
                let r = |a| le32(pe, h + a);
                (r(12), r(8), r(20), r(16))
            })
            .collect()
    }

    #[test]
    fn v200_unpacks_one_section_at_the_destination() {
        let text = build::text("fsg-2.0", 0x2400);
        let pe = image(run(&build::v200(&text, 0x4000, 0x1234), MAX));
        assert_eq!(sections(&pe), [(IMG_RVA, 0x4000, 0x200, 0x4000)]);
        assert_eq!(&pe[0x200..0x200 + text.len()], &text[..]);
        assert!(pe[0x200 + text.len()..].iter().all(|&b| b == 0));
        assert_eq!(le32(&pe, 0xd0 + 40), 0x1234, "entry point");
        assert_eq!(le32(&pe, 0xd0 + 52), BASE);
    }

    #[test]
    fn v133_sorts_the_sections_and_sizes_them_by_the_next() {
        let (a, b, c) = (
            build::text("first", 0x900),
            build::text("second", 0x300),
            build::text("third", 0x500),
        );
        let file = build::v133(&[(0x1000, &a), (0x3000, &c), (0x2000, &b)], 0x4000, 0x1010);
        let pe = image(run(&file, MAX));
        // rawbase 0x400 (three sections); each rsz the block's length.
        assert_eq!(
            sections(&pe),
            [
                (0x1000, 0x1000, 0x400, 0x900),
                (0x2000, 0x1000, 0x400 + 0xa00, 0x300),
                (0x3000, 0x2000, 0x400 + 0xa00 + 0x400, 0x500),
            ]
        );
        assert_eq!(&pe[0x400..0xd00], &a[..]);
        assert_eq!(&pe[0xe00..0x1100], &b[..]);
        assert_eq!(&pe[0x1200..0x1700], &c[..]);
        assert_eq!(le32(&pe, 0xd0 + 40), 0x1010);
    }

    #[test]
    fn v131_reads_page_numbers_and_either_stub() {
        let (a, b) = (build::text("one", 0x700), build::text("two", 0x400));
        for call in [false, true] {
            let file = build::v131(&[(0x1000, &a), (0x3000, &b)], 0x4000, 0x1020, call);
            let pe = image(run(&file, MAX));
            assert_eq!(
                sections(&pe),
                [
                    (0x1000, 0x2000, 0x400, 0x700),
                    (0x3000, 0x2000, 0xc00, 0x400)
                ]
            );
            assert_eq!(&pe[0x400..0xb00], &a[..]);
            assert_eq!(&pe[0xc00..0x1000], &b[..]);
            assert_eq!(le32(&pe, 0xd0 + 40), 0x1020, "call: {call}");
        }
    }

    #[test]
    fn more_sections_than_rebuildpe_takes_leave_the_bare_buffer() {
        // 100 sections of 0x40 bytes: ClamAV scans the decompressed buffer.
        let data: Vec<Vec<u8>> = (0..100u32)
            .map(|n| build::text(&format!("s{n}"), 0x40 + n as usize))
            .collect();
        let secs: Vec<(u32, &[u8])> = data
            .iter()
            .enumerate()
            .map(|(n, d)| (0x1000 + 0x40 * n as u32, &d[..]))
            .collect();
        let file = build::v133(&secs, 0x6000, 0x1000);
        let raw = image(run(&file, MAX));
        assert_eq!(raw.len(), 0x6000);
        let all: Vec<u8> = data.concat();
        assert_eq!(&raw[..all.len()], &all[..]);
    }

    #[test]
    fn sizes_over_the_limit_are_limits() {
        let text = build::text("limit", 0x2400);
        let file = build::v200(&text, 0x4000, 0x1000);
        assert!(matches!(run(&file, 0x3fff), Outcome::TooLarge(0x4000)));
        let file = build::v133(&[(0x1000, &text)], 0x4000, 0x1000);
        assert!(matches!(run(&file, 0x3fff), Outcome::TooLarge(0x4000)));
        let file = build::v131(&[(0x1000, &text), (0x3000, &text)], 0x4000, 0x1000, false);
        assert!(matches!(run(&file, 0x3fff), Outcome::TooLarge(0x4000)));
        // Room for the image but not for the headers rebuilt around it.
        assert!(matches!(
            run(&build::v200(&text, 0x4000, 0x1000), 0x4000),
            Outcome::TooLarge(0x4200)
        ));
    }

    #[test]
    fn an_image_no_larger_than_its_data_stops_clamav() {
        // `dsize <= ssize`: "Size mismatch", no other unpacker tried.
        let text = build::text("small", 0x2400);
        assert!(matches!(
            run(&build::v200(&text, 0x1000, 0x1000), MAX),
            Outcome::Declined
        ));
    }

    #[test]
    fn data_that_does_not_decompress_is_left_to_upx() {
        let text = build::text("broken", 0x2400);
        let mut file = build::v200(&text, 0x4000, 0x1000);
        // A distance before the start of the output, right after the first
        // byte: `10`, gamma 0x1ff.
        let at = 0x200 + 0x100 + 1;
        file[at..at + 4].copy_from_slice(&[0b1011_1111, 0xff, 0xfe, 0x00]);
        assert!(matches!(run(&file, MAX), Outcome::NotPacked));
    }

    /// Every truncation, and bytes overwritten throughout: never a panic.
    fn hostile(file: &[u8]) {
        for len in (0..file.len()).step_by(7).chain([file.len() - 1]) {
            let _ = run(&file[..len], MAX);
        }
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..1500 {
            let mut f = file.to_vec();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let at = x as usize % f.len();
                f[at] = (x >> 24) as u8;
            }
            let _ = run(&f, MAX);
        }
    }

    #[test]
    fn hostile_v200_never_panics() {
        hostile(&build::v200(&build::text("h", 0x800), 0x2000, 0x1000));
    }

    #[test]
    fn hostile_v133_never_panics() {
        let t = build::text("h", 0x300);
        hostile(&build::v133(&[(0x1000, &t), (0x1400, &t)], 0x2000, 0x1000));
    }

    #[test]
    fn hostile_v131_never_panics() {
        let t = build::text("h", 0x300);
        hostile(&build::v131(
            &[(0x1000, &t), (0x2000, &t)],
            0x2000,
            0x1000,
            true,
        ));
    }

    #[test]
    fn support_tables_that_run_into_the_packed_data_never_panic() {
        // The table's pointer right before the packed section's data: the
        // loops read on past it (`gp - 4` and `gp - 10` wrap).
        let t = build::text("h", 0x300);
        for file in [
            build::v133(&[(0x1000, &t)], 0x2000, 0x1000),
            build::v131(&[(0x1000, &t), (0x2000, &t)], 0x2000, 0x1000, false),
        ] {
            for gp in 0..16u32 {
                let mut f = file.clone();
                // The entry point's `imm32` at the start of the stub.
                let pos = f
                    .windows(5)
                    .position(|w| {
                        (w[0] == 0xbe || w[0] == 0xbb) && le32(w, 1) == BASE + build::SUPPORT
                    })
                    .unwrap();
                f[pos + 1..pos + 5].copy_from_slice(&(BASE + 0x400 - gp).to_le_bytes());
                let _ = run(&f, MAX);
            }
        }
    }
}

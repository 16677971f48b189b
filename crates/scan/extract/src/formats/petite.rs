//! Petite 2.x-packed executables, unpacked as ClamAV unpacks them
//! (`libclamav/petite.c` and the Petite part of `cli_scanpe`): the image
//! is laid out from its lowest section address, the packer's table moves
//! blocks and decompresses each original section (an NRV-like LZ77 whose
//! literals are xored with the count of bytes left), Petite's own code is
//! cut from the last section, the entry point is decrypted from the
//! mangled imports where Petite hid it, and the sections are given headers
//! again with [`rebuild`](super::rebuildpe::rebuild).
//!
//! Positions are kept as signed offsets from the start of the image, as
//! ClamAV's pointer arithmetic is, and every read and copy is checked:
//! data that does not decode leaves the file scanned as it is.

use super::aplib::doubledl;
use super::rebuildpe::rebuild;
use moat_exe::{ExeInfo, Section, le32};

/// The stub's version (1 or 2) when the entry point is Petite's
/// (`mov eax, <section>`), and the level-0 stub ClamAV does not unpack
/// excluded.
pub(crate) fn recognised(info: &ExeInfo, epbuff: &[u8]) -> Option<u32> {
    let s = &info.sections;
    let n = s.len();
    let target = le32(epbuff, 1);
    let points_at =
        |i: usize| epbuff[0] == 0xb8 && target == s[i].rva.wrapping_add(info.image_base32);
    let version = if n > 0 && points_at(n - 1) {
        2
    } else if n >= 2 && points_at(n - 2) {
        1
    } else {
        return None;
    };
    (le32(epbuff, 0x80) != 0x163c_988d).then_some(version)
}

/// The image's extent (`peinfo->min`, `peinfo->max`): lowest section
/// address, highest end of raw data.
pub(crate) fn extent(info: &ExeInfo) -> Option<(u32, u32)> {
    let first = info.sections.first()?;
    let mut min = first.rva;
    let mut max = first.rva.wrapping_add(first.rsz);
    for s in &info.sections[1..] {
        min = min.min(s.rva);
        max = max.max(s.rva.wrapping_add(s.rsz));
    }
    Some((min, max))
}

/// The image `cli_scanpe` lays out for Petite: each section with raw data
/// at its address less `min`. `None` where ClamAV stops looking at the
/// file.
pub(crate) fn layout(
    info: &ExeInfo,
    min: u32,
    size: u32,
    read: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<usize>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; size as usize];
    for s in info.sections.iter().filter(|s| s.raw != 0) {
        let at = i64::from(s.rva) - i64::from(min);
        if s.rsz == 0 || !in_buf(size, at, i64::from(s.ursz)) {
            return Ok(None);
        }
        let (at, len) = (at as usize, s.ursz as usize);
        if read(u64::from(s.raw), &mut buf[at..at + len])? < len {
            return Ok(None);
        }
    }
    Ok(Some(buf))
}

/// `CLI_ISCONTAINED(buf, size, buf + at, len)`.
fn in_buf(size: u32, at: i64, len: i64) -> bool {
    super::contained(0, i64::from(size), at, len)
}

/// `petite_inflate2x_1to9`: `buf` is the image from `min`; the rebuilt
/// program (at most `max` bytes), or `None`.
pub(crate) fn unpack(
    info: &ExeInfo,
    version: u32,
    mut buf: Vec<u8>,
    min: u32,
    max: u64,
) -> Option<Vec<u8>> {
    let size = buf.len() as u32;
    let sections: &[Section] = if version == 1 {
        &info.sections[..info.sections.len() - 1]
    } else {
        &info.sections
    };
    let last = *sections.last()?;
    let base = info.image_base32;
    let pep = info.vep;
    // Positions in `buf` of an address.
    let pos = |rva: u32| i64::from(rva) - i64::from(min);
    let rd = |buf: &[u8], at: i64| -> Option<u32> {
        in_buf(size, at, 4).then(|| le32(buf, at as usize))
    };
    let (grown, skew, mut packed) = if version == 1 {
        (0x323i64, 0x34i64, pos(last.rva) + 0x178)
    } else {
        (0x355, 0x35, pos(last.rva) + 0x1b8)
    };
    let (mut bottom, mut enc_ep, mut irva) = (0u32, 0u32, 0u32);
    let mut mangled = false;
    let mut check4resources = 0u32;
    let mut usects: Vec<Section> = Vec::new();
    loop {
        let srva = rd(&buf, packed)?;
        if srva == 0 {
            break;
        }
        let count = srva & 0x7fff_ffff;
        if srva != count {
            // Move a block of `count` words to the end of its section.
            check4resources = 0;
            let (from, to) = (rd(&buf, packed + 4)?, rd(&buf, packed + 8)?);
            bottom = to.checked_add(4).filter(|_| to <= u32::MAX - 4)?;
            let back = i64::from(count.wrapping_sub(1).wrapping_mul(4));
            let len = i64::from(count.wrapping_mul(4));
            let (ssrc, ddst) = (pos(from) - back, pos(to) - back);
            if !in_buf(size, ssrc, len) || !in_buf(size, ddst, len) {
                return None;
            }
            let (s, d, l) = (ssrc as usize, ddst as usize, len as usize);
            buf.copy_within(s..s + l, d);
            packed += 0x0c;
            continue;
        }
        // Decompress one original section.
        let mut left = rd(&buf, packed + 4)?;
        let thisrva = rd(&buf, packed + 8)?;
        packed += 0x10;
        if usects.len() >= 96 {
            return None;
        }
        let mut sect = Section {
            rva: thisrva,
            rsz: left,
            vsz: if bottom.wrapping_sub(thisrva) as i32 > 0 {
                bottom.wrapping_sub(thisrva)
            } else {
                left
            },
            raw: 0,
            ..Section::default()
        };
        if left == 0 {
            usects.push(sect);
            continue;
        }
        let q = sections.iter().find(|q| {
            let (bb, bbs) = (u64::from(q.rva), u64::from(q.vsz));
            let (sb, sbs) = (u64::from(sect.rva), u64::from(sect.vsz));
            bbs > 0 && sbs > 0 && sbs <= bbs && sb >= bb && sb + sbs <= bb + bbs && sb < bb + bbs
        })?;
        if check4resources == 0 {
            sect.rva = q.rva;
            sect.rsz = thisrva.wrapping_sub(q.rva).wrapping_add(left);
        }
        usects.push(sect);
        let (check1, check2, goback) = if left < 0x10000 {
            (0xffff_c060u32 as i32, 0xffff_fc60u32 as i32, 5)
        } else if left < 0x40000 {
            (0xffff_8180u32 as i32, 0xffff_f980u32 as i32, 7)
        } else {
            (0xffff_8300u32 as i32, 0xffff_fb00u32 as i32, 8)
        };
        let (mut ssrc, mut ddst) = (pos(srva), pos(thisrva));
        if !in_buf(size, ssrc, 1) || !in_buf(size, ddst, 1) {
            return None;
        }
        left -= 1;
        buf[ddst as usize] = buf[ssrc as usize];
        ddst += 1;
        ssrc += 1;
        let mut dl = 0u8;
        let mut oldback: i32 = 0;
        while left > 0 {
            if doubledl(&buf, &mut ssrc, &mut dl)? == 0 {
                if !in_buf(size, ssrc, 1) || !in_buf(size, ddst, 1) {
                    return None;
                }
                buf[ddst as usize] = buf[ssrc as usize] ^ (left & 0xff) as u8;
                ddst += 1;
                ssrc += 1;
                left -= 1;
                continue;
            }
            let mut addsize = 0u32;
            let mut backbytes: i32 = 1;
            loop {
                let b = doubledl(&buf, &mut ssrc, &mut dl)?;
                if backbytes >= i32::MAX / 2 {
                    return None;
                }
                backbytes = backbytes * 2 + b as i32;
                if doubledl(&buf, &mut ssrc, &mut dl)? == 0 {
                    break;
                }
            }
            backbytes -= 3;
            let mut backsize: u32;
            if backbytes >= 0 {
                for _ in 0..goback {
                    let b = doubledl(&buf, &mut ssrc, &mut dl)?;
                    if backbytes >= i32::MAX / 2 {
                        return None;
                    }
                    backbytes = backbytes * 2 + b as i32;
                }
                backsize = 0;
                backbytes = !backbytes;
                addsize += 1 + u32::from(backbytes < check2) + u32::from(backbytes < check1);
                oldback = backbytes;
            } else {
                backsize = (backbytes + 1) as u32;
                backbytes = oldback;
            }
            for _ in 0..2 {
                let b = doubledl(&buf, &mut ssrc, &mut dl)?;
                backsize = backsize.wrapping_mul(2).wrapping_add(b);
            }
            if backsize == 0 {
                backsize = 1;
                loop {
                    let b = doubledl(&buf, &mut ssrc, &mut dl)?;
                    backsize = backsize.wrapping_mul(2).wrapping_add(b);
                    if doubledl(&buf, &mut ssrc, &mut dl)? == 0 {
                        break;
                    }
                }
                backsize = backsize.wrapping_add(2);
            }
            backsize = backsize.wrapping_add(addsize);
            left = left.wrapping_sub(backsize);
            let n = i64::from(backsize);
            let from = ddst + i64::from(backbytes);
            if !in_buf(size, ddst, n) || !in_buf(size, from, n) {
                return None;
            }
            for k in 0..n as usize {
                buf[ddst as usize + k] = buf[from as usize + k];
            }
            ddst += n;
        }
        // Petite's own code at the end of the section: cut it, and take
        // the encrypted entry point and the imports' address from it.
        let magic_at = |reloc: i64| ddst - grown + 5 + 0x4f - reloc;
        let has_magic = |buf: &[u8], reloc: i64| {
            rd(buf, magic_at(reloc)) == Some(0x645e_c033)
                && rd(buf, magic_at(reloc) + 4) == Some(0x1b8b_188b)
        };
        let rsz = i64::from(usects.last()?.rsz);
        let reloc = if rsz > grown && has_magic(&buf, 0) {
            Some(0)
        } else if rsz > grown + skew && has_magic(&buf, skew) {
            Some(skew)
        } else {
            None
        };
        if let Some(reloc) = reloc {
            let at = ddst - grown + 0x0f - reloc;
            if in_buf(size, at - 8, 8) {
                let test1 = rd(&buf, at - 8)? ^ 0x9d66_61aa;
                let test2 = rd(&buf, at - 4)? ^ 0xe908_c483;
                if test1 == test2 && in_buf(size, at, 0x1c0 - 0x0f + 4) {
                    irva = rd(&buf, ddst - grown + 0x121 - reloc)?;
                    enc_ep = rd(&buf, at)? ^ test1;
                    mangled = rd(&buf, ddst - grown + 0x1c0 - reloc)? != 0x9090_9090;
                }
                let l = usects.last_mut()?;
                l.rsz = l.rsz.wrapping_sub((grown + reloc) as u32);
            }
        }
        check4resources += 1;
    }
    // Done: order the sections by address and guess their virtual sizes.
    if usects.is_empty() {
        return None;
    }
    let mut sorted = false;
    while !sorted {
        sorted = true;
        for t in 0..usects.len() - 1 {
            if usects[t].rva > usects[t + 1].rva {
                let (a, b) = (usects[t], usects[t + 1]);
                (usects[t].rva, usects[t].rsz, usects[t].vsz) = (b.rva, b.rsz, b.vsz);
                (usects[t + 1].rva, usects[t + 1].rsz, usects[t + 1].vsz) = (a.rva, a.rsz, a.vsz);
                sorted = false;
            }
        }
    }
    for t in 0..usects.len() - 1 {
        usects[t].vsz = usects[t + 1].rva.wrapping_sub(usects[t].rva);
    }
    if enc_ep != 0 {
        enc_ep = decrypt_ep(
            &buf, version, enc_ep, irva, mangled, pep, base, last, min, &usects,
        );
    }
    // Compact the sections' data to the start of the buffer.
    for t in 0..usects.len() {
        usects[t].raw = if t > 0 {
            usects[t - 1].raw.wrapping_add(usects[t - 1].rsz)
        } else {
            0
        };
        let s = usects[t];
        if s.rsz != 0 {
            if in_buf(size, i64::from(s.raw), i64::from(s.rsz)) {
                let from = pos(s.rva);
                if !in_buf(size, from, i64::from(s.rsz)) {
                    return None;
                }
                buf.copy_within(
                    from as usize..from as usize + s.rsz as usize,
                    s.raw as usize,
                );
            } else {
                usects[t].raw = if t > 0 { usects[t - 1].raw } else { 0 };
                usects[t].rsz = 0;
            }
        }
    }
    rebuild(&buf, &usects, base, enc_ep, info.resource_dir, 0, max)
}

/// The original entry point, from the encrypted one and the import table
/// Petite mangled (2.2 only; else as it is).
#[allow(clippy::too_many_arguments)]
fn decrypt_ep(
    buf: &[u8],
    version: u32,
    mut enc_ep: u32,
    irva: u32,
    mangled: bool,
    pep: u32,
    base: u32,
    last: Section,
    min: u32,
    usects: &[Section],
) -> u32 {
    let size = buf.len() as u32;
    let pos = |rva: u32| i64::from(rva) - i64::from(min);
    let rd = |at: i64| in_buf(size, at, 4).then(|| le32(buf, at as usize));
    let mut workdone = false;
    if version == 2 {
        let mut virtaddr = pep.wrapping_add(5).wrapping_add(base);
        let mut rndm: i32 = 0;
        let mut dummy = true;
        let mut thunk = pos(irva);
        while dummy && let Some(t) = rd(thunk) {
            if t == 0 {
                workdone = true;
                break;
            }
            let mut imports = pos(t);
            thunk += 4;
            dummy = false;
            while let Some(mut api) = rd(imports) {
                dummy = false;
                imports += 4;
                if api == 0 {
                    dummy = true;
                    break;
                }
                if api & 0x8000_0000 == 0 && mangled && {
                    rndm -= 1;
                    rndm < 0
                } {
                    api = virtaddr;
                    virtaddr = virtaddr.wrapping_add(5);
                    rndm = (virtaddr & 7) as i32;
                } else {
                    api = 0xbff0_1337;
                }
                if last.rva.wrapping_add(base) < api {
                    enc_ep = enc_ep.wrapping_sub(1);
                }
                if api < virtaddr {
                    enc_ep = enc_ep.wrapping_sub(1);
                }
                enc_ep = enc_ep.rotate_right(3);
            }
        }
    } else {
        workdone = true;
    }
    let ep = pep.wrapping_add(5).wrapping_add(enc_ep);
    if workdone { ep } else { usects[0].rva }
}

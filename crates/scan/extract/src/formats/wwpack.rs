//! WWPack32-packed executables, unpacked as ClamAV unpacks them
//! (`libclamav/wwunpack.c` and the WWPack part of `cli_scanpe`): the
//! sections are laid out at their addresses, each compressed run the
//! packer's section lists is decoded in place (a bit-oriented LZ77), and
//! the program's own headers, which WWPack keeps, get their section table
//! and entry point back. Every read and copy is checked; data that does not
//! decode leaves the file scanned as it is.

use moat_exe::ExeInfo;

const EP_START: &[u8] = b"\x53\x55\x8b\xe8\x33\xdb\xeb";
const EP_AT_68: &[u8] =
    b"\xe8\x00\x00\x00\x00\x58\x2d\x6d\x00\x00\x00\x50\x60\x33\xc9\x50\x58\x50\x50";

/// Whether the entry point is WWPack's stub.
pub(crate) fn recognised(info: &ExeInfo, epbuff: &[u8]) -> bool {
    let n = info.sections.len();
    n > 1
        && info.vep == info.sections[n - 1].rva
        && epbuff.starts_with(EP_START)
        && epbuff.get(0x68..0x68 + EP_AT_68.len()) == Some(EP_AT_68)
}

/// The image `cli_scanpe` lays out: (its size, how many header bytes
/// come first), `None` when it gives up.
pub(crate) fn layout(info: &ExeInfo) -> Option<(u32, u32)> {
    let s = &info.sections;
    let head = s.iter().map(|s| s.raw).min()?;
    let size = s[..s.len() - 1]
        .iter()
        .map(|s| s.rva.wrapping_add(s.vsz))
        .max()
        .unwrap_or(0);
    (head != 0 && size != 0 && head <= size).then_some((size, head))
}

/// WWPack's bit reader: 32-bit little-endian words, most significant bit
/// first, literal bytes in between.
struct Bits<'a> {
    data: &'a [u8],
    cur: usize,
    bt: u32,
    bc: u32,
}

impl Bits<'_> {
    fn word(&mut self) -> Option<u32> {
        let w = moat_exe::le32(self.data.get(self.cur..self.cur + 4)?, 0);
        self.cur += 4;
        Some(w)
    }

    fn reseed(&mut self) -> Option<()> {
        self.bt = self.word()?;
        self.bc = 32;
        Some(())
    }

    fn bit(&mut self) -> Option<u32> {
        let b = self.bt >> 31;
        self.bt <<= 1;
        self.bc -= 1;
        if self.bc == 0 {
            self.reseed()?;
        }
        Some(b)
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = self.bt >> (32 - n);
        if self.bc >= n {
            self.bc -= n;
            self.bt = self.bt.checked_shl(n).unwrap_or(0);
            if self.bc == 0 {
                self.reseed()?;
            }
        } else {
            let w = self.word()?;
            self.bc += 32 - n;
            v |= w >> self.bc;
            self.bt = w << (32 - self.bc);
        }
        Some(v)
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.cur)?;
        self.cur += 1;
        Some(b)
    }
}

/// Copy `n` bytes from `back` bytes before `at`, byte by byte.
fn back_copy(exe: &mut [u8], at: &mut usize, back: u32, n: u32) -> Option<()> {
    let (n, back) = (n as usize, back as usize);
    let from = at.checked_sub(back)?;
    if n == 0 || *at + n > exe.len() || from + n > exe.len() {
        return None;
    }
    for k in 0..n {
        exe[*at + k] = exe[from + k];
    }
    *at += n;
    Some(())
}

/// One compressed run into `exe` from `at`; `None` on any error.
fn decode(exe: &mut [u8], mut at: usize, compd: &[u8]) -> Option<()> {
    let mut b = Bits {
        data: compd,
        cur: 0,
        bt: 0,
        bc: 0,
    };
    b.reseed()?;
    loop {
        if b.bit()? == 0 {
            let byte = b.byte()?;
            *exe.get_mut(at)? = byte;
            at += 1;
            continue;
        }
        let two = b.bits(2)?;
        if two == 3 {
            let sel = b.bits(2)?;
            let (mut shifted, mut subbed) = (sel + 5, 31u32);
            if sel >= 2 {
                shifted += 1;
                subbed += 0x80;
            }
            let base = (1u32 << shifted) - subbed;
            let v = b.bits(shifted)?;
            if v == 0x1ff {
                return Some(());
            }
            back_copy(exe, &mut at, base + v, 2)?;
            continue;
        }
        let saved = two;
        let sel = b.bits(3)?;
        let back = if sel < 6 {
            let width = match sel {
                4 => 5 + b.bit()? + 5,
                3 => 3 + b.bit()? + 5,
                5 => 12,
                _ => sel + 5,
            };
            b.bits(width)?
                .wrapping_add((1u32 << width).wrapping_sub(31))
        } else if sel == 6 {
            b.bits(0x0e)? + 0x1fe1
        } else {
            b.bits(0x0f)? + 0x5fe1
        };
        let size = if saved != 0 {
            saved + 2
        } else if b.bit()? == 0 {
            b.bit()? + 5
        } else {
            let v = b.bits(3)?;
            if v != 0 {
                v + 6
            } else {
                let v = b.bits(4)?;
                if v != 0 {
                    v + 13
                } else {
                    let (mut cnt, mut shifted) = (4u32, 0x0du32);
                    loop {
                        if cnt == 7 {
                            cnt = 0x0e;
                            shifted = 0;
                            break;
                        }
                        shifted = ((shifted + 2) << 1) - 1;
                        cnt += 1;
                        if b.bit()? != 0 {
                            break;
                        }
                    }
                    b.bits(cnt)? + shifted
                }
            }
        };
        back_copy(exe, &mut at, back, size)?;
    }
}

/// `wwunpack`: `exe` is the image (headers, then every section but the
/// packer's at its address), `wwsect` the packer's section, `e_lfanew`
/// where the PE header is. The unpacked program, or `None`.
pub(crate) fn unpack(
    info: &ExeInfo,
    mut exe: Vec<u8>,
    wwsect: &[u8],
    e_lfanew: u32,
) -> Option<Vec<u8>> {
    let scount = info.sections.len() - 1;
    let last = info.sections[scount];
    let rsz = (last.rsz as usize).min(wwsect.len());
    let wwsect = &wwsect[..rsz];
    let mut structs = 0x2a1usize;
    let rd = moat_exe::le32;
    loop {
        if structs + 17 > wwsect.len() {
            tracing::debug!("wwpack: array of structs out of section");
            break;
        }
        let src = last.rva.wrapping_sub(rd(wwsect, structs));
        let szd = rd(wwsect, structs + 8).wrapping_mul(4);
        let srcend = rd(wwsect, structs + 12);
        structs += 16;
        // Pointer arithmetic in ClamAV: no 32-bit wrap-around.
        let unpd = i64::from(src) + i64::from(srcend) + 4 - i64::from(szd);
        let szd = szd as usize;
        let unpd = usize::try_from(unpd).unwrap_or(usize::MAX);
        if szd == 0 || unpd.checked_add(szd).is_none_or(|e| e > exe.len()) {
            tracing::debug!("wwpack: compressed data out of file");
            break;
        }
        let compd = exe[unpd..unpd + szd].to_vec();
        exe[unpd..unpd + szd].fill(0xff);
        decode(&mut exe, unpd, &compd)?;
        let more = wwsect[structs];
        structs += 1;
        if more == 0 {
            break;
        }
    }
    let pe = e_lfanew as usize;
    if pe.checked_add(0x54).is_none_or(|e| e > exe.len()) || wwsect.len() < 0x299 {
        return None;
    }
    exe[pe + 6..pe + 8].copy_from_slice(&(scount as u16).to_le_bytes());
    let ep = rd(wwsect, 0x295).wrapping_add(last.rva).wrapping_add(0x299);
    exe[pe + 0x28..pe + 0x2c].copy_from_slice(&ep.to_le_bytes());
    let image_size = rd(&exe, pe + 0x50).wrapping_sub(last.vsz);
    exe[pe + 0x50..pe + 0x54].copy_from_slice(&image_size.to_le_bytes());
    let mut table = (0xffff & rd(&exe, pe + 0x14)) as usize + pe + 0x18;
    for s in &info.sections[..scount] {
        let entry = exe.get_mut(table..table + 0x28)?;
        for (off, v) in [(8, s.vsz), (12, s.rva), (16, s.vsz), (20, s.rva)] {
            entry[off..off + 4].copy_from_slice(&v.to_le_bytes());
        }
        table += 0x28;
    }
    exe.get_mut(table..table + 0x28)?.fill(0);
    Some(exe)
}

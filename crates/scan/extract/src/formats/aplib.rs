//! The aPLib-style decompressor FSG and PESpin use, as ClamAV implements
//! it (`cli_unfsg` in `libclamav/packlibs.c`), and the byte-wise bit
//! reader it shares with Petite (`doubledl`).

/// `doubledl`: the next bit of a stream read a byte at a time, most
/// significant bit first, with a sentinel bit in `dl`; `src` is the
/// position of the next byte in `buf`. `None` past the end (ClamAV never
/// reads the buffer's last byte here).
pub(crate) fn doubledl(buf: &[u8], src: &mut i64, dl: &mut u8) -> Option<u32> {
    let old = *dl;
    let mut new = old.wrapping_mul(2);
    let mut bit_from = old;
    if old & 0x7f == 0 {
        if *src < 0 || *src >= buf.len() as i64 - 1 {
            return None;
        }
        bit_from = buf[*src as usize];
        new = bit_from.wrapping_mul(2).wrapping_add(1);
        *src += 1;
    }
    *dl = new;
    Some(u32::from(bit_from >> 7))
}

/// The length of a match `back` bytes back whose gamma code said `size`:
/// longer for far matches and for the nearest (aPLib's rule, which FSG's
/// and MEW's decoders share).
pub(crate) fn longer(back: u32, size: u32) -> u32 {
    let mut size = size;
    if back >= 0x7d00 {
        size = size.wrapping_add(1);
    }
    if back >= 0x500 {
        size = size.wrapping_add(1);
    }
    if back <= 0x7f {
        size = size.wrapping_add(2);
    }
    size
}

/// `cli_unfsg`: decompress `src` into `dst` (which it need not fill);
/// `None` on data that does not decode. On success, where the source and
/// the output ended (`cli_unfsg`'s `endsrc` and `enddst`: the source just
/// past the end marker's byte), from which FSG 1.33 starts its next block.
pub(crate) fn unfsg(src: &[u8], dst: &mut [u8]) -> Option<(usize, usize)> {
    if src.is_empty() || dst.is_empty() {
        return None;
    }
    let mut dl: u8 = 0x80;
    let mut oldback: u32 = 0;
    let mut lostbit: u32 = 1;
    dst[0] = src[0];
    let (mut s, mut d) = (1i64, 1usize);
    let mut bit = |s: &mut i64, dl: &mut u8| doubledl(src, s, dl);
    // `v = 1; do { v = 2v + bit } while (bit)`: the gamma code.
    fn gamma(
        bit: &mut dyn FnMut(&mut i64, &mut u8) -> Option<u32>,
        s: &mut i64,
        dl: &mut u8,
    ) -> Option<u32> {
        let mut v: u32 = 1;
        loop {
            v = v.wrapping_mul(2).wrapping_add(bit(s, dl)?);
            if bit(s, dl)? == 0 {
                return Some(v);
            }
        }
    }
    let byte = |s: &mut i64| -> Option<u32> {
        let b = *src.get(usize::try_from(*s).ok()?)?;
        *s += 1;
        Some(u32::from(b))
    };
    loop {
        if bit(&mut s, &mut dl)? == 0 {
            *dst.get_mut(d)? = *src.get(usize::try_from(s).ok()?)?;
            d += 1;
            s += 1;
            lostbit = 1;
            continue;
        }
        let (backbytes, backsize);
        if bit(&mut s, &mut dl)? == 1 {
            if bit(&mut s, &mut dl)? == 1 {
                lostbit = 1;
                let mut b: u32 = 0x10;
                while b < 0x100 {
                    b = b * 2 + bit(&mut s, &mut dl)?;
                }
                b &= 0xff;
                if b == 0 {
                    *dst.get_mut(d)? = 0;
                    d += 1;
                    continue;
                }
                (backbytes, backsize) = (b, 1);
            } else {
                let b = byte(&mut s)?;
                let size = b & 1;
                let b = b >> 1;
                if b == 0 {
                    return Some((usize::try_from(s).ok()?, d));
                }
                oldback = b;
                lostbit = 0;
                (backbytes, backsize) = (b, size + 2);
            }
        } else {
            let v = gamma(&mut bit, &mut s, &mut dl)?
                .wrapping_sub(1)
                .wrapping_sub(lostbit);
            if v == 0 {
                backsize = gamma(&mut bit, &mut s, &mut dl)?;
                backbytes = oldback;
            } else {
                let b = byte(&mut s)?.wrapping_add(v.wrapping_sub(1) << 8);
                let size = longer(b, gamma(&mut bit, &mut s, &mut dl)?);
                oldback = b;
                (backbytes, backsize) = (b, size);
            }
            lostbit = 0;
        }
        let (n, back) = (backsize as usize, backbytes as usize);
        let from = d.checked_sub(back)?;
        if n == 0 || d + n > dst.len() || from + n > dst.len() {
            return None;
        }
        for k in 0..n {
            dst[d + k] = dst[from + k];
        }
        d += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_then_the_end_marker() {
        // First byte as is; then bit 0 + byte, twice; then 1,1,0 and a
        // byte whose upper seven bits are zero: the end.
        // Bits after the first byte: 0 0 1 1 0 → 0b0011_0xxx with sentinel.
        let src = [b'A', 0b0011_0000, b'B', b'C', 0x00, 0x00];
        let mut dst = [0u8; 8];
        // Ends after the end marker's byte (the last zero is never read).
        assert_eq!(unfsg(&src, &mut dst), Some((5, 3)));
        assert_eq!(&dst[..3], b"ABC");
    }

    #[test]
    fn noise_never_panics() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for n in 1..400usize {
            let src: Vec<u8> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let mut dst = vec![0u8; 2 * n];
            let _ = unfsg(&src, &mut dst);
        }
    }
}

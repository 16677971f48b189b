//! LZX frames through the `lzxd` crate, for cabinets and CHM files: one
//! place that picks the window and keeps a decoder panic from taking the
//! worker with it.

use std::io;

/// The decoder for a window of 2^`bits` bytes (15 to 21, what cabinets
/// and CHM files use).
pub(crate) fn decoder(bits: u32) -> Option<Box<lzxd::Lzxd>> {
    use lzxd::WindowSize as W;
    let window = match bits {
        15 => W::KB32,
        16 => W::KB64,
        17 => W::KB128,
        18 => W::KB256,
        19 => W::KB512,
        20 => W::MB1,
        21 => W::MB2,
        _ => return None,
    };
    Some(Box::new(lzxd::Lzxd::new(window)))
}

/// One frame of `size` (at most 32 KiB) output bytes from `data` into `out`.
pub(crate) fn frame(
    lzx: &mut lzxd::Lzxd,
    data: &[u8],
    size: usize,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    out.clear();
    if size == 0 {
        return Ok(());
    }
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    // A panic in the decoder is this file's corruption, not a lost worker.
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        lzx.decompress_next(data, size)
            .map(|frame| out.extend_from_slice(frame))
    }));
    match got {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(bad(format!("lzx: {e}"))),
        Err(_) => Err(bad("lzx decoder failed".into())),
    }
}

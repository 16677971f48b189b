//! One module per container format. Each walks its members through
//! [`Walker::member`](crate::walk::Walker::member).

pub(crate) mod binhex;
pub(crate) mod cab;
pub(crate) mod cpio;
pub(crate) mod mail;
pub(crate) mod ole1;
pub(crate) mod ole2;
pub(crate) mod pdf;
pub(crate) mod pdfcrypt;
pub(crate) mod rtf;
pub(crate) mod sevenz;
pub(crate) mod stream;
pub(crate) mod szdd;
pub(crate) mod tar;
pub(crate) mod tnef;
pub(crate) mod zip;

use std::io::{self, Read};

/// Read-ahead buffer in front of a blob, so decoders don't issue tiny reads.
pub(crate) const INPUT_BUFFER: usize = 64 * 1024;

/// Reads until `buf` is full or the input ends; how many bytes came.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// One byte, or `None` at the end of the input (put a `BufReader` in
/// front of anything slower than memory).
pub(crate) fn read_byte(r: &mut impl Read) -> io::Result<Option<u8>> {
    let mut b = [0u8; 1];
    Ok((read_full(r, &mut b)? == 1).then_some(b[0]))
}

/// Copies what `buf` can take of `out` from `*pos` on, for decoders that
/// hand out a buffer of decoded bytes; how many were copied.
pub(crate) fn drain(out: &[u8], pos: &mut usize, buf: &mut [u8]) -> usize {
    let n = buf.len().min(out.len() - *pos);
    buf[..n].copy_from_slice(&out[*pos..*pos + n]);
    *pos += n;
    n
}

//! Copying a response body by its framing (length, chunked followed byte
//! by byte, or until close) without holding it.

use super::*;

/// Copy the response body after its head (`head`, already rewritten) to
/// the client. `Ok(Some(socket))` when the body ended exactly where the
/// framing says, so the upstream socket may serve another request.
pub(super) async fn copy_body(
    client: &mut TcpStream,
    mut up: TcpStream,
    rbuf: &mut BytesMut,
    head: &mut Vec<u8>,
    framing: Framing,
    read_timeout: Duration,
) -> Result<Option<TcpStream>, String> {
    let mut end = End::new(framing);
    // The body bytes that came with the head go out in the same write.
    let (n, done) = end.feed(rbuf)?;
    head.extend_from_slice(&rbuf[..n]);
    let mut exact = n == rbuf.len();
    rbuf.advance(n);
    client
        .write_all(head)
        .await
        .map_err(|e| format!("writing to the client: {e}"))?;
    let mut done = done;
    while !done {
        rbuf.clear();
        rbuf.reserve(READ_CHUNK);
        let got = tokio::time::timeout(read_timeout, up.read_buf(rbuf))
            .await
            .map_err(|_| "the upstream body stalled".to_string())?
            .map_err(|e| format!("reading the upstream body: {e}"))?;
        if got == 0 {
            if framing == Framing::Close {
                return Ok(None);
            }
            return Err("the upstream closed before the body ended".into());
        }
        let (n, d) = end.feed(rbuf)?;
        exact = n == rbuf.len();
        done = d;
        client
            .write_all(&rbuf[..n])
            .await
            .map_err(|e| format!("writing to the client: {e}"))?;
    }
    Ok(exact.then_some(up))
}

/// Where a body ends, fed as it arrives.
pub(super) enum End {
    Empty,
    Length(u64),
    Chunked(Chunked),
    Close,
}

impl End {
    fn new(f: Framing) -> End {
        match f {
            Framing::Empty => End::Empty,
            Framing::Length(n) => End::Length(n),
            Framing::Chunked => End::Chunked(Chunked::default()),
            Framing::Close => End::Close,
        }
    }

    /// How many bytes of `b` belong to the body, and whether it ended.
    fn feed(&mut self, b: &[u8]) -> Result<(usize, bool), String> {
        match self {
            End::Empty => Ok((0, true)),
            End::Length(left) => {
                let n = (*left).min(b.len() as u64);
                *left -= n;
                // n <= b.len(), so it fits in usize.
                Ok((usize::try_from(n).unwrap_or(b.len()), *left == 0))
            }
            End::Chunked(c) => c.feed(b),
            End::Close => Ok((b.len(), false)),
        }
    }
}

/// A chunked body's framing (RFC 9112 7.1), tracked byte by byte except
/// for chunk data, which is skipped in bulk. Forwarded unchanged.
#[derive(Debug, Default)]
pub(super) struct Chunked {
    state: CState,
    size: u64,
    digits: u32,
    /// Bytes in the current size line or trailer section.
    line: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum CState {
    #[default]
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    EndLf,
    Done,
}

/// Longest chunk-size line (with extensions) and trailer section.
pub(super) const MAX_CHUNK_LINE: usize = 4096;

pub(super) const MAX_TRAILERS: usize = 64 << 10;

impl Chunked {
    fn feed(&mut self, b: &[u8]) -> Result<(usize, bool), String> {
        let mut i = 0;
        while i < b.len() && self.state != CState::Done {
            if self.state == CState::Data {
                let n = self.size.min((b.len() - i) as u64);
                self.size -= n;
                i += usize::try_from(n).unwrap_or(b.len() - i);
                if self.size == 0 {
                    self.state = CState::DataCr;
                }
                continue;
            }
            let c = b[i];
            i += 1;
            self.line += 1;
            let bad = |what: &str| Err(format!("malformed chunked body: {what}"));
            self.state = match self.state {
                CState::Size => match c {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        self.digits += 1;
                        if self.digits > 15 {
                            return bad("chunk size too large");
                        }
                        // A hex digit: to_digit cannot fail here.
                        self.size =
                            self.size * 16 + u64::from((c as char).to_digit(16).unwrap_or(0));
                        CState::Size
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => CState::Ext,
                    b'\r' if self.digits > 0 => CState::SizeLf,
                    b'\n' if self.digits > 0 => self.size_line_end(),
                    _ => return bad("chunk size"),
                },
                CState::Ext => match c {
                    b'\r' => CState::SizeLf,
                    b'\n' => self.size_line_end(),
                    _ if self.line > MAX_CHUNK_LINE => return bad("chunk extension too long"),
                    _ => CState::Ext,
                },
                CState::SizeLf => match c {
                    b'\n' => self.size_line_end(),
                    _ => return bad("chunk size line"),
                },
                CState::DataCr => match c {
                    b'\r' => CState::DataLf,
                    b'\n' => self.next_chunk(),
                    _ => return bad("chunk data longer than its size"),
                },
                CState::DataLf => match c {
                    b'\n' => self.next_chunk(),
                    _ => return bad("chunk end"),
                },
                CState::TrailerStart => match c {
                    b'\r' => CState::EndLf,
                    b'\n' => CState::Done,
                    _ => CState::TrailerLine,
                },
                CState::TrailerLine => match c {
                    b'\n' => CState::TrailerStart,
                    _ if self.line > MAX_TRAILERS => return bad("trailers too large"),
                    _ => CState::TrailerLine,
                },
                CState::EndLf => match c {
                    b'\n' => CState::Done,
                    _ => return bad("trailer section end"),
                },
                CState::Data | CState::Done => self.state,
            };
        }
        Ok((i, self.state == CState::Done))
    }

    fn size_line_end(&mut self) -> CState {
        self.line = 0;
        if self.size == 0 {
            CState::TrailerStart
        } else {
            CState::Data
        }
    }

    fn next_chunk(&mut self) -> CState {
        self.size = 0;
        self.digits = 0;
        self.line = 0;
        CState::Size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNKED: &[u8] =
        b"4\r\nWiki\r\n5;name=\"v\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n";

    #[test]
    fn chunked_end_is_found_however_the_bytes_are_split() {
        let mut msg = CHUNKED.to_vec();
        msg.extend_from_slice(b"HTTP/1.1 200 OK\r\n"); // what follows the body
        for split in 0..msg.len() {
            let mut c = Chunked::default();
            let (a, done_a) = c.feed(&msg[..split]).unwrap();
            let (n, done) = if done_a {
                (a, true)
            } else {
                let (b, d) = c.feed(&msg[split..]).unwrap();
                (a + b, d)
            };
            assert!(done, "split at {split}");
            assert_eq!(n, CHUNKED.len(), "split at {split}");
        }
        // One byte at a time.
        let mut c = Chunked::default();
        let mut n = 0;
        for b in CHUNKED {
            assert!(!c.feed(&[]).unwrap().1);
            n += c.feed(std::slice::from_ref(b)).unwrap().0;
        }
        assert_eq!((n, c.state), (CHUNKED.len(), CState::Done));
        // Bare LF line ends and no trailers.
        let mut c = Chunked::default();
        assert_eq!(c.feed(b"3\nabc\n0\n\nrest").unwrap(), (9, true));
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b";ext\r\n",
            b"2\r\nabc\r\n",
            b"2\r\nab\rX",
            b"1\rX",
            b"ffffffffffffffff\r\n",
            b"0\r\n\rX",
        ] {
            let r = Chunked::default().feed(bad);
            assert!(r.is_err(), "{:?} -> {r:?}", String::from_utf8_lossy(bad));
        }
        let long = [b"1;".as_slice(), &[b'e'; 5000]].concat();
        assert!(Chunked::default().feed(&long).is_err());
    }
}

//! A blocking connection to clamd over TCP or a Unix socket, with timeouts.

use crate::address::Address;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// One open connection to clamd.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Connects within `timeout` (> 0). TCP tries every resolved address in turn.
    /// A Unix socket connect does not wait for a network, so it is not bounded.
    pub(crate) fn connect(addr: &Address, timeout: Duration) -> io::Result<Stream> {
        match addr {
            Address::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
            Address::Tcp { host, port } => {
                let mut last = None;
                for sa in (host.as_str(), *port).to_socket_addrs()? {
                    match TcpStream::connect_timeout(&sa, timeout) {
                        Ok(s) => {
                            // Chunks are written whole; no need to wait for more data.
                            s.set_nodelay(true)?;
                            return Ok(Stream::Tcp(s));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "host resolved to no address")
                }))
            }
        }
    }

    /// `timeout` must be non-zero (a zero timeout is an error in std).
    pub(crate) fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(Some(timeout)),
            Stream::Unix(s) => s.set_read_timeout(Some(timeout)),
        }
    }

    /// `timeout` must be non-zero.
    pub(crate) fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(Some(timeout)),
            Stream::Unix(s) => s.set_write_timeout(Some(timeout)),
        }
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }

    /// For an idle connection: true when nothing is pending and the peer has not
    /// closed it. clamd never sends unsolicited data, so any byte (or EOF, or an
    /// error) means the connection must not be reused.
    pub(crate) fn looks_alive(&mut self) -> bool {
        if self.set_nonblocking(true).is_err() {
            return false;
        }
        let mut b = [0u8; 1];
        let alive = matches!(self.read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        alive && self.set_nonblocking(false).is_ok()
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_core::pool::is_timeout;

    #[test]
    fn idle_check_sees_close_and_stray_bytes() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut a = Stream::Unix(a);
        assert!(a.looks_alive());
        // Still blocking afterwards: a read with a timeout times out.
        a.set_read_timeout(Duration::from_millis(10)).unwrap();
        let err = a.read(&mut [0u8; 1]).unwrap_err();
        assert!(is_timeout(&err), "{err:?}");
        b.write_all(b"x").unwrap();
        assert!(!a.looks_alive());
        drop(b);
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        assert!(!Stream::Unix(a).looks_alive());
    }
}

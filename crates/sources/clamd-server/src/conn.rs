//! One client connection: TCP or Unix, a bounded read buffer, and on a Unix
//! socket the file descriptors that arrive with the bytes (SCM_RIGHTS,
//! received with `rustix::net::recvmsg`: clamd reads every message that way,
//! so a client may send the descriptor with the command or after it).

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// Bytes read per system call.
const READ_CHUNK: usize = 64 << 10;
/// Descriptors kept waiting for a FILDES; more are closed.
const MAX_PENDING_FDS: usize = 4;

pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

pub(crate) struct Conn {
    stream: Stream,
    /// Bytes read and not yet used start at `pos`.
    buf: Vec<u8>,
    pos: usize,
    pub(crate) eof: bool,
    fds: VecDeque<OwnedFd>,
}

impl Conn {
    pub(crate) fn new(stream: Stream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
            pos: 0,
            eof: false,
            fds: VecDeque::new(),
        }
    }

    pub(crate) fn is_unix(&self) -> bool {
        matches!(self.stream, Stream::Unix(_))
    }

    /// The unread bytes.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Mark `n` unread bytes as used.
    pub(crate) fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Take the oldest descriptor received and not yet used.
    pub(crate) fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fds.pop_front()
    }

    /// Read more (up to [`READ_CHUNK`]); `Ok(0)` at end of stream. The
    /// buffer never holds more than `max_pending` unread bytes: past that the
    /// caller has a protocol error to answer, not more data to read.
    pub(crate) async fn fill(&mut self, max_pending: usize) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let room = max_pending
            .saturating_sub(self.buf.len())
            .clamp(1, READ_CHUNK);
        let old = self.buf.len();
        self.buf.resize(old + room, 0);
        let r = match &mut self.stream {
            Stream::Tcp(s) => s.read(&mut self.buf[old..]).await,
            Stream::Unix(s) => {
                let s: &UnixStream = s;
                let dst = &mut self.buf[old..];
                let fds = &mut self.fds;
                s.async_io(tokio::io::Interest::READABLE, || recv_with_fds(s, dst, fds))
                    .await
            }
        };
        let n = *r.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        if matches!(r, Ok(0)) {
            self.eof = true;
        }
        r
    }

    pub(crate) async fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match &mut self.stream {
            Stream::Tcp(s) => s.write_all(b).await,
            Stream::Unix(s) => s.write_all(b).await,
        }
    }

    pub(crate) async fn shutdown(&mut self) {
        let _ = match &mut self.stream {
            Stream::Tcp(s) => s.shutdown().await,
            Stream::Unix(s) => s.shutdown().await,
        };
    }
}

/// One `recvmsg`: data into `dst`, descriptors (close-on-exec) into `fds`.
fn recv_with_fds(s: &UnixStream, dst: &mut [u8], fds: &mut VecDeque<OwnedFd>) -> io::Result<usize> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    use std::mem::MaybeUninit;
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_PENDING_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [io::IoSliceMut::new(dst)];
    let r = recvmsg(s, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC).map_err(io::Error::from)?;
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = m {
            for fd in received {
                if fds.len() < MAX_PENDING_FDS {
                    fds.push_back(fd);
                }
                // else: dropped here, which closes it.
            }
        }
    }
    Ok(r.bytes)
}

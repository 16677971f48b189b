//! Lingering close for client connections.
//!
//! When the proxy answers before it has read the whole request body (a
//! declared length over the limit, a body that failed to spool) and then
//! closes, the kernel resets a socket closed with unread bytes in its
//! receive buffer. The reset can reach the client before it reads the
//! answer, so it sees "connection reset" instead of `413`. Web servers
//! avoid that with a lingering close (nginx `lingering_close`, Apache
//! `lingering_close`): shut down the sending side, then read and discard
//! what the client still sends until it closes, for a bounded time and a
//! bounded number of bytes. [`Linger`] does that in `poll_shutdown`, which
//! hyper calls when it ends a connection. Connections that were upgraded
//! (WebSocket) are tunnelled byte for byte and must not lose what the client
//! sends after a half-close, so the upgrade flag turns lingering off.

use bytes::{Buf, Bytes};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest time spent discarding after the answer was sent.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(5);
/// Most bytes discarded after the answer was sent.
pub(crate) const LINGER_BYTES: u64 = 16 << 20;

enum State {
    Open,
    Draining {
        deadline: Pin<Box<tokio::time::Sleep>>,
        discarded: u64,
    },
    Done,
}

/// A client connection that lingers on close (see the module docs), and
/// first replays the bytes already read from it (`pre`: what the
/// pass-through path read before handing the connection to hyper).
pub(crate) struct Linger<T> {
    pre: Bytes,
    io: T,
    state: State,
    upgraded: Arc<AtomicBool>,
    max_bytes: u64,
}

impl<T> Linger<T> {
    /// Wrap `io`, to be read after `pre`; setting `upgraded` turns the
    /// lingering off.
    pub(crate) fn new(pre: Bytes, io: T, upgraded: Arc<AtomicBool>) -> Self {
        Self {
            pre,
            io,
            state: State::Open,
            upgraded,
            max_bytes: LINGER_BYTES,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Linger<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Linger<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Open => {
                    std::task::ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
                    if this.upgraded.load(Ordering::Relaxed) {
                        this.state = State::Done;
                    } else {
                        this.state = State::Draining {
                            deadline: Box::pin(tokio::time::sleep(LINGER_TIME)),
                            discarded: 0,
                        };
                    }
                }
                State::Draining {
                    deadline,
                    discarded,
                } => {
                    let mut scratch = [0u8; 8192];
                    let mut rb = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut this.io).poll_read(cx, &mut rb) {
                        Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                            *discarded += rb.filled().len() as u64;
                            if *discarded > this.max_bytes {
                                this.state = State::Done;
                            }
                        }
                        // End of stream or an error: the client is gone.
                        Poll::Ready(_) => this.state = State::Done,
                        Poll::Pending => {
                            std::task::ready!(deadline.as_mut().poll(cx));
                            this.state = State::Done;
                        }
                    }
                }
                State::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The regression behind this module: an answer written before the
    /// request body was read must reach the client, not a reset.
    #[tokio::test]
    async fn an_early_answer_reaches_a_client_still_sending_its_body() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut s = Linger::new(Bytes::new(), s, Arc::new(AtomicBool::new(false)));
            s.max_bytes = 1 << 30;
            let mut head = [0u8; 16];
            s.read_exact(&mut head).await.unwrap();
            s.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            s.shutdown().await.unwrap();
        });
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        // As curl does: send the whole body (far more than the server reads,
        // and more than the socket buffers hold), then read the answer. A
        // server that closes without lingering resets the connection and the
        // send fails.
        let body = vec![b'a'; 64 << 20];
        c.write_all(&body)
            .await
            .expect("the body is accepted (discarded) after the answer");
        c.shutdown().await.unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert!(got.starts_with(b"HTTP/1.1 413"), "{got:?}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn an_upgraded_connection_does_not_swallow_what_follows_a_half_close() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut s = Linger::new(
            Bytes::from_static(b"pre:"),
            a,
            Arc::new(AtomicBool::new(true)),
        );
        s.shutdown().await.unwrap();
        b.write_all(b"after").await.unwrap();
        let mut got = [0u8; 9];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pre:after");
    }
}

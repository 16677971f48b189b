//! Upstream HTTP/1.1 connections, straight on hyper's connection API: a
//! pool of idle keep-alive connections per server, one pool per runtime
//! (each proxy worker has its own, so a connection is only ever used by the
//! thread that drives it).
//!
//! A request takes the most recently used idle connection to its server,
//! or opens one (TCP with a connect timeout, Nagle off). The connection goes
//! back to the pool when the response body is dropped; one that the server
//! closed, or that closed because the body was abandoned, is skipped at the
//! next checkout. A request that a reused connection could not even send
//! (the server closed it while idle) is sent again on a new connection.

use crate::body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Idle connections kept per server; more are closed when they come back.
const MAX_IDLE_PER_SERVER: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("connecting to {0}: no answer within {1:?}")]
    ConnectTimeout(String, Duration),
    #[error("HTTP/1.1 handshake with {0}: {1}")]
    Handshake(String, hyper::Error),
    #[error("{0}")]
    Request(#[source] hyper::Error),
}

impl UpstreamError {
    /// The request never reached the server (safe to send elsewhere).
    pub fn is_connect(&self) -> bool {
        !matches!(self, UpstreamError::Request(_))
    }
}

/// Whether an idle connection is still usable: nothing to read on it. No
/// system call unless the runtime has seen it become readable (the server
/// closed it, or sent something unasked).
fn still_open(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

struct Idle {
    send: SendRequest<Body>,
    since: Instant,
}

/// The connection pool of one runtime. Cheap to clone.
#[derive(Clone)]
pub struct Upstream(Arc<Shared>);

struct Shared {
    connect_timeout: Duration,
    idle_timeout: Duration,
    idle: Mutex<HashMap<Arc<str>, Vec<Idle>>>,
    /// Plain sockets of the pass-through path (`crate::fast`), which speaks
    /// HTTP/1.1 on them itself.
    raw: Mutex<HashMap<Arc<str>, Vec<IdleSocket>>>,
}

/// A plain socket and since when it has been idle.
type IdleSocket = (TcpStream, Instant);

/// A connection lent to one exchange; it returns to the pool when dropped
/// (keep it alive as long as the response body).
pub struct Lease {
    pool: Upstream,
    authority: Arc<str>,
    send: Option<SendRequest<Body>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(send) = self.send.take()
            && !send.is_closed()
        {
            self.pool.put_back(&self.authority, send);
        }
    }
}

impl Upstream {
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Upstream {
        Upstream(Arc::new(Shared {
            connect_timeout,
            idle_timeout,
            idle: Mutex::new(HashMap::new()),
            raw: Mutex::new(HashMap::new()),
        }))
    }

    /// The most recently used idle plain socket to `authority` that is
    /// still open and within the idle timeout.
    pub fn checkout_raw(&self, authority: &str) -> Option<TcpStream> {
        let mut raw = self.0.raw.lock().unwrap_or_else(|p| p.into_inner());
        let list = raw.get_mut(authority)?;
        if let Some(limit) = Instant::now().checked_sub(self.0.idle_timeout) {
            let keep = list.partition_point(|(_, since)| *since <= limit);
            list.drain(..keep);
        }
        while let Some((s, _)) = list.pop() {
            if still_open(&s) {
                return Some(s);
            }
        }
        None
    }

    /// Give a plain socket whose last exchange ended cleanly back to the pool.
    pub fn put_back_raw(&self, authority: &Arc<str>, s: TcpStream) {
        let mut raw = self.0.raw.lock().unwrap_or_else(|p| p.into_inner());
        let list = raw.entry(authority.clone()).or_default();
        if list.len() < MAX_IDLE_PER_SERVER {
            list.push((s, Instant::now()));
        }
    }

    /// A new plain socket to `authority` (connect timeout, Nagle off).
    pub async fn connect_raw(&self, authority: &str) -> Result<TcpStream, UpstreamError> {
        let t = self.0.connect_timeout;
        let tcp = match tokio::time::timeout(t, TcpStream::connect(authority)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(UpstreamError::Connect(authority.into(), e)),
            Err(_) => return Err(UpstreamError::ConnectTimeout(authority.into(), t)),
        };
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Vec<Idle>>> {
        // Nothing can be left half-updated by a panic in these short
        // sections, so a poisoned lock is still usable.
        self.0.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put_back(&self, authority: &Arc<str>, send: SendRequest<Body>) {
        let mut idle = self.idle();
        let list = idle.entry(authority.clone()).or_default();
        if list.len() < MAX_IDLE_PER_SERVER {
            list.push(Idle {
                send,
                since: Instant::now(),
            });
        }
    }

    /// The most recently used idle connection to `authority` that is still
    /// open and within the idle timeout; older ones are closed on the way.
    fn checkout(&self, authority: &str) -> Option<SendRequest<Body>> {
        let mut idle = self.idle();
        let list = idle.get_mut(authority)?;
        let expired = Instant::now().checked_sub(self.0.idle_timeout);
        // Oldest first: drop what has been idle too long.
        if let Some(limit) = expired {
            let keep = list.partition_point(|i| i.since <= limit);
            list.drain(..keep);
        }
        while let Some(i) = list.pop() {
            if !i.send.is_closed() {
                return Some(i.send);
            }
        }
        None
    }

    async fn connect(&self, authority: &str) -> Result<SendRequest<Body>, UpstreamError> {
        let tcp = self.connect_raw(authority).await?;
        let (send, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| UpstreamError::Handshake(authority.into(), e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(send)
    }

    /// Send `req` (origin-form URI, Host set) to `authority` ("host:port").
    pub async fn send(
        &self,
        authority: &Arc<str>,
        mut req: Request<Body>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        loop {
            let (mut send, reused) = match self.checkout(authority) {
                Some(s) => (s, true),
                // Boxed: the connect future is large and rarely needed, and
                // this future is moved with every request.
                None => (Box::pin(self.connect(authority)).await?, false),
            };
            if let Err(e) = send.ready().await {
                // A pooled one closed while we looked (or its last body was
                // abandoned): try the next.
                if reused {
                    continue;
                }
                return Err(UpstreamError::Request(e));
            }
            match send.try_send_request(req).await {
                Ok(resp) => {
                    let lease = Lease {
                        pool: self.clone(),
                        authority: authority.clone(),
                        send: Some(send),
                    };
                    return Ok((resp, lease));
                }
                Err(mut e) => match e.take_message() {
                    // Never written: an idle connection the server had
                    // just closed. Send it again on a fresh one.
                    Some(r) if reused => req = r,
                    _ => return Err(UpstreamError::Request(e.into_error())),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A raw HTTP/1.1 server: answers `per_conn` requests on each
    /// connection (keep-alive), then closes it without saying so. Counts
    /// connections.
    async fn server(per_conn: usize) -> (Arc<str>, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: Arc<str> = l.local_addr().unwrap().to_string().into();
        let conns = Arc::new(AtomicUsize::new(0));
        let c = conns.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for _ in 0..per_conn {
                        let mut chunk = [0u8; 1024];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.clear();
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                });
            }
        });
        (addr, conns)
    }

    async fn get(up: &Upstream, addr: &Arc<str>) -> Result<Bytes, UpstreamError> {
        let req = Request::get("/")
            .header("host", "x")
            .body(crate::body::empty())
            .unwrap();
        let (resp, lease) = up.send(addr, req).await?;
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        drop(lease);
        Ok(body)
    }
    use bytes::Bytes;

    #[tokio::test]
    async fn keep_alive_connections_are_reused() {
        let (addr, conns) = server(usize::MAX).await;
        let up = Upstream::new(Duration::from_secs(2), Duration::from_secs(60));
        for _ in 0..5 {
            assert_eq!(get(&up, &addr).await.unwrap(), "ok");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced() {
        // One request per connection, then a silent close: every pooled
        // connection is dead by the time it is used again.
        let (addr, conns) = server(1).await;
        let up = Upstream::new(Duration::from_secs(2), Duration::from_secs(60));
        for _ in 0..4 {
            assert_eq!(get(&up, &addr).await.unwrap(), "ok");
            // Let the close reach the client side.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(conns.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn idle_connections_expire() {
        let (addr, conns) = server(usize::MAX).await;
        let up = Upstream::new(Duration::from_secs(2), Duration::from_millis(50));
        get(&up, &addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        get(&up, &addr).await.unwrap();
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: Arc<str> = l.local_addr().unwrap().to_string().into();
        drop(l);
        let up = Upstream::new(Duration::from_secs(2), Duration::from_secs(60));
        let e = get(&up, &addr).await.unwrap_err();
        assert!(e.is_connect(), "{e}");
        assert!(e.to_string().contains(&*addr), "{e}");
    }
}

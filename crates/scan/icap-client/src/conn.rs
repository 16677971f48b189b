//! One blocking TCP connection to the ICAP server, with a bounded read
//! buffer and every read and write bounded by a deadline; and the pool of
//! idle keep-alive connections.
//!
//! A connection goes back to the pool only after an exchange that ended
//! cleanly (a whole response read, nothing left over, no `Connection:
//! close`). An idle one is reused only while younger than the idle timeout
//! and when a non-blocking read shows no EOF or stray data; one that still
//! turns out dead (the server closed it at that very moment) is retried
//! once by the caller on a fresh connection.

use crate::proto;
use moat_core::EngineError;
use moat_core::pool::{IdlePool, Reusable, is_disconnect, is_timeout};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Bytes read per system call.
const READ_CHUNK: usize = 64 * 1024;

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection was closed or reset before any byte of a response:
    /// worth one retry when the connection came from the pool.
    Lost(String),
    Engine(EngineError),
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::Engine(e)
    }
}

fn protocol(m: impl Into<String>) -> Failure {
    Failure::Engine(EngineError::Protocol(m.into()))
}

/// Time left before `deadline`, or a timeout.
pub(crate) fn left(deadline: Instant) -> Result<Duration, EngineError> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        Err(EngineError::Timeout)
    } else {
        Ok(d)
    }
}

#[derive(Debug)]
pub(crate) struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    /// Some byte of a response arrived during the current exchange.
    pub(crate) answered: bool,
}

impl Conn {
    /// Connects within `timeout`, trying every resolved address in turn.
    pub(crate) fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<Conn> {
        let mut last = None;
        for sa in (host, port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&sa, timeout) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    return Ok(Conn::new(s));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "host resolved to no address")
        }))
    }

    pub(crate) fn new(s: TcpStream) -> Conn {
        Conn {
            s,
            buf: Vec::new(),
            pos: 0,
            eof: false,
            answered: false,
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Nothing unread is buffered.
    pub(crate) fn drained(&self) -> bool {
        self.pending().is_empty()
    }

    /// Read more; `Ok(0)` at EOF.
    fn fill(&mut self, deadline: Instant) -> Result<usize, Failure> {
        if self.eof {
            return Ok(0);
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let res = loop {
            let t = match left(deadline) {
                Ok(t) => t,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e.into());
                }
            };
            let r = self
                .s
                .set_read_timeout(Some(t))
                .and_then(|()| self.s.read(&mut self.buf[old..]));
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        let n = *res.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        match res {
            Ok(0) => {
                self.eof = true;
                Ok(0)
            }
            Ok(n) => {
                self.answered = true;
                Ok(n)
            }
            Err(e) if is_timeout(&e) => Err(EngineError::Timeout.into()),
            Err(e) if is_disconnect(&e) && !self.answered => Err(Failure::Lost(format!(
                "the ICAP server closed the connection without a response ({e})"
            ))),
            Err(e) => {
                Err(EngineError::Unavailable(format!("reading the ICAP response: {e}")).into())
            }
        }
    }

    /// More bytes, or an error when the server closed mid-response.
    fn more(&mut self, deadline: Instant, what: &str) -> Result<(), Failure> {
        if self.fill(deadline)? == 0 {
            if self.answered || !self.drained() {
                return Err(EngineError::Unavailable(format!(
                    "the ICAP server closed the connection in the middle of {what}"
                ))
                .into());
            }
            return Err(Failure::Lost(
                "the ICAP server closed the connection without a response".into(),
            ));
        }
        Ok(())
    }

    /// The next response head.
    pub(crate) fn read_head(&mut self, deadline: Instant) -> Result<proto::Response, Failure> {
        loop {
            if let Some(n) = proto::head_len(self.pending()).map_err(protocol)? {
                let r = proto::parse_response(&self.pending()[..n]).map_err(protocol);
                self.consume(n);
                return r;
            }
            self.more(deadline, "a response head")?;
        }
    }

    /// Exactly `n` bytes (`n` bounded by the caller).
    pub(crate) fn read_n(&mut self, n: usize, deadline: Instant) -> Result<Vec<u8>, Failure> {
        while self.pending().len() < n {
            self.more(deadline, "the encapsulated headers")?;
        }
        let v = self.pending()[..n].to_vec();
        self.consume(n);
        Ok(v)
    }

    /// One line without its CRLF.
    fn read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, Failure> {
        loop {
            let p = self.pending();
            let window = &p[..p.len().min(proto::MAX_CHUNK_LINE)];
            if let Some(i) = window.windows(2).position(|w| w == b"\r\n") {
                let line = p[..i].to_vec();
                self.consume(i + 2);
                return Ok(line);
            }
            if p.len() >= proto::MAX_CHUNK_LINE {
                return Err(protocol("chunk-size line too long in the ICAP response"));
            }
            self.more(deadline, "a chunked body")?;
        }
    }

    /// A chunked body, handed piece by piece to `sink`, until the last
    /// chunk and its trailer. `Ok(false)` when more than `limit` bytes came
    /// (reading stopped there: the connection is then out of step).
    pub(crate) fn read_chunked(
        &mut self,
        deadline: Instant,
        limit: u64,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<bool, Failure> {
        let mut total = 0u64;
        loop {
            let line = self.read_line(deadline)?;
            let Some(size) = proto::parse_chunk_line(&line).map_err(protocol)? else {
                // Trailer lines until the empty one.
                for _ in 0..32 {
                    if self.read_line(deadline)?.is_empty() {
                        return Ok(true);
                    }
                }
                return Err(protocol("too many trailer lines in the ICAP response"));
            };
            total = total.saturating_add(size);
            if total > limit {
                return Ok(false);
            }
            let mut rest = size;
            while rest > 0 {
                if self.drained() {
                    self.more(deadline, "a chunked body")?;
                }
                let take = usize::try_from(rest)
                    .unwrap_or(usize::MAX)
                    .min(self.pending().len());
                sink(&self.pending()[..take]);
                self.consume(take);
                rest -= take as u64;
            }
            while self.pending().len() < 2 {
                self.more(deadline, "a chunked body")?;
            }
            if !self.pending().starts_with(b"\r\n") {
                return Err(protocol(
                    "chunk data not followed by CRLF in the ICAP response",
                ));
            }
            self.consume(2);
        }
    }

    /// Write all of `b` before `deadline`. I/O errors are returned as they
    /// are: a peer that closed may still have answered.
    pub(crate) fn write(&mut self, b: &[u8], deadline: Instant) -> Result<(), io::Error> {
        let t = left(deadline).map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "deadline"))?;
        self.s.set_write_timeout(Some(t))?;
        self.s.write_all(b)
    }

    /// Whether the server has already sent something (an early answer)
    /// while the body is still being sent. Never blocks.
    pub(crate) fn response_waiting(&mut self) -> bool {
        if !self.drained() {
            return true;
        }
        let mut b = [0u8; 1];
        if self.s.set_nonblocking(true).is_err() {
            return false;
        }
        let r = self.s.peek(&mut b);
        let _ = self.s.set_nonblocking(false);
        matches!(r, Ok(n) if n > 0)
    }
}

impl Reusable for Conn {
    /// For an idle connection: nothing pending and the peer has not closed.
    fn looks_alive(&mut self) -> bool {
        if !self.drained() || self.eof || self.s.set_nonblocking(true).is_err() {
            return false;
        }
        let mut b = [0u8; 1];
        let alive = matches!(self.s.peek(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        alive && self.s.set_nonblocking(false).is_ok()
    }
    /// Kept only when the exchange was read to its end.
    fn reusable(&self) -> bool {
        self.drained() && !self.eof
    }
    fn on_reuse(&mut self) {
        self.answered = false;
    }
}

pub(crate) type Pool = IdlePool<Conn>;
pub use moat_core::pool::PoolStats;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (Conn, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let c = Conn::connect("127.0.0.1", port, Duration::from_secs(2)).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn reads_heads_chunks_and_trailers() {
        let (mut c, mut s) = pair();
        s.write_all(b"ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n5\r\nhello\r\n6; x\r\n world\r\n0\r\nT: 1\r\n\r\n")
            .unwrap();
        let r = c.read_head(soon()).unwrap();
        assert_eq!(r.code, 200);
        assert_eq!(c.read_n(19, soon()).unwrap(), b"HTTP/1.1 200 OK\r\n\r\n");
        let mut got = Vec::new();
        assert!(
            c.read_chunked(soon(), 100, &mut |b| got.extend_from_slice(b))
                .unwrap()
        );
        assert_eq!(got, b"hello world");
        assert!(c.drained());
        // Over the limit: reading stops.
        s.write_all(b"ff\r\n").unwrap();
        assert!(!c.read_chunked(soon(), 10, &mut |_| {}).unwrap());
    }

    #[test]
    fn a_close_before_any_byte_is_lost_and_after_one_is_an_error() {
        let (mut c, s) = pair();
        drop(s);
        assert!(matches!(c.read_head(soon()), Err(Failure::Lost(_))));
        let (mut c, mut s) = pair();
        s.write_all(b"ICAP/1.0 20").unwrap();
        drop(s);
        assert!(matches!(
            c.read_head(soon()),
            Err(Failure::Engine(EngineError::Unavailable(_)))
        ));
        let (mut c, _s) = pair();
        let r = c.read_head(Instant::now() + Duration::from_millis(50));
        assert!(
            matches!(r, Err(Failure::Engine(EngineError::Timeout))),
            "{r:?}"
        );
    }

    #[test]
    fn the_pool_reuses_live_connections_only() {
        let pool = Pool::new(2, Duration::from_secs(10), "ICAP connection");
        let (a, _keep_a) = pair();
        let (b, peer_b) = pair();
        let (c, _keep_c) = pair();
        pool.put(a);
        pool.put(b);
        pool.put(c); // over the cap: closed
        assert_eq!(pool.stats().idle, 2);
        drop(peer_b);
        std::thread::sleep(Duration::from_millis(20));
        assert!(pool.take().is_some()); // b is dead: a is taken
        assert!(pool.take().is_none());
        assert_eq!(pool.stats().reuses, 1);
        // A connection with unread response bytes is never kept.
        let (mut d, mut peer_d) = pair();
        peer_d.write_all(b"ICAP/1.0 204 No Content\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(d.response_waiting());
        assert!(!d.looks_alive());
    }

    #[test]
    fn an_early_answer_is_noticed_without_blocking() {
        let (mut c, mut s) = pair();
        assert!(!c.response_waiting());
        s.write_all(b"I").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(c.response_waiting());
    }
}

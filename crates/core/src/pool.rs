//! A small pool of idle connections to a remote engine (clamd sessions,
//! ICAP keep-alive connections), shared by the engines that reuse them.
//!
//! At most `cap` connections are kept idle (more may be open at once: extra
//! ones are closed when returned). An idle connection is handed out again
//! only while younger than `max_idle` (servers drop idle connections after
//! their own timeout) and while [`Reusable::looks_alive`] says the peer has
//! neither closed it nor sent stray bytes. One that still turns out dead
//! (the server restarted or timed it out at that very moment) is retried
//! once by the caller on a fresh connection, counted with
//! [`IdlePool::count_retry`]. Most recently used first. [`is_timeout`] and
//! [`is_disconnect`] classify the socket errors of both remote engines.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Whether an I/O error is a socket timeout (std reports `WouldBlock` or
/// `TimedOut` for a read or write past its timeout).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Whether an I/O error means the peer closed or reset the connection.
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

/// A connection the pool can keep.
pub trait Reusable {
    /// Whether an idle connection is still usable: nothing pending, and the
    /// peer has not closed it. Must not block.
    fn looks_alive(&mut self) -> bool;
    /// Whether a connection handed back may be kept (its exchange ended
    /// cleanly and the protocol allows another one on it).
    fn reusable(&self) -> bool;
    /// Called when an idle connection is handed out again.
    fn on_reuse(&mut self) {}
}

/// Connection counters, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections opened for scans.
    pub connects: u64,
    /// Scans served on a pooled connection.
    pub reuses: u64,
    /// Scans retried on a fresh connection because a pooled one was dead.
    pub retries: u64,
    /// Connections idle in the pool right now.
    pub idle: usize,
}

#[derive(Debug)]
pub struct IdlePool<C> {
    idle: Mutex<Vec<(C, Instant)>>,
    cap: usize,
    max_idle: Duration,
    /// What the connections go to, for the log ("clamd session").
    what: &'static str,
    connects: AtomicU64,
    reuses: AtomicU64,
    retries: AtomicU64,
}

impl<C: Reusable> IdlePool<C> {
    pub fn new(cap: usize, max_idle: Duration, what: &'static str) -> IdlePool<C> {
        IdlePool {
            idle: Mutex::new(Vec::with_capacity(cap)),
            cap,
            max_idle,
            what,
            connects: AtomicU64::new(0),
            reuses: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// Whether connections are kept at all.
    pub fn enabled(&self) -> bool {
        self.cap > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(C, Instant)>> {
        // The list stays consistent even if a holder panicked: keep going.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used live connection, if any.
    pub fn take(&self) -> Option<C> {
        loop {
            let (mut c, since) = self.lock().pop()?;
            if since.elapsed() < self.max_idle && c.looks_alive() {
                c.on_reuse();
                self.reuses.fetch_add(1, Ordering::Relaxed);
                return Some(c);
            }
            tracing::debug!(what = self.what, "closing a stale idle connection");
        }
    }

    /// Keep a connection whose exchange ended cleanly; closes it when it may
    /// not be reused or the pool is full.
    pub fn put(&self, c: C) {
        if !c.reusable() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < self.cap {
            idle.push((c, Instant::now()));
        }
    }

    pub fn count_connect(&self) {
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            connects: self.connects.load(Ordering::Relaxed),
            reuses: self.reuses.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            idle: self.lock().len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// A connection over loopback TCP; `keep` says whether it may be pooled.
    struct Sock {
        s: TcpStream,
        keep: bool,
        reused: bool,
    }

    impl Reusable for Sock {
        fn looks_alive(&mut self) -> bool {
            let mut b = [0u8; 1];
            if self.s.set_nonblocking(true).is_err() {
                return false;
            }
            let alive =
                matches!(self.s.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            alive && self.s.set_nonblocking(false).is_ok()
        }
        fn reusable(&self) -> bool {
            self.keep
        }
        fn on_reuse(&mut self) {
            self.reused = true;
        }
    }

    fn sock(keep: bool) -> (Sock, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (peer, _) = l.accept().unwrap();
        (
            Sock {
                s,
                keep,
                reused: false,
            },
            peer,
        )
    }

    #[test]
    fn keeps_at_most_cap_and_hands_out_only_live_reusable_connections() {
        let pool = IdlePool::new(2, Duration::from_secs(10), "test");
        let (a, _keep_a) = sock(true);
        let (b, peer_b) = sock(true);
        let (c, _keep_c) = sock(true);
        let (d, _keep_d) = sock(false);
        pool.put(a);
        pool.put(b);
        pool.put(c); // over the cap: closed
        pool.put(d); // not reusable: closed
        assert_eq!(pool.stats().idle, 2);
        drop(peer_b); // b, the most recent, is dead now: a is handed out
        std::thread::sleep(Duration::from_millis(20));
        let got = pool.take().unwrap();
        assert!(got.reused);
        assert_eq!(pool.stats().idle, 0);
        assert!(pool.take().is_none());
        assert_eq!(pool.stats().reuses, 1);
        // Stray bytes from the peer also make a connection unusable.
        let (e, mut peer_e) = sock(true);
        std::io::Write::write_all(&mut peer_e, b"x").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        pool.put(e);
        assert!(pool.take().is_none());
    }

    #[test]
    fn connections_idle_longer_than_max_idle_are_closed() {
        let pool = IdlePool::new(2, Duration::ZERO, "test");
        let (a, _keep) = sock(true);
        pool.put(a);
        assert!(pool.take().is_none());
        assert_eq!(pool.stats().reuses, 0);
    }

    #[test]
    fn a_zero_cap_pool_is_disabled_and_keeps_nothing() {
        let pool = IdlePool::new(0, Duration::from_secs(10), "test");
        assert!(!pool.enabled());
        let (a, _keep) = sock(true);
        pool.put(a);
        assert_eq!(pool.stats().idle, 0);
    }
}

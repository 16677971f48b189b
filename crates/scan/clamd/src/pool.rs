//! Reusable clamd connections, as IDSESSION sessions.
//!
//! clamd closes a connection after each plain INSTREAM. Inside an IDSESSION
//! (`zIDSESSION\0` once, then any number of `zINSTREAM\0` requests) it keeps the
//! connection open and prefixes each reply with the request's number, counted
//! from 1. A session that ends cleanly (`OK` or `FOUND`, nothing unexpected) goes
//! back to the pool; after any error, timeout or stray byte it is closed.
//!
//! At most `cap` sessions are kept idle (more may be open at once: extra ones are
//! closed when returned). An idle session is reused only if it is younger than
//! the idle timeout (clamd drops idle sessions after its own `IdleTimeout`, 30 s
//! by default) and a non-blocking peek shows no EOF or stray data. A session that
//! still turns out dead (clamd restarted or timed it out at that very moment) is
//! retried once by the caller on a fresh connection.

use crate::stream::Stream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One connection to clamd, in a session or not.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: Stream,
    /// The next request number when in an IDSESSION; `None` for a one-shot connection.
    pub(crate) next_id: Option<u64>,
    /// Taken from the pool rather than freshly opened.
    pub(crate) reused: bool,
    idle_since: Instant,
}

impl Conn {
    pub(crate) fn new(stream: Stream, session: bool) -> Conn {
        Conn {
            stream,
            next_id: session.then_some(1),
            reused: false,
            idle_since: Instant::now(),
        }
    }
}

/// Connection counters, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections opened for scans.
    pub connects: u64,
    /// Scans served by a pooled session.
    pub reuses: u64,
    /// Scans retried on a fresh connection because a pooled one was dead.
    pub retries: u64,
    /// Sessions idle in the pool right now.
    pub idle: usize,
}

#[derive(Debug)]
pub(crate) struct Pool {
    idle: Mutex<Vec<Conn>>,
    cap: usize,
    max_idle: Duration,
    connects: AtomicU64,
    reuses: AtomicU64,
    retries: AtomicU64,
}

impl Pool {
    pub(crate) fn new(cap: usize, max_idle: Duration) -> Pool {
        Pool {
            idle: Mutex::new(Vec::with_capacity(cap)),
            cap,
            max_idle,
            connects: AtomicU64::new(0),
            reuses: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// Whether scans use IDSESSION sessions at all.
    pub(crate) fn enabled(&self) -> bool {
        self.cap > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        // The list stays consistent even if a holder panicked: just keep going.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used live session, if any.
    pub(crate) fn take(&self) -> Option<Conn> {
        loop {
            let mut conn = self.lock().pop()?;
            if conn.idle_since.elapsed() < self.max_idle && conn.stream.looks_alive() {
                conn.reused = true;
                self.reuses.fetch_add(1, Ordering::Relaxed);
                return Some(conn);
            }
            tracing::debug!("closing a stale idle clamd session");
        }
    }

    /// Returns a session that ended cleanly; closes it when the pool is full.
    pub(crate) fn put(&self, mut conn: Conn) {
        if conn.next_id.is_none() {
            return;
        }
        conn.idle_since = Instant::now();
        let mut idle = self.lock();
        if idle.len() < self.cap {
            idle.push(conn);
        }
    }

    pub(crate) fn count_connect(&self) {
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> PoolStats {
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
    use std::os::unix::net::UnixStream;

    #[test]
    fn reuses_live_sessions_and_drops_dead_ones() {
        let pool = Pool::new(2, Duration::from_secs(10));
        let (a, _keep_a) = UnixStream::pair().unwrap();
        let (b, peer_b) = UnixStream::pair().unwrap();
        let (c, _keep_c) = UnixStream::pair().unwrap();
        pool.put(Conn::new(Stream::Unix(a), true));
        pool.put(Conn::new(Stream::Unix(b), true));
        pool.put(Conn::new(Stream::Unix(c), true)); // over the cap: closed
        // One-shot connections are never pooled.
        let (d, _keep_d) = UnixStream::pair().unwrap();
        pool.put(Conn::new(Stream::Unix(d), false));
        assert_eq!(pool.stats().idle, 2);
        drop(peer_b); // b (the most recent) is dead now
        let got = pool.take().unwrap();
        assert!(got.reused);
        assert_eq!(pool.stats().idle, 0);
        assert!(pool.take().is_none());
        assert_eq!(pool.stats().reuses, 1);
    }

    #[test]
    fn expires_old_idle_sessions() {
        let pool = Pool::new(2, Duration::ZERO);
        let (a, _keep) = UnixStream::pair().unwrap();
        pool.put(Conn::new(Stream::Unix(a), true));
        assert!(pool.take().is_none());
    }
}

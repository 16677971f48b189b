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
use moat_core::pool::{IdlePool, Reusable};

/// One connection to clamd, in a session or not.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: Stream,
    /// The next request number when in an IDSESSION; `None` for a one-shot connection.
    pub(crate) next_id: Option<u64>,
}

impl Conn {
    pub(crate) fn new(stream: Stream, session: bool) -> Conn {
        Conn {
            stream,
            next_id: session.then_some(1),
        }
    }
}

impl Reusable for Conn {
    fn looks_alive(&mut self) -> bool {
        self.stream.looks_alive()
    }
    /// Only sessions outlive a request; a one-shot connection is closed.
    fn reusable(&self) -> bool {
        self.next_id.is_some()
    }
}

pub(crate) type Pool = IdlePool<Conn>;
pub use moat_core::pool::PoolStats;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    #[test]
    fn pools_live_sessions_but_never_one_shot_connections() {
        let pool = Pool::new(2, Duration::from_secs(10), "clamd session");
        let (a, _keep_a) = UnixStream::pair().unwrap();
        let (b, peer_b) = UnixStream::pair().unwrap();
        pool.put(Conn::new(Stream::Unix(a), true));
        pool.put(Conn::new(Stream::Unix(b), true));
        let (d, _keep_d) = UnixStream::pair().unwrap();
        pool.put(Conn::new(Stream::Unix(d), false));
        assert_eq!(pool.stats().idle, 2);
        drop(peer_b); // b (the most recent) is dead now
        let got = pool.take().unwrap();
        assert_eq!(got.next_id, Some(1));
        assert!(pool.take().is_none());
        assert_eq!(pool.stats().reuses, 1);
    }
}

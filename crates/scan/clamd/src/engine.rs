//! [`ClamdEngine`]: the [`Engine`] implementation.

use crate::address::Address;
use crate::config::{ClamdConfig, ConfigError};
use crate::instream::{Answer, Failure, instream};
use crate::pool::{Conn, Pool, PoolStats};
use crate::reply::{RawReply, read_reply};
use crate::stream::Stream;
use crate::version::VersionCache;
use moat_core::pool::is_timeout;
use moat_core::{Engine, EngineError, EngineInfo, EngineScan, Object, ScanContext, Scope};
use std::io::Write;
use std::time::{Duration, Instant};

/// Bound for the VERSION request behind [`Engine::info`], which must stay cheap.
const VERSION_TIMEOUT: Duration = Duration::from_secs(2);

/// A clamd daemon reached over TCP or a Unix socket. Cheap to share across threads.
#[derive(Debug)]
pub struct ClamdEngine {
    name: String,
    address: Address,
    cfg: ClamdConfig,
    pool: Pool,
    versions: VersionCache,
}

impl ClamdEngine {
    /// Checks the configuration; does not contact clamd (see [`Engine::health`]).
    pub fn new(name: &str, cfg: ClamdConfig) -> Result<ClamdEngine, ConfigError> {
        let address = Address::parse(&cfg.address)?;
        cfg.validate()?;
        Ok(ClamdEngine {
            name: name.to_string(),
            address,
            pool: Pool::new(cfg.pool_size, cfg.pool_idle_timeout, "clamd session"),
            versions: VersionCache::new(),
            cfg,
        })
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    pub fn config(&self) -> &ClamdConfig {
        &self.cfg
    }

    /// Connection counters (opened, reused, retried, idle now).
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Opens a connection that must be usable before `deadline`.
    fn connect(&self, deadline: Instant) -> Result<Stream, EngineError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(EngineError::Timeout);
        }
        let limit = left.min(self.cfg.connect_timeout);
        Stream::connect(&self.address, limit).map_err(|e| {
            if is_timeout(&e) && left < self.cfg.connect_timeout {
                EngineError::Timeout
            } else {
                EngineError::Unavailable(format!(
                    "cannot connect to clamd at {}: {e}",
                    self.address
                ))
            }
        })
    }

    /// A fresh connection for one scan, in a new IDSESSION when pooling is on.
    fn open(&self, deadline: Instant) -> Result<Conn, EngineError> {
        let mut stream = self.connect(deadline)?;
        self.pool.count_connect();
        let session = self.pool.enabled();
        if session {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(EngineError::Timeout);
            }
            stream
                .set_write_timeout(left)
                .and_then(|()| stream.write_all(b"zIDSESSION\0"))
                .map_err(|e| match is_timeout(&e) {
                    true => EngineError::Timeout,
                    false => EngineError::Unavailable(format!("starting a clamd session: {e}")),
                })?;
        }
        tracing::debug!(address = %self.address, session, "connected to clamd");
        Ok(Conn::new(stream, session))
    }

    fn run(&self, conn: &mut Conn, obj: &Object<'_>, deadline: Instant) -> Result<Answer, Failure> {
        instream(conn, obj.data, self.cfg.chunk_size, deadline)
    }

    /// A one-shot command (`zPING\0`, `zVERSION\0`) on its own connection.
    fn command(&self, cmd: &[u8], timeout: Duration) -> Result<String, EngineError> {
        let deadline = Instant::now() + timeout;
        let mut s = self.connect(deadline)?;
        s.set_write_timeout(timeout)
            .and_then(|()| s.write_all(cmd))
            .map_err(|e| EngineError::Unavailable(format!("sending to clamd: {e}")))?;
        match read_reply(&mut s, deadline) {
            Ok(RawReply::Message { text, .. }) => Ok(text),
            Ok(RawReply::Closed) => Err(EngineError::Protocol(
                "clamd closed the connection without a reply".into(),
            )),
            Err(e) => Err(EngineError::Unavailable(format!(
                "reading clamd's reply: {e}"
            ))),
        }
    }
}

impl Engine for ClamdEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn info(&self) -> EngineInfo {
        let timeout = self.cfg.connect_timeout.min(VERSION_TIMEOUT);
        let v = self.versions.get(|| {
            self.command(b"zVERSION\0", timeout)
                .map_err(|e| e.to_string())
        });
        EngineInfo {
            name: self.name.clone(),
            kind: "clamd".to_string(),
            version: v.version,
            signature_version: v.signature_version,
            loaded_at: v.seen_at,
            last_reload_error: v.error,
            ..Default::default()
        }
    }

    fn scope(&self) -> Scope {
        Scope::Whole
    }

    fn cache_ttl(&self) -> Option<Duration> {
        Some(self.cfg.cache_ttl)
    }

    fn health(&self) -> Result<(), EngineError> {
        match self.command(b"zPING\0", self.cfg.connect_timeout)?.as_str() {
            "PONG" => Ok(()),
            other => Err(EngineError::Protocol(format!("PING answered {other:?}"))),
        }
    }

    fn scan(&self, obj: &Object<'_>, ctx: &ScanContext) -> Result<EngineScan, EngineError> {
        let start = Instant::now();
        let deadline = ctx.deadline.min(start + self.cfg.timeout);
        if start >= deadline {
            return Err(EngineError::Timeout);
        }
        let (mut conn, pooled) = match self.pool.take() {
            Some(c) => (c, true),
            None => (self.open(deadline)?, false),
        };
        let answer = match self.run(&mut conn, obj, deadline) {
            Err(Failure::Lost(why)) if pooled => {
                // The pooled session died under us (clamd restarted or timed it
                // out just now): once more on a fresh connection.
                tracing::debug!(reason = %why, "pooled clamd session was dead; retrying");
                self.pool.count_retry();
                conn = self.open(deadline)?;
                self.run(&mut conn, obj, deadline)
            }
            other => other,
        };
        let result = match answer {
            Ok(Answer { reply, reusable }) => {
                if reusable {
                    self.pool.put(conn);
                }
                reply.into_result()
            }
            Err(Failure::Lost(why)) => Err(EngineError::Unavailable(why)),
            Err(Failure::Engine(e)) => Err(e),
        };
        match &result {
            Ok(s) => tracing::debug!(
                engine = %self.name, location = obj.location, bytes = obj.data.len(),
                hits = s.hits.len(), ms = start.elapsed().as_millis() as u64, "clamd scan"
            ),
            Err(e) => tracing::debug!(
                engine = %self.name, location = obj.location, bytes = obj.data.len(),
                error = %e, ms = start.elapsed().as_millis() as u64, "clamd scan failed"
            ),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    //! Against a scripted fake clamd; the real one is in `tests/clamd.rs`.
    use super::*;
    use moat_core::Blob;
    use std::io::Read;
    use std::os::unix::net::{UnixListener, UnixStream};

    fn read_exact_n(s: &mut UnixStream, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        s.read_exact(&mut b).unwrap();
        b
    }

    /// Reads one `zINSTREAM\0` request and returns its content.
    fn read_instream(s: &mut UnixStream) -> Vec<u8> {
        assert_eq!(read_exact_n(s, 10), b"zINSTREAM\0");
        let mut data = Vec::new();
        loop {
            let len = u32::from_be_bytes(read_exact_n(s, 4).try_into().unwrap()) as usize;
            if len == 0 {
                return data;
            }
            data.extend(read_exact_n(s, len));
        }
    }

    /// A fake clamd at a Unix socket; `serve` handles the accepted connections in order.
    fn fake(
        serve: impl FnOnce(&UnixListener) + Send + 'static,
    ) -> (tempfile::TempDir, ClamdEngine, std::thread::JoinHandle<()>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let l = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || serve(&l));
        let cfg = ClamdConfig {
            address: format!("unix:{}", path.display()),
            chunk_size: 1024,
            pool_size: 2,
            ..Default::default()
        };
        (dir, ClamdEngine::new("fake", cfg).unwrap(), t)
    }

    fn scan(e: &ClamdEngine, data: &[u8]) -> Result<EngineScan, EngineError> {
        let blob = Blob::from_vec(data.to_vec());
        let obj = Object::top(&blob, "x");
        e.scan(&obj, &ScanContext::within(Duration::from_secs(10)))
    }

    #[test]
    fn retries_once_when_a_pooled_session_died() {
        let (_d, e, t) = fake(|l| {
            let (mut s, _) = l.accept().unwrap();
            assert_eq!(read_exact_n(&mut s, 11), b"zIDSESSION\0");
            assert_eq!(read_instream(&mut s), vec![b'a'; 3000]);
            s.write_all(b"1: stream: OK\0").unwrap();
            // The second request: read its command, then vanish without a reply.
            assert_eq!(read_exact_n(&mut s, 10), b"zINSTREAM\0");
            drop(s);
            let (mut s, _) = l.accept().unwrap();
            assert_eq!(read_exact_n(&mut s, 11), b"zIDSESSION\0");
            assert_eq!(read_instream(&mut s), b"second");
            s.write_all(b"1: stream: Fake Sig: with colons FOUND\0")
                .unwrap();
            assert_eq!(read_instream(&mut s), b"third");
            s.write_all(b"2: stream: OK\0").unwrap();
            let _ = s.read(&mut [0u8; 1]); // until the client closes
        });
        assert!(scan(&e, &[b'a'; 3000]).unwrap().hits.is_empty());
        let hits = scan(&e, b"second").unwrap().hits;
        assert_eq!(hits[0].signature, "Fake Sig: with colons");
        assert!(scan(&e, b"third").unwrap().hits.is_empty());
        let s = e.pool_stats();
        assert_eq!((s.connects, s.reuses, s.retries, s.idle), (2, 2, 1, 1));
        drop(e);
        t.join().unwrap();
    }

    #[test]
    fn a_fresh_connection_closed_without_reply_is_unavailable() {
        let (_d, e, t) = fake(|l| {
            let (mut s, _) = l.accept().unwrap();
            assert_eq!(read_exact_n(&mut s, 11), b"zIDSESSION\0");
            read_instream(&mut s);
        });
        let r = scan(&e, b"x");
        assert!(matches!(r, Err(EngineError::Unavailable(_))), "{r:?}");
        assert_eq!(e.pool_stats().retries, 0);
        t.join().unwrap();
    }

    #[test]
    fn wrong_session_id_and_garbage_are_protocol_errors() {
        let (_d, e, t) = fake(|l| {
            for reply in [
                &b"7: stream: OK\0"[..],
                b"1: HELLO\0",
                b"1: stream: OK\0junk",
            ] {
                let (mut s, _) = l.accept().unwrap();
                assert_eq!(read_exact_n(&mut s, 11), b"zIDSESSION\0");
                read_instream(&mut s);
                s.write_all(reply).unwrap();
                let _ = s.read(&mut [0u8; 1]);
            }
        });
        for _ in 0..2 {
            let r = scan(&e, b"x");
            assert!(matches!(r, Err(EngineError::Protocol(_))), "{r:?}");
        }
        // A clean answer followed by stray bytes: the answer stands, the
        // connection is not reused.
        assert!(scan(&e, b"x").unwrap().hits.is_empty());
        assert_eq!(e.pool_stats().idle, 0);
        drop(e);
        t.join().unwrap();
    }

    #[test]
    fn config_errors_are_reported_without_contacting_clamd() {
        let bad = ClamdConfig {
            address: "nowhere".into(),
            ..Default::default()
        };
        let err = ClamdEngine::new("c", bad).unwrap_err();
        assert!(err.to_string().contains("nowhere"), "{err}");
        let bad = ClamdConfig {
            chunk_size: 0,
            ..Default::default()
        };
        assert!(matches!(
            ClamdEngine::new("c", bad),
            Err(ConfigError::ChunkSize(0))
        ));
    }
}

//! [`IcapEngine`]: the [`Engine`] implementation.

use crate::config::{ConfigError, IcapConfig, Method, Timeouts, Url};
use crate::conn::{Conn, Failure, Pool, PoolStats, left};
use crate::proto::{self, Body, GENERIC_NAME, Options, Response};
use moat_core::pool::{is_disconnect, is_timeout};
use moat_core::{
    Blob, Engine, EngineError, EngineInfo, EngineScan, Hit, Object, Reason, ScanContext, Scope,
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Body bytes per chunk sent.
const CHUNK: usize = 256 * 1024;
/// The most of a replacement body read (to keep the connection) when it is
/// not being compared with the content.
const MAX_DRAIN: u64 = 1 << 20;
/// Bound for the OPTIONS request behind [`Engine::info`], which must stay cheap.
const INFO_TIMEOUT: Duration = Duration::from_secs(2);
/// `info()` asks OPTIONS again (for a new ISTag) at most this often, as the
/// clamd engine asks VERSION; scans keep OPTIONS for its Options-TTL.
const INFO_REFRESH: Duration = Duration::from_secs(5);
const UNKNOWN: &str = "unknown";

/// What is known about the service.
#[derive(Debug, Default)]
struct State {
    options: Option<(Arc<Options>, Instant)>,
    /// The latest ISTag, from OPTIONS or any response.
    istag: Option<String>,
    /// Unix seconds when that ISTag was first seen.
    istag_seen_at: u64,
    /// The last OPTIONS failure, cleared by a success.
    error: Option<String>,
    last_attempt: Option<Instant>,
}

/// An ICAP antivirus service. Cheap to share across threads.
#[derive(Debug)]
pub struct IcapEngine {
    name: String,
    cfg: IcapConfig,
    url: Url,
    t: Timeouts,
    pool: Pool,
    state: Mutex<State>,
    /// Held while OPTIONS is being fetched, so that one thread asks.
    refreshing: Mutex<()>,
}

/// One finished request/response.
#[derive(Debug)]
struct Exchange {
    resp: Response,
    /// Status of an encapsulated HTTP response head, if any.
    http_status: Option<u16>,
    /// The server returned our message as it was: status 200 and the same
    /// body, byte for byte.
    unmodified: bool,
    reusable: bool,
}

/// Why sending stopped.
enum SendStop {
    /// The server closed or reset the connection: it may have answered.
    Closed(std::io::Error),
    Failed(Failure),
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl IcapEngine {
    /// Checks the configuration; does not contact the server.
    pub fn new(name: &str, cfg: IcapConfig) -> Result<IcapEngine, ConfigError> {
        let (url, t) = cfg.validate()?;
        Ok(IcapEngine {
            name: name.to_string(),
            pool: Pool::new(cfg.pool_size, t.pool_idle, "ICAP connection"),
            url,
            t,
            cfg,
            state: Mutex::new(State::default()),
            refreshing: Mutex::new(()),
        })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Connection counters (opened, reused, retried, idle now).
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remember an ISTag; a new one means new answers (a new fingerprint).
    fn note_istag(&self, tag: Option<String>) {
        let Some(tag) = tag else { return };
        let mut st = self.state();
        if st.istag.as_deref() != Some(tag.as_str()) {
            if let Some(old) = &st.istag {
                tracing::info!(engine = %self.name, old = %old, new = %tag, "ICAP service ISTag changed");
            }
            st.istag = Some(tag);
            st.istag_seen_at = unix_now();
        }
    }

    /// A connection usable before `deadline`.
    fn connect(&self, deadline: Instant) -> Result<Conn, EngineError> {
        let l = left(deadline)?;
        let limit = l.min(self.t.connect);
        Conn::connect(&self.url.host, self.url.port, limit).map_err(|e| {
            if is_timeout(&e) && l < self.t.connect {
                EngineError::Timeout
            } else {
                EngineError::Unavailable(format!(
                    "cannot connect to the ICAP server at {}: {e}",
                    self.url.authority()
                ))
            }
        })
    }

    fn open(&self, deadline: Instant) -> Result<Conn, EngineError> {
        let c = self.connect(deadline)?;
        self.pool.count_connect();
        Ok(c)
    }

    /// OPTIONS on a connection of its own.
    fn fetch_options(&self, deadline: Instant) -> Result<Options, EngineError> {
        let mut c = self.connect(deadline)?;
        c.write(&proto::options_request(&self.url), deadline)
            .map_err(|e| match is_timeout(&e) {
                true => EngineError::Timeout,
                false => EngineError::Unavailable(format!("sending OPTIONS: {e}")),
            })?;
        let r = c.read_head(deadline).map_err(|f| match f {
            Failure::Lost(why) => EngineError::Unavailable(why),
            Failure::Engine(e) => e,
        })?;
        Options::from_response(&r).map_err(EngineError::Protocol)
    }

    /// Fetch OPTIONS now and remember the answer (or the failure).
    fn refresh_options(&self, deadline: Instant) -> Result<Arc<Options>, EngineError> {
        self.state().last_attempt = Some(Instant::now());
        match self.fetch_options(deadline) {
            Ok(o) => {
                let o = Arc::new(o);
                self.note_istag(o.istag.clone());
                let mut st = self.state();
                st.options = Some((o.clone(), Instant::now()));
                st.error = None;
                Ok(o)
            }
            Err(e) => {
                tracing::debug!(engine = %self.name, error = %e, "ICAP OPTIONS failed");
                self.state().error = Some(format!("ICAP OPTIONS failed: {e}"));
                Err(e)
            }
        }
    }

    fn fresh_options(&self) -> Option<Arc<Options>> {
        match &self.state().options {
            Some((o, at)) if at.elapsed() < o.ttl => Some(o.clone()),
            _ => None,
        }
    }

    /// The service's OPTIONS, cached for its Options-TTL.
    fn options(&self, deadline: Instant) -> Result<Arc<Options>, EngineError> {
        if let Some(o) = self.fresh_options() {
            return Ok(o);
        }
        let _one = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = self.fresh_options() {
            return Ok(o);
        }
        let limit = left(deadline)?.min(self.t.connect);
        self.refresh_options(Instant::now() + limit)
    }

    /// Send `b`, telling a closed connection apart from other failures.
    fn send(c: &mut Conn, b: &[u8], deadline: Instant) -> Result<(), SendStop> {
        match c.write(b, deadline) {
            Ok(()) => Ok(()),
            Err(e) if is_timeout(&e) => Err(SendStop::Failed(EngineError::Timeout.into())),
            Err(e) if is_disconnect(&e) => Err(SendStop::Closed(e)),
            Err(e) => Err(SendStop::Failed(
                EngineError::Unavailable(format!("sending to the ICAP server: {e}")).into(),
            )),
        }
    }

    /// Bytes `from..to` of `blob` as chunks (not the last chunk). With
    /// `watch`, stops early (`Ok(false)`) when the server has answered.
    fn send_body(
        c: &mut Conn,
        blob: &Blob,
        from: u64,
        to: u64,
        deadline: Instant,
        watch: bool,
    ) -> Result<bool, SendStop> {
        // Room for the size line before and the CRLF after the data.
        let mut buf = vec![0u8; 16 + CHUNK + 2];
        let mut off = from;
        while off < to {
            let want = usize::try_from(to - off).unwrap_or(usize::MAX).min(CHUNK);
            let n = blob
                .read_at(off, &mut buf[16..16 + want])
                .map_err(|e| SendStop::Failed(EngineError::Io(e).into()))?;
            if n == 0 {
                return Err(SendStop::Failed(
                    EngineError::Other("content shorter than its length".into()).into(),
                ));
            }
            let line = format!("{n:x}\r\n");
            let start = 16 - line.len();
            buf[start..16].copy_from_slice(line.as_bytes());
            buf[16 + n..16 + n + 2].copy_from_slice(b"\r\n");
            Self::send(c, &buf[start..16 + n + 2], deadline)?;
            off += n as u64;
            if watch && off < to && c.response_waiting() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// One RESPMOD/REQMOD on `c`: head, preview, `100 Continue`, the rest,
    /// the response and its encapsulated message.
    fn exchange(
        &self,
        c: &mut Conn,
        obj: &Object<'_>,
        opts: &Options,
        deadline: Instant,
    ) -> Result<Exchange, Failure> {
        let blob = obj.data;
        let len = blob.len();
        let method = self.cfg.method;
        let preview = opts.preview.map(|p| p.min(len));
        let head =
            proto::modify_request(&self.url, method, preview, obj.name, obj.content_type, len);
        // Whether the whole body (and its last chunk) went out.
        let mut complete = false;
        let mut closed: Option<std::io::Error> = None;
        let sent = (|| -> Result<(), SendStop> {
            Self::send(c, &head, deadline)?;
            match preview {
                Some(p) => {
                    Self::send_body(c, blob, 0, p, deadline, false)?;
                    let end: &[u8] = if p == len {
                        b"0; ieof\r\n\r\n"
                    } else {
                        b"0\r\n\r\n"
                    };
                    Self::send(c, end, deadline)?;
                    complete = p == len;
                }
                None => {
                    if Self::send_body(c, blob, 0, len, deadline, true)? {
                        Self::send(c, b"0\r\n\r\n", deadline)?;
                        complete = true;
                    }
                }
            }
            Ok(())
        })();
        match sent {
            Ok(()) => {}
            Err(SendStop::Closed(e)) => closed = Some(e),
            Err(SendStop::Failed(f)) => return Err(f),
        }
        let mut resp = c
            .read_head(deadline)
            .map_err(|f| with_write_error(f, &closed))?;
        if resp.code == 100 {
            let Some(p) = preview.filter(|&p| p < len && closed.is_none()) else {
                return Err(Failure::Engine(EngineError::Protocol(
                    "ICAP 100 Continue where no preview was pending".into(),
                )));
            };
            let rest = (|| -> Result<bool, SendStop> {
                if !Self::send_body(c, blob, p, len, deadline, true)? {
                    return Ok(false);
                }
                Self::send(c, b"0\r\n\r\n", deadline)?;
                Ok(true)
            })();
            match rest {
                Ok(done) => complete = done,
                Err(SendStop::Closed(e)) => closed = Some(e),
                Err(SendStop::Failed(f)) => return Err(f),
            }
            resp = c
                .read_head(deadline)
                .map_err(|f| with_write_error(f, &closed))?;
            if resp.code == 100 {
                return Err(Failure::Engine(EngineError::Protocol(
                    "ICAP 100 Continue twice".into(),
                )));
            }
        } else if preview.is_some() {
            // A final answer to the preview: nothing more is expected.
            complete = true;
        }

        let enc = match resp.get("encapsulated") {
            Some(v) => proto::parse_encapsulated(v)
                .map_err(|e| Failure::Engine(EngineError::Protocol(e)))?,
            None => proto::Encapsulated::default(),
        };
        let heads = c.read_n(enc.body_at, deadline)?;
        let section = |r: &Option<std::ops::Range<usize>>| r.clone().and_then(|r| heads.get(r));
        let http_status = section(&enc.res_hdr).and_then(proto::http_status);
        let mut in_sync = true;
        let mut same_body = false;
        if enc.has_body() {
            let mut cmp = Compare::new(blob);
            in_sync = c.read_chunked(deadline, len.max(MAX_DRAIN), &mut |b| cmp.feed(b))?;
            same_body = in_sync && cmp.equal();
        }
        let message_kept = match method {
            Method::Respmod => http_status == Some(200),
            Method::Reqmod => {
                enc.res_hdr.is_none()
                    && section(&enc.req_hdr)
                        .and_then(proto::http_method)
                        .is_some_and(|m| m == "PUT")
            }
        };
        let body_kept = match enc.body {
            Some(Body::Response) => method == Method::Respmod && same_body,
            Some(Body::Request) => method == Method::Reqmod && same_body,
            Some(Body::None) => len == 0,
            _ => false,
        };
        let unmodified = resp.code == 200 && message_kept && body_kept;
        let reusable = in_sync
            && complete
            && closed.is_none()
            && matches!(resp.code, 200 | 204)
            && !resp.closes()
            && c.drained();
        Ok(Exchange {
            resp,
            http_status,
            unmodified,
            reusable,
        })
    }
}

/// A failure to read the response, with what happened while sending.
fn with_write_error(f: Failure, closed: &Option<std::io::Error>) -> Failure {
    match (f, closed) {
        (Failure::Lost(why), Some(w)) => Failure::Lost(format!("{why}; while sending: {w}")),
        (f, _) => f,
    }
}

/// Compares a returned body with the content as it arrives.
struct Compare<'a> {
    blob: &'a Blob,
    off: u64,
    same: bool,
    scratch: Vec<u8>,
}

impl<'a> Compare<'a> {
    fn new(blob: &'a Blob) -> Compare<'a> {
        Compare {
            blob,
            off: 0,
            same: true,
            scratch: Vec::new(),
        }
    }

    fn feed(&mut self, b: &[u8]) {
        if !self.same {
            return;
        }
        if self.off + b.len() as u64 > self.blob.len() {
            self.same = false;
            return;
        }
        self.scratch.resize(b.len(), 0);
        let mut got = 0;
        while got < b.len() {
            match self
                .blob
                .read_at(self.off + got as u64, &mut self.scratch[got..])
            {
                Ok(0) | Err(_) => {
                    self.same = false;
                    return;
                }
                Ok(n) => got += n,
            }
        }
        self.same = self.scratch[..] == *b;
        self.off += b.len() as u64;
    }

    fn equal(&self) -> bool {
        self.same && self.off == self.blob.len()
    }
}

/// What a response means. Never clean unless the server said 204, or gave
/// the message back unmodified, and named no threat.
fn classify(ex: &Exchange) -> Result<EngineScan, EngineError> {
    let r = &ex.resp;
    let names = proto::threats(r);
    match r.code {
        200 | 204 if !names.is_empty() => found(names),
        204 => Ok(EngineScan::default()),
        200 if ex.http_status == Some(403) => found(vec![GENERIC_NAME.to_string()]),
        200 if ex.unmodified => Ok(EngineScan::default()),
        200 => Err(EngineError::Protocol(format!(
            "the ICAP server changed the content without naming a threat (encapsulated HTTP status {})",
            ex.http_status
                .map_or_else(|| "none".to_string(), |s| s.to_string())
        ))),
        503 => Err(EngineError::Unavailable(format!(
            "ICAP {} {}",
            r.code, r.reason
        ))),
        code => Err(EngineError::Protocol(format!(
            "unexpected ICAP response {code} {}",
            r.reason
        ))),
    }
}

/// Threat names as hits; names that mean "not fully scanned" in ClamAV's
/// style (as clamd and moat's own servers report them) as unscannable.
fn found(names: Vec<String>) -> Result<EngineScan, EngineError> {
    let mut hits = Vec::new();
    let mut unscannable = None;
    for name in names {
        let reason = if name.starts_with("Heuristics.Encrypted.") {
            Some(Reason::Encrypted)
        } else if name.starts_with("Heuristics.Limits.Exceeded") {
            Some(match name.contains("MaxScanTime") {
                true => Reason::Timeout,
                false => Reason::LimitsExceeded,
            })
        } else if name == "Heuristics.Timeout" {
            Some(Reason::Timeout)
        } else {
            None
        };
        match reason {
            Some(r) => {
                unscannable.get_or_insert((r, name));
            }
            None => {
                let suspicious = name.starts_with("Heuristics.") || name.starts_with("PUA.");
                hits.push(Hit {
                    signature: name,
                    suspicious,
                });
            }
        }
    }
    match unscannable {
        Some((reason, name)) if hits.is_empty() => Err(EngineError::Unscannable {
            reason,
            detail: format!("the ICAP server reported {name}"),
        }),
        _ => Ok(EngineScan {
            hits,
            trusted: false,
        }),
    }
}

impl Engine for IcapEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn info(&self) -> EngineInfo {
        let due = self
            .state()
            .last_attempt
            .is_none_or(|t| t.elapsed() >= INFO_REFRESH);
        if due && let Ok(_one) = self.refreshing.try_lock() {
            let _ = self.refresh_options(Instant::now() + self.t.connect.min(INFO_TIMEOUT));
        }
        let st = self.state();
        let version = st
            .options
            .as_ref()
            .and_then(|(o, _)| o.service.clone())
            .unwrap_or_else(|| UNKNOWN.to_string());
        EngineInfo {
            name: self.name.clone(),
            kind: "icap".to_string(),
            version,
            signature_version: st.istag.clone().unwrap_or_else(|| UNKNOWN.to_string()),
            loaded_at: st.istag_seen_at,
            last_reload_error: st.error.clone(),
            sources: vec![self.url.to_string()],
            ..Default::default()
        }
    }

    /// The service, the method and the ISTag (which RFC 3507 servers change
    /// with their signatures).
    fn fingerprint(&self) -> String {
        let i = self.info();
        format!(
            "{}:icap:{}:{}:{}:{}",
            i.name,
            self.url,
            self.cfg.method.as_str(),
            i.version,
            i.signature_version
        )
    }

    fn cache_ttl(&self) -> Option<Duration> {
        Some(self.cfg.cache_ttl())
    }

    fn scope(&self) -> Scope {
        Scope::Whole
    }

    fn health(&self) -> Result<(), EngineError> {
        self.refresh_options(Instant::now() + self.t.connect)
            .map(|_| ())
    }

    fn scan(&self, obj: &Object<'_>, ctx: &ScanContext) -> Result<EngineScan, EngineError> {
        let start = Instant::now();
        let deadline = ctx.deadline.min(start + self.t.scan);
        left(deadline)?;
        let opts = self.options(deadline)?;
        if !opts.supports(self.cfg.method) {
            return Err(EngineError::Protocol(format!(
                "the ICAP service at {} offers {}, not {}",
                self.url,
                opts.methods.join(", "),
                self.cfg.method.as_str()
            )));
        }
        let (mut conn, pooled) = match self.pool.take() {
            Some(c) => (c, true),
            None => (self.open(deadline)?, false),
        };
        let mut res = self.exchange(&mut conn, obj, &opts, deadline);
        if pooled && let Err(Failure::Lost(why)) = &res {
            // The kept-alive connection died under us: once more, fresh.
            tracing::debug!(reason = %why, "pooled ICAP connection was dead; retrying");
            self.pool.count_retry();
            conn = self.open(deadline)?;
            res = self.exchange(&mut conn, obj, &opts, deadline);
        }
        let result = match res {
            Ok(ex) => {
                self.note_istag(ex.resp.istag());
                let r = classify(&ex);
                if ex.reusable {
                    self.pool.put(conn);
                }
                r
            }
            Err(Failure::Lost(why)) => Err(EngineError::Unavailable(why)),
            Err(Failure::Engine(e)) => Err(e),
        };
        match &result {
            Ok(s) => tracing::debug!(
                engine = %self.name, location = obj.location, bytes = obj.data.len(),
                hits = s.hits.len(), ms = start.elapsed().as_millis() as u64, "icap scan"
            ),
            Err(e) => tracing::debug!(
                engine = %self.name, location = obj.location, bytes = obj.data.len(),
                error = %e, ms = start.elapsed().as_millis() as u64, "icap scan failed"
            ),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    //! Against a scripted fake ICAP server; moat's own server and c-icap
    //! are in `crates/moat/tests/icap_engine.rs`.
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    const OPTIONS: &str = "ICAP/1.0 200 OK\r\nMethods: RESPMOD, REQMOD\r\nService: Fake ICAP\r\nISTag: \"T1\"\r\nOptions-TTL: 3600\r\nPreview: 4\r\nAllow: 204\r\nEncapsulated: null-body=0\r\n\r\n";

    /// Reads from `s` until `pat` has arrived; everything read.
    fn read_until(s: &mut TcpStream, pat: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut b = [0u8; 4096];
        while !got.windows(pat.len()).any(|w| w == pat) {
            let n = s.read(&mut b).unwrap();
            assert!(
                n > 0,
                "closed before {:?}: {:?}",
                String::from_utf8_lossy(pat),
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&b[..n]);
        }
        got
    }

    /// Answers OPTIONS on its own connection.
    fn serve_options(l: &TcpListener, answer: &str) {
        let (mut s, _) = l.accept().unwrap();
        let req = read_until(&mut s, b"\r\n\r\n");
        assert!(req.starts_with(b"OPTIONS icap://127.0.0.1:"), "{req:?}");
        s.write_all(answer.as_bytes()).unwrap();
    }

    /// The de-chunked body of a request (after its head and HTTP heads).
    fn dechunk(mut b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let i = b.windows(2).position(|w| w == b"\r\n").unwrap();
            let line = std::str::from_utf8(&b[..i]).unwrap();
            let n = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
            b = &b[i + 2..];
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&b[..n]);
            b = &b[n + 2..];
        }
    }

    fn engine(port: u16, f: impl FnOnce(&mut IcapConfig)) -> IcapEngine {
        let mut cfg = IcapConfig {
            url: format!("icap://127.0.0.1:{port}/avscan"),
            pool_size: 2,
            ..Default::default()
        };
        f(&mut cfg);
        IcapEngine::new("icap", cfg).unwrap()
    }

    fn fake(
        serve: impl FnOnce(&TcpListener) + Send + 'static,
    ) -> (u16, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        (port, std::thread::spawn(move || serve(&l)))
    }

    fn scan(e: &IcapEngine, data: &[u8]) -> Result<EngineScan, EngineError> {
        let blob = Blob::from_vec(data.to_vec());
        let obj = Object {
            data: &blob,
            name: "file.bin",
            location: "file.bin",
            content_type: "application/octet-stream",
            depth: 0,
            sha256: None,
        };
        e.scan(&obj, &ScanContext::within(Duration::from_secs(10)))
    }

    #[test]
    fn preview_continue_and_204_on_one_kept_alive_connection() {
        let (port, t) = fake(|l| {
            serve_options(l, OPTIONS);
            let (mut s, _) = l.accept().unwrap();
            // 1: larger than the preview: 4 bytes, 100 Continue, the rest.
            let req = read_until(&mut s, b"\r\n0\r\n\r\n");
            let text = String::from_utf8_lossy(&req).to_string();
            assert!(text.starts_with("RESPMOD icap://127.0.0.1:"), "{text}");
            assert!(
                text.contains("\r\nPreview: 4\r\nEncapsulated: req-hdr=0, res-hdr="),
                "{text}"
            );
            assert!(
                text.contains("Content-Length: 10\r\n\r\n4\r\n0123\r\n0\r\n\r\n"),
                "{text}"
            );
            s.write_all(b"ICAP/1.0 100 Continue\r\n\r\n").unwrap();
            let rest = read_until(&mut s, b"0\r\n\r\n");
            assert_eq!(dechunk(&rest), b"456789");
            s.write_all(
                b"ICAP/1.0 204 No Content\r\nISTag: \"T1\"\r\nEncapsulated: null-body=0\r\n\r\n",
            )
            .unwrap();
            // 2: fits the preview: ieof, then an answer with a detection.
            let req = read_until(&mut s, b"0; ieof\r\n\r\n");
            assert!(String::from_utf8_lossy(&req).contains("3\r\nbad\r\n0; ieof\r\n\r\n"));
            let http = "HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\n";
            s.write_all(
                format!(
                    "ICAP/1.0 200 OK\r\nISTag: \"T2\"\r\nX-Infection-Found: Type=0; Resolution=2; Threat=Fake.Virus;\r\nEncapsulated: res-hdr=0, res-body={}\r\n\r\n{http}4\r\nnope\r\n0\r\n\r\n",
                    http.len()
                )
                .as_bytes(),
            )
            .unwrap();
            let _ = s.read(&mut [0u8; 1]);
        });
        let e = engine(port, |_| {});
        let before = e.fingerprint();
        assert!(before.contains(":T1"), "{before}");
        assert!(scan(&e, b"0123456789").unwrap().hits.is_empty());
        let hits = scan(&e, b"bad").unwrap().hits;
        assert_eq!(hits[0].signature, "Fake.Virus");
        assert!(!hits[0].suspicious);
        // The ISTag of the last response is the engine's now.
        assert!(e.fingerprint().contains(":T2"));
        let s = e.pool_stats();
        assert_eq!((s.connects, s.reuses, s.idle), (1, 1, 1));
        drop(e);
        t.join().unwrap();
    }

    /// Serves OPTIONS (without preview) then answers each scan request on
    /// a fresh connection with the next of `answers` (the body echoed in
    /// place of `{body}`).
    fn answering(answers: Vec<String>) -> (u16, std::thread::JoinHandle<()>) {
        fake(move |l| {
            serve_options(
                l,
                "ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\nISTag: \"T\"\r\nEncapsulated: null-body=0\r\n\r\n",
            );
            for a in answers {
                let (mut s, _) = l.accept().unwrap();
                let req = read_until(&mut s, b"\r\n0\r\n\r\n");
                let start = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let body_at = String::from_utf8_lossy(&req)
                    .split("res-body=")
                    .nth(1)
                    .unwrap()
                    .split("\r\n")
                    .next()
                    .unwrap()
                    .parse::<usize>()
                    .unwrap();
                let body = dechunk(&req[start + body_at..]);
                let chunked = format!(
                    "{:x}\r\n{}\r\n0\r\n\r\n",
                    body.len(),
                    String::from_utf8_lossy(&body)
                );
                s.write_all(a.replace("{body}", &chunked).as_bytes())
                    .unwrap();
            }
        })
    }

    fn echo(http: &str, extra: &str) -> String {
        format!(
            "ICAP/1.0 200 OK\r\n{extra}Encapsulated: res-hdr=0, res-body={}\r\n\r\n{http}{{body}}",
            http.len()
        )
    }

    #[test]
    fn responses_map_fail_closed() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        let forbidden = "HTTP/1.1 403 Forbidden\r\n\r\n";
        let answers = vec![
            // The message back unmodified: clean.
            echo(ok, ""),
            // A 403 naming nothing: blocked with a generic name.
            format!(
                "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, null-body={}\r\n\r\n{forbidden}",
                forbidden.len()
            ),
            // A replacement that names nothing and is not a 403: error.
            format!(
                "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body={}\r\n\r\n{ok}5\r\nother\r\n0\r\n\r\n",
                ok.len()
            ),
            // A 200 echo with only X-Virus-ID: that name.
            echo(ok, "X-Virus-ID: Some.Thing\r\n"),
            // Unscannable in ClamAV's words.
            echo(
                forbidden,
                "X-Infection-Found: Type=2; Resolution=2; Threat=Heuristics.Encrypted.Zip;\r\n",
            ),
            "ICAP/1.0 500 Server Error\r\nEncapsulated: null-body=0\r\n\r\n".into(),
            "ICAP/1.0 503 Service Unavailable\r\n\r\n".into(),
            "ICAP/1.0 404 ICAP Service Not Found\r\n\r\n".into(),
            "HTTP/1.1 200 OK\r\n\r\n".into(),
            "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=9\r\n\r\n".into(),
            "ICAP/1.0 100 Continue\r\n\r\n".into(),
            "ICAP/1.0 204 No Content\r\nX-Infection-Found: Type=0; Resolution=2; Threat=Late.Find;\r\n\r\n".into(),
            // Closed in the middle of the response.
            "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=40\r\n\r\nHTTP/1.1".into(),
        ];
        let (port, t) = answering(answers);
        let e = engine(port, |c| c.pool_size = 0);
        let data = b"hello";
        assert!(scan(&e, data).unwrap().hits.is_empty());
        assert_eq!(scan(&e, data).unwrap().hits[0].signature, GENERIC_NAME);
        let r = scan(&e, data);
        assert!(
            matches!(&r, Err(EngineError::Protocol(m)) if m.contains("without naming")),
            "{r:?}"
        );
        assert_eq!(scan(&e, data).unwrap().hits[0].signature, "Some.Thing");
        assert!(matches!(
            scan(&e, data),
            Err(EngineError::Unscannable {
                reason: Reason::Encrypted,
                ..
            })
        ));
        assert!(matches!(scan(&e, data), Err(EngineError::Protocol(m)) if m.contains("500")));
        assert!(matches!(scan(&e, data), Err(EngineError::Unavailable(m)) if m.contains("503")));
        assert!(matches!(scan(&e, data), Err(EngineError::Protocol(m)) if m.contains("404")));
        for _ in 0..3 {
            assert!(matches!(scan(&e, data), Err(EngineError::Protocol(_))));
        }
        assert_eq!(scan(&e, data).unwrap().hits[0].signature, "Late.Find");
        assert!(matches!(scan(&e, data), Err(EngineError::Unavailable(_))));
        t.join().unwrap();
        // Nobody listens any more: unavailable, never clean.
        let r = scan(&e, data);
        assert!(matches!(r, Err(EngineError::Unavailable(_))), "{r:?}");
    }

    #[test]
    fn retries_once_when_a_pooled_connection_died() {
        let (port, t) = fake(|l| {
            serve_options(
                l,
                "ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\nISTag: \"T\"\r\nEncapsulated: null-body=0\r\n\r\n",
            );
            let (mut s, _) = l.accept().unwrap();
            read_until(&mut s, b"\r\n0\r\n\r\n");
            s.write_all(b"ICAP/1.0 204 No Content\r\n\r\n").unwrap();
            // The second request: read it, then vanish without an answer.
            read_until(&mut s, b"\r\n0\r\n\r\n");
            drop(s);
            let (mut s, _) = l.accept().unwrap();
            read_until(&mut s, b"\r\n0\r\n\r\n");
            s.write_all(b"ICAP/1.0 204 No Content\r\n\r\n").unwrap();
            let _ = s.read(&mut [0u8; 1]);
        });
        let e = engine(port, |_| {});
        assert!(scan(&e, b"one").unwrap().hits.is_empty());
        assert!(scan(&e, b"two").unwrap().hits.is_empty());
        let s = e.pool_stats();
        assert_eq!((s.connects, s.reuses, s.retries), (2, 1, 1));
        drop(e);
        t.join().unwrap();
    }

    #[test]
    fn a_fresh_connection_closed_without_answer_is_unavailable() {
        let (port, t) = fake(|l| {
            serve_options(l, OPTIONS);
            let (mut s, _) = l.accept().unwrap();
            read_until(&mut s, b"0; ieof\r\n\r\n");
        });
        let e = engine(port, |_| {});
        let r = scan(&e, b"x");
        assert!(matches!(r, Err(EngineError::Unavailable(_))), "{r:?}");
        assert_eq!(e.pool_stats().retries, 0);
        t.join().unwrap();
    }

    #[test]
    fn a_service_without_the_method_and_a_down_server_are_errors() {
        let (port, t) = fake(|l| {
            serve_options(
                l,
                "ICAP/1.0 200 OK\r\nMethods: REQMOD\r\nISTag: \"T\"\r\nEncapsulated: null-body=0\r\n\r\n",
            );
        });
        let e = engine(port, |_| {});
        let r = scan(&e, b"x");
        assert!(
            matches!(&r, Err(EngineError::Protocol(m)) if m.contains("REQMOD")),
            "{r:?}"
        );
        t.join().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = engine(port, |_| {});
        assert!(matches!(scan(&e, b"x"), Err(EngineError::Unavailable(_))));
        assert!(e.health().is_err());
        let i = e.info();
        assert_eq!(i.signature_version, UNKNOWN);
        assert!(i.last_reload_error.is_some());
        assert_eq!(e.cache_ttl(), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn reqmod_sends_a_put_and_recognises_it_echoed() {
        let (port, t) = fake(|l| {
            serve_options(
                l,
                "ICAP/1.0 200 OK\r\nMethods: REQMOD\r\nISTag: \"T\"\r\nEncapsulated: null-body=0\r\n\r\n",
            );
            let (mut s, _) = l.accept().unwrap();
            let req = read_until(&mut s, b"\r\n0\r\n\r\n");
            let text = String::from_utf8_lossy(&req).to_string();
            assert!(text.starts_with("REQMOD "), "{text}");
            let http = text.split_once("\r\n\r\n").unwrap().1;
            let head = &http[..http.find("\r\n\r\n").unwrap() + 4];
            assert!(head.starts_with("PUT /file.bin HTTP/1.1\r\n"), "{head}");
            s.write_all(
                format!(
                    "ICAP/1.0 200 OK\r\nEncapsulated: req-hdr=0, req-body={}\r\n\r\n{head}2\r\nup\r\n0\r\n\r\n",
                    head.len()
                )
                .as_bytes(),
            )
            .unwrap();
            let _ = s.read(&mut [0u8; 1]);
        });
        let e = engine(port, |c| c.method = Method::Reqmod);
        assert!(scan(&e, b"up").unwrap().hits.is_empty());
        drop(e);
        t.join().unwrap();
    }
}

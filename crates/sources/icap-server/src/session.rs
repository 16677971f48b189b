//! A connection's conversation: requests one after another (keep-alive)
//! until `Connection: close`, the idle timeout, a framing error or the
//! shutdown. A body is spooled to an anonymous 0600 file as it arrives
//! (never held in memory), scanned whole (multipart uploads part by part)
//! through the shared `ScanService` (source `icap`), and answered by policy.

use crate::config::{ErrorReply, IcapServerConfig};
use crate::proto::{self, BodyKind, ChunkLine, Head, Method, ProtoError};
use crate::reply::{self, Threat};
use moat_api::ScanService;
use moat_core::{Action, Blob, EngineReport, Reason, Spool, Status, Verdict};
use moat_db::ScanRecord;
use moat_role::Shutdown;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Source name in records and metrics.
pub const SOURCE: &str = "icap";

/// Bytes read per system call, and the most read ahead of the parser.
const READ_CHUNK: usize = 64 << 10;
/// Body bytes written per chunk when a message is echoed back.
const ECHO_PIECE: usize = 256 << 10;
/// Trailer lines accepted after the last chunk.
const MAX_TRAILERS: usize = 32;

/// What every connection shares.
pub(crate) struct Ctx {
    pub(crate) cfg: IcapServerConfig,
    pub(crate) service: ScanService,
    pub(crate) tmp_dir: PathBuf,
    pub(crate) shutdown: Shutdown,
}

impl Ctx {
    fn istag(&self) -> String {
        reply::istag(self.service.scanner.engine_set().fingerprint())
    }
    fn read_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.read_timeout_secs)
    }
}

/// Why a request ended without its normal answer.
#[derive(Debug)]
enum Fail {
    /// The client went away (or the shutdown came) mid-request.
    Closed,
    Timeout,
    Proto(ProtoError),
    /// The body passed `max_body_size`.
    TooLarge,
    Io(io::Error),
}

impl From<ProtoError> for Fail {
    fn from(e: ProtoError) -> Fail {
        Fail::Proto(e)
    }
}

/// A TCP connection with a bounded read buffer.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl Conn {
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

    /// Read more, keeping at most `max_pending` unread bytes; `Ok(0)` at
    /// the end of the stream.
    async fn fill(&mut self, max_pending: usize) -> io::Result<usize> {
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
        let r = self.s.read(&mut self.buf[old..]).await;
        let n = *r.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        if matches!(r, Ok(0)) {
            self.eof = true;
        }
        r
    }

    /// Read more within the read timeout, or fail.
    async fn more(&mut self, ctx: &Ctx) -> Result<(), Fail> {
        let max = (2 * ctx.cfg.max_header_size).max(READ_CHUNK * 4);
        match tokio::time::timeout(ctx.read_timeout(), self.fill(max)).await {
            Err(_) => Err(Fail::Timeout),
            Ok(Err(e)) => Err(Fail::Io(e)),
            Ok(Ok(0)) => Err(Fail::Closed),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Have at least `n` unread bytes (`n` is bounded by the caller).
    async fn want(&mut self, n: usize, ctx: &Ctx) -> Result<(), Fail> {
        while self.pending().len() < n {
            self.more(ctx).await?;
        }
        Ok(())
    }

    async fn send(&mut self, b: &[u8], ctx: &Ctx) -> Result<(), Fail> {
        match tokio::time::timeout(ctx.read_timeout(), self.s.write_all(b)).await {
            Err(_) => Err(Fail::Timeout),
            Ok(Err(e)) => Err(Fail::Io(e)),
            Ok(Ok(())) => Ok(()),
        }
    }
}

/// Serve one connection to its end.
pub(crate) async fn serve(stream: TcpStream, ctx: Arc<Ctx>) {
    let mut c = Conn {
        s: stream,
        buf: Vec::new(),
        pos: 0,
        eof: false,
    };
    let mut first = true;
    loop {
        let wait = if first {
            ctx.read_timeout()
        } else {
            Duration::from_secs(ctx.cfg.idle_timeout_secs)
        };
        first = false;
        let head = match next_head(&mut c, &ctx, wait).await {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => {
                answer_failure(&mut c, &ctx, e).await;
                break;
            }
        };
        match handle(&mut c, &ctx, head).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                answer_failure(&mut c, &ctx, e).await;
                break;
            }
        }
    }
    let _ = c.s.shutdown().await;
}

/// A protocol error is answered with its status (then the connection
/// closes: the framing is lost); anything else just closes.
async fn answer_failure(c: &mut Conn, ctx: &Ctx, e: Fail) {
    match e {
        Fail::Proto(p) => {
            tracing::info!(error = %p, "ICAP request refused");
            let (code, reason) = p.status();
            let _ = c
                .send(&reply::status(code, reason, &ctx.istag(), true), ctx)
                .await;
        }
        Fail::Timeout => tracing::debug!("ICAP connection timed out mid-request"),
        Fail::Closed => tracing::debug!("ICAP client closed mid-request"),
        Fail::Io(e) => tracing::debug!(error = %e, "ICAP connection error"),
        Fail::TooLarge => {}
    }
}

/// The next request head; `None` when the client closes, the idle timeout
/// passes, or moat shuts down between requests.
async fn next_head(c: &mut Conn, ctx: &Ctx, wait: Duration) -> Result<Option<Head>, Fail> {
    let max = ctx.cfg.max_header_size;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Stray CRLFs between requests are skipped.
        let crlf = c
            .pending()
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        c.consume(crlf);
        if let Some(n) = proto::head_len(c.pending(), max)? {
            let head = proto::parse_head(&c.pending()[..n]);
            c.consume(n);
            return Ok(Some(head?));
        }
        if c.eof {
            return Ok(None);
        }
        tokio::select! {
            r = tokio::time::timeout_at(deadline, c.fill(max + 1)) => match r {
                Err(_) | Ok(Err(_)) | Ok(Ok(0)) => return Ok(None),
                Ok(Ok(_)) => {}
            },
            _ = ctx.shutdown.cancelled() => return Ok(None),
        }
    }
}

/// Answer one request; whether the connection goes on.
async fn handle(c: &mut Conn, ctx: &Ctx, head: Head) -> Result<bool, Fail> {
    let close = head.wants_close();
    if !ctx.cfg.is_service(&head.service) {
        tracing::info!(service = %head.service, "ICAP request for an unknown service");
        c.send(
            &reply::status(404, "ICAP Service Not Found", &ctx.istag(), true),
            ctx,
        )
        .await?;
        return Ok(false);
    }
    match head.method {
        Method::Options => {
            if let Some(v) = head.get("encapsulated") {
                let enc = proto::parse_encapsulated(v, Method::Options)?;
                if enc.body == BodyKind::Options {
                    // Read and drop an OPTIONS body (bounded).
                    let mut n = 0u64;
                    let limit = ctx.cfg.max_header_size as u64;
                    match read_chunks(c, ctx, &mut io::sink(), &mut n, limit).await {
                        Err(Fail::TooLarge) => {
                            return Err(Fail::Proto(ProtoError::BadRequest(
                                "OPTIONS body too large".into(),
                            )));
                        }
                        r => {
                            r?;
                        }
                    }
                }
            }
            c.send(&reply::options(&ctx.cfg, &ctx.istag()), ctx).await?;
            Ok(!close)
        }
        Method::Reqmod | Method::Respmod => modify(c, ctx, &head, close).await,
    }
}

/// The name a scan is recorded under: the URL of the HTTP request.
fn scan_name(req_hdr: Option<&[u8]>, method: Method) -> String {
    let url = req_hdr.map(proto::http_first_line).and_then(|l| {
        let mut p = l.split(' ');
        p.next();
        p.next().map(str::to_string)
    });
    url.unwrap_or_else(|| format!("icap-{}", method.as_str().to_ascii_lowercase()))
}

/// What a message gets.
enum Decision {
    Allow,
    Block(Status, Vec<Threat>),
    ServerError,
}

/// REQMOD or RESPMOD.
async fn modify(c: &mut Conn, ctx: &Ctx, head: &Head, close: bool) -> Result<bool, Fail> {
    let enc_value = head
        .get("encapsulated")
        .ok_or_else(|| Fail::Proto(ProtoError::BadRequest("no Encapsulated header".into())))?;
    let enc = proto::parse_encapsulated(enc_value, head.method)?;
    let preview = head.preview()?;
    let max_hdr = ctx.cfg.max_header_size;
    if enc.body_at > 2 * max_hdr {
        return Err(Fail::Proto(ProtoError::BadRequest(format!(
            "encapsulated HTTP headers longer than {} bytes",
            2 * max_hdr
        ))));
    }
    c.want(enc.body_at, ctx).await?;
    let hdrs = c.pending()[..enc.body_at].to_vec();
    c.consume(enc.body_at);
    let req_hdr = enc.req_hdr.clone().map(|r| &hdrs[r]);
    let res_hdr = enc.res_hdr.clone().map(|r| &hdrs[r]);
    if let Some(h) = req_hdr {
        proto::check_http_head(h, true)?;
    }
    if let Some(h) = res_hdr {
        proto::check_http_head(h, false)?;
    }
    let http_head = match head.method {
        Method::Reqmod => req_hdr,
        _ => res_hdr,
    };
    let name = scan_name(req_hdr, head.method);
    let istag = ctx.istag();

    if enc.body == BodyKind::None {
        // No content: nothing to scan, the message goes through as it is.
        let r = if head.allows_204() || preview.is_some() {
            reply::no_content(&istag, close)
        } else {
            reply::echo_head(&istag, head.method, http_head, false, close)
        };
        c.send(&r, ctx).await?;
        return Ok(!close);
    }

    let mut spool = Spool::new(0, ctx.cfg.max_body_size, &ctx.tmp_dir);
    let mut n = 0u64;
    let max = ctx.cfg.max_body_size;
    let mut continued = false;
    let mut end = read_chunks(c, ctx, &mut spool, &mut n, max).await;
    if preview.is_some() && matches!(end, Ok(false)) {
        // The preview did not hold the whole body: ask for the rest. A
        // decision is never taken on a preview alone.
        c.send(reply::CONTINUE, ctx).await?;
        continued = true;
        end = read_chunks(c, ctx, &mut spool, &mut n, max).await;
    }
    match end {
        Ok(_) => {}
        Err(Fail::TooLarge) => {
            too_large(c, ctx, head, &name, n, &istag).await?;
            return Ok(false);
        }
        Err(e) => return Err(e),
    }
    let may_204 = head.allows_204() || (preview.is_some() && !continued);
    let (blob, sha) = spool.finish().map_err(Fail::Io)?;
    let decision = if blob.is_empty() {
        Decision::Allow
    } else {
        let ct = req_hdr
            .filter(|_| head.method == Method::Reqmod)
            .and_then(|h| proto::http_header(h, "content-type"));
        decide(ctx, &name, ct.as_deref(), blob.clone(), sha).await
    };
    match decision {
        Decision::Allow if may_204 => c.send(&reply::no_content(&istag, close), ctx).await?,
        Decision::Allow => {
            c.send(
                &reply::echo_head(&istag, head.method, http_head, true, close),
                ctx,
            )
            .await?;
            write_chunked(c, ctx, &blob).await?;
        }
        Decision::Block(status, threats) => {
            c.send(&reply::block(&istag, status, &threats, close), ctx)
                .await?
        }
        Decision::ServerError => {
            c.send(&reply::status(500, "Server Error", &istag, close), ctx)
                .await?
        }
    }
    Ok(!close)
}

/// Read chunks into `sink` until the last one; `Ok(ieof)`. The size of
/// each chunk is checked against `limit` on its header, before its data.
async fn read_chunks(
    c: &mut Conn,
    ctx: &Ctx,
    sink: &mut (dyn Write + Send),
    written: &mut u64,
    limit: u64,
) -> Result<bool, Fail> {
    loop {
        let n = loop {
            if let Some(n) = proto::line_len(c.pending())? {
                break n;
            }
            c.more(ctx).await?;
        };
        let line = proto::parse_chunk_line(&c.pending()[..n])?;
        c.consume(n + 2);
        match line {
            ChunkLine::Last { ieof } => {
                for _ in 0..=MAX_TRAILERS {
                    let n = loop {
                        if let Some(n) = proto::line_len(c.pending())? {
                            break n;
                        }
                        c.more(ctx).await?;
                    };
                    c.consume(n + 2);
                    if n == 0 {
                        return Ok(ieof);
                    }
                }
                return Err(Fail::Proto(ProtoError::BadRequest(
                    "too many trailer lines".into(),
                )));
            }
            ChunkLine::Data(size) => {
                if written.saturating_add(size) > limit {
                    return Err(Fail::TooLarge);
                }
                let mut left = size;
                while left > 0 {
                    if c.pending().is_empty() {
                        c.more(ctx).await?;
                    }
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(c.pending().len());
                    sink.write_all(&c.pending()[..take]).map_err(Fail::Io)?;
                    c.consume(take);
                    left -= take as u64;
                    *written += take as u64;
                }
                c.want(2, ctx).await?;
                if !c.pending().starts_with(b"\r\n") {
                    return Err(Fail::Proto(ProtoError::BadRequest(
                        "chunk data not followed by CRLF (bad chunk size)".into(),
                    )));
                }
                c.consume(2);
            }
        }
    }
}

/// Scan the body (a multipart upload part by part) and decide by policy.
async fn decide(
    ctx: &Ctx,
    name: &str,
    content_type: Option<&str>,
    blob: Blob,
    sha: [u8; 32],
) -> Decision {
    let mut scans: Vec<(String, Blob, [u8; 32])> = Vec::new();
    if let Some(Ok(boundary)) = content_type.and_then(moat_proxy::body::multipart_boundary) {
        match moat_proxy::body::multipart_parts(
            &blob,
            &boundary,
            0,
            ctx.cfg.max_body_size,
            &ctx.tmp_dir,
        )
        .await
        {
            Ok(parts) => {
                for p in parts {
                    scans.push((format!("{name} {}", p.name), p.blob, p.sha256));
                }
            }
            Err(e) => {
                tracing::info!(error = %e, name, "ICAP multipart body not parsed: scanning it whole");
            }
        }
    }
    if scans.is_empty() {
        scans.push((name.to_string(), blob, sha));
    }
    let (mut blocked, mut errors_only, mut worst) = (Vec::new(), true, Status::Error);
    for (n, b, s) in scans {
        let verdict = match ctx.service.scan(SOURCE, &n, b, s).await {
            Ok(rec) => rec.verdict,
            Err(e) => {
                tracing::error!(error = %e, name = %n, "ICAP scan failed");
                let mut r = EngineReport::new("icap", Status::Error, Some(Reason::EngineError));
                r.detail = Some(e.to_string());
                Verdict::aggregate(vec![r], vec![], hex(&s), 0, String::new(), 0)
            }
        };
        if matches!(
            ctx.service.policy.action(&verdict),
            Action::Block | Action::Quarantine
        ) {
            if verdict.status != Status::Error {
                if errors_only || rank(verdict.status) > rank(worst) {
                    worst = verdict.status;
                }
                errors_only = false;
            }
            blocked.extend(reply::threats(&verdict, &n, &ctx.cfg.heuristic_names));
        }
    }
    if blocked.is_empty() {
        Decision::Allow
    } else if errors_only && ctx.cfg.on_error == ErrorReply::IcapError {
        Decision::ServerError
    } else {
        Decision::Block(worst, blocked)
    }
}

fn rank(s: Status) -> u8 {
    match s {
        Status::Infected => 4,
        Status::Suspicious => 3,
        Status::Unscannable => 2,
        Status::Error => 1,
        Status::Clean => 0,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A body over `max_body_size`: unscannable (`too_large`), recorded, and
/// answered by policy (default: the block page; `204` when the policy
/// allows it and the client keeps its copy). The rest of the body is not
/// read: the connection closes after the answer.
async fn too_large(
    c: &mut Conn,
    ctx: &Ctx,
    head: &Head,
    name: &str,
    received: u64,
    istag: &str,
) -> Result<(), Fail> {
    let r = EngineReport::new("icap", Status::Unscannable, Some(Reason::TooLarge));
    let v = Verdict::aggregate(vec![r], vec![], String::new(), received, String::new(), 0);
    moat_api::telemetry::scanned(SOURCE, &v, Some(Duration::ZERO));
    let fp = ctx.service.scanner.engine_set().fingerprint().to_string();
    let action = ctx.service.policy.action(&v);
    let mut rec = ScanRecord::new(SOURCE, name, &fp, false, v.clone());
    rec.extra = serde_json::json!({ "action": action });
    if let Err(e) = ctx.service.store.record(&rec).await {
        tracing::error!(error = %e, "could not record an over-limit ICAP body");
    }
    tracing::info!(
        name,
        limit = ctx.cfg.max_body_size,
        "ICAP body over max_body_size: unscannable"
    );
    let out = match action {
        Action::Allow | Action::TagOnly if head.allows_204() => reply::no_content(istag, true),
        _ => reply::block(
            istag,
            Status::Unscannable,
            &reply::threats(&v, name, &ctx.cfg.heuristic_names),
            true,
        ),
    };
    c.send(&out, ctx).await
}

/// The body back to the client, chunked, read from its spool.
async fn write_chunked(c: &mut Conn, ctx: &Ctx, blob: &Blob) -> Result<(), Fail> {
    let len = blob.len();
    let mut off = 0u64;
    while off < len {
        let want = usize::try_from(len - off)
            .unwrap_or(usize::MAX)
            .min(ECHO_PIECE);
        let b = blob.clone();
        let piece = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
            let mut buf = vec![0u8; want];
            let mut got = 0;
            while got < want {
                let n = b.read_at(off + got as u64, &mut buf[got..])?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            buf.truncate(got);
            Ok(buf)
        })
        .await
        .map_err(|e| Fail::Io(io::Error::other(e)))?
        .map_err(Fail::Io)?;
        if piece.is_empty() {
            return Err(Fail::Io(io::Error::other(
                "spooled body shorter than its length",
            )));
        }
        let mut out = format!("{:x}\r\n", piece.len()).into_bytes();
        out.extend_from_slice(&piece);
        out.extend_from_slice(b"\r\n");
        c.send(&out, ctx).await?;
        off += piece.len() as u64;
    }
    c.send(b"0\r\n\r\n", ctx).await
}

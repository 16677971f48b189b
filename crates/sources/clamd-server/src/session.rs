//! A connection's conversation: one command (or an IDSESSION of numbered
//! ones), each answered in clamd's words, every scan through the shared
//! `ScanService` (source `clamd`).

use crate::config::ClamdServerConfig;
use crate::conn::Conn;
use crate::proto::{self, Command, Framing, MAX_COMMAND, Split};
use crate::reply::{self, Outcome};
use futures_util::StreamExt;
use moat_api::ScanService;
use moat_core::{Blob, Spool};
use moat_role::Shutdown;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Source name in records and metrics.
pub const SOURCE: &str = "clamd";

/// Asks moat to reload its engines (RELOAD).
pub type ReloadHook = Arc<dyn Fn() + Send + Sync>;

/// What every connection shares.
pub(crate) struct Ctx {
    pub(crate) cfg: ClamdServerConfig,
    pub(crate) service: ScanService,
    pub(crate) tmp_dir: PathBuf,
    /// `allow_roots`, canonical.
    pub(crate) roots: Vec<PathBuf>,
    pub(crate) reload: Option<ReloadHook>,
    pub(crate) shutdown: Shutdown,
    /// Connections being served.
    pub(crate) live: AtomicUsize,
}

/// How replies to one command are written: numbered inside an IDSESSION,
/// ended by the terminator of the command's framing.
#[derive(Clone, Copy)]
struct Out {
    number: Option<u64>,
    term: &'static [u8],
}

impl Out {
    async fn send(self, conn: &mut Conn, line: &str) -> io::Result<()> {
        let mut b = Vec::with_capacity(line.len() + 16);
        if let Some(n) = self.number {
            b.extend_from_slice(format!("{n}: ").as_bytes());
        }
        b.extend_from_slice(line.as_bytes());
        b.extend_from_slice(self.term);
        conn.write_all(&b).await
    }
}

/// After a command: go on (inside a session) or close.
#[derive(PartialEq, Eq)]
enum After {
    Continue,
    Close,
}

enum Next {
    Cmd(Framing, Result<Command, proto::Refused>),
    TimedOut,
    Closed,
}

/// Serve one connection to its end.
pub(crate) async fn serve(mut conn: Conn, ctx: Arc<Ctx>) {
    let timeout = Duration::from_secs(ctx.cfg.command_timeout_secs);
    let r = match next_command(&mut conn, timeout, &ctx.shutdown).await {
        Next::TimedOut => conn.write_all(b"COMMAND READ TIMED OUT\n").await,
        Next::Closed => Ok(()),
        Next::Cmd(f, Err(_)) => conn_send(&mut conn, f, "UNKNOWN COMMAND").await,
        Next::Cmd(_, Ok(Command::IdSession)) => session(&mut conn, &ctx).await,
        Next::Cmd(_, Ok(Command::End)) => Ok(()),
        Next::Cmd(f, Ok(c)) => {
            let out = Out {
                number: None,
                term: f.terminator(),
            };
            exec(&mut conn, &ctx, c, out).await.map(|_| ())
        }
    };
    if let Err(e) = r {
        tracing::debug!(error = %e, "clamd connection ended with an error");
    }
    conn.shutdown().await;
}

async fn conn_send(conn: &mut Conn, f: Framing, line: &str) -> io::Result<()> {
    Out {
        number: None,
        term: f.terminator(),
    }
    .send(conn, line)
    .await
}

/// Commands numbered from 1 until END, idle timeout, or a refused command.
async fn session(conn: &mut Conn, ctx: &Ctx) -> io::Result<()> {
    let idle = Duration::from_secs(ctx.cfg.idle_timeout_secs);
    let mut n = 0u64;
    loop {
        let (f, cmd) = match next_command(conn, idle, &ctx.shutdown).await {
            Next::Cmd(f, c) => (f, c),
            Next::TimedOut | Next::Closed => return Ok(()),
        };
        n += 1;
        let out = Out {
            number: Some(n),
            term: f.terminator(),
        };
        match cmd {
            Err(_) => return out.send(conn, "UNKNOWN COMMAND").await,
            Ok(Command::End) => return Ok(()),
            Ok(c) if !c.allowed_in_session() => {
                return out
                    .send(conn, "Command invalid inside IDSESSION. ERROR")
                    .await;
            }
            Ok(c) => {
                if exec(conn, ctx, c, out).await? == After::Close {
                    return Ok(());
                }
            }
        }
    }
}

/// The next command, within `timeout`. Stray NUL bytes between commands
/// (the byte clamdscan sends with a passed descriptor) are skipped.
async fn next_command(conn: &mut Conn, timeout: Duration, shutdown: &Shutdown) -> Next {
    let deadline = Instant::now() + timeout;
    loop {
        let nuls = conn.pending().iter().take_while(|b| **b == 0).count();
        conn.consume(nuls);
        let found = match proto::split(conn.pending(), conn.eof) {
            Split::Command {
                framing,
                text,
                used,
            } => Some((framing, proto::parse(framing, text), used)),
            Split::TooLong => return Next::Closed,
            Split::Incomplete => None,
        };
        if let Some((framing, cmd, used)) = found {
            conn.consume(used);
            return Next::Cmd(framing, cmd);
        }
        if conn.eof {
            return Next::Closed;
        }
        tokio::select! {
            r = tokio::time::timeout_at(deadline, conn.fill(MAX_COMMAND + 2)) => match r {
                Err(_) => return Next::TimedOut,
                Ok(Err(_)) => return Next::Closed,
                Ok(Ok(_)) => {}
            },
            _ = shutdown.cancelled() => return Next::Closed,
        }
    }
}

async fn exec(conn: &mut Conn, ctx: &Ctx, cmd: Command, out: Out) -> io::Result<After> {
    match cmd {
        Command::Ping => out.send(conn, "PONG").await?,
        Command::Version => out.send(conn, &version(ctx)).await?,
        Command::VersionCommands => {
            let line = format!("{}| COMMANDS: {}", version(ctx), proto::COMMANDS);
            out.send(conn, &line).await?
        }
        Command::Reload => {
            match &ctx.reload {
                Some(r) => {
                    tracing::info!("clamd RELOAD: reloading engines");
                    r();
                }
                None => tracing::warn!("clamd RELOAD: no reload hook configured"),
            }
            out.send(conn, "RELOADING").await?;
            return Ok(After::Close);
        }
        Command::Shutdown | Command::Quit => {
            if ctx.cfg.enable_shutdown {
                tracing::warn!("clamd SHUTDOWN received: stopping moat");
                ctx.shutdown.trigger();
                return Ok(After::Close);
            }
            out.send(conn, "SHUTDOWN is disabled. ERROR").await?;
            return Ok(After::Close);
        }
        Command::Stats => out.send(conn, &stats(ctx)).await?,
        Command::Instream => return instream(conn, ctx, out).await,
        Command::Fildes => return fildes(conn, ctx, out).await,
        Command::Scan(p) => return path_scan(conn, ctx, out, p, Mode::First).await,
        Command::ContScan(p) => return path_scan(conn, ctx, out, p, Mode::Continue).await,
        Command::MultiScan(p) => return path_scan(conn, ctx, out, p, Mode::Parallel).await,
        Command::AllMatchScan(p) => return path_scan(conn, ctx, out, p, Mode::AllMatch).await,
        Command::IdSession | Command::End => {
            out.send(conn, "Command invalid inside IDSESSION. ERROR")
                .await?;
            return Ok(After::Close);
        }
    }
    Ok(After::Continue)
}

/// `moat <version>/<signature version>/<date>`, three parts as clamd's
/// `ClamAV 1.4.3/<db version>/<db date>` (clients split on `/` and some
/// accept one part only when it starts with `ClamAV`). The signature
/// version is the first engine's that has one (else `0`), the date that of
/// the newest database (else the engines' load time).
fn version(ctx: &Ctx) -> String {
    let set = ctx.service.scanner.engine_set();
    let infos = set.infos();
    let sig = infos
        .iter()
        .map(|i| i.signature_version.as_str())
        .find(|s| !s.is_empty())
        .unwrap_or("0");
    let when = infos
        .iter()
        .filter_map(|i| i.built_at)
        .max()
        .unwrap_or(set.loaded_at);
    let sig: String = sig
        .chars()
        .map(|c| if c == '/' { '-' } else { c })
        .collect();
    proto::clean_line(&format!(
        "moat {}/{sig}/{}",
        env!("CARGO_PKG_VERSION"),
        ctime(when)
    ))
}

/// `Mon Nov 30 10:23:02 2026` (UTC), the date format clamd's VERSION uses.
pub(crate) fn ctime(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {y}",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// clamd's STATS layout (inner lines end in `\n`; the reply's own
/// terminator follows `END`). Memory figures are not tracked: `N/A`, as
/// clamd prints on systems without mallinfo.
fn stats(ctx: &Ctx) -> String {
    let live = ctx.live.load(Ordering::Relaxed);
    let max = ctx.cfg.max_connections;
    format!(
        "POOLS: 1\n\nSTATE: VALID PRIMARY\nTHREADS: live {live}  idle {} max {max} idle-timeout {}\nQUEUE: 0 items\n\tSTATS 0.000000 \n\nMEMSTATS: heap N/A mmap N/A used N/A free N/A releasable N/A pools 1 pools_used N/A pools_total N/A\nEND",
        max.saturating_sub(live),
        ctx.cfg.idle_timeout_secs
    )
}

/// Have at least `n` unread bytes, reading within `timeout`.
enum Ready {
    Yes,
    Eof,
    TimedOut,
}

async fn want(conn: &mut Conn, n: usize, timeout: Duration, shutdown: &Shutdown) -> Ready {
    let deadline = Instant::now() + timeout;
    while conn.pending().len() < n {
        if conn.eof {
            return Ready::Eof;
        }
        tokio::select! {
            r = tokio::time::timeout_at(deadline, conn.fill(256 << 10)) => match r {
                Err(_) => return Ready::TimedOut,
                Ok(Err(_)) => return Ready::Eof,
                Ok(Ok(_)) => {}
            },
            // A stream cut short by the shutdown gets no verdict.
            _ = shutdown.cancelled() => return Ready::Eof,
        }
    }
    Ready::Yes
}

/// `INSTREAM`: 4-byte big-endian lengths, each followed by that many
/// bytes, a zero length at the end; spooled (memory, then an anonymous
/// 0600 file) and scanned as `stream`.
async fn instream(conn: &mut Conn, ctx: &Ctx, out: Out) -> io::Result<After> {
    let max = ctx.cfg.stream_max_length;
    let timeout = Duration::from_secs(ctx.cfg.read_timeout_secs);
    let mut spool = Spool::new(ctx.cfg.spool_threshold, max, &ctx.tmp_dir);
    loop {
        match want(conn, 4, timeout, &ctx.shutdown).await {
            Ready::Yes => {}
            Ready::Eof => return Ok(After::Close),
            Ready::TimedOut => {
                conn.write_all(b"COMMAND READ TIMED OUT\n").await?;
                return Ok(After::Close);
            }
        }
        let p = conn.pending();
        let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
        conn.consume(4);
        if len == 0 {
            break;
        }
        if spool.len() + u64::from(len) > max {
            // Checked on the header, before the data: clamd's words, then
            // drain a little so the client reads them before the close.
            out.send(conn, "INSTREAM size limit exceeded. ERROR")
                .await?;
            drain(conn).await;
            return Ok(After::Close);
        }
        let mut left = len as usize;
        while left > 0 {
            if conn.pending().is_empty() {
                match want(conn, 1, timeout, &ctx.shutdown).await {
                    Ready::Yes => {}
                    Ready::Eof => return Ok(After::Close),
                    Ready::TimedOut => {
                        conn.write_all(b"COMMAND READ TIMED OUT\n").await?;
                        return Ok(After::Close);
                    }
                }
            }
            let take = left.min(conn.pending().len());
            if let Err(e) = spool.write_all(&conn.pending()[..take]) {
                tracing::error!(error = %e, "clamd INSTREAM: spooling failed");
                out.send(conn, "stream: Can't write to temporary file ERROR")
                    .await?;
                return Ok(After::Close);
            }
            conn.consume(take);
            left -= take;
        }
    }
    let outcomes = match spool.finish() {
        Ok((blob, sha)) => scan_blob(ctx, "stream", blob, sha, false).await,
        Err(e) => {
            tracing::error!(error = %e, "clamd INSTREAM: spool");
            vec![Outcome::Error("Can't write to temporary file".into())]
        }
    };
    for o in outcomes {
        out.send(conn, &o.line("stream")).await?;
    }
    Ok(After::Continue)
}

/// Read and drop what the client is still sending, briefly and boundedly.
async fn drain(conn: &mut Conn) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut total = 0usize;
    while total < (64 << 20) {
        let n = conn.pending().len();
        conn.consume(n);
        total += n;
        match tokio::time::timeout_at(deadline, conn.fill(256 << 10)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => {}
        }
    }
}

/// Scan content through the service; its outcomes (all signatures with `all`).
async fn scan_blob(ctx: &Ctx, name: &str, blob: Blob, sha: [u8; 32], all: bool) -> Vec<Outcome> {
    let scanned = if all {
        ctx.service.scan_all_matches(SOURCE, name, blob, sha).await
    } else {
        ctx.service.scan(SOURCE, name, blob, sha).await
    };
    match scanned {
        Ok(rec) => reply::outcomes(&rec.verdict, &ctx.cfg, all),
        Err(e) => {
            tracing::error!(error = %e, name, "clamd scan failed");
            vec![Outcome::Error(e.to_string())]
        }
    }
}

/// `FILDES`: the descriptor passed over the Unix socket, scanned as `fd[N]`.
async fn fildes(conn: &mut Conn, ctx: &Ctx, out: Out) -> io::Result<After> {
    const NO_FD: &str = "FILDES: didn't receive file descriptor. ERROR";
    if !conn.is_unix() {
        out.send(conn, NO_FD).await?;
        return Ok(After::Close);
    }
    let deadline = Instant::now() + Duration::from_secs(ctx.cfg.read_timeout_secs);
    let fd = loop {
        if let Some(fd) = conn.take_fd() {
            break fd;
        }
        if conn.eof {
            out.send(conn, NO_FD).await?;
            return Ok(After::Close);
        }
        match tokio::time::timeout_at(deadline, conn.fill(MAX_COMMAND + 2)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => {
                out.send(conn, NO_FD).await?;
                return Ok(After::Close);
            }
        }
    };
    let name = format!("fd[{}]", fd.as_raw_fd());
    let (threshold, max, dir) = (
        ctx.cfg.spool_threshold,
        ctx.cfg.stream_max_length,
        ctx.tmp_dir.clone(),
    );
    let got = tokio::task::spawn_blocking(move || blob_from_fd(fd, threshold, max, &dir)).await;
    let outcomes = match got {
        Ok(Ok((blob, sha))) => scan_blob(ctx, &name, blob, sha, false).await,
        Ok(Err(e)) => vec![Outcome::Error(format!("Can't read file: {e}"))],
        Err(e) => vec![Outcome::Error(format!("Can't read file: {e}"))],
    };
    for o in outcomes {
        out.send(conn, &o.line(&name)).await?;
    }
    Ok(After::Continue)
}

/// A regular file is scanned in place (positional reads); anything else
/// (a pipe) is read into a spool, within the stream limit.
fn blob_from_fd(
    fd: OwnedFd,
    threshold: usize,
    max: u64,
    dir: &Path,
) -> io::Result<(Blob, [u8; 32])> {
    let mut file = std::fs::File::from(fd);
    let meta = file.metadata()?;
    if meta.is_file() {
        let blob = Blob::File {
            file: Arc::new(file),
            len: meta.len(),
        };
        let sha = blob.sha256()?;
        return Ok((blob, sha));
    }
    let mut spool = Spool::new(threshold, max, dir);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        spool.write_all(&buf[..n])?;
    }
    spool.finish()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// SCAN: stop at the first detection.
    First,
    /// CONTSCAN: go on after a detection.
    Continue,
    /// MULTISCAN: as CONTSCAN, several files at once.
    Parallel,
    /// ALLMATCHSCAN: every signature of every file.
    AllMatch,
}

enum Resolved {
    Denied,
    Missing(String),
    File(PathBuf),
    Dir(PathBuf),
    Other,
}

/// Resolve symlinks, then check the result against the allowed roots. A
/// path that does not exist is reported missing only when it would have
/// been allowed, so the answer does not reveal what exists elsewhere.
fn resolve(req: &Path, roots: &[PathBuf]) -> Resolved {
    match std::fs::canonicalize(req) {
        Ok(c) => {
            if !roots.iter().any(|r| c.starts_with(r)) {
                return Resolved::Denied;
            }
            match std::fs::symlink_metadata(&c) {
                Ok(m) if m.is_dir() => Resolved::Dir(c),
                Ok(m) if m.is_file() => Resolved::File(c),
                Ok(_) => Resolved::Other,
                Err(e) => Resolved::Missing(e.to_string()),
            }
        }
        Err(e) => {
            let plain = req.is_absolute()
                && !req
                    .components()
                    .any(|c| matches!(c, Component::ParentDir | Component::CurDir));
            if plain && roots.iter().any(|r| req.starts_with(r)) {
                Resolved::Missing(e.to_string())
            } else {
                Resolved::Denied
            }
        }
    }
}

/// SCAN/CONTSCAN/MULTISCAN/ALLMATCHSCAN of a file or a directory tree
/// (symlinks inside are not followed; each file opened with O_NOFOLLOW).
async fn path_scan(
    conn: &mut Conn,
    ctx: &Ctx,
    out: Out,
    raw: Vec<u8>,
    mode: Mode,
) -> io::Result<After> {
    use std::os::unix::ffi::OsStringExt;
    let req = PathBuf::from(std::ffi::OsString::from_vec(raw));
    let shown = req.to_string_lossy().into_owned();
    let roots = ctx.roots.clone();
    let r2 = req.clone();
    let resolved = tokio::task::spawn_blocking(move || resolve(&r2, &roots))
        .await
        .unwrap_or(Resolved::Denied);
    let all = mode == Mode::AllMatch;
    match resolved {
        Resolved::Denied => {
            tracing::warn!(path = %shown, "clamd path scan outside the allowed roots: denied");
            out.send(
                conn,
                &format!("{}: Access denied. ERROR", proto::clean_line(&shown)),
            )
            .await?;
        }
        Resolved::Missing(e) => {
            let line = Outcome::Error(format!("lstat() failed: {e}.")).line(&shown);
            out.send(conn, &line).await?;
        }
        Resolved::Other => {
            let line = Outcome::Error("Not supported file type.".into()).line(&shown);
            out.send(conn, &line).await?;
        }
        Resolved::File(p) => {
            for o in scan_file(ctx, p, all).await {
                out.send(conn, &o.line(&shown)).await?;
            }
        }
        Resolved::Dir(dir) => scan_dir(conn, ctx, out, dir, &shown, mode).await?,
    }
    Ok(After::Continue)
}

async fn scan_file(ctx: &Ctx, path: PathBuf, all: bool) -> Vec<Outcome> {
    let p = path.clone();
    let opened = tokio::task::spawn_blocking(move || -> io::Result<(Blob, [u8; 32])> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&p)?;
        let meta = f.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let blob = Blob::File {
            file: Arc::new(f),
            len: meta.len(),
        };
        let sha = blob.sha256()?;
        Ok((blob, sha))
    })
    .await;
    match opened {
        Ok(Ok((blob, sha))) => scan_blob(ctx, &path.to_string_lossy(), blob, sha, all).await,
        Ok(Err(e)) => vec![Outcome::Error(format!("Can't open file: {e}."))],
        Err(e) => vec![Outcome::Error(format!("Can't open file: {e}."))],
    }
}

/// Walk `dir` on a blocking thread (bounded channel, so a huge tree costs
/// no memory), scanning files as they come: one at a time, or
/// `multiscan_parallel` at once for MULTISCAN. Only FOUND and ERROR lines
/// are sent per file; `<dir>: OK` ends a tree where every file was clean.
async fn scan_dir(
    conn: &mut Conn,
    ctx: &Ctx,
    out: Out,
    dir: PathBuf,
    shown: &str,
    mode: Mode,
) -> io::Result<()> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<PathBuf, (PathBuf, String)>>(64);
    let max_files = ctx.cfg.max_files_per_command;
    let walk_dir = dir.clone();
    tokio::task::spawn_blocking(move || {
        let mut n = 0u64;
        for e in walkdir::WalkDir::new(&walk_dir)
            .follow_links(false)
            .sort_by_file_name()
        {
            let item = match e {
                Ok(e) if e.file_type().is_file() => Ok(e.into_path()),
                Ok(_) => continue, // directories, symlinks (not followed), sockets...
                Err(err) => Err((
                    err.path()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| walk_dir.clone()),
                    err.io_error()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| err.to_string()),
                )),
            };
            n += 1;
            if n > max_files {
                let _ = tx.blocking_send(Err((
                    walk_dir.clone(),
                    format!("more than {max_files} files"),
                )));
                return;
            }
            if tx.blocking_send(item).is_err() {
                return;
            }
        }
    });
    let parallel = if mode == Mode::Parallel {
        ctx.cfg.multiscan_parallel
    } else {
        1
    };
    let all = mode == Mode::AllMatch;
    let items =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) });
    let results = items
        .map(|item| async move {
            match item {
                Ok(p) => {
                    let o = scan_file(ctx, p.clone(), all).await;
                    (p, o)
                }
                Err((p, e)) => (p, vec![Outcome::Error(format!("{e}."))]),
            }
        })
        .buffer_unordered(parallel);
    let mut results = std::pin::pin!(results);
    let (mut found, mut failed) = (false, false);
    while let Some((path, outcomes)) = results.next().await {
        let name = path.to_string_lossy();
        for o in &outcomes {
            match o {
                Outcome::Ok => {}
                Outcome::Found(_) => {
                    found = true;
                    out.send(conn, &o.line(&name)).await?;
                }
                Outcome::Error(_) => {
                    failed = true;
                    out.send(conn, &o.line(&name)).await?;
                }
            }
        }
        if found && mode == Mode::First {
            break;
        }
    }
    if !found && !failed {
        out.send(conn, &format!("{}: OK", proto::clean_line(shown)))
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_matches_clamd_dates() {
        assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(ctime(1_796_034_182), "Mon Nov 30 10:23:02 2026");
        assert_eq!(ctime(951_782_400), "Tue Feb 29 00:00:00 2000");
    }

    #[test]
    fn paths_outside_the_roots_are_denied_even_through_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root_c = std::fs::canonicalize(root.path()).unwrap();
        let roots = vec![root_c.clone()];
        std::fs::write(root.path().join("f"), b"x").unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("link"))
            .unwrap();
        assert!(matches!(
            resolve(&root.path().join("f"), &roots),
            Resolved::File(_)
        ));
        assert!(matches!(resolve(root.path(), &roots), Resolved::Dir(_)));
        assert!(matches!(
            resolve(&root.path().join("link"), &roots),
            Resolved::Denied
        ));
        assert!(matches!(
            resolve(&outside.path().join("secret"), &roots),
            Resolved::Denied
        ));
        assert!(matches!(
            resolve(
                &root
                    .path()
                    .join("../")
                    .join(outside.path().file_name().unwrap()),
                &roots
            ),
            Resolved::Denied
        ));
        assert!(matches!(
            resolve(&root_c.join("nope"), &roots),
            Resolved::Missing(_)
        ));
        // Whether something exists outside is not revealed.
        assert!(matches!(
            resolve(Path::new("/nonexistent/x"), &roots),
            Resolved::Denied
        ));
    }
}

//! `.cdiff` incremental updates, as ClamAV reads and applies them
//! (`libclamav_rust/src/cdiff.rs`).
//!
//! A cdiff is `ClamAV-Diff:VERSION:SCRIPT_SIZE:`, a gzip stream of the
//! script, then `:` and a signature of the SHA-256 of everything before that
//! colon (`cli_versig2` under the cdiff key). The script edits the unpacked
//! database in a directory, line by line:
//! * `OPEN name` / `CLOSE`: the file being edited; at `CLOSE` the
//!   collected `DEL`/`XCHG` edits are applied in line order (each must find
//!   its line starting with the given prefix, and every edit must be used),
//!   then `ADD` lines are appended;
//! * `ADD line`, `DEL n prefix`, `XCHG n prefix new-line`;
//! * `MOVE src dst n1 prefix1 n2 prefix2`: lines n1..=n2 of `src` are
//!   appended to `dst` and removed from `src`;
//! * `UNLINK name`; lines starting with `#` are comments.
//!
//! File names are plain names (letters, digits, `.`, `_`): nothing outside
//! the directory can be named.

use moat_builtin::dsig::{self, PublicKey};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Most bytes of a signature (`SIG_SIZE`).
const SIG_SIZE: u64 = 350;
/// Longest script line.
const MAX_LINE: usize = 16 << 20;
/// Most script bytes decompressed.
const MAX_SCRIPT: u64 = 2 << 30;

#[derive(Debug, thiserror::Error)]
pub enum CdiffError {
    #[error("not a cdiff (no \"ClamAV-Diff:\" header)")]
    BadMagic,
    #[error("malformed cdiff header")]
    BadHeader,
    #[error("the cdiff is for version {found}, expected {expected}")]
    WrongVersion { expected: u64, found: u64 },
    #[error("no digital signature at the end of the cdiff")]
    NoSignature,
    #[error("the cdiff's digital signature does not verify with the public key")]
    BadSignature,
    #[error("script line {line}: {msg}")]
    Script { line: u64, msg: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn script(line: u64, msg: impl Into<String>) -> CdiffError {
    CdiffError::Script {
        line,
        msg: msg.into(),
    }
}

/// Check the signature of the cdiff in `f` and return the offset of the
/// gzip stream and the version in its header.
pub fn verify(f: &mut File, key: &PublicKey) -> Result<(u64, u64), CdiffError> {
    let len = f.metadata()?.len();
    let tail_len = len.min(SIG_SIZE + 1);
    f.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = Vec::with_capacity(tail_len as usize);
    #[allow(clippy::disallowed_methods)] // bounded by take()
    (&mut *f).take(tail_len).read_to_end(&mut tail)?;
    let colon = tail
        .iter()
        .rposition(|&b| b == b':')
        .ok_or(CdiffError::NoSignature)?;
    let sig = std::str::from_utf8(&tail[colon + 1..]).map_err(|_| CdiffError::NoSignature)?;
    let sig = sig.trim_end_matches(['\n', '\r']);
    if sig.is_empty() {
        return Err(CdiffError::NoSignature);
    }
    let signed_len = len - tail_len + colon as u64;
    f.seek(SeekFrom::Start(0))?;
    let mut h = Sha256::new();
    std::io::copy(&mut (&mut *f).take(signed_len), &mut h)?;
    let digest: [u8; 32] = h.finalize().into();
    if !dsig::verify_sha256_with(key, &digest, sig) {
        return Err(CdiffError::BadSignature);
    }
    // Header: ClamAV-Diff:VERSION:SIZE:
    f.seek(SeekFrom::Start(0))?;
    let mut head = Vec::new();
    #[allow(clippy::disallowed_methods)] // bounded by take()
    (&mut *f).take(256).read_to_end(&mut head)?;
    if !head.starts_with(b"ClamAV-Diff:") {
        return Err(CdiffError::BadMagic);
    }
    let mut colons = 0;
    let mut end = None;
    for (i, &b) in head.iter().enumerate() {
        if b == b':' {
            colons += 1;
            if colons == 3 {
                end = Some(i);
                break;
            }
        }
    }
    let end = end.ok_or(CdiffError::BadHeader)?;
    let text = std::str::from_utf8(&head[..end]).map_err(|_| CdiffError::BadHeader)?;
    let mut fields = text.split(':').skip(1);
    let version: u64 = fields
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or(CdiffError::BadHeader)?;
    let _size: u32 = fields
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or(CdiffError::BadHeader)?;
    Ok((end as u64 + 1, version))
}

/// Verify the cdiff at `path` (which must be for `version`) and apply it to
/// the unpacked database in `dir`.
pub fn apply_file(
    path: &Path,
    dir: &Path,
    version: u64,
    key: &PublicKey,
) -> Result<(), CdiffError> {
    let mut f = File::open(path)?;
    let (offset, found) = verify(&mut f, key)?;
    if found != version {
        return Err(CdiffError::WrongVersion {
            expected: version,
            found,
        });
    }
    f.seek(SeekFrom::Start(offset))?;
    let gz = flate2::read::GzDecoder::new(BufReader::new(f));
    apply_script(BufReader::new(gz.take(MAX_SCRIPT)), dir)
}

/// A `DEL` or `XCHG` waiting for `CLOSE`.
struct Edit {
    prefix: Vec<u8>,
    new_line: Option<Vec<u8>>,
}

#[derive(Default)]
struct Ctx {
    open: Option<String>,
    edits: BTreeMap<u64, Edit>,
    additions: Vec<u8>,
}

/// Whether `name` is a plain file name ClamAV accepts in a script.
fn db_name(line: u64, raw: &[u8]) -> Result<String, CdiffError> {
    let name = std::str::from_utf8(raw).map_err(|_| script(line, "database name not UTF-8"))?;
    if !crate::valid_name(name) {
        return Err(script(line, format!("invalid database name {name:?}")));
    }
    Ok(name.to_string())
}

fn number(line: u64, raw: Option<&[u8]>, what: &str) -> Result<u64, CdiffError> {
    raw.and_then(|r| std::str::from_utf8(r).ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| script(line, format!("bad or missing {what}")))
}

/// Run a script (already decompressed) against `dir`.
pub fn apply_script(mut r: impl BufRead, dir: &Path) -> Result<(), CdiffError> {
    let mut ctx = Ctx::default();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        line_no += 1;
        buf.clear();
        let n = (&mut r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        if buf.len() > MAX_LINE {
            return Err(script(line_no, "line too long"));
        }
        if buf.first() == Some(&b'#') {
            continue;
        }
        command(&mut ctx, &buf, line_no, dir)?;
    }
    if let Some(open) = ctx.open {
        return Err(script(line_no, format!("{open} is still open at the end")));
    }
    Ok(())
}

fn command(ctx: &mut Ctx, line: &[u8], n: u64, dir: &Path) -> Result<(), CdiffError> {
    let split = line
        .iter()
        .position(|&b| b == b' ' || b == b'\n')
        .unwrap_or(line.len());
    let cmd = &line[..split];
    let rest_nl = line.get(split + 1..).unwrap_or(&[]);
    let rest = rest_nl.strip_suffix(b"\n");
    let need_open = |ctx: &Ctx, what: &str| {
        if ctx.open.is_none() {
            Err(script(n, format!("no database open for {what}")))
        } else {
            Ok(())
        }
    };
    match cmd {
        b"OPEN" => {
            let name = db_name(n, rest.unwrap_or(rest_nl))?;
            if let Some(o) = &ctx.open {
                return Err(script(n, format!("{o} not closed before opening {name}")));
            }
            ctx.open = Some(name);
        }
        b"ADD" => {
            need_open(ctx, "ADD")?;
            ctx.additions.extend_from_slice(rest_nl);
        }
        b"DEL" => {
            need_open(ctx, "DEL")?;
            let rest = rest.ok_or_else(|| script(n, "DEL without a final newline"))?;
            let mut it = rest.split(|&b| b == b' ');
            let at = number(n, it.next(), "DEL line number")?;
            let prefix = it
                .next()
                .ok_or_else(|| script(n, "DEL without a line prefix"))?;
            ctx.edits.insert(
                at,
                Edit {
                    prefix: prefix.to_vec(),
                    new_line: None,
                },
            );
        }
        b"XCHG" => {
            need_open(ctx, "XCHG")?;
            let rest = rest.ok_or_else(|| script(n, "XCHG without a final newline"))?;
            let mut it = rest.splitn(3, |&b| b == b' ');
            let at = number(n, it.next(), "XCHG line number")?;
            let prefix = it
                .next()
                .ok_or_else(|| script(n, "XCHG without a line prefix"))?;
            let new_line = it
                .next()
                .ok_or_else(|| script(n, "XCHG without a new line"))?;
            ctx.edits.insert(
                at,
                Edit {
                    prefix: prefix.to_vec(),
                    new_line: Some(new_line.to_vec()),
                },
            );
        }
        b"CLOSE" => close(ctx, n, dir)?,
        b"UNLINK" => {
            let name = db_name(n, rest.unwrap_or(rest_nl))?;
            if let Some(o) = &ctx.open {
                return Err(script(n, format!("UNLINK while {o} is open")));
            }
            std::fs::remove_file(dir.join(&name))
                .map_err(|e| script(n, format!("UNLINK {name}: {e}")))?;
        }
        b"MOVE" => {
            if let Some(o) = &ctx.open {
                return Err(script(n, format!("MOVE while {o} is open")));
            }
            let rest = rest.ok_or_else(|| script(n, "MOVE without a final newline"))?;
            move_lines(rest, n, dir)?;
        }
        other => {
            return Err(script(
                n,
                format!("unknown command {:?}", String::from_utf8_lossy(other)),
            ));
        }
    }
    Ok(())
}

fn tmp_in(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new().prefix(".cdiff-").tempfile_in(dir)
}

fn close(ctx: &mut Ctx, n: u64, dir: &Path) -> Result<(), CdiffError> {
    let name = ctx
        .open
        .take()
        .ok_or_else(|| script(n, "CLOSE without OPEN"))?;
    let path = dir.join(&name);
    let edits = std::mem::take(&mut ctx.edits);
    if !edits.is_empty() {
        let mut src = BufReader::new(
            File::open(&path).map_err(|e| script(n, format!("CLOSE: opening {name}: {e}")))?,
        );
        let tmp = tmp_in(dir)?;
        let mut out = BufWriter::new(tmp.as_file());
        let mut pending = edits.into_iter().peekable();
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        loop {
            buf.clear();
            if (&mut src)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf)?
                == 0
            {
                break;
            }
            line_no += 1;
            if buf.pop() != Some(b'\n') {
                return Err(script(
                    n,
                    format!("{name} line {line_no} has no final newline"),
                ));
            }
            match pending.peek() {
                Some((at, e)) if *at == line_no => {
                    if !buf.starts_with(&e.prefix) {
                        return Err(script(
                            n,
                            format!("{name} line {line_no} does not match the edit's pattern"),
                        ));
                    }
                    if let Some((_, e)) = pending.next()
                        && let Some(new) = e.new_line
                    {
                        out.write_all(&new)?;
                        out.write_all(b"\n")?;
                    }
                }
                _ => {
                    out.write_all(&buf)?;
                    out.write_all(b"\n")?;
                }
            }
        }
        if let Some((at, _)) = pending.next() {
            return Err(script(n, format!("{name} has no line {at} for an edit")));
        }
        out.flush()?;
        drop(out);
        tmp.persist(&path).map_err(|e| e.error)?;
    }
    if !ctx.additions.is_empty() {
        let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
        f.write_all(&ctx.additions)?;
        ctx.additions.clear();
    }
    Ok(())
}

fn move_lines(rest: &[u8], n: u64, dir: &Path) -> Result<(), CdiffError> {
    let mut it = rest.split(|&b| b == b' ');
    let src = db_name(n, it.next().unwrap_or_default())?;
    let dst = db_name(n, it.next().unwrap_or_default())?;
    let start = number(n, it.next(), "MOVE start line")?;
    let start_prefix = it.next().ok_or_else(|| script(n, "MOVE start pattern"))?;
    let end = number(n, it.next(), "MOVE end line")?;
    let end_prefix = it.next().ok_or_else(|| script(n, "MOVE end pattern"))?;
    let mut dst_f = OpenOptions::new()
        .append(true)
        .open(dir.join(&dst))
        .map_err(|e| script(n, format!("MOVE: opening {dst}: {e}")))?;
    let mut src_r = BufReader::new(
        File::open(dir.join(&src)).map_err(|e| script(n, format!("MOVE: opening {src}: {e}")))?,
    );
    let tmp = tmp_in(dir)?;
    let mut keep = BufWriter::new(tmp.as_file());
    let (mut moving, mut done) = (false, false);
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        if (&mut src_r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)?
            == 0
        {
            break;
        }
        line_no += 1;
        if !moving && !done && line_no == start {
            if !buf.starts_with(start_prefix) {
                return Err(script(
                    n,
                    format!("MOVE: {src} line {line_no} does not match"),
                ));
            }
            moving = true;
        }
        if moving {
            dst_f.write_all(&buf)?;
            if line_no == end {
                if !buf.starts_with(end_prefix) {
                    return Err(script(
                        n,
                        format!("MOVE: {src} line {line_no} does not match"),
                    ));
                }
                moving = false;
                done = true;
            }
        } else {
            keep.write_all(&buf)?;
        }
    }
    if !done {
        return Err(script(n, "MOVE: the range was not found"));
    }
    keep.flush()?;
    drop(keep);
    tmp.persist(dir.join(&src)).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(files: &[(&str, &str)], s: &str) -> (tempfile::TempDir, Result<(), CdiffError>) {
        let d = tempfile::tempdir().unwrap();
        for (n, c) in files {
            std::fs::write(d.path().join(n), c).unwrap();
        }
        let r = apply_script(s.as_bytes(), d.path());
        (d, r)
    }

    fn read(d: &tempfile::TempDir, n: &str) -> String {
        std::fs::read_to_string(d.path().join(n)).unwrap()
    }

    #[test]
    fn edits_apply_in_line_order_and_adds_append() {
        let (d, r) = run(
            &[("a.ndb", "one:0:*:aa\ntwo:0:*:bb\nthree:0:*:cc\n")],
            "# comment\nOPEN a.ndb\nADD four:0:*:dd\nXCHG 3 three:0 three:0:*:ee\nDEL 1 one\nCLOSE\n",
        );
        r.unwrap();
        assert_eq!(read(&d, "a.ndb"), "two:0:*:bb\nthree:0:*:ee\nfour:0:*:dd\n");
    }

    #[test]
    fn new_files_unlink_and_move() {
        let (d, r) = run(
            &[
                ("a.ndb", "1\n2\n3\n4\n"),
                ("b.ndb", "x\n"),
                ("c.hdb", "gone\n"),
            ],
            "OPEN n.hdb\nADD h1\nADD h2\nCLOSE\nUNLINK c.hdb\nMOVE a.ndb b.ndb 2 2 3 3\n",
        );
        r.unwrap();
        assert_eq!(read(&d, "n.hdb"), "h1\nh2\n");
        assert!(!d.path().join("c.hdb").exists());
        assert_eq!(read(&d, "a.ndb"), "1\n4\n");
        assert_eq!(read(&d, "b.ndb"), "x\n2\n3\n");
    }

    #[test]
    fn a_mismatched_or_unused_edit_is_an_error() {
        let (_, r) = run(&[("a.ndb", "one\n")], "OPEN a.ndb\nDEL 1 two\nCLOSE\n");
        assert!(
            matches!(r, Err(CdiffError::Script { line: 3, .. })),
            "{r:?}"
        );
        let (_, r) = run(&[("a.ndb", "one\n")], "OPEN a.ndb\nDEL 5 x\nCLOSE\n");
        assert!(r.is_err());
        let (_, r) = run(&[], "ADD x\n");
        assert!(r.is_err(), "ADD with nothing open");
        let (_, r) = run(&[], "OPEN x.ndb\nADD y\n");
        assert!(r.is_err(), "left open");
        let (_, r) = run(&[], "FROB x\n");
        assert!(r.is_err());
    }

    #[test]
    fn names_cannot_leave_the_directory() {
        for bad in ["../x.ndb", "/etc/passwd", "..", "a/b", "", "a b"] {
            let (_, r) = run(&[], &format!("OPEN {bad}\nADD x\nCLOSE\n"));
            assert!(r.is_err(), "{bad:?} accepted");
            let (_, r) = run(&[], &format!("UNLINK {bad}\n"));
            assert!(r.is_err(), "{bad:?} accepted");
        }
    }
}

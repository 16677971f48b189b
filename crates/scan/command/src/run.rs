//! Running one command with a deadline: its own process group (killed whole on
//! timeout), bounded output capture, optional content on standard input.

use moat_core::Blob;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bytes of standard output and of standard error kept; the rest is read and dropped.
pub(crate) const MAX_OUTPUT: usize = 64 * 1024;

/// How long the output pipes may stay open after the command exited (a
/// leftover child still holding them) before the process group is killed.
const PIPE_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug)]
pub(crate) enum RunError {
    /// The program could not be started.
    Spawn(io::Error),
    /// The deadline passed; the process group was killed.
    Timeout,
    /// Waiting for it or reading its output failed.
    Wait(String),
}

/// Runs `argv` until `deadline`, with `input` (if any) on standard input.
pub(crate) fn run(
    argv: &[OsString],
    input: Option<Blob>,
    deadline: Instant,
) -> Result<Finished, RunError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(RunError::Spawn(io::Error::other("empty argv")));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let pgid = child.id();
    let (tx, rx) = mpsc::channel();
    let mut started = Ok(());
    if let Some(out) = child.stdout.take() {
        started = started.and(spawn_reader("moat-command-stdout", out, 0, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        started = started.and(spawn_reader("moat-command-stderr", err, 1, tx));
    }
    if let (Some(blob), Some(mut stdin)) = (input, child.stdin.take()) {
        started = started.and(
            std::thread::Builder::new()
                .name("moat-command-stdin".into())
                .spawn(move || {
                    // A command that stops reading early is its own business:
                    // its exit code decides.
                    if let Err(e) = io::copy(&mut blob.reader(), &mut stdin) {
                        tracing::debug!(error = %e, "command stopped reading its input");
                    }
                })
                .map(drop),
        );
    }
    if let Err(e) = started {
        kill_group(pgid, &mut child);
        return Err(RunError::Wait(format!("cannot start an I/O thread: {e}")));
    }

    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => {
                kill_group(pgid, &mut child);
                return Err(RunError::Wait(format!("waiting for the command: {e}")));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            kill_group(pgid, &mut child);
            return Err(RunError::Timeout);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    };

    let mut outputs: [Option<String>; 2] = [None, None];
    let mut killed = false;
    while outputs.iter().any(Option::is_none) {
        match rx.recv_timeout(PIPE_GRACE) {
            Ok((i, text)) => outputs[i] = Some(text),
            Err(mpsc::RecvTimeoutError::Timeout) if !killed => {
                // Something the command left behind still holds its output
                // open: the group outlives its leader, so the id is still ours.
                killed = true;
                kill_group_only(pgid);
            }
            Err(_) => {
                return Err(RunError::Wait(
                    "the command's output stayed open after it exited".into(),
                ));
            }
        }
    }
    let [stdout, stderr] = outputs.map(Option::unwrap_or_default);
    Ok(Finished {
        status,
        stdout,
        stderr,
    })
}

/// Reads `from` to its end, keeping the first [`MAX_OUTPUT`] bytes.
fn spawn_reader(
    name: &str,
    mut from: impl Read + Send + 'static,
    index: usize,
    tx: mpsc::Sender<(usize, String)>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let room = MAX_OUTPUT.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send((index, String::from_utf8_lossy(&kept).into_owned()));
        })
        .map(drop)
}

/// Kills the whole process group of a still unreaped leader, then reaps it.
fn kill_group(pgid: u32, child: &mut Child) {
    kill_group_only(pgid);
    let _ = child.kill();
    let _ = child.wait();
}

/// `kill -KILL -PGID` (kill(1): std has no killpg and this crate has no unsafe).
fn kill_group_only(pgid: u32) {
    let r = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(e) = r {
        tracing::warn!(error = %e, pgid, "cannot run kill(1) for the command's process group");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<OsString> {
        ["sh", "-c", script].iter().map(OsString::from).collect()
    }

    fn soon(secs: f64) -> Instant {
        Instant::now() + Duration::from_secs_f64(secs)
    }

    #[test]
    fn captures_exit_code_and_bounded_output() {
        let f = run(&sh("echo out; echo err >&2; exit 3"), None, soon(10.0)).unwrap();
        assert_eq!(f.status.code(), Some(3));
        assert_eq!(f.stdout, "out\n");
        assert_eq!(f.stderr, "err\n");
        let f = run(&sh("head -c 200000 /dev/zero"), None, soon(10.0)).unwrap();
        assert_eq!(f.stdout.len(), MAX_OUTPUT);
    }

    #[test]
    fn feeds_standard_input() {
        let blob = Blob::from_vec(b"hello stdin".to_vec());
        let f = run(&sh("cat"), Some(blob), soon(10.0)).unwrap();
        assert_eq!(f.stdout, "hello stdin");
    }

    #[test]
    fn a_timeout_kills_the_whole_process_group() {
        let dir = std::env::temp_dir().join(format!("moat-cmd-pg-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        // The grandchild would create the marker after 2 s if it survived.
        let script = format!("(sleep 2; touch {}) & sleep 30", dir.display());
        let start = Instant::now();
        let r = run(&sh(&script), None, soon(0.3));
        assert!(matches!(r, Err(RunError::Timeout)), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!dir.exists(), "the grandchild survived the group kill");
    }

    #[test]
    fn a_leftover_child_holding_the_output_is_killed() {
        let start = Instant::now();
        let f = run(&sh("sleep 30 & exit 0"), None, soon(10.0)).unwrap();
        assert_eq!(f.status.code(), Some(0));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let argv = vec![OsString::from("/nonexistent/moat-scanner")];
        assert!(matches!(
            run(&argv, None, soon(5.0)),
            Err(RunError::Spawn(_))
        ));
    }
}

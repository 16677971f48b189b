//! Test support shared by the workspace's integration tests (a
//! dev-dependency only): real helper services, started per test.
//!
//! [`Moto`] starts `moto_server` (S3, SQS, ... from the test virtualenv,
//! `$MOAT_TEST_MOTO_SERVER`, set by `scripts/test-deps.sh`) on a port the
//! server chooses itself (`-p 0`) and reads back from its start-up line.
//! Picking a free port first and handing it over raced: two tests (or a
//! client's ephemeral port) could get the same number between the probe and
//! moto's bind, and the test then talked to another test's moto, which went
//! away under it (a CI failure: `Connection refused` on `CreateQueue`).
//!
//! [`Cuttable`] forwards TCP to a real service and can cut every connection
//! through it (and refuse new ones for a while): a broker outage as a client
//! sees it, without touching the broker other tests share.
#![forbid(unsafe_code)]

mod cut;
pub use cut::Cuttable;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long moto may take to print its address (a loaded CI machine
/// imports its Python modules slowly).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A running `moto_server`, killed when dropped.
pub struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    /// moto over plain HTTP.
    pub fn start() -> Moto {
        Self::spawn(None)
    }

    /// moto over HTTPS with the given PEM certificate and key.
    pub fn start_tls(cert: &Path, key: &Path) -> Moto {
        Self::spawn(Some((cert, key)))
    }

    /// `http://127.0.0.1:PORT` (or `https://`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The port moto listens on.
    pub fn port(&self) -> u16 {
        self.endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    fn spawn(tls: Option<(&Path, &Path)>) -> Moto {
        let bin = std::env::var("MOAT_TEST_MOTO_SERVER")
            .unwrap_or_else(|_| "/root/.cache/moat-test-venv/bin/moto_server".into());
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", "0"]);
        if let Some((cert, key)) = tls {
            cmd.arg("-c").arg(cert).arg("-k").arg(key);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("moto_server ({bin}) must be installed (eval \"$(bash scripts/test-deps.sh)\"): {e}")
            });
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        // moto logs every request to stderr: keep draining it for the
        // server's whole life so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(endpoint) = running_on(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(endpoint);
                }
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(endpoint) => Moto { child, endpoint },
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!(
                    "moto_server ({bin}) did not report its address within {START_TIMEOUT:?} (exit: {status:?})"
                );
            }
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The endpoint in werkzeug's start-up line ` * Running on http://127.0.0.1:38701`
/// (the line may carry colour codes).
fn running_on(line: &str) -> Option<String> {
    let rest = &line[line.find("Running on ")? + "Running on ".len()..];
    let url: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '.'))
        .collect();
    let port = url.rsplit(':').next()?.parse::<u16>().ok()?;
    (port != 0 && url.starts_with("http")).then_some(url)
}

/// Read `pipe` to its end (at most 64 MiB) on a thread of its own.
fn drain<R: std::io::Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = Vec::new();
        if let Some(r) = pipe {
            #[allow(clippy::disallowed_methods)] // bounded by take
            let _ = r.take(64 << 20).read_to_end(&mut buf);
        }
        buf
    })
}

/// Run a command to completion with `stdin` written to it, and return its
/// output; a command still running after `limit` is killed and the test
/// fails saying so (a hung command must fail its test, not hold CI until
/// the job's time limit: `moat portal create-admin` once spun for ten
/// minutes after printing its result).
pub fn output_within(cmd: &mut Command, stdin: &[u8], limit: Duration) -> std::process::Output {
    use std::io::Write;
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    if let Some(mut w) = child.stdin.take() {
        // A command that exits without reading its input is not an error here.
        let _ = w.write_all(stdin);
    }
    // Read both pipes beside the wait, so a full pipe cannot stall the child.
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = err.join().unwrap_or_default();
                panic!(
                    "{what} still running after {limit:?}: killed; its stderr: {}",
                    String::from_utf8_lossy(&stderr)
                );
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::running_on;

    #[test]
    fn reads_the_address_from_werkzeugs_start_line() {
        assert_eq!(
            running_on(" * Running on http://127.0.0.1:38701").as_deref(),
            Some("http://127.0.0.1:38701")
        );
        assert_eq!(
            running_on("\x1b[1m * Running on https://127.0.0.1:443\x1b[0m").as_deref(),
            Some("https://127.0.0.1:443")
        );
        assert_eq!(running_on("Press CTRL+C to quit"), None);
        assert_eq!(running_on(" * Running on http://127.0.0.1:0"), None);
    }

    /// Against the real moto_server when the test environment has it.
    #[test]
    fn two_motos_started_together_get_different_ports_and_answer() {
        let a = super::Moto::start();
        let b = super::Moto::start();
        assert_ne!(a.port(), b.port());
        for m in [&a, &b] {
            std::net::TcpStream::connect(("127.0.0.1", m.port())).expect("moto listens");
        }
    }
}

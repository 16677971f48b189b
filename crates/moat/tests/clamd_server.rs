//! `moat clamd` (and `[clamd_server]` in `moat serve`) end to end, with the
//! real Debian `clamdscan` and raw sockets for what clients must not break.

mod common;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A database signature that also matches EICAR, so ALLMATCHSCAN has two
/// names; a first-match scan reports this one, as clamd would (the built-in
/// `Eicar-Test-Signature` names a detection only when the database has none).
const NDB: &str = "Moat.Test.EicarBody-1:0:*:45494341522d5354414e44415244\n";

struct Clamd {
    _proc: Proc,
    port: u16,
    socket: PathBuf,
    log: PathBuf,
    dir: PathBuf,
}

impl Clamd {
    fn start(dir: &Path, root: &Path, env: &[(&str, &str)]) -> Clamd {
        let sigs = dir.join("sigs");
        std::fs::create_dir_all(&sigs).unwrap();
        std::fs::write(sigs.join("test.ndb"), NDB).unwrap();
        let port = free_port();
        let socket = dir.join("clamd.sock");
        let log = dir.join("moat.log");
        let mut cmd = moat();
        cmd.args([
            "clamd",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--socket",
        ])
        .arg(&socket)
        .arg("--allow-root")
        .arg(root)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--signatures")
        .arg(&sigs)
        .env("MOAT__CLAMD_SERVER__STREAM_MAX_LENGTH", "1048576")
        .env("MOAT__CLAMD_SERVER__COMMAND_TIMEOUT_SECS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let c = Clamd {
            _proc: Proc(cmd.spawn().unwrap()),
            port,
            socket,
            log,
            dir: dir.to_path_buf(),
        };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if c.raw(b"zPING\0") == b"PONG\0" {
                return c;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moat clamd did not answer PING: {}", log_tail(&c.log));
    }

    /// Send `req`, read until the server closes.
    fn raw(&self, req: &[u8]) -> Vec<u8> {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return Vec::new();
        };
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = s.write_all(req);
        let mut out = Vec::new();
        let _ = read_all(&mut s, 1 << 20, &mut out);
        out
    }

    fn conf(&self, tcp: bool) -> PathBuf {
        let p = self.dir.join(if tcp { "tcp.conf" } else { "unix.conf" });
        let body = if tcp {
            format!("TCPSocket {}\nTCPAddr 127.0.0.1\n", self.port)
        } else {
            format!("LocalSocket {}\n", self.socket.display())
        };
        // clamdscan's own stream limit is above moat's, so moat's limit is what answers.
        std::fs::write(&p, format!("{body}StreamMaxLength 100M\n")).unwrap();
        p
    }

    fn clamdscan(&self, tcp: bool, args: &[&str], files: &[&Path]) -> Output {
        Command::new("clamdscan")
            .arg("-c")
            .arg(self.conf(tcp))
            .arg("--no-summary")
            .args(args)
            .args(files)
            .output()
            .unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn files(root: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let clean = root.join("clean.txt");
    std::fs::write(&clean, b"just some harmless text\n").unwrap();
    let eicar = root.join("eicar.com");
    std::fs::write(&eicar, EICAR).unwrap();
    let enc = root.join("secret.zip");
    let inner = root.join("inner.txt");
    std::fs::write(&inner, EICAR).unwrap();
    let ok = Command::new("7z")
        .args(["a", "-tzip", "-psecret", "-bd", "-bso0"])
        .arg(&enc)
        .arg(&inner)
        .status()
        .unwrap()
        .success();
    assert!(ok, "7z failed");
    std::fs::remove_file(&inner).unwrap();
    (clean, eicar, enc)
}

#[test]
fn clamdscan_stream_clean_eicar_encrypted_and_over_limit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let (clean, eicar, enc) = files(&root);
    let c = Clamd::start(dir.path(), &root, &[]);

    let o = c.clamdscan(true, &["--stream"], &[&clean]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("clean.txt: OK"), "{}", text(&o));

    let o = c.clamdscan(true, &["--stream"], &[&eicar]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("eicar.com: Moat.Test.EicarBody-1 FOUND"),
        "{}",
        text(&o)
    );

    // Not fully scanned: never OK; clamd's heuristic vocabulary.
    let o = c.clamdscan(true, &["--stream"], &[&enc]);
    assert!(!text(&o).contains(": OK"), "{}", text(&o));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("Heuristics.Encrypted.Zip FOUND"),
        "{}",
        text(&o)
    );

    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![b'a'; 2 << 20]).unwrap();
    let o = c.clamdscan(true, &["--stream"], &[&big]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!text(&o).contains(": OK"), "{}", text(&o));
    assert!(
        text(&o).contains("INSTREAM size limit exceeded"),
        "{}",
        text(&o)
    );
}

/// Writes `path` as a MIME message made by Python's `email` package (a real
/// mail writer, as a mail server's spool file is), with `attachment` as a
/// base64 part and a zip of it as another.
fn write_message(path: &Path, attachment: &[u8]) {
    let script = r#"
import email.message, io, sys, zipfile
data = sys.stdin.buffer.read()
m = email.message.EmailMessage()
m["From"] = "a@example.com"
m["To"] = "b@example.com"
m["Subject"] = "report"
m["Message-ID"] = "<1@example.com>"
m.set_content("see the attachments\n")
m.add_attachment(data, maintype="application", subtype="octet-stream", filename="report.bin")
z = io.BytesIO()
with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as f:
    f.writestr("inner/report.bin", data)
m.add_attachment(z.getvalue(), maintype="application", subtype="zip", filename="report.zip")
open(sys.argv[1], "wb").write(m.as_bytes())
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(attachment).unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_whole_message_streamed_as_a_mail_server_does_has_its_attachments_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let infected = root.join("infected.eml");
    write_message(&infected, EICAR);
    let clean = root.join("clean.eml");
    write_message(&clean, b"quarterly figures, nothing else\n");
    // EICAR only exists base64-encoded in the message.
    let raw = read_small(&infected);
    assert!(!raw.windows(EICAR.len()).any(|w| w == EICAR));
    let c = Clamd::start(dir.path(), &root, &[]);

    let o = c.clamdscan(true, &["--stream"], &[&infected]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("infected.eml: Moat.Test.EicarBody-1 FOUND"),
        "{}",
        text(&o)
    );
    let o = c.clamdscan(true, &["--stream"], &[&clean]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("clean.eml: OK"), "{}", text(&o));
}

#[test]
fn clamdscan_multiscan_and_allmatch_only_under_the_allowed_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let (_clean, eicar, _enc) = files(&root);
    std::fs::write(root.join("sub/eicar2.txt"), EICAR).unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("x.txt"), b"hello").unwrap();
    // A symlink inside the root pointing outside is not a way out.
    std::os::unix::fs::symlink(outside.join("x.txt"), root.join("link.txt")).unwrap();
    // The engine is first-match (the default, as clamd's); ALLMATCHSCAN
    // still gets every name.
    let c = Clamd::start(dir.path(), &root, &[]);

    let o = c.clamdscan(true, &["--multiscan"], &[&root]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("eicar.com: Moat.Test.EicarBody-1 FOUND"), "{t}");
    assert!(t.contains("eicar2.txt: Moat.Test.EicarBody-1 FOUND"), "{t}");
    assert!(
        t.contains("secret.zip: Heuristics.Encrypted.Zip FOUND"),
        "{t}"
    );
    assert!(!t.contains("x.txt"), "{t}");

    let o = c.clamdscan(true, &["--allmatch"], &[&eicar]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("Eicar-Test-Signature FOUND"), "{t}");
    assert!(t.contains("Moat.Test.EicarBody-1 FOUND"), "{t}");

    for args in [&["--multiscan"][..], &["--allmatch"][..], &[][..]] {
        let o = c.clamdscan(true, args, &[&outside]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
        assert!(t.contains("Access denied. ERROR"), "{args:?}: {t}");
    }
    // A symlink inside the root pointing outside is resolved before the
    // check. (clamdscan itself skips a symlink given as an argument and
    // prints `OK` without asking the server, as with real clamd: so the
    // path goes to moat as other clients send it.)
    for cmd in ["zSCAN", "zCONTSCAN", "zMULTISCAN", "zALLMATCHSCAN"] {
        let link = root.join("link.txt");
        let out = c.raw(format!("{cmd} {}\0", link.display()).as_bytes());
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("{}: Access denied. ERROR\0", link.display()),
            "{cmd}"
        );
    }
}

#[test]
fn clamdscan_fdpass_over_the_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let (clean, eicar, _enc) = files(&root);
    // Passing a descriptor needs no allowed root: the client opened the file.
    let elsewhere = tempfile::tempdir().unwrap();
    let c = Clamd::start(dir.path(), elsewhere.path(), &[]);
    let o = c.clamdscan(false, &["--fdpass"], &[&eicar]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("Moat.Test.EicarBody-1 FOUND"),
        "{}",
        text(&o)
    );
    let o = c.clamdscan(false, &["--fdpass"], &[&clean]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("clean.txt: OK"), "{}", text(&o));
    // Over TCP there is no descriptor to pass.
    assert_eq!(
        c.raw(b"zFILDES\0"),
        b"FILDES: didn't receive file descriptor. ERROR\0"
    );
}

#[test]
fn clamdscan_ping_version_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let c = Clamd::start(dir.path(), &root, &[]);
    let o = c.clamdscan(true, &["--ping", "1"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = c.clamdscan(true, &["-V"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("moat "), "{}", text(&o));
    let o = c.clamdscan(true, &["--reload"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = Instant::now();
    while !log_tail(&c.log).contains("reloading engines") {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "RELOAD did not reload: {}",
            log_tail(&c.log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn framing_sessions_and_replies_match_clamd() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let c = Clamd::start(dir.path(), &root, &[]);
    assert_eq!(c.raw(b"nPING\n"), b"PONG\n");
    // npm clamscan: no terminator at all.
    assert_eq!(c.raw(b"PING"), b"PONG\n");
    let v = String::from_utf8(c.raw(b"nVERSION\n")).unwrap();
    let parts: Vec<&str> = v.trim_end().split('/').collect();
    assert_eq!(parts.len(), 3, "{v}");
    assert!(parts[0].starts_with("moat "), "{v}");
    let vc = String::from_utf8(c.raw(b"zVERSIONCOMMANDS\0")).unwrap();
    assert!(vc.contains("| COMMANDS: SCAN"), "{vc}");
    assert!(vc.ends_with('\0'), "{vc:?}");
    assert_eq!(c.raw(b"zHELLO\0"), b"UNKNOWN COMMAND\0");
    assert_eq!(c.raw(b"INSTREAM\n"), b"UNKNOWN COMMAND\n");
    let stats = String::from_utf8(c.raw(b"nSTATS\n")).unwrap();
    assert!(stats.starts_with("POOLS: 1\n"), "{stats}");
    assert!(stats.ends_with("END\n"), "{stats}");
    // SHUTDOWN is off by default.
    assert!(String::from_utf8_lossy(&c.raw(b"zSHUTDOWN\0")).contains("ERROR"));
    assert_eq!(c.raw(b"zPING\0"), b"PONG\0");

    // IDSESSION: numbered replies, END closes.
    let mut req = b"zIDSESSION\0zPING\0zINSTREAM\0".to_vec();
    req.extend_from_slice(&(EICAR.len() as u32).to_be_bytes());
    req.extend_from_slice(EICAR);
    req.extend_from_slice(&0u32.to_be_bytes());
    req.extend_from_slice(b"zVERSION\0zEND\0");
    let out = String::from_utf8(c.raw(&req)).unwrap();
    let replies: Vec<&str> = out.split('\0').filter(|s| !s.is_empty()).collect();
    assert_eq!(replies.len(), 3, "{out:?}");
    assert_eq!(replies[0], "1: PONG");
    assert_eq!(replies[1], "2: stream: Moat.Test.EicarBody-1 FOUND");
    assert!(replies[2].starts_with("3: moat "), "{out:?}");
    // Commands not allowed in a session end it.
    let out = c.raw(b"zIDSESSION\0zMULTISCAN /tmp\0");
    assert_eq!(out, b"1: Command invalid inside IDSESSION. ERROR\0");

    // Every scan is recorded with source "clamd".
    let db = dir.path().join("data/moat.db");
    let t = Instant::now();
    let out = loop {
        let o = Command::new("python3")
            .arg("-c")
            .arg("import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute(\"select count(*) from moat_scans where source='clamd'\").fetchone()[0])")
            .arg(&db)
            .output()
            .unwrap();
        let n = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if n != "0" && !n.is_empty() || t.elapsed() > Duration::from_secs(5) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(out, "1", "{}", log_tail(&c.log));
}

#[test]
fn bad_input_never_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let c = Clamd::start(
        dir.path(),
        &root,
        &[("MOAT__CLAMD_SERVER__MAX_CONNECTIONS", "64")],
    );
    // Random bytes.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let junk: Vec<u8> = (0..5000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let out = c.raw(&junk);
    assert!(
        out.is_empty() || out.ends_with(b"UNKNOWN COMMAND\n"),
        "{out:?}"
    );
    // A chunk cut short: no verdict, just the close.
    let mut req = b"zINSTREAM\0".to_vec();
    req.extend_from_slice(&100u32.to_be_bytes());
    req.extend_from_slice(b"only a few bytes");
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.write_all(&req).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    read_all(&mut s, 1 << 20, &mut out).unwrap();
    assert!(out.is_empty(), "{out:?}");
    // A 4 GiB chunk length: refused on the header, in clamd's exact words.
    let mut req = b"nINSTREAM\n".to_vec();
    req.extend_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(c.raw(&req), b"INSTREAM size limit exceeded. ERROR\n");
    // An overlong command is closed without a reply.
    let mut long = b"zSCAN /".to_vec();
    long.extend(std::iter::repeat_n(b'a', 10_000));
    assert!(c.raw(&long).is_empty());
    // No command at all: COMMAND READ TIMED OUT (after 2 s here).
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    read_all(&mut s, 1 << 20, &mut out).unwrap();
    assert_eq!(out, b"COMMAND READ TIMED OUT\n");
    // Idle connections below the limit do not stop others being served.
    let idle: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(("127.0.0.1", c.port)).unwrap())
        .collect();
    assert_eq!(c.raw(b"zPING\0"), b"PONG\0");
    // Far more than max_connections (64) opened and dropped: they wait in
    // the listen queue, cost nothing, and the server serves on.
    let more: Vec<TcpStream> = (0..600)
        .map(|_| TcpStream::connect(("127.0.0.1", c.port)).unwrap())
        .collect();
    drop(idle);
    drop(more);
    let t = Instant::now();
    loop {
        if c.raw(b"zPING\0") == b"PONG\0" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "server stopped serving"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = c.clamdscan(true, &["--stream"], &[Path::new("/etc/hostname")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn serve_starts_the_clamd_server_and_reports_it_in_readyz() {
    let dir = tempfile::tempdir().unwrap();
    let (api, clamd) = (free_port(), free_port());
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:{api}\"\n[clamd_server]\nlisten = \"127.0.0.1:{clamd}\"\nallow_roots = [\"{}\"]\n",
        dir.path().display()
    );
    let (_p, _log) = serve_config(dir.path(), &toml, &[api, clamd]);
    let v = readyz(api);
    assert_eq!(v["ready"], true, "{v}");
    assert_eq!(v["roles"]["clamd"]["ready"], true, "{v}");
    assert_eq!(v["roles"]["api"]["ready"], true, "{v}");
    let mut s = TcpStream::connect(("127.0.0.1", clamd)).unwrap();
    s.write_all(b"zPING\0").unwrap();
    let mut r = Vec::new();
    read_all(&mut s, 1 << 20, &mut r).unwrap();
    assert_eq!(r, b"PONG\0");
}

/// The PyPI client libraries, unmodified: `clamd` (n-commands, 1 KiB
/// chunks, the exact size-limit string) and `clamav-client` (VERSION split
/// on `/`, INSTREAM).
#[test]
fn python_clamd_and_clamav_client_libraries() {
    let python = std::env::var("MOAT_TEST_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/moat-test-venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let (clean, eicar, _enc) = files(&root);
    let c = Clamd::start(dir.path(), &root, &[]);
    let script = r#"
import io, sys, clamd
from clamav_client import get_scanner
port = int(sys.argv[1]); clean = sys.argv[2]; eicar = sys.argv[3]
cd = clamd.ClamdNetworkSocket("127.0.0.1", port)
assert cd.ping() == "PONG", cd.ping()
assert cd.version().startswith("moat "), cd.version()
r = cd.instream(io.BytesIO(open(eicar, "rb").read()))
assert r == {"stream": ("FOUND", "Moat.Test.EicarBody-1")}, r
r = cd.instream(io.BytesIO(b"hello"))
assert r == {"stream": ("OK", None)}, r
try:
    cd.instream(io.BytesIO(b"a" * (2 << 20)))
    raise SystemExit("no BufferTooLongError")
except clamd.BufferTooLongError:
    pass
r = cd.scan(eicar)
assert r == {eicar: ("FOUND", "Moat.Test.EicarBody-1")}, r
r = cd.multiscan(clean)
assert r == {clean: ("OK", None)}, r
r = cd.scan("/etc/passwd")
assert r["/etc/passwd"][0] == "ERROR" and "Access denied" in r["/etc/passwd"][1], r
assert "POOLS: 1" in cd.stats()
s = get_scanner({"backend": "clamd", "address": f"127.0.0.1:{port}"})
info = s.info()
assert info.version.startswith("moat "), info
assert s.scan(eicar).state == "FOUND"
res = s.scan(clean)
assert res.state == "OK" and res.passed, res
print("python clients ok")
"#;
    let o = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(c.port.to_string())
        .arg(&clean)
        .arg(&eicar)
        .output()
        .unwrap();
    assert!(
        o.status.success() && text(&o).contains("python clients ok"),
        "{}\n{}",
        text(&o),
        log_tail(&c.log)
    );
}

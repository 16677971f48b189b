//! The icap engine (`[[engines]] type = "icap"`) end to end: `moat scan`
//! and `moat serve` scanning through a real ICAP server, moat's own
//! (`moat icap`) and c-icap with its virus_scan module over a real clamd;
//! and the verdict cache following remote engines (a new ISTag, clamd's
//! `cache_ttl_secs`).

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// moat's own ICAP server's signature: "EICAR-STANDARD" anywhere.
const NDB: &str = "Moat.Test.EicarBody-1:0:*:45494341522d5354414e44415244\n";

/// Whether an ICAP server on `port` answers OPTIONS for `service` with 200.
fn options_ok(port: u16, service: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!(
        "OPTIONS icap://127.0.0.1:{port}/{service} ICAP/1.0\r\nHost: 127.0.0.1\r\nEncapsulated: null-body=0\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut b = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    got.starts_with(b"ICAP/1.0 200")
}

fn wait_options(port: u16, log: &Path) {
    let t = Instant::now();
    while !options_ok(port, "avscan") {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the ICAP server did not answer OPTIONS: {}",
            log_tail(log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `moat icap` on a free port with the signatures in `dir/sigs`.
fn moat_icap(dir: &Path) -> (Proc, u16) {
    let sigs = dir.join("sigs");
    std::fs::create_dir_all(&sigs).unwrap();
    std::fs::write(sigs.join("test.ndb"), NDB).unwrap();
    let port = free_port();
    let log = dir.join("icap-server.log");
    let p = Proc(
        moat()
            .args(["icap", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.join("server-data"))
            .arg("--signatures")
            .arg(&sigs)
            .env("MOAT__RELOAD__POLL_SECS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap(),
    );
    wait_options(port, &log);
    (p, port)
}

/// A config file with one icap engine (`extra`: more TOML lines for it).
fn icap_config(dir: &Path, name: &str, port: u16, extra: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!("[[engines]]\ntype = \"icap\"\nurl = \"icap://127.0.0.1:{port}/avscan\"\ntimeout_secs = 30\n{extra}\n"),
    )
    .unwrap();
    p
}

/// `moat scan --json --config cfg files...`: exit code, one JSON line per file.
fn scan(cfg: &Path, files: &[&Path]) -> (Option<i32>, Vec<serde_json::Value>, String) {
    let out = moat()
        .args(["scan", "--json", "--config"])
        .arg(cfg)
        .args(files)
        .output()
        .unwrap();
    (
        out.status.code(),
        json_lines(&out),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn line<'a>(lines: &'a [serde_json::Value], suffix: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|v| v["path"].as_str().unwrap_or_default().ends_with(suffix))
        .unwrap_or_else(|| panic!("no line for {suffix}: {lines:?}"))
}

/// Test files: EICAR, a small clean text, a 300 KiB clean text (far past
/// any preview), and the same with `tail` at its very end.
struct Files {
    eicar: PathBuf,
    clean: PathBuf,
    big: PathBuf,
    big_bad: PathBuf,
}

fn files(dir: &Path, tail: &str) -> Files {
    let text: String = (0..10_000)
        .map(|i| format!("line {i} of a harmless text file\n"))
        .collect();
    let f = Files {
        eicar: dir.join("eicar.com"),
        clean: dir.join("clean.txt"),
        big: dir.join("big.txt"),
        big_bad: dir.join("big-bad.txt"),
    };
    std::fs::write(&f.eicar, EICAR).unwrap();
    std::fs::write(&f.clean, b"nothing to see here\n").unwrap();
    std::fs::write(&f.big, &text).unwrap();
    std::fs::write(&f.big_bad, format!("{text}{tail}\n")).unwrap();
    f
}

#[test]
fn icap_engine_scans_through_moats_own_icap_server_and_fails_closed_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = moat_icap(dir.path());
    let f = files(dir.path(), "EICAR-STANDARD");
    assert!(std::fs::metadata(&f.big).unwrap().len() > 100 * 1024);
    let cfg = icap_config(dir.path(), "icap.toml", port, "");
    let (code, lines, err) = scan(&cfg, &[&f.eicar, &f.clean, &f.big, &f.big_bad]);
    assert_eq!(code, Some(1), "{err}");
    let e = line(&lines, "eicar.com");
    assert_eq!(e["status"], "infected", "{e}");
    assert_eq!(e["findings"][0]["engine"], "icap");
    let sig = e["findings"][0]["signature"].as_str().unwrap();
    assert!(sig.to_lowercase().contains("eicar"), "{sig}");
    assert_eq!(line(&lines, "clean.txt")["status"], "clean");
    assert_eq!(line(&lines, "/big.txt")["status"], "clean");
    // The detection is past the preview: the whole body was sent and scanned.
    let b = line(&lines, "big-bad.txt");
    assert_eq!(b["status"], "infected", "{b}");
    assert_eq!(b["findings"][0]["signature"], "Moat.Test.EicarBody-1");
    // The ISTag is the engine's signature version.
    let v = e["engines"][0]["signature_version"].as_str().unwrap();
    assert!(v.starts_with("moat-"), "{v}");

    // REQMOD carries the content as an upload.
    let cfg_req = icap_config(dir.path(), "reqmod.toml", port, "method = \"reqmod\"");
    let (code, lines, err) = scan(&cfg_req, &[&f.big_bad, &f.clean]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(line(&lines, "big-bad.txt")["status"], "infected");
    assert_eq!(line(&lines, "clean.txt")["status"], "clean");

    drop(server);
    let (code, lines, _) = scan(&cfg, &[&f.clean]);
    assert_eq!(code, Some(2));
    let c = &lines[0];
    assert_eq!(
        c["status"], "error",
        "a stopped ICAP server is never clean: {c}"
    );
    assert!(
        c["engines"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("connect"),
        "{c}"
    );
}

/// `moat serve` with the API on a free port; `engines` is TOML.
fn serve(dir: &Path, engines: &str) -> (Proc, u16) {
    std::fs::create_dir_all(dir).unwrap();
    let api = free_port();
    let toml =
        format!("[server]\nlisten = \"127.0.0.1:{api}\"\n[reload]\npoll_secs = 1\n{engines}\n");
    let (p, _log) = serve_config(dir, &toml, &[api]);
    (p, api)
}

/// POST `body` to `/v1/scan`; the record as JSON.
fn post(api: u16, body: &Path) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-s", "--data-binary"])
        .arg(format!("@{}", body.display()))
        .arg(format!("http://127.0.0.1:{api}/v1/scan"))
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn cached_verdicts_end_when_the_icap_servers_istag_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = moat_icap(dir.path());
    let x = dir.path().join("x.txt");
    std::fs::write(&x, b"harmless until the signatures change\n").unwrap();
    let (_moat, api) = serve(
        &dir.path().join("client"),
        &format!("[[engines]]\ntype = \"icap\"\nurl = \"icap://127.0.0.1:{port}/avscan\"\n"),
    );
    let v = post(api, &x);
    assert_eq!(
        (v["status"].as_str(), v["cached"].as_bool()),
        (Some("clean"), Some(false)),
        "{v}"
    );
    let v2 = post(api, &x);
    assert_eq!(v2["cached"], true, "{v2}");
    assert_eq!(v2["fingerprint"], v["fingerprint"]);

    // The server gets a signature for x: its ISTag changes, the client's
    // reload loop sees it, and the clean verdict is not reused.
    std::fs::write(
        dir.path().join("sigs/later.ndb"),
        "Moat.Test.Later-1:0:*:6861726d6c65737320756e74696c\n",
    )
    .unwrap();
    let t = Instant::now();
    let found = loop {
        let v = post(api, &x);
        if v["status"] == "infected" {
            break v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "the cached clean verdict outlived the server's new signatures: {v}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(found["cached"], false, "{found}");
    assert_eq!(found["findings"][0]["signature"], "Moat.Test.Later-1");
    assert_ne!(found["fingerprint"], v["fingerprint"]);

    // The server stops: new content is an error through the API, never clean.
    drop(server);
    let y = dir.path().join("y.txt");
    std::fs::write(&y, b"never seen before\n").unwrap();
    let v = post(api, &y);
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["action"], "block", "{v}");
}

/// A throw-away clamd from scripts/clamd-test.sh, stopped on drop.
struct Clamd {
    dir: PathBuf,
    port: u16,
}

impl Clamd {
    fn start(dir: &Path) -> Clamd {
        let port = free_port();
        let ok = Command::new("bash")
            .arg(repo_root().join("scripts/clamd-test.sh"))
            .arg("start")
            .arg(dir)
            .arg(port.to_string())
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "clamd must start (scripts/test-deps.sh installs ClamAV)"
        );
        Clamd {
            dir: dir.to_path_buf(),
            port,
        }
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/clamd-test.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

#[test]
fn clamd_cache_ttl_bounds_the_reuse_of_cached_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let clamd = Clamd::start(&dir.path().join("clamd"));
    let (_moat, api) = serve(
        &dir.path().join("client"),
        &format!(
            "[[engines]]\ntype = \"clamd\"\naddress = \"127.0.0.1:{}\"\ncache_ttl_secs = 2\n",
            clamd.port
        ),
    );
    let x = dir.path().join("x.txt");
    std::fs::write(&x, b"some clean content\n").unwrap();
    assert_eq!(post(api, &x)["cached"], false);
    let v = post(api, &x);
    assert_eq!(
        (v["status"].as_str(), v["cached"].as_bool()),
        (Some("clean"), Some(true)),
        "{v}"
    );
    std::thread::sleep(Duration::from_millis(2500));
    let v = post(api, &x);
    assert_eq!(
        v["cached"], false,
        "older than cache_ttl_secs: scanned again: {v}"
    );
    assert_eq!(v["status"], "clean");
}

/// A c-icap daemon with virus_scan over clamd, in its own process group
/// (c-icap forks workers), stopped on drop.
struct CIcap {
    child: Child,
    port: u16,
    log: PathBuf,
}

/// The directory holding c-icap's modules (`virus_scan.so`).
fn c_icap_modules() -> PathBuf {
    let mut dirs = vec![PathBuf::from("/usr/lib/c_icap")];
    if let Ok(rd) = std::fs::read_dir("/usr/lib") {
        dirs.extend(rd.flatten().map(|e| e.path().join("c_icap")));
    }
    dirs.into_iter()
        .find(|d| d.join("virus_scan.so").exists() && d.join("clamd_mod.so").exists())
        .expect("c-icap's virus_scan and clamd_mod modules (apt: c-icap libc-icap-mod-virus-scan; scripts/test-deps.sh)")
}

impl CIcap {
    fn start(dir: &Path, clamd_port: u16) -> CIcap {
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let modules = c_icap_modules();
        let port = free_port();
        let d = dir.display();
        let m = modules.display();
        let conf = dir.join("c-icap.conf");
        std::fs::write(
            &conf,
            format!(
                "PidFile {d}/c-icap.pid\nCommandsSocket {d}/c-icap.ctl\nTimeout 60\n\
                 MaxKeepAliveRequests 100\nKeepAliveTimeout 60\nStartServers 1\nMaxServers 2\n\
                 MinSpareThreads 2\nMaxSpareThreads 8\nThreadsPerChild 8\nMaxRequestsPerChild 0\n\
                 Port 127.0.0.1:{port}\nTmpDir {d}/tmp\nMaxMemObject 131072\nDebugLevel 1\n\
                 ModulesDir {m}\nServicesDir {m}\nTemplateDir /usr/share/c_icap/templates/\n\
                 TemplateDefaultLanguage en\nLoadMagicFile /etc/c-icap/c-icap.magic\n\
                 ServerLog {d}/server.log\nAccessLog {d}/access.log\n\
                 Module common clamd_mod.so\nclamd_mod.ClamdHost 127.0.0.1\nclamd_mod.ClamdPort {clamd_port}\n\
                 Service antivirus_module virus_scan.so\n\
                 ServiceAlias avscan virus_scan?allow204=on&sizelimit=off&mode=simple\n\
                 virus_scan.ScanFileTypes TEXT DATA EXECUTABLE ARCHIVE GIF JPEG MSOFFICE\n\
                 virus_scan.MaxObjectSize 100M\nvirus_scan.DefaultEngine clamd\n"
            ),
        )
        .unwrap();
        let log = dir.join("c-icap.out");
        let child = Command::new("c-icap")
            .arg("-N")
            .arg("-f")
            .arg(&conf)
            .process_group(0)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("c-icap.err")).unwrap(),
            ))
            .spawn()
            .expect("c-icap (apt: c-icap; scripts/test-deps.sh)");
        let c = CIcap {
            child,
            port,
            log: dir.join("server.log"),
        };
        wait_options(port, &c.log);
        c
    }

    /// SIGTERM to the whole group (the main process and its workers), then
    /// SIGKILL if it lingers.
    fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let group = format!("-{}", self.child.id());
        let kill = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        kill("-TERM");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                // Workers that outlived the main process, if any.
                kill("-KILL");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        kill("-KILL");
        let _ = self.child.wait();
    }
}

impl Drop for CIcap {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn icap_engine_against_c_icap_virus_scan_over_a_real_clamd() {
    let dir = tempfile::tempdir().unwrap();
    let clamd = Clamd::start(&dir.path().join("clamd"));
    let mut cicap = CIcap::start(&dir.path().join("c-icap"), clamd.port);
    // clamd-test.sh's body signature Moat.Test.Body: "moat-test-signature".
    let f = files(dir.path(), "moat-test-signature");
    let cfg = icap_config(dir.path(), "c-icap.toml", cicap.port, "");
    let (code, lines, err) = scan(&cfg, &[&f.eicar, &f.clean, &f.big, &f.big_bad]);
    let e = line(&lines, "eicar.com");
    assert_eq!(
        e["status"],
        "infected",
        "{e} {err} {}",
        log_tail(&cicap.log)
    );
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(e["findings"][0]["engine"], "icap");
    let sig = e["findings"][0]["signature"].as_str().unwrap();
    assert!(sig.starts_with("Win.Test.EICAR_HDB-1"), "{sig}");
    assert_eq!(line(&lines, "clean.txt")["status"], "clean");
    assert_eq!(line(&lines, "/big.txt")["status"], "clean");
    // Past c-icap's 1024-byte preview: found only if the rest was sent.
    let b = line(&lines, "big-bad.txt");
    assert_eq!(b["status"], "infected", "{b}");
    let sig = b["findings"][0]["signature"].as_str().unwrap();
    assert!(sig.starts_with("Moat.Test.Body"), "{sig}");
    // c-icap's ISTag is the signature version.
    let v = e["engines"][0]["signature_version"].as_str().unwrap();
    assert!(v.starts_with("CI0001"), "{v}");

    // REQMOD: the content as an upload.
    let cfg_req = icap_config(dir.path(), "reqmod.toml", cicap.port, "method = \"reqmod\"");
    let (code, lines, err) = scan(&cfg_req, &[&f.eicar, &f.big, &f.big_bad]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(line(&lines, "eicar.com")["status"], "infected");
    assert_eq!(line(&lines, "/big.txt")["status"], "clean");
    assert_eq!(line(&lines, "big-bad.txt")["status"], "infected");

    cicap.stop();
    let (code, lines, _) = scan(&cfg, &[&f.clean]);
    assert_eq!(code, Some(2));
    assert_eq!(
        lines[0]["status"], "error",
        "a stopped c-icap is never clean: {}",
        lines[0]
    );
}

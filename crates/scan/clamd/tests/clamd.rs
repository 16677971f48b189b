//! Tests against a real clamd, started by `scripts/clamd-test.sh` for each test
//! (a tiny database; clamd starts in well under a second).
//!
//! clamd must be installed (the script installs it with apt-get when it can);
//! these tests fail, never silently pass, when it is not.

use moat_clamd::{ClamdConfig, ClamdEngine};
use moat_core::{Blob, Engine, EngineError, Object, Reason, ScanContext, Scope, Spool};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const EICAR_NAME: &str = "Win.Test.EICAR_HDB-1.UNOFFICIAL";
const BODY_SIG: &[u8] = b"moat-test-signature";
const BODY_NAME: &str = "Moat.Test.Body.UNOFFICIAL";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../scripts/clamd-test.sh")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running clamd in a temporary directory; stopped on drop.
struct Clamd {
    dir: tempfile::TempDir,
    port: u16,
}

impl Clamd {
    fn start() -> Clamd {
        Clamd::start_with(&[])
    }

    fn start_with(env: &[(&str, &str)]) -> Clamd {
        let dir = tempfile::Builder::new()
            .prefix("moat-clamd")
            .tempdir()
            .unwrap();
        let port = free_port();
        let c = Clamd { dir, port };
        c.run_script("start", env);
        c
    }

    fn run_script(&self, cmd: &str, env: &[(&str, &str)]) {
        let mut c = Command::new("bash");
        c.arg(script()).arg(cmd).arg(self.dir.path());
        if cmd == "start" {
            c.arg(self.port.to_string());
        }
        c.envs(env.iter().copied());
        let out = c.output().expect("running scripts/clamd-test.sh");
        assert!(
            out.status.success(),
            "scripts/clamd-test.sh {cmd} failed (is clamd installed? apt-get install \
             clamav-daemon): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn tcp(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn unix(&self) -> String {
        format!("unix:{}", self.dir.path().join("clamd.sock").display())
    }

    fn engine(&self, address: String) -> ClamdEngine {
        engine_with(ClamdConfig {
            address,
            ..Default::default()
        })
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

fn engine_with(cfg: ClamdConfig) -> ClamdEngine {
    ClamdEngine::new("clamd", cfg).unwrap()
}

fn ctx() -> ScanContext {
    ScanContext::within(Duration::from_secs(60))
}

fn scan(e: &ClamdEngine, blob: &Blob) -> Result<Vec<String>, EngineError> {
    scan_ctx(e, blob, &ctx())
}

fn scan_ctx(e: &ClamdEngine, blob: &Blob, ctx: &ScanContext) -> Result<Vec<String>, EngineError> {
    let obj = Object {
        data: blob,
        name: "f",
        location: "f",
        content_type: "application/octet-stream",
        depth: 0,
        sha256: None,
    };
    e.scan(&obj, ctx)
        .map(|s| s.hits.into_iter().map(|h| h.signature).collect())
}

/// `len` pseudo-random bytes (no signature can match by chance) with `sig` at `at`.
fn payload(len: usize, sig: Option<(&[u8], usize)>) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    if let Some((s, at)) = sig {
        v[at..at + s.len()].copy_from_slice(s);
    }
    v
}

fn too_large(r: Result<Vec<String>, EngineError>) -> bool {
    matches!(
        r,
        Err(EngineError::Unscannable {
            reason: Reason::TooLarge,
            ..
        })
    )
}

#[test]
fn ping_and_version_over_tcp_and_unix() {
    let c = Clamd::start();
    for addr in [c.tcp(), c.unix()] {
        let e = c.engine(addr);
        e.health().unwrap();
        let info = e.info();
        assert_eq!(info.kind, "clamd");
        assert_eq!(info.name, "clamd");
        assert!(info.version.starts_with("ClamAV "), "{info:?}");
        // Only unofficial databases loaded: clamd reports no database version.
        assert_eq!(info.signature_version, "unreported");
        assert!(info.last_reload_error.is_none(), "{info:?}");
        assert!(info.loaded_at > 0);
        assert_eq!(e.scope(), Scope::Whole);
        assert!(e.fingerprint().contains("ClamAV "));
    }
}

#[test]
fn clean_eicar_and_body_signature_over_tcp_and_unix() {
    let c = Clamd::start();
    for addr in [c.tcp(), c.unix()] {
        let e = c.engine(addr);
        assert_eq!(
            scan(&e, &Blob::from_vec(b"hello world".to_vec())).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            scan(&e, &Blob::from_vec(Vec::new())).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            scan(&e, &Blob::from_vec(EICAR.to_vec())).unwrap(),
            vec![EICAR_NAME]
        );
        let hash = Blob::from_vec(b"moat-test-hash-file".to_vec());
        assert_eq!(scan(&e, &hash).unwrap(), vec!["Moat.Test.Hash.UNOFFICIAL"]);
        // The body signature in the middle of 3 MiB, across a chunk boundary.
        let len = 3 << 20;
        let at = len / 2 - 7;
        let blob = Blob::from_vec(payload(len, Some((BODY_SIG, at))));
        assert_eq!(scan(&e, &blob).unwrap(), vec![BODY_NAME]);
        assert_eq!(
            scan(&e, &Blob::from_vec(payload(len, None))).unwrap(),
            Vec::<String>::new()
        );
    }
}

#[test]
fn file_backed_blob_from_a_spool() {
    let c = Clamd::start();
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::new(64 * 1024, 1 << 30, dir.path());
    spool
        .write_all(&payload(5 << 20, Some((BODY_SIG, 4 << 20))))
        .unwrap();
    let (blob, _) = spool.finish().unwrap();
    assert!(blob.as_slice().is_none(), "spilled to a file");
    for addr in [c.tcp(), c.unix()] {
        assert_eq!(scan(&c.engine(addr), &blob).unwrap(), vec![BODY_NAME]);
    }
}

#[test]
fn over_stream_max_length_is_too_large_never_clean() {
    let c = Clamd::start_with(&[("MOAT_CLAMD_STREAM_MAX", "1M")]);
    let big = Blob::from_vec(payload(3 << 20, None));
    let infected_big = Blob::from_vec(payload(3 << 20, Some((BODY_SIG, 100))));
    for pool_size in [0, 4] {
        for addr in [c.tcp(), c.unix()] {
            let e = engine_with(ClamdConfig {
                address: addr.clone(),
                pool_size,
                ..Default::default()
            });
            let r = scan(&e, &big);
            assert!(too_large(r), "{addr} pool {pool_size}");
            assert!(too_large(scan(&e, &infected_big)));
            // A single chunk larger than the limit, too.
            let e2 = engine_with(ClamdConfig {
                address: addr.clone(),
                pool_size,
                chunk_size: 2 << 20,
                ..Default::default()
            });
            assert!(too_large(scan(&e2, &big)));
            // The engine keeps working afterwards; small content still scans.
            assert_eq!(
                scan(&e, &Blob::from_vec(EICAR.to_vec())).unwrap(),
                vec![EICAR_NAME]
            );
            assert_eq!(
                scan(&e, &Blob::from_vec(vec![b'a'; 1000])).unwrap(),
                Vec::<String>::new()
            );
        }
    }
}

#[test]
fn encrypted_archive_is_unscannable_not_clean() {
    let c = Clamd::start();
    let e = c.engine(c.unix());
    let r = scan(&e, &Blob::from_vec(encrypted_zip()));
    assert!(
        matches!(
            r,
            Err(EngineError::Unscannable {
                reason: Reason::Encrypted,
                ..
            })
        ),
        "{r:?}"
    );
}

/// A zip whose single stored member has the "encrypted" flag set.
fn encrypted_zip() -> Vec<u8> {
    let name = b"secret.txt";
    let plain = b"hello encrypted world";
    let mut data = vec![7u8; 12]; // the traditional-encryption header
    data.extend_from_slice(plain);
    let crc = crc32(plain);
    let mut z = Vec::new();
    let u16le = |z: &mut Vec<u8>, v: u16| z.extend_from_slice(&v.to_le_bytes());
    let u32le = |z: &mut Vec<u8>, v: u32| z.extend_from_slice(&v.to_le_bytes());
    u32le(&mut z, 0x0403_4b50);
    for v in [20, 1, 0, 0, 0] {
        u16le(&mut z, v); // version, flags (encrypted), method (stored), time, date
    }
    u32le(&mut z, crc);
    u32le(&mut z, data.len() as u32);
    u32le(&mut z, plain.len() as u32);
    u16le(&mut z, name.len() as u16);
    u16le(&mut z, 0);
    z.extend_from_slice(name);
    z.extend_from_slice(&data);
    let cd_start = z.len();
    u32le(&mut z, 0x0201_4b50);
    for v in [20, 20, 1, 0, 0, 0] {
        u16le(&mut z, v);
    }
    u32le(&mut z, crc);
    u32le(&mut z, data.len() as u32);
    u32le(&mut z, plain.len() as u32);
    for v in [name.len() as u16, 0, 0, 0, 0] {
        u16le(&mut z, v);
    }
    u32le(&mut z, 0);
    u32le(&mut z, 0); // local header offset
    z.extend_from_slice(name);
    let cd_len = z.len() - cd_start;
    u32le(&mut z, 0x0605_4b50);
    for v in [0, 0, 1, 1] {
        u16le(&mut z, v);
    }
    u32le(&mut z, cd_len as u32);
    u32le(&mut z, cd_start as u32);
    u16le(&mut z, 0);
    z
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn unreachable_clamd_is_unavailable_never_clean() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix:{}", dir.path().join("no.sock").display());
    let closed = format!("127.0.0.1:{}", free_port());
    for addr in [closed, missing] {
        // Creating the engine does not need clamd.
        let e = engine_with(ClamdConfig {
            address: addr.clone(),
            ..Default::default()
        });
        let r = scan(&e, &Blob::from_vec(EICAR.to_vec()));
        assert!(
            matches!(r, Err(EngineError::Unavailable(_))),
            "{addr}: {r:?}"
        );
        assert!(matches!(e.health(), Err(EngineError::Unavailable(_))));
        let start = Instant::now();
        let info = e.info();
        assert_eq!(info.version, "unknown");
        assert!(info.last_reload_error.is_some());
        // Cached: the second call does not try again.
        assert_eq!(e.info(), info);
        assert!(start.elapsed() < Duration::from_secs(3));
    }
}

#[test]
fn pool_reuses_sessions_sequentially_and_concurrently() {
    let c = Clamd::start();
    for addr in [c.tcp(), c.unix()] {
        let e = Arc::new(engine_with(ClamdConfig {
            address: addr,
            pool_size: 8,
            ..Default::default()
        }));
        let eicar = Blob::from_vec(EICAR.to_vec());
        let clean = Blob::from_vec(payload(300 << 10, None));
        for i in 0..20 {
            if i % 2 == 0 {
                assert_eq!(scan(&e, &eicar).unwrap(), vec![EICAR_NAME], "scan {i}");
            } else {
                assert!(scan(&e, &clean).unwrap().is_empty(), "scan {i}");
            }
        }
        let s = e.pool_stats();
        assert_eq!((s.connects, s.reuses, s.idle), (1, 19, 1), "{s:?}");
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let e = Arc::clone(&e);
                std::thread::spawn(move || {
                    for i in 0..5 {
                        let infected = (t + i) % 2 == 0;
                        let sig = infected.then_some((BODY_SIG, 1000 * t + 10));
                        let blob = Blob::from_vec(payload(200 << 10, sig));
                        let want: Vec<String> = if infected {
                            vec![BODY_NAME.to_string()]
                        } else {
                            vec![]
                        };
                        assert_eq!(scan(&e, &blob).unwrap(), want, "thread {t} scan {i}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = e.pool_stats();
        assert!(s.connects <= 8, "at most one connection per thread: {s:?}");
        assert_eq!(s.connects + s.reuses, 20 + 40, "{s:?}");
        assert!(s.idle <= 8 && s.idle >= 1, "{s:?}");
    }
}

#[test]
fn pool_survives_a_clamd_restart() {
    let c = Clamd::start();
    let e = c.engine(c.tcp());
    let eicar = Blob::from_vec(EICAR.to_vec());
    assert_eq!(scan(&e, &eicar).unwrap(), vec![EICAR_NAME]);
    assert_eq!(e.pool_stats().idle, 1);
    c.run_script("stop", &[]);
    assert!(matches!(scan(&e, &eicar), Err(EngineError::Unavailable(_))));
    c.run_script("start", &[]);
    assert_eq!(scan(&e, &eicar).unwrap(), vec![EICAR_NAME]);
    e.health().unwrap();
}

#[test]
fn one_connection_per_scan_without_pool() {
    let c = Clamd::start();
    let e = engine_with(ClamdConfig {
        address: c.unix(),
        pool_size: 0,
        ..Default::default()
    });
    for _ in 0..5 {
        assert_eq!(
            scan(&e, &Blob::from_vec(EICAR.to_vec())).unwrap(),
            vec![EICAR_NAME]
        );
    }
    let s = e.pool_stats();
    assert_eq!((s.connects, s.reuses, s.idle), (5, 0, 0));
}

#[test]
fn deadlines_give_timeout() {
    let c = Clamd::start();
    let e = c.engine(c.tcp());
    let blob = Blob::from_vec(payload(20 << 20, None));
    let past = ScanContext {
        deadline: Instant::now() - Duration::from_secs(1),
        all_match: false,
    };
    assert!(matches!(
        scan_ctx(&e, &blob, &past),
        Err(EngineError::Timeout)
    ));
    let tiny = ScanContext::within(Duration::from_millis(2));
    let r = scan_ctx(&e, &blob, &tiny);
    assert!(matches!(r, Err(EngineError::Timeout)), "{r:?}");
    // The configured timeout bounds the scan too.
    let e = engine_with(ClamdConfig {
        address: c.unix(),
        timeout: Duration::from_millis(2),
        ..Default::default()
    });
    let r = scan(&e, &blob);
    assert!(matches!(r, Err(EngineError::Timeout)), "{r:?}");
    // And a timed-out connection is not reused: the next scan is fine.
    let e = c.engine(c.unix());
    assert!(matches!(
        scan_ctx(&e, &blob, &ScanContext::within(Duration::from_millis(2))),
        Err(EngineError::Timeout)
    ));
    assert_eq!(
        scan(&e, &Blob::from_vec(EICAR.to_vec())).unwrap(),
        vec![EICAR_NAME]
    );
}

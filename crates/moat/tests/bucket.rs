//! `moat bucket watch` / `moat bucket scan` end to end: a real RabbitMQ
//! (MOAT_TEST_AMQP_URL), a moto S3 server started here on a free port
//! (MOAT_TEST_MOTO_SERVER), clamd from scripts/clamd-test.sh, and the real
//! `moat` binary. Events are published in MinIO's exact AMQP format.

mod common;
use common::*;
use moat_db::ObjectState;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const MAKE_ZIPS: &str = r#"
import io, sys, zipfile, os
d = sys.argv[1]
eicar = b'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
inner = io.BytesIO()
with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("dir/eicar.com", eicar)
with zipfile.ZipFile(os.path.join(d, "nested.zip"), "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("inner.zip", inner.getvalue())
    z.writestr("readme.txt", b"hello")
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
    z.writestr("eicar.com", bytes(b ^ 0x5a for b in eicar))
raw = bytearray(buf.getvalue())
raw[6] |= 1
cd = raw.find(b"PK\x01\x02")
raw[cd + 8] |= 1
open(os.path.join(d, "encrypted.zip"), "wb").write(bytes(raw))
"#;

fn zips(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    python(MAKE_ZIPS, &[dir]);
    (
        read_small(&dir.join("nested.zip")),
        read_small(&dir.join("encrypted.zip")),
    )
}

/// The moat tag scheme with quarantine of infected objects: clean, EICAR,
/// EICAR in a nested zip, an encrypted zip, an over-size object, a key that
/// needs URL-decoding, a tagging event (ignored: loop prevention), a
/// malformed event (dead-lettered, consumer keeps going), an object deleted
/// before the scan (missing), and an object with 10 tags (action error,
/// then dead-lettered with the reason).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_tags_quarantines_and_dead_letters() {
    let e = Env::new().await;
    let qbucket = uniq("quarantine").to_lowercase();
    mkbucket(&e.s3, &qbucket).await;
    let cfg = e.config(
        "moat.toml",
        "",
        "max_size = 200000\n[bucket.retry]\nmax_attempts = 2\nbase_delay_ms = 200\n[bucket.policy.rules]\ninfected = \"quarantine\"\n",
        &format!("[bucket.quarantine]\nbucket = \"{qbucket}\"\nprefix = \"q/\"\n"),
    );
    let log = e.dir.path().join("watch.log");
    let _w = watcher(&cfg, &log, &[]);
    let (nested, encrypted) = zips(e.dir.path());

    // A malformed event first: it must not block what follows.
    e.amqp
        .publish(
            &e.exchange,
            b"{\"EventName\":\"s3:ObjectCreated:Put\",\"Key\":\"x\"",
        )
        .await;
    e.put_and_notify("clean.txt", b"just some text".to_vec(), None)
        .await;
    e.put_and_notify("dir/my file(1).com", EICAR.to_vec(), None)
        .await;
    e.put_and_notify("nested.zip", nested, None).await;
    e.put_and_notify("encrypted.zip", encrypted, None).await;
    e.put_and_notify("big.bin", vec![b'a'; 300_000], None).await;
    let ten = (0..10)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join("&");
    e.put_and_notify("ten-tags.txt", b"plain".to_vec(), Some(&ten))
        .await;
    // Deleted before moat gets to it.
    let etag = put(&e.s3, &e.bucket, "gone.txt", b"x".to_vec(), None).await;
    e.s3.delete(&e.bucket, "gone.txt", None).await.unwrap();
    e.amqp
        .publish(
            &e.exchange,
            &minio_event("s3:ObjectCreated:Put", &e.bucket, "gone.txt", 1, &etag),
        )
        .await;
    // moat's own tagging: must be ignored (else it would loop).
    e.amqp
        .publish(
            &e.exchange,
            &minio_event(
                "s3:ObjectCreated:PutTagging",
                &e.bucket,
                "clean.txt",
                14,
                "x",
            ),
        )
        .await;

    let l = e.ledger().await;
    let b = e.bucket.clone();
    wait_for("every object settled", 90, || {
        let (l, b) = (l.clone(), b.clone());
        async move {
            let mut ok = true;
            for k in [
                "clean.txt",
                "dir/my file(1).com",
                "nested.zip",
                "encrypted.zip",
                "big.bin",
            ] {
                ok &= state(&l, &b, k).await == Some(ObjectState::Done);
            }
            ok && state(&l, &b, "gone.txt").await == Some(ObjectState::Missing)
                && state(&l, &b, "ten-tags.txt").await == Some(ObjectState::ActionFailed)
        }
    })
    .await;
    let ctx = log_tail(&log);

    let t = tags(&e.s3, &e.bucket, "clean.txt").await;
    assert_eq!(tag(&t, "moat-status"), Some("clean"), "{t:?}\n{ctx}");
    assert!(tag(&t, "moat-fingerprint").is_some_and(|f| f.len() == 24));
    assert!(tag(&t, "moat-scanned-at").is_some());

    // Infected → quarantined: gone from the bucket, in the quarantine bucket
    // with its original location in metadata and its tags.
    for (key, sig) in [("dir/my file(1).com", "Eicar"), ("nested.zip", "Eicar")] {
        let h = e.s3.head(&e.bucket, key, None).await;
        assert!(
            matches!(h, Err(ref x) if x.is_not_found()),
            "{key} still in place: {h:?}"
        );
        let qkey = format!("q/{}/{key}", e.bucket);
        let qt = tags(&e.s3, &qbucket, &qkey).await;
        assert_eq!(
            tag(&qt, "moat-status"),
            Some("infected"),
            "{key}: {qt:?}\n{ctx}"
        );
        assert!(
            tag(&qt, "moat-signature").is_some_and(|s| s.contains(sig)),
            "{qt:?}"
        );
        let meta =
            e.s3.client()
                .head_object()
                .bucket(&qbucket)
                .key(&qkey)
                .send()
                .await
                .unwrap();
        let m = meta.metadata().unwrap();
        assert_eq!(m.get("moat-original-bucket"), Some(&e.bucket));
    }
    // Unscannable: tagged as such, never deleted, never clean.
    let t = tags(&e.s3, &e.bucket, "encrypted.zip").await;
    assert_eq!(tag(&t, "moat-status"), Some("unscannable"), "{t:?}");
    assert_eq!(tag(&t, "moat-reason"), Some("encrypted"));
    let t = tags(&e.s3, &e.bucket, "big.bin").await;
    assert_eq!(tag(&t, "moat-status"), Some("unscannable"), "{t:?}");
    assert_eq!(tag(&t, "moat-reason"), Some("too_large"));

    // Records carry the object in `extra`.
    let recs = records_named(
        &e.db_url(),
        &format!("s3://{}/dir/my file(1).com", e.bucket),
    )
    .await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].verdict.status.as_str(), "infected");
    assert_eq!(recs[0].extra["key"], "dir/my file(1).com");
    assert_eq!(recs[0].extra["bucket"], e.bucket.as_str());
    assert_eq!(recs[0].extra["action"], "quarantine");

    // 10 tags: the action error is recorded; after max_attempts it is dead-lettered with the reason.
    let row = l.get(&e.bucket, "ten-tags.txt", "").await.unwrap().unwrap();
    assert!(row.action_error.contains("10 per object"), "{row:?}");
    assert_eq!(tags(&e.s3, &e.bucket, "ten-tags.txt").await.len(), 10);
    let dlq = format!("{}.dead", e.queue);
    wait_for("two dead letters", 30, || async {
        e.amqp.count(&dlq).await >= 2
    })
    .await;
    let mut reasons = Vec::new();
    while let Some((_, r)) = e.amqp.get(&dlq).await {
        reasons.push(r);
    }
    assert!(
        reasons.iter().any(|r| r.contains("malformed event")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("tags")), "{reasons:?}");
    // Nothing left in the work queue: the consumer kept going.
    wait_for("work queue drained", 20, || async {
        e.amqp.count(&e.queue).await == 0
    })
    .await;
}

/// The compatible tag schemes, with deletion; the last one configured only
/// through the bucket-av-scanner environment variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_schemes_and_env_aliases() {
    let e = Env::new().await;
    let (_, encrypted) = zips(e.dir.path());
    let l = e.ledger().await;
    let cases: [(&str, &str, [&str; 3]); 3] = [
        (
            "guardduty",
            "GuardDutyMalwareScanStatus",
            ["NO_THREATS_FOUND", "THREATS_FOUND", "UNSUPPORTED"],
        ),
        (
            "bucket-antivirus",
            "av-status",
            ["CLEAN", "INFECTED", "UNSCANNABLE"],
        ),
        ("env", "scanned-by-av", ["clean", "infected", "no"]),
    ];
    for (scheme, key, want) in cases {
        let log = e.dir.path().join(format!("{scheme}.log"));
        let w = if scheme == "env" {
            let host_port = amqp_url()
                .trim_start_matches("amqp://")
                .split('@')
                .nth(1)
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string();
            let (host, port) = host_port.split_once(':').unwrap();
            let cfg = e.dir.path().join("empty.toml");
            std::fs::write(&cfg, format!("data_dir = \"{}\"\n", e.dir.path().display())).unwrap();
            watcher(
                &cfg,
                &log,
                &[
                    ("MINIO_SERVER_URL", e.endpoint.as_str()),
                    ("MINIO_USER_NAME", "testing"),
                    ("MINIO_USER_PASSWORD", "testing"),
                    ("RABBITMQ_ENDPOINT", host),
                    ("RABBITMQ_AMQP_PORT", port),
                    ("RABBITMQ_QUEUE_NAME", e.queue.as_str()),
                    ("RABBITMQ_TOPIC", e.exchange.as_str()),
                    ("RABBITMQ_QUEUE_ROUTING_KEY", "bucketlogs"),
                    ("TAG_FILES", "true"),
                    ("TAG_KEY", "scanned-by-av"),
                    ("DELETE_FILE", "true"),
                ],
            )
        } else {
            let cfg = e.config(
                &format!("{scheme}.toml"),
                "",
                &format!("[bucket.tag]\nscheme = \"{scheme}\"\n[bucket.policy.rules]\ninfected = \"block\"\n"),
                "",
            );
            watcher(&cfg, &log, &[])
        };
        let keys = [
            format!("{scheme}/clean.txt"),
            format!("{scheme}/eicar.com"),
            format!("{scheme}/enc.zip"),
        ];
        e.put_and_notify(&keys[0], b"hello".to_vec(), None).await;
        e.put_and_notify(&keys[1], EICAR.to_vec(), None).await;
        e.put_and_notify(&keys[2], encrypted.clone(), None).await;
        let b = e.bucket.clone();
        let ks = keys.clone();
        let lc = l.clone();
        let lg = log.clone();
        wait_for(&format!("{scheme}: all done"), 60, move || {
            let (l, b, ks, lg) = (lc.clone(), b.clone(), ks.clone(), lg.clone());
            async move {
                let mut ok = true;
                for k in &ks {
                    ok &= state(&l, &b, k).await == Some(ObjectState::Done);
                }
                if !ok && log_tail(&lg).contains("error: ") {
                    panic!("{}", log_tail(&lg));
                }
                ok
            }
        })
        .await;
        let t = tags(&e.s3, &e.bucket, &keys[0]).await;
        assert_eq!(
            tag(&t, key),
            Some(want[0]),
            "{scheme}: {t:?}\n{}",
            log_tail(&log)
        );
        // Infected → deleted (DELETE_FILE / block); the record keeps the verdict.
        assert!(
            e.s3.head(&e.bucket, &keys[1], None).await.is_err(),
            "{scheme}: infected object not deleted"
        );
        let recs = records_named(&e.db_url(), &format!("s3://{}/{}", e.bucket, keys[1])).await;
        assert_eq!(recs.len(), 1, "{scheme}");
        assert_eq!(recs[0].verdict.status.as_str(), "infected");
        let _ = want[1];
        let t = tags(&e.s3, &e.bucket, &keys[2]).await;
        assert_eq!(tag(&t, key), Some(want[2]), "{scheme}: {t:?}");
        drop(w);
    }
}

/// kill -9 after the verdict is recorded and the actions are done but before
/// the ack: the event is redelivered to the restarted watcher, which settles
/// it without a second verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_before_ack_redelivers_with_one_verdict() {
    let e = Env::new().await;
    let cfg = e.config("moat.toml", "", "", "");
    let log = e.dir.path().join("w1.log");
    let mut w = watcher(&cfg, &log, &[("MOAT_TEST_PAUSE_BEFORE_ACK_MS", "120000")]);
    e.put_and_notify("a.com", EICAR.to_vec(), None).await;
    e.put_and_notify("b.txt", b"fine".to_vec(), None).await;
    let l = e.ledger().await;
    let b = e.bucket.clone();
    wait_for("both done (before the ack)", 60, || {
        let (l, b) = (l.clone(), b.clone());
        async move {
            state(&l, &b, "a.com").await == Some(ObjectState::Done)
                && state(&l, &b, "b.txt").await == Some(ObjectState::Done)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        log_tail(&log).contains("pausing before the ack"),
        "{}",
        log_tail(&log)
    );
    // SIGKILL: no chance to ack.
    w.0.kill().unwrap();
    w.0.wait().unwrap();
    drop(w);
    // Unacked messages go back to the queue.
    wait_for("messages back in the queue", 30, || async {
        e.amqp.count(&e.queue).await == 2
    })
    .await;
    let log2 = e.dir.path().join("w2.log");
    let _w2 = watcher(&cfg, &log2, &[]);
    wait_for("redelivered and acked", 60, || async {
        e.amqp.count(&e.queue).await == 0
    })
    .await;
    // Wait for the consumer to have settled (queue count excludes unacked ones).
    wait_for("acked", 30, || {
        let log2 = log2.clone();
        async move {
            log_tail(&log2).matches("already_scanned").count() >= 1
                || log_tail(&log2).contains("AlreadyScanned")
        }
    })
    .await;
    for k in ["a.com", "b.txt"] {
        let recs = records_named(&e.db_url(), &format!("s3://{}/{k}", e.bucket)).await;
        assert_eq!(
            recs.len(),
            1,
            "{k}: exactly one verdict\n{}",
            log_tail(&log2)
        );
    }
    assert_eq!(
        tag(&tags(&e.s3, &e.bucket, "a.com").await, "moat-status"),
        Some("infected")
    );
    assert_eq!(
        tag(&tags(&e.s3, &e.bucket, "b.txt").await, "moat-status"),
        Some("clean")
    );
}

struct Clamd(PathBuf);
impl Clamd {
    fn start(dir: &Path, port: u16) -> Clamd {
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
        Clamd(dir.to_path_buf())
    }
    fn stop(&self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/clamd-test.sh"))
            .arg("stop")
            .arg(&self.0)
            .status();
    }
}
impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// clamd down: events are retried and nothing is tagged clean; clamd back:
/// every object gets its verdict (clamd's EICAR name included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clamd_outage_retries_and_never_tags_clean() {
    let e = Env::new().await;
    let port = free_port();
    let cdir = e.dir.path().join("clamd");
    let clamd = Clamd::start(&cdir, port);
    clamd.stop();
    let cfg = e.config(
        "moat.toml",
        &format!(
            "[[engines]]\ntype = \"clamd\"\naddress = \"127.0.0.1:{port}\"\ntimeout_secs = 10\n"
        ),
        "[bucket.retry]\nmax_attempts = 1000\nbase_delay_ms = 200\nmax_delay_ms = 1000\n",
        "",
    );
    let log = e.dir.path().join("w.log");
    let _w = watcher(&cfg, &log, &[]);
    let keys: Vec<String> = (0..5).map(|i| format!("c{i}.txt")).collect();
    for k in &keys {
        e.put_and_notify(k, format!("clean content {k}").into_bytes(), None)
            .await;
    }
    e.put_and_notify("eicar.com", EICAR.to_vec(), None).await;
    let l = e.ledger().await;
    // Engine errors recorded, events retried, no tags.
    wait_for("engine errors recorded", 60, || {
        let l = l.clone();
        let b = e.bucket.clone();
        async move { state(&l, &b, "c0.txt").await == Some(ObjectState::ActionFailed) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for k in keys.iter().chain([&"eicar.com".to_string()]) {
        let t = tags(&e.s3, &e.bucket, k).await;
        assert!(
            tag(&t, "moat-status").is_none(),
            "{k} tagged while clamd was down: {t:?}"
        );
    }
    assert!(
        log_tail(&log).contains("engine error"),
        "{}",
        log_tail(&log)
    );
    let _clamd2 = Clamd::start(&cdir, port);
    let b = e.bucket.clone();
    wait_for("all verdicts after clamd is back", 90, || {
        let (l, b, keys) = (l.clone(), b.clone(), keys.clone());
        async move {
            let mut ok = state(&l, &b, "eicar.com").await == Some(ObjectState::Done);
            for k in &keys {
                ok &= state(&l, &b, k).await == Some(ObjectState::Done);
            }
            ok
        }
    })
    .await;
    for k in &keys {
        assert_eq!(
            tag(&tags(&e.s3, &e.bucket, k).await, "moat-status"),
            Some("clean")
        );
    }
    let t = tags(&e.s3, &e.bucket, "eicar.com").await;
    assert_eq!(tag(&t, "moat-status"), Some("infected"));
    assert!(
        tag(&t, "moat-signature").is_some_and(|s| s.contains("EICAR")),
        "{t:?}"
    );
}

/// Backfill of 1,000 objects, killed part-way and resumed: every object ends
/// with exactly one verdict in the ledger, the resumed run skips what was
/// done, and the exit code follows `moat scan` (1: something infected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_interrupted_and_resumed() {
    let e = Env::new().await;
    const N: usize = 1000;
    let mut set = tokio::task::JoinSet::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    for i in 0..N {
        let (s3, b, sem) = (e.s3.clone(), e.bucket.clone(), sem.clone());
        set.spawn(async move {
            let _p = sem.acquire().await.unwrap();
            let body = if i % 100 == 7 {
                EICAR.to_vec()
            } else {
                format!("object {i}").into_bytes()
            };
            put(&s3, &b, &format!("p/{i:04}"), body, None).await;
        });
    }
    while set.join_next().await.is_some() {}
    let cfg = e.config("moat.toml", "", "", "");
    let target = format!("s3://{}/p/", e.bucket);
    let l = e.ledger().await;
    let mut first = moat()
        .args([
            "bucket",
            "scan",
            "--quiet",
            "--concurrency",
            "8",
            "--config",
        ])
        .arg(&cfg)
        .arg(&target)
        .env("MOAT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let b = e.bucket.clone();
    wait_for("some progress", 120, || {
        let (l, b) = (l.clone(), b.clone());
        async move { l.list(&b, "p/", 10_000).await.unwrap().len() >= 150 }
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let done_before = l.list(&e.bucket, "p/", 10_000).await.unwrap().len();
    assert!(
        done_before < N,
        "killed too late to test resuming ({done_before})"
    );
    let out = moat()
        .args([
            "bucket",
            "scan",
            "--quiet",
            "--concurrency",
            "8",
            "--config",
        ])
        .arg(&cfg)
        .arg(&target)
        .env("MOAT_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Already scanned (current engines): "), "{err}");
    let rows = l.list(&e.bucket, "p/", 10_000).await.unwrap();
    assert_eq!(rows.len(), N);
    let mut infected = 0;
    for r in &rows {
        assert_eq!(r.state, ObjectState::Done, "{r:?}");
        if r.status == "infected" {
            infected += 1;
        }
    }
    assert_eq!(infected, N / 100);
    // The resumed run scanned only what the first had not finished.
    let scanned_now: usize = err
        .lines()
        .find_map(|l| l.strip_prefix("Scanned now: "))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    // Up to concurrency + fetch_ahead (8 + 8) objects were in flight when
    // the first run was killed; those with a recorded but unfinished
    // verdict are counted in `done_before` and finished again now.
    assert!(
        scanned_now <= N - done_before + 16,
        "rescanned finished objects: {scanned_now} after {done_before}\n{err}"
    );
    // A third run has nothing left to do.
    let out = moat()
        .args(["bucket", "scan", "--quiet", "--config"])
        .arg(&cfg)
        .arg(&target)
        .env("MOAT_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Scanned now: 0 "), "{err}");
    assert!(
        err.contains(&format!("Already scanned (current engines): {N}")),
        "{err}"
    );
}

/// An HTTPS S3 endpoint with a self-signed certificate: refused by default,
/// trusted through `ca_bundle`, or accepted with the explicit
/// `tls_verify = false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_tls_verified_by_default_ca_bundle_or_explicit_opt_out() {
    let dir = tempfile::tempdir().unwrap();
    gen_ca_signed_cert(dir.path(), "s3");
    let (cert, key) = (dir.path().join("s3.crt"), dir.path().join("s3.key"));
    let ca_cert = dir.path().join("s3-ca.crt");
    let (_moto, endpoint) = moto_https(&cert, &key);
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    // The test's own client trusts the certificate through ca_bundle.
    let s3 = moat_s3::S3::new(&moat_s3::S3Config {
        endpoint: Some(endpoint.clone()),
        access_key: Some("testing".into()),
        secret_key: Some("testing".into()),
        ca_bundle: Some(ca_cert.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    mkbucket(&s3, "tls").await;
    put(&s3, "tls", "clean.txt", b"just text".to_vec(), None).await;
    put(&s3, "tls", "eicar.com", EICAR.to_vec(), None).await;
    let config = |name: &str, s3_extra: &str| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!(
                "data_dir = \"{d}\"\n[bucket.s3]\nendpoint = \"{endpoint}\"\naccess_key = \"testing\"\nsecret_key = \"testing\"\n{s3_extra}\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        p
    };
    let scan = |cfg: &Path| {
        moat()
            .args(["bucket", "scan", "--quiet", "--rescan", "--config"])
            .arg(cfg)
            .arg("s3://tls")
            .env("MOAT_LOG", "warn")
            .output()
            .unwrap()
    };
    // Default: verification on, and the self-signed certificate is refused.
    let out = scan(&config("verify.toml", ""));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // The CA bundle makes it trusted.
    let ca = format!("ca_bundle = \"{}\"", ca_cert.display());
    let out = scan(&config("ca.toml", &ca));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Scanned now: 2 "), "{err}");
    // So does the explicit opt-out, which says so in the log.
    let out = scan(&config("insecure.toml", "tls_verify = false"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Scanned now: 2 "), "{err}");
    assert!(err.contains("verification is OFF"), "{err}");
    let t = tags(&s3, "tls", "eicar.com").await;
    assert_eq!(tag(&t, "moat-status"), Some("infected"), "{t:?}");
    // Both at once is a configuration error, not a silent choice.
    let both = config("both.toml", &format!("{ca}\ntls_verify = false"));
    let out = scan(&both);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("contradict"), "{err}");
}

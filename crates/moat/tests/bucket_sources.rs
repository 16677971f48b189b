//! `moat bucket watch` end to end with the event sources other than AMQP
//! (SQS fed by moto's own S3 notifications, NATS JetStream, the webhook
//! source) and the signed notify webhook. Real services only: a moto server
//! per test (MOAT_TEST_MOTO_SERVER), RabbitMQ (MOAT_TEST_AMQP_URL), NATS
//! (MOAT_TEST_NATS_URL) and the real `moat` binary.

mod common;
use common::*;
use moat_db::ObjectState;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "notify-secret-\u{e9}-42";

fn nats_url() -> String {
    std::env::var("MOAT_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The receiver's check of `X-Moat-Signature: sha256=<hex HMAC-SHA256(secret, body)>`,
/// written here from the hmac crate rather than taken from moat-notify.
fn signature_ok(secret: &str, body: &[u8], header: &str) -> bool {
    use hmac::{Hmac, Mac};
    let Some(h) = header.strip_prefix("sha256=") else {
        return false;
    };
    if h.len() != 64 || h.bytes().any(|c| c.is_ascii_uppercase()) {
        return false;
    }
    let Ok(sig) = hex::decode(h) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// One request the notify receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header: {:?}", self.headers))
            .to_str()
            .unwrap()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// An HTTP receiver on 127.0.0.1 that records every POST to /hook and
/// answers 200. Returns its URL.
async fn receiver() -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    let i = inbox.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let i = i.clone();
                async move {
                    i.lock().unwrap().push(Received {
                        headers,
                        body: body.to_vec(),
                    });
                    "ok"
                }
            },
        ),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, inbox)
}

fn received(inbox: &Inbox) -> Vec<Received> {
    inbox.lock().unwrap().clone()
}

/// `[bucket.notify]` TOML.
fn notify_toml(url: &str, report_clean: bool) -> String {
    format!(
        "[bucket.notify]\nurl = \"{url}\"\nsecret = \"{SECRET}\"\nretries = 2\nbackoff_ms = 100\ntimeout_secs = 5\nreport_clean = {report_clean}\n"
    )
}

/// Wait until every key is `done` in the ledger (panics with the log on timeout).
async fn wait_done(e: &Env, log: &std::path::Path, keys: &[&str], secs: u64) {
    let l = e.ledger().await;
    let b = e.bucket.clone();
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let t = std::time::Instant::now();
    loop {
        let mut ok = true;
        for k in &keys {
            ok &= state(&l, &b, k).await == Some(ObjectState::Done);
        }
        if ok {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "objects {keys:?} not done after {secs} s:\n{}",
            log_tail(log)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The tags of a clean and an infected object under the `moat` scheme.
async fn assert_moat_tags(e: &Env, clean: &str, infected: &str) {
    let t = tags(&e.s3, &e.bucket, clean).await;
    assert_eq!(tag(&t, "moat-status"), Some("clean"), "{clean}: {t:?}");
    assert!(tag(&t, "moat-signature").is_none(), "{t:?}");
    assert!(tag(&t, "moat-fingerprint").is_some_and(|f| f.len() == 24));
    let t = tags(&e.s3, &e.bucket, infected).await;
    assert_eq!(
        tag(&t, "moat-status"),
        Some("infected"),
        "{infected}: {t:?}"
    );
    assert_eq!(tag(&t, "moat-signature"), Some("Eicar-Test-Signature"));
}

/// Check one notification: a valid signature over the exact body (and not
/// over a tampered one), the dedupe headers, and the result document.
fn check_notification(r: &Received, bucket: &str, key: &str, content: &[u8], status: &str) {
    let sig = r.header("x-moat-signature");
    assert!(
        signature_ok(SECRET, &r.body, sig),
        "{key}: signature {sig} does not verify"
    );
    assert!(!signature_ok("another secret", &r.body, sig));
    // A receiver must reject a body changed in transit: the verdict flipped...
    let s = String::from_utf8(r.body.clone()).unwrap();
    let flipped = if status == "clean" {
        s.replace("\"status\":\"clean\"", "\"status\":\"infected\"")
    } else {
        s.replace("\"status\":\"infected\"", "\"status\":\"clean\"")
    };
    assert_ne!(flipped, s, "status not found in {s}");
    assert!(!signature_ok(SECRET, flipped.as_bytes(), sig));
    // ...one byte changed, or a byte added.
    let mut b = r.body.clone();
    b[0] ^= 0x20;
    assert!(!signature_ok(SECRET, &b, sig));
    let mut b = r.body.clone();
    b.push(b' ');
    assert!(!signature_ok(SECRET, &b, sig));

    assert!(
        r.header("content-type").starts_with("application/json"),
        "{:?}",
        r.headers
    );
    let v = r.json();
    assert_eq!(v["bucket"], bucket, "{v}");
    assert_eq!(v["key"], key, "{v}");
    assert!(v["version_id"].is_null(), "{v}");
    assert_eq!(v["status"], status, "{v}");
    assert!(v["reason"].is_null(), "{v}");
    assert_eq!(v["sha256"], sha_hex(content), "{v}");
    assert_eq!(v["size"], content.len() as u64, "{v}");
    let sigs: Vec<&str> = v["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    if status == "infected" {
        assert_eq!(sigs, ["Eicar-Test-Signature"], "{v}");
    } else {
        assert!(sigs.is_empty(), "{v}");
    }
    let at = v["scanned_at"].as_str().unwrap();
    assert!(
        at.len() == 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
        "{at}"
    );
    let engines = v["engines"].as_array().unwrap();
    assert!(
        engines.iter().any(|e| e["name"] == "builtin"),
        "{engines:?}"
    );
    let id = v["event_id"].as_str().unwrap();
    assert_eq!(id.len(), 32, "{v}");
    assert_eq!(r.header("x-moat-event-id"), id);
    assert_eq!(r.header("idempotency-key"), id);
    assert!(r.header("x-moat-timestamp").parse::<u64>().is_ok());
}

/// `[bucket.notify]` with a secret: every result (report_clean = true) is
/// POSTed as JSON whose `X-Moat-Signature` is a valid HMAC-SHA256 of the
/// exact body; with report_clean = false only the infected one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_webhook_is_signed_and_reports_results() {
    let e = Env::new().await;
    let (url, inbox) = receiver().await;
    let cfg = e.config("notify.toml", "", &notify_toml(&url, true), "");
    let log = e.dir.path().join("notify.log");
    let w = watcher(&cfg, &log, &[]);
    let clean = b"quarterly report, nothing to see".to_vec();
    e.put_and_notify("docs/report.txt", clean.clone(), None)
        .await;
    e.put_and_notify("dir/my file(1).com", EICAR.to_vec(), None)
        .await;
    // Notification precedes the ledger's `done`: once both are done, both were sent.
    wait_done(&e, &log, &["docs/report.txt", "dir/my file(1).com"], 60).await;
    let got = received(&inbox);
    assert_eq!(got.len(), 2, "{got:?}\n{}", log_tail(&log));
    let find = |key: &str| {
        got.iter()
            .find(|r| r.json()["key"] == key)
            .unwrap_or_else(|| panic!("no notification for {key}: {got:?}"))
            .clone()
    };
    check_notification(
        &find("docs/report.txt"),
        &e.bucket,
        "docs/report.txt",
        &clean,
        "clean",
    );
    check_notification(
        &find("dir/my file(1).com"),
        &e.bucket,
        "dir/my file(1).com",
        EICAR,
        "infected",
    );
    // The notification describes what was tagged.
    assert_moat_tags(&e, "docs/report.txt", "dir/my file(1).com").await;
    drop(w);

    // report_clean = false: the clean object is tagged but not reported.
    let (url2, inbox2) = receiver().await;
    let cfg2 = e.config("quiet.toml", "", &notify_toml(&url2, false), "");
    let log2 = e.dir.path().join("quiet.log");
    let _w2 = watcher(&cfg2, &log2, &[]);
    e.put_and_notify("quiet.txt", b"fine".to_vec(), None).await;
    e.put_and_notify("loud.com", EICAR.to_vec(), None).await;
    wait_done(&e, &log2, &["quiet.txt", "loud.com"], 60).await;
    let got = received(&inbox2);
    assert_eq!(got.len(), 1, "{got:?}\n{}", log_tail(&log2));
    check_notification(&got[0], &e.bucket, "loud.com", EICAR, "infected");
    assert_moat_tags(&e, "quiet.txt", "loud.com").await;
}

/// An `sqs` source fed by moto's own S3 → SQS bucket notifications (AWS
/// record format, URL-encoded keys): the objects are tagged, every message
/// is deleted from the queue, nothing is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_source_with_real_s3_notifications() {
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let e = Env::new().await;
    let mut sc = moat_events::sqs::SqsConfig::new("");
    sc.endpoint = Some(e.endpoint.clone());
    sc.access_key_id = Some("testing".into());
    sc.secret_access_key = Some("testing".into());
    let sqs = moat_events::sqs::client(&sc).await;
    let name = uniq("moat-s3-events");
    let mut urls = Vec::new();
    for n in [name.clone(), format!("{name}-dead")] {
        let u = sqs
            .create_queue()
            .queue_name(n)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        urls.push(u);
    }
    let (queue_url, dlq_url) = (urls[0].clone(), urls[1].clone());
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(A::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&A::QueueArn)
        .unwrap();
    e.s3.client()
        .put_bucket_notification_configuration()
        .bucket(&e.bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let source = format!(
        r#"[[bucket.sources]]
type = "sqs"
queue_url = "{queue_url}"
dead_letter_queue_url = "{dlq_url}"
endpoint = "{ep}"
access_key_id = "testing"
secret_access_key = "testing"
wait_secs = 1
visibility_secs = 2
"#,
        ep = e.endpoint
    );
    let cfg = e.config_sources("sqs.toml", "", "", &source, "");
    let log = e.dir.path().join("sqs.log");
    let w = watcher(&cfg, &log, &[]);
    // No event is published by the test: moto sends them.
    put(
        &e.s3,
        &e.bucket,
        "in box/a+b report.txt",
        b"hello".to_vec(),
        None,
    )
    .await;
    put(&e.s3, &e.bucket, "dir/my file(1).com", EICAR.to_vec(), None).await;
    wait_done(
        &e,
        &log,
        &["in box/a+b report.txt", "dir/my file(1).com"],
        60,
    )
    .await;
    assert_moat_tags(&e, "in box/a+b report.txt", "dir/my file(1).com").await;
    let counts = |url: String| {
        let sqs = sqs.clone();
        async move {
            let a = sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(A::ApproximateNumberOfMessages)
                .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
                .unwrap()
                .attributes
                .unwrap();
            let n = |k: &A| a.get(k).unwrap().parse::<u64>().unwrap();
            (
                n(&A::ApproximateNumberOfMessages),
                n(&A::ApproximateNumberOfMessagesNotVisible),
            )
        }
    };
    // Acked = deleted: neither waiting nor in flight.
    wait_for("the SQS queue drained", 30, || {
        let c = counts(queue_url.clone());
        async move { c.await == (0, 0) }
    })
    .await;
    assert_eq!(counts(dlq_url.clone()).await, (0, 0), "{}", log_tail(&log));
    // Deleted, not merely hidden: with the watcher gone and the 2 s
    // visibility timeout past, nothing reappears.
    drop(w);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let left = sqs
        .receive_message()
        .queue_url(&queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let recs = records_named(
        &e.db_url(),
        &format!("s3://{}/dir/my file(1).com", e.bucket),
    )
    .await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].extra["event_source"], "sqs");
}

/// A `nats` source on its own JetStream stream: MinIO events are scanned and
/// tagged; a malformed event is published to the dead-letter subject with
/// the reason and the consumer goes on with the next events; every message
/// ends acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_source_tags_and_dead_letters() {
    use futures_util::StreamExt;
    let e = Env::new().await;
    let id = uniq("b").replace('-', "_");
    let stream = format!("MOAT_BUCKET_{id}");
    let base = format!("moat.t.{id}");
    let dead = format!("{base}.dead");
    let client = async_nats::connect(nats_url())
        .await
        .expect("NATS at MOAT_TEST_NATS_URL (scripts/test-deps.sh)");
    let js = async_nats::jetstream::new(client.clone());
    let mut dead_sub = client.subscribe(dead.clone()).await.unwrap();
    let source = format!(
        r#"[[bucket.sources]]
type = "nats"
url = "{url}"
stream = "{stream}"
subjects = ["{base}.events.>"]
consumer = "moat"
ack_wait_secs = 30
max_deliver = 3
dead_letter_subject = "{dead}"
"#,
        url = nats_url()
    );
    let cfg = e.config_sources("nats.toml", "", "", &source, "");
    let log = e.dir.path().join("nats.log");
    let _w = watcher(&cfg, &log, &[]);
    let publish = |body: Vec<u8>| {
        let js = js.clone();
        let subject = format!("{base}.events.put");
        async move {
            js.publish(subject, body.into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    // Malformed first: it must not hold up what follows.
    let bad = b"{\"EventName\":\"s3:ObjectCreated:Put\",\"Records\":[".to_vec();
    publish(bad.clone()).await;
    let mut objects = Vec::new();
    for (key, body) in [
        ("clean.txt", b"plain text".to_vec()),
        ("x/eicar.com", EICAR.to_vec()),
    ] {
        let etag = put(&e.s3, &e.bucket, key, body.clone(), None).await;
        objects.push(key);
        publish(minio_event(
            "s3:ObjectCreated:Put",
            &e.bucket,
            key,
            body.len(),
            &etag,
        ))
        .await;
    }
    wait_done(&e, &log, &objects, 60).await;
    assert_moat_tags(&e, "clean.txt", "x/eicar.com").await;
    // The dead letter: the original bytes, with the reason.
    let m = tokio::time::timeout(Duration::from_secs(20), dead_sub.next())
        .await
        .unwrap_or_else(|_| panic!("no dead letter on {dead}:\n{}", log_tail(&log)))
        .unwrap();
    assert_eq!(&m.payload[..], &bad[..]);
    let reason = m
        .headers
        .as_ref()
        .and_then(|h| h.get(moat_events::nats::REASON_HEADER))
        .map(|v| v.as_str().to_string())
        .unwrap_or_default();
    assert!(reason.contains("malformed event"), "{reason:?}");
    // Every event settled: nothing pending, nothing awaiting an ack.
    let st = js.get_stream(&stream).await.unwrap();
    wait_for("the consumer settled everything", 30, || {
        let st = st.clone();
        async move {
            let i = st.consumer_info("moat").await.unwrap();
            i.num_pending == 0 && i.num_ack_pending == 0 && i.delivered.stream_sequence >= 3
        }
    })
    .await;
    let _ = js.delete_stream(&stream).await;
    let _ = js.delete_stream(format!("{stream}_DEAD")).await;
}

/// A raw HTTP/1.1 POST; returns the status and the body.
fn http_post(addr: &str, path: &str, auth: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    #[allow(clippy::disallowed_methods)] // bounded by take()
    s.take(1 << 20).read_to_end(&mut out).unwrap();
    let out = String::from_utf8_lossy(&out).to_string();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response {out:?}"));
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// The `webhook` source on `metrics_listen`: `POST /v1/events/s3` with one
/// of the bearer tokens → 200 and the object is scanned and tagged; no
/// token, a wrong one or another scheme → 401 and nothing is processed; a
/// malformed event is accepted and dead-lettered in the durable queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_source_requires_the_token() {
    let e = Env::new().await;
    let addr = format!("127.0.0.1:{}", free_port());
    let source = r#"[[bucket.sources]]
type = "webhook"
tokens = ["old-token", "new-token"]
queue = "s3-in"
poll_ms = 100
"#;
    let cfg = e.config_sources(
        "webhook.toml",
        "",
        &format!("metrics_listen = \"{addr}\"\n"),
        source,
        "",
    );
    let log = e.dir.path().join("webhook.log");
    let _w = watcher(&cfg, &log, &[]);
    let event = |key: &str, body: &[u8], etag: &str| {
        minio_event("s3:ObjectCreated:Put", &e.bucket, key, body.len(), etag)
    };
    let post = |auth: Option<&'static str>, ev: Vec<u8>| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || http_post(&addr, "/v1/events/s3", auth, &ev))
    };

    // Refused: nothing is stored, the object is never looked at.
    let denied = b"must not be scanned".to_vec();
    let etag = put(&e.s3, &e.bucket, "denied.txt", denied.clone(), None).await;
    for auth in [
        None,
        Some("Bearer wrong-token"),
        Some("Bearer old-token-but-longer"),
        Some("Basic b2xkLXRva2Vu"),
        Some("old-token"),
    ] {
        let (st, body) = post(auth, event("denied.txt", &denied, &etag))
            .await
            .unwrap();
        assert_eq!(st, 401, "{auth:?}: {body}");
    }

    // Accepted, with either token (rotation).
    let clean = b"clean via webhook".to_vec();
    let etag = put(&e.s3, &e.bucket, "ok.txt", clean.clone(), None).await;
    let (st, body) = post(Some("Bearer old-token"), event("ok.txt", &clean, &etag))
        .await
        .unwrap();
    assert_eq!(st, 200, "{body}");
    let etag = put(&e.s3, &e.bucket, "eicar.com", EICAR.to_vec(), None).await;
    let (st, body) = post(Some("Bearer new-token"), event("eicar.com", EICAR, &etag))
        .await
        .unwrap();
    assert_eq!(st, 200, "{body}");
    // Malformed but authorised: stored, then dead-lettered with the reason.
    let (st, body) = post(Some("Bearer new-token"), b"{\"Records\":".to_vec())
        .await
        .unwrap();
    assert_eq!(st, 200, "{body}");
    let bad_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    wait_done(&e, &log, &["ok.txt", "eicar.com"], 60).await;
    assert_moat_tags(&e, "ok.txt", "eicar.com").await;
    let q = moat_db::open_queue(&e.db_url()).await.unwrap();
    wait_for("the queue drained, one dead letter", 30, || {
        let q = q.clone();
        async move { q.depth("s3-in").await.unwrap() == 0 && q.dead_count("s3-in").await.unwrap() == 1 }
    })
    .await;
    let reason = q.dead_reason(&bad_id).await.unwrap().unwrap_or_default();
    assert!(reason.contains("malformed event"), "{reason:?}");
    // The refused event left no trace.
    assert!(tags(&e.s3, &e.bucket, "denied.txt").await.is_empty());
    assert_eq!(
        state(&e.ledger().await, &e.bucket, "denied.txt").await,
        None
    );
    assert!(
        records_named(&e.db_url(), &format!("s3://{}/denied.txt", e.bucket))
            .await
            .is_empty()
    );
}

//! The webhook source over real HTTP (axum on a free port) into the SQLite
//! durable queue, and QueueSource reading it back.

use moat_db::{EventQueue, open_queue};
use moat_events::EventSource;
use moat_events::webhook::{PATH, QueueSource, WebhookSourceConfig, router};
use std::sync::Arc;
use std::time::Duration;

struct Server {
    url: String,
    queue: Arc<dyn EventQueue>,
    cfg: WebhookSourceConfig,
    _dir: tempfile::TempDir,
}

async fn server(cfg: WebhookSourceConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let queue = open_queue(&format!("sqlite://{}/q.db", dir.path().display()))
        .await
        .unwrap();
    let app = router(queue.clone(), cfg.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server {
        url: format!("http://{addr}{PATH}"),
        queue,
        cfg,
        _dir: dir,
    }
}

fn cfg() -> WebhookSourceConfig {
    WebhookSourceConfig {
        lease_secs: 1,
        poll_ms: 20,
        ..WebhookSourceConfig::new(vec!["old-token".into(), "s3cret-token".into()])
    }
}

const MINIO_EVENT: &str = r#"{"EventName":"s3:ObjectCreated:Put","Key":"uploads/a+b.txt","Records":[{"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"uploads"},"object":{"key":"a+b.txt","size":5}}}]}"#;

async fn post(url: &str, auth: Option<&str>, body: &[u8]) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().post(url).body(body.to_vec());
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let v = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, v)
}

async fn next(src: &mut QueueSource, secs: u64) -> Option<Box<dyn moat_events::Delivery>> {
    next_ms(src, secs * 1000).await
}

async fn next_ms(src: &mut QueueSource, ms: u64) -> Option<Box<dyn moat_events::Delivery>> {
    tokio::time::timeout(Duration::from_millis(ms), src.next())
        .await
        .ok()
        .map(|r| r.unwrap())
}

#[tokio::test]
async fn post_then_lease_then_ack() {
    let s = server(cfg()).await;
    let (status, v) = post(&s.url, Some("Bearer s3cret-token"), MINIO_EVENT.as_bytes()).await;
    assert_eq!(status, 200);
    assert!(v["id"].as_str().is_some_and(|id| !id.is_empty()));
    // Durable before the answer: it is in the table now.
    assert_eq!(s.queue.depth("s3-events").await.unwrap(), 1);

    let mut src = QueueSource::new(s.queue.clone(), s.cfg.clone());
    assert_eq!(src.name(), "webhook:s3-events");
    let d = next(&mut src, 10).await.expect("queued event");
    assert_eq!(d.payload(), MINIO_EVENT.as_bytes());
    assert_eq!(d.attempt(), 1);
    assert_eq!(d.source(), "webhook");
    d.ack().await.unwrap();
    assert_eq!(s.queue.depth("s3-events").await.unwrap(), 0);
    // Nothing comes back past the lease.
    assert!(next(&mut src, 2).await.is_none());
}

#[tokio::test]
async fn unauthenticated_requests_are_refused_and_not_queued() {
    let s = server(cfg()).await;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("s3cret-token"),
        Some("Basic s3cret-token"),
    ] {
        let (status, v) = post(&s.url, auth, MINIO_EVENT.as_bytes()).await;
        assert_eq!(status, 401, "{auth:?}");
        assert!(v["error"].as_str().is_some());
    }
    // The old token (rotation) still works.
    let (status, _) = post(&s.url, Some("Bearer old-token"), b"{}").await;
    assert_eq!(status, 200);
    assert_eq!(s.queue.depth("s3-events").await.unwrap(), 1);
}

#[tokio::test]
async fn oversized_and_empty_bodies_are_rejected() {
    let s = server(WebhookSourceConfig {
        max_body_bytes: 1024,
        ..cfg()
    })
    .await;
    let (status, _) = post(&s.url, Some("Bearer s3cret-token"), &[b'x'; 4096]).await;
    assert_eq!(status, 413);
    let (status, _) = post(&s.url, Some("Bearer s3cret-token"), b"").await;
    assert_eq!(status, 400);
    assert_eq!(s.queue.depth("s3-events").await.unwrap(), 0);
}

#[tokio::test]
async fn expired_lease_redelivers_with_attempt_2_and_keep_alive_holds() {
    // A 3 s lease renewed every 500 ms: the margin (2.5 s) absorbs a machine
    // busy with the rest of the suite, which a 1 s lease once did not.
    let s = server(WebhookSourceConfig {
        lease_secs: 3,
        ..cfg()
    })
    .await;
    post(&s.url, Some("Bearer s3cret-token"), MINIO_EVENT.as_bytes()).await;
    let mut src = QueueSource::new(s.queue.clone(), s.cfg.clone());
    let d = next(&mut src, 10).await.unwrap();
    // Held past twice the lease by keep-alives.
    for _ in 0..14 {
        d.keep_alive().await.unwrap();
        assert!(next_ms(&mut src, 500).await.is_none(), "leased twice");
    }
    drop(d); // a crash: never settled
    let d = next(&mut src, 10)
        .await
        .expect("redelivered after the lease");
    assert_eq!(d.attempt(), 2);
    assert_eq!(d.payload(), MINIO_EVENT.as_bytes());
    d.retry(Duration::from_millis(200)).await.unwrap();
    let d = next(&mut src, 10).await.expect("after retry");
    assert_eq!(d.attempt(), 3);
    d.ack().await.unwrap();
}

#[tokio::test]
async fn malformed_events_are_stored_then_dead_lettered_with_reason() {
    let s = server(cfg()).await;
    let (status, v) = post(&s.url, Some("Bearer s3cret-token"), b"{not json").await;
    assert_eq!(status, 200);
    let id = v["id"].as_str().unwrap().to_string();
    let mut src = QueueSource::new(s.queue.clone(), s.cfg.clone());
    let d = next(&mut src, 10).await.unwrap();
    assert_eq!(d.payload(), b"{not json");
    d.dead_letter("malformed event: key must be a string at line 1")
        .await
        .unwrap();
    assert_eq!(s.queue.depth("s3-events").await.unwrap(), 0);
    assert_eq!(s.queue.dead_count("s3-events").await.unwrap(), 1);
    assert_eq!(
        s.queue.dead_reason(&id).await.unwrap().as_deref(),
        Some("malformed event: key must be a string at line 1")
    );
    assert!(next(&mut src, 2).await.is_none());
}

#[tokio::test]
async fn max_attempts_dead_letters_without_handing_out() {
    let s = server(WebhookSourceConfig {
        max_attempts: 2,
        ..cfg()
    })
    .await;
    post(&s.url, Some("Bearer s3cret-token"), b"poison").await;
    let mut src = QueueSource::new(s.queue.clone(), s.cfg.clone());
    for attempt in 1..=2 {
        let d = next(&mut src, 10).await.unwrap();
        assert_eq!(d.attempt(), attempt);
        d.retry(Duration::ZERO).await.unwrap();
    }
    assert!(next(&mut src, 2).await.is_none());
    assert_eq!(s.queue.dead_count("s3-events").await.unwrap(), 1);
}

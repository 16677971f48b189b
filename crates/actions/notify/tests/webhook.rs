//! The webhook against a real local HTTP server (axum on a free port).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use moat_notify::{
    EngineSummary, NotifyError, ResultMessage, Webhook, WebhookConfig, verify_signature,
};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

#[derive(Clone, Default)]
struct Receiver {
    /// Statuses to answer, in order; 200 once empty.
    script: Arc<Mutex<VecDeque<u16>>>,
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.got.lock().unwrap().push((headers, body));
    let code = r.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(code).unwrap()
}

async fn start(script: &[u16]) -> (String, Receiver) {
    let r = Receiver::default();
    r.script.lock().unwrap().extend(script);
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/hook"), r)
}

fn msg(status: &str) -> ResultMessage {
    ResultMessage::new(
        "uploads",
        "dir/a file.txt",
        Some("v1"),
        status,
        None,
        if status == "infected" {
            vec!["Win.Test.EICAR_HDB-1".into()]
        } else {
            vec![]
        },
        &"ab".repeat(32),
        68,
        UNIX_EPOCH + Duration::from_secs(1_795_385_707),
        vec![EngineSummary {
            name: "builtin".into(),
            version: "1".into(),
            status: status.into(),
        }],
    )
}

fn cfg(url: &str) -> WebhookConfig {
    WebhookConfig {
        secret: Some("s3cret".into()),
        backoff_ms: 20,
        ..WebhookConfig::new(url)
    }
}

#[tokio::test]
async fn posts_signed_json_with_dedupe_headers() {
    let (url, r) = start(&[]).await;
    let hook = Webhook::new(cfg(&url)).unwrap();
    let m = msg("infected");
    hook.send(&m).await.unwrap();
    let got = r.got.lock().unwrap();
    assert_eq!(got.len(), 1);
    let (h, body) = &got[0];
    let sig = h["x-moat-signature"].to_str().unwrap();
    assert!(verify_signature("s3cret", body, sig));
    assert!(!verify_signature("wrong", body, sig));
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["x-moat-event-id"].to_str().unwrap(), m.event_id);
    assert_eq!(h["idempotency-key"].to_str().unwrap(), m.event_id);
    assert!(
        h["x-moat-timestamp"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 1_700_000_000
    );
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["bucket"], "uploads");
    assert_eq!(v["key"], "dir/a file.txt");
    assert_eq!(v["version_id"], "v1");
    assert_eq!(v["status"], "infected");
    assert_eq!(v["reason"], serde_json::Value::Null);
    assert_eq!(v["signatures"][0], "Win.Test.EICAR_HDB-1");
    assert_eq!(v["sha256"], "ab".repeat(32));
    assert_eq!(v["size"], 68);
    assert_eq!(v["scanned_at"], "2026-11-22T22:15:07Z");
    assert_eq!(v["engines"][0]["name"], "builtin");
    let back: ResultMessage = serde_json::from_slice(body).unwrap();
    assert_eq!(back, m);
}

#[tokio::test]
async fn retries_5xx_and_429_then_succeeds_with_the_same_event_id() {
    let (url, r) = start(&[500, 503, 429]).await;
    let hook = Webhook::new(cfg(&url)).unwrap();
    hook.send(&msg("infected")).await.unwrap();
    let got = r.got.lock().unwrap();
    assert_eq!(got.len(), 4);
    let ids: Vec<_> = got
        .iter()
        .map(|(h, _)| h["x-moat-event-id"].clone())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
    assert!(
        got.windows(2).all(|w| w[0].1 == w[1].1),
        "identical body on every retry"
    );
}

#[tokio::test]
async fn gives_up_after_the_configured_retries() {
    let (url, r) = start(&[500, 500, 500, 500]).await;
    let hook = Webhook::new(WebhookConfig {
        retries: 2,
        ..cfg(&url)
    })
    .unwrap();
    let err = hook.send(&msg("infected")).await.unwrap_err();
    assert!(
        matches!(
            err,
            NotifyError::Status {
                status: 500,
                attempts: 3,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(r.got.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn does_not_retry_a_400() {
    let (url, r) = start(&[400]).await;
    let hook = Webhook::new(cfg(&url)).unwrap();
    let err = hook.send(&msg("infected")).await.unwrap_err();
    assert!(
        matches!(
            err,
            NotifyError::Status {
                status: 400,
                attempts: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(r.got.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn clean_results_only_with_report_clean() {
    let (url, r) = start(&[]).await;
    let quiet = Webhook::new(cfg(&url)).unwrap();
    quiet.send(&msg("clean")).await.unwrap();
    assert_eq!(r.got.lock().unwrap().len(), 0);
    // Unscannable is never "clean": it is sent.
    quiet.send(&msg("unscannable")).await.unwrap();
    assert_eq!(r.got.lock().unwrap().len(), 1);
    let loud = Webhook::new(WebhookConfig {
        report_clean: true,
        ..cfg(&url)
    })
    .unwrap();
    loud.send(&msg("clean")).await.unwrap();
    let got = r.got.lock().unwrap();
    assert_eq!(got.len(), 2);
    let v: serde_json::Value = serde_json::from_slice(&got[1].1).unwrap();
    assert_eq!(v["status"], "clean");
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    // Bind then drop: a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let hook = Webhook::new(WebhookConfig {
        retries: 2,
        ..cfg(&format!("http://127.0.0.1:{port}/hook"))
    })
    .unwrap();
    let started = std::time::Instant::now();
    let err = hook.send(&msg("infected")).await.unwrap_err();
    assert!(
        matches!(err, NotifyError::Transport { attempts: 3, .. }),
        "{err}"
    );
    // Backoff 20 ms then 40 ms.
    assert!(started.elapsed() >= Duration::from_millis(60));
}

#[tokio::test]
async fn no_signature_header_without_a_secret() {
    let (url, r) = start(&[]).await;
    let hook = Webhook::new(WebhookConfig::new(&url)).unwrap();
    hook.send(&msg("infected")).await.unwrap();
    let got = r.got.lock().unwrap();
    assert!(!got[0].0.contains_key("x-moat-signature"));
    assert!(got[0].0.contains_key("x-moat-event-id"));
}

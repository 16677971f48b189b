//! SqsSource against a real moto server (S3 + SQS) started per test on a
//! free port from `$MOAT_TEST_MOTO_SERVER` (scripts/test-deps.sh), killed
//! on drop.

use aws_sdk_sqs::types::QueueAttributeName;
use moat_events::sqs::{REASON_ATTRIBUTE, SqsConfig, SqsSource, client};
use moat_events::{Delivery, EventSource};
use std::time::Duration;

use moat_testkit::Moto;

async fn moto() -> Moto {
    tokio::task::spawn_blocking(Moto::start)
        .await
        .expect("starting moto")
}

fn base(endpoint: &str) -> SqsConfig {
    SqsConfig {
        endpoint: Some(endpoint.into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        wait_secs: 1,
        visibility_secs: 2,
        max_receive: 3,
        ..SqsConfig::new("")
    }
}

async fn make_queue(cfg: &SqsConfig, name: &str) -> String {
    client(cfg)
        .await
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

async fn send(cfg: &SqsConfig, queue_url: &str, body: &str) {
    client(cfg)
        .await
        .send_message()
        .queue_url(queue_url)
        .message_body(body)
        .send()
        .await
        .unwrap();
}

async fn next(src: &mut SqsSource, secs: u64) -> Option<Box<dyn Delivery>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        match tokio::time::timeout(left, src.next()).await {
            Ok(Ok(d)) => return Some(d),
            Ok(Err(e)) => eprintln!("source error (retrying): {e}"),
            Err(_) => return None,
        }
    }
}

/// A source on a fresh queue (and its DLQ) of a fresh moto server.
async fn setup() -> (Moto, SqsConfig, SqsSource) {
    let m = moto().await;
    let mut cfg = base(m.endpoint());
    cfg.queue_url = make_queue(&cfg, "events").await;
    cfg.dead_letter_queue_url = Some(make_queue(&cfg, "events-dead").await);
    let src = SqsSource::connect(&cfg).await.unwrap();
    (m, cfg, src)
}

#[tokio::test]
async fn ack_deletes() {
    let (_m, cfg, mut src) = setup().await;
    assert!(src.name().starts_with("sqs:"));
    send(&cfg, &cfg.queue_url, "one").await;
    let d = next(&mut src, 20).await.expect("received");
    assert_eq!(d.payload(), b"one");
    assert_eq!(d.attempt(), 1);
    assert_eq!(d.source(), "sqs");
    d.ack().await.unwrap();
    // Past the 2 s visibility timeout: gone for good.
    assert!(next(&mut src, 5).await.is_none());
}

#[tokio::test]
async fn unsettled_reappears_and_keep_alive_hides_it() {
    let (_m, cfg, mut src) = setup().await;
    send(&cfg, &cfg.queue_url, "two").await;
    let d = next(&mut src, 20).await.expect("received");
    for _ in 0..4 {
        d.keep_alive().await.unwrap();
        assert!(next(&mut src, 1).await.is_none(), "kept invisible");
    }
    drop(d);
    let d = next(&mut src, 20).await.expect("reappeared");
    assert_eq!(d.payload(), b"two");
    assert_eq!(d.attempt(), 2);
    d.ack().await.unwrap();
}

#[tokio::test]
async fn retry_reappears_after_the_delay() {
    let (_m, cfg, mut src) = setup().await;
    send(&cfg, &cfg.queue_url, "three").await;
    let d = next(&mut src, 20).await.expect("received");
    d.retry(Duration::from_secs(1)).await.unwrap();
    let d = next(&mut src, 20).await.expect("again");
    assert_eq!(d.payload(), b"three");
    assert_eq!(d.attempt(), 2);
    d.ack().await.unwrap();
}

async fn dead_letters(cfg: &SqsConfig) -> Vec<(String, String)> {
    let out = client(cfg)
        .await
        .receive_message()
        .queue_url(cfg.dead_letter_queue_url.as_deref().unwrap())
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    out.messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let reason = m
                .message_attributes()
                .and_then(|a| a.get(REASON_ATTRIBUTE))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_string();
            (m.body.unwrap_or_default(), reason)
        })
        .collect()
}

#[tokio::test]
async fn dead_letter_moves_to_the_dlq_with_the_reason() {
    let (_m, cfg, mut src) = setup().await;
    send(&cfg, &cfg.queue_url, "{bad").await;
    let d = next(&mut src, 20).await.expect("received");
    d.dead_letter("malformed event").await.unwrap();
    assert!(next(&mut src, 4).await.is_none(), "deleted from the queue");
    assert_eq!(
        dead_letters(&cfg).await,
        [("{bad".to_string(), "malformed event".to_string())]
    );
}

#[tokio::test]
async fn max_receive_dead_letters_without_handing_out() {
    let (_m, cfg, mut src) = setup().await;
    send(&cfg, &cfg.queue_url, "poison").await;
    for attempt in 1..=3 {
        let d = next(&mut src, 20).await.expect("received");
        assert_eq!(d.attempt(), attempt);
        d.retry(Duration::ZERO).await.unwrap();
    }
    send(&cfg, &cfg.queue_url, "after").await;
    let mut got_after = false;
    let mut dead = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while (!got_after || dead.is_empty()) && tokio::time::Instant::now() < deadline {
        if let Some(d) = next(&mut src, 2).await {
            assert_eq!(d.payload(), b"after", "poison must not be handed out again");
            d.ack().await.unwrap();
            got_after = true;
        }
        if dead.is_empty() {
            dead = dead_letters(&cfg).await;
        }
    }
    assert!(got_after);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, "poison");
    assert!(dead[0].1.contains("received 4 times"), "{}", dead[0].1);
}

#[tokio::test]
async fn s3_bucket_notifications_arrive_end_to_end() {
    let (m, cfg, mut src) = setup().await;
    let arn = client(&cfg)
        .await
        .get_queue_attributes()
        .queue_url(&cfg.queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&QueueAttributeName::QueueArn)
        .unwrap();
    let s3conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(m.endpoint())
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(s3conf);
    s3.create_bucket().bucket("uploads").send().await.unwrap();
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    s3.put_bucket_notification_configuration()
        .bucket("uploads")
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
    s3.put_object()
        .bucket("uploads")
        .key("dir/a file.txt")
        .body(b"hello".to_vec().into())
        .send()
        .await
        .unwrap();
    // moto may send an s3:TestEvent first; find the ObjectCreated record.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut found = None;
    while found.is_none() && tokio::time::Instant::now() < deadline {
        let Some(d) = next(&mut src, 5).await else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_slice(d.payload()).unwrap();
        let rec = &v["Records"][0];
        if rec["eventName"]
            .as_str()
            .is_some_and(|n| n.starts_with("ObjectCreated"))
        {
            found = Some(rec.clone());
        }
        d.ack().await.unwrap();
    }
    let rec = found.expect("an S3 ObjectCreated event through SQS");
    assert_eq!(rec["s3"]["bucket"]["name"], "uploads");
    // Form-URL-encoded in the event, as S3 does (moto also encodes '/').
    let key = rec["s3"]["object"]["key"]
        .as_str()
        .unwrap()
        .replace('+', " ");
    let key = percent_encoding::percent_decode_str(&key)
        .decode_utf8()
        .unwrap();
    assert_eq!(key, "dir/a file.txt");
    assert_eq!(rec["s3"]["object"]["size"], 5);
}

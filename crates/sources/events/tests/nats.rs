//! NatsSource against the real NATS JetStream (`MOAT_TEST_NATS_URL`,
//! scripts/test-deps.sh). Each test uses its own stream.

use moat_events::EventSource;
use moat_events::nats::{NatsConfig, NatsSource, REASON_HEADER};
use std::time::{Duration, SystemTime};

fn nats_url() -> String {
    std::env::var("MOAT_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

struct Fixture {
    js: async_nats::jetstream::Context,
    cfg: NatsConfig,
    subject: String,
}

impl Fixture {
    async fn new(tag: &str, ack_wait_secs: u64) -> Fixture {
        let n = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("MOAT_T_{}_{}_{n}", tag.to_uppercase(), std::process::id());
        let subject = format!("{}.events", name.to_lowercase());
        let client = async_nats::connect(nats_url())
            .await
            .expect("NATS must be running (scripts/test-deps.sh)");
        let js = async_nats::jetstream::new(client);
        let cfg = NatsConfig {
            subjects: vec![format!("{subject}.>")],
            ack_wait_secs,
            max_deliver: 3,
            dead_letter_subject: Some(format!("{}.dead", name.to_lowercase())),
            ..NatsConfig::new(&nats_url(), &name)
        };
        Fixture { js, cfg, subject }
    }

    async fn publish(&self, body: &str) {
        self.js
            .publish(format!("{}.put", self.subject), body.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    async fn cleanup(&self) {
        let _ = self.js.delete_stream(&self.cfg.stream).await;
        let _ = self
            .js
            .delete_stream(format!("{}_DEAD", self.cfg.stream))
            .await;
    }
}

async fn next(src: &mut NatsSource, secs: u64) -> Option<Box<dyn moat_events::Delivery>> {
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

#[tokio::test]
async fn ack_is_final() {
    let f = Fixture::new("ack", 2).await;
    let mut src = NatsSource::connect(&f.cfg).await.unwrap();
    assert!(src.name().starts_with("nats:"));
    f.publish("one").await;
    let d = next(&mut src, 20).await.expect("delivered");
    assert_eq!(d.payload(), b"one");
    assert_eq!(d.attempt(), 1);
    assert_eq!(d.source(), "nats");
    d.ack().await.unwrap();
    // Past the 2 s ack wait: nothing comes back.
    assert!(next(&mut src, 5).await.is_none());
    f.cleanup().await;
}

#[tokio::test]
async fn unsettled_is_redelivered_and_keep_alive_holds_it() {
    let f = Fixture::new("redeliver", 2).await;
    let mut src = NatsSource::connect(&f.cfg).await.unwrap();
    f.publish("two").await;
    let d = next(&mut src, 20).await.expect("delivered");
    assert_eq!(d.attempt(), 1);
    // Keep it alive for 3x the ack wait: no redelivery meanwhile.
    for _ in 0..6 {
        d.keep_alive().await.unwrap();
        assert!(next(&mut src, 1).await.is_none());
    }
    // Dropped unsettled (a crash): redelivered after the ack wait.
    drop(d);
    let d = next(&mut src, 20).await.expect("redelivered");
    assert_eq!(d.payload(), b"two");
    assert_eq!(d.attempt(), 2);
    d.ack().await.unwrap();
    f.cleanup().await;
}

#[tokio::test]
async fn retry_redelivers_with_a_higher_attempt() {
    let f = Fixture::new("retry", 30).await;
    let mut src = NatsSource::connect(&f.cfg).await.unwrap();
    f.publish("three").await;
    let d = next(&mut src, 20).await.expect("delivered");
    let started = tokio::time::Instant::now();
    d.retry(Duration::from_millis(500)).await.unwrap();
    let d = next(&mut src, 20).await.expect("redelivered");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(d.payload(), b"three");
    assert_eq!(d.attempt(), 2);
    d.ack().await.unwrap();
    f.cleanup().await;
}

#[tokio::test]
async fn dead_letter_publishes_with_reason_and_settles() {
    let f = Fixture::new("dead", 2).await;
    let dl = f.cfg.dead_letter_subject.clone().unwrap();
    let mut src = NatsSource::connect(&f.cfg).await.unwrap();
    f.publish("{not json").await;
    let d = next(&mut src, 20).await.expect("delivered");
    d.dead_letter("malformed event: expected value at line 1")
        .await
        .unwrap();
    // Not redelivered, past the ack wait.
    assert!(next(&mut src, 5).await.is_none());
    let dead =
        f.js.get_stream(format!("{}_DEAD", f.cfg.stream))
            .await
            .unwrap();
    let m = dead.get_last_raw_message_by_subject(&dl).await.unwrap();
    assert_eq!(&m.payload[..], b"{not json");
    assert_eq!(
        m.headers.get(REASON_HEADER).unwrap().as_str(),
        "malformed event: expected value at line 1"
    );
    f.cleanup().await;
}

#[tokio::test]
async fn max_deliver_dead_letters_without_handing_out() {
    let f = Fixture::new("maxdeliver", 30).await;
    let dl = f.cfg.dead_letter_subject.clone().unwrap();
    let mut src = NatsSource::connect(&f.cfg).await.unwrap();
    f.publish("poison").await;
    for attempt in 1..=3 {
        let d = next(&mut src, 20).await.expect("delivered");
        assert_eq!(d.attempt(), attempt);
        d.retry(Duration::ZERO).await.unwrap();
    }
    // The 4th delivery is moved aside by the source itself; the source
    // keeps going with the next message.
    f.publish("after").await;
    let dead =
        f.js.get_stream(format!("{}_DEAD", f.cfg.stream))
            .await
            .unwrap();
    let mut got_after = false;
    let mut dead_msg = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while (!got_after || dead_msg.is_none()) && tokio::time::Instant::now() < deadline {
        if let Some(d) = next(&mut src, 1).await {
            assert_eq!(d.payload(), b"after", "poison must not be handed out again");
            d.ack().await.unwrap();
            got_after = true;
        }
        if dead_msg.is_none() {
            dead_msg = dead.get_last_raw_message_by_subject(&dl).await.ok();
        }
    }
    assert!(got_after);
    let m = dead_msg.expect("dead-lettered");
    assert_eq!(&m.payload[..], b"poison");
    assert!(
        m.headers
            .get(REASON_HEADER)
            .unwrap()
            .as_str()
            .contains("delivered 4 times")
    );
    f.cleanup().await;
}

#[tokio::test]
async fn refuses_a_dead_letter_subject_inside_the_event_subjects() {
    let f = Fixture::new("loop", 30).await;
    let cfg = NatsConfig {
        dead_letter_subject: Some(format!("{}.dead", f.subject)),
        ..f.cfg.clone()
    };
    assert!(NatsSource::connect(&cfg).await.is_err());
}

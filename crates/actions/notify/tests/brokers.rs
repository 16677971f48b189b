//! AMQP and NATS publishing against the real RabbitMQ and NATS JetStream
//! (`MOAT_TEST_AMQP_URL`, `MOAT_TEST_NATS_URL`; scripts/test-deps.sh).

use futures_util::StreamExt;
use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use moat_notify::{
    AmqpPublishConfig, AmqpPublisher, NatsPublishConfig, NatsPublisher, ResultMessage,
};
use std::time::{Duration, SystemTime};

fn amqp_url() -> String {
    std::env::var("MOAT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn nats_url() -> String {
    std::env::var("MOAT_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn unique(prefix: &str) -> String {
    let n = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{n}", std::process::id())
}

fn msg(key: &str) -> ResultMessage {
    ResultMessage::new(
        "b",
        key,
        None,
        "infected",
        None,
        vec!["Eicar".into()],
        &"cd".repeat(32),
        68,
        SystemTime::now(),
        vec![],
    )
}

#[tokio::test]
async fn amqp_publish_is_confirmed_persistent_and_consumable() {
    let exchange = unique("moat-test-results");
    let queue = unique("moat-test-results-q");
    let cfg = AmqpPublishConfig {
        url: amqp_url(),
        exchange: exchange.clone(),
        routing_key: "moat.results.infected".into(),
        declare_exchange: true,
    };
    let publisher = AmqpPublisher::connect(&cfg)
        .await
        .expect("RabbitMQ must be running (scripts/test-deps.sh)");

    // A consumer-side queue bound to the (now declared) topic exchange.
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "moat.results.#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();

    let m1 = msg("one");
    let m2 = msg("two");
    publisher.publish(&m1).await.unwrap();
    publisher.publish(&m2).await.unwrap();

    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.len() < 2 && tokio::time::Instant::now() < deadline {
        match ch
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(d) => got.push(d),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(got.len(), 2);
    let back: ResultMessage = serde_json::from_slice(&got[0].delivery.data).unwrap();
    assert_eq!(back, m1);
    let props = &got[1].delivery.properties;
    assert_eq!(*props.delivery_mode(), Some(2));
    assert_eq!(
        props.message_id().as_ref().map(|s| s.as_str().to_string()),
        Some(m2.event_id.clone())
    );
    assert_eq!(
        props
            .content_type()
            .as_ref()
            .map(|s| s.as_str().to_string()),
        Some("application/json".to_string())
    );

    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    ch.exchange_delete(exchange.as_str().into(), Default::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn amqp_publish_to_a_missing_exchange_fails_then_recovers() {
    // Publishing to an exchange that does not exist closes the channel; the
    // publisher reports it and the next publish (after the exchange exists)
    // works on a fresh channel.
    let exchange = unique("moat-test-missing");
    let cfg = AmqpPublishConfig {
        url: amqp_url(),
        exchange: exchange.clone(),
        routing_key: "r".into(),
        declare_exchange: false,
    };
    let publisher = AmqpPublisher::connect(&cfg).await.unwrap();
    assert!(publisher.publish(&msg("x")).await.is_err());

    let declaring = AmqpPublisher::connect(&AmqpPublishConfig {
        declare_exchange: true,
        ..cfg.clone()
    })
    .await
    .unwrap();
    declaring.publish(&msg("y")).await.unwrap();
    publisher.publish(&msg("z")).await.unwrap();

    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_delete(exchange.as_str().into(), Default::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn nats_core_publish_reaches_a_subscriber() {
    let subject = unique("moat.test.results").replace('-', "_");
    let client = async_nats::connect(nats_url())
        .await
        .expect("NATS must be running (scripts/test-deps.sh)");
    let mut sub = client.subscribe(subject.clone()).await.unwrap();
    client.flush().await.unwrap();
    let p = NatsPublisher::connect(&NatsPublishConfig {
        url: nats_url(),
        subject: subject.clone(),
        jetstream: false,
    })
    .await
    .unwrap();
    let m = msg("core");
    p.publish(&m).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap();
    let back: ResultMessage = serde_json::from_slice(&got.payload).unwrap();
    assert_eq!(back, m);
    let h = got.headers.unwrap();
    assert_eq!(h.get("Nats-Msg-Id").unwrap().as_str(), m.event_id);
}

#[tokio::test]
async fn nats_jetstream_publish_is_acked_stored_and_deduplicated() {
    let name = unique("MOAT_TEST_RESULTS").replace('-', "_");
    let subject = format!("{}.results", name.to_lowercase());
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let p = NatsPublisher::connect(&NatsPublishConfig {
        url: nats_url(),
        subject: subject.clone(),
        jetstream: true,
    })
    .await
    .unwrap();
    let m = msg("js");
    p.publish(&m).await.unwrap();
    // A re-send of the same result is dropped by the duplicate window.
    p.publish(&m).await.unwrap();
    p.publish(&msg("js-other")).await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.state.messages, 2);
    let stored = stream.get_raw_message(1).await.unwrap();
    let back: ResultMessage = serde_json::from_slice(&stored.payload).unwrap();
    assert_eq!(back, m);
    js.delete_stream(&name).await.unwrap();

    // With no stream capturing the subject, a JetStream publish fails.
    let orphan = NatsPublisher::connect(&NatsPublishConfig {
        url: nats_url(),
        subject: unique("moat.nostream").replace('-', "_"),
        jetstream: true,
    })
    .await
    .unwrap();
    assert!(orphan.publish(&m).await.is_err());
}

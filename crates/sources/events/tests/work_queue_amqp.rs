//! The RabbitMQ work queue (`moat_events::queue::amqp`) against the real
//! broker (`MOAT_TEST_AMQP_URL`, scripts/test-deps.sh). Each test uses its
//! own queue-name prefix and deletes its queues at the end.

mod common;

use common::{lease, prefix, through};
use moat_db::EventQueue;
use moat_events::queue::amqp::AmqpQueue;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn amqp_url() -> String {
    std::env::var("MOAT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

async fn open(prefix: &str) -> AmqpQueue {
    AmqpQueue::connect(&amqp_url(), prefix)
        .await
        .expect("RabbitMQ must be running (scripts/test-deps.sh)")
}

/// Delete the broker queues of `names` under `prefix`.
async fn cleanup(prefix: &str, names: &[&str]) {
    let conn = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    for n in names {
        let main = format!("{prefix}{n}");
        let mut all = vec![main.clone(), format!("{main}.dead")];
        for l in [100, 400, 1_600, 6_400, 25_600, 102_400, 409_600, 1_638_400] {
            all.push(format!("{main}.delay.{l}"));
        }
        for q in all {
            let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
        }
    }
}

#[tokio::test]
async fn jobs_are_leased_in_order_acked_retried_after_the_delay_and_dead_lettered_with_the_reason()
{
    let p = prefix("life", '.');
    let q = open(&p).await;
    let queue = "jobs";
    assert!(lease(&q, queue, Duration::from_secs(30)).await.is_none());
    let a = q.enqueue(queue, b"first").await.unwrap();
    let b = q.enqueue(queue, &[0, 159, 146, 150, 255]).await.unwrap();
    q.enqueue("other", b"x").await.unwrap();
    assert_eq!(q.depth(queue).await.unwrap(), 2);

    // FIFO, attempt 1, a leased job is not handed out again.
    let ea = lease(&q, queue, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        (ea.id.as_str(), ea.payload.as_slice(), ea.attempts),
        (a.as_str(), &b"first"[..], 1)
    );
    let eb = lease(&q, queue, Duration::from_secs(30)).await.unwrap();
    assert_eq!(eb.id, b);
    assert_eq!(
        eb.payload,
        [0, 159, 146, 150, 255],
        "binary payloads survive"
    );
    assert!(lease(&q, queue, Duration::from_secs(30)).await.is_none());

    // The dashboard's view: both leased by this node (in flight), "other" waiting.
    let stats = q.stats().await.unwrap();
    let jobs = stats.iter().find(|s| s.queue == queue).unwrap();
    assert_eq!(
        (jobs.waiting, jobs.in_flight, jobs.dead),
        (0, 2, 0),
        "{stats:?}"
    );
    let other = stats.iter().find(|s| s.queue == "other").unwrap();
    assert_eq!((other.waiting, other.in_flight), (1, 0), "{stats:?}");

    // ack removes; the depth counts leased jobs until then.
    q.ack(&a).await.unwrap();
    assert_eq!(q.depth(queue).await.unwrap(), 1);

    // retry: back after the delay (not before), attempt 2; counted in flight meanwhile.
    q.retry(&b, Duration::from_millis(700)).await.unwrap();
    let t = Instant::now();
    assert!(lease(&q, queue, Duration::from_secs(30)).await.is_none());
    assert_eq!(
        q.depth(queue).await.unwrap(),
        1,
        "a delayed job still counts"
    );
    let eb2 = loop {
        if let Some(e) = lease(&q, queue, Duration::from_millis(500)).await {
            break e;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the retry never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        t.elapsed() >= Duration::from_millis(650),
        "back after {:?}",
        t.elapsed()
    );
    assert_eq!((eb2.id.as_str(), eb2.attempts), (b.as_str(), 2));
    assert_eq!(eb2.payload, [0, 159, 146, 150, 255]);

    // A lease that runs out makes it claimable again, one attempt more...
    tokio::time::sleep(Duration::from_millis(700)).await;
    let eb3 = lease(&q, queue, Duration::from_millis(500)).await.unwrap();
    assert_eq!((eb3.id.as_str(), eb3.attempts), (b.as_str(), 3));
    // ...unless it is extended.
    q.extend(&b, Duration::from_secs(30)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(lease(&q, queue, Duration::from_secs(30)).await.is_none());

    // dead: kept with its reason, never handed out, not in the depth.
    q.dead(&b, "malformed job: eof").await.unwrap();
    assert_eq!(q.depth(queue).await.unwrap(), 0);
    assert_eq!(q.dead_count(queue).await.unwrap(), 1);
    let stats = q.stats().await.unwrap();
    let jobs = stats.iter().find(|s| s.queue == queue).unwrap();
    assert_eq!((jobs.waiting, jobs.in_flight, jobs.dead), (0, 0, 1));
    assert_eq!(
        q.dead_reason(&b).await.unwrap().as_deref(),
        Some("malformed job: eof")
    );
    assert!(q.dead_reason(&a).await.unwrap().is_none());
    // Reading the reason leaves the dead letter where it was.
    assert_eq!(q.dead_count(queue).await.unwrap(), 1);
    assert!(lease(&q, queue, Duration::from_secs(30)).await.is_none());
    assert_eq!(q.depth("other").await.unwrap(), 1);
    q.close().await;
    cleanup(&p, &[queue, "other"]).await;
}

#[tokio::test]
async fn a_lease_held_by_a_consumer_whose_connection_closes_goes_to_the_next_consumer() {
    let p = prefix("crash", '.');
    let queue = "jobs";
    let a = open(&p).await;
    let id = a.enqueue(queue, b"scan me").await.unwrap();
    // Enqueued means committed: another connection sees it.
    let b = open(&p).await;
    assert_eq!(b.depth(queue).await.unwrap(), 1);
    let held = lease(&a, queue, Duration::from_secs(600)).await.unwrap();
    assert_eq!(held.id, id);
    // While A holds it (unacked), B gets nothing.
    assert!(lease(&b, queue, Duration::from_secs(600)).await.is_none());
    // A dies without settling: the broker hands the job to B.
    a.close().await;
    let t = Instant::now();
    let again = loop {
        if let Some(e) = lease(&b, queue, Duration::from_secs(600)).await {
            break e;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "never redelivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (again.id.as_str(), again.payload.as_slice(), again.attempts),
        (id.as_str(), &b"scan me"[..], 2)
    );
    b.ack(&id).await.unwrap();
    assert_eq!(b.depth(queue).await.unwrap(), 0);
    b.close().await;
    let c = open(&p).await;
    assert!(
        lease(&c, queue, Duration::from_secs(1)).await.is_none(),
        "acked means gone"
    );
    c.close().await;
    cleanup(&p, &[queue]).await;
}

#[tokio::test]
async fn a_long_retry_delay_does_not_hold_up_a_shorter_one_behind_it() {
    let p = prefix("delay", '.');
    let q = open(&p).await;
    let queue = "jobs";
    let long = q.enqueue(queue, b"long").await.unwrap();
    let short = q.enqueue(queue, b"short").await.unwrap();
    lease(&q, queue, Duration::from_secs(30)).await.unwrap();
    lease(&q, queue, Duration::from_secs(30)).await.unwrap();
    q.retry(&long, Duration::from_secs(5)).await.unwrap();
    q.retry(&short, Duration::from_millis(300)).await.unwrap();
    let t = Instant::now();
    let first = loop {
        if let Some(e) = lease(&q, queue, Duration::from_secs(30)).await {
            break e;
        }
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "the short retry was held up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(first.id, short);
    q.ack(&short).await.unwrap();
    let second = loop {
        if let Some(e) = lease(&q, queue, Duration::from_secs(30)).await {
            break e;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the long retry never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(second.id, long);
    assert!(
        t.elapsed() >= Duration::from_millis(4900),
        "{:?}",
        t.elapsed()
    );
    q.ack(&long).await.unwrap();
    q.close().await;
    cleanup(&p, &[queue]).await;
}

#[tokio::test]
async fn concurrent_leasers_on_two_connections_never_get_the_same_job() {
    let p = prefix("race", '.');
    let queue = "jobs";
    let producer = open(&p).await;
    let mut want = HashSet::new();
    for i in 0..60 {
        want.insert(
            producer
                .enqueue(queue, format!("{i}").as_bytes())
                .await
                .unwrap(),
        );
    }
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let q: Arc<dyn EventQueue> = Arc::new(open(&p).await);
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(e) = q.lease(queue, Duration::from_secs(300)).await.unwrap() {
                q.ack(&e.id).await.unwrap();
                got.push(e.id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<String> = all.iter().cloned().collect();
    assert_eq!(all.len(), unique.len(), "a job was handed out twice");
    assert_eq!(unique, want);
    assert_eq!(producer.depth(queue).await.unwrap(), 0);
    producer.close().await;
    cleanup(&p, &[queue]).await;
}

#[tokio::test]
async fn the_work_queue_reconnects_after_its_broker_link_is_cut_and_loses_no_job() {
    let p = prefix("cut", '.');
    let queue = "jobs";
    let (_, broker) = through(&amqp_url(), 0);
    let fwd = moat_testkit::Cuttable::start(broker);
    let (url, _) = through(&amqp_url(), fwd.port());
    let q = AmqpQueue::connect(&url, &p).await.unwrap();
    let a = q.enqueue(queue, b"before the cut").await.unwrap();
    let held = lease(&q, queue, Duration::from_secs(600)).await.unwrap();
    assert_eq!((held.id.as_str(), held.attempts), (a.as_str(), 1));

    // The link drops with that lease unsettled, and the broker stays out
    // of reach for a moment: calls fail with an error, they do not hang.
    fwd.refuse(true);
    fwd.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = tokio::time::timeout(Duration::from_secs(20), q.enqueue(queue, b"during"))
        .await
        .expect("an enqueue while the broker is unreachable returns");
    assert!(during.is_err(), "enqueued with no broker: {during:?}");
    let during = tokio::time::timeout(
        Duration::from_secs(20),
        q.lease(queue, Duration::from_secs(600)),
    )
    .await
    .expect("a lease while the broker is unreachable returns");
    assert!(during.is_err(), "leased with no broker: {during:?}");

    // Back: the next calls reconnect by themselves; the job that was held
    // on the lost link comes round again (attempt 2), then the new one.
    fwd.refuse(false);
    let b = q.enqueue(queue, b"after").await.unwrap();
    let t = Instant::now();
    let again = loop {
        match q.lease(queue, Duration::from_secs(600)).await {
            Ok(Some(e)) => break e,
            Ok(None) | Err(_) => {
                assert!(t.elapsed() < Duration::from_secs(20), "never redelivered");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(
        (again.id.as_str(), again.payload.as_slice(), again.attempts),
        (a.as_str(), &b"before the cut"[..], 2)
    );
    q.ack(&a).await.unwrap();
    let next = lease(&q, queue, Duration::from_secs(600)).await.unwrap();
    assert_eq!(
        (next.id.as_str(), next.payload.as_slice()),
        (b.as_str(), &b"after"[..])
    );
    q.ack(&b).await.unwrap();
    assert_eq!(q.depth(queue).await.unwrap(), 0);
    q.close().await;
    cleanup(&p, &[queue]).await;
}

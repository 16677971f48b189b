//! The NATS JetStream work queue (`moat_events::queue::nats`) against the
//! real server (`MOAT_TEST_NATS_URL`, scripts/test-deps.sh). Each test uses
//! its own subject prefix (so its own streams) and deletes them at the end.

mod common;

use common::{lease, prefix, through};
use moat_db::EventQueue;
use moat_events::queue::nats::NatsQueue;
use std::time::{Duration, Instant};

fn nats_url() -> String {
    std::env::var("MOAT_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

async fn open(prefix: &str) -> NatsQueue {
    NatsQueue::connect(&nats_url(), prefix)
        .await
        .expect("NATS must be running (scripts/test-deps.sh)")
}

async fn cleanup(prefix: &str, names: &[&str]) {
    let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap());
    for n in names {
        let s: String = format!("{prefix}{n}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let _ = js.delete_stream(&s).await;
        let _ = js.delete_stream(format!("{s}_dead")).await;
    }
}

async fn lease_within(
    q: &dyn EventQueue,
    queue: &str,
    l: Duration,
    secs: u64,
) -> moat_db::QueuedEvent {
    let t = Instant::now();
    loop {
        if let Some(e) = lease(q, queue, l).await {
            return e;
        }
        assert!(t.elapsed() < Duration::from_secs(secs), "nothing to lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn jetstream_jobs_are_acked_retried_after_the_delay_extended_and_dead_lettered_with_the_reason()
 {
    let p = prefix("life", '-');
    let q = open(&p).await;
    let queue = "jobs";
    // The first lease sets ack_wait (30 s) when the consumer is made.
    assert!(lease(&q, queue, Duration::from_secs(30)).await.is_none());
    let a = q.enqueue(queue, b"first").await.unwrap();
    let b = q.enqueue(queue, &[0, 159, 146, 150, 255]).await.unwrap();
    assert_eq!(q.depth(queue).await.unwrap(), 2);

    let ea = lease(&q, queue, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        (ea.id.as_str(), ea.payload.as_slice(), ea.attempts),
        (a.as_str(), &b"first"[..], 1)
    );
    let eb = lease(&q, queue, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        (eb.id.as_str(), eb.payload.as_slice()),
        (b.as_str(), &[0, 159, 146, 150, 255][..])
    );
    assert!(lease(&q, queue, Duration::from_secs(30)).await.is_none());
    let stats = q.stats().await.unwrap();
    let s = stats.iter().find(|s| s.queue == queue).unwrap();
    assert_eq!((s.waiting, s.in_flight, s.dead), (0, 2, 0), "{stats:?}");
    assert!(
        s.oldest_ms.is_some_and(|o| o
            <= std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64),
        "{stats:?}"
    );

    q.ack(&a).await.unwrap();
    let t = Instant::now();
    while q.depth(queue).await.unwrap() != 1 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "ack did not remove the job"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // retry: not before the delay, then attempt 2.
    q.retry(&b, Duration::from_millis(700)).await.unwrap();
    let t = Instant::now();
    assert!(lease(&q, queue, Duration::from_secs(30)).await.is_none());
    let eb2 = lease_within(&q, queue, Duration::from_millis(500), 10).await;
    assert!(
        t.elapsed() >= Duration::from_millis(650),
        "back after {:?}",
        t.elapsed()
    );
    assert_eq!((eb2.id.as_str(), eb2.attempts), (b.as_str(), 2));

    // A lease that runs out (shorter than ack_wait: handed back by the timer)...
    tokio::time::sleep(Duration::from_millis(700)).await;
    let eb3 = lease_within(&q, queue, Duration::from_millis(500), 5).await;
    assert_eq!((eb3.id.as_str(), eb3.attempts), (b.as_str(), 3));
    // ...unless it is extended (in_progress).
    q.extend(&b, Duration::from_secs(30)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(lease(&q, queue, Duration::from_secs(30)).await.is_none());

    q.dead(&b, "malformed job: eof").await.unwrap();
    let t = Instant::now();
    while q.depth(queue).await.unwrap() != 0 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the dead job still counts"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(q.dead_count(queue).await.unwrap(), 1);
    assert_eq!(
        q.dead_reason(&b).await.unwrap().as_deref(),
        Some("malformed job: eof")
    );
    assert!(q.dead_reason(&a).await.unwrap().is_none());
    assert!(lease(&q, queue, Duration::from_secs(30)).await.is_none());
    q.close().await;
    cleanup(&p, &[queue]).await;
}

#[tokio::test]
async fn a_jetstream_lease_held_by_a_consumer_whose_connection_closes_goes_to_the_next_after_ack_wait()
 {
    let p = prefix("crash", '-');
    let queue = "jobs";
    let a = open(&p).await;
    // ack_wait = 2 s (the first lease).
    assert!(lease(&a, queue, Duration::from_secs(2)).await.is_none());
    let id = a.enqueue(queue, b"scan me").await.unwrap();
    let held = lease(&a, queue, Duration::from_secs(2)).await.unwrap();
    assert_eq!(held.id, id);
    let b = open(&p).await;
    assert!(lease(&b, queue, Duration::from_secs(2)).await.is_none());
    a.close().await;
    let again = lease_within(&b, queue, Duration::from_secs(30), 10).await;
    assert_eq!(
        (again.id.as_str(), again.payload.as_slice(), again.attempts),
        (id.as_str(), &b"scan me"[..], 2)
    );
    b.ack(&id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(b.depth(queue).await.unwrap(), 0);
    b.close().await;
    cleanup(&p, &[queue]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jetstream_leasers_never_get_the_same_job_and_never_stall() {
    let p = prefix("race", '-');
    let queue = "jobs";
    let producer = open(&p).await;
    assert!(
        lease(&producer, queue, Duration::from_secs(300))
            .await
            .is_none()
    );
    let mut want = std::collections::HashSet::new();
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
        let q: std::sync::Arc<dyn EventQueue> = std::sync::Arc::new(open(&p).await);
        for _ in 0..2 {
            let q = q.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                // A failed lease is tried again, as the workers do; a broker
                // that keeps failing still fails the test.
                let mut failures = 0;
                loop {
                    match q.lease(queue, Duration::from_secs(300)).await {
                        Ok(Some(e)) => {
                            q.ack(&e.id).await.unwrap();
                            got.push(e.id);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            failures += 1;
                            assert!(failures < 3, "lease failed {failures} times: {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                got
            }));
        }
    }
    let t = Instant::now();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    // A stall is a job that waits out the 300 s lease; a pull that got no
    // answer on a loaded machine costs 10 s and is not one.
    assert!(
        t.elapsed() < Duration::from_secs(120),
        "took {:?}",
        t.elapsed()
    );
    let unique: std::collections::HashSet<String> = all.iter().cloned().collect();
    assert_eq!(all.len(), unique.len(), "a job was handed out twice");
    assert_eq!(unique, want);
    producer.close().await;
    cleanup(&p, &[queue]).await;
}

#[tokio::test]
async fn the_jetstream_work_queue_reconnects_after_its_link_is_cut_and_loses_no_job() {
    let p = prefix("cut", '-');
    let queue = "jobs";
    let url = nats_url();
    let (_, broker) = through(&url, 0);
    let fwd = moat_testkit::Cuttable::start(broker);
    let q = NatsQueue::connect(&format!("nats://127.0.0.1:{}", fwd.port()), &p)
        .await
        .unwrap();
    // ack_wait = 2 s (the first lease makes the consumer).
    assert!(lease(&q, queue, Duration::from_secs(2)).await.is_none());
    let a = q.enqueue(queue, b"before the cut").await.unwrap();
    let held = lease(&q, queue, Duration::from_secs(2)).await.unwrap();
    assert_eq!((held.id.as_str(), held.attempts), (a.as_str(), 1));

    // The link drops with that lease unsettled and stays down a moment.
    fwd.refuse(true);
    fwd.cut();
    tokio::time::sleep(Duration::from_secs(1)).await;
    fwd.refuse(false);

    // The client reconnects by itself; the held job comes round again
    // after ack_wait (attempt 2), and a job enqueued now is kept too.
    let b = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(id) = q.enqueue(queue, b"after").await {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("enqueue works again after the reconnect");
    let t = Instant::now();
    let again = loop {
        if let Ok(Some(e)) = q.lease(queue, Duration::from_secs(2)).await
            && e.id == a
        {
            break e;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "never redelivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (again.payload.as_slice(), again.attempts >= 2),
        (&b"before the cut"[..], true),
        "attempts {}",
        again.attempts
    );
    q.ack(&a).await.unwrap();
    let next = lease_within(&q, queue, Duration::from_secs(2), 10).await;
    assert_eq!(
        (next.id.as_str(), next.payload.as_slice()),
        (b.as_str(), &b"after"[..])
    );
    q.ack(&b).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(q.depth(queue).await.unwrap(), 0);
    q.close().await;
    cleanup(&p, &[queue]).await;
}

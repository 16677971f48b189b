//! Shared checks for the EventQueue backends (included by the test files).

use moat_db::EventQueue;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

pub async fn lifecycle(q: Arc<dyn EventQueue>) {
    let queue = "s3-events";
    assert!(
        q.lease(queue, Duration::from_secs(30))
            .await
            .unwrap()
            .is_none()
    );
    let a = q.enqueue(queue, b"first").await.unwrap();
    let b = q.enqueue(queue, &[0, 159, 146, 150, 255]).await.unwrap();
    // Another queue name is separate.
    q.enqueue("other", b"x").await.unwrap();
    assert_eq!(q.depth(queue).await.unwrap(), 2);

    // FIFO, attempts counted, leased rows are not handed out again.
    let ea = q
        .lease(queue, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ea.id.as_str(), ea.payload.as_slice(), ea.attempts),
        (a.as_str(), &b"first"[..], 1)
    );
    let eb = q
        .lease(queue, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(eb.id, b);
    assert_eq!(
        eb.payload,
        [0, 159, 146, 150, 255],
        "binary payloads survive"
    );
    assert!(
        q.lease(queue, Duration::from_secs(30))
            .await
            .unwrap()
            .is_none()
    );

    // The dashboard's view: both leased (in flight), "other" waiting,
    // the oldest event's age is the lag.
    let stats = q.stats().await.unwrap();
    let s3 = stats.iter().find(|s| s.queue == queue).unwrap();
    assert_eq!((s3.waiting, s3.in_flight, s3.dead), (0, 2, 0), "{stats:?}");
    let other = stats.iter().find(|s| s.queue == "other").unwrap();
    assert_eq!((other.waiting, other.in_flight), (1, 0), "{stats:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let oldest = s3.oldest_ms.unwrap();
    assert!(oldest <= now && now - oldest < 60_000, "{stats:?}");

    // ack removes; the depth counts leased rows until then.
    assert_eq!(q.depth(queue).await.unwrap(), 2);
    q.ack(&a).await.unwrap();
    assert_eq!(q.depth(queue).await.unwrap(), 1);

    // retry: claimable again after the delay, with attempt 2.
    q.retry(&b, Duration::from_millis(300)).await.unwrap();
    assert!(
        q.lease(queue, Duration::from_secs(30))
            .await
            .unwrap()
            .is_none()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let eb2 = q
        .lease(queue, Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((eb2.id.as_str(), eb2.attempts), (b.as_str(), 2));

    // A lease that runs out (crash) makes it claimable again...
    tokio::time::sleep(Duration::from_millis(400)).await;
    let eb3 = q
        .lease(queue, Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((eb3.id.as_str(), eb3.attempts), (b.as_str(), 3));
    // ...unless it is extended.
    q.extend(&b, Duration::from_secs(30)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        q.lease(queue, Duration::from_secs(30))
            .await
            .unwrap()
            .is_none()
    );

    // dead: kept with its reason, never handed out, not in the depth.
    q.dead(&b, "malformed event: eof").await.unwrap();
    assert_eq!(q.depth(queue).await.unwrap(), 0);
    assert_eq!(q.dead_count(queue).await.unwrap(), 1);
    let stats = q.stats().await.unwrap();
    let s3 = stats.iter().find(|s| s.queue == queue).unwrap();
    assert_eq!(
        (s3.waiting, s3.in_flight, s3.dead, s3.oldest_ms),
        (0, 0, 1, None)
    );
    assert_eq!(
        q.dead_reason(&b).await.unwrap().as_deref(),
        Some("malformed event: eof")
    );
    assert!(q.dead_reason(&a).await.unwrap().is_none());
    q.retry(&b, Duration::ZERO).await.unwrap();
    assert!(
        q.lease(queue, Duration::from_secs(30))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(q.depth("other").await.unwrap(), 1);
}

/// Two leasers racing over the same queue never get the same event, and
/// between them get all of them.
pub async fn concurrent_leasers(q: Arc<dyn EventQueue>) {
    let queue = "race";
    let n = 200;
    let mut ids = HashSet::new();
    for i in 0..n {
        ids.insert(q.enqueue(queue, format!("{i}").as_bytes()).await.unwrap());
    }
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(e) = q.lease(queue, Duration::from_secs(300)).await.unwrap() {
                got.push(e.id);
                tokio::task::yield_now().await;
            }
            got
        }));
    }
    let mut all = Vec::new();
    let mut per_task = Vec::new();
    for t in tasks {
        let got = t.await.unwrap();
        per_task.push(got.len());
        all.extend(got);
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), unique.len(), "an event was leased twice");
    assert_eq!(unique, ids, "every event leased once");
    eprintln!("leases per task: {per_task:?}");
}

//! EventQueue on SQLite (a file in a temporary directory).

mod queue_common;

use moat_db::open_queue;

#[tokio::test]
async fn sqlite_queue_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/q.db", dir.path().display());
    queue_common::lifecycle(open_queue(&url).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_leasers_never_share() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/q.db", dir.path().display());
    queue_common::concurrent_leasers(open_queue(&url).await.unwrap()).await;
}

#[tokio::test]
async fn sqlite_queue_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/q.db", dir.path().display());
    let q = open_queue(&url).await.unwrap();
    let id = q.enqueue("s3-events", b"kept").await.unwrap();
    // Leased by a worker that then "crashes" (the queue is dropped).
    assert!(
        q.lease("s3-events", std::time::Duration::from_millis(100))
            .await
            .unwrap()
            .is_some()
    );
    drop(q);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let q = open_queue(&url).await.unwrap();
    let e = q
        .lease("s3-events", std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.id, e.payload.as_slice(), e.attempts),
        (id, &b"kept"[..], 2)
    );
}

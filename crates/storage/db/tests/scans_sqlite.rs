//! The dashboard's scan queries on SQLite (a file in a temporary directory).

mod scans_common;

#[tokio::test]
async fn sqlite_filters_scans_and_counts_verdicts_per_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/s.db", dir.path().display());
    scans_common::filters_and_counts(moat_db::open(&url).await.unwrap()).await;
}

//! Against the real PostgreSQL at 127.0.0.1:5432 (database `test`), in a
//! schema of its own so runs never see each other's rows.

use moat_core::{EngineReport, Status, Verdict};
use moat_db::{ScanRecord, open};

mod scans_common;

fn pg_base() -> String {
    std::env::var("MOAT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn verdict(sha: &str) -> Verdict {
    let e = EngineReport::new("builtin", Status::Infected, None);
    Verdict::aggregate(vec![e], vec![], sha.into(), 3, "text/plain".into(), 1)
}

#[tokio::test]
async fn postgres_records_pages_and_caches() {
    let schema = format!("moat_test_{}", std::process::id());
    // Create the schema with a plain connection first.
    let admin = open(&pg_base())
        .await
        .expect("PostgreSQL must be running on 127.0.0.1:5432 (scripts/test-deps.sh starts it)");
    drop(admin);
    let pool = sqlx::PgPool::connect(&pg_base()).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .unwrap();
    let url = format!("{}?options=-csearch_path%3D{schema}", pg_base());
    let store = open(&url).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    let mut last = None;
    for i in 0..3 {
        let rec = ScanRecord::new(
            "api",
            &format!("f{i}"),
            "fp",
            false,
            verdict(&format!("{i:064}")),
        );
        store.record(&rec).await.unwrap();
        store.record(&rec).await.unwrap();
        last = Some(rec);
    }
    let page = store.list(2, None).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["f2", "f1"]
    );
    assert_eq!(store.list(2, Some(&page[1].id)).await.unwrap().len(), 1);
    let last = last.unwrap();
    assert_eq!(
        store.get(&last.id).await.unwrap().unwrap().verdict,
        last.verdict
    );
    let v = verdict(&"b".repeat(64));
    store.cache_put("fp", &v).await.unwrap();
    store.cache_put("fp", &v).await.unwrap();
    assert_eq!(
        store.cache_get(&v.sha256, "fp", None).await.unwrap(),
        Some(v)
    );
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn postgres_filters_scans_and_counts_verdicts_per_bucket() {
    let schema = format!("moat_test_stats_{}", std::process::id());
    let pool = sqlx::PgPool::connect(&pg_base())
        .await
        .expect("PostgreSQL must be running on 127.0.0.1:5432 (scripts/test-deps.sh starts it)");
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .unwrap();
    let url = format!("{}?options=-csearch_path%3D{schema}", pg_base());
    scans_common::filters_and_counts(open(&url).await.unwrap()).await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}

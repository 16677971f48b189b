//! EventQueue on the real PostgreSQL (`MOAT_TEST_POSTGRES_URL`), each test
//! in a schema of its own.

mod queue_common;

use moat_db::open_queue;

fn pg_base() -> String {
    std::env::var("MOAT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema; returns its URL and the admin pool to drop it with.
async fn schema(tag: &str) -> (String, String, sqlx::PgPool) {
    let schema = format!("moat_q_{tag}_{}", std::process::id());
    let pool = sqlx::PgPool::connect(&pg_base())
        .await
        .expect("PostgreSQL must be running (scripts/test-deps.sh)");
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .unwrap();
    let url = format!("{}?options=-csearch_path%3D{schema}", pg_base());
    (url, schema, pool)
}

async fn drop_schema(schema: &str, pool: &sqlx::PgPool) {
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn postgres_queue_lifecycle() {
    let (url, name, pool) = schema("life").await;
    queue_common::lifecycle(open_queue(&url).await.unwrap()).await;
    drop_schema(&name, &pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_leasers_never_share() {
    let (url, name, pool) = schema("race").await;
    queue_common::concurrent_leasers(open_queue(&url).await.unwrap()).await;
    drop_schema(&name, &pool).await;
}

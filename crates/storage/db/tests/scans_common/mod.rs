//! Shared checks for the dashboard's scan queries (filters, verdict counts
//! over time) on each backend (included by the test files).

use moat_core::{EngineReport, Status, Verdict};
use moat_db::{ScanFilter, ScanRecord, ScanStore};
use std::sync::Arc;

fn verdict(sha: &str, status: Status) -> Verdict {
    let e = EngineReport::new("builtin", status, None);
    Verdict::aggregate(vec![e], vec![], sha.into(), 3, "text/plain".into(), 1)
}

const MIN: i64 = 60_000;

/// Records at fixed times (minutes of one hour), some recorded twice.
pub async fn filters_and_counts(store: Arc<dyn ScanStore>) {
    // A whole hour, so the buckets below are predictable.
    let t0 = 1_700_000_000_000 / (3_600_000) * 3_600_000;
    let rows = [
        (0, "api", Status::Clean),
        (1, "api", Status::Infected),
        (1, "proxy", Status::Clean),
        (14, "portal", Status::Infected),
        (15, "api", Status::Clean),
        (59, "proxy", Status::Error),
    ];
    for (i, (minute, source, status)) in rows.iter().enumerate() {
        let mut rec = ScanRecord::new(
            source,
            &format!("f{i}"),
            "fp",
            false,
            verdict(&format!("{i:064}"), *status),
        );
        rec.created_at = t0 + minute * MIN + 1234;
        store.record(&rec).await.unwrap();
        // A record written twice is counted once.
        store.record(&rec).await.unwrap();
    }

    // Filters: newest first within a source, a status, or both.
    let names = |v: Vec<ScanRecord>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
    let by = |source: Option<&str>, status: Option<&str>| ScanFilter {
        source: source.map(str::to_string),
        status: status.map(str::to_string),
    };
    assert_eq!(
        names(
            store
                .list_where(10, None, &by(Some("api"), None))
                .await
                .unwrap()
        ),
        ["f4", "f1", "f0"]
    );
    assert_eq!(
        names(
            store
                .list_where(10, None, &by(None, Some("infected")))
                .await
                .unwrap()
        ),
        ["f3", "f1"]
    );
    assert_eq!(
        names(
            store
                .list_where(10, None, &by(Some("api"), Some("clean")))
                .await
                .unwrap()
        ),
        ["f4", "f0"]
    );
    let page = store
        .list_where(1, None, &by(Some("api"), None))
        .await
        .unwrap();
    let rest = store
        .list_where(10, Some(&page[0].id), &by(Some("api"), None))
        .await
        .unwrap();
    assert_eq!(names(rest), ["f1", "f0"]);
    assert!(
        store
            .list_where(10, None, &by(Some("nobody"), None))
            .await
            .unwrap()
            .is_empty()
    );

    // Counts in 15-minute buckets over the hour, and per source.
    let c = store.verdict_counts(t0, 15 * MIN).await.unwrap();
    let got: Vec<(i64, &str, u64)> = c
        .buckets
        .iter()
        .map(|v| ((v.bucket - t0) / MIN, v.status.as_str(), v.count))
        .collect();
    assert_eq!(
        got,
        [
            (0, "clean", 2),
            (0, "infected", 2),
            (15, "clean", 1),
            (45, "error", 1),
        ]
    );
    let sources = |c: &moat_db::VerdictCounts| {
        c.sources
            .iter()
            .map(|(s, n)| (s.clone(), *n))
            .collect::<Vec<_>>()
    };
    let want = vec![
        ("api".to_string(), 3),
        ("portal".to_string(), 1),
        ("proxy".to_string(), 2),
    ];
    assert_eq!(sources(&c), want);
    // Whole hours come from the hourly counts: the same totals.
    let c = store.verdict_counts(t0, 60 * MIN).await.unwrap();
    let got: Vec<(i64, &str, u64)> = c
        .buckets
        .iter()
        .map(|v| (v.bucket - t0, v.status.as_str(), v.count))
        .collect();
    assert_eq!(got, [(0, "clean", 3), (0, "error", 1), (0, "infected", 2)]);
    assert_eq!(sources(&c), want);
    assert_eq!(
        store.verdict_counts(t0 + 60 * MIN, 60 * MIN).await.unwrap(),
        moat_db::VerdictCounts::default()
    );
    // Minute buckets from minute 1 on: minute 0 is outside the window.
    let c = store.verdict_counts(t0 + MIN, MIN).await.unwrap();
    let total: u64 = c.buckets.iter().map(|v| v.count).sum();
    assert_eq!(total, 5, "{c:?}");
    assert_eq!(c.buckets[0].bucket, t0 + MIN);
    assert_eq!(c.buckets.iter().filter(|v| v.bucket == t0 + MIN).count(), 2);
}

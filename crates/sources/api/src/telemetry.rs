//! Metric names (all start with `moat_`) and the Prometheus recorder.

pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use moat_core::Verdict;

pub const SCANS: &str = "moat_scans_total";
pub const SCANNED_BYTES: &str = "moat_scanned_bytes_total";
pub const SCAN_SECONDS: &str = "moat_scan_duration_seconds";
pub const CACHE_HITS: &str = "moat_verdict_cache_hits_total";
pub const INFLIGHT: &str = "moat_scans_in_flight";
pub const REJECTED: &str = "moat_scan_rejected_total";
pub const ENGINE_UP: &str = "moat_engine_up";
pub const RELOADS: &str = "moat_engine_reloads_total";
pub const SIGNATURES_AGE: &str = "moat_signatures_age_seconds";

/// Install the global Prometheus recorder (once per process), with a
/// thread that runs its upkeep every 5 s: histogram samples are buffered
/// until drained, and without upkeep only a scrape drains them, so a moat
/// nobody scrapes would grow by every request it timed.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                300.0,
            ],
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    let h = handle.clone();
    std::thread::Builder::new()
        .name("moat-metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                h.run_upkeep();
            }
        })
        .map_err(|e| format!("starting the metrics upkeep thread: {e}"))?;
    Ok(handle)
}

/// Count one finished scan. `took` is the scan's wall time (engines plus the
/// hand-off to the blocking pool); `None` for a verdict from the cache.
pub fn scanned(source: &'static str, v: &Verdict, took: Option<std::time::Duration>) {
    let reason = v.reason.map(|r| r.as_str()).unwrap_or("");
    metrics::counter!(SCANS, "source" => source, "status" => v.status.as_str(), "reason" => reason)
        .increment(1);
    match took {
        None => metrics::counter!(CACHE_HITS, "source" => source).increment(1),
        Some(t) => {
            metrics::counter!(SCANNED_BYTES, "source" => source).increment(v.size);
            // Seconds with sub-millisecond resolution (the verdict's
            // `duration_ms` rounds small scans down to 0).
            metrics::histogram!(SCAN_SECONDS, "source" => source).record(t.as_secs_f64());
        }
    }
}

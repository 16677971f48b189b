//! Bucket-role metric names (Prometheus through the `metrics` facade).
//!
//! | metric | labels |
//! |---|---|
//! | `moat_bucket_events_total` | `source`, `outcome` = received, acked, redelivered, retried, dead_lettered, ignored |
//! | `moat_bucket_objects_total` | `status` (verdict status, or missing, skipped, already_scanned) |
//! | `moat_bucket_bytes_total` | fetched and scanned bytes |
//! | `moat_bucket_scan_seconds` | fetch + scan + record per object |
//! | `moat_bucket_event_lag_seconds` | event time → verdict recorded and actions done |
//! | `moat_bucket_in_flight` | objects being processed |
//! | `moat_bucket_action_errors_total` | `action` = tag, delete, quarantine |

pub const EVENTS: &str = "moat_bucket_events_total";
pub const OBJECTS: &str = "moat_bucket_objects_total";
pub const BYTES: &str = "moat_bucket_bytes_total";
pub const SCAN_SECONDS: &str = "moat_bucket_scan_seconds";
pub const LAG_SECONDS: &str = "moat_bucket_event_lag_seconds";
pub const IN_FLIGHT: &str = "moat_bucket_in_flight";
pub const ACTION_ERRORS: &str = "moat_bucket_action_errors_total";

pub fn event(source: &'static str, outcome: &'static str) {
    metrics::counter!(EVENTS, "source" => source, "outcome" => outcome).increment(1);
}

pub fn object(status: &'static str) {
    metrics::counter!(OBJECTS, "status" => status).increment(1);
}

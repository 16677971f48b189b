//! moat-bucket: the bucket role. Event → HEAD/GET → scan → actions → ack,
//! and backfill of existing objects.
#![forbid(unsafe_code)]

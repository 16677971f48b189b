//! Walks arbitrary bytes as an archive with tight limits. It must never
//! panic, never exceed its limits, and never hand out a member deeper or
//! larger than allowed.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "walk_checked.rs"]
mod walk_checked;

fuzz_target!(|data: &[u8]| walk_checked::walk_checked(data.to_vec()));

//! The scan pipeline: sniff, extract, run every engine, aggregate, cache, reload
#![forbid(unsafe_code)]

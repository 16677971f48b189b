//! The HTTP scan API role of moat serve
#![forbid(unsafe_code)]

//! The yara engine: YARA-X rules, one compilation unit per rule file
#![forbid(unsafe_code)]

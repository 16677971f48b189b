//! Scan records and the verdict cache behind a trait: SQLite and PostgreSQL
#![forbid(unsafe_code)]

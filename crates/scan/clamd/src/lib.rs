//! The clamd engine: a clamd client over TCP or a Unix socket
#![forbid(unsafe_code)]

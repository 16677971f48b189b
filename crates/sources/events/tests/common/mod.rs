//! What the work-queue tests of both brokers share: unique names, a lease
//! shorthand, and the broker address behind a URL (for the link-cut tests).
#![allow(dead_code)] // each test file uses its own part

use moat_db::{EventQueue, QueuedEvent};
use std::time::{Duration, SystemTime};

/// A name prefix no other test run uses: `moat-test<sep>tag<sep>pid<sep>nanos.`
pub fn prefix(tag: &str, sep: char) -> String {
    let n = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("moat-test{sep}{tag}{sep}{}{sep}{n}.", std::process::id())
}

pub async fn lease(q: &dyn EventQueue, queue: &str, lease: Duration) -> Option<QueuedEvent> {
    q.lease(queue, lease).await.unwrap()
}

/// `url` with its `host:port` replaced by `127.0.0.1:fwd_port` (a
/// forwarder's), and the address it named.
pub fn through(url: &str, fwd_port: u16) -> (String, std::net::SocketAddr) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (creds, hostpath) = match rest.rsplit_once('@') {
        Some((c, h)) => (format!("{c}@"), h),
        None => (String::new(), rest),
    };
    let (hostport, path) = hostpath.split_once('/').unwrap_or((hostpath, ""));
    let addr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .unwrap()
        .next()
        .unwrap();
    (
        format!("{scheme}://{creds}127.0.0.1:{fwd_port}/{path}"),
        addr,
    )
}

//! clamd's VERSION answer, cached so that `info()` stays cheap.
//!
//! `ClamAV 1.4.6/27456/Mon Nov 20 08:12:34 2026` gives version `ClamAV 1.4.6` and
//! signature version `27456/Mon Nov 20 08:12:34 2026` (database version and
//! date). clamd loaded with only unofficial databases answers just `ClamAV 1.4.6`:
//! the signature version is then [`UNREPORTED`]. Until clamd has answered once,
//! both are [`UNKNOWN`].
//!
//! The answer is kept for [`TTL`]; a failed refresh is also remembered for
//! [`TTL`] (the last known values stay, the error is reported), and while one
//! thread refreshes, others get the cached values without waiting.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(crate) const TTL: Duration = Duration::from_secs(5);
pub(crate) const UNKNOWN: &str = "unknown";
pub(crate) const UNREPORTED: &str = "unreported";

/// What is known about clamd's versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Versions {
    pub(crate) version: String,
    pub(crate) signature_version: String,
    /// Unix seconds when the current signature version was first seen.
    pub(crate) seen_at: u64,
    /// Set when the last VERSION request failed.
    pub(crate) error: Option<String>,
}

#[derive(Debug)]
pub(crate) struct VersionCache {
    state: Mutex<(Versions, Option<Instant>)>,
    refreshing: AtomicBool,
}

impl VersionCache {
    pub(crate) fn new() -> VersionCache {
        let v = Versions {
            version: UNKNOWN.to_string(),
            signature_version: UNKNOWN.to_string(),
            seen_at: 0,
            error: None,
        };
        VersionCache {
            state: Mutex::new((v, None)),
            refreshing: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Versions, Option<Instant>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached versions, refreshed with `fetch` (which returns VERSION's text)
    /// when older than [`TTL`] and no other thread is already refreshing.
    pub(crate) fn get(&self, fetch: impl FnOnce() -> Result<String, String>) -> Versions {
        {
            let st = self.lock();
            if st.1.is_some_and(|t| t.elapsed() < TTL)
                || self.refreshing.swap(true, Ordering::AcqRel)
            {
                return st.0.clone();
            }
        }
        let res = fetch();
        let mut st = self.lock();
        match res {
            Ok(text) => {
                let (version, sig) = parse(&text);
                if sig != st.0.signature_version || st.0.seen_at == 0 {
                    st.0.seen_at = unix_now();
                }
                st.0.version = version;
                st.0.signature_version = sig;
                st.0.error = None;
            }
            Err(e) => {
                tracing::debug!(error = %e, "clamd VERSION failed");
                st.0.error = Some(format!("clamd VERSION failed: {e}"));
            }
        }
        st.1 = Some(Instant::now());
        self.refreshing.store(false, Ordering::Release);
        st.0.clone()
    }
}

/// Splits VERSION's answer into (version, signature version).
pub(crate) fn parse(text: &str) -> (String, String) {
    let text = text.trim();
    match text.split_once('/') {
        Some((v, sig)) if !sig.trim().is_empty() => (v.trim().to_string(), sig.trim().to_string()),
        Some((v, _)) => (v.trim().to_string(), UNREPORTED.to_string()),
        None => (text.to_string(), UNREPORTED.to_string()),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_version_answers() {
        assert_eq!(
            parse("ClamAV 1.0.7/27456/Mon Nov 20 08:12:34 2023"),
            (
                "ClamAV 1.0.7".to_string(),
                "27456/Mon Nov 20 08:12:34 2023".to_string()
            )
        );
        assert_eq!(
            parse("ClamAV 1.4.6"),
            ("ClamAV 1.4.6".to_string(), UNREPORTED.to_string())
        );
        assert_eq!(
            parse("ClamAV 1.4.6/"),
            ("ClamAV 1.4.6".to_string(), UNREPORTED.to_string())
        );
    }

    #[test]
    fn caches_answers_and_failures() {
        let c = VersionCache::new();
        let v = c.get(|| Err("refused".into()));
        assert_eq!(v.version, UNKNOWN);
        assert!(v.error.as_deref().unwrap().contains("refused"));
        // Within the TTL: no new fetch.
        let v = c.get(|| panic!("must not fetch"));
        assert!(v.error.is_some());
        c.lock().1 = None;
        let v = c.get(|| Ok("ClamAV 1.4.6/1/x".into()));
        assert_eq!(
            (v.version.as_str(), v.signature_version.as_str()),
            ("ClamAV 1.4.6", "1/x")
        );
        assert!(v.error.is_none() && v.seen_at > 0);
        c.lock().1 = None;
        // A failure keeps the last known values.
        let v = c.get(|| Err("down".into()));
        assert_eq!(v.version, "ClamAV 1.4.6");
        assert!(v.error.is_some());
    }
}

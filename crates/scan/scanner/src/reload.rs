//! Hot reload: rebuild the engine set beside the old one, then swap.
//!
//! Triggers (SIGHUP, a changed signature or rule file) are the caller's; this
//! module decides whether anything changed ([`Reloader::changed`]) and does the
//! rebuild ([`Reloader::reload`]). A failed rebuild keeps the old set, and the
//! error stays visible through [`Reloader::last_error`] until a reload succeeds.

use crate::config::{EngineConfig, build_engine_set_after};
use crate::pipeline::Scanner;
use std::path::Path;
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new set is in use; carries its fingerprint.
    Swapped(String),
    /// The rebuild failed; the old set stays in use.
    Failed(String),
}

pub struct Reloader {
    engines: Vec<EngineConfig>,
    stamp: Mutex<String>,
    last_error: Mutex<Option<String>>,
    /// The signature updater's latest results (shown by `/v1/engines`).
    updates: Mutex<Option<serde_json::Value>>,
}

impl Reloader {
    pub fn new(engines: Vec<EngineConfig>) -> Reloader {
        let stamp = stamp(&engines);
        Reloader {
            engines,
            stamp: Mutex::new(stamp),
            last_error: Mutex::new(None),
            updates: Mutex::new(None),
        }
    }

    /// Rebuild and swap now (after a signature update wrote new files),
    /// taking the current files as seen so that the poller does not reload
    /// the same change again.
    pub fn reload_now(&self, scanner: &Scanner) -> ReloadOutcome {
        let _ = self.changed();
        self.reload(scanner)
    }

    /// Record the signature updater's latest results.
    pub fn set_updates(&self, v: serde_json::Value) {
        *self.updates.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
    }

    /// The signature updater's latest results, when it runs.
    pub fn updates(&self) -> Option<serde_json::Value> {
        self.updates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether any watched file was added, removed or modified since the last check.
    pub fn changed(&self) -> bool {
        let now = stamp(&self.engines);
        let mut old = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if *old != now {
            *old = now;
            true
        } else {
            false
        }
    }

    /// Rebuild and swap. Blocking (signature loading); call from a blocking thread.
    pub fn reload(&self, scanner: &Scanner) -> ReloadOutcome {
        let started = std::time::Instant::now();
        // The serving set's parts are shared with the new one where their
        // sources did not change; it stays alive (serving) meanwhile anyway.
        let current = scanner.engine_set();
        let built = build_engine_set_after(&self.engines, Some(&current));
        drop(current);
        match built {
            Ok(set) => {
                let fp = set.fingerprint().to_string();
                scanner.swap(set);
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                tracing::info!(fingerprint = %fp, ms = started.elapsed().as_millis() as u64, "engine set reloaded");
                ReloadOutcome::Swapped(fp)
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, "reload failed; keeping the previous engine set");
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg.clone());
                ReloadOutcome::Failed(msg)
            }
        }
    }

    /// When an engine whose signatures live on a server (clamd, icap)
    /// reports a new live fingerprint (clamd's database version, a new
    /// ISTag), swap in the same engines as a fresh set, so that the
    /// verdict cache and the records get the new fingerprint. Nothing is
    /// reloaded. Blocking (asks those engines); call from a blocking thread.
    /// `Some(fingerprint)` when a new set is in use.
    pub fn refresh_remote(&self, scanner: &Scanner) -> Option<String> {
        let current = scanner.engine_set();
        let drifted = current.drifted();
        if drifted.is_empty() {
            return None;
        }
        let fresh = current.refreshed();
        let fp = fresh.fingerprint().to_string();
        if fp == current.fingerprint() || !scanner.swap_if_current(&current, fresh) {
            return None;
        }
        tracing::info!(engines = ?drifted, old = %current.fingerprint(), new = %fp,
            "a remote engine's signatures changed: new engine-set fingerprint");
        Some(fp)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A cheap fingerprint of every watched path: names, sizes and mtimes.
fn stamp(engines: &[EngineConfig]) -> String {
    let mut out = String::new();
    for e in engines {
        for p in e.watched_paths() {
            stamp_path(&p, &mut out, 0);
        }
    }
    out
}

fn stamp_path(p: &Path, out: &mut String, depth: u32) {
    use std::fmt::Write;
    let Ok(meta) = std::fs::metadata(p) else {
        let _ = writeln!(out, "{}:missing", p.display());
        return;
    };
    if meta.is_dir() {
        if depth > 8 {
            return;
        }
        let mut names: Vec<_> = match std::fs::read_dir(p) {
            Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
            Err(_) => return,
        };
        names.sort();
        for n in names {
            stamp_path(&n, out, depth + 1);
        }
    } else {
        let mtime = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let _ = writeln!(out, "{}:{}:{}", p.display(), meta.len(), mtime);
    }
}

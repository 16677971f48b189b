//! What the updater remembers between runs, in `moat-update.json` in the
//! database directory (freshclam keeps `freshclam.dat` there): mirror
//! cool-downs (429/503 with `Retry-After`, 403), the validators of extra
//! URLs for conditional requests, and a bounded history of every update.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the state file in the database directory.
pub const STATE_FILE: &str = "moat-update.json";
/// History entries kept.
pub const MAX_HISTORY: usize = 200;
/// Largest state file read.
const MAX_STATE: u64 = 8 << 20;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct State {
    /// Per origin (`scheme://host:port`): no request before this Unix time.
    pub cooldowns: BTreeMap<String, Cooldown>,
    /// Per extra URL: the validators of the copy on disk.
    pub conditional: BTreeMap<String, Validators>,
    /// Every update attempt, oldest first (at most [`MAX_HISTORY`]).
    pub history: Vec<Record>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Cooldown {
    /// Unix time the cool-down ends.
    pub until: u64,
    /// Why (e.g. "HTTP 429 from https://mirror/daily.cvd").
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The file it was saved as.
    pub file: String,
}

/// One update attempt of one database.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Record {
    /// Unix time.
    pub time: u64,
    /// Database (`daily`) or file name (`foo.ndb`).
    pub database: String,
    /// Version before (CVD/CLD databases).
    pub from_version: Option<u64>,
    /// Version after.
    pub version: Option<u64>,
    /// Where it came from (URL of the file or of the last cdiff).
    pub source: String,
    /// `cvd`, `cdiff`, `file` or empty when nothing was downloaded.
    pub method: String,
    /// `updated`, `up_to_date`, `failed` or `cooldown`.
    pub result: String,
    /// Error or remark.
    pub detail: String,
}

impl State {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Read the state; a missing or unreadable file is an empty state (a
    /// broken one is logged).
    pub fn load(dir: &Path) -> State {
        use std::io::Read;
        let p = State::path(dir);
        let Ok(f) = std::fs::File::open(&p) else {
            return State::default();
        };
        let mut text = String::new();
        #[allow(clippy::disallowed_methods)] // bounded by take()
        if let Err(e) = f.take(MAX_STATE).read_to_string(&mut text) {
            tracing::warn!(path = %p.display(), error = %e, "cannot read the update state; starting afresh");
            return State::default();
        }
        serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(path = %p.display(), error = %e, "update state is malformed; starting afresh");
            State::default()
        })
    }

    /// Write the state atomically (temporary file, then rename).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".moat-update-state")
            .tempfile_in(dir)?;
        serde_json::to_writer_pretty(&mut tmp, self).map_err(std::io::Error::other)?;
        tmp.write_all(b"\n")?;
        tmp.as_file().sync_all()?;
        tmp.persist(State::path(dir)).map_err(|e| e.error)?;
        Ok(())
    }

    pub fn record(&mut self, r: Record) {
        self.history.push(r);
        if self.history.len() > MAX_HISTORY {
            let drop = self.history.len() - MAX_HISTORY;
            self.history.drain(..drop);
        }
    }

    /// The active cool-down for `origin` at `now`, if any.
    pub fn cooldown(&self, origin: &str, now: u64) -> Option<&Cooldown> {
        self.cooldowns.get(origin).filter(|c| c.until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_history_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(State::load(d.path()), State::default());
        let mut s = State::default();
        s.cooldowns.insert(
            "http://m:1".into(),
            Cooldown {
                until: 100,
                reason: "429".into(),
            },
        );
        for i in 0..(MAX_HISTORY + 5) {
            s.record(Record {
                time: i as u64,
                ..Record::default()
            });
        }
        assert_eq!(s.history.len(), MAX_HISTORY);
        assert_eq!(s.history[0].time, 5);
        s.save(d.path()).unwrap();
        let back = State::load(d.path());
        assert_eq!(back, s);
        assert!(back.cooldown("http://m:1", 99).is_some());
        assert!(back.cooldown("http://m:1", 100).is_none());
        std::fs::write(State::path(d.path()), "{not json").unwrap();
        assert_eq!(State::load(d.path()), State::default());
    }
}

//! The package state machine, in one place.
//!
//! ```text
//! uploading → scanning → available | quarantined → expired → purged
//!                         available → quarantined   (a rescan found something)
//!                       quarantined → available     (admin release only)
//! ```
//! Every transition is one conditional `UPDATE … WHERE id = $ AND state =
//! $expected`: of two workers racing to move a package, exactly one does.
//! An owner's revoke or delete is a transition to `expired` from whatever
//! live state the package is in ([`Store::expire_now`]).

use crate::error::{PortalError, Result};
use crate::store::{Store, now_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PkgState {
    Uploading,
    Scanning,
    Available,
    Quarantined,
    Expired,
    Purged,
}

impl PkgState {
    pub fn as_str(self) -> &'static str {
        match self {
            PkgState::Uploading => "uploading",
            PkgState::Scanning => "scanning",
            PkgState::Available => "available",
            PkgState::Quarantined => "quarantined",
            PkgState::Expired => "expired",
            PkgState::Purged => "purged",
        }
    }

    pub fn parse(s: &str) -> Result<PkgState> {
        Ok(match s {
            "uploading" => PkgState::Uploading,
            "scanning" => PkgState::Scanning,
            "available" => PkgState::Available,
            "quarantined" => PkgState::Quarantined,
            "expired" => PkgState::Expired,
            "purged" => PkgState::Purged,
            other => return Err(PortalError::Db(format!("unknown package state {other:?}"))),
        })
    }
}

/// The transitions there are. Anything else is a bug and is refused.
pub const TRANSITIONS: &[(PkgState, PkgState)] = &[
    (PkgState::Uploading, PkgState::Scanning),
    (PkgState::Scanning, PkgState::Available),
    (PkgState::Scanning, PkgState::Quarantined),
    (PkgState::Available, PkgState::Quarantined),
    (PkgState::Quarantined, PkgState::Available),
    (PkgState::Uploading, PkgState::Expired),
    (PkgState::Scanning, PkgState::Expired),
    (PkgState::Available, PkgState::Expired),
    (PkgState::Quarantined, PkgState::Expired),
    (PkgState::Expired, PkgState::Purged),
];

/// What a transition records beside the new state.
#[derive(Debug, Default, Clone)]
pub struct Change<'a> {
    /// Quarantine reason (`infected`, `suspicious`, `unscannable`, `error`).
    pub reason: Option<&'a str>,
    /// The admin who released a quarantined package.
    pub released_by: Option<&'a str>,
    pub release_reason: Option<&'a str>,
    /// When scanning must have finished (set on submit).
    pub scan_deadline: Option<i64>,
    /// Move only if the package's expiry is at or before this time (the
    /// scheduler's expiry, so an extend that landed after it read the
    /// package is not undone).
    pub expired_by: Option<i64>,
}

impl Store {
    /// Move package `id` from `from` to `to`. `Ok(true)` when this call
    /// moved it; `Ok(false)` when it was not in `from` (someone else moved
    /// it first, or it never was).
    pub async fn transition(
        &self,
        id: &str,
        from: PkgState,
        to: PkgState,
        c: Change<'_>,
    ) -> Result<bool> {
        if !TRANSITIONS.contains(&(from, to)) {
            return Err(PortalError::Internal(format!(
                "refused transition {} → {}",
                from.as_str(),
                to.as_str()
            )));
        }
        let res = sqlx::query(
            "UPDATE moat_portal_packages
                SET state = $1, updated_at = $2,
                    reason = COALESCE($3, reason),
                    released_by = COALESCE($4, released_by),
                    release_reason = COALESCE($5, release_reason),
                    scan_deadline = COALESCE($6, scan_deadline)
              WHERE id = $7 AND state = $8 AND expires_at <= $9",
        )
        .bind(to.as_str())
        .bind(now_ms())
        .bind(c.reason)
        .bind(c.released_by)
        .bind(c.release_reason)
        .bind(c.scan_deadline)
        .bind(id)
        .bind(from.as_str())
        .bind(c.expired_by.unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        let moved = res.rows_affected() == 1;
        if moved {
            tracing::info!(
                package = id,
                from = from.as_str(),
                to = to.as_str(),
                reason = c.reason.unwrap_or(""),
                "package state"
            );
            metrics::counter!("moat_portal_transitions_total", "to" => to.as_str()).increment(1);
        }
        Ok(moved)
    }
}

impl Store {
    /// Expire package `id` now, from whichever live state it is in (an
    /// owner's revoke or delete): the state is read, then moved by the same
    /// conditional transition as every other, again if another writer moved
    /// it in between. `Some(from)` when this call expired it; `None` when it
    /// was expired or purged already.
    pub async fn expire_now(&self, id: &str, reason: &str) -> Result<Option<PkgState>> {
        for _ in 0..8 {
            let pkg = self.package(id).await?.ok_or(PortalError::NotFound)?;
            if matches!(pkg.state, PkgState::Expired | PkgState::Purged) {
                return Ok(None);
            }
            let c = Change {
                reason: Some(reason),
                ..Change::default()
            };
            if self.transition(id, pkg.state, PkgState::Expired, c).await? {
                return Ok(Some(pkg.state));
            }
        }
        Err(PortalError::Conflict(
            "the package keeps changing state; try again".into(),
        ))
    }
}

/// A file's scan status. Only `clean` (or `released`, by an audited admin
/// release) lets its bytes out, and only with a scan record id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    Pending,
    Clean,
    Infected,
    Suspicious,
    Unscannable,
    Error,
    Released,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Pending => "pending",
            FileStatus::Clean => "clean",
            FileStatus::Infected => "infected",
            FileStatus::Suspicious => "suspicious",
            FileStatus::Unscannable => "unscannable",
            FileStatus::Error => "error",
            FileStatus::Released => "released",
        }
    }

    pub fn parse(s: &str) -> FileStatus {
        match s {
            "clean" => FileStatus::Clean,
            "infected" => FileStatus::Infected,
            "suspicious" => FileStatus::Suspicious,
            "unscannable" => FileStatus::Unscannable,
            "error" => FileStatus::Error,
            "released" => FileStatus::Released,
            // Unknown text is never taken for a clearance.
            _ => FileStatus::Pending,
        }
    }

    /// Whether a scan has decided this file (no more jobs needed).
    pub fn is_final(self) -> bool {
        !matches!(self, FileStatus::Pending)
    }

    /// Whether the status blocks the package (everything decided but clean).
    pub fn blocks(self) -> bool {
        matches!(
            self,
            FileStatus::Infected
                | FileStatus::Suspicious
                | FileStatus::Unscannable
                | FileStatus::Error
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_path_leaves_quarantine_except_release_and_expiry() {
        let out: Vec<_> = TRANSITIONS
            .iter()
            .filter(|(f, _)| *f == PkgState::Quarantined)
            .map(|(_, t)| *t)
            .collect();
        assert_eq!(out, vec![PkgState::Available, PkgState::Expired]);
        assert!(!TRANSITIONS.contains(&(PkgState::Uploading, PkgState::Available)));
        assert!(!TRANSITIONS.contains(&(PkgState::Purged, PkgState::Available)));
        assert!(!TRANSITIONS.contains(&(PkgState::Expired, PkgState::Available)));
    }

    #[test]
    fn unknown_file_status_is_never_clean() {
        assert_eq!(FileStatus::parse("CLEAN"), FileStatus::Pending);
        assert_eq!(FileStatus::parse(""), FileStatus::Pending);
        assert!(!FileStatus::Pending.blocks());
        assert!(FileStatus::Error.blocks());
    }
}

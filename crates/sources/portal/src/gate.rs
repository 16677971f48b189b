//! THE download gate. Every path that lets a byte of a file out (a single
//! file, a range, HEAD, the zip, by public link, recipient link or signed
//! in) calls [`Gate::check`], and only a [`Cleared`] (which nothing else can
//! build) unlocks the package's data key for [`crate::download`].
//!
//! Cleared means: the caller may see the package; the package is
//! `available` and not past its expiry; it has files; and every file is
//! complete, has a scan record id, and is `clean` with that record saying
//! `clean` for the same content, or `released` by an audited admin release.

use crate::Portal;
use crate::auth::Principal;
use crate::error::{PortalError, Result};
use crate::state::{FileStatus, PkgState};
use crate::store::{Actor, FileRow, Link, Package, now_ms};
use moat_core::Status;
use moat_vault::DataKey;

/// Who is asking.
pub enum Access<'a> {
    /// A public or recipient link, with the password header if given.
    Link {
        link: &'a Link,
        password: Option<&'a str>,
        ip: &'a str,
    },
    /// A signed-in user.
    User(&'a Principal),
}

/// A package that passed the gate. Fields are private: only [`Gate::check`] builds one.
pub struct Cleared {
    package: Package,
    files: Vec<FileRow>,
    key: DataKey,
    actor: Actor,
    link_id: Option<String>,
    counts: bool,
}

impl Cleared {
    pub fn package(&self) -> &Package {
        &self.package
    }
    pub fn files(&self) -> &[FileRow] {
        &self.files
    }
    pub(crate) fn key(&self) -> &DataKey {
        &self.key
    }
    pub fn actor(&self) -> &Actor {
        &self.actor
    }
    pub fn link_id(&self) -> Option<&str> {
        self.link_id.as_deref()
    }
    /// Whether downloads through this access count against the limit
    /// (everyone but the owner and admins).
    pub fn counts(&self) -> bool {
        self.counts
    }
    /// One of the package's files, or 404 (a file of another package is
    /// not found here, whatever its id).
    pub fn file(&self, id: &str) -> Result<&FileRow> {
        self.files
            .iter()
            .find(|f| f.id == id)
            .ok_or(PortalError::NotFound)
    }
}

/// Whether a signed-in user may see a package at all (else it does not
/// exist for them: 404, not 403).
pub fn may_see(p: &Principal, pkg: &Package) -> bool {
    p.is_admin() || pkg.owner_id == p.user.id || pkg.access == "internal"
}

pub struct Gate;

impl Gate {
    pub async fn check(portal: &Portal, package_id: &str, access: Access<'_>) -> Result<Cleared> {
        let pkg = portal
            .store
            .package(package_id)
            .await?
            .ok_or(PortalError::NotFound)?;
        let (actor, link_id, counts, password) = match &access {
            Access::Link { link, password, ip } => {
                if link.package_id != pkg.id || (link.kind == "public" && pkg.access != "public") {
                    return Err(PortalError::NotFound);
                }
                let actor = Actor {
                    id: Some(format!("link:{}", link.id)),
                    email: link.recipient.clone(),
                    ip: Some((*ip).to_string()),
                };
                (actor, Some(link.id.clone()), true, Some(*password))
            }
            Access::User(p) => {
                if !may_see(p, &pkg) {
                    return Err(PortalError::NotFound);
                }
                let owner = p.is_admin() || pkg.owner_id == p.user.id;
                (p.actor(), None, !owner, None)
            }
        };
        match pkg.state {
            PkgState::Expired | PkgState::Purged => {
                return Err(PortalError::Gone("the package has expired"));
            }
            PkgState::Available => {}
            s => return Err(PortalError::NotAvailable(s.as_str().to_string())),
        }
        if now_ms() >= pkg.expires_at {
            return Err(PortalError::Gone("the package has expired"));
        }
        let files = portal.store.files(&pkg.id).await?;
        if files.is_empty() {
            return Err(PortalError::NotAvailable("no files".into()));
        }
        for f in &files {
            cleared_file(portal, &pkg, f).await?;
        }
        if counts && pkg.download_limit.is_some_and(|l| pkg.download_count >= l) {
            return Err(PortalError::Gone("the download limit is reached"));
        }
        if let (Some(hash), Some(given)) = (&pkg.password_hash, password) {
            let ip = actor.ip.clone().unwrap_or_default();
            let key = format!("pw:{}:{ip}", pkg.id);
            if !portal.password_throttle.allowed(&[&key]) {
                return Err(PortalError::Throttled);
            }
            let ok = match given {
                Some(g) => crate::auth::verify_password(g.to_string(), hash.clone()).await,
                None => false,
            };
            if !ok {
                if given.is_some() {
                    portal.password_throttle.failed(&[&key]);
                }
                return Err(PortalError::PasswordRequired);
            }
            portal.password_throttle.succeeded(&key);
        }
        let key = DataKey::unwrap(&portal.kek, &pkg.wrapped_key)
            .map_err(|e| PortalError::Storage(format!("unwrapping the package key: {e}")))?;
        Ok(Cleared {
            package: pkg,
            files,
            key,
            actor,
            link_id,
            counts,
        })
    }
}

/// One file's clearance: complete, a scan record id, and `clean` confirmed
/// by that record (same content), or `released` by an admin.
async fn cleared_file(portal: &Portal, pkg: &Package, f: &FileRow) -> Result<()> {
    let blocked = || PortalError::NotAvailable(format!("file {} is not cleared", f.id));
    if !f.complete {
        return Err(blocked());
    }
    let Some(rec_id) = &f.scan_record_id else {
        return Err(blocked());
    };
    match f.status {
        FileStatus::Clean => {
            let rec = portal
                .scan
                .store
                .get(rec_id)
                .await
                .map_err(|e| PortalError::Db(e.to_string()))?
                .ok_or_else(blocked)?;
            let same = f.sha256.as_deref() == Some(rec.verdict.sha256.as_str());
            if rec.verdict.status != Status::Clean || !same {
                return Err(blocked());
            }
            Ok(())
        }
        FileStatus::Released if pkg.released_by.is_some() => Ok(()),
        _ => Err(blocked()),
    }
}

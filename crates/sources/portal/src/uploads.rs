//! Uploads into a package that is `uploading`: tus 1.0 under
//! `/v1/portal/uploads` ([`moat_vault::tus_router`] with the portal's hooks:
//! `Upload-Metadata` carries `package` and `filename`), and a plain
//! multipart/form-data POST to `/v1/portal/packages/{id}/files`. Both check
//! ownership, the size limit (413 at creation and while bytes arrive), the
//! file count and the owner's quota (413 `quota_exceeded`: the declared
//! size of a tus upload counts from its creation, and no upload can grow
//! past what it declared), all from the effective settings
//! ([`Portal::settings`]), and store only ciphertext. When a file's last
//! byte is stored its content is sniffed and checked against the settings'
//! type lists; a refused file is deleted and its upload fails with 415
//! `file_type_refused`.

use crate::Portal;
use crate::api::owned_package;
use crate::auth::{Auth, Principal};
use crate::error::{PortalError, Result};
use crate::names::safe_name;
use crate::settings::Settings;
use crate::state::PkgState;
use crate::store::{Actor, FileRow, Package};
use async_trait::async_trait;
use axum::Json;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use futures_util::StreamExt;
use moat_vault::{DataKey, PutInfo, TusConfig, TusCreate, TusHooks, TusReject, TusTarget};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// The tus sub-router with the portal's hooks.
pub fn tus(p: Arc<Portal>) -> axum::Router {
    let cfg = TusConfig {
        max_size: p.cfg.max_file_size,
        ..TusConfig::default()
    };
    moat_vault::tus_router(p.vault.clone(), Arc::new(Hooks { p: p.clone() }), cfg)
}

struct Hooks {
    p: Arc<Portal>,
}

fn reject(e: PortalError) -> TusReject {
    TusReject::new(e.status(), e.code(), e.to_string())
}

/// May `who` add a file of `size` bytes to `pkg`? (state, count, size,
/// quota, all from the effective settings, which are returned)
async fn check_add(p: &Portal, who: &Principal, pkg: &Package, size: u64) -> Result<Arc<Settings>> {
    let set = p.settings().await?;
    if pkg.state != PkgState::Uploading {
        return Err(PortalError::Conflict(format!(
            "the package is {}",
            pkg.state.as_str()
        )));
    }
    if size > set.max_file_size {
        return Err(PortalError::TooLarge(set.max_file_size));
    }
    let n = p.store.files(&pkg.id).await?.len();
    if n >= set.max_files_per_package as usize {
        return Err(PortalError::Conflict(format!(
            "a package holds at most {} files",
            set.max_files_per_package
        )));
    }
    if let Some(used) = quota_used(p, &set, who, pkg).await?
        && used.saturating_add(size) > set.quota_bytes
    {
        return Err(PortalError::QuotaExceeded {
            quota: set.quota_bytes,
            used,
            needed: size,
        });
    }
    Ok(set)
}

/// The bytes the owner keeps in packages that are not purged (declared
/// sizes of unfinished uploads included), when a quota applies to `who`.
async fn quota_used(
    p: &Portal,
    set: &Settings,
    who: &Principal,
    pkg: &Package,
) -> Result<Option<u64>> {
    if set.quota_bytes == 0 || who.is_admin() {
        return Ok(None);
    }
    Ok(Some(p.store.usage(&pkg.owner_id).await?))
}

/// The type of a stored file, sniffed from its first bytes (decrypted):
/// never the client's name or Content-Type.
async fn sniff(p: &Portal, key: &DataKey, object: &str, size: u64) -> Result<String> {
    let n = size.min(moat_scanner::sniff::SNIFF_LEN as u64);
    let mut head = Vec::with_capacity(n as usize);
    if n > 0 {
        let mut st = p
            .vault
            .read(key, object, Some((0, n)))
            .await
            .map_err(|e| PortalError::Storage(format!("reading the upload back: {e}")))?;
        while let Some(b) = st.next().await {
            let b = b.map_err(|e| PortalError::Storage(format!("reading the upload back: {e}")))?;
            head.extend_from_slice(&b);
        }
    }
    Ok(moat_scanner::sniff::content_type(&head))
}

/// Check a finished file's sniffed type against the settings' allow and
/// deny lists. A refused file is not kept: its ciphertext and row are
/// deleted, the refusal audited, and the upload fails with 415
/// `file_type_refused`. Returns the type.
async fn admit_type(
    p: &Portal,
    actor: &Actor,
    f: &FileRow,
    key: &DataKey,
    size: u64,
) -> Result<String> {
    let set = p.settings().await?;
    let mime = sniff(p, key, &f.object, size).await?;
    if set.type_allowed(&mime) {
        return Ok(mime);
    }
    if let Err(e) = p.vault.delete(&f.object).await {
        tracing::warn!(file = %f.id, error = %e, "deleting a refused upload failed");
    }
    p.store.delete_file(&f.id).await?;
    p.store
        .audit(
            actor,
            "upload.refused",
            Some(&f.package_id),
            Some(&f.id),
            json!({ "name": f.name, "type": mime, "why": "file type" }),
        )
        .await?;
    Err(PortalError::TypeRefused(mime))
}

fn system() -> Actor {
    Actor {
        id: Some("system".into()),
        ..Default::default()
    }
}

fn unwrap_key(p: &Portal, pkg: &Package) -> Result<DataKey> {
    DataKey::unwrap(&p.kek, &pkg.wrapped_key)
        .map_err(|e| PortalError::Storage(format!("unwrapping the package key: {e}")))
}

impl Hooks {
    fn principal(ext: &http::Extensions) -> Result<Principal> {
        ext.get::<Principal>()
            .cloned()
            .ok_or(PortalError::Unauthenticated)
    }

    async fn target(&self, f: &FileRow, pkg: &Package) -> Result<TusTarget> {
        let expires = SystemTime::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(f.created_at).unwrap_or(0))
            + Duration::from_secs(self.p.cfg.upload_expiry_hours * 3600);
        Ok(TusTarget {
            id: f.id.clone(),
            object: f.object.clone(),
            key: Arc::new(unwrap_key(&self.p, pkg)?),
            max_size: u64::try_from(f.size).unwrap_or(0),
            expires_at: expires,
        })
    }

    async fn do_create(&self, req: &TusCreate, ext: &http::Extensions) -> Result<TusTarget> {
        let who = Self::principal(ext)?;
        let pkg_id = req
            .metadata
            .get("package")
            .ok_or_else(|| PortalError::BadRequest("Upload-Metadata needs package".into()))?;
        let name = req
            .metadata
            .get("filename")
            .or_else(|| req.metadata.get("name"))
            .map(String::as_str)
            .unwrap_or("file");
        let pkg = owned_package(&self.p, &who, pkg_id).await?;
        check_add(&self.p, &who, &pkg, req.length).await?;
        let f = self
            .p
            .store
            .create_file(&pkg.id, &safe_name(name), req.length)
            .await?;
        self.p
            .store
            .audit(
                &who.actor(),
                "upload.start",
                Some(&pkg.id),
                Some(&f.id),
                json!({ "name": f.name, "size": req.length, "via": "tus" }),
            )
            .await?;
        self.target(&f, &pkg).await
    }

    async fn do_completed(&self, id: &str, info: &PutInfo) -> Result<()> {
        let s = &self.p.store;
        let f = s.file(id).await?.ok_or(PortalError::NotFound)?;
        if f.complete {
            if f.sha256.as_deref() == Some(hex::encode(info.sha256).as_str()) {
                return Ok(()); // a repeated call
            }
            return Err(PortalError::Conflict(
                "the package no longer takes uploads".into(),
            ));
        }
        let pkg = s
            .package(&f.package_id)
            .await?
            .ok_or(PortalError::NotFound)?;
        let key = unwrap_key(&self.p, &pkg)?;
        let mime = admit_type(&self.p, &system(), &f, &key, info.size).await?;
        if !s.complete_file(id, info.size, &info.sha256).await? {
            return Err(PortalError::Conflict(
                "the package no longer takes uploads".into(),
            ));
        }
        s.audit(
            &system(),
            "upload.complete",
            Some(&pkg.id),
            Some(id),
            json!({ "size": info.size, "sha256": hex::encode(info.sha256), "type": mime, "via": "tus" }),
        )
        .await?;
        Ok(())
    }

    async fn do_authorize(&self, id: &str, ext: &http::Extensions) -> Result<TusTarget> {
        let who = Self::principal(ext)?;
        let f = self.p.store.file(id).await?.ok_or(PortalError::NotFound)?;
        let pkg = owned_package(&self.p, &who, &f.package_id).await?;
        if !f.complete && pkg.state != PkgState::Uploading {
            return Err(PortalError::Gone("the package no longer takes uploads"));
        }
        self.target(&f, &pkg).await
    }
}

#[async_trait]
impl TusHooks for Hooks {
    async fn create(
        &self,
        req: &TusCreate,
        ext: &http::Extensions,
    ) -> Result<TusTarget, TusReject> {
        self.do_create(req, ext).await.map_err(reject)
    }

    async fn authorize(&self, id: &str, ext: &http::Extensions) -> Result<TusTarget, TusReject> {
        self.do_authorize(id, ext).await.map_err(reject)
    }

    async fn completed(&self, id: &str, info: &PutInfo) -> Result<(), TusReject> {
        self.do_completed(id, info).await.map_err(reject)
    }

    async fn max_size(&self) -> Option<u64> {
        self.p.settings().await.ok().map(|s| s.max_file_size)
    }

    async fn terminated(&self, id: &str) -> Result<(), TusReject> {
        let s = &self.p.store;
        let Some(f) = s.file(id).await.map_err(reject)? else {
            return Ok(());
        };
        let pkg = s.package(&f.package_id).await.map_err(reject)?;
        if pkg.is_none_or(|p| p.state != PkgState::Uploading) {
            return Err(reject(PortalError::Conflict(
                "the package was submitted; its files stay".into(),
            )));
        }
        s.delete_file(id).await.map_err(reject)?;
        let actor = crate::store::Actor {
            id: Some("system".into()),
            ..Default::default()
        };
        s.audit(
            &actor,
            "upload.terminate",
            Some(&f.package_id),
            Some(id),
            json!({}),
        )
        .await
        .map_err(reject)?;
        Ok(())
    }
}

/// `POST /v1/portal/packages/{id}/files` (multipart/form-data): each part
/// with a file name becomes a file, streamed into the vault.
pub async fn multipart_upload(
    State(p): State<Arc<Portal>>,
    Auth(who): Auth,
    Path(id): Path<String>,
    mut mp: Multipart,
) -> Result<(StatusCode, Json<serde_json::Value>)> {
    let pkg = owned_package(&p, &who, &id).await?;
    check_add(&p, &who, &pkg, 0).await?;
    let key = unwrap_key(&p, &pkg)?;
    let mut out = Vec::new();
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| PortalError::BadRequest(format!("multipart: {e}")))?
    {
        let Some(name) = field.file_name().map(safe_name) else {
            continue;
        };
        let set = check_add(&p, &who, &pkg, 0).await?;
        let used = quota_used(&p, &set, &who, &pkg).await?;
        let quota_left = used.map(|u| set.quota_bytes.saturating_sub(u));
        let limit = set.max_file_size.min(quota_left.unwrap_or(u64::MAX));
        let f = p.store.create_file(&pkg.id, &name, 0).await?;
        let over = Arc::new(AtomicBool::new(false));
        let (seen, over2) = (Arc::new(std::sync::atomic::AtomicU64::new(0)), over.clone());
        let seen2 = seen.clone();
        let stream = field.map(move |chunk| {
            let chunk: Bytes = chunk.map_err(std::io::Error::other)?;
            let n = seen2.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
            if n > limit {
                over2.store(true, Ordering::Relaxed);
                return Err(std::io::Error::other("the file exceeds the size limit"));
            }
            Ok(chunk)
        });
        let reader = tokio_util::io::StreamReader::new(stream);
        match p.vault.put(&key, &f.object, reader).await {
            Ok(info) => {
                let mime = admit_type(&p, &who.actor(), &f, &key, info.size).await?;
                if !p
                    .store
                    .complete_file(&f.id, info.size, &info.sha256)
                    .await?
                {
                    let _ = p.vault.delete(&f.object).await;
                    p.store.delete_file(&f.id).await?;
                    return Err(PortalError::Conflict(
                        "the package no longer takes uploads".into(),
                    ));
                }
                p.store
                    .audit(&who.actor(), "upload.complete", Some(&pkg.id), Some(&f.id), json!({ "name": name, "size": info.size, "sha256": hex::encode(info.sha256), "type": mime, "via": "multipart" }))
                    .await?;
                out.push(json!({ "id": f.id, "name": name, "size": info.size, "sha256": hex::encode(info.sha256) }));
            }
            Err(e) => {
                let _ = p.vault.delete(&f.object).await;
                p.store.delete_file(&f.id).await?;
                if over.load(Ordering::Relaxed) {
                    if let (Some(used), Some(left)) = (used, quota_left)
                        && left < set.max_file_size
                    {
                        return Err(PortalError::QuotaExceeded {
                            quota: set.quota_bytes,
                            used,
                            needed: seen.load(Ordering::Relaxed),
                        });
                    }
                    return Err(PortalError::TooLarge(limit));
                }
                return Err(PortalError::BadRequest(format!("upload failed: {e}")));
            }
        }
    }
    if out.is_empty() {
        return Err(PortalError::BadRequest("no file parts".into()));
    }
    Ok((StatusCode::CREATED, Json(json!({ "files": out }))))
}

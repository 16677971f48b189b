//! Partial uploads, kept encrypted in `dir/uploads` (always a local
//! directory, also with the S3 backend; an upload must therefore be resumed
//! on the node that holds it). For an upload `id`:
//!
//! * `id.meta`: JSON: object name, declared length, expiry, and once done
//!   the plaintext size and SHA-256 and whether the portal was told.
//! * `id.data`: the final object's header followed by every complete
//!   segment, sealed with the final object's nonces as soon as its last byte
//!   arrives. The file is only appended to: segment `i` is sealed once.
//! * `id.tail`: the unfinished segment (under 64 KiB), sealed under a key
//!   of its own with a random nonce, rewritten (temp file + rename + fsync)
//!   at the end of every PATCH, also one cut short by a dropped connection.
//!
//! The durable offset is `complete segments × 64 KiB + tail bytes`, read
//! from the files: a torn segment at the end of `id.data` (crash during an
//! append) is cut off, and a tail whose segment number is behind `id.data`
//! (crash between the append and the tail rewrite) is stale and ignored,
//! its bytes being in the appended segment. On the final byte the tail is
//! sealed as the last segment and appended, and `id.data`, now a complete
//! object, is committed to the backend (renamed into `objects/`, or
//! uploaded to S3). The plaintext never touches the disk.
use crate::backend::sync_dir;
use crate::crypto::{HEADER_LEN, ObjectCipher, SEALED, SEGMENT, TAG};
use crate::{DataKey, HashState, PutInfo, Sealer, Vault, VaultError, check_name};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// An upload's persistent record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadMeta {
    pub object: String,
    pub length: u64,
    /// Unix seconds.
    pub expires_at: u64,
    #[serde(default)]
    pub finished: Option<Finished>,
    /// `TusHooks::completed` returned Ok.
    #[serde(default)]
    pub acked: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Finished {
    pub size: u64,
    pub sha256: String,
}

impl UploadMeta {
    pub fn expires(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.expires_at)
    }

    pub fn expired(&self, now: SystemTime) -> bool {
        self.expires() <= now
    }

    pub fn put_info(&self) -> Option<PutInfo> {
        let f = self.finished.as_ref()?;
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(&f.sha256, &mut sha256).ok()?;
        Some(PutInfo {
            size: f.size,
            sha256,
        })
    }
}

/// An upload's state as stored.
#[derive(Debug, Clone)]
pub struct UploadStatus {
    pub meta: UploadMeta,
    /// Plaintext bytes durably stored.
    pub offset: u64,
}

/// How a PATCH body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendEnd {
    /// The body ended normally.
    Complete,
    /// The connection dropped, the body errored or stalled: what arrived is kept.
    Interrupted,
    /// More bytes than the declared length: the bytes up to the chunk that
    /// crossed it are kept, the rest refused.
    Overflow,
}

/// A locked upload (one PATCH, HEAD completion or DELETE at a time).
pub struct UploadGuard {
    id: String,
    state: tokio::sync::OwnedMutexGuard<HashState>,
}

impl UploadGuard {
    /// The offset the running digest has reached, when this process kept one.
    #[cfg(test)]
    pub(crate) fn hashed_offset(&self) -> Option<u64> {
        self.state.as_ref().map(|(o, _)| *o)
    }
}

struct Partial {
    file: tokio::fs::File,
    cipher: ObjectCipher,
    nfull: u32,
    tail: Vec<u8>,
}

impl Partial {
    fn offset(&self) -> u64 {
        self.nfull as u64 * SEGMENT as u64 + self.tail.len() as u64
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Write `bytes` to `dir/name` atomically and durably.
async fn write_atomic(dir: &Path, name: &str, bytes: Vec<u8>) -> Result<(), VaultError> {
    let dir = dir.to_path_buf();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || -> Result<(), VaultError> {
        use std::io::Write;
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(&dir)?;
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_data()?;
        tmp.persist(dir.join(&name)).map_err(|e| e.error)?;
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(())
    })
    .await
    .map_err(|e| VaultError::Io(std::io::Error::other(e)))?
}

async fn remove_if_exists(p: &Path) -> Result<(), VaultError> {
    match tokio::fs::remove_file(p).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl Vault {
    fn upload_path(&self, id: &str, ext: &str) -> PathBuf {
        self.inner.uploads.join(format!("{id}.{ext}"))
    }

    async fn write_meta(&self, id: &str, meta: &UploadMeta) -> Result<(), VaultError> {
        let json = serde_json::to_vec(meta).map_err(|e| VaultError::Format(e.to_string()))?;
        write_atomic(&self.inner.uploads, &format!("{id}.meta"), json).await
    }

    /// The upload's record, `None` when there is none.
    pub async fn upload_meta(&self, id: &str) -> Result<Option<UploadMeta>, VaultError> {
        check_name(id)?;
        let mut buf = Vec::new();
        match tokio::fs::File::open(self.upload_path(id, "meta")).await {
            Ok(f) => {
                f.take(64 * 1024).read_to_end(&mut buf).await?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        serde_json::from_slice(&buf)
            .map(Some)
            .map_err(|e| VaultError::Format(format!("upload {id} record: {e}")))
    }

    /// Start upload `id` of `length` bytes into `object`.
    pub async fn upload_create(
        &self,
        id: &str,
        object: &str,
        key: &DataKey,
        length: u64,
        expires_at: SystemTime,
    ) -> Result<UploadMeta, VaultError> {
        check_name(id)?;
        check_name(object)?;
        if length > crate::crypto::MAX_PLAIN {
            return Err(VaultError::TooLarge);
        }
        let cipher = ObjectCipher::new(key);
        let data = self.upload_path(id, "data");
        let mut f = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&data)
            .await?;
        f.write_all(cipher.header()).await?;
        f.sync_all().await?;
        // an empty tail record: every later PATCH proves the key against it
        write_atomic(
            &self.inner.uploads,
            &format!("{id}.tail"),
            cipher.seal_tail(0, &[]),
        )
        .await?;
        let meta = UploadMeta {
            object: object.to_string(),
            length,
            expires_at: unix(expires_at),
            finished: None,
            acked: false,
        };
        self.write_meta(id, &meta).await?;
        Ok(meta)
    }

    /// Record and durable offset, without the key; `None` when unknown.
    pub async fn upload_status(&self, id: &str) -> Result<Option<UploadStatus>, VaultError> {
        let Some(meta) = self.upload_meta(id).await? else {
            return Ok(None);
        };
        if meta.finished.is_some() {
            return Ok(Some(UploadStatus {
                offset: meta.length,
                meta,
            }));
        }
        let data_len = match tokio::fs::metadata(self.upload_path(id, "data")).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // committed, then a crash before the record said so
                let offset = match self.inner.backend.len(&meta.object).await? {
                    Some(l) if crate::crypto::plain_len(l) == Some(meta.length) => meta.length,
                    _ => 0,
                };
                return Ok(Some(UploadStatus { meta, offset }));
            }
            Err(e) => return Err(e.into()),
        };
        let nfull = data_len.saturating_sub(HEADER_LEN as u64) / SEALED as u64;
        let tail = match tokio::fs::metadata(self.upload_path(id, "tail")).await {
            Ok(m) => {
                let mut b = [0u8; 4];
                let mut f = tokio::fs::File::open(self.upload_path(id, "tail")).await?;
                f.read_exact(&mut b).await?;
                if u32::from_be_bytes(b) as u64 == nfull {
                    m.len().saturating_sub(16 + TAG as u64)
                } else {
                    0
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(Some(UploadStatus {
            offset: (nfull * SEGMENT as u64 + tail).min(meta.length),
            meta,
        }))
    }

    /// Lock upload `id`, waiting up to `wait`; `None` when it stays busy.
    pub async fn upload_lock(&self, id: &str, wait: Duration) -> Option<UploadGuard> {
        let m = {
            let mut locks = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
            if locks.len() >= 4096 {
                locks.retain(|_, m| Arc::strong_count(m) > 1);
            }
            locks
                .entry(id.to_string())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(None)))
                .clone()
        };
        let state = tokio::time::timeout(wait, m.lock_owned()).await.ok()?;
        Some(UploadGuard {
            id: id.to_string(),
            state,
        })
    }

    async fn open_partial(&self, id: &str, key: &DataKey) -> Result<Partial, VaultError> {
        let mut file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.upload_path(id, "data"))
            .await?;
        let mut header = [0u8; HEADER_LEN];
        file.read_exact(&mut header).await?;
        let cipher = ObjectCipher::from_header(key, &header)?;
        let len = file.metadata().await?.len();
        let body = len - HEADER_LEN as u64;
        let nfull = body / SEALED as u64;
        if !body.is_multiple_of(SEALED as u64) {
            tracing::warn!(upload = id, "cutting a torn segment off a partial upload");
            file.set_len(HEADER_LEN as u64 + nfull * SEALED as u64)
                .await?;
            file.sync_data().await?;
        }
        let nfull = u32::try_from(nfull).map_err(|_| VaultError::TooLarge)?;
        let mut rec = Vec::new();
        tokio::fs::File::open(self.upload_path(id, "tail"))
            .await?
            .take((16 + SEGMENT + TAG) as u64 + 1)
            .read_to_end(&mut rec)
            .await?;
        // authenticates the key, stale or not
        let (base, plain) = cipher.open_tail(&rec)?;
        let tail = match base.cmp(&nfull) {
            std::cmp::Ordering::Equal => plain,
            std::cmp::Ordering::Less => Vec::new(),
            std::cmp::Ordering::Greater => return Err(VaultError::Tampered),
        };
        file.seek(std::io::SeekFrom::End(0)).await?;
        Ok(Partial {
            file,
            cipher,
            nfull,
            tail,
        })
    }

    /// Append a PATCH body at `offset` (which the caller checked equals
    /// the durable offset). Bytes are sealed as they arrive; whatever
    /// arrived is made durable before returning, also when the body breaks
    /// off (`idle` without a chunk counts as broken). Returns how the body
    /// ended and the new durable offset.
    pub async fn upload_append<S, E>(
        &self,
        guard: &mut UploadGuard,
        key: &DataKey,
        meta: &UploadMeta,
        body: S,
        idle: Duration,
    ) -> Result<(AppendEnd, u64), VaultError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let id = guard.id.clone();
        let p = self.open_partial(&id, key).await?;
        let start = p.offset();
        let hasher = match guard.state.take() {
            Some((o, h)) if o == start => Some(h),
            // a fresh upload: hash from its first byte (before, the first
            // PATCH kept no digest and finishing decrypted the whole
            // object again to compute it)
            _ if start == 0 => Some(Sha256::new()),
            _ => None,
        };
        let file = crate::sink::BlockFile::new(p.file.into_std().await);
        let mut sealer = Sealer::new(p.cipher, p.nfull, &p.tail, hasher, file);
        let mut body = body;
        let mut end = AppendEnd::Complete;
        let mut write_err = None;
        loop {
            let chunk = match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(Ok(c))) => c,
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::debug!(upload = %id, error = %e, "upload body broke off");
                    end = AppendEnd::Interrupted;
                    break;
                }
                Err(_) => {
                    tracing::debug!(upload = %id, "upload body stalled");
                    end = AppendEnd::Interrupted;
                    break;
                }
            };
            if sealer.offset() + chunk.len() as u64 > meta.length {
                end = AppendEnd::Overflow;
                break;
            }
            if let Err(e) = sealer.push(&chunk).await {
                write_err = Some(e);
                break;
            }
        }
        if let Some(e) = write_err {
            return Err(e);
        }
        sealer.sync_sealed().await?;
        let offset = sealer.offset();
        if offset != start {
            let rec = sealer.cipher().seal_tail(sealer.index(), sealer.tail());
            write_atomic(&self.inner.uploads, &format!("{id}.tail"), rec).await?;
        }
        *guard.state = sealer.take_hasher().await.map(|h| (offset, h));
        Ok((end, offset))
    }

    /// All `meta.length` bytes are stored: seal the last segment, commit
    /// the object and record the result. Idempotent (a finished upload
    /// returns its recorded result).
    pub async fn upload_finish(
        &self,
        guard: &mut UploadGuard,
        key: &DataKey,
    ) -> Result<(UploadMeta, PutInfo), VaultError> {
        let id = guard.id.clone();
        let mut meta = self.upload_meta(&id).await?.ok_or(VaultError::NotFound)?;
        if let Some(info) = meta.put_info() {
            return Ok((meta, info));
        }
        let data = self.upload_path(&id, "data");
        let info = if tokio::fs::try_exists(&data).await? {
            let mut p = self.open_partial(&id, key).await?;
            if p.offset() != meta.length {
                return Err(VaultError::Range {
                    start: p.offset(),
                    end: meta.length,
                    size: meta.length,
                });
            }
            let mut last = std::mem::take(&mut p.tail);
            p.cipher.seal(p.nfull, true, &mut last);
            p.file.write_all(&last).await?;
            p.file.sync_all().await?;
            let len = p.file.metadata().await?.len();
            drop(p.file);
            let sha256 = match guard.state.take() {
                Some((o, h)) if o == meta.length => h.finalize().into(),
                _ => {
                    let src: crate::backend::BoxRead = Box::new(tokio::io::BufReader::new(
                        tokio::fs::File::open(&data).await?,
                    ));
                    digest_object(key, src, meta.length).await?
                }
            };
            self.inner.backend.commit(&meta.object, &data, len).await?;
            PutInfo {
                size: meta.length,
                sha256,
            }
        } else {
            // committed before a crash: the object is the upload
            let mut s = self.read(key, &meta.object, None).await?;
            let mut h = Sha256::new();
            let mut n = 0u64;
            while let Some(b) = s.next().await {
                let b = b?;
                n += b.len() as u64;
                h.update(&b);
            }
            PutInfo {
                size: n,
                sha256: h.finalize().into(),
            }
        };
        remove_if_exists(&self.upload_path(&id, "tail")).await?;
        meta.finished = Some(Finished {
            size: info.size,
            sha256: hex::encode(info.sha256),
        });
        self.write_meta(&id, &meta).await?;
        Ok((meta, info))
    }

    /// Record that the portal was told of the finished upload.
    pub async fn upload_set_acked(&self, guard: &UploadGuard) -> Result<(), VaultError> {
        let mut meta = self
            .upload_meta(&guard.id)
            .await?
            .ok_or(VaultError::NotFound)?;
        meta.acked = true;
        self.write_meta(&guard.id, &meta).await
    }

    /// Remove an upload's state (not its committed object).
    pub async fn upload_remove(&self, guard: UploadGuard) -> Result<(), VaultError> {
        let id = guard.id.clone();
        for ext in ["data", "tail", "meta"] {
            remove_if_exists(&self.upload_path(&id, ext)).await?;
        }
        sync_dir(&self.inner.uploads).await?;
        drop(guard);
        let mut locks = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.get(&id).is_some_and(|m| Arc::strong_count(m) == 1) {
            locks.remove(&id);
        }
        Ok(())
    }

    /// Remove every upload whose expiry has passed (partial ciphertext and
    /// records; a finished upload's object stays, it belongs to the portal
    /// from then on), and staging leftovers of a crash older than a day.
    /// Returns the ids of the removed uploads that had not finished. An
    /// upload busy with a request is left for the next run.
    pub async fn purge_expired(&self) -> Result<Vec<String>, VaultError> {
        let now = SystemTime::now();
        let mut gone = Vec::new();
        let mut ids = Vec::new();
        let mut rd = tokio::fs::read_dir(&self.inner.uploads).await?;
        while let Some(e) = rd.next_entry().await? {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = name.strip_suffix(".meta")
                && check_name(id).is_ok()
            {
                ids.push(id.to_string());
            }
        }
        for id in ids {
            let meta = match self.upload_meta(&id).await {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(upload = %id, error = %e, "unreadable upload record");
                    continue;
                }
            };
            if !meta.expired(now) {
                continue;
            }
            let Some(guard) = self.upload_lock(&id, Duration::ZERO).await else {
                continue;
            };
            self.upload_remove(guard).await?;
            tracing::info!(upload = %id, finished = meta.finished.is_some(), "expired upload removed");
            if meta.finished.is_none() {
                gone.push(id);
            }
        }
        for dir in [&self.inner.staging, &self.inner.uploads] {
            let mut rd = tokio::fs::read_dir(dir).await?;
            while let Some(e) = rd.next_entry().await? {
                let name = e.file_name();
                let stale = name
                    .to_str()
                    .is_some_and(|n| n.starts_with(".put-") || n.starts_with(".tmp-"));
                let old = e
                    .metadata()
                    .await
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age > Duration::from_secs(86_400));
                if stale && old {
                    remove_if_exists(&e.path()).await?;
                }
            }
        }
        Ok(gone)
    }
}

/// SHA-256 of a sealed object's plaintext read from `src` (from its header).
async fn digest_object(
    key: &DataKey,
    mut src: crate::backend::BoxRead,
    size: u64,
) -> Result<[u8; 32], VaultError> {
    let mut header = [0u8; HEADER_LEN];
    src.read_exact(&mut header).await?;
    let cipher = ObjectCipher::from_header(key, &header)?;
    let plan = crate::Plan::new(size, None)?;
    let mut s = crate::decrypt_stream(cipher, src, plan);
    let mut h = Sha256::new();
    while let Some(b) = s.next().await {
        h.update(&b?);
    }
    Ok(h.finalize().into())
}

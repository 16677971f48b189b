//! moat-vault: encrypted storage at rest for the portal, and its tus 1.0
//! upload server.
//!
//! * [`Kek`] wraps per-package [`DataKey`]s ([`rotate_kek`] re-wraps them
//!   without touching contents).
//! * [`Vault`] stores objects sealed in 64 KiB AES-256-GCM segments
//!   ([`crypto`] describes the format) in a [`Backend`]: a local directory
//!   or S3. [`Vault::put`] streams, [`Vault::read`] decrypts only the
//!   segments a range needs; altered, truncated or reordered ciphertext is an
//!   error, never altered bytes. Memory per operation: one segment plus I/O
//!   buffers.
//! * [`tus_router`] serves tus 1.0 (core, creation, termination, expiration,
//!   checksum sha256); partial uploads are kept encrypted in the vault's
//!   directory ([`upload`] describes how) and finalized into a vault object.
#![forbid(unsafe_code)]

pub mod backend;
pub mod crypto;
mod digest;
mod sink;
pub mod tus;
pub mod upload;

pub use backend::{Backend, LocalBackend, S3Backend};
pub use crypto::{DataKey, Kek, rotate_kek};
pub use tus::{TusConfig, TusCreate, TusHooks, TusReject, TusTarget, tus_router};

use bytes::Bytes;
use crypto::{HEADER_LEN, ObjectCipher, SEALED, SEGMENT, TAG};
use futures_util::Stream;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sink::BlockFile;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("object name is not a valid id")]
    BadName,
    #[error("object not found")]
    NotFound,
    #[error("authentication failed: the ciphertext was altered or truncated, or the key is wrong")]
    Tampered,
    #[error("unsupported format: {0}")]
    Format(String),
    #[error("key: {0}")]
    Key(String),
    #[error("range {start}..{end} is outside the object's {size} bytes")]
    Range { start: u64, end: u64, size: u64 },
    #[error("object larger than the format's maximum")]
    TooLarge,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("s3: {0}")]
    S3(String),
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = VaultError> = std::result::Result<T, E>;

/// Decrypted bytes of an object, a segment (or less) at a time.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, VaultError>> + Send>>;

/// What [`Vault::put`] (or a finished upload) stored: plaintext size and SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutInfo {
    pub size: u64,
    pub sha256: [u8; 32],
}

/// `[portal.storage]`-style configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Data directory: objects (local backend) and, with any backend, the
    /// staging area and partial uploads (ciphertext only).
    pub dir: PathBuf,
    #[serde(default)]
    pub backend: BackendConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackendConfig {
    #[default]
    Local,
    S3 {
        bucket: String,
        /// Prepended to every object name, e.g. `moat/`.
        #[serde(default)]
        prefix: String,
        #[serde(default)]
        s3: moat_s3::S3Config,
        /// Multipart part size in MiB (min 5, default 64); smaller objects take one PUT.
        #[serde(default)]
        part_size_mib: Option<u64>,
    },
}

/// Object names and upload ids: 1-128 of `[A-Za-z0-9_-]` (ids, never user input).
pub fn check_name(name: &str) -> Result<()> {
    if !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(VaultError::BadName)
    }
}

pub(crate) fn make_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

pub(crate) type HashState = Option<(u64, Sha256)>;

pub(crate) struct Inner {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) staging: PathBuf,
    pub(crate) uploads: PathBuf,
    /// Per-upload lock and, while this process has seen every byte, the
    /// running SHA-256 of the plaintext (`(offset, state)`).
    pub(crate) locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<HashState>>>>,
}

/// Encrypted object storage. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("backend", &self.inner.backend.name())
            .field("staging", &self.inner.staging)
            .finish()
    }
}

/// Seals plaintext pushed in chunks into segments written to a
/// [`BlockFile`]. Plaintext is copied once, into the block being filled,
/// and sealed there in place; full blocks go to the file by value. The
/// digest of the plaintext (when kept) runs beside it ([`digest::Digest`]).
pub(crate) struct Sealer {
    cipher: ObjectCipher,
    out: BlockFile,
    /// Sealed segments, then the pending segment's plaintext from `pend`.
    block: Vec<u8>,
    pend: usize,
    index: u32,
    digest: Option<digest::Digest>,
}

impl Sealer {
    /// Segment `index` onwards into `out` (positioned after segment
    /// `index - 1`), the pending segment starting with `tail`.
    pub(crate) fn new(
        cipher: ObjectCipher,
        index: u32,
        tail: &[u8],
        hasher: Option<Sha256>,
        mut out: BlockFile,
    ) -> Sealer {
        let mut block = out.buffer();
        block.extend_from_slice(tail);
        Sealer {
            cipher,
            out,
            block,
            pend: 0,
            index,
            digest: hasher.map(digest::Digest::new),
        }
    }

    pub(crate) fn cipher(&self) -> &ObjectCipher {
        &self.cipher
    }

    /// Plaintext bytes accepted so far (full segments plus the pending tail).
    pub(crate) fn offset(&self) -> u64 {
        self.index as u64 * SEGMENT as u64 + (self.block.len() - self.pend) as u64
    }

    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// The pending segment's plaintext.
    pub(crate) fn tail(&self) -> &[u8] {
        &self.block[self.pend..]
    }

    pub(crate) async fn push(&mut self, chunk: &Bytes) -> Result<()> {
        if let Some(d) = self.digest.as_mut() {
            d.update(chunk).await;
        }
        let mut data = &chunk[..];
        while !data.is_empty() {
            let have = self.block.len() - self.pend;
            let take = (SEGMENT - have).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() - self.pend == SEGMENT {
                if self.index == u32::MAX {
                    return Err(VaultError::TooLarge);
                }
                let tag =
                    self.cipher
                        .seal_detached(self.index, false, &mut self.block[self.pend..]);
                self.block.extend_from_slice(&tag);
                self.pend = self.block.len();
                self.index += 1;
                if self.pend >= sink::BLOCK {
                    let next = self.out.buffer();
                    let full = std::mem::replace(&mut self.block, next);
                    self.pend = 0;
                    self.out.write(full).await?;
                }
            }
        }
        Ok(())
    }

    /// Write the sealed segments (the pending one stays) and sync them.
    pub(crate) async fn sync_sealed(&mut self) -> Result<()> {
        if self.pend > 0 {
            let mut next = self.out.buffer();
            next.extend_from_slice(&self.block[self.pend..]);
            let mut full = std::mem::replace(&mut self.block, next);
            full.truncate(self.pend);
            self.pend = 0;
            self.out.write(full).await?;
        }
        self.out.sync_data().await
    }

    /// The running digest after every byte pushed, when this sealer kept
    /// one and it is known.
    pub(crate) async fn take_hasher(&mut self) -> Option<Sha256> {
        self.digest.take()?.finish().await
    }

    /// Seal the last segment and write everything. Returns the plaintext
    /// size, the digest when this sealer saw every byte, and the file.
    pub(crate) async fn finish(mut self) -> Result<(u64, Option<[u8; 32]>, std::fs::File)> {
        let size = self.offset();
        let tag = self
            .cipher
            .seal_detached(self.index, true, &mut self.block[self.pend..]);
        self.block.extend_from_slice(&tag);
        self.out.write(self.block).await?;
        let digest = match self.digest.take() {
            Some(d) => d.finish().await.map(|h| h.finalize().into()),
            None => None,
        };
        Ok((size, digest, self.out.into_file().await?))
    }
}

/// Seal everything `body` yields as a new object into `out` (header
/// first). Returns what was stored and the file, written but not synced.
pub(crate) async fn seal_reader<R>(
    key: &DataKey,
    mut body: R,
    out: std::fs::File,
) -> Result<(PutInfo, std::fs::File)>
where
    R: AsyncRead + Unpin,
{
    let cipher = ObjectCipher::new(key);
    let mut out = BlockFile::new(out);
    let mut head = out.buffer();
    head.extend_from_slice(cipher.header());
    out.write(head).await?;
    let mut sealer = Sealer::new(cipher, 0, &[], Some(Sha256::new()), out);
    let mut buf = bytes::BytesMut::with_capacity(SEGMENT);
    loop {
        buf.reserve(SEGMENT);
        let n = body.read_buf(&mut buf).await?;
        if n == 0 {
            break;
        }
        sealer.push(&buf.split().freeze()).await?;
    }
    let (size, sha, file) = sealer.finish().await?;
    Ok((
        PutInfo {
            size,
            sha256: sha.unwrap_or_default(),
        },
        file,
    ))
}

/// Where the segments of a plaintext range are.
pub(crate) struct Plan {
    size: u64,
    /// Index of the object's last segment.
    last_index: u64,
    first: u64,
    last_needed: u64,
    start: u64,
    end: u64,
}

impl Plan {
    pub(crate) fn new(size: u64, range: Option<(u64, u64)>) -> Result<Plan> {
        let (start, end) = range.unwrap_or((0, size));
        if start > end || end > size {
            return Err(VaultError::Range { start, end, size });
        }
        let seg = SEGMENT as u64;
        let last_index = size / seg;
        let first = start / seg;
        let last_needed = if end > start { (end - 1) / seg } else { first };
        Ok(Plan {
            size,
            last_index,
            first,
            last_needed,
            start,
            end,
        })
    }

    fn offset(&self, index: u64) -> u64 {
        HEADER_LEN as u64 + index * SEALED as u64
    }

    fn sealed_len(&self, index: u64) -> usize {
        if index < self.last_index {
            SEALED
        } else {
            (self.size % SEGMENT as u64) as usize + TAG
        }
    }
}

async fn read_sealed<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, len: usize) -> Result<()> {
    buf.resize(len, 0);
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        // shorter than its length said: changed under us or cut
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(VaultError::Tampered),
        Err(e) => Err(e.into()),
    }
}

/// Segments per read-ahead block in the tests' ranges (a block boundary to cross).
#[cfg(test)]
const READ_SEGS: u64 = 16;

/// Decrypt segments `plan.first..=plan.last_needed` from `src`, which is
/// positioned at the first of them, yielding the bytes of the range.
pub(crate) fn decrypt_stream(
    cipher: ObjectCipher,
    src: backend::BoxRead,
    plan: Plan,
) -> ByteStream {
    struct St {
        cipher: ObjectCipher,
        src: backend::BoxRead,
        plan: Plan,
        idx: u64,
    }
    let st = St {
        cipher,
        src,
        idx: plan.first,
        plan,
    };
    Box::pin(futures_util::stream::try_unfold(st, |mut st| async move {
        if st.idx > st.plan.last_needed || st.plan.start == st.plan.end {
            return Ok(None);
        }
        let i = st.idx;
        let mut buf = Vec::with_capacity(SEALED);
        read_sealed(&mut st.src, &mut buf, st.plan.sealed_len(i)).await?;
        st.cipher
            .open(i as u32, i == st.plan.last_index, &mut buf)?;
        let seg_start = i * SEGMENT as u64;
        let lo = st.plan.start.saturating_sub(seg_start) as usize;
        let hi = ((st.plan.end - seg_start) as usize).min(buf.len());
        st.idx += 1;
        Ok(Some((Bytes::from(buf).slice(lo..hi), st)))
    }))
}

impl Vault {
    /// Open (creating the directories) the vault described by `cfg`.
    pub async fn open(cfg: &VaultConfig) -> Result<Vault> {
        let backend: Arc<dyn Backend> = match &cfg.backend {
            BackendConfig::Local => Arc::new(LocalBackend::new(cfg.dir.join("objects"))?),
            BackendConfig::S3 {
                bucket,
                prefix,
                s3,
                part_size_mib,
            } => {
                let client = moat_s3::S3::new(s3)
                    .await
                    .map_err(|e| VaultError::Config(format!("vault S3 backend: {e}")))?;
                let mut b = S3Backend::new(client, bucket.clone(), prefix.clone());
                if let Some(mib) = part_size_mib {
                    b = b.with_part_size(mib.saturating_mul(1 << 20));
                }
                Arc::new(b)
            }
        };
        Vault::with_backend(&cfg.dir, backend)
    }

    /// A vault over any backend; `dir` holds staging and partial uploads.
    pub fn with_backend(dir: &Path, backend: Arc<dyn Backend>) -> Result<Vault> {
        make_private_dir(dir)?;
        let staging = dir.join("staging");
        let uploads = dir.join("uploads");
        make_private_dir(&staging)?;
        make_private_dir(&uploads)?;
        Ok(Vault {
            inner: Arc::new(Inner {
                backend,
                staging,
                uploads,
                locks: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Encrypt `body` into `object` (replacing it). The ciphertext is
    /// written to a 0600 staging file, fsynced, then renamed into place
    /// (local) or uploaded (S3): a reader never sees a half-written object.
    pub async fn put(
        &self,
        key: &DataKey,
        object: &str,
        body: impl AsyncRead + Unpin + Send,
    ) -> Result<PutInfo> {
        check_name(object)?;
        let tmp = tempfile::Builder::new()
            .prefix(".put-")
            .tempfile_in(&self.inner.staging)?;
        let (file, path) = tmp.into_parts();
        let (info, file) = seal_reader(key, body, file).await?;
        let len = tokio::task::spawn_blocking(move || {
            file.sync_all()?;
            Ok::<u64, std::io::Error>(file.metadata()?.len())
        })
        .await
        .map_err(|e| VaultError::Io(std::io::Error::other(e)))??;
        self.inner.backend.commit(object, &path, len).await?;
        // renamed or uploaded: nothing left to remove
        let _ = path.keep();
        Ok(info)
    }

    /// Decrypted bytes of `object`, all or the half-open plaintext range
    /// `start..end` (`end` at most [`Vault::size`]). Only the segments the
    /// range touches are read and decrypted, plus the object's last segment
    /// (so a truncated object fails every read). A segment that does not
    /// authenticate ends the stream with [`VaultError::Tampered`]; bytes of
    /// it are never yielded.
    pub async fn read(
        &self,
        key: &DataKey,
        object: &str,
        range: Option<(u64, u64)>,
    ) -> Result<ByteStream> {
        check_name(object)?;
        let backend = &self.inner.backend;
        let sealed = backend.len(object).await?.ok_or(VaultError::NotFound)?;
        let size = crypto::plain_len(sealed).ok_or(VaultError::Tampered)?;
        let plan = Plan::new(size, range)?;
        let mut header = [0u8; HEADER_LEN];
        let body_len: u64 = (plan.first..=plan.last_needed)
            .map(|i| plan.sealed_len(i) as u64)
            .sum();
        let src = if plan.first == 0 {
            let mut r = backend
                .open(object, 0, HEADER_LEN as u64 + body_len)
                .await?;
            read_exact_or_tampered(&mut r, &mut header).await?;
            r
        } else {
            let mut h = backend.open(object, 0, HEADER_LEN as u64).await?;
            read_exact_or_tampered(&mut h, &mut header).await?;
            backend
                .open(object, plan.offset(plan.first), body_len)
                .await?
        };
        let cipher = ObjectCipher::from_header(key, &header)?;
        if plan.last_needed < plan.last_index || plan.start == plan.end {
            // the range ends before the last segment: check that one too
            let i = plan.last_index;
            let mut r = backend
                .open(object, plan.offset(i), plan.sealed_len(i) as u64)
                .await?;
            let mut buf = Vec::with_capacity(SEALED);
            read_sealed(&mut r, &mut buf, plan.sealed_len(i)).await?;
            cipher.open(i as u32, true, &mut buf)?;
        }
        Ok(decrypt_stream(cipher, src, plan))
    }

    /// Plaintext size of `object` (from its ciphertext length; a length no
    /// object can have is [`VaultError::Tampered`]).
    pub async fn size(&self, object: &str) -> Result<u64> {
        check_name(object)?;
        let sealed = self
            .inner
            .backend
            .len(object)
            .await?
            .ok_or(VaultError::NotFound)?;
        crypto::plain_len(sealed).ok_or(VaultError::Tampered)
    }

    pub async fn delete(&self, object: &str) -> Result<()> {
        check_name(object)?;
        self.inner.backend.delete(object).await
    }

    pub async fn exists(&self, object: &str) -> Result<bool> {
        check_name(object)?;
        Ok(self.inner.backend.len(object).await?.is_some())
    }

    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }
}

async fn read_exact_or_tampered<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<()> {
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(VaultError::Tampered),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;

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
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

/// File buffer per open object or upload: each fill or flush is one hop to
/// tokio's blocking pool, so it is sized to keep those hops few.
pub(crate) const IO_BUF: usize = 1 << 20;

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

/// Seals plaintext pushed in any slices into segments written to `out`.
pub(crate) struct Sealer {
    cipher: ObjectCipher,
    buf: Vec<u8>,
    index: u32,
    hasher: Option<Sha256>,
}

impl Sealer {
    pub(crate) fn new(
        cipher: ObjectCipher,
        index: u32,
        tail: &[u8],
        hasher: Option<Sha256>,
    ) -> Sealer {
        let mut buf = Vec::with_capacity(SEALED);
        buf.extend_from_slice(tail);
        Sealer {
            cipher,
            buf,
            index,
            hasher,
        }
    }

    pub(crate) fn cipher(&self) -> &ObjectCipher {
        &self.cipher
    }

    /// Plaintext bytes accepted so far (full segments plus the pending tail).
    pub(crate) fn offset(&self) -> u64 {
        self.index as u64 * SEGMENT as u64 + self.buf.len() as u64
    }

    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    pub(crate) fn tail(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn take_hasher(&mut self) -> Option<Sha256> {
        self.hasher.take()
    }

    pub(crate) async fn push<W: AsyncWrite + Unpin>(
        &mut self,
        mut data: &[u8],
        out: &mut W,
    ) -> Result<()> {
        while !data.is_empty() {
            let take = (SEGMENT - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            if let Some(h) = self.hasher.as_mut() {
                h.update(&data[..take]);
            }
            data = &data[take..];
            if self.buf.len() == SEGMENT {
                if self.index == u32::MAX {
                    return Err(VaultError::TooLarge);
                }
                self.cipher.seal(self.index, false, &mut self.buf);
                out.write_all(&self.buf).await?;
                self.buf.clear();
                self.index += 1;
            }
        }
        Ok(())
    }

    /// Seal the last segment. Returns the plaintext size and, when this
    /// sealer saw every byte, its SHA-256.
    pub(crate) async fn finish<W: AsyncWrite + Unpin>(
        mut self,
        out: &mut W,
    ) -> Result<(u64, Option<[u8; 32]>)> {
        let size = self.offset();
        self.cipher.seal(self.index, true, &mut self.buf);
        out.write_all(&self.buf).await?;
        out.flush().await?;
        Ok((size, self.hasher.map(|h| h.finalize().into())))
    }
}

/// Seal everything `body` yields as a new object into `out` (header first).
pub(crate) async fn seal_reader<R, W>(key: &DataKey, mut body: R, out: &mut W) -> Result<PutInfo>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let cipher = ObjectCipher::new(key);
    out.write_all(cipher.header()).await?;
    let mut sealer = Sealer::new(cipher, 0, &[], Some(Sha256::new()));
    let mut chunk = vec![0u8; SEGMENT];
    loop {
        let n = body.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        sealer.push(&chunk[..n], out).await?;
    }
    let (size, sha) = sealer.finish(out).await?;
    Ok(PutInfo {
        size,
        sha256: sha.unwrap_or_default(),
    })
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
        let mut out =
            tokio::io::BufWriter::with_capacity(crate::IO_BUF, tokio::fs::File::from_std(file));
        let info = seal_reader(key, body, &mut out).await?;
        let file = out.into_inner();
        file.sync_all().await?;
        let len = file.metadata().await?.len();
        drop(file);
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

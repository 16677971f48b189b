//! Where ciphertext lives. Only sealed objects ever reach a backend; names
//! are checked ids ([`crate::check_name`]), never user input.
use crate::VaultError;
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Store the complete, fsynced ciphertext file `path` (in the vault's
    /// staging directory) as `object`, replacing any previous one. The file
    /// is consumed: renamed into place or uploaded and then removed.
    async fn commit(&self, object: &str, path: &Path, len: u64) -> Result<(), VaultError>;
    /// `len` ciphertext bytes of `object` from `offset`.
    async fn open(&self, object: &str, offset: u64, len: u64) -> Result<BoxRead, VaultError>;
    /// Ciphertext length, `None` when the object does not exist.
    async fn len(&self, object: &str) -> Result<Option<u64>, VaultError>;
    /// Remove `object`; removing a missing object succeeds.
    async fn delete(&self, object: &str) -> Result<(), VaultError>;
    fn name(&self) -> &'static str;
}

/// `root/objects/<name>`: files 0600 in a 0700 directory, written by rename
/// from the staging directory on the same file system, file and directory
/// fsynced.
pub struct LocalBackend {
    dir: PathBuf,
}

impl LocalBackend {
    pub fn new(dir: PathBuf) -> Result<LocalBackend, VaultError> {
        crate::make_private_dir(&dir)?;
        Ok(LocalBackend { dir })
    }

    fn path(&self, object: &str) -> PathBuf {
        self.dir.join(object)
    }
}

pub(crate) async fn sync_dir(dir: &Path) -> Result<(), VaultError> {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&d)?.sync_all())
        .await
        .map_err(|e| VaultError::Io(std::io::Error::other(e)))??;
    Ok(())
}

#[async_trait]
impl Backend for LocalBackend {
    async fn commit(&self, object: &str, path: &Path, _len: u64) -> Result<(), VaultError> {
        tokio::fs::rename(path, self.path(object)).await?;
        sync_dir(&self.dir).await
    }

    async fn open(&self, object: &str, offset: u64, len: u64) -> Result<BoxRead, VaultError> {
        let mut f = match tokio::fs::File::open(self.path(object)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(VaultError::NotFound);
            }
            Err(e) => return Err(e.into()),
        };
        f.seek(std::io::SeekFrom::Start(offset)).await?;
        // Up to 1 MiB, but no larger than what is read: tokio's BufReader
        // zero-fills its buffer, and a 1 MiB buffer per small file read (the
        // type sniff, the scan) was most of the portal's peak RSS under many
        // small uploads (freed memory the allocator keeps for its purge
        // delay; BENCHMARKS.md, "200 packages").
        let cap = len.clamp(8 << 10, 1 << 20) as usize;
        Ok(Box::new(tokio::io::BufReader::with_capacity(
            cap,
            f.take(len),
        )))
    }

    async fn len(&self, object: &str) -> Result<Option<u64>, VaultError> {
        match tokio::fs::metadata(self.path(object)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, object: &str) -> Result<(), VaultError> {
        match tokio::fs::remove_file(self.path(object)).await {
            Ok(()) => sync_dir(&self.dir).await,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn name(&self) -> &'static str {
        "local"
    }
}

/// Objects at `s3://bucket/prefix<name>` through moat-s3's client. A
/// commit uploads the staged ciphertext file: one PutObject up to the part
/// size (default [`S3Backend::PART`]), multipart in parts of that size
/// above it, each part streamed from its range of the file.
pub struct S3Backend {
    s3: moat_s3::S3,
    bucket: String,
    prefix: String,
    part: u64,
}

fn s3_err(op: &'static str, e: impl std::fmt::Display) -> VaultError {
    VaultError::S3(format!("{op}: {e}"))
}

impl S3Backend {
    /// Default multipart part size (and single-PUT threshold).
    pub const PART: u64 = 64 * 1024 * 1024;
    /// S3's smallest part but the last.
    pub const MIN_PART: u64 = 5 * 1024 * 1024;

    pub fn new(s3: moat_s3::S3, bucket: String, prefix: String) -> S3Backend {
        S3Backend {
            s3,
            bucket,
            prefix,
            part: Self::PART,
        }
    }

    /// Part size for multipart uploads (at least [`S3Backend::MIN_PART`]).
    pub fn with_part_size(mut self, bytes: u64) -> S3Backend {
        self.part = bytes.max(Self::MIN_PART);
        self
    }

    fn key(&self, object: &str) -> String {
        format!("{}{}", self.prefix, object)
    }

    async fn body(
        path: &Path,
        offset: u64,
        len: u64,
    ) -> Result<aws_sdk_s3::primitives::ByteStream, VaultError> {
        aws_sdk_s3::primitives::ByteStream::read_from()
            .path(path)
            .offset(offset)
            .length(aws_sdk_s3::primitives::Length::Exact(len))
            .build()
            .await
            .map_err(|e| s3_err("reading the staged object", e))
    }

    async fn upload(&self, key: &str, path: &Path, len: u64) -> Result<(), VaultError> {
        let c = self.s3.client();
        if len <= self.part {
            c.put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_length(len as i64)
                .body(Self::body(path, 0, len).await?)
                .send()
                .await
                .map_err(|e| s3_err("PutObject", aws_sdk_s3::error::DisplayErrorContext(e)))?;
            return Ok(());
        }
        let up = c
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                s3_err(
                    "CreateMultipartUpload",
                    aws_sdk_s3::error::DisplayErrorContext(e),
                )
            })?;
        let id = up
            .upload_id()
            .ok_or_else(|| s3_err("CreateMultipartUpload", "no upload id"))?
            .to_string();
        let result = async {
            let mut parts = Vec::new();
            let mut off = 0u64;
            let mut n = 1i32;
            while off < len {
                let size = self.part.min(len - off);
                let r = c
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&id)
                    .part_number(n)
                    .content_length(size as i64)
                    .body(Self::body(path, off, size).await?)
                    .send()
                    .await
                    .map_err(|e| s3_err("UploadPart", aws_sdk_s3::error::DisplayErrorContext(e)))?;
                parts.push(
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(r.e_tag().map(str::to_string))
                        .build(),
                );
                off += size;
                n += 1;
            }
            c.complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&id)
                .multipart_upload(
                    aws_sdk_s3::types::CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| {
                    s3_err(
                        "CompleteMultipartUpload",
                        aws_sdk_s3::error::DisplayErrorContext(e),
                    )
                })?;
            Ok::<(), VaultError>(())
        }
        .await;
        if result.is_err() {
            let _ = c
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&id)
                .send()
                .await;
        }
        result
    }
}

#[async_trait]
impl Backend for S3Backend {
    async fn commit(&self, object: &str, path: &Path, len: u64) -> Result<(), VaultError> {
        let r = self.upload(&self.key(object), path, len).await;
        let _ = tokio::fs::remove_file(path).await;
        r
    }

    async fn open(&self, object: &str, offset: u64, len: u64) -> Result<BoxRead, VaultError> {
        if len == 0 {
            return Ok(Box::new(tokio::io::empty()));
        }
        let r = self
            .s3
            .client()
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(object))
            .range(format!("bytes={}-{}", offset, offset + len - 1))
            .send()
            .await;
        match r {
            Ok(out) => Ok(Box::new(Box::pin(out.body.into_async_read()).take(len))),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                Err(VaultError::NotFound)
            }
            Err(e) => Err(s3_err(
                "GetObject",
                aws_sdk_s3::error::DisplayErrorContext(e),
            )),
        }
    }

    async fn len(&self, object: &str) -> Result<Option<u64>, VaultError> {
        let r = self
            .s3
            .client()
            .head_object()
            .bucket(&self.bucket)
            .key(self.key(object))
            .send()
            .await;
        match r {
            Ok(h) => Ok(Some(h.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(s3_err(
                "HeadObject",
                aws_sdk_s3::error::DisplayErrorContext(e),
            )),
        }
    }

    async fn delete(&self, object: &str) -> Result<(), VaultError> {
        self.s3
            .client()
            .delete_object()
            .bucket(&self.bucket)
            .key(self.key(object))
            .send()
            .await
            .map_err(|e| s3_err("DeleteObject", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "s3"
    }
}

//! moat-s3: S3 access for the bucket role.
//!
//! * [`S3Config`] → [`S3`]: any endpoint (MinIO, AWS, Ceph, Garage), path-style
//!   addressing, region, static keys or the default AWS credential chain, an
//!   extra CA bundle for self-signed endpoints (verification stays on).
//! * [`S3::fetch`] starts a GET and returns its head (size, ETag, version;
//!   tags only when the object has some) before any of the body is read;
//!   [`Fetch::read_into`] streams the body into a [`Spool`] chunk by chunk
//!   (never whole in memory). [`S3::head`] is HEAD plus the tags.
//! * [`S3::tag`] merges a [`Tagger`] scheme's tags into the existing ones;
//!   [`S3::delete`] (version-aware); [`S3::quarantine`] (copy with the
//!   original location in metadata, then delete).
//! * A missing object or version is [`S3Error::NotFound`], distinct from
//!   other failures.
#![forbid(unsafe_code)]

pub mod tags;
mod unverified;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{MetadataDirective, Tag, Tagging, TaggingDirective};
use moat_core::Spool;
use serde::Deserialize;
use std::io::Write;
use std::path::PathBuf;

pub use tags::{MAX_TAGS, TagScheme, Tagger};

/// `[bucket.s3]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:9000`; absent → AWS's endpoint for the region.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`), what MinIO needs. Default true.
    #[serde(default = "yes")]
    pub path_style: bool,
    /// Static credentials; absent → the default AWS chain (env, profile, IMDS).
    #[serde(default)]
    pub access_key: Option<String>,
    #[serde(default)]
    pub secret_key: Option<String>,
    /// PEM file of extra CA certificates to trust (self-signed MinIO).
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    /// Verify the endpoint's TLS certificate (default). `false` accepts any
    /// certificate: an explicit opt-out for lab endpoints, logged as a
    /// warning at start-up; it cannot be combined with `ca_bundle`.
    #[serde(default = "yes")]
    pub tls_verify: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn yes() -> bool {
    true
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: default_region(),
            path_style: true,
            access_key: None,
            secret_key: None,
            ca_bundle: None,
            tls_verify: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("s3://{bucket}/{key}: not found")]
    NotFound { bucket: String, key: String },
    #[error("object is larger than the size limit ({limit} bytes)")]
    TooLarge { limit: u64 },
    #[error("tagging would need {count} tags; S3 allows {MAX_TAGS} per object")]
    TagLimit { count: usize },
    #[error("{op}: {detail}")]
    Request { op: &'static str, detail: String },
    #[error("configuration: {0}")]
    Config(String),
    #[error("writing the object to the spool: {0}")]
    Io(#[from] std::io::Error),
}

impl S3Error {
    pub fn is_not_found(&self) -> bool {
        matches!(self, S3Error::NotFound { .. })
    }
}

/// What HEAD or the head of a GET (plus GetObjectTagging) says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    /// Without quotes.
    pub etag: String,
    pub version_id: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// A started GET: the object's head, and its body still unread.
pub struct Fetch {
    pub info: ObjectInfo,
    body: aws_sdk_s3::primitives::ByteStream,
    name: String,
}

impl Fetch {
    /// Stream the body into `spool`. Returns the byte count. A body larger
    /// than the spool's limit is [`S3Error::TooLarge`].
    pub async fn read_into(mut self, spool: &mut Spool, limit: u64) -> Result<u64, S3Error> {
        let mut n = 0u64;
        while let Some(chunk) = self.body.next().await {
            let chunk = chunk.map_err(|e| S3Error::Request {
                op: "GetObject",
                detail: format!("{}: reading the body: {e}", self.name),
            })?;
            n += chunk.len() as u64;
            if let Err(e) = spool.write_all(&chunk) {
                if spool.is_over_limit() {
                    return Err(S3Error::TooLarge { limit });
                }
                return Err(S3Error::Io(e));
            }
        }
        Ok(n)
    }
}

/// One listed object (backfill).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub etag: String,
}

#[derive(Clone)]
pub struct S3 {
    client: Client,
}

fn map_err<E>(op: &'static str, bucket: &str, key: &str, e: SdkError<E, HttpResponse>) -> S3Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let not_found =
        matches!(e.code(), Some("NoSuchKey" | "NotFound" | "NoSuchVersion")) || status == Some(404);
    if not_found {
        return S3Error::NotFound {
            bucket: bucket.into(),
            key: key.into(),
        };
    }
    S3Error::Request {
        op,
        detail: format!("s3://{bucket}/{key}: {}", DisplayErrorContext(&e)),
    }
}

/// Percent-encode for `x-amz-copy-source` and metadata values.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Unquoted ETag.
fn etag(s: Option<&str>) -> String {
    s.unwrap_or_default().trim_matches('"').to_string()
}

/// RFC 3339 "now" in whole seconds, for tags.
pub fn now_rfc3339() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    rfc3339(ms)
}

/// RFC 3339 of a Unix-ms time, in whole seconds (`2024-05-01T10:00:00Z`).
pub fn rfc3339(ms: i64) -> String {
    aws_smithy_types::DateTime::from_secs(ms.div_euclid(1000))
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

/// Unix milliseconds of an RFC 3339 time (an event's `eventTime`).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    aws_smithy_types::DateTime::from_str(s, aws_smithy_types::date_time::Format::DateTime)
        .ok()?
        .to_millis()
        .ok()
}

impl S3 {
    pub async fn new(cfg: &S3Config) -> Result<S3, S3Error> {
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(Region::new(cfg.region.clone()));
        match (&cfg.access_key, &cfg.secret_key) {
            (Some(a), Some(s)) => {
                loader =
                    loader.credentials_provider(Credentials::new(a, s, None, None, "moat-config"));
            }
            (None, None) => {}
            _ => {
                return Err(S3Error::Config(
                    "access_key and secret_key go together".into(),
                ));
            }
        }
        if !cfg.tls_verify {
            if cfg.ca_bundle.is_some() {
                return Err(S3Error::Config(
                    "ca_bundle and tls_verify = false contradict each other; keep one".into(),
                ));
            }
            tracing::warn!(endpoint = ?cfg.endpoint, "S3 TLS certificate verification is OFF (tls_verify = false)");
            let http = unverified::UnverifiedClient::new()
                .map_err(|e| S3Error::Config(format!("TLS: {e}")))?;
            loader = loader.http_client(
                aws_smithy_runtime_api::client::http::SharedHttpClient::new(http),
            );
        } else if let Some(ca) = &cfg.ca_bundle {
            let pem = read_pem(ca)?;
            use aws_smithy_http_client::tls;
            let ctx = tls::TlsContext::builder()
                .with_trust_store(tls::TrustStore::default().with_pem_certificate(pem))
                .build()
                .map_err(|e| S3Error::Config(format!("CA bundle {}: {e}", ca.display())))?;
            let http = aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .tls_context(ctx)
                .build_https();
            loader = loader.http_client(http);
        }
        let shared = loader.load().await;
        let mut b = aws_sdk_s3::config::Builder::from(&shared).force_path_style(cfg.path_style);
        if let Some(ep) = &cfg.endpoint {
            b = b.endpoint_url(ep);
        }
        Ok(S3 {
            client: Client::from_conf(b.build()),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// HEAD plus the object's tags.
    pub async fn head(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<ObjectInfo, S3Error> {
        let h = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| map_err("HeadObject", bucket, key, e))?;
        let tags = self.get_tags(bucket, key, version).await?;
        Ok(ObjectInfo {
            size: h.content_length().unwrap_or(0).max(0) as u64,
            etag: etag(h.e_tag()),
            version_id: h.version_id().map(str::to_string).filter(|v| v != "null"),
            tags,
        })
    }

    pub async fn get_tags(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<Vec<(String, String)>, S3Error> {
        let t = self
            .client
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| map_err("GetObjectTagging", bucket, key, e))?;
        Ok(t.tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect())
    }

    /// Start a GET: the response head (size, ETag, version, tags) without
    /// the body. Tags are read with a GetObjectTagging only when the GET says
    /// the object has some (`x-amz-tagging-count`); an endpoint that never
    /// sends that header gets an empty tag set here, which can only cause an
    /// extra scan (tagging re-reads the tags before merging). Dropping the
    /// returned [`Fetch`] without [`Fetch::read_into`] abandons the body.
    pub async fn fetch(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<Fetch, S3Error> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| map_err("GetObject", bucket, key, e))?;
        let info = ObjectInfo {
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: etag(out.e_tag()),
            version_id: out.version_id().map(str::to_string).filter(|v| v != "null"),
            tags: Vec::new(),
        };
        let tagged = out.tag_count().is_some_and(|n| n > 0);
        let mut f = Fetch {
            info,
            body: out.body,
            name: format!("s3://{bucket}/{key}"),
        };
        if tagged {
            let v = version.map(str::to_string).or(f.info.version_id.clone());
            f.info.tags = self.get_tags(bucket, key, v.as_deref()).await?;
        }
        Ok(f)
    }

    /// Merge `tagger`'s tags for this verdict into the object's tags.
    pub async fn put_tags(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        tags: &[(String, String)],
    ) -> Result<(), S3Error> {
        if tags.len() > MAX_TAGS {
            return Err(S3Error::TagLimit { count: tags.len() });
        }
        let mut set = Vec::with_capacity(tags.len());
        for (k, v) in tags {
            set.push(
                Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .map_err(|e| S3Error::Config(e.to_string()))?,
            );
        }
        let tagging = Tagging::builder()
            .set_tag_set(Some(set))
            .build()
            .map_err(|e| S3Error::Config(e.to_string()))?;
        self.client
            .put_object_tagging()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| map_err("PutObjectTagging", bucket, key, e))?;
        Ok(())
    }

    /// Read the current tags, merge, write. Err(TagLimit) when over 10.
    pub async fn tag(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        tagger: &Tagger,
        new: Vec<(String, String)>,
    ) -> Result<(), S3Error> {
        let existing = self.get_tags(bucket, key, version).await?;
        let merged = tagger
            .merge(&existing, new)
            .map_err(|count| S3Error::TagLimit { count })?;
        if merged == existing {
            return Ok(());
        }
        self.put_tags(bucket, key, version, &merged).await
    }

    /// Delete the object (that version, when given). Deleting what is already
    /// gone succeeds (S3 semantics), so this is idempotent.
    pub async fn delete(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<(), S3Error> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| map_err("DeleteObject", bucket, key, e))?;
        Ok(())
    }

    /// Copy to `dest_bucket/dest_key` with the original location in metadata
    /// (`moat-original-bucket`, `moat-original-key` percent-encoded,
    /// `moat-original-version`), tags copied, then delete the original. If
    /// the original is already gone but the copy exists (a retried
    /// quarantine), that counts as done.
    pub async fn quarantine(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        dest_bucket: &str,
        dest_key: &str,
    ) -> Result<(), S3Error> {
        let mut source = format!("{}/{}", bucket, encode(key));
        if let Some(v) = version {
            source.push_str(&format!("?versionId={}", encode(v)));
        }
        let res = self
            .client
            .copy_object()
            .bucket(dest_bucket)
            .key(dest_key)
            .copy_source(source)
            .metadata_directive(MetadataDirective::Replace)
            .tagging_directive(TaggingDirective::Copy)
            .metadata("moat-original-bucket", encode(bucket))
            .metadata("moat-original-key", encode(key))
            .metadata("moat-original-version", version.unwrap_or(""))
            .send()
            .await
            .map_err(|e| map_err("CopyObject", bucket, key, e));
        match res {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                // Already moved by an earlier attempt?
                self.client
                    .head_object()
                    .bucket(dest_bucket)
                    .key(dest_key)
                    .send()
                    .await
                    .map_err(|_| e)?;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        self.delete(bucket, key, version).await
    }

    /// One page of a listing; `token` continues a previous page.
    pub async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<String>,
    ) -> Result<(Vec<Listed>, Option<String>), S3Error> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| map_err("ListObjectsV2", bucket, prefix, e))?;
        let items = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(Listed {
                    key: o.key()?.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: etag(o.e_tag()),
                })
            })
            .collect();
        let next = if out.is_truncated().unwrap_or(false) {
            out.next_continuation_token().map(str::to_string)
        } else {
            None
        };
        Ok((items, next))
    }
}

fn read_pem(p: &std::path::Path) -> Result<Vec<u8>, S3Error> {
    use std::io::Read;
    let f = std::fs::File::open(p)
        .map_err(|e| S3Error::Config(format!("CA bundle {}: {e}", p.display())))?;
    let mut buf = Vec::new();
    #[allow(clippy::disallowed_methods)] // bounded by take()
    f.take(4 << 20)
        .read_to_end(&mut buf)
        .map_err(|e| S3Error::Config(format!("CA bundle {}: {e}", p.display())))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_encoding() {
        assert_eq!(encode("a b/c+d%"), "a%20b/c%2Bd%25");
        assert_eq!(encode("ü"), "%C3%BC");
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let c: S3Config = serde_json::from_str("{}").unwrap();
        assert_eq!(c, S3Config::default());
        assert!(c.path_style);
        assert!(serde_json::from_str::<S3Config>(r#"{"endpiont":"x"}"#).is_err());
    }

    #[test]
    fn rfc3339_now() {
        let s = now_rfc3339();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.ends_with('Z'));
        assert_eq!(
            parse_rfc3339_ms("2024-05-01T10:00:00.123Z"),
            Some(1714557600123)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }

    #[tokio::test]
    async fn half_credentials_are_a_config_error() {
        let c = S3Config {
            access_key: Some("a".into()),
            ..Default::default()
        };
        assert!(matches!(S3::new(&c).await, Err(S3Error::Config(_))));
        let c = S3Config {
            ca_bundle: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        assert!(matches!(S3::new(&c).await, Err(S3Error::Config(_))));
    }
}

//! `[bucket]` configuration.
//!
//! ```toml
//! [bucket]
//! enabled = true              # start the role inside `moat serve`
//! concurrency = 4             # objects scanned at once
//! fetch_ahead = 4             # more objects fetched, tagged and reported meanwhile
//!                             # (default: concurrency; AMQP prefetch = the sum)
//! max_size = 1073741824       # bigger objects are unscannable/too_large, tagged, never fetched
//!
//! [bucket.s3]
//! endpoint = "http://127.0.0.1:9000"
//! access_key = "minioadmin"
//! secret_key = "minioadmin"
//!
//! [[bucket.sources]]
//! type = "amqp"
//! url = "amqp://guest:guest@127.0.0.1:5672/%2f"
//! queue = "moat-events"
//! exchange = "minio"          # declared if missing; the queue is bound with routing_key
//!
//! [bucket.tag]
//! scheme = "moat"             # moat | guardduty | bucket-antivirus | bucket-av-scanner
//!
//! [bucket.policy.rules]
//! infected = "quarantine"     # tag_only (default) | block (= delete) | quarantine
//!
//! [bucket.quarantine]
//! bucket = "quarantine"
//! ```

use moat_core::{Action, Policy};
use moat_events::amqp::AmqpConfig;
use moat_events::event::Quarantine;
use moat_s3::{S3Config, TagScheme, Tagger};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    /// Run the bucket role inside `moat serve`.
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub s3: S3Config,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Objects scanned at once (engine concurrency).
    #[serde(default = "four")]
    pub concurrency: usize,
    /// Objects that may be in the other stages (GET, tagging, notifying)
    /// while `concurrency` are being scanned, so the engines are not idle
    /// while an object downloads. Default: `concurrency`. In-flight objects
    /// (and the AMQP prefetch) = concurrency + fetch_ahead.
    #[serde(default)]
    pub fetch_ahead: Option<usize>,
    /// Objects larger than this (bytes) are `unscannable/too_large` without being fetched.
    #[serde(default = "one_gib")]
    pub max_size: u64,
    /// Objects up to this size stay in memory; larger ones go to an anonymous 0600 file.
    #[serde(default = "eight_mib")]
    pub spool_threshold: usize,
    /// Where spooled objects go (default: `<data_dir>/tmp`).
    #[serde(default)]
    pub tmp_dir: Option<PathBuf>,
    #[serde(default)]
    pub tag: TagConfig,
    /// Verdict → action: `tag_only`/`allow` (tag), `block` (delete),
    /// `quarantine`. Deletion and quarantine apply only to infected and
    /// suspicious objects, never to unscannable ones or engine errors.
    #[serde(default = "tag_only_policy")]
    pub policy: Policy,
    #[serde(default)]
    pub quarantine: QuarantineConfig,
    #[serde(default)]
    pub skip: SkipConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Bucket for `moat bucket scan` when none is given (MINIO_BUCKET_NAME).
    #[serde(default)]
    pub default_bucket: Option<String>,
    /// `moat bucket watch` serves /metrics and /healthz here when set; webhook
    /// sources (`POST /v1/events/s3`) are served here too and require it.
    #[serde(default)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `[bucket.notify]`: POST every result (HMAC-signed JSON, retried) to a
    /// webhook; clean results only with `report_clean = true` (PUBLISH_URL).
    #[serde(default)]
    pub notify: Option<moat_notify::WebhookConfig>,
    /// `[[bucket.publish]]`: publish every result to AMQP or NATS.
    #[serde(default)]
    pub publish: Vec<PublishConfig>,
}

fn four() -> usize {
    4
}
fn one_gib() -> u64 {
    1 << 30
}
fn eight_mib() -> usize {
    8 << 20
}
fn tag_only_policy() -> Policy {
    Policy {
        default: Action::TagOnly,
        rules: BTreeMap::new(),
    }
}

impl Default for BucketConfig {
    fn default() -> Self {
        BucketConfig {
            enabled: false,
            s3: S3Config::default(),
            sources: vec![],
            concurrency: four(),
            fetch_ahead: None,
            max_size: one_gib(),
            spool_threshold: eight_mib(),
            tmp_dir: None,
            tag: TagConfig::default(),
            policy: tag_only_policy(),
            quarantine: QuarantineConfig::default(),
            skip: SkipConfig::default(),
            retry: RetryConfig::default(),
            default_bucket: None,
            metrics_listen: None,
            notify: None,
            publish: vec![],
        }
    }
}

/// `[[bucket.sources]]`, tagged by `type`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceConfig {
    /// RabbitMQ (AMQP 0-9-1): see `moat_events::amqp::AmqpConfig`.
    Amqp(AmqpConfig),
    /// NATS JetStream durable pull consumer: see `moat_events::nats::NatsConfig`.
    Nats(moat_events::nats::NatsConfig),
    /// SQS long polling: see `moat_events::sqs::SqsConfig`.
    Sqs(moat_events::sqs::SqsConfig),
    /// `POST /v1/events/s3` (MinIO's webhook target) into the embedded durable
    /// queue, served on `bucket.metrics_listen`: see
    /// `moat_events::webhook::WebhookSourceConfig`.
    Webhook(moat_events::webhook::WebhookSourceConfig),
}

/// `[[bucket.publish]]`, tagged by `type`: where each result is published.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PublishConfig {
    /// An AMQP exchange, with publisher confirms.
    Amqp(moat_notify::AmqpPublishConfig),
    /// A NATS subject (optionally JetStream, acknowledged).
    Nats(moat_notify::NatsPublishConfig),
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TagConfig {
    /// Tag objects with the verdict. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub scheme: TagScheme,
    /// The tag key of the `bucket-av-scanner` scheme (TAG_KEY). Default `scanned`.
    #[serde(default = "scanned")]
    pub key: String,
}

fn yes() -> bool {
    true
}
fn scanned() -> String {
    "scanned".into()
}

impl Default for TagConfig {
    fn default() -> Self {
        TagConfig {
            enabled: true,
            scheme: TagScheme::Moat,
            key: scanned(),
        }
    }
}

impl TagConfig {
    pub fn tagger(&self) -> Tagger {
        Tagger {
            scheme: self.scheme.clone(),
            key: self.key.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QuarantineConfig {
    /// Destination bucket; absent → the object's own bucket.
    #[serde(default)]
    pub bucket: Option<String>,
    /// Key prefix of quarantined copies: `<prefix><original bucket>/<key>`.
    #[serde(default = "qprefix")]
    pub prefix: String,
}

fn qprefix() -> String {
    "quarantine/".into()
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        QuarantineConfig {
            bucket: None,
            prefix: qprefix(),
        }
    }
}

impl QuarantineConfig {
    pub fn location(&self) -> Quarantine {
        Quarantine {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
        }
    }
    /// Where a quarantined copy of `bucket/key` goes.
    pub fn destination(&self, bucket: &str, key: &str) -> (String, String) {
        let dest_bucket = self.bucket.clone().unwrap_or_else(|| bucket.to_string());
        (dest_bucket, format!("{}{}/{}", self.prefix, bucket, key))
    }
}

/// Objects that are not scanned at all (and not tagged).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct SkipConfig {
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub suffixes: Vec<String>,
    /// Skip objects smaller than this many bytes.
    #[serde(default)]
    pub min_size: Option<u64>,
    /// Skip (rather than mark too_large) objects larger than this.
    #[serde(default)]
    pub max_size: Option<u64>,
    /// `key` or `key=value`: objects carrying this tag are skipped.
    #[serde(default)]
    pub tag: Option<String>,
}

impl SkipConfig {
    pub fn by_key(&self, key: &str) -> Option<String> {
        if let Some(p) = self.prefixes.iter().find(|p| key.starts_with(p.as_str())) {
            return Some(format!("prefix {p:?}"));
        }
        if let Some(s) = self.suffixes.iter().find(|s| key.ends_with(s.as_str())) {
            return Some(format!("suffix {s:?}"));
        }
        None
    }

    pub fn by_head(&self, size: u64, tags: &[(String, String)]) -> Option<String> {
        if let Some(m) = self.min_size
            && size < m
        {
            return Some(format!("smaller than {m} bytes"));
        }
        if let Some(m) = self.max_size
            && size > m
        {
            return Some(format!("larger than {m} bytes"));
        }
        if let Some(t) = &self.tag {
            let (k, v) = match t.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (t.as_str(), None),
            };
            if tags
                .iter()
                .any(|(tk, tv)| tk == k && v.is_none_or(|v| v == tv))
            {
                return Some(format!("tag {t:?}"));
            }
        }
        None
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts (engine errors, failed actions, S3 failures) before an event
    /// is dead-lettered. Default 5.
    #[serde(default = "five")]
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt up to `max_delay_ms`.
    #[serde(default = "thousand")]
    pub base_delay_ms: u64,
    #[serde(default = "minute")]
    pub max_delay_ms: u64,
}

fn five() -> u32 {
    5
}
fn thousand() -> u64 {
    1000
}
fn minute() -> u64 {
    60_000
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: five(),
            base_delay_ms: thousand(),
            max_delay_ms: minute(),
        }
    }
}

impl RetryConfig {
    pub fn delay(&self, attempt: u32) -> std::time::Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let ms = self
            .base_delay_ms
            .saturating_mul(1u64 << exp)
            .min(self.max_delay_ms);
        std::time::Duration::from_millis(ms)
    }
}

fn destructive(a: Action) -> bool {
    matches!(a, Action::Block | Action::Quarantine)
}

impl BucketConfig {
    /// Objects in flight at once: scanning plus fetching ahead.
    pub fn in_flight(&self) -> usize {
        let n = self.concurrency.max(1);
        n.saturating_add(self.fetch_ahead.unwrap_or(n))
    }

    /// Reject configurations that cannot work or would be unsafe.
    pub fn validate(&self) -> Result<(), String> {
        self.policy
            .validate()
            .map_err(|e| format!("[bucket.policy] {e}"))?;
        for (k, a) in &self.policy.rules {
            if destructive(*a) && !matches!(k.as_str(), "infected" | "suspicious") {
                return Err(format!(
                    "[bucket.policy] {k} = {a:?}: deletion and quarantine apply only to infected and suspicious objects"
                ));
            }
        }
        if self.concurrency == 0 {
            return Err("bucket.concurrency must be at least 1".into());
        }
        if self.max_size == 0 {
            return Err("bucket.max_size must be greater than 0".into());
        }
        if self.retry.max_attempts == 0 {
            return Err("bucket.retry.max_attempts must be at least 1".into());
        }
        if self.quarantine.bucket.is_none() && self.quarantine.prefix.is_empty() {
            return Err("[bucket.quarantine] needs a bucket or a non-empty prefix".into());
        }
        for s in &self.sources {
            match s {
                SourceConfig::Amqp(a) => {
                    if a.queue.is_empty() || a.url.is_empty() {
                        return Err("[[bucket.sources]] type = \"amqp\" needs url and queue".into());
                    }
                }
                SourceConfig::Nats(n) => {
                    if n.url.is_empty() || n.stream.is_empty() || n.consumer.is_empty() {
                        return Err(
                            "[[bucket.sources]] type = \"nats\" needs url, stream and consumer"
                                .into(),
                        );
                    }
                }
                SourceConfig::Sqs(q) => {
                    if q.queue_url.is_empty() {
                        return Err("[[bucket.sources]] type = \"sqs\" needs queue_url".into());
                    }
                }
                SourceConfig::Webhook(w) => {
                    w.validate()
                        .map_err(|e| format!("[[bucket.sources]] type = \"webhook\": {e}"))?;
                    if self.metrics_listen.is_none() {
                        return Err("[[bucket.sources]] type = \"webhook\" is served on bucket.metrics_listen; set it".into());
                    }
                }
            }
        }
        let webhooks = self
            .sources
            .iter()
            .filter(|s| matches!(s, SourceConfig::Webhook(_)))
            .count();
        if webhooks > 1 {
            return Err("only one [[bucket.sources]] type = \"webhook\" (it serves one path); give it several tokens instead".into());
        }
        if let Some(n) = &self.notify {
            moat_notify::Webhook::new(n.clone()).map_err(|e| format!("[bucket.notify] {e}"))?;
        }
        Ok(())
    }

    /// The policy as applied: every key resolved, destructive actions kept
    /// only for infected and suspicious (everything else is tag only).
    pub fn effective_policy(&self) -> Policy {
        let mut rules = BTreeMap::new();
        for key in moat_core::policy::POLICY_KEYS {
            let a = self
                .policy
                .rules
                .get(*key)
                .or_else(|| {
                    key.split_once('.')
                        .and_then(|(h, _)| self.policy.rules.get(h))
                })
                .copied()
                .unwrap_or(if *key == "clean" {
                    Action::Allow
                } else {
                    self.policy.default
                });
            let a = if destructive(a) && !matches!(*key, "infected" | "suspicious") {
                Action::TagOnly
            } else {
                a
            };
            rules.insert(key.to_string(), a);
        }
        Policy {
            default: Action::TagOnly,
            rules,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_core::{EngineReport, Reason, Status, Verdict};

    fn v(s: Status, r: Option<Reason>) -> Verdict {
        Verdict::aggregate(
            vec![EngineReport::new("e", s, r)],
            vec![],
            String::new(),
            0,
            String::new(),
            0,
        )
    }

    #[test]
    fn defaults_tag_only() {
        let c: BucketConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, BucketConfig::default());
        c.validate().unwrap();
        let p = c.effective_policy();
        assert_eq!(p.action(&v(Status::Infected, None)), Action::TagOnly);
        assert_eq!(p.action(&v(Status::Clean, None)), Action::Allow);
    }

    #[test]
    fn destructive_only_for_infected() {
        let mut c = BucketConfig::default();
        c.policy.default = Action::Block;
        let p = c.effective_policy();
        assert_eq!(p.action(&v(Status::Infected, None)), Action::Block);
        assert_eq!(
            p.action(&v(Status::Unscannable, Some(Reason::TooLarge))),
            Action::TagOnly
        );
        assert_eq!(
            p.action(&v(Status::Error, Some(Reason::EngineError))),
            Action::TagOnly
        );
        c.policy
            .rules
            .insert("unscannable".into(), Action::Quarantine);
        assert!(c.validate().unwrap_err().contains("unscannable"));
    }

    #[test]
    fn sources_are_tagged_and_strict() {
        let c: BucketConfig = serde_json::from_str(
            r#"{"sources":[{"type":"amqp","url":"amqp://x","queue":"q","exchange":"minio"}]}"#,
        )
        .unwrap();
        assert!(
            matches!(&c.sources[0], SourceConfig::Amqp(a) if a.exchange.as_deref() == Some("minio"))
        );
        assert!(
            serde_json::from_str::<BucketConfig>(
                r#"{"sources":[{"type":"amqp","url":"x","queue":"q","bogus":1}]}"#
            )
            .is_err()
        );
        assert!(serde_json::from_str::<BucketConfig>(r#"{"sources":[{"type":"kafka"}]}"#).is_err());
        assert!(serde_json::from_str::<BucketConfig>(r#"{"concurency":3}"#).is_err());
    }

    #[test]
    fn skip_rules() {
        let s = SkipConfig {
            prefixes: vec!["tmp/".into()],
            suffixes: vec![".part".into()],
            min_size: Some(1),
            max_size: Some(100),
            tag: Some("moat-skip=true".into()),
        };
        assert!(s.by_key("tmp/x").is_some());
        assert!(s.by_key("a.part").is_some());
        assert!(s.by_key("a/b").is_none());
        assert!(s.by_head(0, &[]).is_some());
        assert!(s.by_head(101, &[]).is_some());
        assert!(
            s.by_head(5, &[("moat-skip".into(), "true".into())])
                .is_some()
        );
        assert!(
            s.by_head(5, &[("moat-skip".into(), "false".into())])
                .is_none()
        );
    }

    #[test]
    fn retry_backoff() {
        let r = RetryConfig::default();
        assert_eq!(r.delay(1).as_millis(), 1000);
        assert_eq!(r.delay(3).as_millis(), 4000);
        assert_eq!(r.delay(30).as_millis(), 60_000);
    }

    #[test]
    fn quarantine_destination() {
        let q = QuarantineConfig::default();
        assert_eq!(
            q.destination("b", "k/x"),
            ("b".into(), "quarantine/b/k/x".into())
        );
    }
}

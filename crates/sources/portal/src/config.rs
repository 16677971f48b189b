//! `[portal]` configuration.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PortalConfig {
    /// The portal role runs under `moat serve` unless this is false.
    pub enabled: bool,
    /// The external origin (`https://share.example.com`): links are built
    /// on it, and state-changing cookie requests must carry it as `Origin`.
    /// Without it, `Origin` must match the request's `Host`.
    pub public_url: Option<String>,
    /// The session-signing secret (shared by every instance). Or `secret_file`.
    /// Without either, one is generated into `<data_dir>/portal/secret`.
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    /// The key-encryption key: a file, or the name of an environment
    /// variable. Without either, one is generated into `<data_dir>/portal/kek`.
    pub kek_file: Option<PathBuf>,
    pub kek_env: Option<String>,
    /// Where ciphertext is kept: `dir` (staging, partial uploads and, with
    /// the default local backend, the objects) and `backend` (`{type =
    /// "local"}` or `{type = "s3", bucket, prefix, s3 = {...}}`). Default:
    /// the local directory `<data_dir>/portal/vault`.
    pub storage: Option<moat_vault::VaultConfig>,
    /// The work queue the scan and mail jobs go on: absent (default), the
    /// embedded queue in the portal's database (SQLite or PostgreSQL);
    /// `amqp://user:pass@host:5672/vhost` (or `amqps://`), RabbitMQ;
    /// `nats://host:4222` (or `tls://`), NATS JetStream.
    pub queue_url: Option<String>,
    /// Put in front of the queue names on a broker (`moat.portal.scan`,
    /// `moat.portal.mail`), so several deployments can share one vhost.
    pub queue_prefix: String,
    /// Session cookie lifetime; renewed while in use, up to `session_max_hours`.
    pub session_minutes: u64,
    pub session_max_hours: u64,
    pub default_expiry_days: u32,
    pub max_expiry_days: u32,
    /// Largest file accepted (413 at creation and while bytes arrive).
    pub max_file_size: u64,
    pub max_files_per_package: u32,
    /// Bytes a member may keep in packages that are not purged (0 = no quota).
    pub quota_bytes: u64,
    /// Types accepted, by sniffed content (never the client's name or
    /// Content-Type): MIME types (`application/pdf`), families (`image/*`),
    /// `*` or `executable`. Empty: every type not denied.
    pub allowed_types: Vec<String>,
    /// Types refused by sniffed content, whatever `allowed_types` says.
    pub denied_types: Vec<String>,
    /// Sharing policy: packages shared by link (`public`, `recipients`)
    /// must have a password.
    pub require_password: bool,
    /// Sharing policy: the access modes senders may choose, of `public`,
    /// `recipients` and `internal`.
    pub access_modes: Vec<String>,
    /// Concurrent scan jobs on this node.
    pub workers: usize,
    /// How long engine errors are retried before a package is quarantined
    /// with reason `error`.
    pub scan_deadline_secs: u64,
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
    /// Content kept in memory while scanning, above that a 0600 anonymous file.
    pub spool_memory: usize,
    /// Failed logins per account and per IP within `login_window_secs`
    /// before further attempts get 429.
    pub login_max_failures: u32,
    pub login_window_secs: u64,
    /// The scheduler's period, the retention after expiry before purge, and
    /// how long an upload may stay unfinished.
    pub scheduler_interval_secs: u64,
    pub purge_after_days: u32,
    pub upload_expiry_hours: u64,
    /// Seconds in a "day" for `expires_in_days`, `max_expiry_days` and
    /// `purge_after_days`: 86400. Only tests shorten it (a fast clock).
    pub day_secs: u64,
    /// SMTP for notifications; without it no mail is sent.
    pub smtp: Option<crate::mail::SmtpConfig>,
    /// Scan the files of `available` packages again when the engine set's
    /// fingerprint changes (new signatures): a new detection quarantines
    /// the package and notifies; anything else leaves it as it is.
    pub rescan_on_update: bool,
    /// Recipients who have not downloaded are reminded this many hours
    /// before their package expires (once; only when the package was
    /// available before that). 0: no reminders.
    pub reminder_hours: u64,
}

impl Default for PortalConfig {
    fn default() -> Self {
        PortalConfig {
            enabled: true,
            public_url: None,
            secret: None,
            secret_file: None,
            kek_file: None,
            kek_env: None,
            storage: None,
            queue_url: None,
            queue_prefix: "moat.".into(),
            session_minutes: 15,
            session_max_hours: 12,
            default_expiry_days: 7,
            max_expiry_days: 30,
            max_file_size: 10 << 30,
            max_files_per_package: 100,
            quota_bytes: 0,
            allowed_types: Vec::new(),
            denied_types: Vec::new(),
            require_password: false,
            access_modes: crate::settings::ACCESS_MODES
                .iter()
                .map(|m| m.to_string())
                .collect(),
            workers: 2,
            scan_deadline_secs: 3600,
            retry_base_secs: 5,
            retry_max_secs: 300,
            spool_memory: 4 << 20,
            login_max_failures: 5,
            login_window_secs: 900,
            scheduler_interval_secs: 30,
            purge_after_days: 30,
            upload_expiry_hours: 24,
            day_secs: 86_400,
            smtp: None,
            rescan_on_update: false,
            reminder_hours: 24,
        }
    }
}

impl PortalConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.secret.is_some() && self.secret_file.is_some() {
            return Err("portal: set secret or secret_file, not both".into());
        }
        if let Some(s) = &self.secret
            && s.len() < 32
        {
            return Err("portal.secret must be at least 32 characters".into());
        }
        if self.kek_file.is_some() && self.kek_env.is_some() {
            return Err("portal: set kek_file or kek_env, not both".into());
        }
        if self.default_expiry_days == 0 || self.default_expiry_days > self.max_expiry_days {
            return Err("portal.default_expiry_days must be between 1 and max_expiry_days".into());
        }
        crate::settings::Settings::from_config(self)
            .validate()
            .map_err(|e| format!("portal.{e}"))?;
        if self.day_secs == 0 {
            return Err("portal.day_secs must be at least 1".into());
        }
        if self.session_minutes == 0 || self.workers == 0 {
            return Err("portal.session_minutes and portal.workers must be at least 1".into());
        }
        if let Some(u) = self.queue_url.as_deref().filter(|u| !u.trim().is_empty())
            && !["amqp://", "amqps://", "nats://", "tls://"]
                .iter()
                .any(|s| u.starts_with(s))
        {
            return Err(format!(
                "portal.queue_url {:?} must start with amqp://, amqps://, nats:// or tls://",
                moat_events::queue::redact(u)
            ));
        }
        if let Some(u) = &self.public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(format!(
                "portal.public_url {u:?} must start with http:// or https://"
            ));
        }
        Ok(())
    }

    /// Milliseconds in `days` portal days.
    pub fn days_ms(&self, days: u32) -> i64 {
        i64::from(days)
            .saturating_mul(i64::try_from(self.day_secs).unwrap_or(86_400))
            .saturating_mul(1000)
    }

    /// The origin (`scheme://host[:port]`) of `public_url`.
    pub fn public_origin(&self) -> Option<String> {
        let u = self.public_url.as_deref()?;
        let (scheme, rest) = u.split_once("://")?;
        let host = rest.split('/').next().unwrap_or(rest);
        Some(format!("{scheme}://{host}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_queue_url_must_name_a_supported_broker() {
        let mut c = PortalConfig::default();
        assert!(c.validate().is_ok(), "the embedded queue by default");
        c.queue_url = Some("amqp://guest:guest@127.0.0.1:5672/%2f".into());
        assert!(c.validate().is_ok());
        c.queue_url = Some("nats://127.0.0.1:4222".into());
        assert!(c.validate().is_ok());
        c.queue_url = Some("kafka://guest:secret@broker:9092".into());
        let e = c.validate().unwrap_err();
        assert!(
            e.contains("portal.queue_url") && !e.contains("secret"),
            "{e}"
        );
    }
}

//! moat-portal: the file-sharing portal role of `moat serve`.
//!
//! A package (files, message, recipients, expiry, download limit, optional
//! password, access `public` | `recipients` | `internal`) is uploaded into
//! the encrypted vault ([`moat_vault`]), submitted, scanned file by file by
//! the worker through [`moat_api::ScanService`] (source `portal`), and
//! downloadable only once every file is clean: every download path goes
//! through [`gate::Gate::check`]. The state machine is [`state`]; the tables
//! are [`store`]; sessions, tokens and CSRF are [`auth`]; the JSON API is
//! [`api`] (revoke, extend, delete and the admin's users: [`manage`]); the
//! scan worker is [`worker`].
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod download;
pub mod error;
pub mod gate;
pub mod links;
pub mod mail;
pub mod manage;
pub mod names;
pub mod openapi;
pub mod scheduler;
pub mod settings;
pub mod state;
pub mod store;
pub mod uploads;
pub mod worker;
pub mod zip;

pub use config::PortalConfig;
pub use error::PortalError;

use auth::{Sessions, Throttle};
use moat_api::ScanService;
use moat_db::EventQueue;
use moat_vault::{Kek, Vault};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use store::Store;

/// The name of the work queue the scan jobs go on (the embedded queue, or
/// RabbitMQ with `queue_url`).
pub const SCAN_QUEUE: &str = "portal.scan";

/// Everything the portal's handlers, worker and scheduler share.
pub struct Portal {
    pub cfg: PortalConfig,
    pub store: Store,
    pub sessions: Sessions,
    pub vault: Vault,
    pub kek: Arc<Kek>,
    pub scan: ScanService,
    pub queue: Arc<dyn EventQueue>,
    pub login_throttle: Throttle,
    pub password_throttle: Throttle,
    /// Wakes the workers when jobs were queued.
    pub wake: tokio::sync::Notify,
    pub wake_mail: tokio::sync::Notify,
    /// The base of links in e-mail: `public_url`, else the listener's address.
    pub base_url: String,
    pub tmp_dir: PathBuf,
    /// The last settings read, and when ([`Portal::settings`]).
    settings_cache: std::sync::Mutex<Option<(std::time::Instant, Arc<settings::Settings>)>>,
}

/// Errors building the portal (configuration, keys, database).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("portal configuration: {0}")]
    Config(String),
    #[error("portal secret: {0}")]
    Secret(String),
    #[error("portal key-encryption key: {0}")]
    Kek(String),
    #[error("portal storage: {0}")]
    Storage(String),
    #[error("portal work queue: {0}")]
    Queue(String),
    #[error("portal database: {0}")]
    Db(#[from] PortalError),
}

/// The session-signing secret: from config, a file, or generated once into
/// `<data_dir>/portal/secret` (0600).
pub fn load_secret(cfg: &PortalConfig, data_dir: &Path) -> Result<Vec<u8>, BuildError> {
    if let Some(s) = &cfg.secret {
        return Ok(s.as_bytes().to_vec());
    }
    let path = cfg
        .secret_file
        .clone()
        .unwrap_or_else(|| data_dir.join("portal").join("secret"));
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => Err(BuildError::Secret(format!(
            "{} holds fewer than 32 characters",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && cfg.secret_file.is_none() => {
            let secret = auth::random_token(32);
            write_private(&path, secret.as_bytes()).map_err(BuildError::Secret)?;
            tracing::info!(path = %path.display(), "generated the portal session secret");
            Ok(secret.into_bytes())
        }
        Err(e) => Err(BuildError::Secret(format!("{}: {e}", path.display()))),
    }
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The KEK: `kek_env`, `kek_file`, or `<data_dir>/portal/kek` (created on
/// first start).
pub fn load_kek(cfg: &PortalConfig, data_dir: &Path) -> Result<Kek, BuildError> {
    let r = if let Some(var) = &cfg.kek_env {
        Kek::from_env(var)
    } else if let Some(p) = &cfg.kek_file {
        Kek::from_file(p)
    } else {
        Kek::load_or_create(data_dir.join("portal").join("kek"))
    };
    r.map_err(|e| BuildError::Kek(e.to_string()))
}

impl Portal {
    /// Build the portal on the database at `database_url` (the same as the
    /// scan records), its work queue, the vault and the keys.
    pub async fn build(
        cfg: PortalConfig,
        data_dir: &Path,
        database_url: &str,
        scan: ScanService,
        tmp_dir: PathBuf,
        fallback_base_url: String,
    ) -> Result<Arc<Portal>, BuildError> {
        cfg.validate().map_err(BuildError::Config)?;
        let secret = load_secret(&cfg, data_dir)?;
        let kek = load_kek(&cfg, data_dir)?;
        let vault = open_vault(&cfg, data_dir).await?;
        let store = Store::open(database_url).await?;
        let queue =
            moat_events::queue::open(cfg.queue_url.as_deref(), &cfg.queue_prefix, database_url)
                .await
                .map_err(|e| BuildError::Queue(e.to_string()))?;
        let sessions = Sessions::new(
            &secret,
            Duration::from_secs(cfg.session_minutes * 60),
            Duration::from_secs(cfg.session_max_hours * 3600),
            cfg.public_origin(),
        );
        let window = Duration::from_secs(cfg.login_window_secs);
        let cfg_base = cfg
            .public_url
            .clone()
            .unwrap_or(fallback_base_url)
            .trim_end_matches('/')
            .to_string();
        Ok(Arc::new(Portal {
            login_throttle: Throttle::new(cfg.login_max_failures, window),
            password_throttle: Throttle::new(cfg.login_max_failures, window),
            cfg,
            store,
            sessions,
            vault,
            kek: Arc::new(kek),
            scan,
            queue,
            wake: tokio::sync::Notify::new(),
            wake_mail: tokio::sync::Notify::new(),
            base_url: cfg_base,
            tmp_dir,
            settings_cache: std::sync::Mutex::new(None),
        }))
    }

    /// The effective settings: `[portal]` with the admin's overrides from
    /// the database on top. Every reader of those values calls this.
    pub async fn settings(&self) -> Result<Arc<settings::Settings>, PortalError> {
        if let Some((at, s)) = self.cached_settings()
            && at.elapsed() < settings::CACHE_TTL
        {
            return Ok(s);
        }
        let (o, _, _) = self.store.settings_overrides().await?;
        let s = Arc::new(settings::Settings::effective(&self.cfg, &o));
        self.set_cached_settings(s.clone());
        Ok(s)
    }

    fn cached_settings(&self) -> Option<(std::time::Instant, Arc<settings::Settings>)> {
        self.settings_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_cached_settings(&self, s: Arc<settings::Settings>) {
        *self
            .settings_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), s));
    }
}

/// The vault the configuration names: the local directory
/// `<data_dir>/portal/vault` by default.
pub async fn open_vault(cfg: &PortalConfig, data_dir: &Path) -> Result<Vault, BuildError> {
    let vc = cfg
        .storage
        .clone()
        .unwrap_or_else(|| moat_vault::VaultConfig {
            dir: data_dir.join("portal").join("vault"),
            backend: Default::default(),
        });
    Vault::open(&vc)
        .await
        .map_err(|e| BuildError::Storage(e.to_string()))
}

impl Portal {
    /// Whether a request's session cookie (or bearer token) is an enabled
    /// admin's: the records API lets such a request read (the dashboard).
    pub async fn admin_reads(&self, headers: &axum::http::HeaderMap) -> bool {
        matches!(
            self.sessions
                .authenticate(&self.store, &axum::http::Method::GET, headers, "")
                .await,
            Ok(Some((who, _))) if who.is_admin()
        )
    }
}

//! The admin's settings: values kept in the portal's database that override
//! the `[portal]` configuration they cover (size limits, files per package,
//! expiry default and maximum, the per-user quota, the sniffed-type allow
//! and deny lists, and the sharing policy: required passwords and the
//! access modes senders may choose). [`crate::Portal::settings`] is the one function every
//! reader of those values goes through; it caches the merged result for
//! [`CACHE_TTL`] (a change made on another node is seen within that time;
//! one made on this node at once).

use crate::Portal;
use crate::auth::Auth;
use crate::config::PortalConfig;
use crate::error::{PortalError, Result};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// How long a node reuses the settings it read.
pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// The MIME types (as [`moat_scanner::sniff::content_type`] names them) that
/// the list entry `executable` stands for: native programs and libraries
/// (PE, ELF, Mach-O, COFF objects), Java classes, Android DEX, WebAssembly
/// and LLVM bitcode.
pub const EXECUTABLE_TYPES: &[&str] = &[
    "application/vnd.microsoft.portable-executable",
    "application/x-executable",
    "application/x-mach-binary",
    "application/java",
    "application/vnd.android.dex",
    "application/vnd.android.dey",
    "application/wasm",
    "application/x-llvm",
];

const MAX_LIST: usize = 100;

/// A package's access modes: anyone with the link, personal links for the
/// recipients, signed-in users only.
pub const ACCESS_MODES: &[&str] = &["public", "recipients", "internal"];

/// The effective settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Largest file accepted, in bytes.
    pub max_file_size: u64,
    pub max_files_per_package: u32,
    pub default_expiry_days: u32,
    pub max_expiry_days: u32,
    /// Bytes a member may keep in packages that are not purged (0 = none).
    pub quota_bytes: u64,
    /// Sniffed types accepted (empty: every type not denied). Entries are a
    /// MIME type (`image/png`), a family (`image/*`), `*`, or `executable`.
    pub allowed_types: Vec<String>,
    /// Sniffed types refused, whatever the allow list says.
    pub denied_types: Vec<String>,
    /// Packages shared by link must carry a password.
    pub require_password: bool,
    /// The access modes a sender may choose.
    pub access_modes: Vec<String>,
}

/// What the database holds: only the values an admin set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_files_per_package: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_expiry_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_expiry_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_password: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_modes: Option<Vec<String>>,
}

impl Overrides {
    /// Apply a `PUT` body: a field with a value sets it, a field with
    /// `null` goes back to the configuration's value, an absent field stays.
    /// Unknown fields and wrong types are errors.
    pub fn patched(&self, patch: &Map<String, Value>) -> Result<Overrides, String> {
        let mut cur = match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        for (k, v) in patch {
            if v.is_null() {
                cur.remove(k);
            } else {
                cur.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(Value::Object(cur)).map_err(|e| e.to_string())
    }

    /// The names of the fields set.
    pub fn names(&self) -> Vec<String> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m.keys().cloned().collect(),
            _ => vec![],
        }
    }
}

impl Settings {
    /// The configuration's values.
    pub fn from_config(cfg: &PortalConfig) -> Settings {
        Settings {
            max_file_size: cfg.max_file_size,
            max_files_per_package: cfg.max_files_per_package,
            default_expiry_days: cfg.default_expiry_days,
            max_expiry_days: cfg.max_expiry_days,
            quota_bytes: cfg.quota_bytes,
            allowed_types: cfg.allowed_types.clone(),
            denied_types: cfg.denied_types.clone(),
            require_password: cfg.require_password,
            access_modes: cfg.access_modes.clone(),
        }
    }

    /// The configuration's values with the admin's overrides on top.
    pub fn effective(cfg: &PortalConfig, o: &Overrides) -> Settings {
        let c = Settings::from_config(cfg);
        Settings {
            max_file_size: o.max_file_size.unwrap_or(c.max_file_size),
            max_files_per_package: o.max_files_per_package.unwrap_or(c.max_files_per_package),
            default_expiry_days: o.default_expiry_days.unwrap_or(c.default_expiry_days),
            max_expiry_days: o.max_expiry_days.unwrap_or(c.max_expiry_days),
            quota_bytes: o.quota_bytes.unwrap_or(c.quota_bytes),
            allowed_types: o.allowed_types.clone().unwrap_or(c.allowed_types),
            denied_types: o.denied_types.clone().unwrap_or(c.denied_types),
            require_password: o.require_password.unwrap_or(c.require_password),
            access_modes: o.access_modes.clone().unwrap_or(c.access_modes),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.max_file_size == 0 || self.max_file_size > i64::MAX as u64 {
            return Err("max_file_size must be at least 1 byte".into());
        }
        if !(1..=10_000).contains(&self.max_files_per_package) {
            return Err("max_files_per_package must be 1..=10000".into());
        }
        if !(1..=36_500).contains(&self.max_expiry_days) {
            return Err("max_expiry_days must be 1..=36500".into());
        }
        if self.default_expiry_days == 0 || self.default_expiry_days > self.max_expiry_days {
            return Err(format!(
                "default_expiry_days must be 1..=max_expiry_days ({})",
                self.max_expiry_days
            ));
        }
        if self.quota_bytes > i64::MAX as u64 {
            return Err("quota_bytes is too large".into());
        }
        for (name, list) in [
            ("allowed_types", &self.allowed_types),
            ("denied_types", &self.denied_types),
        ] {
            if list.len() > MAX_LIST {
                return Err(format!("{name}: at most {MAX_LIST} entries"));
            }
            if let Some(bad) = list.iter().find(|e| !valid_pattern(e)) {
                return Err(format!(
                    "{name}: {bad:?} is not a MIME type, a family such as image/*, * or executable"
                ));
            }
        }
        if self.access_modes.is_empty() {
            return Err("access_modes: at least one of public, recipients, internal".into());
        }
        for (i, m) in self.access_modes.iter().enumerate() {
            if !ACCESS_MODES.contains(&m.as_str()) {
                return Err(format!(
                    "access_modes: {m:?} is not public, recipients or internal"
                ));
            }
            if self.access_modes[..i].contains(m) {
                return Err(format!("access_modes: {m:?} twice"));
            }
        }
        Ok(())
    }

    /// Whether the sharing policy lets a sender create a package with this
    /// access mode and password (a password is required only of packages
    /// shared by link). The refusal says why.
    pub fn sharing_allowed(&self, access: &str, has_password: bool) -> Result<(), String> {
        if !self.access_modes.iter().any(|m| m == access) {
            return Err(format!(
                "the portal's policy does not allow access {access:?} (allowed: {})",
                self.access_modes.join(", ")
            ));
        }
        if self.require_password && access != "internal" && !has_password {
            return Err(
                "the portal's policy requires a password for packages shared by link".into(),
            );
        }
        Ok(())
    }

    /// Whether content sniffed as `mime` may be uploaded: not denied, and
    /// allowed (an empty allow list allows every type).
    pub fn type_allowed(&self, mime: &str) -> bool {
        let hit = |list: &[String]| list.iter().any(|p| pattern_matches(p, mime));
        !hit(&self.denied_types) && (self.allowed_types.is_empty() || hit(&self.allowed_types))
    }
}

fn token_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

/// `type/subtype`, `type/*`, `*` or `executable`.
pub fn valid_pattern(p: &str) -> bool {
    if p == "*" || p == "executable" {
        return true;
    }
    match p.split_once('/') {
        Some((t, "*")) => token_ok(t),
        Some((t, s)) => token_ok(t) && token_ok(s),
        None => false,
    }
}

/// Whether the list entry `p` covers the sniffed type `mime`.
pub fn pattern_matches(p: &str, mime: &str) -> bool {
    let mime = mime.split(';').next().unwrap_or(mime).trim();
    if p == "*" {
        return true;
    }
    if p == "executable" {
        return EXECUTABLE_TYPES
            .iter()
            .any(|t| t.eq_ignore_ascii_case(mime));
    }
    match p.strip_suffix("/*") {
        Some(family) => mime
            .split_once('/')
            .is_some_and(|(t, _)| t.eq_ignore_ascii_case(family)),
        None => p.eq_ignore_ascii_case(mime),
    }
}

/// The JSON of one setting's value, for the audit's old → new.
pub fn changes(old: &Settings, new: &Settings) -> Map<String, Value> {
    let (Ok(Value::Object(o)), Ok(Value::Object(n))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Map::new();
    };
    n.into_iter()
        .filter(|(k, v)| o.get(k) != Some(v))
        .map(|(k, v)| {
            let before = o.get(&k).cloned().unwrap_or(Value::Null);
            (k, serde_json::json!({ "old": before, "new": v }))
        })
        .collect()
}

/// What the settings page shows of `[portal.smtp]`: where mail goes and
/// how, never the credentials.
pub fn smtp_view(cfg: &PortalConfig) -> Value {
    let Some(smtp) = &cfg.smtp else {
        return Value::Null;
    };
    let (scheme, rest) = smtp.url.split_once("://").unwrap_or(("smtp", &smtp.url));
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.split('/').next().unwrap_or(authority);
    let (auth, hostport) = match authority.rsplit_once('@') {
        Some((_, hp)) => (true, hp),
        None => (false, authority),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            (h.to_string(), p.parse::<u16>().ok())
        }
        _ => (hostport.to_string(), None),
    };
    let security = if scheme.eq_ignore_ascii_case("smtps") {
        "tls"
    } else if query.split('&').any(|q| q.starts_with("tls=")) {
        "starttls"
    } else {
        "plain"
    };
    serde_json::json!({
        "host": host, "port": port, "security": security,
        "authentication": auth, "from": smtp.from,
    })
}

async fn view(p: &Portal) -> Result<Value> {
    let (o, updated_at, updated_by) = p.store.settings_overrides().await?;
    let eff = Settings::effective(&p.cfg, &o);
    let set = p.scan.scanner.engine_set();
    let engines: Vec<Value> = set
        .infos()
        .into_iter()
        .map(|i| serde_json::to_value(i).unwrap_or_default())
        .collect();
    Ok(serde_json::json!({
        "settings": eff,
        "config": Settings::from_config(&p.cfg),
        "overridden": o.names(),
        "updated_at": updated_at,
        "updated_by": updated_by,
        "engines": {
            "fingerprint": set.fingerprint(),
            "loaded_at": set.loaded_at,
            "engines": engines,
        },
        "smtp": smtp_view(&p.cfg),
    }))
}

/// `GET /v1/portal/settings` (admin): the effective settings, the
/// configuration's values, which ones an admin set, and the engine set and
/// SMTP configuration (read-only).
pub(crate) async fn get_settings(
    State(p): State<Arc<Portal>>,
    Auth(who): Auth,
) -> Result<Json<Value>> {
    if !who.is_admin() {
        return Err(PortalError::Forbidden("admins only"));
    }
    Ok(Json(view(&p).await?))
}

/// `PUT /v1/portal/settings` (admin): set some settings (a value), or put
/// them back to the configuration's (`null`); the result is validated as a
/// whole and the change audited with every old and new value.
pub(crate) async fn put_settings(
    State(p): State<Arc<Portal>>,
    Auth(who): Auth,
    Json(patch): Json<Value>,
) -> Result<Json<Value>> {
    if !who.is_admin() {
        return Err(PortalError::Forbidden("admins only"));
    }
    let Value::Object(patch) = patch else {
        return Err(PortalError::BadRequest("a JSON object of settings".into()));
    };
    let (old_o, _, _) = p.store.settings_overrides().await?;
    let new_o = old_o.patched(&patch).map_err(PortalError::BadRequest)?;
    let old = Settings::effective(&p.cfg, &old_o);
    let new = Settings::effective(&p.cfg, &new_o);
    new.validate().map_err(PortalError::BadRequest)?;
    let diff = changes(&old, &new);
    if new_o != old_o {
        p.store
            .set_settings_overrides(&new_o, &who.user.email)
            .await?;
        p.store
            .audit(
                &who.actor(),
                "settings.update",
                None,
                None,
                serde_json::json!({ "changes": diff, "overridden": new_o.names() }),
            )
            .await?;
        tracing::info!(by = %who.user.email, changed = ?diff.keys().collect::<Vec<_>>(), "portal settings changed");
    }
    p.set_cached_settings(Arc::new(new));
    Ok(Json(view(&p).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn overrides_cover_the_config_and_null_reverts() {
        let cfg = PortalConfig::default();
        let o = Overrides::default()
            .patched(&patch(
                json!({ "max_file_size": 1000, "denied_types": ["executable"] }),
            ))
            .unwrap();
        let s = Settings::effective(&cfg, &o);
        assert_eq!(s.max_file_size, 1000);
        assert_eq!(s.max_expiry_days, cfg.max_expiry_days);
        assert_eq!(o.names(), vec!["max_file_size", "denied_types"]);
        let o = o.patched(&patch(json!({ "max_file_size": null }))).unwrap();
        assert_eq!(
            Settings::effective(&cfg, &o).max_file_size,
            cfg.max_file_size
        );
        assert!(o.patched(&patch(json!({ "nope": 1 }))).is_err());
        assert!(o.patched(&patch(json!({ "quota_bytes": "x" }))).is_err());
        assert!(o.patched(&patch(json!({ "quota_bytes": -1 }))).is_err());
    }

    #[test]
    fn validation_keeps_the_default_within_the_maximum() {
        let mut s = Settings::from_config(&PortalConfig::default());
        assert!(s.validate().is_ok());
        s.default_expiry_days = s.max_expiry_days + 1;
        assert!(s.validate().is_err());
        s.default_expiry_days = 1;
        s.allowed_types = vec!["image/*".into(), "<b>".into()];
        assert!(s.validate().is_err());
        s.allowed_types = vec!["image/*".into(), "application/pdf".into()];
        assert!(s.validate().is_ok());
        s.max_file_size = 0;
        assert!(s.validate().is_err());
    }

    #[test]
    fn types_are_matched_by_family_exact_name_and_executable() {
        let mut s = Settings::from_config(&PortalConfig::default());
        assert!(s.type_allowed("application/vnd.microsoft.portable-executable"));
        s.denied_types = vec!["executable".into()];
        assert!(!s.type_allowed("application/vnd.microsoft.portable-executable"));
        assert!(!s.type_allowed("application/x-executable"));
        assert!(s.type_allowed("text/plain"));
        s.denied_types = vec![];
        s.allowed_types = vec!["image/*".into()];
        assert!(s.type_allowed("image/png"));
        assert!(!s.type_allowed("text/plain"));
        s.allowed_types = vec!["image/*".into(), "TEXT/PLAIN".into()];
        assert!(s.type_allowed("text/plain"));
        s.denied_types = vec!["*".into()];
        assert!(!s.type_allowed("image/png"));
    }

    #[test]
    fn the_sharing_policy_limits_access_modes_and_requires_passwords_on_links() {
        let cfg = PortalConfig::default();
        let open = Settings::from_config(&cfg);
        for m in ACCESS_MODES {
            assert!(open.sharing_allowed(m, false).is_ok(), "{m}");
        }
        let o = Overrides::default()
            .patched(&patch(
                json!({ "require_password": true, "access_modes": ["recipients", "internal"] }),
            ))
            .unwrap();
        let strict = Settings::effective(&cfg, &o);
        strict.validate().unwrap();
        assert!(
            strict
                .sharing_allowed("public", true)
                .unwrap_err()
                .contains("does not allow")
        );
        assert!(
            strict
                .sharing_allowed("recipients", false)
                .unwrap_err()
                .contains("requires a password")
        );
        assert!(strict.sharing_allowed("recipients", true).is_ok());
        // Signed-in users only: no link, so no password needed.
        assert!(strict.sharing_allowed("internal", false).is_ok());
        for bad in [json!([]), json!(["public", "public"]), json!(["everyone"])] {
            let o = Overrides::default()
                .patched(&patch(json!({ "access_modes": bad })))
                .unwrap();
            assert!(Settings::effective(&cfg, &o).validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_smtp_view_never_shows_the_password() {
        let mut cfg = PortalConfig::default();
        assert!(smtp_view(&cfg).is_null());
        cfg.smtp = Some(crate::mail::SmtpConfig {
            url: "smtp://user:s3cret@mail.example.com:587?tls=required".into(),
            from: "moat <noreply@example.com>".into(),
        });
        let v = smtp_view(&cfg);
        assert_eq!(v["host"], "mail.example.com");
        assert_eq!(v["port"], 587);
        assert_eq!(v["security"], "starttls");
        assert_eq!(v["authentication"], true);
        assert!(!v.to_string().contains("s3cret") && !v.to_string().contains("user"));
        cfg.smtp = Some(crate::mail::SmtpConfig {
            url: "smtps://mail.example.com".into(),
            from: "a@example.com".into(),
        });
        let v = smtp_view(&cfg);
        assert_eq!(
            (v["security"].as_str(), v["port"].is_null()),
            (Some("tls"), true)
        );
    }

    #[test]
    fn changes_name_old_and_new_values() {
        let a = Settings::from_config(&PortalConfig::default());
        let mut b = a.clone();
        b.quota_bytes = 5;
        let c = changes(&a, &b);
        assert_eq!(c.len(), 1);
        assert_eq!(c["quota_bytes"], json!({ "old": 0, "new": 5 }));
    }
}

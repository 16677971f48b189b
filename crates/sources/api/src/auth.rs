//! Bearer-token authentication for `/v1/*`.

use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Accepted bearer tokens. When non-empty, every `/v1/*` request needs one.
    pub tokens: Vec<String>,
    /// Explicitly allow a non-loopback listener without tokens (not recommended).
    pub disabled: bool,
}

impl AuthConfig {
    /// Refuse a listener that anyone on the network could use without a token.
    pub fn check_listener(&self, addr: &SocketAddr) -> Result<(), String> {
        if self.tokens.iter().any(|t| t.trim().is_empty()) {
            return Err("auth.tokens contains an empty token".into());
        }
        if !addr.ip().is_loopback() && self.tokens.is_empty() && !self.disabled {
            return Err(format!(
                "listening on {addr} (not loopback) requires auth.tokens (or MOAT_AUTH_TOKENS); \
                 set auth.disabled = true to run without authentication deliberately"
            ));
        }
        Ok(())
    }

    /// Whether the `Authorization` header value carries an accepted token.
    pub fn allows(&self, header: Option<&str>) -> bool {
        if self.tokens.is_empty() {
            return true;
        }
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        // Compare every token in constant time for its length.
        self.tokens.iter().fold(false, |ok, t| {
            ok | ct_eq(t.as_bytes(), given.trim().as_bytes())
        })
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_needs_tokens_unless_disabled() {
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let mut a = AuthConfig::default();
        assert!(a.check_listener(&local).is_ok());
        assert!(a.check_listener(&public).is_err());
        a.disabled = true;
        assert!(a.check_listener(&public).is_ok());
        let t = AuthConfig {
            tokens: vec!["s3cret".into()],
            disabled: false,
        };
        assert!(t.check_listener(&public).is_ok());
    }

    #[test]
    fn bearer_tokens_are_checked() {
        let t = AuthConfig {
            tokens: vec!["s3cret".into(), "other".into()],
            disabled: false,
        };
        assert!(t.allows(Some("Bearer s3cret")));
        assert!(t.allows(Some("Bearer other")));
        assert!(!t.allows(Some("Bearer s3cre")));
        assert!(!t.allows(Some("s3cret")));
        assert!(!t.allows(None));
        assert!(AuthConfig::default().allows(None));
    }
}

//! Passwords (argon2id), API tokens (hashed at rest), session JWTs in an
//! `HttpOnly; Secure; SameSite=Strict` cookie with renewal and revocation,
//! CSRF (signed double submit plus `Origin`), and login throttling.

use crate::error::{PortalError, Result};
use crate::store::{Actor, Role, Store, User, now_ms};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, HeaderValue, Method, header, request::Parts};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SESSION_COOKIE: &str = "moat_session";
pub const CSRF_COOKIE: &str = "moat_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Prefix of API tokens, so they are recognisable in logs and scanners.
pub const TOKEN_PREFIX: &str = "mpt_";

fn argon2() -> Argon2<'static> {
    // OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hash a password (argon2id, random salt), off the async threads.
pub async fn hash_password(pw: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt =
            SaltString::encode_b64(&salt).map_err(|e| PortalError::Internal(e.to_string()))?;
        argon2()
            .hash_password(pw.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PortalError::Internal(format!("hashing: {e}")))
    })
    .await
    .map_err(|e| PortalError::Internal(e.to_string()))?
}

/// The rule for a new password (accounts, admin resets, reset tokens).
pub fn check_new_password(pw: &str) -> Result<()> {
    if pw.chars().count() < 12 {
        return Err(PortalError::BadRequest(
            "passwords need at least 12 characters".into(),
        ));
    }
    Ok(())
}

/// Check a password against a stored hash, off the async threads.
pub async fn verify_password(pw: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || match PasswordHash::new(&hash) {
        Ok(h) => argon2().verify_password(pw.as_bytes(), &h).is_ok(),
        Err(_) => false,
    })
    .await
    .unwrap_or(false)
}

pub fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    B64.encode(b)
}

/// SHA-256 (hex) of a high-entropy token: what is stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn hmac(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        unreachable!("HMAC-SHA256 takes keys of any length")
    };
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Claims {
    sub: String,
    sid: String,
    role: String,
    iat: i64,
    exp: i64,
}

/// How a request was authenticated.
#[derive(Debug, Clone)]
pub enum Via {
    Session { sid: String },
    Token { id: String },
}

/// The signed-in user of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub via: Via,
    pub ip: String,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }
    pub fn actor(&self) -> Actor {
        Actor {
            id: Some(self.user.id.clone()),
            email: Some(self.user.email.clone()),
            ip: Some(self.ip.clone()),
        }
    }
}

/// The client address of a request (the TCP peer).
#[derive(Debug, Clone)]
pub struct ClientIp(pub String);

/// Handler argument: the request must be signed in.
pub struct Auth(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = PortalError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Auth)
            .ok_or(PortalError::Unauthenticated)
    }
}

/// Sessions: JWT signing, cookies, CSRF.
#[derive(Clone)]
pub struct Sessions {
    secret: Vec<u8>,
    enc: jsonwebtoken::EncodingKey,
    dec: jsonwebtoken::DecodingKey,
    pub lifetime: Duration,
    pub max_lifetime: Duration,
    pub origin: Option<String>,
}

pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Sessions {
    pub fn new(
        secret: &[u8],
        lifetime: Duration,
        max_lifetime: Duration,
        origin: Option<String>,
    ) -> Sessions {
        Sessions {
            secret: secret.to_vec(),
            enc: jsonwebtoken::EncodingKey::from_secret(secret),
            dec: jsonwebtoken::DecodingKey::from_secret(secret),
            lifetime,
            max_lifetime,
            origin,
        }
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// The CSRF token bound to a session id.
    pub fn csrf_token(&self, sid: &str) -> String {
        B64.encode(hmac(&self.secret, &[b"csrf", sid.as_bytes()]))
    }

    fn jwt(&self, user: &User, sid: &str, exp_ms: i64) -> Result<String> {
        let now = now_ms() / 1000;
        let claims = Claims {
            sub: user.id.clone(),
            sid: sid.to_string(),
            role: user.role.as_str().to_string(),
            iat: now,
            exp: exp_ms / 1000,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &self.enc,
        )
        .map_err(|e| PortalError::Internal(format!("signing a session: {e}")))
    }

    /// The `Set-Cookie` values for a (new or renewed) session.
    pub fn cookies(
        &self,
        user: &User,
        sid: &str,
        session_expires: i64,
    ) -> Result<Vec<HeaderValue>> {
        let exp = (now_ms() + self.lifetime.as_millis() as i64).min(session_expires);
        let jwt = self.jwt(user, sid, exp)?;
        let age = ((exp - now_ms()) / 1000).max(1);
        let s = format!(
            "{SESSION_COOKIE}={jwt}; Path=/; Max-Age={age}; HttpOnly; Secure; SameSite=Strict"
        );
        let c = format!(
            "{CSRF_COOKIE}={}; Path=/; Max-Age={}; Secure; SameSite=Strict",
            self.csrf_token(sid),
            (session_expires - now_ms()) / 1000
        );
        [s, c]
            .into_iter()
            .map(|v| HeaderValue::from_str(&v).map_err(|e| PortalError::Internal(e.to_string())))
            .collect()
    }

    pub fn clear_cookies() -> Vec<HeaderValue> {
        vec![
            HeaderValue::from_static(
                "moat_session=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict",
            ),
            HeaderValue::from_static("moat_csrf=; Path=/; Max-Age=0; Secure; SameSite=Strict"),
        ]
    }

    /// Check `Origin` against the configured public origin, or the request's
    /// `Host` when none is configured. A state-changing cookie request
    /// without `Origin` is refused.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<()> {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .ok_or(PortalError::Csrf("missing Origin"))?;
        let ok = match &self.origin {
            Some(o) => origin.eq_ignore_ascii_case(o),
            None => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let bare = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
                !host.is_empty() && bare.eq_ignore_ascii_case(host)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(PortalError::Csrf("Origin does not match"))
        }
    }

    fn check_csrf(&self, headers: &HeaderMap, sid: &str) -> Result<()> {
        self.check_origin(headers)?;
        let given = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or(PortalError::Csrf("missing X-CSRF-Token"))?;
        let cookie =
            cookie_value(headers, CSRF_COOKIE).ok_or(PortalError::Csrf("missing CSRF cookie"))?;
        let want = self.csrf_token(sid);
        if ct_eq(given.as_bytes(), cookie.as_bytes()) && ct_eq(given.as_bytes(), want.as_bytes()) {
            Ok(())
        } else {
            Err(PortalError::Csrf("token mismatch"))
        }
    }

    /// Authenticate a request: a bearer token, or a session cookie (with
    /// CSRF checked on state-changing methods). Returns the principal and,
    /// for a session past half its lifetime, renewed cookies.
    pub async fn authenticate(
        &self,
        store: &Store,
        method: &Method,
        headers: &HeaderMap,
        ip: &str,
    ) -> Result<Option<(Principal, Vec<HeaderValue>)>> {
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            let token = auth
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or(PortalError::Unauthenticated)?;
            let (id, user, _scope) = store
                .token_user(&token_hash(token))
                .await?
                .ok_or(PortalError::Unauthenticated)?;
            if user.disabled {
                return Err(PortalError::Unauthenticated);
            }
            return Ok(Some((
                Principal {
                    user,
                    via: Via::Token { id },
                    ip: ip.to_string(),
                },
                vec![],
            )));
        }
        let Some(jwt) = cookie_value(headers, SESSION_COOKIE).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "sub"]);
        let Ok(data) = jsonwebtoken::decode::<Claims>(jwt, &self.dec, &v) else {
            return Ok(None);
        };
        let c = data.claims;
        let Some(session_expires) = store.session_live(&c.sid, &c.sub).await? else {
            return Ok(None);
        };
        let Some(user) = store.user(&c.sub).await?.filter(|u| !u.disabled) else {
            return Ok(None);
        };
        if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            self.check_csrf(headers, &c.sid)?;
        }
        let half = self.lifetime.as_secs() as i64 / 2;
        let renew = if c.exp - now_ms() / 1000 < half {
            self.cookies(&user, &c.sid, session_expires)?
        } else {
            vec![]
        };
        Ok(Some((
            Principal {
                user,
                via: Via::Session { sid: c.sid },
                ip: ip.to_string(),
            },
            renew,
        )))
    }
}

/// Failed-attempt counters per key (`acct:EMAIL`, `ip:ADDR`, ...), in
/// memory and bounded; each node throttles on its own.
pub struct Throttle {
    max: u32,
    window: Duration,
    map: Mutex<HashMap<String, (u32, Instant)>>,
}

const THROTTLE_KEYS: usize = 100_000;

impl Throttle {
    pub fn new(max: u32, window: Duration) -> Throttle {
        Throttle {
            max: max.max(1),
            window,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Whether another attempt is allowed for every key.
    pub fn allowed(&self, keys: &[&str]) -> bool {
        let Ok(m) = self.map.lock() else { return false };
        keys.iter().all(|k| match m.get(*k) {
            Some((n, since)) => since.elapsed() > self.window || *n < self.max,
            None => true,
        })
    }

    pub fn failed(&self, keys: &[&str]) {
        let Ok(mut m) = self.map.lock() else { return };
        if m.len() >= THROTTLE_KEYS {
            let window = self.window;
            m.retain(|_, (_, since)| since.elapsed() <= window);
            if m.len() >= THROTTLE_KEYS {
                m.clear();
            }
        }
        for k in keys {
            let e = m.entry((*k).to_string()).or_insert((0, Instant::now()));
            if e.1.elapsed() > self.window {
                *e = (0, Instant::now());
            }
            e.0 += 1;
        }
    }

    pub fn succeeded(&self, key: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), h.clone()).await);
        assert!(!verify_password("wrong".into(), h).await);
        assert!(!verify_password("x".into(), "not a hash".into()).await);
    }

    #[test]
    fn throttle_blocks_after_max_failures_per_key() {
        let t = Throttle::new(2, Duration::from_secs(60));
        assert!(t.allowed(&["a", "ip"]));
        t.failed(&["a", "ip"]);
        t.failed(&["a", "ip"]);
        assert!(!t.allowed(&["a"]));
        assert!(!t.allowed(&["b", "ip"]));
        assert!(t.allowed(&["b"]));
        t.succeeded("a");
        assert!(t.allowed(&["a"]));
    }

    #[test]
    fn origin_must_match_public_url_or_host() {
        let s = Sessions::new(
            &[7u8; 32],
            Duration::from_secs(60),
            Duration::from_secs(600),
            Some("https://share.example.com".into()),
        );
        let mut h = HeaderMap::new();
        assert!(s.check_origin(&h).is_err());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example.com"),
        );
        assert!(s.check_origin(&h).is_err());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://share.example.com"),
        );
        assert!(s.check_origin(&h).is_ok());
        let s = Sessions::new(
            &[7u8; 32],
            Duration::from_secs(60),
            Duration::from_secs(600),
            None,
        );
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(s.check_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:9999"),
        );
        assert!(s.check_origin(&h).is_err());
    }

    #[test]
    fn csrf_token_is_bound_to_the_session() {
        let s = Sessions::new(
            &[7u8; 32],
            Duration::from_secs(60),
            Duration::from_secs(600),
            None,
        );
        assert_ne!(s.csrf_token("a"), s.csrf_token("b"));
        assert!(s.csrf_token("a").len() >= 43);
    }
}

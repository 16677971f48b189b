//! Download links: a public link per public package, a personal link per
//! recipient. A link's token is HMAC-SHA256(secret, id, salt) with a random
//! 128-bit salt per link, base64url (256 bits); only its SHA-256 is stored,
//! so a database dump yields no working link, while the portal (holding the
//! secret) can show the owner a link again.

use crate::auth::{hmac, token_hash};
use crate::error::Result;
use crate::store::{Link, Store, new_id};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand::RngCore;

pub fn token(secret: &[u8], link_id: &str, salt: &str) -> String {
    B64.encode(hmac(
        secret,
        &[b"link", link_id.as_bytes(), salt.as_bytes()],
    ))
}

/// Create a link; returns its token.
pub async fn create(
    store: &Store,
    secret: &[u8],
    package_id: &str,
    kind: &str,
    recipient: Option<&str>,
) -> Result<String> {
    let id = new_id();
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = hex::encode(salt);
    let t = token(secret, &id, &salt);
    store
        .create_link_with_id(&id, package_id, kind, recipient, &salt, &token_hash(&t))
        .await?;
    Ok(t)
}

/// The link a token names, if any. Tokens are looked up by hash only.
pub async fn resolve(store: &Store, token: &str) -> Result<Option<Link>> {
    if token.len() != 43
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Ok(None);
    }
    store.link_by_hash(&token_hash(token)).await
}

/// The path of a link (below the portal's base URL).
/// Whether `s` has the shape of a link token (base64url, no padding).
pub fn is_token(s: &str) -> bool {
    (16..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn path(token: &str) -> String {
    format!("/v1/portal/p/{token}")
}

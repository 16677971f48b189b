//! What `moat portal ...` runs: bootstrap an admin, issue an API token,
//! re-wrap every data key under a new KEK.

use crate::error::{PortalError, Result};
use crate::store::{Role, Store};
use moat_vault::{DataKey, Kek};

/// `moat portal create-admin --email E --password-stdin`.
pub async fn create_admin(database_url: &str, email: &str, password: String) -> Result<String> {
    let store = Store::open(database_url).await?;
    let r = async {
        let u = crate::api::create_account(&store, email, password, Role::Admin).await?;
        cli_audit(
            &store,
            "user.create",
            serde_json::json!({ "user": u.id, "email": u.email, "role": "admin", "via": "cli" }),
        )
        .await?;
        Ok(u.id)
    }
    .await;
    store.close().await;
    r
}

/// `moat portal create-token --email E`: prints a bearer token.
pub async fn create_token(database_url: &str, email: &str, name: &str) -> Result<String> {
    let store = Store::open(database_url).await?;
    let r = issue_cli_token(&store, email, name).await;
    store.close().await;
    r
}

async fn issue_cli_token(store: &Store, email: &str, name: &str) -> Result<String> {
    let u = store
        .user_by_email(email)
        .await?
        .ok_or_else(|| PortalError::BadRequest(format!("no user {email}")))?;
    let (id, token) = crate::api::issue_token(store, &u.id, name).await?;
    cli_audit(
        store,
        "token.create",
        serde_json::json!({ "token_id": id, "user": u.id, "via": "cli" }),
    )
    .await?;
    Ok(token)
}

/// `moat portal rotate-kek --new-kek-file F`: every package's data key is
/// re-wrapped under `new` (file contents are untouched). Keys that already
/// open with `new` are skipped, so an interrupted run can be repeated.
/// Returns (re-wrapped, already under the new KEK).
pub async fn rotate_kek(database_url: &str, old: &Kek, new: &Kek) -> Result<(usize, usize)> {
    let store = Store::open(database_url).await?;
    let r = rewrap_all(&store, old, new).await;
    store.close().await;
    r
}

async fn rewrap_all(store: &Store, old: &Kek, new: &Kek) -> Result<(usize, usize)> {
    let (mut done, mut skipped) = (0, 0);
    for (id, wrapped) in store.wrapped_keys().await? {
        if DataKey::unwrap(new, &wrapped).is_ok() {
            skipped += 1;
            continue;
        }
        let key = DataKey::unwrap(old, &wrapped).map_err(|e| {
            PortalError::Storage(format!(
                "package {id}: the current KEK does not open its key: {e}"
            ))
        })?;
        if store.set_wrapped_key(&id, &wrapped, &key.wrap(new)).await? {
            done += 1;
        }
    }
    cli_audit(
        store,
        "settings.rotate_kek",
        serde_json::json!({ "rewrapped": done, "skipped": skipped }),
    )
    .await?;
    Ok((done, skipped))
}

/// The audit entry of a command-line action (actor `cli`).
async fn cli_audit(store: &Store, action: &str, detail: serde_json::Value) -> Result<()> {
    let actor = crate::store::Actor {
        id: Some("cli".into()),
        email: None,
        ip: None,
    };
    store.audit(&actor, action, None, None, detail).await?;
    Ok(())
}

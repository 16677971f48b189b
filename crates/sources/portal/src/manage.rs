//! Managing what exists: an owner's (or an admin's) revoke, extend and
//! delete of a package, and the admin's users (list, role, disable/enable,
//! password reset). Every change is audited. A package that is not the
//! caller's does not exist for them (404), as everywhere else.

use crate::Portal;
use crate::api::{base_url, owned_package, package_json};
use crate::auth::{self, Auth, ClientIp, Principal};
use crate::error::{PortalError, Result};
use crate::state::PkgState;
use crate::store::{Actor, Role, UserSummary, now_ms};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

type St = State<Arc<Portal>>;

/// How long a one-time password-reset token works.
pub const RESET_TOKEN_HOURS: i64 = 24;

// ---- packages

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeReq {
    #[serde(default)]
    reason: Option<String>,
}

fn note(s: Option<String>) -> Result<String> {
    let s = s.unwrap_or_default().trim().to_string();
    if s.len() > 1000 {
        return Err(PortalError::BadRequest(
            "reason longer than 1000 bytes".into(),
        ));
    }
    Ok(s)
}

/// `POST /v1/portal/packages/{id}/revoke`: every link stops working at once
/// (the package is `expired`, links answer 410), whatever state it was in.
pub(crate) async fn revoke(
    State(p): St,
    Auth(who): Auth,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<RevokeReq>>,
) -> Result<Json<Value>> {
    let pkg = owned_package(&p, &who, &id).await?;
    let why = note(body.map(|b| b.0.reason).unwrap_or_default())?;
    let Some(from) = p.store.expire_now(&pkg.id, "revoked").await? else {
        return Err(PortalError::Conflict(
            "the package is expired already".into(),
        ));
    };
    p.store
        .audit(
            &who.actor(),
            "package.revoke",
            Some(&pkg.id),
            None,
            json!({ "from": from.as_str(), "reason": why }),
        )
        .await?;
    let pkg = p.store.package(&id).await?.ok_or(PortalError::NotFound)?;
    Ok(Json(
        package_json(&p, &pkg, &who, &base_url(&p, &headers)).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExtendReq {
    /// Days from now (portal days).
    #[serde(default)]
    expires_in_days: Option<u32>,
    /// Or an absolute time, in milliseconds since the epoch.
    #[serde(default)]
    expires_at: Option<i64>,
}

/// The new expiry an extend asks for: within (now, now + max_expiry_days].
fn new_expiry(p: &Portal, max_days: u32, b: &ExtendReq, now: i64) -> Result<i64> {
    let max = now.saturating_add(p.cfg.days_ms(max_days));
    let at = match (b.expires_in_days, b.expires_at) {
        (Some(d), None) => {
            if d == 0 || d > max_days {
                return Err(PortalError::BadRequest(format!(
                    "expires_in_days must be 1..={}",
                    max_days
                )));
            }
            now.saturating_add(p.cfg.days_ms(d))
        }
        (None, Some(t)) => t,
        _ => {
            return Err(PortalError::BadRequest(
                "give expires_in_days or expires_at (one of them)".into(),
            ));
        }
    };
    if at <= now {
        return Err(PortalError::BadRequest(
            "the new expiry must be in the future".into(),
        ));
    }
    if at > max {
        return Err(PortalError::BadRequest(format!(
            "the expiry can be at most {} days from now",
            max_days
        )));
    }
    Ok(at)
}

/// `POST /v1/portal/packages/{id}/extend`: move the expiry, at most the
/// admin's maximum from now; not for expired or purged packages.
pub(crate) async fn extend(
    State(p): St,
    Auth(who): Auth,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<ExtendReq>,
) -> Result<Json<Value>> {
    let pkg = owned_package(&p, &who, &id).await?;
    let max_days = p.settings().await?.max_expiry_days;
    let at = new_expiry(&p, max_days, &b, now_ms())?;
    if !p.store.set_expiry(&pkg.id, at).await? {
        return Err(PortalError::Conflict(
            "the package is expired; it can no longer be extended".into(),
        ));
    }
    p.store
        .audit(
            &who.actor(),
            "package.extend",
            Some(&pkg.id),
            None,
            json!({ "from": pkg.expires_at, "to": at }),
        )
        .await?;
    let pkg = p.store.package(&id).await?.ok_or(PortalError::NotFound)?;
    Ok(Json(
        package_json(&p, &pkg, &who, &base_url(&p, &headers)).await?,
    ))
}

/// `DELETE /v1/portal/packages/{id}`: purge now. The package is expired (if
/// it was not) and purged by the scheduler's own code: ciphertext deleted
/// and checked gone, rows and audit kept, links 410.
pub(crate) async fn delete_package(
    State(p): St,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let pkg = owned_package(&p, &who, &id).await?;
    if pkg.state == PkgState::Purged {
        return Ok(StatusCode::NO_CONTENT);
    }
    let from = p.store.expire_now(&pkg.id, "deleted").await?;
    p.store
        .audit(
            &who.actor(),
            "package.delete",
            Some(&pkg.id),
            None,
            json!({ "from": from.unwrap_or(pkg.state).as_str() }),
        )
        .await?;
    let pkg = p.store.package(&id).await?.ok_or(PortalError::NotFound)?;
    if pkg.state == PkgState::Purged || crate::scheduler::purge(&p, &pkg, &who.actor()).await? {
        return Ok(StatusCode::NO_CONTENT);
    }
    // Purged by another node in the meantime, or storage still holds a part.
    match p.store.package(&id).await? {
        Some(now) if now.state == PkgState::Purged => Ok(StatusCode::NO_CONTENT),
        _ => Err(PortalError::Storage(
            "the package is expired but its ciphertext is not deleted yet; the scheduler retries"
                .into(),
        )),
    }
}

// ---- users (admins only)

fn admin_only(who: &Principal) -> Result<()> {
    if who.is_admin() {
        Ok(())
    } else {
        Err(PortalError::Forbidden("admins only"))
    }
}

fn summary_json(u: &UserSummary) -> Value {
    json!({ "id": u.id, "email": u.email, "role": u.role.as_str(), "disabled": u.disabled, "created_at": u.created_at })
}

#[derive(Deserialize)]
pub(crate) struct UserPage {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

/// `GET /v1/portal/users?limit=&cursor=`: oldest first, by cursor.
pub(crate) async fn list_users(
    State(p): St,
    Auth(who): Auth,
    Query(q): Query<UserPage>,
) -> Result<Json<Value>> {
    admin_only(&who)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = p.store.users(limit, q.cursor.as_deref()).await?;
    let next = if rows.len() as u32 == limit {
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(Json(json!({
        "items": rows.iter().map(summary_json).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

async fn user_summary(p: &Portal, id: &str) -> Result<Value> {
    let u = p.store.user(id).await?.ok_or(PortalError::NotFound)?;
    Ok(json!({ "id": u.id, "email": u.email, "role": u.role.as_str(), "disabled": u.disabled }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserChange {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    disabled: Option<bool>,
}

/// `PATCH /v1/portal/users/{id}` with `{role}` and/or `{disabled}`. A
/// disabled user cannot sign in, and their sessions and API tokens are
/// refused from the next request (sessions are revoked, so enabling the
/// account again does not bring them back). The last enabled admin can be
/// neither demoted nor disabled.
pub(crate) async fn update_user(
    State(p): St,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(b): Json<UserChange>,
) -> Result<Json<Value>> {
    admin_only(&who)?;
    let u = p.store.user(&id).await?.ok_or(PortalError::NotFound)?;
    if b.role.is_none() && b.disabled.is_none() {
        return Err(PortalError::BadRequest("give role and/or disabled".into()));
    }
    let role = match b.role.as_deref() {
        Some(r) => Some(
            Role::parse(r)
                .ok_or_else(|| PortalError::BadRequest(format!("role {r:?}: admin or member")))?,
        ),
        None => None,
    };
    if b.disabled == Some(true) && u.id == who.user.id {
        return Err(PortalError::Conflict(
            "you cannot disable your own account".into(),
        ));
    }
    if let Some(role) = role.filter(|r| *r != u.role) {
        if !p.store.set_role(&u.id, role.clone()).await? {
            return Err(PortalError::Conflict(
                "the last enabled admin cannot be demoted".into(),
            ));
        }
        p.store
            .audit(
                &who.actor(),
                "user.role",
                None,
                None,
                json!({ "user": u.id, "email": u.email, "from": u.role.as_str(), "to": role.as_str() }),
            )
            .await?;
    }
    if let Some(disabled) = b.disabled.filter(|d| *d != u.disabled) {
        if !p.store.set_disabled(&u.id, disabled).await? {
            return Err(PortalError::Conflict(
                "the last enabled admin cannot be disabled".into(),
            ));
        }
        let sessions = if disabled {
            p.store.revoke_user_sessions(&u.id).await?
        } else {
            0
        };
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        p.store
            .audit(
                &who.actor(),
                action,
                None,
                None,
                json!({ "user": u.id, "email": u.email, "sessions_revoked": sessions }),
            )
            .await?;
    }
    Ok(Json(user_summary(&p, &u.id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordReq {
    /// The new password, set by the admin.
    #[serde(default)]
    password: Option<String>,
    /// Or: issue a one-time reset token for the user to choose one.
    #[serde(default)]
    reset_token: Option<bool>,
}

/// `POST /v1/portal/users/{id}/password`: `{password}` sets a new password
/// (200); `{reset_token: true}` issues a one-time token (201, shown once,
/// stored hashed, valid [`RESET_TOKEN_HOURS`]) that `POST /auth/reset`
/// takes. Either way the user's sessions are revoked at once.
pub(crate) async fn reset_password(
    State(p): St,
    Auth(who): Auth,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<PasswordReq>,
) -> Result<(StatusCode, Json<Value>)> {
    admin_only(&who)?;
    let u = p.store.user(&id).await?.ok_or(PortalError::NotFound)?;
    match (b.password, b.reset_token) {
        (Some(pw), None | Some(false)) => {
            auth::check_new_password(&pw)?;
            let hash = auth::hash_password(pw).await?;
            p.store.set_password_hash(&u.id, &hash).await?;
            let n = p.store.revoke_user_sessions(&u.id).await?;
            p.login_throttle.succeeded(&format!("acct:{}", u.email));
            p.store
                .audit(
                    &who.actor(),
                    "user.password.set",
                    None,
                    None,
                    json!({ "user": u.id, "email": u.email, "sessions_revoked": n }),
                )
                .await?;
            Ok((StatusCode::OK, Json(json!({ "sessions_revoked": n }))))
        }
        (None, Some(true)) => {
            let token = format!("mpr_{}", auth::random_token(32));
            let expires = now_ms() + RESET_TOKEN_HOURS * 3_600_000;
            p.store
                .create_reset(&u.id, &auth::token_hash(&token), expires)
                .await?;
            let n = p.store.revoke_user_sessions(&u.id).await?;
            p.store
                .audit(
                    &who.actor(),
                    "user.password.reset_token",
                    None,
                    None,
                    json!({ "user": u.id, "email": u.email, "sessions_revoked": n, "expires_at": expires }),
                )
                .await?;
            let url = format!("{}/reset#{token}", base_url(&p, &headers));
            Ok((
                StatusCode::CREATED,
                Json(
                    json!({ "reset_token": token, "url": url, "expires_at": expires, "sessions_revoked": n }),
                ),
            ))
        }
        _ => Err(PortalError::BadRequest(
            "give password, or reset_token: true".into(),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedeemReq {
    token: String,
    password: String,
}

/// `POST /v1/portal/auth/reset` with `{token, password}` (no session): a
/// one-time reset token sets the user's password; their sessions are
/// revoked. Throttled per address like logins.
pub(crate) async fn redeem_reset(
    State(p): St,
    ip: axum::Extension<ClientIp>,
    headers: HeaderMap,
    Json(b): Json<RedeemReq>,
) -> Result<StatusCode> {
    if headers.contains_key(header::ORIGIN) {
        p.sessions.check_origin(&headers)?;
    }
    let ipk = format!("reset-ip:{}", ip.0.0);
    if !p.login_throttle.allowed(&[&ipk]) {
        return Err(PortalError::Throttled);
    }
    auth::check_new_password(&b.password)?;
    let Some(user_id) = p.store.use_reset(&auth::token_hash(b.token.trim())).await? else {
        p.login_throttle.failed(&[&ipk]);
        return Err(PortalError::Forbidden(
            "the reset token is not valid (used, expired or unknown)",
        ));
    };
    let u = p.store.user(&user_id).await?.ok_or(PortalError::NotFound)?;
    let hash = auth::hash_password(b.password).await?;
    p.store.set_password_hash(&u.id, &hash).await?;
    let n = p.store.revoke_user_sessions(&u.id).await?;
    p.login_throttle.succeeded(&format!("acct:{}", u.email));
    let actor = Actor {
        id: Some(u.id.clone()),
        email: Some(u.email.clone()),
        ip: Some(ip.0.0.clone()),
    };
    p.store
        .audit(
            &actor,
            "user.password.reset",
            None,
            None,
            json!({ "user": u.id, "sessions_revoked": n }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

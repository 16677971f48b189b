//! The JSON API under `/v1/portal`. Errors are `{"error": {"code", "message"}}`
//! with stable codes ([`PortalError::code`]); lists page by `cursor`.

use crate::Portal;
use crate::auth::{self, Auth, ClientIp, Principal, Sessions, Via};
use crate::download::{file_response, zip_response};
use crate::error::{PortalError, Result};
use crate::gate::{Access, Cleared, Gate, may_see};
use crate::links;
use crate::manage;
use crate::state::{Change, PkgState};
use crate::store::{Actor, FileRow, NewPackage, Package, Role, now_ms};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use moat_vault::DataKey;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

type St = State<Arc<Portal>>;

/// Every portal route, behind the authentication middleware.
pub fn router(p: Arc<Portal>) -> Router {
    Router::new()
        .route("/v1/portal/openapi.json", get(openapi))
        .route("/v1/portal/auth/login", post(login))
        .route("/v1/portal/auth/logout", post(logout))
        .route("/v1/portal/auth/me", get(me))
        .route("/v1/portal/auth/reset", post(manage::redeem_reset))
        .route("/v1/portal/tokens", post(create_token))
        .route("/v1/portal/tokens/{id}", delete(revoke_token))
        .route(
            "/v1/portal/users",
            post(create_user).get(manage::list_users),
        )
        .route("/v1/portal/users/{id}", patch(manage::update_user))
        .route(
            "/v1/portal/users/{id}/password",
            post(manage::reset_password),
        )
        .route(
            "/v1/portal/packages",
            post(create_package).get(list_packages),
        )
        .route(
            "/v1/portal/packages/{id}",
            get(get_package).delete(manage::delete_package),
        )
        .route("/v1/portal/packages/{id}/revoke", post(manage::revoke))
        .route("/v1/portal/packages/{id}/extend", post(manage::extend))
        .route(
            "/v1/portal/packages/{id}/files",
            post(crate::uploads::multipart_upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/portal/packages/{id}/submit", post(submit))
        .route("/v1/portal/packages/{id}/release", post(release))
        .route(
            "/v1/portal/packages/{id}/files/{fid}/content",
            get(user_file),
        )
        .route("/v1/portal/packages/{id}/zip", get(user_zip))
        .route("/v1/portal/p/{token}", get(link_view))
        .route("/v1/portal/p/{token}/files/{fid}", get(link_file))
        .route("/v1/portal/p/{token}/zip", get(link_zip))
        .route(
            "/v1/portal/settings",
            get(crate::settings::get_settings).put(crate::settings::put_settings),
        )
        .route("/v1/portal/audit", get(audit_list))
        .route("/v1/portal/audit.csv", get(audit_csv))
        .with_state(p.clone())
        .nest("/v1/portal/uploads", crate::uploads::tus(p.clone()))
        .layer(middleware::from_fn_with_state(p, authenticate))
}

/// The OpenAPI document ([`crate::openapi`]), built once.
async fn openapi() -> Response {
    static DOC: std::sync::LazyLock<Value> = std::sync::LazyLock::new(crate::openapi::document);
    let mut resp = Json(DOC.clone()).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Authenticate every request (bearer token or session cookie, CSRF on
/// state-changing cookie requests); put the [`Principal`] and [`ClientIp`]
/// into the request's extensions; append renewed session cookies.
async fn authenticate(State(p): St, mut req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    req.extensions_mut().insert(ClientIp(ip.clone()));
    let renew = match p
        .sessions
        .authenticate(&p.store, req.method(), req.headers(), &ip)
        .await
    {
        Ok(Some((principal, renew))) => {
            req.extensions_mut().insert(principal);
            renew
        }
        Ok(None) => vec![],
        Err(e) => return e.into_response(),
    };
    let mut resp = next.run(req).await;
    for c in renew {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

pub(crate) fn base_url(p: &Portal, headers: &HeaderMap) -> String {
    if let Some(u) = &p.cfg.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

fn user_json(u: &crate::store::User) -> Value {
    json!({ "id": u.id, "email": u.email, "role": u.role.as_str() })
}

fn file_json(f: &FileRow) -> Value {
    json!({
        "id": f.id, "name": f.name, "size": f.size, "sha256": f.sha256,
        "complete": f.complete, "status": f.status.as_str(), "scan_record_id": f.scan_record_id,
    })
}

/// The package as its owner (or an admin) sees it, with the links.
pub(crate) async fn package_json(
    p: &Portal,
    pkg: &Package,
    viewer: &Principal,
    base: &str,
) -> Result<Value> {
    let files = p.store.files(&pkg.id).await?;
    let owner = viewer.is_admin() || viewer.user.id == pkg.owner_id;
    let mut links = serde_json::Map::new();
    let mut recipients = Vec::new();
    if owner {
        for l in p.store.links(&pkg.id).await? {
            let url = format!(
                "{base}{}",
                links::path(&links::token(p.sessions.secret(), &l.id, &l.salt))
            );
            match l.kind.as_str() {
                "public" => {
                    links.insert("public".into(), url.into());
                }
                _ => recipients.push(
                    json!({ "email": l.recipient, "url": url, "downloaded_at": l.downloaded_at }),
                ),
            }
        }
        if !recipients.is_empty() {
            links.insert("recipients".into(), Value::Array(recipients.clone()));
        }
    }
    Ok(json!({
        "id": pkg.id,
        "state": pkg.state.as_str(),
        "access": pkg.access,
        "message": pkg.message,
        "recipients": recipients.iter().map(|r| r["email"].clone()).collect::<Vec<_>>(),
        "expires_at": pkg.expires_at,
        "download_limit": pkg.download_limit,
        "download_count": pkg.download_count,
        "has_password": pkg.password_hash.is_some(),
        "reason": pkg.reason,
        "released_by": pkg.released_by,
        "release_reason": pkg.release_reason,
        "created_at": pkg.created_at,
        "updated_at": pkg.updated_at,
        "owner_id": pkg.owner_id,
        "files": files.iter().map(file_json).collect::<Vec<_>>(),
        "links": links,
    }))
}

// ---- auth

#[derive(Deserialize)]
struct Login {
    email: String,
    password: String,
}

async fn login(
    State(p): St,
    ip: axum::Extension<ClientIp>,
    headers: HeaderMap,
    Json(b): Json<Login>,
) -> Result<Response> {
    // Login CSRF: a browser always sends Origin on POST; it must be ours.
    if headers.contains_key(header::ORIGIN) {
        p.sessions.check_origin(&headers)?;
    }
    let email = b.email.trim().to_ascii_lowercase();
    let acct = format!("acct:{email}");
    let ipk = format!("ip:{}", ip.0.0);
    let actor = Actor {
        id: None,
        email: Some(email.clone()),
        ip: Some(ip.0.0.clone()),
    };
    if !p.login_throttle.allowed(&[&acct, &ipk]) {
        p.store
            .audit(
                &actor,
                "login.failure",
                None,
                None,
                json!({ "why": "throttled" }),
            )
            .await?;
        return Err(PortalError::Throttled);
    }
    let user = p.store.user_by_email(&email).await?;
    let ok = match &user {
        Some(u) if !u.disabled => auth::verify_password(b.password, u.password_hash.clone()).await,
        _ => {
            // as slow as a real check, so timing does not reveal accounts
            let _ = auth::hash_password(b.password).await;
            false
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        p.login_throttle.failed(&[&acct, &ipk]);
        p.store
            .audit(
                &actor,
                "login.failure",
                None,
                None,
                json!({ "why": "bad credentials" }),
            )
            .await?;
        return Err(PortalError::BadCredentials);
    };
    p.login_throttle.succeeded(&acct);
    let expires = now_ms() + p.sessions.max_lifetime.as_millis() as i64;
    let sid = p.store.create_session(&user.id, expires).await?;
    let actor = Actor {
        id: Some(user.id.clone()),
        ..actor
    };
    p.store
        .audit(&actor, "login.success", None, None, json!({}))
        .await?;
    let mut resp =
        Json(json!({ "user": user_json(&user), "csrf_token": p.sessions.csrf_token(&sid) }))
            .into_response();
    for c in p.sessions.cookies(&user, &sid, expires)? {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

async fn logout(State(p): St, Auth(who): Auth) -> Result<Response> {
    if let Via::Session { sid } = &who.via {
        p.store.revoke_session(sid).await?;
    }
    p.store
        .audit(&who.actor(), "logout", None, None, json!({}))
        .await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    for c in Sessions::clear_cookies() {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// The signed-in user, with the limits that apply to their uploads (the
/// effective settings) and the bytes their packages keep, so a client can
/// offer the admin's default expiry and check sizes before sending.
async fn me(State(p): St, Auth(who): Auth) -> Result<Json<Value>> {
    let set = p.settings().await?;
    let mut v = user_json(&who.user);
    v["limits"] = json!({
        "max_file_size": set.max_file_size,
        "max_files_per_package": set.max_files_per_package,
        "default_expiry_days": set.default_expiry_days,
        "max_expiry_days": set.max_expiry_days,
        "require_password": set.require_password,
        "access_modes": set.access_modes,
        "quota_bytes": if who.is_admin() { 0 } else { set.quota_bytes },
        "used_bytes": p.store.usage(&who.user.id).await?,
    });
    Ok(Json(v))
}

#[derive(Deserialize)]
struct NewToken {
    #[serde(default)]
    name: String,
}

/// Create an API token for `user_id`; returns (id, token). The token is
/// shown once; only its hash is kept.
pub async fn issue_token(
    p: &crate::store::Store,
    user_id: &str,
    name: &str,
) -> Result<(String, String)> {
    let token = format!("{}{}", auth::TOKEN_PREFIX, auth::random_token(32));
    let id = p
        .create_token(user_id, name, &auth::token_hash(&token), "all")
        .await?;
    Ok((id, token))
}

async fn create_token(
    State(p): St,
    Auth(who): Auth,
    Json(b): Json<NewToken>,
) -> Result<(StatusCode, Json<Value>)> {
    let (id, token) = issue_token(&p.store, &who.user.id, &b.name).await?;
    p.store
        .audit(
            &who.actor(),
            "token.create",
            None,
            None,
            json!({ "token_id": id, "name": b.name }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "token": token })),
    ))
}

async fn revoke_token(State(p): St, Auth(who): Auth, Path(id): Path<String>) -> Result<StatusCode> {
    if !p
        .store
        .revoke_token(&id, &who.user.id, who.is_admin())
        .await?
    {
        return Err(PortalError::NotFound);
    }
    p.store
        .audit(
            &who.actor(),
            "token.revoke",
            None,
            None,
            json!({ "token_id": id }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct NewUser {
    email: String,
    password: String,
    #[serde(default)]
    role: Option<String>,
}

pub(crate) fn valid_email(e: &str) -> bool {
    let e = e.trim();
    e.len() <= 254
        && e.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        })
        && !e
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"()[]\\".contains(c))
        && e.matches('@').count() == 1
}

async fn create_user(
    State(p): St,
    Auth(who): Auth,
    Json(b): Json<NewUser>,
) -> Result<(StatusCode, Json<Value>)> {
    if !who.is_admin() {
        return Err(PortalError::Forbidden("admins only"));
    }
    let r = b.role.as_deref().unwrap_or("member");
    let role = Role::parse(r)
        .ok_or_else(|| PortalError::BadRequest(format!("role {r:?}: admin or member")))?;
    let u = create_account(&p.store, &b.email, b.password, role).await?;
    p.store
        .audit(
            &who.actor(),
            "user.create",
            None,
            None,
            json!({ "user": u.id, "email": u.email, "role": u.role.as_str() }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user_json(&u))))
}

/// Create an account (the CLI bootstrap and the admin API).
pub async fn create_account(
    store: &crate::store::Store,
    email: &str,
    password: String,
    role: Role,
) -> Result<crate::store::User> {
    if !valid_email(email) {
        return Err(PortalError::BadRequest("not an e-mail address".into()));
    }
    auth::check_new_password(&password)?;
    let hash = auth::hash_password(password).await?;
    store.create_user(email, &hash, role).await
}

// ---- packages

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPackageReq {
    access: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    recipients: Option<Vec<String>>,
    #[serde(default)]
    expires_in_days: Option<u32>,
    #[serde(default)]
    download_limit: Option<i64>,
    #[serde(default)]
    password: Option<String>,
}

async fn create_package(
    State(p): St,
    Auth(who): Auth,
    headers: HeaderMap,
    Json(b): Json<NewPackageReq>,
) -> Result<(StatusCode, Json<Value>)> {
    if !["public", "recipients", "internal"].contains(&b.access.as_str()) {
        return Err(PortalError::BadRequest(
            "access: public, recipients or internal".into(),
        ));
    }
    let recipients: Vec<String> = b
        .recipients
        .unwrap_or_default()
        .iter()
        .map(|r| r.trim().to_ascii_lowercase())
        .collect();
    if recipients.len() > 100 {
        return Err(PortalError::BadRequest("at most 100 recipients".into()));
    }
    if let Some(bad) = recipients.iter().find(|r| !valid_email(r)) {
        return Err(PortalError::BadRequest(format!(
            "recipient {bad:?} is not an e-mail address"
        )));
    }
    if b.access == "recipients" && recipients.is_empty() {
        return Err(PortalError::BadRequest(
            "access recipients needs recipients".into(),
        ));
    }
    let set = p.settings().await?;
    let has_password = b.password.as_deref().is_some_and(|pw| !pw.is_empty());
    set.sharing_allowed(&b.access, has_password)
        .map_err(PortalError::BadRequest)?;
    let days = b.expires_in_days.unwrap_or(set.default_expiry_days);
    if days == 0 || days > set.max_expiry_days {
        return Err(PortalError::BadRequest(format!(
            "expires_in_days must be 1..={}",
            set.max_expiry_days
        )));
    }
    if b.download_limit.is_some_and(|l| l < 1) {
        return Err(PortalError::BadRequest(
            "download_limit must be at least 1".into(),
        ));
    }
    let message = b.message.unwrap_or_default();
    if message.len() > 10_000 {
        return Err(PortalError::BadRequest(
            "message longer than 10000 bytes".into(),
        ));
    }
    let password_hash = match b.password.filter(|s| !s.is_empty()) {
        Some(pw) => Some(auth::hash_password(pw).await?),
        None => None,
    };
    let key = DataKey::generate();
    let wrapped = key.wrap(&p.kek);
    let pkg = p
        .store
        .create_package(NewPackage {
            owner_id: &who.user.id,
            access: &b.access,
            message: &message,
            password_hash: password_hash.as_deref(),
            wrapped_key: &wrapped,
            expires_at: now_ms() + p.cfg.days_ms(days),
            download_limit: b.download_limit,
        })
        .await?;
    if b.access == "public" {
        links::create(&p.store, p.sessions.secret(), &pkg.id, "public", None).await?;
    }
    if b.access != "internal" {
        for r in &recipients {
            links::create(&p.store, p.sessions.secret(), &pkg.id, "recipient", Some(r)).await?;
        }
    }
    p.store
        .audit(&who.actor(), "package.create", Some(&pkg.id), None, json!({ "access": b.access, "recipients": recipients, "days": days, "download_limit": b.download_limit, "password": pkg.password_hash.is_some() }))
        .await?;
    let body = package_json(&p, &pkg, &who, &base_url(&p, &headers)).await?;
    Ok((StatusCode::CREATED, Json(body)))
}

/// The package, if `who` may see it (else 404, whatever the reason).
pub(crate) async fn visible_package(p: &Portal, who: &Principal, id: &str) -> Result<Package> {
    let pkg = p.store.package(id).await?.ok_or(PortalError::NotFound)?;
    if may_see(who, &pkg) {
        Ok(pkg)
    } else {
        Err(PortalError::NotFound)
    }
}

/// The package, if `who` owns it or is an admin.
pub(crate) async fn owned_package(p: &Portal, who: &Principal, id: &str) -> Result<Package> {
    let pkg = p.store.package(id).await?.ok_or(PortalError::NotFound)?;
    if who.is_admin() || pkg.owner_id == who.user.id {
        Ok(pkg)
    } else {
        Err(PortalError::NotFound)
    }
}

async fn get_package(
    State(p): St,
    Auth(who): Auth,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let pkg = visible_package(&p, &who, &id).await?;
    Ok(Json(
        package_json(&p, &pkg, &who, &base_url(&p, &headers)).await?,
    ))
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    all: Option<bool>,
}

async fn list_packages(
    State(p): St,
    Auth(who): Auth,
    headers: HeaderMap,
    Query(q): Query<Page>,
) -> Result<Json<Value>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let owner = if who.is_admin() && q.all == Some(true) {
        None
    } else {
        Some(who.user.id.as_str())
    };
    let rows = p.store.packages(owner, limit, q.cursor.as_deref()).await?;
    let base = base_url(&p, &headers);
    let mut items = Vec::with_capacity(rows.len());
    for pkg in &rows {
        items.push(package_json(&p, pkg, &who, &base).await?);
    }
    let next = if rows.len() as u32 == limit {
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(Json(json!({ "items": items, "next_cursor": next })))
}

async fn submit(
    State(p): St,
    Auth(who): Auth,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let pkg = owned_package(&p, &who, &id).await?;
    if pkg.state != PkgState::Uploading {
        return Err(PortalError::Conflict(format!(
            "the package is {}",
            pkg.state.as_str()
        )));
    }
    let files = p.store.files(&pkg.id).await?;
    if files.is_empty() {
        return Err(PortalError::Conflict("the package has no files".into()));
    }
    if let Some(f) = files.iter().find(|f| !f.complete) {
        return Err(PortalError::Conflict(format!(
            "file {} is not completely uploaded",
            f.id
        )));
    }
    // Jobs first: a crash after them leaves jobs for an uploading package
    // (they wait, then are dropped); a crash before leaves it uploading.
    for f in &files {
        crate::worker::enqueue(&p, &f.id).await?;
    }
    let deadline = now_ms() + (p.cfg.scan_deadline_secs as i64) * 1000;
    let change = Change {
        scan_deadline: Some(deadline),
        ..Change::default()
    };
    if !p
        .store
        .transition(&pkg.id, PkgState::Uploading, PkgState::Scanning, change)
        .await?
    {
        return Err(PortalError::Conflict(
            "the package was submitted already".into(),
        ));
    }
    p.wake.notify_waiters();
    p.store
        .audit(
            &who.actor(),
            "package.submit",
            Some(&pkg.id),
            None,
            json!({ "files": files.len() }),
        )
        .await?;
    let pkg = p
        .store
        .package(&pkg.id)
        .await?
        .ok_or(PortalError::NotFound)?;
    Ok(Json(
        package_json(&p, &pkg, &who, &base_url(&p, &headers)).await?,
    ))
}

#[derive(Deserialize)]
struct ReleaseReq {
    reason: String,
    password: String,
}

/// Admin release of a quarantined package: a written reason and the
/// admin's password again; audited.
async fn release(
    State(p): St,
    Auth(who): Auth,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<ReleaseReq>,
) -> Result<Json<Value>> {
    if !who.is_admin() {
        return Err(PortalError::Forbidden(
            "only an admin releases a quarantined package",
        ));
    }
    let reason = b.reason.trim();
    if reason.len() < 3 {
        return Err(PortalError::BadRequest(
            "a written reason is required".into(),
        ));
    }
    let acct = format!("acct:{}", who.user.email);
    if !p.login_throttle.allowed(&[&acct]) {
        return Err(PortalError::Throttled);
    }
    if !auth::verify_password(b.password, who.user.password_hash.clone()).await {
        p.login_throttle.failed(&[&acct]);
        p.store
            .audit(
                &who.actor(),
                "package.release.denied",
                Some(&id),
                None,
                json!({ "why": "wrong password" }),
            )
            .await?;
        return Err(PortalError::Forbidden("password check failed"));
    }
    let pkg = p.store.package(&id).await?.ok_or(PortalError::NotFound)?;
    if pkg.state != PkgState::Quarantined {
        return Err(PortalError::Conflict(format!(
            "the package is {}",
            pkg.state.as_str()
        )));
    }
    let change = Change {
        released_by: Some(&who.user.email),
        release_reason: Some(reason),
        ..Change::default()
    };
    if !p
        .store
        .transition(&id, PkgState::Quarantined, PkgState::Available, change)
        .await?
    {
        return Err(PortalError::Conflict("the package changed state".into()));
    }
    let n = p.store.release_files(&id).await?;
    p.store
        .audit(
            &who.actor(),
            "package.release",
            Some(&id),
            None,
            json!({ "reason": reason, "files": n, "quarantine_reason": pkg.reason }),
        )
        .await?;
    let pkg = p.store.package(&id).await?.ok_or(PortalError::NotFound)?;
    crate::mail::logged(
        crate::mail::to_sender(
            &p,
            &pkg,
            "Your package was released",
            format!(
                "An admin ({}) released package {} from quarantine.\nReason: {reason}\n",
                who.user.email, pkg.id
            ),
        )
        .await,
    );
    crate::mail::logged(crate::mail::package_available(&p, &pkg).await);
    Ok(Json(
        package_json(&p, &pkg, &who, &base_url(&p, &headers)).await?,
    ))
}

// ---- downloads (all through the gate)

fn password_header(h: &HeaderMap) -> Option<&str> {
    h.get("x-package-password").and_then(|v| v.to_str().ok())
}

async fn user_file(
    State(p): St,
    Auth(who): Auth,
    method: Method,
    headers: HeaderMap,
    Path((id, fid)): Path<(String, String)>,
) -> Result<Response> {
    let c = Gate::check(&p, &id, Access::User(&who)).await?;
    file_response(&p, &c, &fid, &method, &headers).await
}

async fn user_zip(
    State(p): St,
    Auth(who): Auth,
    method: Method,
    Path(id): Path<String>,
) -> Result<Response> {
    let c = Gate::check(&p, &id, Access::User(&who)).await?;
    zip_response(p.clone(), c, &method).await
}

/// The gate for a link holder: the token's link, then the package check
/// with the link's password (if any) and the client's address.
async fn link_gate(p: &Portal, token: &str, ip: &ClientIp, headers: &HeaderMap) -> Result<Cleared> {
    let link = resolve_link(p, token).await?;
    Gate::check(
        p,
        &link.package_id,
        Access::Link {
            link: &link,
            password: password_header(headers),
            ip: &ip.0,
        },
    )
    .await
}

async fn resolve_link(p: &Portal, token: &str) -> Result<crate::store::Link> {
    links::resolve(&p.store, token)
        .await?
        .ok_or(PortalError::NotFound)
}

async fn link_file(
    State(p): St,
    ip: axum::Extension<ClientIp>,
    method: Method,
    headers: HeaderMap,
    Path((token, fid)): Path<(String, String)>,
) -> Result<Response> {
    let c = link_gate(&p, &token, &ip.0, &headers).await?;
    file_response(&p, &c, &fid, &method, &headers).await
}

async fn link_zip(
    State(p): St,
    ip: axum::Extension<ClientIp>,
    method: Method,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response> {
    let c = link_gate(&p, &token, &ip.0, &headers).await?;
    zip_response(p.clone(), c, &method).await
}

/// What a link holder sees: the package's state, message and file list
/// (names and sizes; no bytes, no verdict details). A browser following
/// the link from an e-mail (asking for HTML first) is sent to the web UI's
/// page for it, which reads this JSON.
async fn link_view(
    State(p): St,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response> {
    if wants_html(&headers) && links::is_token(&token) {
        return Ok(axum::response::Redirect::to(&format!("/p/{token}")).into_response());
    }
    let link = resolve_link(&p, &token).await?;
    let pkg = p
        .store
        .package(&link.package_id)
        .await?
        .ok_or(PortalError::NotFound)?;
    if link.kind == "public" && pkg.access != "public" {
        return Err(PortalError::NotFound);
    }
    let expired =
        matches!(pkg.state, PkgState::Expired | PkgState::Purged) || now_ms() >= pkg.expires_at;
    if expired {
        return Err(PortalError::Gone("the package has expired"));
    }
    let files = if pkg.state == PkgState::Available {
        p.store
            .files(&pkg.id)
            .await?
            .iter()
            .map(|f| json!({ "id": f.id, "name": f.name, "size": f.size }))
            .collect()
    } else {
        vec![]
    };
    Ok(Json(json!({
        "id": pkg.id, "state": pkg.state.as_str(), "message": pkg.message,
        "expires_at": pkg.expires_at, "has_password": pkg.password_hash.is_some(), "files": files,
    }))
    .into_response())
}

/// Whether the client lists `text/html` before any JSON type in `Accept`
/// (a browser navigating), as opposed to an API client (`*/*` or JSON).
fn wants_html(h: &HeaderMap) -> bool {
    let Some(a) = h.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let html = a.find("text/html");
    let json = a.find("application/json");
    match (html, json) {
        (Some(h), Some(j)) => h < j,
        (Some(_), None) => true,
        _ => false,
    }
}

// ---- audit

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default)]
    package: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

async fn audit_rows(
    p: &Portal,
    who: &Principal,
    q: &AuditQuery,
    max: u32,
) -> Result<Vec<crate::store::AuditEntry>> {
    if !who.is_admin() {
        // members: the audit of their own packages only
        let Some(id) = &q.package else {
            return Err(PortalError::Forbidden(
                "members must name one of their packages",
            ));
        };
        owned_package(p, who, id).await?;
    }
    p.store
        .audit_list(
            q.package.as_deref(),
            q.action.as_deref(),
            q.actor.as_deref(),
            q.limit.unwrap_or(100).clamp(1, max),
            q.cursor.as_deref(),
        )
        .await
}

async fn audit_list(
    State(p): St,
    Auth(who): Auth,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>> {
    let rows = audit_rows(&p, &who, &q, 1000).await?;
    let next = if rows.len() as u32 == q.limit.unwrap_or(100).clamp(1, 1000) {
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(Json(json!({ "items": rows, "next_cursor": next })))
}

/// A CSV cell: quoted, and a leading `=`, `+`, `-`, `@` neutralised so a
/// spreadsheet does not evaluate it.
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

async fn audit_csv(State(p): St, Auth(who): Auth, Query(q): Query<AuditQuery>) -> Result<Response> {
    let rows = audit_rows(
        &p,
        &who,
        &AuditQuery {
            limit: Some(q.limit.unwrap_or(10_000)),
            ..q
        },
        100_000,
    )
    .await?;
    let mut out = String::from("id,at,actor,actor_email,action,package_id,file_id,ip,detail\n");
    for r in rows {
        let cells = [
            r.id,
            r.at.to_string(),
            r.actor.unwrap_or_default(),
            r.actor_email.unwrap_or_default(),
            r.action,
            r.package_id.unwrap_or_default(),
            r.file_id.unwrap_or_default(),
            r.ip.unwrap_or_default(),
            r.detail.to_string(),
        ];
        out.push_str(
            &cells
                .iter()
                .map(|c| csv_cell(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push('\n');
    }
    let mut resp = out.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"moat-audit.csv\""),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked() {
        assert!(valid_email("a@example.com"));
        assert!(!valid_email("a@b"));
        assert!(!valid_email("a b@example.com"));
        assert!(!valid_email("<a@example.com>"));
        assert!(!valid_email("a@@example.com"));
        assert!(!valid_email("a@example.com\r\nBcc: x@y.z"));
    }

    #[test]
    fn browsers_are_told_apart_from_api_clients() {
        let h = |a: &str| {
            let mut m = HeaderMap::new();
            m.insert(
                header::ACCEPT,
                HeaderValue::from_str(a).unwrap_or(HeaderValue::from_static("")),
            );
            wants_html(&m)
        };
        assert!(h(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!h("*/*"));
        assert!(!h("application/json"));
        assert!(!h("application/json, text/html"));
        assert!(!wants_html(&HeaderMap::new()));
    }

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(csv_cell("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_cell("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
    }
}

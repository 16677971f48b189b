//! The portal's tables, in the same database as the scan records (SQLite by
//! default, PostgreSQL by URL), through sqlx `Any` with one SQL dialect
//! (`$n`, `BIGINT`/`TEXT`). The schema is created on open and is idempotent.
//! The audit table is only ever inserted into.

use crate::error::{PortalError, Result};
use crate::state::{FileStatus, PkgState};
use sqlx::{AnyPool, Row, any::AnyRow};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS moat_portal_users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        disabled BIGINT NOT NULL DEFAULT 0
    )",
    "CREATE TABLE IF NOT EXISTS moat_portal_sessions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        revoked_at BIGINT
    )",
    "CREATE TABLE IF NOT EXISTS moat_portal_tokens (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        scope TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
    )",
    "CREATE TABLE IF NOT EXISTS moat_portal_packages (
        id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        state TEXT NOT NULL,
        access TEXT NOT NULL,
        message TEXT NOT NULL,
        password_hash TEXT,
        wrapped_key TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        download_limit BIGINT,
        download_count BIGINT NOT NULL DEFAULT 0,
        reason TEXT,
        released_by TEXT,
        release_reason TEXT,
        scan_deadline BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS moat_portal_packages_owner ON moat_portal_packages (owner_id, id)",
    "CREATE INDEX IF NOT EXISTS moat_portal_packages_state ON moat_portal_packages (state, expires_at)",
    "CREATE TABLE IF NOT EXISTS moat_portal_files (
        id TEXT PRIMARY KEY,
        package_id TEXT NOT NULL,
        name TEXT NOT NULL,
        object TEXT NOT NULL,
        size BIGINT NOT NULL,
        sha256 TEXT,
        complete BIGINT NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        scan_record_id TEXT,
        created_at BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS moat_portal_files_package ON moat_portal_files (package_id, id)",
    "CREATE TABLE IF NOT EXISTS moat_portal_links (
        id TEXT PRIMARY KEY,
        package_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        recipient TEXT,
        salt TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        downloaded_at BIGINT
    )",
    "CREATE INDEX IF NOT EXISTS moat_portal_links_package ON moat_portal_links (package_id)",
    "CREATE TABLE IF NOT EXISTS moat_portal_audit (
        id TEXT PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT,
        actor_email TEXT,
        action TEXT NOT NULL,
        package_id TEXT,
        file_id TEXT,
        ip TEXT,
        detail TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS moat_portal_audit_package ON moat_portal_audit (package_id, id)",
    "CREATE TABLE IF NOT EXISTS moat_portal_resets (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at BIGINT
    )",
    "CREATE TABLE IF NOT EXISTS moat_portal_reminders (
        link_id TEXT PRIMARY KEY,
        sent_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS moat_portal_settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        updated_by TEXT
    )",
];

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    backend: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub disabled: bool,
}

/// A user as the admin's list shows it (no password hash).
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserSummary {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Package {
    pub id: String,
    pub owner_id: String,
    pub state: PkgState,
    pub access: String,
    pub message: String,
    pub password_hash: Option<String>,
    pub wrapped_key: Vec<u8>,
    pub expires_at: i64,
    pub download_limit: Option<i64>,
    pub download_count: i64,
    pub reason: Option<String>,
    pub released_by: Option<String>,
    pub release_reason: Option<String>,
    pub scan_deadline: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct FileRow {
    pub id: String,
    pub package_id: String,
    pub name: String,
    pub object: String,
    pub size: i64,
    pub sha256: Option<String>,
    pub complete: bool,
    pub status: FileStatus,
    pub scan_record_id: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Link {
    pub id: String,
    pub package_id: String,
    pub kind: String,
    pub recipient: Option<String>,
    pub salt: String,
    pub downloaded_at: Option<i64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    pub id: String,
    pub at: i64,
    pub actor: Option<String>,
    pub actor_email: Option<String>,
    pub action: String,
    pub package_id: Option<String>,
    pub file_id: Option<String>,
    pub ip: Option<String>,
    pub detail: serde_json::Value,
}

/// Who did something, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub id: Option<String>,
    pub email: Option<String>,
    pub ip: Option<String>,
}

fn get<T>(row: &AnyRow, col: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(col)
        .map_err(|e| PortalError::Db(format!("reading {col}: {e}")))
}

fn user_from(row: &AnyRow) -> Result<User> {
    let role: String = get(row, "role")?;
    Ok(User {
        id: get(row, "id")?,
        email: get(row, "email")?,
        password_hash: get(row, "password_hash")?,
        role: Role::parse(&role).unwrap_or(Role::Member),
        disabled: get::<i64>(row, "disabled")? != 0,
    })
}

const PKG_COLS: &str = "id, owner_id, state, access, message, password_hash, wrapped_key, expires_at, download_limit, download_count, reason, released_by, release_reason, scan_deadline, created_at, updated_at";

fn package_from(row: &AnyRow) -> Result<Package> {
    let state: String = get(row, "state")?;
    let wrapped: String = get(row, "wrapped_key")?;
    Ok(Package {
        id: get(row, "id")?,
        owner_id: get(row, "owner_id")?,
        state: PkgState::parse(&state)?,
        access: get(row, "access")?,
        message: get(row, "message")?,
        password_hash: get(row, "password_hash")?,
        wrapped_key: hex::decode(wrapped)
            .map_err(|e| PortalError::Db(format!("wrapped key: {e}")))?,
        expires_at: get(row, "expires_at")?,
        download_limit: get(row, "download_limit")?,
        download_count: get(row, "download_count")?,
        reason: get(row, "reason")?,
        released_by: get(row, "released_by")?,
        release_reason: get(row, "release_reason")?,
        scan_deadline: get(row, "scan_deadline")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

const FILE_COLS: &str =
    "id, package_id, name, object, size, sha256, complete, status, scan_record_id, created_at";

fn file_from(row: &AnyRow) -> Result<FileRow> {
    let status: String = get(row, "status")?;
    Ok(FileRow {
        id: get(row, "id")?,
        package_id: get(row, "package_id")?,
        name: get(row, "name")?,
        object: get(row, "object")?,
        size: get(row, "size")?,
        sha256: get(row, "sha256")?,
        complete: get::<i64>(row, "complete")? != 0,
        status: FileStatus::parse(&status),
        scan_record_id: get(row, "scan_record_id")?,
        created_at: get(row, "created_at")?,
    })
}

fn link_from(row: &AnyRow) -> Result<Link> {
    Ok(Link {
        id: get(row, "id")?,
        package_id: get(row, "package_id")?,
        kind: get(row, "kind")?,
        recipient: get(row, "recipient")?,
        salt: get(row, "salt")?,
        downloaded_at: get(row, "downloaded_at")?,
    })
}

/// A new package, as inserted.
pub struct NewPackage<'a> {
    pub owner_id: &'a str,
    pub access: &'a str,
    pub message: &'a str,
    pub password_hash: Option<&'a str>,
    pub wrapped_key: &'a [u8],
    pub expires_at: i64,
    pub download_limit: Option<i64>,
}

impl Store {
    pub async fn open(url: &str) -> Result<Store> {
        let (pool, backend) = moat_db::pool(url).await?;
        for stmt in SCHEMA {
            sqlx::query(stmt).execute(&pool).await?;
        }
        Ok(Store { pool, backend })
    }

    /// Close the pool: its connections are closed now, not whenever the
    /// runtime is dropped.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub fn backend(&self) -> &'static str {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    // ---- users

    pub async fn create_user(&self, email: &str, password_hash: &str, role: Role) -> Result<User> {
        let id = new_id();
        let email = email.trim().to_ascii_lowercase();
        let res = sqlx::query(
            "INSERT INTO moat_portal_users (id, email, password_hash, role, created_at, disabled)
             VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (email) DO NOTHING",
        )
        .bind(&id)
        .bind(&email)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(PortalError::Conflict(format!("a user {email} exists")));
        }
        Ok(User {
            id,
            email,
            password_hash: password_hash.to_string(),
            role,
            disabled: false,
        })
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT * FROM moat_portal_users WHERE email = $1")
            .bind(email.trim().to_ascii_lowercase())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from).transpose()
    }

    pub async fn user(&self, id: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT * FROM moat_portal_users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from).transpose()
    }

    pub async fn admin_emails(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT email FROM moat_portal_users WHERE role = 'admin' AND disabled = 0",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| get(r, "email")).collect()
    }

    /// Users in creation order (ids are UUIDv7); `after` is the last id of
    /// the previous page.
    pub async fn users(&self, limit: u32, after: Option<&str>) -> Result<Vec<UserSummary>> {
        let rows = sqlx::query(
            "SELECT id, email, role, disabled, created_at FROM moat_portal_users
              WHERE ($1 = '' OR id > $1) ORDER BY id LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let role: String = get(r, "role")?;
                Ok(UserSummary {
                    id: get(r, "id")?,
                    email: get(r, "email")?,
                    role: Role::parse(&role).unwrap_or(Role::Member),
                    disabled: get::<i64>(r, "disabled")? != 0,
                    created_at: get(r, "created_at")?,
                })
            })
            .collect()
    }

    /// Set a user's role. Demoting refuses (false) when it would leave no
    /// enabled admin: the check and the change are one statement.
    pub async fn set_role(&self, id: &str, role: Role) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE moat_portal_users SET role = $1
              WHERE id = $2 AND ($1 = 'admin' OR role <> 'admin' OR disabled <> 0
                    OR (SELECT COUNT(*) FROM moat_portal_users
                         WHERE role = 'admin' AND disabled = 0 AND id <> $2) > 0)",
        )
        .bind(role.as_str())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Disable or enable a user. Disabling refuses (false) when it would
    /// leave no enabled admin.
    pub async fn set_disabled(&self, id: &str, disabled: bool) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE moat_portal_users SET disabled = $1
              WHERE id = $2 AND ($1 = 0 OR role <> 'admin'
                    OR (SELECT COUNT(*) FROM moat_portal_users
                         WHERE role = 'admin' AND disabled = 0 AND id <> $2) > 0)",
        )
        .bind(i64::from(disabled))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    pub async fn set_password_hash(&self, id: &str, hash: &str) -> Result<bool> {
        let res = sqlx::query("UPDATE moat_portal_users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Store a one-time password-reset token's hash for `user_id`; earlier
    /// unused ones stop working.
    pub async fn create_reset(
        &self,
        user_id: &str,
        token_hash: &str,
        expires_at: i64,
    ) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "UPDATE moat_portal_resets SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "INSERT INTO moat_portal_resets (id, user_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(new_id())
        .bind(user_id)
        .bind(token_hash)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Use a reset token: the user id when the token was live and this
    /// call used it (a token works once).
    pub async fn use_reset(&self, token_hash: &str) -> Result<Option<String>> {
        let now = now_ms();
        let Some(row) = sqlx::query(
            "SELECT id, user_id FROM moat_portal_resets
              WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let id: String = get(&row, "id")?;
        let res = sqlx::query(
            "UPDATE moat_portal_resets SET used_at = $1 WHERE id = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(&id)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 1 {
            Ok(Some(get(&row, "user_id")?))
        } else {
            Ok(None)
        }
    }

    // ---- sessions and tokens

    pub async fn create_session(&self, user_id: &str, expires_at: i64) -> Result<String> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO moat_portal_sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// The session's absolute expiry if it is live (not revoked, not past it).
    pub async fn session_live(&self, sid: &str, user_id: &str) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT expires_at FROM moat_portal_sessions
              WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > $3",
        )
        .bind(sid)
        .bind(user_id)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| get(r, "expires_at")).transpose()
    }

    pub async fn revoke_session(&self, sid: &str) -> Result<()> {
        sqlx::query(
            "UPDATE moat_portal_sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(sid)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Revoke every live session of a user; how many there were.
    pub async fn revoke_user_sessions(&self, user_id: &str) -> Result<u64> {
        let res = sqlx::query(
            "UPDATE moat_portal_sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }

    pub async fn create_token(
        &self,
        user_id: &str,
        name: &str,
        token_hash: &str,
        scope: &str,
    ) -> Result<String> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO moat_portal_tokens (id, user_id, name, token_hash, scope, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(name)
        .bind(token_hash)
        .bind(scope)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// (token id, user, scope) for a live token hash.
    pub async fn token_user(&self, token_hash: &str) -> Result<Option<(String, User, String)>> {
        let row = sqlx::query(
            "SELECT t.id AS token_id, t.scope AS scope, u.id, u.email, u.password_hash, u.role, u.disabled
               FROM moat_portal_tokens t JOIN moat_portal_users u ON u.id = t.user_id
              WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((
                get(&r, "token_id")?,
                user_from(&r)?,
                get(&r, "scope")?,
            ))),
        }
    }

    /// Revoke a token of `user_id` (admins: anyone's when `any`).
    pub async fn revoke_token(&self, id: &str, user_id: &str, any: bool) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE moat_portal_tokens SET revoked_at = $1
              WHERE id = $2 AND revoked_at IS NULL AND (user_id = $3 OR $4 = 1)",
        )
        .bind(now_ms())
        .bind(id)
        .bind(user_id)
        .bind(i64::from(any))
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    // ---- packages

    pub async fn create_package(&self, p: NewPackage<'_>) -> Result<Package> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO moat_portal_packages (id, owner_id, state, access, message, password_hash, wrapped_key,
                 expires_at, download_limit, download_count, created_at, updated_at)
             VALUES ($1, $2, 'uploading', $3, $4, $5, $6, $7, $8, 0, $9, $9)",
        )
        .bind(&id)
        .bind(p.owner_id)
        .bind(p.access)
        .bind(p.message)
        .bind(p.password_hash)
        .bind(hex::encode(p.wrapped_key))
        .bind(p.expires_at)
        .bind(p.download_limit)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.package(&id).await?.ok_or(PortalError::NotFound)
    }

    pub async fn package(&self, id: &str) -> Result<Option<Package>> {
        let row = sqlx::query(&format!(
            "SELECT {PKG_COLS} FROM moat_portal_packages WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(package_from).transpose()
    }

    /// Packages, newest first; `owner` restricts to one owner; `before` is
    /// the last id of the previous page (ids are compared as created).
    pub async fn packages(
        &self,
        owner: Option<&str>,
        limit: u32,
        before: Option<&str>,
    ) -> Result<Vec<Package>> {
        let before_created = match before {
            Some(b) => self.package(b).await?.map(|p| (p.created_at, p.id)),
            None => None,
        };
        let (bc, bid) = before_created.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {PKG_COLS} FROM moat_portal_packages
              WHERE ($1 = '' OR owner_id = $1)
                AND (created_at < $2 OR (created_at = $2 AND id < $3) OR $3 = '')
              ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(owner.unwrap_or(""))
        .bind(bc)
        .bind(&bid)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(package_from).collect()
    }

    /// Package ids in `state` whose time column (`expires_at` or
    /// `updated_at`) is before `t`.
    pub async fn packages_due(
        &self,
        state: PkgState,
        column: &str,
        t: i64,
        limit: u32,
    ) -> Result<Vec<Package>> {
        let col = match column {
            "expires_at" => "expires_at",
            _ => "updated_at",
        };
        let rows = sqlx::query(&format!(
            "SELECT {PKG_COLS} FROM moat_portal_packages WHERE state = $1 AND {col} < $2 ORDER BY {col} LIMIT $3"
        ))
        .bind(state.as_str())
        .bind(t)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(package_from).collect()
    }

    /// Move a live package's expiry to `expires_at`: only while it is not
    /// expired or purged and its current expiry has not passed (an expiry
    /// the scheduler has yet to act on is final too).
    pub async fn set_expiry(&self, id: &str, expires_at: i64) -> Result<bool> {
        let now = now_ms();
        let res = sqlx::query(
            "UPDATE moat_portal_packages SET expires_at = $1, updated_at = $2
              WHERE id = $3 AND state NOT IN ('expired', 'purged') AND expires_at > $2",
        )
        .bind(expires_at)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Count one download if the limit allows it (atomic).
    pub async fn count_download(&self, id: &str) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE moat_portal_packages SET download_count = download_count + 1
              WHERE id = $1 AND (download_limit IS NULL OR download_count < download_limit)",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    pub async fn set_wrapped_key(&self, id: &str, old: &[u8], new: &[u8]) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE moat_portal_packages SET wrapped_key = $1 WHERE id = $2 AND wrapped_key = $3",
        )
        .bind(hex::encode(new))
        .bind(id)
        .bind(hex::encode(old))
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Bytes held by `owner` in packages not yet purged.
    pub async fn usage(&self, owner: &str) -> Result<u64> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(f.size), 0) AS n FROM moat_portal_files f
               JOIN moat_portal_packages p ON p.id = f.package_id
              WHERE p.owner_id = $1 AND p.state <> 'purged'",
        )
        .bind(owner)
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = get(&row, "n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    // ---- settings

    /// The admin's overrides, when and by whom they were last changed.
    pub async fn settings_overrides(
        &self,
    ) -> Result<(crate::settings::Overrides, Option<i64>, Option<String>)> {
        let row = sqlx::query(
            "SELECT value, updated_at, updated_by FROM moat_portal_settings WHERE name = 'overrides'",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok((Default::default(), None, None));
        };
        let value: String = get(&row, "value")?;
        let o = serde_json::from_str(&value)
            .map_err(|e| PortalError::Db(format!("stored settings: {e}")))?;
        Ok((o, Some(get(&row, "updated_at")?), get(&row, "updated_by")?))
    }

    pub async fn set_settings_overrides(
        &self,
        o: &crate::settings::Overrides,
        by: &str,
    ) -> Result<()> {
        let value = serde_json::to_string(o).map_err(|e| PortalError::Internal(e.to_string()))?;
        self.set_named_value("overrides", &value, by).await
    }

    /// A value kept by name in the settings table (`rescan_fingerprint`).
    pub async fn named_value(&self, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM moat_portal_settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| get(&r, "value")).transpose()
    }

    pub async fn set_named_value(&self, name: &str, value: &str, by: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO moat_portal_settings (name, value, updated_at, updated_by)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value,
               updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(name)
        .bind(value)
        .bind(now_ms())
        .bind(by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ---- files

    pub async fn create_file(&self, package_id: &str, name: &str, size: u64) -> Result<FileRow> {
        let id = uuid::Uuid::new_v4().to_string();
        // Object names are ids, never user input.
        let object = id.clone();
        sqlx::query(
            "INSERT INTO moat_portal_files (id, package_id, name, object, size, complete, status, created_at)
             VALUES ($1, $2, $3, $4, $5, 0, 'pending', $6)",
        )
        .bind(&id)
        .bind(package_id)
        .bind(name)
        .bind(&object)
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        self.file(&id).await?.ok_or(PortalError::NotFound)
    }

    pub async fn file(&self, id: &str) -> Result<Option<FileRow>> {
        let row = sqlx::query(&format!(
            "SELECT {FILE_COLS} FROM moat_portal_files WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(file_from).transpose()
    }

    pub async fn files(&self, package_id: &str) -> Result<Vec<FileRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {FILE_COLS} FROM moat_portal_files WHERE package_id = $1 ORDER BY created_at, id"
        ))
        .bind(package_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(file_from).collect()
    }

    /// All bytes of the file are stored (only while its package uploads).
    pub async fn complete_file(&self, id: &str, size: u64, sha256: &[u8; 32]) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE moat_portal_files SET complete = 1, size = $1, sha256 = $2
              WHERE id = $3 AND complete = 0
                AND package_id IN (SELECT id FROM moat_portal_packages WHERE state = 'uploading')",
        )
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .bind(hex::encode(sha256))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Remove a file row while its package is still uploading.
    pub async fn delete_file(&self, id: &str) -> Result<()> {
        sqlx::query(
            "DELETE FROM moat_portal_files WHERE id = $1
                AND package_id IN (SELECT id FROM moat_portal_packages WHERE state = 'uploading')",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Record a file's verdict: only from `pending`, so a verdict is never
    /// overwritten (a retry or rescan cannot turn a decided file clean).
    pub async fn set_file_verdict(
        &self,
        id: &str,
        status: FileStatus,
        record_id: Option<&str>,
    ) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE moat_portal_files SET status = $1, scan_record_id = $2 WHERE id = $3 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(record_id)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Remember the latest scan record of a still-pending file (an engine
    /// error that will be retried).
    pub async fn note_attempt(&self, id: &str, record_id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE moat_portal_files SET scan_record_id = $1 WHERE id = $2 AND status = 'pending'",
        )
        .bind(record_id)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Mark every blocking file of a quarantined package as released.
    pub async fn release_files(&self, package_id: &str) -> Result<u64> {
        let res = sqlx::query(
            "UPDATE moat_portal_files SET status = 'released'
              WHERE package_id = $1 AND status IN ('infected', 'suspicious', 'unscannable', 'error')
                AND package_id IN (SELECT id FROM moat_portal_packages WHERE state = 'available')",
        )
        .bind(package_id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }

    /// Files still pending in packages that are scanning (for re-queueing).
    pub async fn pending_in_scanning(&self, limit: u32) -> Result<Vec<FileRow>> {
        let rows =
            sqlx::query(&format!(
            "SELECT {} FROM moat_portal_files f JOIN moat_portal_packages p ON p.id = f.package_id
              WHERE p.state = 'scanning' AND f.status = 'pending' LIMIT $1",
            FILE_COLS.split(", ").map(|c| format!("f.{c}")).collect::<Vec<_>>().join(", ")
        ))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(file_from).collect()
    }

    /// Files of `available` packages (clean or released), by id after
    /// `after`: what a rescan on new signatures goes through, a page at a time.
    pub async fn available_files(&self, after: &str, limit: u32) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT f.id AS id FROM moat_portal_files f JOIN moat_portal_packages p ON p.id = f.package_id
              WHERE p.state = 'available' AND f.status IN ('clean', 'released') AND f.id > $1
              ORDER BY f.id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| get(r, "id")).collect()
    }

    /// A rescan found `status` (infected or suspicious) in a file that was
    /// cleared: recorded only while the file is still clean or released.
    pub async fn set_rescan_detection(
        &self,
        file_id: &str,
        status: FileStatus,
        scan_record_id: &str,
    ) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE moat_portal_files SET status = $2, scan_record_id = $3
              WHERE id = $1 AND status IN ('clean', 'released')",
        )
        .bind(file_id)
        .bind(status.as_str())
        .bind(scan_record_id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Packages still `scanning` although every file is decided: a node
    /// that recorded the last verdict died before it settled the package.
    /// Only those last changed before `before` (a live worker settles
    /// within moments of its last verdict).
    pub async fn scanning_all_decided(&self, before: i64, limit: u32) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT p.id AS id FROM moat_portal_packages p
              WHERE p.state = 'scanning' AND p.updated_at < $1
                AND EXISTS (SELECT 1 FROM moat_portal_files f WHERE f.package_id = p.id)
                AND NOT EXISTS (SELECT 1 FROM moat_portal_files f
                                 WHERE f.package_id = p.id AND f.status = 'pending')
              LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| get(r, "id")).collect()
    }

    // ---- links

    pub async fn create_link_with_id(
        &self,
        id: &str,
        package_id: &str,
        kind: &str,
        recipient: Option<&str>,
        salt: &str,
        token_hash: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO moat_portal_links (id, package_id, kind, recipient, salt, token_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(package_id)
        .bind(kind)
        .bind(recipient)
        .bind(salt)
        .bind(token_hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn link_by_hash(&self, token_hash: &str) -> Result<Option<Link>> {
        let row = sqlx::query("SELECT * FROM moat_portal_links WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(link_from).transpose()
    }

    pub async fn links(&self, package_id: &str) -> Result<Vec<Link>> {
        let rows = sqlx::query("SELECT * FROM moat_portal_links WHERE package_id = $1 ORDER BY id")
            .bind(package_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(link_from).collect()
    }

    /// Recipient links that are due a reminder: never downloaded, never
    /// reminded, their package `available` and expiring within
    /// `window_ms` from `now` (and it was available before that window
    /// opened, so a short-lived package does not get its first mail and a
    /// reminder at once).
    pub async fn links_due_reminder(
        &self,
        now: i64,
        window_ms: i64,
        limit: u32,
    ) -> Result<Vec<(Link, String)>> {
        let rows = sqlx::query(
            "SELECT l.*, p.id AS pkg FROM moat_portal_links l JOIN moat_portal_packages p ON p.id = l.package_id
              WHERE l.recipient IS NOT NULL AND l.downloaded_at IS NULL
                AND p.state = 'available' AND p.expires_at > $1 AND p.expires_at - $2 <= $1
                AND p.updated_at < p.expires_at - $2
                AND NOT EXISTS (SELECT 1 FROM moat_portal_reminders r WHERE r.link_id = l.id)
              ORDER BY l.id LIMIT $3",
        )
        .bind(now)
        .bind(window_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((link_from(r)?, get(r, "pkg")?)))
            .collect()
    }

    /// Claim a link's reminder: true for the one caller that records it.
    pub async fn claim_reminder(&self, link_id: &str) -> Result<bool> {
        let res = sqlx::query(
            "INSERT INTO moat_portal_reminders (link_id, sent_at) VALUES ($1, $2)
             ON CONFLICT (link_id) DO NOTHING",
        )
        .bind(link_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Note a link's first download; true when this was the first.
    pub async fn link_downloaded(&self, id: &str) -> Result<bool> {
        let res = sqlx::query("UPDATE moat_portal_links SET downloaded_at = $1 WHERE id = $2 AND downloaded_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    // ---- audit (append-only)

    pub async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        package_id: Option<&str>,
        file_id: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<String> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO moat_portal_audit (id, at, actor, actor_email, action, package_id, file_id, ip, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(now_ms())
        .bind(actor.id.as_deref())
        .bind(actor.email.as_deref())
        .bind(action)
        .bind(package_id)
        .bind(file_id)
        .bind(actor.ip.as_deref())
        .bind(detail.to_string())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Audit entries, newest first, filtered; `before` is the last id seen.
    pub async fn audit_list(
        &self,
        package_id: Option<&str>,
        action: Option<&str>,
        actor: Option<&str>,
        limit: u32,
        before: Option<&str>,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM moat_portal_audit
              WHERE ($1 = '' OR package_id = $1) AND ($2 = '' OR action = $2)
                AND ($3 = '' OR actor = $3) AND ($4 = '' OR id < $4)
              ORDER BY id DESC LIMIT $5",
        )
        .bind(package_id.unwrap_or(""))
        .bind(action.unwrap_or(""))
        .bind(actor.unwrap_or(""))
        .bind(before.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let detail: String = get(r, "detail")?;
                Ok(AuditEntry {
                    id: get(r, "id")?,
                    at: get(r, "at")?,
                    actor: get(r, "actor")?,
                    actor_email: get(r, "actor_email")?,
                    action: get(r, "action")?,
                    package_id: get(r, "package_id")?,
                    file_id: get(r, "file_id")?,
                    ip: get(r, "ip")?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }

    /// Every package's wrapped key (for KEK rotation).
    pub async fn wrapped_keys(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let rows = sqlx::query("SELECT id, wrapped_key FROM moat_portal_packages")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let w: String = get(r, "wrapped_key")?;
                Ok((
                    get(r, "id")?,
                    hex::decode(w).map_err(|e| PortalError::Db(e.to_string()))?,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Change;

    async fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", d.path().join("t.db").display());
        let s = Store::open(&url).await.unwrap();
        (d, s)
    }

    async fn pkg(s: &Store) -> Package {
        let u = s
            .create_user("a@example.com", "h", Role::Member)
            .await
            .unwrap();
        s.create_package(NewPackage {
            owner_id: &u.id,
            access: "public",
            message: "m",
            password_hash: None,
            wrapped_key: b"k",
            expires_at: now_ms() + 1000,
            download_limit: Some(2),
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn settings_overrides_are_stored_and_replaced() {
        let (_d, s) = store().await;
        let (o, at, by) = s.settings_overrides().await.unwrap();
        assert_eq!(o, crate::settings::Overrides::default());
        assert!(at.is_none() && by.is_none());
        let mut o = crate::settings::Overrides {
            quota_bytes: Some(10),
            ..Default::default()
        };
        s.set_settings_overrides(&o, "a").await.unwrap();
        o.denied_types = Some(vec!["executable".into()]);
        s.set_settings_overrides(&o, "b").await.unwrap();
        let (got, at, by) = s.settings_overrides().await.unwrap();
        assert_eq!(got, o);
        assert!(at.is_some());
        assert_eq!(by.as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn a_transition_happens_once_from_the_expected_state() {
        let (_d, s) = store().await;
        let p = pkg(&s).await;
        assert_eq!(p.state, PkgState::Uploading);
        let (a, b) = tokio::join!(
            s.transition(
                &p.id,
                PkgState::Uploading,
                PkgState::Scanning,
                Change::default()
            ),
            s.transition(
                &p.id,
                PkgState::Uploading,
                PkgState::Scanning,
                Change::default()
            ),
        );
        assert_eq!([a.unwrap(), b.unwrap()].iter().filter(|m| **m).count(), 1);
        // Not from the wrong state, and never an undeclared edge.
        assert!(
            !s.transition(
                &p.id,
                PkgState::Uploading,
                PkgState::Scanning,
                Change::default()
            )
            .await
            .unwrap()
        );
        assert!(
            s.transition(
                &p.id,
                PkgState::Scanning,
                PkgState::Purged,
                Change::default()
            )
            .await
            .is_err()
        );
        let c = Change {
            reason: Some("infected"),
            ..Change::default()
        };
        assert!(
            s.transition(&p.id, PkgState::Scanning, PkgState::Quarantined, c)
                .await
                .unwrap()
        );
        let got = s.package(&p.id).await.unwrap().unwrap();
        assert_eq!(got.state, PkgState::Quarantined);
        assert_eq!(got.reason.as_deref(), Some("infected"));
    }

    #[tokio::test]
    async fn scanning_packages_with_every_file_decided_are_found_for_settling() {
        let (_d, s) = store().await;
        let p = pkg(&s).await;
        let a = s.create_file(&p.id, "a", 1).await.unwrap();
        let b = s.create_file(&p.id, "b", 1).await.unwrap();
        let empty = s
            .create_package(NewPackage {
                owner_id: &p.owner_id,
                access: "public",
                message: "",
                password_hash: None,
                wrapped_key: b"k",
                expires_at: now_ms() + 1000,
                download_limit: None,
            })
            .await
            .unwrap();
        for id in [&p.id, &empty.id] {
            assert!(
                s.transition(
                    id,
                    PkgState::Uploading,
                    PkgState::Scanning,
                    Change::default()
                )
                .await
                .unwrap()
            );
        }
        let later = now_ms() + 1;
        // One file still pending: not yet (and a package without files never).
        s.set_file_verdict(&a.id, FileStatus::Clean, Some("r1"))
            .await
            .unwrap();
        assert!(s.scanning_all_decided(later, 10).await.unwrap().is_empty());
        s.set_file_verdict(&b.id, FileStatus::Clean, Some("r2"))
            .await
            .unwrap();
        assert_eq!(
            s.scanning_all_decided(later, 10).await.unwrap(),
            vec![p.id.clone()]
        );
        // Only packages that have not changed since `before`.
        assert!(s.scanning_all_decided(0, 10).await.unwrap().is_empty());
        // Settled: no longer scanning.
        assert!(
            s.transition(
                &p.id,
                PkgState::Scanning,
                PkgState::Available,
                Change::default()
            )
            .await
            .unwrap()
        );
        assert!(s.scanning_all_decided(later, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_decided_verdict_is_never_overwritten() {
        let (_d, s) = store().await;
        let p = pkg(&s).await;
        let f = s.create_file(&p.id, "x", 1).await.unwrap();
        assert!(
            s.set_file_verdict(&f.id, FileStatus::Infected, Some("r1"))
                .await
                .unwrap()
        );
        assert!(
            !s.set_file_verdict(&f.id, FileStatus::Clean, Some("r2"))
                .await
                .unwrap()
        );
        let f = s.file(&f.id).await.unwrap().unwrap();
        assert_eq!(f.status, FileStatus::Infected);
        assert_eq!(f.scan_record_id.as_deref(), Some("r1"));
    }

    #[tokio::test]
    async fn the_download_limit_is_counted_atomically() {
        let (_d, s) = store().await;
        let p = pkg(&s).await;
        assert!(s.count_download(&p.id).await.unwrap());
        assert!(s.count_download(&p.id).await.unwrap());
        assert!(!s.count_download(&p.id).await.unwrap());
    }

    #[tokio::test]
    async fn the_last_enabled_admin_can_be_neither_demoted_nor_disabled() {
        let (_d, s) = store().await;
        let a = s
            .create_user("a@example.com", "h", Role::Admin)
            .await
            .unwrap();
        let b = s
            .create_user("b@example.com", "h", Role::Admin)
            .await
            .unwrap();
        assert!(s.set_role(&a.id, Role::Member).await.unwrap());
        assert!(!s.set_role(&b.id, Role::Member).await.unwrap());
        assert!(!s.set_disabled(&b.id, true).await.unwrap());
        assert!(s.set_role(&a.id, Role::Admin).await.unwrap());
        assert!(s.set_disabled(&b.id, true).await.unwrap());
        assert!(!s.set_disabled(&a.id, true).await.unwrap());
        assert!(s.set_disabled(&b.id, false).await.unwrap());
        let list = s.users(1, None).await.unwrap();
        assert_eq!(list.len(), 1);
        let next = s.users(10, Some(&list[0].id)).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].email, "b@example.com");
        assert!(!next[0].disabled);
    }

    #[tokio::test]
    async fn a_reset_token_works_once_and_a_newer_one_replaces_it() {
        let (_d, s) = store().await;
        let u = s
            .create_user("a@example.com", "h", Role::Member)
            .await
            .unwrap();
        let later = now_ms() + 60_000;
        s.create_reset(&u.id, "t1", later).await.unwrap();
        s.create_reset(&u.id, "t2", later).await.unwrap();
        assert_eq!(s.use_reset("t1").await.unwrap(), None);
        assert_eq!(s.use_reset("t2").await.unwrap(), Some(u.id.clone()));
        assert_eq!(s.use_reset("t2").await.unwrap(), None);
        s.create_reset(&u.id, "t3", now_ms() - 1).await.unwrap();
        assert_eq!(s.use_reset("t3").await.unwrap(), None, "expired");
    }

    #[tokio::test]
    async fn expire_now_moves_any_live_state_once_and_extend_stops_at_expiry() {
        let (_d, s) = store().await;
        let p = pkg(&s).await;
        assert!(s.set_expiry(&p.id, now_ms() + 5000).await.unwrap());
        assert!(
            s.transition(
                &p.id,
                PkgState::Uploading,
                PkgState::Scanning,
                Change::default()
            )
            .await
            .unwrap()
        );
        assert_eq!(
            s.expire_now(&p.id, "revoked").await.unwrap(),
            Some(PkgState::Scanning)
        );
        assert_eq!(s.expire_now(&p.id, "revoked").await.unwrap(), None);
        let got = s.package(&p.id).await.unwrap().unwrap();
        assert_eq!(got.state, PkgState::Expired);
        assert_eq!(got.reason.as_deref(), Some("revoked"));
        assert!(!s.set_expiry(&p.id, now_ms() + 9000).await.unwrap());
    }
}

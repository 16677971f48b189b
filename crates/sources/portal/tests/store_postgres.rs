//! The portal's management SQL on the real PostgreSQL (`MOAT_TEST_POSTGRES_URL`,
//! started by scripts/test-deps.sh), in a schema of its own: the same
//! statements the SQLite unit tests run, on the other dialect.

use moat_portal::state::PkgState;
use moat_portal::store::{NewPackage, Role, Store, now_ms};

fn pg_base() -> String {
    std::env::var("MOAT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn store() -> Store {
    let schema = format!("moat_portal_test_{}", std::process::id());
    let admin = Store::open(&pg_base())
        .await
        .expect("PostgreSQL must be running (scripts/test-deps.sh starts it)");
    for q in [
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
    ] {
        sqlx::query(&q).execute(admin.pool()).await.unwrap();
    }
    Store::open(&format!("{}?options=-csearch_path%3D{schema}", pg_base()))
        .await
        .unwrap()
}

#[tokio::test]
async fn users_resets_revoke_extend_and_settings_run_on_postgres() {
    let s = store().await;
    assert_eq!(s.backend(), "postgres");
    let a = s
        .create_user("a@example.com", "h", Role::Admin)
        .await
        .unwrap();
    let m = s
        .create_user("m@example.com", "h", Role::Member)
        .await
        .unwrap();
    // The last enabled admin stays one.
    assert!(!s.set_role(&a.id, Role::Member).await.unwrap());
    assert!(!s.set_disabled(&a.id, true).await.unwrap());
    assert!(s.set_role(&m.id, Role::Admin).await.unwrap());
    assert!(s.set_disabled(&a.id, true).await.unwrap());
    assert!(!s.set_disabled(&m.id, true).await.unwrap());
    assert!(s.set_disabled(&a.id, false).await.unwrap());
    let page = s.users(1, None).await.unwrap();
    assert_eq!(page[0].email, "a@example.com");
    let next = s.users(5, Some(&page[0].id)).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].role, Role::Admin);
    // Sessions end together; a reset token works once.
    let sid = s.create_session(&m.id, now_ms() + 60_000).await.unwrap();
    assert!(s.session_live(&sid, &m.id).await.unwrap().is_some());
    assert_eq!(s.revoke_user_sessions(&m.id).await.unwrap(), 1);
    assert!(s.session_live(&sid, &m.id).await.unwrap().is_none());
    s.create_reset(&m.id, "hash", now_ms() + 60_000)
        .await
        .unwrap();
    assert_eq!(s.use_reset("hash").await.unwrap(), Some(m.id.clone()));
    assert_eq!(s.use_reset("hash").await.unwrap(), None);
    assert!(s.set_password_hash(&m.id, "h2").await.unwrap());
    // Extend, then revoke from a live state; no extend after.
    let p = s
        .create_package(NewPackage {
            owner_id: &m.id,
            access: "public",
            message: "",
            password_hash: None,
            wrapped_key: b"k",
            expires_at: now_ms() + 1000,
            download_limit: None,
        })
        .await
        .unwrap();
    let later = now_ms() + 50_000;
    assert!(s.set_expiry(&p.id, later).await.unwrap());
    assert_eq!(s.package(&p.id).await.unwrap().unwrap().expires_at, later);
    assert_eq!(
        s.expire_now(&p.id, "revoked").await.unwrap(),
        Some(PkgState::Uploading)
    );
    assert_eq!(s.expire_now(&p.id, "revoked").await.unwrap(), None);
    assert!(!s.set_expiry(&p.id, later + 1).await.unwrap());
    // The admin's settings: an upsert, replaced whole.
    let mut o = moat_portal::settings::Overrides {
        quota_bytes: Some(5),
        ..Default::default()
    };
    s.set_settings_overrides(&o, "a@example.com").await.unwrap();
    o.allowed_types = Some(vec!["image/*".into()]);
    s.set_settings_overrides(&o, "m@example.com").await.unwrap();
    let (got, at, by) = s.settings_overrides().await.unwrap();
    assert_eq!(got, o);
    assert!(at.is_some());
    assert_eq!(by.as_deref(), Some("m@example.com"));
}

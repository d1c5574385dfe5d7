//! The metadata store conformance suite: the same checks on SQLite and on PostgreSQL.

#[path = "../common/postgres_env.rs"]
mod postgres_env;
#[path = "../common/unique.rs"]
mod unique;

use std::sync::Arc;

use chrono::Utc;
use storage::{ApiKeyStatus, MetaError, MetaStore, NewApiKey, NewTenant, NewUser, RoleType};

struct Backend {
    name: &'static str,
    store: Arc<dyn MetaStore>,
    _dir: Option<tempfile::TempDir>,
}

async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = storage_sqlite::SqliteMetaStore::open(&dir.path().join("meta.db"))
        .await
        .expect("sqlite opens");
    let mut out = vec![Backend {
        name: "sqlite",
        store: Arc::new(sqlite),
        _dir: Some(dir),
    }];
    if let Some(url) = postgres_env::fresh_postgres().await {
        let pg = storage_postgres::PostgresMetaStore::connect(&url)
            .await
            .expect("postgres connects and migrates");
        out.push(Backend {
            name: "postgres",
            store: Arc::new(pg),
            _dir: None,
        });
    }
    out
}

fn key(key_id: &str, workspace_id: &str, tenant_id: &str, created_by: Option<String>) -> NewApiKey {
    NewApiKey {
        key_id: key_id.into(),
        secret_hash: "argon2-hash".into(),
        name: "ingest".into(),
        description: "from the suite".into(),
        workspace_id: workspace_id.into(),
        tenant_id: tenant_id.into(),
        permissions: vec!["traces:write".into(), "logs:write".into()],
        expires_at: Some(Utc::now() + chrono::Duration::days(30)),
        rate_limit: Some(100),
        created_by,
    }
}

#[tokio::test]
async fn bootstrap_happens_once_and_makes_an_admin() {
    for b in backends().await {
        let s = b.store.as_ref();
        assert!(
            s.bootstrap("Admin@Example.com", "h1")
                .await
                .expect("bootstrap"),
            "{}",
            b.name
        );
        assert!(
            !s.bootstrap("other@example.com", "h2")
                .await
                .expect("bootstrap"),
            "{}",
            b.name
        );
        let admin = s
            .user_by_email("admin@example.COM")
            .await
            .expect("query")
            .unwrap_or_else(|| panic!("{}: emails match case-insensitively", b.name));
        assert_eq!(admin.roles, vec![RoleType::Admin], "{}", b.name);
        assert_eq!(admin.password_hash, "h1");
        assert!(admin.is_active);
        assert!(
            s.user_by_email("other@example.com")
                .await
                .expect("query")
                .is_none()
        );
        s.ping().await.expect("ping");
    }
}

#[tokio::test]
async fn tenants_users_and_keys_keep_their_scope() {
    for b in backends().await {
        let s = b.store.as_ref();
        s.bootstrap("admin@example.com", "h")
            .await
            .expect("bootstrap");
        let admin = s
            .user_by_email("admin@example.com")
            .await
            .expect("query")
            .expect("admin");
        let ws = admin.scope.workspace_id.clone();
        let t2 = s
            .create_tenant(NewTenant {
                workspace_id: ws.clone(),
                name: "Second".into(),
                code: "second".into(),
            })
            .await
            .expect("tenant");
        assert_eq!(
            t2.organization_id, admin.scope.organization_id,
            "{}",
            b.name
        );
        assert_eq!(
            s.tenant(&t2.tenant_id)
                .await
                .expect("q")
                .expect("found")
                .code,
            "second"
        );
        assert!(s.tenant("no-such-tenant").await.expect("q").is_none());
        let dup = s
            .create_tenant(NewTenant {
                workspace_id: ws.clone(),
                name: "Again".into(),
                code: "second".into(),
            })
            .await;
        assert!(
            matches!(dup, Err(MetaError::Conflict(_))),
            "{}: {dup:?}",
            b.name
        );
        let nowhere = s
            .create_tenant(NewTenant {
                workspace_id: "no-such-workspace".into(),
                name: "X".into(),
                code: "x".into(),
            })
            .await;
        assert!(
            matches!(nowhere, Err(MetaError::NotFound(_))),
            "{}: {nowhere:?}",
            b.name
        );

        let viewer = s
            .create_user(NewUser {
                tenant_id: t2.tenant_id.clone(),
                email: "viewer@example.com".into(),
                password_hash: "vh".into(),
                first_name: "V".into(),
                last_name: "W".into(),
                role: RoleType::Viewer,
            })
            .await
            .expect("user");
        assert_eq!(viewer.scope.tenant_id, t2.tenant_id);
        let again = s
            .create_user(NewUser {
                tenant_id: t2.tenant_id.clone(),
                email: "VIEWER@example.com".into(),
                password_hash: "x".into(),
                first_name: String::new(),
                last_name: String::new(),
                role: RoleType::Viewer,
            })
            .await;
        assert!(
            matches!(again, Err(MetaError::Conflict(_))),
            "{}: {again:?}",
            b.name
        );
        let found = s
            .user_by_email("viewer@example.com")
            .await
            .expect("q")
            .expect("viewer");
        assert_eq!(found.roles, vec![RoleType::Viewer], "{}", b.name);
        assert_eq!(found.scope, viewer.scope);

        let k = s
            .create_api_key(key(
                "tfk-0011223344556677",
                &ws,
                &t2.tenant_id,
                Some(admin.user_id.clone()),
            ))
            .await
            .expect("key");
        assert_eq!(k.scope, t2.scope_like(), "{}", b.name);
        assert_eq!(k.permissions, vec!["logs:write", "traces:write"]);
        assert_eq!(k.status, ApiKeyStatus::Active);
        assert_eq!(k.rate_limit, Some(100));
        assert!(k.expires_at.is_some());
        let dup = s
            .create_api_key(key("tfk-0011223344556677", &ws, &t2.tenant_id, None))
            .await;
        assert!(
            matches!(dup, Err(MetaError::Conflict(_))),
            "{}: {dup:?}",
            b.name
        );
        s.record_api_key_usage(&[(k.key_id.clone(), 3, Utc::now(), "127.0.0.1".into())])
            .await
            .expect("usage");
        let read = s.api_key(&k.key_id).await.expect("q").expect("key");
        assert_eq!(read.api_key_id, k.api_key_id);
        assert!(
            s.api_key("tfk-ffffffffffffffff")
                .await
                .expect("q")
                .is_none()
        );
    }
}

trait ScopeLike {
    fn scope_like(&self) -> model::Scope;
}

impl ScopeLike for storage::TenantRecord {
    fn scope_like(&self) -> model::Scope {
        model::Scope {
            organization_id: self.organization_id.clone(),
            workspace_id: self.workspace_id.clone(),
            tenant_id: self.tenant_id.clone(),
        }
    }
}

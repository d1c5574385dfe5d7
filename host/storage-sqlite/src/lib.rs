//! The metadata store on SQLite (the embedded default), implementing [`storage::MetaStore`].
//!
//! Migrations are `migrations/sqlite/*.sql`, embedded at build time and applied at open,
//! recorded in `_sqlx_migrations`. Timestamps are RFC 3339 UTC text with microseconds, so text
//! order is time order.

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use model::Scope;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, SqlitePool};
use storage::{
    ApiKeyRecord, ApiKeyStatus, MetaError, MetaStore, NewApiKey, NewTenant, NewUser, RoleType,
    TenantRecord, UserRecord,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

fn backend(e: impl std::fmt::Display) -> MetaError {
    MetaError::Backend(e.to_string())
}

fn conflict_or_backend(e: sqlx::Error, what: &str) -> MetaError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            MetaError::Conflict(what.to_string())
        }
        _ => backend(e),
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn now() -> String {
    ts(Utc::now())
}

fn parse_ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|d| d.with_timezone(&Utc))
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The SQLite metadata store.
#[derive(Debug, Clone)]
pub struct SqliteMetaStore {
    pool: SqlitePool,
}

impl SqliteMetaStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    ///
    /// # Errors
    /// When the file cannot be opened or a migration fails.
    pub async fn open(path: &Path) -> Result<SqliteMetaStore, MetaError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(backend)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(backend)?;
        MIGRATOR.run(&pool).await.map_err(backend)?;
        Ok(SqliteMetaStore { pool })
    }

    async fn insert_roles(
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        tenant_id: &str,
        at: &str,
    ) -> Result<Vec<(RoleType, String)>, MetaError> {
        let mut ids = Vec::new();
        for role in RoleType::ALL {
            let role_id = new_id();
            sqlx::query(
                "INSERT INTO roles (role_id, tenant_id, name, description, role_type, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&role_id)
            .bind(tenant_id)
            .bind(role.as_str())
            .bind(format!("built-in {} role", role.as_str()))
            .bind(role.as_str())
            .bind(at)
            .bind(at)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
            for perm in role.default_permissions() {
                sqlx::query(
                    "INSERT INTO role_permissions (role_permission_id, role_id, permission_id, granted_at) \
                     VALUES (?, ?, ?, ?)",
                )
                .bind(new_id())
                .bind(&role_id)
                .bind(perm)
                .bind(at)
                .execute(&mut **tx)
                .await
                .map_err(backend)?;
            }
            ids.push((role, role_id));
        }
        Ok(ids)
    }

    async fn roles_of(&self, user_id: &str) -> Result<Vec<RoleType>, MetaError> {
        let rows = sqlx::query(
            "SELECT r.role_type FROM user_roles ur JOIN roles r ON r.role_id = ur.role_id \
             WHERE ur.user_id = ? AND (ur.expires_at IS NULL OR ur.expires_at > ?)",
        )
        .bind(user_id)
        .bind(now())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows
            .iter()
            .filter_map(|r| RoleType::parse(&r.get::<String, _>(0)))
            .collect())
    }

    fn api_key_from_row(row: &SqliteRow, permissions: Vec<String>) -> ApiKeyRecord {
        ApiKeyRecord {
            api_key_id: row.get("api_key_id"),
            key_id: row.get("key_id"),
            secret_hash: row.get("secret_hash"),
            name: row.get("name"),
            scope: Scope {
                organization_id: row.get("organization_id"),
                workspace_id: row.get("workspace_id"),
                tenant_id: row.get("tenant_id"),
            },
            status: ApiKeyStatus::parse(&row.get::<String, _>("status"))
                .unwrap_or(ApiKeyStatus::Revoked),
            permissions,
            expires_at: parse_ts(row.get("expires_at")),
            grace_period_expires_at: parse_ts(row.get("grace_period_expires_at")),
            rate_limit: row.get("rate_limit"),
            created_at: parse_ts(row.get("created_at")).unwrap_or_default(),
        }
    }
}

const USER_SELECT: &str = "SELECT u.user_id, u.email, u.password_hash, u.is_active, u.organization_id, \
     t.workspace_id, u.tenant_id FROM users u JOIN tenants t ON t.tenant_id = u.tenant_id";

const KEY_SELECT: &str = "SELECT k.*, w.organization_id FROM api_keys k \
     JOIN workspaces w ON w.workspace_id = k.workspace_id";

#[async_trait]
impl MetaStore for SqliteMetaStore {
    async fn bootstrap(
        &self,
        admin_email: &str,
        admin_password_hash: &str,
    ) -> Result<bool, MetaError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM organizations")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        if existing > 0 {
            return Ok(false);
        }
        let at = now();
        let (region, org, ws, tenant, user) = (new_id(), new_id(), new_id(), new_id(), new_id());
        sqlx::query("INSERT INTO regions (region_id, name, code, description, created_at, updated_at) VALUES (?, 'Default', 'default', 'created at first start', ?, ?)")
            .bind(&region).bind(&at).bind(&at).execute(&mut *tx).await.map_err(backend)?;
        sqlx::query("INSERT INTO organizations (organization_id, region_id, name, code, created_at, updated_at) VALUES (?, ?, 'Default', 'default', ?, ?)")
            .bind(&org).bind(&region).bind(&at).bind(&at).execute(&mut *tx).await.map_err(backend)?;
        sqlx::query("INSERT INTO workspaces (workspace_id, organization_id, name, code, created_at, updated_at) VALUES (?, ?, 'Default', 'default', ?, ?)")
            .bind(&ws).bind(&org).bind(&at).bind(&at).execute(&mut *tx).await.map_err(backend)?;
        sqlx::query("INSERT INTO tenants (tenant_id, workspace_id, name, code, created_at, updated_at) VALUES (?, ?, 'Default', 'default', ?, ?)")
            .bind(&tenant).bind(&ws).bind(&at).bind(&at).execute(&mut *tx).await.map_err(backend)?;
        let roles = Self::insert_roles(&mut tx, &tenant, &at).await?;
        sqlx::query("INSERT INTO users (user_id, organization_id, tenant_id, email, password_hash, first_name, email_verified, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'Admin', 1, ?, ?)")
            .bind(&user).bind(&org).bind(&tenant).bind(admin_email).bind(admin_password_hash).bind(&at).bind(&at)
            .execute(&mut *tx).await.map_err(backend)?;
        let admin_role = roles
            .iter()
            .find(|(r, _)| *r == RoleType::Admin)
            .map(|(_, id)| id.clone())
            .ok_or_else(|| backend("admin role missing"))?;
        sqlx::query("INSERT INTO user_roles (user_role_id, user_id, role_id, tenant_id, assigned_at) VALUES (?, ?, ?, ?, ?)")
            .bind(new_id()).bind(&user).bind(&admin_role).bind(&tenant).bind(&at)
            .execute(&mut *tx).await.map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, MetaError> {
        let row = sqlx::query(&format!(
            "{USER_SELECT} WHERE u.email = ? AND u.deleted_at IS NULL"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let user_id: String = row.get("user_id");
        let roles = self.roles_of(&user_id).await?;
        Ok(Some(UserRecord {
            user_id,
            email: row.get("email"),
            password_hash: row.get("password_hash"),
            is_active: row.get::<i64, _>("is_active") != 0,
            scope: Scope {
                organization_id: row.get("organization_id"),
                workspace_id: row.get("workspace_id"),
                tenant_id: row.get("tenant_id"),
            },
            roles,
        }))
    }

    async fn create_user(&self, user: NewUser) -> Result<UserRecord, MetaError> {
        let tenant = self
            .tenant(&user.tenant_id)
            .await?
            .ok_or(MetaError::NotFound("tenant"))?;
        let at = now();
        let user_id = new_id();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("INSERT INTO users (user_id, organization_id, tenant_id, email, password_hash, first_name, last_name, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(&user_id).bind(&tenant.organization_id).bind(&tenant.tenant_id).bind(&user.email)
            .bind(&user.password_hash).bind(&user.first_name).bind(&user.last_name).bind(&at).bind(&at)
            .execute(&mut *tx).await.map_err(|e| conflict_or_backend(e, "a user with this email"))?;
        let role_id: String = sqlx::query_scalar("SELECT role_id FROM roles WHERE tenant_id = ? AND role_type = ? ORDER BY created_at LIMIT 1")
            .bind(&tenant.tenant_id).bind(user.role.as_str())
            .fetch_one(&mut *tx).await.map_err(backend)?;
        sqlx::query("INSERT INTO user_roles (user_role_id, user_id, role_id, tenant_id, assigned_at) VALUES (?, ?, ?, ?, ?)")
            .bind(new_id()).bind(&user_id).bind(&role_id).bind(&tenant.tenant_id).bind(&at)
            .execute(&mut *tx).await.map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(UserRecord {
            user_id,
            email: user.email,
            password_hash: user.password_hash,
            scope: Scope {
                organization_id: tenant.organization_id,
                workspace_id: tenant.workspace_id,
                tenant_id: tenant.tenant_id,
            },
            is_active: true,
            roles: vec![user.role],
        })
    }

    async fn tenant(&self, tenant_id: &str) -> Result<Option<TenantRecord>, MetaError> {
        let row = sqlx::query(
            "SELECT t.tenant_id, t.workspace_id, w.organization_id, t.name, t.code FROM tenants t \
             JOIN workspaces w ON w.workspace_id = t.workspace_id \
             WHERE t.tenant_id = ? AND t.deleted_at IS NULL",
        )
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(row.map(|r| TenantRecord {
            tenant_id: r.get("tenant_id"),
            workspace_id: r.get("workspace_id"),
            organization_id: r.get("organization_id"),
            name: r.get("name"),
            code: r.get("code"),
        }))
    }

    async fn create_tenant(&self, tenant: NewTenant) -> Result<TenantRecord, MetaError> {
        let org: Option<String> = sqlx::query_scalar(
            "SELECT organization_id FROM workspaces WHERE workspace_id = ? AND deleted_at IS NULL",
        )
        .bind(&tenant.workspace_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let org = org.ok_or(MetaError::NotFound("workspace"))?;
        let at = now();
        let tenant_id = new_id();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("INSERT INTO tenants (tenant_id, workspace_id, name, code, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&tenant_id).bind(&tenant.workspace_id).bind(&tenant.name).bind(&tenant.code).bind(&at).bind(&at)
            .execute(&mut *tx).await.map_err(|e| conflict_or_backend(e, "a tenant with this code"))?;
        Self::insert_roles(&mut tx, &tenant_id, &at).await?;
        tx.commit().await.map_err(backend)?;
        Ok(TenantRecord {
            tenant_id,
            workspace_id: tenant.workspace_id,
            organization_id: org,
            name: tenant.name,
            code: tenant.code,
        })
    }

    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKeyRecord, MetaError> {
        let at = now();
        let api_key_id = new_id();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("INSERT INTO api_keys (api_key_id, workspace_id, tenant_id, key_id, secret_hash, name, description, status, expires_at, rate_limit, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?)")
            .bind(&api_key_id).bind(&key.workspace_id).bind(&key.tenant_id).bind(&key.key_id)
            .bind(&key.secret_hash).bind(&key.name).bind(&key.description)
            .bind(key.expires_at.map(ts)).bind(key.rate_limit).bind(&key.created_by).bind(&at).bind(&at)
            .execute(&mut *tx).await.map_err(|e| conflict_or_backend(e, "an API key with this id"))?;
        for p in &key.permissions {
            sqlx::query("INSERT INTO api_key_permissions (permission_id, api_key_id, permission, granted_at) VALUES (?, ?, ?, ?)")
                .bind(new_id()).bind(&api_key_id).bind(p).bind(&at)
                .execute(&mut *tx).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        self.api_key(&key.key_id)
            .await?
            .ok_or(MetaError::NotFound("api key"))
    }

    async fn api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, MetaError> {
        let row = sqlx::query(&format!("{KEY_SELECT} WHERE k.key_id = ?"))
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let api_key_id: String = row.get("api_key_id");
        let permissions: Vec<String> = sqlx::query_scalar(
            "SELECT permission FROM api_key_permissions WHERE api_key_id = ? ORDER BY permission",
        )
        .bind(&api_key_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(Some(Self::api_key_from_row(&row, permissions)))
    }

    async fn record_api_key_usage(
        &self,
        usage: &[(String, u64, DateTime<Utc>, String)],
    ) -> Result<(), MetaError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        for (key_id, uses, at, ip) in usage {
            sqlx::query("UPDATE api_keys SET usage_count = usage_count + ?, last_used_at = ?, last_used_ip = ? WHERE key_id = ?")
                .bind(i64::try_from(*uses).unwrap_or(i64::MAX)).bind(ts(*at)).bind(ip).bind(key_id)
                .execute(&mut *tx).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn ping(&self) -> Result<(), MetaError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bootstrap_once_then_users_tenants_and_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteMetaStore::open(&dir.path().join("meta.db"))
            .await
            .expect("open");
        assert!(
            store
                .bootstrap("admin@example.com", "hash")
                .await
                .expect("bootstrap")
        );
        assert!(
            !store
                .bootstrap("other@example.com", "hash")
                .await
                .expect("bootstrap")
        );
        let admin = store
            .user_by_email("ADMIN@example.com")
            .await
            .expect("q")
            .expect("admin");
        assert_eq!(admin.roles, vec![RoleType::Admin]);

        let t2 = store
            .create_tenant(NewTenant {
                workspace_id: admin.scope.workspace_id.clone(),
                name: "Second".into(),
                code: "second".into(),
            })
            .await
            .expect("tenant");
        assert_eq!(t2.organization_id, admin.scope.organization_id);
        let dup = store
            .create_tenant(NewTenant {
                workspace_id: admin.scope.workspace_id.clone(),
                name: "Again".into(),
                code: "second".into(),
            })
            .await;
        assert!(matches!(dup, Err(MetaError::Conflict(_))));

        let key = store
            .create_api_key(NewApiKey {
                key_id: "tfk-0011223344556677".into(),
                secret_hash: "h".into(),
                name: "ingest".into(),
                description: String::new(),
                workspace_id: t2.workspace_id.clone(),
                tenant_id: t2.tenant_id.clone(),
                permissions: vec!["logs:write".into(), "traces:write".into()],
                expires_at: None,
                rate_limit: None,
                created_by: Some(admin.user_id.clone()),
            })
            .await
            .expect("key");
        assert_eq!(key.scope.tenant_id, t2.tenant_id);
        assert_eq!(key.permissions, vec!["logs:write", "traces:write"]);
        assert_eq!(key.status, ApiKeyStatus::Active);
        store
            .record_api_key_usage(&[(key.key_id.clone(), 3, Utc::now(), "127.0.0.1".into())])
            .await
            .expect("usage");
    }
}

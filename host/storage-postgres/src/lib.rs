//! The metadata store on PostgreSQL (`--meta-store postgres --database-url postgres://…`),
//! implementing [`storage::MetaStore`] with the same behaviour as the SQLite store (one
//! conformance suite runs on both).
//!
//! Migrations are `migrations/postgres/*.sql`, embedded at build time and applied at connect in
//! a transaction each, recorded in `_sqlx_migrations`. Times are `timestamptz`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use model::Scope;
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};
use storage::{
    ApiKeyRecord, ApiKeyStatus, MetaError, MetaStore, NewApiKey, NewTenant, NewUser, RoleType,
    TenantRecord, UserRecord,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

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

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The PostgreSQL metadata store.
#[derive(Debug, Clone)]
pub struct PostgresMetaStore {
    pool: PgPool,
}

impl PostgresMetaStore {
    /// Connects to `url` and applies pending migrations.
    ///
    /// # Errors
    /// When the server cannot be reached or a migration fails.
    pub async fn connect(url: &str) -> Result<PostgresMetaStore, MetaError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(backend)?;
        MIGRATOR.run(&pool).await.map_err(backend)?;
        Ok(PostgresMetaStore { pool })
    }

    async fn insert_roles(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        tenant_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<(RoleType, String)>, MetaError> {
        let mut ids = Vec::new();
        for role in RoleType::ALL {
            let role_id = new_id();
            sqlx::query(
                "INSERT INTO roles (role_id, tenant_id, name, description, role_type, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(&role_id)
            .bind(tenant_id)
            .bind(role.as_str())
            .bind(format!("built-in {} role", role.as_str()))
            .bind(role.as_str())
            .bind(at)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
            for perm in role.default_permissions() {
                sqlx::query(
                    "INSERT INTO role_permissions (role_permission_id, role_id, permission_id, granted_at) \
                     VALUES ($1, $2, $3, $4)",
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
             WHERE ur.user_id = $1 AND (ur.expires_at IS NULL OR ur.expires_at > now())",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows
            .iter()
            .filter_map(|r| RoleType::parse(&r.get::<String, _>(0)))
            .collect())
    }

    fn api_key_from_row(row: &PgRow, permissions: Vec<String>) -> ApiKeyRecord {
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
            expires_at: row.get("expires_at"),
            grace_period_expires_at: row.get("grace_period_expires_at"),
            rate_limit: row.get("rate_limit"),
            created_at: row.get("created_at"),
        }
    }
}

const USER_SELECT: &str = "SELECT u.user_id, u.email, u.password_hash, u.is_active, u.organization_id, \
     t.workspace_id, u.tenant_id FROM users u JOIN tenants t ON t.tenant_id = u.tenant_id";

const KEY_SELECT: &str = "SELECT k.*, w.organization_id FROM api_keys k \
     JOIN workspaces w ON w.workspace_id = k.workspace_id";

#[async_trait]
impl MetaStore for PostgresMetaStore {
    async fn bootstrap(
        &self,
        admin_email: &str,
        admin_password_hash: &str,
    ) -> Result<bool, MetaError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // Two servers starting at once: the second waits here, then sees the first's rows.
        sqlx::query("LOCK TABLE organizations IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM organizations")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        if existing > 0 {
            return Ok(false);
        }
        let at = Utc::now();
        let (region, org, ws, tenant, user) = (new_id(), new_id(), new_id(), new_id(), new_id());
        sqlx::query("INSERT INTO regions (region_id, name, code, description, created_at, updated_at) VALUES ($1, 'Default', 'default', 'created at first start', $2, $2)")
            .bind(&region).bind(at).execute(&mut *tx).await.map_err(backend)?;
        sqlx::query("INSERT INTO organizations (organization_id, region_id, name, code, created_at, updated_at) VALUES ($1, $2, 'Default', 'default', $3, $3)")
            .bind(&org).bind(&region).bind(at).execute(&mut *tx).await.map_err(backend)?;
        sqlx::query("INSERT INTO workspaces (workspace_id, organization_id, name, code, created_at, updated_at) VALUES ($1, $2, 'Default', 'default', $3, $3)")
            .bind(&ws).bind(&org).bind(at).execute(&mut *tx).await.map_err(backend)?;
        sqlx::query("INSERT INTO tenants (tenant_id, workspace_id, name, code, created_at, updated_at) VALUES ($1, $2, 'Default', 'default', $3, $3)")
            .bind(&tenant).bind(&ws).bind(at).execute(&mut *tx).await.map_err(backend)?;
        let roles = Self::insert_roles(&mut tx, &tenant, at).await?;
        sqlx::query("INSERT INTO users (user_id, organization_id, tenant_id, email, password_hash, first_name, email_verified, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'Admin', TRUE, $6, $6)")
            .bind(&user).bind(&org).bind(&tenant).bind(admin_email).bind(admin_password_hash).bind(at)
            .execute(&mut *tx).await.map_err(backend)?;
        let admin_role = roles
            .iter()
            .find(|(r, _)| *r == RoleType::Admin)
            .map(|(_, id)| id.clone())
            .ok_or_else(|| backend("admin role missing"))?;
        sqlx::query("INSERT INTO user_roles (user_role_id, user_id, role_id, tenant_id, assigned_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(new_id()).bind(&user).bind(&admin_role).bind(&tenant).bind(at)
            .execute(&mut *tx).await.map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, MetaError> {
        let row = sqlx::query(&format!(
            "{USER_SELECT} WHERE lower(u.email) = lower($1) AND u.deleted_at IS NULL"
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
            is_active: row.get::<bool, _>("is_active"),
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
        let at = Utc::now();
        let user_id = new_id();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("INSERT INTO users (user_id, organization_id, tenant_id, email, password_hash, first_name, last_name, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)")
            .bind(&user_id).bind(&tenant.organization_id).bind(&tenant.tenant_id).bind(&user.email)
            .bind(&user.password_hash).bind(&user.first_name).bind(&user.last_name).bind(at)
            .execute(&mut *tx).await.map_err(|e| conflict_or_backend(e, "a user with this email"))?;
        let role_id: String = sqlx::query_scalar("SELECT role_id FROM roles WHERE tenant_id = $1 AND role_type = $2 ORDER BY created_at LIMIT 1")
            .bind(&tenant.tenant_id).bind(user.role.as_str())
            .fetch_one(&mut *tx).await.map_err(backend)?;
        sqlx::query("INSERT INTO user_roles (user_role_id, user_id, role_id, tenant_id, assigned_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(new_id()).bind(&user_id).bind(&role_id).bind(&tenant.tenant_id).bind(at)
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
             WHERE t.tenant_id = $1 AND t.deleted_at IS NULL",
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
            "SELECT organization_id FROM workspaces WHERE workspace_id = $1 AND deleted_at IS NULL",
        )
        .bind(&tenant.workspace_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let org = org.ok_or(MetaError::NotFound("workspace"))?;
        let at = Utc::now();
        let tenant_id = new_id();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("INSERT INTO tenants (tenant_id, workspace_id, name, code, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)")
            .bind(&tenant_id).bind(&tenant.workspace_id).bind(&tenant.name).bind(&tenant.code).bind(at)
            .execute(&mut *tx).await.map_err(|e| conflict_or_backend(e, "a tenant with this code"))?;
        Self::insert_roles(&mut tx, &tenant_id, at).await?;
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
        let at = Utc::now();
        let api_key_id = new_id();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("INSERT INTO api_keys (api_key_id, workspace_id, tenant_id, key_id, secret_hash, name, description, status, expires_at, rate_limit, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9, $10, $11, $11)")
            .bind(&api_key_id).bind(&key.workspace_id).bind(&key.tenant_id).bind(&key.key_id)
            .bind(&key.secret_hash).bind(&key.name).bind(&key.description)
            .bind(key.expires_at).bind(key.rate_limit).bind(&key.created_by).bind(at)
            .execute(&mut *tx).await.map_err(|e| conflict_or_backend(e, "an API key with this id"))?;
        for p in &key.permissions {
            sqlx::query("INSERT INTO api_key_permissions (permission_id, api_key_id, permission, granted_at) VALUES ($1, $2, $3, $4)")
                .bind(new_id()).bind(&api_key_id).bind(p).bind(at)
                .execute(&mut *tx).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        self.api_key(&key.key_id)
            .await?
            .ok_or(MetaError::NotFound("api key"))
    }

    async fn api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, MetaError> {
        let row = sqlx::query(&format!("{KEY_SELECT} WHERE k.key_id = $1"))
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let api_key_id: String = row.get("api_key_id");
        let permissions: Vec<String> = sqlx::query_scalar(
            "SELECT permission FROM api_key_permissions WHERE api_key_id = $1 ORDER BY permission",
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
            sqlx::query("UPDATE api_keys SET usage_count = usage_count + $1, last_used_at = $2, last_used_ip = $3 WHERE key_id = $4")
                .bind(i64::try_from(*uses).unwrap_or(i64::MAX)).bind(*at).bind(ip).bind(key_id)
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

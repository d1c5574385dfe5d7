//! [`SqlMetaStore`]: the [`MetaStore`] port over any [`Db`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use model::Scope;
use storage::{
    ApiKeyRecord, ApiKeyStatus, ApiKeyUsage, ConsumedToken, Entity, EntityPatch, InvitationRecord,
    MetaError, MetaStore, MfaRecord, NewApiKey, NewInvitation, NewOrganization, NewPlugin,
    NewSession, NewTenant, NewUser, OneTimeKind, OrganizationRecord, Page, PluginRecord,
    PurgeReport, RefreshOutcome, RegionRecord, RoleGrant, RoleRecord, RoleType, SessionRecord,
    TenantRecord, UserPatch, UserRecord, Within, WorkspaceRecord, is_permission,
};

use crate::args;
use crate::db::{Db, DbError, Row, Tx, Value};

pub(crate) fn backend(e: DbError) -> MetaError {
    MetaError::Backend(e.to_string())
}

/// Maps a unique violation to a conflict naming `what`.
pub(crate) fn conflict(what: &'static str) -> impl Fn(DbError) -> MetaError {
    move |e| match e {
        DbError::Unique(_) => MetaError::Conflict(what.to_string()),
        DbError::Other(m) => MetaError::Backend(m),
    }
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

const MAX_PAGE: u32 = 500;

/// A statement built from parts, numbering its parameters.
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) args: Vec<Value>,
}

impl Sql {
    pub(crate) fn new(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            args: Vec::new(),
        }
    }

    /// Appends `part`, where `?` stands for `v`.
    pub(crate) fn push(&mut self, part: &str, v: impl Into<Value>) -> &mut Sql {
        self.args.push(v.into());
        let n = self.args.len();
        self.text.push_str(&part.replace('?', &format!("${n}")));
        self
    }

    fn raw(&mut self, part: &str) -> &mut Sql {
        self.text.push_str(part);
        self
    }

    pub(crate) fn page(&mut self, key: &str, page: &Page) -> &mut Sql {
        if let Some(after) = &page.after {
            self.push(&format!(" AND {key} > ?"), after.clone());
        }
        let limit = i64::from(page.limit.clamp(1, MAX_PAGE));
        self.push(&format!(" ORDER BY {key} LIMIT ?"), limit)
    }
}

/// Rows that are live: not deleted and active all the way up.
const LIVE: &str = "t.deleted_at IS NULL AND w.deleted_at IS NULL AND o.deleted_at IS NULL \
     AND t.is_active = TRUE AND w.is_active = TRUE AND o.is_active = TRUE";

const TENANT_SELECT: &str = "SELECT t.tenant_id, t.workspace_id, w.organization_id, t.name, t.code, \
     t.domain, t.is_active, t.deleted_at, t.created_at FROM tenants t \
     JOIN workspaces w ON w.workspace_id = t.workspace_id \
     JOIN organizations o ON o.organization_id = w.organization_id";

const USER_SELECT: &str = "SELECT u.*, t.workspace_id FROM users u \
     JOIN tenants t ON t.tenant_id = u.tenant_id \
     JOIN workspaces w ON w.workspace_id = t.workspace_id \
     JOIN organizations o ON o.organization_id = w.organization_id";

const KEY_SELECT: &str = "SELECT k.*, w.organization_id, \
     CASE WHEN t.deleted_at IS NULL AND w.deleted_at IS NULL AND o.deleted_at IS NULL \
          AND t.is_active = TRUE AND w.is_active = TRUE AND o.is_active = TRUE \
          THEN 1 ELSE 0 END AS owner_live \
     FROM api_keys k JOIN tenants t ON t.tenant_id = k.tenant_id \
     JOIN workspaces w ON w.workspace_id = k.workspace_id \
     JOIN organizations o ON o.organization_id = w.organization_id";

fn tenant_from(r: &Row) -> Result<TenantRecord, DbError> {
    Ok(TenantRecord {
        tenant_id: r.text("tenant_id")?,
        workspace_id: r.text("workspace_id")?,
        organization_id: r.text("organization_id")?,
        name: r.text("name")?,
        code: r.text("code")?,
        domain: r.text("domain")?,
        is_active: r.bool("is_active")?,
        deleted_at: r.opt_time("deleted_at")?,
        created_at: r.time("created_at")?,
    })
}

fn workspace_from(r: &Row) -> Result<WorkspaceRecord, DbError> {
    Ok(WorkspaceRecord {
        workspace_id: r.text("workspace_id")?,
        organization_id: r.text("organization_id")?,
        name: r.text("name")?,
        code: r.text("code")?,
        description: r.text("description")?,
        is_active: r.bool("is_active")?,
        deleted_at: r.opt_time("deleted_at")?,
        created_at: r.time("created_at")?,
    })
}

fn organization_from(r: &Row) -> Result<OrganizationRecord, DbError> {
    Ok(OrganizationRecord {
        organization_id: r.text("organization_id")?,
        region_id: r.text("region_id")?,
        name: r.text("name")?,
        code: r.text("code")?,
        description: r.text("description")?,
        is_active: r.bool("is_active")?,
        deleted_at: r.opt_time("deleted_at")?,
        created_at: r.time("created_at")?,
    })
}

fn region_from(r: &Row) -> Result<RegionRecord, DbError> {
    Ok(RegionRecord {
        region_id: r.text("region_id")?,
        name: r.text("name")?,
        code: r.text("code")?,
        description: r.text("description")?,
        is_active: r.bool("is_active")?,
        created_at: r.time("created_at")?,
    })
}

fn session_from(r: &Row) -> Result<SessionRecord, DbError> {
    Ok(SessionRecord {
        session_id: r.text("session_id")?,
        user_id: r.text("user_id")?,
        ip_address: r.text("ip_address")?,
        user_agent: r.text("user_agent")?,
        is_active: r.bool("is_active")?,
        expires_at: r.time("expires_at")?,
        created_at: r.time("created_at")?,
        last_seen_at: r.time("last_seen_at")?,
    })
}

fn invitation_from(r: &Row) -> Result<InvitationRecord, DbError> {
    Ok(InvitationRecord {
        invitation_id: r.text("invitation_id")?,
        tenant_id: r.text("tenant_id")?,
        email: r.text("email")?,
        role: RoleType::parse(&r.text("role_type")?).unwrap_or(RoleType::Viewer),
        invited_by: r.text("invited_by")?,
        expires_at: r.time("expires_at")?,
    })
}

fn plugin_from(r: &Row) -> Result<PluginRecord, DbError> {
    Ok(PluginRecord {
        plugin_id: r.text("plugin_id")?,
        workspace_id: r.text("workspace_id")?,
        name: r.text("name")?,
        version: r.text("version")?,
        kind: r.text("kind")?,
        description: r.text("description")?,
        config_schema: r.text("config_schema")?,
        sha256: r.text("sha256")?,
        size_bytes: r.int("size_bytes")?,
        is_enabled: r.bool("is_enabled")?,
        disabled_reason: r.opt_text("disabled_reason")?,
        created_by: r.opt_text("created_by")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        deleted_at: r.opt_time("deleted_at")?,
    })
}

fn key_from(r: &Row, permissions: Vec<String>) -> Result<ApiKeyRecord, DbError> {
    Ok(ApiKeyRecord {
        api_key_id: r.text("api_key_id")?,
        key_id: r.text("key_id")?,
        secret_hash: r.text("secret_hash")?,
        name: r.text("name")?,
        description: r.text("description")?,
        scope: Scope {
            organization_id: r.text("organization_id")?,
            workspace_id: r.text("workspace_id")?,
            tenant_id: r.text("tenant_id")?,
        },
        status: ApiKeyStatus::parse(&r.text("status")?).unwrap_or(ApiKeyStatus::Revoked),
        permissions,
        expires_at: r.opt_time("expires_at")?,
        grace_period_expires_at: r.opt_time("grace_period_expires_at")?,
        rate_limit: r.opt_int("rate_limit")?,
        usage_count: r.int("usage_count")?,
        last_used_at: r.opt_time("last_used_at")?,
        last_used_ip: r.opt_text("last_used_ip")?,
        revoked_reason: r.opt_text("revoked_reason")?,
        revoked_by: r.opt_text("revoked_by")?,
        revoked_at: r.opt_time("revoked_at")?,
        created_by: r.opt_text("created_by")?,
        created_at: r.time("created_at")?,
        owner_active: r.int("owner_live")? == 1,
    })
}

/// The metadata store over one backend.
pub struct SqlMetaStore {
    pub(crate) db: Box<dyn Db>,
}

impl std::fmt::Debug for SqlMetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlMetaStore")
            .field("dialect", &self.db.dialect())
            .finish()
    }
}

impl SqlMetaStore {
    pub fn new(db: impl Db) -> SqlMetaStore {
        SqlMetaStore { db: Box::new(db) }
    }

    /// The backend, for tests and tools that run their own statements.
    pub fn db(&self) -> &dyn Db {
        self.db.as_ref()
    }

    async fn insert_roles(
        tx: &mut dyn Tx,
        tenant_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<(RoleType, String)>, MetaError> {
        let mut ids = Vec::new();
        for role in RoleType::ALL {
            let role_id = new_id();
            tx.execute(
                "INSERT INTO roles (role_id, tenant_id, name, description, role_type, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
                args![&role_id, tenant_id, role.as_str(), format!("built-in {} role", role.as_str()), role.as_str(), at],
            )
            .await
            .map_err(backend)?;
            Self::insert_role_permissions(tx, &role_id, &role.default_permissions(), at).await?;
            ids.push((role, role_id));
        }
        Ok(ids)
    }

    async fn insert_role_permissions(
        tx: &mut dyn Tx,
        role_id: &str,
        permissions: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), MetaError> {
        for perm in permissions {
            tx.execute(
                "INSERT INTO role_permissions (role_permission_id, role_id, permission_id, granted_at) \
                 VALUES ($1, $2, $3, $4)",
                args![new_id(), role_id, perm, at],
            )
            .await
            .map_err(backend)?;
        }
        Ok(())
    }

    /// Creates an organization, its workspace and tenant (with roles) and an admin user.
    #[allow(clippy::too_many_arguments)]
    async fn insert_organization(
        tx: &mut dyn Tx,
        region_id: &str,
        name: &str,
        code: &str,
        admin_email: &str,
        admin_password_hash: &str,
        first_name: &str,
        last_name: &str,
        email_verified: bool,
        at: DateTime<Utc>,
    ) -> Result<String, MetaError> {
        let (org, ws, tenant, user) = (new_id(), new_id(), new_id(), new_id());
        let taken = conflict("an organization, workspace or tenant with this code");
        tx.execute(
            "INSERT INTO organizations (organization_id, region_id, name, code, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
            args![&org, region_id, name, code, at],
        )
        .await
        .map_err(&taken)?;
        tx.execute(
            "INSERT INTO workspaces (workspace_id, organization_id, name, code, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
            args![&ws, &org, name, code, at],
        )
        .await
        .map_err(&taken)?;
        tx.execute(
            "INSERT INTO tenants (tenant_id, workspace_id, name, code, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
            args![&tenant, &ws, name, code, at],
        )
        .await
        .map_err(&taken)?;
        let roles = Self::insert_roles(tx, &tenant, at).await?;
        tx.execute(
            "INSERT INTO users (user_id, organization_id, tenant_id, email, password_hash, first_name, \
             last_name, email_verified, email_verified_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
            args![&user, &org, &tenant, admin_email, admin_password_hash, first_name, last_name,
                email_verified, email_verified.then_some(at), at],
        )
        .await
        .map_err(conflict("a user with this email"))?;
        let admin_role = roles
            .iter()
            .find(|(r, _)| *r == RoleType::Admin)
            .map(|(_, id)| id.clone())
            .ok_or_else(|| MetaError::Backend("admin role missing".into()))?;
        tx.execute(
            "INSERT INTO user_roles (user_role_id, user_id, role_id, tenant_id, assigned_at) \
             VALUES ($1, $2, $3, $4, $5)",
            args![new_id(), &user, &admin_role, &tenant, at],
        )
        .await
        .map_err(backend)?;
        Ok(user)
    }

    async fn user_from(&self, r: &Row) -> Result<UserRecord, MetaError> {
        let user_id = r.text("user_id").map_err(backend)?;
        let now = Utc::now();
        let grants = self
            .db
            .fetch(
                "SELECT ur.role_id, ur.expires_at, r.name, r.role_type FROM user_roles ur \
                 JOIN roles r ON r.role_id = ur.role_id \
                 WHERE ur.user_id = $1 AND (ur.expires_at IS NULL OR ur.expires_at > $2) \
                 ORDER BY r.name",
                args![&user_id, now],
            )
            .await
            .map_err(backend)?
            .iter()
            .map(|g| {
                Ok(RoleGrant {
                    role_id: g.text("role_id")?,
                    name: g.text("name")?,
                    role_type: RoleType::parse(&g.text("role_type")?).unwrap_or(RoleType::Demo),
                    expires_at: g.opt_time("expires_at")?,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()
            .map_err(backend)?;
        let permissions = self
            .db
            .fetch(
                "SELECT DISTINCT rp.permission_id FROM user_roles ur \
                 JOIN role_permissions rp ON rp.role_id = ur.role_id \
                 WHERE ur.user_id = $1 AND (ur.expires_at IS NULL OR ur.expires_at > $2) \
                 ORDER BY rp.permission_id",
                args![&user_id, now],
            )
            .await
            .map_err(backend)?
            .iter()
            .map(|p| p.text("permission_id"))
            .collect::<Result<Vec<_>, DbError>>()
            .map_err(backend)?;
        let mfa_enabled = self
            .db
            .fetch_one(
                "SELECT is_enabled FROM mfa_secrets WHERE user_id = $1",
                args![&user_id],
            )
            .await
            .map_err(backend)?
            .map(|m| m.bool("is_enabled"))
            .transpose()
            .map_err(backend)?
            .unwrap_or(false);
        let mut roles: Vec<RoleType> = grants.iter().map(|g| g.role_type).collect();
        roles.dedup();
        let b = backend;
        Ok(UserRecord {
            email: r.text("email").map_err(b)?,
            password_hash: r.text("password_hash").map_err(b)?,
            first_name: r.text("first_name").map_err(b)?,
            last_name: r.text("last_name").map_err(b)?,
            scope: Scope {
                organization_id: r.text("organization_id").map_err(b)?,
                workspace_id: r.text("workspace_id").map_err(b)?,
                tenant_id: r.text("tenant_id").map_err(b)?,
            },
            is_active: r.bool("is_active").map_err(b)?,
            email_verified: r.bool("email_verified").map_err(b)?,
            failed_attempts: r.int("failed_attempts").map_err(b)?,
            locked_until: r.opt_time("locked_until").map_err(b)?,
            last_login_at: r.opt_time("last_login_at").map_err(b)?,
            deleted_at: r.opt_time("deleted_at").map_err(b)?,
            created_at: r.time("created_at").map_err(b)?,
            updated_at: r.time("updated_at").map_err(b)?,
            user_id,
            roles,
            grants,
            permissions,
            mfa_enabled,
        })
    }

    async fn users_from(&self, rows: Vec<Row>) -> Result<Vec<UserRecord>, MetaError> {
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.user_from(r).await?);
        }
        Ok(out)
    }

    async fn key_permissions(&self, api_key_id: &str) -> Result<Vec<String>, MetaError> {
        self.db
            .fetch(
                "SELECT permission FROM api_key_permissions WHERE api_key_id = $1 ORDER BY permission",
                args![api_key_id],
            )
            .await
            .map_err(backend)?
            .iter()
            .map(|r| r.text("permission"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)
    }

    async fn keys_from(&self, rows: Vec<Row>) -> Result<Vec<ApiKeyRecord>, MetaError> {
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id = r.text("api_key_id").map_err(backend)?;
            let perms = self.key_permissions(&id).await?;
            out.push(key_from(r, perms).map_err(backend)?);
        }
        Ok(out)
    }

    async fn role_from(&self, r: &Row) -> Result<RoleRecord, MetaError> {
        let role_id = r.text("role_id").map_err(backend)?;
        let permissions = self
            .db
            .fetch(
                "SELECT permission_id FROM role_permissions WHERE role_id = $1 ORDER BY permission_id",
                args![&role_id],
            )
            .await
            .map_err(backend)?
            .iter()
            .map(|p| p.text("permission_id"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        Ok(RoleRecord {
            tenant_id: r.text("tenant_id").map_err(backend)?,
            name: r.text("name").map_err(backend)?,
            description: r.text("description").map_err(backend)?,
            role_type: RoleType::parse(&r.text("role_type").map_err(backend)?)
                .unwrap_or(RoleType::Demo),
            created_at: r.time("created_at").map_err(backend)?,
            role_id,
            permissions,
        })
    }

    async fn insert_key(
        tx: &mut dyn Tx,
        key: &NewApiKey,
        at: DateTime<Utc>,
    ) -> Result<(), MetaError> {
        let api_key_id = new_id();
        tx.execute(
            "INSERT INTO api_keys (api_key_id, workspace_id, tenant_id, key_id, secret_hash, name, \
             description, status, expires_at, rate_limit, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9, $10, $11, $11)",
            args![
                &api_key_id,
                &key.workspace_id,
                &key.tenant_id,
                &key.key_id,
                &key.secret_hash,
                &key.name,
                &key.description,
                key.expires_at,
                key.rate_limit,
                key.created_by.clone(),
                at
            ],
        )
        .await
        .map_err(conflict("an API key with this id"))?;
        for p in &key.permissions {
            tx.execute(
                "INSERT INTO api_key_permissions (permission_id, api_key_id, permission, granted_at) \
                 VALUES ($1, $2, $3, $4)",
                args![new_id(), &api_key_id, p, at],
            )
            .await
            .map_err(backend)?;
        }
        Ok(())
    }

    /// Applies `patch` to one row of `table`; false if there is no such row.
    async fn patch_entity(
        &self,
        table: &str,
        key: &str,
        id: &str,
        patch: &EntityPatch,
    ) -> Result<bool, MetaError> {
        let mut sql = Sql::new(&format!("UPDATE {table} SET "));
        sql.push("updated_at = ?", Utc::now());
        if let Some(name) = &patch.name {
            sql.push(", name = ?", name.clone());
        }
        if let Some(d) = &patch.description {
            sql.push(", description = ?", d.clone());
        }
        if let Some(a) = patch.is_active {
            sql.push(", is_active = ?", a);
        }
        sql.push(&format!(" WHERE {key} = ?"), id);
        let n = self
            .db
            .execute(&sql.text, &sql.args)
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn purge_tenant(tx: &mut dyn Tx, tenant_id: &str) -> Result<(), MetaError> {
        for stmt in [
            "DELETE FROM api_keys WHERE tenant_id = $1",
            "DELETE FROM users WHERE tenant_id = $1",
            "DELETE FROM user_roles WHERE tenant_id = $1",
            "DELETE FROM roles WHERE tenant_id = $1",
            "DELETE FROM invitations WHERE tenant_id = $1",
            "DELETE FROM alert_rule_notification_groups WHERE alert_rule_id IN \
             (SELECT alert_rule_id FROM alert_rules WHERE tenant_id = $1)",
            "DELETE FROM alert_rule_state WHERE alert_rule_id IN \
             (SELECT alert_rule_id FROM alert_rules WHERE tenant_id = $1)",
            "DELETE FROM alert_rules WHERE tenant_id = $1",
            "DELETE FROM notification_channels WHERE tenant_id = $1",
            "DELETE FROM notification_group_state WHERE group_id IN \
             (SELECT group_id FROM notification_groups WHERE tenant_id = $1)",
            "DELETE FROM notification_groups WHERE tenant_id = $1",
            "DELETE FROM silences WHERE tenant_id = $1",
            "DELETE FROM notification_attempts WHERE tenant_id = $1",
            "DELETE FROM widgets WHERE dashboard_id IN \
             (SELECT dashboard_id FROM dashboards WHERE tenant_id = $1)",
            "DELETE FROM dashboards WHERE tenant_id = $1",
            "DELETE FROM tenants WHERE tenant_id = $1",
        ] {
            tx.execute(stmt, args![tenant_id]).await.map_err(backend)?;
        }
        Ok(())
    }

    async fn purge_workspace(tx: &mut dyn Tx, workspace_id: &str) -> Result<(), MetaError> {
        let tenants = tx
            .fetch(
                "SELECT tenant_id FROM tenants WHERE workspace_id = $1",
                args![workspace_id],
            )
            .await
            .map_err(backend)?;
        for t in tenants {
            Self::purge_tenant(tx, &t.text("tenant_id").map_err(backend)?).await?;
        }
        tx.execute(
            "DELETE FROM api_keys WHERE workspace_id = $1",
            args![workspace_id],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            "DELETE FROM dashboard_templates WHERE workspace_id = $1",
            args![workspace_id],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            "DELETE FROM workspaces WHERE workspace_id = $1",
            args![workspace_id],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn purge_organization(tx: &mut dyn Tx, organization_id: &str) -> Result<(), MetaError> {
        let workspaces = tx
            .fetch(
                "SELECT workspace_id FROM workspaces WHERE organization_id = $1",
                args![organization_id],
            )
            .await
            .map_err(backend)?;
        for w in workspaces {
            Self::purge_workspace(tx, &w.text("workspace_id").map_err(backend)?).await?;
        }
        tx.execute(
            "DELETE FROM users WHERE organization_id = $1",
            args![organization_id],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            "DELETE FROM organizations WHERE organization_id = $1",
            args![organization_id],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn revoke_family(
        tx: &mut dyn Tx,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), MetaError> {
        tx.execute(
            "UPDATE user_sessions SET is_active = FALSE, revoked_at = $2, updated_at = $2 \
             WHERE session_id = $1 AND is_active = TRUE",
            args![session_id, now],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            "UPDATE refresh_tokens SET is_revoked = TRUE, revoked_at = $2 \
             WHERE session_id = $1 AND is_revoked = FALSE",
            args![session_id, now],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }
}

fn one_time_table(kind: OneTimeKind) -> &'static str {
    match kind {
        OneTimeKind::EmailVerification => "email_verifications",
        OneTimeKind::PasswordReset => "password_reset_tokens",
    }
}

#[async_trait]
impl MetaStore for SqlMetaStore {
    async fn bootstrap(
        &self,
        admin_email: &str,
        admin_password_hash: &str,
    ) -> Result<bool, MetaError> {
        let mut tx = self.db.begin(true).await.map_err(backend)?;
        let existing = tx
            .fetch_one("SELECT COUNT(*) AS n FROM organizations", &[])
            .await
            .map_err(backend)?
            .map(|r| r.int("n"))
            .transpose()
            .map_err(backend)?
            .unwrap_or(0);
        if existing > 0 {
            return Ok(false);
        }
        let at = Utc::now();
        let region = new_id();
        tx.execute(
            "INSERT INTO regions (region_id, name, code, description, created_at, updated_at) \
             VALUES ($1, 'Default', 'default', 'created at first start', $2, $2)",
            args![&region, at],
        )
        .await
        .map_err(backend)?;
        Self::insert_organization(
            tx.as_mut(),
            &region,
            "Default",
            "default",
            admin_email,
            admin_password_hash,
            "Admin",
            "",
            true,
            at,
        )
        .await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn ping(&self) -> Result<(), MetaError> {
        self.db
            .fetch("SELECT 1 AS one", &[])
            .await
            .map(|_| ())
            .map_err(backend)
    }

    async fn regions(&self) -> Result<Vec<RegionRecord>, MetaError> {
        self.db
            .fetch("SELECT * FROM regions ORDER BY created_at, region_id", &[])
            .await
            .map_err(backend)?
            .iter()
            .map(region_from)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn create_region(
        &self,
        name: &str,
        code: &str,
        description: &str,
    ) -> Result<RegionRecord, MetaError> {
        let id = new_id();
        self.db
            .execute(
                "INSERT INTO regions (region_id, name, code, description, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
                args![&id, name, code, description, Utc::now()],
            )
            .await
            .map_err(conflict("a region with this code"))?;
        let row = self
            .db
            .fetch_one("SELECT * FROM regions WHERE region_id = $1", args![&id])
            .await
            .map_err(backend)?
            .ok_or(MetaError::NotFound("region"))?;
        region_from(&row).map_err(backend)
    }

    async fn create_organization(&self, org: NewOrganization) -> Result<UserRecord, MetaError> {
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        let region = tx
            .fetch_one(
                "SELECT region_id FROM regions WHERE is_active = TRUE ORDER BY created_at, region_id LIMIT 1",
                &[],
            )
            .await
            .map_err(backend)?
            .ok_or(MetaError::NotFound("region"))?
            .text("region_id")
            .map_err(backend)?;
        let user_id = Self::insert_organization(
            tx.as_mut(),
            &region,
            &org.name,
            &org.code,
            &org.admin_email,
            &org.admin_password_hash,
            &org.admin_first_name,
            &org.admin_last_name,
            false,
            Utc::now(),
        )
        .await?;
        tx.commit().await.map_err(backend)?;
        self.user(&user_id)
            .await?
            .ok_or(MetaError::NotFound("user"))
    }

    async fn organization(
        &self,
        organization_id: &str,
    ) -> Result<Option<OrganizationRecord>, MetaError> {
        self.db
            .fetch_one(
                "SELECT * FROM organizations WHERE organization_id = $1",
                args![organization_id],
            )
            .await
            .map_err(backend)?
            .map(|r| organization_from(&r))
            .transpose()
            .map_err(backend)
    }

    async fn update_organization(
        &self,
        organization_id: &str,
        patch: EntityPatch,
    ) -> Result<OrganizationRecord, MetaError> {
        if !self
            .patch_entity("organizations", "organization_id", organization_id, &patch)
            .await?
        {
            return Err(MetaError::NotFound("organization"));
        }
        self.organization(organization_id)
            .await?
            .ok_or(MetaError::NotFound("organization"))
    }

    async fn workspaces(
        &self,
        organization_id: &str,
        page: &Page,
    ) -> Result<Vec<WorkspaceRecord>, MetaError> {
        let mut sql = Sql::new("SELECT * FROM workspaces WHERE ");
        sql.push("organization_id = ?", organization_id);
        if !page.include_deleted {
            sql.raw(" AND deleted_at IS NULL");
        }
        sql.page("workspace_id", page);
        self.db
            .fetch(&sql.text, &sql.args)
            .await
            .map_err(backend)?
            .iter()
            .map(workspace_from)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn workspace(&self, workspace_id: &str) -> Result<Option<WorkspaceRecord>, MetaError> {
        self.db
            .fetch_one(
                "SELECT * FROM workspaces WHERE workspace_id = $1",
                args![workspace_id],
            )
            .await
            .map_err(backend)?
            .map(|r| workspace_from(&r))
            .transpose()
            .map_err(backend)
    }

    async fn create_workspace(
        &self,
        organization_id: &str,
        name: &str,
        code: &str,
        description: &str,
    ) -> Result<WorkspaceRecord, MetaError> {
        let at = Utc::now();
        let (ws, tenant) = (new_id(), new_id());
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        let live = tx
            .fetch_one(
                "SELECT 1 AS one FROM organizations WHERE organization_id = $1 AND deleted_at IS NULL",
                args![organization_id],
            )
            .await
            .map_err(backend)?;
        if live.is_none() {
            return Err(MetaError::NotFound("organization"));
        }
        tx.execute(
            "INSERT INTO workspaces (workspace_id, organization_id, name, code, description, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
            args![&ws, organization_id, name, code, description, at],
        )
        .await
        .map_err(conflict("a workspace with this code"))?;
        tx.execute(
            "INSERT INTO tenants (tenant_id, workspace_id, name, code, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
            args![&tenant, &ws, name, code, at],
        )
        .await
        .map_err(conflict("a tenant with this code"))?;
        Self::insert_roles(tx.as_mut(), &tenant, at).await?;
        tx.commit().await.map_err(backend)?;
        self.workspace(&ws)
            .await?
            .ok_or(MetaError::NotFound("workspace"))
    }

    async fn update_workspace(
        &self,
        workspace_id: &str,
        patch: EntityPatch,
    ) -> Result<WorkspaceRecord, MetaError> {
        if !self
            .patch_entity("workspaces", "workspace_id", workspace_id, &patch)
            .await?
        {
            return Err(MetaError::NotFound("workspace"));
        }
        self.workspace(workspace_id)
            .await?
            .ok_or(MetaError::NotFound("workspace"))
    }

    async fn tenants(&self, within: &Within, page: &Page) -> Result<Vec<TenantRecord>, MetaError> {
        let mut sql = Sql::new(TENANT_SELECT);
        sql.push(
            " WHERE w.organization_id = ?",
            within.organization_id.clone(),
        );
        if let Some(ws) = &within.workspace_id {
            sql.push(" AND t.workspace_id = ?", ws.clone());
        }
        if let Some(t) = &within.tenant_id {
            sql.push(" AND t.tenant_id = ?", t.clone());
        }
        if !page.include_deleted {
            sql.raw(" AND t.deleted_at IS NULL AND w.deleted_at IS NULL");
        }
        sql.page("t.tenant_id", page);
        self.db
            .fetch(&sql.text, &sql.args)
            .await
            .map_err(backend)?
            .iter()
            .map(tenant_from)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn tenant(&self, tenant_id: &str) -> Result<Option<TenantRecord>, MetaError> {
        self.db
            .fetch_one(
                &format!(
                    "{TENANT_SELECT} WHERE t.tenant_id = $1 AND t.deleted_at IS NULL \
                          AND w.deleted_at IS NULL AND o.deleted_at IS NULL"
                ),
                args![tenant_id],
            )
            .await
            .map_err(backend)?
            .map(|r| tenant_from(&r))
            .transpose()
            .map_err(backend)
    }

    async fn tenant_any(&self, tenant_id: &str) -> Result<Option<TenantRecord>, MetaError> {
        self.db
            .fetch_one(
                &format!("{TENANT_SELECT} WHERE t.tenant_id = $1"),
                args![tenant_id],
            )
            .await
            .map_err(backend)?
            .map(|r| tenant_from(&r))
            .transpose()
            .map_err(backend)
    }

    async fn create_tenant(&self, tenant: NewTenant) -> Result<TenantRecord, MetaError> {
        let at = Utc::now();
        let tenant_id = new_id();
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        let live = tx
            .fetch_one(
                "SELECT 1 AS one FROM workspaces WHERE workspace_id = $1 AND deleted_at IS NULL",
                args![&tenant.workspace_id],
            )
            .await
            .map_err(backend)?;
        if live.is_none() {
            return Err(MetaError::NotFound("workspace"));
        }
        tx.execute(
            "INSERT INTO tenants (tenant_id, workspace_id, name, code, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
            args![
                &tenant_id,
                &tenant.workspace_id,
                &tenant.name,
                &tenant.code,
                at
            ],
        )
        .await
        .map_err(conflict("a tenant with this code"))?;
        Self::insert_roles(tx.as_mut(), &tenant_id, at).await?;
        tx.commit().await.map_err(backend)?;
        self.tenant_any(&tenant_id)
            .await?
            .ok_or(MetaError::NotFound("tenant"))
    }

    async fn update_tenant(
        &self,
        tenant_id: &str,
        patch: EntityPatch,
    ) -> Result<TenantRecord, MetaError> {
        let patch = EntityPatch {
            description: None,
            ..patch
        };
        if !self
            .patch_entity("tenants", "tenant_id", tenant_id, &patch)
            .await?
        {
            return Err(MetaError::NotFound("tenant"));
        }
        self.tenant_any(tenant_id)
            .await?
            .ok_or(MetaError::NotFound("tenant"))
    }

    async fn set_deleted(
        &self,
        entity: Entity,
        id: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<bool, MetaError> {
        let (table, key) = match entity {
            Entity::Organization => ("organizations", "organization_id"),
            Entity::Workspace => ("workspaces", "workspace_id"),
            Entity::Tenant => ("tenants", "tenant_id"),
            Entity::User => ("users", "user_id"),
        };
        let n = self
            .db
            .execute(
                &format!("UPDATE {table} SET deleted_at = $1, updated_at = $2 WHERE {key} = $3"),
                args![at, Utc::now(), id],
            )
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn purge(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<PurgeReport, MetaError> {
        let mut report = PurgeReport::default();
        let mut tx = self.db.begin(true).await.map_err(backend)?;
        let due = |table: &str, key: &str| {
            format!("SELECT {key} FROM {table} WHERE deleted_at IS NOT NULL AND deleted_at < $1")
        };
        for r in tx
            .fetch(&due("organizations", "organization_id"), args![cutoff])
            .await
            .map_err(backend)?
        {
            Self::purge_organization(tx.as_mut(), &r.text("organization_id").map_err(backend)?)
                .await?;
            report.organizations += 1;
        }
        for r in tx
            .fetch(&due("workspaces", "workspace_id"), args![cutoff])
            .await
            .map_err(backend)?
        {
            Self::purge_workspace(tx.as_mut(), &r.text("workspace_id").map_err(backend)?).await?;
            report.workspaces += 1;
        }
        for r in tx
            .fetch(&due("tenants", "tenant_id"), args![cutoff])
            .await
            .map_err(backend)?
        {
            Self::purge_tenant(tx.as_mut(), &r.text("tenant_id").map_err(backend)?).await?;
            report.tenants += 1;
        }
        report.users = tx
            .execute(
                "DELETE FROM users WHERE deleted_at IS NOT NULL AND deleted_at < $1",
                args![cutoff],
            )
            .await
            .map_err(backend)?;
        tx.execute(
            "DELETE FROM plugins WHERE deleted_at IS NOT NULL AND deleted_at < $1",
            args![cutoff],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            "DELETE FROM plugin_blobs WHERE sha256 NOT IN (SELECT sha256 FROM plugins)",
            &[],
        )
        .await
        .map_err(backend)?;
        for stmt in [
            "DELETE FROM refresh_tokens WHERE expires_at < $1",
            "DELETE FROM user_sessions WHERE expires_at < $1",
            "DELETE FROM email_verifications WHERE expires_at < $1",
            "DELETE FROM password_reset_tokens WHERE expires_at < $1",
            "DELETE FROM trusted_devices WHERE expires_at < $1",
            "DELETE FROM invitations WHERE expires_at < $1",
        ] {
            report.expired_auth_rows += tx.execute(stmt, args![now]).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(report)
    }

    async fn roles(&self, tenant_id: &str) -> Result<Vec<RoleRecord>, MetaError> {
        let rows = self
            .db
            .fetch(
                "SELECT * FROM roles WHERE tenant_id = $1 ORDER BY created_at, role_id",
                args![tenant_id],
            )
            .await
            .map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.role_from(r).await?);
        }
        Ok(out)
    }

    async fn role(&self, role_id: &str) -> Result<Option<RoleRecord>, MetaError> {
        match self
            .db
            .fetch_one("SELECT * FROM roles WHERE role_id = $1", args![role_id])
            .await
            .map_err(backend)?
        {
            Some(r) => Ok(Some(self.role_from(&r).await?)),
            None => Ok(None),
        }
    }

    async fn create_role(
        &self,
        tenant_id: &str,
        name: &str,
        description: &str,
        role_type: RoleType,
        permissions: &[String],
    ) -> Result<RoleRecord, MetaError> {
        if let Some(bad) = permissions.iter().find(|p| !is_permission(p)) {
            return Err(MetaError::Invalid(format!("unknown permission {bad:?}")));
        }
        let at = Utc::now();
        let role_id = new_id();
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        tx.execute(
            "INSERT INTO roles (role_id, tenant_id, name, description, role_type, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
            args![&role_id, tenant_id, name, description, role_type.as_str(), at],
        )
        .await
        .map_err(conflict("a role with this name"))?;
        let mut perms = permissions.to_vec();
        perms.sort();
        perms.dedup();
        Self::insert_role_permissions(tx.as_mut(), &role_id, &perms, at).await?;
        tx.commit().await.map_err(backend)?;
        self.role(&role_id)
            .await?
            .ok_or(MetaError::NotFound("role"))
    }

    async fn set_role_permissions(
        &self,
        role_id: &str,
        permissions: &[String],
    ) -> Result<RoleRecord, MetaError> {
        if let Some(bad) = permissions.iter().find(|p| !is_permission(p)) {
            return Err(MetaError::Invalid(format!("unknown permission {bad:?}")));
        }
        let mut perms = permissions.to_vec();
        perms.sort();
        perms.dedup();
        let at = Utc::now();
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        let n = tx
            .execute(
                "UPDATE roles SET updated_at = $2 WHERE role_id = $1",
                args![role_id, at],
            )
            .await
            .map_err(backend)?;
        if n == 0 {
            return Err(MetaError::NotFound("role"));
        }
        tx.execute(
            "DELETE FROM role_permissions WHERE role_id = $1",
            args![role_id],
        )
        .await
        .map_err(backend)?;
        Self::insert_role_permissions(tx.as_mut(), role_id, &perms, at).await?;
        tx.commit().await.map_err(backend)?;
        self.role(role_id).await?.ok_or(MetaError::NotFound("role"))
    }

    async fn delete_role(&self, role_id: &str) -> Result<bool, MetaError> {
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        tx.execute("DELETE FROM user_roles WHERE role_id = $1", args![role_id])
            .await
            .map_err(backend)?;
        tx.execute(
            "DELETE FROM role_permissions WHERE role_id = $1",
            args![role_id],
        )
        .await
        .map_err(backend)?;
        let n = tx
            .execute("DELETE FROM roles WHERE role_id = $1", args![role_id])
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(n > 0)
    }

    async fn assign_role(
        &self,
        user_id: &str,
        role_id: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        let same_tenant = tx
            .fetch_one(
                "SELECT u.tenant_id FROM users u JOIN roles r ON r.tenant_id = u.tenant_id \
                 WHERE u.user_id = $1 AND r.role_id = $2",
                args![user_id, role_id],
            )
            .await
            .map_err(backend)?;
        let Some(row) = same_tenant else {
            return Err(MetaError::NotFound("role in the user's tenant"));
        };
        let tenant_id = row.text("tenant_id").map_err(backend)?;
        tx.execute(
            "INSERT INTO user_roles (user_role_id, user_id, role_id, tenant_id, assigned_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (user_id, role_id) DO UPDATE SET expires_at = excluded.expires_at, \
             assigned_at = excluded.assigned_at",
            args![new_id(), user_id, role_id, &tenant_id, Utc::now(), expires_at],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn unassign_role(&self, user_id: &str, role_id: &str) -> Result<bool, MetaError> {
        let n = self
            .db
            .execute(
                "DELETE FROM user_roles WHERE user_id = $1 AND role_id = $2",
                args![user_id, role_id],
            )
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, MetaError> {
        let row = self
            .db
            .fetch_one(
                &format!("{USER_SELECT} WHERE lower(u.email) = lower($1) AND u.deleted_at IS NULL AND {LIVE}"),
                args![email],
            )
            .await
            .map_err(backend)?;
        match row {
            Some(r) => Ok(Some(self.user_from(&r).await?)),
            None => Ok(None),
        }
    }

    async fn user(&self, user_id: &str) -> Result<Option<UserRecord>, MetaError> {
        let row = self
            .db
            .fetch_one(
                &format!("{USER_SELECT} WHERE u.user_id = $1"),
                args![user_id],
            )
            .await
            .map_err(backend)?;
        match row {
            Some(r) => Ok(Some(self.user_from(&r).await?)),
            None => Ok(None),
        }
    }

    async fn users(&self, within: &Within, page: &Page) -> Result<Vec<UserRecord>, MetaError> {
        let mut sql = Sql::new(USER_SELECT);
        sql.push(
            " WHERE u.organization_id = ?",
            within.organization_id.clone(),
        );
        if let Some(ws) = &within.workspace_id {
            sql.push(" AND t.workspace_id = ?", ws.clone());
        }
        if let Some(t) = &within.tenant_id {
            sql.push(" AND u.tenant_id = ?", t.clone());
        }
        if !page.include_deleted {
            sql.raw(" AND u.deleted_at IS NULL");
        }
        sql.page("u.user_id", page);
        let rows = self.db.fetch(&sql.text, &sql.args).await.map_err(backend)?;
        self.users_from(rows).await
    }

    async fn create_user(&self, user: NewUser) -> Result<UserRecord, MetaError> {
        let tenant = self
            .tenant(&user.tenant_id)
            .await?
            .ok_or(MetaError::NotFound("tenant"))?;
        let at = Utc::now();
        let user_id = new_id();
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        tx.execute(
            "INSERT INTO users (user_id, organization_id, tenant_id, email, password_hash, first_name, \
             last_name, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            args![&user_id, &tenant.organization_id, &tenant.tenant_id, &user.email,
                &user.password_hash, &user.first_name, &user.last_name, at],
        )
        .await
        .map_err(conflict("a user with this email"))?;
        let role = tx
            .fetch_one(
                "SELECT role_id FROM roles WHERE tenant_id = $1 AND role_type = $2 \
                 ORDER BY created_at, role_id LIMIT 1",
                args![&tenant.tenant_id, user.role.as_str()],
            )
            .await
            .map_err(backend)?
            .ok_or(MetaError::NotFound("role"))?
            .text("role_id")
            .map_err(backend)?;
        tx.execute(
            "INSERT INTO user_roles (user_role_id, user_id, role_id, tenant_id, assigned_at) \
             VALUES ($1, $2, $3, $4, $5)",
            args![new_id(), &user_id, &role, &tenant.tenant_id, at],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        self.user(&user_id)
            .await?
            .ok_or(MetaError::NotFound("user"))
    }

    async fn update_user(&self, user_id: &str, patch: UserPatch) -> Result<UserRecord, MetaError> {
        let mut sql = Sql::new("UPDATE users SET ");
        sql.push("updated_at = ?", Utc::now());
        if let Some(v) = patch.first_name {
            sql.push(", first_name = ?", v);
        }
        if let Some(v) = patch.last_name {
            sql.push(", last_name = ?", v);
        }
        if let Some(v) = patch.is_active {
            sql.push(", is_active = ?", v);
        }
        sql.push(" WHERE user_id = ?", user_id);
        if self
            .db
            .execute(&sql.text, &sql.args)
            .await
            .map_err(backend)?
            == 0
        {
            return Err(MetaError::NotFound("user"));
        }
        self.user(user_id).await?.ok_or(MetaError::NotFound("user"))
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<(), MetaError> {
        let n = self
            .db
            .execute(
                "UPDATE users SET password_hash = $2, failed_attempts = 0, locked_until = NULL, \
                 is_locked = FALSE, updated_at = $3 WHERE user_id = $1",
                args![user_id, password_hash, Utc::now()],
            )
            .await
            .map_err(backend)?;
        if n == 0 {
            return Err(MetaError::NotFound("user"));
        }
        Ok(())
    }

    async fn set_email_verified(&self, user_id: &str, at: DateTime<Utc>) -> Result<(), MetaError> {
        self.db
            .execute(
                "UPDATE users SET email_verified = TRUE, email_verified_at = $2, updated_at = $2 \
                 WHERE user_id = $1",
                args![user_id, at],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn record_login_failure(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
        threshold: i64,
        lock_for: chrono::Duration,
    ) -> Result<Option<DateTime<Utc>>, MetaError> {
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        tx.execute(
            "UPDATE users SET failed_attempts = failed_attempts + 1, updated_at = $2 WHERE user_id = $1",
            args![user_id, now],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            "UPDATE users SET failed_attempts = 0, is_locked = TRUE, locked_until = $2 \
             WHERE user_id = $1 AND failed_attempts >= $3",
            args![user_id, now + lock_for, threshold],
        )
        .await
        .map_err(backend)?;
        let locked = tx
            .fetch_one(
                "SELECT locked_until FROM users WHERE user_id = $1",
                args![user_id],
            )
            .await
            .map_err(backend)?
            .map(|r| r.opt_time("locked_until"))
            .transpose()
            .map_err(backend)?
            .flatten()
            .filter(|t| *t > now);
        tx.commit().await.map_err(backend)?;
        Ok(locked)
    }

    async fn record_login_success(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), MetaError> {
        self.db
            .execute(
                "UPDATE users SET failed_attempts = 0, is_locked = FALSE, locked_until = NULL, \
                 last_login_at = $2, updated_at = $2 WHERE user_id = $1",
                args![user_id, now],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn create_session(&self, s: NewSession, now: DateTime<Utc>) -> Result<String, MetaError> {
        let session_id = new_id();
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        tx.execute(
            "INSERT INTO user_sessions (session_id, user_id, session_token, ip_address, user_agent, \
             device_fingerprint, is_active, expires_at, last_seen_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, $8, $8, $8)",
            args![&session_id, &s.user_id, uuid::Uuid::new_v4().to_string(), &s.ip_address,
                &s.user_agent, &s.device_fingerprint, s.expires_at, now],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            "INSERT INTO refresh_tokens (token_id, user_id, session_id, token_hash, device_fingerprint, \
             expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            args![new_id(), &s.user_id, &session_id, &s.refresh_hash, &s.device_fingerprint,
                s.refresh_expires_at, now],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(session_id)
    }

    async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        new_hash: &str,
        new_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<RefreshOutcome, MetaError> {
        // Exclusive: of two racing rotations of one token, the second sees the first's outcome.
        let mut tx = self.db.begin(true).await.map_err(backend)?;
        let row = tx
            .fetch_one(
                "SELECT r.token_id, r.user_id, r.session_id, r.expires_at, r.is_revoked, r.replaced_by, \
                 r.device_fingerprint, s.is_active AS session_active, s.expires_at AS session_expires \
                 FROM refresh_tokens r JOIN user_sessions s ON s.session_id = r.session_id \
                 WHERE r.token_hash = $1",
                args![token_hash],
            )
            .await
            .map_err(backend)?;
        let Some(row) = row else {
            return Ok(RefreshOutcome::Invalid);
        };
        let b = backend;
        let token_id = row.text("token_id").map_err(b)?;
        let user_id = row.text("user_id").map_err(b)?;
        let session_id = row.text("session_id").map_err(b)?;
        if !row.bool("session_active").map_err(b)? || row.time("session_expires").map_err(b)? <= now
        {
            return Ok(RefreshOutcome::Invalid);
        }
        if row.bool("is_revoked").map_err(b)? || row.opt_text("replaced_by").map_err(b)?.is_some() {
            Self::revoke_family(tx.as_mut(), &session_id, now).await?;
            tx.commit().await.map_err(backend)?;
            return Ok(RefreshOutcome::Reused {
                user_id,
                session_id,
            });
        }
        if row.time("expires_at").map_err(b)? <= now {
            return Ok(RefreshOutcome::Invalid);
        }
        let next = new_id();
        let n = tx
            .execute(
                "UPDATE refresh_tokens SET replaced_by = $2, used_at = $3 \
                 WHERE token_id = $1 AND replaced_by IS NULL AND is_revoked = FALSE",
                args![&token_id, &next, now],
            )
            .await
            .map_err(backend)?;
        if n != 1 {
            Self::revoke_family(tx.as_mut(), &session_id, now).await?;
            tx.commit().await.map_err(backend)?;
            return Ok(RefreshOutcome::Reused {
                user_id,
                session_id,
            });
        }
        tx.execute(
            "INSERT INTO refresh_tokens (token_id, user_id, session_id, token_hash, device_fingerprint, \
             expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            args![&next, &user_id, &session_id, new_hash,
                row.text("device_fingerprint").map_err(b)?, new_expires_at, now],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            "UPDATE user_sessions SET last_seen_at = $2, updated_at = $2 WHERE session_id = $1",
            args![&session_id, now],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(RefreshOutcome::Rotated {
            user_id,
            session_id,
        })
    }

    async fn sessions(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionRecord>, MetaError> {
        self.db
            .fetch(
                "SELECT * FROM user_sessions WHERE user_id = $1 AND is_active = TRUE AND expires_at > $2 \
                 ORDER BY created_at DESC, session_id",
                args![user_id, now],
            )
            .await
            .map_err(backend)?
            .iter()
            .map(session_from)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn session_active(
        &self,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, MetaError> {
        Ok(self
            .db
            .fetch_one(
                "SELECT 1 AS one FROM user_sessions WHERE session_id = $1 AND is_active = TRUE \
                 AND expires_at > $2",
                args![session_id, now],
            )
            .await
            .map_err(backend)?
            .is_some())
    }

    async fn revoke_session(
        &self,
        user_id: &str,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, MetaError> {
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        let mine = tx
            .fetch_one(
                "SELECT 1 AS one FROM user_sessions WHERE session_id = $1 AND user_id = $2 AND is_active = TRUE",
                args![session_id, user_id],
            )
            .await
            .map_err(backend)?;
        if mine.is_none() {
            return Ok(false);
        }
        Self::revoke_family(tx.as_mut(), session_id, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn revoke_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64, MetaError> {
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        let rows = tx
            .fetch(
                "SELECT session_id FROM user_sessions WHERE user_id = $1 AND is_active = TRUE",
                args![user_id],
            )
            .await
            .map_err(backend)?;
        let mut n = 0;
        for r in rows {
            let id = r.text("session_id").map_err(backend)?;
            if except == Some(id.as_str()) {
                continue;
            }
            Self::revoke_family(tx.as_mut(), &id, now).await?;
            n += 1;
        }
        tx.commit().await.map_err(backend)?;
        Ok(n)
    }

    async fn mfa(&self, user_id: &str) -> Result<Option<MfaRecord>, MetaError> {
        self.db
            .fetch_one(
                "SELECT * FROM mfa_secrets WHERE user_id = $1",
                args![user_id],
            )
            .await
            .map_err(backend)?
            .map(|r| {
                Ok(MfaRecord {
                    secret_encrypted: r.text("secret_encrypted")?,
                    is_enabled: r.bool("is_enabled")?,
                    enabled_at: r.opt_time("enabled_at")?,
                    last_used_step: r.opt_int("last_used_step")?,
                })
            })
            .transpose()
            .map_err(backend)
    }

    async fn put_mfa_secret(
        &self,
        user_id: &str,
        secret_encrypted: &str,
        now: DateTime<Utc>,
    ) -> Result<(), MetaError> {
        self.db
            .execute(
                "INSERT INTO mfa_secrets (mfa_id, user_id, secret_encrypted, is_enabled, created_at, updated_at) \
                 VALUES ($1, $2, $3, FALSE, $4, $4) \
                 ON CONFLICT (user_id) DO UPDATE SET secret_encrypted = excluded.secret_encrypted, \
                 is_enabled = FALSE, enabled_at = NULL, last_used_step = NULL, updated_at = excluded.updated_at",
                args![new_id(), user_id, secret_encrypted, now],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn enable_mfa(
        &self,
        user_id: &str,
        backup_code_hashes: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        let n = tx
            .execute(
                "UPDATE mfa_secrets SET is_enabled = TRUE, enabled_at = $2, updated_at = $2 WHERE user_id = $1",
                args![user_id, now],
            )
            .await
            .map_err(backend)?;
        if n == 0 {
            return Err(MetaError::NotFound("MFA enrolment"));
        }
        tx.execute(
            "DELETE FROM mfa_backup_codes WHERE user_id = $1",
            args![user_id],
        )
        .await
        .map_err(backend)?;
        for h in backup_code_hashes {
            tx.execute(
                "INSERT INTO mfa_backup_codes (code_id, user_id, code_hash, created_at) VALUES ($1, $2, $3, $4)",
                args![new_id(), user_id, h, now],
            )
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn disable_mfa(&self, user_id: &str) -> Result<(), MetaError> {
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        for stmt in [
            "DELETE FROM mfa_backup_codes WHERE user_id = $1",
            "DELETE FROM trusted_devices WHERE user_id = $1",
            "DELETE FROM mfa_secrets WHERE user_id = $1",
        ] {
            tx.execute(stmt, args![user_id]).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool, MetaError> {
        let n = self
            .db
            .execute(
                "UPDATE mfa_secrets SET last_used_step = $2 \
                 WHERE user_id = $1 AND (last_used_step IS NULL OR last_used_step < $2)",
                args![user_id, step],
            )
            .await
            .map_err(backend)?;
        Ok(n == 1)
    }

    async fn use_backup_code(
        &self,
        user_id: &str,
        code_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, MetaError> {
        let n = self
            .db
            .execute(
                "UPDATE mfa_backup_codes SET used_at = $3 \
                 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
                args![user_id, code_hash, now],
            )
            .await
            .map_err(backend)?;
        Ok(n == 1)
    }

    async fn trust_device(
        &self,
        user_id: &str,
        fingerprint_hash: &str,
        name: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), MetaError> {
        self.db
            .execute(
                "INSERT INTO trusted_devices (device_id, user_id, device_fingerprint, device_name, \
                 expires_at, last_used_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $6) \
                 ON CONFLICT (user_id, device_fingerprint) DO UPDATE SET \
                 device_name = excluded.device_name, expires_at = excluded.expires_at, \
                 last_used_at = excluded.last_used_at",
                args![new_id(), user_id, fingerprint_hash, name, expires_at, now],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn device_trusted(
        &self,
        user_id: &str,
        fingerprint_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, MetaError> {
        let n = self
            .db
            .execute(
                "UPDATE trusted_devices SET last_used_at = $3 \
                 WHERE user_id = $1 AND device_fingerprint = $2 AND expires_at > $3",
                args![user_id, fingerprint_hash, now],
            )
            .await
            .map_err(backend)?;
        Ok(n == 1)
    }

    async fn create_one_time_token(
        &self,
        kind: OneTimeKind,
        user_id: &str,
        email: &str,
        token_hash: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), MetaError> {
        let r = match kind {
            OneTimeKind::EmailVerification => {
                self.db
                    .execute(
                        "INSERT INTO email_verifications (verification_id, user_id, token, email, \
                         expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                        args![new_id(), user_id, token_hash, email, expires_at, now],
                    )
                    .await
            }
            OneTimeKind::PasswordReset => {
                self.db
                    .execute(
                        "INSERT INTO password_reset_tokens (reset_id, user_id, token, expires_at, created_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                        args![new_id(), user_id, token_hash, expires_at, now],
                    )
                    .await
            }
        };
        r.map(|_| ()).map_err(backend)
    }

    async fn consume_one_time_token(
        &self,
        kind: OneTimeKind,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ConsumedToken>, MetaError> {
        let table = one_time_table(kind);
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        let n = tx
            .execute(
                &format!(
                    "UPDATE {table} SET is_used = TRUE \
                     WHERE token = $1 AND is_used = FALSE AND expires_at > $2"
                ),
                args![token_hash, now],
            )
            .await
            .map_err(backend)?;
        if n != 1 {
            return Ok(None);
        }
        let email_col = match kind {
            OneTimeKind::EmailVerification => "x.email",
            OneTimeKind::PasswordReset => "u.email",
        };
        let row = tx
            .fetch_one(
                &format!(
                    "SELECT x.user_id, {email_col} AS email FROM {table} x \
                     JOIN users u ON u.user_id = x.user_id WHERE x.token = $1"
                ),
                args![token_hash],
            )
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        row.map(|r| {
            Ok(ConsumedToken {
                user_id: r.text("user_id")?,
                email: r.text("email")?,
            })
        })
        .transpose()
        .map_err(backend)
    }

    async fn create_invitation(
        &self,
        inv: NewInvitation,
        now: DateTime<Utc>,
    ) -> Result<InvitationRecord, MetaError> {
        let id = new_id();
        self.db
            .execute(
                "INSERT INTO invitations (invitation_id, tenant_id, email, role_type, token_hash, \
                 invited_by, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                args![
                    &id,
                    &inv.tenant_id,
                    &inv.email,
                    inv.role.as_str(),
                    &inv.token_hash,
                    &inv.invited_by,
                    inv.expires_at,
                    now
                ],
            )
            .await
            .map_err(backend)?;
        Ok(InvitationRecord {
            invitation_id: id,
            tenant_id: inv.tenant_id,
            email: inv.email,
            role: inv.role,
            invited_by: inv.invited_by,
            expires_at: inv.expires_at,
        })
    }

    async fn consume_invitation(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<InvitationRecord>, MetaError> {
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        let n = tx
            .execute(
                "UPDATE invitations SET accepted_at = $2 \
                 WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > $2",
                args![token_hash, now],
            )
            .await
            .map_err(backend)?;
        if n != 1 {
            return Ok(None);
        }
        let row = tx
            .fetch_one(
                "SELECT * FROM invitations WHERE token_hash = $1",
                args![token_hash],
            )
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        row.map(|r| invitation_from(&r))
            .transpose()
            .map_err(backend)
    }

    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKeyRecord, MetaError> {
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        Self::insert_key(tx.as_mut(), &key, Utc::now()).await?;
        tx.commit().await.map_err(backend)?;
        self.api_key(&key.key_id)
            .await?
            .ok_or(MetaError::NotFound("api key"))
    }

    async fn api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, MetaError> {
        let rows = self
            .db
            .fetch(&format!("{KEY_SELECT} WHERE k.key_id = $1"), args![key_id])
            .await
            .map_err(backend)?;
        Ok(self.keys_from(rows).await?.into_iter().next())
    }

    async fn api_key_by_id(&self, api_key_id: &str) -> Result<Option<ApiKeyRecord>, MetaError> {
        let rows = self
            .db
            .fetch(
                &format!("{KEY_SELECT} WHERE k.api_key_id = $1"),
                args![api_key_id],
            )
            .await
            .map_err(backend)?;
        Ok(self.keys_from(rows).await?.into_iter().next())
    }

    async fn api_keys(&self, within: &Within, page: &Page) -> Result<Vec<ApiKeyRecord>, MetaError> {
        let mut sql = Sql::new(KEY_SELECT);
        sql.push(
            " WHERE w.organization_id = ?",
            within.organization_id.clone(),
        );
        if let Some(ws) = &within.workspace_id {
            sql.push(" AND k.workspace_id = ?", ws.clone());
        }
        if let Some(t) = &within.tenant_id {
            sql.push(" AND k.tenant_id = ?", t.clone());
        }
        sql.page("k.api_key_id", page);
        let rows = self.db.fetch(&sql.text, &sql.args).await.map_err(backend)?;
        self.keys_from(rows).await
    }

    async fn rotate_api_key(
        &self,
        api_key_id: &str,
        new: NewApiKey,
        grace_until: DateTime<Utc>,
    ) -> Result<ApiKeyRecord, MetaError> {
        let now = Utc::now();
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        let n = tx
            .execute(
                "UPDATE api_keys SET status = 'rotated', grace_period_expires_at = $2, updated_at = $3 \
                 WHERE api_key_id = $1 AND status = 'active'",
                args![api_key_id, grace_until, now],
            )
            .await
            .map_err(backend)?;
        if n != 1 {
            return Err(MetaError::Invalid(
                "only an active key can be rotated".into(),
            ));
        }
        Self::insert_key(tx.as_mut(), &new, now).await?;
        tx.commit().await.map_err(backend)?;
        self.api_key(&new.key_id)
            .await?
            .ok_or(MetaError::NotFound("api key"))
    }

    async fn revoke_api_key(
        &self,
        api_key_id: &str,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<ApiKeyRecord, MetaError> {
        let n = self
            .db
            .execute(
                "UPDATE api_keys SET status = 'revoked', revoked_reason = $2, revoked_by = $3, \
                 revoked_at = $4, updated_at = $4 \
                 WHERE api_key_id = $1 AND status IN ('active', 'rotated')",
                args![api_key_id, reason, by, now],
            )
            .await
            .map_err(backend)?;
        let key = self
            .api_key_by_id(api_key_id)
            .await?
            .ok_or(MetaError::NotFound("api key"))?;
        if n == 0 {
            return Err(MetaError::Invalid(format!(
                "the key is {}, not active",
                key.status.as_str()
            )));
        }
        Ok(key)
    }

    async fn record_api_key_usage(
        &self,
        usage: &[(String, u64, DateTime<Utc>, String)],
        log: &[ApiKeyUsage],
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        for (key_id, uses, at, ip) in usage {
            tx.execute(
                "UPDATE api_keys SET usage_count = usage_count + $1, last_used_at = $2, last_used_ip = $3 \
                 WHERE key_id = $4",
                args![i64::try_from(*uses).unwrap_or(i64::MAX), *at, ip, key_id],
            )
            .await
            .map_err(backend)?;
        }
        for u in log {
            tx.execute(
                "INSERT INTO api_key_usage_log (usage_id, api_key_id, endpoint, method, ip_address, \
                 status_code, created_at) SELECT $1, api_key_id, $2, $3, $4, $5, $6 FROM api_keys \
                 WHERE key_id = $7",
                args![new_id(), &u.endpoint, &u.method, &u.ip_address, u.status_code, u.at, &u.key_id],
            )
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn create_plugin(&self, p: NewPlugin) -> Result<PluginRecord, MetaError> {
        let at = Utc::now();
        let id = new_id();
        let size = i64::try_from(p.bytes.len()).unwrap_or(i64::MAX);
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        tx.execute(
            "INSERT INTO plugin_blobs (sha256, bytes, size_bytes, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (sha256) DO NOTHING",
            args![&p.sha256, p.bytes, size, at],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            "INSERT INTO plugins (plugin_id, workspace_id, name, version, kind, description, \
             config_schema, sha256, size_bytes, is_enabled, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, TRUE, $10, $11, $11)",
            args![
                &id,
                &p.workspace_id,
                &p.name,
                &p.version,
                &p.kind,
                &p.description,
                &p.config_schema,
                &p.sha256,
                size,
                p.created_by.clone(),
                at
            ],
        )
        .await
        .map_err(conflict(
            "a plugin with this name and version in the workspace",
        ))?;
        tx.commit().await.map_err(backend)?;
        self.plugin(&id).await?.ok_or(MetaError::NotFound("plugin"))
    }

    async fn plugin(&self, plugin_id: &str) -> Result<Option<PluginRecord>, MetaError> {
        self.db
            .fetch_one(
                "SELECT * FROM plugins WHERE plugin_id = $1",
                args![plugin_id],
            )
            .await
            .map_err(backend)?
            .map(|r| plugin_from(&r))
            .transpose()
            .map_err(backend)
    }

    async fn plugins(
        &self,
        workspace_id: &str,
        name: Option<&str>,
        page: &Page,
    ) -> Result<Vec<PluginRecord>, MetaError> {
        let mut sql = Sql::new("SELECT * FROM plugins WHERE deleted_at IS NULL");
        sql.push(" AND workspace_id = ?", workspace_id);
        if let Some(n) = name {
            sql.push(" AND name = ?", n);
        }
        sql.page("plugin_id", page);
        self.db
            .fetch(&sql.text, &sql.args)
            .await
            .map_err(backend)?
            .iter()
            .map(plugin_from)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn plugin_bytes(&self, sha256: &str) -> Result<Option<Vec<u8>>, MetaError> {
        self.db
            .fetch_one(
                "SELECT bytes FROM plugin_blobs WHERE sha256 = $1",
                args![sha256],
            )
            .await
            .map_err(backend)?
            .map(|r| r.bytes("bytes"))
            .transpose()
            .map_err(backend)
    }

    async fn set_plugin_enabled(
        &self,
        plugin_id: &str,
        enabled: bool,
        reason: Option<&str>,
    ) -> Result<PluginRecord, MetaError> {
        let n = self
            .db
            .execute(
                "UPDATE plugins SET is_enabled = $2, disabled_reason = $3, updated_at = $4, \
                 consecutive_failures = 0 WHERE plugin_id = $1 AND deleted_at IS NULL",
                args![
                    plugin_id,
                    enabled,
                    if enabled { None } else { reason },
                    Utc::now()
                ],
            )
            .await
            .map_err(backend)?;
        if n == 0 {
            return Err(MetaError::NotFound("plugin"));
        }
        self.plugin(plugin_id)
            .await?
            .ok_or(MetaError::NotFound("plugin"))
    }

    async fn count_plugin_call(&self, plugin_id: &str, failed: bool) -> Result<i64, MetaError> {
        let sql = if failed {
            "UPDATE plugins SET consecutive_failures = consecutive_failures + 1 \
             WHERE plugin_id = $1"
        } else {
            "UPDATE plugins SET consecutive_failures = 0 WHERE plugin_id = $1"
        };
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        tx.execute(sql, args![plugin_id]).await.map_err(backend)?;
        let n = tx
            .fetch_one(
                "SELECT consecutive_failures FROM plugins WHERE plugin_id = $1",
                args![plugin_id],
            )
            .await
            .map_err(backend)?
            .map(|r| r.int("consecutive_failures"))
            .transpose()
            .map_err(backend)?
            .unwrap_or(0);
        tx.commit().await.map_err(backend)?;
        Ok(n)
    }

    async fn delete_plugin(&self, plugin_id: &str, at: DateTime<Utc>) -> Result<bool, MetaError> {
        let n = self
            .db
            .execute(
                "UPDATE plugins SET deleted_at = $2, updated_at = $2 WHERE plugin_id = $1 AND deleted_at IS NULL",
                args![plugin_id, at],
            )
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn api_key_usage_log(
        &self,
        api_key_id: &str,
        limit: u32,
    ) -> Result<Vec<ApiKeyUsage>, MetaError> {
        self.db
            .fetch(
                "SELECT k.key_id, l.endpoint, l.method, l.ip_address, l.status_code, l.created_at \
                 FROM api_key_usage_log l JOIN api_keys k ON k.api_key_id = l.api_key_id \
                 WHERE l.api_key_id = $1 ORDER BY l.created_at DESC, l.usage_id DESC LIMIT $2",
                args![api_key_id, i64::from(limit.clamp(1, MAX_PAGE))],
            )
            .await
            .map_err(backend)?
            .iter()
            .map(|r| {
                Ok(ApiKeyUsage {
                    key_id: r.text("key_id")?,
                    endpoint: r.text("endpoint")?,
                    method: r.text("method")?,
                    ip_address: r.text("ip_address")?,
                    status_code: r.int("status_code")?,
                    at: r.time("created_at")?,
                })
            })
            .collect::<Result<_, DbError>>()
            .map_err(backend)
    }
}

//! The metadata store port: tenancy, users, authentication state and API keys.
//!
//! Every method that takes a secret takes its hash: tokens, codes and keys never reach the store
//! in clear. Methods that decide something under concurrency (rotating a refresh token, using a
//! TOTP step or a backup code, consuming a one-time token) decide it inside the store, atomically,
//! so two racing requests can never both win.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use model::{ErrorKind, Scope};

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("metadata store error: {0}")]
    Backend(String),
}

impl MetaError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            MetaError::NotFound(_) => ErrorKind::NotFound,
            MetaError::Conflict(_) => ErrorKind::Conflict,
            MetaError::Invalid(_) => ErrorKind::InvalidInput,
            MetaError::Backend(_) => ErrorKind::Internal,
        }
    }
}

/// The five role types of the schema document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleType {
    Admin,
    Developer,
    Viewer,
    Demo,
    Service,
}

/// Resources of the permission catalogue.
pub const RESOURCES: [&str; 6] = ["user", "metric", "log", "trace", "dashboard", "alert"];
/// Actions of the permission catalogue.
pub const ACTIONS: [&str; 4] = ["read", "write", "delete", "admin"];

impl RoleType {
    pub const ALL: [RoleType; 5] = [
        RoleType::Admin,
        RoleType::Developer,
        RoleType::Viewer,
        RoleType::Demo,
        RoleType::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RoleType::Admin => "admin",
            RoleType::Developer => "developer",
            RoleType::Viewer => "viewer",
            RoleType::Demo => "demo",
            RoleType::Service => "service",
        }
    }

    /// The permissions this role type gets in a new tenant (`resource:action`).
    pub fn default_permissions(self) -> Vec<String> {
        const TELEMETRY: [&str; 5] = ["metric", "log", "trace", "dashboard", "alert"];
        let mut out = Vec::new();
        match self {
            RoleType::Admin => {
                for r in RESOURCES {
                    for a in ACTIONS {
                        out.push(format!("{r}:{a}"));
                    }
                }
            }
            RoleType::Developer => {
                out.push("user:read".to_string());
                for r in TELEMETRY {
                    for a in ["read", "write", "delete"] {
                        out.push(format!("{r}:{a}"));
                    }
                }
            }
            RoleType::Viewer | RoleType::Demo => {
                for r in RESOURCES {
                    out.push(format!("{r}:read"));
                }
            }
            RoleType::Service => {
                for r in ["metric", "log", "trace"] {
                    out.push(format!("{r}:write"));
                }
            }
        }
        out
    }

    pub fn parse(s: &str) -> Option<RoleType> {
        RoleType::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Whether `p` names a permission of the catalogue (`resource:action`).
pub fn is_permission(p: &str) -> bool {
    p.split_once(':')
        .is_some_and(|(r, a)| RESOURCES.contains(&r) && ACTIONS.contains(&a))
}

/// A role held by a user.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleGrant {
    pub role_id: String,
    pub name: String,
    pub role_type: RoleType,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user_id: String,
    pub email: String,
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub scope: Scope,
    pub is_active: bool,
    pub email_verified: bool,
    pub failed_attempts: i64,
    pub locked_until: Option<DateTime<Utc>>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Roles in force now (expired assignments left out).
    pub roles: Vec<RoleType>,
    /// The roles in force now with their ids and expiry.
    pub grants: Vec<RoleGrant>,
    /// Union of the permissions of the roles in force (`resource:action`), sorted.
    pub permissions: Vec<String>,
    pub mfa_enabled: bool,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub tenant_id: String,
    pub role: RoleType,
}

/// Fields of a user a caller may change; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub is_active: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct TenantRecord {
    pub tenant_id: String,
    pub workspace_id: String,
    pub organization_id: String,
    pub name: String,
    pub code: String,
    pub domain: String,
    pub is_active: bool,
    pub deleted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub workspace_id: String,
    pub name: String,
    pub code: String,
}

#[derive(Debug, Clone)]
pub struct WorkspaceRecord {
    pub workspace_id: String,
    pub organization_id: String,
    pub name: String,
    pub code: String,
    pub description: String,
    pub is_active: bool,
    pub deleted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct OrganizationRecord {
    pub organization_id: String,
    pub region_id: String,
    pub name: String,
    pub code: String,
    pub description: String,
    pub is_active: bool,
    pub deleted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct RegionRecord {
    pub region_id: String,
    pub name: String,
    pub code: String,
    pub description: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct RoleRecord {
    pub role_id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: String,
    pub role_type: RoleType,
    pub permissions: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// Fields of an organization, workspace or tenant a caller may change.
#[derive(Debug, Clone, Default)]
pub struct EntityPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub is_active: Option<bool>,
}

/// The things that are soft-deleted, restored and purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Organization,
    Workspace,
    Tenant,
    User,
}

impl Entity {
    pub fn name(self) -> &'static str {
        match self {
            Entity::Organization => "organization",
            Entity::Workspace => "workspace",
            Entity::Tenant => "tenant",
            Entity::User => "user",
        }
    }
}

/// One page of a list: at most `limit` rows with ids after `after` (ids are time-ordered).
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub limit: u32,
    pub after: Option<String>,
    pub include_deleted: bool,
}

/// Where to list from: an organization, optionally narrowed to a workspace or a tenant.
#[derive(Debug, Clone, Default)]
pub struct Within {
    pub organization_id: String,
    pub workspace_id: Option<String>,
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub session_id: String,
    pub user_id: String,
    pub ip_address: String,
    pub user_agent: String,
    pub is_active: bool,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub user_id: String,
    pub ip_address: String,
    pub user_agent: String,
    pub device_fingerprint: String,
    pub expires_at: DateTime<Utc>,
    /// The first refresh token of the session's family.
    pub refresh_hash: String,
    pub refresh_expires_at: DateTime<Utc>,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshOutcome {
    /// The token was current: it is now used, and `new_hash` is the family's current token.
    Rotated { user_id: String, session_id: String },
    /// The token had been used or revoked already: the whole family (session) is now revoked.
    Reused { user_id: String, session_id: String },
    /// Unknown token, or its session has ended or expired.
    Invalid,
}

#[derive(Debug, Clone)]
pub struct MfaRecord {
    pub secret_encrypted: String,
    pub is_enabled: bool,
    pub enabled_at: Option<DateTime<Utc>>,
    pub last_used_step: Option<i64>,
}

/// Kinds of single-use tokens sent by email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneTimeKind {
    EmailVerification,
    PasswordReset,
}

/// A consumed single-use token.
#[derive(Debug, Clone)]
pub struct ConsumedToken {
    pub user_id: String,
    pub email: String,
}

#[derive(Debug, Clone)]
pub struct InvitationRecord {
    pub invitation_id: String,
    pub tenant_id: String,
    pub email: String,
    pub role: RoleType,
    pub invited_by: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewInvitation {
    pub tenant_id: String,
    pub email: String,
    pub role: RoleType,
    pub token_hash: String,
    pub invited_by: String,
    pub expires_at: DateTime<Utc>,
}

/// A new organization with its first workspace, tenant and admin (open registration).
#[derive(Debug, Clone)]
pub struct NewOrganization {
    pub name: String,
    pub code: String,
    pub admin_email: String,
    pub admin_password_hash: String,
    pub admin_first_name: String,
    pub admin_last_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyStatus {
    Active,
    Rotated,
    Revoked,
    Expired,
}

impl ApiKeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyStatus::Active => "active",
            ApiKeyStatus::Rotated => "rotated",
            ApiKeyStatus::Revoked => "revoked",
            ApiKeyStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<ApiKeyStatus> {
        [
            ApiKeyStatus::Active,
            ApiKeyStatus::Rotated,
            ApiKeyStatus::Revoked,
            ApiKeyStatus::Expired,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub api_key_id: String,
    /// The public half, `tfk-…`.
    pub key_id: String,
    /// Argon2id PHC string of the secret half.
    pub secret_hash: String,
    pub name: String,
    pub description: String,
    pub scope: Scope,
    pub status: ApiKeyStatus,
    pub permissions: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub grace_period_expires_at: Option<DateTime<Utc>>,
    pub rate_limit: Option<i64>,
    pub usage_count: i64,
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_used_ip: Option<String>,
    pub revoked_reason: Option<String>,
    pub revoked_by: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    /// False when the key's tenant, workspace or organization is deleted or inactive.
    pub owner_active: bool,
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub key_id: String,
    pub secret_hash: String,
    pub name: String,
    pub description: String,
    pub workspace_id: String,
    pub tenant_id: String,
    pub permissions: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub rate_limit: Option<i64>,
    pub created_by: Option<String>,
}

/// One row of `api_key_usage_log`.
#[derive(Debug, Clone)]
pub struct ApiKeyUsage {
    pub key_id: String,
    pub endpoint: String,
    pub method: String,
    pub ip_address: String,
    pub status_code: i64,
    pub at: DateTime<Utc>,
}

/// Rows removed by a purge, per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub organizations: u64,
    pub workspaces: u64,
    pub tenants: u64,
    pub users: u64,
    pub expired_auth_rows: u64,
}

/// An uploaded plugin (its component bytes are kept apart, by content hash).
#[derive(Debug, Clone)]
pub struct PluginRecord {
    pub plugin_id: String,
    pub workspace_id: String,
    pub name: String,
    pub version: String,
    /// The world: `alert-condition`, `widget-transform` or `notification-channel`.
    pub kind: String,
    pub description: String,
    pub config_schema: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub is_enabled: bool,
    pub disabled_reason: Option<String>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewPlugin {
    pub workspace_id: String,
    pub name: String,
    pub version: String,
    pub kind: String,
    pub description: String,
    pub config_schema: String,
    pub sha256: String,
    pub bytes: Vec<u8>,
    pub created_by: Option<String>,
}

/// Everything the host keeps about who may do what.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// On an empty store: creates the default region, organization, workspace and tenant, the
    /// tenant's roles, and an admin user with `admin_password_hash`. Returns `true` when it did;
    /// `false` (and changes nothing) when the store already has an organization.
    async fn bootstrap(
        &self,
        admin_email: &str,
        admin_password_hash: &str,
    ) -> Result<bool, MetaError>;

    /// Whether the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), MetaError>;

    // ---- tenancy -------------------------------------------------------------------------

    async fn regions(&self) -> Result<Vec<RegionRecord>, MetaError>;
    async fn create_region(
        &self,
        name: &str,
        code: &str,
        description: &str,
    ) -> Result<RegionRecord, MetaError>;

    /// A new organization in the default region with a workspace, a tenant (with its roles) and
    /// an admin user; returns the admin.
    async fn create_organization(&self, org: NewOrganization) -> Result<UserRecord, MetaError>;
    async fn organization(
        &self,
        organization_id: &str,
    ) -> Result<Option<OrganizationRecord>, MetaError>;
    async fn update_organization(
        &self,
        organization_id: &str,
        patch: EntityPatch,
    ) -> Result<OrganizationRecord, MetaError>;

    async fn workspaces(
        &self,
        organization_id: &str,
        page: &Page,
    ) -> Result<Vec<WorkspaceRecord>, MetaError>;
    /// A workspace by id, deleted or not.
    async fn workspace(&self, workspace_id: &str) -> Result<Option<WorkspaceRecord>, MetaError>;
    /// A workspace with one tenant (and its roles) in it.
    async fn create_workspace(
        &self,
        organization_id: &str,
        name: &str,
        code: &str,
        description: &str,
    ) -> Result<WorkspaceRecord, MetaError>;
    async fn update_workspace(
        &self,
        workspace_id: &str,
        patch: EntityPatch,
    ) -> Result<WorkspaceRecord, MetaError>;

    async fn tenants(&self, within: &Within, page: &Page) -> Result<Vec<TenantRecord>, MetaError>;
    /// A tenant by id if neither it nor its workspace or organization is deleted.
    async fn tenant(&self, tenant_id: &str) -> Result<Option<TenantRecord>, MetaError>;
    /// A tenant by id, deleted or not.
    async fn tenant_any(&self, tenant_id: &str) -> Result<Option<TenantRecord>, MetaError>;
    /// Creates a tenant (and its roles) in a workspace.
    async fn create_tenant(&self, tenant: NewTenant) -> Result<TenantRecord, MetaError>;
    async fn update_tenant(
        &self,
        tenant_id: &str,
        patch: EntityPatch,
    ) -> Result<TenantRecord, MetaError>;

    /// Soft-deletes (`Some(now)`) or restores (`None`) an entity; false if there is none.
    async fn set_deleted(
        &self,
        entity: Entity,
        id: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<bool, MetaError>;

    /// Hard-deletes entities soft-deleted before `cutoff`, with what hangs off them, and expired
    /// authentication rows (sessions, tokens, devices).
    async fn purge(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<PurgeReport, MetaError>;

    // ---- roles ---------------------------------------------------------------------------

    async fn roles(&self, tenant_id: &str) -> Result<Vec<RoleRecord>, MetaError>;
    async fn role(&self, role_id: &str) -> Result<Option<RoleRecord>, MetaError>;
    async fn create_role(
        &self,
        tenant_id: &str,
        name: &str,
        description: &str,
        role_type: RoleType,
        permissions: &[String],
    ) -> Result<RoleRecord, MetaError>;
    /// Replaces a role's permissions.
    async fn set_role_permissions(
        &self,
        role_id: &str,
        permissions: &[String],
    ) -> Result<RoleRecord, MetaError>;
    async fn delete_role(&self, role_id: &str) -> Result<bool, MetaError>;
    /// Grants a role (of the user's tenant) until `expires_at`, replacing an earlier grant.
    async fn assign_role(
        &self,
        user_id: &str,
        role_id: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), MetaError>;
    async fn unassign_role(&self, user_id: &str, role_id: &str) -> Result<bool, MetaError>;

    // ---- users ---------------------------------------------------------------------------

    /// An active, not deleted user (in a live tenant) by email (case-insensitive).
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, MetaError>;
    /// A user by id, deleted or not.
    async fn user(&self, user_id: &str) -> Result<Option<UserRecord>, MetaError>;
    async fn users(&self, within: &Within, page: &Page) -> Result<Vec<UserRecord>, MetaError>;
    async fn create_user(&self, user: NewUser) -> Result<UserRecord, MetaError>;
    async fn update_user(&self, user_id: &str, patch: UserPatch) -> Result<UserRecord, MetaError>;
    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<(), MetaError>;
    async fn set_email_verified(&self, user_id: &str, at: DateTime<Utc>) -> Result<(), MetaError>;

    /// Counts a failed login; at `threshold` failures in a row the account is locked until
    /// `now + lock_for` and the count starts again. Returns the lock, if one is now in force.
    async fn record_login_failure(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
        threshold: i64,
        lock_for: chrono::Duration,
    ) -> Result<Option<DateTime<Utc>>, MetaError>;
    /// Clears the failure count and lock and records the login time.
    async fn record_login_success(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), MetaError>;

    // ---- sessions and refresh tokens -----------------------------------------------------

    /// Opens a session with the first refresh token of its family; returns the session id.
    async fn create_session(
        &self,
        session: NewSession,
        now: DateTime<Utc>,
    ) -> Result<String, MetaError>;
    /// Presents a refresh token (by hash). If it is the family's current token, it is marked
    /// used and `new_hash` becomes current (expiring at `new_expires_at`); if it was used or
    /// revoked before, the family is revoked. Atomic: of two racing calls, one at most rotates.
    async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        new_hash: &str,
        new_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<RefreshOutcome, MetaError>;
    /// The user's sessions that are active and not expired.
    async fn sessions(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionRecord>, MetaError>;
    /// Whether a session is active and not expired.
    async fn session_active(&self, session_id: &str, now: DateTime<Utc>)
    -> Result<bool, MetaError>;
    /// Ends a session of the user and revokes its refresh tokens; false if there is none.
    async fn revoke_session(
        &self,
        user_id: &str,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, MetaError>;
    /// Ends all the user's sessions (but `except`); returns how many.
    async fn revoke_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64, MetaError>;

    // ---- MFA and devices -----------------------------------------------------------------

    async fn mfa(&self, user_id: &str) -> Result<Option<MfaRecord>, MetaError>;
    /// Starts (or restarts) enrolment: stores the encrypted secret, not enabled yet.
    async fn put_mfa_secret(
        &self,
        user_id: &str,
        secret_encrypted: &str,
        now: DateTime<Utc>,
    ) -> Result<(), MetaError>;
    /// Enables MFA and replaces the backup codes (their hashes).
    async fn enable_mfa(
        &self,
        user_id: &str,
        backup_code_hashes: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), MetaError>;
    /// Removes MFA, its backup codes and the user's trusted devices.
    async fn disable_mfa(&self, user_id: &str) -> Result<(), MetaError>;
    /// Records that TOTP `step` was used; false if it or a later step was used before.
    async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool, MetaError>;
    /// Uses a backup code (by hash); false if it does not exist or was used.
    async fn use_backup_code(
        &self,
        user_id: &str,
        code_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, MetaError>;
    async fn trust_device(
        &self,
        user_id: &str,
        fingerprint_hash: &str,
        name: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), MetaError>;
    /// Whether the device is trusted and not expired (and records its use).
    async fn device_trusted(
        &self,
        user_id: &str,
        fingerprint_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, MetaError>;

    // ---- single-use tokens and invitations -----------------------------------------------

    async fn create_one_time_token(
        &self,
        kind: OneTimeKind,
        user_id: &str,
        email: &str,
        token_hash: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), MetaError>;
    /// Uses a token (by hash) if it exists, is unused and unexpired.
    async fn consume_one_time_token(
        &self,
        kind: OneTimeKind,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ConsumedToken>, MetaError>;
    async fn create_invitation(
        &self,
        invitation: NewInvitation,
        now: DateTime<Utc>,
    ) -> Result<InvitationRecord, MetaError>;
    /// Uses an invitation (by hash) if it exists, is unused and unexpired.
    async fn consume_invitation(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<InvitationRecord>, MetaError>;

    // ---- API keys ------------------------------------------------------------------------

    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKeyRecord, MetaError>;
    /// A key by its public `tfk-…` id, whatever its status.
    async fn api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, MetaError>;
    /// A key by its row id, whatever its status.
    async fn api_key_by_id(&self, api_key_id: &str) -> Result<Option<ApiKeyRecord>, MetaError>;
    async fn api_keys(&self, within: &Within, page: &Page) -> Result<Vec<ApiKeyRecord>, MetaError>;
    /// Creates `new` as the successor of `api_key_id`, which becomes `rotated` and keeps
    /// working until `grace_until`.
    async fn rotate_api_key(
        &self,
        api_key_id: &str,
        new: NewApiKey,
        grace_until: DateTime<Utc>,
    ) -> Result<ApiKeyRecord, MetaError>;
    async fn revoke_api_key(
        &self,
        api_key_id: &str,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<ApiKeyRecord, MetaError>;
    /// Adds usage counted in memory since the last call: `(key_id, uses, last_used_at, ip)`,
    /// and the sampled `api_key_usage_log` rows.
    async fn record_api_key_usage(
        &self,
        usage: &[(String, u64, DateTime<Utc>, String)],
        log: &[ApiKeyUsage],
    ) -> Result<(), MetaError>;
    // ---- plugins -------------------------------------------------------------------------

    /// Stores an uploaded plugin (and its bytes, once per content hash).
    async fn create_plugin(&self, plugin: NewPlugin) -> Result<PluginRecord, MetaError>;
    /// A plugin by id, deleted or not.
    async fn plugin(&self, plugin_id: &str) -> Result<Option<PluginRecord>, MetaError>;
    /// A workspace's plugins that are not deleted, by name then version; `name` narrows.
    async fn plugins(
        &self,
        workspace_id: &str,
        name: Option<&str>,
        page: &Page,
    ) -> Result<Vec<PluginRecord>, MetaError>;
    /// The component bytes of a content hash.
    async fn plugin_bytes(&self, sha256: &str) -> Result<Option<Vec<u8>>, MetaError>;
    /// Enables or disables a plugin (with the reason, e.g. a circuit breaker's).
    async fn set_plugin_enabled(
        &self,
        plugin_id: &str,
        enabled: bool,
        reason: Option<&str>,
    ) -> Result<PluginRecord, MetaError>;
    /// Counts a plugin call for its circuit breaker: a failure adds one to its failed calls in
    /// a row, a success sets them to zero; the count after it.
    async fn count_plugin_call(&self, plugin_id: &str, failed: bool) -> Result<i64, MetaError>;
    /// Soft-deletes a plugin; false if there is none.
    async fn delete_plugin(&self, plugin_id: &str, at: DateTime<Utc>) -> Result<bool, MetaError>;

    /// The newest usage log rows of a key.
    async fn api_key_usage_log(
        &self,
        api_key_id: &str,
        limit: u32,
    ) -> Result<Vec<ApiKeyUsage>, MetaError>;
}

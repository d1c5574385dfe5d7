//! The metadata store port: tenancy, users and API keys.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use model::{ErrorKind, Scope};

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("metadata store error: {0}")]
    Backend(String),
}

impl MetaError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            MetaError::NotFound(_) => ErrorKind::NotFound,
            MetaError::Conflict(_) => ErrorKind::InvalidInput,
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
        const RESOURCES: [&str; 6] = ["user", "metric", "log", "trace", "dashboard", "alert"];
        const TELEMETRY: [&str; 5] = ["metric", "log", "trace", "dashboard", "alert"];
        let mut out = Vec::new();
        match self {
            RoleType::Admin => {
                for r in RESOURCES {
                    for a in ["read", "write", "delete", "admin"] {
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

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user_id: String,
    pub email: String,
    pub password_hash: String,
    pub scope: Scope,
    pub is_active: bool,
    /// Roles in force now (expired assignments left out).
    pub roles: Vec<RoleType>,
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

#[derive(Debug, Clone)]
pub struct TenantRecord {
    pub tenant_id: String,
    pub workspace_id: String,
    pub organization_id: String,
    pub name: String,
    pub code: String,
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub workspace_id: String,
    pub name: String,
    pub code: String,
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
    pub scope: Scope,
    pub status: ApiKeyStatus,
    pub permissions: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub grace_period_expires_at: Option<DateTime<Utc>>,
    pub rate_limit: Option<i64>,
    pub created_at: DateTime<Utc>,
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

    /// An active, not deleted user by email (case-insensitive).
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, MetaError>;

    async fn create_user(&self, user: NewUser) -> Result<UserRecord, MetaError>;

    /// A tenant by id, if it is not deleted.
    async fn tenant(&self, tenant_id: &str) -> Result<Option<TenantRecord>, MetaError>;

    /// Creates a tenant (and its roles) in a workspace.
    async fn create_tenant(&self, tenant: NewTenant) -> Result<TenantRecord, MetaError>;

    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKeyRecord, MetaError>;

    /// A key by its public `tfk-…` id, whatever its status.
    async fn api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, MetaError>;

    /// Adds usage counted in memory since the last call: `(key_id, uses, last_used_at, ip)`.
    async fn record_api_key_usage(
        &self,
        usage: &[(String, u64, DateTime<Utc>, String)],
    ) -> Result<(), MetaError>;

    /// Whether the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), MetaError>;
}

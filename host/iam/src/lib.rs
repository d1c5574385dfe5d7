//! Identity primitives: password hashing, access tokens, API key material, and the question
//! "may this principal do that". No HTTP, no SQL, no clock of its own (callers pass `now`).

mod api_key;
mod password;
mod token;

pub use api_key::{
    ApiKeyMaterial, INGEST_PERMISSIONS, fast_digest, generate_api_key, parse_api_key,
};
pub use password::{PasswordError, hash_password, validate_password, verify_password};
pub use token::{AccessClaims, TokenError, TokenKeys};

use model::{Scope, Signal};

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Principal {
    User {
        user_id: String,
        email: String,
        scope: Scope,
        roles: Vec<String>,
    },
    ApiKey {
        key_id: String,
        scope: Scope,
        permissions: Vec<String>,
    },
}

impl Principal {
    pub fn scope(&self) -> &Scope {
        match self {
            Principal::User { scope, .. } | Principal::ApiKey { scope, .. } => scope,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::User { roles, .. } if roles.iter().any(|r| r == "admin"))
    }

    /// Whether the principal may send `signal` over OTLP.
    pub fn may_ingest(&self, signal: Signal) -> bool {
        match self {
            Principal::ApiKey { permissions, .. } => {
                permissions.iter().any(|p| p == signal.write_permission())
            }
            Principal::User { .. } => false,
        }
    }

    /// Whether the principal may read telemetry (every human role but `service`).
    pub fn may_read_telemetry(&self) -> bool {
        match self {
            Principal::User { roles, .. } => roles
                .iter()
                .any(|r| matches!(r.as_str(), "admin" | "developer" | "viewer" | "demo")),
            Principal::ApiKey { .. } => false,
        }
    }
}

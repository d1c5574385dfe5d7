//! Identity primitives: password hashing, access tokens, API key material, and the question
//! "may this principal do that". No HTTP, no SQL, no clock of its own (callers pass `now`).

mod api_key;
mod password;
mod sealed;
mod secret;
mod token;
mod totp;

pub use api_key::{
    ApiKeyMaterial, INGEST_PERMISSIONS, READ_PERMISSIONS, fast_digest, generate_api_key,
    parse_api_key,
};
pub use password::{PasswordError, hash_password, validate_password, verify_password};
pub use sealed::{SealError, SecretBox};
pub use secret::{backup_code_hash, backup_codes, random_token, token_hash};
pub use token::{AccessClaims, TokenError, TokenKeys};
pub use totp::{TotpError, new_totp_secret, otpauth_uri, totp_code, totp_match};

use model::{Scope, Signal};

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Principal {
    User {
        user_id: String,
        email: String,
        scope: Scope,
        roles: Vec<String>,
        /// `resource:action` permissions of the roles in force, sorted.
        permissions: Vec<String>,
        session_id: String,
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
        self.has("user:admin")
    }

    /// Whether a user principal holds `permission` (`resource:action`).
    pub fn has(&self, permission: &str) -> bool {
        match self {
            Principal::User { permissions, .. } => permissions
                .binary_search_by(|p| p.as_str().cmp(permission))
                .is_ok(),
            // A key reads the telemetry its read permissions name (`metrics:read` grants
            // `metric:read`), and nothing else a user permission covers.
            Principal::ApiKey { permissions, .. } => match permission {
                "metric:read" | "log:read" | "trace:read" => {
                    let (resource, _) = permission.split_at(permission.len() - ":read".len());
                    let key_form = format!("{resource}s:read");
                    permissions.contains(&key_form)
                }
                _ => false,
            },
        }
    }

    /// The user id, or the key id of an API key.
    pub fn actor(&self) -> &str {
        match self {
            Principal::User { user_id, .. } => user_id,
            Principal::ApiKey { key_id, .. } => key_id,
        }
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

    /// Whether the principal may read some telemetry (metrics, logs or traces).
    pub fn may_read_telemetry(&self) -> bool {
        ["metric:read", "log:read", "trace:read"]
            .iter()
            .any(|p| self.has(p))
    }
}

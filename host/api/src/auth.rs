//! Who is calling: API keys for ingest, JWT access tokens for the API.
//!
//! API keys are verified with Argon2id once, then remembered: the cache maps a SHA-256 of the
//! presented token to "verified" for ten minutes, so the per-request cost is one hash. The key's
//! record (status, expiry, permissions) is re-read from the metadata store at most every two
//! seconds, so revoking a key takes effect within seconds. Tokens that failed verification are
//! remembered too, so a client hammering with a bad key costs no Argon2id work either.
//! Usage counts are kept in memory and written to the store in batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use iam::Principal;
use moka::future::Cache;
use parking_lot::Mutex;
use storage::{ApiKeyRecord, ApiKeyStatus, MetaStore};

use crate::{ApiError, AppState};

type Usage = HashMap<String, (u64, DateTime<Utc>, String)>;

pub struct ApiKeyVerifier {
    meta: Arc<dyn MetaStore>,
    verified: Cache<[u8; 32], ()>,
    rejected: Cache<[u8; 32], ()>,
    records: Cache<String, Option<Arc<ApiKeyRecord>>>,
    usage: Mutex<Usage>,
}

impl ApiKeyVerifier {
    pub fn new(meta: Arc<dyn MetaStore>) -> ApiKeyVerifier {
        ApiKeyVerifier {
            meta,
            verified: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
            rejected: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            records: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(2))
                .build(),
            usage: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies a presented API key and returns its principal.
    ///
    /// # Errors
    /// 401 for a malformed, unknown, wrong, revoked or expired key.
    pub async fn verify(&self, token: &str, ip: &str) -> Result<Principal, ApiError> {
        let Some((key_id, secret)) = iam::parse_api_key(token) else {
            return Err(ApiError::unauthenticated("malformed API key"));
        };
        let meta = Arc::clone(&self.meta);
        let id = key_id.to_string();
        let record = self
            .records
            .try_get_with(id.clone(), async move {
                meta.api_key(&id).await.map(|r| r.map(Arc::new))
            })
            .await
            .map_err(|e| ApiError::internal(e.as_ref()))?;
        let Some(record) = record else {
            return Err(ApiError::unauthenticated("unknown API key"));
        };
        let now = Utc::now();
        let usable = match record.status {
            ApiKeyStatus::Active => true,
            ApiKeyStatus::Rotated => record.grace_period_expires_at.is_some_and(|g| g > now),
            ApiKeyStatus::Revoked | ApiKeyStatus::Expired => false,
        };
        if !usable || record.expires_at.is_some_and(|e| e <= now) {
            return Err(ApiError::unauthenticated("API key is revoked or expired"));
        }
        let digest = iam::fast_digest(token);
        if !self.verified.contains_key(&digest) {
            if self.rejected.contains_key(&digest) {
                return Err(ApiError::unauthenticated("invalid API key"));
            }
            let hash = record.secret_hash.clone();
            let secret = secret.to_string();
            let ok = tokio::task::spawn_blocking(move || iam::verify_password(&secret, &hash))
                .await
                .map_err(ApiError::internal)?;
            if !ok {
                self.rejected.insert(digest, ()).await;
                return Err(ApiError::unauthenticated("invalid API key"));
            }
            self.verified.insert(digest, ()).await;
        }
        {
            let mut usage = self.usage.lock();
            let e = usage
                .entry(record.key_id.clone())
                .or_insert((0, now, String::new()));
            e.0 += 1;
            e.1 = now;
            if e.2 != ip {
                e.2 = ip.to_string();
            }
        }
        Ok(Principal::ApiKey {
            key_id: record.key_id.clone(),
            scope: record.scope.clone(),
            permissions: record.permissions.clone(),
        })
    }

    /// Writes usage counted since the last call to the metadata store.
    pub async fn flush_usage(&self) {
        let batch: Vec<(String, u64, DateTime<Utc>, String)> = {
            let mut usage = self.usage.lock();
            usage
                .drain()
                .map(|(k, (n, at, ip))| (k, n, at, ip))
                .collect()
        };
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.meta.record_api_key_usage(&batch).await {
            tracing::warn!(error = %e, keys = batch.len(), "cannot record API key usage");
        }
    }
}

/// The API key a request presents: `Authorization: Bearer tfk-…` or `x-api-key: tfk-…`.
pub(crate) fn presented_api_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    bearer(headers)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// An authenticated user of the API (a verified JWT access token).
pub struct User(pub Principal);

impl FromRequestParts<Arc<AppState>> for User {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)
            .ok_or_else(|| ApiError::unauthenticated("missing bearer access token"))?;
        let claims = state
            .tokens
            .verify(token)
            .map_err(|e| ApiError::unauthenticated(e.to_string()))?;
        Ok(User(Principal::User {
            user_id: claims.sub,
            email: claims.email,
            scope: model::Scope {
                organization_id: claims.org,
                workspace_id: claims.ws,
                tenant_id: claims.tenant,
            },
            roles: claims.roles,
        }))
    }
}

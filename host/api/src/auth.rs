//! Who is calling: API keys for ingest, JWT access tokens for the API.
//!
//! API keys are verified with Argon2id once, then remembered: the cache maps a SHA-256 of the
//! presented token to "verified" for ten minutes, so the per-request cost is one hash. The key's
//! record (status, expiry, permissions, rate limit) is re-read from the metadata store at most
//! every two seconds, so revoking a key takes effect within seconds. Tokens that failed
//! verification are remembered too, so a client hammering with a bad key costs no Argon2id work.
//! Each key's rate limit (requests per minute) is a GCRA limiter (`governor`) kept in memory.
//! Usage counts and usage log rows are kept in memory and written to the store in batches.
//!
//! Access tokens are verified (signature, algorithm, `iss`, `aud`, `exp`, `nbf`), then the user
//! and session behind them are looked up, at most every five seconds per session: a deleted or
//! deactivated user, a revoked session or a changed role takes effect within seconds, not at the
//! token's expiry.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use iam::Principal;
use model::ErrorKind;
use moka::future::Cache;
use parking_lot::Mutex;
use storage::{ApiKeyRecord, ApiKeyStatus, ApiKeyUsage, MetaStore};

use crate::{ApiError, AppState};

type Usage = HashMap<String, (u64, DateTime<Utc>, String)>;
type LogKey = (String, &'static str, &'static str, u16);
type UsageLog = HashMap<LogKey, (DateTime<Utc>, String)>;

pub struct ApiKeyVerifier {
    meta: Arc<dyn MetaStore>,
    verified: Cache<[u8; 32], ()>,
    rejected: Cache<[u8; 32], ()>,
    records: Cache<String, Option<Arc<ApiKeyRecord>>>,
    limiters: Cache<(String, u32), Arc<DefaultDirectRateLimiter>>,
    usage: Mutex<Usage>,
    log: Mutex<UsageLog>,
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
            limiters: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            usage: Mutex::new(HashMap::new()),
            log: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies a presented API key, applies its rate limit and returns its principal.
    ///
    /// # Errors
    /// 401 for a malformed, unknown, wrong, revoked or expired key; 429 with Retry-After when
    /// the key is over its rate limit.
    pub async fn verify(
        &self,
        token: &str,
        ip: &str,
        endpoint: &'static str,
    ) -> Result<Principal, ApiError> {
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
        if !usable || record.expires_at.is_some_and(|e| e <= now) || !record.owner_active {
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
        if let Some(per_minute) = record
            .rate_limit
            .and_then(|r| u32::try_from(r).ok())
            .and_then(NonZeroU32::new)
        {
            let limiter = self
                .limiters
                .get_with((record.key_id.clone(), per_minute.get()), async move {
                    Arc::new(RateLimiter::direct(Quota::per_minute(per_minute)))
                })
                .await;
            if let Err(not_until) = limiter.check() {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                self.note(&record.key_id, endpoint, 429, ip);
                metrics::counter!("telemetryflow_api_key_rate_limited_total").increment(1);
                return Err(ApiError {
                    kind: ErrorKind::TooManyRequests,
                    message: format!(
                        "API key {} is over its rate limit of {per_minute} requests per minute",
                        record.key_id
                    ),
                    retry_after: Some(wait.max(Duration::from_secs(1))),
                    fields: Vec::new(),
                });
            }
        }
        Ok(Principal::ApiKey {
            key_id: record.key_id.clone(),
            scope: record.scope.clone(),
            permissions: record.permissions.clone(),
        })
    }

    /// Counts one use of a key with its outcome; written to the store by [`Self::flush_usage`]
    /// as the key's usage count and one `api_key_usage_log` row per endpoint, method and status
    /// per flush window.
    pub fn note(&self, key_id: &str, endpoint: &'static str, status: u16, ip: &str) {
        let now = Utc::now();
        {
            let mut usage = self.usage.lock();
            let e = usage
                .entry(key_id.to_string())
                .or_insert((0, now, String::new()));
            e.0 += 1;
            e.1 = now;
            if e.2 != ip {
                e.2 = ip.to_string();
            }
        }
        let mut log = self.log.lock();
        let e = log
            .entry((key_id.to_string(), endpoint, "POST", status))
            .or_insert((now, String::new()));
        e.0 = now;
        if e.1 != ip {
            e.1 = ip.to_string();
        }
    }

    /// Forgets what is cached about a key, so a change to it applies to the next request.
    pub async fn invalidate(&self, key_id: &str) {
        self.records.invalidate(key_id).await;
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
        let log: Vec<ApiKeyUsage> = {
            let mut log = self.log.lock();
            log.drain()
                .map(
                    |((key_id, endpoint, method, status), (at, ip))| ApiKeyUsage {
                        key_id,
                        endpoint: endpoint.to_string(),
                        method: method.to_string(),
                        ip_address: ip,
                        status_code: i64::from(status),
                        at,
                    },
                )
                .collect()
        };
        if batch.is_empty() && log.is_empty() {
            return;
        }
        if let Err(e) = self.meta.record_api_key_usage(&batch, &log).await {
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

/// What the server knows of a signed-in user, refreshed every few seconds.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    pub principal: Option<Principal>,
}

/// Caches [`Access`] per session for five seconds.
pub struct AccessCache {
    cache: Cache<(String, String), Arc<Access>>,
}

impl Default for AccessCache {
    fn default() -> Self {
        AccessCache {
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(5))
                .support_invalidation_closures()
                .build(),
        }
    }
}

impl AccessCache {
    /// Forgets everyone's cached access (after a change to a role's permissions).
    pub fn cache_clear(&self) {
        self.cache.invalidate_all();
    }

    /// Forgets a user's cached access (after a change to their roles, status or sessions).
    pub fn forget_user(&self, user_id: &str) {
        let user_id = user_id.to_string();
        // The predicate is applied lazily: matching entries are no longer returned from now on.
        if let Err(e) = self
            .cache
            .invalidate_entries_if(move |(u, _), _| *u == user_id)
        {
            tracing::error!(error = %e, "cannot invalidate cached access; clearing all");
            self.cache.invalidate_all();
        }
    }
}

async fn load_access(
    meta: &dyn MetaStore,
    user_id: &str,
    session_id: &str,
) -> Result<Access, storage::MetaError> {
    let now = Utc::now();
    let none = Access { principal: None };
    let Some(user) = meta.user(user_id).await? else {
        return Ok(none);
    };
    if user.deleted_at.is_some() || !user.is_active {
        return Ok(none);
    }
    // The tenant (and its workspace and organization) must be live too.
    if meta.tenant(&user.scope.tenant_id).await?.is_none() {
        return Ok(none);
    }
    if !meta.session_active(session_id, now).await? {
        return Ok(none);
    }
    Ok(Access {
        principal: Some(Principal::User {
            roles: user.roles.iter().map(|r| r.as_str().to_string()).collect(),
            permissions: user.permissions.clone(),
            session_id: session_id.to_string(),
            email: user.email,
            scope: user.scope,
            user_id: user.user_id,
        }),
    })
}

/// An authenticated user of the API (a verified JWT access token of a live session).
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
        let meta = Arc::clone(&state.meta);
        let (sub, sid) = (claims.sub.clone(), claims.sid.clone());
        let access = state
            .access
            .cache
            .try_get_with((claims.sub, claims.sid), async move {
                load_access(meta.as_ref(), &sub, &sid).await.map(Arc::new)
            })
            .await
            .map_err(|e| ApiError::internal(e.as_ref()))?;
        match &access.principal {
            Some(p) => Ok(User(p.clone())),
            None => Err(ApiError::unauthenticated(
                "the session has ended or the account is disabled; sign in again",
            )),
        }
    }
}

/// A caller that reads telemetry: a signed-in user (access token), or an API key (`tfk-…` as a
/// bearer token or in `x-api-key`, its rate limit applied) with read permissions. Tools that
/// poll, such as Grafana, hold a key: access tokens last minutes.
pub struct Reader(pub Principal);

impl FromRequestParts<Arc<AppState>> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(key) = presented_api_key(&parts.headers).filter(|k| k.starts_with("tfk-")) {
            let key = key.to_string();
            let ip = parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_default();
            return Ok(Reader(state.keys.verify(&key, &ip, "query").await?));
        }
        let User(p) = User::from_request_parts(parts, state).await?;
        Ok(Reader(p))
    }
}

/// Where a request came from, for sessions and the audit log.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub ip: String,
    pub user_agent: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect())
            .unwrap_or_default();
        Ok(Client { ip, user_agent })
    }
}

/// 403 unless the principal holds `permission`.
pub(crate) fn require(p: &Principal, permission: &str) -> Result<(), ApiError> {
    if p.has(permission) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "this action needs the {permission} permission"
        )))
    }
}

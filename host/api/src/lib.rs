//! The protocol layer: axum routes for the API and OTLP/HTTP, tonic services for OTLP/gRPC.
//!
//! Handlers do not fail: every error becomes an [`ApiError`], which knows its status and is the
//! one place where errors turn into HTTP (or gRPC) answers. Handlers depend on the storage ports
//! and on `iam`, never on a concrete backend.

mod alert_routes;
mod audit;
mod auth;
mod auth_routes;
mod channel_routes;
mod channels;
mod dashboard_routes;
mod error;
mod grpc;
mod iam_routes;
mod ingest;
mod mail;
mod otlp_http;
mod plugins;
mod query_routes;
mod routes;
mod sql_json;
mod view_routes;

use std::sync::Arc;

pub use audit::{AuditEvent, AuditLog, AuditResult};
pub use auth::{AccessCache, ApiKeyVerifier, Client};
pub use channels::ChannelCapabilities;
pub use dashboard_routes::install_dashboard_templates;
pub use error::ApiError;
pub use grpc::grpc_services;
pub use ingest::reconvert;
pub use mail::{Mailer, SmtpMailer};
pub use otlp_http::otlp_router;
pub use plugins::{AlertPlugins, PluginService};
pub use routes::api_router;

use iam::TokenKeys;
use storage::{AlertStore, DashboardStore, MetaStore, TelemetryStore};

/// Limits on what clients send.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// Largest OTLP body accepted, after decompression.
    pub max_body_bytes: usize,
    /// OTLP requests processed at once; more get 503 + Retry-After.
    pub max_in_flight: usize,
    pub item: otlp::Limits,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_body_bytes: 16 << 20,
            max_in_flight: 64,
            item: otlp::Limits::default(),
        }
    }
}

/// Who may register, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Nobody: admins create users.
    Closed,
    /// With an invitation an admin sent (the default).
    Invite,
    /// Anyone, who then gets a new organization of their own (invitations work too).
    Open,
}

/// Authentication settings (security numbers from the product brief).
#[derive(Clone)]
pub struct AuthSettings {
    pub registration: Registration,
    /// Failed logins in a row before the account locks.
    pub lockout_threshold: i64,
    pub lockout_duration: chrono::Duration,
    /// A session's absolute lifetime.
    pub session_ttl: chrono::Duration,
    /// A refresh token's lifetime (capped by its session's).
    pub refresh_ttl: chrono::Duration,
    pub trusted_device_ttl: chrono::Duration,
    pub email_token_ttl: chrono::Duration,
    pub reset_token_ttl: chrono::Duration,
    pub invitation_ttl: chrono::Duration,
    /// Where users reach the console, for links in emails.
    pub public_url: String,
    /// Seals MFA secrets at rest.
    pub secrets: iam::SecretBox,
    pub mailer: Option<Arc<dyn Mailer>>,
}

impl AuthSettings {
    pub fn new(secrets: iam::SecretBox) -> AuthSettings {
        AuthSettings {
            registration: Registration::Invite,
            lockout_threshold: 5,
            lockout_duration: chrono::Duration::minutes(15),
            session_ttl: chrono::Duration::days(30),
            refresh_ttl: chrono::Duration::days(7),
            trusted_device_ttl: chrono::Duration::days(30),
            email_token_ttl: chrono::Duration::hours(24),
            reset_token_ttl: chrono::Duration::hours(1),
            invitation_ttl: chrono::Duration::days(7),
            public_url: "http://localhost:8080".to_string(),
            secrets,
            mailer: None,
        }
    }
}

/// Everything handlers share.
pub struct AppState {
    pub meta: Arc<dyn MetaStore>,
    /// Alert rules, notification groups, channels, silences (the same database as `meta`).
    pub alerts: Arc<dyn AlertStore>,
    /// Dashboards, widgets, templates (the same database as `meta`).
    pub dashboards: Arc<dyn DashboardStore>,
    pub telemetry: Arc<dyn TelemetryStore>,
    pub tokens: TokenKeys,
    pub keys: ApiKeyVerifier,
    pub access: AccessCache,
    pub auth: AuthSettings,
    pub audit: AuditLog,
    pub plugins: Arc<PluginService>,
    pub limits: IngestLimits,
    pub query_limits: query::QueryLimits,
    /// Buckets of earlier builder answers still valid (panels refreshing a moving range).
    pub query_cache: query::BucketCache,
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Queries running now (`telemetryflow_queries_running`).
    pub queries_running: Arc<std::sync::atomic::AtomicUsize>,
    /// Renders `/metrics` (the Prometheus recorder lives in the server binary).
    pub render_metrics: Box<dyn Fn() -> String + Send + Sync>,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        meta: Arc<dyn MetaStore>,
        alerts: Arc<dyn AlertStore>,
        dashboards: Arc<dyn DashboardStore>,
        telemetry: Arc<dyn TelemetryStore>,
        tokens: TokenKeys,
        limits: IngestLimits,
        auth: AuthSettings,
        plugins: Arc<PluginService>,
        render_metrics: Box<dyn Fn() -> String + Send + Sync>,
        query_cache_bytes: usize,
    ) -> Arc<AppState> {
        Arc::new(AppState {
            keys: ApiKeyVerifier::new(Arc::clone(&meta)),
            access: AccessCache::default(),
            audit: AuditLog::default(),
            auth,
            plugins,
            meta,
            alerts,
            dashboards,
            telemetry,
            tokens,
            in_flight: Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight)),
            queries_running: Arc::default(),
            limits,
            query_limits: query::QueryLimits::default(),
            query_cache: query::BucketCache::new(query_cache_bytes),
            render_metrics,
        })
    }
}

impl AppState {
    /// Records an audited action by `actor` (a user id, or empty when unknown).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn audit(
        &self,
        client: &Client,
        actor: &str,
        scope: &model::Scope,
        action: &str,
        resource: (&str, &str),
        result: AuditResult,
        metadata: serde_json::Value,
    ) {
        self.audit.record(AuditEvent {
            at: chrono::Utc::now(),
            user_id: actor.to_string(),
            action: action.to_string(),
            resource_type: resource.0.to_string(),
            resource_id: resource.1.to_string(),
            ip_address: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            scope: scope.clone(),
            result,
            metadata,
        });
    }
}

pub(crate) fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

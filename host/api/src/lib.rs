//! The protocol layer: axum routes for the API and OTLP/HTTP, tonic services for OTLP/gRPC.
//!
//! Handlers do not fail: every error becomes an [`ApiError`], which knows its status and is the
//! one place where errors turn into HTTP (or gRPC) answers. Handlers depend on the storage ports
//! and on `iam`, never on a concrete backend.

mod auth;
mod error;
mod grpc;
mod ingest;
mod otlp_http;
mod routes;
mod sql_json;

use std::sync::Arc;

pub use auth::ApiKeyVerifier;
pub use error::ApiError;
pub use grpc::grpc_services;
pub use ingest::reconvert;
pub use otlp_http::otlp_router;
pub use routes::api_router;

use iam::TokenKeys;
use storage::{MetaStore, TelemetryStore};

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

/// Everything handlers share.
pub struct AppState {
    pub meta: Arc<dyn MetaStore>,
    pub telemetry: Arc<dyn TelemetryStore>,
    pub tokens: TokenKeys,
    pub keys: ApiKeyVerifier,
    pub limits: IngestLimits,
    pub query_limits: query::QueryLimits,
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Renders `/metrics` (the Prometheus recorder lives in the server binary).
    pub render_metrics: Box<dyn Fn() -> String + Send + Sync>,
}

impl AppState {
    pub fn new(
        meta: Arc<dyn MetaStore>,
        telemetry: Arc<dyn TelemetryStore>,
        tokens: TokenKeys,
        limits: IngestLimits,
        render_metrics: Box<dyn Fn() -> String + Send + Sync>,
    ) -> Arc<AppState> {
        Arc::new(AppState {
            keys: ApiKeyVerifier::new(Arc::clone(&meta)),
            meta,
            telemetry,
            tokens,
            in_flight: Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight)),
            limits,
            query_limits: query::QueryLimits::default(),
            render_metrics,
        })
    }
}

pub(crate) fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

//! The API: health, metrics and the SQL read path, with the IAM routes merged in.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Reader;
use crate::{ApiError, AppState, sql_json};

/// A JSON body whose rejections are 400s with the reason.
pub struct Body<T>(pub T);

impl<T, S> FromRequest<S> for Body<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}

/// An optional JSON body: absent (empty) is `None`; present but malformed is a 400.
pub struct OptBody<T>(pub Option<T>);

impl<T, S> FromRequest<S> for OptBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = bytes::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::invalid(e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptBody(None));
        }
        serde_json::from_slice(&bytes)
            .map(|v| OptBody(Some(v)))
            .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
    }
}

/// The OpenAPI document's frame; the paths come from the handlers' `#[utoipa::path]`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "TelemetryFlow API",
        description = "Management, authentication and query API. Errors are `{\"error\": reason}` with \
                       the status that fits (400 bad input, 401 no or bad credentials, 403 missing \
                       permission, 404 not found or outside your reach, 409 conflict, 429/503 with \
                       Retry-After). OTLP ingest (`/v1/traces`, `/v1/logs`, `/v1/metrics`) is on its \
                       own port and follows the OTLP specification."
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("an access token from /api/v1/auth/login"))
                    .build(),
            ),
        );
    }
}

/// The API routes (health, metrics and `/api/v1`) and their OpenAPI document, built together
/// from the same handlers, so the document cannot miss a route.
pub fn api_router(state: Arc<AppState>) -> Router {
    let (router, doc) = OpenApiRouter::with_openapi(<ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(query_sql))
        .merge(crate::auth_routes::router())
        .merge(crate::iam_routes::router())
        .merge(crate::plugins::router())
        .merge(crate::alert_routes::router())
        .merge(crate::channel_routes::router())
        .merge(crate::view_routes::router())
        .merge(crate::query_routes::router())
        .merge(crate::dashboard_routes::router())
        .split_for_parts();
    let doc = Arc::new(doc.to_pretty_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot render the OpenAPI document");
        "{}".to_string()
    }));
    router
        .route(
            "/api/openapi.json",
            get(move || {
                let doc = Arc::clone(&doc);
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        doc.to_string(),
                    )
                }
            }),
        )
        .with_state(state)
}

#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = "service", responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let meta = state.meta.ping().await;
    let telemetry = state.telemetry.is_ready();
    if meta.is_ok() && telemetry {
        (StatusCode::OK, "ready").into_response()
    } else {
        let body = json!({
            "metadata_store": meta.err().map_or_else(|| "ok".to_string(), |e| e.to_string()),
            "telemetry_store": if telemetry { "ok" } else { "not ready" },
        });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let stats = state.telemetry.stats();
    for t in &stats.tables {
        metrics::gauge!("telemetryflow_store_rows", "table" => t.table.name()).set(t.rows as f64);
        metrics::gauge!("telemetryflow_store_bytes", "table" => t.table.name()).set(t.bytes as f64);
    }
    metrics::gauge!("telemetryflow_store_wal_bytes").set(stats.wal_bytes as f64);
    metrics::gauge!("telemetryflow_queries_running").set(
        state
            .queries_running
            .load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    let cache = state.query_cache.stats();
    metrics::gauge!("telemetryflow_query_cache_bytes").set(cache.bytes as f64);
    metrics::gauge!("telemetryflow_query_cache_entries").set(cache.entries as f64);
    metrics::counter!("telemetryflow_query_cache_hits_total").absolute(cache.hits);
    metrics::counter!("telemetryflow_query_cache_misses_total").absolute(cache.misses);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        (state.render_metrics)(),
    )
        .into_response()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    max_rows: Option<usize>,
    /// `arrays` (the default: each row an array in column order) or `objects` (each row an
    /// object keyed by column name, for clients that select columns by name).
    format: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/query/sql", tag = "query", request_body = SqlRequest, security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn query_sql(
    State(state): State<Arc<AppState>>,
    Reader(p): Reader,
    headers: axum::http::HeaderMap,
    Body(body): Body<SqlRequest>,
) -> Result<Response, ApiError> {
    if !p.may_read_telemetry() {
        return Err(ApiError::forbidden("this role cannot read telemetry"));
    }
    if body.sql.len() > 64 * 1024 {
        return Err(ApiError::invalid("sql must be at most 64 KiB"));
    }
    let mut limits = state.query_limits;
    if let Some(n) = body.max_rows {
        limits.max_rows = n.clamp(1, limits.max_rows);
    }
    let out = crate::query_routes::within_time_limit(
        &state,
        query::run_scoped_sql(state.telemetry.as_ref(), p.scope(), &body.sql, &limits),
    )
    .await?;
    let wants_arrow = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(ARROW_STREAM));
    if wants_arrow {
        let bytes = out.to_arrow_ipc().map_err(ApiError::internal)?;
        return Ok((
            [
                (header::CONTENT_TYPE, ARROW_STREAM),
                (
                    header::HeaderName::from_static("x-truncated"),
                    if out.truncated { "true" } else { "false" },
                ),
            ],
            bytes,
        )
            .into_response());
    }
    match body.format.as_deref() {
        None | Some("arrays") => Ok(Json(sql_json::to_json(&out)?).into_response()),
        Some("objects") => {
            let mut v = sql_json::to_json(&out)?;
            v["rows"] = serde_json::Value::Array(
                sql_json::to_objects(&out)?
                    .into_iter()
                    .map(serde_json::Value::Object)
                    .collect(),
            );
            Ok(Json(v).into_response())
        }
        Some(other) => Err(ApiError::invalid(format!(
            "format is arrays or objects, not {other:?}"
        ))),
    }
}

/// The media type of an Arrow IPC stream, which `POST /api/v1/query/sql` answers with when the
/// client accepts it.
pub(crate) const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

//! The API: health, metrics, login, API keys, tenants, users and the SQL read path.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use iam::Principal;
use model::ErrorKind;
use serde::Deserialize;
use serde_json::json;
use storage::{NewApiKey, NewTenant, NewUser, RoleType};

use crate::auth::User;
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

/// The API routes (health, metrics and `/api/v1`).
pub fn api_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/api-keys", post(create_api_key))
        .route("/api/v1/tenants", post(create_tenant))
        .route("/api/v1/users", post(create_user))
        .route("/api/v1/query/sql", post(query_sql))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

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

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let stats = state.telemetry.stats();
    for t in &stats.tables {
        metrics::gauge!("telemetryflow_store_rows", "table" => t.table.name()).set(t.rows as f64);
        metrics::gauge!("telemetryflow_store_bytes", "table" => t.table.name()).set(t.bytes as f64);
    }
    metrics::gauge!("telemetryflow_store_wal_bytes").set(stats.wal_bytes as f64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        (state.render_metrics)(),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    email: String,
    password: String,
}

fn unix_now() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

async fn login(
    State(state): State<Arc<AppState>>,
    Body(body): Body<Login>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let denied = || ApiError::unauthenticated("invalid email or password");
    let user = state.meta.user_by_email(body.email.trim()).await?;
    let Some(user) = user else {
        // Spend the same work as a real check so timing does not reveal which emails exist.
        let _ = tokio::task::spawn_blocking(|| iam::hash_password("timing-equalizer")).await;
        metrics::counter!("telemetryflow_logins_total", "result" => "failure").increment(1);
        return Err(denied());
    };
    let hash = user.password_hash.clone();
    let ok = tokio::task::spawn_blocking(move || iam::verify_password(&body.password, &hash))
        .await
        .map_err(ApiError::internal)?;
    if !ok || !user.is_active {
        metrics::counter!("telemetryflow_logins_total", "result" => "failure").increment(1);
        return Err(denied());
    }
    let roles: Vec<String> = user.roles.iter().map(|r| r.as_str().to_string()).collect();
    let (token, claims) = state
        .tokens
        .issue(&user.user_id, &user.email, &user.scope, roles, unix_now())
        .map_err(ApiError::internal)?;
    metrics::counter!("telemetryflow_logins_total", "result" => "success").increment(1);
    Ok(Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": claims.exp - claims.iat,
        "user": {
            "user_id": user.user_id,
            "email": user.email,
            "organization_id": user.scope.organization_id,
            "workspace_id": user.scope.workspace_id,
            "tenant_id": user.scope.tenant_id,
            "roles": claims.roles,
        }
    })))
}

fn require_admin(p: &Principal) -> Result<(), ApiError> {
    if p.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden("this action needs the admin role"))
    }
}

/// The tenant an admin names, which must be in the admin's own workspace (404 otherwise).
async fn tenant_in_scope(
    state: &AppState,
    p: &Principal,
    tenant_id: Option<&str>,
) -> Result<storage::TenantRecord, ApiError> {
    let id = tenant_id.unwrap_or(&p.scope().tenant_id);
    match state.meta.tenant(id).await? {
        Some(t) if t.workspace_id == p.scope().workspace_id => Ok(t),
        _ => Err(ApiError::new(ErrorKind::NotFound, "tenant not found")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateApiKey {
    name: String,
    #[serde(default)]
    description: String,
    permissions: Vec<String>,
    tenant_id: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    rate_limit: Option<i64>,
}

async fn create_api_key(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Body(body): Body<CreateApiKey>,
) -> Result<Response, ApiError> {
    require_admin(&p)?;
    if body.name.trim().is_empty() || body.name.len() > 200 {
        return Err(ApiError::invalid("name must be 1 to 200 characters"));
    }
    if body.permissions.is_empty() {
        return Err(ApiError::invalid("permissions must not be empty"));
    }
    if let Some(bad) = body
        .permissions
        .iter()
        .find(|p| !iam::INGEST_PERMISSIONS.contains(&p.as_str()))
    {
        return Err(ApiError::invalid(format!(
            "unknown permission {bad:?}; allowed: {}",
            iam::INGEST_PERMISSIONS.join(", ")
        )));
    }
    if body.expires_at.is_some_and(|e| e <= Utc::now()) {
        return Err(ApiError::invalid("expires_at must be in the future"));
    }
    let tenant = tenant_in_scope(&state, &p, body.tenant_id.as_deref()).await?;
    let material = iam::generate_api_key();
    let secret = material.secret.clone();
    let secret_hash = tokio::task::spawn_blocking(move || iam::hash_password(&secret))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let mut permissions = body.permissions.clone();
    permissions.sort();
    permissions.dedup();
    let created_by = match &p {
        Principal::User { user_id, .. } => Some(user_id.clone()),
        Principal::ApiKey { .. } => None,
    };
    let record = state
        .meta
        .create_api_key(NewApiKey {
            key_id: material.key_id.clone(),
            secret_hash,
            name: body.name.trim().to_string(),
            description: body.description,
            workspace_id: tenant.workspace_id.clone(),
            tenant_id: tenant.tenant_id.clone(),
            permissions,
            expires_at: body.expires_at,
            rate_limit: body.rate_limit,
            created_by,
        })
        .await?;
    let body = json!({
        "api_key_id": record.api_key_id,
        "key_id": record.key_id,
        "key": material.token,
        "name": record.name,
        "permissions": record.permissions,
        "organization_id": record.scope.organization_id,
        "workspace_id": record.scope.workspace_id,
        "tenant_id": record.scope.tenant_id,
        "status": record.status.as_str(),
        "expires_at": record.expires_at,
        "created_at": record.created_at,
        "note": "the key is shown only once; store it now",
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
    code: String,
}

async fn create_tenant(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Body(body): Body<CreateTenant>,
) -> Result<Response, ApiError> {
    require_admin(&p)?;
    let code_ok = !body.code.is_empty()
        && body.code.len() <= 64
        && body
            .code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !code_ok {
        return Err(ApiError::invalid(
            "code must be 1 to 64 characters of a-z, 0-9, '-' and '_'",
        ));
    }
    if body.name.trim().is_empty() {
        return Err(ApiError::invalid("name must not be empty"));
    }
    let t = state
        .meta
        .create_tenant(NewTenant {
            workspace_id: p.scope().workspace_id.clone(),
            name: body.name.trim().to_string(),
            code: body.code,
        })
        .await?;
    let body = json!({
        "tenant_id": t.tenant_id,
        "workspace_id": t.workspace_id,
        "organization_id": t.organization_id,
        "name": t.name,
        "code": t.code,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    email: String,
    password: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    tenant_id: Option<String>,
    role: String,
}

async fn create_user(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Body(body): Body<CreateUser>,
) -> Result<Response, ApiError> {
    require_admin(&p)?;
    let email = body.email.trim().to_string();
    if !email.contains('@') || email.len() > 254 {
        return Err(ApiError::invalid("email is not a valid address"));
    }
    let role = RoleType::parse(&body.role).ok_or_else(|| {
        ApiError::invalid("role must be one of admin, developer, viewer, demo, service")
    })?;
    iam::validate_password(&body.password).map_err(|e| ApiError::invalid(e.to_string()))?;
    let tenant = tenant_in_scope(&state, &p, body.tenant_id.as_deref()).await?;
    let password = body.password;
    let password_hash = tokio::task::spawn_blocking(move || iam::hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let user = state
        .meta
        .create_user(NewUser {
            email,
            password_hash,
            first_name: body.first_name,
            last_name: body.last_name,
            tenant_id: tenant.tenant_id,
            role,
        })
        .await?;
    let body = json!({
        "user_id": user.user_id,
        "email": user.email,
        "organization_id": user.scope.organization_id,
        "workspace_id": user.scope.workspace_id,
        "tenant_id": user.scope.tenant_id,
        "roles": user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    max_rows: Option<usize>,
}

async fn query_sql(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Body(body): Body<SqlRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    let out =
        query::run_scoped_sql(state.telemetry.as_ref(), p.scope(), &body.sql, &limits).await?;
    Ok(Json(sql_json::to_json(&out)?))
}

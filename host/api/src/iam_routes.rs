//! Managing who is who: regions, organizations, workspaces, tenants, users, roles and their
//! permissions, API keys, and the audit log.
//!
//! Reach: a user holding `user:admin` manages their whole organization (like a Grafana org
//! admin); everyone else sees their own tenant (and its workspace) only. An id outside the
//! caller's reach is answered 404, exactly like an id that does not exist.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use iam::Principal;
use model::ErrorKind;
use serde::Deserialize;
use serde_json::json;
use storage::{
    ApiKeyRecord, Entity, EntityPatch, NewApiKey, NewTenant, NewUser, Page, RoleRecord, RoleType,
    TenantRecord, UserPatch, UserRecord, Within, WorkspaceRecord,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::AuditResult;
use crate::auth::{Client, User, require};
use crate::auth_routes::user_view;
use crate::routes::{Body, OptBody};
use crate::{ApiError, AppState};

pub(crate) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_regions, create_region))
        .routes(routes!(get_organization, patch_organization))
        .routes(routes!(list_workspaces, create_workspace))
        .routes(routes!(get_workspace, patch_workspace, delete_workspace))
        .routes(routes!(restore_workspace))
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant, patch_tenant, delete_tenant))
        .routes(routes!(restore_tenant))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, patch_user, delete_user))
        .routes(routes!(restore_user))
        .routes(routes!(assign_role, unassign_role))
        .routes(routes!(list_permissions))
        .routes(routes!(list_roles, create_role))
        .routes(routes!(get_role, delete_role))
        .routes(routes!(set_role_permissions))
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(get_api_key))
        .routes(routes!(rotate_api_key))
        .routes(routes!(revoke_api_key))
        .routes(routes!(api_key_usage))
        .routes(routes!(audit_logs))
}

/// Query parameters whose rejections are 400s with the reason.
pub(crate) struct Params<T>(pub T);

impl<T, S> FromRequestParts<S> for Params<T>
where
    Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Params(v)),
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    limit: Option<u32>,
    after: Option<String>,
    #[serde(default)]
    include_deleted: bool,
    tenant_id: Option<String>,
    workspace_id: Option<String>,
}

impl ListQuery {
    pub(crate) fn page(&self) -> Page {
        Page {
            limit: self.limit.unwrap_or(50).clamp(1, 500),
            after: self.after.clone(),
            include_deleted: self.include_deleted,
        }
    }
}

/// `{items, next_after}`: `next_after` is the cursor of the next page, absent on the last.
pub(crate) fn page_json<T>(
    items: &[T],
    page: &Page,
    id: impl Fn(&T) -> &str,
    view: impl Fn(&T) -> serde_json::Value,
) -> Json<serde_json::Value> {
    let next = (items.len() == page.limit as usize)
        .then(|| items.last().map(|i| id(i).to_string()))
        .flatten();
    Json(json!({
        "items": items.iter().map(view).collect::<Vec<_>>(),
        "next_after": next,
    }))
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("{what} not found"))
}

fn admin(p: &Principal) -> bool {
    p.has("user:admin")
}

fn audit_ok(
    state: &AppState,
    client: &Client,
    p: &Principal,
    action: &str,
    resource: (&str, &str),
    metadata: serde_json::Value,
) {
    state.audit(
        client,
        p.actor(),
        p.scope(),
        action,
        resource,
        AuditResult::Success,
        metadata,
    );
}

// ---- visibility ---------------------------------------------------------------------------

pub(crate) async fn visible_tenant(
    state: &AppState,
    p: &Principal,
    tenant_id: &str,
    include_deleted: bool,
) -> Result<TenantRecord, ApiError> {
    match state.meta.tenant_any(tenant_id).await? {
        Some(t)
            if t.organization_id == p.scope().organization_id
                && (admin(p) || t.tenant_id == p.scope().tenant_id)
                && (include_deleted || t.deleted_at.is_none()) =>
        {
            Ok(t)
        }
        _ => Err(not_found("tenant")),
    }
}

async fn visible_workspace(
    state: &AppState,
    p: &Principal,
    workspace_id: &str,
    include_deleted: bool,
) -> Result<WorkspaceRecord, ApiError> {
    match state.meta.workspace(workspace_id).await? {
        Some(w)
            if w.organization_id == p.scope().organization_id
                && (admin(p) || w.workspace_id == p.scope().workspace_id)
                && (include_deleted || w.deleted_at.is_none()) =>
        {
            Ok(w)
        }
        _ => Err(not_found("workspace")),
    }
}

async fn visible_user(
    state: &AppState,
    p: &Principal,
    user_id: &str,
    include_deleted: bool,
) -> Result<UserRecord, ApiError> {
    match state.meta.user(user_id).await? {
        Some(u)
            if u.scope.organization_id == p.scope().organization_id
                && (admin(p) || u.scope.tenant_id == p.scope().tenant_id)
                && (include_deleted || u.deleted_at.is_none()) =>
        {
            Ok(u)
        }
        _ => Err(not_found("user")),
    }
}

async fn visible_role(
    state: &AppState,
    p: &Principal,
    role_id: &str,
) -> Result<RoleRecord, ApiError> {
    let role = state
        .meta
        .role(role_id)
        .await?
        .ok_or_else(|| not_found("role"))?;
    visible_tenant(state, p, &role.tenant_id, false)
        .await
        .map_err(|_| not_found("role"))?;
    Ok(role)
}

async fn visible_key(
    state: &AppState,
    p: &Principal,
    api_key_id: &str,
) -> Result<ApiKeyRecord, ApiError> {
    match state.meta.api_key_by_id(api_key_id).await? {
        Some(k) if k.scope.organization_id == p.scope().organization_id => Ok(k),
        _ => Err(not_found("API key")),
    }
}

/// Where a list reaches: the organization for admins (narrowed by the filters), else the
/// caller's own tenant whatever the filters say.
async fn within(state: &AppState, p: &Principal, q: &ListQuery) -> Result<Within, ApiError> {
    let s = p.scope();
    if !admin(p) {
        return Ok(Within {
            organization_id: s.organization_id.clone(),
            workspace_id: Some(s.workspace_id.clone()),
            tenant_id: Some(s.tenant_id.clone()),
        });
    }
    if let Some(t) = &q.tenant_id {
        visible_tenant(state, p, t, true).await?;
    }
    if let Some(w) = &q.workspace_id {
        visible_workspace(state, p, w, true).await?;
    }
    Ok(Within {
        organization_id: s.organization_id.clone(),
        workspace_id: q.workspace_id.clone(),
        tenant_id: q.tenant_id.clone(),
    })
}

fn check_name(name: &str) -> Result<String, ApiError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 200 {
        return Err(ApiError::invalid("name must be 1 to 200 characters"));
    }
    Ok(n.to_string())
}

fn check_code(code: &str) -> Result<(), ApiError> {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "code must be 1 to 64 characters of a-z, 0-9, '-' and '_'",
        ))
    }
}

// ---- regions and organizations -------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/regions", tag = "regions", security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn list_regions(
    State(state): State<Arc<AppState>>,
    User(p): User,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:read")?;
    let regions = state.meta.regions().await?;
    Ok(Json(json!({
        "items": regions.iter().map(|r| json!({
            "region_id": r.region_id, "name": r.name, "code": r.code,
            "description": r.description, "is_active": r.is_active, "created_at": r.created_at,
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewRegion {
    name: String,
    code: String,
    #[serde(default)]
    description: String,
}

/// Regions are shared by every organization, so only admins of the first (`default`)
/// organization, the one the server bootstrapped, may add them.
#[utoipa::path(post, path = "/api/v1/regions", tag = "regions", request_body = NewRegion, security(("bearer" = [])), responses((status = 201, description = "created"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn create_region(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Body(body): Body<NewRegion>,
) -> Result<Response, ApiError> {
    require(&p, "user:admin")?;
    let org = state.meta.organization(&p.scope().organization_id).await?;
    if org.is_none_or(|o| o.code != "default") {
        return Err(ApiError::forbidden(
            "only admins of the server's default organization manage regions",
        ));
    }
    let name = check_name(&body.name)?;
    check_code(&body.code)?;
    let r = state
        .meta
        .create_region(&name, &body.code, &body.description)
        .await?;
    audit_ok(
        &state,
        &client,
        &p,
        "iam.region_create",
        ("region", &r.region_id),
        json!({"code": r.code}),
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "region_id": r.region_id, "name": r.name, "code": r.code, "description": r.description,
            "is_active": r.is_active, "created_at": r.created_at,
        })),
    )
        .into_response())
}

fn org_json(o: &storage::OrganizationRecord) -> serde_json::Value {
    json!({
        "organization_id": o.organization_id, "region_id": o.region_id, "name": o.name,
        "code": o.code, "description": o.description, "is_active": o.is_active,
        "deleted_at": o.deleted_at, "created_at": o.created_at,
    })
}

#[utoipa::path(get, path = "/api/v1/organizations/{id}", tag = "organizations", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn get_organization(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:read")?;
    if id != p.scope().organization_id {
        return Err(not_found("organization"));
    }
    let o = state
        .meta
        .organization(&id)
        .await?
        .ok_or_else(|| not_found("organization"))?;
    Ok(Json(org_json(&o)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Patch {
    name: Option<String>,
    description: Option<String>,
    is_active: Option<bool>,
}

impl Patch {
    fn into_patch(self) -> Result<EntityPatch, ApiError> {
        Ok(EntityPatch {
            name: self.name.as_deref().map(check_name).transpose()?,
            description: self.description,
            is_active: self.is_active,
        })
    }
}

#[utoipa::path(patch, path = "/api/v1/organizations/{id}", tag = "organizations", params(("id" = String, Path, description = "the id")), request_body = Patch, security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn patch_organization(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
    Body(body): Body<Patch>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if id != p.scope().organization_id {
        return Err(not_found("organization"));
    }
    require(&p, "user:admin")?;
    if body.is_active == Some(false) {
        return Err(ApiError::invalid(
            "an admin cannot deactivate their own organization",
        ));
    }
    let o = state
        .meta
        .update_organization(&id, body.into_patch()?)
        .await?;
    audit_ok(
        &state,
        &client,
        &p,
        "iam.organization_update",
        ("organization", &id),
        json!({}),
    );
    Ok(Json(org_json(&o)))
}

// ---- workspaces ---------------------------------------------------------------------------

fn ws_json(w: &WorkspaceRecord) -> serde_json::Value {
    json!({
        "workspace_id": w.workspace_id, "organization_id": w.organization_id, "name": w.name,
        "code": w.code, "description": w.description, "is_active": w.is_active,
        "deleted_at": w.deleted_at, "created_at": w.created_at,
    })
}

#[utoipa::path(get, path = "/api/v1/workspaces", tag = "workspaces", params(ListQuery), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn list_workspaces(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Params(q): Params<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:read")?;
    let page = q.page();
    let items = if admin(&p) {
        state
            .meta
            .workspaces(&p.scope().organization_id, &page)
            .await?
    } else {
        state
            .meta
            .workspace(&p.scope().workspace_id)
            .await?
            .into_iter()
            .filter(|w| {
                w.deleted_at.is_none()
                    && page
                        .after
                        .as_deref()
                        .is_none_or(|a| w.workspace_id.as_str() > a)
            })
            .collect()
    };
    Ok(page_json(&items, &page, |w| &w.workspace_id, ws_json))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewWorkspace {
    name: String,
    code: String,
    #[serde(default)]
    description: String,
}

#[utoipa::path(post, path = "/api/v1/workspaces", tag = "workspaces", request_body = NewWorkspace, security(("bearer" = [])), responses((status = 201, description = "created"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn create_workspace(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Body(body): Body<NewWorkspace>,
) -> Result<Response, ApiError> {
    require(&p, "user:admin")?;
    let name = check_name(&body.name)?;
    check_code(&body.code)?;
    let w = state
        .meta
        .create_workspace(
            &p.scope().organization_id,
            &name,
            &body.code,
            &body.description,
        )
        .await?;
    audit_ok(
        &state,
        &client,
        &p,
        "iam.workspace_create",
        ("workspace", &w.workspace_id),
        json!({"code": w.code}),
    );
    Ok((StatusCode::CREATED, Json(ws_json(&w))).into_response())
}

#[utoipa::path(get, path = "/api/v1/workspaces/{id}", tag = "workspaces", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn get_workspace(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:read")?;
    Ok(Json(ws_json(
        &visible_workspace(&state, &p, &id, admin(&p)).await?,
    )))
}

#[utoipa::path(patch, path = "/api/v1/workspaces/{id}", tag = "workspaces", params(("id" = String, Path, description = "the id")), request_body = Patch, security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn patch_workspace(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
    Body(body): Body<Patch>,
) -> Result<Json<serde_json::Value>, ApiError> {
    visible_workspace(&state, &p, &id, false).await?;
    require(&p, "user:admin")?;
    let w = state.meta.update_workspace(&id, body.into_patch()?).await?;
    audit_ok(
        &state,
        &client,
        &p,
        "iam.workspace_update",
        ("workspace", &id),
        json!({}),
    );
    Ok(Json(ws_json(&w)))
}

#[utoipa::path(delete, path = "/api/v1/workspaces/{id}", tag = "workspaces", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 204, description = "done"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn delete_workspace(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    visible_workspace(&state, &p, &id, false).await?;
    require(&p, "user:admin")?;
    if id == p.scope().workspace_id {
        return Err(ApiError::invalid(
            "an admin cannot delete their own workspace",
        ));
    }
    state
        .meta
        .set_deleted(Entity::Workspace, &id, Some(Utc::now()))
        .await?;
    audit_ok(
        &state,
        &client,
        &p,
        "iam.workspace_delete",
        ("workspace", &id),
        json!({}),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/workspaces/{id}/restore", tag = "workspaces", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn restore_workspace(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    visible_workspace(&state, &p, &id, true).await?;
    require(&p, "user:admin")?;
    state.meta.set_deleted(Entity::Workspace, &id, None).await?;
    audit_ok(
        &state,
        &client,
        &p,
        "iam.workspace_restore",
        ("workspace", &id),
        json!({}),
    );
    Ok(Json(ws_json(
        &visible_workspace(&state, &p, &id, false).await?,
    )))
}

// ---- tenants ------------------------------------------------------------------------------

fn tenant_json(t: &TenantRecord) -> serde_json::Value {
    json!({
        "tenant_id": t.tenant_id, "workspace_id": t.workspace_id, "organization_id": t.organization_id,
        "name": t.name, "code": t.code, "domain": t.domain, "is_active": t.is_active,
        "deleted_at": t.deleted_at, "created_at": t.created_at,
    })
}

#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", params(ListQuery), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn list_tenants(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Params(q): Params<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:read")?;
    let page = q.page();
    let within = within(&state, &p, &q).await?;
    let items = state.meta.tenants(&within, &page).await?;
    Ok(page_json(&items, &page, |t| &t.tenant_id, tenant_json))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
    code: String,
    workspace_id: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = CreateTenant, security(("bearer" = [])), responses((status = 201, description = "created"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn create_tenant(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Body(body): Body<CreateTenant>,
) -> Result<Response, ApiError> {
    require(&p, "user:admin")?;
    check_code(&body.code)?;
    let name = check_name(&body.name)?;
    let ws = visible_workspace(
        &state,
        &p,
        body.workspace_id
            .as_deref()
            .unwrap_or(&p.scope().workspace_id),
        false,
    )
    .await?;
    let t = state
        .meta
        .create_tenant(NewTenant {
            workspace_id: ws.workspace_id,
            name,
            code: body.code,
        })
        .await?;
    audit_ok(
        &state,
        &client,
        &p,
        "iam.tenant_create",
        ("tenant", &t.tenant_id),
        json!({"code": t.code}),
    );
    Ok((StatusCode::CREATED, Json(tenant_json(&t))).into_response())
}

#[utoipa::path(get, path = "/api/v1/tenants/{id}", tag = "tenants", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn get_tenant(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:read")?;
    Ok(Json(tenant_json(
        &visible_tenant(&state, &p, &id, admin(&p)).await?,
    )))
}

#[utoipa::path(patch, path = "/api/v1/tenants/{id}", tag = "tenants", params(("id" = String, Path, description = "the id")), request_body = Patch, security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn patch_tenant(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
    Body(body): Body<Patch>,
) -> Result<Json<serde_json::Value>, ApiError> {
    visible_tenant(&state, &p, &id, false).await?;
    require(&p, "user:admin")?;
    if body.is_active == Some(false) && id == p.scope().tenant_id {
        return Err(ApiError::invalid(
            "an admin cannot deactivate their own tenant",
        ));
    }
    let t = state.meta.update_tenant(&id, body.into_patch()?).await?;
    audit_ok(
        &state,
        &client,
        &p,
        "iam.tenant_update",
        ("tenant", &id),
        json!({}),
    );
    Ok(Json(tenant_json(&t)))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{id}", tag = "tenants", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 204, description = "done"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn delete_tenant(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    visible_tenant(&state, &p, &id, false).await?;
    require(&p, "user:admin")?;
    if id == p.scope().tenant_id {
        return Err(ApiError::invalid("an admin cannot delete their own tenant"));
    }
    state
        .meta
        .set_deleted(Entity::Tenant, &id, Some(Utc::now()))
        .await?;
    audit_ok(
        &state,
        &client,
        &p,
        "iam.tenant_delete",
        ("tenant", &id),
        json!({}),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/tenants/{id}/restore", tag = "tenants", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn restore_tenant(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    visible_tenant(&state, &p, &id, true).await?;
    require(&p, "user:admin")?;
    state.meta.set_deleted(Entity::Tenant, &id, None).await?;
    audit_ok(
        &state,
        &client,
        &p,
        "iam.tenant_restore",
        ("tenant", &id),
        json!({}),
    );
    Ok(Json(tenant_json(
        &visible_tenant(&state, &p, &id, false).await?,
    )))
}

// ---- users --------------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(ListQuery), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn list_users(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Params(q): Params<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:read")?;
    let page = q.page();
    let within = within(&state, &p, &q).await?;
    let items = state.meta.users(&within, &page).await?;
    Ok(page_json(&items, &page, |u| &u.user_id, user_view))
}

#[derive(Deserialize, utoipa::ToSchema)]
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

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser, security(("bearer" = [])), responses((status = 201, description = "created"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn create_user(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Body(body): Body<CreateUser>,
) -> Result<Response, ApiError> {
    require(&p, "user:write")?;
    let email = body.email.trim().to_string();
    if !email.contains('@') || email.len() > 254 {
        return Err(ApiError::invalid("email is not a valid address"));
    }
    let role = RoleType::parse(&body.role).ok_or_else(|| {
        ApiError::invalid("role must be one of admin, developer, viewer, demo, service")
    })?;
    if role == RoleType::Admin {
        require(&p, "user:admin")?;
    }
    iam::validate_password(&body.password).map_err(|e| ApiError::invalid(e.to_string()))?;
    let tenant = visible_tenant(
        &state,
        &p,
        body.tenant_id.as_deref().unwrap_or(&p.scope().tenant_id),
        false,
    )
    .await?;
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
    audit_ok(
        &state,
        &client,
        &p,
        "iam.user_create",
        ("user", &user.user_id),
        json!({"email": user.email, "role": role.as_str()}),
    );
    Ok((StatusCode::CREATED, Json(user_view(&user))).into_response())
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn get_user(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:read")?;
    Ok(Json(user_view(
        &visible_user(&state, &p, &id, admin(&p)).await?,
    )))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchUser {
    first_name: Option<String>,
    last_name: Option<String>,
    is_active: Option<bool>,
}

#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path, description = "the id")), request_body = PatchUser, security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn patch_user(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
    Body(body): Body<PatchUser>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:read")?;
    visible_user(&state, &p, &id, false).await?;
    require(&p, "user:write")?;
    if body.is_active == Some(false) && id == p.actor() {
        return Err(ApiError::invalid("you cannot deactivate yourself"));
    }
    let u = state
        .meta
        .update_user(
            &id,
            UserPatch {
                first_name: body.first_name,
                last_name: body.last_name,
                is_active: body.is_active,
            },
        )
        .await?;
    state.access.forget_user(&id);
    audit_ok(
        &state,
        &client,
        &p,
        "iam.user_update",
        ("user", &id),
        json!({"is_active": body.is_active}),
    );
    Ok(Json(user_view(&u)))
}

#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 204, description = "done"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn delete_user(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require(&p, "user:read")?;
    visible_user(&state, &p, &id, false).await?;
    require(&p, "user:delete")?;
    if id == p.actor() {
        return Err(ApiError::invalid("you cannot delete yourself"));
    }
    let now = Utc::now();
    state.meta.set_deleted(Entity::User, &id, Some(now)).await?;
    state.meta.revoke_sessions(&id, None, now).await?;
    state.access.forget_user(&id);
    audit_ok(
        &state,
        &client,
        &p,
        "iam.user_delete",
        ("user", &id),
        json!({}),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/users/{id}/restore", tag = "users", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn restore_user(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:read")?;
    visible_user(&state, &p, &id, true).await?;
    require(&p, "user:delete")?;
    state.meta.set_deleted(Entity::User, &id, None).await?;
    audit_ok(
        &state,
        &client,
        &p,
        "iam.user_restore",
        ("user", &id),
        json!({}),
    );
    Ok(Json(user_view(
        &visible_user(&state, &p, &id, false).await?,
    )))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Grant {
    expires_at: Option<DateTime<Utc>>,
}

#[utoipa::path(put, path = "/api/v1/users/{id}/roles/{role_id}", tag = "users", params(("id" = String, Path, description = "the id"), ("role_id" = String, Path, description = "the role id")), request_body(content = Option<Grant>, description = "optional"), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn assign_role(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path((id, role_id)): Path<(String, String)>,
    OptBody(body): OptBody<Grant>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:admin")?;
    let user = visible_user(&state, &p, &id, false).await?;
    let role = visible_role(&state, &p, &role_id).await?;
    if role.tenant_id != user.scope.tenant_id {
        return Err(ApiError::invalid(
            "the role belongs to another tenant than the user",
        ));
    }
    let grant = body.unwrap_or_default();
    if grant.expires_at.is_some_and(|e| e <= Utc::now()) {
        return Err(ApiError::invalid("expires_at must be in the future"));
    }
    state
        .meta
        .assign_role(&id, &role_id, grant.expires_at)
        .await?;
    state.access.forget_user(&id);
    audit_ok(
        &state,
        &client,
        &p,
        "iam.role_assign",
        ("user", &id),
        json!({"role_id": role_id, "expires_at": grant.expires_at}),
    );
    Ok(Json(user_view(
        &visible_user(&state, &p, &id, false).await?,
    )))
}

#[utoipa::path(delete, path = "/api/v1/users/{id}/roles/{role_id}", tag = "users", params(("id" = String, Path, description = "the id"), ("role_id" = String, Path, description = "the role id")), security(("bearer" = [])), responses((status = 204, description = "done"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn unassign_role(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path((id, role_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    require(&p, "user:admin")?;
    visible_user(&state, &p, &id, false).await?;
    if !state.meta.unassign_role(&id, &role_id).await? {
        return Err(not_found("role assignment"));
    }
    state.access.forget_user(&id);
    audit_ok(
        &state,
        &client,
        &p,
        "iam.role_unassign",
        ("user", &id),
        json!({"role_id": role_id}),
    );
    Ok(StatusCode::NO_CONTENT)
}

// ---- roles and permissions ----------------------------------------------------------------

fn role_json(r: &RoleRecord) -> serde_json::Value {
    json!({
        "role_id": r.role_id, "tenant_id": r.tenant_id, "name": r.name,
        "description": r.description, "role_type": r.role_type.as_str(),
        "permissions": r.permissions, "built_in": is_built_in(r), "created_at": r.created_at,
    })
}

fn is_built_in(r: &RoleRecord) -> bool {
    r.name == r.role_type.as_str()
}

#[utoipa::path(get, path = "/api/v1/permissions", tag = "permissions", security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn list_permissions(User(p): User) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:read")?;
    let mut items = Vec::new();
    for r in storage::RESOURCES {
        for a in storage::ACTIONS {
            items.push(json!({"name": format!("{r}:{a}"), "resource": r, "action": a}));
        }
    }
    Ok(Json(json!({ "items": items })))
}

#[utoipa::path(get, path = "/api/v1/roles", tag = "roles", params(ListQuery), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn list_roles(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Params(q): Params<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:read")?;
    let tenant = visible_tenant(
        &state,
        &p,
        q.tenant_id.as_deref().unwrap_or(&p.scope().tenant_id),
        false,
    )
    .await?;
    let roles = state.meta.roles(&tenant.tenant_id).await?;
    Ok(Json(
        json!({ "items": roles.iter().map(role_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateRole {
    name: String,
    #[serde(default)]
    description: String,
    role_type: String,
    permissions: Vec<String>,
    tenant_id: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/roles", tag = "roles", request_body = CreateRole, security(("bearer" = [])), responses((status = 201, description = "created"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn create_role(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Body(body): Body<CreateRole>,
) -> Result<Response, ApiError> {
    require(&p, "user:admin")?;
    let name = check_name(&body.name)?;
    let role_type = RoleType::parse(&body.role_type).ok_or_else(|| {
        ApiError::invalid("role_type must be one of admin, developer, viewer, demo, service")
    })?;
    if RoleType::parse(&name).is_some() {
        return Err(ApiError::invalid("that name belongs to a built-in role"));
    }
    if let Some(bad) = body.permissions.iter().find(|x| !storage::is_permission(x)) {
        return Err(ApiError::invalid(format!(
            "unknown permission {bad:?} (see GET /api/v1/permissions)"
        )));
    }
    let tenant = visible_tenant(
        &state,
        &p,
        body.tenant_id.as_deref().unwrap_or(&p.scope().tenant_id),
        false,
    )
    .await?;
    let r = state
        .meta
        .create_role(
            &tenant.tenant_id,
            &name,
            &body.description,
            role_type,
            &body.permissions,
        )
        .await?;
    audit_ok(
        &state,
        &client,
        &p,
        "iam.role_create",
        ("role", &r.role_id),
        json!({"name": r.name, "permissions": r.permissions}),
    );
    Ok((StatusCode::CREATED, Json(role_json(&r))).into_response())
}

#[utoipa::path(get, path = "/api/v1/roles/{id}", tag = "roles", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn get_role(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:read")?;
    Ok(Json(role_json(&visible_role(&state, &p, &id).await?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RolePermissions {
    permissions: Vec<String>,
}

#[utoipa::path(put, path = "/api/v1/roles/{id}/permissions", tag = "roles", params(("id" = String, Path, description = "the id")), request_body = RolePermissions, security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn set_role_permissions(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
    Body(body): Body<RolePermissions>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:admin")?;
    let role = visible_role(&state, &p, &id).await?;
    if let Some(bad) = body.permissions.iter().find(|x| !storage::is_permission(x)) {
        return Err(ApiError::invalid(format!(
            "unknown permission {bad:?} (see GET /api/v1/permissions)"
        )));
    }
    if role.role_type == RoleType::Admin && is_built_in(&role) {
        return Err(ApiError::invalid(
            "the built-in admin role keeps every permission",
        ));
    }
    let r = state
        .meta
        .set_role_permissions(&id, &body.permissions)
        .await?;
    state.access.cache_clear();
    audit_ok(
        &state,
        &client,
        &p,
        "iam.role_permissions_set",
        ("role", &id),
        json!({"permissions": r.permissions}),
    );
    Ok(Json(role_json(&r)))
}

#[utoipa::path(delete, path = "/api/v1/roles/{id}", tag = "roles", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 204, description = "done"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn delete_role(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require(&p, "user:admin")?;
    let role = visible_role(&state, &p, &id).await?;
    if is_built_in(&role) {
        return Err(ApiError::invalid("built-in roles cannot be deleted"));
    }
    state.meta.delete_role(&id).await?;
    state.access.cache_clear();
    audit_ok(
        &state,
        &client,
        &p,
        "iam.role_delete",
        ("role", &id),
        json!({"name": role.name}),
    );
    Ok(StatusCode::NO_CONTENT)
}

// ---- API keys -----------------------------------------------------------------------------

fn key_json(k: &ApiKeyRecord) -> serde_json::Value {
    json!({
        "api_key_id": k.api_key_id, "key_id": k.key_id, "name": k.name,
        "description": k.description, "permissions": k.permissions,
        "organization_id": k.scope.organization_id, "workspace_id": k.scope.workspace_id,
        "tenant_id": k.scope.tenant_id, "status": k.status.as_str(),
        "expires_at": k.expires_at, "grace_period_expires_at": k.grace_period_expires_at,
        "rate_limit": k.rate_limit, "usage_count": k.usage_count,
        "last_used_at": k.last_used_at, "last_used_ip": k.last_used_ip,
        "revoked_reason": k.revoked_reason, "revoked_by": k.revoked_by, "revoked_at": k.revoked_at,
        "created_by": k.created_by, "created_at": k.created_at,
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateApiKey {
    name: String,
    #[serde(default)]
    description: String,
    permissions: Vec<String>,
    tenant_id: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    /// Requests per minute.
    rate_limit: Option<i64>,
}

fn check_key_permissions(permissions: &[String]) -> Result<Vec<String>, ApiError> {
    if permissions.is_empty() {
        return Err(ApiError::invalid("permissions must not be empty"));
    }
    let known =
        |p: &str| iam::INGEST_PERMISSIONS.contains(&p) || iam::READ_PERMISSIONS.contains(&p);
    if let Some(bad) = permissions.iter().find(|p| !known(p)) {
        return Err(ApiError::invalid(format!(
            "unknown permission {bad:?}; allowed: {}, {}",
            iam::INGEST_PERMISSIONS.join(", "),
            iam::READ_PERMISSIONS.join(", ")
        )));
    }
    let mut out = permissions.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}

async fn new_key_material() -> Result<(iam::ApiKeyMaterial, String), ApiError> {
    let material = iam::generate_api_key();
    let secret = material.secret.clone();
    let hash = tokio::task::spawn_blocking(move || iam::hash_password(&secret))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok((material, hash))
}

fn with_secret(k: &ApiKeyRecord, token: &str) -> serde_json::Value {
    let mut v = key_json(k);
    if let Some(o) = v.as_object_mut() {
        o.insert("key".into(), json!(token));
        o.insert(
            "note".into(),
            json!("the key is shown only once; store it now"),
        );
    }
    v
}

#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", request_body = CreateApiKey, security(("bearer" = [])), responses((status = 201, description = "created"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn create_api_key(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Body(body): Body<CreateApiKey>,
) -> Result<Response, ApiError> {
    require(&p, "user:admin")?;
    let name = check_name(&body.name)?;
    let permissions = check_key_permissions(&body.permissions)?;
    if body.expires_at.is_some_and(|e| e <= Utc::now()) {
        return Err(ApiError::invalid("expires_at must be in the future"));
    }
    if body
        .rate_limit
        .is_some_and(|r| !(1..=10_000_000).contains(&r))
    {
        return Err(ApiError::invalid(
            "rate_limit must be 1 to 10000000 requests per minute",
        ));
    }
    let tenant = visible_tenant(
        &state,
        &p,
        body.tenant_id.as_deref().unwrap_or(&p.scope().tenant_id),
        false,
    )
    .await?;
    let (material, secret_hash) = new_key_material().await?;
    let record = state
        .meta
        .create_api_key(NewApiKey {
            key_id: material.key_id.clone(),
            secret_hash,
            name,
            description: body.description,
            workspace_id: tenant.workspace_id.clone(),
            tenant_id: tenant.tenant_id.clone(),
            permissions,
            expires_at: body.expires_at,
            rate_limit: body.rate_limit,
            created_by: Some(p.actor().to_string()),
        })
        .await?;
    audit_ok(
        &state,
        &client,
        &p,
        "iam.api_key_create",
        ("api_key", &record.api_key_id),
        json!({"key_id": record.key_id, "permissions": record.permissions}),
    );
    Ok((
        StatusCode::CREATED,
        Json(with_secret(&record, &material.token)),
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", params(ListQuery), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn list_api_keys(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Params(q): Params<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:admin")?;
    let page = q.page();
    let within = within(&state, &p, &q).await?;
    let items = state.meta.api_keys(&within, &page).await?;
    Ok(page_json(&items, &page, |k| &k.api_key_id, key_json))
}

#[utoipa::path(get, path = "/api/v1/api-keys/{id}", tag = "api-keys", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn get_api_key(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:admin")?;
    Ok(Json(key_json(&visible_key(&state, &p, &id).await?)))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Rotate {
    /// How long the old secret keeps working (default one day, at most 30 days).
    grace_period_secs: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/api-keys/{id}/rotate", tag = "api-keys", params(("id" = String, Path, description = "the id")), request_body(content = Option<Rotate>, description = "optional"), security(("bearer" = [])), responses((status = 201, description = "created"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn rotate_api_key(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
    OptBody(body): OptBody<Rotate>,
) -> Result<Response, ApiError> {
    require(&p, "user:admin")?;
    let old = visible_key(&state, &p, &id).await?;
    let grace = body.unwrap_or_default().grace_period_secs.unwrap_or(86_400);
    if !(0..=30 * 86_400).contains(&grace) {
        return Err(ApiError::invalid(
            "grace_period_secs must be 0 to 2592000 (30 days)",
        ));
    }
    let (material, secret_hash) = new_key_material().await?;
    let grace_until = Utc::now() + chrono::Duration::seconds(grace);
    let new = state
        .meta
        .rotate_api_key(
            &id,
            NewApiKey {
                key_id: material.key_id.clone(),
                secret_hash,
                name: old.name.clone(),
                description: old.description.clone(),
                workspace_id: old.scope.workspace_id.clone(),
                tenant_id: old.scope.tenant_id.clone(),
                permissions: old.permissions.clone(),
                expires_at: old.expires_at,
                rate_limit: old.rate_limit,
                created_by: Some(p.actor().to_string()),
            },
            grace_until,
        )
        .await?;
    state.keys.invalidate(&old.key_id).await;
    audit_ok(
        &state,
        &client,
        &p,
        "iam.api_key_rotate",
        ("api_key", &id),
        json!({"new_api_key_id": new.api_key_id, "grace_period_expires_at": grace_until}),
    );
    let mut v = with_secret(&new, &material.token);
    if let Some(o) = v.as_object_mut() {
        o.insert("replaces".into(), json!({"api_key_id": old.api_key_id, "key_id": old.key_id, "grace_period_expires_at": grace_until}));
    }
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Revoke {
    reason: String,
}

#[utoipa::path(post, path = "/api/v1/api-keys/{id}/revoke", tag = "api-keys", params(("id" = String, Path, description = "the id")), request_body = Revoke, security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn revoke_api_key(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
    Body(body): Body<Revoke>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:admin")?;
    let key = visible_key(&state, &p, &id).await?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.len() > 500 {
        return Err(ApiError::invalid("reason must be 1 to 500 characters"));
    }
    let k = state
        .meta
        .revoke_api_key(&id, reason, p.actor(), Utc::now())
        .await?;
    state.keys.invalidate(&key.key_id).await;
    audit_ok(
        &state,
        &client,
        &p,
        "iam.api_key_revoke",
        ("api_key", &id),
        json!({"reason": reason}),
    );
    Ok(Json(key_json(&k)))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/api-keys/{id}/usage", tag = "api-keys", params(("id" = String, Path, description = "the id"), UsageQuery), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn api_key_usage(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
    Params(q): Params<UsageQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:admin")?;
    let key = visible_key(&state, &p, &id).await?;
    let rows = state
        .meta
        .api_key_usage_log(&key.api_key_id, q.limit.unwrap_or(100))
        .await?;
    Ok(Json(json!({
        "usage_count": key.usage_count,
        "last_used_at": key.last_used_at,
        "last_used_ip": key.last_used_ip,
        "items": rows.iter().map(|r| json!({
            "endpoint": r.endpoint, "method": r.method, "ip_address": r.ip_address,
            "status_code": r.status_code, "at": r.at,
        })).collect::<Vec<_>>(),
    })))
}

// ---- audit log ----------------------------------------------------------------------------

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    action: Option<String>,
    user_id: Option<String>,
    tenant_id: Option<String>,
    result: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/audit-logs", tag = "audit-logs", params(AuditQuery), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn audit_logs(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Params(q): Params<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, "user:admin")?;
    if let Some(t) = &q.tenant_id {
        visible_tenant(&state, &p, t, true).await?;
    }
    state.audit.flush(&state.telemetry).await;
    let filter = query::AuditFilter {
        organization_id: p.scope().organization_id.clone(),
        tenant_id: q.tenant_id,
        user_id: q.user_id,
        action: q.action,
        result: q.result,
        from_ns: q.from.and_then(|t| t.timestamp_nanos_opt()),
        to_ns: q.to.and_then(|t| t.timestamp_nanos_opt()),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let out = query::audit_events(state.telemetry.as_ref(), &filter, &state.query_limits).await?;
    Ok(Json(crate::sql_json::to_json(&out)?))
}

//! Dashboards over HTTP: dashboards with their layout and variables (soft delete, view count,
//! a share token for read-only access without login), widgets with their query (the model of
//! `POST /api/v1/query`, or SQL), visualization, position and refresh interval, templates by
//! category (the shipped APM and infrastructure ones, and a workspace's own), and widget data:
//! the widget's query with the dashboard's variables substituted, then its chain of transform
//! plugins (WASM, per workspace), as chart-ready series.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use model::{ErrorKind, Scope};
use plugin_runtime::PluginKind;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use storage::{
    DashboardRecord, DashboardStore, DashboardWrite, TemplateWrite, WidgetRecord, WidgetWrite,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use iam::Principal;

use crate::alert_routes::{need, plugin_config_errors};
use crate::audit::AuditResult;
use crate::auth::{Client, User};
use crate::iam_routes::{ListQuery, Params, page_json};
use crate::query_routes::{QueryBody, TimeArg, within_time_limit};
use crate::routes::Body;
use crate::{ApiError, AppState};

const READ: &str = "dashboard:read";
const WRITE: &str = "dashboard:write";
const DELETE: &str = "dashboard:delete";

/// Widgets a dashboard holds at most.
const MAX_WIDGETS: usize = 100;
/// Transforms a widget chains at most.
const MAX_TRANSFORMS: usize = 8;
/// The prefix of share tokens.
const SHARE_PREFIX: &str = "tfd_";

pub(crate) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_dashboards, create_dashboard))
        .routes(routes!(get_dashboard, replace_dashboard, delete_dashboard))
        .routes(routes!(share_dashboard, unshare_dashboard))
        .routes(routes!(create_widget))
        .routes(routes!(replace_widget, delete_widget))
        .routes(routes!(widget_data))
        .routes(routes!(variable_values_route))
        .routes(routes!(list_templates, create_template))
        .routes(routes!(get_template, delete_template))
        .routes(routes!(public_dashboard))
        .routes(routes!(public_widget_data))
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("{what} not found"))
}

// ---- bodies --------------------------------------------------------------------------------

/// The kinds of widget a console draws.
const WIDGET_TYPES: [&str; 8] = [
    "line_chart",
    "bar_chart",
    "gauge",
    "stat",
    "table",
    "logs",
    "heatmap",
    "graph",
];

const CATEGORIES: [&str; 4] = ["apm", "infrastructure", "network", "custom"];

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WidgetBody {
    pub title: String,
    /// line_chart, bar_chart, gauge, stat, table, logs, heatmap or graph.
    pub widget_type: String,
    /// `{queries, formulas, step, instant, max_points, transforms: [{plugin, config}]}` (the
    /// model of `POST /api/v1/query`; filter values may name variables: `$service`), or
    /// `{sql, transforms}` (`$__from` and `$__to` stand for the range).
    #[schema(value_type = Object)]
    pub query_config: Value,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub visualization_config: Value,
    /// `{x, y, w, h}` on the dashboard's grid.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub position_config: Value,
    /// Seconds between refreshes; 0 follows the dashboard.
    #[serde(default)]
    pub refresh_interval: i64,
}

fn empty_object() -> Value {
    json!({})
}

fn empty_array() -> Value {
    json!([])
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DashboardBody {
    /// Required unless the dashboard is made from a template (whose name it then takes).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub layout_config: Option<Value>,
    /// `[{name, label, type: custom|query|textbox, options, default, multi}]`.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub variables: Option<Value>,
    /// Widgets created with the dashboard (on create only).
    #[serde(default)]
    pub widgets: Vec<WidgetBody>,
    /// Make the dashboard from this template (on create only).
    #[serde(default)]
    pub template_id: Option<String>,
}

/// One step of a widget's transform chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransformStep {
    plugin: String,
    #[serde(default = "empty_object")]
    config: Value,
}

/// A widget's query config, as stored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WidgetQuery {
    #[serde(default)]
    queries: Vec<Value>,
    #[serde(default)]
    formulas: Vec<Value>,
    #[serde(default)]
    step: Option<String>,
    #[serde(default)]
    instant: bool,
    #[serde(default)]
    max_points: Option<usize>,
    #[serde(default)]
    sql: Option<String>,
    #[serde(default)]
    transforms: Vec<TransformStep>,
}

fn text_of(v: &Value) -> String {
    v.to_string()
}

/// Checks a widget and returns what the store writes; every bad field is reported with its
/// JSON pointer under `at`.
async fn widget_write(
    state: &AppState,
    p: &Principal,
    w: &WidgetBody,
    at: &str,
    errors: &mut Vec<(String, String)>,
) -> Result<WidgetWrite, ApiError> {
    if w.title.trim().is_empty() || w.title.len() > 200 {
        errors.push((format!("{at}/title"), "1 to 200 characters".into()));
    }
    if !WIDGET_TYPES.contains(&w.widget_type.as_str()) {
        errors.push((
            format!("{at}/widget_type"),
            format!("one of {}", WIDGET_TYPES.join(", ")),
        ));
    }
    if !(0..=86_400).contains(&w.refresh_interval) {
        errors.push((
            format!("{at}/refresh_interval"),
            "seconds between 0 and 86400".into(),
        ));
    }
    for (field, v) in [
        ("visualization_config", &w.visualization_config),
        ("position_config", &w.position_config),
    ] {
        if !v.is_object() {
            errors.push((format!("{at}/{field}"), "an object".into()));
        }
    }
    match serde_json::from_value::<WidgetQuery>(w.query_config.clone()) {
        Err(e) => errors.push((format!("{at}/query_config"), e.to_string())),
        Ok(q) => {
            if q.sql.is_none() == q.queries.is_empty() {
                errors.push((
                    format!("{at}/query_config"),
                    "either queries (the builder) or sql".into(),
                ));
            }
            if let Some(sql) = &q.sql
                && let Err(e) = query::ensure_single_select(&alert::spec::render_sql(sql, 0, 1))
            {
                errors.push((format!("{at}/query_config/sql"), e.to_string()));
            }
            if !q.queries.is_empty() {
                // The builder form must parse (variables stay strings until they are filled).
                let body = json!({"queries": q.queries, "formulas": q.formulas});
                if let Err(e) = serde_json::from_value::<QueryBody>(body) {
                    errors.push((format!("{at}/query_config/queries"), e.to_string()));
                }
            }
            if q.transforms.len() > MAX_TRANSFORMS {
                errors.push((
                    format!("{at}/query_config/transforms"),
                    format!("at most {MAX_TRANSFORMS} transforms"),
                ));
            }
            for (i, t) in q.transforms.iter().enumerate() {
                let path = format!("{at}/query_config/transforms/{i}");
                errors.extend(
                    plugin_config_errors(
                        state,
                        p,
                        &t.plugin,
                        PluginKind::WidgetTransform,
                        &t.config,
                        (&format!("{path}/plugin"), &format!("{path}/config")),
                        false,
                    )
                    .await?,
                );
            }
        }
    }
    Ok(WidgetWrite {
        title: w.title.trim().to_string(),
        widget_type: w.widget_type.clone(),
        query_config: text_of(&w.query_config),
        visualization_config: text_of(&w.visualization_config),
        position_config: text_of(&w.position_config),
        refresh_interval: w.refresh_interval,
    })
}

fn check_variables(v: &Value, errors: &mut Vec<(String, String)>) {
    let Some(list) = v.as_array() else {
        errors.push(("/variables".into(), "a list of variables".into()));
        return;
    };
    for (i, var) in list.iter().enumerate() {
        let name = var["name"].as_str().unwrap_or_default();
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            errors.push((
                format!("/variables/{i}/name"),
                "a letter followed by letters, digits or _".into(),
            ));
        }
        if !matches!(
            var["type"].as_str().unwrap_or("custom"),
            "custom" | "query" | "textbox"
        ) {
            errors.push((
                format!("/variables/{i}/type"),
                "custom, query or textbox".into(),
            ));
        }
    }
}

fn dashboard_write(
    body: &DashboardBody,
    base: Option<&DashboardWrite>,
    errors: &mut Vec<(String, String)>,
) -> DashboardWrite {
    let name = body
        .name
        .clone()
        .or_else(|| base.map(|b| b.name.clone()))
        .unwrap_or_default();
    if name.trim().is_empty() || name.len() > 200 {
        errors.push(("/name".into(), "1 to 200 characters".into()));
    }
    let layout = body
        .layout_config
        .clone()
        .or_else(|| base.and_then(|b| serde_json::from_str(&b.layout_config).ok()))
        .unwrap_or_else(empty_object);
    if !layout.is_object() {
        errors.push(("/layout_config".into(), "an object".into()));
    }
    let variables = body
        .variables
        .clone()
        .or_else(|| base.and_then(|b| serde_json::from_str(&b.variables).ok()))
        .unwrap_or_else(empty_array);
    check_variables(&variables, errors);
    DashboardWrite {
        name: name.trim().to_string(),
        description: body
            .description
            .clone()
            .or_else(|| base.map(|b| b.description.clone()))
            .unwrap_or_default(),
        layout_config: text_of(&layout),
        variables: text_of(&variables),
    }
}

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn widget_json(w: &WidgetRecord, with_query: bool) -> Value {
    let mut v = json!({
        "widget_id": w.widget_id, "dashboard_id": w.dashboard_id, "title": w.title,
        "widget_type": w.widget_type,
        "visualization_config": parse_json(&w.visualization_config),
        "position_config": parse_json(&w.position_config),
        "refresh_interval": w.refresh_interval,
        "created_at": w.created_at, "updated_at": w.updated_at,
    });
    if with_query {
        v["query_config"] = parse_json(&w.query_config);
    }
    v
}

fn dashboard_json(d: &DashboardRecord) -> Value {
    json!({
        "dashboard_id": d.dashboard_id, "workspace_id": d.workspace_id, "tenant_id": d.tenant_id,
        "name": d.name, "description": d.description,
        "layout_config": parse_json(&d.layout_config), "variables": parse_json(&d.variables),
        "is_public": d.is_public, "view_count": d.view_count, "template_id": d.template_id,
        "created_by": d.created_by, "created_at": d.created_at, "updated_at": d.updated_at,
    })
}

async fn visible_dashboard(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<DashboardRecord, ApiError> {
    match state.dashboards.dashboard(id).await? {
        Some(d) if d.tenant_id == p.scope().tenant_id && d.deleted_at.is_none() => Ok(d),
        _ => Err(not_found("dashboard")),
    }
}

async fn visible_widget(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<(DashboardRecord, WidgetRecord), ApiError> {
    let w = state
        .dashboards
        .widget(id)
        .await?
        .ok_or_else(|| not_found("widget"))?;
    let d = visible_dashboard(state, p, &w.dashboard_id)
        .await
        .map_err(|_| not_found("widget"))?;
    Ok((d, w))
}

// ---- dashboards ----------------------------------------------------------------------------

/// The tenant's dashboards, by id (`after` is the last id of the previous page).
#[utoipa::path(get, path = "/api/v1/dashboards", tag = "dashboards", params(ListQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "{items, next_after}"), (status = "4XX", description = "an error with its reason")))]
async fn list_dashboards(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Params(q): Params<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    let page = q.page();
    let list = state
        .dashboards
        .dashboards(&p.scope().tenant_id, &page)
        .await?;
    Ok(page_json(&list, &page, |d| &d.dashboard_id, dashboard_json))
}

/// Creates a dashboard with its widgets, or from a template (`template_id`).
#[utoipa::path(post, path = "/api/v1/dashboards", tag = "dashboards", request_body = DashboardBody,
    security(("bearer" = [])),
    responses((status = 201, description = "the dashboard and its widgets"), (status = "4XX", description = "an error with its reason; a 400 lists the bad fields")))]
async fn create_dashboard(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Body(body): Body<DashboardBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    need(&p, WRITE)?;
    let mut errors = Vec::new();
    let mut body = body;
    let mut base = None;
    if let Some(tid) = &body.template_id {
        let t = visible_template(&state, &p, tid).await?;
        let config = parse_json(&t.template_config);
        base = Some(DashboardWrite {
            name: t.name.clone(),
            description: t.description.clone(),
            layout_config: text_of(&config["layout_config"]),
            variables: text_of(&config["variables"]),
        });
        if body.widgets.is_empty() {
            body.widgets = serde_json::from_value(config["widgets"].clone())
                .map_err(|e| ApiError::internal(format!("template {tid}: {e}")))?;
        }
    }
    let d = dashboard_write(&body, base.as_ref(), &mut errors);
    if body.widgets.len() > MAX_WIDGETS {
        errors.push(("/widgets".into(), format!("at most {MAX_WIDGETS} widgets")));
    }
    let mut widgets = Vec::with_capacity(body.widgets.len());
    for (i, w) in body.widgets.iter().enumerate() {
        widgets.push(widget_write(&state, &p, w, &format!("/widgets/{i}"), &mut errors).await?);
    }
    if !errors.is_empty() {
        return Err(ApiError::fields("dashboard", errors));
    }
    let created = state
        .dashboards
        .create_dashboard(
            p.scope(),
            d,
            widgets,
            body.template_id.as_deref(),
            Some(p.actor()),
        )
        .await?;
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "dashboard.create",
        ("dashboard", &created.dashboard_id),
        AuditResult::Success,
        json!({"name": created.name, "template_id": created.template_id}),
    );
    let widgets = state.dashboards.widgets(&created.dashboard_id).await?;
    let mut v = dashboard_json(&created);
    v["widgets"] = widgets.iter().map(|w| widget_json(w, true)).collect();
    Ok((StatusCode::CREATED, Json(v)))
}

/// A dashboard with its widgets (counts a view).
#[utoipa::path(get, path = "/api/v1/dashboards/{id}", tag = "dashboards", params(("id" = String, Path, description = "the dashboard")),
    security(("bearer" = [])),
    responses((status = 200, description = "the dashboard and its widgets"), (status = "4XX", description = "an error with its reason")))]
async fn get_dashboard(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    let d = visible_dashboard(&state, &p, &id).await?;
    state.dashboards.count_view(&id).await?;
    let widgets = state.dashboards.widgets(&id).await?;
    let mut v = dashboard_json(&d);
    v["view_count"] = json!(d.view_count + 1);
    v["widgets"] = widgets.iter().map(|w| widget_json(w, true)).collect();
    Ok(Json(v))
}

/// Replaces a dashboard's name, description, layout and variables (absent fields are kept).
#[utoipa::path(put, path = "/api/v1/dashboards/{id}", tag = "dashboards", params(("id" = String, Path, description = "the dashboard")),
    request_body = DashboardBody, security(("bearer" = [])),
    responses((status = 200, description = "the dashboard"), (status = "4XX", description = "an error with its reason")))]
async fn replace_dashboard(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
    Body(body): Body<DashboardBody>,
) -> Result<Json<Value>, ApiError> {
    need(&p, WRITE)?;
    let old = visible_dashboard(&state, &p, &id).await?;
    if !body.widgets.is_empty() || body.template_id.is_some() {
        return Err(ApiError::invalid(
            "widgets and template_id are set on create; change widgets through /api/v1/widgets",
        ));
    }
    let base = DashboardWrite {
        name: old.name,
        description: old.description,
        layout_config: old.layout_config,
        variables: old.variables,
    };
    let mut errors = Vec::new();
    let d = dashboard_write(&body, Some(&base), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::fields("dashboard", errors));
    }
    let updated = state.dashboards.update_dashboard(&id, d).await?;
    Ok(Json(dashboard_json(&updated)))
}

/// Deletes a dashboard (soft: it stops being listed, shared or readable).
#[utoipa::path(delete, path = "/api/v1/dashboards/{id}", tag = "dashboards", params(("id" = String, Path, description = "the dashboard")),
    security(("bearer" = [])),
    responses((status = 204, description = "deleted"), (status = "4XX", description = "an error with its reason")))]
async fn delete_dashboard(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    need(&p, DELETE)?;
    visible_dashboard(&state, &p, &id).await?;
    state.dashboards.delete_dashboard(&id, Utc::now()).await?;
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "dashboard.delete",
        ("dashboard", &id),
        AuditResult::Success,
        json!({}),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Makes a dashboard public: a new share token (shown once; an older one stops working) reads
/// it and its widgets' data without login, and nothing else.
#[utoipa::path(post, path = "/api/v1/dashboards/{id}/share", tag = "dashboards", params(("id" = String, Path, description = "the dashboard")),
    security(("bearer" = [])),
    responses((status = 200, description = "{share_token, public_url}"), (status = "4XX", description = "an error with its reason")))]
async fn share_dashboard(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    need(&p, WRITE)?;
    visible_dashboard(&state, &p, &id).await?;
    let token = iam::random_token(SHARE_PREFIX);
    let d = state
        .dashboards
        .set_share(&id, Some(&iam::token_hash(&token)))
        .await?;
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "dashboard.share",
        ("dashboard", &id),
        AuditResult::Success,
        json!({}),
    );
    let mut v = dashboard_json(&d);
    v["share_token"] = json!(token);
    v["public_path"] = json!(format!("/api/v1/public/dashboards/{token}"));
    Ok(Json(v))
}

/// Makes a dashboard private again: its share token stops working at once.
#[utoipa::path(delete, path = "/api/v1/dashboards/{id}/share", tag = "dashboards", params(("id" = String, Path, description = "the dashboard")),
    security(("bearer" = [])),
    responses((status = 200, description = "the dashboard"), (status = "4XX", description = "an error with its reason")))]
async fn unshare_dashboard(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    need(&p, WRITE)?;
    visible_dashboard(&state, &p, &id).await?;
    let d = state.dashboards.set_share(&id, None).await?;
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "dashboard.unshare",
        ("dashboard", &id),
        AuditResult::Success,
        json!({}),
    );
    Ok(Json(dashboard_json(&d)))
}

// ---- widgets -------------------------------------------------------------------------------

/// Adds a widget to a dashboard.
#[utoipa::path(post, path = "/api/v1/dashboards/{id}/widgets", tag = "dashboards", params(("id" = String, Path, description = "the dashboard")),
    request_body = WidgetBody, security(("bearer" = [])),
    responses((status = 201, description = "the widget"), (status = "4XX", description = "an error with its reason; a 400 lists the bad fields")))]
async fn create_widget(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
    Body(body): Body<WidgetBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    need(&p, WRITE)?;
    visible_dashboard(&state, &p, &id).await?;
    if state.dashboards.widgets(&id).await?.len() >= MAX_WIDGETS {
        return Err(ApiError::invalid(format!(
            "a dashboard holds at most {MAX_WIDGETS} widgets"
        )));
    }
    let mut errors = Vec::new();
    let w = widget_write(&state, &p, &body, "", &mut errors).await?;
    if !errors.is_empty() {
        return Err(ApiError::fields("widget", errors));
    }
    let w = state.dashboards.create_widget(&id, w).await?;
    Ok((StatusCode::CREATED, Json(widget_json(&w, true))))
}

/// Replaces a widget.
#[utoipa::path(put, path = "/api/v1/widgets/{id}", tag = "dashboards", params(("id" = String, Path, description = "the widget")),
    request_body = WidgetBody, security(("bearer" = [])),
    responses((status = 200, description = "the widget"), (status = "4XX", description = "an error with its reason; a 400 lists the bad fields")))]
async fn replace_widget(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
    Body(body): Body<WidgetBody>,
) -> Result<Json<Value>, ApiError> {
    need(&p, WRITE)?;
    visible_widget(&state, &p, &id).await?;
    let mut errors = Vec::new();
    let w = widget_write(&state, &p, &body, "", &mut errors).await?;
    if !errors.is_empty() {
        return Err(ApiError::fields("widget", errors));
    }
    let w = state.dashboards.update_widget(&id, w).await?;
    Ok(Json(widget_json(&w, true)))
}

#[utoipa::path(delete, path = "/api/v1/widgets/{id}", tag = "dashboards", params(("id" = String, Path, description = "the widget")),
    security(("bearer" = [])),
    responses((status = 204, description = "deleted"), (status = "4XX", description = "an error with its reason")))]
async fn delete_widget(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    need(&p, WRITE)?;
    visible_widget(&state, &p, &id).await?;
    state.dashboards.delete_widget(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of a widget data request.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DataBody {
    /// As in `POST /api/v1/query` (default the last hour).
    #[schema(value_type = Option<Object>)]
    #[serde(default)]
    pub from: Option<TimeArg>,
    #[schema(value_type = Option<Object>)]
    #[serde(default)]
    pub to: Option<TimeArg>,
    /// Overrides the widget's step.
    #[serde(default)]
    pub step: Option<String>,
    #[serde(default)]
    pub max_points: Option<usize>,
    /// Variable values by name (a string, or a list for multi-value variables); `*` is all.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: Map<String, Value>,
}

/// Runs a widget's query (the dashboard's variables filled in, defaults where not given),
/// then its transform chain; answers chart-ready series (or rows, for a SQL widget).
#[utoipa::path(post, path = "/api/v1/widgets/{id}/data", tag = "dashboards", params(("id" = String, Path, description = "the widget")),
    request_body = DataBody, security(("bearer" = [])),
    responses((status = 200, description = "{results: [{name, series}]} or {columns, rows}"), (status = "4XX", description = "an error with its reason")))]
async fn widget_data(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
    Body(body): Body<DataBody>,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    if !p.may_read_telemetry() {
        return Err(ApiError::forbidden("this role cannot read telemetry"));
    }
    let (d, w) = visible_widget(&state, &p, &id).await?;
    run_widget(&state, p.scope(), &d, &w, body).await.map(Json)
}

/// Fills variables: a string that is exactly `$name` or `${name}` becomes the variable's value
/// (a string or a list); a filter whose value is `*` (all) is dropped.
fn substitute(v: &mut Value, vars: &Map<String, Value>) {
    match v {
        Value::String(s) => {
            let name = s
                .strip_prefix("${")
                .and_then(|r| r.strip_suffix('}'))
                .or_else(|| s.strip_prefix('$'));
            if let Some(value) = name.and_then(|n| vars.get(n)) {
                *v = value.clone();
            }
        }
        Value::Array(items) => {
            for i in items.iter_mut() {
                substitute(i, vars);
            }
        }
        Value::Object(map) => {
            for (_, i) in map.iter_mut() {
                substitute(i, vars);
            }
            if let Some(Value::Array(filters)) = map.get_mut("filters") {
                filters.retain(|f| f["value"] != json!("*") && f["value"] != json!(["*"]));
            }
        }
        _ => {}
    }
}

/// The dashboard's variables with their defaults, overridden by `given`.
fn variable_values(d: &DashboardRecord, given: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    if let Value::Array(vars) = parse_json(&d.variables) {
        for v in vars {
            if let Some(name) = v["name"].as_str() {
                let default = match &v["default"] {
                    Value::Null => json!("*"),
                    other => other.clone(),
                };
                out.insert(name.to_string(), default);
            }
        }
    }
    for (k, v) in given {
        if out.contains_key(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// A transform's output back to series: the first timestamp column is the time, string
/// columns are labels, each numeric column a value (named in `__field` when there are several).
fn table_series(out: &query::SqlOutput) -> Result<Vec<Value>, ApiError> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Float64Type, TimeUnit};
    let schema = &out.schema;
    let time = schema
        .fields()
        .iter()
        .position(|f| matches!(f.data_type(), DataType::Timestamp(..)));
    let label_cols: Vec<usize> = (0..schema.fields().len())
        .filter(|i| {
            matches!(
                schema.field(*i).data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        })
        .collect();
    let value_cols: Vec<usize> = (0..schema.fields().len())
        .filter(|i| Some(*i) != time && schema.field(*i).data_type().is_numeric())
        .collect();
    let mut series: BTreeMap<(BTreeMap<String, String>, String), Vec<Value>> = BTreeMap::new();
    for b in &out.batches {
        let times = match time {
            Some(i) => Some(
                arrow::compute::cast(
                    b.column(i),
                    &DataType::Timestamp(TimeUnit::Millisecond, None),
                )
                .map_err(ApiError::internal)?,
            ),
            None => None,
        };
        let labels: Vec<_> = label_cols
            .iter()
            .map(|i| arrow::compute::cast(b.column(*i), &DataType::Utf8))
            .collect::<Result<_, _>>()
            .map_err(ApiError::internal)?;
        let values: Vec<_> = value_cols
            .iter()
            .map(|i| arrow::compute::cast(b.column(*i), &DataType::Float64))
            .collect::<Result<_, _>>()
            .map_err(ApiError::internal)?;
        for r in 0..b.num_rows() {
            let t = times.as_ref().map_or(Value::Null, |t| {
                let t = t.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
                if t.is_null(r) {
                    Value::Null
                } else {
                    json!(t.value(r))
                }
            });
            let mut ls = BTreeMap::new();
            for (j, i) in label_cols.iter().enumerate() {
                let a = labels[j].as_string::<i32>();
                ls.insert(schema.field(*i).name().clone(), a.value(r).to_string());
            }
            for (j, i) in value_cols.iter().enumerate() {
                let a = values[j].as_primitive::<Float64Type>();
                let v = if a.is_null(r) || !a.value(r).is_finite() {
                    Value::Null
                } else {
                    json!(a.value(r))
                };
                let field = if value_cols.len() > 1 {
                    schema.field(*i).name().clone()
                } else {
                    String::new()
                };
                series
                    .entry((ls.clone(), field))
                    .or_default()
                    .push(json!([t, v]));
            }
        }
    }
    Ok(series
        .into_iter()
        .map(|((mut labels, field), points)| {
            if !field.is_empty() {
                labels.insert("__field".into(), field);
            }
            json!({"labels": labels, "points": points})
        })
        .collect())
}

/// Runs the widget's transform chain on `input`, each step on the previous step's output.
async fn transform_chain(
    state: &AppState,
    workspace_id: &str,
    steps: &[TransformStep],
    mut table: query::SqlOutput,
) -> Result<query::SqlOutput, ApiError> {
    use alerting::Plugins as _;
    let plugins = crate::AlertPlugins {
        service: Arc::clone(&state.plugins),
        meta: Arc::clone(&state.meta),
    };
    for step in steps {
        let compiled = plugins
            .plugin(workspace_id, &step.plugin)
            .await
            .map_err(ApiError::invalid)?;
        if compiled.kind != PluginKind::WidgetTransform {
            return Err(ApiError::invalid(format!(
                "plugin {} is not a widget transform",
                step.plugin
            )));
        }
        let input = table.to_arrow_ipc().map_err(ApiError::internal)?;
        let result = crate::plugins::transform(
            state,
            compiled,
            &step.plugin,
            input,
            step.config.to_string(),
        )
        .await?;
        plugins
            .report(workspace_id, &step.plugin, result.as_ref().map(|_| ()))
            .await;
        table = result.map_err(crate::plugins::plugin_error)?;
    }
    Ok(table)
}

async fn run_widget(
    state: &AppState,
    scope: &Scope,
    d: &DashboardRecord,
    w: &WidgetRecord,
    body: DataBody,
) -> Result<Value, ApiError> {
    let stored: WidgetQuery = serde_json::from_str(&w.query_config)
        .map_err(|e| ApiError::internal(format!("widget {}: {e}", w.widget_id)))?;
    let vars = variable_values(d, &body.variables);
    let now = Utc::now();
    let mut request = QueryBody {
        from: body.from.clone(),
        to: body.to.clone(),
        step: body.step.clone().or(stored.step.clone()),
        max_points: body.max_points.or(stored.max_points),
        instant: stored.instant,
        queries: Vec::new(),
        formulas: Vec::new(),
        format: None,
    };
    if let Some(sql) = &stored.sql {
        // The range is resolved like a builder request's (and checked the same way).
        let r = request.to_request(now)?;
        let (from_ms, to_ms) = (r.from_ns / 1_000_000, r.to_ns / 1_000_000);
        let sql = alert::spec::render_sql(sql, from_ms, to_ms);
        let out = within_time_limit(
            state,
            query::run_scoped_sql(state.telemetry.as_ref(), scope, &sql, &state.query_limits),
        )
        .await?;
        let out = transform_chain(state, &scope.workspace_id, &stored.transforms, out).await?;
        let mut v = crate::sql_json::to_json(&out)?;
        v["widget_id"] = json!(w.widget_id);
        v["widget_type"] = json!(w.widget_type);
        v["from_ms"] = json!(from_ms);
        v["to_ms"] = json!(to_ms);
        return Ok(v);
    }
    let mut filled = json!({"queries": stored.queries, "formulas": stored.formulas});
    substitute(&mut filled, &vars);
    let parsed: QueryBody = serde_json::from_value(filled)
        .map_err(|e| ApiError::invalid(format!("the widget's query after variables: {e}")))?;
    request.queries = parsed.queries;
    request.formulas = parsed.formulas;
    let r = request.to_request(now)?;
    let answer = within_time_limit(
        state,
        query::builder::run_cached(
            state.telemetry.as_ref(),
            scope,
            &r,
            &state.query_limits,
            &state.query_cache,
        ),
    )
    .await?;
    let mut results = Vec::with_capacity(answer.results.len());
    for out in &answer.results {
        let series = if stored.transforms.is_empty() {
            serde_json::to_value(&out.series).map_err(ApiError::internal)?
        } else {
            let table = crate::query_routes::series_table(&[out], false)?;
            let table =
                transform_chain(state, &scope.workspace_id, &stored.transforms, table).await?;
            Value::Array(table_series(&table)?)
        };
        results.push(json!({"name": out.name, "source": out.source, "truncated": out.truncated, "series": series}));
    }
    Ok(json!({
        "widget_id": w.widget_id, "widget_type": w.widget_type,
        "from_ms": answer.from_ms, "to_ms": answer.to_ms, "step_ms": answer.step_ms,
        "variables": vars,
        "results": results,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ValuesQuery {
    /// As in `POST /api/v1/query` (default the last 24 hours).
    from: Option<String>,
    to: Option<String>,
}

/// The values a dashboard variable offers: a `custom` variable's options, or for a `query`
/// variable (`{"query": {"signal", "key"}}`) the values of that key in the range, sorted, at
/// most 1,000.
#[utoipa::path(get, path = "/api/v1/dashboards/{id}/variables/{name}/values", tag = "dashboards",
    params(("id" = String, Path, description = "the dashboard"), ("name" = String, Path, description = "the variable"), ValuesQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "{values}"), (status = "4XX", description = "an error with its reason")))]
async fn variable_values_route(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path((id, name)): Path<(String, String)>,
    Params(q): Params<ValuesQuery>,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    let d = visible_dashboard(&state, &p, &id).await?;
    let vars = parse_json(&d.variables);
    let Some(var) = vars
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == json!(name)))
    else {
        return Err(not_found("variable"));
    };
    let values: Vec<Value> = match var["type"].as_str().unwrap_or("custom") {
        "query" => {
            if !p.may_read_telemetry() {
                return Err(ApiError::forbidden("this role cannot read telemetry"));
            }
            let key = var["query"]["key"].as_str().unwrap_or("service.name");
            let body: QueryBody = serde_json::from_value(json!({
                "from": q.from.unwrap_or_else(|| "now-24h".into()),
                "to": q.to.unwrap_or_else(|| "now".into()),
                "instant": true,
                "queries": [{"name": "values", "signal": var["query"]["signal"].as_str().unwrap_or("traces"),
                    "metric": var["query"]["metric"], "aggregation": "count",
                    "group_by": [key], "order": "labels", "limit": 1000}],
            }))
            .map_err(|e| ApiError::invalid(format!("variable {name}: {e}")))?;
            let answer = within_time_limit(
                &state,
                query::builder::run(
                    state.telemetry.as_ref(),
                    p.scope(),
                    &body.to_request(Utc::now())?,
                    &state.query_limits,
                ),
            )
            .await?;
            answer
                .results
                .iter()
                .flat_map(|r| &r.series)
                .filter_map(|s| s.labels.get(key).filter(|v| !v.is_empty()))
                .map(|v| json!(v))
                .collect()
        }
        _ => var["options"].as_array().cloned().unwrap_or_default(),
    };
    Ok(Json(json!({"name": name, "values": values})))
}

// ---- public dashboards ---------------------------------------------------------------------

/// The dashboard shared under a token (a malformed token is a 400, an unknown one a 404).
async fn shared(state: &AppState, token: &str) -> Result<DashboardRecord, ApiError> {
    let ok = token.len() == SHARE_PREFIX.len() + 43
        && token.starts_with(SHARE_PREFIX)
        && token[SHARE_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(ApiError::invalid("not a share token"));
    }
    state
        .dashboards
        .shared_dashboard(&iam::token_hash(token))
        .await?
        .ok_or_else(|| not_found("dashboard"))
}

/// A public dashboard, read-only and without login: its layout, variables and widgets (not
/// their queries).
#[utoipa::path(get, path = "/api/v1/public/dashboards/{id}", tag = "dashboards", params(("id" = String, Path, description = "the share token")),
    responses((status = 200, description = "the dashboard and its widgets"), (status = "4XX", description = "an error with its reason")))]
async fn public_dashboard(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let d = shared(&state, &token).await?;
    state.dashboards.count_view(&d.dashboard_id).await?;
    let widgets = state.dashboards.widgets(&d.dashboard_id).await?;
    Ok(Json(json!({
        "dashboard_id": d.dashboard_id, "name": d.name, "description": d.description,
        "layout_config": parse_json(&d.layout_config), "variables": parse_json(&d.variables),
        "widgets": widgets.iter().map(|w| widget_json(w, false)).collect::<Vec<_>>(),
    })))
}

/// A public dashboard's widget data (its variables at their defaults).
#[utoipa::path(post, path = "/api/v1/public/dashboards/{id}/widgets/{widget_id}/data", tag = "dashboards",
    params(("id" = String, Path, description = "the share token"), ("widget_id" = String, Path, description = "a widget of that dashboard")),
    request_body = DataBody,
    responses((status = 200, description = "as /api/v1/widgets/{id}/data"), (status = "4XX", description = "an error with its reason")))]
async fn public_widget_data(
    State(state): State<Arc<AppState>>,
    Path((token, widget_id)): Path<(String, String)>,
    Body(body): Body<DataBody>,
) -> Result<Json<Value>, ApiError> {
    let d = shared(&state, &token).await?;
    let w = match state.dashboards.widget(&widget_id).await? {
        Some(w) if w.dashboard_id == d.dashboard_id => w,
        _ => return Err(not_found("widget")),
    };
    let scope = Scope {
        organization_id: String::new(),
        workspace_id: d.workspace_id.clone(),
        tenant_id: d.tenant_id.clone(),
    };
    let body = DataBody {
        variables: Map::new(),
        ..body
    };
    run_widget(&state, &scope, &d, &w, body).await.map(Json)
}

// ---- templates -----------------------------------------------------------------------------

fn template_json(t: &storage::TemplateRecord) -> Value {
    json!({
        "template_id": t.template_id, "workspace_id": t.workspace_id, "name": t.name,
        "description": t.description, "category": t.category, "is_default": t.is_default,
        "shipped": t.workspace_id.is_none(),
        "template_config": parse_json(&t.template_config),
        "created_at": t.created_at, "updated_at": t.updated_at,
    })
}

/// The shipped templates and the workspace's own.
#[utoipa::path(get, path = "/api/v1/dashboard-templates", tag = "dashboards",
    security(("bearer" = [])),
    responses((status = 200, description = "{templates}"), (status = "4XX", description = "an error with its reason")))]
async fn list_templates(
    State(state): State<Arc<AppState>>,
    User(p): User,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    let list = state.dashboards.templates(&p.scope().workspace_id).await?;
    Ok(Json(
        json!({"templates": list.iter().map(template_json).collect::<Vec<_>>()}),
    ))
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TemplateBody {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// apm, infrastructure, network or custom.
    pub category: String,
    /// `{layout_config, variables, widgets}`; or give `from_dashboard`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub template_config: Option<Value>,
    /// Make the template from one of the tenant's dashboards.
    #[serde(default)]
    pub from_dashboard: Option<String>,
}

/// A template of the workspace: given, or taken from a dashboard.
#[utoipa::path(post, path = "/api/v1/dashboard-templates", tag = "dashboards", request_body = TemplateBody,
    security(("bearer" = [])),
    responses((status = 201, description = "the template"), (status = "4XX", description = "an error with its reason; a 400 lists the bad fields")))]
async fn create_template(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Body(body): Body<TemplateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    need(&p, WRITE)?;
    let mut errors = Vec::new();
    if body.name.trim().is_empty() || body.name.len() > 200 {
        errors.push(("/name".to_string(), "1 to 200 characters".to_string()));
    }
    if !CATEGORIES.contains(&body.category.as_str()) {
        errors.push((
            "/category".into(),
            format!("one of {}", CATEGORIES.join(", ")),
        ));
    }
    let config = match (&body.template_config, &body.from_dashboard) {
        (Some(c), None) => c.clone(),
        (None, Some(id)) => {
            let d = visible_dashboard(&state, &p, id).await?;
            let widgets = state.dashboards.widgets(id).await?;
            json!({
                "layout_config": parse_json(&d.layout_config),
                "variables": parse_json(&d.variables),
                "widgets": widgets.iter().map(|w| json!({
                    "title": w.title, "widget_type": w.widget_type,
                    "query_config": parse_json(&w.query_config),
                    "visualization_config": parse_json(&w.visualization_config),
                    "position_config": parse_json(&w.position_config),
                    "refresh_interval": w.refresh_interval,
                })).collect::<Vec<_>>(),
            })
        }
        _ => {
            return Err(ApiError::invalid(
                "give either template_config or from_dashboard",
            ));
        }
    };
    match serde_json::from_value::<Vec<WidgetBody>>(config["widgets"].clone()) {
        Ok(widgets) => {
            for (i, w) in widgets.iter().enumerate() {
                widget_write(
                    &state,
                    &p,
                    w,
                    &format!("/template_config/widgets/{i}"),
                    &mut errors,
                )
                .await?;
            }
        }
        Err(e) => errors.push(("/template_config/widgets".into(), e.to_string())),
    }
    let none = json!([]);
    check_variables(
        if config["variables"].is_null() {
            &none
        } else {
            &config["variables"]
        },
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(ApiError::fields("template", errors));
    }
    let t = state
        .dashboards
        .create_template(
            &p.scope().workspace_id,
            TemplateWrite {
                name: body.name.trim().to_string(),
                description: body.description.clone(),
                category: body.category.clone(),
                template_config: text_of(&config),
                is_default: false,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(template_json(&t))))
}

async fn visible_template(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<storage::TemplateRecord, ApiError> {
    match state.dashboards.template(id).await? {
        Some(t)
            if t.workspace_id
                .as_deref()
                .is_none_or(|w| w == p.scope().workspace_id) =>
        {
            Ok(t)
        }
        _ => Err(not_found("template")),
    }
}

#[utoipa::path(get, path = "/api/v1/dashboard-templates/{id}", tag = "dashboards", params(("id" = String, Path, description = "the template")),
    security(("bearer" = [])),
    responses((status = 200, description = "the template"), (status = "4XX", description = "an error with its reason")))]
async fn get_template(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    Ok(Json(template_json(
        &visible_template(&state, &p, &id).await?,
    )))
}

/// Deletes a workspace template (shipped ones cannot be deleted).
#[utoipa::path(delete, path = "/api/v1/dashboard-templates/{id}", tag = "dashboards", params(("id" = String, Path, description = "the template")),
    security(("bearer" = [])),
    responses((status = 204, description = "deleted"), (status = "4XX", description = "an error with its reason")))]
async fn delete_template(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    need(&p, DELETE)?;
    let t = visible_template(&state, &p, &id).await?;
    if t.workspace_id.is_none() {
        return Err(ApiError::forbidden(
            "shipped templates come with the server and cannot be deleted",
        ));
    }
    state.dashboards.delete_template(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The templates shipped with the server (`host/api/templates/`), written at start under
/// fixed ids so a newer server replaces an older version.
const SHIPPED: [(&str, &str); 2] = [
    ("tf-template-apm", include_str!("../templates/apm.json")),
    (
        "tf-template-infrastructure",
        include_str!("../templates/infrastructure.json"),
    ),
];

/// Installs (or updates) the shipped dashboard templates.
///
/// # Errors
/// When a shipped template is malformed (a bug) or the store fails.
pub async fn install_dashboard_templates(store: &dyn DashboardStore) -> Result<(), ApiError> {
    for (id, text) in SHIPPED {
        let t: Value = serde_json::from_str(text)
            .map_err(|e| ApiError::internal(format!("shipped template {id}: {e}")))?;
        serde_json::from_value::<Vec<WidgetBody>>(t["template_config"]["widgets"].clone())
            .map_err(|e| ApiError::internal(format!("shipped template {id}: {e}")))?;
        store
            .put_shipped_template(
                id,
                TemplateWrite {
                    name: t["name"].as_str().unwrap_or(id).to_string(),
                    description: t["description"].as_str().unwrap_or_default().to_string(),
                    category: t["category"].as_str().unwrap_or("custom").to_string(),
                    template_config: text_of(&t["template_config"]),
                    is_default: true,
                },
            )
            .await?;
    }
    Ok(())
}

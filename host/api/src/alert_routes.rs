//! Alert rules, notification groups and silences over HTTP, per tenant.
//!
//! Bodies are `alert::spec`'s types: every bad field is reported at once as a 400 whose
//! `error.fields` lists each JSON pointer and its problem. A rule's condition config is checked
//! against the plugin's JSON Schema and then by the plugin's own `validate-config`; a query's
//! SQL must be a single SELECT. Ids of another tenant are 404, like ids that do not exist.

use std::sync::Arc;

use alert::spec::{GroupSpec, RuleSpec, SilenceSpec};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use iam::Principal;
use model::ErrorKind;
use plugin_runtime::PluginKind;
use serde::Deserialize;
use serde_json::{Value, json};
use storage::{AlertRuleRecord, GroupRecord, NewSilence, Page, SilenceRecord};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::AuditResult;
use crate::auth::{Client, User};
use crate::iam_routes::Params;
use crate::plugins::{Found, find, plugin_error};
use crate::routes::Body;
use crate::{ApiError, AppState};

/// The spec of a stored rule.
pub(crate) fn rule_spec(r: &AlertRuleRecord, groups: Vec<String>) -> Result<RuleSpec, ApiError> {
    alerting::rule_spec(r, groups).map_err(ApiError::internal)
}

fn group_spec(g: &GroupRecord) -> Result<GroupSpec, ApiError> {
    alerting::group_spec(g).map_err(ApiError::internal)
}

pub(crate) const READ: &str = "alert:read";
pub(crate) const WRITE: &str = "alert:write";
pub(crate) const DELETE: &str = "alert:delete";

pub(crate) fn need(p: &Principal, permission: &str) -> Result<(), ApiError> {
    if p.has(permission) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "this action needs the permission {permission}"
        )))
    }
}

pub(crate) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(get_rule, replace_rule, patch_rule, delete_rule))
        .routes(routes!(rule_instances))
        .routes(routes!(backtest_rule))
        .routes(routes!(backtest_unsaved))
        .routes(routes!(rule_history))
        .routes(routes!(list_alerts))
        .routes(routes!(list_groups, create_group))
        .routes(routes!(get_group, replace_group, delete_group))
        .routes(routes!(list_silences, create_silence))
        .routes(routes!(get_silence, expire_silence))
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("{what} not found"))
}

fn bad_spec(what: &str, errors: Vec<alert::spec::FieldError>) -> ApiError {
    ApiError::fields(
        what,
        errors.into_iter().map(|e| (e.path, e.message)).collect(),
    )
}

/// Parses a body into a spec; an unknown or mistyped field is a 400 that names it.
fn parse<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::invalid(format!("invalid {what}: {e}")))
}

// ---- plugin configs ------------------------------------------------------------------------

/// What is wrong with `config` for plugin `plugin_id` of kind `kind`, as (path, problem): an
/// unknown, wrong-kind or (unless `disabled_ok`) disabled plugin at the plugin path; then the
/// plugin's JSON Schema and its own validation under the config path (`/condition/config`…).
pub(crate) async fn plugin_config_errors(
    state: &AppState,
    p: &Principal,
    plugin_id: &str,
    kind: PluginKind,
    config: &Value,
    (plugin_path, config_path): (&str, &str),
    disabled_ok: bool,
) -> Result<Vec<(String, String)>, ApiError> {
    let found = match find(state, p, plugin_id).await {
        Ok(f) => f,
        Err(e) if e.kind == ErrorKind::NotFound => {
            return Ok(vec![(
                plugin_path.to_string(),
                format!("no plugin {plugin_id:?} in this workspace"),
            )]);
        }
        Err(e) => return Err(e),
    };
    if found.kind() != kind.world() {
        return Ok(vec![(
            plugin_path.to_string(),
            format!(
                "{plugin_id} is a {} plugin, not a {} one",
                found.kind(),
                kind.world()
            ),
        )]);
    }
    if let Some(reason) = found.disabled().filter(|_| !disabled_ok) {
        return Ok(vec![(
            plugin_path.to_string(),
            format!("{plugin_id} is disabled: {reason}"),
        )]);
    }
    let mut out = schema_errors(found.config_schema(), config, config_path);
    if out.is_empty() {
        out = own_validation(state, &found, config, config_path).await?;
    }
    Ok(out)
}

/// Violations of the plugin's JSON Schema. A plugin whose schema does not compile is not held
/// to it (its own validation still runs).
fn schema_errors(schema: &str, config: &Value, prefix: &str) -> Vec<(String, String)> {
    let Ok(schema) = serde_json::from_str::<Value>(schema) else {
        return Vec::new();
    };
    let Ok(validator) = jsonschema::validator_for(&schema) else {
        return Vec::new();
    };
    validator
        .iter_errors(config)
        .take(32)
        .map(|e| {
            // Configs hold secrets (webhook URLs, tokens): the message never repeats a value.
            let mut message = e.to_string();
            let value = e.instance().to_string();
            if value.len() > 2 {
                message = message.replace(&value, "the value");
            }
            (format!("{prefix}{}", e.instance_path()), message)
        })
        .collect()
}

async fn own_validation(
    state: &AppState,
    found: &Found<'_>,
    config: &Value,
    prefix: &str,
) -> Result<Vec<(String, String)>, ApiError> {
    let compiled = found.compiled(state).await?;
    let rt = Arc::clone(&state.plugins);
    let text = config.to_string();
    let errors =
        tokio::task::spawn_blocking(move || rt.runtime().validate_config(&compiled, &text))
            .await
            .map_err(ApiError::internal)?
            .map_err(plugin_error)?;
    Ok(errors
        .into_iter()
        .map(|e| {
            let path = if e.path.is_empty() || e.path.starts_with('/') {
                e.path
            } else {
                format!("/{}", e.path)
            };
            (format!("{prefix}{path}"), e.message)
        })
        .collect())
}

// ---- rules ---------------------------------------------------------------------------------

fn rule_json(r: &AlertRuleRecord, spec: &RuleSpec) -> Value {
    let mut v = serde_json::to_value(spec).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        for (k, x) in [
            ("alert_rule_id", json!(r.alert_rule_id)),
            ("workspace_id", json!(r.workspace_id)),
            ("tenant_id", json!(r.tenant_id)),
            ("created_by", json!(r.created_by)),
            ("created_at", json!(r.created_at)),
            ("updated_at", json!(r.updated_at)),
            ("last_evaluated_at", json!(r.last_evaluated_at)),
        ] {
            o.insert(k.into(), x);
        }
    }
    v
}

/// A rule of the caller's tenant, not deleted.
pub(crate) async fn visible_rule(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<AlertRuleRecord, ApiError> {
    match state.alerts.rule(id).await? {
        Some(r) if r.tenant_id == p.scope().tenant_id && r.deleted_at.is_none() => Ok(r),
        _ => Err(not_found("alert rule")),
    }
}

/// Every check a rule must pass before it is saved.
async fn check_rule(
    state: &AppState,
    p: &Principal,
    spec: &RuleSpec,
    self_id: Option<&str>,
) -> Result<(), ApiError> {
    let errors = spec.check();
    if !errors.is_empty() {
        return Err(bad_spec("alert rule", errors));
    }
    let mut fields = Vec::new();
    for (i, q) in spec.queries.iter().enumerate() {
        let sql = alert::spec::render_sql(&q.sql, 0, 0);
        if let Err(e) = query::ensure_single_select(&sql) {
            fields.push((format!("/queries/{i}/sql"), e.to_string()));
        }
    }
    if let Some(c) = &spec.condition {
        fields.extend(
            plugin_config_errors(
                state,
                p,
                &c.plugin,
                PluginKind::AlertCondition,
                &c.config,
                ("/condition/plugin", "/condition/config"),
                // A rule being switched off may name a plugin the breaker disabled.
                !spec.enabled,
            )
            .await?,
        );
    }
    if let Some(c) = &spec.composite {
        for (i, id) in c.rules.iter().enumerate() {
            let path = format!("/composite/rules/{i}");
            if Some(id.as_str()) == self_id {
                fields.push((path, "a composite rule cannot include itself".into()));
            } else if visible_rule(state, p, id).await.is_err() {
                fields.push((path, format!("no alert rule {id:?} in this tenant")));
            }
        }
    }
    for (i, g) in spec.notification_groups.iter().enumerate() {
        match state.alerts.group(g).await? {
            Some(r) if r.tenant_id == p.scope().tenant_id => {}
            _ => fields.push((
                format!("/notification_groups/{i}"),
                format!("no notification group {g:?} in this tenant"),
            )),
        }
    }
    if fields.is_empty() {
        Ok(())
    } else {
        Err(ApiError::fields("alert rule", fields))
    }
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Page size (default 100, at most 500).
    limit: Option<u32>,
    /// The last id of the previous page.
    after: Option<String>,
}

/// The tenant's alert rules (not deleted), oldest first, paginated by id.
#[utoipa::path(get, path = "/api/v1/alert-rules", tag = "alerting", params(ListQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn list_rules(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Params(q): Params<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    let page = Page {
        limit: q.limit.unwrap_or(100),
        after: q.after,
        include_deleted: false,
    };
    let rules = state.alerts.rules(&p.scope().tenant_id, &page).await?;
    let mut out = Vec::with_capacity(rules.len());
    for r in &rules {
        let groups = state.alerts.rule_groups(&r.alert_rule_id).await?;
        out.push(rule_json(r, &rule_spec(r, groups)?));
    }
    let next = (rules.len() == page.limit.clamp(1, 500) as usize)
        .then(|| rules.last().map(|r| r.alert_rule_id.clone()))
        .flatten();
    Ok(Json(json!({"rules": out, "next": next})))
}

/// Creates an alert rule in the caller's tenant.
#[utoipa::path(post, path = "/api/v1/alert-rules", tag = "alerting", security(("bearer" = [])),
    responses((status = 201, description = "created"), (status = "4XX", description = "an error with its reason; a 400 lists the bad fields")))]
async fn create_rule(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Body(body): Body<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    need(&p, WRITE)?;
    let spec: RuleSpec = parse("alert rule", body)?;
    check_rule(&state, &p, &spec, None).await?;
    let r = state
        .alerts
        .create_rule(
            p.scope(),
            alerting::rule_write(&spec),
            &spec.notification_groups,
            Some(p.actor()),
        )
        .await?;
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "alert_rule.create",
        ("alert_rule", &r.alert_rule_id),
        AuditResult::Success,
        json!({"name": r.name}),
    );
    Ok((StatusCode::CREATED, Json(rule_json(&r, &spec))))
}

#[utoipa::path(get, path = "/api/v1/alert-rules/{id}", tag = "alerting", params(("id" = String, Path, description = "the rule")),
    security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn get_rule(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    let r = visible_rule(&state, &p, &id).await?;
    let groups = state.alerts.rule_groups(&id).await?;
    Ok(Json(rule_json(&r, &rule_spec(&r, groups)?)))
}

async fn save_rule(
    state: &AppState,
    client: &Client,
    p: &Principal,
    id: &str,
    spec: RuleSpec,
) -> Result<Json<Value>, ApiError> {
    check_rule(state, p, &spec, Some(id)).await?;
    let r = state
        .alerts
        .update_rule(id, alerting::rule_write(&spec), &spec.notification_groups)
        .await?;
    state.audit(
        client,
        p.actor(),
        p.scope(),
        "alert_rule.update",
        ("alert_rule", id),
        AuditResult::Success,
        json!({"name": r.name, "enabled": r.is_enabled}),
    );
    Ok(Json(rule_json(&r, &spec)))
}

/// Replaces a rule (the whole spec).
#[utoipa::path(put, path = "/api/v1/alert-rules/{id}", tag = "alerting", params(("id" = String, Path, description = "the rule")),
    security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason; a 400 lists the bad fields")))]
async fn replace_rule(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
    Body(body): Body<Value>,
) -> Result<Json<Value>, ApiError> {
    need(&p, WRITE)?;
    visible_rule(&state, &p, &id).await?;
    let spec: RuleSpec = parse("alert rule", body)?;
    save_rule(&state, &client, &p, &id, spec).await
}

/// Changes some fields of a rule: a JSON merge patch (RFC 7396) over its spec, e.g.
/// `{"enabled": false}` or `{"labels": {"team": null}}`.
#[utoipa::path(patch, path = "/api/v1/alert-rules/{id}", tag = "alerting", params(("id" = String, Path, description = "the rule")),
    security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason; a 400 lists the bad fields")))]
async fn patch_rule(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
    Body(patch): Body<Value>,
) -> Result<Json<Value>, ApiError> {
    need(&p, WRITE)?;
    let r = visible_rule(&state, &p, &id).await?;
    let groups = state.alerts.rule_groups(&id).await?;
    let mut current = serde_json::to_value(rule_spec(&r, groups)?).map_err(ApiError::internal)?;
    merge_patch(&mut current, &patch);
    let spec: RuleSpec = parse("alert rule", current)?;
    save_rule(&state, &client, &p, &id, spec).await
}

/// RFC 7396: objects merge key by key, `null` removes, anything else replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Deletes a rule (kept for history, no longer evaluated).
#[utoipa::path(delete, path = "/api/v1/alert-rules/{id}", tag = "alerting", params(("id" = String, Path, description = "the rule")),
    security(("bearer" = [])),
    responses((status = 204, description = "deleted"), (status = "4XX", description = "an error with its reason")))]
async fn delete_rule(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    need(&p, DELETE)?;
    visible_rule(&state, &p, &id).await?;
    state.alerts.delete_rule(&id, Utc::now()).await?;
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "alert_rule.delete",
        ("alert_rule", &id),
        AuditResult::Success,
        json!({}),
    );
    Ok(StatusCode::NO_CONTENT)
}

// ---- notification groups -------------------------------------------------------------------

async fn group_json(state: &AppState, g: &GroupRecord) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(group_spec(g)?).map_err(ApiError::internal)?;
    let rules = state.alerts.group_rules(&g.group_id).await?;
    let channels = state
        .alerts
        .channels(&g.tenant_id, Some(&g.group_id))
        .await?;
    if let Some(o) = v.as_object_mut() {
        for (k, x) in [
            ("group_id", json!(g.group_id)),
            ("workspace_id", json!(g.workspace_id)),
            ("tenant_id", json!(g.tenant_id)),
            ("rules", json!(rules)),
            (
                "channels",
                json!(
                    channels
                        .iter()
                        .map(crate::channel_routes::channel_json)
                        .collect::<Vec<_>>()
                ),
            ),
            ("created_at", json!(g.created_at)),
            ("updated_at", json!(g.updated_at)),
        ] {
            o.insert(k.into(), x);
        }
    }
    Ok(v)
}

/// A notification group of the caller's tenant.
pub(crate) async fn visible_group(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<GroupRecord, ApiError> {
    match state.alerts.group(id).await? {
        Some(g) if g.tenant_id == p.scope().tenant_id => Ok(g),
        _ => Err(not_found("notification group")),
    }
}

fn checked_group(body: Value) -> Result<GroupSpec, ApiError> {
    let spec: GroupSpec = parse("notification group", body)?;
    let errors = spec.check();
    if errors.is_empty() {
        Ok(spec)
    } else {
        Err(bad_spec("notification group", errors))
    }
}

/// The tenant's notification groups with their channels and linked rules.
#[utoipa::path(get, path = "/api/v1/notification-groups", tag = "alerting", security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn list_groups(
    State(state): State<Arc<AppState>>,
    User(p): User,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    let mut out = Vec::new();
    for g in state.alerts.groups(&p.scope().tenant_id).await? {
        out.push(group_json(&state, &g).await?);
    }
    Ok(Json(json!({"groups": out})))
}

/// Creates a notification group: matchers, grouping, timers, mute windows, inhibition.
#[utoipa::path(post, path = "/api/v1/notification-groups", tag = "alerting", security(("bearer" = [])),
    responses((status = 201, description = "created"), (status = "4XX", description = "an error with its reason; a 400 lists the bad fields")))]
async fn create_group(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Body(body): Body<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    need(&p, WRITE)?;
    let spec = checked_group(body)?;
    let g = state
        .alerts
        .create_group(p.scope(), alerting::group_write(&spec))
        .await?;
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "notification_group.create",
        ("notification_group", &g.group_id),
        AuditResult::Success,
        json!({"name": g.name}),
    );
    Ok((StatusCode::CREATED, Json(group_json(&state, &g).await?)))
}

#[utoipa::path(get, path = "/api/v1/notification-groups/{id}", tag = "alerting", params(("id" = String, Path, description = "the group")),
    security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn get_group(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    let g = visible_group(&state, &p, &id).await?;
    Ok(Json(group_json(&state, &g).await?))
}

/// Replaces a group's settings (its channels and links stay).
#[utoipa::path(put, path = "/api/v1/notification-groups/{id}", tag = "alerting", params(("id" = String, Path, description = "the group")),
    security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason; a 400 lists the bad fields")))]
async fn replace_group(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
    Body(body): Body<Value>,
) -> Result<Json<Value>, ApiError> {
    need(&p, WRITE)?;
    visible_group(&state, &p, &id).await?;
    let spec = checked_group(body)?;
    let g = state
        .alerts
        .update_group(&id, alerting::group_write(&spec))
        .await?;
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "notification_group.update",
        ("notification_group", &id),
        AuditResult::Success,
        json!({"name": g.name}),
    );
    Ok(Json(group_json(&state, &g).await?))
}

/// Deletes a group with its channels; rules linked to it lose the link.
#[utoipa::path(delete, path = "/api/v1/notification-groups/{id}", tag = "alerting", params(("id" = String, Path, description = "the group")),
    security(("bearer" = [])),
    responses((status = 204, description = "deleted"), (status = "4XX", description = "an error with its reason")))]
async fn delete_group(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    need(&p, DELETE)?;
    visible_group(&state, &p, &id).await?;
    state.alerts.delete_group(&id).await?;
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "notification_group.delete",
        ("notification_group", &id),
        AuditResult::Success,
        json!({}),
    );
    Ok(StatusCode::NO_CONTENT)
}

// ---- silences ------------------------------------------------------------------------------

fn silence_json(s: &SilenceRecord, now: DateTime<Utc>) -> Value {
    let matchers: Value = serde_json::from_str(&s.matchers).unwrap_or_else(|_| json!([]));
    let status = if s.ends_at <= now {
        "expired"
    } else if s.starts_at > now {
        "pending"
    } else {
        "active"
    };
    json!({
        "silence_id": s.silence_id, "matchers": matchers, "starts_at": s.starts_at,
        "ends_at": s.ends_at, "comment": s.comment, "created_by": s.created_by,
        "created_at": s.created_at, "updated_at": s.updated_at, "status": status,
    })
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct SilenceQuery {
    /// `active` (default: not yet ended, including pending ones) or `all`.
    state: Option<String>,
}

/// The tenant's silences, latest end first.
#[utoipa::path(get, path = "/api/v1/silences", tag = "alerting", params(SilenceQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn list_silences(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Params(q): Params<SilenceQuery>,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    let now = Utc::now();
    let active_at = match q.state.as_deref() {
        None | Some("active") => Some(now),
        Some("all") => None,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "state is active or all, not {other:?}"
            )));
        }
    };
    let list = state
        .alerts
        .silences(&p.scope().tenant_id, active_at)
        .await?;
    Ok(Json(json!({
        "silences": list.iter().map(|s| silence_json(s, now)).collect::<Vec<_>>(),
    })))
}

/// Silences the alerts whose labels match every matcher, from `starts_at` (default now) to
/// `ends_at` (or for `duration`).
#[utoipa::path(post, path = "/api/v1/silences", tag = "alerting", security(("bearer" = [])),
    responses((status = 201, description = "created"), (status = "4XX", description = "an error with its reason; a 400 lists the bad fields")))]
async fn create_silence(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Body(body): Body<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    need(&p, WRITE)?;
    let spec: SilenceSpec = parse("silence", body)?;
    let now = Utc::now();
    let (_, starts, ends) = spec
        .window(now.timestamp_millis())
        .map_err(|e| bad_spec("silence", e))?;
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(now);
    let s = state
        .alerts
        .create_silence(
            p.scope(),
            NewSilence {
                matchers: json!(spec.matchers).to_string(),
                starts_at: at(starts),
                ends_at: at(ends),
                comment: spec.comment.clone(),
                created_by: Some(p.actor().to_string()),
            },
        )
        .await?;
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "silence.create",
        ("silence", &s.silence_id),
        AuditResult::Success,
        json!({"matchers": spec.matchers, "ends_at": s.ends_at}),
    );
    Ok((StatusCode::CREATED, Json(silence_json(&s, now))))
}

async fn visible_silence(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<SilenceRecord, ApiError> {
    match state.alerts.silence(id).await? {
        Some(s) if s.tenant_id == p.scope().tenant_id => Ok(s),
        _ => Err(not_found("silence")),
    }
}

#[utoipa::path(get, path = "/api/v1/silences/{id}", tag = "alerting", params(("id" = String, Path, description = "the silence")),
    security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn get_silence(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    let s = visible_silence(&state, &p, &id).await?;
    Ok(Json(silence_json(&s, Utc::now())))
}

/// Expires a silence now (it stays listed under `?state=all`).
#[utoipa::path(delete, path = "/api/v1/silences/{id}", tag = "alerting", params(("id" = String, Path, description = "the silence")),
    security(("bearer" = [])),
    responses((status = 200, description = "the expired silence"), (status = "4XX", description = "an error with its reason")))]
async fn expire_silence(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    need(&p, WRITE)?;
    visible_silence(&state, &p, &id).await?;
    let now = Utc::now();
    let s = state
        .alerts
        .expire_silence(&id, now)
        .await?
        .ok_or_else(|| not_found("silence"))?;
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "silence.expire",
        ("silence", &id),
        AuditResult::Success,
        json!({}),
    );
    Ok(Json(silence_json(&s, now)))
}

// ---- instances and history -----------------------------------------------------------------

fn pairs(labels: &[(String, String)]) -> Value {
    Value::Object(labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn time_of(ms: Option<i64>) -> Value {
    ms.and_then(DateTime::<Utc>::from_timestamp_millis)
        .map_or(Value::Null, |t| json!(t))
}

fn instance_json(fingerprint: &str, i: &alert::Instance) -> Value {
    json!({
        "fingerprint": fingerprint, "labels": pairs(&i.labels), "state": i.state.as_str(),
        "since": time_of(Some(i.since_ms)), "fired_at": time_of(i.fired_at_ms),
        "resolved_at": time_of(i.resolved_at_ms), "value": i.value, "severity": i.severity,
        "annotations": pairs(&i.annotations), "last_error": i.last_error,
    })
}

/// A rule's evaluation state: its instances and how its evaluations went.
async fn rule_state(state: &AppState, id: &str) -> Result<(alert::RuleState, Value), ApiError> {
    let record = state.alerts.rule_state(id).await?;
    let rs: alert::RuleState = record
        .as_ref()
        .and_then(|r| serde_json::from_str(&r.instances).ok())
        .unwrap_or_default();
    let summary = record.map_or_else(
        || json!({"evaluations": 0, "last_evaluated_at": null, "last_error": null, "skipped_ticks": 0}),
        |r| {
            json!({
                "evaluations": r.evaluations, "last_evaluated_at": r.last_evaluated_at,
                "last_error": r.last_error, "skipped_ticks": r.skipped_ticks,
            })
        },
    );
    Ok((rs, summary))
}

/// A rule's alert instances (one per label set) with their state and since when, and how its
/// evaluations went (count, last error, skipped ticks).
#[utoipa::path(get, path = "/api/v1/alert-rules/{id}/instances", tag = "alerting", params(("id" = String, Path, description = "the rule")),
    security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn rule_instances(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    visible_rule(&state, &p, &id).await?;
    let (rs, summary) = rule_state(&state, &id).await?;
    Ok(Json(json!({
        "instances": rs.instances.iter().map(|(f, i)| instance_json(f, i)).collect::<Vec<_>>(),
        "evaluation": summary,
    })))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitQuery {
    /// Most entries (default 100, at most 1000).
    pub(crate) limit: Option<u32>,
}

/// A rule's state changes, newest first, each with its reason.
#[utoipa::path(get, path = "/api/v1/alert-rules/{id}/history", tag = "alerting", params(("id" = String, Path, description = "the rule"), LimitQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn rule_history(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
    Params(q): Params<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    visible_rule(&state, &p, &id).await?;
    let out = query::alert_history(
        state.telemetry.as_ref(),
        p.scope(),
        Some(&id),
        q.limit.unwrap_or(100).clamp(1, 1000) as usize,
        &state.query_limits,
    )
    .await?;
    let table = crate::sql_json::to_json(&out)?;
    let names: Vec<String> = table["columns"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let entries: Vec<Value> = table["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    let mut o = serde_json::Map::new();
                    for (n, v) in names.iter().zip(row.as_array().into_iter().flatten()) {
                        let v = if n == "metadata" {
                            v.as_str()
                                .and_then(|t| serde_json::from_str(t).ok())
                                .unwrap_or_else(|| v.clone())
                        } else {
                            v.clone()
                        };
                        o.insert(n.clone(), v);
                    }
                    Value::Object(o)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(json!({"history": entries})))
}

/// Every alert of the tenant that is not normal (pending, firing, no data, error), with its
/// rule.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerting", security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn list_alerts(
    State(state): State<Arc<AppState>>,
    User(p): User,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    let mut out = Vec::new();
    let mut page = Page {
        limit: 500,
        after: None,
        include_deleted: false,
    };
    loop {
        let rules = state.alerts.rules(&p.scope().tenant_id, &page).await?;
        for r in &rules {
            let (rs, _) = rule_state(&state, &r.alert_rule_id).await?;
            for (f, i) in &rs.instances {
                if i.state == alert::State::Normal {
                    continue;
                }
                let mut v = instance_json(f, i);
                v["alert_rule_id"] = json!(r.alert_rule_id);
                v["alert_rule_name"] = json!(r.name);
                out.push(v);
            }
        }
        if rules.len() < 500 {
            break;
        }
        page.after = rules.last().map(|r| r.alert_rule_id.clone());
    }
    Ok(Json(json!({"alerts": out})))
}

// ---- backtest ------------------------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BacktestBody {
    /// RFC 3339.
    from: DateTime<Utc>,
    /// RFC 3339; default now.
    to: Option<DateTime<Utc>>,
    /// An unsaved rule to replay (only on `/api/v1/alert-rules/backtest`).
    rule: Option<Value>,
}

fn evaluator(state: &AppState) -> alerting::Evaluator {
    alerting::Evaluator::new(
        Arc::clone(&state.alerts),
        Arc::clone(&state.telemetry),
        Arc::new(crate::plugins::AlertPlugins {
            service: Arc::clone(&state.plugins),
            meta: Arc::clone(&state.meta),
        }),
        state.query_limits,
    )
}

async fn backtest(
    state: &AppState,
    rule: &AlertRuleRecord,
    spec: &RuleSpec,
    body: &BacktestBody,
) -> Result<Json<Value>, ApiError> {
    let to = body.to.unwrap_or_else(Utc::now);
    if to <= body.from {
        return Err(ApiError::fields(
            "backtest",
            vec![("/to".into(), "must be after from".into())],
        ));
    }
    let transitions = evaluator(state)
        .backtest(
            rule,
            spec,
            body.from.timestamp_millis(),
            to.timestamp_millis(),
        )
        .await
        .map_err(ApiError::invalid)?;
    Ok(Json(json!({
        "from": body.from, "to": to,
        "transitions": transitions.iter().map(|t| json!({
            "at": time_of(Some(t.at_ms)), "fingerprint": t.fingerprint, "labels": pairs(&t.labels),
            "from": t.from.as_str(), "to": t.to.as_str(), "value": t.value, "reason": t.reason,
        })).collect::<Vec<_>>(),
    })))
}

/// Replays a saved rule and its condition plugin over stored data: the transitions it would
/// have produced between `from` and `to`, evaluated at its own schedule's ticks. Nothing is
/// written or sent.
#[utoipa::path(post, path = "/api/v1/alert-rules/{id}/backtest", tag = "alerting", params(("id" = String, Path, description = "the rule")),
    request_body = BacktestBody, security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn backtest_rule(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
    Body(body): Body<BacktestBody>,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    if !p.may_read_telemetry() {
        return Err(ApiError::forbidden("this role cannot read telemetry"));
    }
    if body.rule.is_some() {
        return Err(ApiError::invalid(
            "a saved rule is replayed as saved; send an unsaved rule to /api/v1/alert-rules/backtest",
        ));
    }
    let r = visible_rule(&state, &p, &id).await?;
    let spec = rule_spec(&r, Vec::new())?;
    backtest(&state, &r, &spec, &body).await
}

/// Replays a rule that is not saved (`rule`, checked like a new rule) over stored data.
#[utoipa::path(post, path = "/api/v1/alert-rules/backtest", tag = "alerting",
    request_body = BacktestBody, security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason; a 400 lists the bad fields")))]
async fn backtest_unsaved(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Body(body): Body<BacktestBody>,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    if !p.may_read_telemetry() {
        return Err(ApiError::forbidden("this role cannot read telemetry"));
    }
    let Some(raw) = body.rule.clone() else {
        return Err(ApiError::fields(
            "backtest",
            vec![("/rule".into(), "the rule to replay".into())],
        ));
    };
    let spec: RuleSpec = parse("alert rule", raw)?;
    check_rule(&state, &p, &spec, None).await?;
    let now = Utc::now();
    let scope = p.scope();
    let r = AlertRuleRecord {
        alert_rule_id: "backtest".into(),
        organization_id: scope.organization_id.clone(),
        workspace_id: scope.workspace_id.clone(),
        tenant_id: scope.tenant_id.clone(),
        name: spec.name.clone(),
        description: spec.description.clone(),
        query_type: spec.query_type.clone(),
        query_config: String::new(),
        condition_config: String::new(),
        settings: String::new(),
        severity: spec.severity.clone(),
        cooldown_minutes: i64::from(spec.cooldown_minutes),
        is_enabled: false,
        last_evaluated_at: None,
        created_by: Some(p.actor().to_string()),
        created_at: now,
        updated_at: now,
        deleted_at: None,
    };
    backtest(&state, &r, &spec, &body).await
}

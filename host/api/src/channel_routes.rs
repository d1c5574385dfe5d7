//! Notification channels over HTTP: a channel is a channel plugin (`builtin-<type>` for the
//! eight built-in types, or an uploaded `notification-channel` plugin with type `plugin`) with
//! its config, in a notification group.
//!
//! The config is checked against the plugin's JSON Schema and its own validation on save, then
//! sealed with the root key (XChaCha20-Poly1305) bound to the tenant, the workspace and the
//! channel's id, so a sealed config copied to another row does not open. It is never returned:
//! reads show which keys are set. `POST /api/v1/channels/{id}/test` sends a test notification
//! through the same plugin, capabilities and outgoing-HTTP policy as real notifications.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use iam::Principal;
use model::ErrorKind;
use plugin_runtime::PluginKind;
use serde::Deserialize;
use serde_json::{Value, json};
use storage::{ChannelRecord, ChannelWrite};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use alerting::channel_owner as sealed_for;

use crate::alert_routes::{
    DELETE, LimitQuery, READ, WRITE, need, plugin_config_errors, visible_group,
};
use crate::audit::AuditResult;
use crate::auth::{Client, User};
use crate::iam_routes::Params;
use crate::plugins::{find, send_test};
use crate::routes::Body;
use crate::{ApiError, AppState};

/// Channel types with a built-in plugin (`builtin-<type>`); `plugin` names an uploaded one.
pub(crate) const BUILTIN_TYPES: [&str; 8] = [
    "email",
    "slack",
    "pagerduty",
    "webhook",
    "msteams",
    "discord",
    "telegram",
    "sms",
];

pub(crate) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_channels, create_channel))
        .routes(routes!(get_channel, replace_channel, delete_channel))
        .routes(routes!(test_channel))
        .routes(routes!(channel_attempts))
}

/// A channel as clients see it: everything but the config, of which only the keys.
pub(crate) fn channel_json(c: &ChannelRecord) -> Value {
    let keys: Value = serde_json::from_str(&c.config_keys).unwrap_or_else(|_| json!([]));
    json!({
        "channel_id": c.channel_id, "name": c.name, "type": c.channel_type,
        "plugin_id": c.plugin_id, "notification_group_id": c.notification_group_id,
        "active": c.is_active, "config_keys": keys, "config": "sealed",
        "created_at": c.created_at, "updated_at": c.updated_at,
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ChannelBody {
    name: String,
    /// `email`, `slack`, `pagerduty`, `webhook`, `msteams`, `discord`, `telegram`, `sms`, or
    /// `plugin` with `plugin_id`.
    #[serde(rename = "type")]
    channel_type: String,
    /// An uploaded notification-channel plugin (type `plugin` only).
    plugin_id: Option<String>,
    notification_group_id: String,
    /// The plugin's config (required on create; on replace, absent keeps the sealed one).
    config: Option<Value>,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

/// The plugin of a channel body, or the bad fields.
fn channel_plugin(body: &ChannelBody) -> Result<String, ApiError> {
    let bad = |path: &str, m: &str| ApiError::fields("channel", vec![(path.into(), m.into())]);
    if body.name.trim().is_empty() || body.name.len() > 200 {
        return Err(bad("/name", "a name of 1 to 200 characters"));
    }
    match (body.channel_type.as_str(), &body.plugin_id) {
        ("plugin", Some(id)) => Ok(id.clone()),
        ("plugin", None) => Err(bad("/plugin_id", "type plugin needs the plugin's id")),
        (t, None) if BUILTIN_TYPES.contains(&t) => Ok(format!("builtin-{t}")),
        (t, Some(_)) if BUILTIN_TYPES.contains(&t) => Err(bad(
            "/plugin_id",
            "only a channel of type plugin names a plugin",
        )),
        _ => Err(bad(
            "/type",
            "one of email, slack, pagerduty, webhook, msteams, discord, telegram, sms, plugin",
        )),
    }
}

/// Checks a body and its config, and seals the config for `channel_id`.
async fn channel_write(
    state: &AppState,
    p: &Principal,
    channel_id: &str,
    body: ChannelBody,
    existing: Option<&ChannelRecord>,
) -> Result<ChannelWrite, ApiError> {
    let plugin_id = channel_plugin(&body)?;
    visible_group(state, p, &body.notification_group_id)
        .await
        .map_err(|_| {
            ApiError::fields(
                "channel",
                vec![(
                    "/notification_group_id".into(),
                    "no notification group with this id in this tenant".into(),
                )],
            )
        })?;
    let (config_encrypted, config_keys) = match (&body.config, existing) {
        (Some(config), _) => {
            let errors = plugin_config_errors(
                state,
                p,
                &plugin_id,
                PluginKind::NotificationChannel,
                config,
                (
                    if body.plugin_id.is_some() {
                        "/plugin_id"
                    } else {
                        "/type"
                    },
                    "/config",
                ),
                !body.active,
            )
            .await?;
            if !errors.is_empty() {
                return Err(ApiError::fields("channel", errors));
            }
            let keys: Vec<&String> = config
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            let scope = p.scope();
            let sealed = state.auth.secrets.seal(
                config.to_string().as_bytes(),
                &sealed_for(&scope.tenant_id, &scope.workspace_id, channel_id),
            );
            (sealed, json!(keys).to_string())
        }
        (None, Some(e)) if e.plugin_id == plugin_id => {
            (e.config_encrypted.clone(), e.config_keys.clone())
        }
        (None, _) => {
            return Err(ApiError::fields(
                "channel",
                vec![(
                    "/config".into(),
                    "the channel plugin's config is required".into(),
                )],
            ));
        }
    };
    Ok(ChannelWrite {
        notification_group_id: body.notification_group_id,
        name: body.name,
        channel_type: body.channel_type,
        plugin_id,
        config_encrypted,
        config_keys,
        is_active: body.active,
    })
}

async fn visible_channel(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<ChannelRecord, ApiError> {
    match state.alerts.channel(id).await? {
        Some(c) if c.tenant_id == p.scope().tenant_id => Ok(c),
        _ => Err(ApiError::new(ErrorKind::NotFound, "channel not found")),
    }
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ChannelQuery {
    /// Only this notification group's channels.
    group_id: Option<String>,
}

/// The tenant's channels (configs never shown).
#[utoipa::path(get, path = "/api/v1/channels", tag = "alerting", params(ChannelQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn list_channels(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Params(q): Params<ChannelQuery>,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    let list = state
        .alerts
        .channels(&p.scope().tenant_id, q.group_id.as_deref())
        .await?;
    Ok(Json(
        json!({"channels": list.iter().map(channel_json).collect::<Vec<_>>()}),
    ))
}

/// Creates a channel in a notification group; its config is checked and sealed.
#[utoipa::path(post, path = "/api/v1/channels", tag = "alerting", request_body = ChannelBody,
    security(("bearer" = [])),
    responses((status = 201, description = "created"), (status = "4XX", description = "an error with its reason; a 400 lists the bad fields")))]
async fn create_channel(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Body(body): Body<ChannelBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    need(&p, WRITE)?;
    let id = uuid::Uuid::now_v7().to_string();
    let write = channel_write(&state, &p, &id, body, None).await?;
    let c = state.alerts.create_channel(p.scope(), &id, write).await?;
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "channel.create",
        ("channel", &id),
        AuditResult::Success,
        json!({"name": c.name, "type": c.channel_type}),
    );
    Ok((StatusCode::CREATED, Json(channel_json(&c))))
}

#[utoipa::path(get, path = "/api/v1/channels/{id}", tag = "alerting", params(("id" = String, Path, description = "the channel")),
    security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn get_channel(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    Ok(Json(channel_json(&visible_channel(&state, &p, &id).await?)))
}

/// Replaces a channel; without `config` the sealed config is kept (same plugin only).
#[utoipa::path(put, path = "/api/v1/channels/{id}", tag = "alerting", request_body = ChannelBody,
    params(("id" = String, Path, description = "the channel")), security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason; a 400 lists the bad fields")))]
async fn replace_channel(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
    Body(body): Body<ChannelBody>,
) -> Result<Json<Value>, ApiError> {
    need(&p, WRITE)?;
    let existing = visible_channel(&state, &p, &id).await?;
    let write = channel_write(&state, &p, &id, body, Some(&existing)).await?;
    let c = state.alerts.update_channel(&id, write).await?;
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "channel.update",
        ("channel", &id),
        AuditResult::Success,
        json!({"name": c.name, "type": c.channel_type}),
    );
    Ok(Json(channel_json(&c)))
}

#[utoipa::path(delete, path = "/api/v1/channels/{id}", tag = "alerting", params(("id" = String, Path, description = "the channel")),
    security(("bearer" = [])),
    responses((status = 204, description = "deleted"), (status = "4XX", description = "an error with its reason")))]
async fn delete_channel(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    need(&p, DELETE)?;
    visible_channel(&state, &p, &id).await?;
    state.alerts.delete_channel(&id).await?;
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "channel.delete",
        ("channel", &id),
        AuditResult::Success,
        json!({}),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// The config of a channel, opened. A config that does not open (another root key, or a row
/// copied from elsewhere) is a conflict the operator must fix by saving the config again.
pub(crate) fn open_config(state: &AppState, c: &ChannelRecord) -> Result<String, ApiError> {
    let bytes = state
        .auth
        .secrets
        .open(
            &c.config_encrypted,
            &sealed_for(&c.tenant_id, &c.workspace_id, &c.channel_id),
        )
        .map_err(|_| {
            ApiError::new(
                ErrorKind::Conflict,
                "this channel's config does not open with the server's root key; save it again",
            )
        })?;
    String::from_utf8(bytes).map_err(ApiError::internal)
}

/// Sends a test notification through the channel: the same plugin, config, capabilities and
/// outgoing-HTTP policy as real notifications. A refusal by the receiver is a result
/// (`sent: false` with `permanent`, `transient` or `rate_limited`), not an error.
#[utoipa::path(post, path = "/api/v1/channels/{id}/test", tag = "alerting", params(("id" = String, Path, description = "the channel")),
    security(("bearer" = [])),
    responses((status = 200, description = "what the receiver said"), (status = "4XX", description = "an error with its reason")))]
async fn test_channel(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    need(&p, WRITE)?;
    let c = visible_channel(&state, &p, &id).await?;
    let config = open_config(&state, &c)?;
    let found = find(&state, &p, &c.plugin_id).await?;
    if let Some(reason) = found.disabled() {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!("the channel's plugin is disabled: {reason}"),
        ));
    }
    let compiled = found.compiled(&state).await?;
    let out = send_test(&state, compiled, &c.plugin_id, config).await?;
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "channel.test",
        ("channel", &id),
        AuditResult::Success,
        json!({"sent": out.0["sent"]}),
    );
    Ok(out)
}

/// Every delivery attempt through this channel, newest first: outcome (`delivered`,
/// `permanent`, `transient`, `rate_limited`, `gave_up`) and the receiver's reason.
#[utoipa::path(get, path = "/api/v1/channels/{id}/attempts", tag = "alerting", params(("id" = String, Path, description = "the channel"), LimitQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn channel_attempts(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
    Params(q): Params<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    need(&p, READ)?;
    visible_channel(&state, &p, &id).await?;
    let list = state.alerts.attempts(&id, q.limit.unwrap_or(100)).await?;
    Ok(Json(json!({
        "attempts": list.iter().map(|a| json!({
            "attempt_id": a.attempt_id, "group_key": a.group_key,
            "idempotency_key": a.idempotency_key, "attempt": a.attempt, "outcome": a.outcome,
            "message": a.message, "alerts": a.alerts, "status": a.status, "at": a.created_at,
        })).collect::<Vec<_>>(),
    })))
}

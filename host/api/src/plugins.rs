//! The plugin registry over HTTP, per workspace: upload (validated against the world it claims,
//! compiled in a bounded worker), list, get with its config schema, versions, enable/disable,
//! delete, config validation, and a dry run of a condition over the caller's own data.
//!
//! Compiled components are cached in memory and on disk (`<data-dir>/plugins/cache`, keyed by
//! content hash and the engine's compatibility hash); only artifacts this server wrote there are
//! loaded back. A plugin that fails 5 calls in a row (trap, deadline, memory, invalid output) is
//! disabled by a circuit breaker, with the reason shown on the plugin.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::Utc;
use iam::Principal;
use model::ErrorKind;
use moka::future::Cache;
use parking_lot::Mutex;
use plugin_runtime::{
    CompiledPlugin, EvaluationContext, PluginError, PluginKind, PluginRuntime, QueryResult,
    SeriesStatus,
};
use serde::Deserialize;
use serde_json::json;
use storage::{NewPlugin, Page, PluginRecord};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::AuditResult;
use crate::auth::{Client, User};
use crate::iam_routes::Params;
use crate::routes::Body;
use crate::{ApiError, AppState};

/// Failed calls in a row after which a plugin is disabled.
const BREAKER_THRESHOLD: i64 = 5;

/// The runtime, compile slots, caches and the circuit breaker.
pub struct PluginService {
    runtime: Arc<PluginRuntime>,
    compile_slots: tokio::sync::Semaphore,
    cache_dir: Option<PathBuf>,
    compiled: Cache<String, Arc<CompiledPlugin>>,
    /// Failed calls in a row, as last counted in the metadata store (which keeps them across
    /// restarts); a plugin not here has not been called since the start.
    failures: Mutex<HashMap<String, i64>>,
    builtin_bytes: &'static [(&'static str, &'static [u8])],
    builtins: tokio::sync::OnceCell<Vec<Builtin>>,
    channels: Arc<dyn plugin_runtime::Capabilities>,
}

/// A plugin shipped inside the server, visible to every workspace, always enabled.
pub struct Builtin {
    /// `builtin-<name>`.
    pub id: String,
    pub plugin: Arc<CompiledPlugin>,
    pub size_bytes: usize,
}

/// Prefix of built-in plugins' ids.
const BUILTIN_PREFIX: &str = "builtin-";

/// Compiled artifacts of built-in plugins, by content hash and engine compatibility, shared by
/// every runtime of the process (a test process starts many servers; compiling nine
/// components each time would dominate).
fn builtin_artifacts() -> &'static Mutex<HashMap<String, Arc<Vec<u8>>>> {
    static ARTIFACTS: std::sync::OnceLock<Mutex<HashMap<String, Arc<Vec<u8>>>>> =
        std::sync::OnceLock::new();
    ARTIFACTS.get_or_init(Default::default)
}

impl PluginService {
    /// `cache_dir`: where compiled artifacts are kept between restarts (`None`: memory only).
    /// `builtins`: components shipped with the server, `(package, bytes)`; they are compiled on
    /// first use. `channels`: what notification channels reach the world through.
    pub fn new(
        runtime: PluginRuntime,
        cache_dir: Option<PathBuf>,
        builtins: &'static [(&'static str, &'static [u8])],
        channels: Arc<dyn plugin_runtime::Capabilities>,
    ) -> PluginService {
        PluginService {
            runtime: Arc::new(runtime),
            compile_slots: tokio::sync::Semaphore::new(2),
            cache_dir,
            compiled: Cache::builder().max_capacity(512).build(),
            failures: Mutex::new(HashMap::new()),
            builtin_bytes: builtins,
            builtins: tokio::sync::OnceCell::new(),
            channels,
        }
    }

    /// The built-in plugins, compiled (or loaded from an artifact this process or this
    /// server's cache directory holds) on first use.
    ///
    /// # Errors
    /// A built-in that does not validate: a broken build, reported as a server error.
    pub async fn builtins(&self) -> Result<&[Builtin], ApiError> {
        let list = self
            .builtins
            .get_or_try_init(|| async {
                let rt = Arc::clone(&self.runtime);
                let bytes = self.builtin_bytes;
                let disk: Vec<Option<PathBuf>> = bytes
                    .iter()
                    .map(|(_, b)| self.artifact_path(&plugin_runtime::content_hash(b)))
                    .collect();
                tokio::task::spawn_blocking(move || compile_builtins(&rt, bytes, &disk))
                    .await
                    .map_err(ApiError::internal)?
            })
            .await?;
        Ok(list.as_slice())
    }

    /// The built-in plugin with id `id` (`builtin-<name>`).
    ///
    /// # Errors
    /// As [`PluginService::builtins`].
    pub async fn builtin(&self, id: &str) -> Result<Option<&Builtin>, ApiError> {
        if !id.starts_with(BUILTIN_PREFIX) {
            return Ok(None);
        }
        Ok(self.builtins().await?.iter().find(|b| b.id == id))
    }

    pub fn runtime(&self) -> &PluginRuntime {
        &self.runtime
    }

    fn artifact_path(&self, sha256: &str) -> Option<PathBuf> {
        self.cache_dir.as_ref().map(|d| {
            d.join(format!(
                "{sha256}-{}.cwasm",
                self.runtime.compatibility_key()
            ))
        })
    }

    /// Compiles uploaded bytes in a bounded worker (two at a time; uploads wait their turn).
    async fn compile(
        &self,
        bytes: Vec<u8>,
        claimed: Option<PluginKind>,
    ) -> Result<Arc<CompiledPlugin>, ApiError> {
        let _slot = self
            .compile_slots
            .acquire()
            .await
            .map_err(ApiError::internal)?;
        let rt = Arc::clone(&self.runtime);
        let plugin = tokio::task::spawn_blocking(move || rt.compile(&bytes, claimed))
            .await
            .map_err(ApiError::internal)?
            .map_err(plugin_error)?;
        let plugin = Arc::new(plugin);
        self.remember(&plugin).await;
        Ok(plugin)
    }

    async fn remember(&self, plugin: &Arc<CompiledPlugin>) {
        if let Some(path) = self.artifact_path(&plugin.sha256)
            && !path.exists()
        {
            match plugin.serialize() {
                Ok(artifact) => {
                    if let Err(e) = write_atomically(&path, &artifact) {
                        tracing::warn!(error = %e, path = %path.display(), "cannot cache a compiled plugin");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot serialize a compiled plugin"),
            }
        }
        self.compiled
            .insert(plugin.sha256.clone(), Arc::clone(plugin))
            .await;
    }

    /// The compiled plugin of a record: from memory, else from this server's artifact cache,
    /// else compiled again from the stored bytes.
    async fn load(
        &self,
        meta: &dyn storage::MetaStore,
        record: &PluginRecord,
    ) -> Result<Arc<CompiledPlugin>, ApiError> {
        if let Some(p) = self.compiled.get(&record.sha256).await {
            return Ok(p);
        }
        if let Some(path) = self.artifact_path(&record.sha256)
            && let Ok(artifact) = std::fs::read(&path)
        {
            let rt = Arc::clone(&self.runtime);
            let sha = record.sha256.clone();
            // SAFETY: artifacts in the cache directory are written only by `remember`, from
            // components this runtime compiled; the name carries the engine's compatibility
            // key, so a file from another engine version is never picked.
            #[allow(unsafe_code)]
            let loaded =
                tokio::task::spawn_blocking(move || unsafe { rt.load_compiled(&artifact, sha) })
                    .await
                    .map_err(ApiError::internal)?;
            match loaded {
                Ok(p) => {
                    let p = Arc::new(p);
                    self.compiled
                        .insert(record.sha256.clone(), Arc::clone(&p))
                        .await;
                    return Ok(p);
                }
                Err(e) => tracing::warn!(error = %e, "cached artifact not usable; compiling again"),
            }
        }
        let bytes = meta
            .plugin_bytes(&record.sha256)
            .await?
            .ok_or_else(|| ApiError::internal("plugin bytes missing"))?;
        self.compile(bytes, PluginKind::parse(&record.kind)).await
    }

    /// Counts a call's outcome in the metadata store (so the count survives a restart); returns
    /// the reason when this failure trips the breaker. A success after successes writes
    /// nothing.
    async fn outcome(
        &self,
        meta: &dyn storage::MetaStore,
        plugin_id: &str,
        result: &Result<(), &PluginError>,
    ) -> Option<String> {
        let known = self.failures.lock().get(plugin_id).copied();
        let failure = match result {
            Ok(()) | Err(PluginError::Failed { .. }) => None,
            Err(e) => Some(e),
        };
        if failure.is_none() && known == Some(0) {
            return None;
        }
        let n = match meta.count_plugin_call(plugin_id, failure.is_some()).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(plugin = %plugin_id, error = %e,
                    "the breaker's count could not be stored; counting in memory");
                failure.map_or(0, |_| known.unwrap_or(0) + 1)
            }
        };
        self.failures.lock().insert(plugin_id.to_string(), n);
        let e = failure?;
        (n >= BREAKER_THRESHOLD).then(|| {
            self.failures.lock().remove(plugin_id);
            format!("disabled after {BREAKER_THRESHOLD} failed calls in a row; the last: {e}")
        })
    }
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Compiles the built-ins, reusing artifacts from this process or the disk cache (`disk`, one
/// path per built-in).
fn compile_builtins(
    rt: &PluginRuntime,
    bytes: &[(&str, &[u8])],
    disk: &[Option<PathBuf>],
) -> Result<Vec<Builtin>, ApiError> {
    let mut out = Vec::with_capacity(bytes.len());
    for ((package, component), path) in bytes.iter().zip(disk) {
        let sha = plugin_runtime::content_hash(component);
        let key = format!("{sha}-{}", rt.compatibility_key());
        let known = builtin_artifacts().lock().get(&key).cloned();
        let from_disk = || {
            path.as_ref()
                .and_then(|p| std::fs::read(p).ok())
                .map(Arc::new)
        };
        let artifact = known.or_else(from_disk);
        // SAFETY: artifacts in the process map come from `serialize` below; on disk, from
        // `remember`/below, named with this engine's compatibility key. Both are ours.
        #[allow(unsafe_code)]
        let loaded = artifact.and_then(|a| unsafe { rt.load_compiled(&a, sha.clone()) }.ok());
        let plugin = match loaded {
            Some(p) => p,
            None => {
                let p = rt
                    .compile(component, None)
                    .map_err(|e| ApiError::internal(format!("built-in plugin {package}: {e}")))?;
                if let Ok(a) = p.serialize() {
                    if let Some(path) = path
                        && let Err(e) = write_atomically(path, &a)
                    {
                        tracing::warn!(error = %e, "cannot cache a compiled built-in plugin");
                    }
                    builtin_artifacts().lock().insert(key, Arc::new(a));
                }
                p
            }
        };
        out.push(Builtin {
            id: format!("{BUILTIN_PREFIX}{}", plugin.metadata.name),
            plugin: Arc::new(plugin),
            size_bytes: component.len(),
        });
    }
    Ok(out)
}

fn builtin_json(b: &Builtin, with_schema: bool) -> serde_json::Value {
    let m = &b.plugin.metadata;
    let mut v = json!({
        "plugin_id": b.id, "workspace_id": null, "name": m.name,
        "version": m.version, "kind": b.plugin.kind.world(), "description": m.description,
        "sha256": b.plugin.sha256, "size_bytes": b.size_bytes, "enabled": true,
        "disabled_reason": null, "built_in": true,
        "created_by": null, "created_at": null, "updated_at": null,
    });
    if with_schema && let Some(o) = v.as_object_mut() {
        let schema = serde_json::from_str::<serde_json::Value>(&m.config_schema)
            .unwrap_or_else(|_| json!(m.config_schema));
        o.insert("config_schema".into(), schema);
    }
    v
}

/// A plugin the caller can use: built in, or uploaded to the caller's workspace.
pub(crate) enum Found<'a> {
    Builtin(&'a Builtin),
    Uploaded(Box<PluginRecord>),
}

impl Found<'_> {
    fn json(&self, with_schema: bool) -> serde_json::Value {
        match self {
            Found::Builtin(b) => builtin_json(b, with_schema),
            Found::Uploaded(r) => plugin_json(r, with_schema),
        }
    }

    /// The JSON Schema of its config, as text.
    pub(crate) fn config_schema(&self) -> &str {
        match self {
            Found::Builtin(b) => &b.plugin.metadata.config_schema,
            Found::Uploaded(r) => &r.config_schema,
        }
    }

    pub(crate) fn id(&self) -> &str {
        match self {
            Found::Builtin(b) => &b.id,
            Found::Uploaded(r) => &r.plugin_id,
        }
    }

    pub(crate) fn kind(&self) -> &str {
        match self {
            Found::Builtin(b) => b.plugin.kind.world(),
            Found::Uploaded(r) => &r.kind,
        }
    }

    /// The reason it may not run, if it is disabled.
    pub(crate) fn disabled(&self) -> Option<String> {
        match self {
            Found::Builtin(_) => None,
            Found::Uploaded(r) if r.is_enabled => None,
            Found::Uploaded(r) => Some(
                r.disabled_reason
                    .clone()
                    .unwrap_or_else(|| "no reason given".into()),
            ),
        }
    }

    pub(crate) async fn compiled(&self, state: &AppState) -> Result<Arc<CompiledPlugin>, ApiError> {
        match self {
            Found::Builtin(b) => Ok(Arc::clone(&b.plugin)),
            Found::Uploaded(r) => state.plugins.load(state.meta.as_ref(), r).await,
        }
    }
}

/// A built-in plugin, or one of the caller's workspace (deleted ones and other workspaces'
/// are 404).
pub(crate) async fn find<'a>(
    state: &'a AppState,
    p: &Principal,
    id: &str,
) -> Result<Found<'a>, ApiError> {
    if let Some(b) = state.plugins.builtin(id).await? {
        return Ok(Found::Builtin(b));
    }
    Ok(Found::Uploaded(Box::new(
        visible_plugin(state, p, id).await?,
    )))
}

/// An uploaded plugin of the caller's workspace that may be changed (built-ins may not).
async fn changeable(state: &AppState, p: &Principal, id: &str) -> Result<PluginRecord, ApiError> {
    match find(state, p, id).await? {
        Found::Builtin(_) => Err(ApiError::forbidden(
            "built-in plugins ship with the server: they cannot be disabled, enabled or deleted",
        )),
        Found::Uploaded(r) => Ok(*r),
    }
}

pub(crate) fn plugin_error(e: PluginError) -> ApiError {
    match e {
        PluginError::Invalid(m) => ApiError::invalid(m),
        PluginError::Host { .. } => ApiError::internal(e),
        other => ApiError::invalid(other.to_string()),
    }
}

pub(crate) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(upload_plugin, list_plugins))
        .routes(routes!(get_plugin, delete_plugin))
        .routes(routes!(plugin_versions))
        .routes(routes!(enable_plugin))
        .routes(routes!(disable_plugin))
        .routes(routes!(validate_plugin_config))
        .routes(routes!(run_plugin))
        .layer(DefaultBodyLimit::max(11 << 20))
}

pub(crate) fn require_any(p: &Principal, permissions: &[&str]) -> Result<(), ApiError> {
    if permissions.iter().any(|x| p.has(x)) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "this action needs one of the permissions {}",
            permissions.join(", ")
        )))
    }
}

const READ: [&str; 2] = ["alert:read", "dashboard:read"];
const MANAGE: [&str; 2] = ["alert:admin", "dashboard:admin"];

fn plugin_json(p: &PluginRecord, with_schema: bool) -> serde_json::Value {
    let mut v = json!({
        "plugin_id": p.plugin_id, "workspace_id": p.workspace_id, "name": p.name,
        "version": p.version, "kind": p.kind, "description": p.description,
        "sha256": p.sha256, "size_bytes": p.size_bytes, "enabled": p.is_enabled,
        "disabled_reason": p.disabled_reason, "built_in": false,
        "created_by": p.created_by, "created_at": p.created_at, "updated_at": p.updated_at,
    });
    if with_schema && let Some(o) = v.as_object_mut() {
        let schema = serde_json::from_str::<serde_json::Value>(&p.config_schema)
            .unwrap_or_else(|_| json!(p.config_schema));
        o.insert("config_schema".into(), schema);
    }
    v
}

/// A plugin of the caller's workspace (deleted ones and other workspaces' are 404).
async fn visible_plugin(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<PluginRecord, ApiError> {
    match state.meta.plugin(id).await? {
        Some(r) if r.workspace_id == p.scope().workspace_id && r.deleted_at.is_none() => Ok(r),
        _ => Err(ApiError::new(ErrorKind::NotFound, "plugin not found")),
    }
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    /// The world the component implements: `alert-condition`, `widget-transform` or
    /// `notification-channel`. Optional: what it exports decides.
    kind: Option<String>,
}

/// The component's bytes: the raw body (`application/wasm` or `application/octet-stream`), or
/// the first file of a `multipart/form-data` body.
async fn upload_bytes(req: Request, state: &Arc<AppState>) -> Result<Vec<u8>, ApiError> {
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if is_multipart {
        let mut form = Multipart::from_request(req, state)
            .await
            .map_err(|e| ApiError::invalid(e.body_text()))?;
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| ApiError::invalid(e.body_text()))?
        {
            if field.file_name().is_some() || field.name() == Some("file") {
                let b = field
                    .bytes()
                    .await
                    .map_err(|e| ApiError::invalid(e.body_text()))?;
                return Ok(b.to_vec());
            }
        }
        return Err(ApiError::invalid("the form has no file field"));
    }
    let b = Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorKind::TooLarge, "a plugin is at most 10 MiB")
        } else {
            ApiError::invalid(e.body_text())
        }
    })?;
    Ok(b.to_vec())
}

/// Uploads a component to the caller's workspace.
#[utoipa::path(post, path = "/api/v1/plugins", tag = "plugins", params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "the component (or multipart/form-data with a file field)"),
    security(("bearer" = [])),
    responses((status = 201, description = "stored, with its metadata"), (status = "4XX", description = "what is wrong with it")))]
async fn upload_plugin(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Params(q): Params<UploadQuery>,
    req: Request,
) -> Result<Response, ApiError> {
    require_any(&p, &MANAGE)?;
    let claimed = match q.kind.as_deref() {
        None => None,
        Some(k) => Some(PluginKind::parse(k).ok_or_else(|| {
            ApiError::invalid(
                "kind must be alert-condition, widget-transform or notification-channel",
            )
        })?),
    };
    let bytes = upload_bytes(req, &state).await?;
    if bytes.is_empty() {
        return Err(ApiError::invalid(
            "the body is empty; send the .wasm component",
        ));
    }
    let compiled = match state.plugins.compile(bytes.clone(), claimed).await {
        Ok(c) => c,
        Err(e) => {
            state.audit(
                &client,
                p.actor(),
                p.scope(),
                "plugin.upload",
                ("plugin", ""),
                AuditResult::Failure,
                json!({"reason": e.message}),
            );
            return Err(e);
        }
    };
    let record = state
        .meta
        .create_plugin(NewPlugin {
            workspace_id: p.scope().workspace_id.clone(),
            name: compiled.metadata.name.clone(),
            version: compiled.metadata.version.clone(),
            kind: compiled.kind.world().to_string(),
            description: compiled.metadata.description.clone(),
            config_schema: compiled.metadata.config_schema.clone(),
            sha256: compiled.sha256.clone(),
            bytes,
            created_by: Some(p.actor().to_string()),
        })
        .await?;
    state.audit(&client, p.actor(), p.scope(), "plugin.upload", ("plugin", &record.plugin_id), AuditResult::Success, json!({"name": record.name, "version": record.version, "kind": record.kind, "sha256": record.sha256}));
    Ok((StatusCode::CREATED, Json(plugin_json(&record, true))).into_response())
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct PluginList {
    name: Option<String>,
    /// `alert-condition`, `widget-transform` or `notification-channel`.
    kind: Option<String>,
    /// `true`: only the built-ins; `false`: only uploaded plugins.
    built_in: Option<bool>,
    limit: Option<u32>,
    after: Option<String>,
}

/// The caller's workspace's plugins.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins", params(PluginList), security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn list_plugins(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Params(q): Params<PluginList>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_any(&p, &READ)?;
    let page = Page {
        limit: q.limit.unwrap_or(50).clamp(1, 500),
        after: q.after,
        include_deleted: false,
    };
    let items = state
        .meta
        .plugins(&p.scope().workspace_id, q.name.as_deref(), &page)
        .await?;
    let next = (items.len() == page.limit as usize)
        .then(|| items.last().map(|i| i.plugin_id.clone()))
        .flatten();
    // Built-ins lead the first page (the cursor runs over uploaded plugins only).
    let mut out: Vec<serde_json::Value> = Vec::new();
    if page.after.is_none() && q.built_in != Some(false) {
        out.extend(
            state
                .plugins
                .builtins()
                .await?
                .iter()
                .filter(|b| {
                    q.name
                        .as_deref()
                        .is_none_or(|n| n == b.plugin.metadata.name)
                })
                .filter(|b| q.kind.as_deref().is_none_or(|k| k == b.plugin.kind.world()))
                .map(|b| builtin_json(b, false)),
        );
    }
    if q.built_in != Some(true) {
        out.extend(
            items
                .iter()
                .filter(|r| q.kind.as_deref().is_none_or(|k| k == r.kind))
                .map(|r| plugin_json(r, false)),
        );
    }
    Ok(Json(json!({
        "items": out,
        "next_after": next,
    })))
}

/// One plugin with its config schema.
#[utoipa::path(get, path = "/api/v1/plugins/{id}", tag = "plugins", params(("id" = String, Path, description = "the plugin")), security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn get_plugin(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_any(&p, &READ)?;
    Ok(Json(find(&state, &p, &id).await?.json(true)))
}

/// Every version of the plugin's name in the workspace.
#[utoipa::path(get, path = "/api/v1/plugins/{id}/versions", tag = "plugins", params(("id" = String, Path, description = "the plugin")), security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn plugin_versions(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_any(&p, &READ)?;
    let r = match find(&state, &p, &id).await? {
        Found::Builtin(b) => {
            return Ok(Json(json!({
                "name": b.plugin.metadata.name,
                "items": [builtin_json(b, false)],
            })));
        }
        Found::Uploaded(r) => *r,
    };
    let page = Page {
        limit: 500,
        after: None,
        include_deleted: false,
    };
    let items = state
        .meta
        .plugins(&r.workspace_id, Some(&r.name), &page)
        .await?;
    Ok(Json(json!({
        "name": r.name,
        "items": items.iter().map(|x| plugin_json(x, false)).collect::<Vec<_>>(),
    })))
}

/// Enables a plugin (and resets its circuit breaker).
#[utoipa::path(post, path = "/api/v1/plugins/{id}/enable", tag = "plugins", params(("id" = String, Path, description = "the plugin")), security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn enable_plugin(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    changeable(&state, &p, &id).await?;
    require_any(&p, &MANAGE)?;
    let r = state.meta.set_plugin_enabled(&id, true, None).await?;
    state.plugins.failures.lock().remove(&id);
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "plugin.enable",
        ("plugin", &id),
        AuditResult::Success,
        json!({}),
    );
    Ok(Json(plugin_json(&r, false)))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Disable {
    reason: Option<String>,
}

/// Disables a plugin: rules and widgets using it fail with the reason until it is enabled.
#[utoipa::path(post, path = "/api/v1/plugins/{id}/disable", tag = "plugins", params(("id" = String, Path, description = "the plugin")),
    request_body(content = Option<Disable>, description = "optional"), security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn disable_plugin(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
    crate::routes::OptBody(body): crate::routes::OptBody<Disable>,
) -> Result<Json<serde_json::Value>, ApiError> {
    changeable(&state, &p, &id).await?;
    require_any(&p, &MANAGE)?;
    let reason = body
        .and_then(|b| b.reason)
        .unwrap_or_else(|| "disabled by an admin".to_string());
    let r = state
        .meta
        .set_plugin_enabled(&id, false, Some(&reason))
        .await?;
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "plugin.disable",
        ("plugin", &id),
        AuditResult::Success,
        json!({"reason": reason}),
    );
    Ok(Json(plugin_json(&r, false)))
}

/// Deletes a plugin (soft; purged later).
#[utoipa::path(delete, path = "/api/v1/plugins/{id}", tag = "plugins", params(("id" = String, Path, description = "the plugin")), security(("bearer" = [])),
    responses((status = 204, description = "done"), (status = "4XX", description = "an error with its reason")))]
async fn delete_plugin(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    changeable(&state, &p, &id).await?;
    require_any(&p, &MANAGE)?;
    state.meta.delete_plugin(&id, Utc::now()).await?;
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "plugin.delete",
        ("plugin", &id),
        AuditResult::Success,
        json!({}),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    /// The config to check, as JSON.
    config: serde_json::Value,
}

/// Runs the plugin's own config validation: `errors` lists each bad field's path and problem.
#[utoipa::path(post, path = "/api/v1/plugins/{id}/validate-config", tag = "plugins", params(("id" = String, Path, description = "the plugin")),
    request_body = ConfigBody, security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn validate_plugin_config(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Path(id): Path<String>,
    Body(body): Body<ConfigBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_any(&p, &READ)?;
    let compiled = find(&state, &p, &id).await?.compiled(&state).await?;
    let rt = Arc::clone(&state.plugins.runtime);
    let config = body.config.to_string();
    let errors = tokio::task::spawn_blocking(move || rt.validate_config(&compiled, &config))
        .await
        .map_err(ApiError::internal)?
        .map_err(plugin_error)?;
    Ok(Json(json!({
        "valid": errors.is_empty(),
        "errors": errors.iter().map(|e| json!({"path": e.path, "message": e.message})).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RunInput {
    /// The query's name in the rule (`A`, …).
    name: String,
    /// A SELECT over the caller's telemetry, run like `/api/v1/query/sql`.
    sql: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RunBody {
    config: serde_json::Value,
    /// The queries (conditions: 1 to 16; transforms: 1; channels: none).
    #[serde(default)]
    inputs: Vec<RunInput>,
    /// The state blob of a previous run (base64), to see how the plugin carries it.
    state: Option<String>,
}

/// Dry-runs an alert condition or a widget transform on the caller's own data: each input's
/// SQL runs in the caller's scope and goes to the plugin as Arrow IPC. A condition returns its
/// series (and state); a transform (one input) its output rows, as `/api/v1/query/sql` does.
#[utoipa::path(post, path = "/api/v1/plugins/{id}/run", tag = "plugins", params(("id" = String, Path, description = "the plugin")),
    request_body = RunBody, security(("bearer" = [])),
    responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason")))]
async fn run_plugin(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
    Body(body): Body<RunBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_any(&p, &READ)?;
    if !p.may_read_telemetry() {
        return Err(ApiError::forbidden("this role cannot read telemetry"));
    }
    let found = find(&state, &p, &id).await?;
    if let Some(reason) = found.disabled() {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!("the plugin is disabled: {reason}"),
        ));
    }
    let kind = PluginKind::parse(found.kind());
    if kind == Some(PluginKind::NotificationChannel) {
        let compiled = found.compiled(&state).await?;
        return send_test(&state, compiled, found.id(), body.config.to_string()).await;
    }
    let max_inputs = if kind == Some(PluginKind::WidgetTransform) {
        1
    } else {
        16
    };
    if body.inputs.is_empty() || body.inputs.len() > max_inputs {
        return Err(ApiError::invalid(format!(
            "inputs must list 1 to {max_inputs} queries"
        )));
    }
    let mut inputs = Vec::with_capacity(body.inputs.len());
    for q in &body.inputs {
        let out = query::run_scoped_sql(
            state.telemetry.as_ref(),
            p.scope(),
            &q.sql,
            &state.query_limits,
        )
        .await?;
        inputs.push(QueryResult {
            name: q.name.clone(),
            data: arrow_ipc(&out)?,
        });
    }
    let prev = body
        .state
        .as_deref()
        .map(|s| base64::engine::general_purpose::STANDARD.decode(s))
        .transpose()
        .map_err(|e| ApiError::invalid(format!("state is not base64: {e}")))?;
    let compiled = found.compiled(&state).await?;
    let plugin_id = found.id().to_string();
    if kind == Some(PluginKind::WidgetTransform) {
        let input = inputs.swap_remove(0).data;
        let output = transform(&state, compiled, &plugin_id, input, body.config.to_string())
            .await?
            .map_err(plugin_error)?;
        return Ok(Json(crate::sql_json::to_json(&output)?));
    }
    let now = Utc::now().timestamp_millis();
    let ctx = EvaluationContext {
        rule_id: format!("dry-run:{plugin_id}"),
        evaluation_time_ms: now,
        interval_ms: 60_000,
        range_start_ms: now - 300_000,
        range_end_ms: now,
        config: body.config.to_string(),
        state: prev,
    };
    let rt = Arc::clone(&state.plugins.runtime);
    let result = tokio::task::spawn_blocking(move || rt.evaluate(&compiled, &ctx, &inputs))
        .await
        .map_err(ApiError::internal)?;
    let tripped = match found {
        // Built-ins are ours: a failing call is reported, never disables them for everyone.
        Found::Builtin(_) => None,
        Found::Uploaded(_) => {
            state
                .plugins
                .outcome(
                    state.meta.as_ref(),
                    &plugin_id,
                    &result.as_ref().map(|_| ()),
                )
                .await
        }
    };
    if let Some(reason) = tripped {
        tracing::error!(plugin = %plugin_id, %reason, "circuit breaker: plugin disabled");
        state
            .meta
            .set_plugin_enabled(&plugin_id, false, Some(&reason))
            .await?;
        state.audit(
            &client,
            "",
            p.scope(),
            "plugin.disable",
            ("plugin", &plugin_id),
            AuditResult::Success,
            json!({"reason": reason, "by": "circuit breaker"}),
        );
    }
    let evaluation = result.map_err(plugin_error)?;
    Ok(Json(json!({
        "series": evaluation.series.iter().map(|s| json!({
            "labels": s.labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "status": match s.status {
                SeriesStatus::Ok => "ok",
                SeriesStatus::Alerting => "alerting",
                SeriesStatus::NoData => "no_data",
                SeriesStatus::Error => "error",
            },
            "value": s.value,
            "severity": s.severity,
            "annotations": s.annotations.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
        "state": evaluation.state.map(|s| base64::engine::general_purpose::STANDARD.encode(s)),
    })))
}

/// Sends a test notification (one firing alert) through a channel plugin, under the same
/// outgoing-HTTP policy as real notifications. A refusal by the receiver is a result, not an
/// error: `sent: false` with the plugin's verdict.
pub(crate) async fn send_test(
    state: &AppState,
    compiled: Arc<CompiledPlugin>,
    plugin_id: &str,
    config: String,
) -> Result<Json<serde_json::Value>, ApiError> {
    use plugin_runtime::{Alert, AlertStatus, Notification, SendError};
    let now = Utc::now().timestamp_millis();
    let labels = vec![
        (
            "alertname".to_string(),
            "TelemetryFlowTestNotification".to_string(),
        ),
        ("severity".to_string(), "info".to_string()),
    ];
    let annotations = vec![(
        "summary".to_string(),
        "A test notification from TelemetryFlow: this channel works.".to_string(),
    )];
    let external = state.auth.public_url.clone();
    let notification = Notification {
        idempotency_key: iam::random_token("test-"),
        group_key: format!("test:{plugin_id}"),
        group_labels: labels[..1].to_vec(),
        common_labels: labels.clone(),
        common_annotations: annotations.clone(),
        status: AlertStatus::Firing,
        alerts: vec![Alert {
            status: AlertStatus::Firing,
            labels,
            annotations,
            value: Some(1.0),
            starts_at_ms: now,
            ends_at_ms: None,
            generator_url: external.clone(),
            fingerprint: plugin_runtime::content_hash(plugin_id.as_bytes())[..16].to_string(),
        }],
        external_url: external,
        config,
    };
    let rt = Arc::clone(&state.plugins.runtime);
    let caps = Arc::clone(&state.plugins.channels);
    let result = tokio::task::spawn_blocking(move || rt.send(&compiled, &notification, caps))
        .await
        .map_err(ApiError::internal)?
        .map_err(plugin_error)?;
    Ok(Json(match result {
        Ok(r) => json!({"sent": true, "message_id": r.message_id, "detail": r.detail}),
        Err(SendError::Permanent(m)) => {
            json!({"sent": false, "error": {"kind": "permanent", "message": m}})
        }
        Err(SendError::Transient(m)) => {
            json!({"sent": false, "error": {"kind": "transient", "message": m}})
        }
        Err(SendError::RateLimited(r)) => json!({"sent": false, "error": {
            "kind": "rate_limited", "message": r.message, "retry_after_ms": r.retry_after_ms,
        }}),
    }))
}

/// The schema and batches of an Arrow IPC stream a plugin returned.
fn read_ipc(
    bytes: &[u8],
) -> Result<
    (
        arrow::datatypes::SchemaRef,
        Vec<arrow::record_batch::RecordBatch>,
    ),
    String,
> {
    let reader = arrow::ipc::reader::StreamReader::try_new(bytes, None)
        .map_err(|e| format!("not an Arrow IPC stream: {e}"))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("a bad batch: {e}"))?;
    Ok((schema, batches))
}

/// A query result as one Arrow IPC stream.
/// Runs a widget transform on an Arrow IPC stream (on a blocking thread: the call is
/// synchronous and may take its whole deadline); its output, checked to be Arrow IPC.
pub(crate) async fn transform(
    state: &AppState,
    compiled: Arc<CompiledPlugin>,
    plugin_id: &str,
    input: Vec<u8>,
    config: String,
) -> Result<Result<query::SqlOutput, PluginError>, ApiError> {
    let rt = Arc::clone(&state.plugins.runtime);
    let result = tokio::task::spawn_blocking(move || rt.transform(&compiled, &input, &config))
        .await
        .map_err(ApiError::internal)?;
    Ok(result.and_then(|out| {
        let (schema, batches) = read_ipc(&out).map_err(|m| PluginError::InvalidOutput {
            plugin: plugin_id.to_string(),
            message: m,
        })?;
        Ok(query::SqlOutput {
            schema,
            batches,
            truncated: false,
        })
    }))
}

fn arrow_ipc(out: &query::SqlOutput) -> Result<Vec<u8>, ApiError> {
    out.to_arrow_ipc().map_err(ApiError::internal)
}

/// The plugins alert evaluations and deliveries use: a built-in, or an enabled upload of the
/// rule's workspace (the same lookup as the API's, without a caller).
pub struct AlertPlugins {
    pub service: Arc<PluginService>,
    pub meta: Arc<dyn storage::MetaStore>,
}

#[async_trait::async_trait]
impl alerting::Plugins for AlertPlugins {
    async fn plugin(
        &self,
        workspace_id: &str,
        plugin_id: &str,
    ) -> Result<Arc<CompiledPlugin>, String> {
        if let Some(b) = self
            .service
            .builtin(plugin_id)
            .await
            .map_err(|e| e.message)?
        {
            return Ok(Arc::clone(&b.plugin));
        }
        let record = match self.meta.plugin(plugin_id).await {
            Ok(Some(r)) if r.workspace_id == workspace_id && r.deleted_at.is_none() => r,
            Ok(_) => return Err(format!("plugin {plugin_id} not found in the workspace")),
            Err(e) => return Err(format!("plugin {plugin_id} could not be read: {e}")),
        };
        if !record.is_enabled {
            return Err(format!(
                "plugin {plugin_id} is disabled: {}",
                record
                    .disabled_reason
                    .as_deref()
                    .unwrap_or("no reason given")
            ));
        }
        self.service
            .load(self.meta.as_ref(), &record)
            .await
            .map_err(|e| e.message)
    }

    fn runtime(&self) -> Arc<PluginRuntime> {
        Arc::clone(&self.service.runtime)
    }

    async fn report(&self, workspace_id: &str, plugin_id: &str, result: Result<(), &PluginError>) {
        if plugin_id.starts_with(BUILTIN_PREFIX) {
            // Built-ins are ours: a failing call is reported, never disables them for everyone.
            return;
        }
        let Some(reason) = self
            .service
            .outcome(self.meta.as_ref(), plugin_id, &result)
            .await
        else {
            return;
        };
        tracing::error!(plugin = %plugin_id, workspace = %workspace_id, %reason,
            "circuit breaker: plugin disabled by alert evaluations");
        if let Err(e) = self
            .meta
            .set_plugin_enabled(plugin_id, false, Some(&reason))
            .await
        {
            tracing::error!(plugin = %plugin_id, error = %e, "the plugin could not be disabled");
        }
    }
}

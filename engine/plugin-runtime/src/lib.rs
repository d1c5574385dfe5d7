//! Runs TelemetryFlow plugins: WebAssembly components built against `wit/plugin.wit`, one world
//! per kind (alert condition, widget transform, notification channel).
//!
//! This is the only crate that runs `bindgen!`. It does no network IO of its own: capabilities a
//! plugin may import beyond logging (HTTP and email, for channels only) are implemented by the
//! host and handed in.
//!
//! How a plugin runs (numbers from `../shared/design/plugins.md`):
//! - **Upload** ([`PluginRuntime::compile`]): at most 10 MiB, must be a component, must export
//!   `metadata` and exactly one kind's interface, may import only what its kind allows (WASI
//!   without sockets or HTTP, our `log`; channels also our `http` and `email`). Compiled with
//!   Cranelift once; `metadata()` is called to learn its name, version and config schema.
//! - **Call**: a fresh store per call with a memory cap, instance and table limits, and an epoch
//!   deadline (a background thread ticks the engine's epoch every 10 ms). The pooling allocator
//!   makes instantiation cost microseconds. WASI is present but empty: no preopened directories,
//!   no environment, no inherited stdio (stderr is captured, capped, to explain a panic).
//! - **Failure** is classified into [`PluginError`]: deadline, out of memory, stack overflow
//!   (deep recursion), guest panic (with its message), other traps, invalid output. A failing
//!   call fails only itself; the store is dropped.

mod bindings;
mod host;
mod validate;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

pub use bindings::channel::exports::telemetryflow::plugin::channel::{
    Alert, AlertStatus, Notification, RateLimit, Receipt, SendError,
};
pub use bindings::channel::telemetryflow::plugin::email::Message as EmailMessage;
pub use bindings::channel::telemetryflow::plugin::http::{
    HttpError, Request as HttpRequest, Response as HttpResponse,
};
pub use bindings::condition::exports::telemetryflow::plugin::condition::{
    Evaluation, EvaluationContext, QueryResult, Series, SeriesStatus,
};
pub use bindings::condition::telemetryflow::plugin::types::{
    ConfigError, PluginError as GuestError, PluginMetadata,
};

/// What a notification channel reaches the world through, implemented by the host (this crate
/// does no IO). Both calls block the calling thread (plugin calls run on blocking threads) and
/// must return by `deadline`, the end of the whole plugin call.
pub trait Capabilities: Send + Sync {
    /// One outgoing HTTP request, under the host's policy (addresses, schemes, sizes, time).
    ///
    /// # Errors
    /// Refused by the policy, timed out, or the connection failed.
    fn http(
        &self,
        plugin: &str,
        req: HttpRequest,
        deadline: std::time::Instant,
    ) -> Result<HttpResponse, HttpError>;

    /// One email through the host's SMTP relay.
    ///
    /// # Errors
    /// The relay's answer, or that no relay is configured.
    fn email(
        &self,
        plugin: &str,
        msg: EmailMessage,
        deadline: std::time::Instant,
    ) -> Result<(), String>;
}
use host::HostState;
pub use validate::PluginKind;

/// Limits and budgets of plugin calls.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Largest component accepted at upload.
    pub max_component_bytes: usize,
    /// Linear memory one call may use.
    pub memory_bytes: usize,
    /// How often the engine's epoch advances.
    pub epoch_tick: Duration,
    /// Epoch ticks a condition call may run (20 × 10 ms = 200 ms).
    pub condition_ticks: u64,
    /// Epoch ticks a transform call may run.
    pub transform_ticks: u64,
    /// Epoch ticks metadata and config validation may run.
    pub metadata_ticks: u64,
    /// Epoch ticks a channel call may run, host calls (HTTP, email) included: the whole call's
    /// wall-clock limit (1500 × 10 ms = 15 s).
    pub channel_ticks: u64,
    /// Instances that may exist at once across all calls (the pool's size).
    pub max_concurrent_instances: u32,
    /// Largest output of a call (state blob, Arrow bytes, all series' text).
    pub max_output_bytes: usize,
    /// Most series an evaluation may return.
    pub max_series: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_component_bytes: 10 << 20,
            memory_bytes: 64 << 20,
            epoch_tick: Duration::from_millis(10),
            condition_ticks: 20,
            transform_ticks: 200,
            metadata_ticks: 100,
            channel_ticks: 1500,
            max_concurrent_instances: 256,
            max_output_bytes: 16 << 20,
            max_series: 10_000,
        }
    }
}

/// Why a plugin could not be accepted or did not complete a call. The message names the plugin
/// and the reason, for the rule's or widget's owner.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginError {
    /// Refused at upload: not a component, wrong world, missing export, forbidden import, too big.
    #[error("invalid plugin: {0}")]
    Invalid(String),
    #[error("plugin {plugin} ran past its time budget ({budget_ms} ms)")]
    Deadline { plugin: String, budget_ms: u64 },
    #[error("plugin {plugin} ran out of memory (limit {limit_bytes} bytes)")]
    OutOfMemory { plugin: String, limit_bytes: usize },
    /// A table, instance or memory count limit (not linear memory size).
    #[error("plugin {plugin} hit a limit: {message}")]
    Limit { plugin: String, message: String },
    #[error("plugin {plugin} overflowed its stack (too deep a recursion)")]
    StackOverflow { plugin: String },
    #[error("plugin {plugin} panicked: {message}")]
    Panic { plugin: String, message: String },
    #[error("plugin {plugin} trapped: {message}")]
    Trap { plugin: String, message: String },
    #[error("plugin {plugin} returned an invalid result: {message}")]
    InvalidOutput { plugin: String, message: String },
    /// The plugin ran and reported an error of its own (bad config, unexpected input).
    #[error("plugin {plugin} failed: {message}")]
    Failed { plugin: String, message: String },
    /// The host could not run the call (pool exhausted, engine error).
    #[error("cannot run plugin {plugin}: {message}")]
    Host { plugin: String, message: String },
}

/// A plugin compiled, validated and ready to instantiate.
pub struct CompiledPlugin {
    pub kind: PluginKind,
    pub metadata: PluginMetadata,
    /// Hex SHA-256 of the uploaded bytes.
    pub sha256: String,
    component: Component,
    pre: InstancePre<HostState>,
}

impl std::fmt::Debug for CompiledPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPlugin")
            .field("kind", &self.kind)
            .field("name", &self.metadata.name)
            .field("version", &self.metadata.version)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl CompiledPlugin {
    /// `name@version`, as errors name the plugin.
    pub fn label(&self) -> String {
        format!("{}@{}", self.metadata.name, self.metadata.version)
    }

    /// The compiled artifact, for a cache the caller keeps. Only bytes this crate produced may
    /// be loaded back ([`PluginRuntime::load_compiled`]).
    ///
    /// # Errors
    /// When wasmtime cannot serialize the component.
    pub fn serialize(&self) -> Result<Vec<u8>, PluginError> {
        self.component.serialize().map_err(|e| PluginError::Host {
            plugin: self.label(),
            message: e.to_string(),
        })
    }
}

/// The engine, its epoch ticker and the linkers of each world.
pub struct PluginRuntime {
    engine: Engine,
    config: RuntimeConfig,
    condition_linker: Linker<HostState>,
    transform_linker: Linker<HostState>,
    channel_linker: Linker<HostState>,
    stop: Arc<AtomicBool>,
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn host_err(plugin: &str, e: impl std::fmt::Display) -> PluginError {
    PluginError::Host {
        plugin: plugin.to_string(),
        message: e.to_string(),
    }
}

impl PluginRuntime {
    /// An engine with Cranelift, the component model, epoch interruption and the pooling
    /// allocator, and a thread that advances the epoch every `config.epoch_tick`.
    ///
    /// # Errors
    /// When wasmtime rejects the configuration.
    pub fn new(config: RuntimeConfig) -> Result<PluginRuntime, PluginError> {
        let mut pool = PoolingAllocationConfig::default();
        let n = config.max_concurrent_instances;
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(8))
            .max_memory_size(config.memory_bytes)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            // Between calls, reset only the pages a call dirtied (found with Linux's
            // PAGEMAP_SCAN where the kernel has it, 6.7+) with memset, keeping them resident:
            // no madvise, no TLB shootdown, no page faults on the next call. Elsewhere the low
            // pages are memset and the rest madvised, as by default.
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut wc = Config::new();
        wc.wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed)
            .max_wasm_stack(512 << 10)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wc).map_err(|e| host_err("engine", e))?;

        let stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = Arc::clone(&stop);
            let tick = config.epoch_tick;
            std::thread::Builder::new()
                .name("plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| host_err("epoch ticker", e))?;
        }
        let condition_linker =
            host::condition_linker(&engine).map_err(|e| host_err("linker", e))?;
        let transform_linker =
            host::transform_linker(&engine).map_err(|e| host_err("linker", e))?;
        let channel_linker = host::channel_linker(&engine).map_err(|e| host_err("linker", e))?;
        Ok(PluginRuntime {
            engine,
            config,
            condition_linker,
            transform_linker,
            channel_linker,
            stop,
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// A string that changes whenever compiled artifacts of this engine stop being loadable (for
    /// keying an artifact cache together with the component's hash).
    pub fn compatibility_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        format!("{:016x}", h.finish())
    }

    /// The component's imports and exports by name: `(imports, exports)`.
    pub fn interfaces(&self, plugin: &CompiledPlugin) -> (Vec<String>, Vec<String>) {
        let ty = plugin.component.component_type();
        let imports = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let exports = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        (imports, exports)
    }

    /// Validates and compiles an uploaded component, then asks it for its metadata. `claimed` is
    /// the kind the uploader says it is (`None`: whatever it exports).
    ///
    /// # Errors
    /// [`PluginError::Invalid`] saying what is wrong; a trap while answering `metadata` is
    /// reported like any call's.
    pub fn compile(
        &self,
        bytes: &[u8],
        claimed: Option<PluginKind>,
    ) -> Result<CompiledPlugin, PluginError> {
        if bytes.len() > self.config.max_component_bytes {
            return Err(PluginError::Invalid(format!(
                "the component is {} bytes; the limit is {} bytes",
                bytes.len(),
                self.config.max_component_bytes
            )));
        }
        if !wasmparser_is_component(bytes) {
            return Err(PluginError::Invalid(
                "not a WebAssembly component (a core module or something else); build with \
                 `cargo build --target wasm32-wasip2`"
                    .into(),
            ));
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| PluginError::Invalid(format!("cannot compile the component: {e:#}")))?;
        self.prepare(component, content_hash(bytes), claimed)
    }

    /// Loads an artifact [`CompiledPlugin::serialize`] produced by this engine.
    ///
    /// # Safety
    /// `artifact` must be bytes this crate serialized (never user input): wasmtime trusts it.
    ///
    /// # Errors
    /// When the artifact is not loadable by this engine, or the plugin fails validation.
    #[allow(unsafe_code)]
    pub unsafe fn load_compiled(
        &self,
        artifact: &[u8],
        sha256: String,
    ) -> Result<CompiledPlugin, PluginError> {
        // SAFETY: the caller guarantees the bytes come from `CompiledPlugin::serialize`.
        let component = unsafe { Component::deserialize(&self.engine, artifact) }
            .map_err(|e| PluginError::Invalid(format!("cannot load the compiled artifact: {e}")))?;
        self.prepare(component, sha256, None)
    }

    fn prepare(
        &self,
        component: Component,
        sha256: String,
        claimed: Option<PluginKind>,
    ) -> Result<CompiledPlugin, PluginError> {
        let kind = validate::check(&self.engine, &component, claimed)?;
        let linker = match kind {
            PluginKind::AlertCondition => &self.condition_linker,
            PluginKind::WidgetTransform => &self.transform_linker,
            PluginKind::NotificationChannel => &self.channel_linker,
        };
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Invalid(format!("cannot link the component: {e:#}")))?;
        let mut plugin = CompiledPlugin {
            kind,
            metadata: PluginMetadata {
                name: format!("upload-{}", &sha256[..12.min(sha256.len())]),
                version: "?".into(),
                description: String::new(),
                config_schema: "{}".into(),
            },
            sha256,
            component,
            pre,
        };
        let metadata = self.metadata_of(&plugin)?;
        validate::check_metadata(&metadata, self.config.max_output_bytes)?;
        plugin.metadata = metadata;
        Ok(plugin)
    }

    fn store(
        &self,
        plugin: &str,
        ticks: u64,
        caps: Option<Arc<dyn Capabilities>>,
    ) -> Store<HostState> {
        let budget = self
            .config
            .epoch_tick
            .saturating_mul(u32::try_from(ticks).unwrap_or(u32::MAX));
        let deadline = std::time::Instant::now() + budget;
        let mut store = Store::new(
            &self.engine,
            HostState::new(plugin, self.config.memory_bytes, caps, deadline),
        );
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        store
    }

    /// Turns a failed call into a [`PluginError`] naming the plugin and the reason.
    fn classify(
        &self,
        plugin: &str,
        ticks: u64,
        state: &HostState,
        e: &wasmtime::Error,
    ) -> PluginError {
        let plugin = plugin.to_string();
        if state.limits.memory_denied {
            return PluginError::OutOfMemory {
                plugin,
                limit_bytes: self.config.memory_bytes,
            };
        }
        if state.limits.table_denied {
            return PluginError::Limit {
                plugin,
                message: format!(
                    "a table may hold at most {} elements",
                    host::MAX_TABLE_ELEMENTS
                ),
            };
        }
        let text = format!("{e:#}");
        if text.contains("count too high") || text.contains("resource limit exceeded") {
            return PluginError::Limit {
                plugin,
                message: text,
            };
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginError::Deadline {
                plugin,
                budget_ms: u64::try_from(self.config.epoch_tick.as_millis())
                    .unwrap_or(u64::MAX)
                    .saturating_mul(ticks),
            },
            Some(Trap::StackOverflow) => PluginError::StackOverflow { plugin },
            Some(Trap::UnreachableCodeReached) => PluginError::Panic {
                plugin,
                message: state
                    .panic_message()
                    .unwrap_or_else(|| "unreachable code reached (a Rust panic or abort)".into()),
            },
            Some(trap) => PluginError::Trap {
                plugin,
                message: trap.to_string(),
            },
            None => PluginError::Trap {
                plugin,
                message: format!("{e:#}"),
            },
        }
    }

    fn metadata_of(&self, plugin: &CompiledPlugin) -> Result<PluginMetadata, PluginError> {
        let label = plugin.label();
        let ticks = self.config.metadata_ticks;
        let mut store = self.store(&label, ticks, None);
        let result = (|| -> wasmtime::Result<PluginMetadata> {
            match plugin.kind {
                PluginKind::AlertCondition => {
                    let b = bindings::condition::AlertConditionPre::new(plugin.pre.clone())?
                        .instantiate(&mut store)?;
                    b.telemetryflow_plugin_metadata().call_metadata(&mut store)
                }
                PluginKind::WidgetTransform => {
                    let b = bindings::transform::WidgetTransformPre::new(plugin.pre.clone())?
                        .instantiate(&mut store)?;
                    let m = b
                        .telemetryflow_plugin_metadata()
                        .call_metadata(&mut store)?;
                    Ok(PluginMetadata {
                        name: m.name,
                        version: m.version,
                        description: m.description,
                        config_schema: m.config_schema,
                    })
                }
                PluginKind::NotificationChannel => {
                    let b = bindings::channel::NotificationChannelPre::new(plugin.pre.clone())?
                        .instantiate(&mut store)?;
                    let m = b
                        .telemetryflow_plugin_metadata()
                        .call_metadata(&mut store)?;
                    Ok(PluginMetadata {
                        name: m.name,
                        version: m.version,
                        description: m.description,
                        config_schema: m.config_schema,
                    })
                }
            }
        })();
        result.map_err(|e| self.classify(&label, ticks, store.data(), &e))
    }

    /// Runs the plugin's `validate-config` on a JSON config; an empty list means valid.
    ///
    /// # Errors
    /// When the call itself fails (trap, deadline).
    pub fn validate_config(
        &self,
        plugin: &CompiledPlugin,
        config: &str,
    ) -> Result<Vec<ConfigError>, PluginError> {
        let label = plugin.label();
        let ticks = self.config.metadata_ticks;
        let mut store = self.store(&label, ticks, None);
        let result = (|| -> wasmtime::Result<Vec<ConfigError>> {
            match plugin.kind {
                PluginKind::AlertCondition => {
                    let b = bindings::condition::AlertConditionPre::new(plugin.pre.clone())?
                        .instantiate(&mut store)?;
                    b.telemetryflow_plugin_metadata()
                        .call_validate_config(&mut store, config)
                }
                PluginKind::WidgetTransform => {
                    let b = bindings::transform::WidgetTransformPre::new(plugin.pre.clone())?
                        .instantiate(&mut store)?;
                    Ok(b.telemetryflow_plugin_metadata()
                        .call_validate_config(&mut store, config)?
                        .into_iter()
                        .map(|c| ConfigError {
                            path: c.path,
                            message: c.message,
                        })
                        .collect())
                }
                PluginKind::NotificationChannel => {
                    let b = bindings::channel::NotificationChannelPre::new(plugin.pre.clone())?
                        .instantiate(&mut store)?;
                    Ok(b.telemetryflow_plugin_metadata()
                        .call_validate_config(&mut store, config)?
                        .into_iter()
                        .map(|c| ConfigError {
                            path: c.path,
                            message: c.message,
                        })
                        .collect())
                }
            }
        })();
        result.map_err(|e| self.classify(&label, ticks, store.data(), &e))
    }

    /// Runs `f` on a fresh instance in a store with `ticks` of budget. A trap becomes a
    /// classified [`PluginError`] naming the plugin; the plugin's own error a `Failed`.
    fn call<R>(
        &self,
        plugin: &CompiledPlugin,
        want: PluginKind,
        ticks: u64,
        caps: Option<Arc<dyn Capabilities>>,
        f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, PluginError> {
        let label = plugin.label();
        if plugin.kind != want {
            return Err(PluginError::Invalid(format!(
                "{label} is a {} plugin, not a {} one",
                plugin.kind.world(),
                want.world()
            )));
        }
        let mut store = self.store(&label, ticks, caps);
        match f(&mut store) {
            Err(e) => {
                let err = self.classify(&label, ticks, store.data(), &e);
                if matches!(err, PluginError::Trap { .. })
                    && format!("{e:#}").contains("concurrent")
                {
                    return Err(host_err(&label, e));
                }
                Err(err)
            }
            Ok(Err(message)) => Err(PluginError::Failed {
                plugin: label,
                message,
            }),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// Evaluates an alert condition on the rule's query results.
    ///
    /// # Errors
    /// [`PluginError`] naming the plugin and why: a trap, the deadline, memory, an invalid
    /// result, or the plugin's own error.
    pub fn evaluate(
        &self,
        plugin: &CompiledPlugin,
        ctx: &EvaluationContext,
        inputs: &[QueryResult],
    ) -> Result<Evaluation, PluginError> {
        let ticks = self.config.condition_ticks;
        let evaluation = self.call(plugin, PluginKind::AlertCondition, ticks, None, |store| {
            let b = bindings::condition::AlertConditionPre::new(plugin.pre.clone())?
                .instantiate(&mut *store)?;
            Ok(b.telemetryflow_plugin_condition()
                .call_evaluate(&mut *store, ctx, inputs)?
                .map_err(|g| guest_message(&g)))
        })?;
        validate::check_evaluation(&plugin.label(), &evaluation, &self.config)?;
        Ok(evaluation)
    }

    /// The schema a transform produces for an input schema (both as Arrow IPC streams without
    /// batches), so a widget can be planned before data arrives.
    ///
    /// # Errors
    /// As [`PluginRuntime::evaluate`].
    pub fn output_schema(
        &self,
        plugin: &CompiledPlugin,
        input_schema: &[u8],
        config: &str,
    ) -> Result<Vec<u8>, PluginError> {
        let ticks = self.config.metadata_ticks;
        self.transform_call(plugin, ticks, |t, store| {
            t.call_output_schema(store, &input_schema.to_vec(), config)
        })
    }

    /// Runs a widget transform on one Arrow IPC stream.
    ///
    /// # Errors
    /// As [`PluginRuntime::evaluate`].
    pub fn transform(
        &self,
        plugin: &CompiledPlugin,
        input: &[u8],
        config: &str,
    ) -> Result<Vec<u8>, PluginError> {
        let ticks = self.config.transform_ticks;
        self.transform_call(plugin, ticks, |t, store| {
            t.call_run(store, &input.to_vec(), config)
        })
    }

    /// One call into a transform's `transform` interface, its output capped.
    fn transform_call(
        &self,
        plugin: &CompiledPlugin,
        ticks: u64,
        f: impl FnOnce(
            &bindings::transform::exports::telemetryflow::plugin::transform::Guest,
            &mut Store<HostState>,
        ) -> wasmtime::Result<
            Result<Vec<u8>, bindings::transform::telemetryflow::plugin::types::PluginError>,
        >,
    ) -> Result<Vec<u8>, PluginError> {
        let out = self.call(plugin, PluginKind::WidgetTransform, ticks, None, |store| {
            let b = bindings::transform::WidgetTransformPre::new(plugin.pre.clone())?
                .instantiate(&mut *store)?;
            Ok(f(b.telemetryflow_plugin_transform(), store)?
                .map_err(|g| transform_guest_message(&g)))
        })?;
        self.capped(plugin, out)
    }

    /// Sends one notification through a channel plugin, which reaches the network only
    /// through `caps`. The outer error says the plugin could not run (trap, deadline, memory);
    /// the inner one is the plugin's own verdict (permanent, transient, rate-limited).
    ///
    /// # Errors
    /// As [`PluginRuntime::evaluate`].
    pub fn send(
        &self,
        plugin: &CompiledPlugin,
        notification: &Notification,
        caps: Arc<dyn Capabilities>,
    ) -> Result<Result<Receipt, SendError>, PluginError> {
        let ticks = self.config.channel_ticks;
        let out = self.call(
            plugin,
            PluginKind::NotificationChannel,
            ticks,
            Some(caps),
            |store| {
                let b = bindings::channel::NotificationChannelPre::new(plugin.pre.clone())?
                    .instantiate(&mut *store)?;
                Ok(Ok(b
                    .telemetryflow_plugin_channel()
                    .call_send(&mut *store, notification)?))
            },
        )?;
        let size = |s: &str| s.len();
        let text = match &out {
            Ok(r) => r.message_id.as_deref().map_or(0, size) + size(&r.detail),
            Err(SendError::Permanent(m) | SendError::Transient(m)) => size(m),
            Err(SendError::RateLimited(r)) => size(&r.message),
        };
        if text > 64 << 10 {
            return Err(PluginError::InvalidOutput {
                plugin: plugin.label(),
                message: format!("{text} bytes of receipt text; the limit is 65536"),
            });
        }
        Ok(out)
    }

    fn capped(&self, plugin: &CompiledPlugin, out: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        if out.len() > self.config.max_output_bytes {
            return Err(PluginError::InvalidOutput {
                plugin: plugin.label(),
                message: format!(
                    "{} bytes of output; the limit is {}",
                    out.len(),
                    self.config.max_output_bytes
                ),
            });
        }
        Ok(out)
    }
}

fn guest_message(e: &GuestError) -> String {
    match e {
        GuestError::InvalidConfig(m) => format!("invalid config: {m}"),
        GuestError::InvalidInput(m) => format!("invalid input: {m}"),
        GuestError::Internal(m) => m.clone(),
    }
}

fn transform_guest_message(
    e: &bindings::transform::telemetryflow::plugin::types::PluginError,
) -> String {
    use bindings::transform::telemetryflow::plugin::types::PluginError as E;
    match e {
        E::InvalidConfig(m) => format!("invalid config: {m}"),
        E::InvalidInput(m) => format!("invalid input: {m}"),
        E::Internal(m) => m.clone(),
    }
}

/// The hex SHA-256 of a component's bytes: its identity in caches and the registry.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Whether `bytes` start like a component (wasm magic, then the component layer/version).
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [0x01, 0x00]
}

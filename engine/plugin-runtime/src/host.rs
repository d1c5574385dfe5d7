//! What a plugin's store holds: its limits, an empty WASI context, and the `log` import.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings;
use crate::{Capabilities, EmailMessage, HttpError, HttpRequest, HttpResponse};

/// Lines one call may log; more are dropped (and counted in one last line).
const MAX_LOG_LINES: u32 = 100;
/// Bytes of stderr kept (to explain a panic); writing more traps the plugin.
const STDERR_BYTES: usize = 64 << 10;

/// Memory, table and instance limits of one call, remembering whether memory was refused (a
/// Rust guest that cannot allocate aborts, which would otherwise look like any other trap).
pub struct Limits {
    memory_bytes: usize,
    pub memory_denied: bool,
    pub table_denied: bool,
}

/// Elements one table may grow to.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.table_denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        32
    }

    fn memories(&self) -> usize {
        8
    }
}

pub struct HostState {
    plugin: String,
    pub limits: Limits,
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    log_lines: u32,
    /// What a channel may reach (none for conditions and transforms).
    caps: Option<Arc<dyn Capabilities>>,
    /// When the whole call must be over: host calls get only what is left.
    deadline: Instant,
    http_calls: u32,
    emails: u32,
}

/// Outgoing requests one channel call may make.
const MAX_HTTP_CALLS: u32 = 8;
/// Emails one channel call may send.
const MAX_EMAILS: u32 = 4;

impl HostState {
    pub fn new(
        plugin: &str,
        memory_bytes: usize,
        caps: Option<Arc<dyn Capabilities>>,
        deadline: Instant,
    ) -> HostState {
        let stderr = MemoryOutputPipe::new(STDERR_BYTES);
        // No preopened directories, no environment, no arguments, no inherited stdio, no
        // network: WASI is linked so that standard guests instantiate, and grants nothing.
        let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).build();
        HostState {
            plugin: plugin.to_string(),
            limits: Limits {
                memory_bytes,
                memory_denied: false,
                table_denied: false,
            },
            wasi,
            table: ResourceTable::new(),
            stderr,
            log_lines: 0,
            caps,
            deadline,
            http_calls: 0,
            emails: 0,
        }
    }

    /// The panic message a Rust guest printed to stderr, if any.
    pub fn panic_message(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.stderr.contents()).into_owned();
        let line = text
            .lines()
            .find(|l| l.contains("panicked at"))
            .map(|l| l.to_string());
        match line {
            Some(first) => {
                // Rust prints "thread '…' panicked at file:line:col:\nmessage".
                let after: Vec<&str> = text
                    .lines()
                    .skip_while(|l| !l.contains("panicked at"))
                    .skip(1)
                    .take(3)
                    .collect();
                let msg = after.join(" ").trim().to_string();
                Some(if msg.is_empty() { first } else { msg })
            }
            None if !text.trim().is_empty() => Some(text.trim().chars().take(500).collect()),
            None => None,
        }
    }

    fn log(&mut self, level: &str, message: &str) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(plugin = %self.plugin, "plugin log lines beyond {MAX_LOG_LINES} per call are dropped");
            }
            return;
        }
        let message: String = message.chars().take(2048).collect();
        match level {
            "error" => tracing::error!(plugin = %self.plugin, "{message}"),
            "warn" => tracing::warn!(plugin = %self.plugin, "{message}"),
            "info" => tracing::info!(plugin = %self.plugin, "{message}"),
            _ => tracing::debug!(plugin = %self.plugin, "{message}"),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn level_name<L: std::fmt::Debug>(level: L) -> String {
    format!("{level:?}").to_ascii_lowercase()
}

impl bindings::condition::telemetryflow::plugin::log::Host for HostState {
    fn log(
        &mut self,
        level: bindings::condition::telemetryflow::plugin::log::Level,
        message: String,
    ) {
        HostState::log(self, &level_name(level), &message);
    }
}

impl bindings::condition::telemetryflow::plugin::types::Host for HostState {}

impl bindings::transform::telemetryflow::plugin::log::Host for HostState {
    fn log(
        &mut self,
        level: bindings::transform::telemetryflow::plugin::log::Level,
        message: String,
    ) {
        HostState::log(self, &level_name(level), &message);
    }
}

impl bindings::transform::telemetryflow::plugin::types::Host for HostState {}

impl bindings::channel::telemetryflow::plugin::log::Host for HostState {
    fn log(
        &mut self,
        level: bindings::channel::telemetryflow::plugin::log::Level,
        message: String,
    ) {
        HostState::log(self, &level_name(level), &message);
    }
}

impl bindings::channel::telemetryflow::plugin::types::Host for HostState {}

impl bindings::channel::telemetryflow::plugin::http::Host for HostState {
    fn send(&mut self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.http_calls += 1;
        if self.http_calls > MAX_HTTP_CALLS {
            return Err(HttpError::Blocked(format!(
                "at most {MAX_HTTP_CALLS} requests per notification"
            )));
        }
        if Instant::now() >= self.deadline {
            return Err(HttpError::Timeout);
        }
        match &self.caps {
            Some(caps) => caps.http(&self.plugin, req, self.deadline),
            None => Err(HttpError::Blocked("this call has no network access".into())),
        }
    }
}

impl bindings::channel::telemetryflow::plugin::email::Host for HostState {
    fn send(&mut self, msg: EmailMessage) -> Result<(), String> {
        self.emails += 1;
        if self.emails > MAX_EMAILS {
            return Err(format!("at most {MAX_EMAILS} emails per notification"));
        }
        if Instant::now() >= self.deadline {
            return Err("the call ran out of time".into());
        }
        match &self.caps {
            Some(caps) => caps.email(&self.plugin, msg, self.deadline),
            None => Err("this call cannot send email".into()),
        }
    }
}

fn wasi_linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    Ok(linker)
}

pub fn condition_linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = wasi_linker(engine)?;
    bindings::condition::AlertCondition::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    Ok(linker)
}

pub fn transform_linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = wasi_linker(engine)?;
    bindings::transform::WidgetTransform::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    Ok(linker)
}

pub fn channel_linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = wasi_linker(engine)?;
    bindings::channel::NotificationChannel::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    Ok(linker)
}

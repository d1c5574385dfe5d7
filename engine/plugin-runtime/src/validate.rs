//! What an uploaded component may import and must export, per kind; and what a call may return.

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::{Evaluation, PluginError, PluginMetadata, RuntimeConfig};

/// The plugin kinds, one world each in `wit/plugin.wit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginKind {
    AlertCondition,
    WidgetTransform,
    NotificationChannel,
}

const PACKAGE: &str = "telemetryflow:plugin";
const VERSION: &str = "0.1.0";

impl PluginKind {
    pub const ALL: [PluginKind; 3] = [
        PluginKind::AlertCondition,
        PluginKind::WidgetTransform,
        PluginKind::NotificationChannel,
    ];

    /// The world's name in the WIT package.
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::AlertCondition => "alert-condition",
            PluginKind::WidgetTransform => "widget-transform",
            PluginKind::NotificationChannel => "notification-channel",
        }
    }

    pub fn parse(s: &str) -> Option<PluginKind> {
        PluginKind::ALL.into_iter().find(|k| k.world() == s)
    }

    /// The interface that makes a component this kind.
    fn interface(self) -> &'static str {
        match self {
            PluginKind::AlertCondition => "condition",
            PluginKind::WidgetTransform => "transform",
            PluginKind::NotificationChannel => "channel",
        }
    }

    /// Our interfaces this kind may import.
    fn allowed_imports(self) -> &'static [&'static str] {
        match self {
            PluginKind::AlertCondition | PluginKind::WidgetTransform => &["types", "log"],
            PluginKind::NotificationChannel => &["types", "log", "http", "email"],
        }
    }
}

fn ours(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
    (version == VERSION || version.is_empty()).then_some(iface)
}

/// Checks imports and exports against the world the component claims (or implies), and
/// returns its kind.
pub fn check(
    engine: &Engine,
    component: &Component,
    claimed: Option<PluginKind>,
) -> Result<PluginKind, PluginError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let found: Vec<PluginKind> = PluginKind::ALL
        .into_iter()
        .filter(|k| exports.iter().any(|e| ours(e) == Some(k.interface())))
        .collect();
    let kind = match (found.as_slice(), claimed) {
        ([], Some(c)) => {
            return Err(PluginError::Invalid(format!(
                "missing export {PACKAGE}/{}@{VERSION}: the component does not implement the {} world",
                c.interface(),
                c.world()
            )));
        }
        ([], None) => {
            return Err(PluginError::Invalid(format!(
                "the component exports none of {PACKAGE}/condition, /transform or /channel \
                 (it exports: {})",
                if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                }
            )));
        }
        ([one], Some(c)) if *one != c => {
            return Err(PluginError::Invalid(format!(
                "uploaded as a {} plugin but the component implements the {} world",
                c.world(),
                one.world()
            )));
        }
        ([one], _) => *one,
        _ => {
            return Err(PluginError::Invalid(
                "the component implements more than one plugin world; build one per kind".into(),
            ));
        }
    };
    if !exports.iter().any(|e| ours(e) == Some("metadata")) {
        return Err(PluginError::Invalid(format!(
            "missing export {PACKAGE}/metadata@{VERSION}"
        )));
    }
    for (name, _) in ty.imports(engine) {
        if let Some(iface) = ours(name) {
            if !kind.allowed_imports().contains(&iface) {
                return Err(PluginError::Invalid(format!(
                    "a {} plugin may not import {name}; only notification channels reach the \
                     network or email",
                    kind.world()
                )));
            }
            continue;
        }
        let forbidden = name.starts_with("wasi:http/") || name.starts_with("wasi:sockets/");
        if forbidden || !name.starts_with("wasi:") {
            return Err(PluginError::Invalid(format!(
                "forbidden import {name}: plugins get WASI without sockets or HTTP, and \
                 {PACKAGE}/log (channels also /http and /email)"
            )));
        }
    }
    Ok(kind)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The metadata must name the plugin properly and carry a JSON object as its config schema.
pub fn check_metadata(m: &PluginMetadata, max_bytes: usize) -> Result<(), PluginError> {
    if !valid_name(&m.name) {
        return Err(PluginError::Invalid(format!(
            "metadata: name {:?} must be 1 to 64 characters of a-z, 0-9 and '-'",
            m.name
        )));
    }
    if m.version.is_empty() || m.version.len() > 64 {
        return Err(PluginError::Invalid(
            "metadata: version must be 1 to 64 characters".into(),
        ));
    }
    if m.description.len() + m.config_schema.len() > max_bytes {
        return Err(PluginError::Invalid("metadata: too large".into()));
    }
    if !m.config_schema.trim_start().starts_with('{') {
        return Err(PluginError::Invalid(
            "metadata: config-schema must be a JSON Schema object".into(),
        ));
    }
    Ok(())
}

/// An evaluation within the caps: series count, text size and state size.
pub fn check_evaluation(
    plugin: &str,
    e: &Evaluation,
    config: &RuntimeConfig,
) -> Result<(), PluginError> {
    let bad = |message: String| PluginError::InvalidOutput {
        plugin: plugin.to_string(),
        message,
    };
    if e.series.len() > config.max_series {
        return Err(bad(format!(
            "{} series; the limit is {}",
            e.series.len(),
            config.max_series
        )));
    }
    let mut bytes = e.state.as_ref().map_or(0, Vec::len);
    if bytes > 1 << 20 {
        return Err(bad(format!("a state of {bytes} bytes; the limit is 1 MiB")));
    }
    for s in &e.series {
        for (k, v) in s.labels.iter().chain(s.annotations.iter()) {
            bytes += k.len() + v.len();
        }
        if s.value.is_some_and(|v| v.is_nan()) {
            return Err(bad("a series value is NaN".into()));
        }
    }
    if bytes > config.max_output_bytes {
        return Err(bad(format!(
            "{bytes} bytes of output; the limit is {}",
            config.max_output_bytes
        )));
    }
    Ok(())
}

//! `moving-average`: a widget transform that replaces a value column by its moving average over
//! the last `window` points of each series (rows grouped by their string columns, in row order).

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

pub mod core;

wit_bindgen::generate!({
    path: "../../wit",
    world: "widget-transform",
});

use exports::telemetryflow::plugin::metadata::Guest as Metadata;
use exports::telemetryflow::plugin::transform::Guest as Transform;
use telemetryflow::plugin::types::{ConfigError, PluginError, PluginMetadata};

pub struct Plugin;

fn bad_config(p: plugin_sdk::config::ConfigProblem) -> PluginError {
    PluginError::InvalidConfig(format!("{}: {}", p.path, p.message))
}

impl Metadata for Plugin {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "moving-average".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "The moving average of a value column over the last N points of each series.".into(),
            config_schema: core::SCHEMA.into(),
        }
    }

    fn validate_config(config: String) -> Vec<ConfigError> {
        match core::config(&config) {
            Ok(_) => Vec::new(),
            Err(p) => vec![ConfigError {
                path: p.path,
                message: p.message,
            }],
        }
    }
}

impl Transform for Plugin {
    fn output_schema(input_schema: Vec<u8>, config: String) -> Result<Vec<u8>, PluginError> {
        let c = core::config(&config).map_err(bad_config)?;
        let (schema, _) =
            plugin_sdk::ipc::read(&input_schema).map_err(PluginError::InvalidInput)?;
        let out = core::output_schema(&schema, &c).map_err(PluginError::InvalidInput)?;
        plugin_sdk::ipc::write(&out, &[]).map_err(PluginError::Internal)
    }

    fn run(input: Vec<u8>, config: String) -> Result<Vec<u8>, PluginError> {
        let c = core::config(&config).map_err(bad_config)?;
        let (schema, batches) = plugin_sdk::ipc::read(&input).map_err(PluginError::InvalidInput)?;
        let (out_schema, out) =
            core::run(&schema, &batches, &c).map_err(PluginError::InvalidInput)?;
        plugin_sdk::ipc::write(&out_schema, &out).map_err(PluginError::Internal)
    }
}

// Exported only in the component: a native cdylib cannot carry the component's export names,
// and native builds exist for the unit tests.
#[cfg(target_arch = "wasm32")]
export!(Plugin);

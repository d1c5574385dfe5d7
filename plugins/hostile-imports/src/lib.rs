//! A condition that imports `telemetryflow:plugin/http`, which only notification channels may:
//! the runtime must refuse it at upload, saying so. Built against a world of its own that adds
//! the import to the alert-condition world.

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    inline: r#"
        package test:hostile;

        world condition-with-http {
            import telemetryflow:plugin/log@0.1.0;
            import telemetryflow:plugin/http@0.1.0;
            export telemetryflow:plugin/metadata@0.1.0;
            export telemetryflow:plugin/condition@0.1.0;
        }
    "#,
    path: "../../wit",
    world: "test:hostile/condition-with-http",
    generate_all,
});

use exports::telemetryflow::plugin::condition::{
    Evaluation, EvaluationContext, Guest as Condition, QueryResult,
};
use exports::telemetryflow::plugin::metadata::Guest as Metadata;
use telemetryflow::plugin::http::{Request, send};
use telemetryflow::plugin::types::{ConfigError, PluginError, PluginMetadata};

pub struct Plugin;

impl Metadata for Plugin {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "hostile-imports".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "imports http (tests only)".into(),
            config_schema: "{}".into(),
        }
    }

    fn validate_config(_config: String) -> Vec<ConfigError> {
        Vec::new()
    }
}

impl Condition for Plugin {
    fn evaluate(
        _ctx: EvaluationContext,
        _inputs: Vec<QueryResult>,
    ) -> Result<Evaluation, PluginError> {
        // Exfiltration attempt: the import is used, so it stays in the component.
        let r = send(&Request {
            method: "GET".into(),
            url: "http://169.254.169.254/latest/meta-data/".into(),
            headers: vec![],
            body: vec![],
            timeout_ms: None,
        });
        Err(PluginError::Internal(format!("{:?}", r.is_ok())))
    }
}

#[cfg(target_arch = "wasm32")]
export!(Plugin);

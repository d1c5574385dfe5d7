//! `threshold`: an alert condition plugin. Each series of the chosen query (rows grouped by their
//! string columns) is reduced to one value (last, avg, min, max, sum or count) and compared with
//! the thresholds in order: above, below, between or outside; the first that matches gives the
//! series its severity. A series without values is `no-data`; no rows at all is one `no-data`
//! series without labels.

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

pub mod core;

wit_bindgen::generate!({
    path: "../../wit",
    world: "alert-condition",
});

use exports::telemetryflow::plugin::condition::{
    Evaluation, EvaluationContext, Guest as Condition, QueryResult, Series, SeriesStatus,
};
use exports::telemetryflow::plugin::metadata::Guest as Metadata;
use telemetryflow::plugin::types::{ConfigError, PluginError, PluginMetadata};

pub struct Plugin;

impl Metadata for Plugin {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "threshold".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Alerts when a series' value crosses a threshold (above, below, between, outside), with several severities.".into(),
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

impl Condition for Plugin {
    fn evaluate(
        ctx: EvaluationContext,
        inputs: Vec<QueryResult>,
    ) -> Result<Evaluation, PluginError> {
        let c = core::config(&ctx.config)
            .map_err(|p| PluginError::InvalidConfig(format!("{}: {}", p.path, p.message)))?;
        let inputs: Vec<(String, Vec<u8>)> = inputs.into_iter().map(|q| (q.name, q.data)).collect();
        let verdicts = core::judge(&c, &inputs).map_err(PluginError::InvalidInput)?;
        let series = verdicts
            .into_iter()
            .map(|v| {
                let mut annotations = Vec::new();
                if let Some(value) = v.value {
                    annotations.push(("value".to_string(), value.to_string()));
                }
                let (status, severity) = match v.status {
                    core::Status::Ok => (SeriesStatus::Ok, None),
                    core::Status::NoData => (SeriesStatus::NoData, None),
                    core::Status::Alerting {
                        severity,
                        threshold,
                    } => {
                        annotations.push(("threshold".to_string(), threshold));
                        (SeriesStatus::Alerting, Some(severity))
                    }
                };
                Series {
                    labels: v.labels,
                    status,
                    value: v.value,
                    severity,
                    annotations,
                }
            })
            .collect();
        Ok(Evaluation {
            series,
            state: None,
        })
    }
}

// Exported only in the component: a native cdylib cannot carry the component's export names,
// and native builds exist for the unit tests.
#[cfg(target_arch = "wasm32")]
export!(Plugin);

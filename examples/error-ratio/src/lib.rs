//! `error-ratio`: alerts when, per service, errors divided by total exceeds a ratio.
//!
//! The rule has two queries: `errors` and `total` (names configurable), each returning one row
//! per label set (e.g. `service_name`) with a count. The ratio is computed per label set.

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    // The WIT package of the TelemetryFlow version you target.
    path: "../../wit",
    world: "alert-condition",
});

use exports::telemetryflow::plugin::condition::{
    Evaluation, EvaluationContext, Guest as Condition, QueryResult, Series, SeriesStatus,
};
use exports::telemetryflow::plugin::metadata::Guest as Metadata;
use plugin_sdk::series::{Reducer, group};
use telemetryflow::plugin::types::{ConfigError, PluginError, PluginMetadata};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The alert fires above this ratio (0.05 = 5 %).
    pub max_ratio: f64,
    #[serde(default = "errors")]
    pub errors_query: String,
    #[serde(default = "total")]
    pub total_query: String,
}

fn errors() -> String {
    "errors".into()
}

fn total() -> String {
    "total".into()
}

pub fn config(json: &str) -> Result<Config, plugin_sdk::config::ConfigProblem> {
    let c: Config = plugin_sdk::config::parse(json)?;
    if !(0.0..=1.0).contains(&c.max_ratio) {
        return Err(plugin_sdk::config::ConfigProblem {
            path: "/max_ratio".into(),
            message: "must be between 0 and 1".into(),
        });
    }
    Ok(c)
}

/// `(labels, ratio, alerting)` per label set of the total query.
pub fn ratios(c: &Config, inputs: &[(String, Vec<u8>)]) -> Result<Vec<(Vec<(String, String)>, f64, bool)>, String> {
    let find = |name: &str| {
        inputs
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| format!("the rule needs a query named {name:?}"))
    };
    let (_, errors) = plugin_sdk::ipc::read(&find(&c.errors_query)?.1)?;
    let (_, total) = plugin_sdk::ipc::read(&find(&c.total_query)?.1)?;
    let errors = group(&errors, None, None, Reducer::Sum)?;
    let total = group(&total, None, None, Reducer::Sum)?;
    Ok(total
        .into_iter()
        .filter_map(|t| {
            let all = t.value.filter(|v| *v > 0.0)?;
            let bad = errors
                .iter()
                .find(|e| e.labels == t.labels)
                .and_then(|e| e.value)
                .unwrap_or(0.0);
            let ratio = bad / all;
            Some((t.labels, ratio, ratio > c.max_ratio))
        })
        .collect())
}

pub struct Plugin;

impl Metadata for Plugin {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "error-ratio".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Alerts when errors / total exceeds max_ratio, per label set.".into(),
            config_schema: r#"{"type":"object","required":["max_ratio"],"additionalProperties":false,
                "properties":{"max_ratio":{"type":"number","minimum":0,"maximum":1},
                "errors_query":{"type":"string","default":"errors"},
                "total_query":{"type":"string","default":"total"}}}"#
                .into(),
        }
    }

    fn validate_config(config: String) -> Vec<ConfigError> {
        match self::config(&config) {
            Ok(_) => Vec::new(),
            Err(p) => vec![ConfigError {
                path: p.path,
                message: p.message,
            }],
        }
    }
}

impl Condition for Plugin {
    fn evaluate(ctx: EvaluationContext, inputs: Vec<QueryResult>) -> Result<Evaluation, PluginError> {
        let c = config(&ctx.config).map_err(|p| PluginError::InvalidConfig(format!("{}: {}", p.path, p.message)))?;
        let inputs: Vec<(String, Vec<u8>)> = inputs.into_iter().map(|q| (q.name, q.data)).collect();
        let series = ratios(&c, &inputs)
            .map_err(PluginError::InvalidInput)?
            .into_iter()
            .map(|(labels, ratio, alerting)| Series {
                labels,
                status: if alerting { SeriesStatus::Alerting } else { SeriesStatus::Ok },
                value: Some(ratio),
                severity: None,
                annotations: vec![("ratio".into(), format!("{:.1}%", ratio * 100.0))],
            })
            .collect();
        Ok(Evaluation { series, state: None })
    }
}

#[cfg(target_arch = "wasm32")]
export!(Plugin);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn counts(rows: &[(&str, i64)]) -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("service_name", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            ],
        )
        .expect("batch");
        plugin_sdk::ipc::write(&schema, &[batch]).expect("ipc")
    }

    #[test]
    fn ratio_per_service() {
        let c = config(r#"{"max_ratio":0.1}"#).expect("config");
        let inputs = vec![
            ("errors".to_string(), counts(&[("checkout", 3)])),
            ("total".to_string(), counts(&[("checkout", 10), ("search", 50)])),
        ];
        let r = ratios(&c, &inputs).expect("ratios");
        assert_eq!(r.len(), 2);
        assert!(r[0].2, "checkout: 30 % > 10 %");
        assert!(!r[1].2, "search: no errors");
        assert!(config(r#"{"max_ratio":2}"#).is_err());
    }
}

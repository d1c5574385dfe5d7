//! The condition's logic, free of bindings so it is tested natively.

use plugin_sdk::config::{ConfigProblem, parse};
use plugin_sdk::series::{Reducer, group};
pub use plugin_sdk::threshold::{Op, Threshold};

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The query (by name) to judge; default: the first.
    #[serde(default)]
    pub query: Option<String>,
    /// The column holding values; default: the last numeric column.
    #[serde(default)]
    pub value_column: Option<String>,
    /// The columns that name a series; default: every string column.
    #[serde(default)]
    pub label_columns: Option<Vec<String>>,
    #[serde(default)]
    pub reducer: Reducer,
    /// Checked in order; the first that matches gives the severity.
    pub thresholds: Vec<Threshold>,
}

pub const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "required": ["thresholds"],
  "properties": {
    "query": {"type": "string", "description": "the query to judge (default: the first)"},
    "value_column": {"type": "string", "description": "default: the last numeric column"},
    "label_columns": {"type": "array", "items": {"type": "string"}, "description": "default: every string column"},
    "reducer": {"enum": ["last", "avg", "min", "max", "sum", "count"], "default": "last"},
    "thresholds": {
      "type": "array", "minItems": 1,
      "items": {
        "type": "object", "additionalProperties": false, "required": ["op", "value"],
        "properties": {
          "severity": {"type": "string", "default": "critical"},
          "op": {"enum": ["above", "below", "between", "outside"]},
          "value": {"type": "number"},
          "value2": {"type": "number", "description": "upper bound for between / outside"}
        }
      }
    }
  }
}"#;

/// Parses and checks a config.
///
/// # Errors
/// The first problem, with its JSON Pointer.
pub fn config(json: &str) -> Result<Config, ConfigProblem> {
    let c: Config = parse(json)?;
    plugin_sdk::threshold::check(&c.thresholds, "/thresholds")?;
    Ok(c)
}

/// What the condition says about one series.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Ok,
    Alerting { severity: String, threshold: String },
    NoData,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub labels: Vec<(String, String)>,
    pub value: Option<f64>,
    pub status: Status,
}

/// Judges the chosen query's rows. No rows at all: one no-data verdict without labels.
///
/// # Errors
/// Bad input (no such query, unreadable data, missing columns).
pub fn judge(c: &Config, inputs: &[(String, Vec<u8>)]) -> Result<Vec<Verdict>, String> {
    let data = match &c.query {
        Some(name) => inputs
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| format!("no query named {name:?} among the rule's queries"))?,
        None => inputs.first().ok_or("the rule has no query")?,
    };
    let (_, batches) = plugin_sdk::ipc::read(&data.1)?;
    let groups = group(
        &batches,
        c.label_columns.as_deref(),
        c.value_column.as_deref(),
        c.reducer,
    )?;
    if groups.is_empty() {
        return Ok(vec![Verdict {
            labels: Vec::new(),
            value: None,
            status: Status::NoData,
        }]);
    }
    Ok(groups
        .into_iter()
        .map(|g| {
            let status = match g.value {
                None => Status::NoData,
                Some(v) => c
                    .thresholds
                    .iter()
                    .find(|t| t.matches(v))
                    .map_or(Status::Ok, |t| Status::Alerting {
                        severity: t.severity.clone(),
                        threshold: t.describe(),
                    }),
            };
            Verdict {
                labels: g.labels,
                value: g.value,
                status,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn data(rows: &[(&str, f64)]) -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("service", DataType::Utf8, false),
            Field::new("p99_ms", DataType::Float64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("batch");
        plugin_sdk::ipc::write(&schema, &[batch]).expect("ipc")
    }

    #[test]
    fn severities_apply_in_order_per_series() {
        let c = config(
            r#"{"reducer":"max","thresholds":[
                {"severity":"critical","op":"above","value":500},
                {"severity":"warning","op":"above","value":200}]}"#,
        )
        .expect("config");
        let input = vec![(
            "A".to_string(),
            data(&[("api", 100.0), ("api", 700.0), ("db", 300.0), ("web", 50.0)]),
        )];
        let v = judge(&c, &input).expect("judge");
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].labels, vec![("service".into(), "api".into())]);
        assert!(
            matches!(&v[0].status, Status::Alerting { severity, .. } if severity == "critical")
        );
        assert!(matches!(&v[1].status, Status::Alerting { severity, .. } if severity == "warning"));
        assert_eq!(v[2].status, Status::Ok);
        assert_eq!(v[2].value, Some(50.0));
    }

    #[test]
    fn ranges_and_no_data() {
        let between =
            config(r#"{"thresholds":[{"op":"between","value":10,"value2":20}]}"#).expect("c");
        let outside =
            config(r#"{"thresholds":[{"op":"outside","value":10,"value2":20}]}"#).expect("c");
        let below = config(r#"{"thresholds":[{"op":"below","value":10}]}"#).expect("c");
        for (c, v, alert) in [
            (&between, 15.0, true),
            (&between, 25.0, false),
            (&outside, 25.0, true),
            (&outside, 15.0, false),
            (&below, 5.0, true),
            (&below, 10.0, false),
        ] {
            let got = judge(c, &[("A".into(), data(&[("x", v)]))]).expect("judge");
            assert_eq!(
                matches!(got[0].status, Status::Alerting { .. }),
                alert,
                "{v} {:?}",
                c.thresholds[0].op
            );
        }
        let none = judge(&below, &[("A".into(), data(&[]))]).expect("judge");
        assert_eq!(none[0].status, Status::NoData);
        assert!(
            judge(
                &config(r#"{"query":"B","thresholds":[{"op":"above","value":1}]}"#).expect("c"),
                &[("A".into(), data(&[]))]
            )
            .is_err()
        );
    }

    #[test]
    fn bad_configs_name_the_field() {
        let e =
            config(r#"{"thresholds":[{"op":"between","value":10}]}"#).expect_err("no upper bound");
        assert_eq!(e.path, "/thresholds/0/value2");
        let e = config(r#"{"thresholds":[{"op":"sideways","value":10}]}"#).expect_err("bad op");
        assert_eq!(e.path, "/thresholds/0/op");
        let e = config(r#"{"thresholds":[]}"#).expect_err("empty");
        assert_eq!(e.path, "/thresholds");
        assert!(config("{}").is_err());
        assert!(SCHEMA.contains("\"thresholds\""));
    }
}

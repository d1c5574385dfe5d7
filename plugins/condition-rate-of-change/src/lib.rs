//! `rate-of-change`: an alert condition on how fast a series moves over the query range. Per
//! series (rows grouped by their string columns, ordered by time) the change from its first to
//! its last point is measured as a `rate` per `per` (default per second), a plain `delta`, or a
//! `percent` of the first value; `counter: true` treats drops as counter resets, as
//! Prometheus' `increase()` does. The thresholds then apply as in `threshold`. A series with
//! fewer than two points is `no-data`.

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

use plugin_sdk::config::{ConfigProblem, parse};
use plugin_sdk::plugin::{Condition, Context, Describe, Failure, Input, Outcome, Status, Verdict};
use plugin_sdk::series::{label_columns, points, value_column};
use plugin_sdk::threshold::{self, Threshold};
use plugin_sdk::time::{self, duration_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Measure {
    #[default]
    Rate,
    Delta,
    Percent,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    time_column: Option<String>,
    #[serde(default)]
    value_column: Option<String>,
    #[serde(default)]
    label_columns: Option<Vec<String>>,
    #[serde(default)]
    measure: Measure,
    #[serde(default)]
    per: Option<String>,
    #[serde(default)]
    counter: bool,
    thresholds: Vec<Threshold>,
}

#[derive(Debug, Clone)]
pub struct Config {
    query: Option<String>,
    time_column: Option<String>,
    value_column: Option<String>,
    label_columns: Option<Vec<String>>,
    measure: Measure,
    per_ms: i64,
    counter: bool,
    thresholds: Vec<Threshold>,
}

/// The change of a series' points under a measure (`None`: not measurable).
pub fn change(points: &[(i64, f64)], measure: Measure, per_ms: i64, counter: bool) -> Option<f64> {
    let (first, last) = (points.first()?, points.last()?);
    if points.len() < 2 || last.0 <= first.0 {
        return None;
    }
    let delta = if counter {
        points
            .windows(2)
            .map(|w| {
                if w[1].1 >= w[0].1 {
                    w[1].1 - w[0].1
                } else {
                    w[1].1
                }
            })
            .sum()
    } else {
        last.1 - first.1
    };
    #[allow(clippy::cast_precision_loss)]
    match measure {
        Measure::Delta => Some(delta),
        Measure::Rate => Some(delta * per_ms as f64 / (last.0 - first.0) as f64),
        Measure::Percent => (first.1 != 0.0).then(|| delta / first.1.abs() * 100.0),
    }
}

pub struct RateOfChange;

impl Describe for RateOfChange {
    const NAME: &'static str = "rate-of-change";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Alerts when a series changes too fast over the query range: a rate, a delta or a percent, counters' resets handled.";
    const SCHEMA: &'static str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object", "additionalProperties": false, "required": ["thresholds"],
  "properties": {
    "query": {"type": "string", "description": "the query to judge (default: the first)"},
    "time_column": {"type": "string", "description": "default: the first timestamp column"},
    "value_column": {"type": "string", "description": "default: the last numeric column"},
    "label_columns": {"type": "array", "items": {"type": "string"}},
    "measure": {"enum": ["rate", "delta", "percent"], "default": "rate"},
    "per": {"type": "string", "default": "1s", "description": "the unit of a rate, e.g. 1s, 1m"},
    "counter": {"type": "boolean", "default": false, "description": "drops are counter resets"},
    "thresholds": {
      "type": "array", "minItems": 1,
      "items": {
        "type": "object", "additionalProperties": false, "required": ["op", "value"],
        "properties": {
          "severity": {"type": "string", "default": "critical"},
          "op": {"enum": ["above", "below", "between", "outside"]},
          "value": {"type": "number"},
          "value2": {"type": "number"}
        }
      }
    }
  }
}"#;
    type Config = Config;

    fn config(json: &str) -> Result<Config, ConfigProblem> {
        let raw: RawConfig = parse(json)?;
        threshold::check(&raw.thresholds, "/thresholds")?;
        let per_ms = match &raw.per {
            Some(p) => duration_ms(p).map_err(|message| ConfigProblem {
                path: "/per".into(),
                message,
            })?,
            None => 1000,
        };
        Ok(Config {
            query: raw.query,
            time_column: raw.time_column,
            value_column: raw.value_column,
            label_columns: raw.label_columns,
            measure: raw.measure,
            per_ms,
            counter: raw.counter,
            thresholds: raw.thresholds,
        })
    }
}

impl Condition for RateOfChange {
    fn evaluate(c: &Config, _ctx: &Context, inputs: &[Input]) -> Result<Outcome, Failure> {
        let (schema, batches) = Input::pick(inputs, c.query.as_deref())?.read()?;
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(Outcome {
                series: vec![Verdict::new(Vec::new(), Status::NoData, None)],
                state: None,
            });
        }
        let bad = Failure::InvalidInput;
        let t = time::column(&schema, c.time_column.as_deref()).map_err(bad)?;
        let v = value_column(&schema, c.value_column.as_deref(), Some(t)).map_err(bad)?;
        let labels = label_columns(&schema, c.label_columns.as_deref()).map_err(bad)?;
        let series = points(&batches, &labels, t, v)
            .into_iter()
            .map(
                |(labels, pts)| match change(&pts, c.measure, c.per_ms, c.counter) {
                    None => Verdict::new(labels, Status::NoData, None)
                        .annotate("reason", "fewer than two points, or a percent of zero"),
                    Some(x) => {
                        let hit = threshold::first_match(&c.thresholds, x);
                        let status = if hit.is_some() {
                            Status::Alerting
                        } else {
                            Status::Ok
                        };
                        let mut verdict = Verdict::new(labels, status, Some(x))
                            .annotate("from", pts[0].1)
                            .annotate("to", pts[pts.len() - 1].1);
                        if let Some((severity, description)) = hit {
                            verdict.severity = Some(severity);
                            verdict = verdict.annotate("threshold", description);
                        }
                        verdict
                    }
                },
            )
            .collect();
        Ok(Outcome {
            series,
            state: None,
        })
    }
}

plugin_sdk::export_condition!(RateOfChange, wit = "../../wit");

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn input(rows: &[(&str, i64, f64)]) -> Vec<Input> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
            Field::new("value", DataType::Float64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("batch");
        vec![Input {
            name: "A".into(),
            data: plugin_sdk::ipc::write(&schema, &[batch]).expect("ipc"),
        }]
    }

    #[test]
    fn measures() {
        let pts = [(0, 100.0), (30_000, 40.0), (60_000, 160.0)];
        assert_eq!(change(&pts, Measure::Delta, 1000, false), Some(60.0));
        assert_eq!(change(&pts, Measure::Rate, 1000, false), Some(1.0));
        assert_eq!(change(&pts, Measure::Rate, 60_000, false), Some(60.0));
        assert_eq!(change(&pts, Measure::Percent, 1000, false), Some(60.0));
        // As a counter, 100 → 40 is a reset: increase 40, then 120.
        assert_eq!(change(&pts, Measure::Delta, 1000, true), Some(160.0));
        assert_eq!(change(&pts[..1], Measure::Delta, 1000, false), None);
        assert_eq!(
            change(&[(0, 0.0), (1, 5.0)], Measure::Percent, 1000, false),
            None
        );
    }

    #[test]
    fn series_alert_on_fast_change() {
        let c = RateOfChange::config(
            r#"{"measure":"percent","thresholds":[{"op":"above","value":50,"severity":"warning"},{"op":"below","value":-50}]}"#,
        )
        .expect("config");
        let out = RateOfChange::evaluate(
            &c,
            &Context::default(),
            &input(&[
                ("a", 2000, 300.0),
                ("a", 1000, 100.0),
                ("b", 1000, 100.0),
                ("b", 2000, 110.0),
                ("c", 1000, 100.0),
                ("c", 2000, 10.0),
                ("d", 1000, 5.0),
            ]),
        )
        .expect("eval");
        let got: Vec<_> = out
            .series
            .iter()
            .map(|s| (s.labels[0].1.as_str(), s.status, s.severity.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", Status::Alerting, Some("warning")),
                ("b", Status::Ok, None),
                ("c", Status::Alerting, Some("critical")),
                ("d", Status::NoData, None),
            ]
        );
        assert_eq!(
            out.series[0].value,
            Some(200.0),
            "points are ordered by time"
        );
        assert_eq!(
            RateOfChange::config(r#"{"per":"fortnight","thresholds":[{"op":"above","value":1}]}"#)
                .expect_err("bad")
                .path,
            "/per"
        );
    }
}

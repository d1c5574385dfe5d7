//! `absence`: an alert condition for data that stops arriving. Each series (rows grouped by
//! their string columns) alerts once its newest point is older than `for`. Series are
//! remembered in the state blob, so one whose rows have left the query range entirely still
//! alerts, until it has been silent for `forget_after`. A query with no rows and no remembered
//! series alerts as one series without labels.

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

use std::collections::BTreeMap;

use plugin_sdk::config::{ConfigProblem, parse};
use plugin_sdk::plugin::{Condition, Context, Describe, Failure, Input, Outcome, Status, Verdict};
use plugin_sdk::series::{label_columns, labels_at};
use plugin_sdk::time::{self, duration_ms};

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    time_column: Option<String>,
    #[serde(default)]
    label_columns: Option<Vec<String>>,
    #[serde(default = "default_for", rename = "for")]
    silent_for: String,
    #[serde(default = "default_forget")]
    forget_after: String,
    #[serde(default)]
    severity: Option<String>,
}

fn default_for() -> String {
    "5m".into()
}

fn default_forget() -> String {
    "24h".into()
}

#[derive(Debug, Clone)]
pub struct Config {
    pub query: Option<String>,
    pub time_column: Option<String>,
    pub label_columns: Option<Vec<String>>,
    pub silent_ms: i64,
    pub forget_ms: i64,
    pub severity: Option<String>,
}

/// Series remembered between evaluations, at most this many (the stalest are dropped).
const MAX_SERIES: usize = 10_000;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct State {
    /// `(labels, newest point in unix ms)`.
    last_seen: Vec<(Vec<(String, String)>, i64)>,
}

pub struct Absence;

impl Describe for Absence {
    const NAME: &'static str = "absence";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Alerts when a series has sent no data for a duration; series are remembered across evaluations.";
    const SCHEMA: &'static str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object", "additionalProperties": false,
  "properties": {
    "query": {"type": "string", "description": "the query to watch (default: the first)"},
    "time_column": {"type": "string", "description": "default: the first timestamp column"},
    "label_columns": {"type": "array", "items": {"type": "string"}, "description": "default: every string column"},
    "for": {"type": "string", "default": "5m", "description": "silence that alerts, e.g. 5m"},
    "forget_after": {"type": "string", "default": "24h", "description": "silence after which a series is forgotten"},
    "severity": {"type": "string"}
  }
}"#;
    type Config = Config;

    fn config(json: &str) -> Result<Config, ConfigProblem> {
        let raw: RawConfig = parse(json)?;
        let at = |path: &'static str| {
            move |message: String| ConfigProblem {
                path: path.into(),
                message,
            }
        };
        let silent_ms = duration_ms(&raw.silent_for).map_err(at("/for"))?;
        let forget_ms = duration_ms(&raw.forget_after).map_err(at("/forget_after"))?;
        if forget_ms <= silent_ms {
            return Err(at("/forget_after")("must be longer than for".into()));
        }
        Ok(Config {
            query: raw.query,
            time_column: raw.time_column,
            label_columns: raw.label_columns,
            silent_ms,
            forget_ms,
            severity: raw.severity,
        })
    }
}

impl Condition for Absence {
    fn evaluate(c: &Config, ctx: &Context, inputs: &[Input]) -> Result<Outcome, Failure> {
        let (schema, batches) = Input::pick(inputs, c.query.as_deref())?.read()?;
        let mut seen: BTreeMap<Vec<(String, String)>, i64> = match &ctx.state {
            Some(bytes) => serde_json::from_slice::<State>(bytes)
                .map(|s| s.last_seen.into_iter().collect())
                .unwrap_or_default(),
            None => BTreeMap::new(),
        };
        let has_rows = batches.iter().any(|b| b.num_rows() > 0);
        if has_rows {
            let t =
                time::column(&schema, c.time_column.as_deref()).map_err(Failure::InvalidInput)?;
            let labels = label_columns(&schema, c.label_columns.as_deref())
                .map_err(Failure::InvalidInput)?;
            for b in &batches {
                for row in 0..b.num_rows() {
                    let Some(ms) = time::millis_at(b.column(t).as_ref(), row) else {
                        continue;
                    };
                    let e = seen.entry(labels_at(b, &labels, row)).or_insert(ms);
                    *e = (*e).max(ms);
                }
            }
        }
        let now = ctx.evaluation_time_ms;
        seen.retain(|_, last| now - *last < c.forget_ms);
        if seen.len() > MAX_SERIES {
            let mut by_age: Vec<i64> = seen.values().copied().collect();
            by_age.sort_unstable_by(|a, b| b.cmp(a));
            let cutoff = by_age[MAX_SERIES - 1];
            seen.retain(|_, last| *last >= cutoff);
        }
        let mut series = Vec::with_capacity(seen.len().max(1));
        if seen.is_empty() {
            let mut v = Verdict::new(Vec::new(), Status::Alerting, None)
                .annotate("reason", "the query returned no data");
            v.severity.clone_from(&c.severity);
            series.push(v);
        }
        for (labels, last) in &seen {
            let silent = (now - last).max(0);
            #[allow(clippy::cast_precision_loss)]
            let seconds = silent as f64 / 1000.0;
            let status = if silent >= c.silent_ms {
                Status::Alerting
            } else {
                Status::Ok
            };
            let mut v = Verdict::new(labels.clone(), status, Some(seconds))
                .annotate("last_seen_ms", last)
                .annotate("silent_for_s", seconds);
            if status == Status::Alerting {
                v.severity.clone_from(&c.severity);
            }
            series.push(v);
        }
        let state = State {
            last_seen: seen.into_iter().collect(),
        };
        let state = serde_json::to_vec(&state).map_err(|e| Failure::Internal(e.to_string()))?;
        Ok(Outcome {
            series,
            state: Some(state),
        })
    }
}

plugin_sdk::export_condition!(Absence, wit = "../../wit");

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{RecordBatch, StringArray, TimestampMillisecondArray};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};

    use super::*;

    fn input(rows: &[(&str, i64)]) -> Vec<Input> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("service", DataType::Utf8, false),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("batch");
        vec![Input {
            name: "A".into(),
            data: plugin_sdk::ipc::write(&schema, &[batch]).expect("ipc"),
        }]
    }

    fn at(now: i64, state: Option<Vec<u8>>) -> Context {
        Context {
            evaluation_time_ms: now,
            state,
            ..Context::default()
        }
    }

    #[test]
    fn a_silent_series_alerts_and_is_remembered_after_leaving_the_range() {
        let c = Absence::config(r#"{"for":"5m"}"#).expect("config");
        let out = Absence::evaluate(
            &c,
            &at(600_000, None),
            &input(&[("api", 590_000), ("db", 200_000), ("db", 250_000)]),
        )
        .expect("eval");
        let status: Vec<_> = out
            .series
            .iter()
            .map(|s| (s.labels[0].1.as_str(), s.status))
            .collect();
        assert_eq!(status, vec![("api", Status::Ok), ("db", Status::Alerting)]);
        assert_eq!(out.series[1].value, Some(350.0));
        // Ten minutes later neither sends: api's rows left the range, but it is remembered.
        let later = Absence::evaluate(&c, &at(1_200_000, out.state), &input(&[])).expect("eval");
        assert_eq!(later.series.len(), 2);
        assert!(later.series.iter().all(|s| s.status == Status::Alerting));
    }

    #[test]
    fn nothing_at_all_alerts_once_and_old_series_are_forgotten() {
        let c = Absence::config(r#"{"for":"1m","forget_after":"10m","severity":"warning"}"#)
            .expect("config");
        let out = Absence::evaluate(&c, &at(1_000, None), &input(&[])).expect("eval");
        assert_eq!(out.series.len(), 1);
        assert!(out.series[0].labels.is_empty());
        assert_eq!(out.series[0].status, Status::Alerting);
        assert_eq!(out.series[0].severity.as_deref(), Some("warning"));
        let seen = Absence::evaluate(&c, &at(60_000, None), &input(&[("api", 59_000)])).expect("e");
        let gone = Absence::evaluate(&c, &at(60_000 + 11 * 60_000, seen.state), &input(&[]))
            .expect("eval");
        assert!(gone.series[0].labels.is_empty(), "api was forgotten");
    }

    #[test]
    fn bad_configs_name_the_field() {
        assert_eq!(
            Absence::config(r#"{"for":"soon"}"#).expect_err("bad").path,
            "/for"
        );
        assert_eq!(
            Absence::config(r#"{"for":"1h","forget_after":"30m"}"#)
                .expect_err("bad")
                .path,
            "/forget_after"
        );
        assert!(Absence::config("{}").is_ok());
    }
}

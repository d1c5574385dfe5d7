//! `z-score`: anomaly detection against a baseline the plugin learns in its state blob. Each
//! evaluation reduces every series (rows grouped by their string columns) to one value and
//! compares it with that series' exponentially weighted mean and standard deviation:
//! `z = (value - mean) / stddev`. Past `min_samples` observations, `|z|` above `threshold` (in
//! the chosen direction) alerts. With `seasonality`, each series keeps one baseline per slot of
//! the period (e.g. 24 hourly slots of a day), so Monday 9:00 is compared with earlier 9:00s.
//! Anomalous values are not learned unless `learn_anomalies` is set, so an incident does not
//! become the new normal. The verdict's value is the z-score; the observed value, mean and
//! stddev are annotations.

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

use std::collections::BTreeMap;

use plugin_sdk::config::{ConfigProblem, parse};
use plugin_sdk::plugin::{Condition, Context, Describe, Failure, Input, Outcome, Status, Verdict};
use plugin_sdk::series::{Reducer, group};
use plugin_sdk::time::duration_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Both,
    Above,
    Below,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeason {
    period: String,
    buckets: u32,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    value_column: Option<String>,
    #[serde(default)]
    label_columns: Option<Vec<String>>,
    #[serde(default = "default_reducer")]
    reducer: Reducer,
    #[serde(default = "default_threshold")]
    threshold: f64,
    #[serde(default)]
    direction: Direction,
    #[serde(default = "default_min_samples")]
    min_samples: u32,
    #[serde(default = "default_window")]
    window: u32,
    #[serde(default)]
    learn_anomalies: bool,
    #[serde(default)]
    seasonality: Option<RawSeason>,
    #[serde(default)]
    severity: Option<String>,
}

fn default_reducer() -> Reducer {
    Reducer::Avg
}
fn default_threshold() -> f64 {
    3.0
}
fn default_min_samples() -> u32 {
    10
}
fn default_window() -> u32 {
    100
}

#[derive(Debug, Clone)]
pub struct Config {
    query: Option<String>,
    value_column: Option<String>,
    label_columns: Option<Vec<String>>,
    reducer: Reducer,
    threshold: f64,
    direction: Direction,
    min_samples: u32,
    window: u32,
    learn_anomalies: bool,
    /// `(period ms, slots)`.
    season: Option<(i64, u32)>,
    severity: Option<String>,
}

/// A baseline: observations, exponentially weighted mean and variance.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Baseline {
    pub n: u32,
    pub mean: f64,
    pub var: f64,
}

impl Baseline {
    /// Learns `x`: a plain running mean until `window` observations, then exponential weights
    /// with the same memory.
    pub fn learn(&mut self, x: f64, window: u32) {
        self.n = self.n.saturating_add(1);
        let a = 1.0 / f64::from(self.n.min(window.max(1)));
        let d = x - self.mean;
        self.mean += a * d;
        self.var = (1.0 - a) * (self.var + a * d * d);
    }

    pub fn z(&self, x: f64) -> f64 {
        let sd = self.var.max(0.0).sqrt();
        let d = x - self.mean;
        if sd > 1e-9 * self.mean.abs().max(1.0) {
            d / sd
        } else if d.abs() <= 1e-9 * self.mean.abs().max(1.0) {
            0.0
        } else {
            // A flat baseline and a different value: as anomalous as it gets, but finite.
            d.signum() * 1e9
        }
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct SeriesState {
    labels: Vec<(String, String)>,
    /// One baseline per seasonal slot (one slot without seasonality).
    slots: BTreeMap<u32, Baseline>,
    seen_ms: i64,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct State {
    series: Vec<SeriesState>,
}

/// Series kept in the state blob at most (the least recently seen are dropped).
const MAX_SERIES: usize = 2_000;
/// A series not seen for this long is forgotten.
const FORGET_MS: i64 = 14 * 86_400_000;

pub struct ZScore;

impl Describe for ZScore {
    const NAME: &'static str = "z-score";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Alerts when a series is an outlier against the baseline it learned (z-score), optionally per seasonal slot.";
    const SCHEMA: &'static str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object", "additionalProperties": false,
  "properties": {
    "query": {"type": "string"},
    "value_column": {"type": "string"},
    "label_columns": {"type": "array", "items": {"type": "string"}},
    "reducer": {"enum": ["last", "avg", "min", "max", "sum", "count"], "default": "avg"},
    "threshold": {"type": "number", "exclusiveMinimum": 0, "default": 3},
    "direction": {"enum": ["both", "above", "below"], "default": "both"},
    "min_samples": {"type": "integer", "minimum": 2, "default": 10},
    "window": {"type": "integer", "minimum": 2, "default": 100, "description": "evaluations the baseline remembers"},
    "learn_anomalies": {"type": "boolean", "default": false},
    "seasonality": {
      "type": "object", "additionalProperties": false, "required": ["period", "buckets"],
      "properties": {"period": {"type": "string", "description": "e.g. 1d, 1w"}, "buckets": {"type": "integer", "minimum": 1, "maximum": 1008}}
    },
    "severity": {"type": "string"}
  }
}"#;
    type Config = Config;

    fn config(json: &str) -> Result<Config, ConfigProblem> {
        let raw: RawConfig = parse(json)?;
        let problem = |path: &str, message: &str| ConfigProblem {
            path: path.into(),
            message: message.into(),
        };
        if !(raw.threshold.is_finite() && raw.threshold > 0.0) {
            return Err(problem("/threshold", "must be a positive number"));
        }
        if raw.min_samples < 2 {
            return Err(problem("/min_samples", "must be at least 2"));
        }
        if raw.window < 2 {
            return Err(problem("/window", "must be at least 2"));
        }
        let season = match raw.seasonality {
            None => None,
            Some(s) => {
                let period =
                    duration_ms(&s.period).map_err(|m| problem("/seasonality/period", &m))?;
                if s.buckets == 0 || s.buckets > 1008 {
                    return Err(problem("/seasonality/buckets", "must be 1 to 1008"));
                }
                Some((period, s.buckets))
            }
        };
        Ok(Config {
            query: raw.query,
            value_column: raw.value_column,
            label_columns: raw.label_columns,
            reducer: raw.reducer,
            threshold: raw.threshold,
            direction: raw.direction,
            min_samples: raw.min_samples,
            window: raw.window,
            learn_anomalies: raw.learn_anomalies,
            season,
            severity: raw.severity,
        })
    }
}

/// The seasonal slot of `t_ms`.
fn slot(season: Option<(i64, u32)>, t_ms: i64) -> u32 {
    match season {
        None => 0,
        Some((period, buckets)) => {
            let phase = t_ms.rem_euclid(period);
            u32::try_from(i128::from(phase) * i128::from(buckets) / i128::from(period)).unwrap_or(0)
        }
    }
}

impl Condition for ZScore {
    fn evaluate(c: &Config, ctx: &Context, inputs: &[Input]) -> Result<Outcome, Failure> {
        let (_, batches) = Input::pick(inputs, c.query.as_deref())?.read()?;
        let groups = group(
            &batches,
            c.label_columns.as_deref(),
            c.value_column.as_deref(),
            c.reducer,
        )
        .map_err(Failure::InvalidInput)?;
        let now = ctx.evaluation_time_ms;
        let mut state: BTreeMap<Vec<(String, String)>, SeriesState> = ctx
            .state
            .as_deref()
            .and_then(|b| serde_json::from_slice::<State>(b).ok())
            .map(|s| {
                s.series
                    .into_iter()
                    .map(|x| (x.labels.clone(), x))
                    .collect()
            })
            .unwrap_or_default();
        let slot = slot(c.season, now);
        let mut series = Vec::with_capacity(groups.len().max(1));
        if groups.is_empty() {
            series.push(Verdict::new(Vec::new(), Status::NoData, None));
        }
        for g in groups {
            let Some(x) = g.value else {
                series.push(Verdict::new(g.labels, Status::NoData, None));
                continue;
            };
            let entry = state
                .entry(g.labels.clone())
                .or_insert_with(|| SeriesState {
                    labels: g.labels.clone(),
                    ..SeriesState::default()
                });
            entry.seen_ms = now;
            let base = entry.slots.entry(slot).or_default();
            let verdict = if base.n < c.min_samples {
                base.learn(x, c.window);
                Verdict::new(g.labels, Status::Ok, None)
                    .annotate("observed", x)
                    .annotate("learning", format!("{}/{}", base.n, c.min_samples))
            } else {
                let z = base.z(x);
                let anomalous = match c.direction {
                    Direction::Both => z.abs() > c.threshold,
                    Direction::Above => z > c.threshold,
                    Direction::Below => z < -c.threshold,
                };
                let v = Verdict::new(
                    g.labels,
                    if anomalous {
                        Status::Alerting
                    } else {
                        Status::Ok
                    },
                    Some(z),
                )
                .annotate("observed", x)
                .annotate("mean", base.mean)
                .annotate("stddev", base.var.max(0.0).sqrt());
                if !anomalous || c.learn_anomalies {
                    base.learn(x, c.window);
                }
                if anomalous {
                    Verdict {
                        severity: c.severity.clone(),
                        ..v
                    }
                } else {
                    v
                }
            };
            series.push(verdict);
        }
        state.retain(|_, s| now - s.seen_ms < FORGET_MS);
        let mut kept: Vec<SeriesState> = state.into_values().collect();
        if kept.len() > MAX_SERIES {
            kept.sort_by_key(|s| std::cmp::Reverse(s.seen_ms));
            kept.truncate(MAX_SERIES);
        }
        let blob = serde_json::to_vec(&State { series: kept })
            .map_err(|e| Failure::Internal(e.to_string()))?;
        Ok(Outcome {
            series,
            state: Some(blob),
        })
    }
}

plugin_sdk::export_condition!(ZScore, wit = "../../wit");

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn input(rows: &[(&str, f64)]) -> Vec<Input> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("service", DataType::Utf8, false),
            Field::new("latency", DataType::Float64, false),
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
        vec![Input {
            name: "A".into(),
            data: plugin_sdk::ipc::write(&schema, &[batch]).expect("ipc"),
        }]
    }

    fn run(c: &Config, now: i64, state: Option<Vec<u8>>, rows: &[(&str, f64)]) -> Outcome {
        let ctx = Context {
            evaluation_time_ms: now,
            state,
            ..Context::default()
        };
        ZScore::evaluate(c, &ctx, &input(rows)).expect("evaluate")
    }

    #[test]
    fn learns_then_flags_an_outlier_without_learning_it() {
        let c = ZScore::config(r#"{"min_samples":5,"threshold":3}"#).expect("config");
        let mut state = None;
        for i in 0..20 {
            let wobble = if i % 2 == 0 { 1.0 } else { -1.0 };
            let out = run(&c, i * 60_000, state, &[("api", 100.0 + wobble)]);
            assert_eq!(out.series[0].status, Status::Ok, "evaluation {i}");
            state = out.state;
        }
        let spike = run(&c, 21 * 60_000, state.clone(), &[("api", 150.0)]);
        assert_eq!(spike.series[0].status, Status::Alerting);
        assert!(spike.series[0].value.is_some_and(|z| z > 3.0));
        // The spike was not learned: the same spike again is still anomalous.
        let again = run(&c, 22 * 60_000, spike.state, &[("api", 150.0)]);
        assert_eq!(again.series[0].status, Status::Alerting);
        let normal = run(&c, 22 * 60_000, state, &[("api", 100.5)]);
        assert_eq!(normal.series[0].status, Status::Ok);
    }

    #[test]
    fn seasonal_slots_keep_their_own_baselines() {
        // Busy at 9:00, quiet at 3:00, every day: each hour is normal for its slot.
        let c = ZScore::config(r#"{"min_samples":3,"seasonality":{"period":"1d","buckets":24}}"#)
            .expect("config");
        let hour = 3_600_000;
        let mut state = None;
        for day in 0..6 {
            for (h, v) in [
                (3, 10.0 + if day % 2 == 0 { 0.0 } else { 1.0 }),
                (
                    9,
                    1000.0 + [0.0, 1.0, 2.0][usize::try_from(day % 3).unwrap_or(0)],
                ),
            ] {
                let out = run(&c, day * 24 * hour + h * hour, state, &[("api", v)]);
                assert_eq!(out.series[0].status, Status::Ok, "day {day} hour {h}");
                state = out.state;
            }
        }
        // 1000 at 3:00 is an anomaly for that slot.
        let odd = run(&c, 7 * 24 * hour + 3 * hour, state, &[("api", 1000.0)]);
        assert_eq!(odd.series[0].status, Status::Alerting);
    }

    #[test]
    fn directions_configs_and_no_data() {
        let mut b = Baseline::default();
        for x in [10.0, 12.0, 10.0, 12.0] {
            b.learn(x, 100);
        }
        assert!((b.mean - 11.0).abs() < 1e-9);
        assert!(b.z(20.0) > 3.0 && b.z(2.0) < -3.0);
        let flat = Baseline {
            n: 10,
            mean: 5.0,
            var: 0.0,
        };
        assert_eq!(flat.z(5.0), 0.0);
        assert!(flat.z(6.0) > 1e6);
        assert_eq!(
            ZScore::config(r#"{"threshold":0}"#).expect_err("bad").path,
            "/threshold"
        );
        assert_eq!(
            ZScore::config(r#"{"seasonality":{"period":"1d","buckets":0}}"#)
                .expect_err("bad")
                .path,
            "/seasonality/buckets"
        );
        let c = ZScore::config("{}").expect("defaults");
        assert_eq!(run(&c, 0, None, &[]).series[0].status, Status::NoData);
    }
}

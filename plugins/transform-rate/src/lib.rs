//! `rate`: a widget transform that turns a value column into its change per unit of time, per
//! series (rows grouped by their string columns, ordered by time). `rate` (the default) is for
//! counters: a drop is a reset, counted from zero as Prometheus' `rate()` does, so the result
//! is never negative. `derivative` is for gauges and may be negative. The first point of each
//! series has no previous one: it is dropped, or kept as null with `keep_first`.

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch};
use arrow_schema::{Schema, SchemaRef};
use plugin_sdk::config::{ConfigProblem, parse};
use plugin_sdk::plugin::{Describe, Failure, Transform};
use plugin_sdk::series::{
    SeriesColumns, concat, number_at, rows_by_series, series_columns, take_rows, with_float64,
};
use plugin_sdk::time::duration_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Rate,
    Derivative,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    per: Option<String>,
    #[serde(default)]
    value_column: Option<String>,
    #[serde(default)]
    time_column: Option<String>,
    #[serde(default)]
    group_by: Option<Vec<String>>,
    #[serde(default)]
    keep_first: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    mode: Mode,
    per_ms: i64,
    value_column: Option<String>,
    time_column: Option<String>,
    group_by: Option<Vec<String>>,
    keep_first: bool,
}

/// Per-point change of sorted points (`None` for the first, or a zero time step).
pub fn rates(points: &[(i64, Option<f64>)], mode: Mode, per_ms: i64) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(points.len());
    let mut prev: Option<(i64, f64)> = None;
    for &(t, v) in points {
        let r = match (prev, v) {
            (Some((pt, pv)), Some(v)) if t > pt => {
                let delta = if mode == Mode::Rate && v < pv {
                    v
                } else {
                    v - pv
                };
                #[allow(clippy::cast_precision_loss)]
                Some(delta * per_ms as f64 / (t - pt) as f64)
            }
            _ => None,
        };
        if let Some(v) = v {
            prev = Some((t, v));
        }
        out.push(r);
    }
    out
}

pub struct Rate;

impl Describe for Rate {
    const NAME: &'static str = "rate";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Change per unit of time of each series: a counter's rate (resets handled) or a gauge's derivative.";
    const SCHEMA: &'static str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object", "additionalProperties": false,
  "properties": {
    "mode": {"enum": ["rate", "derivative"], "default": "rate"},
    "per": {"type": "string", "default": "1s", "description": "the unit of the result, e.g. 1s, 1m"},
    "value_column": {"type": "string"},
    "time_column": {"type": "string"},
    "group_by": {"type": "array", "items": {"type": "string"}},
    "keep_first": {"type": "boolean", "default": false, "description": "keep each series' first point, as null"}
  }
}"#;
    type Config = Config;

    fn config(json: &str) -> Result<Config, ConfigProblem> {
        let raw: RawConfig = parse(json)?;
        let per_ms = match &raw.per {
            Some(p) => duration_ms(p).map_err(|message| ConfigProblem {
                path: "/per".into(),
                message,
            })?,
            None => 1000,
        };
        Ok(Config {
            mode: raw.mode,
            per_ms,
            value_column: raw.value_column,
            time_column: raw.time_column,
            group_by: raw.group_by,
            keep_first: raw.keep_first,
        })
    }
}

fn columns(schema: &Schema, c: &Config) -> Result<SeriesColumns, Failure> {
    series_columns(
        schema,
        c.time_column.as_deref(),
        c.value_column.as_deref(),
        c.group_by.as_deref(),
    )
    .map_err(Failure::InvalidInput)
}

impl Transform for Rate {
    fn output_schema(input: &Schema, c: &Config) -> Result<SchemaRef, Failure> {
        Ok(with_float64(input, columns(input, c)?.value))
    }

    fn run(
        schema: &SchemaRef,
        batches: &[RecordBatch],
        c: &Config,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), Failure> {
        let SeriesColumns {
            time: t,
            value: v,
            labels,
        } = columns(schema, c)?;
        let out_schema = with_float64(schema, v);
        let all = concat(schema, batches).map_err(Failure::InvalidInput)?;
        let values = all.column(v);
        let mut rows: Vec<usize> = Vec::with_capacity(all.num_rows());
        let mut out_values: Vec<Option<f64>> = Vec::with_capacity(all.num_rows());
        for (_, series) in rows_by_series(&all, &labels, t) {
            let points: Vec<(i64, Option<f64>)> = series
                .iter()
                .map(|&(t, row)| (t, number_at(values.as_ref(), row)))
                .collect();
            for (i, r) in rates(&points, c.mode, c.per_ms).into_iter().enumerate() {
                if i > 0 || c.keep_first {
                    rows.push(series[i].1);
                    out_values.push(r);
                }
            }
        }
        let mut columns = take_rows(&all, &rows).map_err(Failure::Internal)?;
        columns[v] = Arc::new(Float64Array::from(out_values));
        let batch = RecordBatch::try_new(Arc::clone(&out_schema), columns)
            .map_err(|e| Failure::Internal(e.to_string()))?;
        Ok((out_schema, vec![batch]))
    }
}

plugin_sdk::export_transform!(Rate, wit = "../../wit");

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field};

    use super::*;

    #[test]
    fn counter_rates_handle_resets_and_derivatives_go_negative() {
        let pts = [
            (0, Some(10.0)),
            (10_000, Some(30.0)),
            (20_000, Some(5.0)),
            (30_000, Some(15.0)),
        ];
        assert_eq!(
            rates(&pts, Mode::Rate, 1000),
            vec![None, Some(2.0), Some(0.5), Some(1.0)]
        );
        assert_eq!(
            rates(&pts, Mode::Derivative, 60_000),
            vec![None, Some(120.0), Some(-150.0), Some(60.0)]
        );
        assert_eq!(
            rates(&[(0, Some(1.0)), (0, Some(2.0))], Mode::Rate, 1000),
            vec![None, None]
        );
    }

    #[test]
    fn per_series_in_time_order() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("pod", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
            Field::new("requests", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "a", "b", "a"])),
                Arc::new(Int64Array::from(vec![2000, 1000, 1000, 2000, 3000])),
                Arc::new(Int64Array::from(vec![20, 5, 10, 6, 40])),
            ],
        )
        .expect("batch");
        let c = Rate::config("{}").expect("config");
        let (s, out) = Rate::run(&schema, &[batch], &c).expect("run");
        assert_eq!(s.field(2).data_type(), &DataType::Float64);
        let got: Vec<(String, i64, f64)> = (0..out[0].num_rows())
            .map(|i| {
                (
                    out[0].column(0).as_string::<i32>().value(i).to_string(),
                    out[0]
                        .column(1)
                        .as_primitive::<arrow_array::types::Int64Type>()
                        .value(i),
                    out[0].column(2).as_primitive::<Float64Type>().value(i),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), 2000, 10.0),
                ("a".into(), 3000, 20.0),
                ("b".into(), 2000, 1.0)
            ]
        );
        assert_eq!(
            Rate::config(r#"{"per":"x"}"#).expect_err("bad").path,
            "/per"
        );
    }
}

//! `percent-change`: a widget transform that compares each point with the same series `offset`
//! earlier ("day over day", "week over week"). Two columns are added: `previous_value` and
//! `percent_change` (`(value - previous) / |previous| × 100`). The widget's query covers the
//! shown range plus the offset; points with nothing `offset` earlier (the earlier range itself)
//! are dropped unless `keep_unmatched`. Timestamps match exactly, or within `tolerance`.

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use plugin_sdk::config::{ConfigProblem, parse};
use plugin_sdk::plugin::{Describe, Failure, Transform};
use plugin_sdk::series::{
    SeriesColumns, concat, number_at, rows_by_series, series_columns, take_rows,
};
use plugin_sdk::time::duration_ms;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    offset: String,
    #[serde(default)]
    tolerance: Option<String>,
    #[serde(default)]
    value_column: Option<String>,
    #[serde(default)]
    time_column: Option<String>,
    #[serde(default)]
    group_by: Option<Vec<String>>,
    #[serde(default)]
    keep_unmatched: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    offset_ms: i64,
    tolerance_ms: i64,
    value_column: Option<String>,
    time_column: Option<String>,
    group_by: Option<Vec<String>>,
    keep_unmatched: bool,
}

pub const PREVIOUS: &str = "previous_value";
pub const CHANGE: &str = "percent_change";

/// The value of `points` (time → value) nearest to `t`, at most `tolerance` away.
pub fn at(points: &BTreeMap<i64, f64>, t: i64, tolerance: i64) -> Option<f64> {
    let before = points.range(t.saturating_sub(tolerance)..=t).next_back();
    let after = points.range(t..=t.saturating_add(tolerance)).next();
    match (before, after) {
        (Some(b), Some(a)) => Some(if t - b.0 <= a.0 - t { *b.1 } else { *a.1 }),
        (Some(b), None) => Some(*b.1),
        (None, Some(a)) => Some(*a.1),
        (None, None) => None,
    }
}

pub struct PercentChange;

impl Describe for PercentChange {
    const NAME: &'static str = "percent-change";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Each point's percent change against the same series a fixed offset earlier (day over day, week over week).";
    const SCHEMA: &'static str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object", "additionalProperties": false, "required": ["offset"],
  "properties": {
    "offset": {"type": "string", "description": "how far back the compared point is, e.g. 1d, 1w"},
    "tolerance": {"type": "string", "description": "how far from exactly offset earlier a point may be (default: exact)"},
    "value_column": {"type": "string"},
    "time_column": {"type": "string"},
    "group_by": {"type": "array", "items": {"type": "string"}},
    "keep_unmatched": {"type": "boolean", "default": false}
  }
}"#;
    type Config = Config;

    fn config(json: &str) -> Result<Config, ConfigProblem> {
        let raw: RawConfig = parse(json)?;
        let offset_ms = duration_ms(&raw.offset).map_err(|message| ConfigProblem {
            path: "/offset".into(),
            message,
        })?;
        let tolerance_ms = match &raw.tolerance {
            None => 0,
            Some(t) => duration_ms(t).map_err(|message| ConfigProblem {
                path: "/tolerance".into(),
                message,
            })?,
        };
        Ok(Config {
            offset_ms,
            tolerance_ms,
            value_column: raw.value_column,
            time_column: raw.time_column,
            group_by: raw.group_by,
            keep_unmatched: raw.keep_unmatched,
        })
    }
}

fn columns(schema: &Schema, c: &Config) -> Result<SeriesColumns, Failure> {
    let found = series_columns(
        schema,
        c.time_column.as_deref(),
        c.value_column.as_deref(),
        c.group_by.as_deref(),
    )
    .map_err(Failure::InvalidInput)?;
    for name in [PREVIOUS, CHANGE] {
        if schema.index_of(name).is_ok() {
            return Err(Failure::InvalidInput(format!(
                "the input already has a column {name:?}"
            )));
        }
    }
    Ok(found)
}

impl Transform for PercentChange {
    fn output_schema(input: &Schema, c: &Config) -> Result<SchemaRef, Failure> {
        columns(input, c)?;
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(PREVIOUS, DataType::Float64, true));
        fields.push(Field::new(CHANGE, DataType::Float64, true));
        Ok(Arc::new(Schema::new(fields)))
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
        let out_schema = Self::output_schema(schema, c)?;
        let all = concat(schema, batches).map_err(Failure::InvalidInput)?;
        let values = all.column(v);
        let mut rows = Vec::new();
        let mut previous = Vec::new();
        let mut change = Vec::new();
        for (_, series) in rows_by_series(&all, &labels, t) {
            let by_time: BTreeMap<i64, f64> = series
                .iter()
                .filter_map(|&(t, row)| number_at(values.as_ref(), row).map(|v| (t, v)))
                .collect();
            for &(ts, row) in &series {
                let prev = at(&by_time, ts - c.offset_ms, c.tolerance_ms);
                if prev.is_none() && !c.keep_unmatched {
                    continue;
                }
                let now = number_at(values.as_ref(), row);
                rows.push(row);
                previous.push(prev);
                change.push(match (now, prev) {
                    (Some(n), Some(p)) if p != 0.0 => Some((n - p) / p.abs() * 100.0),
                    _ => None,
                });
            }
        }
        let mut columns = take_rows(&all, &rows).map_err(Failure::Internal)?;
        columns.push(Arc::new(Float64Array::from(previous)));
        columns.push(Arc::new(Float64Array::from(change)));
        let batch = RecordBatch::try_new(Arc::clone(&out_schema), columns)
            .map_err(|e| Failure::Internal(e.to_string()))?;
        Ok((out_schema, vec![batch]))
    }
}

plugin_sdk::export_transform!(PercentChange, wit = "../../wit");

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;
    use arrow_array::{Array, StringArray, TimestampSecondArray};
    use arrow_schema::TimeUnit;

    use super::*;

    #[test]
    fn day_over_day_per_series() {
        let day = 86_400;
        let schema = Arc::new(Schema::new(vec![
            Field::new("service", DataType::Utf8, false),
            Field::new("time", DataType::Timestamp(TimeUnit::Second, None), false),
            Field::new("requests", DataType::Float64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec!["api", "api", "api", "db", "db"])),
                Arc::new(TimestampSecondArray::from(vec![0, day, day + 60, 0, day])),
                Arc::new(Float64Array::from(vec![200.0, 250.0, 10.0, 0.0, 7.0])),
            ],
        )
        .expect("batch");
        let c = PercentChange::config(r#"{"offset":"1d"}"#).expect("config");
        let (s, out) = PercentChange::run(&schema, std::slice::from_ref(&batch), &c).expect("run");
        assert_eq!(s.field(4).name(), CHANGE);
        let b = &out[0];
        let pct = b.column(4).as_primitive::<Float64Type>();
        assert_eq!(b.num_rows(), 2, "only points with a match a day earlier");
        assert_eq!(b.column(0).as_string::<i32>().value(0), "api");
        assert_eq!(pct.value(0), 25.0);
        assert!(pct.is_null(1), "a change from zero is not a percent");
        let loose =
            PercentChange::config(r#"{"offset":"1d","tolerance":"2m","keep_unmatched":true}"#)
                .expect("config");
        let (_, out) = PercentChange::run(&schema, &[batch], &loose).expect("run");
        assert_eq!(out[0].num_rows(), 5);
        let prev = out[0].column(3).as_primitive::<Float64Type>();
        assert_eq!(prev.value(2), 200.0, "within tolerance");
        assert_eq!(PercentChange::config("{}").expect_err("no offset").path, "");
    }
}

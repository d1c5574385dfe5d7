//! `fill-gaps`: a widget transform that gives every series (rows grouped by their string
//! columns) a point at each `step` from its first to its last timestamp, so charts do not draw
//! a straight line across missing data. Missing points' numeric columns are filled with
//! `null` (the default), `zero`, a fixed `value`, the `previous` value, or a `linear`
//! interpolation; label columns are copied; other columns are null. Without `step`, each
//! series' smallest interval between points is used.

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use plugin_sdk::config::{ConfigProblem, parse};
use plugin_sdk::plugin::{Describe, Failure, Transform};
use plugin_sdk::series::{concat, label_columns, number_at, rows_by_series};
use plugin_sdk::time::{self, duration_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fill {
    #[default]
    Null,
    Zero,
    Value,
    Previous,
    Linear,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    step: Option<String>,
    #[serde(default)]
    fill: Fill,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    time_column: Option<String>,
    #[serde(default)]
    group_by: Option<Vec<String>>,
    #[serde(default = "default_max_rows")]
    max_rows: usize,
}

fn default_max_rows() -> usize {
    200_000
}

#[derive(Debug, Clone)]
pub struct Config {
    step_ms: Option<i64>,
    fill: Fill,
    value: f64,
    time_column: Option<String>,
    group_by: Option<Vec<String>>,
    max_rows: usize,
}

pub struct FillGaps;

impl Describe for FillGaps {
    const NAME: &'static str = "fill-gaps";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Gives each series a point at every step, filling missing ones with null, zero, a value, the previous value or a linear interpolation.";
    const SCHEMA: &'static str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object", "additionalProperties": false,
  "properties": {
    "step": {"type": "string", "description": "e.g. 1m; default: each series' smallest interval"},
    "fill": {"enum": ["null", "zero", "value", "previous", "linear"], "default": "null"},
    "value": {"type": "number", "description": "the value filled in with fill = value"},
    "time_column": {"type": "string"},
    "group_by": {"type": "array", "items": {"type": "string"}},
    "max_rows": {"type": "integer", "minimum": 1, "maximum": 1000000, "default": 200000}
  }
}"#;
    type Config = Config;

    fn config(json: &str) -> Result<Config, ConfigProblem> {
        let raw: RawConfig = parse(json)?;
        let step_ms = match &raw.step {
            None => None,
            Some(s) => Some(duration_ms(s).map_err(|message| ConfigProblem {
                path: "/step".into(),
                message,
            })?),
        };
        let value = match (raw.fill, raw.value) {
            (Fill::Value, None) => {
                return Err(ConfigProblem {
                    path: "/value".into(),
                    message: "fill = value needs the value".into(),
                });
            }
            (_, v) => v.unwrap_or(0.0),
        };
        if raw.max_rows == 0 || raw.max_rows > 1_000_000 {
            return Err(ConfigProblem {
                path: "/max_rows".into(),
                message: "must be 1 to 1000000".into(),
            });
        }
        Ok(Config {
            step_ms,
            fill: raw.fill,
            value,
            time_column: raw.time_column,
            group_by: raw.group_by,
            max_rows: raw.max_rows,
        })
    }
}

/// One output row: an input row, or a filled point of a series at a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot {
    Row(usize),
    /// `(time, a row of the same series, for its labels)`.
    Gap(i64, usize),
}

/// The slots of one series (rows sorted by time): its rows, with a gap at each missing step
/// from its first to its last time. Rows off the step grid are kept where they fall.
pub fn slots(rows: &[(i64, usize)], step: Option<i64>) -> Vec<Slot> {
    let step = step.or_else(|| {
        rows.windows(2)
            .map(|w| w[1].0 - w[0].0)
            .filter(|d| *d > 0)
            .min()
    });
    let (Some(step), Some(first)) = (step, rows.first()) else {
        return rows.iter().map(|r| Slot::Row(r.1)).collect();
    };
    let mut out = Vec::with_capacity(rows.len());
    let mut next = first.0;
    for &(t, row) in rows {
        while next < t {
            out.push(Slot::Gap(next, first.1));
            next += step;
        }
        out.push(Slot::Row(row));
        if t == next {
            next += step;
        }
    }
    out
}

/// The filled values of one numeric column over a series' slots.
fn fill_values(
    slots: &[(i64, Slot)],
    value_at: impl Fn(usize) -> Option<f64>,
    c: &Config,
) -> Vec<Option<f64>> {
    let known: Vec<Option<(i64, f64)>> = slots
        .iter()
        .map(|(t, s)| match s {
            Slot::Row(r) => value_at(*r).map(|v| (*t, v)),
            Slot::Gap(..) => None,
        })
        .collect();
    let mut out = Vec::with_capacity(slots.len());
    let mut prev: Option<(i64, f64)> = None;
    for (i, (t, s)) in slots.iter().enumerate() {
        let v = match s {
            Slot::Row(_) => known[i].map(|k| k.1),
            Slot::Gap(..) => match c.fill {
                Fill::Null => None,
                Fill::Zero => Some(0.0),
                Fill::Value => Some(c.value),
                Fill::Previous => prev.map(|p| p.1),
                Fill::Linear => {
                    let next = known[i..].iter().flatten().next();
                    match (prev, next) {
                        #[allow(clippy::cast_precision_loss)]
                        (Some((t0, v0)), Some(&(t1, v1))) if t1 > t0 => {
                            Some(v0 + (v1 - v0) * (t - t0) as f64 / (t1 - t0) as f64)
                        }
                        _ => None,
                    }
                }
            },
        };
        if let Some(k) = known[i] {
            prev = Some(k);
        }
        out.push(v);
    }
    out
}

fn is_filled(schema: &Schema, i: usize, time: usize, labels: &[usize]) -> bool {
    i != time && !labels.contains(&i) && schema.field(i).data_type().is_numeric()
}

impl Transform for FillGaps {
    fn output_schema(input: &Schema, c: &Config) -> Result<SchemaRef, Failure> {
        let bad = Failure::InvalidInput;
        let t = time::column(input, c.time_column.as_deref()).map_err(bad)?;
        let labels = label_columns(input, c.group_by.as_deref()).map_err(bad)?;
        let fields: Vec<Field> = input
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if is_filled(input, i, t, &labels) {
                    Field::new(f.name(), DataType::Float64, true)
                } else if i == t || labels.contains(&i) {
                    f.as_ref().clone()
                } else {
                    f.as_ref().clone().with_nullable(true)
                }
            })
            .collect();
        Ok(Arc::new(Schema::new(fields)))
    }

    fn run(
        schema: &SchemaRef,
        batches: &[RecordBatch],
        c: &Config,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), Failure> {
        let out_schema = Self::output_schema(schema, c)?;
        let t = time::column(schema, c.time_column.as_deref()).map_err(Failure::InvalidInput)?;
        let labels = label_columns(schema, c.group_by.as_deref()).map_err(Failure::InvalidInput)?;
        let all = concat(schema, batches).map_err(Failure::InvalidInput)?;
        let mut series_slots: Vec<Vec<(i64, Slot)>> = Vec::new();
        let mut total = 0usize;
        for (_, rows) in rows_by_series(&all, &labels, t) {
            let s: Vec<(i64, Slot)> = slots(&rows, c.step_ms)
                .into_iter()
                .scan(rows.iter(), |it, s| {
                    Some(match s {
                        Slot::Row(r) => (it.find(|x| x.1 == r).map_or(0, |x| x.0), s),
                        Slot::Gap(ts, _) => (ts, s),
                    })
                })
                .collect();
            total += s.len();
            if total > c.max_rows {
                return Err(Failure::InvalidInput(format!(
                    "filling the gaps would make more than {} rows; use a larger step",
                    c.max_rows
                )));
            }
            series_slots.push(s);
        }
        let flat: Vec<(i64, Slot)> = series_slots.iter().flatten().copied().collect();
        let to_u32 = |r: usize| u32::try_from(r).map_err(|e| Failure::InvalidInput(e.to_string()));
        // Rows as they are; gaps take labels from a row of their series, nothing else.
        let row_of: Vec<Option<u32>> = flat
            .iter()
            .map(|(_, s)| match s {
                Slot::Row(r) => to_u32(*r).map(Some),
                Slot::Gap(..) => Ok(None),
            })
            .collect::<Result<_, _>>()?;
        let label_row: Vec<u32> = flat
            .iter()
            .map(|(_, s)| {
                to_u32(match s {
                    Slot::Row(r) | Slot::Gap(_, r) => *r,
                })
            })
            .collect::<Result<_, _>>()?;
        let take = |col: &ArrayRef, idx: &UInt32Array| {
            arrow_select::take::take(col.as_ref(), idx, None)
                .map_err(|e| Failure::Internal(e.to_string()))
        };
        let rows_idx = UInt32Array::from(row_of);
        let labels_idx = UInt32Array::from(label_row);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(all.num_columns());
        for i in 0..all.num_columns() {
            let col = all.column(i);
            if i == t {
                columns.push(time::array_of(
                    col.data_type(),
                    flat.iter().map(|(ts, _)| Some(*ts)).collect(),
                ));
            } else if labels.contains(&i) {
                columns.push(take(col, &labels_idx)?);
            } else if is_filled(schema, i, t, &labels) {
                let values: Vec<Option<f64>> = series_slots
                    .iter()
                    .flat_map(|s| fill_values(s, |r| number_at(col.as_ref(), r), c))
                    .collect();
                columns.push(Arc::new(Float64Array::from(values)));
            } else {
                columns.push(take(col, &rows_idx)?);
            }
        }
        let batch = RecordBatch::try_new(Arc::clone(&out_schema), columns)
            .map_err(|e| Failure::Internal(e.to_string()))?;
        Ok((out_schema, vec![batch]))
    }
}

plugin_sdk::export_transform!(FillGaps, wit = "../../wit");

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use arrow_array::{Array, Int64Array, StringArray};

    use super::*;

    fn batch() -> (SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
            Field::new("cpu", DataType::Float64, false),
        ]));
        let b = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec!["a", "a", "b", "a"])),
                Arc::new(Int64Array::from(vec![0, 60_000, 0, 240_000])),
                Arc::new(Float64Array::from(vec![10.0, 20.0, 5.0, 50.0])),
            ],
        )
        .expect("batch");
        (schema, b)
    }

    fn filled(config: &str) -> (Vec<i64>, Vec<Option<f64>>) {
        let (schema, b) = batch();
        let c = FillGaps::config(config).expect("config");
        let (_, out) = FillGaps::run(&schema, &[b], &c).expect("run");
        let o = &out[0];
        let ts = o.column(1).as_primitive::<Int64Type>();
        let cpu = o.column(2).as_primitive::<Float64Type>();
        let hosts = o.column(0).as_string::<i32>();
        let rows: Vec<usize> = (0..o.num_rows())
            .filter(|&i| hosts.value(i) == "a")
            .collect();
        (
            rows.iter().map(|&i| ts.value(i)).collect(),
            rows.iter()
                .map(|&i| (!cpu.is_null(i)).then(|| cpu.value(i)))
                .collect(),
        )
    }

    #[test]
    fn each_fill_mode() {
        let (ts, null) = filled(r#"{"step":"1m"}"#);
        assert_eq!(ts, vec![0, 60_000, 120_000, 180_000, 240_000]);
        assert_eq!(null, vec![Some(10.0), Some(20.0), None, None, Some(50.0)]);
        assert_eq!(filled(r#"{"step":"1m","fill":"zero"}"#).1[2], Some(0.0));
        assert_eq!(
            filled(r#"{"step":"1m","fill":"value","value":-1}"#).1[3],
            Some(-1.0)
        );
        assert_eq!(
            filled(r#"{"step":"1m","fill":"previous"}"#).1[3],
            Some(20.0)
        );
        assert_eq!(
            filled(r#"{"fill":"linear"}"#).1,
            vec![Some(10.0), Some(20.0), Some(30.0), Some(40.0), Some(50.0)],
            "the step defaults to the smallest interval"
        );
    }

    #[test]
    fn limits_and_configs() {
        let (schema, b) = batch();
        let c = FillGaps::config(r#"{"step":"1ms","max_rows":100}"#).expect("config");
        assert!(FillGaps::run(&schema, &[b], &c).is_err());
        assert_eq!(
            FillGaps::config(r#"{"fill":"value"}"#)
                .expect_err("bad")
                .path,
            "/value"
        );
        assert_eq!(
            slots(&[(0, 0), (30, 1), (100, 2)], Some(50)),
            vec![Slot::Row(0), Slot::Row(1), Slot::Gap(50, 0), Slot::Row(2)]
        );
    }
}

//! The transform's logic, free of bindings so it is tested natively.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef};
use plugin_sdk::config::{ConfigProblem, parse};
use plugin_sdk::series::number_at;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Points averaged (the current one and the ones before it), at least 1.
    pub window: usize,
    /// The column averaged; default: the last numeric column.
    #[serde(default)]
    pub value_column: Option<String>,
    /// Columns that name a series (each averaged on its own); default: every string column.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
}

pub const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object", "additionalProperties": false, "required": ["window"],
  "properties": {
    "window": {"type": "integer", "minimum": 1, "maximum": 10000},
    "value_column": {"type": "string"},
    "group_by": {"type": "array", "items": {"type": "string"}}
  }
}"#;

/// # Errors
/// The problem with its JSON Pointer.
pub fn config(json: &str) -> Result<Config, ConfigProblem> {
    let c: Config = parse(json)?;
    if c.window == 0 || c.window > 10_000 {
        return Err(ConfigProblem {
            path: "/window".into(),
            message: "must be 1 to 10000".into(),
        });
    }
    Ok(c)
}

fn value_column(schema: &Schema, c: &Config) -> Result<usize, String> {
    plugin_sdk::series::value_column(schema, c.value_column.as_deref(), None)
}

/// The input schema with the value column as nullable Float64.
///
/// # Errors
/// No usable value column.
pub fn output_schema(input: &Schema, c: &Config) -> Result<SchemaRef, String> {
    Ok(plugin_sdk::series::with_float64(
        input,
        value_column(input, c)?,
    ))
}

/// The batches with the value column replaced by its moving average, per series, in row order.
///
/// # Errors
/// Missing or non-numeric columns.
pub fn run(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    c: &Config,
) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
    let out_schema = output_schema(schema, c)?;
    let v = value_column(schema, c)?;
    let groups: Vec<usize> = match &c.group_by {
        Some(cols) => cols
            .iter()
            .map(|n| {
                schema
                    .index_of(n)
                    .map_err(|_| format!("no column {n:?} in the input"))
            })
            .collect::<Result<_, _>>()?,
        None => schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                matches!(
                    f.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                )
            })
            .map(|(i, _)| i)
            .collect(),
    };
    let mut windows: HashMap<Vec<String>, (VecDeque<f64>, f64)> = HashMap::new();
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let mut averaged = Vec::with_capacity(b.num_rows());
        for row in 0..b.num_rows() {
            let key: Vec<String> = groups
                .iter()
                .map(|&g| {
                    arrow_array::cast::AsArray::as_string_opt::<i32>(b.column(g).as_ref())
                        .map(|a| a.value(row).to_string())
                        .unwrap_or_default()
                })
                .collect();
            let (window, sum) = windows.entry(key).or_default();
            match number_at(b.column(v).as_ref(), row) {
                Some(x) => {
                    window.push_back(x);
                    *sum += x;
                    if window.len() > c.window
                        && let Some(old) = window.pop_front()
                    {
                        *sum -= old;
                    }
                    #[allow(clippy::cast_precision_loss)]
                    averaged.push(Some(*sum / window.len() as f64));
                }
                None => averaged.push(None),
            }
        }
        let columns: Vec<ArrayRef> = (0..b.num_columns())
            .map(|i| {
                if i == v {
                    Arc::new(Float64Array::from(averaged.clone())) as ArrayRef
                } else {
                    Arc::clone(b.column(i))
                }
            })
            .collect();
        out.push(
            RecordBatch::try_new(Arc::clone(&out_schema), columns).map_err(|e| e.to_string())?,
        );
    }
    Ok((out_schema, out))
}

#[cfg(test)]
mod tests {
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::Field;

    use super::*;

    #[test]
    fn averages_the_last_n_points_of_each_series() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", DataType::Utf8, false),
            Field::new("cpu", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "a", "a", "b"])),
                Arc::new(Int64Array::from(vec![10, 100, 20, 60, 300])),
            ],
        )
        .expect("batch");
        let c = config(r#"{"window":2}"#).expect("config");
        let (out_schema, out) = run(&schema, &[batch], &c).expect("run");
        assert_eq!(out_schema.field(1).data_type(), &DataType::Float64);
        let avg = arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Float64Type>(
            out[0].column(1).as_ref(),
        );
        let got: Vec<f64> = (0..avg.len()).map(|i| avg.value(i)).collect();
        assert_eq!(got, vec![10.0, 100.0, 15.0, 40.0, 200.0]);
        assert_eq!(config(r#"{"window":0}"#).expect_err("zero").path, "/window");
        assert!(
            run(
                &schema,
                &[],
                &config(r#"{"window":1,"value_column":"host"}"#).expect("c")
            )
            .is_err()
        );
    }
}

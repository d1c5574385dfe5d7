//! `top-k`: a widget transform that keeps the `k` series (rows grouped by their string columns)
//! ranked highest (or lowest) by a reduced value, in their original row order. For "the 5
//! slowest endpoints" or "the 10 busiest hosts" on a chart that would otherwise show hundreds.

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::{Schema, SchemaRef};
use plugin_sdk::config::{ConfigProblem, parse};
use plugin_sdk::plugin::{Describe, Failure, Transform};
use plugin_sdk::series::{Reducer, group, label_columns, labels_at};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Desc,
    Asc,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub k: usize,
    #[serde(default)]
    pub value_column: Option<String>,
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// How a series is ranked: its avg (default), max, last, …
    #[serde(default = "default_reducer")]
    pub reducer: Reducer,
    #[serde(default)]
    pub order: Order,
}

fn default_reducer() -> Reducer {
    Reducer::Avg
}

pub struct TopK;

impl Describe for TopK {
    const NAME: &'static str = "top-k";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Keeps the k series ranked highest (or lowest) by their avg, max, last, … value.";
    const SCHEMA: &'static str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object", "additionalProperties": false, "required": ["k"],
  "properties": {
    "k": {"type": "integer", "minimum": 1, "maximum": 1000},
    "value_column": {"type": "string", "description": "default: the last numeric column"},
    "group_by": {"type": "array", "items": {"type": "string"}, "description": "default: every string column"},
    "reducer": {"enum": ["last", "avg", "min", "max", "sum", "count"], "default": "avg"},
    "order": {"enum": ["desc", "asc"], "default": "desc"}
  }
}"#;
    type Config = Config;

    fn config(json: &str) -> Result<Config, ConfigProblem> {
        let c: Config = parse(json)?;
        if c.k == 0 || c.k > 1000 {
            return Err(ConfigProblem {
                path: "/k".into(),
                message: "must be 1 to 1000".into(),
            });
        }
        Ok(c)
    }
}

impl Transform for TopK {
    fn output_schema(input: &Schema, c: &Config) -> Result<SchemaRef, Failure> {
        label_columns(input, c.group_by.as_deref()).map_err(Failure::InvalidInput)?;
        Ok(Arc::new(input.clone()))
    }

    fn run(
        schema: &SchemaRef,
        batches: &[RecordBatch],
        c: &Config,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), Failure> {
        let labels = label_columns(schema, c.group_by.as_deref()).map_err(Failure::InvalidInput)?;
        let mut groups = group(
            batches,
            c.group_by.as_deref(),
            c.value_column.as_deref(),
            c.reducer,
        )
        .map_err(Failure::InvalidInput)?;
        // Series without a value rank last either way; ties keep label order (stable sort).
        groups.sort_by(|a, b| match (a.value, b.value) {
            (Some(x), Some(y)) => match c.order {
                Order::Desc => y.total_cmp(&x),
                Order::Asc => x.total_cmp(&y),
            },
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        let keep: HashSet<Vec<(String, String)>> =
            groups.into_iter().take(c.k).map(|g| g.labels).collect();
        let mut out = Vec::with_capacity(batches.len());
        for b in batches {
            let mask: BooleanArray = (0..b.num_rows())
                .map(|row| Some(keep.contains(&labels_at(b, &labels, row))))
                .collect();
            out.push(
                arrow_select::filter::filter_record_batch(b, &mask)
                    .map_err(|e| Failure::Internal(e.to_string()))?,
            );
        }
        Ok((Arc::clone(schema), out))
    }
}

plugin_sdk::export_transform!(TopK, wit = "../../wit");

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::{Array, Float64Array, StringArray};
    use arrow_schema::{DataType, Field};

    use super::*;

    #[test]
    fn keeps_the_k_highest_series_in_row_order() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", DataType::Utf8, false),
            Field::new("cpu", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c", "a", "b", "c", "d"])),
                Arc::new(Float64Array::from(vec![
                    Some(10.0),
                    Some(50.0),
                    Some(30.0),
                    Some(20.0),
                    Some(60.0),
                    Some(35.0),
                    None,
                ])),
            ],
        )
        .expect("batch");
        let hosts = |c: &str| -> Vec<String> {
            let c = TopK::config(c).expect("config");
            let (_, out) = TopK::run(&schema, std::slice::from_ref(&batch), &c).expect("run");
            let a = out[0].column(0).as_string::<i32>();
            (0..a.len()).map(|i| a.value(i).to_string()).collect()
        };
        assert_eq!(hosts(r#"{"k":2}"#), vec!["b", "c", "b", "c"]);
        assert_eq!(hosts(r#"{"k":1,"order":"asc"}"#), vec!["a", "a"]);
        assert_eq!(hosts(r#"{"k":1,"reducer":"min"}"#), vec!["b", "b"]);
        assert_eq!(
            hosts(r#"{"k":9}"#).len(),
            7,
            "k above the series count keeps all"
        );
        assert_eq!(TopK::config(r#"{"k":0}"#).expect_err("bad").path, "/k");
        let c = TopK::config(r#"{"k":1,"group_by":["cpu"]}"#).expect("config");
        assert!(TopK::output_schema(&schema, &c).is_err());
    }
}

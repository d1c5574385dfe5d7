//! Query results as `{columns, rows, row_count, truncated}` JSON.

use arrow::json::writer::{JsonArray, WriterBuilder};
use query::SqlOutput;
use serde_json::{Map, Value, json};

use crate::ApiError;

/// Columns with their Arrow types and rows as arrays in column order. Timestamps are RFC 3339,
/// maps are objects, lists are arrays, nulls are `null`.
///
/// # Errors
/// When Arrow cannot render a column type as JSON.
pub(crate) fn to_json(out: &SqlOutput) -> Result<Value, ApiError> {
    let names = column_names(out);
    let columns: Vec<Value> = out
        .schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    let rows: Vec<Value> = to_objects(out)?
        .into_iter()
        .map(|mut obj| {
            Value::Array(
                names
                    .iter()
                    .map(|n| obj.remove(*n).unwrap_or(Value::Null))
                    .collect(),
            )
        })
        .collect();
    Ok(json!({
        "columns": columns,
        "row_count": rows.len(),
        "rows": rows,
        "truncated": out.truncated,
    }))
}

/// The rows as objects keyed by column name, rendered as [`to_json`] renders them.
///
/// # Errors
/// When Arrow cannot render a column type as JSON.
pub(crate) fn to_objects(out: &SqlOutput) -> Result<Vec<Map<String, Value>>, ApiError> {
    let names = column_names(out);
    let mut rows = Vec::new();
    for batch in &out.batches {
        if batch.num_rows() == 0 {
            continue;
        }
        let mut buf = Vec::new();
        {
            let mut w = WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, JsonArray>(&mut buf);
            w.write(batch)
                .map_err(|e| ApiError::invalid(format!("cannot render result as JSON: {e}")))?;
            w.finish()
                .map_err(|e| ApiError::invalid(format!("cannot render result as JSON: {e}")))?;
        }
        let objects: Vec<Map<String, Value>> =
            serde_json::from_slice(&buf).map_err(ApiError::internal)?;
        for mut obj in objects {
            for n in &names {
                obj.entry((*n).to_string()).or_insert(Value::Null);
            }
            rows.push(obj);
        }
    }
    Ok(rows)
}

fn column_names(out: &SqlOutput) -> Vec<&str> {
    out.schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect()
}

//! Rows grouped into series: one per distinct label set, with the value column reduced.

use std::collections::{BTreeMap, HashMap};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema};

/// How a series' values become one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reducer {
    #[default]
    Last,
    Avg,
    Min,
    Max,
    Sum,
    Count,
}

/// One label set and its reduced value (`None` when it had no non-null value).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub labels: Vec<(String, String)>,
    pub value: Option<f64>,
    pub rows: usize,
}

/// Running sum, count of values, min, max, last value and rows of one group.
type Acc = (f64, usize, f64, f64, Option<f64>, usize);

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_number(t: &DataType) -> bool {
    t.is_numeric()
}

/// A string column, downcast once per batch.
enum Strs<'a> {
    Utf8(&'a arrow_array::StringArray),
    Large(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
    Missing,
}

impl<'a> Strs<'a> {
    fn of(array: Option<&'a dyn Array>) -> Strs<'a> {
        match array.map(|a| (a, a.data_type())) {
            Some((a, DataType::Utf8)) => Strs::Utf8(a.as_string::<i32>()),
            Some((a, DataType::LargeUtf8)) => Strs::Large(a.as_string::<i64>()),
            Some((a, DataType::Utf8View)) => Strs::View(a.as_string_view()),
            _ => Strs::Missing,
        }
    }

    /// The value at `row` (`""` when null).
    fn get(&self, row: usize) -> &'a str {
        match self {
            Strs::Utf8(a) if !a.is_null(row) => a.value(row),
            Strs::Large(a) if !a.is_null(row) => a.value(row),
            Strs::View(a) if !a.is_null(row) => a.value(row),
            _ => "",
        }
    }
}

/// A fast, non-cryptographic hash of label values (grouping only; collisions are checked).
#[derive(Default)]
struct Fx(u64);

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let mut w = [0u8; 8];
        let rest = chunks.remainder();
        w[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(w));
        // The length separates ("ab","c") from ("a","bc").
        self.add(bytes.len() as u64);
    }
}

fn string_at(array: &dyn Array, row: usize) -> String {
    if array.is_null(row) {
        return String::new();
    }
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_string(),
        DataType::Utf8View => array.as_string_view().value(row).to_string(),
        _ => String::new(),
    }
}

/// The value at `row` as f64, if the column is numeric and the cell not null.
pub fn number_at(array: &dyn Array, row: usize) -> Option<f64> {
    if array.is_null(row) {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let v = match array.data_type() {
        DataType::Float64 => array.as_primitive::<Float64Type>().value(row),
        DataType::Float32 => f64::from(array.as_primitive::<Float32Type>().value(row)),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row) as f64,
        DataType::Int32 => f64::from(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int16 => f64::from(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int8 => f64::from(array.as_primitive::<Int8Type>().value(row)),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row) as f64,
        DataType::UInt32 => f64::from(array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt16 => f64::from(array.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt8 => f64::from(array.as_primitive::<UInt8Type>().value(row)),
        _ => return None,
    };
    v.is_finite().then_some(v)
}

/// Groups the rows of `batches` by `label_columns` (default: every string column) and reduces
/// `value_column` (default: the last numeric column) per group. Groups come sorted by labels.
///
/// # Errors
/// A named column that does not exist, or has the wrong type; no numeric column to reduce.
pub fn group(
    batches: &[RecordBatch],
    label_columns: Option<&[String]>,
    value_column: Option<&str>,
    reducer: Reducer,
) -> Result<Vec<Group>, String> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let schema = first.schema();
    let labels: Vec<String> = match label_columns {
        Some(cols) => {
            for c in cols {
                let f = schema
                    .field_with_name(c)
                    .map_err(|_| format!("no column {c:?} in the query result"))?;
                if !is_string(f.data_type()) {
                    return Err(format!("label column {c:?} is not a string column"));
                }
            }
            cols.to_vec()
        }
        None => schema
            .fields()
            .iter()
            .filter(|f| is_string(f.data_type()))
            .map(|f| f.name().clone())
            .collect(),
    };
    let value = match value_column {
        Some(c) => {
            let f = schema
                .field_with_name(c)
                .map_err(|_| format!("no column {c:?} in the query result"))?;
            if !is_number(f.data_type()) {
                return Err(format!("value column {c:?} is not numeric"));
            }
            Some(c.to_string())
        }
        None => schema
            .fields()
            .iter()
            .rev()
            .find(|f| is_number(f.data_type()))
            .map(|f| f.name().clone()),
    };
    if value.is_none() && reducer != Reducer::Count {
        return Err("the query result has no numeric column to reduce".into());
    }
    // Groups in first-seen order, found by a hash of the row's label values: no allocation
    // per row, only per new group.
    let mut groups: Vec<(Vec<(String, String)>, Acc)> = Vec::new();
    let mut index: HashMap<u64, Vec<usize>> = HashMap::new();
    for batch in batches {
        let label_arrays: Vec<Strs<'_>> = labels
            .iter()
            .map(|l| Strs::of(batch.column_by_name(l).map(|a| a.as_ref())))
            .collect();
        let value_array = value.as_ref().and_then(|v| batch.column_by_name(v));
        let mut last: Option<usize> = None;
        for row in 0..batch.num_rows() {
            let same = |g: usize| {
                groups[g]
                    .0
                    .iter()
                    .zip(&label_arrays)
                    .all(|((_, v), a)| v == a.get(row))
            };
            let g = match last {
                Some(g) if same(g) => g,
                _ => {
                    let mut h = Fx::default();
                    for a in &label_arrays {
                        h.write(a.get(row).as_bytes());
                    }
                    let slot = index.entry(h.0).or_default();
                    match slot.iter().copied().find(|&g| same(g)) {
                        Some(g) => g,
                        None => {
                            let key = labels
                                .iter()
                                .zip(&label_arrays)
                                .map(|(name, a)| (name.clone(), a.get(row).to_string()))
                                .collect();
                            groups.push((key, (0.0, 0, f64::INFINITY, f64::NEG_INFINITY, None, 0)));
                            slot.push(groups.len() - 1);
                            groups.len() - 1
                        }
                    }
                }
            };
            last = Some(g);
            let e = &mut groups[g].1;
            e.5 += 1;
            if let Some(v) = value_array.and_then(|a| number_at(a.as_ref(), row)) {
                e.0 += v;
                e.1 += 1;
                e.2 = e.2.min(v);
                e.3 = e.3.max(v);
                e.4 = Some(v);
            }
        }
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let acc = groups;
    Ok(acc
        .into_iter()
        .map(|(labels, (sum, n, min, max, last, rows))| {
            #[allow(clippy::cast_precision_loss)]
            let value = match reducer {
                Reducer::Count => Some(rows as f64),
                _ if n == 0 => None,
                Reducer::Last => last,
                Reducer::Avg => Some(sum / n as f64),
                Reducer::Min => Some(min),
                Reducer::Max => Some(max),
                Reducer::Sum => Some(sum),
            };
            Group {
                labels,
                value,
                rows,
            }
        })
        .collect())
}

/// The label columns of `schema`: the named ones (each must be a string column), or every
/// string column.
///
/// # Errors
/// A named column that does not exist or is not a string column.
pub fn label_columns(schema: &Schema, named: Option<&[String]>) -> Result<Vec<usize>, String> {
    match named {
        Some(cols) => cols
            .iter()
            .map(|c| {
                let i = schema
                    .index_of(c)
                    .map_err(|_| format!("no column {c:?} in the input"))?;
                if is_string(schema.field(i).data_type()) {
                    Ok(i)
                } else {
                    Err(format!("label column {c:?} is not a string column"))
                }
            })
            .collect(),
        None => Ok(schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| is_string(f.data_type()))
            .map(|(i, _)| i)
            .collect()),
    }
}

/// The value column: the named one (must be numeric), or the last numeric column other than
/// `skip` (the time column).
///
/// # Errors
/// No such column, or not numeric.
pub fn value_column(
    schema: &Schema,
    named: Option<&str>,
    skip: Option<usize>,
) -> Result<usize, String> {
    match named {
        Some(name) => {
            let i = schema
                .index_of(name)
                .map_err(|_| format!("no column {name:?} in the input"))?;
            if is_number(schema.field(i).data_type()) {
                Ok(i)
            } else {
                Err(format!("value column {name:?} is not numeric"))
            }
        }
        None => schema
            .fields()
            .iter()
            .enumerate()
            .rev()
            .find(|(i, f)| Some(*i) != skip && is_number(f.data_type()))
            .map(|(i, _)| i)
            .ok_or_else(|| "the input has no numeric value column".to_string()),
    }
}

/// The labels of `row`: `(column name, value)` for each label column.
pub fn labels_at(batch: &RecordBatch, columns: &[usize], row: usize) -> Vec<(String, String)> {
    let schema = batch.schema();
    columns
        .iter()
        .map(|&c| {
            (
                schema.field(c).name().clone(),
                string_at(batch.column(c).as_ref(), row),
            )
        })
        .collect()
}

/// A series' label set: `(column, value)` pairs.
pub type Labels = Vec<(String, String)>;

/// Rows of one series: `(unix ms, row index)`.
pub type Rows = Vec<(i64, usize)>;

/// Points of one series: `(unix ms, value)` sorted by time (rows with a null time or value are
/// left out).
pub type Points = Vec<(i64, f64)>;

/// Time series from rows: grouped by `labels` (column indexes), each sorted by time.
pub fn points(
    batches: &[RecordBatch],
    labels: &[usize],
    time: usize,
    value: usize,
) -> BTreeMap<Vec<(String, String)>, Points> {
    let mut out: BTreeMap<Vec<(String, String)>, Points> = BTreeMap::new();
    for b in batches {
        for row in 0..b.num_rows() {
            let key = labels_at(b, labels, row);
            let entry = out.entry(key).or_default();
            if let (Some(t), Some(v)) = (
                crate::time::millis_at(b.column(time).as_ref(), row),
                number_at(b.column(value).as_ref(), row),
            ) {
                entry.push((t, v));
            }
        }
    }
    for p in out.values_mut() {
        p.sort_by_key(|(t, _)| *t);
    }
    out
}

/// Reduces points with `reducer` (`None` when there are none; `count` counts them).
pub fn reduce(points: &[(i64, f64)], reducer: Reducer) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    let n = points.len() as f64;
    if reducer == Reducer::Count {
        return Some(n);
    }
    if points.is_empty() {
        return None;
    }
    let values = points.iter().map(|p| p.1);
    Some(match reducer {
        Reducer::Last => points[points.len() - 1].1,
        Reducer::Avg => values.sum::<f64>() / n,
        Reducer::Min => values.fold(f64::INFINITY, f64::min),
        Reducer::Max => values.fold(f64::NEG_INFINITY, f64::max),
        Reducer::Sum | Reducer::Count => values.sum(),
    })
}

/// The columns a time-series transform works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesColumns {
    pub time: usize,
    pub value: usize,
    pub labels: Vec<usize>,
}

/// Finds the time column ([`crate::time::column`]), the value column (named, or the last
/// numeric one that is not the time) and the label columns ([`label_columns`]).
///
/// # Errors
/// A named column that does not exist or has the wrong type; no time or value column.
pub fn series_columns(
    schema: &Schema,
    time: Option<&str>,
    value: Option<&str>,
    labels: Option<&[String]>,
) -> Result<SeriesColumns, String> {
    let time = crate::time::column(schema, time)?;
    Ok(SeriesColumns {
        time,
        value: value_column(schema, value, Some(time))?,
        labels: label_columns(schema, labels)?,
    })
}

/// `schema` with column `column` turned into a nullable `Float64` (what a transform that
/// computes new values from a numeric column outputs).
pub fn with_float64(schema: &Schema, column: usize) -> arrow_schema::SchemaRef {
    let fields: Vec<arrow_schema::Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if i == column {
                arrow_schema::Field::new(f.name(), DataType::Float64, true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    std::sync::Arc::new(Schema::new(fields))
}

/// Every column of `batch`, taking `rows` (in that order; a row may repeat).
///
/// # Errors
/// A batch too large to index with `u32`, or a column Arrow cannot take from.
pub fn take_rows(
    batch: &RecordBatch,
    rows: &[usize],
) -> Result<Vec<arrow_array::ArrayRef>, String> {
    let indices: Vec<u32> = rows
        .iter()
        .map(|&r| u32::try_from(r).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let indices = arrow_array::UInt32Array::from(indices);
    batch
        .columns()
        .iter()
        .map(|c| arrow_select::take::take(c.as_ref(), &indices, None).map_err(|e| e.to_string()))
        .collect()
}

/// All batches as one (an empty batch of `schema` when there are none).
///
/// # Errors
/// Batches that do not match the schema.
pub fn concat(
    schema: &arrow_schema::SchemaRef,
    batches: &[RecordBatch],
) -> Result<RecordBatch, String> {
    arrow_select::concat::concat_batches(schema, batches).map_err(|e| e.to_string())
}

/// The rows of one batch grouped by series (label columns), each series' rows sorted by time:
/// `(labels, [(unix ms, row)])`, series in label order. Rows with a null time are left out.
pub fn rows_by_series(batch: &RecordBatch, labels: &[usize], time: usize) -> Vec<(Labels, Rows)> {
    let mut out: BTreeMap<Labels, Rows> = BTreeMap::new();
    for row in 0..batch.num_rows() {
        if let Some(t) = crate::time::millis_at(batch.column(time).as_ref(), row) {
            out.entry(labels_at(batch, labels, row))
                .or_default()
                .push((t, row));
        }
    }
    out.into_iter()
        .map(|(k, mut rows)| {
            rows.sort_by_key(|(t, row)| (*t, *row));
            (k, rows)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int64Array, StringArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("service", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
            Field::new("p99", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["api", "db", "api", "api"])),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                Arc::new(Float64Array::from(vec![
                    Some(10.0),
                    Some(5.0),
                    None,
                    Some(30.0),
                ])),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn rows_group_by_strings_and_reduce_the_last_number() {
        let g = group(&[batch()], None, None, Reducer::Avg).expect("group");
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].labels, vec![("service".into(), "api".into())]);
        assert_eq!(g[0].value, Some(20.0), "nulls are skipped");
        assert_eq!(g[0].rows, 3);
        let last = group(&[batch()], None, Some("n"), Reducer::Last).expect("group");
        assert_eq!(last[0].value, Some(4.0));
        let count = group(&[batch()], Some(&[]), None, Reducer::Count).expect("group");
        assert_eq!((count.len(), count[0].value), (1, Some(4.0)));
        for (r, want) in [
            (Reducer::Min, 10.0),
            (Reducer::Max, 30.0),
            (Reducer::Sum, 40.0),
        ] {
            assert_eq!(
                group(&[batch()], None, None, r).expect("g")[0].value,
                Some(want)
            );
        }
        assert!(group(&[batch()], Some(&["nope".into()]), None, Reducer::Last).is_err());
        assert!(group(&[batch()], None, Some("service"), Reducer::Last).is_err());
        assert!(
            group(&[], None, None, Reducer::Last)
                .expect("empty")
                .is_empty()
        );
    }
}

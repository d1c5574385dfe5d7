//! Writing a frozen memtable out as Parquet: one file per table and UTC day, rows grouped by
//! tenant and workspace so that row-group statistics prune other tenants.

use std::path::Path;
use std::sync::Arc;

use std::collections::BTreeMap;

use arrow::array::{Array, BooleanArray, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow::compute::{SortColumn, filter_record_batch, lexsort_to_indices, take_record_batch};
use model::{Table, schema_of};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::manifest::FileMeta;
use crate::wal::sync_dir;

const DAY_NANOS: i64 = 86_400_000_000_000;

fn timestamps(batch: &RecordBatch) -> Option<&TimestampNanosecondArray> {
    batch
        .column_by_name("timestamp")?
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
}

pub(crate) fn day_label(day: i64) -> String {
    chrono::DateTime::from_timestamp(day * 86_400, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("day{day}"))
}

fn string_at(batch: &RecordBatch, column: &str, row: usize) -> String {
    batch
        .column_by_name(column)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .map(|a| a.value(row).to_string())
        .unwrap_or_default()
}

/// Whether every row of `batch` has the scope of its first row.
fn single_scope(batch: &RecordBatch) -> bool {
    ["tenant_id", "workspace_id"].iter().all(|name| {
        let Some(col) = batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        else {
            return true;
        };
        let first = col.value(0);
        col.iter().all(|v| v == Some(first))
    })
}

/// Splits a batch holding several scopes into one batch per scope (a rare path: every write is
/// one request from one API key, so batches are single-scope).
fn split_scopes(batch: &RecordBatch) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    let keys: Vec<SortColumn> = ["tenant_id", "workspace_id"]
        .iter()
        .filter_map(|n| batch.column_by_name(n))
        .map(|c| SortColumn {
            values: Arc::clone(c),
            options: None,
        })
        .collect();
    let sorted = take_record_batch(batch, &lexsort_to_indices(&keys, None)?)?;
    let mut out = Vec::new();
    let mut start = 0;
    for row in 1..=sorted.num_rows() {
        let boundary = row == sorted.num_rows()
            || string_at(&sorted, "tenant_id", row) != string_at(&sorted, "tenant_id", start)
            || string_at(&sorted, "workspace_id", row) != string_at(&sorted, "workspace_id", start);
        if boundary {
            out.push(sorted.slice(start, row - start));
            start = row;
        }
    }
    Ok(out)
}

/// Splits a batch into one batch per UTC day of its `timestamp`, with each part's time range.
/// The common case, a batch within one day, costs one pass over the timestamps and no copy.
fn split_days(
    batch: &RecordBatch,
) -> Result<Vec<(i64, RecordBatch, i64, i64)>, arrow::error::ArrowError> {
    let Some(ts) = timestamps(batch) else {
        return Ok(Vec::new());
    };
    let values = ts.values();
    let (lo, hi) = values
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
    let (first, last) = (lo.div_euclid(DAY_NANOS), hi.div_euclid(DAY_NANOS));
    if first == last {
        return Ok(vec![(first, batch.clone(), lo, hi)]);
    }
    let mut out = Vec::new();
    for day in first..=last {
        let mask: BooleanArray = values
            .iter()
            .map(|t| Some(t.div_euclid(DAY_NANOS) == day))
            .collect();
        let part = filter_record_batch(batch, &mask)?;
        if part.num_rows() == 0 {
            continue;
        }
        let (lo, hi) = timestamps(&part).map_or((lo, hi), |t| {
            t.values()
                .iter()
                .fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(*t), hi.max(*t)))
        });
        out.push((day, part, lo, hi));
    }
    Ok(out)
}

/// Closes a Parquet file written at `tmp`, makes it durable and moves it to `dest` atomically.
/// Returns its size.
pub(crate) fn finish_file(
    writer: ArrowWriter<std::fs::File>,
    tmp: &Path,
    dest: &Path,
) -> std::io::Result<u64> {
    let file = writer.into_inner().map_err(std::io::Error::other)?;
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    drop(file);
    std::fs::rename(tmp, dest)?;
    if let Some(dir) = dest.parent() {
        sync_dir(dir)?;
    }
    Ok(bytes)
}

/// Statistics cost a comparison per value, so only the columns queries filter on keep page-level
/// statistics (for page pruning); the rest keep row-group-level ones.
pub(crate) fn writer_properties() -> std::io::Result<WriterProperties> {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).map_err(std::io::Error::other)?,
        ))
        .set_max_row_group_row_count(Some(65_536))
        .set_statistics_enabled(EnabledStatistics::Chunk);
    for col in [
        "timestamp",
        "tenant_id",
        "workspace_id",
        "service_name",
        "metric_name",
        "trace_id",
    ] {
        b = b.set_column_statistics_enabled(ColumnPath::from(col), EnabledStatistics::Page);
    }
    // Dictionaries pay off only for low-cardinality columns; hashing every value of the others
    // (ids, bodies, attribute values) costs more than it saves.
    b = b.set_dictionary_enabled(false);
    let low_cardinality = [
        "service_name",
        "organization_id",
        "workspace_id",
        "tenant_id",
        "span_name",
        "span_kind",
        "status_code",
        "scope_name",
        "scope_version",
        "severity_text",
        "metric_name",
        "description",
        "unit",
        "metric_type",
        "temporality",
    ];
    for col in low_cardinality {
        b = b.set_column_dictionary_enabled(ColumnPath::from(col), true);
    }
    for (map, part) in [
        ("resource_attributes", "keys"),
        ("resource_attributes", "values"),
        ("span_attributes", "keys"),
        ("log_attributes", "keys"),
        ("attributes", "keys"),
    ] {
        let path = ColumnPath::from(vec![map.to_string(), "entries".into(), part.into()]);
        b = b.set_column_dictionary_enabled(path, true);
    }
    Ok(b.build())
}

/// Writes `batches` of `table` under `dir`, returning the files written (not yet in a manifest),
/// each with the rows it holds.
///
/// Rows are grouped by scope (tenant, workspace) and every UTC day gets one file holding the
/// groups one after another, so row-group statistics separate tenants; the manifest records each
/// file's time range for pruning. Rows are not re-sorted (a flush covers seconds of arrival
/// time, and copying every row again would double the flush cost); whole requests are moved,
/// not copied, unless one straddles midnight.
pub(crate) fn write_table(
    dir: &Path,
    table: Table,
    batches: &[RecordBatch],
    segment: u64,
) -> std::io::Result<Vec<(FileMeta, Vec<RecordBatch>)>> {
    let schema = schema_of(table);
    let mut groups: BTreeMap<(String, String), Vec<RecordBatch>> = BTreeMap::new();
    for b in batches.iter().filter(|b| b.num_rows() > 0) {
        let parts = if single_scope(b) {
            vec![b.clone()]
        } else {
            split_scopes(b).map_err(std::io::Error::other)?
        };
        for part in parts {
            let key = (
                string_at(&part, "tenant_id", 0),
                string_at(&part, "workspace_id", 0),
            );
            groups.entry(key).or_default().push(part);
        }
    }
    // day -> (batches in scope order, min, max)
    let mut days: BTreeMap<i64, (Vec<RecordBatch>, i64, i64)> = BTreeMap::new();
    for group in groups.values() {
        for batch in group {
            for (day, part, lo, hi) in split_days(batch).map_err(std::io::Error::other)? {
                let e = days.entry(day).or_insert((Vec::new(), i64::MAX, i64::MIN));
                e.0.push(part);
                e.1 = e.1.min(lo);
                e.2 = e.2.max(hi);
            }
        }
    }
    let mut out = Vec::with_capacity(days.len());
    for (i, (day, (slices, min_ts, max_ts))) in days.into_iter().enumerate() {
        let rel_dir = format!("{}/date={}", table.name(), day_label(day));
        let abs_dir = dir.join(&rel_dir);
        std::fs::create_dir_all(&abs_dir)?;
        let name = format!("{segment:012}-{i:03}.parquet");
        let tmp = abs_dir.join(format!("{name}.tmp"));
        let file = std::fs::File::create(&tmp)?;
        let props = writer_properties()?;
        let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props))
            .map_err(std::io::Error::other)?;
        let mut rows = 0u64;
        for slice in &slices {
            writer.write(slice).map_err(std::io::Error::other)?;
            rows += slice.num_rows() as u64;
        }
        let bytes = finish_file(writer, &tmp, &abs_dir.join(&name))?;
        let meta = FileMeta {
            path: format!("{rel_dir}/{name}"),
            table: table.name().to_string(),
            min_ts,
            max_ts,
            rows,
            bytes,
        };
        out.push((meta, slices));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::ArrayRef;
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    fn batch(tenants: &[&str], ts: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("tenant_id", DataType::Utf8, false),
            Field::new("workspace_id", DataType::Utf8, false),
        ]));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(TimestampNanosecondArray::from(ts.to_vec()).with_timezone("UTC")),
            Arc::new(StringArray::from(tenants.to_vec())),
            Arc::new(StringArray::from(vec!["w"; tenants.len()])),
        ];
        RecordBatch::try_new(schema, cols).expect("batch")
    }

    #[test]
    fn mixed_scopes_split_into_one_batch_per_scope() {
        let b = batch(&["b", "a", "b", "a"], &[1, 2, 3, 4]);
        assert!(!single_scope(&b));
        let parts = split_scopes(&b).expect("split");
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(single_scope));
        assert_eq!(string_at(&parts[0], "tenant_id", 0), "a");
        let day = 86_400_000_000_000;
        let days = split_days(&batch(&["a", "a", "a"], &[day - 1, day + 5, 3])).expect("days");
        let got: Vec<(i64, usize, i64, i64)> = days
            .iter()
            .map(|(d, b, lo, hi)| (*d, b.num_rows(), *lo, *hi))
            .collect();
        assert_eq!(got, vec![(0, 2, 3, day - 1), (1, 1, day + 5, day + 5)]);
    }
}

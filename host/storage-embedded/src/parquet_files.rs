//! Writing a frozen memtable out as Parquet: one file per table and UTC day, rows grouped by
//! tenant and workspace and sorted by time within a group, so that row-group statistics prune
//! other tenants and other times.

use std::path::Path;
use std::sync::Arc;

use std::collections::BTreeMap;

use arrow::array::{Array, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow::compute::{
    SortColumn, concat_batches, lexsort_to_indices, sort_to_indices, take_record_batch,
};
use arrow::datatypes::SchemaRef;
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

fn day_label(day: i64) -> String {
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

/// Rows of one scope, sorted by time.
fn by_time(
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let all = concat_batches(schema, batches)?;
    let Some(ts) = timestamps(&all) else {
        return Ok(all);
    };
    if ts.values().is_sorted() {
        return Ok(all);
    }
    let indices = sort_to_indices(ts, None, None)?;
    take_record_batch(&all, &indices)
}

/// Statistics cost a comparison per value, so only the columns queries filter on keep page-level
/// statistics (for page pruning); the rest keep row-group-level ones. Identifier columns are
/// nearly unique, so dictionary encoding would only cost time there.
fn writer_properties() -> std::io::Result<WriterProperties> {
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
    for col in [
        "trace_id",
        "span_id",
        "parent_span_id",
        "exemplar_trace_id",
        "exemplar_span_id",
    ] {
        b = b.set_column_dictionary_enabled(ColumnPath::from(col), false);
    }
    Ok(b.build())
}

/// Writes `batches` of `table` under `dir`, returning the files written (not yet in a manifest).
///
/// Rows are grouped by scope (tenant, workspace), each group sorted by time, and every UTC day
/// gets one file holding the groups one after another, so row-group statistics separate tenants
/// and time ranges. Sorting whole groups by one integer column is what keeps flushing cheap.
pub(crate) fn write_table(
    dir: &Path,
    table: Table,
    batches: &[RecordBatch],
    segment: u64,
) -> std::io::Result<Vec<FileMeta>> {
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
    // day -> slices in scope order
    let mut days: BTreeMap<i64, Vec<RecordBatch>> = BTreeMap::new();
    for group in groups.values() {
        let sorted = by_time(&schema, group).map_err(std::io::Error::other)?;
        let ts = timestamps(&sorted).ok_or_else(|| std::io::Error::other("no timestamp column"))?;
        let values = ts.values();
        let mut start = 0;
        while start < values.len() {
            let day = values[start].div_euclid(DAY_NANOS);
            let end = start + values[start..].partition_point(|t| t.div_euclid(DAY_NANOS) == day);
            days.entry(day)
                .or_default()
                .push(sorted.slice(start, end - start));
            start = end;
        }
    }
    let mut out = Vec::with_capacity(days.len());
    for (i, (day, slices)) in days.iter().enumerate() {
        let rel_dir = format!("{}/date={}", table.name(), day_label(*day));
        let abs_dir = dir.join(&rel_dir);
        std::fs::create_dir_all(&abs_dir)?;
        let name = format!("{segment:012}-{i:03}.parquet");
        let tmp = abs_dir.join(format!("{name}.tmp"));
        let file = std::fs::File::create(&tmp)?;
        let props = writer_properties()?;
        let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props))
            .map_err(std::io::Error::other)?;
        let (mut min_ts, mut max_ts, mut rows) = (i64::MAX, i64::MIN, 0u64);
        for slice in slices {
            writer.write(slice).map_err(std::io::Error::other)?;
            if let Some(ts) = timestamps(slice) {
                let v = ts.values();
                // Each slice is sorted by time.
                min_ts = min_ts.min(v[0]);
                max_ts = max_ts.max(v[v.len() - 1]);
            }
            rows += slice.num_rows() as u64;
        }
        let file = writer.into_inner().map_err(std::io::Error::other)?;
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        drop(file);
        std::fs::rename(&tmp, abs_dir.join(&name))?;
        sync_dir(&abs_dir)?;
        out.push(FileMeta {
            path: format!("{rel_dir}/{name}"),
            table: table.name().to_string(),
            min_ts,
            max_ts,
            rows,
            bytes,
        });
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
        let sorted = by_time(&b.schema(), &[batch(&["a", "a"], &[9, 3])]).expect("sort");
        let ts = timestamps(&sorted).expect("ts");
        assert_eq!(ts.values().to_vec(), vec![3, 9]);
    }
}

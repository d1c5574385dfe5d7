//! Writing a frozen memtable out as Parquet: one file per table and UTC day, rows sorted by
//! tenant, workspace, service and time so that row-group statistics prune other tenants.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, TimestampNanosecondArray, UInt32Array};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use model::{Table, schema_of};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

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

fn sorted(batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut keys = Vec::new();
    for name in ["tenant_id", "workspace_id", "service_name", "timestamp"] {
        if let Some(c) = batch.column_by_name(name) {
            keys.push(SortColumn {
                values: Arc::clone(c),
                options: None,
            });
        }
    }
    let indices = lexsort_to_indices(&keys, None)?;
    take_record_batch(batch, &indices)
}

/// Writes `batches` of `table` under `dir`, returning the files written (not yet in a manifest).
pub(crate) fn write_table(
    dir: &Path,
    table: Table,
    batches: &[RecordBatch],
    segment: u64,
) -> std::io::Result<Vec<FileMeta>> {
    let schema = schema_of(table);
    let all = concat_batches(&schema, batches).map_err(std::io::Error::other)?;
    if all.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let ts = timestamps(&all).ok_or_else(|| std::io::Error::other("no timestamp column"))?;
    let days: Vec<i64> = ts
        .values()
        .iter()
        .map(|t| t.div_euclid(DAY_NANOS))
        .collect();
    let mut distinct = days.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let mut out = Vec::with_capacity(distinct.len());
    for (i, day) in distinct.iter().enumerate() {
        let part = if distinct.len() == 1 {
            all.clone()
        } else {
            let idx: UInt32Array = days
                .iter()
                .enumerate()
                .filter(|(_, d)| *d == day)
                .map(|(i, _)| u32::try_from(i).unwrap_or(u32::MAX))
                .collect();
            take_record_batch(&all, &idx).map_err(std::io::Error::other)?
        };
        let part = sorted(&part).map_err(std::io::Error::other)?;
        let rel_dir = format!("{}/date={}", table.name(), day_label(*day));
        let abs_dir = dir.join(&rel_dir);
        std::fs::create_dir_all(&abs_dir)?;
        let name = format!("{segment:012}-{i:03}.parquet");
        let tmp = abs_dir.join(format!("{name}.tmp"));
        let file = std::fs::File::create(&tmp)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).map_err(std::io::Error::other)?,
            ))
            .set_max_row_group_row_count(Some(65_536))
            .set_statistics_enabled(EnabledStatistics::Page)
            .build();
        let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props))
            .map_err(std::io::Error::other)?;
        writer.write(&part).map_err(std::io::Error::other)?;
        let file = writer.into_inner().map_err(std::io::Error::other)?;
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        drop(file);
        std::fs::rename(&tmp, abs_dir.join(&name))?;
        sync_dir(&abs_dir)?;
        let ts = timestamps(&part).ok_or_else(|| std::io::Error::other("no timestamp column"))?;
        let (min_ts, max_ts) = ts
            .values()
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
        out.push(FileMeta {
            path: format!("{rel_dir}/{name}"),
            table: table.name().to_string(),
            min_ts,
            max_ts,
            rows: part.num_rows() as u64,
            bytes,
        });
    }
    Ok(out)
}

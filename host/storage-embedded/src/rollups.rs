//! The metric rollups, maintained: at every flush the flushed `metrics_v3` points are
//! aggregated per hour and per day (sum, min, max and count per rollup key) into partial files,
//! `metrics_v3_hourly/date=…/…` and `metrics_v3_daily/date=…/…`, listed in the manifest with
//! the raw files and compacted and expired like them (rollups are kept longer). A reader merges
//! the partials of a key (as readers of ClickHouse's AggregatingMergeTree group by the key)
//! together with the points not flushed yet, aggregated when read; the answer is the one
//! aggregating every raw point gives.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Float64Array, RecordBatch, StringArray,
    TimestampNanosecondArray, UInt64Array,
};
use arrow::datatypes::{Float64Type, TimestampNanosecondType};
use arrow::error::ArrowError;
use datafusion::catalog::TableProvider;
use datafusion::common::Result as DfResult;
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast, col};
use model::{Rollup, Table, rollup_schema};
use parquet::arrow::ArrowWriter;

use crate::Shared;
use crate::manifest::FileMeta;
use crate::parquet_files::{day_label, finish_file, writer_properties};
use crate::provider::EmbeddedTable;

const HOUR_NS: i64 = 3_600_000_000_000;
const DAY_NS: i64 = 86_400_000_000_000;

/// The rollup a manifest entry's table name stands for.
pub(crate) fn rollup_named(name: &str) -> Option<Rollup> {
    Rollup::ALL.into_iter().find(|r| r.name() == name)
}

/// The start of a point's bucket, in nanoseconds.
fn bucket(rollup: Rollup, ts: i64) -> i64 {
    let width = match rollup {
        Rollup::Hourly => HOUR_NS,
        Rollup::Daily => DAY_NS,
    };
    ts.div_euclid(width) * width
}

struct Group {
    bucket: i64,
    /// Where the group's key was first seen: (batch, row).
    at: (usize, usize),
    sum: f64,
    min: f64,
    max: f64,
    count: u64,
}

/// The partial aggregates of raw `metrics_v3` batches: one row per bucket and key.
///
/// # Errors
/// When a batch lacks a column of the metrics schema (a bug).
pub(crate) fn partials(
    batches: &[RecordBatch],
    rollup: Rollup,
) -> Result<Option<RecordBatch>, ArrowError> {
    let missing = |c: &str| ArrowError::SchemaError(format!("no column {c} in a metrics batch"));
    let mut keys: Vec<Vec<&StringArray>> = Vec::with_capacity(batches.len());
    for b in batches {
        let mut k = Vec::with_capacity(Rollup::KEY.len());
        for c in Rollup::KEY {
            k.push(
                b.column_by_name(c)
                    .ok_or_else(|| missing(c))?
                    .as_string::<i32>(),
            );
        }
        keys.push(k);
    }
    let state = std::hash::RandomState::new();
    let mut index: HashMap<(i64, u64), Vec<usize>> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for (bi, b) in batches.iter().enumerate() {
        let ts = b
            .column_by_name("timestamp")
            .ok_or_else(|| missing("timestamp"))?
            .as_primitive::<TimestampNanosecondType>();
        let values = b
            .column_by_name("value")
            .ok_or_else(|| missing("value"))?
            .as_primitive::<Float64Type>();
        let same_key = |g: &Group, row: usize| {
            keys[g.at.0]
                .iter()
                .zip(&keys[bi])
                .all(|(a, b)| a.value(g.at.1) == b.value(row))
        };
        for row in 0..b.num_rows() {
            if values.is_null(row) {
                continue;
            }
            let at = bucket(rollup, ts.value(row));
            let mut h = state.build_hasher();
            for k in &keys[bi] {
                k.value(row).hash(&mut h);
            }
            let slot = index.entry((at, h.finish())).or_default();
            let found = slot.iter().copied().find(|g| same_key(&groups[*g], row));
            let g = match found {
                Some(g) => g,
                None => {
                    groups.push(Group {
                        bucket: at,
                        at: (bi, row),
                        sum: 0.0,
                        min: f64::INFINITY,
                        max: f64::NEG_INFINITY,
                        count: 0,
                    });
                    slot.push(groups.len() - 1);
                    groups.len() - 1
                }
            };
            let v = values.value(row);
            let e = &mut groups[g];
            e.sum += v;
            e.min = e.min.min(v);
            e.max = e.max.max(v);
            e.count += 1;
        }
    }
    if groups.is_empty() {
        return Ok(None);
    }
    groups.sort_by_key(|g| g.bucket);
    let bucket_col: ArrayRef = match rollup {
        Rollup::Hourly => Arc::new(
            TimestampNanosecondArray::from_iter_values(groups.iter().map(|g| g.bucket))
                .with_timezone("UTC"),
        ),
        Rollup::Daily => Arc::new(Date32Array::from_iter_values(
            groups
                .iter()
                .map(|g| i32::try_from(g.bucket / DAY_NS).unwrap_or(i32::MAX)),
        )),
    };
    let mut columns = vec![bucket_col];
    columns.extend((0..Rollup::KEY.len()).map(|k| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(
            groups.iter().map(|g| keys[g.at.0][k].value(g.at.1)),
        ))
    }));
    columns.push(Arc::new(Float64Array::from_iter_values(
        groups.iter().map(|g| g.sum),
    )));
    columns.push(Arc::new(Float64Array::from_iter_values(
        groups.iter().map(|g| g.min),
    )));
    columns.push(Arc::new(Float64Array::from_iter_values(
        groups.iter().map(|g| g.max),
    )));
    columns.push(Arc::new(UInt64Array::from_iter_values(
        groups.iter().map(|g| g.count),
    )));
    columns.push(Arc::new(Float64Array::from_iter_values(
        groups.iter().map(|g| g.sum / g.count as f64),
    )));
    RecordBatch::try_new(rollup_schema(rollup), columns).map(Some)
}

/// Writes a flush's partials of one rollup as one file (under the day of its first bucket).
pub(crate) fn write_partials(
    dir: &Path,
    rollup: Rollup,
    batch: &RecordBatch,
    segment: u64,
) -> std::io::Result<FileMeta> {
    let starts: Vec<i64> = match rollup {
        Rollup::Hourly => batch
            .column(0)
            .as_primitive::<TimestampNanosecondType>()
            .values()
            .to_vec(),
        Rollup::Daily => batch
            .column(0)
            .as_primitive::<arrow::datatypes::Date32Type>()
            .values()
            .iter()
            .map(|d| i64::from(*d) * DAY_NS)
            .collect(),
    };
    let min_ts = starts.iter().copied().min().unwrap_or(0);
    let max_ts = starts.iter().copied().max().unwrap_or(0);
    let width = if rollup == Rollup::Hourly {
        HOUR_NS
    } else {
        DAY_NS
    };
    let rel_dir = format!(
        "{}/date={}",
        rollup.name(),
        day_label(min_ts.div_euclid(DAY_NS))
    );
    let abs_dir = dir.join(&rel_dir);
    std::fs::create_dir_all(&abs_dir)?;
    let name = format!("{segment:012}-r.parquet");
    let tmp = abs_dir.join(format!("{name}.tmp"));
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(&tmp)?,
        rollup_schema(rollup),
        Some(writer_properties()?),
    )
    .map_err(std::io::Error::other)?;
    writer.write(batch).map_err(std::io::Error::other)?;
    let bytes = finish_file(writer, &tmp, &abs_dir.join(&name))?;
    Ok(FileMeta {
        path: format!("{rel_dir}/{name}"),
        table: rollup.name().to_string(),
        min_ts,
        max_ts: max_ts + width - 1,
        rows: batch.num_rows() as u64,
        bytes,
    })
}

/// The rollup as readers see it: the partial files and the unflushed points (aggregated when
/// read), merged per bucket and key.
///
/// # Errors
/// When the plan cannot be built (a bug).
pub(crate) fn provider(shared: &Arc<Shared>, rollup: Rollup) -> DfResult<Arc<dyn TableProvider>> {
    let files = LogicalPlanBuilder::scan(
        rollup.name(),
        provider_as_source(Arc::new(EmbeddedTable::rollup_files(
            Arc::clone(shared),
            rollup,
        ))),
        None,
    )?
    .build()?;
    let unflushed = query::rollup_from_raw(
        Arc::new(EmbeddedTable::unflushed(Arc::clone(shared), Table::Metrics)),
        rollup,
    )?;
    let bucket = rollup.bucket_column();
    let mut group: Vec<Expr> = vec![col(bucket)];
    group.extend(Rollup::KEY.iter().map(|c| col(*c)));
    let merged = LogicalPlanBuilder::from(files)
        .union(unflushed)?
        .aggregate(
            group,
            vec![
                sum(col("sum_value")).alias("sum_value"),
                min(col("min_value")).alias("min_value"),
                max(col("max_value")).alias("max_value"),
                sum(col("count")).alias("n"),
            ],
        )?;
    let mut out: Vec<Expr> = vec![col(bucket)];
    out.extend(Rollup::KEY.iter().map(|c| col(*c)));
    out.extend([
        col("sum_value"),
        col("min_value"),
        col("max_value"),
        cast(col("n"), arrow::datatypes::DataType::UInt64).alias("count"),
        (col("sum_value") / cast(col("n"), arrow::datatypes::DataType::Float64)).alias("avg_value"),
    ]);
    let plan = merged.project(out)?.build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

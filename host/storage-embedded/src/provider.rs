//! The DataFusion view of one embedded table: the manifest's Parquet files that can hold rows
//! in the asked time range, plus the in-memory batches not yet flushed.
//!
//! Files are chosen by their recorded min/max `timestamp` against the bounds found in the
//! query's filters; a chosen file still held in memory since its flush (module `hot`) is read
//! there; inside the files, DataFusion prunes row groups and pages by statistics (rows
//! are sorted by tenant, so other tenants' row groups are skipped).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use model::{Rollup, Table, rollup_schema, schema_of};

use crate::Shared;

#[derive(Debug)]
pub(crate) struct EmbeddedTable {
    shared: Arc<Shared>,
    table: Table,
    /// The manifest's name of the files read (a table's, or a rollup's).
    name: &'static str,
    schema: SchemaRef,
    files: bool,
    memory: bool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("dir", &self.dir).finish()
    }
}

impl EmbeddedTable {
    /// A table: its files and its rows not flushed yet.
    pub fn new(shared: Arc<Shared>, table: Table) -> EmbeddedTable {
        EmbeddedTable {
            shared,
            table,
            name: table.name(),
            schema: schema_of(table),
            files: true,
            memory: true,
        }
    }

    /// Only a table's rows not flushed yet.
    pub fn unflushed(shared: Arc<Shared>, table: Table) -> EmbeddedTable {
        EmbeddedTable {
            files: false,
            ..EmbeddedTable::new(shared, table)
        }
    }

    /// A rollup's partial files (rows of one key in several files are merged by the reader).
    pub fn rollup_files(shared: Arc<Shared>, rollup: Rollup) -> EmbeddedTable {
        EmbeddedTable {
            shared,
            table: Table::Metrics,
            name: rollup.name(),
            schema: rollup_schema(rollup),
            files: true,
            memory: false,
        }
    }
}

/// Inclusive bounds on `timestamp` in nanoseconds implied by a conjunction of filters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeBounds {
    pub lo: i64,
    pub hi: i64,
}

fn literal_nanos(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampNanosecond(Some(t), _) => Some(*t),
        ScalarValue::TimestampMicrosecond(Some(t), _) => t.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(t), _) => t.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(t), _) => t.checked_mul(1_000_000_000),
        _ => None,
    }
}

fn is_ts_column(e: &Expr) -> bool {
    match e {
        Expr::Column(c) => c.name == "timestamp",
        Expr::Cast(c) => is_ts_column(&c.expr),
        _ => false,
    }
}

fn literal(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => literal_nanos(v),
        _ => None,
    }
}

impl TimeBounds {
    pub fn all() -> TimeBounds {
        TimeBounds {
            lo: i64::MIN,
            hi: i64::MAX,
        }
    }

    fn narrow(&mut self, e: &Expr) {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if *op == Operator::And {
                    self.narrow(left);
                    self.narrow(right);
                    return;
                }
                let (op, v) = if is_ts_column(left) {
                    match literal(right) {
                        Some(v) => (*op, v),
                        None => return,
                    }
                } else if is_ts_column(right) {
                    match (literal(left), op.swap()) {
                        (Some(v), Some(op)) => (op, v),
                        _ => return,
                    }
                } else {
                    return;
                };
                match op {
                    Operator::Eq => {
                        self.lo = self.lo.max(v);
                        self.hi = self.hi.min(v);
                    }
                    Operator::Gt | Operator::GtEq => self.lo = self.lo.max(v),
                    Operator::Lt | Operator::LtEq => self.hi = self.hi.min(v),
                    _ => {}
                }
            }
            Expr::Between(b) if !b.negated && is_ts_column(&b.expr) => {
                if let Some(lo) = literal(&b.low) {
                    self.lo = self.lo.max(lo);
                }
                if let Some(hi) = literal(&b.high) {
                    self.hi = self.hi.min(hi);
                }
            }
            _ => {}
        }
    }

    pub fn from_filters(filters: &[Expr]) -> TimeBounds {
        let mut b = TimeBounds::all();
        for f in filters {
            b.narrow(f);
        }
        b
    }

    fn overlaps(&self, min: i64, max: i64) -> bool {
        min <= self.hi && max >= self.lo
    }
}

#[async_trait]
impl TableProvider for EmbeddedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let bounds = TimeBounds::from_filters(filters);
        let (files, memory): (Vec<String>, Vec<RecordBatch>) = {
            let st = self.shared.state.read();
            let mut files = Vec::new();
            let mut memory = Vec::new();
            let listed = st.manifest.files.iter().filter(|f| {
                self.files && f.table == self.name && bounds.overlaps(f.min_ts, f.max_ts)
            });
            for f in listed {
                // A recently flushed file's rows are still in memory: read them there.
                match st.hot.get(&f.path) {
                    Some(rows) => memory.extend(rows.iter().cloned()),
                    None => {
                        files.push(self.shared.dir.join(&f.path).to_string_lossy().into_owned())
                    }
                }
            }
            let mems =
                std::iter::once(&st.active.tables).chain(st.frozen.iter().map(|f| &f.tables));
            memory.extend(
                mems.filter(|_| self.memory)
                    .filter_map(|t| t.get(&self.table))
                    .flat_map(|b| b.iter().cloned()),
            );
            (files, memory)
        };
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !files.is_empty() {
            let urls = files
                .iter()
                .map(ListingTableUrl::parse)
                .collect::<Result<Vec<_>>>()?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(Arc::clone(&self.schema));
            let listing = ListingTable::try_new(config)?;
            inputs.push(listing.scan(state, projection, filters, limit).await?);
        }
        if !memory.is_empty() {
            let mem = MemorySourceConfig::try_new_exec(
                &[memory],
                Arc::clone(&self.schema),
                projection.cloned(),
            )?;
            inputs.push(mem);
        }
        if inputs.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        UnionExec::try_new(inputs)
    }
}

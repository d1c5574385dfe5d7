//! Read-only SQL over the telemetry tables, always inside one tenant's scope.
//!
//! A store hands us [`TelemetryTables`] (DataFusion providers over everyone's rows); we register,
//! per query, views that filter them to the caller's workspace and tenant, under the tables'
//! public names. The user's text can only name those views, so tenant predicates come from the
//! server, never from the query text. Anything but a single SELECT is refused before planning.
//!
//! No IO of its own: the providers do the reading.

mod audit;
pub mod builder;
mod cache;
mod native;
mod prepared;
mod string_eq;
pub mod views;

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::functions::expr_fn::date_trunc;
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::logical_expr::{Expr, cast};
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder, col, lit};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement;
use model::{ErrorKind, Rollup, Scope, Table};

pub use audit::{AuditFilter, alert_history, audit_events};
pub use cache::{BucketCache, CacheStats};
pub use prepared::{Param, Prepared};

/// A store that runs SQL of its own (ClickHouse) answers builder queries itself: the engine
/// compiles them to that dialect with the tenant's predicates and every caller value as a
/// named, typed parameter (`{p0:String}`), and the store only runs the statement.
pub trait NativeSql: Send + Sync {
    /// How a table is named in a statement (database-qualified).
    fn table_name(&self, table: Table) -> String;

    /// Runs one statement with its parameters (`(name, value)`), keeping at most `max_rows`
    /// rows (saying when it cut).
    fn run<'a>(
        &'a self,
        sql: String,
        params: Vec<(String, String)>,
        max_rows: usize,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<SqlOutput, QueryError>> + Send + 'a>>;
}

/// The port a telemetry store implements for reads: one provider per table, all tenants' rows.
pub trait TelemetryTables: Send + Sync {
    /// The store's own SQL, when it has one that builder queries should run in (ClickHouse);
    /// `None` runs them in DataFusion over the providers.
    fn native_sql(&self) -> Option<&dyn NativeSql> {
        None
    }

    fn table_provider(&self, table: Table) -> Arc<dyn TableProvider>;

    /// The version of `table`'s rows now: it grows with every write to the table and every
    /// removal from it. `None` when the store cannot say what changed (rows written by others,
    /// as into a shared ClickHouse); answers over it are then never kept ([`BucketCache`]).
    fn version(&self, _table: Table) -> Option<u64> {
        None
    }

    /// What was written to or removed from `table` after `version` (one [`Self::version`]
    /// gave).
    fn changes_since(&self, _table: Table, _version: u64) -> Changes {
        Changes::Unknown
    }

    /// A rollup of `metrics_v3` with the columns of [`model::rollup_schema`]. Stores that
    /// maintain rollups serve them; the default aggregates the raw points when read, which
    /// gives the same answer.
    ///
    /// # Errors
    /// When the plan cannot be built (a bug, not a user error).
    fn rollup_provider(&self, rollup: Rollup) -> Result<Arc<dyn TableProvider>, DataFusionError> {
        let plan = rollup_from_raw(self.table_provider(Table::Metrics), rollup)?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

/// What a store says changed in a table since a version ([`TelemetryTables::changes_since`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changes {
    /// No row was written or removed.
    Nothing,
    /// Rows were written or removed; the oldest of their timestamps (ns) is this one or later.
    From(i64),
    /// The store cannot tell.
    Unknown,
}

/// The plan that aggregates raw `metrics_v3` points into a rollup.
///
/// # Errors
/// When the plan cannot be built (a bug, not a user error).
pub fn rollup_from_raw(
    metrics: Arc<dyn TableProvider>,
    rollup: Rollup,
) -> Result<LogicalPlan, DataFusionError> {
    let bucket = match rollup {
        Rollup::Hourly => date_trunc(lit("hour"), col("timestamp")),
        Rollup::Daily => cast(col("timestamp"), DataType::Date32),
    }
    .alias(rollup.bucket_column());
    let mut group: Vec<Expr> = vec![bucket];
    group.extend(Rollup::KEY.iter().map(|c| col(*c)));
    let aggregated =
        LogicalPlanBuilder::scan(Table::Metrics.name(), provider_as_source(metrics), None)?
            .aggregate(
                group,
                vec![
                    sum(col("value")).alias("sum_value"),
                    min(col("value")).alias("min_value"),
                    max(col("value")).alias("max_value"),
                    count(col("value")).alias("n"),
                ],
            )?;
    let mut out: Vec<Expr> = vec![col(rollup.bucket_column())];
    out.extend(Rollup::KEY.iter().map(|c| col(*c)));
    out.extend([
        col("sum_value"),
        col("min_value"),
        col("max_value"),
        cast(col("n"), DataType::UInt64).alias("count"),
        (col("sum_value") / cast(col("n"), DataType::Float64)).alias("avg_value"),
    ]);
    aggregated.project(out)?.build()
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Invalid(String),
    #[error("query failed: {0}")]
    Internal(String),
}

impl QueryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::Invalid(_) => ErrorKind::InvalidInput,
            QueryError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// Whether an error is the user's (a bad query) rather than ours.
fn is_user_error(e: &DataFusionError) -> bool {
    match e {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::ResourcesExhausted(_) => true,
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            is_user_error(inner)
        }
        DataFusionError::Shared(inner) => is_user_error(inner),
        DataFusionError::Collection(errors) => errors.first().is_some_and(is_user_error),
        _ => false,
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        if is_user_error(&e) {
            QueryError::Invalid(e.to_string())
        } else {
            QueryError::Internal(e.to_string())
        }
    }
}

/// Limits on one query.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Rows returned at most; the output says when more were cut.
    pub max_rows: usize,
    /// Memory one query may hold for sorts, joins and aggregations.
    pub memory_bytes: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_rows: 10_000,
            memory_bytes: 512 << 20,
        }
    }
}

/// The result of a query.
#[derive(Debug, Clone)]
pub struct SqlOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// True when the result had more than `max_rows` rows and was cut.
    pub truncated: bool,
}

impl SqlOutput {
    /// The result as an Arrow IPC stream (what plugins read).
    ///
    /// # Errors
    /// When Arrow cannot encode the batches.
    pub fn to_arrow_ipc(&self) -> Result<Vec<u8>, arrow::error::ArrowError> {
        let mut buf = Vec::new();
        {
            let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &self.schema)?;
            for b in &self.batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        Ok(buf)
    }
}

/// Checks that `sql` is exactly one query statement (SELECT, possibly with WITH / UNION).
///
/// # Errors
/// [`QueryError::Invalid`] naming what was found instead.
pub fn ensure_single_select(sql: &str) -> Result<(), QueryError> {
    let statements = DFParser::parse_sql(sql).map_err(|e| match e {
        DataFusionError::SQL(inner, _) => QueryError::Invalid(format!("syntax error: {inner}")),
        other => QueryError::Invalid(other.to_string()),
    })?;
    if statements.len() != 1 {
        return Err(QueryError::Invalid(format!(
            "expected exactly one SELECT statement, found {}",
            statements.len()
        )));
    }
    match statements.front() {
        Some(DfStatement::Statement(stmt)) if matches!(**stmt, Statement::Query(_)) => {
            refuse_reaching_out(stmt)
        }
        _ => Err(QueryError::Invalid(
            "only a SELECT statement is allowed".to_string(),
        )),
    }
}

/// Functions (scalar or table) that read or write outside the tenant's telemetry in some
/// engine: files, URLs, object stores, other databases, processes, cluster fan-out. None
/// exists in our sessions today; refusing them by name keeps it so whatever is registered
/// later, and gives the user a clear reason.
const FORBIDDEN_FUNCTIONS: &[&str] = &[
    "file",
    "url",
    "urlcluster",
    "remote",
    "remotesecure",
    "s3",
    "s3cluster",
    "gcs",
    "hdfs",
    "azureblobstorage",
    "azureblobstoragecluster",
    "mysql",
    "postgresql",
    "mongodb",
    "redis",
    "sqlite",
    "jdbc",
    "odbc",
    "input",
    "executable",
    "cluster",
    "clusterallreplicas",
    "dictionary",
    "dictget",
    "iceberg",
    "deltalake",
    "hudi",
    "read_parquet",
    "read_csv",
    "read_json",
    "read_avro",
    "parquet_metadata",
    "generate_series",
    "range",
];

/// Refuses a forbidden function anywhere in a statement (any scope), and tables qualified by
/// a schema or catalog (`system.tables`, `information_schema.columns`).
fn refuse_reaching_out(stmt: &Statement) -> Result<(), QueryError> {
    use datafusion::sql::sqlparser::ast::{
        Expr as SqlExpr, ObjectName, TableFactor, Visit, Visitor,
    };
    use std::ops::ControlFlow;

    struct Check;
    fn last_ident(name: &ObjectName) -> String {
        name.0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.to_ascii_lowercase())
            .unwrap_or_default()
    }
    impl Visitor for Check {
        type Break = String;

        fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<String> {
            match t {
                TableFactor::Table { name, args, .. } => {
                    let f = last_ident(name);
                    if args.is_some() {
                        return ControlFlow::Break(format!(
                            "the table function {f} is not allowed: queries read only the telemetry tables"
                        ));
                    }
                    if name.0.len() > 1 {
                        return ControlFlow::Break(format!(
                            "{name} is not allowed: name the telemetry tables without a schema"
                        ));
                    }
                }
                TableFactor::Function { name, .. }
                | TableFactor::TableFunction {
                    expr: SqlExpr::Function(datafusion::sql::sqlparser::ast::Function { name, .. }),
                    ..
                } => {
                    return ControlFlow::Break(format!(
                        "the table function {} is not allowed: queries read only the telemetry tables",
                        last_ident(name)
                    ));
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }

        fn pre_visit_expr(&mut self, e: &SqlExpr) -> ControlFlow<String> {
            if let SqlExpr::Function(f) = e {
                let n = last_ident(&f.name);
                if FORBIDDEN_FUNCTIONS.contains(&n.as_str()) {
                    return ControlFlow::Break(format!(
                        "the function {n} is not allowed: it reaches outside the telemetry tables"
                    ));
                }
            }
            ControlFlow::Continue(())
        }
    }
    match stmt.visit(&mut Check) {
        ControlFlow::Break(reason) => Err(QueryError::Invalid(reason)),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn scoped_plan(
    tables: &dyn TelemetryTables,
    table: Table,
    scope: &Scope,
) -> Result<LogicalPlan, DataFusionError> {
    let source = provider_as_source(tables.table_provider(table));
    LogicalPlanBuilder::scan(table.name(), source, None)?
        .filter(
            col("workspace_id")
                .eq(lit(scope.workspace_id.clone()))
                .and(col("tenant_id").eq(lit(scope.tenant_id.clone()))),
        )?
        .build()
}

fn projection_view(base: &LogicalPlan, columns: &[&str]) -> Result<ViewTable, DataFusionError> {
    let plan = LogicalPlanBuilder::from(base.clone())
        .project(columns.iter().map(|c| col(*c)))?
        .build()?;
    Ok(ViewTable::new(plan, None))
}

/// What every query's runtime shares: the caches of Parquet footers and file statistics, so a
/// query does not read again what the one before it read (entries are checked against each
/// file's size and modification time, so a rewritten file is read afresh). File listings are
/// not cached: a store's file set changes with every flush.
static SHARED_RUNTIME: LazyLock<Option<Arc<RuntimeEnv>>> = LazyLock::new(|| {
    RuntimeEnvBuilder::new()
        .with_cache_manager(CacheManagerConfig::default())
        .with_object_list_cache_limit(0)
        .build_arc()
        .ok()
});

/// The runtime whose caches every query shares.
fn shared_runtime() -> Option<Arc<RuntimeEnv>> {
    SHARED_RUNTIME.as_ref().map(Arc::clone)
}

/// A query's runtime: its own memory limit, the shared caches.
fn query_runtime(limits: &QueryLimits) -> Result<Arc<RuntimeEnv>, DataFusionError> {
    let builder = match SHARED_RUNTIME.as_ref() {
        Some(shared) => RuntimeEnvBuilder::from_runtime_env(shared),
        None => RuntimeEnvBuilder::new(),
    };
    builder
        .with_memory_limit(limits.memory_bytes, 1.0)
        .build_arc()
}

/// A session whose catalog holds only the caller's scoped views of the telemetry tables.
///
/// # Errors
/// When DataFusion cannot build the views (a bug, not a user error).
pub fn scoped_context(
    tables: &dyn TelemetryTables,
    scope: &Scope,
    limits: &QueryLimits,
) -> Result<SessionContext, QueryError> {
    let runtime = query_runtime(limits)?;
    let config = SessionConfig::new().with_information_schema(false);
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(string_eq::StringEqRule))
        .build();
    let ctx = SessionContext::new_with_state(state);
    for table in Table::TELEMETRY {
        let plan = scoped_plan(tables, table, scope)?;
        match table {
            Table::Traces => {
                let spans = projection_view(
                    &plan,
                    &[
                        "timestamp",
                        "trace_id",
                        "span_id",
                        "parent_span_id",
                        "span_name",
                        "span_kind",
                        "service_name",
                        "workspace_id",
                        "tenant_id",
                        "duration_nano",
                        "span_attributes",
                    ],
                )?;
                ctx.register_table("spans_v3", Arc::new(spans))?;
            }
            Table::Logs => {
                let by_trace = projection_view(
                    &plan,
                    &[
                        "trace_id",
                        "timestamp",
                        "span_id",
                        "severity_text",
                        "body",
                        "workspace_id",
                        "tenant_id",
                    ],
                )?;
                ctx.register_table("logs_v3_by_trace", Arc::new(by_trace))?;
            }
            _ => {}
        }
        ctx.register_table(table.name(), Arc::new(ViewTable::new(plan, None)))?;
    }
    for rollup in Rollup::ALL {
        let source = provider_as_source(tables.rollup_provider(rollup)?);
        let plan = LogicalPlanBuilder::scan(rollup.name(), source, None)?
            .filter(
                col("workspace_id")
                    .eq(lit(scope.workspace_id.clone()))
                    .and(col("tenant_id").eq(lit(scope.tenant_id.clone()))),
            )?
            .build()?;
        ctx.register_table(rollup.name(), Arc::new(ViewTable::new(plan, None)))?;
    }
    Ok(ctx)
}

/// Runs one read-only SELECT in `scope`.
///
/// # Errors
/// [`QueryError::Invalid`] for anything but a single valid SELECT over known tables and columns.
pub async fn run_scoped_sql(
    tables: &dyn TelemetryTables,
    scope: &Scope,
    sql: &str,
    limits: &QueryLimits,
) -> Result<SqlOutput, QueryError> {
    ensure_single_select(sql)?;
    let ctx = scoped_context(tables, scope, limits)?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx.sql_with_options(sql, options).await?;
    collect_limited(df, limits).await
}

/// Runs a planned query, keeping at most `limits.max_rows` rows (and saying when it cut).
pub(crate) async fn collect_limited(
    df: datafusion::dataframe::DataFrame,
    limits: &QueryLimits,
) -> Result<SqlOutput, QueryError> {
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let df = df.limit(0, Some(limits.max_rows + 1))?;
    let batches = df.collect().await?;
    Ok(cut_rows(schema, batches, limits.max_rows))
}

/// Keeps at most `max_rows` of `batches`, saying whether it cut.
pub(crate) fn cut_rows(
    schema: SchemaRef,
    mut batches: Vec<RecordBatch>,
    max_rows: usize,
) -> SqlOutput {
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    let truncated = total > max_rows;
    if truncated {
        let mut keep = max_rows;
        let mut out = Vec::with_capacity(batches.len());
        for b in batches {
            if keep == 0 {
                break;
            }
            let n = b.num_rows().min(keep);
            out.push(b.slice(0, n));
            keep -= n;
        }
        batches = out;
    }
    SqlOutput {
        schema,
        batches,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_mistakes_are_invalid_input_not_internal_errors() {
        let plan = DataFusionError::Plan("table 'x' not found".into());
        let wrapped = DataFusionError::Diagnostic(
            Box::new(datafusion::common::Diagnostic::new_error("x", None)),
            Box::new(DataFusionError::Context("planning".into(), Box::new(plan))),
        );
        assert!(
            matches!(QueryError::from(wrapped), QueryError::Invalid(m) if m.contains("not found"))
        );
        let shared = DataFusionError::Shared(Arc::new(DataFusionError::Plan("p".into())));
        assert!(matches!(QueryError::from(shared), QueryError::Invalid(_)));
        assert!(matches!(
            QueryError::from(DataFusionError::Internal("bug".into())),
            QueryError::Internal(_)
        ));
    }

    #[test]
    fn only_one_select_passes() {
        assert!(ensure_single_select("SELECT 1").is_ok());
        assert!(ensure_single_select("WITH a AS (SELECT 1) SELECT * FROM a").is_ok());
        for bad in [
            "SELECT 1; SELECT 2",
            "DROP TABLE traces_v3",
            "INSERT INTO logs_v3 VALUES (1)",
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'",
            "COPY (SELECT 1) TO '/tmp/x'",
            "SET datafusion.execution.batch_size = 1",
            "",
            "SELECT * FROM url('http://169.254.169.254/latest', 'CSV')",
            "SELECT * FROM file('/etc/passwd')",
            "SELECT count(*) FROM (SELECT * FROM s3('https://b/x.parquet'))",
            "WITH a AS (SELECT * FROM remote('other:9000', db.t)) SELECT * FROM a",
            "SELECT * FROM logs_v3 UNION ALL SELECT * FROM read_parquet('/data/x.parquet')",
            "SELECT * FROM system.tables",
            "SELECT * FROM information_schema.columns",
            "SELECT file('/etc/passwd') FROM logs_v3",
            "SELECT * FROM generate_series(1, 1000000000)",
        ] {
            assert!(ensure_single_select(bad).is_err(), "{bad}");
        }
    }
}

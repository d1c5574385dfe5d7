//! The trace and log views a console shows: a trace's spans, the logs of a trace, the services
//! that sent spans and each service's operations with their RED metrics (rate, errors,
//! duration percentiles).
//!
//! Each is fixed SQL over the caller's scoped views; what the caller gives (a trace id, a
//! service, a time range) is bound as a typed parameter, never spliced into the text.

use datafusion::prelude::SQLOptions;
use datafusion::scalar::ScalarValue;
use model::Scope;

use crate::{QueryError, QueryLimits, SqlOutput, TelemetryTables, collect_limited, scoped_context};

/// A time range, `[from_ns, to_ns)` in Unix nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub from_ns: i64,
    pub to_ns: i64,
}

fn ts(ns: i64) -> ScalarValue {
    ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into()))
}

/// Runs one of this module's statements with its parameters (`$1`, `$2`, …) bound.
async fn run(
    tables: &dyn TelemetryTables,
    scope: &Scope,
    sql: &str,
    params: Vec<ScalarValue>,
    limits: &QueryLimits,
) -> Result<SqlOutput, QueryError> {
    let ctx = scoped_context(tables, scope, limits)?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx
        .sql_with_options(sql, options)
        .await?
        .with_param_values(params)?;
    collect_limited(df, limits).await
}

/// The spans of one trace, earliest first, with their events, links and attributes.
///
/// # Errors
/// When the store cannot be read.
pub async fn trace_spans(
    tables: &dyn TelemetryTables,
    scope: &Scope,
    trace_id: &str,
    limits: &QueryLimits,
) -> Result<SqlOutput, QueryError> {
    run(
        tables,
        scope,
        "SELECT timestamp, end_timestamp, trace_id, span_id, parent_span_id, span_name, \
         span_kind, service_name, duration_nano, status_code, status_message, span_attributes, \
         resource_attributes, scope_name, events, links \
         FROM traces_v3 WHERE trace_id = $1 ORDER BY timestamp, span_id",
        vec![ScalarValue::from(trace_id)],
        limits,
    )
    .await
}

/// The logs of one trace, earliest first.
///
/// # Errors
/// When the store cannot be read.
pub async fn trace_logs(
    tables: &dyn TelemetryTables,
    scope: &Scope,
    trace_id: &str,
    limits: &QueryLimits,
) -> Result<SqlOutput, QueryError> {
    run(
        tables,
        scope,
        "SELECT timestamp, span_id, severity_text, severity_number, service_name, body, \
         log_attributes FROM logs_v3 WHERE trace_id = $1 ORDER BY timestamp",
        vec![ScalarValue::from(trace_id)],
        limits,
    )
    .await
}

/// The RED columns of a group of spans: requests (entry spans: server or consumer spans, and
/// roots), their errors, and percentiles of their durations in nanoseconds.
const RED: &str = "count(*) AS requests, \
     sum(CASE WHEN status_code = 'error' THEN 1 ELSE 0 END) AS errors, \
     approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_nano) AS p50_ns, \
     approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_nano) AS p90_ns, \
     approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_nano) AS p99_ns, \
     max(timestamp) AS last_seen";

const ENTRY: &str = "(span_kind IN ('server', 'consumer') OR parent_span_id = '')";

/// Every service that sent spans in `range`, with the RED metrics of its entry spans.
///
/// # Errors
/// When the store cannot be read.
pub async fn services(
    tables: &dyn TelemetryTables,
    scope: &Scope,
    range: Range,
    limits: &QueryLimits,
) -> Result<SqlOutput, QueryError> {
    let sql = format!(
        "SELECT service_name, {RED} FROM traces_v3 \
         WHERE timestamp >= $1 AND timestamp < $2 AND {ENTRY} \
         GROUP BY service_name ORDER BY service_name"
    );
    run(
        tables,
        scope,
        &sql,
        vec![ts(range.from_ns), ts(range.to_ns)],
        limits,
    )
    .await
}

/// The operations (span names and kinds) of `service` in `range`, busiest first, with their
/// RED metrics.
///
/// # Errors
/// When the store cannot be read.
pub async fn operations(
    tables: &dyn TelemetryTables,
    scope: &Scope,
    service: &str,
    range: Range,
    limits: &QueryLimits,
) -> Result<SqlOutput, QueryError> {
    let sql = format!(
        "SELECT span_name, span_kind, {RED} FROM traces_v3 \
         WHERE timestamp >= $1 AND timestamp < $2 AND service_name = $3 \
         GROUP BY span_name, span_kind ORDER BY requests DESC, span_name"
    );
    run(
        tables,
        scope,
        &sql,
        vec![
            ts(range.from_ns),
            ts(range.to_ns),
            ScalarValue::from(service),
        ],
        limits,
    )
    .await
}

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

/// A log search: `[from, to)`, newest first, with optional filters.
#[derive(Debug, Clone, Default)]
pub struct LogSearch {
    pub from_ns: i64,
    pub to_ns: i64,
    pub service: Option<String>,
    /// The lowest OTLP severity number kept (9 = INFO, 13 = WARN, 17 = ERROR).
    pub min_severity: Option<u8>,
    /// A piece of the body, any case.
    pub contains: Option<String>,
    /// A regular expression the body matches.
    pub matches: Option<String>,
    /// Log attributes that must have these values.
    pub attributes: Vec<(String, String)>,
    /// Rows at most (the page).
    pub limit: usize,
    /// Where the page starts: rows at or before this time, skipping the first `skip` of them
    /// (the rows at exactly this time an earlier page already gave).
    pub before: Option<(i64, usize)>,
}

/// The columns of a log search, in order.
pub const LOG_COLUMNS: &str = "timestamp, observed_timestamp, trace_id, span_id, severity_text, \
     severity_number, service_name, body, log_attributes, resource_attributes";

/// One page of a log search, newest first (ties in a fixed order, so pages neither skip nor
/// repeat a row).
///
/// # Errors
/// When the store cannot be read, or a bad regular expression.
pub async fn search_logs(
    tables: &dyn TelemetryTables,
    scope: &Scope,
    s: &LogSearch,
    limits: &QueryLimits,
) -> Result<SqlOutput, QueryError> {
    let mut params = vec![ts(s.from_ns), ts(s.to_ns)];
    let mut filters = vec!["timestamp >= $1".to_string(), "timestamp < $2".to_string()];
    let bind = |filter: &str, value: ScalarValue, params: &mut Vec<ScalarValue>| {
        params.push(value);
        filter.replace('?', &format!("${}", params.len()))
    };
    let mut skip = 0;
    if let Some((at, n)) = s.before {
        filters.push(bind("timestamp <= ?", ts(at), &mut params));
        skip = n;
    }
    if let Some(v) = &s.service {
        filters.push(bind(
            "service_name = ?",
            ScalarValue::from(v.as_str()),
            &mut params,
        ));
    }
    if let Some(v) = s.min_severity {
        filters.push(bind(
            "severity_number >= ?",
            ScalarValue::UInt8(Some(v)),
            &mut params,
        ));
    }
    if let Some(v) = &s.contains {
        filters.push(bind(
            "strpos(lower(body), ?) > 0",
            ScalarValue::from(v.to_lowercase()),
            &mut params,
        ));
    }
    if let Some(v) = &s.matches {
        filters.push(bind(
            "regexp_like(body, ?)",
            ScalarValue::from(v.as_str()),
            &mut params,
        ));
    }
    for (k, v) in &s.attributes {
        let key = bind("?", ScalarValue::from(k.as_str()), &mut params);
        filters.push(bind(
            &format!("log_attributes[{key}] = ?"),
            ScalarValue::from(v.as_str()),
            &mut params,
        ));
    }
    // LIMIT and OFFSET are numbers the server computed, not user text.
    let sql = format!(
        "SELECT {LOG_COLUMNS} FROM logs_v3 WHERE {} \
         ORDER BY timestamp DESC, observed_timestamp DESC, service_name, span_id, body \
         LIMIT {} OFFSET {skip}",
        filters.join(" AND "),
        s.limit,
    );
    run(tables, scope, &sql, params, limits).await
}

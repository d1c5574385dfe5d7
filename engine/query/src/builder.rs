//! The query model dashboards and editors build: named queries over one signal (filters,
//! group by, an aggregation, time buckets) and formulas over them (`A / B * 100`), compiled to
//! SQL over the caller's scoped views with every value the caller gave bound as a typed
//! parameter (`$n`). Identifiers come only from this module (our columns), numbers only from
//! values we computed, so no user string ever reaches the SQL text.
//!
//! Keys name what a query filters and groups by: `service.name`; for spans `name`, `kind`,
//! `status.code`, `trace_id`; for logs `severity_text`, `severity_number`, `body`, `trace_id`;
//! `resource.<key>` a resource attribute; `attributes.<key>` (or any other key) an attribute of
//! the span, log record or data point. A missing attribute is the empty string.
//!
//! Counters: `rate` and `increase` take each series' increase between its points (a cumulative
//! counter that went down restarted from zero; a delta point is its own increase), summed per
//! bucket; `rate` divides by the bucket's seconds. Histograms: `histogram_quantile` merges the
//! buckets' counts of every series in a group (their increases, for cumulative histograms) and
//! interpolates linearly inside the bucket the quantile falls in, as Prometheus does.

use std::collections::BTreeMap;

use datafusion::arrow::array::{
    Array, AsArray, Float64Array, ListArray, StringArray, TimestampNanosecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::{SQLOptions, SessionContext};
use datafusion::scalar::ScalarValue;
use model::{Rollup, Scope, Table};
use serde::{Deserialize, Serialize};

use crate::cache::{self, BucketCache};
use crate::{QueryError, QueryLimits, SqlOutput, TelemetryTables, collect_limited, scoped_context};

/// Which telemetry a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Metrics,
    Logs,
    Traces,
}

/// What a query computes per bucket and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    P50,
    P75,
    P90,
    P95,
    P99,
    /// Per-second increase of a counter.
    Rate,
    /// Increase of a counter over the bucket.
    Increase,
    /// A quantile (`quantile`) of a histogram metric, from its bucket counts.
    HistogramQuantile,
}

impl Aggregation {
    pub(crate) fn percentile(self) -> Option<f64> {
        match self {
            Aggregation::P50 => Some(0.5),
            Aggregation::P75 => Some(0.75),
            Aggregation::P90 => Some(0.9),
            Aggregation::P95 => Some(0.95),
            Aggregation::P99 => Some(0.99),
            _ => None,
        }
    }
}

/// How a filter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum FilterOp {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    /// Matches a regular expression (anchored at both ends, as Prometheus does).
    #[serde(rename = "=~")]
    Matches,
    #[serde(rename = "!~")]
    NotMatches,
    #[serde(rename = "exists")]
    Exists,
    #[serde(rename = "not_exists")]
    NotExists,
    #[serde(rename = "in")]
    In,
    #[serde(rename = "not_in")]
    NotIn,
}

/// A filter's value: one string, or a list for `in` / `not_in`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum FilterValue {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub key: String,
    pub op: FilterOp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<FilterValue>,
}

/// The order of a query's series when `limit` keeps only some.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Highest average first.
    #[default]
    ValueDesc,
    ValueAsc,
    /// By labels.
    Labels,
}

/// One named query of the builder form.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BuilderQuery {
    pub name: String,
    pub signal: Signal,
    /// The metric (metrics only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    pub aggregation: Aggregation,
    /// What is aggregated: `value` (metrics, the default), `duration_ms` (spans, the default),
    /// or a key whose values are numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `histogram_quantile`: in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub group_by: Vec<String>,
    #[serde(default)]
    pub order: Order,
    /// Series kept at most (after ordering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Computed for formulas but not returned.
    #[serde(default)]
    pub hidden: bool,
}

/// A formula over the named queries: `+ - * /`, parentheses, numbers and query names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Formula {
    pub name: String,
    pub expression: String,
}

/// One request: its queries share the time range and the step.
#[derive(Debug, Clone)]
pub struct Request {
    pub from_ns: i64,
    pub to_ns: i64,
    /// The bucket width; `None` picks one from the range and `max_points`.
    pub step_ms: Option<i64>,
    pub max_points: usize,
    /// One row per group over the whole range instead of time buckets.
    pub instant: bool,
    pub queries: Vec<BuilderQuery>,
    pub formulas: Vec<Formula>,
}

/// A series: its labels (the group-by keys) and its points (`[time in ms, value]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(i64, Option<f64>)>,
}

/// What one named query or formula produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Output {
    pub name: String,
    pub series: Vec<Series>,
    /// Whether rows were cut at the row limit (the series are then incomplete).
    pub truncated: bool,
    /// The table the answer was read from (`metrics_v3_hourly` when a rollup served it).
    pub source: String,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Response {
    pub from_ms: i64,
    pub to_ms: i64,
    pub step_ms: i64,
    pub results: Vec<Output>,
}

/// Buckets a picked step rounds up to.
const NICE_STEPS_MS: [i64; 18] = [
    1_000,
    5_000,
    10_000,
    15_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
    900_000,
    1_800_000,
    3_600_000,
    7_200_000,
    10_800_000,
    21_600_000,
    43_200_000,
    86_400_000,
    604_800_000,
];

/// Most points a series may have.
pub const MAX_POINTS: usize = 11_000;
/// Most named queries plus formulas in one request.
pub const MAX_QUERIES: usize = 26;
/// Most filters, and most group-by keys, in one query.
pub const MAX_TERMS: usize = 32;
/// The longest string a caller may give (a key, a value, a metric name).
pub const MAX_STRING: usize = 1024;

pub(crate) fn invalid(msg: impl Into<String>) -> QueryError {
    QueryError::Invalid(msg.into())
}

/// The step used for a range and an optional asked step: at least 1 s and at least what keeps
/// the series within `max_points` (a picked step is rounded up to a round width).
///
/// # Errors
/// When an asked step would give more than `max_points` points, or is not positive.
pub fn pick_step(
    from_ns: i64,
    to_ns: i64,
    asked_ms: Option<i64>,
    max_points: usize,
) -> Result<i64, QueryError> {
    let range_ms = ((to_ns - from_ns) / 1_000_000).max(1);
    let max_points = max_points.clamp(1, MAX_POINTS) as i64;
    let least = (range_ms + max_points - 1) / max_points;
    match asked_ms {
        Some(s) if s <= 0 => Err(invalid("step must be positive")),
        Some(s) if s < least => Err(invalid(format!(
            "a step of {s} ms gives more than {max_points} points over this range; use at least {least} ms"
        ))),
        Some(s) => Ok(s),
        None => Ok(NICE_STEPS_MS
            .iter()
            .copied()
            .find(|s| *s >= least)
            .unwrap_or_else(|| (least + 86_399_999) / 86_400_000 * 86_400_000)),
    }
}

/// Checks a name: a letter, then letters, digits or `_`, at most 32.
fn check_name(name: &str, what: &str) -> Result<(), QueryError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {name:?}: a name is a letter followed by letters, digits or _ (at most 32)"
        )))
    }
}

pub(crate) fn check_string(s: &str, what: &str) -> Result<(), QueryError> {
    if s.len() > MAX_STRING {
        Err(invalid(format!("{what} is longer than {MAX_STRING} bytes")))
    } else {
        Ok(())
    }
}

/// SQL being built: text from this module, values as numbered parameters.
struct Sql {
    params: Vec<ScalarValue>,
}

impl Sql {
    /// Binds `v` and returns its placeholder.
    fn bind(&mut self, v: ScalarValue) -> String {
        self.params.push(v);
        format!("${}", self.params.len())
    }

    fn bind_str(&mut self, s: &str) -> String {
        self.bind(ScalarValue::from(s))
    }
}

fn ts_param(ns: i64) -> ScalarValue {
    ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into()))
}

/// The table a query reads.
fn table_of(q: &BuilderQuery) -> &'static str {
    match (q.signal, q.aggregation) {
        (Signal::Metrics, Aggregation::HistogramQuantile) => "metric_histograms",
        (Signal::Metrics, _) => "metrics_v3",
        (Signal::Logs, _) => "logs_v3",
        (Signal::Traces, _) => "traces_v3",
    }
}

/// What a key names: a column (`text` when it is a string in every store), or an attribute in
/// one of the maps. Both SQL dialects render from this.
pub(crate) enum KeyRef<'a> {
    Column { name: &'static str, text: bool },
    Attribute { map: &'static str, name: &'a str },
}

/// Resolves a key of a query over `signal`.
///
/// # Errors
/// A key too long, or naming no attribute (`attributes.`).
pub(crate) fn resolve_key(signal: Signal, key: &str) -> Result<KeyRef<'_>, QueryError> {
    check_string(key, "a key")?;
    let column = |name, text| Ok(KeyRef::Column { name, text });
    match (signal, key) {
        (_, "service.name" | "service_name") => return column("service_name", true),
        (Signal::Traces, "name" | "span.name" | "span_name") => return column("span_name", true),
        (Signal::Traces, "kind" | "span.kind" | "span_kind") => return column("span_kind", false),
        (Signal::Traces, "status.code" | "status_code") => return column("status_code", false),
        (Signal::Traces | Signal::Logs, "trace_id") => return column("trace_id", true),
        (Signal::Logs, "severity_text" | "severity") => return column("severity_text", true),
        (Signal::Logs, "severity_number") => return column("severity_number", false),
        (Signal::Logs, "body") => return column("body", true),
        _ => {}
    }
    let (map, name) = if let Some(k) = key.strip_prefix("resource.") {
        ("resource_attributes", k)
    } else {
        let attributes = match signal {
            Signal::Metrics => "attributes",
            Signal::Logs => "log_attributes",
            Signal::Traces => "span_attributes",
        };
        (attributes, key.strip_prefix("attributes.").unwrap_or(key))
    };
    if name.is_empty() {
        return Err(invalid(format!("key {key:?} names no attribute")));
    }
    Ok(KeyRef::Attribute { map, name })
}

/// The SQL expression (a string) of a key, binding attribute names. (Enumerations are strings
/// in the DataFusion schema; only numbers need a cast.)
fn key_expr(signal: Signal, key: &str, sql: &mut Sql) -> Result<String, QueryError> {
    Ok(match resolve_key(signal, key)? {
        KeyRef::Column {
            name: "severity_number",
            ..
        } => "CAST(severity_number AS VARCHAR)".into(),
        KeyRef::Column { name, .. } => name.to_string(),
        KeyRef::Attribute { map, name } => {
            let p = sql.bind_str(name);
            format!("coalesce({map}[{p}], '')")
        }
    })
}

pub(crate) fn one_value(f: &Filter, i: usize) -> Result<&str, QueryError> {
    match &f.value {
        Some(FilterValue::One(v)) => {
            check_string(v, "a filter value")?;
            Ok(v)
        }
        _ => Err(invalid(format!(
            "filters[{i}] ({}): this operator takes one string value",
            f.key
        ))),
    }
}

fn filter_sql(signal: Signal, f: &Filter, i: usize, sql: &mut Sql) -> Result<String, QueryError> {
    let e = key_expr(signal, &f.key, sql)?;
    Ok(match f.op {
        FilterOp::Eq | FilterOp::Ne => {
            let v = one_value(f, i)?;
            let p = sql.bind_str(v);
            let op = if f.op == FilterOp::Eq { "=" } else { "<>" };
            format!("{e} {op} {p}")
        }
        FilterOp::Matches | FilterOp::NotMatches => {
            let v = one_value(f, i)?;
            let anchored = format!("^(?:{v})$");
            regex::Regex::new(&anchored).map_err(|err| {
                invalid(format!(
                    "filters[{i}] ({}): not a regular expression: {err}",
                    f.key
                ))
            })?;
            let p = sql.bind_str(&anchored);
            let not = if f.op == FilterOp::Matches {
                ""
            } else {
                "NOT "
            };
            format!("{not}regexp_like({e}, {p})")
        }
        FilterOp::Exists => format!("{e} <> ''"),
        FilterOp::NotExists => format!("{e} = ''"),
        FilterOp::In | FilterOp::NotIn => {
            let values = match &f.value {
                Some(FilterValue::Many(v)) if !v.is_empty() && v.len() <= 1000 => v,
                Some(FilterValue::One(v)) => std::slice::from_ref(v),
                _ => {
                    return Err(invalid(format!(
                        "filters[{i}] ({}): in / not_in take a list of 1 to 1000 strings",
                        f.key
                    )));
                }
            };
            let mut ps = Vec::with_capacity(values.len());
            for v in values {
                check_string(v, "a filter value")?;
                ps.push(sql.bind_str(v));
            }
            let not = if f.op == FilterOp::In { "" } else { "NOT " };
            format!("{e} {not}IN ({})", ps.join(", "))
        }
    })
}

/// The numeric expression a query aggregates.
fn field_expr(q: &BuilderQuery, sql: &mut Sql) -> Result<String, QueryError> {
    match (q.signal, q.field.as_deref()) {
        (Signal::Metrics, None | Some("value")) => Ok("value".into()),
        (Signal::Traces, None | Some("duration_ms" | "duration")) => {
            Ok("CAST(duration_nano AS DOUBLE) / 1000000.0".into())
        }
        (Signal::Logs, None) if q.aggregation != Aggregation::Count => Err(invalid(format!(
            "query {}: logs have no value to aggregate; count them or give a numeric field",
            q.name
        ))),
        (_, Some(key)) => Ok(format!(
            "try_cast(nullif({}, '') AS DOUBLE)",
            key_expr(q.signal, key, sql)?
        )),
        (_, None) => Ok("1.0".into()),
    }
}

/// The time bucket expression for a step.
fn bucket(step_ms: i64, column: &str) -> String {
    format!(
        "date_bin(INTERVAL '{step_ms} milliseconds', {column}, TIMESTAMP '1970-01-01T00:00:00Z')"
    )
}

/// The string that tells a counter's or a histogram's series apart within a query.
const SERIES_KEY: &str = "concat_ws('\u{1f}', service_name, \
     array_to_string(map_keys(resource_attributes), '\u{1e}'), \
     array_to_string(map_values(resource_attributes), '\u{1e}'), \
     array_to_string(map_keys(attributes), '\u{1e}'), \
     array_to_string(map_values(attributes), '\u{1e}'))";

/// A compiled query: its SQL, its parameters, and how to read the answer.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub sql: String,
    pub params: Vec<ScalarValue>,
    /// The table read (a rollup's name when one serves it).
    pub source: &'static str,
    /// Group-by keys, in the order of the columns `g0`, `g1`, ….
    pub labels: Vec<String>,
    histogram: bool,
}

/// Whether a rollup can answer `q` exactly: a plain aggregation of metric points, filters and
/// groups only by service, buckets that are whole rollup buckets, a range on their edges.
fn rollup_for(q: &BuilderQuery, r: &Request, step_ms: i64) -> Option<Rollup> {
    let simple_agg = matches!(
        q.aggregation,
        Aggregation::Count
            | Aggregation::Sum
            | Aggregation::Avg
            | Aggregation::Min
            | Aggregation::Max
    );
    let service_only = |k: &str| k == "service.name" || k == "service_name";
    let ok = q.signal == Signal::Metrics
        && simple_agg
        && matches!(q.field.as_deref(), None | Some("value"))
        && q.group_by.iter().all(|k| service_only(k))
        && q.filters.iter().all(|f| {
            service_only(&f.key)
                && matches!(
                    f.op,
                    FilterOp::Eq | FilterOp::Ne | FilterOp::In | FilterOp::NotIn
                )
        });
    if !ok {
        return None;
    }
    // Prefer the coarser rollup; epoch-aligned days are UTC days.
    [(Rollup::Daily, 86_400_000_i64), (Rollup::Hourly, 3_600_000)]
        .into_iter()
        .find(|(_, width)| {
            let w_ns = width * 1_000_000;
            r.from_ns % w_ns == 0
                && r.to_ns % w_ns == 0
                && (r.instant || step_ms % width == 0)
                // Worth it: a rollup bucket stands for many points only over long ranges.
                && (r.to_ns - r.from_ns) >= 6 * w_ns
        })
        .map(|(rollup, _)| rollup)
}

/// Compiles one builder query.
///
/// # Errors
/// [`QueryError::Invalid`] naming what is wrong with the query.
pub fn compile(q: &BuilderQuery, r: &Request, step_ms: i64) -> Result<Compiled, QueryError> {
    compile_shared(&[q], r, step_ms)
}

/// Whether `q` is a plain aggregation of raw rows (no counter, histogram or rollup), the kind
/// that can share its statement with other queries over the same rows.
fn shareable(q: &BuilderQuery, r: &Request, step_ms: i64) -> bool {
    !matches!(
        q.aggregation,
        Aggregation::Rate | Aggregation::Increase | Aggregation::HistogramQuantile
    ) && rollup_for(q, r, step_ms).is_none()
}

/// Whether two queries read the same rows into the same groups: the same signal, metric,
/// filters, group-by keys and field.
fn same_rows(a: &BuilderQuery, b: &BuilderQuery) -> bool {
    a.signal == b.signal
        && a.metric == b.metric
        && a.filters == b.filters
        && a.group_by == b.group_by
        && a.field == b.field
}

/// The request's queries in statements: queries that read the same rows into the same groups
/// with plain aggregations share one statement (one scan and one grouping, a value column
/// each, as a panel's `avg` and `p99` of one metric do); every other query is its own.
/// Each statement lists query positions, in request order.
fn statements(r: &Request, step_ms: i64) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (i, q) in r.queries.iter().enumerate() {
        let joins = shareable(q, r, step_ms)
            .then(|| {
                out.iter().position(|s| {
                    let lead = &r.queries[s[0]];
                    shareable(lead, r, step_ms) && same_rows(lead, q)
                })
            })
            .flatten();
        match joins {
            Some(k) => out[k].push(i),
            None => out.push(vec![i]),
        }
    }
    out
}

/// The column holding the value of the `k`-th query of a statement (`value_0`, `value_1`, …:
/// never a column's own name, which ClickHouse would read as the alias in the other queries'
/// aggregates).
pub(crate) fn value_column(k: usize) -> String {
    format!("value_{k}")
}

/// Compiles queries that [`statements`] put together into one statement: the first query's
/// rows and groups, a value column per query ([`value_column`]).
fn compile_shared(qs: &[&BuilderQuery], r: &Request, step_ms: i64) -> Result<Compiled, QueryError> {
    let Some(&q) = qs.first() else {
        return Err(QueryError::Internal("a statement without a query".into()));
    };
    compile_statement(qs, r, step_ms, rollup_for(q, r, step_ms))
}

/// [`compile_shared`] with the rollup decided by the caller (`None`: the raw rows, as a part of
/// a range the cache completes must be read).
fn compile_statement(
    qs: &[&BuilderQuery],
    r: &Request,
    step_ms: i64,
    rollup: Option<Rollup>,
) -> Result<Compiled, QueryError> {
    let Some(&q) = qs.first() else {
        return Err(QueryError::Internal("a statement without a query".into()));
    };
    check_name(&q.name, "query")?;
    if q.filters.len() > MAX_TERMS || q.group_by.len() > MAX_TERMS {
        return Err(invalid(format!(
            "query {}: at most {MAX_TERMS} filters and {MAX_TERMS} group-by keys",
            q.name
        )));
    }
    let is_counter = matches!(q.aggregation, Aggregation::Rate | Aggregation::Increase);
    let histogram = q.aggregation == Aggregation::HistogramQuantile;
    if (is_counter || histogram) && q.signal != Signal::Metrics {
        return Err(invalid(format!(
            "query {}: rate, increase and histogram_quantile apply to metrics",
            q.name
        )));
    }
    if histogram && !q.quantile.is_some_and(|v| v > 0.0 && v <= 1.0) {
        return Err(invalid(format!(
            "query {}: histogram_quantile needs a quantile in (0, 1]",
            q.name
        )));
    }
    let mut sql = Sql { params: Vec::new() };
    let mut wheres = Vec::new();
    if q.signal == Signal::Metrics {
        let Some(metric) = q.metric.as_deref().filter(|m| !m.is_empty()) else {
            return Err(invalid(format!(
                "query {}: a metrics query names its metric",
                q.name
            )));
        };
        check_string(metric, "a metric name")?;
        let p = sql.bind_str(metric);
        wheres.push(format!("metric_name = {p}"));
    } else if q.metric.is_some() {
        return Err(invalid(format!(
            "query {}: only metrics queries name a metric",
            q.name
        )));
    }
    // Counters and histograms look back one step for the point before the range.
    let lookback_ns = if is_counter || histogram {
        step_ms.max(60_000) * 1_000_000
    } else {
        0
    };
    let time_col = rollup.map_or("timestamp", |_| "hour");
    let from = sql.bind(ts_param(r.from_ns - lookback_ns));
    let to = sql.bind(ts_param(r.to_ns));
    match rollup {
        Some(Rollup::Daily) => {
            wheres.push(format!(
                "date >= CAST({from} AS DATE) AND date < CAST({to} AS DATE)"
            ));
        }
        _ => wheres.push(format!("{time_col} >= {from} AND {time_col} < {to}")),
    }
    for (i, f) in q.filters.iter().enumerate() {
        wheres.push(filter_sql(q.signal, f, i, &mut sql)?);
    }
    let mut groups = Vec::with_capacity(q.group_by.len());
    for k in &q.group_by {
        groups.push(key_expr(q.signal, k, &mut sql)?);
    }
    let labels = q.group_by.clone();
    let time = if r.instant {
        None
    } else {
        Some(match rollup {
            Some(Rollup::Daily) => bucket(step_ms, "CAST(date AS TIMESTAMP)"),
            _ => bucket(step_ms, time_col),
        })
    };
    let mut select = Vec::new();
    if let Some(t) = &time {
        select.push(format!("{t} AS time"));
    }
    for (i, g) in groups.iter().enumerate() {
        select.push(format!("{g} AS g{i}"));
    }
    let group_positions: Vec<String> = (1..=select.len()).map(|i| i.to_string()).collect();
    let where_sql = wheres.join(" AND ");
    let (text, source) = if histogram {
        // Rows go back to us: the bucket arithmetic is done in Rust.
        select.push(format!("{SERIES_KEY} AS series"));
        select.push("timestamp AS ts".into());
        select.push("temporality".into());
        select.push("bucket_bounds".into());
        select.push("bucket_counts".into());
        (
            format!(
                "SELECT {} FROM metric_histograms WHERE {where_sql} ORDER BY series, ts",
                select.join(", ")
            ),
            "metric_histograms",
        )
    } else if is_counter {
        let start = sql.bind(ts_param(r.from_ns));
        let per = if q.aggregation == Aggregation::Rate {
            let seconds = if r.instant {
                (r.to_ns - r.from_ns) as f64 / 1e9
            } else {
                step_ms as f64 / 1e3
            };
            format!(" / {seconds:?}")
        } else {
            String::new()
        };
        let mut inner = select.clone();
        inner.push("timestamp".into());
        inner.push(
            "CASE WHEN temporality = 'delta' THEN value \
             WHEN lag(value) OVER w IS NULL THEN NULL \
             WHEN value < lag(value) OVER w THEN value \
             ELSE value - lag(value) OVER w END AS delta"
                .into(),
        );
        let outer: Vec<String> = time
            .iter()
            .map(|_| "time".to_string())
            .chain((0..groups.len()).map(|i| format!("g{i}")))
            .chain([format!(
                "CAST(sum(delta){per} AS DOUBLE) AS {}",
                value_column(0)
            )])
            .collect();
        let group_clause = if group_positions.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", group_positions.join(", "))
        };
        (
            format!(
                "SELECT {} FROM (SELECT {} FROM metrics_v3 WHERE {where_sql} \
                 WINDOW w AS (PARTITION BY {SERIES_KEY} ORDER BY timestamp)) \
                 WHERE timestamp >= {start}{group_clause} ORDER BY {}",
                outer.join(", "),
                inner.join(", "),
                order_positions(time.is_some(), groups.len()),
            ),
            "metrics_v3",
        )
    } else {
        // A rollup serves one query alone (`shareable`).
        let (values, source) = match rollup {
            Some(r) => (
                format!(
                    "CAST({} AS DOUBLE) AS {}",
                    match q.aggregation {
                        Aggregation::Count => "CAST(sum(count) AS DOUBLE)",
                        Aggregation::Sum => "sum(sum_value)",
                        Aggregation::Min => "min(min_value)",
                        Aggregation::Max => "max(max_value)",
                        _ => "sum(sum_value) / CAST(sum(count) AS DOUBLE)",
                    },
                    value_column(0)
                ),
                r.name(),
            ),
            None => {
                let v = field_expr(q, &mut sql)?;
                let aggs: Vec<String> = qs
                    .iter()
                    .enumerate()
                    .map(|(k, q)| {
                        let agg = match (q.aggregation, q.aggregation.percentile()) {
                            (_, Some(p)) => {
                                format!("percentile_cont({p:?}) WITHIN GROUP (ORDER BY {v})")
                            }
                            (Aggregation::Count, _) if q.field.is_none() => "count(*)".into(),
                            (Aggregation::Count, _) => format!("count({v})"),
                            (Aggregation::Sum, _) => format!("sum({v})"),
                            (Aggregation::Avg, _) => format!("avg({v})"),
                            (Aggregation::Min, _) => format!("min({v})"),
                            _ => format!("max({v})"),
                        };
                        format!("CAST({agg} AS DOUBLE) AS {}", value_column(k))
                    })
                    .collect();
                (aggs.join(", "), table_of(q))
            }
        };
        select.push(values);
        let group_clause = if group_positions.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", group_positions.join(", "))
        };
        (
            format!(
                "SELECT {} FROM {source} WHERE {where_sql}{group_clause} ORDER BY {}",
                select.join(", "),
                order_positions(time.is_some(), groups.len()),
            ),
            source,
        )
    };
    Ok(Compiled {
        sql: text,
        params: sql.params,
        source,
        labels,
        histogram,
    })
}

/// `ORDER BY` the groups, then time: each series' points come together, in time order.
fn order_positions(time: bool, groups: usize) -> String {
    let t = usize::from(time);
    let mut o: Vec<String> = (0..groups).map(|i| (i + 1 + t).to_string()).collect();
    if time {
        o.push("1".into());
    }
    if o.is_empty() {
        o.push("1".into());
    }
    o.join(", ")
}

/// Runs a request: every query (each within `limits`), then the formulas.
///
/// # Errors
/// [`QueryError::Invalid`] for a bad query or formula; [`QueryError::Internal`] when the store
/// fails.
pub async fn run(
    tables: &dyn TelemetryTables,
    scope: &Scope,
    r: &Request,
    limits: &QueryLimits,
) -> Result<Response, QueryError> {
    run_with(tables, scope, r, limits, None).await
}

/// [`run`], reusing the buckets `cache` kept of earlier answers that are still valid and
/// keeping this answer's (see [`BucketCache`]); the answer is the one [`run`] gives.
///
/// # Errors
/// As [`run`].
pub async fn run_cached(
    tables: &dyn TelemetryTables,
    scope: &Scope,
    r: &Request,
    limits: &QueryLimits,
    cache: &BucketCache,
) -> Result<Response, QueryError> {
    run_with(
        tables,
        scope,
        r,
        limits,
        Some(cache).filter(|c| c.enabled()),
    )
    .await
}

async fn run_with(
    tables: &dyn TelemetryTables,
    scope: &Scope,
    r: &Request,
    limits: &QueryLimits,
    cache: Option<&BucketCache>,
) -> Result<Response, QueryError> {
    if r.to_ns <= r.from_ns {
        return Err(invalid("the range is empty: from must be before to"));
    }
    if r.queries.is_empty() {
        return Err(invalid("a request has at least one query"));
    }
    if r.queries.len() + r.formulas.len() > MAX_QUERIES {
        return Err(invalid(format!(
            "at most {MAX_QUERIES} queries and formulas in one request"
        )));
    }
    let step_ms = if r.instant {
        (r.to_ns - r.from_ns) / 1_000_000
    } else {
        pick_step(r.from_ns, r.to_ns, r.step_ms, r.max_points)?
    };
    let mut names = std::collections::BTreeSet::new();
    for n in r
        .queries
        .iter()
        .map(|q| &q.name)
        .chain(r.formulas.iter().map(|f| &f.name))
    {
        if !names.insert(n.as_str()) {
            return Err(invalid(format!("the name {n} is used twice")));
        }
    }
    let compiled = r
        .queries
        .iter()
        .map(|q| compile(q, r, step_ms))
        .collect::<Result<Vec<_>, _>>()?;
    let formulas = r
        .formulas
        .iter()
        .map(|f| {
            check_name(&f.name, "formula")?;
            let e = Expr::parse(&f.expression)?;
            for n in e.names() {
                if !r.queries.iter().any(|q| q.name == n) {
                    return Err(invalid(format!(
                        "formula {}: {n} is not the name of a query",
                        f.name
                    )));
                }
            }
            Ok((f.name.clone(), e))
        })
        .collect::<Result<Vec<_>, QueryError>>()?;
    // The scoped session, made once and only when a query runs in DataFusion.
    let mut ctx = None;
    // Each statement's rows, and where every query's answer is: (statement, value column).
    let mut answers: Vec<SqlOutput> = Vec::new();
    let mut at = vec![(0, 0); r.queries.len()];
    for members in statements(r, step_ms) {
        let qs: Vec<&BuilderQuery> = members.iter().map(|&i| &r.queries[i]).collect();
        let mut run = Runner {
            tables,
            scope,
            qs: &qs,
            step_ms,
            limits,
            ctx: &mut ctx,
        };
        let rows = match cache.filter(|_| keepable(&qs, r, step_ms)) {
            Some(cache) => run.kept(cache, r).await?,
            None => run.statement(r, true).await?,
        };
        for (k, &i) in members.iter().enumerate() {
            at[i] = (answers.len(), k);
        }
        answers.push(rows);
    }
    let mut outputs = Vec::with_capacity(compiled.len());
    for ((q, c), (statement, k)) in r.queries.iter().zip(&compiled).zip(at) {
        let rows = &answers[statement];
        let mut series = if c.histogram {
            histogram_series(rows, c, r, q.quantile.unwrap_or(0.5))?
        } else {
            to_series(
                rows,
                c,
                &value_column(k),
                r.instant.then_some(r.from_ns / 1_000_000),
            )?
        };
        if !r.instant {
            // A bucket without rows counted nothing: 0, not "no value".
            let empty = (q.aggregation == Aggregation::Count).then_some(0.0);
            fill(&mut series, r, step_ms, empty);
        }
        order_and_limit(&mut series, q.order, q.limit);
        outputs.push(Output {
            name: q.name.clone(),
            series,
            truncated: rows.truncated,
            source: c.source.to_string(),
        });
    }
    for (name, e) in formulas {
        let series = e.eval(&outputs)?;
        outputs.push(Output {
            name,
            truncated: false,
            series,
            source: "formula".into(),
        });
    }
    let hidden: Vec<&str> = r
        .queries
        .iter()
        .filter(|q| q.hidden)
        .map(|q| q.name.as_str())
        .collect();
    outputs.retain(|o| !hidden.contains(&o.name.as_str()));
    Ok(Response {
        from_ms: r.from_ns / 1_000_000,
        to_ms: r.to_ns / 1_000_000,
        step_ms,
        results: outputs,
    })
}

/// Whether a statement's answer may be kept per bucket: plain aggregations in time buckets,
/// whose buckets do not depend on each other (no counter, histogram, rollup or instant query).
fn keepable(qs: &[&BuilderQuery], r: &Request, step_ms: i64) -> bool {
    !r.instant && qs.iter().all(|q| shareable(q, r, step_ms))
}

/// Runs one statement (the queries `qs`, which [`statements`] put together).
struct Runner<'a, 'b> {
    tables: &'a dyn TelemetryTables,
    scope: &'a Scope,
    qs: &'a [&'a BuilderQuery],
    step_ms: i64,
    limits: &'a QueryLimits,
    ctx: &'b mut Option<SessionContext>,
}

impl Runner<'_, '_> {
    /// The statement over `r`'s range: in the store's own SQL when it has one, else in
    /// DataFusion over the scoped views. `whole`: `r` is the request's own range (a rollup may
    /// serve it); a part of it reads the raw rows.
    async fn statement(&mut self, r: &Request, whole: bool) -> Result<SqlOutput, QueryError> {
        let lead = self.qs[0];
        let rollup = if whole {
            rollup_for(lead, r, self.step_ms)
        } else {
            None
        };
        if let Some(n) = self.tables.native_sql()
            && let Some(nq) =
                crate::native::compile(self.qs, r, self.step_ms, self.scope, n, rollup.is_some())?
        {
            return n.run(nq.sql, nq.params, self.limits.max_rows).await;
        }
        let c = compile_statement(self.qs, r, self.step_ms, rollup)?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let ctx = match self.ctx {
            Some(ctx) => ctx,
            None => self
                .ctx
                .insert(scoped_context(self.tables, self.scope, self.limits)?),
        };
        let df = ctx
            .sql_with_options(&c.sql, options)
            .await?
            .with_param_values(c.params)?;
        collect_limited(df, self.limits).await
    }

    /// The statement over `r`'s range, reusing the buckets `cache` kept that are still valid
    /// and computing the others, then keeping the answer's whole buckets.
    async fn kept(&mut self, cache: &BucketCache, r: &Request) -> Result<SqlOutput, QueryError> {
        let table = match self.qs[0].signal {
            Signal::Metrics => Table::Metrics,
            Signal::Logs => Table::Logs,
            Signal::Traces => Table::Traces,
        };
        let step_ns = self.step_ms * 1_000_000;
        // Taken before any row is read: what is written from now on is a change since it.
        let (Some(version), Some(want)) = (
            self.tables.version(table),
            cache::whole_buckets(r.from_ns, r.to_ns, step_ns),
        ) else {
            return self.statement(r, true).await;
        };
        let key = cache::Key::new(self.scope, table, self.step_ms, self.qs);
        let reuse = cache.get(&key).and_then(|k| {
            let changes = self.tables.changes_since(table, k.version);
            cache::reusable(&k, changes, want, step_ns).map(|span| (span, k.rows))
        });
        let rows = match reuse {
            None => {
                cache.count(false);
                self.statement(r, true).await?
            }
            Some(((first, end), kept)) => {
                cache.count(true);
                let mut batches = cache::rows_in(&kept, first, end)?;
                let mut cut = false;
                for (from_ns, to_ns) in [(r.from_ns, first), (end, r.to_ns)] {
                    if from_ns < to_ns {
                        let part = Request {
                            from_ns,
                            to_ns,
                            step_ms: Some(self.step_ms),
                            ..r.clone()
                        };
                        let out = self.statement(&part, false).await?;
                        cut |= out.truncated;
                        batches.extend(out.batches);
                    }
                }
                let total: usize = batches.iter().map(|b| b.num_rows()).sum();
                if cut || total > self.limits.max_rows {
                    // Which rows a cut keeps is the full statement's business.
                    return self.statement(r, true).await;
                }
                SqlOutput {
                    schema: kept.schema,
                    batches,
                    truncated: false,
                }
            }
        };
        if !rows.truncated {
            let kept = cache::Kept {
                first_ns: want.0,
                end_ns: want.1,
                version,
                rows: SqlOutput {
                    schema: rows.schema.clone(),
                    batches: cache::rows_in(&rows, want.0, want.1)?,
                    truncated: false,
                },
            };
            cache.put(key, kept);
        }
        Ok(rows)
    }
}

/// Every bucket of the range in every series; `empty` where a series has no value.
fn fill(series: &mut [Series], r: &Request, step_ms: i64, empty: Option<f64>) {
    let first = (r.from_ns / 1_000_000).div_euclid(step_ms) * step_ms;
    let end = r.to_ns / 1_000_000;
    for s in series {
        let have: BTreeMap<i64, Option<f64>> = s.points.drain(..).collect();
        let mut t = first;
        while t < end {
            s.points
                .push((t, have.get(&t).copied().flatten().or(empty)));
            t += step_ms;
        }
    }
}

fn order_and_limit(series: &mut Vec<Series>, order: Order, limit: Option<usize>) {
    let avg = |s: &Series| {
        let v: Vec<f64> = s.points.iter().filter_map(|p| p.1).collect();
        if v.is_empty() {
            f64::NEG_INFINITY
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    match order {
        Order::Labels => series.sort_by(|a, b| a.labels.cmp(&b.labels)),
        Order::ValueDesc => {
            series.sort_by(|a, b| avg(b).total_cmp(&avg(a)).then(a.labels.cmp(&b.labels)))
        }
        Order::ValueAsc => {
            series.sort_by(|a, b| avg(a).total_cmp(&avg(b)).then(a.labels.cmp(&b.labels)))
        }
    }
    if let Some(n) = limit {
        series.truncate(n);
    }
}

fn string_column<'a>(
    rows: &'a SqlOutput,
    b: usize,
    name: &str,
) -> Result<&'a StringArray, QueryError> {
    rows.batches[b]
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| QueryError::Internal(format!("column {name} is not a string column")))
}

fn labels_of(
    rows: &SqlOutput,
    c: &Compiled,
    b: usize,
    i: usize,
) -> Result<BTreeMap<String, String>, QueryError> {
    let mut labels = BTreeMap::new();
    for (j, key) in c.labels.iter().enumerate() {
        let col = string_column(rows, b, &format!("g{j}"))?;
        labels.insert(key.clone(), col.value(i).to_string());
    }
    Ok(labels)
}

/// Column `name` of batch `b` as nanosecond timestamps (ClickHouse's `DateTime64` included).
pub(crate) fn time_column(
    rows: &SqlOutput,
    b: usize,
    name: &str,
) -> Result<TimestampNanosecondArray, QueryError> {
    let col = rows.batches[b]
        .column_by_name(name)
        .ok_or_else(|| QueryError::Internal(format!("no column {name}")))?;
    let cast = datafusion::arrow::compute::cast(
        col,
        &DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None),
    )
    .map_err(|e| QueryError::Internal(e.to_string()))?;
    Ok(cast.as_primitive().clone())
}

/// Rows `(time?, g0…, value…)` → the series of the value column `value`, in the order each
/// first appears (a statement gives them in series order; a cached answer in parts).
fn to_series(
    rows: &SqlOutput,
    c: &Compiled,
    value: &str,
    instant_at_ms: Option<i64>,
) -> Result<Vec<Series>, QueryError> {
    let mut out: Vec<Series> = Vec::new();
    let mut index: std::collections::HashMap<BTreeMap<String, String>, usize> =
        std::collections::HashMap::new();
    for b in 0..rows.batches.len() {
        let batch = &rows.batches[b];
        let values = batch
            .column_by_name(value)
            .and_then(|v| v.as_any().downcast_ref::<Float64Array>())
            .ok_or_else(|| QueryError::Internal(format!("no value column {value}")))?;
        let times = match instant_at_ms {
            Some(_) => None,
            None => Some(time_column(rows, b, "time")?),
        };
        for i in 0..batch.num_rows() {
            let labels = labels_of(rows, c, b, i)?;
            let t = match &times {
                Some(t) => t.value(i) / 1_000_000,
                None => instant_at_ms.unwrap_or_default(),
            };
            let v = (!values.is_null(i))
                .then(|| values.value(i))
                .filter(|v| v.is_finite());
            match out.last_mut() {
                Some(s) if s.labels == labels => s.points.push((t, v)),
                _ => match index.get(&labels) {
                    // Rows of one series apart: parts of a range computed separately.
                    Some(&k) => out[k].points.push((t, v)),
                    None => {
                        index.insert(labels.clone(), out.len());
                        out.push(Series {
                            labels,
                            points: vec![(t, v)],
                        });
                    }
                },
            }
        }
    }
    Ok(out)
}

/// One histogram snapshot: explicit bounds and their counts (one more count than bounds).
struct Snapshot {
    bounds: Vec<f64>,
    counts: Vec<u64>,
}

fn list_f64(l: &ListArray, i: usize) -> Vec<f64> {
    let v = l.value(i);
    v.as_any()
        .downcast_ref::<Float64Array>()
        .map(|a| a.iter().map(|x| x.unwrap_or(0.0)).collect())
        .unwrap_or_default()
}

fn list_u64(l: &ListArray, i: usize) -> Vec<u64> {
    let v = l.value(i);
    v.as_any()
        .downcast_ref::<UInt64Array>()
        .map(|a| a.iter().map(|x| x.unwrap_or(0)).collect())
        .unwrap_or_default()
}

/// Rows of histogram snapshots, ordered by series and time → per group and bucket the merged
/// counts → the quantile.
fn histogram_series(
    rows: &SqlOutput,
    c: &Compiled,
    r: &Request,
    q: f64,
) -> Result<Vec<Series>, QueryError> {
    // (labels, bucket ms) → merged (bounds, counts)
    let mut merged: BTreeMap<(BTreeMap<String, String>, i64), Snapshot> = BTreeMap::new();
    let from_ms = r.from_ns / 1_000_000;
    let mut previous: Option<(String, Snapshot)> = None;
    for b in 0..rows.batches.len() {
        let batch = &rows.batches[b];
        let series = string_column(rows, b, "series")?;
        let temporality = string_column(rows, b, "temporality")?;
        let ts = time_column(rows, b, "ts")?;
        let times = if r.instant {
            None
        } else {
            Some(time_column(rows, b, "time")?)
        };
        let list = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<ListArray>().cloned())
                .ok_or_else(|| QueryError::Internal(format!("no list column {name}")))
        };
        let bounds = list("bucket_bounds")?;
        let counts = list("bucket_counts")?;
        for i in 0..batch.num_rows() {
            let snap = Snapshot {
                bounds: list_f64(&bounds, i),
                counts: list_u64(&counts, i),
            };
            if snap.counts.len() != snap.bounds.len() + 1 {
                continue;
            }
            let key = series.value(i).to_string();
            let increase = if temporality.value(i) == "delta" {
                Some(snap.counts.clone())
            } else {
                match &previous {
                    Some((k, p)) if *k == key && p.bounds == snap.bounds => {
                        let reset = snap.counts.iter().zip(&p.counts).any(|(a, b)| a < b);
                        Some(if reset {
                            snap.counts.clone()
                        } else {
                            snap.counts
                                .iter()
                                .zip(&p.counts)
                                .map(|(a, b)| a - b)
                                .collect()
                        })
                    }
                    _ => None,
                }
            };
            let at_ms = ts.value(i) / 1_000_000;
            if let Some(inc) = increase.filter(|_| at_ms >= from_ms) {
                let t = match &times {
                    Some(t) => t.value(i) / 1_000_000,
                    None => from_ms,
                };
                let slot = merged
                    .entry((labels_of(rows, c, b, i)?, t))
                    .or_insert_with(|| Snapshot {
                        bounds: snap.bounds.clone(),
                        counts: vec![0; inc.len()],
                    });
                if slot.bounds == snap.bounds {
                    for (s, v) in slot.counts.iter_mut().zip(&inc) {
                        *s += v;
                    }
                }
            }
            previous = Some((key, snap));
        }
    }
    let mut out: Vec<Series> = Vec::new();
    for ((labels, t), snap) in merged {
        let v = quantile(q, &snap);
        match out.last_mut() {
            Some(s) if s.labels == labels => s.points.push((t, v)),
            _ => out.push(Series {
                labels,
                points: vec![(t, v)],
            }),
        }
    }
    Ok(out)
}

/// Prometheus' `histogram_quantile` over explicit buckets: the bucket where the rank falls,
/// linear inside it; the first bucket starts at 0 (when its bound is positive), the last
/// (unbounded) bucket answers its lower bound.
fn quantile(q: f64, h: &Snapshot) -> Option<f64> {
    let total: u64 = h.counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, c) in h.counts.iter().enumerate() {
        let before = seen;
        seen += c;
        if (seen as f64) >= rank && *c > 0 {
            if i == h.bounds.len() {
                return h.bounds.last().copied();
            }
            let upper = h.bounds[i];
            let lower = if i == 0 {
                if upper > 0.0 { 0.0 } else { upper }
            } else {
                h.bounds[i - 1]
            };
            let inside = (rank - before as f64) / *c as f64;
            return Some(lower + (upper - lower) * inside);
        }
    }
    h.bounds.last().copied()
}

/// A formula, parsed: `+ - * /` over numbers and query names, with parentheses.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Query(String),
    Neg(Box<Expr>),
    Bin(Box<Expr>, char, Box<Expr>),
}

impl Expr {
    /// Parses a formula.
    ///
    /// # Errors
    /// [`QueryError::Invalid`] saying where the formula goes wrong.
    pub fn parse(text: &str) -> Result<Expr, QueryError> {
        check_string(text, "a formula")?;
        let chars: Vec<char> = text.chars().collect();
        let mut p = Parser {
            chars,
            at: 0,
            depth: 0,
        };
        let e = p.sum()?;
        p.skip_space();
        if p.at != p.chars.len() {
            return Err(invalid(format!(
                "formula {text:?}: unexpected {:?} at {}",
                p.chars[p.at], p.at
            )));
        }
        Ok(e)
    }

    fn names(&self) -> Vec<String> {
        match self {
            Expr::Num(_) => vec![],
            Expr::Query(n) => vec![n.clone()],
            Expr::Neg(e) => e.names(),
            Expr::Bin(a, _, b) => {
                let mut v = a.names();
                v.extend(b.names());
                v
            }
        }
    }

    /// Evaluates the formula point by point. Series of two operands match by equal labels; an
    /// operand with a single series matches every series of the other. Division by zero and a
    /// missing point give no value.
    fn eval(&self, outputs: &[Output]) -> Result<Vec<Series>, QueryError> {
        match self {
            Expr::Num(v) => Ok(vec![Series {
                labels: BTreeMap::new(),
                points: vec![(i64::MIN, Some(*v))],
            }]),
            Expr::Query(n) => outputs
                .iter()
                .find(|o| &o.name == n)
                .map(|o| o.series.clone())
                .ok_or_else(|| invalid(format!("{n} is not the name of a query"))),
            Expr::Neg(e) => Ok(e
                .eval(outputs)?
                .into_iter()
                .map(|mut s| {
                    for p in &mut s.points {
                        p.1 = p.1.map(|v| -v);
                    }
                    s
                })
                .collect()),
            Expr::Bin(a, op, b) => {
                let (a, b) = (a.eval(outputs)?, b.eval(outputs)?);
                let f = |x: f64, y: f64| -> Option<f64> {
                    let v = match op {
                        '+' => x + y,
                        '-' => x - y,
                        '*' => x * y,
                        _ if y == 0.0 => return None,
                        _ => x / y,
                    };
                    v.is_finite().then_some(v)
                };
                let mut out = Vec::new();
                // A single series without labels (a constant, an ungrouped query) goes with
                // every series of the other side; otherwise series pair up by equal labels
                // (a label set on one side only has no result, as in Prometheus).
                let scalar = |v: &[Series]| v.len() == 1 && v[0].labels.is_empty();
                let pairs: Vec<(&Series, &Series)> = if scalar(&b) {
                    a.iter().map(|s| (s, &b[0])).collect()
                } else if scalar(&a) {
                    b.iter().map(|s| (&a[0], s)).collect()
                } else {
                    a.iter()
                        .filter_map(|s| b.iter().find(|t| t.labels == s.labels).map(|t| (s, t)))
                        .collect()
                };
                for (x, y) in pairs {
                    let labels = if x.labels.is_empty() {
                        y.labels.clone()
                    } else {
                        x.labels.clone()
                    };
                    let constant = |s: &Series| s.points.len() == 1 && s.points[0].0 == i64::MIN;
                    let points: Vec<(i64, Option<f64>)> = if constant(y) {
                        x.points
                            .iter()
                            .map(|(t, v)| (*t, v.zip(y.points[0].1).and_then(|(a, b)| f(a, b))))
                            .collect()
                    } else if constant(x) {
                        y.points
                            .iter()
                            .map(|(t, v)| (*t, x.points[0].1.zip(*v).and_then(|(a, b)| f(a, b))))
                            .collect()
                    } else {
                        let ys: BTreeMap<i64, Option<f64>> = y.points.iter().copied().collect();
                        x.points
                            .iter()
                            .map(|(t, v)| {
                                (
                                    *t,
                                    v.zip(ys.get(t).copied().flatten())
                                        .and_then(|(a, b)| f(a, b)),
                                )
                            })
                            .collect()
                    };
                    out.push(Series { labels, points });
                }
                Ok(out)
            }
        }
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn skip_space(&mut self) {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.chars.get(self.at).copied()
    }

    fn sum(&mut self) -> Result<Expr, QueryError> {
        let mut e = self.product()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.at += 1;
            e = Expr::Bin(Box::new(e), op, Box::new(self.product()?));
        }
        Ok(e)
    }

    fn product(&mut self) -> Result<Expr, QueryError> {
        let mut e = self.unary()?;
        while let Some(op @ ('*' | '/')) = self.peek() {
            self.at += 1;
            e = Expr::Bin(Box::new(e), op, Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        self.depth += 1;
        if self.depth > 64 {
            return Err(invalid("a formula nests at most 64 deep"));
        }
        let e = match self.peek() {
            Some('-') => {
                self.at += 1;
                Expr::Neg(Box::new(self.unary()?))
            }
            Some('(') => {
                self.at += 1;
                let e = self.sum()?;
                if self.peek() != Some(')') {
                    return Err(invalid(format!(
                        "formula: a ( is not closed at {}",
                        self.at
                    )));
                }
                self.at += 1;
                e
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                let start = self.at;
                while self
                    .chars
                    .get(self.at)
                    .is_some_and(|c| c.is_ascii_digit() || *c == '.' || *c == 'e')
                {
                    self.at += 1;
                }
                let text: String = self.chars[start..self.at].iter().collect();
                Expr::Num(
                    text.parse()
                        .map_err(|_| invalid(format!("formula: {text:?} is not a number")))?,
                )
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.at;
                while self
                    .chars
                    .get(self.at)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    self.at += 1;
                }
                Expr::Query(self.chars[start..self.at].iter().collect())
            }
            other => {
                return Err(invalid(format!(
                    "formula: expected a number, a query name or ( at {}, found {}",
                    self.at,
                    other.map_or("the end".to_string(), |c| format!("{c:?}"))
                )));
            }
        };
        self.depth -= 1;
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_parse_with_precedence() {
        let e = Expr::parse("A / B * 100").expect("parses");
        assert_eq!(
            e,
            Expr::Bin(
                Box::new(Expr::Bin(
                    Box::new(Expr::Query("A".into())),
                    '/',
                    Box::new(Expr::Query("B".into()))
                )),
                '*',
                Box::new(Expr::Num(100.0))
            )
        );
        assert!(Expr::parse("(A + B").is_err());
        assert!(Expr::parse("A +").is_err());
        assert!(Expr::parse("A ; drop").is_err());
        assert!(Expr::parse(&"(".repeat(100)).is_err());
    }

    #[test]
    fn queries_over_the_same_rows_share_a_statement() {
        let q = |name: &str, aggregation, service: &str| BuilderQuery {
            name: name.into(),
            signal: Signal::Metrics,
            metric: Some("cpu".into()),
            aggregation,
            field: None,
            quantile: None,
            filters: vec![Filter {
                key: "service.name".into(),
                op: FilterOp::Eq,
                value: Some(FilterValue::One(service.into())),
            }],
            group_by: vec!["service.name".into()],
            order: Order::Labels,
            limit: None,
            hidden: false,
        };
        let hour = 3_600_000_000_000;
        let mut r = Request {
            from_ns: 0,
            to_ns: hour,
            step_ms: Some(60_000),
            max_points: 500,
            instant: false,
            queries: vec![
                q("A", Aggregation::Avg, "api"),
                q("B", Aggregation::Rate, "api"),
                q("C", Aggregation::P99, "api"),
                q("D", Aggregation::Avg, "worker"),
                q("E", Aggregation::Count, "api"),
                q("F", Aggregation::Max, "worker"),
            ],
            formulas: vec![],
        };
        assert_eq!(
            statements(&r, 60_000),
            vec![vec![0, 2, 4], vec![1], vec![3, 5]]
        );
        let c = compile_shared(&[&r.queries[0], &r.queries[2]], &r, 60_000).expect("compiles");
        assert!(
            c.sql.contains("AS value_0, CAST(percentile_cont(0.99)")
                && c.sql.contains("AS value_1"),
            "{}",
            c.sql
        );
        // Over a week in whole hours the hourly rollup serves avg and count, each alone; p99
        // reads the raw rows.
        r.to_ns = 7 * 24 * hour;
        assert_eq!(
            statements(&r, 3_600_000),
            vec![vec![0], vec![1], vec![2], vec![3], vec![4], vec![5]]
        );
    }

    #[test]
    fn steps_round_up_and_refuse_too_many_points() {
        let hour = 3_600_000_000_000;
        assert_eq!(pick_step(0, hour, None, 60).expect("a step"), 60_000);
        assert_eq!(pick_step(0, hour, None, 500).expect("a step"), 10_000);
        assert_eq!(pick_step(0, 24 * hour, None, 500).expect("a step"), 300_000);
        assert!(pick_step(0, hour, Some(1_000), 500).is_err());
        assert_eq!(
            pick_step(0, hour, Some(60_000), 500).expect("a step"),
            60_000
        );
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let h = Snapshot {
            bounds: vec![10.0, 100.0, 1000.0],
            counts: vec![50, 40, 10, 0],
        };
        assert_eq!(quantile(0.5, &h), Some(10.0));
        assert_eq!(quantile(0.25, &h), Some(5.0));
        assert_eq!(quantile(0.7, &h), Some(55.0));
        let tail = Snapshot {
            bounds: vec![1.0],
            counts: vec![0, 3],
        };
        assert_eq!(quantile(0.99, &tail), Some(1.0));
    }
}

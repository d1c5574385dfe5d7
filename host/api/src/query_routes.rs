//! `POST /api/v1/query`: the query model dashboards call (named builder queries and formulas
//! over them, `query::builder`), answered as chart-ready series. Reads are scoped to the
//! caller's tenant, bounded in range, points, rows, memory and time; a request the client
//! abandons stops its query (the handler's future, and with it DataFusion's streams, is dropped).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use query::builder::{BuilderQuery, Formula, Request, Signal};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Reader;
use crate::routes::Body;
use crate::{ApiError, AppState};

/// The longest range of a request reading logs or spans.
pub(crate) const MAX_RAW_RANGE_DAYS: i64 = 31;
/// The longest range of a request reading only metrics (rollups answer long ranges).
pub(crate) const MAX_METRICS_RANGE_DAYS: i64 = 400;
/// How long one request's queries may run together.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(run_query))
}

/// A time as a client gives it: Unix milliseconds, RFC 3339, `now`, or `now-1h`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum TimeArg {
    Millis(i64),
    Text(String),
}

impl TimeArg {
    fn to_ns(&self, now: DateTime<Utc>, field: &str) -> Result<i64, ApiError> {
        let t = match self {
            TimeArg::Millis(ms) => DateTime::<Utc>::from_timestamp_millis(*ms),
            TimeArg::Text(s) if s == "now" => Some(now),
            // Grafana fills `"${__from}"` in a JSON string: milliseconds as text.
            TimeArg::Text(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
                .parse()
                .ok()
                .and_then(DateTime::<Utc>::from_timestamp_millis),
            TimeArg::Text(s) if s.starts_with("now-") => {
                let ms = alert::spec::parse_duration(&s[4..])
                    .map_err(|e| ApiError::invalid(format!("{field}: {e}")))?;
                Some(now - chrono::Duration::milliseconds(ms))
            }
            TimeArg::Text(s) => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        };
        t.and_then(|t| t.timestamp_nanos_opt()).ok_or_else(|| {
            ApiError::invalid(format!(
                "{field}: a time is Unix milliseconds, RFC 3339, now or now-<duration>"
            ))
        })
    }
}

/// The body of `POST /api/v1/query`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueryBody {
    /// Unix milliseconds, RFC 3339, `now` or `now-<duration>` (default `now-1h`).
    #[schema(value_type = Option<Object>)]
    pub from: Option<TimeArg>,
    /// As `from` (default `now`).
    #[schema(value_type = Option<Object>)]
    pub to: Option<TimeArg>,
    /// The bucket width (`30s`, `5m`); picked from the range and `max_points` when absent.
    pub step: Option<String>,
    /// Points per series at most (default 500, at most 11,000).
    pub max_points: Option<usize>,
    /// One value per group over the whole range instead of time buckets (stat, gauge, table).
    #[serde(default)]
    pub instant: bool,
    /// Named builder queries: `{name, signal, metric?, aggregation, field?, quantile?,
    /// filters: [{key, op, value}], group_by, order, limit, hidden}`.
    #[schema(value_type = Vec<Object>)]
    pub queries: Vec<BuilderQuery>,
    /// Formulas over the queries' names: `{name, expression: "A / B * 100"}`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub formulas: Vec<Formula>,
    /// `series` (the default: `results[].series[].points`) or `rows`: one flat object per
    /// point, `{time, query, <labels…>, value}` (`.` in label names becomes `_`), the shape
    /// table-minded clients such as Grafana's Infinity data source read directly.
    #[serde(default)]
    pub format: Option<String>,
}

impl QueryBody {
    /// The engine's request: times resolved at `now`, the range and step checked.
    pub(crate) fn to_request(&self, now: DateTime<Utc>) -> Result<Request, ApiError> {
        let to_ns = match &self.to {
            Some(t) => t.to_ns(now, "to")?,
            None => now.timestamp_nanos_opt().unwrap_or_default(),
        };
        let from_ns = match &self.from {
            Some(t) => t.to_ns(now, "from")?,
            None => to_ns - 3_600_000_000_000,
        };
        if from_ns >= to_ns {
            return Err(ApiError::invalid("from must be before to"));
        }
        let only_metrics = self.queries.iter().all(|q| q.signal == Signal::Metrics);
        let max_days = if only_metrics {
            MAX_METRICS_RANGE_DAYS
        } else {
            MAX_RAW_RANGE_DAYS
        };
        if to_ns - from_ns > max_days * 86_400 * 1_000_000_000 {
            return Err(ApiError::invalid(format!(
                "the range is longer than {max_days} days{}; shorten it",
                if only_metrics {
                    ""
                } else {
                    " (logs and spans)"
                }
            )));
        }
        let step_ms = self
            .step
            .as_deref()
            .map(|s| {
                alert::spec::parse_duration(s).map_err(|e| ApiError::invalid(format!("step: {e}")))
            })
            .transpose()?;
        let max_points = self.max_points.unwrap_or(500);
        if max_points == 0 || max_points > query::builder::MAX_POINTS {
            return Err(ApiError::invalid(format!(
                "max_points is between 1 and {}",
                query::builder::MAX_POINTS
            )));
        }
        Ok(Request {
            from_ns,
            to_ns,
            step_ms,
            max_points,
            instant: self.instant,
            queries: self.queries.clone(),
            formulas: self.formulas.clone(),
        })
    }
}

/// Counts a query while it runs; dropped with the request's future (a client that goes away
/// drops it), which also drops the query's streams and so stops its work.
struct Running(Arc<std::sync::atomic::AtomicUsize>);

impl Running {
    fn start(counter: &Arc<std::sync::atomic::AtomicUsize>) -> Running {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Running(Arc::clone(counter))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs `future` within the query time limit, counted in `telemetryflow_queries_running`.
pub(crate) async fn within_time_limit<T>(
    state: &AppState,
    future: impl Future<Output = Result<T, query::QueryError>>,
) -> Result<T, ApiError> {
    let _running = Running::start(&state.queries_running);
    match tokio::time::timeout(QUERY_TIMEOUT, future).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ApiError::invalid(format!(
            "the query ran longer than its limit of {} s; narrow the range or the filters",
            QUERY_TIMEOUT.as_secs()
        ))),
    }
}

/// Runs named builder queries and formulas over the caller's telemetry; each result is a list
/// of series (`labels` and `points` as `[unix ms, value or null]`, one per bucket).
#[utoipa::path(post, path = "/api/v1/query", tag = "query", request_body = QueryBody,
    security(("bearer" = [])),
    responses((status = 200, description = "the series of every query and formula"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn run_query(
    State(state): State<Arc<AppState>>,
    Reader(p): Reader,
    headers: axum::http::HeaderMap,
    Body(body): Body<QueryBody>,
) -> Result<Response, ApiError> {
    if !p.may_read_telemetry() {
        return Err(ApiError::forbidden("this role cannot read telemetry"));
    }
    let flat = match body.format.as_deref() {
        None | Some("series") => false,
        Some("rows") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "format is series or rows, not {other:?}"
            )));
        }
    };
    let request = body.to_request(Utc::now())?;
    let out = within_time_limit(
        &state,
        query::builder::run_cached(
            state.telemetry.as_ref(),
            p.scope(),
            &request,
            &state.query_limits,
            &state.query_cache,
        ),
    )
    .await?;
    let wants_arrow = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(crate::routes::ARROW_STREAM));
    if wants_arrow {
        let outputs: Vec<&query::builder::Output> = out.results.iter().collect();
        let table = series_table(&outputs, true)?;
        let bytes = table.to_arrow_ipc().map_err(ApiError::internal)?;
        return Ok(([(header::CONTENT_TYPE, crate::routes::ARROW_STREAM)], bytes).into_response());
    }
    if flat {
        return Ok(Json(rows(&out)).into_response());
    }
    Ok(Json(serde_json::to_value(out).map_err(ApiError::internal)?).into_response())
}

/// Series as one table: `time` (ms), the query's name (when `query_column`), a column per
/// label (empty where a series lacks it), `value` (null where a bucket has none).
pub(crate) fn series_table(
    outputs: &[&query::builder::Output],
    query_column: bool,
) -> Result<query::SqlOutput, ApiError> {
    use arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let keys: Vec<String> = outputs
        .iter()
        .flat_map(|o| &o.series)
        .flat_map(|s| s.labels.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut times = Vec::new();
    let mut names = Vec::new();
    let mut values = Vec::new();
    let mut labels: Vec<Vec<String>> = vec![Vec::new(); keys.len()];
    for out in outputs {
        for s in &out.series {
            for (t, v) in &s.points {
                times.push(*t);
                names.push(out.name.clone());
                values.push(*v);
                for (i, k) in keys.iter().enumerate() {
                    labels[i].push(s.labels.get(k).cloned().unwrap_or_default());
                }
            }
        }
    }
    let mut fields = vec![Field::new(
        "time",
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        false,
    )];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(
        TimestampMillisecondArray::from(times).with_timezone("UTC"),
    )];
    if query_column {
        fields.push(Field::new("query", DataType::Utf8, false));
        columns.push(Arc::new(StringArray::from(names)));
    }
    for (k, l) in keys.iter().zip(labels) {
        fields.push(Field::new(k, DataType::Utf8, false));
        columns.push(Arc::new(StringArray::from(l)));
    }
    fields.push(Field::new("value", DataType::Float64, true));
    columns.push(Arc::new(Float64Array::from(values)));
    let schema = Arc::new(Schema::new(fields));
    let batch = arrow::record_batch::RecordBatch::try_new(Arc::clone(&schema), columns)
        .map_err(ApiError::internal)?;
    Ok(query::SqlOutput {
        schema,
        batches: vec![batch],
        truncated: false,
    })
}

/// The answer as one object per point: `{time (Unix ms), query, <label>…, value}`, points
/// without a value left out. Label names have `_` for `.` (`service_name`): clients read
/// columns by dotted paths.
fn rows(out: &query::builder::Response) -> Value {
    let mut rows = Vec::new();
    for r in &out.results {
        for s in &r.series {
            for (t, v) in &s.points {
                let Some(v) = v else { continue };
                let mut row = serde_json::Map::new();
                row.insert("time".into(), json!(t));
                row.insert("query".into(), json!(r.name));
                for (k, l) in &s.labels {
                    row.insert(k.replace('.', "_"), json!(l));
                }
                row.insert("value".into(), json!(v));
                rows.push(Value::Object(row));
            }
        }
    }
    json!({"from_ms": out.from_ms, "to_ms": out.to_ms, "step_ms": out.step_ms, "rows": rows})
}

//! Trace and service views over HTTP: a trace as a span tree, its logs, the services that sent
//! spans and each one's operations with RED metrics. Reads are scoped to the caller's tenant.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Duration, Utc};
use model::ErrorKind;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use iam::Principal;

use crate::auth::Reader;
use crate::iam_routes::Params;
use crate::{ApiError, AppState, sql_json};

/// A log search page's rows: 100 unless asked, at most this many.
const MAX_LOG_PAGE: usize = 1000;

/// The longest range a view covers.
const MAX_RANGE_DAYS: i64 = 31;

pub(crate) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(get_trace))
        .routes(routes!(get_trace_logs))
        .routes(routes!(list_services))
        .routes(routes!(list_operations))
        .routes(routes!(search_logs))
}

fn may_read(p: &Principal) -> Result<(), ApiError> {
    if p.may_read_telemetry() {
        Ok(())
    } else {
        Err(ApiError::forbidden("this role cannot read telemetry"))
    }
}

/// A trace id as OTLP gives it: 32 hex digits (16 bytes).
fn trace_id(id: &str) -> Result<String, ApiError> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(ApiError::invalid(format!(
            "a trace id is 32 hexadecimal digits, got {id:?}"
        )))
    }
}

/// Orders spans depth first from their roots (a span whose parent is not in the trace is a
/// root), children by start time; each gets its `depth` and its children's ids.
fn span_tree(spans: Vec<Map<String, Value>>) -> Vec<Value> {
    let id = |s: &Map<String, Value>, k: &str| {
        s.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let ids: BTreeSet<String> = spans.iter().map(|s| id(s, "span_id")).collect();
    let mut children: HashMap<String, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        let parent = id(s, "parent_span_id");
        if parent.is_empty() || !ids.contains(&parent) || parent == id(s, "span_id") {
            roots.push(i);
        } else {
            children.entry(parent).or_default().push(i);
        }
    }
    let mut out = Vec::with_capacity(spans.len());
    let mut seen = vec![false; spans.len()];
    let mut stack: Vec<(usize, usize)> = roots.iter().rev().map(|r| (*r, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        let mine = children
            .get(&id(&spans[i], "span_id"))
            .cloned()
            .unwrap_or_default();
        let mut s = spans[i].clone();
        s.insert("depth".into(), json!(depth));
        s.insert(
            "children".into(),
            json!(
                mine.iter()
                    .map(|c| id(&spans[*c], "span_id"))
                    .collect::<Vec<_>>()
            ),
        );
        out.push(Value::Object(s));
        for c in mine.iter().rev() {
            stack.push((*c, depth + 1));
        }
    }
    out
}

/// A trace: its spans as a tree (depth first, each with `depth` and `children`), its services,
/// start, end and duration.
#[utoipa::path(get, path = "/api/v1/traces/{id}", tag = "traces",
    params(("id" = String, Path, description = "the trace id, 32 hex digits")),
    security(("bearer" = [])),
    responses((status = 200, description = "the trace"), (status = "4XX", description = "an error with its reason")))]
async fn get_trace(
    State(state): State<Arc<AppState>>,
    Reader(p): Reader,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    may_read(&p)?;
    let id = trace_id(&id)?;
    let out = query::views::trace_spans(
        state.telemetry.as_ref(),
        p.scope(),
        &id,
        &state.query_limits,
    )
    .await?;
    let spans = sql_json::to_objects(&out)?;
    if spans.is_empty() {
        return Err(ApiError::new(ErrorKind::NotFound, "trace not found"));
    }
    let text =
        |s: &Map<String, Value>, k: &str| s.get(k).and_then(Value::as_str).map(str::to_string);
    let start = spans.iter().filter_map(|s| text(s, "timestamp")).min();
    let end = spans.iter().filter_map(|s| text(s, "end_timestamp")).max();
    let parse = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    };
    let duration_nano = match (parse(&start), parse(&end)) {
        (Some(a), Some(b)) => (b - a).num_nanoseconds(),
        _ => None,
    };
    let services: BTreeSet<String> = spans
        .iter()
        .filter_map(|s| text(s, "service_name"))
        .collect();
    let errors = spans
        .iter()
        .filter(|s| text(s, "status_code").as_deref() == Some("error"))
        .count();
    Ok(Json(json!({
        "trace_id": id, "span_count": spans.len(), "error_count": errors,
        "services": services, "start": start, "end": end, "duration_nano": duration_nano,
        "truncated": out.truncated, "spans": span_tree(spans),
    })))
}

/// The logs of a trace, earliest first.
#[utoipa::path(get, path = "/api/v1/traces/{id}/logs", tag = "traces",
    params(("id" = String, Path, description = "the trace id, 32 hex digits")),
    security(("bearer" = [])),
    responses((status = 200, description = "the trace's logs"), (status = "4XX", description = "an error with its reason")))]
async fn get_trace_logs(
    State(state): State<Arc<AppState>>,
    Reader(p): Reader,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    may_read(&p)?;
    let id = trace_id(&id)?;
    let out = query::views::trace_logs(
        state.telemetry.as_ref(),
        p.scope(),
        &id,
        &state.query_limits,
    )
    .await?;
    Ok(Json(json!({
        "trace_id": id, "truncated": out.truncated, "logs": sql_json::to_objects(&out)?,
    })))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct RangeQuery {
    /// RFC 3339; default an hour before `to`.
    from: Option<DateTime<Utc>>,
    /// RFC 3339; default now.
    to: Option<DateTime<Utc>>,
}

impl RangeQuery {
    fn range(&self) -> Result<(query::views::Range, f64), ApiError> {
        let to = self.to.unwrap_or_else(Utc::now);
        let from = self.from.unwrap_or(to - Duration::hours(1));
        if from >= to {
            return Err(ApiError::invalid("from must be before to"));
        }
        if to - from > Duration::days(MAX_RANGE_DAYS) {
            return Err(ApiError::invalid(format!(
                "the range is longer than {MAX_RANGE_DAYS} days; shorten it"
            )));
        }
        let ns = |t: DateTime<Utc>| {
            t.timestamp_nanos_opt()
                .ok_or_else(|| ApiError::invalid("a time is out of range"))
        };
        let seconds = (to - from).num_milliseconds() as f64 / 1000.0;
        Ok((
            query::views::Range {
                from_ns: ns(from)?,
                to_ns: ns(to)?,
            },
            seconds,
        ))
    }
}

/// RED rows with per-second rates, error ratios and milliseconds.
fn red(out: &query::SqlOutput, seconds: f64) -> Result<Vec<Value>, ApiError> {
    Ok(sql_json::to_objects(out)?
        .into_iter()
        .map(|mut r| {
            let n = r.get("requests").and_then(Value::as_f64).unwrap_or(0.0);
            let e = r.get("errors").and_then(Value::as_f64).unwrap_or(0.0);
            r.insert("rate_per_second".into(), json!(n / seconds));
            r.insert(
                "error_rate".into(),
                json!(if n > 0.0 { e / n } else { 0.0 }),
            );
            for q in ["p50", "p90", "p99"] {
                let ms = r
                    .remove(&format!("{q}_ns"))
                    .and_then(|v| v.as_f64())
                    .map(|v| v / 1e6);
                r.insert(format!("{q}_ms"), json!(ms));
            }
            Value::Object(r)
        })
        .collect())
}

/// The services that sent spans in the range, with the RED metrics of their entry spans
/// (server and consumer spans, and roots).
#[utoipa::path(get, path = "/api/v1/services", tag = "traces", params(RangeQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "the services"), (status = "4XX", description = "an error with its reason")))]
async fn list_services(
    State(state): State<Arc<AppState>>,
    Reader(p): Reader,
    Params(q): Params<RangeQuery>,
) -> Result<Json<Value>, ApiError> {
    may_read(&p)?;
    let (range, seconds) = q.range()?;
    let out = query::views::services(
        state.telemetry.as_ref(),
        p.scope(),
        range,
        &state.query_limits,
    )
    .await?;
    Ok(Json(json!({"services": red(&out, seconds)?})))
}

/// A service's operations (span name and kind) in the range, busiest first, with RED metrics.
#[utoipa::path(get, path = "/api/v1/services/{id}/operations", tag = "traces",
    params(("id" = String, Path, description = "the service name"), RangeQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "the operations"), (status = "4XX", description = "an error with its reason")))]
async fn list_operations(
    State(state): State<Arc<AppState>>,
    Reader(p): Reader,
    Path(service): Path<String>,
    Params(q): Params<RangeQuery>,
) -> Result<Json<Value>, ApiError> {
    may_read(&p)?;
    let (range, seconds) = q.range()?;
    let out = query::views::operations(
        state.telemetry.as_ref(),
        p.scope(),
        &service,
        range,
        &state.query_limits,
    )
    .await?;
    Ok(Json(
        json!({"service": service, "operations": red(&out, seconds)?}),
    ))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    /// RFC 3339; default an hour before `to`.
    from: Option<DateTime<Utc>>,
    /// RFC 3339; default now.
    to: Option<DateTime<Utc>>,
    /// Only this service's logs.
    service: Option<String>,
    /// The lowest severity kept: trace, debug, info, warn, error or fatal.
    severity: Option<String>,
    /// A piece of the body, any case.
    contains: Option<String>,
    /// A regular expression the body matches.
    matches: Option<String>,
    /// Log attributes that must have these values: `key=value,key2=value2`.
    attributes: Option<String>,
    /// Rows per page (100; at most 1000).
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn severity_number(name: &str) -> Result<u8, ApiError> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "trace" => 1,
        "debug" => 5,
        "info" => 9,
        "warn" | "warning" => 13,
        "error" => 17,
        "fatal" => 21,
        _ => {
            return Err(ApiError::invalid(format!(
                "severity must be trace, debug, info, warn, error or fatal, got {name:?}"
            )));
        }
    })
}

fn cursor_text((at, skip): (i64, usize)) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{at}:{skip}"))
}

fn parse_cursor(text: &str) -> Result<(i64, usize), ApiError> {
    use base64::Engine;
    let bad = || ApiError::invalid("cursor is not one this server gave");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, skip) = raw.split_once(':').ok_or_else(bad)?;
    Ok((
        at.parse().map_err(|_| bad())?,
        skip.parse().map_err(|_| bad())?,
    ))
}

/// Where the next page starts: the last row's time and how many rows at exactly that time
/// were given so far.
fn next_page(out: &query::SqlOutput, before: Option<(i64, usize)>) -> Option<(i64, usize)> {
    use arrow::array::{Array, TimestampNanosecondArray};
    let times: Vec<i64> = out
        .batches
        .iter()
        .filter_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
        })
        .flat_map(|a| (0..a.len()).map(move |i| a.value(i)))
        .collect();
    let last = *times.last()?;
    let same = times.iter().rev().take_while(|t| **t == last).count();
    let earlier = before.filter(|(at, _)| *at == last).map_or(0, |(_, n)| n);
    Some((last, same + earlier))
}

/// Log search, newest first, a page at a time: time range, service, lowest severity, a piece
/// of the body or a regular expression, attribute values. `next_cursor` fetches the next page.
#[utoipa::path(get, path = "/api/v1/logs", tag = "logs", params(LogQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "a page of logs"), (status = "4XX", description = "an error with its reason")))]
async fn search_logs(
    State(state): State<Arc<AppState>>,
    Reader(p): Reader,
    Params(q): Params<LogQuery>,
) -> Result<Json<Value>, ApiError> {
    may_read(&p)?;
    let (range, _) = RangeQuery {
        from: q.from,
        to: q.to,
    }
    .range()?;
    for (name, v) in [
        ("contains", &q.contains),
        ("matches", &q.matches),
        ("attributes", &q.attributes),
    ] {
        if v.as_ref().is_some_and(|v| v.len() > 1024) {
            return Err(ApiError::invalid(format!("{name} must be at most 1 KiB")));
        }
    }
    if let Some(re) = &q.matches {
        regex::RegexBuilder::new(re)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| ApiError::invalid(format!("matches is not a regular expression: {e}")))?;
    }
    let mut attributes = Vec::new();
    for pair in q
        .attributes
        .iter()
        .flat_map(|a| a.split(','))
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            ApiError::invalid(format!("attributes are key=value pairs, got {pair:?}"))
        })?;
        attributes.push((k.trim().to_string(), v.trim().to_string()));
    }
    if attributes.len() > 20 {
        return Err(ApiError::invalid("at most 20 attribute filters"));
    }
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LOG_PAGE {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {MAX_LOG_PAGE}"
        )));
    }
    let before = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let search = query::views::LogSearch {
        from_ns: range.from_ns,
        to_ns: range.to_ns,
        service: q.service,
        min_severity: q.severity.as_deref().map(severity_number).transpose()?,
        contains: q.contains,
        matches: q.matches,
        attributes,
        limit,
        before,
    };
    let out = query::views::search_logs(
        state.telemetry.as_ref(),
        p.scope(),
        &search,
        &state.query_limits,
    )
    .await?;
    let logs = sql_json::to_objects(&out)?;
    let next = (logs.len() == limit)
        .then(|| next_page(&out, before))
        .flatten()
        .map(cursor_text);
    Ok(Json(json!({"logs": logs, "next_cursor": next})))
}

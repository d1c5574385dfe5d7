//! The query endpoint dashboards call, on the embedded store and on ClickHouse.
//!
//! Golden files (`tests/fixtures/query-golden/*.json`): each holds a builder request (or a SQL
//! query) and the answer expected over the data `ingest` sends; both stores must give
//! that answer, to 6 significant digits. Times in the files are offsets from the data's start,
//! so the files do not depend on the day they run. `TELEMETRYFLOW_BLESS=1` rewrites the expected answers from the
//! embedded store (read the diff before committing it).
//!
//! Also here: a rollup answers what the raw points answer; limits and bad queries get a 400
//! with the reason; another tenant sees nothing.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::{Api, TestServer, now_nanos};

const MINUTE_NS: u64 = 60_000_000_000;
const HOUR_NS: u64 = 60 * MINUTE_NS;
/// The data covers seven hours, one point per minute and series.
const MINUTES: u64 = 7 * 60;

fn attr(k: &str, v: &str) -> Value {
    json!({"key": k, "value": {"stringValue": v}})
}

/// Where the data starts: a whole hour, eight hours ago.
fn data_start() -> u64 {
    (now_nanos() / HOUR_NS - 8) * HOUR_NS
}

/// The metrics of one service for minutes `[m0, m1)`: a gauge per CPU state, a cumulative
/// counter per route (restarting from zero at minute 200), a delta counter and a cumulative
/// histogram. Values are whole numbers, so sums are exact whatever the order.
fn metrics_body(start: u64, service: &str, host: &str, k: u64, m0: u64, m1: u64) -> Value {
    let t = |i: u64| (start + i * MINUTE_NS).to_string();
    let mut cpu = Vec::new();
    let mut requests = Vec::new();
    let mut jobs = Vec::new();
    let mut durations = Vec::new();
    for i in m0..m1 {
        for (s, state) in ["user", "system"].iter().enumerate() {
            let v = (i * 37 + k * 11 + s as u64 * 29) % 100;
            cpu.push(json!({"timeUnixNano": t(i), "asDouble": v as f64,
                "attributes": [attr("state", state)]}));
        }
        for (r, route) in ["/a", "/b"].iter().enumerate() {
            let epoch = if i >= 200 { 200 } else { 0 };
            let total: u64 = (epoch..=i).map(|j| (j * 13 + r as u64 + k) % 7).sum();
            requests.push(json!({"startTimeUnixNano": t(epoch), "timeUnixNano": t(i),
                "asInt": total.to_string(), "attributes": [attr("http.route", route)]}));
        }
        jobs.push(
            json!({"startTimeUnixNano": t(i.saturating_sub(1)), "timeUnixNano": t(i),
            "asInt": ((i * 5 + k) % 9).to_string()}),
        );
        let mut counts = [0u64; 4];
        for j in 0..=i {
            counts[0] += (j + k) % 4;
            counts[1] += (j * 3 + k) % 5;
            counts[2] += u64::from(j % 3 == 0);
            counts[3] += u64::from(j % 11 == 0);
        }
        let n: u64 = counts.iter().sum();
        durations.push(json!({"startTimeUnixNano": t(0), "timeUnixNano": t(i),
            "count": n.to_string(), "sum": (n * 50) as f64,
            "bucketCounts": counts.iter().map(u64::to_string).collect::<Vec<_>>(),
            "explicitBounds": [10.0, 100.0, 1000.0]}));
    }
    json!({"resourceMetrics": [{
        "resource": {"attributes": [attr("service.name", service), attr("host.name", host)]},
        "scopeMetrics": [{"scope": {"name": "golden"}, "metrics": [
            {"name": "system.cpu.utilization", "unit": "%", "gauge": {"dataPoints": cpu}},
            {"name": "http.server.requests", "unit": "1", "sum": {"aggregationTemporality": 2,
                "isMonotonic": true, "dataPoints": requests}},
            {"name": "jobs.processed", "unit": "1", "sum": {"aggregationTemporality": 1,
                "isMonotonic": true, "dataPoints": jobs}},
            {"name": "http.server.duration", "unit": "ms", "histogram": {
                "aggregationTemporality": 2, "dataPoints": durations}},
        ]}],
    }]})
}

/// 210 spans, one every two minutes, alternating services and names; every seventh fails.
fn traces_body(start: u64) -> Value {
    let mut by_service: [Vec<Value>; 2] = [Vec::new(), Vec::new()];
    for i in 0..MINUTES / 2 {
        let s = (i % 2) as usize;
        let name = ["GET /a", "GET /b", "work"][(i % 3) as usize];
        let begin = start + i * 2 * MINUTE_NS;
        let ms = (i * 7919) % 500 + 1;
        let mut span = json!({
            "traceId": format!("{:032x}", i + 1), "spanId": format!("{:016x}", i + 1),
            "name": name, "kind": 2,
            "startTimeUnixNano": begin.to_string(),
            "endTimeUnixNano": (begin + ms * 1_000_000).to_string(),
            "attributes": [attr("http.route", name)],
        });
        if i % 7 == 0 {
            span["status"] = json!({"code": 2, "message": "failed"});
        }
        by_service[s].push(span);
    }
    let [api, worker] = by_service;
    json!({"resourceSpans": [
        {"resource": {"attributes": [attr("service.name", "api")]},
         "scopeSpans": [{"scope": {"name": "golden"}, "spans": api}]},
        {"resource": {"attributes": [attr("service.name", "worker")]},
         "scopeSpans": [{"scope": {"name": "golden"}, "spans": worker}]},
    ]})
}

/// 420 logs, one a minute, severities cycling INFO, INFO, WARN, ERROR.
fn logs_body(start: u64) -> Value {
    let records: Vec<Value> = (0..MINUTES)
        .map(|i| {
            let sev = ["INFO", "INFO", "WARN", "ERROR"][(i % 4) as usize];
            json!({"timeUnixNano": (start + i * MINUTE_NS + 1).to_string(),
                   "severityText": sev, "body": {"stringValue": format!("job {i} {sev}")},
                   "attributes": [attr("queue", ["fast", "slow", "bulk"][(i % 3) as usize])]})
        })
        .collect();
    json!({"resourceLogs": [{"resource": {"attributes": [attr("service.name", "worker")]},
        "scopeLogs": [{"scope": {"name": "golden"}, "logRecords": records}]}]})
}

async fn ingest(srv: &TestServer, key: &str, start: u64) {
    for m0 in (0..MINUTES).step_by(60) {
        for (service, host, k) in [("api", "host-a", 0), ("worker", "host-b", 1)] {
            let body = metrics_body(start, service, host, k, m0, m0 + 60);
            srv.send_json(key, "/v1/metrics", &body).await;
        }
    }
    srv.send_json(key, "/v1/traces", &traces_body(start)).await;
    srv.send_json(key, "/v1/logs", &logs_body(start)).await;
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/query-golden")
}

/// `"90m"` or `"2h"` → nanoseconds.
fn offset_ns(text: &str) -> u64 {
    let (n, unit) = text.split_at(text.len() - 1);
    let n: u64 = n.parse().expect("an offset such as 90m or 2h");
    match unit {
        "m" => n * MINUTE_NS,
        "h" => n * HOUR_NS,
        _ => panic!("an offset such as 90m or 2h, not {text}"),
    }
}

/// Rounds to 6 significant digits: stores add in different orders, and percentiles are exact
/// on ClickHouse while DataFusion cuts the interpolation weight to 6 decimals.
fn round(v: f64) -> Value {
    if v == 0.0 || !v.is_finite() {
        return json!(v);
    }
    let digits = 6 - v.abs().log10().ceil() as i32;
    let f = 10f64.powi(digits);
    json!((v * f).round() / f)
}

/// A builder answer with times as offsets (ms) from the data's start and values rounded.
fn normalize_series(answer: &Value, start_ms: i64) -> Value {
    let results: Vec<Value> = answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            let series: Vec<Value> = r["series"]
                .as_array()
                .expect("series")
                .iter()
                .map(|s| {
                    let points: Vec<Value> = s["points"]
                        .as_array()
                        .expect("points")
                        .iter()
                        .map(|p| {
                            let t = p[0].as_i64().expect("time") - start_ms;
                            json!([t, p[1].as_f64().map_or(Value::Null, round)])
                        })
                        .collect();
                    json!({"labels": s["labels"], "points": points})
                })
                .collect();
            json!({"name": r["name"], "source": r["source"], "series": series})
        })
        .collect();
    json!({"step_ms": answer["step_ms"], "results": results})
}

fn normalize_rows(answer: &Value) -> Value {
    let rows: Vec<Value> = answer["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            Value::Array(
                row.as_array()
                    .expect("row")
                    .iter()
                    .map(|v| match v.as_f64() {
                        Some(f) if v.is_f64() => round(f),
                        _ => v.clone(),
                    })
                    .collect(),
            )
        })
        .collect();
    let columns: Vec<Value> = answer["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    json!({"columns": columns, "rows": rows})
}

/// Runs one golden case; returns the normalized answer.
async fn answer(api: &Api, token: &str, case: &Value, start: u64) -> Value {
    let start_ms = (start / 1_000_000) as i64;
    if let Some(sql) = case["sql"].as_str() {
        let (status, body) = api
            .post("/api/v1/query/sql", Some(token), json!({"sql": sql}))
            .await;
        assert_eq!(status, 200, "{sql}: {body}");
        return normalize_rows(&body);
    }
    let mut request = case["request"].clone();
    let range = case["range"].as_array().expect("a range [from, to]");
    let at =
        |i: usize| start_ms + (offset_ns(range[i].as_str().expect("offset")) / 1_000_000) as i64;
    request["from"] = json!(at(0));
    request["to"] = json!(at(1));
    let (status, body) = api.post("/api/v1/query", Some(token), request).await;
    assert_eq!(status, 200, "{}: {body}", case["request"]);
    normalize_series(&body, start_ms)
}

#[tokio::test]
async fn golden_queries_and_limits() {
    let (srv, api, admin) = TestServer::with_admin().await;
    scenario(srv, api, admin, "embedded").await;
}

#[tokio::test]
async fn golden_queries_and_limits_on_clickhouse() {
    let Some((srv, api, admin)) = TestServer::with_admin_on_clickhouse().await else {
        return;
    };
    scenario(srv, api, admin, "clickhouse").await;
}

async fn scenario(srv: TestServer, api: Api, admin: String, store: &str) {
    let (_, viewer_b) = api.tenant_with_viewer(&admin, "other").await;
    let (key, _) = api
        .key(
            &admin,
            &["metrics:write", "traces:write", "logs:write"],
            None,
        )
        .await;
    let start = data_start();
    ingest(&srv, &key, start).await;

    let bless = std::env::var("TELEMETRYFLOW_BLESS").is_ok_and(|v| v == "1") && store == "embedded";
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("the golden directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the golden files are there");
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read golden file");
        let mut case: Value = serde_json::from_str(&text).expect("a golden file is JSON");
        let got = answer(&api, &admin, &case, start).await;
        if bless {
            case["expect"] = got;
            let pretty = serde_json::to_string_pretty(&case).expect("json") + "\n";
            std::fs::write(path, pretty).expect("write golden file");
            continue;
        }
        if got != case["expect"] {
            failures.push(format!(
                "{}: on {store}\n  expected {}\n  got      {}",
                path.display(),
                case["expect"],
                got
            ));
        }
        // Another tenant's view of the same query holds no series and no rows.
        let theirs = answer(&api, &viewer_b, &case, start).await;
        let empty = theirs["results"].as_array().is_some_and(|r| {
            r.iter().all(|o| {
                o["series"].as_array().is_some_and(|s| {
                    s.iter().all(|s| {
                        s["points"]
                            .as_array()
                            .is_some_and(|p| p.iter().all(|p| p[1].is_null() || p[1] == json!(0.0)))
                    })
                })
            })
        }) || theirs["rows"].as_array().is_some_and(|r| {
            r.iter().all(|row| {
                row.as_array().is_some_and(|c| {
                    c.iter()
                        .all(|v| v.is_null() || v.is_string() || *v == json!(0))
                })
            })
        });
        assert!(empty, "{}: another tenant sees {theirs}", path.display());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    rollups_equal_raw(&api, &admin, start).await;
    shared_statements_answer_as_alone(&api, &admin, start).await;
    arrow_answer(&api, &admin, start).await;
    limits_and_bad_queries(&api, &admin, start).await;
    a_refreshed_panel_sees_late_points(&srv, &api, &admin, &key, start, store).await;
    drop(srv);
}

/// A panel refreshed after a point arrived late, into a bucket its last answer already had,
/// shows that point: the server's bucket cache reuses only buckets no write touched since.
async fn a_refreshed_panel_sees_late_points(
    srv: &TestServer,
    api: &Api,
    token: &str,
    key: &str,
    start: u64,
    store: &str,
) {
    let start_ms = (start / 1_000_000) as i64;
    let gauge = |points: &[(u64, f64)]| {
        let points: Vec<Value> = points
            .iter()
            .map(|(t, v)| json!({"timeUnixNano": t.to_string(), "asDouble": v}))
            .collect();
        json!({"resourceMetrics": [{"resource": {"attributes": [attr("service.name", "late")]},
            "scopeMetrics": [{"scope": {"name": "golden"}, "metrics": [
                {"name": "late.gauge", "gauge": {"dataPoints": points}}]}]}]})
    };
    let points: Vec<(u64, f64)> = (0..120)
        .map(|i| (start + i * MINUTE_NS + 1_000_000_000, 1.0))
        .collect();
    srv.send_json(key, "/v1/metrics", &gauge(&points)).await;
    // Inside buckets at both ends, as `now-2h` .. `now` is.
    let request = json!({"from": start_ms + 30_000, "to": start_ms + 7_220_000, "step": "1m",
        "queries": [
            {"name": "N", "signal": "metrics", "metric": "late.gauge", "aggregation": "count",
             "group_by": ["service.name"]},
            {"name": "S", "signal": "metrics", "metric": "late.gauge", "aggregation": "sum",
             "group_by": ["service.name"]}]});
    let at = |body: &Value, query: usize, minute: i64| {
        body["results"][query]["series"][0]["points"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p[0] == json!(start_ms + minute * 60_000)))
            .and_then(|p| p[1].as_f64())
    };
    let hits_before = server_metric(api, "telemetryflow_query_cache_hits_total").await;
    let (status, before) = api
        .post("/api/v1/query", Some(token), request.clone())
        .await;
    assert_eq!(status, 200, "{before}");
    let (status, again) = api
        .post("/api/v1/query", Some(token), request.clone())
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(before, again, "{store}: the same rows, the same answer");
    assert_eq!(at(&before, 0, 30), Some(1.0), "{store}: {before}");

    srv.send_json(
        key,
        "/v1/metrics",
        &gauge(&[(start + 30 * MINUTE_NS + 5_000_000_000, 41.0)]),
    )
    .await;
    let (status, after) = api.post("/api/v1/query", Some(token), request).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(
        at(&after, 0, 30),
        Some(2.0),
        "{store}: the late point counts"
    );
    assert_eq!(at(&after, 1, 30), Some(42.0), "{store}: and sums");
    for minute in [1, 29, 31, 119] {
        assert_eq!(at(&after, 0, minute), Some(1.0), "{store}: minute {minute}");
    }
    let hits = server_metric(api, "telemetryflow_query_cache_hits_total").await - hits_before;
    if store == "embedded" {
        assert!(hits >= 2.0, "the refreshes reused kept buckets: {hits}");
    } else {
        assert_eq!(hits, 0.0, "answers over ClickHouse are not kept");
    }
}

/// The hourly rollup serves a long, hour-aligned query; forcing the raw points (a filter that
/// keeps every point but that no rollup can apply) gives the same answer.
async fn rollups_equal_raw(api: &Api, token: &str, start: u64) {
    let start_ms = (start / 1_000_000) as i64;
    for aggregation in ["avg", "sum", "min", "max", "count"] {
        for step in ["1h", "2h"] {
            let request = |force_raw: bool| {
                let mut filters = vec![json!({"key": "service.name", "op": "!=", "value": "none"})];
                if force_raw {
                    filters.push(json!({"key": "attributes.absent", "op": "not_exists"}));
                }
                json!({
                    "from": start_ms, "to": start_ms + 7 * 3_600_000, "step": step,
                    "queries": [{"name": "A", "signal": "metrics",
                        "metric": "system.cpu.utilization", "aggregation": aggregation,
                        "filters": filters, "group_by": ["service.name"]}],
                })
            };
            let (s1, rolled) = api.post("/api/v1/query", Some(token), request(false)).await;
            let (s2, raw) = api.post("/api/v1/query", Some(token), request(true)).await;
            assert_eq!((s1, s2), (200, 200), "{rolled} {raw}");
            assert_eq!(rolled["results"][0]["source"], json!("metrics_v3_hourly"));
            assert_eq!(raw["results"][0]["source"], json!("metrics_v3"));
            let a = normalize_series(&rolled, start_ms);
            let b = normalize_series(&raw, start_ms);
            assert_eq!(
                a["results"][0]["series"], b["results"][0]["series"],
                "{aggregation} {step}"
            );
            assert!(
                a["results"][0]["series"][0]["points"]
                    .as_array()
                    .is_some_and(|p| p.iter().all(|p| !p[1].is_null())),
                "{a}"
            );
        }
    }
}

/// Queries of one request over the same rows (a panel's avg, p99, count and max of a metric)
/// run as one statement; each answers what it answers alone, with its own order and limit,
/// next to queries that cannot share (another filter, a counter's rate) and a formula.
async fn shared_statements_answer_as_alone(api: &Api, token: &str, start: u64) {
    let start_ms = (start / 1_000_000) as i64;
    let cpu = |name: &str, aggregation: &str, service: &str| {
        json!({"name": name, "signal": "metrics", "metric": "system.cpu.utilization",
            "aggregation": aggregation, "order": "labels",
            "filters": [{"key": "service.name", "op": "=", "value": service}],
            "group_by": ["resource.host.name", "attributes.state"]})
    };
    let mut top = cpu("D", "max", "api");
    top["order"] = json!("value_desc");
    top["limit"] = json!(1);
    let mut hidden = cpu("H", "min", "api");
    hidden["hidden"] = json!(true);
    let queries = vec![
        cpu("A", "avg", "api"),
        cpu("B", "p99", "api"),
        cpu("C", "count", "api"),
        top,
        hidden,
        cpu("E", "avg", "worker"),
        json!({"name": "R", "signal": "metrics", "metric": "http.server.requests",
            "aggregation": "rate", "group_by": ["service.name"], "order": "labels"}),
    ];
    let request = |queries: Vec<Value>, formulas: Value| {
        json!({"from": start_ms + 3_600_000, "to": start_ms + 3 * 3_600_000, "step": "5m",
            "queries": queries, "formulas": formulas})
    };
    let formulas = json!([{"name": "F", "expression": "A - H"}]);
    let (status, together) = api
        .post(
            "/api/v1/query",
            Some(token),
            request(queries.clone(), formulas.clone()),
        )
        .await;
    assert_eq!(status, 200, "{together}");
    let together = normalize_series(&together, start_ms);
    let names: Vec<&str> = together["results"]
        .as_array()
        .map(|r| r.iter().filter_map(|o| o["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["A", "B", "C", "D", "E", "R", "F"]);
    for (i, q) in queries.iter().enumerate() {
        let name = q["name"].as_str().expect("a name");
        if name == "H" {
            continue;
        }
        let (status, alone) = api
            .post(
                "/api/v1/query",
                Some(token),
                request(vec![q.clone()], json!([])),
            )
            .await;
        assert_eq!(status, 200, "{alone}");
        let alone = normalize_series(&alone, start_ms);
        let at = names.iter().position(|n| *n == name).expect("answered");
        assert_eq!(
            together["results"][at], alone["results"][0],
            "query {i} ({name})"
        );
        assert!(
            alone["results"][0]["series"]
                .as_array()
                .is_some_and(|s| !s.is_empty()),
            "{name} has series"
        );
    }
    assert_eq!(
        together["results"][3]["series"].as_array().map(Vec::len),
        Some(1),
        "D keeps its own limit"
    );
    // The formula over a shared statement's columns: avg - min, never negative.
    let f = &together["results"][6]["series"];
    assert!(
        f.as_array().is_some_and(|s| s.len() == 2
            && s.iter().all(|s| s["points"]
                .as_array()
                .is_some_and(|p| p.iter().all(|p| p[1].as_f64().is_some_and(|v| v >= 0.0))))),
        "{f}"
    );
}

/// The same answer as an Arrow IPC stream: one row per series and bucket, `time`, `query`, the
/// labels and `value`.
async fn arrow_answer(api: &Api, token: &str, start: u64) {
    let start_ms = (start / 1_000_000) as i64;
    let body = json!({"from": start_ms + 3_600_000, "to": start_ms + 7_200_000, "step": "5m",
        "queries": [{"name": "A", "signal": "metrics", "metric": "system.cpu.utilization",
            "aggregation": "avg", "group_by": ["service.name"], "order": "labels"}]});
    let resp = api
        .client
        .post(format!("{}/api/v1/query", api.base))
        .bearer_auth(token)
        .header("accept", "application/vnd.apache.arrow.stream")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let bytes = resp.bytes().await.expect("body");
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
            .expect("an Arrow IPC stream");
    let fields: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(fields, ["time", "query", "service.name", "value"]);
    let rows: usize = reader.map(|b| b.expect("batch").num_rows()).sum();
    assert_eq!(rows, 2 * 12, "two services, twelve buckets");
}

async fn limits_and_bad_queries(api: &Api, token: &str, start: u64) {
    let start_ms = (start / 1_000_000) as i64;
    let q = |extra: Value| {
        let mut query = json!({"name": "A", "signal": "metrics", "metric": "system.cpu.utilization",
            "aggregation": "avg"});
        if let (Some(q), Some(e)) = (query.as_object_mut(), extra.as_object()) {
            q.extend(e.clone());
        }
        query
    };
    let cases = [
        (
            json!({"from": "now-40d", "queries": [{"name": "A", "signal": "logs", "aggregation": "count"}]}),
            "longer than 31 days",
        ),
        (
            json!({"from": "now-500d", "queries": [q(json!({}))]}),
            "longer than 400 days",
        ),
        (
            json!({"from": start_ms, "to": start_ms + 3_600_000, "step": "1s", "max_points": 100, "queries": [q(json!({}))]}),
            "more than 100 points",
        ),
        (
            json!({"queries": [q(json!({"aggregation": "median"}))]}),
            "unknown variant",
        ),
        (
            json!({"queries": [q(json!({"filters": [{"key": "x", "op": "=~", "value": "("}]}))]}),
            "not a regular expression",
        ),
        (
            json!({"queries": [q(json!({"metric": null}))]}),
            "names its metric",
        ),
        (
            json!({"queries": [q(json!({"name": "A; DROP"}))]}),
            "a name is a letter",
        ),
        (
            json!({"queries": [q(json!({})), q(json!({}))]}),
            "used twice",
        ),
        (
            json!({"queries": [q(json!({}))], "formulas": [{"name": "F", "expression": "A / Z"}]}),
            "Z is not the name of a query",
        ),
        (
            json!({"queries": [q(json!({}))], "formulas": [{"name": "F", "expression": "A / (2"}]}),
            "not closed",
        ),
        (
            json!({"queries": [{"name": "A", "signal": "logs", "aggregation": "rate"}]}),
            "apply to metrics",
        ),
        (
            json!({"queries": [q(json!({"aggregation": "histogram_quantile"}))]}),
            "needs a quantile",
        ),
        (
            json!({"from": "yesterday", "queries": [q(json!({}))]}),
            "Unix milliseconds, RFC 3339",
        ),
    ];
    for (body, reason) in cases {
        let (status, answer) = api.post("/api/v1/query", Some(token), body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(reason),
            "{body}: {message:?} should say {reason:?}"
        );
    }
    for (sql, reason) in [
        ("SELEC 1", "syntax error"),
        ("SELECT * FROM nowhere", "nowhere"),
        (
            "SELECT * FROM url('http://169.254.169.254/', 'CSV')",
            "not allowed",
        ),
        (
            "SELECT count(*) FROM logs_v3 WHERE body = file('/etc/passwd')",
            "not allowed",
        ),
        ("SELECT * FROM system.tables", "not allowed"),
        ("DELETE FROM logs_v3", "only a select"),
    ] {
        let (status, answer) = api
            .post("/api/v1/query/sql", Some(token), json!({"sql": sql}))
            .await;
        assert_eq!(status, 400, "{sql}: {answer}");
        let message = answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(
            message.contains(reason),
            "{sql}: {message:?} should say {reason:?}"
        );
    }
}

/// `telemetryflow_queries_running` as `/metrics` shows it.
async fn queries_running(api: &Api) -> f64 {
    server_metric(api, "telemetryflow_queries_running").await
}

/// A metric without labels as `/metrics` shows it (0 when absent).
async fn server_metric(api: &Api, name: &str) -> f64 {
    let text = api
        .client
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A client that goes away stops its query: a query that would run until the 30 s limit ends
/// within seconds of its client disconnecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_stops_when_its_client_goes_away() {
    let (srv, api, admin) = TestServer::with_admin().await;
    let (key, _) = api.key(&admin, &["logs:write"], None).await;
    srv.send_json(&key, "/v1/logs", &logs_body(data_start()))
        .await;
    // 420⁴ rows to compare: far beyond the time limit.
    let sql = "SELECT count(*) FROM logs_v3 a, logs_v3 b, logs_v3 c, logs_v3 d \
               WHERE a.body < b.body AND b.body < c.body AND c.body < d.body";
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(1500))
        .build()
        .expect("client");
    let request = client
        .post(format!("{}/api/v1/query/sql", api.base))
        .bearer_auth(&admin)
        .json(&json!({"sql": sql}))
        .send();
    let watcher = async {
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        queries_running(&api).await
    };
    let (sent, running) = tokio::join!(request, watcher);
    assert!(sent.is_err(), "the client gave up: {sent:?}");
    assert_eq!(running, 1.0, "the query was running");
    let gave_up = std::time::Instant::now();
    loop {
        if queries_running(&api).await == 0.0 {
            break;
        }
        assert!(
            gave_up.elapsed() < std::time::Duration::from_secs(10),
            "the query still runs 10 s after its client left"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    srv.shutdown().await;
}

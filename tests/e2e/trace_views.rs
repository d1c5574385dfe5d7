//! The trace and log views a console shows, on the embedded store and on ClickHouse: a trace as
//! a span tree with its events and logs, the services with RED metrics from their entry spans,
//! a service's operations, log search with its filters and cursor pages; another tenant sees
//! none of it; bad input gets a 400.

use serde_json::{Value, json};

use crate::support::{Api, TestServer, now_nanos};

const TRACE: &str = "5b8efff798038103d269b633813fc60c";

fn attr(k: &str, v: &str) -> Value {
    json!({"key": k, "value": {"stringValue": v}})
}

/// A checkout: frontend's server span (120 ms) calls payment (a client span), whose server
/// span fails after 80 ms with an event; two logs on the trace.
fn trace_body(t0: u64) -> Value {
    let span = |id: &str, parent: &str, name: &str, kind: u8, start: u64, ms: u64, error: bool| {
        let mut s = json!({
            "traceId": TRACE, "spanId": id, "parentSpanId": parent, "name": name, "kind": kind,
            "startTimeUnixNano": start.to_string(),
            "endTimeUnixNano": (start + ms * 1_000_000).to_string(),
            "attributes": [attr("http.route", name)],
        });
        if error {
            s["status"] = json!({"code": 2, "message": "card declined"});
            s["events"] = json!([{"timeUnixNano": (start + 1_000_000).to_string(),
                "name": "exception", "attributes": [attr("exception.type", "Declined")]}]);
        }
        s
    };
    let resource = |service: &str, spans: Vec<Value>| {
        json!({"resource": {"attributes": [attr("service.name", service)]},
               "scopeSpans": [{"scope": {"name": "e2e"}, "spans": spans}]})
    };
    json!({"resourceSpans": [
        resource("frontend", vec![
            span("a1a1a1a1a1a1a1a1", "", "GET /checkout", 2, t0, 120, false),
            span("b2b2b2b2b2b2b2b2", "a1a1a1a1a1a1a1a1", "POST payment", 3, t0 + 5_000_000, 100, false),
        ]),
        resource("payment", vec![
            span("c3c3c3c3c3c3c3c3", "b2b2b2b2b2b2b2b2", "charge", 2, t0 + 10_000_000, 80, true),
        ]),
    ]})
}

fn logs_body(t0: u64) -> Value {
    let log = |dt: u64, span: &str, sev: &str, body: &str| {
        json!({"timeUnixNano": (t0 + dt).to_string(), "traceId": TRACE, "spanId": span,
               "severityText": sev, "body": {"stringValue": body}})
    };
    json!({"resourceLogs": [{"resource": {"attributes": [attr("service.name", "payment")]},
    "scopeLogs": [{"scope": {"name": "e2e"}, "logRecords": [
        log(20_000_000, "c3c3c3c3c3c3c3c3", "ERROR", "card declined"),
        log(12_000_000, "c3c3c3c3c3c3c3c3", "INFO", "charging card"),
    ]}]}]})
}

#[tokio::test]
async fn traces_services_and_log_search() {
    let (srv, api, admin) = TestServer::with_admin().await;
    scenario(srv, api, admin).await;
}

#[tokio::test]
async fn traces_services_and_log_search_on_clickhouse() {
    let Some((srv, api, admin)) = TestServer::with_admin_on_clickhouse().await else {
        return;
    };
    scenario(srv, api, admin).await;
}

async fn scenario(srv: TestServer, api: Api, admin: String) {
    let (tenant_b, viewer_b) = api.tenant_with_viewer(&admin, "other").await;
    let _ = tenant_b;
    let (key, _) = api.key(&admin, &["traces:write", "logs:write"], None).await;
    let t0 = now_nanos() - 60_000_000_000;
    srv.send_json(&key, "/v1/traces", &trace_body(t0)).await;
    srv.send_json(&key, "/v1/logs", &logs_body(t0)).await;

    let (status, trace) = api.get(&format!("/api/v1/traces/{TRACE}"), &admin).await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["span_count"], json!(3));
    assert_eq!(trace["error_count"], json!(1));
    assert_eq!(trace["services"], json!(["frontend", "payment"]));
    assert_eq!(trace["duration_nano"], json!(120_000_000));
    let spans = trace["spans"].as_array().expect("spans");
    let order: Vec<(&str, u64)> = spans
        .iter()
        .map(|s| {
            (
                s["span_name"].as_str().unwrap_or_default(),
                s["depth"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(
        order,
        [("GET /checkout", 0), ("POST payment", 1), ("charge", 2)]
    );
    assert_eq!(spans[0]["children"], json!(["b2b2b2b2b2b2b2b2"]));
    let charge = &spans[2];
    assert_eq!(charge["service_name"], json!("payment"));
    assert_eq!(charge["status_code"], json!("error"));
    assert_eq!(charge["status_message"], json!("card declined"));
    assert_eq!(charge["duration_nano"], json!(80_000_000));
    assert_eq!(charge["events"][0]["name"], json!("exception"), "{charge}");
    assert_eq!(
        charge["span_attributes"]["http.route"],
        json!("charge"),
        "{charge}"
    );

    let (status, logs) = api
        .get(&format!("/api/v1/traces/{TRACE}/logs"), &admin)
        .await;
    assert_eq!(status, 200, "{logs}");
    let bodies: Vec<&str> = logs["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .filter_map(|l| l["body"].as_str())
        .collect();
    assert_eq!(bodies, ["charging card", "card declined"], "earliest first");
    assert_eq!(
        arrow_bodies(&srv, &admin).await,
        bodies,
        "the SQL endpoint's Arrow IPC answer"
    );

    let (status, services) = api
        .get("/api/v1/services?from=1970-01-01T00:00:01Z", &admin)
        .await;
    assert_eq!(status, 400, "a range over 31 days: {services}");
    let (status, services) = api.get("/api/v1/services", &admin).await;
    assert_eq!(status, 200, "{services}");
    let by_name = |name: &str| {
        services["services"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["service_name"] == json!(name)))
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {services}"))
    };
    let frontend = by_name("frontend");
    assert_eq!(
        frontend["requests"],
        json!(1),
        "only the server span is a request: {frontend}"
    );
    assert_eq!(frontend["errors"], json!(0));
    let p50 = frontend["p50_ms"].as_f64().expect("p50");
    assert!((p50 - 120.0).abs() < 1.0, "{frontend}");
    let payment = by_name("payment");
    assert_eq!(payment["errors"], json!(1));
    assert_eq!(payment["error_rate"], json!(1.0));

    let (status, ops) = api.get("/api/v1/services/payment/operations", &admin).await;
    assert_eq!(status, 200, "{ops}");
    let ops = ops["operations"].as_array().expect("operations");
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["span_name"], json!("charge"));
    assert_eq!(ops[0]["span_kind"], json!("server"));
    assert!(
        (ops[0]["p99_ms"].as_f64().expect("p99") - 80.0).abs() < 1.0,
        "{ops:?}"
    );

    // Another tenant: not found; the services list is empty.
    let (status, _) = api.get(&format!("/api/v1/traces/{TRACE}"), &viewer_b).await;
    assert_eq!(status, 404);
    let (_, other) = api.get("/api/v1/services", &viewer_b).await;
    assert_eq!(other["services"], json!([]), "{other}");

    log_search(&srv, &api, &admin, &key, &viewer_b).await;

    let (status, bad) = api.get("/api/v1/traces/not-a-trace-id", &admin).await;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("32 hexadecimal")),
        "{bad}"
    );
    srv.shutdown().await;
}

/// 25 logs of `search-svc`, three to a timestamp (so pages split ties), every fifth an ERROR,
/// even ones on route `/a`.
fn search_logs_body(t0: u64) -> Value {
    let records: Vec<Value> = (0..25u64)
        .map(|i| {
            json!({"timeUnixNano": (t0 + (i / 3) * 1_000_000).to_string(),
                   "severityText": if i % 5 == 0 { "ERROR" } else { "INFO" },
                   "severityNumber": if i % 5 == 0 { 17 } else { 9 },
                   "body": {"stringValue": format!("req-{i:02}")},
                   "attributes": [attr("route", if i % 2 == 0 { "/a" } else { "/b" })]})
        })
        .collect();
    json!({"resourceLogs": [{"resource": {"attributes": [attr("service.name", "search-svc")]},
        "scopeLogs": [{"scope": {"name": "e2e"}, "logRecords": records}]}]})
}

async fn bodies(api: &Api, token: &str, query: &str) -> Vec<String> {
    let (status, page) = api
        .get(&format!("/api/v1/logs?service=search-svc&{query}"), token)
        .await;
    assert_eq!(status, 200, "{query}: {page}");
    page["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .filter_map(|l| l["body"].as_str().map(str::to_string))
        .collect()
}

async fn log_search(srv: &TestServer, api: &Api, admin: &str, key: &str, other: &str) {
    srv.send_json(
        key,
        "/v1/logs",
        &search_logs_body(now_nanos() - 30_000_000_000),
    )
    .await;

    // Pages of 4: every log once, newest first, the end said by a null cursor.
    let mut seen: Vec<String> = Vec::new();
    let mut times: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let q = match &cursor {
            Some(c) => format!("/api/v1/logs?service=search-svc&limit=4&cursor={c}"),
            None => "/api/v1/logs?service=search-svc&limit=4".to_string(),
        };
        let (status, page) = api.get(&q, admin).await;
        assert_eq!(status, 200, "{page}");
        for l in page["logs"].as_array().expect("logs") {
            seen.push(l["body"].as_str().expect("body").to_string());
            times.push(l["timestamp"].as_str().expect("time").to_string());
        }
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    assert!(cursor.is_none(), "seven pages hold 25 logs");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (25, 25), "{seen:?}");
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");

    assert_eq!(
        bodies(api, admin, "severity=error").await.len(),
        5,
        "every fifth is an error"
    );
    let mut found = bodies(api, admin, "contains=REQ-1").await;
    found.sort();
    assert_eq!(found.len(), 10, "req-10..19, any case: {found:?}");
    let mut found = bodies(api, admin, "matches=%5Ereq-2%5B0-4%5D%24").await;
    found.sort();
    assert_eq!(found, ["req-20", "req-21", "req-22", "req-23", "req-24"]);
    assert_eq!(bodies(api, admin, "attributes=route%3D/a").await.len(), 13);
    assert!(bodies(api, other, "").await.is_empty(), "another tenant");

    for (q, why) in [
        ("matches=(", "regular expression"),
        ("severity=loud", "severity must be"),
        ("cursor=zzz", "cursor"),
        ("limit=0", "limit"),
        ("attributes=route", "key=value"),
    ] {
        let (status, body) = api.get(&format!("/api/v1/logs?{q}"), admin).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(why)),
            "{q}: {body}"
        );
    }
}

/// The same logs through `POST /api/v1/query/sql` as an Arrow IPC stream.
async fn arrow_bodies(srv: &TestServer, token: &str) -> Vec<String> {
    use arrow::array::{Array, StringArray};
    let resp = srv
        .client
        .post(format!("{}/api/v1/query/sql", srv.api))
        .bearer_auth(token)
        .header("accept", "application/vnd.apache.arrow.stream")
        .json(&json!({"sql": format!(
            "SELECT body FROM logs_v3 WHERE trace_id = '{TRACE}' ORDER BY timestamp")}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let bytes = resp.bytes().await.expect("body");
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
            .expect("an Arrow IPC stream");
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.expect("batch");
        let col = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("utf8 body");
        out.extend((0..col.len()).map(|i| col.value(i).to_string()));
    }
    out
}

//! Grafana through its Infinity data source, as `examples/grafana/` sets it up: every panel of
//! the example dashboard and its template variable are sent the way Infinity sends them
//! (Grafana's macros interpolated, the read-only API key as a bearer token, the panel's body),
//! and the answer is read the way Infinity reads it (the root selector, then each column's
//! selector and type). Grafana itself does not run here; the contract between the two does.
//!
//! Also: a read key reads only its tenant's telemetry and reaches nothing else.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::{Api, TestServer, now_nanos, python};

fn example(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/grafana")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Grafana's interpolation of the macros and the `service` variable (`All` = its allValue).
fn interpolate(text: &str, from_ms: i64, to_ms: i64) -> String {
    text.replace("${__from}", &from_ms.to_string())
        .replace("${__to}", &to_ms.to_string())
        .replace("${service:regex}", ".*")
}

/// Infinity's backend parser: the array under `root`, each row's columns by selector, checked
/// against the column's type. Returns the rows as the columns' texts → values.
fn parse(answer: &Value, root: &str, columns: &[Value]) -> Vec<serde_json::Map<String, Value>> {
    let rows = answer[root]
        .as_array()
        .unwrap_or_else(|| panic!("no array at {root:?}: {answer}"));
    rows.iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| {
                    let selector = c["selector"].as_str().expect("selector");
                    let v = row
                        .get(selector)
                        .unwrap_or_else(|| panic!("no {selector:?} in {row}"))
                        .clone();
                    let ok = match c["type"].as_str().expect("type") {
                        "timestamp_epoch" | "number" => v.is_number(),
                        "timestamp" => v
                            .as_str()
                            .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
                        "string" => v.is_string(),
                        other => panic!("column type {other} not checked here"),
                    };
                    assert!(ok, "{selector} = {v} is not a {}", c["type"]);
                    (c["text"].as_str().expect("text").to_string(), v)
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_grafana_dashboard_reads_through_infinity() {
    let (srv, api, admin) = TestServer::with_admin().await;
    let (ingest, _) = api.key(&admin, &["traces:write", "logs:write"], None).await;
    let endpoint = srv.otlp_http.clone();
    tokio::task::spawn_blocking(move || {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/apm_app.py");
        let out = std::process::Command::new(python())
            .arg(&script)
            .args([
                "--endpoint",
                &endpoint,
                "--key",
                &ingest,
                "--service",
                "shop",
            ])
            .output()
            .expect("run the python app");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await
    .expect("app ran");

    let provisioning = example("provisioning/datasources/telemetryflow.yaml");
    for must in [
        "type: yesoreyeram-infinity-datasource",
        "auth_method: bearerToken",
        "bearerToken: $TELEMETRYFLOW_API_KEY",
    ] {
        assert!(provisioning.contains(must), "{must}");
    }
    let (key, _) = api
        .key(&admin, &["metrics:read", "logs:read", "traces:read"], None)
        .await;
    let dashboard: Value =
        serde_json::from_str(&example("dashboards/telemetryflow-services.json")).expect("json");
    let to_ms = (now_nanos() / 1_000_000) as i64;
    let from_ms = to_ms - 3_600_000;
    let client = reqwest::Client::new();

    // The `service` variable: Infinity GETs the services and takes the column.
    let var = &dashboard["templating"]["list"][0]["query"];
    let (status, services) = send(&client, &api, &key, var, from_ms, to_ms).await;
    assert_eq!(status, 200, "{services}");
    let names = parse(
        &services,
        var["root_selector"].as_str().expect("root"),
        var["columns"].as_array().expect("columns"),
    );
    assert_eq!(names.len(), 1, "{services}");
    assert_eq!(names[0]["service"], json!("shop"));

    let mut seen = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            let (status, answer) = send(&client, &api, &key, t, from_ms, to_ms).await;
            assert_eq!(status, 200, "{}: {answer}", panel["title"]);
            let rows = parse(
                &answer,
                t["root_selector"].as_str().expect("root"),
                t["columns"].as_array().expect("columns"),
            );
            assert!(!rows.is_empty(), "{}: no rows in {answer}", panel["title"]);
            seen.push((
                panel["title"].as_str().unwrap_or_default().to_string(),
                rows,
            ));
        }
    }
    let requests: f64 = seen[0].1.iter().filter_map(|r| r["Value"].as_f64()).sum();
    assert_eq!(requests, 40.0, "every request of the app, counted");
    assert!(seen[1].1.iter().all(|r| r["service"] == json!("shop")));
    assert_eq!(seen[3].1.len(), 8, "the app's error logs");

    // The read key reads its tenant's telemetry and nothing else.
    let (_, viewer_b) = api.tenant_with_viewer(&admin, "other").await;
    let _ = viewer_b;
    let (status, _) = call(&client, &api, "GET", "/api/v1/dashboards", &key, None).await;
    assert_eq!(status, 401, "a key is no session");
    let (status, _) = call(&client, &api, "GET", "/api/v1/users", &key, None).await;
    assert_eq!(status, 401);
    let body = json!({"sql": "SELECT count(*) AS n FROM traces_v3"});
    let (ingest_only, _) = api.key(&admin, &["traces:write"], None).await;
    let (status, answer) = call(
        &client,
        &api,
        "POST",
        "/api/v1/query/sql",
        &ingest_only,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 403, "an ingest key cannot read: {answer}");
    let (status, answer) = call(&client, &api, "POST", "/api/v1/query/sql", &key, Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    srv.shutdown().await;
}

async fn call(
    client: &reqwest::Client,
    api: &Api,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client
        .request(m, format!("{}{path}", api.base))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// One Infinity query: its URL (relative to the data source's), method and raw body with the
/// macros interpolated, the key as a bearer token.
async fn send(
    client: &reqwest::Client,
    api: &Api,
    key: &str,
    target: &Value,
    from_ms: i64,
    to_ms: i64,
) -> (u16, Value) {
    let url = target["url"].as_str().expect("url");
    let method = target["url_options"]["method"].as_str().unwrap_or("GET");
    let body = target["url_options"]["data"].as_str().map(|data| {
        serde_json::from_str::<Value>(&interpolate(data, from_ms, to_ms))
            .unwrap_or_else(|e| panic!("the panel's body is not JSON once interpolated: {e}"))
    });
    if method == "POST" {
        assert_eq!(
            target["url_options"]["body_content_type"],
            json!("application/json")
        );
    }
    call(client, api, method, url, key, body).await
}

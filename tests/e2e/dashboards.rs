//! Dashboards as a console uses them, on SQLite and on PostgreSQL: dashboards with variables and
//! widgets (checked field by field), widget data with the variables filled in and through a WASM
//! transform, templates (shipped and a workspace's own), a share token that reads one dashboard
//! and nothing else, another tenant that sees nothing, soft delete.
//!
//! And the product's promise: a dashboard made from the APM template shows the data of an app
//! instrumented with the OpenTelemetry Python SDK, on the embedded store and on ClickHouse.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::{Api, TestServer, now_nanos, python};

fn attr(k: &str, v: &str) -> Value {
    json!({"key": k, "value": {"stringValue": v}})
}

/// A gauge per service, one point a minute for the last 30 minutes: api reports 10, 20, 30, …
/// and worker 1, 2, 3, ….
fn gauge_body(start: u64) -> Value {
    let resource = |service: &str, scale: f64| {
        let points: Vec<Value> = (0..30u64)
            .map(|i| {
                json!({"timeUnixNano": (start + i * 60_000_000_000).to_string(),
                       "asDouble": (i + 1) as f64 * scale})
            })
            .collect();
        json!({"resource": {"attributes": [attr("service.name", service)]},
               "scopeMetrics": [{"scope": {"name": "dash"}, "metrics": [
                   {"name": "queue.depth", "unit": "1", "gauge": {"dataPoints": points}}]}]})
    };
    json!({"resourceMetrics": [resource("api", 10.0), resource("worker", 1.0)]})
}

fn widget(title: &str, query_config: Value) -> Value {
    json!({"title": title, "widget_type": "line_chart", "query_config": query_config,
           "position_config": {"x": 0, "y": 0, "w": 12, "h": 8}})
}

fn depth_query() -> Value {
    json!({"step": "1m", "queries": [{"name": "A", "signal": "metrics", "metric": "queue.depth",
        "aggregation": "avg", "group_by": ["service.name"], "order": "labels",
        "filters": [{"key": "service.name", "op": "=", "value": "$service"}]}]})
}

/// Any method; `(status, body)`.
async fn call(
    api: &Api,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, body, _) = api.call(method, path, token, body).await;
    (status, body)
}

/// The values of a series, nulls left out.
fn values(series: &Value) -> Vec<f64> {
    series["points"]
        .as_array()
        .expect("points")
        .iter()
        .filter_map(|p| p[1].as_f64())
        .collect()
}

#[tokio::test]
async fn dashboards_widgets_templates_and_sharing() {
    for (store, srv, api, admin) in TestServer::on_each_meta_store(|_| {}).await {
        scenario(store, &srv, &api, &admin).await;
        srv.shutdown().await;
    }
}

async fn scenario(store: &str, srv: &TestServer, api: &Api, admin: &str) {
    let (_, viewer_b) = api.tenant_with_viewer(admin, "other").await;
    let (key, _) = api.key(admin, &["metrics:write"], None).await;
    let start = (now_nanos() / 60_000_000_000 - 30) * 60_000_000_000;
    srv.send_json(&key, "/v1/metrics", &gauge_body(start)).await;
    let range = json!({"from": start / 1_000_000, "to": start / 1_000_000 + 30 * 60_000});

    // Templates: the two shipped ones are there for every workspace.
    let (status, templates) = api.get("/api/v1/dashboard-templates", admin).await;
    assert_eq!(status, 200, "{templates}");
    let categories: Vec<&str> = templates["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .filter(|t| t["shipped"] == json!(true))
        .filter_map(|t| t["category"].as_str())
        .collect();
    assert_eq!(categories, ["apm", "infrastructure"], "{store}");

    // Every bad field is named.
    let (status, bad) = api
        .post(
            "/api/v1/dashboards",
            Some(admin),
            json!({"name": "", "variables": [{"name": "1x"}], "widgets": [
                {"title": "t", "widget_type": "pie", "query_config": depth_query()},
                widget("t", json!({"queries": depth_query()["queries"],
                    "transforms": [{"plugin": "builtin-nope", "config": {}}]})),
                widget("t", json!({"queries": depth_query()["queries"],
                    "transforms": [{"plugin": "builtin-moving-average", "config": {"window": 0}}]})),
                widget("t", json!({"sql": "DROP TABLE logs_v3"})),
            ]}),
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    let paths: Vec<&str> = bad["error"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    for must in [
        "/name",
        "/variables/0/name",
        "/widgets/0/widget_type",
        "/widgets/1/query_config/transforms/0/plugin",
        "/widgets/2/query_config/transforms/0/config/window",
        "/widgets/3/query_config/sql",
    ] {
        assert!(paths.contains(&must), "{must} not in {paths:?}");
    }

    // A dashboard with a variable and two widgets: raw, and through the moving-average plugin.
    let (status, d) = api
        .post(
            "/api/v1/dashboards",
            Some(admin),
            json!({"name": "Queues", "description": "depth", "layout_config": {"columns": 24},
                "variables": [{"name": "service", "type": "custom", "options": ["api", "worker"],
                               "default": "*"}],
                "widgets": [
                    widget("Depth", depth_query()),
                    widget("Depth, smoothed", json!({"step": "1m", "queries": depth_query()["queries"],
                        "transforms": [{"plugin": "builtin-moving-average", "config": {"window": 3}}]})),
                ]}),
        )
        .await;
    assert_eq!(status, 201, "{d}");
    let id = d["dashboard_id"].as_str().expect("id").to_string();
    let raw_widget = d["widgets"][0]["widget_id"]
        .as_str()
        .expect("w")
        .to_string();
    let smooth_widget = d["widgets"][1]["widget_id"]
        .as_str()
        .expect("w")
        .to_string();

    // `*` (the default) keeps every service; a value narrows to one.
    let (status, data) = api
        .post(
            &format!("/api/v1/widgets/{raw_widget}/data"),
            Some(admin),
            range.clone(),
        )
        .await;
    assert_eq!(status, 200, "{data}");
    let series = data["results"][0]["series"].as_array().expect("series");
    assert_eq!(series.len(), 2, "{data}");
    assert_eq!(values(&series[0])[..3], [10.0, 20.0, 30.0], "{data}");
    let mut narrowed = range.clone();
    narrowed["variables"] = json!({"service": "worker"});
    let (_, data) = api
        .post(
            &format!("/api/v1/widgets/{raw_widget}/data"),
            Some(admin),
            narrowed.clone(),
        )
        .await;
    let series = data["results"][0]["series"].as_array().expect("series");
    assert_eq!(series.len(), 1, "{data}");
    assert_eq!(series[0]["labels"]["service.name"], json!("worker"));

    // The variable's values: its options (custom); a query variable lists what the data holds.
    let (status, vals) = api
        .get(
            &format!("/api/v1/dashboards/{id}/variables/service/values"),
            admin,
        )
        .await;
    assert_eq!(status, 200, "{vals}");
    assert_eq!(vals["values"], json!(["api", "worker"]));

    // Through the plugin: a moving average of three points.
    let (status, data) = api
        .post(
            &format!("/api/v1/widgets/{smooth_widget}/data"),
            Some(admin),
            narrowed,
        )
        .await;
    assert_eq!(status, 200, "{data}");
    let series = data["results"][0]["series"].as_array().expect("series");
    assert_eq!(series.len(), 1, "{data}");
    assert_eq!(values(&series[0])[..4], [1.0, 1.5, 2.0, 3.0], "{data}");

    // Reading counts views; edits keep what they do not name.
    let (_, got) = api.get(&format!("/api/v1/dashboards/{id}"), admin).await;
    assert_eq!(got["view_count"], json!(1));
    assert_eq!(got["widgets"].as_array().map(Vec::len), Some(2));
    let (status, edited) = call(
        api,
        "PUT",
        &format!("/api/v1/dashboards/{id}"),
        Some(admin),
        Some(json!({"name": "Queues!"})),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["description"], json!("depth"));
    let (status, w) = api
        .post(
            &format!("/api/v1/dashboards/{id}/widgets"),
            Some(admin),
            json!({"title": "Rows", "widget_type": "table",
                   "query_config": {"sql": "SELECT service_name, count(*) AS points FROM metrics_v3 WHERE timestamp >= $__from AND timestamp < $__to GROUP BY 1 ORDER BY 1"}}),
        )
        .await;
    assert_eq!(status, 201, "{w}");
    let sql_widget = w["widget_id"].as_str().expect("w").to_string();
    let (status, rows) = api
        .post(
            &format!("/api/v1/widgets/{sql_widget}/data"),
            Some(admin),
            range.clone(),
        )
        .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(rows["rows"], json!([["api", 30], ["worker", 30]]), "{rows}");

    // Another tenant sees none of it.
    let (status, _) = api
        .get(&format!("/api/v1/dashboards/{id}"), &viewer_b)
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .post(
            &format!("/api/v1/widgets/{raw_widget}/data"),
            Some(&viewer_b),
            range.clone(),
        )
        .await;
    assert_eq!(status, 404);
    let (_, theirs) = api.get("/api/v1/dashboards", &viewer_b).await;
    assert_eq!(theirs["items"], json!([]));

    // Shared: the token reads this dashboard and its widgets' data, and nothing else.
    let (status, shared) = api
        .post(
            &format!("/api/v1/dashboards/{id}/share"),
            Some(admin),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{shared}");
    let token = shared["share_token"].as_str().expect("token").to_string();
    let (status, public) = call(
        api,
        "GET",
        &format!("/api/v1/public/dashboards/{token}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{public}");
    assert_eq!(public["name"], json!("Queues!"));
    assert!(
        public["widgets"][0].get("query_config").is_none(),
        "{public}"
    );
    let public_data =
        |widget: &str| format!("/api/v1/public/dashboards/{token}/widgets/{widget}/data");
    let (status, data) = api
        .post(&public_data(&raw_widget), None, range.clone())
        .await;
    assert_eq!(status, 200, "{data}");
    assert_eq!(
        data["results"][0]["series"].as_array().map(Vec::len),
        Some(2)
    );
    let (status, _) = api.get("/api/v1/dashboards", &token).await;
    assert_eq!(status, 401, "a share token is no bearer token");
    let (status, other) = api
        .post(
            "/api/v1/dashboards",
            Some(admin),
            json!({"name": "Other", "widgets": [widget("x", depth_query())]}),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    let other_widget = other["widgets"][0]["widget_id"].as_str().expect("w");
    let (status, _) = api
        .post(&public_data(other_widget), None, range.clone())
        .await;
    assert_eq!(status, 404, "another dashboard's widget through the token");
    let (status, _) = api
        .post(
            &format!("/api/v1/dashboards/{id}/share"),
            Some(admin),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .post(&public_data(&raw_widget), None, range.clone())
        .await;
    assert_eq!(status, 404, "a new token retires the old one");
    let (status, _) = call(
        api,
        "GET",
        "/api/v1/public/dashboards/tfd_short",
        None,
        None,
    )
    .await;
    assert_eq!(status, 400);

    // Templates of the workspace: from a dashboard, then a dashboard from the template.
    let (status, t) = api
        .post(
            "/api/v1/dashboard-templates",
            Some(admin),
            json!({"name": "Queues template", "category": "custom", "from_dashboard": id}),
        )
        .await;
    assert_eq!(status, 201, "{t}");
    let tid = t["template_id"].as_str().expect("template id").to_string();
    let (status, copy) = api
        .post(
            "/api/v1/dashboards",
            Some(admin),
            json!({"template_id": tid, "name": "Copy"}),
        )
        .await;
    assert_eq!(status, 201, "{copy}");
    let (status_q, q) = api
        .post(
            "/api/v1/dashboards",
            Some(admin),
            json!({"name": "Q", "variables": [{"name": "svc", "type": "query",
                "query": {"signal": "metrics", "metric": "queue.depth", "key": "service.name"}}]}),
        )
        .await;
    assert_eq!(status_q, 201, "{q}");
    let (status_q, vals) = api
        .get(
            &format!(
                "/api/v1/dashboards/{}/variables/svc/values",
                q["dashboard_id"].as_str().unwrap_or_default()
            ),
            admin,
        )
        .await;
    assert_eq!(status_q, 200, "{vals}");
    assert_eq!(vals["values"], json!(["api", "worker"]), "{vals}");
    assert_eq!(copy["widgets"].as_array().map(Vec::len), Some(3));
    assert_eq!(copy["variables"][0]["name"], json!("service"));
    let (status, _) = call(
        api,
        "DELETE",
        "/api/v1/dashboard-templates/tf-template-apm",
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, 403, "shipped templates stay");
    let (status, _) = call(
        api,
        "DELETE",
        &format!("/api/v1/dashboard-templates/{tid}"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, 204);

    // Deleted: gone from the list, unreadable, no longer shared.
    let (status, _) = call(
        api,
        "DELETE",
        &format!("/api/v1/dashboards/{id}"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = api.get(&format!("/api/v1/dashboards/{id}"), admin).await;
    assert_eq!(status, 404);
    let (_, list) = api.get("/api/v1/dashboards", admin).await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(!names.contains(&"Queues!"), "{names:?}");
    let (status, _) = api
        .get(
            &format!(
                "/api/v1/public/dashboards/{}",
                shared["share_token"].as_str().unwrap_or_default()
            ),
            admin,
        )
        .await;
    assert_eq!(status, 404);
}

/// Runs `tests/python/apm_app.py`: a small service instrumented with the OpenTelemetry SDK.
fn run_app(endpoint: &str, key: &str, service: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/apm_app.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .args(["--endpoint", endpoint, "--key", key, "--service", service])
        .output()
        .expect("run the python app");
    assert!(
        out.status.success(),
        "the python app failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apm_template_shows_a_python_app() {
    let (srv, api, admin) = TestServer::with_admin().await;
    apm(srv, api, admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apm_template_shows_a_python_app_on_clickhouse() {
    let Some((srv, api, admin)) = TestServer::with_admin_on_clickhouse().await else {
        return;
    };
    apm(srv, api, admin).await;
}

async fn apm(srv: TestServer, api: Api, admin: String) {
    let (key, _) = api
        .key(
            &admin,
            &["traces:write", "logs:write", "metrics:write"],
            None,
        )
        .await;
    let endpoint = srv.otlp_http.clone();
    tokio::task::spawn_blocking(move || run_app(&endpoint, &key, "checkout"))
        .await
        .expect("app ran");

    let (status, d) = api
        .post(
            "/api/v1/dashboards",
            Some(&admin),
            json!({"template_id": "tf-template-apm"}),
        )
        .await;
    assert_eq!(status, 201, "{d}");
    let by_title = |title: &str| {
        d["widgets"]
            .as_array()
            .expect("widgets")
            .iter()
            .find(|w| w["title"] == json!(title))
            .and_then(|w| w["widget_id"].as_str())
            .unwrap_or_else(|| panic!("no widget {title}"))
            .to_string()
    };
    let body = json!({"from": "now-15m", "to": "now", "variables": {"service": "checkout"}});
    let data = |title: &str| {
        let (api, admin, body, id) = (&api, &admin, body.clone(), by_title(title));
        async move {
            let (status, data) = api
                .post(&format!("/api/v1/widgets/{id}/data"), Some(admin), body)
                .await;
            assert_eq!(status, 200, "{data}");
            data
        }
    };
    let total = |data: &Value, name: &str| -> f64 {
        data["results"]
            .as_array()
            .expect("results")
            .iter()
            .filter(|r| r["name"] == json!(name))
            .flat_map(|r| r["series"].as_array().cloned().unwrap_or_default())
            .flat_map(|s| values(&s))
            .sum()
    };

    // The app served 40 requests, every fifth failed.
    let requests = data("Requests").await;
    assert_eq!(total(&requests, "A"), 40.0, "{requests}");
    assert_eq!(
        requests["results"][0]["series"][0]["labels"]["service.name"],
        json!("checkout")
    );
    let errors = data("Error rate").await;
    let rates: Vec<f64> = errors["results"][0]["series"]
        .as_array()
        .expect("series")
        .iter()
        .flat_map(values)
        .collect();
    assert!(
        !rates.is_empty() && rates.iter().all(|r| (0.0..=100.0).contains(r)),
        "{errors}"
    );
    let latency = data("Latency p50 / p95 / p99").await;
    for q in ["p50", "p95", "p99"] {
        assert!(total(&latency, q) > 0.0, "{q}: {latency}");
    }
    let busiest = data("Busiest operations").await;
    let ops: Vec<&str> = busiest["results"][0]["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter_map(|s| s["labels"]["name"].as_str())
        .collect();
    assert_eq!(ops, ["GET /cart", "POST /checkout"], "{busiest}");
    let logs = data("Recent error logs").await;
    let rows = logs["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 8, "{logs}");
    srv.shutdown().await;
}

//! The official OpenTelemetry Python SDK exports to a running server over OTLP/HTTP and
//! OTLP/gRPC; everything comes back through the SQL endpoint with its values and tenant.

use std::path::Path;

use serde_json::Value;

use crate::support::{Api, TestServer, python};

fn export(protocol: &str, endpoint: &str, key: &str, run: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/export_all.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .args([
            "--protocol",
            protocol,
            "--endpoint",
            endpoint,
            "--key",
            key,
            "--run",
            run,
        ])
        .output()
        .expect("run python exporter");
    assert!(
        out.status.success(),
        "python exporter failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("exporter prints JSON")
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_data_comes_back_through_sql_over_http_and_grpc() {
    let (srv, api, admin) = TestServer::with_admin().await;
    round_trip(srv, api, admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_data_comes_back_from_clickhouse() {
    let Some((srv, api, admin)) = TestServer::with_admin_on_clickhouse().await else {
        return;
    };
    round_trip(srv, api, admin).await;
}

async fn round_trip(srv: TestServer, api: Api, admin: String) {
    let (key, key_body) = api
        .key(
            &admin,
            &["traces:write", "logs:write", "metrics:write"],
            None,
        )
        .await;
    let (org, ws, tenant) = (
        s(&key_body["organization_id"]).to_string(),
        s(&key_body["workspace_id"]).to_string(),
        s(&key_body["tenant_id"]).to_string(),
    );

    let otlp_http = srv.otlp_http.clone();
    let grpc_endpoint = srv.otlp_grpc.clone();
    let (k1, k2) = (key.clone(), key.clone());
    let http = tokio::task::spawn_blocking(move || export("http", &otlp_http, &k1, "viahttp"))
        .await
        .expect("join");
    let grpc = tokio::task::spawn_blocking(move || export("grpc", &grpc_endpoint, &k2, "viagrpc"))
        .await
        .expect("join");

    for (sent, temporality) in [(&http, "delta"), (&grpc, "cumulative")] {
        let svc = s(&sent["service"]);
        let trace_id = s(&sent["trace_id"]);
        let root_id = s(&sent["spans"]["root"]);
        let child_id = s(&sent["spans"]["child"]);

        // Spans: ids, kinds, status, attributes, events, links, scope and tenant columns.
        let spans = api
            .sql(
                &admin,
                &format!(
                    "SELECT span_name, trace_id, span_id, parent_span_id, span_kind, status_code, status_message, \
                     span_attributes, events, links, scope_name, scope_version, organization_id, workspace_id, tenant_id, \
                     duration_nano, resource_attributes['deployment.environment'] \
                     FROM traces_v3 WHERE service_name = '{svc}' ORDER BY span_name DESC"
                ),
            )
            .await;
        assert_eq!(spans.len(), 2, "{spans:?}");
        let (root, child) = (&spans[0], &spans[1]);
        assert_eq!(s(&root[0]), "root");
        assert_eq!(s(&root[1]), trace_id);
        assert_eq!(s(&root[2]), root_id);
        assert_eq!(s(&root[3]), "");
        assert_eq!(s(&root[4]), "server");
        assert_eq!(s(&root[5]), "unset");
        assert_eq!(root[7]["http.method"], "GET");
        assert_eq!(root[7]["retries"], "3");
        assert_eq!(root[7]["ratio"], "0.5");
        assert_eq!(root[7]["cached"], "true");
        assert_eq!(root[8][0]["name"], "cache.miss");
        assert_eq!(root[8][0]["attributes"]["key"], "user:42");
        assert_eq!(s(&root[10]), "e2e.tracer");
        assert_eq!(s(&root[11]), "1.2.3");
        assert_eq!(
            (s(&root[12]), s(&root[13]), s(&root[14])),
            (org.as_str(), ws.as_str(), tenant.as_str())
        );
        assert!(root[15].as_u64().expect("duration") > 0);
        assert_eq!(s(&root[16]), "test");
        assert_eq!(s(&child[0]), "child");
        assert_eq!(s(&child[2]), child_id);
        assert_eq!(s(&child[3]), root_id);
        assert_eq!(s(&child[4]), "client");
        assert_eq!(s(&child[5]), "error");
        assert_eq!(s(&child[6]), "boom");
        assert_eq!(s(&child[9][0]["span_id"]), root_id);
        assert_eq!(s(&child[9][0]["trace_id"]), trace_id);
        assert_eq!(child[9][0]["attributes"]["link.kind"], "self");

        // Logs: body, severity, correlation ids, attributes, tenant.
        let logs = api
            .sql(
                &admin,
                &format!(
                    "SELECT body, severity_text, severity_number, trace_id, span_id, log_attributes, scope_name, tenant_id \
                     FROM logs_v3 WHERE service_name = '{svc}'"
                ),
            )
            .await;
        assert_eq!(logs.len(), 1, "{logs:?}");
        assert_eq!(logs[0][0], sent["logs"][0]);
        assert_eq!(s(&logs[0][1]), "ERROR");
        assert_eq!(logs[0][2], 17);
        assert_eq!(s(&logs[0][3]), trace_id);
        assert_eq!(s(&logs[0][4]), child_id);
        assert_eq!(logs[0][5]["user.id"], "42");
        assert_eq!(s(&logs[0][6]), "e2e.logger");
        assert_eq!(s(&logs[0][7]), tenant);

        // Every metric type, with its temporality, monotonicity and value.
        let points = api
            .sql(
                &admin,
                &format!(
                    "SELECT metric_name, metric_type, temporality, is_monotonic, value, unit, tenant_id \
                     FROM metrics_v3 WHERE service_name = '{svc}' ORDER BY metric_name"
                ),
            )
            .await;
        let find = |name: &str| {
            points
                .iter()
                .find(|r| s(&r[0]) == name)
                .unwrap_or_else(|| panic!("{name} missing in {points:?}"))
                .clone()
        };
        let requests = find("e2e.requests");
        assert_eq!(
            (s(&requests[1]), s(&requests[2]), &requests[3]),
            ("counter", temporality, &Value::from(1))
        );
        assert_eq!(requests[4], 7.0);
        let depth = find("e2e.queue_depth");
        assert_eq!((s(&depth[1]), &depth[3]), ("counter", &Value::from(0)));
        assert_eq!(depth[4], 6.0);
        let temp = find("e2e.temperature");
        assert_eq!((s(&temp[1]), &temp[4]), ("gauge", &Value::from(21.5)));
        let lat = find("e2e.latency");
        assert_eq!(
            (s(&lat[1]), s(&lat[2]), s(&lat[5])),
            ("histogram", temporality, "ms")
        );
        assert_eq!(lat[4], 326.0);
        assert_eq!(s(&find("e2e.exp_latency")[1]), "exponential_histogram");
        assert!(points.iter().all(|r| s(&r[6]) == tenant));

        let hist = api
            .sql(
                &admin,
                &format!(
                    "SELECT metric_name, bucket_bounds, bucket_counts, sum, count, min, max, scale, zero_count, \
                     positive_bucket_counts, exemplar_trace_ids FROM metric_histograms WHERE service_name = '{svc}' \
                     ORDER BY metric_name"
                ),
            )
            .await;
        assert_eq!(hist.len(), 2, "{hist:?}");
        let exp = &hist[0];
        assert_eq!(s(&exp[0]), "e2e.exp_latency");
        assert_eq!(exp[4], 3);
        assert_eq!(exp[3], 10.5);
        let total: u64 = exp[9]
            .as_array()
            .expect("buckets")
            .iter()
            .filter_map(Value::as_u64)
            .sum();
        assert_eq!(
            total + exp[8].as_u64().unwrap_or(0),
            3,
            "exponential buckets hold every value"
        );
        let explicit = &hist[1];
        assert_eq!(s(&explicit[0]), "e2e.latency");
        assert_eq!(explicit[4], 4);
        assert_eq!(
            (explicit[5].as_f64(), explicit[6].as_f64()),
            (Some(1.0), Some(300.0))
        );
        let counts: Vec<u64> = explicit[2]
            .as_array()
            .expect("counts")
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        assert_eq!(counts.iter().sum::<u64>(), 4);
        assert_eq!(
            counts.len(),
            explicit[1].as_array().expect("bounds").len() + 1
        );
        assert_eq!(
            s(&explicit[10][0]),
            trace_id,
            "histogram exemplars point at the span"
        );

        // Exemplars recorded inside the child span carry its ids.
        let exemplars = api
            .count(
                &admin,
                &format!(
                    "SELECT COUNT(*) FROM exemplars_v3 WHERE service_name = '{svc}' \
                     AND trace_id = '{trace_id}' AND span_id = '{child_id}'"
                ),
            )
            .await;
        assert!(exemplars >= 4, "exemplars: {exemplars}");
    }
    srv.shutdown().await;
}

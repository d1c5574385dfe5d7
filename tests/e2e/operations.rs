//! What an operator watches: health, readiness and Prometheus metrics that count what happened.

use crate::support::{Api, TestServer, build, now_nanos, post_otlp};
use prost::Message;

#[tokio::test]
async fn health_readiness_and_metrics_tell_what_happened() {
    let srv = TestServer::start().await;
    let api = Api::new(&srv.api);
    let get = |path: &str| srv.client.get(format!("{}{path}", srv.api)).send();
    assert_eq!(get("/healthz").await.expect("healthz").status(), 200);
    assert_eq!(get("/readyz").await.expect("readyz").status(), 200);

    let admin = api.admin().await;
    let (key, _) = api.key(&admin, &["logs:write"], None).await;
    let url = format!("{}/v1/logs", srv.otlp_http);
    let body = build::logs("ops", "m", 7, now_nanos()).encode_to_vec();
    let ok = post_otlp(
        &srv.client,
        &url,
        Some(&key),
        "application/x-protobuf",
        None,
        body,
    )
    .await;
    assert_eq!(ok.status(), 200);
    let bad = post_otlp(
        &srv.client,
        &url,
        Some(&key),
        "text/plain",
        None,
        b"x".to_vec(),
    )
    .await;
    assert_eq!(bad.status(), 415);

    let resp = get("/metrics").await.expect("metrics");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .is_ok_and(|v| v.starts_with("text/plain"))
    );
    let text = resp.text().await.expect("text");
    let has = |needle: &str| text.lines().any(|l| l.starts_with(needle));
    // The recorder is process-wide and other in-process servers of this test binary report to
    // it too, so check presence, not totals.
    assert!(
        has("telemetryflow_ingest_items_total{signal=\"logs\",transport=\"http\"}"),
        "{text}"
    );
    assert!(
        has(
            "telemetryflow_ingest_rejected_requests_total{signal=\"logs\",reason=\"unsupported_media_type\"}"
        ),
        "{text}"
    );
    assert!(
        has("telemetryflow_ingest_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(has("telemetryflow_store_rows{table=\"logs_v3\"}"), "{text}");
    assert!(
        has("telemetryflow_store_bytes{table=\"logs_v3\"}"),
        "{text}"
    );
    assert!(has("telemetryflow_store_wal_bytes"), "{text}");
    srv.shutdown().await;
}

//! Every kind of bad OTLP input gets its own clear answer, and nothing is half-stored.

use std::io::Write;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value as Any};
use prost::Message;
use serde_json::Value;

use crate::support::{Api, TestServer, build, now_nanos, post_otlp, post_protobuf};

const LIMIT: usize = 16 << 20;

/// A logs request whose protobuf encoding is exactly `size` bytes.
fn logs_of_exact_size(size: usize) -> Vec<u8> {
    let mut req = build::logs("big", "x", 1, now_nanos());
    let mut fill = size.saturating_sub(64);
    loop {
        req.resource_logs[0].scope_logs[0].log_records[0].body = Some(AnyValue {
            value: Some(Any::StringValue("y".repeat(fill))),
        });
        let len = req.encoded_len();
        if len == size {
            return req.encode_to_vec();
        }
        fill = if len > size {
            fill - (len - size)
        } else {
            fill + (size - len)
        };
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

async fn message_of(resp: reqwest::Response) -> String {
    let body = resp.text().await.expect("body");
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    v["message"].as_str().unwrap_or(&body).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_status_the_spec_asks_for() {
    let (srv, api, admin) = TestServer::with_admin().await;
    let (key, _) = api.key(&admin, &["logs:write", "traces:write"], None).await;
    let (metrics_only, _) = api.key(&admin, &["metrics:write"], None).await;
    let logs_url = format!("{}/v1/logs", srv.otlp_http);
    let good = build::logs("svc", "ok", 2, now_nanos()).encode_to_vec();
    let c = &srv.client;
    let pb = "application/x-protobuf";

    // Authentication and permissions.
    let r = post_otlp(c, &logs_url, None, pb, None, good.clone()).await;
    assert_eq!(r.status(), 401);
    let r = post_otlp(c, &logs_url, Some("tfk-nonsense"), pb, None, good.clone()).await;
    assert_eq!(r.status(), 401);
    let wrong_secret = format!("{}.{}", &key[..20], "A".repeat(43));
    let r = post_otlp(c, &logs_url, Some(&wrong_secret), pb, None, good.clone()).await;
    assert_eq!(r.status(), 401);
    let r = post_otlp(c, &logs_url, Some(&metrics_only), pb, None, good.clone()).await;
    assert_eq!(r.status(), 403);
    assert!(message_of(r).await.contains("logs:write"));
    let r = c
        .post(&logs_url)
        .header("content-type", pb)
        .header("x-api-key", &key)
        .body(good.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200, "x-api-key works too");

    // Content negotiation.
    let r = post_otlp(c, &logs_url, Some(&key), "text/plain", None, good.clone()).await;
    assert_eq!(r.status(), 415);
    let r = post_otlp(c, &logs_url, Some(&key), pb, Some("br"), good.clone()).await;
    assert_eq!(r.status(), 415);

    // Undecodable bodies: 400 with the reason.
    for (ct, enc, body) in [
        (pb, None, b"\xff\xff\xff\xff garbage".to_vec()),
        ("application/json", None, b"{\"resourceLogs\": [".to_vec()),
        (
            "application/json",
            None,
            b"{\"resourceLogs\": [{\"scopeLogs\": [{\"logRecords\": [{\"traceId\": \"zz\"}]}]}]}"
                .to_vec(),
        ),
        (pb, Some("gzip"), b"not gzip at all".to_vec()),
        (pb, Some("zstd"), b"not zstd either".to_vec()),
    ] {
        let r = post_otlp(c, &logs_url, Some(&key), ct, enc, body).await;
        assert_eq!(r.status(), 400, "{ct} {enc:?}");
        let msg = message_of(r).await;
        assert!(msg.contains("cannot"), "reason given: {msg}");
    }

    // Size: 16 MiB - 1 and exactly 16 MiB pass, one byte more is 413, so is a gzip bomb.
    for (size, status) in [(LIMIT - 1, 200), (LIMIT, 200), (LIMIT + 1, 413)] {
        let body = logs_of_exact_size(size);
        assert_eq!(body.len(), size);
        let r = post_otlp(c, &logs_url, Some(&key), pb, None, body.clone()).await;
        assert_eq!(r.status(), status, "identity body of {size} bytes");
        let r = post_otlp(c, &logs_url, Some(&key), pb, Some("gzip"), gzip(&body)).await;
        assert_eq!(r.status(), status, "gzip body inflating to {size} bytes");
    }
    let bomb = gzip(&vec![0u8; 256 << 20]);
    assert!(bomb.len() < 1 << 20);
    let r = post_otlp(c, &logs_url, Some(&key), pb, Some("gzip"), bomb).await;
    assert_eq!(r.status(), 413);
    let zbomb = zstd::encode_all(&vec![0u8; 256 << 20][..], 3).expect("zstd");
    let r = post_otlp(c, &logs_url, Some(&key), pb, Some("zstd"), zbomb).await;
    assert_eq!(r.status(), 413);

    // Only the accepted bodies were stored: 2 (x-api-key) + the big ones of 16 MiB - 1 and
    // 16 MiB. Each big body's gzip twin decompresses to the same request, which the store takes
    // for a retry and acknowledges without storing it twice.
    assert_eq!(
        api.count(&admin, "SELECT COUNT(*) FROM logs_v3").await,
        2 + 2
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn invalid_items_are_reported_as_partial_success() {
    let (srv, api, admin) = TestServer::with_admin().await;
    let (key, _) = api.key(&admin, &["traces:write", "logs:write"], None).await;
    let mut req = build::spans("partial", 3, now_nanos());
    req.resource_spans[0].scope_spans[0].spans[1].trace_id = vec![1, 2, 3];
    let url = format!("{}/v1/traces", srv.otlp_http);
    let r = post_otlp(
        &srv.client,
        &url,
        Some(&key),
        "application/x-protobuf",
        None,
        req.encode_to_vec(),
    )
    .await;
    assert_eq!(r.status(), 200);
    let resp =
        ExportTraceServiceResponse::decode(r.bytes().await.expect("body")).expect("response");
    let partial = resp.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("trace_id"),
        "{}",
        partial.error_message
    );
    assert_eq!(api.count(&admin, "SELECT COUNT(*) FROM traces_v3").await, 2);

    // The same in JSON: the response is JSON too.
    let json = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
        {"body":{"stringValue":"fine"}},
        {"body":{"stringValue":"bad"},"traceId":"abcd"}]}]}]}"#;
    let url = format!("{}/v1/logs", srv.otlp_http);
    let r = post_otlp(
        &srv.client,
        &url,
        Some(&key),
        "application/json",
        None,
        json.into(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["partialSuccess"]["rejectedLogRecords"], 1, "{v}");
    srv.shutdown().await;
}

/// A server tuned by `tune`, its admin token and a logs key.
async fn logs_server(tune: impl FnOnce(&mut server::Config)) -> (TestServer, Api, String, String) {
    let srv = TestServer::start_with(tune).await;
    let api = Api::new(&srv.api);
    let admin = api.admin().await;
    let (key, _) = api.key(&admin, &["logs:write"], None).await;
    (srv, api, admin, key)
}

async fn post_logs(srv: &TestServer, key: &str, n: usize) -> reqwest::Response {
    let req = build::logs("svc", "x", n, now_nanos());
    post_protobuf(&srv.client, &srv.otlp_http, "/v1/logs", key, &req).await
}

#[tokio::test]
async fn a_saturated_write_path_answers_503_with_retry_after() {
    // No ingest slots at all: every request is turned away before it is read.
    let (srv, _, _, key) = logs_server(|c| c.ingest_max_in_flight = 0).await;
    let r = post_logs(&srv, &key, 1).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    srv.shutdown().await;

    // Flushing cannot keep up: once unflushed data passes the cap, writes are refused, not
    // dropped. (The server's own audit events count against the cap too, so the first refusal
    // may come at the first or the second request.)
    let (srv, api, admin, key) = logs_server(|c| c.max_unflushed_bytes = 1).await;
    let mut accepted = 0;
    let mut refused = None;
    for _ in 0..3 {
        let r = post_logs(&srv, &key, 10).await;
        match r.status().as_u16() {
            200 => accepted += 1,
            503 => {
                refused = Some(r);
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let refused = refused.expect("a write past the cap is refused");
    assert!(
        accepted <= 1,
        "the cap of one byte admits one write at most"
    );
    let after: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(after >= 1);
    assert_eq!(
        api.count(&admin, "SELECT COUNT(*) FROM logs_v3").await,
        10 * accepted,
        "the refused batch was not stored"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn grpc_checks_keys_and_accepts_gzip() {
    let (srv, api, admin) = TestServer::with_admin().await;
    let (key, _) = api.key(&admin, &["traces:write"], None).await;
    let (logs_only, _) = api.key(&admin, &["logs:write"], None).await;
    let mut client = TraceServiceClient::connect(srv.otlp_grpc.clone())
        .await
        .expect("connect")
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);

    let req = build::spans("grpc-svc", 4, now_nanos());
    let err = client.export(req.clone()).await.expect_err("no key");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    let with = |k: &str| {
        let mut r = tonic::Request::new(req.clone());
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {k}").parse().expect("ascii"),
        );
        r
    };
    let err = client
        .export(with(&logs_only))
        .await
        .expect_err("wrong permission");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let ok = client.export(with(&key)).await.expect("export");
    assert!(ok.into_inner().partial_success.is_none());
    assert_eq!(
        api.count(
            &admin,
            "SELECT COUNT(*) FROM spans_v3 WHERE service_name = 'grpc-svc'"
        )
        .await,
        4
    );
    srv.shutdown().await;
}

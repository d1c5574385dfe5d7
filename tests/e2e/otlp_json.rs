//! OTLP/JSON bodies shaped like the specification's examples are stored exactly as their
//! protobuf twins: hex ids (any case), 64-bit integers as strings, enums as integers, camelCase.

use std::path::Path;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value as Any,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets, metric::Data,
    number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;

use crate::support::{TestServer, build::kv, build::resource, post_otlp};

const T: u64 = 1_544_712_660_300_000_000;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/otlp")
            .join(name),
    )
    .expect("fixture")
}

fn any(v: Any) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

fn akv(key: &str, v: Any) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: any(v),
        ..Default::default()
    }
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "my.library".into(),
        version: "1.0.0".into(),
        attributes: vec![kv("my.scope.attribute", "some scope attribute")],
        ..Default::default()
    })
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn trace_twin() -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("my.service"),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans: vec![Span {
                    trace_id: hex("5B8EFFF798038103D269B633813FC60C"),
                    span_id: hex("EEE19B7EC3C1B174"),
                    parent_span_id: hex("EEE19B7EC3C1B173"),
                    name: "I'm a server span".into(),
                    start_time_unix_nano: 1_544_712_660_000_000_000,
                    end_time_unix_nano: 1_544_712_661_000_000_000,
                    kind: 2,
                    attributes: vec![
                        kv("my.span.attr", "some value"),
                        akv("http.status_code", Any::IntValue(200)),
                    ],
                    events: vec![span::Event {
                        time_unix_nano: 1_544_712_660_500_000_000,
                        name: "exception".into(),
                        attributes: vec![kv("exception.type", "IOError")],
                        ..Default::default()
                    }],
                    links: vec![span::Link {
                        trace_id: hex("5B8EFFF798038103D269B633813FC60D"),
                        span_id: hex("EEE19B7EC3C1B175"),
                        trace_state: "vendor=1".into(),
                        attributes: vec![kv("link.reason", "retry")],
                        ..Default::default()
                    }],
                    status: Some(Status {
                        code: 2,
                        message: "failed".into(),
                    }),
                    dropped_attributes_count: 1,
                    dropped_events_count: 2,
                    dropped_links_count: 3,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs_twin() -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("my.service"),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: vec![LogRecord {
                    time_unix_nano: T,
                    observed_time_unix_nano: T,
                    severity_number: 10,
                    severity_text: "Information".into(),
                    trace_id: hex("5B8EFFF798038103D269B633813FC60C"),
                    span_id: hex("EEE19B7EC3C1B174"),
                    body: any(Any::StringValue("Example log record".into())),
                    attributes: vec![
                        kv("string.attribute", "some string"),
                        akv("boolean.attribute", Any::BoolValue(true)),
                        akv("int.attribute", Any::IntValue(10)),
                        akv("double.attribute", Any::DoubleValue(637.704)),
                        akv(
                            "array.attribute",
                            Any::ArrayValue(ArrayValue {
                                values: vec![
                                    AnyValue {
                                        value: Some(Any::StringValue("many".into())),
                                    },
                                    AnyValue {
                                        value: Some(Any::StringValue("values".into())),
                                    },
                                ],
                            }),
                        ),
                        akv(
                            "map.attribute",
                            Any::KvlistValue(KeyValueList {
                                values: vec![kv("some.map.key", "some value")],
                            }),
                        ),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metric(name: &str, unit: &str, description: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        description: description.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn metrics_twin() -> ExportMetricsServiceRequest {
    let metrics = vec![
        metric(
            "my.counter",
            "1",
            "I am a Counter",
            Data::Sum(Sum {
                aggregation_temporality: 1,
                is_monotonic: true,
                data_points: vec![NumberDataPoint {
                    value: Some(number_data_point::Value::AsDouble(5.0)),
                    start_time_unix_nano: T,
                    time_unix_nano: T,
                    attributes: vec![kv("my.counter.attr", "some value")],
                    exemplars: vec![Exemplar {
                        time_unix_nano: T,
                        value: Some(exemplar::Value::AsInt(3)),
                        trace_id: hex("5B8EFFF798038103D269B633813FC60C"),
                        span_id: hex("EEE19B7EC3C1B174"),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }),
        ),
        metric(
            "my.gauge",
            "1",
            "I am a Gauge",
            Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    value: Some(number_data_point::Value::AsInt(10)),
                    time_unix_nano: T,
                    attributes: vec![kv("my.gauge.attr", "some value")],
                    ..Default::default()
                }],
            }),
        ),
        metric(
            "my.histogram",
            "1",
            "I am a Histogram",
            Data::Histogram(Histogram {
                aggregation_temporality: 2,
                data_points: vec![HistogramDataPoint {
                    start_time_unix_nano: T,
                    time_unix_nano: T,
                    count: 2,
                    sum: Some(2.0),
                    bucket_counts: vec![1, 1],
                    explicit_bounds: vec![1.0],
                    min: Some(0.0),
                    max: Some(2.0),
                    attributes: vec![kv("my.histogram.attr", "some value")],
                    ..Default::default()
                }],
            }),
        ),
        metric(
            "my.exponential.histogram",
            "1",
            "I am an Exponential Histogram",
            Data::ExponentialHistogram(ExponentialHistogram {
                aggregation_temporality: 1,
                data_points: vec![ExponentialHistogramDataPoint {
                    start_time_unix_nano: T,
                    time_unix_nano: T,
                    count: 3,
                    sum: Some(10.0),
                    scale: 0,
                    zero_count: 1,
                    positive: Some(Buckets {
                        offset: 1,
                        bucket_counts: vec![0, 2],
                    }),
                    min: Some(0.0),
                    max: Some(5.0),
                    zero_threshold: 0.0,
                    attributes: vec![kv("my.exponential.histogram.attr", "some value")],
                    ..Default::default()
                }],
            }),
        ),
        metric(
            "my.summary",
            "ms",
            "",
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    start_time_unix_nano: T,
                    time_unix_nano: T,
                    count: 4,
                    sum: 40.5,
                    quantile_values: vec![
                        ValueAtQuantile {
                            quantile: 0.5,
                            value: 9.5,
                        },
                        ValueAtQuantile {
                            quantile: 0.99,
                            value: 20.0,
                        },
                    ],
                    ..Default::default()
                }],
            }),
        ),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("my.service"),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "my.library".into(),
                    version: "1.0.0".into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn spec_shaped_json_is_stored_exactly_like_its_protobuf_twin() {
    let (srv, api, admin) = TestServer::with_admin().await;
    let perms = ["traces:write", "logs:write", "metrics:write"];
    let (tenant_json, viewer_json) = api.tenant_with_viewer(&admin, "json").await;
    let (tenant_pb, viewer_pb) = api.tenant_with_viewer(&admin, "protobuf").await;
    let (key_json, _) = api.key(&admin, &perms, Some(&tenant_json)).await;
    let (key_pb, _) = api.key(&admin, &perms, Some(&tenant_pb)).await;

    let sends = [
        (
            "traces",
            fixture("trace.json"),
            trace_twin().encode_to_vec(),
        ),
        ("logs", fixture("logs.json"), logs_twin().encode_to_vec()),
        (
            "metrics",
            fixture("metrics.json"),
            metrics_twin().encode_to_vec(),
        ),
    ];
    for (signal, json, pb) in sends {
        let url = format!("{}/v1/{signal}", srv.otlp_http);
        let r = post_otlp(
            &srv.client,
            &url,
            Some(&key_json),
            "application/json",
            None,
            json,
        )
        .await;
        assert_eq!(
            r.status(),
            200,
            "json {signal}: {}",
            r.text().await.unwrap_or_default()
        );
        let r = post_otlp(
            &srv.client,
            &url,
            Some(&key_pb),
            "application/x-protobuf",
            None,
            pb,
        )
        .await;
        assert_eq!(r.status(), 200, "protobuf {signal}");
    }

    for (table, order) in [
        ("traces_v3", "span_id"),
        ("logs_v3", "body"),
        ("metrics_v3", "metric_name"),
        ("metric_histograms", "metric_name"),
        ("exemplars_v3", "metric_name"),
    ] {
        let sql = format!("SELECT * EXCLUDE (tenant_id) FROM {table} ORDER BY {order}");
        let from_json = api.sql(&viewer_json, &sql).await;
        let from_pb = api.sql(&viewer_pb, &sql).await;
        assert!(!from_json.is_empty(), "{table} is empty");
        assert_eq!(from_json, from_pb, "{table}: JSON and protobuf rows differ");
    }

    // And the JSON mapping itself: lowercase hex ids, string int64s, enum integers.
    let rows = api
        .sql(
            &viewer_json,
            "SELECT trace_id, span_id, parent_span_id, span_kind, status_code, span_attributes['http.status_code'], \
             duration_nano, dropped_links_count, links FROM traces_v3",
        )
        .await;
    let r = &rows[0];
    assert_eq!(r[0], "5b8efff798038103d269b633813fc60c");
    assert_eq!(r[1], "eee19b7ec3c1b174");
    assert_eq!(r[2], "eee19b7ec3c1b173");
    assert_eq!(
        (r[3].as_str(), r[4].as_str()),
        (Some("server"), Some("error"))
    );
    assert_eq!(r[5], "200");
    assert_eq!(r[6], 1_000_000_000u64);
    assert_eq!(r[7], 3);
    assert_eq!(r[8][0]["trace_state"], "vendor=1");
    let rows = api
        .sql(
            &viewer_json,
            "SELECT log_attributes, severity_number, trace_id FROM logs_v3",
        )
        .await;
    assert_eq!(rows[0][0]["int.attribute"], "10");
    assert_eq!(rows[0][0]["boolean.attribute"], "true");
    assert_eq!(rows[0][0]["array.attribute"], r#"["many","values"]"#);
    assert_eq!(
        rows[0][0]["map.attribute"],
        r#"{"some.map.key":"some value"}"#
    );
    assert_eq!(rows[0][1], 10);
    let rows = api
        .sql(
            &viewer_json,
            "SELECT metric_name, metric_type, value, temporality FROM metrics_v3 ORDER BY metric_name",
        )
        .await;
    let kinds: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap_or("").into(),
                r[1].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("my.counter", "counter"),
            ("my.exponential.histogram", "exponential_histogram"),
            ("my.gauge", "gauge"),
            ("my.histogram", "histogram"),
            ("my.summary", "summary"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let rows = api
        .sql(&viewer_json, "SELECT quantiles, quantile_values, count FROM metric_histograms WHERE metric_type = 'summary'")
        .await;
    assert_eq!(rows[0][0], serde_json::json!([0.5, 0.99]));
    assert_eq!(rows[0][1], serde_json::json!([9.5, 20.0]));
    assert_eq!(rows[0][2], 4);
    srv.shutdown().await;
}

//! OTLP requests covering every signal and metric type, and helpers that store them the way
//! the ingest path does (converted rows plus the request they came from).

use arrow::array::RecordBatch;
use model::{Scope, Signal, Table};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    Summary, SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets, metric::Data,
    number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span::Event, span::Link,
};
use prost::Message;
use storage::{RawExport, TelemetryStore};

pub const HOUR: u64 = 3_600_000_000_000;
pub const DAY: u64 = 24 * HOUR;

pub fn now() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    )
    .unwrap_or(0)
}

/// The start of the hour `hours_ago` hours before now, plus `offset` nanoseconds.
pub fn hour_start(hours_ago: u64, offset: u64) -> u64 {
    (now() / HOUR - hours_ago) * HOUR + offset
}

pub fn scope(tenant: &str) -> Scope {
    Scope {
        organization_id: "org-1".into(),
        workspace_id: "ws-1".into(),
        tenant_id: tenant.into(),
    }
}

fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::StringValue(v.into())),
    })
}

pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: s(value),
        ..Default::default()
    }
}

fn kvs(pairs: &[(&str, Value)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|(k, v)| KeyValue {
            key: (*k).into(),
            value: Some(AnyValue {
                value: Some(v.clone()),
            }),
            ..Default::default()
        })
        .collect()
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", service), kv("host.name", "h-1")],
        ..Default::default()
    })
}

/// Three spans of one trace: a server root with events and a status, a client child with a link
/// to another trace, and an internal grandchild.
pub fn traces(t0: u64) -> ExportTraceServiceRequest {
    let trace_id = vec![0x5a; 16];
    let span = |id: u8, parent: Option<u8>, kind: i32, name: &str, start: u64, dur: u64| Span {
        trace_id: trace_id.clone(),
        span_id: vec![0, 0, 0, 0, 0, 0, 0, id],
        parent_span_id: parent
            .map(|p| vec![0, 0, 0, 0, 0, 0, 0, p])
            .unwrap_or_default(),
        trace_state: "vendor=x".into(),
        name: name.into(),
        kind,
        start_time_unix_nano: start,
        end_time_unix_nano: start + dur,
        attributes: kvs(&[
            ("http.route", Value::StringValue("/api/{id}".into())),
            ("retries", Value::IntValue(3)),
            ("ok", Value::BoolValue(true)),
            ("ratio", Value::DoubleValue(0.25)),
        ]),
        ..Default::default()
    };
    let mut root = span(1, None, 2, "GET /api/{id}", t0, 5_000_000);
    root.events = vec![
        Event {
            time_unix_nano: t0 + 1_000,
            name: "cache.miss".into(),
            attributes: vec![kv("key", "user:7")],
            dropped_attributes_count: 1,
        },
        Event {
            time_unix_nano: t0 + 2_000,
            name: "exception".into(),
            attributes: vec![
                kv("exception.type", "Timeout"),
                kv("exception.message", "too slow"),
            ],
            dropped_attributes_count: 0,
        },
    ];
    root.status = Some(Status {
        message: "upstream timed out".into(),
        code: 2,
    });
    root.dropped_events_count = 4;
    let mut child = span(2, Some(1), 3, "SELECT users", t0 + 10_000, 2_000_000);
    child.links = vec![Link {
        trace_id: vec![0x77; 16],
        span_id: vec![9; 8],
        trace_state: "k=v".into(),
        attributes: vec![kv("link.kind", "follows")],
        dropped_attributes_count: 2,
        flags: 0,
    }];
    child.status = Some(Status {
        message: String::new(),
        code: 1,
    });
    let grandchild = span(3, Some(2), 1, "parse", t0 + 20_000, 1_000);
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("checkout"),
            scope_spans: vec![ScopeSpans {
                scope: Some(
                    opentelemetry_proto::tonic::common::v1::InstrumentationScope {
                        name: "conformance".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    },
                ),
                spans: vec![root, child, grandchild],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `n` logs one millisecond apart, bodies `"{marker}-{i}"`, the first one in trace 0x5a….
pub fn logs(service: &str, marker: &str, n: usize, t0: u64) -> ExportLogsServiceRequest {
    let records = (0..n)
        .map(|i| LogRecord {
            time_unix_nano: t0 + i as u64 * 1_000_000,
            observed_time_unix_nano: t0 + i as u64 * 1_000_000 + 7,
            severity_number: 9 + (i % 3) as i32 * 4,
            severity_text: ["INFO", "WARN", "ERROR"][i % 3].into(),
            body: s(&format!("{marker}-{i}")),
            attributes: kvs(&[
                ("i", Value::IntValue(i as i64)),
                ("user.id", Value::StringValue("42".into())),
            ]),
            trace_id: if i == 0 { vec![0x5a; 16] } else { vec![] },
            span_id: if i == 0 {
                vec![0, 0, 0, 0, 0, 0, 0, 1]
            } else {
                vec![]
            },
            flags: if i == 0 { 1 } else { 0 },
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(service),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn exemplar(t: u64, v: f64) -> Exemplar {
    Exemplar {
        filtered_attributes: vec![kv("sampled", "yes")],
        time_unix_nano: t,
        value: Some(exemplar::Value::AsDouble(v)),
        span_id: vec![0, 0, 0, 0, 0, 0, 0, 1],
        trace_id: vec![0x5a; 16],
    }
}

fn metric(name: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        description: format!("{name} description"),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn number(t: u64, v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: t - 60_000_000_000,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

/// A gauge, a cumulative monotonic counter with an exemplar, an explicit histogram with
/// exemplars, an exponential histogram and a summary.
pub fn metrics(t0: u64) -> ExportMetricsServiceRequest {
    let mut counter = number(t0, 17.0, vec![kv("route", "/a")]);
    counter.exemplars = vec![exemplar(t0 - 5, 1.0)];
    let metrics = vec![
        metric(
            "cpu.temp",
            "Cel",
            Data::Gauge(Gauge {
                data_points: vec![
                    number(t0, 61.5, vec![kv("core", "0")]),
                    number(t0, 58.25, vec![kv("core", "1")]),
                ],
            }),
        ),
        metric(
            "http.requests",
            "1",
            Data::Sum(Sum {
                data_points: vec![
                    counter,
                    NumberDataPoint {
                        value: Some(number_data_point::Value::AsInt(4)),
                        ..number(t0, 0.0, vec![kv("route", "/b")])
                    },
                ],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            }),
        ),
        metric(
            "http.latency",
            "ms",
            Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: vec![kv("route", "/a")],
                    start_time_unix_nano: t0 - 60_000_000_000,
                    time_unix_nano: t0,
                    count: 6,
                    sum: Some(330.0),
                    bucket_counts: vec![1, 2, 3],
                    explicit_bounds: vec![10.0, 100.0],
                    exemplars: vec![exemplar(t0 - 3, 7.5), exemplar(t0 - 2, 150.0)],
                    flags: 0,
                    min: Some(2.0),
                    max: Some(180.0),
                }],
                aggregation_temporality: AggregationTemporality::Delta as i32,
            }),
        ),
        metric(
            "rpc.size",
            "By",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    attributes: vec![kv("rpc", "get")],
                    start_time_unix_nano: t0 - 60_000_000_000,
                    time_unix_nano: t0,
                    count: 5,
                    sum: Some(70.0),
                    scale: 2,
                    zero_count: 1,
                    positive: Some(Buckets {
                        offset: 3,
                        bucket_counts: vec![1, 2, 1],
                    }),
                    negative: None,
                    flags: 0,
                    exemplars: vec![],
                    min: Some(0.0),
                    max: Some(30.0),
                    zero_threshold: 0.0,
                }],
                aggregation_temporality: AggregationTemporality::Delta as i32,
            }),
        ),
        metric(
            "gc.pause",
            "s",
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    attributes: vec![],
                    start_time_unix_nano: t0 - 60_000_000_000,
                    time_unix_nano: t0,
                    count: 10,
                    sum: 2.5,
                    quantile_values: vec![
                        ValueAtQuantile {
                            quantile: 0.5,
                            value: 0.2,
                        },
                        ValueAtQuantile {
                            quantile: 0.99,
                            value: 0.9,
                        },
                    ],
                    flags: 0,
                }],
            }),
        ),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("checkout"),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Gauge points of `name`, one per `(time, value)`.
pub fn gauge_points(name: &str, points: &[(u64, f64)]) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("rollups"),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![metric(
                    name,
                    "1",
                    Data::Gauge(Gauge {
                        data_points: points.iter().map(|(t, v)| number(*t, *v, vec![])).collect(),
                    }),
                )],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A request in any signal.
pub enum Export {
    Traces(ExportTraceServiceRequest),
    Logs(ExportLogsServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

/// Converts `export` as the ingest path does: rows plus the request they came from.
pub fn convert(export: &Export, scope: &Scope) -> (Vec<(Table, RecordBatch)>, RawExport) {
    let limits = otlp::Limits::default();
    let received_at = now();
    let (signal, converted, body) = match export {
        Export::Traces(r) => (
            Signal::Traces,
            otlp::traces_to_batches(r, scope, &limits),
            r.encode_to_vec(),
        ),
        Export::Logs(r) => (
            Signal::Logs,
            otlp::logs_to_batches(r, scope, &limits, received_at),
            r.encode_to_vec(),
        ),
        Export::Metrics(r) => (
            Signal::Metrics,
            otlp::metrics_to_batches(r, scope, &limits, received_at),
            r.encode_to_vec(),
        ),
    };
    let converted = converted.expect("the request converts");
    assert_eq!(converted.rejected, 0, "{}", converted.error_message);
    let raw = RawExport {
        signal,
        json: false,
        received_at,
        scope: scope.clone(),
        body: body.into(),
    };
    (converted.batches, raw)
}

/// Stores `export` through the port; returns the rows that were written.
pub async fn store(
    store: &dyn TelemetryStore,
    scope: &Scope,
    export: &Export,
) -> Vec<(Table, RecordBatch)> {
    let (batches, raw) = convert(export, scope);
    store
        .write_export(batches.clone(), raw)
        .await
        .expect("the store takes the write");
    batches
}

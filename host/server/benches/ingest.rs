//! `cargo bench -p server --bench ingest`: OTLP/HTTP protobuf ingest into the embedded store,
//! durability on (every request is fsynced before its 200), 512 items per request. With
//! `CLICKHOUSE_URL` set it measures ingest into that ClickHouse too (acknowledged only after
//! ClickHouse confirmed the insert), and with `CLICKHOUSE_PID` also ClickHouse's own CPU.
//!
//! Every request carries a distinct `bench.request` resource attribute, so no request is a
//! retry of another (stores acknowledge retries without storing them again).
//!
//! For spans, logs and metric points separately it starts a fresh `telemetryflow` process,
//! offers load from concurrent connections, then stops it with SIGTERM (which flushes to
//! Parquet) and reads the child's CPU time from `wait4`. It prints items/s and server CPU-µs per
//! item (including the flush), next to the decode-only baseline: the same payloads decoded with
//! prost in this process, in the same run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

const ITEMS: usize = 512;
const PAYLOADS: usize = 32;
const CONNECTIONS: usize = 8;
const SECONDS: u64 = 8;
/// Overwritten in every request body with a request number (same length).
const SEQ_PLACEHOLDER: &str = "SEQ-000000000000";

/// A payload and where its request-number placeholder sits.
struct Template {
    body: Vec<u8>,
    at: usize,
}

impl Template {
    fn new(body: Vec<u8>) -> Template {
        let at = body
            .windows(SEQ_PLACEHOLDER.len())
            .position(|w| w == SEQ_PLACEHOLDER.as_bytes())
            .expect("the placeholder is in the payload");
        Template { body, at }
    }

    fn stamped(&self, seq: u64) -> bytes::Bytes {
        let mut b = self.body.clone();
        let n = SEQ_PLACEHOLDER.len();
        b[self.at..self.at + n].copy_from_slice(format!("{seq:0n$x}").as_bytes());
        bytes::Bytes::from(b)
    }
}

/// Where the server under test keeps telemetry.
#[derive(Clone)]
enum Store {
    Embedded,
    ClickHouse { url: String, pid: Option<u32> },
}

fn kv(k: &str, v: String) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v)),
        }),
        ..Default::default()
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", "checkout".into()),
            kv("host.name", "bench-host-01".into()),
            kv("deployment.environment", "bench".into()),
            kv("bench.request", SEQ_PLACEHOLDER.into()),
        ],
        ..Default::default()
    })
}

fn attrs(seed: usize, i: usize) -> Vec<KeyValue> {
    vec![
        kv("http.method", "GET".into()),
        kv("http.route", format!("/api/v1/items/{}", i % 37)),
        kv("http.status_code", "200".into()),
        kv("net.peer.name", format!("10.0.{}.{}", seed % 250, i % 250)),
        kv("user.id", format!("user-{}", (seed * 7919 + i) % 100_000)),
        kv("region", "eu-west-1".into()),
        kv(
            "feature.flag",
            if i.is_multiple_of(2) {
                "on".into()
            } else {
                "off".into()
            },
        ),
        kv("request.id", format!("{seed:08x}-{i:08x}")),
    ]
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn spans(seed: usize) -> Vec<u8> {
    let t = now();
    let spans = (0..ITEMS)
        .map(|i| Span {
            trace_id: [(seed as u64).to_be_bytes(), (i as u64 + 1).to_be_bytes()].concat(),
            span_id: ((seed * ITEMS + i) as u64 + 1).to_be_bytes().to_vec(),
            name: format!("GET /api/v1/items/{}", i % 37),
            kind: 2,
            start_time_unix_nano: t + i as u64,
            end_time_unix_nano: t + i as u64 + 1_500_000,
            attributes: attrs(seed, i),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn logs(seed: usize) -> Vec<u8> {
    let t = now();
    let records = (0..ITEMS)
        .map(|i| LogRecord {
            time_unix_nano: t + i as u64,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(Value::StringValue(format!(
                    "request {seed}-{i} served in {} ms",
                    i % 97
                ))),
            }),
            attributes: attrs(seed, i),
            trace_id: [(seed as u64).to_be_bytes(), (i as u64 + 1).to_be_bytes()].concat(),
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn points(seed: usize) -> Vec<u8> {
    let t = now();
    let metrics = (0..16)
        .map(|m| Metric {
            name: format!("bench.metric.{m}"),
            unit: "1".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: (0..ITEMS / 16)
                    .map(|i| NumberDataPoint {
                        time_unix_nano: t,
                        value: Some(number_data_point::Value::AsDouble((seed * i) as f64)),
                        attributes: attrs(seed, i)[..4].to_vec(),
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU-µs per item to decode the payloads, the floor of any ingest path.
fn decode_baseline(payloads: &[Vec<u8>], signal: &str) -> f64 {
    let rounds = 20;
    let start = thread_cpu();
    for _ in 0..rounds {
        for p in payloads {
            let ok = match signal {
                "traces" => ExportTraceServiceRequest::decode(&p[..]).is_ok(),
                "logs" => ExportLogsServiceRequest::decode(&p[..]).is_ok(),
                _ => ExportMetricsServiceRequest::decode(&p[..]).is_ok(),
            };
            assert!(ok);
        }
    }
    let cpu = thread_cpu() - start;
    cpu.as_secs_f64() * 1e6 / (rounds * payloads.len() * ITEMS) as f64
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn proc_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_secs_f64(ticks as f64 / hz as f64)
}

struct Result {
    items_per_sec: f64,
    cpu_us_per_item: f64,
    /// ClickHouse's own CPU per item, when its process is known.
    store_cpu_us_per_item: Option<f64>,
    items: u64,
}

async fn run(signal: &'static str, payloads: Vec<Vec<u8>>, store: &Store) -> Result {
    let dir = tempfile::tempdir().expect("tempdir");
    let (api, http, grpc) = (free_port(), free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_telemetryflow"));
    cmd.args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--http-addr", &format!("127.0.0.1:{api}")])
        .args(["--otlp-http-addr", &format!("127.0.0.1:{http}")])
        .args(["--otlp-grpc-addr", &format!("127.0.0.1:{grpc}")])
        .env("TELEMETRYFLOW_ADMIN_PASSWORD", "bench-password")
        .env("TELEMETRYFLOW_LOG", "warn")
        .stdout(Stdio::null());
    if let Store::ClickHouse { url, .. } = store {
        cmd.args(["--telemetry-store", "clickhouse", "--clickhouse-url", url])
            .args([
                "--clickhouse-database",
                &format!("bench_{signal}_{}", now()),
            ]);
    }
    let mut child = cmd.spawn().expect("spawn telemetryflow");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .expect("client");
    let base = format!("http://127.0.0.1:{api}");
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": "admin@telemetryflow.local", "password": "bench-password"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login json");
    let token = login["access_token"].as_str().expect("token").to_string();
    let key: serde_json::Value = client
        .post(format!("{base}/api/v1/api-keys"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "bench", "permissions": ["traces:write", "logs:write", "metrics:write"]}))
        .send()
        .await
        .expect("key")
        .json()
        .await
        .expect("key json");
    let key = key["key"].as_str().expect("key").to_string();
    let url = format!("http://127.0.0.1:{http}/v1/{signal}");
    let payloads: std::sync::Arc<Vec<Template>> =
        std::sync::Arc::new(payloads.into_iter().map(Template::new).collect());
    // Warm up (also verifies the key once, so Argon2id is not in the measurement).
    let warm = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .bearer_auth(&key)
        .body(payloads[0].stamped(u64::MAX))
        .send()
        .await
        .expect("warm-up");
    assert_eq!(warm.status(), 200);

    let pid = child.id();
    let cpu_before = proc_cpu(pid);
    let store_pid = match store {
        Store::ClickHouse { pid, .. } => *pid,
        Store::Embedded => None,
    };
    let store_cpu_before = store_pid.map(proc_cpu);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(SECONDS);
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let (client, url, key, payloads) =
            (client.clone(), url.clone(), key.clone(), payloads.clone());
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            let mut i = c;
            while Instant::now() < deadline {
                let r = client
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .bearer_auth(&key)
                    .body(payloads[i % payloads.len()].stamped(i as u64))
                    .send()
                    .await
                    .expect("post");
                if r.status() == 200 {
                    sent += ITEMS as u64;
                } else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                i += CONNECTIONS;
            }
            sent
        }));
    }
    let mut items = 0;
    for t in tasks {
        items += t.await.expect("task");
    }
    let elapsed = started.elapsed();
    let store_cpu = store_pid
        .zip(store_cpu_before)
        .map(|(p, before)| proc_cpu(p).saturating_sub(before));
    // SIGTERM flushes everything to Parquet; wait4 gives the child's total CPU time.
    #[allow(unsafe_code)]
    let rusage = unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(pid as i32, &mut status, 0, &mut usage);
        usage
    };
    let _ = child.try_wait();
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec * 1000) as u32);
    let total = tv(rusage.ru_utime) + tv(rusage.ru_stime);
    let cpu = total.saturating_sub(cpu_before);
    Result {
        items_per_sec: items as f64 / elapsed.as_secs_f64(),
        cpu_us_per_item: cpu.as_secs_f64() * 1e6 / items.max(1) as f64,
        store_cpu_us_per_item: store_cpu.map(|c| c.as_secs_f64() * 1e6 / items.max(1) as f64),
        items,
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; accept and ignore harness flags.
    let mut stores = vec![("embedded", Store::Embedded)];
    if let Ok(url) = std::env::var("CLICKHOUSE_URL") {
        let pid = std::env::var("CLICKHOUSE_PID")
            .ok()
            .and_then(|p| p.parse().ok());
        stores.push(("clickhouse", Store::ClickHouse { url, pid }));
    } else {
        println!(
            "(set CLICKHOUSE_URL, and CLICKHOUSE_PID for its CPU, to measure ingest into ClickHouse too)"
        );
    }
    println!(
        "ingest benchmark: OTLP/HTTP protobuf, {ITEMS} items/request, {CONNECTIONS} connections, {SECONDS} s per signal, acks only once stored (embedded: fsync, flush included)"
    );
    println!(
        "{:<11} {:<8} {:>10} {:>11} {:>19} {:>23} {:>7} {:>21}",
        "store",
        "signal",
        "items",
        "items/s",
        "server CPU-µs/item",
        "decode-only CPU-µs/item",
        "ratio",
        "ClickHouse CPU-µs/item"
    );
    type Generator = fn(usize) -> Vec<u8>;
    let gens: [(&'static str, Generator); 3] =
        [("traces", spans), ("logs", logs), ("metrics", points)];
    for (name, store) in &stores {
        for (signal, generate) in gens {
            let payloads: Vec<Vec<u8>> = (0..PAYLOADS).map(generate).collect();
            let baseline = decode_baseline(&payloads, signal);
            let r = run(signal, payloads, store).await;
            let ch = r
                .store_cpu_us_per_item
                .map_or_else(|| "-".to_string(), |c| format!("{c:.2}"));
            println!(
                "{:<11} {:<8} {:>10} {:>11.0} {:>19.2} {:>23.2} {:>6.1}x {:>21}",
                name,
                signal,
                r.items,
                r.items_per_sec,
                r.cpu_us_per_item,
                baseline,
                r.cpu_us_per_item / baseline,
                ch
            );
        }
    }
    println!(
        "anchor: the Rust otel-arrow engine uses 0.45 cores per 100k logs/s into ClickHouse = 4.5 CPU-µs/log"
    );
}

//! `cargo bench -p server --bench alerting`: what alerting costs per core.
//!
//! - **Rule evaluations per second**: 1,000 `builtin-threshold` rules, each over 50 series
//!   (one query grouping 1,000 stored metric points by service), on the embedded store with
//!   SQLite metadata, evaluated on one core (the process is pinned to one CPU) as the
//!   scheduler runs them, 8 at once: query → Arrow IPC → plugin → state machine → state
//!   written; once with every rule changing state (history written, states durable before
//!   each evaluation returns), then in the steady state where nothing changes (states written
//!   in one batch, as the scheduler does every 2 s; each phase's time includes that write),
//!   then the same one at a time. The baseline, measured in the same run,
//!   is the same queries alone; the ratio is what the plugin and the state add. The plugin
//!   call and the state write are also timed alone.
//! - **Notifications per second** through the built-in `webhook` channel (Alertmanager v4
//!   payload, 5 alerts each) with a receiver that answers at once, against building and
//!   serializing the same payload natively.
//!
//! Targets (`performance.md`): ≥ 1,000 evaluations/s/core; ≥ 1,000 notifications/s/core.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alert::spec::RuleSpec;
use async_trait::async_trait;
use model::Scope;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use plugin_runtime::{
    Alert, AlertStatus, Capabilities, CompiledPlugin, EmailMessage, HttpError, HttpRequest,
    HttpResponse, Notification, PluginRuntime, RuntimeConfig,
};
use storage::{AlertStore, MetaStore, TelemetryStore};

// The server's allocator (`src/main.rs`): measured with glibc's, a fifth of the time went to
// malloc bookkeeping the server never pays.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RULES: usize = 1_000;
const SERVICES: usize = 50;
const POINTS: usize = 20;
const NOTIFICATIONS: usize = 2_000;

struct Bench {
    rt: Arc<PluginRuntime>,
    threshold: Arc<CompiledPlugin>,
}

#[async_trait]
impl alerting::Plugins for Bench {
    async fn plugin(&self, _: &str, _: &str) -> Result<Arc<CompiledPlugin>, String> {
        Ok(Arc::clone(&self.threshold))
    }

    fn runtime(&self) -> Arc<PluginRuntime> {
        Arc::clone(&self.rt)
    }

    async fn report(&self, _: &str, _: &str, _: Result<(), &plugin_runtime::PluginError>) {}
}

/// A receiver that accepts everything at once (the plugin's own cost is what is measured).
struct Accept;

impl Capabilities for Accept {
    fn http(
        &self,
        _: &str,
        _: HttpRequest,
        _: std::time::Instant,
    ) -> Result<HttpResponse, HttpError> {
        Ok(HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: b"ok".to_vec(),
        })
    }

    fn email(&self, _: &str, _: EmailMessage, _: std::time::Instant) -> Result<(), String> {
        Ok(())
    }
}

fn builtin(rt: &PluginRuntime, name: &str) -> Arc<CompiledPlugin> {
    let bytes = builtin_plugins::ALL
        .iter()
        .find(|(p, _)| p.ends_with(name))
        .map(|(_, b)| *b)
        .expect("built-in");
    Arc::new(rt.compile(bytes, None).expect("compile"))
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..KeyValue::default()
    }
}

fn metrics(now_ns: u64) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: (0..SERVICES)
            .map(|s| ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", &format!("svc-{s}"))],
                    ..Resource::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "latency_ms".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: (0..POINTS)
                                .map(|p| NumberDataPoint {
                                    time_unix_nano: now_ns - (p as u64) * 5_000_000_000,
                                    value: Some(number_data_point::Value::AsDouble(
                                        (s * 20 + p) as f64,
                                    )),
                                    ..NumberDataPoint::default()
                                })
                                .collect(),
                        })),
                        ..Metric::default()
                    }],
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            })
            .collect(),
    }
}

fn rule(i: usize) -> RuleSpec {
    serde_json::from_value(serde_json::json!({
        "name": format!("latency-{i}"),
        "queries": [{"name": "A", "range": "10m", "sql":
            "SELECT service_name, avg(value) AS v FROM metrics_v3 \
             WHERE metric_name = 'latency_ms' AND timestamp >= $__from AND timestamp < $__to \
             GROUP BY service_name"}],
        "condition": {"plugin": "builtin-threshold", "config": {"thresholds": [
            {"op": "above", "value": 900, "severity": "critical"},
            {"op": "above", "value": 500 + i % 300, "severity": "warning"}]}},
        "for": "1h",
    }))
    .expect("rule")
}

fn notification(i: usize) -> Notification {
    let alerts = (0..5)
        .map(|a| Alert {
            status: AlertStatus::Firing,
            labels: vec![
                ("alertname".into(), "HighLatency".into()),
                ("service_name".into(), format!("svc-{a}")),
                ("severity".into(), "critical".into()),
            ],
            annotations: vec![("summary".into(), format!("svc-{a} latency is high"))],
            value: Some(950.0),
            starts_at_ms: 1_800_000_000_000,
            ends_at_ms: None,
            generator_url: "http://localhost:8080/alerts".into(),
            fingerprint: format!("{a:016x}"),
        })
        .collect();
    Notification {
        idempotency_key: format!("n-{i}"),
        group_key: "group:{alertname=\"HighLatency\"}".into(),
        group_labels: vec![("alertname".into(), "HighLatency".into())],
        common_labels: vec![("alertname".into(), "HighLatency".into())],
        common_annotations: Vec::new(),
        status: AlertStatus::Firing,
        alerts,
        external_url: "http://localhost:8080".into(),
        config: r#"{"url":"https://receiver.example.com/hook"}"#.into(),
    }
}

/// The webhook payload built natively (the baseline of the channel figure).
fn native_payload(n: &Notification) -> Vec<u8> {
    let map = |l: &[(String, String)]| -> serde_json::Map<String, serde_json::Value> {
        l.iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(v)))
            .collect()
    };
    serde_json::to_vec(&serde_json::json!({
        "version": "4", "groupKey": n.group_key, "truncatedAlerts": 0, "status": "firing",
        "receiver": "webhook", "groupLabels": map(&n.group_labels),
        "commonLabels": map(&n.common_labels), "commonAnnotations": map(&n.common_annotations),
        "externalURL": n.external_url,
        "alerts": n.alerts.iter().map(|a| serde_json::json!({
            "status": "firing", "labels": map(&a.labels), "annotations": map(&a.annotations),
            "startsAt": "2027-01-15T08:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": a.generator_url, "fingerprint": a.fingerprint,
        })).collect::<Vec<_>>(),
    }))
    .expect("json")
}

/// Evaluates every rule at `at` (+ its index), `concurrency` at once, as the scheduler does.
async fn evaluate_all(
    evaluator: &Arc<alerting::Evaluator>,
    records: &[Arc<storage::AlertRuleRecord>],
    at: i64,
    concurrency: usize,
) -> Vec<alerting::Evaluated> {
    let mut set = tokio::task::JoinSet::new();
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        if set.len() >= concurrency
            && let Some(done) = set.join_next().await
        {
            out.push(done.expect("join"));
        }
        let (e, r) = (Arc::clone(evaluator), Arc::clone(r));
        set.spawn(async move { e.evaluate(&r, at + i as i64, 0).await.expect("evaluate") });
    }
    while let Some(done) = set.join_next().await {
        out.push(done.expect("join"));
    }
    out
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Pins the process (and every thread it starts, e.g. tokio's blocking pool) to one CPU, so
/// the figures are per core whatever the machine has.
#[allow(unsafe_code)]
fn pin_to_one_core() {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("could not pin to one core; figures may use more than one");
        }
    }
}

fn main() {
    pin_to_one_core();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tokio.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = Arc::new(
        storage_sqlite::open(&dir.path().join("meta.db"))
            .await
            .expect("sqlite"),
    );
    meta.bootstrap("bench@example.com", "x")
        .await
        .expect("bootstrap");
    let admin = meta
        .user_by_email("bench@example.com")
        .await
        .expect("query")
        .expect("admin");
    let scope: Scope = admin.scope.clone();
    let (store, _) = storage_embedded::EmbeddedStore::open(
        storage_embedded::EmbeddedConfig::new(dir.path().join("telemetry")),
        None,
    )
    .expect("store");
    let now_ns = u64::try_from(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)).unwrap_or(0);
    let converted =
        otlp::metrics_to_batches(&metrics(now_ns), &scope, &otlp::Limits::default(), now_ns)
            .expect("convert");
    store.write(converted.batches).await.expect("write");
    store.flush().await.expect("flush");
    let telemetry: Arc<dyn TelemetryStore> = store.clone();

    let rt = Arc::new(PluginRuntime::new(RuntimeConfig::default()).expect("runtime"));
    let plugins = Arc::new(Bench {
        threshold: builtin(&rt, "threshold"),
        rt: Arc::clone(&rt),
    });
    let alerts: Arc<dyn AlertStore> = meta.clone();
    let mut records = Vec::with_capacity(RULES);
    for i in 0..RULES {
        records.push(
            alerts
                .create_rule(&scope, alerting::rule_write(&rule(i)), &[], None)
                .await
                .expect("rule"),
        );
    }
    let evaluator = alerting::Evaluator::new(
        Arc::clone(&alerts),
        Arc::clone(&telemetry),
        plugins,
        query::QueryLimits::default(),
    );
    let now_ms = chrono::Utc::now().timestamp_millis();

    // Warm up (compile caches, file handles).
    for r in records.iter().take(20) {
        evaluator.evaluate(r, now_ms, 0).await.expect("evaluate");
    }

    // Baseline: the queries alone.
    let spec = rule(0);
    let sql = alert::spec::render_sql(&spec.queries[0].sql, now_ms - 600_000, now_ms);
    let t = Instant::now();
    for _ in 0..RULES {
        let out = query::run_scoped_sql(
            telemetry.as_ref(),
            &scope,
            &sql,
            &query::QueryLimits::default(),
        )
        .await
        .expect("query");
        assert_eq!(
            out.batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            SERVICES
        );
        std::hint::black_box(out.to_arrow_ipc().expect("ipc"));
    }
    let queries = t.elapsed();
    // Where a query's time goes: the scoped session alone, then SQL → logical plan, then the
    // optimized physical plan (the rest of the baseline is running it).
    let limits = query::QueryLimits::default();
    let t = Instant::now();
    for _ in 0..RULES {
        std::hint::black_box(
            query::scoped_context(telemetry.as_ref(), &scope, &limits).expect("ctx"),
        );
    }
    let sessions = t.elapsed();
    let t = Instant::now();
    for _ in 0..RULES {
        let ctx = query::scoped_context(telemetry.as_ref(), &scope, &limits).expect("ctx");
        std::hint::black_box(ctx.sql(&sql).await.expect("plan"));
    }
    let logical = t.elapsed();
    let t = Instant::now();
    for _ in 0..RULES {
        let ctx = query::scoped_context(telemetry.as_ref(), &scope, &limits).expect("ctx");
        let df = ctx.sql(&sql).await.expect("plan");
        std::hint::black_box(df.create_physical_plan().await.expect("physical"));
    }
    let physical = t.elapsed();
    // The same query planned once (as evaluations keep it), each run only filling its window.
    let prepared = query::Prepared::new(
        telemetry.as_ref(),
        &scope,
        &spec.queries[0].sql,
        &["__from", "__to"],
        &limits,
    )
    .await
    .expect("plan")
    .expect("kept");
    let window = [
        ("__from", query::Param::TimestampMs(now_ms - 600_000)),
        ("__to", query::Param::TimestampMs(now_ms)),
    ];
    let t = Instant::now();
    for _ in 0..RULES {
        let out = prepared.run(&window, &limits).await.expect("run");
        assert_eq!(
            out.batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            SERVICES
        );
        std::hint::black_box(out.to_arrow_ipc().expect("ipc"));
    }
    let prepared_runs = t.elapsed();

    // First pass: every rule's alerting series go normal → pending, so every evaluation writes
    // history (a durable telemetry write) besides its state. Evaluations run as the scheduler
    // runs them: up to `SchedulerConfig::default().concurrency` at once (on this one core).
    let evaluator = Arc::new(evaluator);
    let records: Vec<Arc<storage::AlertRuleRecord>> = records.into_iter().map(Arc::new).collect();
    let concurrency = alerting::SchedulerConfig::default().concurrency;
    let t = Instant::now();
    let done = evaluate_all(&evaluator, &records, now_ms + 60_000, concurrency).await;
    // Each phase ends with the states that wait written (the scheduler writes them every
    // `STATE_SAVE_EVERY`): their cost counts.
    evaluator.save_states().await.expect("save");
    let first = t.elapsed();
    let transitions: usize = done.iter().map(|d| d.transitions.len()).sum();
    assert!(done.iter().all(|d| d.error.is_none()));
    // The scheduler's hook lets go of each evaluation's state when it returns; so does this.
    drop(done);
    // Steady state (what most evaluations are): nothing changes (`for` is 1h), state written.
    let t = Instant::now();
    let done = evaluate_all(&evaluator, &records, now_ms + 120_000, concurrency).await;
    evaluator.save_states().await.expect("save");
    let full = t.elapsed();
    assert!(
        done.iter()
            .all(|d| d.error.is_none() && d.transitions.is_empty())
    );
    let series: usize = done.iter().map(|d| d.state.instances.len()).sum();
    assert_eq!(series, RULES * SERVICES);
    drop(done);
    // The same one at a time (no two evaluations share a state commit).
    let t = Instant::now();
    let done = evaluate_all(&evaluator, &records, now_ms + 180_000, 1).await;
    evaluator.save_states().await.expect("save");
    let sequential = t.elapsed();
    assert!(done.iter().all(|d| d.error.is_none()));

    // Where the rest goes: the plugin call alone on the same input, and the state write alone.
    let ipc = query::run_scoped_sql(
        telemetry.as_ref(),
        &scope,
        &sql,
        &query::QueryLimits::default(),
    )
    .await
    .expect("query")
    .to_arrow_ipc()
    .expect("ipc");
    let threshold = builtin(&rt, "threshold");
    let config = spec
        .condition
        .as_ref()
        .map(|c| c.config.to_string())
        .unwrap_or_default();
    let t = Instant::now();
    for _ in 0..RULES {
        let ctx = plugin_runtime::EvaluationContext {
            rule_id: "r".into(),
            evaluation_time_ms: now_ms,
            interval_ms: 60_000,
            range_start_ms: now_ms - 600_000,
            range_end_ms: now_ms,
            config: config.clone(),
            state: None,
        };
        let input = vec![plugin_runtime::QueryResult {
            name: "A".into(),
            data: ipc.clone(),
        }];
        std::hint::black_box(rt.evaluate(&threshold, &ctx, &input).expect("evaluate"));
    }
    let plugin_only = t.elapsed();
    let state = alerts
        .rule_state(&records[0].alert_rule_id)
        .await
        .expect("read")
        .expect("state");
    let t = Instant::now();
    for r in &records {
        let mut s = state.clone();
        s.alert_rule_id.clone_from(&r.alert_rule_id);
        alerts.put_rule_state(s).await.expect("write");
    }
    let writes = t.elapsed();

    println!("alerting: {RULES} threshold rules × {SERVICES} series, pinned to one core");
    println!(
        "  of which: plugin call {:.2} ms, state read+write {:.2} ms (SQLite commit)",
        plugin_only.as_secs_f64() * 1e3 / RULES as f64,
        writes.as_secs_f64() * 1e3 / RULES as f64
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / RULES as f64;
    println!(
        "  a query: scoped session {:.2} ms, + SQL to logical plan {:.2} ms, + optimized physical plan {:.2} ms, + run {:.2} ms",
        ms(sessions),
        ms(logical - sessions),
        ms(physical - logical),
        ms(queries.saturating_sub(physical)),
    );
    println!(
        "  queries alone (baseline):            {:>8.0} /s  ({:.2} ms each)",
        per_sec(RULES, queries),
        queries.as_secs_f64() * 1e3 / RULES as f64
    );
    println!(
        "  the query planned once, run alone:   {:>8.0} /s  ({:.2} ms each)",
        per_sec(RULES, prepared_runs),
        prepared_runs.as_secs_f64() * 1e3 / RULES as f64
    );
    println!(
        "  evaluations with transitions ({transitions} in all, history written): {:>6.0} /s  ({:.2} ms each)",
        per_sec(RULES, first),
        first.as_secs_f64() * 1e3 / RULES as f64
    );
    println!(
        "  steady evaluations (query+plugin+state), {concurrency} at once: {:>6.0} /s  ({:.2} ms each)  ratio to baseline {:.2}×  target ≥ 1,000/s",
        per_sec(RULES, full),
        full.as_secs_f64() * 1e3 / RULES as f64,
        full.as_secs_f64() / queries.as_secs_f64()
    );
    println!(
        "  steady evaluations, one at a time:       {:>6.0} /s  ({:.2} ms each)",
        per_sec(RULES, sequential),
        sequential.as_secs_f64() * 1e3 / RULES as f64,
    );

    // Notifications through the webhook channel.
    let webhook = builtin(&rt, "webhook");
    let caps: Arc<dyn Capabilities> = Arc::new(Accept);
    let batch: Vec<Notification> = (0..NOTIFICATIONS).map(notification).collect();
    for n in batch.iter().take(50) {
        let ok = rt.send(&webhook, n, Arc::clone(&caps)).expect("call");
        assert!(ok.is_ok(), "{ok:?}");
    }
    let t = Instant::now();
    for n in &batch {
        let ok = rt.send(&webhook, n, Arc::clone(&caps)).expect("call");
        assert!(ok.is_ok());
    }
    let wasm = t.elapsed();
    let t = Instant::now();
    for n in &batch {
        std::hint::black_box(native_payload(n));
    }
    let native = t.elapsed();
    println!(
        "notifications: {NOTIFICATIONS} through builtin-webhook (5 alerts each), receiver answering at once"
    );
    println!(
        "  native payload (baseline):           {:>8.0} /s",
        per_sec(NOTIFICATIONS, native)
    );
    println!(
        "  webhook channel plugin:              {:>8.0} /s  ({:.1} µs each)  ratio to baseline {:.1}×  target ≥ 1,000/s",
        per_sec(NOTIFICATIONS, wasm),
        wasm.as_secs_f64() * 1e6 / NOTIFICATIONS as f64,
        wasm.as_secs_f64() / native.as_secs_f64()
    );
}

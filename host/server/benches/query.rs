//! `cargo bench -p server --bench query`: what a dashboard panel costs.
//!
//! 10,000,000 metric points (a gauge, 20 services, one hour) are written to the embedded store
//! and flushed to Parquet. The panel is avg and p99 by service in 1-minute buckets over that
//! hour: two builder queries through `POST /api/v1/query`'s engine (`query::builder::run`:
//! compile, the tenant's scoped views, DataFusion, series). The baseline, measured in the same
//! run, is plain DataFusion running the same two statements over the same Parquet files,
//! without scoping. Cold = the first run in the process (no footer or statistics cache, no
//! warmed session); hot = the median and p95 of 20 runs after it.
//!
//! With `CLICKHOUSE_URL` set, the same points go to that ClickHouse and the same panel runs
//! through the engine (DataFusion over the ClickHouse provider: filters pushed down, rows
//! streamed back) against ClickHouse aggregating the same rows itself (its HTTP interface).
//!
//! The store keeps its most recently flushed files' rows in memory (`hot_bytes`, 128 MiB by
//! default); the bench prints how much of the panel's data that is. `HOT_BYTES=0` reads every
//! file from Parquet, as the baseline does.
//!
//! The engine runs the panel's two queries as one statement (they read the same rows into the
//! same groups), so each baseline is also measured with both aggregates in one statement.
//!
//! Then the panel goes live: the last hour, refreshed every 10 s while points keep arriving,
//! through the bucket cache `POST /api/v1/query` uses (`query::builder::run_cached`: buckets
//! of earlier answers that no write touched since are reused), against the same refreshes
//! without it.
//!
//! Targets (`performance.md`): hot ≤ 1.25× plain DataFusion; p95 ≤ 100 ms for a one-hour panel
//! over ≤ 10M rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use model::{Scope, Table};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use query::builder::{Aggregation, BuilderQuery, Order, Request, Signal};
use storage::{StoreError, TelemetryStore};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SERVICES: usize = 20;
/// Points per write: 20 services × 5,000.
const PER_SERVICE: usize = 5_000;
const ROWS: usize = 10_000_000;
const HOT_RUNS: usize = 20;
const HOUR_NS: i64 = 3_600_000_000_000;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..KeyValue::default()
    }
}

/// Write `chunk`: every service's points `chunk * PER_SERVICE ..` of the hour's, in time order.
fn chunk(start_ns: i64, chunk: usize) -> ExportMetricsServiceRequest {
    points(start_ns, chunk * PER_SERVICE, PER_SERVICE)
}

/// The time between two points of a service: its `ROWS / SERVICES` points fill the hour.
const PER_NS: i64 = HOUR_NS / (ROWS / SERVICES) as i64;

/// Every service's points `first .. first + n` (point `i` at `start_ns + i * PER_NS`).
fn points(start_ns: i64, first: usize, n: usize) -> ExportMetricsServiceRequest {
    let per_ns = PER_NS;
    ExportMetricsServiceRequest {
        resource_metrics: (0..SERVICES)
            .map(|s| ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", &format!("svc-{s:02}"))],
                    ..Resource::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "request.latency".into(),
                        unit: "ms".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: (0..n)
                                .map(|p| {
                                    let i = first + p;
                                    NumberDataPoint {
                                        attributes: vec![kv("route", ["/a", "/b", "/c"][i % 3])],
                                        time_unix_nano: (start_ns + i as i64 * per_ns) as u64,
                                        value: Some(number_data_point::Value::AsDouble(
                                            ((i * 7919 + s * 104_729) % 1000) as f64 / 10.0,
                                        )),
                                        ..NumberDataPoint::default()
                                    }
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

async fn write(store: &dyn TelemetryStore, scope: &Scope, req: &ExportMetricsServiceRequest) {
    let now = u64::try_from(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)).unwrap_or(0);
    let converted =
        otlp::metrics_to_batches(req, scope, &otlp::Limits::default(), now).expect("convert");
    loop {
        match store.write(converted.batches.clone()).await {
            Ok(()) => break,
            Err(StoreError::Overloaded { .. } | StoreError::Busy { .. }) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("write: {e}"),
        }
    }
}

async fn load(store: &dyn TelemetryStore, scope: &Scope, start_ns: i64) -> Duration {
    let t = Instant::now();
    for c in 0..ROWS / (SERVICES * PER_SERVICE) {
        write(store, scope, &chunk(start_ns, c)).await;
    }
    store.flush().await.expect("flush");
    t.elapsed()
}

fn panel(start_ns: i64) -> Request {
    window(start_ns, start_ns + HOUR_NS)
}

fn window(from_ns: i64, to_ns: i64) -> Request {
    let q = |name: &str, aggregation| BuilderQuery {
        name: name.into(),
        signal: Signal::Metrics,
        metric: Some("request.latency".into()),
        aggregation,
        field: None,
        quantile: None,
        filters: vec![],
        group_by: vec!["service.name".into()],
        order: Order::Labels,
        limit: None,
        hidden: false,
    };
    Request {
        from_ns,
        to_ns,
        step_ms: Some(60_000),
        max_points: 500,
        instant: false,
        queries: vec![q("avg", Aggregation::Avg), q("p99", Aggregation::P99)],
        formulas: vec![],
    }
}

/// The same two statements, plain: no scoping, the Parquet files as one table. `agg` is one
/// aggregate, or both in one statement (the way the engine runs them).
fn plain_sql(start_ns: i64, agg: &str) -> String {
    let ts = |ns: i64| {
        let t = chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(ns);
        format!(
            "TIMESTAMP '{}'",
            t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        )
    };
    format!(
        "SELECT date_bin(INTERVAL '60000 milliseconds', timestamp, TIMESTAMP '1970-01-01T00:00:00Z') AS time, \
         service_name, {agg} FROM m \
         WHERE metric_name = 'request.latency' AND timestamp >= {} AND timestamp < {} \
         GROUP BY 1, 2 ORDER BY 2, 1",
        ts(start_ns),
        ts(start_ns + HOUR_NS)
    )
}

const AGGS: [&str; 2] = [
    "CAST(avg(value) AS DOUBLE) AS value",
    "CAST(percentile_cont(0.99) WITHIN GROUP (ORDER BY value) AS DOUBLE) AS value",
];

/// Both aggregates in one statement.
const BOTH: &str = "CAST(avg(value) AS DOUBLE) AS value, \
     CAST(percentile_cont(0.99) WITHIN GROUP (ORDER BY value) AS DOUBLE) AS value_1";

struct Timings {
    cold: Duration,
    hot: Vec<Duration>,
}

impl Timings {
    fn median(&self) -> Duration {
        self.hot[self.hot.len() / 2]
    }
    fn p95(&self) -> Duration {
        self.hot[(self.hot.len() * 95).div_ceil(100) - 1]
    }
}

async fn time<F, Fut>(mut f: F) -> Timings
where
    F: FnMut() -> Fut,
    Fut: Future<Output = usize>,
{
    let t = Instant::now();
    let rows = f().await;
    assert_eq!(
        rows,
        SERVICES * 60 * 2,
        "every service, bucket and aggregation"
    );
    let cold = t.elapsed();
    let mut hot = Vec::with_capacity(HOT_RUNS);
    for _ in 0..HOT_RUNS {
        let t = Instant::now();
        std::hint::black_box(f().await);
        hot.push(t.elapsed());
    }
    hot.sort();
    Timings { cold, hot }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(what: &str, ours: &Timings, base: &Timings) {
    println!(
        "{what}: engine cold {:.1} ms, hot median {:.1} ms, p95 {:.1} ms | baseline cold {:.1} ms, hot median {:.1} ms, p95 {:.1} ms | hot ratio {:.2}x",
        ms(ours.cold),
        ms(ours.median()),
        ms(ours.p95()),
        ms(base.cold),
        ms(base.median()),
        ms(base.p95()),
        ms(ours.median()) / ms(base.median())
    );
}

fn report_one_statement(base: &Timings, ours: &Timings) {
    println!(
        "  baseline with both aggregates in one statement: cold {:.1} ms, hot median {:.1} ms, p95 {:.1} ms | hot ratio {:.2}x",
        ms(base.cold),
        ms(base.median()),
        ms(base.p95()),
        ms(ours.median()) / ms(base.median())
    );
}

/// Plain DataFusion over the Parquet files under `files`: each statement of `aggs`, counting
/// the rows of every value column.
async fn plain(files: &std::path::Path, start_ns: i64, aggs: &[&str]) -> usize {
    let ctx = SessionContext::new();
    ctx.register_parquet(
        "m",
        files.to_str().expect("utf-8 path"),
        ParquetReadOptions::default(),
    )
    .await
    .expect("register");
    let mut rows = 0;
    for agg in aggs {
        let batches = ctx
            .sql(&plain_sql(start_ns, agg))
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let values = batches.first().map_or(1, |b| b.num_columns() - 2);
        rows += values * batches.iter().map(|b| b.num_rows()).sum::<usize>();
    }
    rows
}

fn series_points(r: &query::builder::Response) -> usize {
    r.results
        .iter()
        .flat_map(|o| &o.series)
        .map(|s| s.points.iter().filter(|p| p.1.is_some()).count())
        .sum()
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tokio.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scope = Scope {
        organization_id: "org".into(),
        workspace_id: "ws".into(),
        tenant_id: "t".into(),
    };
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let start_ns = (now_ns / HOUR_NS - 2) * HOUR_NS;
    let mut config = storage_embedded::EmbeddedConfig::new(dir.path().join("telemetry"));
    if let Some(b) = std::env::var("HOT_BYTES").ok().and_then(|v| v.parse().ok()) {
        config.hot_bytes = b;
    }
    let (store, _) = storage_embedded::EmbeddedStore::open(config, None).expect("store");
    let loaded = load(store.as_ref(), &scope, start_ns).await;
    println!(
        "embedded: kept in memory (files, bytes): {:?}",
        store.hot_files()
    );
    println!(
        "embedded: {ROWS} points written and flushed in {:.1} s ({:.0} points/s)",
        loaded.as_secs_f64(),
        ROWS as f64 / loaded.as_secs_f64()
    );
    let limits = query::QueryLimits {
        max_rows: 100_000,
        memory_bytes: 2 << 30,
    };
    let request = panel(start_ns);
    let ours = time(|| {
        let (store, scope, request) = (Arc::clone(&store), scope.clone(), request.clone());
        async move {
            let r = query::builder::run(store.as_ref(), &scope, &request, &limits)
                .await
                .expect("panel");
            series_points(&r)
        }
    })
    .await;
    let files = dir.path().join("telemetry").join(Table::Metrics.name());
    let base = time(|| {
        let files = files.clone();
        async move { plain(&files, start_ns, &AGGS).await }
    })
    .await;
    let base_one = time(|| {
        let files = files.clone();
        async move { plain(&files, start_ns, &[BOTH]).await }
    })
    .await;
    report(
        "embedded, avg + p99 by service, 1m buckets, 1h, 10M points",
        &ours,
        &base,
    );
    report_one_statement(&base_one, &ours);
    live(&store, &scope, start_ns, &limits).await;

    if let Ok(url) = std::env::var("CLICKHOUSE_URL") {
        clickhouse(&url, &scope, start_ns, &request, &limits).await;
    } else {
        println!("clickhouse: skipped (set CLICKHOUSE_URL to measure it)");
    }
}

/// How often the live panel refreshes, and how much newer its points are each time.
const REFRESH_NS: i64 = 10_000_000_000;

/// Whether two answers are the same up to the last bits of a float sum (the cached buckets'
/// rows were summed in another order).
fn same_answer(a: &query::builder::Response, b: &query::builder::Response) -> bool {
    let close = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        (x, y) => x == y,
    };
    a.results.len() == b.results.len()
        && a.results.iter().zip(&b.results).all(|(x, y)| {
            x.series.len() == y.series.len()
                && x.series.iter().zip(&y.series).all(|(s, t)| {
                    s.labels == t.labels
                        && s.points.len() == t.points.len()
                        && s.points
                            .iter()
                            .zip(&t.points)
                            .all(|(p, q)| p.0 == q.0 && close(p.1, q.1))
                })
        })
}

/// A live panel: the last hour, refreshed every 10 s while points keep arriving in time order
/// (27,780 a refresh, the load's rate), so its range starts and ends inside buckets. Each
/// refresh runs through the bucket cache (`query::builder::run_cached`, what
/// `POST /api/v1/query` runs) and then without it (the baseline, the same request on the same
/// rows), and the two answers must agree.
async fn live(
    store: &Arc<storage_embedded::EmbeddedStore>,
    scope: &Scope,
    start_ns: i64,
    limits: &query::QueryLimits,
) {
    let cache = query::BucketCache::new(64 << 20);
    let per_refresh = usize::try_from(REFRESH_NS / PER_NS).unwrap_or(0);
    let mut to = start_ns + HOUR_NS;
    let t = Instant::now();
    query::builder::run_cached(
        store.as_ref(),
        scope,
        &window(to - HOUR_NS, to),
        limits,
        &cache,
    )
    .await
    .expect("panel");
    let first = t.elapsed();
    let (mut cached, mut full) = (Vec::new(), Vec::new());
    for k in 0..HOT_RUNS {
        write(
            store.as_ref(),
            scope,
            &points(start_ns, ROWS / SERVICES + k * per_refresh, per_refresh),
        )
        .await;
        to += REFRESH_NS;
        let request = window(to - HOUR_NS, to);
        let t = Instant::now();
        let ours = query::builder::run_cached(store.as_ref(), scope, &request, limits, &cache)
            .await
            .expect("panel");
        cached.push(t.elapsed());
        let t = Instant::now();
        let all = query::builder::run(store.as_ref(), scope, &request, limits)
            .await
            .expect("panel");
        full.push(t.elapsed());
        assert!(
            same_answer(&ours, &all),
            "refresh {k}: the cached answer differs from the full one"
        );
    }
    cached.sort();
    full.sort();
    let ours = Timings {
        cold: first,
        hot: cached,
    };
    let base = Timings {
        cold: first,
        hot: full,
    };
    println!(
        "embedded, the same panel live (last hour, refreshed every 10 s, 27,780 new points each): \
         with the bucket cache median {:.1} ms, p95 {:.1} ms (first view {:.1} ms) | \
         without it median {:.1} ms, p95 {:.1} ms | ratio {:.2}x | cache {:?}",
        ms(ours.median()),
        ms(ours.p95()),
        ms(first),
        ms(base.median()),
        ms(base.p95()),
        ms(ours.median()) / ms(base.median()),
        cache.stats()
    );
}

async fn clickhouse(
    url: &str,
    scope: &Scope,
    start_ns: i64,
    request: &Request,
    limits: &query::QueryLimits,
) {
    let database = format!("tf_bench_{}", std::process::id());
    let mut config = storage_clickhouse::ClickHouseConfig::new(url);
    config.database = database.clone();
    let store = storage_clickhouse::ClickHouseStore::connect(config)
        .await
        .expect("clickhouse");
    let loaded = load(store.as_ref(), scope, start_ns).await;
    println!(
        "clickhouse: {ROWS} points written in {:.1} s ({:.0} points/s)",
        loaded.as_secs_f64(),
        ROWS as f64 / loaded.as_secs_f64()
    );
    let ours = time(|| {
        let (store, scope, request) = (Arc::clone(&store), scope.clone(), request.clone());
        async move {
            let r = query::builder::run(store.as_ref(), &scope, &request, limits)
                .await
                .expect("panel");
            series_points(&r)
        }
    })
    .await;
    let client = reqwest::Client::new();
    let aggs: [(&str, usize); 2] = [("avg(value)", 1), ("quantileExact(0.99)(value)", 1)];
    let base = time(|| clickhouse_plain(&client, url, &database, start_ns, &aggs)).await;
    let both = [("avg(value), quantileExact(0.99)(value)", 2)];
    let base_one = time(|| clickhouse_plain(&client, url, &database, start_ns, &both)).await;
    report(
        "clickhouse, the same panel (baseline: ClickHouse aggregating itself)",
        &ours,
        &base,
    );
    report_one_statement(&base_one, &ours);
}

/// ClickHouse aggregating by itself: each statement of `aggs` (its aggregates, how many),
/// counting the values it returns.
async fn clickhouse_plain(
    client: &reqwest::Client,
    url: &str,
    database: &str,
    start_ns: i64,
    aggs: &[(&str, usize)],
) -> usize {
    let mut rows = 0;
    for (agg, values) in aggs {
        let sql = format!(
            "SELECT toStartOfMinute(timestamp) AS t, service_name, {agg} FROM {database}.metrics_v3 \
             WHERE workspace_id = 'ws' AND tenant_id = 't' AND metric_name = 'request.latency' \
             AND timestamp >= fromUnixTimestamp64Nano({start_ns}) \
             AND timestamp < fromUnixTimestamp64Nano({}) GROUP BY t, service_name \
             ORDER BY service_name, t FORMAT TSV",
            start_ns + HOUR_NS
        );
        let text = client
            .post(url)
            .body(sql)
            .send()
            .await
            .expect("clickhouse")
            .text()
            .await
            .expect("body");
        rows += values * text.lines().count();
    }
    rows
}

//! The embedded store through its ports: durable writes, reads through DataFusion, flush to
//! Parquet, reopen, and retention dropping whole files.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datafusion::prelude::SessionContext;
use model::{Scope, Table};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use query::TelemetryTables;
use storage::TelemetryStore;
use storage_embedded::{EmbeddedConfig, EmbeddedStore};

const DAY: u64 = 86_400_000_000_000;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn scope() -> Scope {
    Scope {
        organization_id: "o".into(),
        workspace_id: "w".into(),
        tenant_id: "t".into(),
    }
}

fn logs(n: usize, at: u64) -> Vec<(Table, arrow::array::RecordBatch)> {
    let records = (0..n)
        .map(|i| LogRecord {
            time_unix_nano: at + i as u64,
            body: Some(AnyValue {
                value: Some(Value::StringValue(format!("line {i}"))),
            }),
            ..Default::default()
        })
        .collect();
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    otlp::logs_to_batches(&req, &scope(), &otlp::Limits::default(), now())
        .expect("convert")
        .batches
}

async fn count(store: &EmbeddedStore, filter: &str) -> i64 {
    let ctx = SessionContext::new();
    ctx.register_table("logs_v3", store.table_provider(Table::Logs))
        .expect("register");
    let batches = ctx
        .sql(&format!("SELECT COUNT(*) FROM logs_v3 {filter}"))
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    let col = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .expect("count");
    col.value(0)
}

/// A store whose flushed rows are read back from its Parquet files (none kept in memory).
fn config(dir: &std::path::Path) -> EmbeddedConfig {
    let mut c = EmbeddedConfig::new(dir);
    c.flush_interval = Duration::from_secs(3600);
    c.hot_bytes = 0;
    c
}

/// What `count` gives for a few filters over `logs(10, t + i)` writes.
async fn answers(store: &EmbeddedStore, t: u64) -> Vec<i64> {
    let mut out = Vec::new();
    for filter in [
        String::new(),
        "WHERE body = 'line 3'".to_string(),
        format!("WHERE timestamp >= to_timestamp_nanos({})", t + 2),
        format!(
            "WHERE timestamp < to_timestamp_nanos({}) AND body LIKE 'line 1%'",
            t + 5
        ),
    ] {
        out.push(count(store, &filter).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recently_flushed_rows_are_read_from_memory_with_the_files_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = EmbeddedConfig::new(dir.path());
    cfg.flush_interval = Duration::from_secs(3600);
    cfg.compact_min_files = 4;
    let (store, _) = EmbeddedStore::open(cfg.clone(), None).expect("open");
    let t = now();
    for i in 0..3 {
        store.write(logs(10, t + i)).await.expect("write");
        store.flush().await.expect("flush");
    }
    assert_eq!(store.live_files(Table::Logs), 3);
    assert_eq!(store.hot_files().0, 3, "each flushed file's rows are kept");
    let hot = answers(&store, t).await;
    assert_eq!(hot, vec![30, 3, 27, 3]);

    // A compaction merges the files; their rows were all kept, so the merged file's are too.
    store.write(logs(10, t + 3)).await.expect("write");
    store.flush().await.expect("flush");
    let _ = store.compact_now().expect("compact");
    assert_eq!(store.live_files(Table::Logs), 1);
    assert_eq!(store.hot_files().0, 1);
    let merged = answers(&store, t).await;
    assert_eq!(merged, vec![40, 4, 37, 4]);
    store.close().await.expect("close");
    drop(store);

    // Reopened, nothing is kept: the same answers come from the Parquet file.
    let (store, _) = EmbeddedStore::open(cfg, None).expect("reopen");
    assert_eq!(store.hot_files(), (0, 0));
    assert_eq!(answers(&store, t).await, merged);
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_its_memory_budget_the_oldest_flushed_files_are_read_from_parquet() {
    let t = now();
    // Room for one flushed file of ten log lines and a half.
    let one = kept_bytes_of_one_file(t).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.hot_bytes = one + one / 2;
    let (store, _) = EmbeddedStore::open(cfg, None).expect("open");
    for i in 0..3 {
        store.write(logs(10, t + i)).await.expect("write");
        store.flush().await.expect("flush");
    }
    assert_eq!(store.live_files(Table::Logs), 3);
    let (files, bytes) = store.hot_files();
    assert_eq!(files, 1, "only the newest file fits");
    assert!(bytes <= one + one / 2);
    // One scan reads the kept rows from memory and the other two files from Parquet.
    assert_eq!(answers(&store, t).await, vec![30, 3, 27, 3]);
    store.close().await.expect("close");
}

/// The memory a flushed file of `logs(10, t)` takes when kept.
async fn kept_bytes_of_one_file(t: u64) -> usize {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.hot_bytes = usize::MAX;
    let (store, _) = EmbeddedStore::open(cfg, None).expect("open");
    store.write(logs(10, t)).await.expect("write");
    store.flush().await.expect("flush");
    let (files, bytes) = store.hot_files();
    assert_eq!(files, 1);
    store.close().await.expect("close");
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_read_back_survive_reopen_and_expire_by_whole_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = EmbeddedStore::open(config(dir.path()), None).expect("open");
    let t = now();
    store.write(logs(5, t - 40 * DAY)).await.expect("old write");
    store.write(logs(7, t)).await.expect("new write");
    assert_eq!(count(&store, "").await, 12, "readable from the memtable");

    store.flush().await.expect("flush");
    let stats = store.stats();
    let logs_stats = stats
        .tables
        .iter()
        .find(|s| s.table == Table::Logs)
        .expect("logs");
    assert_eq!(logs_stats.rows, 12);
    assert_eq!(stats.wal_bytes, 0, "flushed segments are deleted");
    let parquet: Vec<_> = walk(&dir.path().join("logs_v3"));
    assert_eq!(parquet.len(), 2, "one file per day: {parquet:?}");
    assert_eq!(count(&store, "").await, 12, "readable from Parquet");
    let recent = format!(
        "WHERE timestamp >= to_timestamp_nanos({})",
        t - 3_600_000_000_000
    );
    assert_eq!(count(&store, &recent).await, 7);
    store.close().await.expect("close");
    drop(store);

    let (store, recovery) = EmbeddedStore::open(config(dir.path()), None).expect("reopen");
    assert_eq!(recovery.replayed_entries, 0);
    assert_eq!(count(&store, "").await, 12);
    // Logs keep 30 days: the 40-day-old file goes, whole; the recent one stays.
    let dropped = store.apply_retention(SystemTime::now()).expect("retention");
    assert_eq!(dropped, 1);
    assert_eq!(count(&store, "").await, 7);
    assert_eq!(walk(&dir.path().join("logs_v3")).len(), 1);
    store.close().await.expect("close");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_of_a_day_are_merged_into_one_without_changing_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.compact_min_files = 6;
    let (store, _) = EmbeddedStore::open(cfg.clone(), None).expect("open");
    let t = now();
    for i in 0..6 {
        store.write(logs(10, t + i)).await.expect("write");
        store.flush().await.expect("flush");
    }
    // The flusher may already have compacted in the background; either way a step now must
    // leave one live file for the day.
    let _ = store.compact_now().expect("compact");
    assert_eq!(store.live_files(Table::Logs), 1);
    assert_eq!(count(&store, "").await, 60);
    store.close().await.expect("close");
    // Replaced files are gone once the store is closed.
    assert_eq!(walk(&dir.path().join("logs_v3")).len(), 1);
    drop(store);
    let (store, recovery) = EmbeddedStore::open(cfg, None).expect("reopen");
    assert_eq!(recovery.removed_orphan_files, 0);
    assert_eq!(count(&store, "").await, 60);
    store.close().await.expect("close");
}

/// One gauge point per service for `service` names, at `at`, of value `v`.
fn points(at: u64, values: &[(&str, f64)]) -> Vec<(Table, arrow::array::RecordBatch)> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let req = ExportMetricsServiceRequest {
        resource_metrics: values
            .iter()
            .map(|(service, v)| ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(Value::StringValue((*service).into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "load".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                time_unix_nano: at,
                                value: Some(number_data_point::Value::AsDouble(*v)),
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    };
    otlp::metrics_to_batches(&req, &scope(), &otlp::Limits::default(), now())
        .expect("convert")
        .batches
}

/// `sql` over the store's metrics and rollups, as text.
async fn table_text(store: &EmbeddedStore, sql: &str) -> String {
    let ctx = SessionContext::new();
    ctx.register_table("metrics_v3", store.table_provider(Table::Metrics))
        .expect("register");
    for r in model::Rollup::ALL {
        ctx.register_table(r.name(), store.rollup_provider(r).expect("rollup"))
            .expect("register");
    }
    let batches = ctx
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    arrow::util::pretty::pretty_format_batches(&batches)
        .expect("format")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_are_written_at_flush_compacted_kept_and_equal_the_raw_points() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.compact_min_files = 4;
    let (store, _) = EmbeddedStore::open(cfg.clone(), None).expect("open");
    let hour = 3_600_000_000_000;
    let h = now() / hour * hour - 2 * hour;
    for i in 0..4u64 {
        store
            .write(points(h + i, &[("a", i as f64), ("b", 10.0 * i as f64)]))
            .await
            .expect("write");
        store
            .write(points(h + hour + i, &[("a", 100.0 + i as f64)]))
            .await
            .expect("write");
        store.flush().await.expect("flush");
    }
    // One more point, not flushed: the rollups count it too.
    store
        .write(points(h + 5, &[("a", 50.0)]))
        .await
        .expect("write");
    assert!(
        !walk(&dir.path().join("metrics_v3_hourly")).is_empty()
            && !walk(&dir.path().join("metrics_v3_daily")).is_empty(),
        "partial rollups are written at flush"
    );
    for _ in 0..3 {
        let _ = store.compact_now().expect("compact");
    }
    let rollup = "SELECT hour, service_name, sum_value, min_value, max_value, count, avg_value \
                  FROM metrics_v3_hourly ORDER BY hour, service_name";
    let raw = "SELECT date_trunc('hour', timestamp) AS hour, service_name, sum(value) AS sum_value, \
               min(value) AS min_value, max(value) AS max_value, \
               arrow_cast(count(value), 'UInt64') AS count, avg(value) AS avg_value \
               FROM metrics_v3 GROUP BY 1, 2 ORDER BY hour, service_name";
    let got = table_text(&store, rollup).await;
    assert_eq!(got, table_text(&store, raw).await);
    assert!(
        got.contains("| a            | 56.0      | 0.0       | 50.0      | 5     |"),
        "{got}"
    );
    let daily = "SELECT date, service_name, sum_value, count FROM metrics_v3_daily ORDER BY 1, 2";
    let raw_daily = "SELECT arrow_cast(timestamp, 'Date32') AS date, service_name, \
                     sum(value) AS sum_value, arrow_cast(count(value), 'UInt64') AS count \
                     FROM metrics_v3 GROUP BY 1, 2 ORDER BY 1, 2";
    assert_eq!(
        table_text(&store, daily).await,
        table_text(&store, raw_daily).await
    );
    store.close().await.expect("close");
    drop(store);
    for r in ["metrics_v3_hourly", "metrics_v3_daily"] {
        // The four flushes' partials merged into one, plus the one closing flushed.
        assert_eq!(walk(&dir.path().join(r)).len(), 2, "{r}");
    }

    // Reopened: the partial files are the manifest's, not orphans; the answer is the same.
    let (store, recovery) = EmbeddedStore::open(cfg, None).expect("reopen");
    assert_eq!(recovery.removed_orphan_files, 0);
    assert_eq!(table_text(&store, rollup).await, got);
    // Rollups outlive the raw points: retention a year on keeps the hourly rollup.
    let later = SystemTime::now() + Duration::from_secs(120 * 86_400);
    store.apply_retention(later).expect("retention");
    let kept = table_text(
        &store,
        "SELECT count(*) AS n FROM metrics_v3_hourly WHERE service_name = 'b'",
    )
    .await;
    assert!(kept.contains("| 1 |"), "{kept}");
    assert!(
        table_text(&store, "SELECT count(*) AS n FROM metrics_v3")
            .await
            .contains("| 0 |"),
        "raw points expire after 90 days"
    );
    store.close().await.expect("close");
}

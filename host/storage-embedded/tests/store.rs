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

fn config(dir: &std::path::Path) -> EmbeddedConfig {
    let mut c = EmbeddedConfig::new(dir);
    c.flush_interval = Duration::from_secs(3600);
    c
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

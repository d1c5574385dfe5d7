//! Stores under test.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use storage::TelemetryStore;
use storage_clickhouse::{ClickHouseConfig, ClickHouseStore};
use storage_embedded::{EmbeddedConfig, EmbeddedStore};

/// One store under test, and what keeps it alive.
pub struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn TelemetryStore>,
    pub clickhouse: Option<Arc<ClickHouseStore>>,
    _dir: Option<tempfile::TempDir>,
}

/// The ClickHouse to test against: `CLICKHOUSE_URL`, or `None` after saying loudly why not.
///
/// # Panics
/// When `TELEMETRYFLOW_REQUIRE_CLICKHOUSE=1` (CI) and no ClickHouse is configured.
pub fn clickhouse_url() -> Option<String> {
    match std::env::var("CLICKHOUSE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("TELEMETRYFLOW_REQUIRE_CLICKHOUSE").as_deref() != Ok("1"),
                "TELEMETRYFLOW_REQUIRE_CLICKHOUSE=1 but CLICKHOUSE_URL is not set: the ClickHouse \
                 half of this suite must run here"
            );
            eprintln!(
                "\n*** SKIPPING the ClickHouse half of this test: CLICKHOUSE_URL is not set. ***\n\
                 *** Start one (tests/clickhouse/front.py, or a real server) and set        ***\n\
                 *** CLICKHOUSE_URL=http://host:8123 to run it.                             ***\n"
            );
            None
        }
    }
}

static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A fresh database name, unique per process and test.
pub fn fresh_database(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    )
}

pub async fn embedded() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = EmbeddedStore::open(
        EmbeddedConfig::new(dir.path().join("telemetry")),
        Some(api::reconvert(otlp::Limits::default())),
    )
    .expect("embedded store opens");
    Backend {
        name: "embedded",
        store,
        clickhouse: None,
        _dir: Some(dir),
    }
}

pub async fn clickhouse_with(tune: impl FnOnce(&mut ClickHouseConfig)) -> Option<Backend> {
    let url = clickhouse_url()?;
    let mut config = ClickHouseConfig::new(url);
    config.database = fresh_database("tf_conformance");
    tune(&mut config);
    let store = ClickHouseStore::connect(config)
        .await
        .expect("ClickHouse store connects and migrates");
    Some(Backend {
        name: "clickhouse",
        store: Arc::clone(&store) as Arc<dyn TelemetryStore>,
        clickhouse: Some(store),
        _dir: None,
    })
}

/// Every store this run can test.
pub async fn backends() -> Vec<Backend> {
    let mut out = vec![embedded().await];
    out.extend(clickhouse_with(|_| {}).await);
    out
}

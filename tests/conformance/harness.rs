//! Stores under test.

use std::sync::Arc;

use storage::TelemetryStore;
use storage_clickhouse::{ClickHouseConfig, ClickHouseStore};
use storage_embedded::{EmbeddedConfig, EmbeddedStore};

use crate::clickhouse_env::{clickhouse_url, fresh_database};

/// One store under test, and what keeps it alive.
pub struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn TelemetryStore>,
    pub clickhouse: Option<Arc<ClickHouseStore>>,
    _dir: Option<tempfile::TempDir>,
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

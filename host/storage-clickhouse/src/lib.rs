//! The ClickHouse telemetry store: the same port as the embedded store, over ClickHouse's HTTP
//! interface only, so it runs unchanged against one server or a cluster.
//!
//! - **Schema**: numbered templates in `migrations/clickhouse/`, applied at connect
//!   ([`migrate`]); `ON CLUSTER` with replicated and `Distributed` tables in cluster mode.
//! - **Writes**: one `INSERT … FORMAT ArrowStream` per table of a request, all sent at once,
//!   acknowledged only when ClickHouse has answered for every table. Each carries an
//!   `insert_deduplication_token` derived from the request's content, so a retried request (ours
//!   after a timeout, or the client's after an error) is not stored twice. Transient failures are
//!   retried with backoff within a budget; then the write fails as unavailable (503 +
//!   Retry-After). A bounded number of inserts run at once; a write that cannot get a slot
//!   quickly (ClickHouse is slow) fails as busy (429 + Retry-After). Nothing is acknowledged that
//!   ClickHouse did not confirm.
//! - **Reads**: DataFusion table providers that push projections and filters down as SQL with
//!   typed parameters and stream the answer back as Arrow ([`provider`]).

mod arrow_conv;
pub mod client;
pub mod migrate;
mod provider;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use datafusion::catalog::TableProvider;
use datafusion::error::DataFusionError;
use model::{Rollup, Table};
use query::TelemetryTables;
use storage::{RawExport, StoreError, StoreStats, TableStats, TelemetryStore, rows_dedup_token};
use tokio::sync::Semaphore;

pub use client::{ChError, Client, ClientConfig};
pub use migrate::{Layout, MigrateError};

/// Settings of the ClickHouse store.
#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    /// `http://host:8123`.
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Database holding the tables; created if missing. Default `telemetryflow`.
    pub database: String,
    /// Cluster name for `ON CLUSTER` DDL with replicated + distributed tables.
    pub cluster: Option<String>,
    /// Days to keep per table name (the TTL written by the migrations).
    pub retention_days: BTreeMap<String, u32>,
    /// Timeout of one insert attempt.
    pub insert_timeout: Duration,
    /// Time within which failed inserts are retried before the write fails (503).
    pub retry_budget: Duration,
    /// Inserts in flight at once.
    pub max_concurrent_inserts: usize,
    /// How long a write waits for an insert slot before it fails as busy (429).
    pub slot_wait: Duration,
    /// Use ClickHouse's asynchronous inserts (server-side batching of small inserts;
    /// acknowledged only after the flush, `wait_for_async_insert = 1`). Deduplication of retried
    /// async inserts needs replicated tables.
    pub async_insert: bool,
    /// Timeout of one query.
    pub query_timeout: Duration,
}

impl ClickHouseConfig {
    pub fn new(url: impl Into<String>) -> ClickHouseConfig {
        ClickHouseConfig {
            url: url.into(),
            user: None,
            password: None,
            database: "telemetryflow".into(),
            cluster: None,
            retention_days: BTreeMap::new(),
            insert_timeout: Duration::from_secs(5),
            retry_budget: Duration::from_secs(8),
            max_concurrent_inserts: 32,
            slot_wait: Duration::from_millis(500),
            async_insert: false,
            query_timeout: Duration::from_secs(60),
        }
    }

    /// A client for this server.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn client(&self) -> Result<Client, ChError> {
        Client::new(&ClientConfig {
            url: self.url.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            connect_timeout: Duration::from_secs(3),
        })
    }

    pub fn layout(&self) -> Layout {
        Layout {
            database: self.database.clone(),
            cluster: self.cluster.clone(),
            retention_days: self.retention_days.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    rows: [AtomicU64; Table::ALL.len()],
    bytes: [AtomicU64; Table::ALL.len()],
}

/// Applies pending migrations without opening a store (`telemetryflow migrate`).
///
/// # Errors
/// As [`migrate::apply`].
pub async fn migrate_only(config: &ClickHouseConfig) -> Result<migrate::Applied, MigrateError> {
    migrate::apply(&config.client()?, &config.layout()).await
}

fn insert_sql(layout: &Layout, table: Table) -> String {
    let columns: Vec<String> = model::schema_of(table)
        .fields()
        .iter()
        .map(|f| migrate::ident(f.name()))
        .collect();
    format!(
        "INSERT INTO {} ({}) FORMAT ArrowStream",
        layout.qualified(table.name()),
        columns.join(", ")
    )
}

fn table_index(t: Table) -> usize {
    Table::ALL.iter().position(|x| *x == t).unwrap_or(0)
}

/// The ClickHouse store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct ClickHouseStore {
    client: Client,
    config: ClickHouseConfig,
    layout: Arc<Layout>,
    slots: Arc<Semaphore>,
    /// The INSERT statement of each table, in [`Table::ALL`] order.
    insert_sql: [String; Table::ALL.len()],
    /// Rows and bytes this process wrote (`/metrics`); ClickHouse's own totals are in
    /// `system.parts`.
    written: Counters,
    /// Whether the last insert reached ClickHouse (for `/readyz`).
    reachable: AtomicBool,
}

impl ClickHouseStore {
    /// Connects, creates the database if needed and applies pending migrations.
    ///
    /// # Errors
    /// When ClickHouse cannot be reached or a migration fails.
    pub async fn connect(config: ClickHouseConfig) -> Result<Arc<ClickHouseStore>, MigrateError> {
        let client = config.client()?;
        let layout = config.layout();
        migrate::apply(&client, &layout).await?;
        let insert_sql = Table::ALL.map(|t| insert_sql(&layout, t));
        let store = Arc::new(ClickHouseStore {
            client,
            insert_sql,
            slots: Arc::new(Semaphore::new(config.max_concurrent_inserts.max(1))),
            layout: Arc::new(layout),
            config,
            written: Counters::default(),
            reachable: AtomicBool::new(true),
        });
        watch_reachability(&store);
        Ok(store)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// One table's rows, retried on transient errors with the same token until the budget is
    /// spent.
    async fn insert_table(
        &self,
        table: Table,
        body: Bytes,
        token: String,
        started: Instant,
    ) -> Result<(), StoreError> {
        let sql = &self.insert_sql[table_index(table)];
        let mut settings: Vec<(&str, String)> = vec![
            ("insert_deduplicate", "1".into()),
            ("insert_deduplication_token", token),
            (
                "deduplicate_blocks_in_dependent_materialized_views",
                "1".into(),
            ),
        ];
        if self.config.async_insert {
            settings.push(("async_insert", "1".into()));
            settings.push(("wait_for_async_insert", "1".into()));
        }
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = self
                .client
                .insert(sql, &settings, body.clone(), self.config.insert_timeout)
                .await;
            let e = match result {
                Ok(()) => {
                    self.reachable.store(true, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => e,
            };
            if !e.is_transient() {
                metrics::counter!("telemetryflow_clickhouse_insert_failures_total", "table" => table.name())
                    .increment(1);
                return Err(StoreError::Internal(format!(
                    "insert into {} failed: {e}",
                    table.name()
                )));
            }
            if matches!(e, ChError::Transport(_)) {
                self.reachable.store(false, Ordering::Relaxed);
            }
            metrics_retry(table);
            if started.elapsed() + backoff >= self.config.retry_budget {
                metrics::counter!("telemetryflow_clickhouse_insert_failures_total", "table" => table.name())
                    .increment(1);
                tracing::warn!(table = table.name(), attempt, error = %e, "clickhouse insert failed; giving up");
                return Err(StoreError::Unavailable {
                    reason: format!("ClickHouse insert into {} failed: {e}", table.name()),
                    retry_after: Duration::from_secs(5),
                });
            }
            tracing::debug!(table = table.name(), attempt, error = %e, "clickhouse insert failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Inserts every table of one write at once; `Ok` only when all were confirmed.
    async fn write_tables(
        &self,
        batches: Vec<(Table, RecordBatch)>,
        token: Option<u128>,
    ) -> Result<(), StoreError> {
        if batches.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let _permit = match tokio::time::timeout(
            self.config.slot_wait,
            Arc::clone(&self.slots).acquire_owned(),
        )
        .await
        {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(StoreError::Closed),
            Err(_) => {
                return Err(StoreError::Busy {
                    reason: "all ClickHouse insert slots are waiting on ClickHouse",
                    retry_after: Duration::from_secs(2),
                });
            }
        };
        let mut per: BTreeMap<Table, Vec<RecordBatch>> = BTreeMap::new();
        for (t, b) in batches {
            if b.num_rows() > 0 {
                per.entry(t).or_default().push(b);
            }
        }
        let mut inserts = Vec::with_capacity(per.len());
        for (table, batches) in per {
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            let body = arrow_conv::encode_stream(&batches)
                .map_err(|e| StoreError::Internal(format!("cannot encode rows: {e}")))?;
            let t = token.unwrap_or_else(|| rows_dedup_token(&body));
            let token = format!("{t:032x}-{}", table.name());
            let bytes = body.len() as u64;
            inserts.push(async move {
                self.insert_table(table, Bytes::from(body), token, started)
                    .await?;
                let i = table_index(table);
                self.written.rows[i].fetch_add(rows as u64, Ordering::Relaxed);
                self.written.bytes[i].fetch_add(bytes, Ordering::Relaxed);
                Ok::<(), StoreError>(())
            });
        }
        futures::future::try_join_all(inserts).await?;
        Ok(())
    }
}

fn metrics_retry(table: Table) {
    metrics::counter!("telemetryflow_clickhouse_insert_retries_total", "table" => table.name())
        .increment(1);
}

/// Keeps `reachable` true while ClickHouse answers `/ping`, so readiness recovers on its own
/// after an outage even when no write comes to prove it. Stops when the store is dropped.
fn watch_reachability(store: &Arc<ClickHouseStore>) {
    let weak = Arc::downgrade(store);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let Some(store) = weak.upgrade() else { return };
            let ok = store.client.ping(Duration::from_secs(2)).await.is_ok();
            store.reachable.store(ok, Ordering::Relaxed);
        }
    });
}

impl query::NativeSql for ClickHouseStore {
    fn table_name(&self, table: Table) -> String {
        self.layout.qualified(table.name())
    }

    fn run<'a>(
        &'a self,
        sql: String,
        params: Vec<(String, String)>,
        max_rows: usize,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<query::SqlOutput, query::QueryError>> + Send + 'a>,
    > {
        Box::pin(async move {
            use futures::TryStreamExt;
            let timeout = self.config.query_timeout;
            let settings = [
                ("max_execution_time", timeout.as_secs().max(1).to_string()),
                ("enable_positional_arguments", "1".to_string()),
            ];
            let sql = format!("{sql} LIMIT {}", max_rows + 1);
            let failed = |e: client::ChError| match e {
                client::ChError::Server { .. } | client::ChError::Decode(_) => {
                    query::QueryError::Invalid(e.to_string())
                }
                other => query::QueryError::Internal(other.to_string()),
            };
            let mut batches: Vec<RecordBatch> = self
                .client
                .select_arrow(&sql, &params, &settings, timeout)
                .await
                .map_err(failed)?
                .try_collect()
                .await
                .map_err(failed)?;
            let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
            let truncated = total > max_rows;
            if truncated {
                let mut keep = max_rows;
                for b in &mut batches {
                    let n = b.num_rows().min(keep);
                    *b = b.slice(0, n);
                    keep -= n;
                }
            }
            let schema = batches.first().map_or_else(
                || Arc::new(arrow::datatypes::Schema::empty()),
                RecordBatch::schema,
            );
            Ok(query::SqlOutput {
                schema,
                batches,
                truncated,
            })
        })
    }
}

impl TelemetryTables for ClickHouseStore {
    fn native_sql(&self) -> Option<&dyn query::NativeSql> {
        Some(self)
    }

    fn table_provider(&self, table: Table) -> Arc<dyn TableProvider> {
        Arc::new(provider::ChTable::new(
            self.client.clone(),
            Arc::clone(&self.layout),
            provider::Source::Table(table),
            self.config.query_timeout,
        ))
    }

    fn rollup_provider(&self, rollup: Rollup) -> Result<Arc<dyn TableProvider>, DataFusionError> {
        Ok(Arc::new(provider::ChTable::new(
            self.client.clone(),
            Arc::clone(&self.layout),
            provider::Source::Rollup(rollup),
            self.config.query_timeout,
        )))
    }
}

#[async_trait]
impl TelemetryStore for ClickHouseStore {
    async fn write(&self, batches: Vec<(Table, RecordBatch)>) -> Result<(), StoreError> {
        self.write_tables(batches, None).await
    }

    async fn write_export(
        &self,
        batches: Vec<(Table, RecordBatch)>,
        raw: RawExport,
    ) -> Result<(), StoreError> {
        self.write_tables(batches, Some(raw.dedup_token())).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every acknowledged write is already in ClickHouse.
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            tables: Table::ALL
                .into_iter()
                .map(|t| {
                    let i = table_index(t);
                    TableStats {
                        table: t,
                        rows: self.written.rows[i].load(Ordering::Relaxed),
                        bytes: self.written.bytes[i].load(Ordering::Relaxed),
                    }
                })
                .collect(),
            wal_bytes: 0,
        }
    }

    fn is_ready(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    async fn enforce_retention(&self) -> Result<u64, StoreError> {
        // ClickHouse applies TTL in background merges; this makes it happen now.
        let mut names: Vec<String> = Table::ALL.iter().map(|t| t.name().to_string()).collect();
        names.extend(Rollup::ALL.iter().map(|r| r.name().to_string()));
        for name in names {
            let target = match &self.layout.cluster {
                Some(c) => format!(
                    "{} ON CLUSTER {}",
                    self.layout.qualified(&format!("{name}_local")),
                    migrate::ident(c)
                ),
                None => self.layout.qualified(&name),
            };
            self.client
                .execute(
                    &format!("ALTER TABLE {target} MATERIALIZE TTL"),
                    &[],
                    &[("mutations_sync", "2".into())],
                    Duration::from_secs(600),
                )
                .await
                .map_err(|e| StoreError::Internal(format!("retention on {name}: {e}")))?;
        }
        Ok(0)
    }
}

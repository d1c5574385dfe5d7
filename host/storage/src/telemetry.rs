//! The telemetry store port.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use model::{ErrorKind, Scope, Signal, Table};
use query::TelemetryTables;

/// The request behind a write, for stores that log requests rather than rows: logging the
/// (decompressed) body is cheaper than serializing the rows, and converting it again on replay
/// gives the same rows because conversion is deterministic given `received_at` and `scope`.
#[derive(Debug, Clone)]
pub struct RawExport {
    pub signal: Signal,
    /// OTLP/JSON rather than protobuf.
    pub json: bool,
    /// Nanoseconds; what rows without their own time got.
    pub received_at: u64,
    pub scope: Scope,
    pub body: bytes::Bytes,
}

impl RawExport {
    /// A digest of what the client sent (signal, encoding, scope and body, not the time it
    /// arrived): the same request retried gets the same token, so a store can recognise it.
    pub fn dedup_token(&self) -> u128 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(self.signal.as_str().as_bytes());
        h.update(&[u8::from(self.json)]);
        for part in [
            &self.scope.organization_id,
            &self.scope.workspace_id,
            &self.scope.tenant_id,
        ] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(&self.body);
        h.digest128()
    }
}

/// A digest of encoded rows, for writes that have no request behind them.
pub fn rows_dedup_token(encoded: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(encoded)
}

/// The tokens of recent writes, so that a retried write is acknowledged without being stored a
/// second time. Bounded: the oldest tokens are forgotten first.
#[derive(Debug)]
pub struct DedupWindow {
    capacity: usize,
    seen: std::collections::HashSet<u128>,
    order: std::collections::VecDeque<u128>,
}

impl DedupWindow {
    pub fn new(capacity: usize) -> DedupWindow {
        DedupWindow {
            capacity: capacity.max(1),
            seen: std::collections::HashSet::new(),
            order: std::collections::VecDeque::new(),
        }
    }

    pub fn contains(&self, token: u128) -> bool {
        self.seen.contains(&token)
    }

    pub fn insert(&mut self, token: u128) {
        if self.seen.insert(token) {
            self.order.push_back(token);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
    }
}

/// Turns a logged request back into rows (used when replaying a log).
pub type Reconvert =
    Arc<dyn Fn(&RawExport) -> Result<Vec<(Table, RecordBatch)>, String> + Send + Sync>;

/// Why a telemetry write or read failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write path is saturated; nothing was stored. Retry after the given delay.
    #[error("telemetry store is saturated: {reason}")]
    Overloaded {
        reason: &'static str,
        retry_after: Duration,
    },
    /// The backing service cannot be reached or keeps failing; nothing was acknowledged.
    #[error("telemetry store is unavailable: {reason}")]
    Unavailable {
        reason: String,
        retry_after: Duration,
    },
    /// Too many writes are waiting on a slow backing service; nothing was stored.
    #[error("telemetry store is busy: {reason}")]
    Busy {
        reason: &'static str,
        retry_after: Duration,
    },
    /// The store is shutting down and takes no more writes.
    #[error("telemetry store is shutting down")]
    Closed,
    #[error("telemetry store io error: {0}")]
    Io(#[from] std::io::Error),
    #[error("telemetry store error: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Overloaded { .. } | StoreError::Unavailable { .. } | StoreError::Closed => {
                ErrorKind::Overloaded
            }
            StoreError::Busy { .. } => ErrorKind::TooManyRequests,
            StoreError::Io(_) | StoreError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// How long a client should wait before retrying, when retrying makes sense.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            StoreError::Overloaded { retry_after, .. }
            | StoreError::Unavailable { retry_after, .. }
            | StoreError::Busy { retry_after, .. } => Some(*retry_after),
            StoreError::Closed => Some(Duration::from_secs(5)),
            _ => None,
        }
    }
}

/// Size figures for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub tables: Vec<TableStats>,
    /// Bytes in the write-ahead log not yet compacted away.
    pub wal_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct TableStats {
    pub table: Table,
    /// Rows acknowledged and not yet removed by retention.
    pub rows: u64,
    /// Bytes on disk (columnar files) plus bytes held in memory.
    pub bytes: u64,
}

/// Where telemetry goes and is read back from.
///
/// Reads go through [`TelemetryTables`]: DataFusion table providers over all tenants' rows;
/// callers (the query engine) apply the tenant scope.
#[async_trait]
pub trait TelemetryStore: TelemetryTables + Send + Sync + 'static {
    /// Stores the batches of one request, all or nothing.
    ///
    /// Returning `Ok` means the rows are durable: they survive a crash of the process.
    /// A write identical to a recent one (same rows, or for [`TelemetryStore::write_export`] the
    /// same request) is a retry: it is acknowledged and not stored twice.
    ///
    /// # Errors
    /// [`StoreError::Overloaded`] when the store cannot take more right now (nothing stored);
    /// other variants when the write failed.
    async fn write(&self, batches: Vec<(Table, RecordBatch)>) -> Result<(), StoreError>;

    /// [`TelemetryStore::write`] of the rows converted from `raw`; a store may log `raw` instead
    /// of the rows.
    ///
    /// # Errors
    /// As [`TelemetryStore::write`].
    async fn write_export(
        &self,
        batches: Vec<(Table, RecordBatch)>,
        raw: RawExport,
    ) -> Result<(), StoreError> {
        let _ = raw;
        self.write(batches).await
    }

    /// Makes everything acknowledged so far as compact as the store gets (used at shutdown).
    ///
    /// # Errors
    /// When the data could not be written out; it is still durable in the log.
    async fn flush(&self) -> Result<(), StoreError>;

    /// Sizes per table.
    fn stats(&self) -> StoreStats;

    /// Whether the store takes writes (for `/readyz`).
    fn is_ready(&self) -> bool;

    /// Drops rows older than their table's retention now, rather than when the store would on
    /// its own. Returns how many files or parts were dropped, where the store knows.
    ///
    /// # Errors
    /// When the store cannot apply retention.
    async fn enforce_retention(&self) -> Result<u64, StoreError>;
}

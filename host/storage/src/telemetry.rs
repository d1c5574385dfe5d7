//! The telemetry store port.

use std::time::Duration;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use model::{ErrorKind, Table};
use query::TelemetryTables;

/// Why a telemetry write or read failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write path is saturated; nothing was stored. Retry after the given delay.
    #[error("telemetry store is saturated: {reason}")]
    Overloaded {
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
            StoreError::Overloaded { .. } | StoreError::Closed => ErrorKind::Overloaded,
            StoreError::Io(_) | StoreError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// How long a client should wait before retrying, when retrying makes sense.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            StoreError::Overloaded { retry_after, .. } => Some(*retry_after),
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
    ///
    /// # Errors
    /// [`StoreError::Overloaded`] when the store cannot take more right now (nothing stored);
    /// other variants when the write failed.
    async fn write(&self, batches: Vec<(Table, RecordBatch)>) -> Result<(), StoreError>;

    /// Makes everything acknowledged so far as compact as the store gets (used at shutdown).
    ///
    /// # Errors
    /// When the data could not be written out; it is still durable in the log.
    async fn flush(&self) -> Result<(), StoreError>;

    /// Sizes per table.
    fn stats(&self) -> StoreStats;

    /// Whether the store takes writes (for `/readyz`).
    fn is_ready(&self) -> bool;
}

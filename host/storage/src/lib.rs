//! The storage ports: what the rest of the host needs from a telemetry store and from a
//! metadata store, and nothing about how either is built.
//!
//! Adapters live in their own crates (`storage-embedded`, `storage-clickhouse`, `storage-sqlite`,
//! later PostgreSQL); only the `server` crate names them.

mod meta;
mod telemetry;

pub use meta::{
    ApiKeyRecord, ApiKeyStatus, MetaError, MetaStore, NewApiKey, NewTenant, NewUser, RoleType,
    TenantRecord, UserRecord,
};
pub use telemetry::{
    DedupWindow, RawExport, Reconvert, StoreError, StoreStats, TableStats, TelemetryStore,
    rows_dedup_token,
};

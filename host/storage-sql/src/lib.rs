//! The metadata store written once: every [`storage::MetaStore`] method as SQL that SQLite and
//! PostgreSQL both run, over a small [`Db`] port that each backend crate implements (binding,
//! decoding, transactions). Behaviour cannot drift between the backends because there is one
//! implementation; the conformance suite in `tests/meta` runs it on both.

mod alerting;
mod dashboards;
mod db;
mod store;

pub use db::{Db, DbError, Dialect, Row, Tx, Value};
pub use store::SqlMetaStore;

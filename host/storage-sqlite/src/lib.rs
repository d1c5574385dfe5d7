//! The metadata store on SQLite (the embedded default): a [`storage_sql::Db`] backend.
//!
//! Migrations are `migrations/sqlite/*.sql`, embedded at build time and applied at open,
//! recorded in `_sqlx_migrations`. Timestamps are fixed-width RFC 3339 UTC text with
//! microseconds (`2026-01-02T03:04:05.000000Z`), so text order is time order.

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
};
use sqlx::{Arguments, Column, Decode, Row as _, Sqlite, SqlitePool, TypeInfo, ValueRef};
use storage::MetaError;
use storage_sql::{Db, DbError, Dialect, Row, SqlMetaStore, Tx, Value};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Opens (creating if needed) the database file, applies pending migrations and returns the
/// metadata store over it.
///
/// # Errors
/// When the file cannot be opened or a migration fails.
pub async fn open(path: &Path) -> Result<SqlMetaStore, MetaError> {
    Ok(SqlMetaStore::new(SqliteDb::open(path).await?))
}

fn backend(e: impl std::fmt::Display) -> MetaError {
    MetaError::Backend(e.to_string())
}

/// Text form of a timestamp in this store.
pub fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn db_error(e: sqlx::Error) -> DbError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => DbError::Unique(d.to_string()),
        _ => DbError::Other(e.to_string()),
    }
}

fn arguments(args: &[Value]) -> Result<SqliteArguments<'static>, DbError> {
    let mut out = SqliteArguments::default();
    for a in args {
        let r = match a {
            Value::Text(v) => out.add(v.clone()),
            Value::Int(v) => out.add(*v),
            Value::Bool(v) => out.add(*v),
            Value::Time(v) => out.add(v.map(ts)),
            Value::Float(v) => out.add(*v),
            Value::Bytes(v) => out.add(v.clone()),
        };
        r.map_err(|e| DbError::Other(e.to_string()))?;
    }
    Ok(out)
}

fn decode(row: &SqliteRow) -> Result<Row, DbError> {
    let mut columns = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(db_error)?;
        let other = |e: sqlx::error::BoxDynError| DbError::Other(e.to_string());
        let value = if raw.is_null() {
            Value::Text(None)
        } else {
            match raw.type_info().name() {
                "INTEGER" | "BOOLEAN" => {
                    Value::Int(Some(<i64 as Decode<Sqlite>>::decode(raw).map_err(other)?))
                }
                "REAL" | "NUMERIC" => {
                    Value::Float(Some(<f64 as Decode<Sqlite>>::decode(raw).map_err(other)?))
                }
                _ => Value::Text(Some(
                    <String as Decode<Sqlite>>::decode(raw).map_err(other)?,
                )),
            }
        };
        columns.push((col.name().to_string(), value));
    }
    Ok(Row { columns })
}

/// A pool of connections to one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteDb {
    pool: SqlitePool,
}

impl SqliteDb {
    /// Opens the file and applies pending migrations.
    ///
    /// # Errors
    /// When the file cannot be opened or a migration fails.
    pub async fn open(path: &Path) -> Result<SqliteDb, MetaError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(backend)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(backend)?;
        MIGRATOR.run(&pool).await.map_err(backend)?;
        Ok(SqliteDb { pool })
    }
}

struct SqliteTx(sqlx::Transaction<'static, Sqlite>);

#[async_trait]
impl Tx for SqliteTx {
    async fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64, DbError> {
        sqlx::query_with(sql, arguments(args)?)
            .execute(&mut *self.0)
            .await
            .map(|r| r.rows_affected())
            .map_err(db_error)
    }

    async fn fetch(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, DbError> {
        let rows = sqlx::query_with(sql, arguments(args)?)
            .fetch_all(&mut *self.0)
            .await
            .map_err(db_error)?;
        rows.iter().map(decode).collect()
    }

    async fn commit(self: Box<Self>) -> Result<(), DbError> {
        self.0.commit().await.map_err(db_error)
    }
}

#[async_trait]
impl Db for SqliteDb {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    /// Every transaction takes SQLite's write lock at once (`BEGIN IMMEDIATE`): ours all write
    /// after reading, and a deferred one would fail to upgrade when another writer got there first.
    async fn begin(&self, _exclusive: bool) -> Result<Box<dyn Tx>, DbError> {
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        Ok(Box::new(SqliteTx(tx)))
    }

    async fn execute(&self, sql: &str, args: &[Value]) -> Result<u64, DbError> {
        sqlx::query_with(sql, arguments(args)?)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(db_error)
    }

    async fn fetch(&self, sql: &str, args: &[Value]) -> Result<Vec<Row>, DbError> {
        let rows = sqlx::query_with(sql, arguments(args)?)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(decode).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage_sql::args;

    #[tokio::test]
    async fn values_round_trip_through_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = SqliteDb::open(&dir.path().join("m.db"))
            .await
            .expect("open");
        let at = Utc::now();
        let rows = db
            .fetch(
                "SELECT $1 AS t, $2 AS i, $3 AS b, $4 AS ts, $5 AS n, $1 AS again",
                args!["x", 7_i64, true, at, Option::<String>::None],
            )
            .await
            .expect("fetch");
        let r = &rows[0];
        assert_eq!(r.text("t").expect("t"), "x");
        assert_eq!(r.text("again").expect("again"), "x");
        assert_eq!(r.int("i").expect("i"), 7);
        assert!(r.bool("b").expect("b"));
        assert_eq!(r.time("ts").expect("ts"), at.trunc_subsecs_micros());
        assert_eq!(r.opt_text("n").expect("n"), None);
    }

    trait Micros {
        fn trunc_subsecs_micros(self) -> Self;
    }
    impl Micros for DateTime<Utc> {
        fn trunc_subsecs_micros(self) -> Self {
            chrono::SubsecRound::trunc_subsecs(self, 6)
        }
    }
}

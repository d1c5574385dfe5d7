//! The metadata store on PostgreSQL (`--meta-store postgres --database-url postgres://…`): a
//! [`storage_sql::Db`] backend, so it behaves exactly as the SQLite store (one conformance suite
//! runs on both).
//!
//! Migrations are `migrations/postgres/*.sql`, embedded at build time and applied at connect in
//! a transaction each, recorded in `_sqlx_migrations`. Times are `timestamptz`.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::postgres::{PgArguments, PgPoolOptions, PgRow};
use sqlx::{Arguments, Column, PgPool, Postgres, Row as _, TypeInfo};
use storage::MetaError;
use storage_sql::{Db, DbError, Dialect, Row, SqlMetaStore, Tx, Value};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Connects to `url`, applies pending migrations and returns the metadata store over it.
///
/// # Errors
/// When the server cannot be reached or a migration fails.
pub async fn connect(url: &str) -> Result<SqlMetaStore, MetaError> {
    Ok(SqlMetaStore::new(PostgresDb::connect(url).await?))
}

fn backend(e: impl std::fmt::Display) -> MetaError {
    MetaError::Backend(e.to_string())
}

fn db_error(e: sqlx::Error) -> DbError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => DbError::Unique(d.to_string()),
        _ => DbError::Other(e.to_string()),
    }
}

fn arguments(args: &[Value]) -> Result<PgArguments, DbError> {
    let mut out = PgArguments::default();
    for a in args {
        let r = match a {
            Value::Text(v) => out.add(v.clone()),
            Value::Int(v) => out.add(*v),
            Value::Bool(v) => out.add(*v),
            Value::Time(v) => out.add(*v),
            Value::Float(v) => out.add(*v),
            Value::Bytes(v) => out.add(v.clone()),
        };
        r.map_err(|e| DbError::Other(e.to_string()))?;
    }
    Ok(out)
}

fn decode(row: &PgRow) -> Result<Row, DbError> {
    let mut columns = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let e = db_error;
        let value = match col.type_info().name() {
            "INT2" => Value::Int(row.try_get::<Option<i16>, _>(i).map_err(e)?.map(i64::from)),
            "INT4" => Value::Int(row.try_get::<Option<i32>, _>(i).map_err(e)?.map(i64::from)),
            "INT8" => Value::Int(row.try_get::<Option<i64>, _>(i).map_err(e)?),
            "BOOL" => Value::Bool(row.try_get::<Option<bool>, _>(i).map_err(e)?),
            "FLOAT4" => Value::Float(row.try_get::<Option<f32>, _>(i).map_err(e)?.map(f64::from)),
            "FLOAT8" => Value::Float(row.try_get::<Option<f64>, _>(i).map_err(e)?),
            "TIMESTAMPTZ" => Value::Time(row.try_get::<Option<DateTime<Utc>>, _>(i).map_err(e)?),
            "TIMESTAMP" => Value::Time(
                row.try_get::<Option<NaiveDateTime>, _>(i)
                    .map_err(e)?
                    .map(|t| t.and_utc()),
            ),
            "BYTEA" => Value::Bytes(row.try_get::<Option<Vec<u8>>, _>(i).map_err(e)?),
            "UUID" => Value::Text(
                row.try_get::<Option<sqlx::types::Uuid>, _>(i)
                    .map_err(e)?
                    .map(|u| u.to_string()),
            ),
            _ => Value::Text(row.try_get::<Option<String>, _>(i).map_err(e)?),
        };
        columns.push((col.name().to_string(), value));
    }
    Ok(Row { columns })
}

/// A pool of connections to one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresDb {
    pool: PgPool,
}

impl PostgresDb {
    /// Connects and applies pending migrations.
    ///
    /// # Errors
    /// When the server cannot be reached or a migration fails.
    pub async fn connect(url: &str) -> Result<PostgresDb, MetaError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(backend)?;
        MIGRATOR.run(&pool).await.map_err(backend)?;
        Ok(PostgresDb { pool })
    }
}

struct PgTx(sqlx::Transaction<'static, Postgres>);

#[async_trait]
impl Tx for PgTx {
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

/// The advisory lock an exclusive transaction holds until it ends.
const EXCLUSIVE_LOCK: i64 = 0x7466_6d65_7461;

#[async_trait]
impl Db for PostgresDb {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn begin(&self, exclusive: bool) -> Result<Box<dyn Tx>, DbError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        if exclusive {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(EXCLUSIVE_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        Ok(Box::new(PgTx(tx)))
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

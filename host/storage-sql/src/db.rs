//! The few things a backend must do: run a statement, fetch rows, and do both inside a
//! transaction. Statements use `$1, $2, …` placeholders, which SQLite and PostgreSQL both accept.
//!
//! Values cross the boundary as [`Value`], which keeps the type of a NULL (PostgreSQL needs it)
//! and a timestamp as a timestamp (each backend stores it its own way: `timestamptz` on
//! PostgreSQL, fixed-width RFC 3339 text on SQLite, so text order is time order).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A statement parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Time(Option<DateTime<Utc>>),
    Float(Option<f64>),
    Bytes(Option<Vec<u8>>),
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(Some(v.to_string()))
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(Some(v.clone()))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(Some(v))
    }
}
impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Value {
        Value::Text(v)
    }
}
impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Value {
        Value::Text(v.map(str::to_string))
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(Some(v))
    }
}
impl From<Option<Vec<u8>>> for Value {
    fn from(v: Option<Vec<u8>>) -> Value {
        Value::Bytes(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Bytes(Some(v.to_vec()))
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(Some(v))
    }
}
impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Value {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(Some(v))
    }
}
impl From<DateTime<Utc>> for Value {
    fn from(v: DateTime<Utc>) -> Value {
        Value::Time(Some(v))
    }
}
impl From<Option<DateTime<Utc>>> for Value {
    fn from(v: Option<DateTime<Utc>>) -> Value {
        Value::Time(v)
    }
}

/// Statement parameters: `args![a, b, c]`.
#[macro_export]
macro_rules! args {
    ($($v:expr),* $(,)?) => { &[$($crate::Value::from($v)),*][..] };
}

/// A failed statement.
#[derive(Debug)]
pub enum DbError {
    /// A unique constraint refused the row.
    Unique(String),
    Other(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Unique(m) | DbError::Other(m) => f.write_str(m),
        }
    }
}

/// One fetched row: column names and values in select order.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub columns: Vec<(String, Value)>,
}

impl Row {
    fn value(&self, name: &str) -> Result<&Value, DbError> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| DbError::Other(format!("no column {name:?} in the result")))
    }

    fn mismatch(name: &str, want: &str, got: &Value) -> DbError {
        DbError::Other(format!("column {name:?}: expected {want}, found {got:?}"))
    }

    pub fn opt_text(&self, name: &str) -> Result<Option<String>, DbError> {
        match self.value(name)? {
            Value::Text(v) => Ok(v.clone()),
            Value::Int(Some(i)) => Ok(Some(i.to_string())),
            Value::Int(None) | Value::Bool(None) | Value::Time(None) | Value::Float(None) => {
                Ok(None)
            }
            other => Err(Self::mismatch(name, "text", other)),
        }
    }

    pub fn text(&self, name: &str) -> Result<String, DbError> {
        self.opt_text(name)?
            .ok_or_else(|| DbError::Other(format!("column {name:?} is NULL")))
    }

    pub fn opt_int(&self, name: &str) -> Result<Option<i64>, DbError> {
        match self.value(name)? {
            Value::Int(v) => Ok(*v),
            Value::Bool(v) => Ok(v.map(i64::from)),
            Value::Text(None) | Value::Time(None) | Value::Float(None) | Value::Bytes(None) => {
                Ok(None)
            }
            Value::Text(Some(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| Self::mismatch(name, "integer", &Value::Text(Some(s.clone())))),
            other => Err(Self::mismatch(name, "integer", other)),
        }
    }

    pub fn int(&self, name: &str) -> Result<i64, DbError> {
        self.opt_int(name)?
            .ok_or_else(|| DbError::Other(format!("column {name:?} is NULL")))
    }

    pub fn bool(&self, name: &str) -> Result<bool, DbError> {
        match self.value(name)? {
            Value::Bool(Some(b)) => Ok(*b),
            Value::Int(Some(i)) => Ok(*i != 0),
            other => Err(Self::mismatch(name, "boolean", other)),
        }
    }

    pub fn opt_time(&self, name: &str) -> Result<Option<DateTime<Utc>>, DbError> {
        match self.value(name)? {
            Value::Time(v) => Ok(*v),
            Value::Text(None) | Value::Int(None) | Value::Float(None) | Value::Bytes(None) => {
                Ok(None)
            }
            Value::Text(Some(s)) => DateTime::parse_from_rfc3339(s)
                .map(|d| Some(d.with_timezone(&Utc)))
                .map_err(|_| Self::mismatch(name, "timestamp", &Value::Text(Some(s.clone())))),
            other => Err(Self::mismatch(name, "timestamp", other)),
        }
    }

    pub fn bytes(&self, name: &str) -> Result<Vec<u8>, DbError> {
        match self.value(name)? {
            Value::Bytes(Some(b)) => Ok(b.clone()),
            Value::Text(Some(s)) => Ok(s.clone().into_bytes()),
            other => Err(Self::mismatch(name, "bytes", other)),
        }
    }

    pub fn opt_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, DbError> {
        match self.value(name)? {
            Value::Bytes(None) | Value::Text(None) => Ok(None),
            _ => self.bytes(name).map(Some),
        }
    }

    pub fn time(&self, name: &str) -> Result<DateTime<Utc>, DbError> {
        self.opt_time(name)?
            .ok_or_else(|| DbError::Other(format!("column {name:?} is NULL")))
    }
}

/// Which SQL dialect a backend speaks, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Statements inside one transaction; dropped without [`Tx::commit`], it rolls back.
#[async_trait]
pub trait Tx: Send {
    async fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64, DbError>;
    async fn fetch(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, DbError>;
    async fn commit(self: Box<Self>) -> Result<(), DbError>;

    async fn fetch_one(&mut self, sql: &str, args: &[Value]) -> Result<Option<Row>, DbError> {
        Ok(self.fetch(sql, args).await?.into_iter().next())
    }
}

/// A connection pool of one backend.
#[async_trait]
pub trait Db: Send + Sync + 'static {
    fn dialect(&self) -> Dialect;
    /// Starts a transaction. With `exclusive`, it takes the write lock at once, so two callers
    /// that read-then-write in it never interleave.
    async fn begin(&self, exclusive: bool) -> Result<Box<dyn Tx>, DbError>;
    async fn execute(&self, sql: &str, args: &[Value]) -> Result<u64, DbError>;
    async fn fetch(&self, sql: &str, args: &[Value]) -> Result<Vec<Row>, DbError>;

    async fn fetch_one(&self, sql: &str, args: &[Value]) -> Result<Option<Row>, DbError> {
        Ok(self.fetch(sql, args).await?.into_iter().next())
    }
}

//! Decoded OTLP requests → one Arrow record batch per telemetry table.
//!
//! Every row gets the caller's scope. Items that break the OTLP data model (a span without a
//! valid trace id, a number point without a value, a histogram whose buckets do not match its
//! bounds) are not stored; they are counted as rejected with the first reason, which the protocol
//! layer returns as OTLP partial success. Attribute values longer than [`Limits`] allow are
//! truncated, attributes past the count limit are dropped and counted.

mod attrs;
mod logs;
mod metrics;
mod traces;

pub use logs::logs_to_batches;
pub use metrics::metrics_to_batches;
pub use traces::traces_to_batches;

use arrow::array::RecordBatch;
use model::Table;

/// Limits applied to every item while converting.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Attributes kept per item (span, event, link, log, point); the rest are dropped and counted.
    pub max_attributes: usize,
    /// Bytes kept of one attribute value; longer values are truncated at a char boundary.
    pub max_attribute_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_attributes: 128,
            max_attribute_value_bytes: 2048,
        }
    }
}

/// The outcome of converting one request.
#[derive(Debug, Default)]
pub struct Converted {
    /// One batch per table that received rows, in schema order of [`model::schema_of`].
    pub batches: Vec<(Table, RecordBatch)>,
    /// Items stored (spans, log records or metric data points).
    pub accepted: u64,
    /// Items refused.
    pub rejected: u64,
    /// Why the first refused item was refused; empty when nothing was.
    pub error_message: String,
    /// Attribute values truncated to the limit.
    pub truncated_values: u64,
}

impl Converted {
    fn reject(&mut self, n: u64, why: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        if self.error_message.is_empty() {
            self.error_message = why();
        }
        self.rejected += n;
    }
}

/// Writes `bytes` as lowercase hex into `buf`, returning the text.
fn hex_id<'a>(bytes: &[u8], buf: &'a mut [u8; 64]) -> &'a str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let n = bytes.len().min(32);
    for (i, b) in bytes[..n].iter().enumerate() {
        buf[2 * i] = DIGITS[(b >> 4) as usize];
        buf[2 * i + 1] = DIGITS[(b & 0xf) as usize];
    }
    // Only ASCII hex digits were written.
    std::str::from_utf8(&buf[..2 * n]).unwrap_or("")
}

fn is_valid_id(bytes: &[u8], len: usize) -> bool {
    bytes.len() == len && bytes.iter().any(|b| *b != 0)
}

/// A nanosecond timestamp that fits Arrow's i64, saturating.
fn nanos(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

//! Answers of builder statements kept per time bucket ([`BucketCache`]).
//!
//! A dashboard refreshes its panels over a range that moves with the clock: between two
//! refreshes most of the buckets are the same rows. The cache keeps, per statement (the scope,
//! the queries, the step), the rows of the whole buckets of its last answer, with the store's
//! version of the table when that answer was computed. The next run asks the store what changed
//! since ([`TelemetryTables::changes_since`]: the oldest timestamp written or removed), reuses
//! the buckets that end before that, and computes only the rest: the range's partial first and
//! last buckets, new buckets, and buckets that late rows changed. The answer is the one a full
//! run gives.
//!
//! Only statements whose buckets do not depend on each other are kept: plain aggregations in
//! time buckets. Counters (which look back one step), histograms, rollups and instant queries
//! always run in full, and so does everything over a store that cannot say what changed.
//!
//! [`TelemetryTables::changes_since`]: crate::TelemetryTables::changes_since

use std::collections::HashMap;
use std::sync::Mutex;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use model::{Scope, Table};

use crate::builder::BuilderQuery;
use crate::{Changes, QueryError, SqlOutput};

/// Kept answers, at most a budget of bytes of them (least recently used go first).
pub struct BucketCache {
    budget: usize,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for BucketCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketCache")
            .field("budget", &self.budget)
            .field("stats", &self.stats())
            .finish()
    }
}

/// What a [`BucketCache`] holds and has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    /// Runs that reused kept buckets.
    pub hits: u64,
    /// Runs that computed every bucket.
    pub misses: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    bytes: usize,
    tick: u64,
    hits: u64,
    misses: u64,
}

struct Entry {
    kept: Kept,
    bytes: usize,
    used: u64,
}

/// What a kept answer is the answer of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    scope: Scope,
    table: Table,
    step_ms: i64,
    /// The statement's queries, without what does not change its rows (names, order, limit).
    statement: String,
}

impl Key {
    pub(crate) fn new(scope: &Scope, table: Table, step_ms: i64, qs: &[&BuilderQuery]) -> Key {
        let normal: Vec<BuilderQuery> = qs
            .iter()
            .map(|q| BuilderQuery {
                name: String::new(),
                order: crate::builder::Order::default(),
                limit: None,
                hidden: false,
                ..(*q).clone()
            })
            .collect();
        Key {
            scope: scope.clone(),
            table,
            step_ms,
            // Serializing plain data cannot fail; an empty key would only never match.
            statement: serde_json::to_string(&normal).unwrap_or_default(),
        }
    }
}

/// The rows of the whole buckets `[first_ns, end_ns)` of a statement, as of `version`.
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    pub first_ns: i64,
    pub end_ns: i64,
    pub version: u64,
    pub rows: SqlOutput,
}

/// One entry holds at most this share of the budget.
const ENTRY_SHARE: usize = 4;

impl BucketCache {
    /// A cache of at most `budget_bytes` of rows; 0 keeps nothing.
    pub fn new(budget_bytes: usize) -> BucketCache {
        BucketCache {
            budget: budget_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map stays consistent at every step, so a panic elsewhere leaves it usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.inner();
        CacheStats {
            entries: inner.entries.len(),
            bytes: inner.bytes,
            hits: inner.hits,
            misses: inner.misses,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.budget > 0
    }

    pub(crate) fn get(&self, key: &Key) -> Option<Kept> {
        let mut inner = self.inner();
        inner.tick += 1;
        let tick = inner.tick;
        let e = inner.entries.get_mut(key)?;
        e.used = tick;
        Some(e.kept.clone())
    }

    pub(crate) fn count(&self, hit: bool) {
        let mut inner = self.inner();
        if hit {
            inner.hits += 1;
        } else {
            inner.misses += 1;
        }
    }

    /// Keeps `kept` as the answer of `key`, replacing what was there, then drops the least
    /// recently used entries until the cache fits its budget.
    pub(crate) fn put(&self, key: Key, kept: Kept) {
        let bytes = entry_bytes(&key, &kept);
        let mut inner = self.inner();
        if let Some(old) = inner.entries.remove(&key) {
            inner.bytes -= old.bytes;
        }
        if bytes > self.budget / ENTRY_SHARE {
            return;
        }
        inner.tick += 1;
        let used = inner.tick;
        inner.bytes += bytes;
        inner.entries.insert(key, Entry { kept, bytes, used });
        while inner.bytes > self.budget {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.bytes -= e.bytes;
            }
        }
    }
}

/// What an entry counts against the budget: its rows' buffers and its key's text.
fn entry_bytes(key: &Key, kept: &Kept) -> usize {
    key.statement.len()
        + kept
            .rows
            .batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum::<usize>()
}

/// The whole buckets of `[from_ns, to_ns)`: `[first, end)` on bucket edges, `None` when the
/// range holds no whole bucket.
pub(crate) fn whole_buckets(from_ns: i64, to_ns: i64, step_ns: i64) -> Option<(i64, i64)> {
    let first = from_ns.div_euclid(step_ns) * step_ns
        + if from_ns.rem_euclid(step_ns) == 0 {
            0
        } else {
            step_ns
        };
    let end = to_ns.div_euclid(step_ns) * step_ns;
    (first < end).then_some((first, end))
}

/// The buckets of `kept` still valid after `changes`, within `want`: `[first, end)`, or `None`.
pub(crate) fn reusable(
    kept: &Kept,
    changes: Changes,
    want: (i64, i64),
    step_ns: i64,
) -> Option<(i64, i64)> {
    let valid_end = match changes {
        Changes::Nothing => kept.end_ns,
        // The bucket a changed row falls in, and every later one, are stale.
        Changes::From(ts) => kept.end_ns.min(ts.div_euclid(step_ns) * step_ns),
        Changes::Unknown => return None,
    };
    let first = kept.first_ns.max(want.0);
    let end = valid_end.min(want.1);
    (first < end).then_some((first, end))
}

/// The rows of `rows` whose `time` bucket starts in `[first_ns, end_ns)`.
pub(crate) fn rows_in(
    rows: &SqlOutput,
    first_ns: i64,
    end_ns: i64,
) -> Result<Vec<RecordBatch>, QueryError> {
    let mut out = Vec::with_capacity(rows.batches.len());
    for (b, batch) in rows.batches.iter().enumerate() {
        let time = crate::builder::time_column(rows, b, "time")?;
        let keep: BooleanArray = (0..time.len())
            .map(|i| Some(time.is_valid(i) && (first_ns..end_ns).contains(&time.value(i))))
            .collect();
        let kept =
            filter_record_batch(batch, &keep).map_err(|e| QueryError::Internal(e.to_string()))?;
        if kept.num_rows() > 0 {
            out.push(kept);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    const MIN: i64 = 60_000_000_000;

    fn rows(times: &[i64]) -> SqlOutput {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("value_0", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(TimestampNanosecondArray::from(times.to_vec()).with_timezone("UTC")),
                Arc::new(Float64Array::from(vec![1.0; times.len()])),
            ],
        )
        .expect("batch");
        SqlOutput {
            schema,
            batches: vec![batch],
            truncated: false,
        }
    }

    fn kept(first: i64, end: i64, bytes_of: &[i64]) -> Kept {
        Kept {
            first_ns: first,
            end_ns: end,
            version: 1,
            rows: rows(bytes_of),
        }
    }

    fn key(n: i64) -> Key {
        let scope = Scope {
            organization_id: "o".into(),
            workspace_id: "w".into(),
            tenant_id: "t".into(),
        };
        Key::new(&scope, Table::Metrics, n, &[])
    }

    #[test]
    fn whole_buckets_leave_out_partial_edges() {
        assert_eq!(whole_buckets(0, 60 * MIN, MIN), Some((0, 60 * MIN)));
        assert_eq!(
            whole_buckets(30 * 1_000_000_000, 60 * MIN + 5, MIN),
            Some((MIN, 60 * MIN))
        );
        assert_eq!(whole_buckets(-30 * 1_000_000_000, MIN, MIN), Some((0, MIN)));
        assert_eq!(whole_buckets(1, MIN + 1, MIN), None);
    }

    #[test]
    fn changed_rows_make_their_bucket_and_later_ones_stale() {
        let k = kept(0, 60 * MIN, &[]);
        let want = (MIN, 61 * MIN);
        assert_eq!(
            reusable(&k, Changes::Nothing, want, MIN),
            Some((MIN, 60 * MIN))
        );
        // A row at 30m10s: bucket 30m onwards is recomputed.
        assert_eq!(
            reusable(&k, Changes::From(30 * MIN + 10), want, MIN),
            Some((MIN, 30 * MIN))
        );
        assert_eq!(reusable(&k, Changes::From(MIN + 1), want, MIN), None);
        assert_eq!(reusable(&k, Changes::From(-5), want, MIN), None);
        assert_eq!(reusable(&k, Changes::Unknown, want, MIN), None);
        // A range after everything kept reuses nothing.
        assert_eq!(
            reusable(&k, Changes::Nothing, (60 * MIN, 70 * MIN), MIN),
            None
        );
    }

    #[test]
    fn rows_in_keeps_the_buckets_asked_for() {
        let r = rows(&[0, MIN, 2 * MIN, 3 * MIN]);
        let kept = rows_in(&r, MIN, 3 * MIN).expect("rows");
        let n: usize = kept.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(n, 2);
        assert!(rows_in(&r, 10 * MIN, 11 * MIN).expect("rows").is_empty());
    }

    #[test]
    fn the_least_recently_used_entry_goes_first_and_a_zero_budget_keeps_nothing() {
        let size = entry_bytes(&key(1), &kept(0, MIN, &[0; 100]));
        let cache = BucketCache::new(size * 4 + size / 2);
        for n in 1..=4 {
            cache.put(key(n), kept(0, MIN, &[0; 100]));
        }
        assert_eq!(cache.stats().entries, 4);
        // 1 is used again, so 2 is the least recently used when a fifth comes.
        assert!(cache.get(&key(1)).is_some());
        cache.put(key(5), kept(0, MIN, &[0; 100]));
        assert_eq!(cache.stats().entries, 4);
        assert!(cache.get(&key(2)).is_none());
        assert!(cache.get(&key(1)).is_some());
        assert!(cache.stats().bytes <= size * 4 + size / 2);
        // Replacing an entry does not count it twice.
        cache.put(key(5), kept(0, MIN, &[0; 100]));
        assert_eq!(cache.stats().entries, 4);

        // An entry larger than a quarter of the budget is not kept.
        let small = BucketCache::new(size * 2);
        small.put(key(1), kept(0, MIN, &[0; 100]));
        assert_eq!(small.stats().entries, 0);

        let off = BucketCache::new(0);
        assert!(!off.enabled());
        off.put(key(1), kept(0, MIN, &[0; 100]));
        assert_eq!(off.stats().entries, 0);
    }
}

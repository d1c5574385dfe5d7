//! What changed in a table since a version: the port answers of past time buckets are kept by
//! (`query::BucketCache`).
//!
//! Every write that becomes visible, and every removal, is a new version of its table, recorded
//! with the oldest timestamp of its rows. Asked about a version, the log answers the oldest
//! timestamp among the changes after it. It keeps only marks that can still be that answer: a
//! mark with a newer timestamp than a later one never is (the later one is older and newer in
//! version), so the marks' timestamps grow with their versions and the answer is the first mark
//! after the version asked about. Past [`MAX_MARKS`] the two oldest marks merge into one that
//! keeps the older timestamp: a version between them then gets an older answer than the truth,
//! which only recomputes more.

use std::collections::VecDeque;

use query::Changes;

/// Marks kept per table.
const MAX_MARKS: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct ChangeLog {
    version: u64,
    /// `(version, oldest timestamp)`, both strictly growing.
    marks: VecDeque<(u64, i64)>,
}

impl ChangeLog {
    pub fn version(&self) -> u64 {
        self.version
    }

    /// A change whose rows are at `oldest_ns` or later.
    pub fn record(&mut self, oldest_ns: i64) {
        self.version += 1;
        while self.marks.back().is_some_and(|&(_, ts)| ts >= oldest_ns) {
            self.marks.pop_back();
        }
        self.marks.push_back((self.version, oldest_ns));
        if self.marks.len() > MAX_MARKS
            && let Some((_, oldest)) = self.marks.pop_front()
            && let Some(front) = self.marks.front_mut()
        {
            front.1 = oldest;
        }
    }

    pub fn since(&self, version: u64) -> Changes {
        if version > self.version {
            // Not a version of this log (a store opened again): say nothing is known.
            return Changes::Unknown;
        }
        let i = self.marks.partition_point(|&(v, _)| v <= version);
        match self.marks.get(i) {
            Some(&(_, ts)) => Changes::From(ts),
            None => Changes::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The truth the log approximates: the oldest timestamp among changes after `version`.
    fn truth(writes: &[i64], version: u64) -> Changes {
        writes
            .iter()
            .skip(usize::try_from(version).unwrap_or(usize::MAX))
            .min()
            .map_or(Changes::Nothing, |&ts| Changes::From(ts))
    }

    #[test]
    fn answers_the_oldest_timestamp_written_since() {
        let writes = [100, 50, 300, 200, 400, 10, 500];
        let mut log = ChangeLog::default();
        for &w in &writes {
            log.record(w);
        }
        assert_eq!(log.version(), 7);
        for v in 0..=7 {
            assert_eq!(log.since(v), truth(&writes, v), "since {v}");
        }
        assert_eq!(log.since(8), Changes::Unknown);
    }

    #[test]
    fn past_its_marks_it_answers_older_never_newer() {
        let mut log = ChangeLog::default();
        let writes: Vec<i64> = (0..3 * MAX_MARKS as i64).collect();
        for &w in &writes {
            log.record(w);
        }
        assert!(log.marks.len() <= MAX_MARKS);
        for v in 0..=log.version() {
            match (log.since(v), truth(&writes, v)) {
                (Changes::From(got), Changes::From(want)) => assert!(got <= want, "since {v}"),
                (got, want) => assert_eq!(got, want, "since {v}"),
            }
        }
        // Recent versions stay exact.
        let last = log.version();
        assert_eq!(log.since(last - 1), truth(&writes, last - 1));
    }
}

//! Recently flushed files, kept decoded in memory: a flush already holds the rows it writes, so
//! it keeps them (up to [`crate::EmbeddedConfig::hot_bytes`]) and queries read those files'
//! rows from memory instead of opening and decoding the Parquet. The newest files stay; the
//! oldest go first. Alert rules and live dashboards, which read the last minutes again and
//! again, are what this is for.
//!
//! The rows kept are exactly the file's (the same batches the writer wrote); only their order
//! may differ after a compaction, and no query relies on row order. An entry lives only while
//! its file is in the manifest.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use arrow::array::RecordBatch;

use crate::manifest::Manifest;

#[derive(Debug, Default)]
pub(crate) struct HotFiles {
    budget: usize,
    bytes: usize,
    /// Path (relative to the store) → the file's rows and their size in memory.
    files: HashMap<String, (Arc<[RecordBatch]>, usize)>,
    /// Paths, oldest first.
    order: VecDeque<String>,
}

fn size(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::get_array_memory_size).sum()
}

impl HotFiles {
    pub fn new(budget: usize) -> HotFiles {
        HotFiles {
            budget,
            ..HotFiles::default()
        }
    }

    pub fn get(&self, path: &str) -> Option<&Arc<[RecordBatch]>> {
        self.files.get(path).map(|(b, _)| b)
    }

    /// Keeps a file's rows, dropping the oldest files beyond the budget. A file larger than
    /// the whole budget is not kept.
    pub fn insert(&mut self, path: String, batches: Vec<RecordBatch>) {
        let bytes = size(&batches);
        if bytes > self.budget || self.files.contains_key(&path) {
            return;
        }
        self.bytes += bytes;
        self.files.insert(path.clone(), (batches.into(), bytes));
        self.order.push_back(path);
        while self.bytes > self.budget {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some((_, b)) = self.files.remove(&oldest) {
                self.bytes -= b;
            }
        }
    }

    /// The rows of all `paths` together, if every one is kept (a compaction's sources: their
    /// rows are the merged file's).
    pub fn union(&self, paths: &[String]) -> Option<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for p in paths {
            out.extend(self.get(p)?.iter().cloned());
        }
        Some(out)
    }

    /// Drops the files `manifest` no longer lists (compacted, expired).
    pub fn retain_listed(&mut self, manifest: &Manifest) {
        let listed: HashSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        let mut freed = 0;
        self.files.retain(|p, (_, b)| {
            let keep = listed.contains(p.as_str());
            if !keep {
                freed += *b;
            }
            keep
        });
        self.bytes -= freed;
        let files = &self.files;
        self.order.retain(|p| files.contains_key(p));
    }

    /// Files kept and their bytes in memory.
    pub fn stats(&self) -> (usize, usize) {
        (self.files.len(), self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    fn batch(rows: usize) -> RecordBatch {
        RecordBatch::try_from_iter([(
            "v",
            Arc::new(Int64Array::from(vec![1i64; rows])) as arrow::array::ArrayRef,
        )])
        .expect("batch")
    }

    fn manifest(paths: &[&str]) -> Manifest {
        Manifest {
            files: paths
                .iter()
                .map(|p| crate::manifest::FileMeta {
                    path: (*p).to_string(),
                    table: "metrics_v3".into(),
                    min_ts: 0,
                    max_ts: 0,
                    rows: 0,
                    bytes: 0,
                })
                .collect(),
            ..Manifest::default()
        }
    }

    #[test]
    fn the_oldest_files_leave_first_and_nothing_exceeds_the_budget() {
        let one = size(&[batch(1000)]);
        let mut hot = HotFiles::new(one * 2 + one / 2);
        hot.insert("a".into(), vec![batch(1000)]);
        hot.insert("b".into(), vec![batch(1000)]);
        assert_eq!(hot.stats(), (2, one * 2));
        hot.insert("c".into(), vec![batch(1000)]);
        assert!(hot.get("a").is_none());
        assert!(hot.get("b").is_some() && hot.get("c").is_some());
        // Larger than the whole budget: not kept, nothing evicted for it.
        hot.insert("huge".into(), vec![batch(10_000)]);
        assert!(hot.get("huge").is_none());
        assert_eq!(hot.stats(), (2, one * 2));
        assert_eq!(
            hot.union(&["b".into(), "c".into()]).map(|b| b.len()),
            Some(2)
        );
        assert!(hot.union(&["a".into(), "c".into()]).is_none());
    }

    #[test]
    fn files_no_longer_listed_are_dropped() {
        let mut hot = HotFiles::new(usize::MAX);
        hot.insert("a".into(), vec![batch(10)]);
        hot.insert("b".into(), vec![batch(10)]);
        hot.retain_listed(&manifest(&["b", "z"]));
        assert!(hot.get("a").is_none());
        assert_eq!(hot.stats(), (1, size(&[batch(10)])));
        hot.insert("c".into(), vec![batch(10)]);
        assert_eq!(hot.stats().0, 2);
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let mut hot = HotFiles::new(0);
        hot.insert("a".into(), vec![batch(10)]);
        assert_eq!(hot.stats(), (0, 0));
    }
}

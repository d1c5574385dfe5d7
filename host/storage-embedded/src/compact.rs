//! Compaction: the flusher writes one small file per table and day at every flush; once a day
//! has `compact_min_files` small files they are streamed into one. The manifest switches from
//! the old files to the new one atomically; the old files are deleted a grace period later, so
//! queries planned against them can finish.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::Shared;
use crate::manifest::FileMeta;
use crate::parquet_files::{finish_file, writer_properties};

/// Merges small files, one table/day group per call at most. Returns the files it replaced
/// (to be deleted after the grace period).
pub(crate) fn compact_once(shared: &Shared) -> std::io::Result<Vec<PathBuf>> {
    let _guard = shared.manifest_lock.lock();
    let manifest = shared.state.read().manifest.clone();
    let mut groups: BTreeMap<String, Vec<&FileMeta>> = BTreeMap::new();
    for f in &manifest.files {
        if f.bytes >= shared.config.compact_small_file_bytes {
            continue;
        }
        let dir = f.path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        groups.entry(dir).or_default().push(f);
    }
    let Some((dir, sources)) = groups
        .into_iter()
        .find(|(_, files)| files.len() >= shared.config.compact_min_files)
    else {
        return Ok(Vec::new());
    };
    let Some(schema) = sources[0].schema() else {
        return Ok(Vec::new());
    };
    let table_name = sources[0].table.clone();
    let name = format!(
        "{:012}-c{}.parquet",
        manifest.flushed_segment,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let abs_dir = shared.dir.join(&dir);
    let tmp = abs_dir.join(format!("{name}.tmp"));
    let file = std::fs::File::create(&tmp)?;
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(writer_properties()?))
        .map_err(std::io::Error::other)?;
    let (mut rows, mut min_ts, mut max_ts) = (0u64, i64::MAX, i64::MIN);
    for src in &sources {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(
            shared.dir.join(&src.path),
        )?)
        .map_err(std::io::Error::other)?
        .with_batch_size(65_536)
        .build()
        .map_err(std::io::Error::other)?;
        for batch in reader {
            let batch = batch.map_err(std::io::Error::other)?;
            writer.write(&batch).map_err(std::io::Error::other)?;
        }
        rows += src.rows;
        min_ts = min_ts.min(src.min_ts);
        max_ts = max_ts.max(src.max_ts);
    }
    let bytes = finish_file(writer, &tmp, &abs_dir.join(&name))?;

    let replaced: Vec<String> = sources.iter().map(|f| f.path.clone()).collect();
    let merged_path = format!("{dir}/{name}");
    let merged = FileMeta {
        path: merged_path.clone(),
        table: table_name,
        min_ts,
        max_ts,
        rows,
        bytes,
    };
    let mut next = shared.state.read().manifest.clone();
    next.files.retain(|f| !replaced.contains(&f.path));
    next.files.push(merged);
    next.store(&shared.dir)?;
    {
        let mut state = shared.state.write();
        // The merged file holds exactly its sources' rows: if all were kept, so is it.
        let kept = state.hot.union(&replaced);
        state.set_manifest(next);
        if let Some(batches) = kept {
            state.hot.insert(merged_path, batches);
        }
    }
    tracing::debug!(dir = %dir, files = replaced.len(), rows, "compacted");
    Ok(replaced.iter().map(|p| shared.dir.join(p)).collect())
}

/// Deletes replaced files whose grace period is over.
pub(crate) fn bury(graveyard: &mut Vec<(std::time::Instant, PathBuf)>, grace: std::time::Duration) {
    graveyard.retain(|(when, path)| {
        if when.elapsed() < grace {
            return true;
        }
        let _ = std::fs::remove_file(path);
        false
    });
}

//! The manifest: the one source of truth for which columnar files are live.
//!
//! Files not listed are leftovers of an interrupted flush and are deleted at start; WAL segments
//! up to `flushed_segment` are fully represented by listed files and are deleted too.

use std::io::Write;
use std::path::Path;

use model::Table;
use serde::{Deserialize, Serialize};

use crate::wal::sync_dir;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FileMeta {
    /// Path relative to the store directory.
    pub path: String,
    pub table: String,
    /// Smallest and largest `timestamp` in the file, in nanoseconds.
    pub min_ts: i64,
    pub max_ts: i64,
    pub rows: u64,
    pub bytes: u64,
}

impl FileMeta {
    pub fn table(&self) -> Option<Table> {
        Table::from_name(&self.table)
    }

    /// The schema of the file's rows: its table's or its rollup's.
    pub fn schema(&self) -> Option<arrow::datatypes::SchemaRef> {
        match self.table() {
            Some(t) => Some(model::schema_of(t)),
            None => crate::rollups::rollup_named(&self.table).map(model::rollup_schema),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub version: u32,
    /// Every WAL segment numbered up to this one is in `files`.
    pub flushed_segment: u64,
    pub files: Vec<FileMeta>,
}

const NAME: &str = "MANIFEST.json";

impl Manifest {
    pub fn load(dir: &Path) -> std::io::Result<Manifest> {
        match std::fs::read(dir.join(NAME)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest {
                version: 1,
                ..Manifest::default()
            }),
            Err(e) => Err(e),
        }
    }

    /// Replaces the manifest atomically (write, fsync, rename, fsync directory).
    pub fn store(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join("MANIFEST.json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, dir.join(NAME))?;
        sync_dir(dir)
    }
}

//! The embedded telemetry store: no server, just a directory.
//!
//! ```text
//! write ──► WAL entry (Arrow IPC, crc) ──► group commit: append + fdatasync ──► memtable ──► ack
//!                                                                                  │ rotate
//!            Parquet per table/day (sorted by tenant) ◄── flusher thread ◄── frozen memtable
//!            MANIFEST.json names the live files and the last WAL segment they cover
//! ```
//!
//! - **Acknowledged means durable**: a write returns only after its entry is fsynced. Writes that
//!   arrive together share one fsync (group commit).
//! - **Readable at once**: acknowledged rows sit in the memtable until flushed; reads see the
//!   memtable, frozen memtables being flushed, and the manifest's files, as one table.
//! - **Crash safety**: at start, files the manifest does not name are deleted, segments it covers
//!   are deleted, the rest of the WAL is replayed. So a crash during a flush neither loses nor
//!   duplicates rows.
//! - **Compaction** streams a day's small files into one (module `compact`).
//! - **Retention** drops whole files once all their rows are older than the table's TTL.
//! - **Backpressure**: a full write queue or too much unflushed memory is
//!   [`StoreError::Overloaded`], before anything is written.
//! - **Versions**: each table counts the writes that became visible and the removals, with the
//!   oldest timestamp of each (module `changes`), so a query cache knows which of its time
//!   buckets are still the store's answer.

mod changes;
mod compact;
mod hot;
mod manifest;
mod parquet_files;
mod provider;
mod rollups;
mod wal;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::TableProvider;
use datafusion::error::DataFusionError;
use model::{Rollup, Table};
use parking_lot::{Mutex, RwLock};
use query::TelemetryTables;
use storage::{
    DedupWindow, RawExport, Reconvert, StoreError, StoreStats, TableStats, TelemetryStore,
    rows_dedup_token,
};
use tokio::sync::{oneshot, watch};

use manifest::{FileMeta, Manifest};
use wal::Segment;

/// Tuning of the embedded store. The defaults suit a laptop and a small server alike.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Directory of the store (the server uses `<data-dir>/telemetry`).
    pub dir: PathBuf,
    /// A memtable older than this is flushed to Parquet.
    pub flush_interval: Duration,
    /// A memtable larger than this (Arrow bytes) is flushed to Parquet.
    pub flush_bytes: usize,
    /// Unflushed bytes beyond which writes are refused as overloaded.
    pub max_unflushed_bytes: usize,
    /// Writes waiting for the WAL beyond which new ones are refused as overloaded.
    pub queue_depth: usize,
    /// Days of data kept per table.
    pub retention_days: BTreeMap<Table, u32>,
    /// How often retention runs.
    pub retention_check: Duration,
    /// A table/day with this many small files gets them merged into one.
    pub compact_min_files: usize,
    /// Files smaller than this count as small.
    pub compact_small_file_bytes: u64,
    /// How long replaced files stay on disk for queries already reading them.
    pub compact_grace: Duration,
    /// Memory (Arrow bytes) for the rows of the most recently flushed files, which queries
    /// then read without opening the Parquet (module `hot`). 0 turns it off.
    pub hot_bytes: usize,
}

impl EmbeddedConfig {
    pub fn new(dir: impl Into<PathBuf>) -> EmbeddedConfig {
        EmbeddedConfig {
            dir: dir.into(),
            flush_interval: Duration::from_secs(30),
            flush_bytes: 256 << 20,
            max_unflushed_bytes: 1 << 30,
            queue_depth: 4096,
            retention_days: Table::ALL
                .into_iter()
                .map(|t| (t, t.default_retention_days()))
                .collect(),
            retention_check: Duration::from_secs(300),
            compact_min_files: 16,
            compact_small_file_bytes: 16 << 20,
            compact_grace: Duration::from_secs(60),
            hot_bytes: 128 << 20,
        }
    }
}

#[derive(Default)]
struct MemTable {
    tables: BTreeMap<Table, Vec<RecordBatch>>,
    bytes: usize,
}

struct Frozen {
    upto_segment: u64,
    tables: BTreeMap<Table, Vec<RecordBatch>>,
    bytes: usize,
}

struct State {
    active: MemTable,
    frozen: Vec<Arc<Frozen>>,
    manifest: Manifest,
    /// Rows of recently flushed files, by path.
    hot: hot::HotFiles,
    /// Per table: its version and what each change touched.
    changes: BTreeMap<Table, changes::ChangeLog>,
}

impl State {
    /// Makes `manifest` the live one; kept rows of files it no longer lists go.
    fn set_manifest(&mut self, manifest: Manifest) {
        self.hot.retain_listed(&manifest);
        self.manifest = manifest;
    }
}

struct Shared {
    dir: PathBuf,
    wal_dir: PathBuf,
    config: EmbeddedConfig,
    state: RwLock<State>,
    /// Held across every read-modify-write of the manifest (flush, compaction, retention),
    /// which run on different threads.
    manifest_lock: Mutex<()>,
    flushed: watch::Sender<u64>,
    closed: AtomicBool,
    wal_bytes: AtomicU64,
    /// Tokens of recent acknowledged writes: a retried write is acknowledged again, not stored
    /// twice. Rebuilt from the logged requests on replay.
    recent: Mutex<DedupWindow>,
}

/// How many recent writes a retry is recognised among.
const DEDUP_WINDOW: usize = 100_000;

enum Cmd {
    Write {
        entry: Vec<u8>,
        batches: Vec<(Table, RecordBatch)>,
        ack: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Freeze the memtable now; answers with the segment a flush must reach (0: nothing to do).
    Rotate(oneshot::Sender<u64>),
    Stop,
}

/// The embedded store. Cheap to share behind an `Arc`.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    tx: SyncSender<Cmd>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

/// What recovery found at start.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    pub replayed_entries: u64,
    /// Logged requests that could not be converted again (logged loudly; should stay 0).
    pub unreplayable_entries: u64,
    pub truncated_bytes: u64,
    pub removed_orphan_files: u64,
}

impl EmbeddedStore {
    /// Flushed files whose rows queries read from memory, and the Arrow bytes they take
    /// (bounded by [`EmbeddedConfig::hot_bytes`]).
    pub fn hot_files(&self) -> (usize, usize) {
        self.shared.state.read().hot.stats()
    }

    /// Opens (or creates) the store in `config.dir`, recovering from any crash.
    ///
    /// # Errors
    /// When the directory cannot be read or written.
    ///
    /// `reconvert` turns logged requests back into rows during replay (see
    /// [`TelemetryStore::write_export`]); without it a log holding requests cannot be replayed
    /// and opening fails rather than losing them.
    pub fn open(
        config: EmbeddedConfig,
        reconvert: Option<Reconvert>,
    ) -> Result<(Arc<EmbeddedStore>, Recovery), StoreError> {
        let dir = config.dir.clone();
        let wal_dir = dir.join("wal");
        std::fs::create_dir_all(&wal_dir)?;
        let manifest = Manifest::load(&dir)?;
        let mut recovery = Recovery {
            removed_orphan_files: remove_orphans(&dir, &manifest)?,
            ..Recovery::default()
        };

        let mut active = MemTable::default();
        let mut recent = DedupWindow::new(DEDUP_WINDOW);
        let mut last = manifest.flushed_segment;
        let mut wal_bytes = 0;
        for seg in wal::list_segments(&wal_dir)? {
            let path = wal::segment_path(&wal_dir, seg);
            if seg <= manifest.flushed_segment {
                std::fs::remove_file(&path)?;
                continue;
            }
            let (entries, cut) = wal::replay_segment(&path)?;
            recovery.truncated_bytes += cut;
            recovery.replayed_entries += entries.len() as u64;
            wal_bytes += std::fs::metadata(&path)?.len();
            for entry in entries {
                match entry {
                    wal::Replayed::Rows(rows) => append(&mut active, rows),
                    wal::Replayed::Request(raw) => {
                        recent.insert(raw.dedup_token());
                        let Some(reconvert) = &reconvert else {
                            return Err(StoreError::Internal(
                                "the write-ahead log holds logged requests but no converter was given".into(),
                            ));
                        };
                        match reconvert(&raw) {
                            Ok(rows) => append(&mut active, rows),
                            Err(e) => {
                                tracing::error!(error = %e, segment = seg, "cannot convert a logged request again; skipping it");
                                recovery.unreplayable_entries += 1;
                            }
                        }
                    }
                }
            }
            last = last.max(seg);
        }
        let segment = Segment::create(&wal_dir, last + 1)?;
        let (flushed, _) = watch::channel(manifest.flushed_segment);
        let shared = Arc::new(Shared {
            dir,
            wal_dir,
            state: RwLock::new(State {
                active,
                frozen: Vec::new(),
                manifest,
                hot: hot::HotFiles::new(config.hot_bytes),
                changes: BTreeMap::new(),
            }),
            manifest_lock: Mutex::new(()),
            flushed,
            closed: AtomicBool::new(false),
            wal_bytes: AtomicU64::new(wal_bytes),
            recent: Mutex::new(recent),
            config,
        });
        let (tx, rx) = sync_channel(shared.config.queue_depth);
        let (flush_tx, flush_rx) = sync_channel::<Arc<Frozen>>(64);
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("tf-wal-writer".into())
                .spawn(move || writer_loop(&shared, segment, &rx, &flush_tx))?
        };
        let flusher = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("tf-flusher".into())
                .spawn(move || flusher_loop(&shared, &flush_rx))?
        };
        let store = Arc::new(EmbeddedStore {
            shared,
            tx,
            threads: Mutex::new(vec![writer, flusher]),
        });
        Ok((store, recovery))
    }

    /// Flushes everything, stops the background threads and refuses further writes.
    ///
    /// # Errors
    /// When the final flush fails; acknowledged data then stays in the WAL for the next start.
    pub async fn close(&self) -> Result<(), StoreError> {
        let flushed = self.flush().await;
        self.shared.closed.store(true, Ordering::SeqCst);
        let tx = self.tx.clone();
        let handles: Vec<JoinHandle<()>> = std::mem::take(&mut *self.threads.lock());
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(Cmd::Stop);
            for h in handles {
                let _ = h.join();
            }
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?;
        flushed
    }

    /// Runs retention now (it also runs periodically). Returns how many files were dropped.
    ///
    /// # Errors
    /// When the manifest cannot be rewritten.
    pub fn apply_retention(&self, now: SystemTime) -> Result<usize, StoreError> {
        Ok(retention(&self.shared, now)?)
    }

    /// Runs one compaction step now (it also runs after flushes). Returns how many files it
    /// merged; they are deleted at once.
    ///
    /// # Errors
    /// When reading, writing or the manifest fails; the old files then stay live.
    pub fn compact_now(&self) -> Result<usize, StoreError> {
        let replaced = compact::compact_once(&self.shared)?;
        for p in &replaced {
            let _ = std::fs::remove_file(p);
        }
        Ok(replaced.len())
    }

    /// How many Parquet files of `table` are live (named by the manifest).
    pub fn live_files(&self, table: Table) -> usize {
        let state = self.shared.state.read();
        state
            .manifest
            .files
            .iter()
            .filter(|f| f.table() == Some(table))
            .count()
    }

    /// Refuses a write up front when closed or when flushing is behind.
    fn admit(&self) -> Result<(), StoreError> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        let state = self.shared.state.read();
        let unflushed = state.active.bytes + state.frozen.iter().map(|f| f.bytes).sum::<usize>();
        if unflushed > self.shared.config.max_unflushed_bytes {
            return Err(StoreError::Overloaded {
                reason: "flushing to disk is behind",
                retry_after: Duration::from_secs(2),
            });
        }
        Ok(())
    }

    /// Queues a WAL entry and its rows for the group commit and waits for the fsync; a write
    /// whose token was acknowledged recently is acknowledged without storing it again.
    async fn submit(
        &self,
        entry: Vec<u8>,
        batches: Vec<(Table, RecordBatch)>,
        token: u128,
    ) -> Result<(), StoreError> {
        if self.shared.recent.lock().contains(token) {
            return Ok(());
        }
        self.submit_entry(entry, batches).await?;
        self.shared.recent.lock().insert(token);
        Ok(())
    }

    async fn submit_entry(
        &self,
        entry: Vec<u8>,
        batches: Vec<(Table, RecordBatch)>,
    ) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        match self.tx.try_send(Cmd::Write {
            entry,
            batches,
            ack,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(StoreError::Overloaded {
                    reason: "write queue is full",
                    retry_after: Duration::from_secs(1),
                });
            }
            Err(TrySendError::Disconnected(_)) => return Err(StoreError::Closed),
        }
        done.await.map_err(|_| StoreError::Closed)?
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

fn append(mem: &mut MemTable, batches: Vec<(Table, RecordBatch)>) {
    for (table, batch) in batches {
        mem.bytes += batch.get_array_memory_size();
        mem.tables.entry(table).or_default().push(batch);
    }
}

/// The oldest `timestamp` of a batch's rows (every table has one); the oldest possible when
/// it cannot be read, which only makes a cache recompute more.
fn oldest_timestamp(batch: &RecordBatch) -> i64 {
    batch
        .column_by_name("timestamp")
        .and_then(|c| {
            c.as_any()
                .downcast_ref::<arrow::array::TimestampNanosecondArray>()
        })
        .map_or(Some(i64::MIN), arrow::compute::min)
        .unwrap_or(i64::MAX)
}

fn remove_orphans(dir: &Path, manifest: &Manifest) -> std::io::Result<u64> {
    let live: std::collections::HashSet<&str> =
        manifest.files.iter().map(|f| f.path.as_str()).collect();
    let mut removed = 0;
    let names = Table::ALL
        .iter()
        .map(|t| t.name())
        .chain(Rollup::ALL.iter().map(|r| r.name()));
    for name in names {
        let tdir = dir.join(name);
        let Ok(days) = std::fs::read_dir(&tdir) else {
            continue;
        };
        for day in days {
            let day = day?;
            if !day.file_type()?.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(day.path())? {
                let file = file?;
                let rel = format!(
                    "{}/{}/{}",
                    name,
                    day.file_name().to_string_lossy(),
                    file.file_name().to_string_lossy()
                );
                if !live.contains(rel.as_str()) {
                    std::fs::remove_file(file.path())?;
                    removed += 1;
                }
            }
        }
    }
    Ok(removed)
}

fn writer_loop(
    shared: &Shared,
    mut segment: Segment,
    rx: &Receiver<Cmd>,
    flush_tx: &SyncSender<Arc<Frozen>>,
) {
    let mut since = Instant::now();
    let tick = shared.config.flush_interval.min(Duration::from_secs(1));
    loop {
        let first = match rx.recv_timeout(tick) {
            Ok(cmd) => Some(cmd),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut writes = Vec::new();
        let mut rotations = Vec::new();
        let mut stop = false;
        let mut pending_bytes = 0usize;
        let mut next = first;
        while let Some(cmd) = next {
            match cmd {
                Cmd::Write {
                    entry,
                    batches,
                    ack,
                } => {
                    pending_bytes += entry.len();
                    writes.push((entry, batches, ack));
                }
                Cmd::Rotate(ack) => rotations.push(ack),
                Cmd::Stop => stop = true,
            }
            if stop || pending_bytes > 16 << 20 {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !writes.is_empty() {
            commit(shared, &mut segment, writes);
        }
        let due = {
            let state = shared.state.read();
            state.active.bytes >= shared.config.flush_bytes
                || (since.elapsed() >= shared.config.flush_interval && state.active.bytes > 0)
        };
        if due || !rotations.is_empty() || stop {
            let upto = match rotate(shared, &mut segment, flush_tx) {
                Ok(upto) => upto,
                Err(e) => {
                    tracing::error!(error = %e, "cannot rotate the write-ahead log");
                    0
                }
            };
            since = Instant::now();
            for ack in rotations {
                let _ = ack.send(upto);
            }
        }
        if stop {
            return;
        }
    }
}

type Ack = oneshot::Sender<Result<(), StoreError>>;

fn commit(shared: &Shared, segment: &mut Segment, writes: Vec<(Vec<u8>, wal::Entry, Ack)>) {
    let before = segment.bytes;
    let mut result = Ok(());
    for (entry, _, _) in &writes {
        if let Err(e) = segment.append(entry) {
            result = Err(e);
            break;
        }
    }
    if result.is_ok() {
        result = segment.sync();
    }
    match result {
        Ok(()) => {
            shared
                .wal_bytes
                .fetch_add(segment.bytes - before, Ordering::Relaxed);
            let mut acks = Vec::with_capacity(writes.len());
            let touched: Vec<(Table, i64)> = writes
                .iter()
                .flat_map(|(_, batches, _)| batches.iter())
                .map(|(table, batch)| (*table, oldest_timestamp(batch)))
                .collect();
            {
                let mut state = shared.state.write();
                for (_, batches, ack) in writes {
                    append(&mut state.active, batches);
                    acks.push(ack);
                }
                // In the same lock step as the rows become readable: a reader that saw a
                // version saw every row written before it.
                for (table, oldest) in touched {
                    state.changes.entry(table).or_default().record(oldest);
                }
            }
            for ack in acks {
                let _ = ack.send(Ok(()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "write-ahead log append failed; refusing the batch");
            let _ = segment.truncate_to(before);
            for (_, _, ack) in writes {
                let _ = ack.send(Err(StoreError::Io(std::io::Error::new(
                    e.kind(),
                    e.to_string(),
                ))));
            }
        }
    }
}

fn rotate(
    shared: &Shared,
    segment: &mut Segment,
    flush_tx: &SyncSender<Arc<Frozen>>,
) -> std::io::Result<u64> {
    if shared.state.read().active.bytes == 0 {
        return Ok(0);
    }
    segment.sync()?;
    let upto = segment.number;
    *segment = Segment::create(&shared.wal_dir, upto + 1)?;
    let frozen = {
        let mut state = shared.state.write();
        let mem = std::mem::take(&mut state.active);
        let frozen = Arc::new(Frozen {
            upto_segment: upto,
            tables: mem.tables,
            bytes: mem.bytes,
        });
        state.frozen.push(Arc::clone(&frozen));
        frozen
    };
    if flush_tx.send(frozen).is_err() {
        return Err(std::io::Error::other("flusher stopped"));
    }
    Ok(upto)
}

fn flusher_loop(shared: &Shared, rx: &Receiver<Arc<Frozen>>) {
    let mut last_retention = Instant::now();
    let mut graveyard: Vec<(Instant, PathBuf)> = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(frozen) => {
                let mut backoff = Duration::from_millis(100);
                loop {
                    match flush_frozen(shared, &frozen) {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::error!(error = %e, segment = frozen.upto_segment, "flush to parquet failed; retrying");
                            if shared.closed.load(Ordering::SeqCst) {
                                break;
                            }
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                compact::bury(&mut graveyard, Duration::ZERO);
                return;
            }
        }
        match compact::compact_once(shared) {
            Ok(replaced) => graveyard.extend(replaced.into_iter().map(|p| (Instant::now(), p))),
            Err(e) => tracing::error!(error = %e, "compaction failed; will retry"),
        }
        compact::bury(&mut graveyard, shared.config.compact_grace);
        if last_retention.elapsed() >= shared.config.retention_check {
            last_retention = Instant::now();
            if let Err(e) = retention(shared, SystemTime::now()) {
                tracing::error!(error = %e, "retention failed");
            }
        }
    }
}

fn flush_frozen(shared: &Shared, frozen: &Arc<Frozen>) -> std::io::Result<()> {
    let mut files = Vec::new();
    let mut rows = Vec::new();
    for (table, batches) in &frozen.tables {
        for (meta, batches) in
            parquet_files::write_table(&shared.dir, *table, batches, frozen.upto_segment)?
        {
            rows.push((meta.path.clone(), batches));
            files.push(meta);
        }
    }
    // The rollups of the points flushed, in the same manifest change as the points.
    if let Some(points) = frozen.tables.get(&Table::Metrics) {
        for rollup in Rollup::ALL {
            if let Some(batch) = rollups::partials(points, rollup).map_err(std::io::Error::other)? {
                files.push(rollups::write_partials(
                    &shared.dir,
                    rollup,
                    &batch,
                    frozen.upto_segment,
                )?);
            }
        }
    }
    let _guard = shared.manifest_lock.lock();
    let mut manifest = shared.state.read().manifest.clone();
    manifest.files.extend(files);
    manifest.flushed_segment = manifest.flushed_segment.max(frozen.upto_segment);
    manifest.store(&shared.dir)?;
    {
        let mut state = shared.state.write();
        state.set_manifest(manifest);
        // The flushed rows stay readable from memory: one step with the memtable leaving.
        for (path, batches) in rows {
            state.hot.insert(path, batches);
        }
        state.frozen.retain(|f| !Arc::ptr_eq(f, frozen));
    }
    let mut freed = 0;
    for seg in wal::list_segments(&shared.wal_dir)? {
        if seg <= frozen.upto_segment {
            let path = wal::segment_path(&shared.wal_dir, seg);
            freed += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(path)?;
        }
    }
    let _ = shared
        .wal_bytes
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
            Some(b.saturating_sub(freed))
        });
    shared.flushed.send_replace(frozen.upto_segment);
    tracing::debug!(
        segment = frozen.upto_segment,
        bytes = frozen.bytes,
        "memtable flushed"
    );
    Ok(())
}

fn retention(shared: &Shared, now: SystemTime) -> std::io::Result<usize> {
    let now_ns = now
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let expired = |f: &FileMeta| {
        let days = match (f.table(), rollups::rollup_named(&f.table)) {
            (Some(t), _) => shared.config.retention_days.get(&t).copied().unwrap_or(30),
            (None, Some(r)) => r.default_retention_days(),
            (None, None) => 30,
        };
        f.max_ts < now_ns - i64::from(days) * 86_400_000_000_000
    };
    let _guard = shared.manifest_lock.lock();
    let mut manifest = shared.state.read().manifest.clone();
    let (gone, kept): (Vec<FileMeta>, Vec<FileMeta>) =
        manifest.files.drain(..).partition(|f| expired(f));
    if gone.is_empty() {
        return Ok(0);
    }
    manifest.files = kept;
    manifest.store(&shared.dir)?;
    {
        let mut state = shared.state.write();
        state.set_manifest(manifest);
        for f in &gone {
            if let Some(table) = f.table() {
                state.changes.entry(table).or_default().record(f.min_ts);
            }
        }
    }
    for f in &gone {
        let path = shared.dir.join(&f.path);
        let _ = std::fs::remove_file(&path);
        if let Some(parent) = path.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    tracing::info!(files = gone.len(), "retention dropped expired files");
    Ok(gone.len())
}

impl TelemetryTables for EmbeddedStore {
    fn table_provider(&self, table: Table) -> Arc<dyn TableProvider> {
        Arc::new(provider::EmbeddedTable::new(
            Arc::clone(&self.shared),
            table,
        ))
    }

    fn rollup_provider(&self, rollup: Rollup) -> Result<Arc<dyn TableProvider>, DataFusionError> {
        rollups::provider(&self.shared, rollup)
    }

    fn version(&self, table: Table) -> Option<u64> {
        let state = self.shared.state.read();
        Some(
            state
                .changes
                .get(&table)
                .map_or(0, changes::ChangeLog::version),
        )
    }

    fn changes_since(&self, table: Table, version: u64) -> query::Changes {
        let state = self.shared.state.read();
        match state.changes.get(&table) {
            Some(log) => log.since(version),
            None if version == 0 => query::Changes::Nothing,
            None => query::Changes::Unknown,
        }
    }
}

#[async_trait]
impl TelemetryStore for EmbeddedStore {
    async fn write(&self, batches: Vec<(Table, RecordBatch)>) -> Result<(), StoreError> {
        if batches.is_empty() {
            return Ok(());
        }
        self.admit()?;
        let entry = wal::encode_entry(&batches).map_err(|e| StoreError::Internal(e.to_string()))?;
        let token = rows_dedup_token(&entry);
        self.submit(entry, batches, token).await
    }

    async fn write_export(
        &self,
        batches: Vec<(Table, RecordBatch)>,
        raw: RawExport,
    ) -> Result<(), StoreError> {
        if batches.is_empty() {
            return Ok(());
        }
        self.admit()?;
        let token = raw.dedup_token();
        self.submit(wal::encode_raw_entry(&raw), batches, token)
            .await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || tx.send(Cmd::Rotate(ack)))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .map_err(|_| StoreError::Closed)?;
        let upto = done.await.map_err(|_| StoreError::Closed)?;
        if upto == 0 {
            return Ok(());
        }
        let mut rx = self.shared.flushed.subscribe();
        let wait = rx.wait_for(|flushed| *flushed >= upto);
        match tokio::time::timeout(Duration::from_secs(120), wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => Err(StoreError::Internal(
                "flush did not finish within 120 s".into(),
            )),
        }
    }

    fn stats(&self) -> StoreStats {
        let state = self.shared.state.read();
        let mut per: BTreeMap<Table, (u64, u64)> =
            Table::ALL.into_iter().map(|t| (t, (0, 0))).collect();
        for f in &state.manifest.files {
            if let Some(t) = f.table()
                && let Some(e) = per.get_mut(&t)
            {
                e.0 += f.rows;
                e.1 += f.bytes;
            }
        }
        let mems =
            std::iter::once(&state.active.tables).chain(state.frozen.iter().map(|f| &f.tables));
        for tables in mems {
            for (t, batches) in tables {
                if let Some(e) = per.get_mut(t) {
                    for b in batches {
                        e.0 += b.num_rows() as u64;
                        e.1 += b.get_array_memory_size() as u64;
                    }
                }
            }
        }
        StoreStats {
            tables: per
                .into_iter()
                .map(|(table, (rows, bytes))| TableStats { table, rows, bytes })
                .collect(),
            wal_bytes: self.shared.wal_bytes.load(Ordering::Relaxed),
        }
    }

    fn is_ready(&self) -> bool {
        !self.shared.closed.load(Ordering::SeqCst)
    }

    async fn enforce_retention(&self) -> Result<u64, StoreError> {
        // Rows still in memory are younger than any retention worth having: flush first so
        // that old rows written just now are in files retention can drop.
        self.flush().await?;
        let dropped = self.apply_retention(SystemTime::now())?;
        Ok(dropped as u64)
    }
}

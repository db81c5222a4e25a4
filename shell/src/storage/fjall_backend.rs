//! [`Backend`] over fjall: one keyspace per table, staged writes committed
//! as one atomic batch, synced to disk before the batch is acknowledged.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use e2d_core::storage::{Backend, Bytes, ScanPart, StorageError, Table};

use super::drop_behind::DropBehind;
use super::{RawEntry, Space, Staged, VisitEntry};
use fjall::config::{BlockSizePolicy, CompressionPolicy};
use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode};

pub struct FjallBackend {
    db: Database,
    /// Where the database lies, named by every read that fails.
    dir: Arc<Path>,
    /// Whether the member still serves from this database: see
    /// [`FjallBackend::point_in_time`].
    serving: Arc<AtomicBool>,
    keyspaces: BTreeMap<Space, Keyspace>,
    staged: Staged,
    /// Set when a bulk load was dropped unfinished: see
    /// [`Ingester::abandoned_any`].
    abandoned_ingestions: Arc<AtomicBool>,
}

/// Block cache for reads that miss the memtables; the key index in memory
/// already answers where a key's revisions are.
const BLOCK_CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// Data block size of the kv table by level (the last for every deeper
/// level). The table's keys are revisions, which only grow, so a flushed
/// table overlaps nothing below it and compaction moves it down whole: a
/// history written by applying keeps the first level's blocks at every
/// level. The deeper size is what a bulk load writes (a snapshot from the
/// leader, a restore), a defrag, which rewrites every table, and a
/// compaction that merges an MVCC compaction's deletions into the older
/// tables they overlap. A list reads one block per value there too, so a
/// block much larger than a value makes each read copy the difference:
/// with 32 KiB, a member that joined from a snapshot spent 1.4x the CPU of
/// one that applied the same history on a list of 2,500 objects of 1-8
/// KiB; 8 KiB brings that within a tenth, while 4 KiB made the join itself
/// 15-20% slower (more blocks to write and index).
const KV_BLOCK_BYTES_BY_LEVEL: [u32; 2] = [4 * 1024, 8 * 1024];
/// Threads a whole-table read runs on, at most.
const SCAN_THREADS_MAX: usize = 4;
/// The folder of a keyspace's table files (lsm-tree's layout).
const TABLES_FOLDER: &str = "tables";
/// A keyspace's memtable is flushed to disk at this size.
const MEMTABLE_BYTES_MAX: u64 = 8 * 1024 * 1024;

fn storage_error(e: impl std::fmt::Display) -> StorageError {
    StorageError(e.to_string())
}

/// A read of the database in `dir` that failed (see
/// [`super::is_read_failure`]).
fn read_error(dir: &Path) -> impl Fn(fjall::Error) -> StorageError + '_ {
    move |e| StorageError(format!("{} {}: {e}", super::READ_FAILED, dir.display()))
}

/// Why the database does not open, in words that say what to do: a lock
/// another process holds, a file that cannot be read, or damage.
fn open_error(e: fjall::Error) -> StorageError {
    match e {
        fjall::Error::Locked => StorageError(
            "the database is locked by another process: is another e2d running on this data dir?"
                .into(),
        ),
        fjall::Error::Io(e) => StorageError(format!("cannot read the database: {e}")),
        other => StorageError(format!(
            "the database's files are damaged ({other:?}). {}",
            super::DAMAGED_DATA_WAY_OUT
        )),
    }
}

/// How a keyspace is made when the data dir is new.
fn create_options(space: Space) -> KeyspaceCreateOptions {
    // Blocks are stored as they are built, not compressed (fjall's default
    // compresses every level below the second with lz4).
    let options = KeyspaceCreateOptions::default()
        .max_memtable_size(MEMTABLE_BYTES_MAX)
        .data_block_compression_policy(CompressionPolicy::all(CompressionType::None));
    match space {
        // Point reads by revision come from the key index and always hit,
        // so the last level needs no filter. Blocks by level: see
        // `KV_BLOCK_BYTES_BY_LEVEL`.
        Space::Table(Table::Kv) => options
            .expect_point_read_hits(true)
            .data_block_size_policy(BlockSizePolicy::new(KV_BLOCK_BYTES_BY_LEVEL)),
        _ => options,
    }
}

impl FjallBackend {
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let db = Database::builder(dir)
            .cache_size(BLOCK_CACHE_BYTES)
            .open()
            .map_err(open_error)?;
        let mut keyspaces = BTreeMap::new();
        for space in Space::ALL {
            let keyspace = db
                .keyspace(space.name(), || create_options(space))
                .map_err(open_error)?;
            keyspaces.insert(space, keyspace);
        }
        Ok(Self {
            db,
            dir: dir.into(),
            serving: Arc::new(AtomicBool::new(true)),
            keyspaces,
            staged: Staged::default(),
            abandoned_ingestions: Arc::default(),
        })
    }

    fn keyspace(&self, space: Space) -> &Keyspace {
        &self.keyspaces[&space]
    }

    /// Stages a write to a raft space; committed with the next batch.
    pub fn stage_raft(&mut self, space: Space, key: &[u8], value: Option<&[u8]>) {
        debug_assert!(!matches!(space, Space::Table(_)));
        self.staged.stage(space, key, value);
    }

    /// Every committed entry of a raft space, in key order.
    pub fn read_raft(&self, space: Space) -> Result<Vec<RawEntry>, StorageError> {
        self.keyspace(space)
            .iter()
            .map(|guard| {
                let (key, value) = guard.into_inner().map_err(read_error(&self.dir))?;
                Ok((key.to_vec(), value.to_vec()))
            })
            .collect()
    }

    /// A handle that makes what was committed durable, without holding
    /// the backend.
    pub fn syncer(&self) -> Syncer {
        Syncer {
            db: self.db.clone(),
        }
    }

    /// Writes every memtable out to disk and waits for it. A bulk load
    /// calls it after each batch: fjall flushes in the background, and the
    /// memtables waiting for it are not bounded otherwise.
    pub fn flush_memtables(&self) -> Result<(), StorageError> {
        for keyspace in self.keyspaces.values() {
            keyspace.rotate_memtable_and_wait().map_err(storage_error)?;
        }
        Ok(())
    }

    /// The member no longer serves from this database (its `run` ends): a
    /// view's read that fails from now on, in a task still winding down
    /// while the data dir may be moved aside, is returned to that task
    /// rather than a reason to stop the process.
    pub fn stop_serving(&self) {
        self.serving.store(false, Ordering::SeqCst);
    }

    /// A handle that starts bulk loads of tables without holding the
    /// backend: see [`Ingester::ingest`].
    pub fn ingester(&self) -> Ingester {
        Ingester {
            keyspaces: Table::ALL
                .iter()
                .map(|&table| (table, self.keyspace(Space::Table(table)).clone()))
                .collect(),
            abandoned: self.abandoned_ingestions.clone(),
        }
    }

    /// Makes the bulk load `ingestion` readable (and durable), at once.
    /// Writes staged before must be committed first.
    pub fn finish_ingestion(&self, ingestion: TableIngestion) -> Result<(), StorageError> {
        assert!(self.staged.is_empty(), "ingesting with writes staged");
        ingestion.finish()
    }

    /// A handle that defragments without holding up readers or writers.
    pub fn defragmenter(&self) -> Defragmenter {
        Defragmenter {
            keyspaces: self.keyspaces.values().cloned().collect(),
        }
    }

    /// A consistent view of everything committed so far, readable without
    /// holding up writers, for a serving member: a read of it that fails
    /// stops the member ([`crate::fail_stop::stop_on_unreadable_data`]),
    /// whoever reads it (a range, an export, a snapshot sent to a member),
    /// until [`FjallBackend::stop_serving`].
    pub fn point_in_time(&self) -> PointInTime {
        PointInTime {
            stops_while_serving: Some(self.serving.clone()),
            ..self.point_in_time_offline()
        }
    }

    /// The same view for a command that reads a data dir no member
    /// serves: a read that fails is returned.
    pub fn point_in_time_offline(&self) -> PointInTime {
        PointInTime {
            stops_while_serving: None,
            snapshot: self.db.snapshot(),
            dir: self.dir.clone(),
            keyspaces: Table::ALL
                .iter()
                .map(|&table| (table, self.keyspaces[&Space::Table(table)].clone()))
                .collect(),
        }
    }
}

/// Starts bulk loads of tables; see [`FjallBackend::ingester`].
pub struct Ingester {
    keyspaces: BTreeMap<Table, Keyspace>,
    abandoned: Arc<AtomicBool>,
}

impl Ingester {
    /// Loads `table` in bulk: entries given in ascending key order go
    /// straight into table files, past the journal and the memtables, and
    /// become readable (and durable) together when
    /// [`FjallBackend::finish_ingestion`] takes the load. Until then
    /// nothing of it is seen, whatever else is written meanwhile: the load
    /// takes its place in the table's history when it finishes.
    ///
    /// fjall's ingestion cannot move between threads, so it lives on a
    /// thread of its own, fed batches of entries: building and writing the
    /// table files runs beside whoever reads the entries.
    pub fn ingest(&self, table: Table) -> Result<TableIngestion, StorageError> {
        let keyspace = self.keyspaces[&table].clone();
        let (to_writer, batches) = std::sync::mpsc::sync_channel(INGEST_BATCHES_QUEUED_MAX);
        let writer = std::thread::Builder::new()
            .name(format!("ingest-{}", table.name()))
            .spawn(move || write_ingestion(&keyspace, batches))
            .map_err(|e| StorageError(format!("cannot start a bulk load: {e}")))?;
        Ok(TableIngestion {
            batch: IngestBatch::default(),
            to_writer: Some(to_writer),
            writer: Some(writer),
            abandoned: self.abandoned.clone(),
        })
    }

    /// Whether a load was dropped unfinished since the database opened.
    /// Its table files stay on disk, unreferenced, until the next open
    /// removes them (the storage engine cannot tell them from a flush
    /// under way before then), so a caller that may give up on loads
    /// stops loading in place once one was dropped.
    pub fn abandoned_any(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }
}

/// Bytes of entries sent to a load's writing thread at a time.
const INGEST_BATCH_BYTES: usize = 1024 * 1024;
/// Batches waiting for a load's writing thread, at most.
const INGEST_BATCHES_QUEUED_MAX: usize = 4;

/// Entries for a load's writing thread, each key and value copied once,
/// into the form the storage engine keeps them in.
#[derive(Default)]
struct IngestBatch {
    entries: Vec<(fjall::UserKey, fjall::UserValue)>,
    /// Bytes of the keys and values in `entries`.
    bytes: usize,
}

impl IngestBatch {
    fn push(&mut self, key: &[u8], value: &[u8]) {
        self.bytes += key.len() + value.len();
        self.entries.push((key.into(), value.into()));
    }
}

enum IngestCommand {
    Write(IngestBatch),
    Finish,
}

/// A load's writing thread: writes each batch, and registers the tables
/// at `Finish`. A load whose sender goes without `Finish` is dropped
/// unregistered. The load's table files are written back and leave the
/// page cache as it goes ([`DropBehind`]).
fn write_ingestion(
    keyspace: &Keyspace,
    commands: std::sync::mpsc::Receiver<IngestCommand>,
) -> Result<(), StorageError> {
    let mut drop_behind = DropBehind::new(keyspace.path().join(TABLES_FOLDER));
    let mut ingestion = keyspace.start_ingestion().map_err(storage_error)?;
    for command in commands {
        match command {
            IngestCommand::Write(batch) => {
                for (key, value) in batch.entries {
                    ingestion.write(key, value).map_err(storage_error)?;
                }
                drop_behind.wrote(batch.bytes);
            }
            IngestCommand::Finish => {
                ingestion.finish().map_err(storage_error)?;
                drop_behind.drop_all();
                return Ok(());
            }
        }
    }
    Err(StorageError("a bulk load was dropped unfinished".into()))
}

/// A bulk load of one table: see [`Ingester::ingest`].
pub struct TableIngestion {
    /// Entries not yet sent to the writing thread.
    batch: IngestBatch,
    /// `None` once finished.
    to_writer: Option<std::sync::mpsc::SyncSender<IngestCommand>>,
    writer: Option<std::thread::JoinHandle<Result<(), StorageError>>>,
    abandoned: Arc<AtomicBool>,
}

impl TableIngestion {
    /// Writes one entry; its key must follow the last one written (the
    /// caller checks: out of order, the storage engine panics).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.batch.push(key, value);
        if self.batch.bytes >= INGEST_BATCH_BYTES {
            let batch = std::mem::take(&mut self.batch);
            self.send(IngestCommand::Write(batch))?;
        }
        Ok(())
    }

    /// Sends `command` to the writing thread; if it stopped, why.
    fn send(&mut self, command: IngestCommand) -> Result<(), StorageError> {
        let to_writer = self
            .to_writer
            .as_ref()
            .expect("a load is written only before it finishes");
        if to_writer.send(command).is_ok() {
            return Ok(());
        }
        Err(self
            .join_writer()
            .err()
            .unwrap_or_else(|| StorageError("a bulk load's writing thread stopped".into())))
    }

    fn join_writer(&mut self) -> Result<(), StorageError> {
        self.to_writer = None;
        let writer = self.writer.take().expect("joined once");
        let written = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        if written.is_err() {
            // Whatever it wrote stays on disk, unregistered.
            self.abandoned.store(true, Ordering::Relaxed);
        }
        written
    }

    fn finish(mut self) -> Result<(), StorageError> {
        let batch = std::mem::take(&mut self.batch);
        self.send(IngestCommand::Write(batch))?;
        self.send(IngestCommand::Finish)?;
        self.join_writer()
    }
}

impl Drop for TableIngestion {
    fn drop(&mut self) {
        // Dropping the sender stops the writing thread, which drops the
        // load with it.
        if self.to_writer.take().is_some() {
            self.abandoned.store(true, Ordering::Relaxed);
        }
    }
}

pub struct Syncer {
    db: Database,
}

impl Syncer {
    /// fdatasync of the journal, as etcd's WAL: it persists the journal's
    /// bytes and its length, which is all recovery reads; mtime can wait.
    pub fn sync(&self) -> Result<(), StorageError> {
        self.db
            .persist(PersistMode::SyncData)
            .map_err(storage_error)
    }
}

pub struct Defragmenter {
    keyspaces: Vec<Keyspace>,
}

impl Defragmenter {
    /// Rewrites the on-disk tables to drop what compaction deleted.
    pub fn run(&self) -> Result<(), StorageError> {
        for keyspace in &self.keyspaces {
            keyspace.rotate_memtable_and_wait().map_err(storage_error)?;
            keyspace.major_compact().map_err(storage_error)?;
        }
        Ok(())
    }
}

pub struct PointInTime {
    snapshot: fjall::Snapshot,
    dir: Arc<Path>,
    /// While this holds true, a read that fails stops the member instead
    /// of being returned; `None` for a view no member serves from.
    stops_while_serving: Option<Arc<AtomicBool>>,
    keyspaces: BTreeMap<Table, Keyspace>,
}

impl PointInTime {
    /// The error a failed read returns, unless this view stops the member
    /// on one.
    fn failed(&self, e: fjall::Error) -> StorageError {
        let error = read_error(&self.dir)(e);
        if let Some(serving) = &self.stops_while_serving {
            if serving.load(Ordering::SeqCst) {
                crate::fail_stop::stop_on_unreadable_data(&error);
            }
        }
        error
    }

    /// Visits every entry of every table, table by table in key order.
    pub fn visit_all(&self, visit: &mut VisitEntry<'_>) -> Result<(), StorageError> {
        use fjall::Readable;
        for (&table, keyspace) in &self.keyspaces {
            for guard in self.snapshot.iter(keyspace) {
                let (key, value) = guard.into_inner().map_err(|e| self.failed(e))?;
                visit(table, &key, &value)?;
            }
        }
        Ok(())
    }
}

impl PointInTime {
    /// The value of `key` in `table`, as it was when the view was taken.
    ///
    /// Shared with the table, not copied: a range that reads many values
    /// reads them here and answers with them at once. What it returns
    /// keeps the whole block it came from (up to the kv table's largest
    /// block), so it is for reads whose results go out and are dropped,
    /// not for what a member keeps.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        use fjall::Readable;
        let value = self
            .snapshot
            .get(&self.keyspaces[&table], key)
            .map_err(|e| self.failed(e))?;
        Ok(value.map(Bytes::from_owner))
    }

    /// Visits the entries of `table` with `start <= key < end` (an empty
    /// `end` means no bound) in key order until `visit` returns false.
    pub fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        use fjall::Readable;
        let keyspace = &self.keyspaces[&table];
        let iter = if end.is_empty() {
            self.snapshot.range(keyspace, start..)
        } else {
            self.snapshot.range(keyspace, start..end)
        };
        for guard in iter {
            let (key, value) = guard.into_inner().map_err(|e| self.failed(e))?;
            if !visit(&key, &value) {
                break;
            }
        }
        Ok(())
    }
}

impl Backend for FjallBackend {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        if let Some(staged) = self.staged.get(Space::Table(table), key) {
            return Ok(staged.as_deref().map(Bytes::copy_from_slice));
        }
        // Copied: what the state machine reads may be kept (a watch
        // event's previous value), and a shared value would keep its block.
        let value = self
            .keyspace(Space::Table(table))
            .get(key)
            .map_err(read_error(&self.dir))?;
        Ok(value.map(|v| Bytes::copy_from_slice(&v)))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let keyspace = self.keyspace(Space::Table(table));
        let iter = if end.is_empty() {
            keyspace.range(start..)
        } else {
            keyspace.range(start..end)
        };
        for guard in iter {
            let (key, value) = guard.into_inner().map_err(read_error(&self.dir))?;
            if !visit(&key, &value) {
                break;
            }
        }
        Ok(())
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) {
        self.staged.stage(Space::Table(table), key, Some(value));
    }

    fn delete(&mut self, table: Table, key: &[u8]) {
        self.staged.stage(Space::Table(table), key, None);
    }

    fn commit(&mut self, sync: bool) -> Result<(), StorageError> {
        let staged = self.staged.take();
        if staged.is_empty() {
            return Ok(());
        }
        let mut batch = self.db.batch();
        for ((space, key), value) in staged {
            let keyspace = &self.keyspaces[&space];
            match value {
                Some(value) => batch.insert(keyspace, key, value),
                None => batch.remove(keyspace, key),
            }
        }
        batch.commit().map_err(storage_error)?;
        if sync {
            self.syncer().sync()?;
        }
        Ok(())
    }

    /// A whole-table read (the key index's rebuild at a start) reads its
    /// parts on as many threads as there are cores, up to
    /// [`SCAN_THREADS_MAX`]: fetching and checking blocks is most of it.
    fn scan_parallelism(&self) -> usize {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, SCAN_THREADS_MAX)
    }

    fn scan_parts(&self, table: Table, parts: &mut [ScanPart<'_>]) -> Result<(), StorageError> {
        let Some((first, rest)) = parts.split_first_mut() else {
            return Ok(());
        };
        std::thread::scope(|scope| {
            let others: Vec<_> = rest
                .iter_mut()
                .map(|part| {
                    scope.spawn(move || self.scan(table, &part.start, &part.end, &mut *part.visit))
                })
                .collect();
            let mut outcome = self.scan(table, &first.start, &first.end, &mut *first.visit);
            for other in others {
                let other = other
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                outcome = outcome.and(other);
            }
            outcome
        })
    }

    /// Table files on disk plus what memtables hold; the journal is left
    /// out, as it is preallocated and recycled.
    fn size_bytes(&self) -> u64 {
        let tables: u64 = Table::ALL
            .iter()
            .map(|&table| self.keyspace(Space::Table(table)).disk_space())
            .sum();
        tables + self.db.write_buffer_size()
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    /// Flips a byte half way through the largest table file under `dir`.
    fn damage_the_largest_table(dir: &Path) {
        let mut tables: Vec<(u64, std::path::PathBuf)> = Vec::new();
        let keyspaces = std::fs::read_dir(dir.join("keyspaces")).unwrap();
        for keyspace in keyspaces {
            let Ok(files) = std::fs::read_dir(keyspace.unwrap().path().join("tables")) else {
                continue;
            };
            for file in files {
                let path = file.unwrap().path();
                tables.push((std::fs::metadata(&path).unwrap().len(), path));
            }
        }
        let (bytes, table) = tables.into_iter().max().expect("a table file");
        let mut contents = std::fs::read(&table).unwrap();
        contents[bytes as usize / 2] ^= 0x20;
        std::fs::write(&table, contents).unwrap();
    }

    #[test]
    fn a_failed_read_of_a_view_is_returned_once_the_member_stopped_serving() {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = FjallBackend::open(dir.path()).unwrap();
        for i in 0..1000u32 {
            backend.put(Table::Kv, &i.to_be_bytes(), &[b'v'; 4096]);
        }
        backend.commit(true).unwrap();
        backend.flush_memtables().unwrap();
        let served = backend.point_in_time();
        let offline = backend.point_in_time_offline();
        backend.stop_serving();
        damage_the_largest_table(dir.path());
        let named = format!("cannot read the database in {}", dir.path().display());
        for view in [served, offline] {
            let error = view
                .visit_all(&mut |_, _, _| Ok(()))
                .expect_err("a damaged block reads");
            assert!(error.0.contains(&named), "{}", error.0);
        }
    }
}

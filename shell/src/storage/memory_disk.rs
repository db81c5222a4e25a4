//! The database under `--cfg madsim`: an in-memory disk per database
//! directory, which outlives the simulated node that opened it and has the
//! crash semantics of a real one. A committed batch is readable at once;
//! it is durable only after a synced commit. When the simulator kills a
//! node it calls [`crash`]: every batch since the last sync is lost, except
//! an in-order prefix the simulator picks (what the journal happened to
//! reach the platter before the power went).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use e2d_core::storage::{Backend, Bytes, StorageError, Table};

use super::{RawEntry, Space, Staged, VisitEntry};

type Key = (Space, Vec<u8>);
/// One commit: its writes in order, `None` a delete.
type Batch = Vec<(Key, Option<Vec<u8>>)>;

/// Unsynced batches a disk holds before a commit must sync; past this the
/// caller has stopped syncing, which no correct shell does.
const UNSYNCED_BATCHES_MAX: usize = 1 << 20;

#[derive(Default)]
struct Disk {
    /// What reads see: every committed batch.
    current: BTreeMap<Key, Vec<u8>>,
    /// What survives a crash: the state as of the last synced commit.
    synced: BTreeMap<Key, Vec<u8>>,
    /// Batches committed since the last sync, oldest first.
    unsynced: Vec<Batch>,
}

fn apply(map: &mut BTreeMap<Key, Vec<u8>>, batch: &Batch) {
    for (key, value) in batch {
        match value {
            Some(value) => map.insert(key.clone(), value.clone()),
            None => map.remove(key),
        };
    }
}

impl Disk {
    fn sync(&mut self) {
        for batch in std::mem::take(&mut self.unsynced) {
            apply(&mut self.synced, &batch);
        }
    }
}

/// Every disk of this process by database directory. Simulated runs use
/// distinct directories, so runs on other threads never meet.
static DISKS: Mutex<BTreeMap<PathBuf, Arc<Mutex<Disk>>>> = Mutex::new(BTreeMap::new());

fn disks() -> MutexGuard<'static, BTreeMap<PathBuf, Arc<Mutex<Disk>>>> {
    crate::fail_stop::lock(&DISKS)
}

fn lock(disk: &Mutex<Disk>) -> MutexGuard<'_, Disk> {
    crate::fail_stop::lock(disk)
}

/// Loses what the disks and the raft log's files under `dir` had not
/// synced, but for the first `kept_batches` unsynced batches of each disk
/// and a part of each file that `kept_batches` picks. Returns how many
/// batches were lost.
pub fn crash(dir: &Path, kept_batches: usize) -> usize {
    super::memory_segments::crash(dir, kept_batches);
    let under: Vec<Arc<Mutex<Disk>>> = disks()
        .iter()
        .filter(|(path, _)| path.starts_with(dir))
        .map(|(_, disk)| disk.clone())
        .collect();
    let mut lost = 0;
    for disk in under {
        let mut disk = lock(&disk);
        let unsynced = std::mem::take(&mut disk.unsynced);
        let kept = kept_batches.min(unsynced.len());
        for batch in &unsynced[..kept] {
            apply(&mut disk.synced, batch);
        }
        disk.current = disk.synced.clone();
        lost += unsynced.len() - kept;
    }
    lost
}

/// Follows a directory rename: disks and files under `from` are under
/// `to` now.
pub fn moved(from: &Path, to: &Path) {
    super::memory_segments::moved(from, to);
    super::memory_segments::move_under(&mut disks(), from, to);
}

/// Throws away every disk under `root` (a machine lost for good).
pub fn destroy_under(root: &Path) {
    super::memory_segments::destroy_under(root);
    disks().retain(|dir, _| !dir.starts_with(root));
}

pub struct MemoryBackend {
    disk: Arc<Mutex<Disk>>,
    staged: Staged,
    /// Set when a bulk load was dropped unfinished: see
    /// [`Ingester::abandoned_any`].
    abandoned_ingestions: Arc<AtomicBool>,
}

impl MemoryBackend {
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let disk = disks().entry(dir.to_path_buf()).or_default().clone();
        Ok(Self {
            disk,
            staged: Staged::default(),
            abandoned_ingestions: Arc::default(),
        })
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        lock(&self.disk)
    }

    /// Stages a write to a raft space; committed with the next batch.
    pub fn stage_raft(&mut self, space: Space, key: &[u8], value: Option<&[u8]>) {
        debug_assert!(!matches!(space, Space::Table(_)));
        self.staged.stage(space, key, value);
    }

    /// Every committed entry of a raft space, in key order.
    pub fn read_raft(&self, space: Space) -> Result<Vec<RawEntry>, StorageError> {
        Ok(self
            .disk()
            .current
            .range((space, Vec::new())..)
            .take_while(|((s, _), _)| *s == space)
            .map(|((_, key), value)| (key.clone(), value.clone()))
            .collect())
    }

    pub fn syncer(&self) -> Syncer {
        Syncer {
            disk: self.disk.clone(),
        }
    }

    /// Nothing to flush: the simulated disk is memory.
    pub fn flush_memtables(&self) -> Result<(), StorageError> {
        Ok(())
    }

    pub fn defragmenter(&self) -> Defragmenter {
        Defragmenter
    }

    /// Nothing to do: reads of memory do not fail, so no view stops the
    /// member.
    pub fn stop_serving(&self) {}

    /// The same view as [`Self::point_in_time`]: reads of memory do not
    /// fail.
    pub fn point_in_time_offline(&self) -> PointInTime {
        self.point_in_time()
    }

    pub fn point_in_time(&self) -> PointInTime {
        let disk = self.disk();
        let tables = disk
            .current
            .iter()
            .filter_map(|((space, key), value)| match space {
                Space::Table(table) => Some((*table, key.clone(), value.clone())),
                _ => None,
            })
            .collect();
        PointInTime { tables }
    }
}

/// Makes every committed batch durable, as a sync of the journal does.
pub struct Syncer {
    disk: Arc<Mutex<Disk>>,
}

impl Syncer {
    pub fn sync(&self) -> Result<(), StorageError> {
        lock(&self.disk).sync();
        Ok(())
    }
}

/// Nothing to rewrite in memory.
pub struct Defragmenter;

impl Defragmenter {
    pub fn run(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

pub struct PointInTime {
    /// Table entries, table by table in key order.
    tables: Vec<(Table, Vec<u8>, Vec<u8>)>,
}

impl PointInTime {
    pub fn visit_all(&self, visit: &mut VisitEntry<'_>) -> Result<(), StorageError> {
        for (table, key, value) in &self.tables {
            visit(*table, key, value)?;
        }
        Ok(())
    }

    /// The value of `key` in `table`, as it was when the view was taken.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Ok(self
            .tables
            .iter()
            .find(|(t, k, _)| *t == table && k.as_slice() == key)
            .map(|(_, _, value)| Bytes::copy_from_slice(value)))
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
        let entries = self.tables.iter().filter(|(t, key, _)| {
            *t == table && key.as_slice() >= start && (end.is_empty() || key.as_slice() < end)
        });
        for (_, key, value) in entries {
            if !visit(key, value) {
                break;
            }
        }
        Ok(())
    }
}

impl MemoryBackend {
    /// Starts bulk loads of tables without holding the backend, as the
    /// disk backend's.
    pub fn ingester(&self) -> Ingester {
        Ingester {
            abandoned: self.abandoned_ingestions.clone(),
        }
    }

    /// Makes the bulk load `ingestion` readable, at once, and durable then
    /// with everything committed before it. Writes staged before must be
    /// committed first.
    pub fn finish_ingestion(&self, mut ingestion: TableIngestion) -> Result<(), StorageError> {
        assert!(self.staged.is_empty(), "ingesting with writes staged");
        let batch = ingestion.batch.take().expect("a load finishes once");
        let mut disk = lock(&self.disk);
        apply(&mut disk.current, &batch);
        disk.unsynced.push(batch);
        disk.sync();
        Ok(())
    }
}

/// Starts bulk loads of tables: see [`MemoryBackend::ingester`].
pub struct Ingester {
    abandoned: Arc<AtomicBool>,
}

impl Ingester {
    /// Loads `table` in bulk: nothing of it is seen until
    /// [`MemoryBackend::finish_ingestion`] takes it.
    pub fn ingest(&self, table: Table) -> Result<TableIngestion, StorageError> {
        Ok(TableIngestion {
            table,
            batch: Some(Batch::new()),
            abandoned: self.abandoned.clone(),
        })
    }

    /// Whether a load was dropped unfinished since the backend opened.
    /// Nothing is left behind in memory, but the flag is kept as the disk
    /// backend keeps it, so simulated members take the same paths.
    pub fn abandoned_any(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }
}

/// A bulk load of one table: see [`Ingester::ingest`].
pub struct TableIngestion {
    table: Table,
    /// `None` once finished.
    batch: Option<Batch>,
    abandoned: Arc<AtomicBool>,
}

impl TableIngestion {
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        let key = (Space::Table(self.table), key.to_vec());
        self.batch
            .as_mut()
            .expect("a load is written only before it finishes")
            .push((key, Some(value.to_vec())));
        Ok(())
    }
}

impl Drop for TableIngestion {
    fn drop(&mut self) {
        if self.batch.is_some() {
            self.abandoned.store(true, Ordering::Relaxed);
        }
    }
}

impl Backend for MemoryBackend {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        if let Some(staged) = self.staged.get(Space::Table(table), key) {
            return Ok(staged.as_deref().map(Bytes::copy_from_slice));
        }
        let key = (Space::Table(table), key.to_vec());
        Ok(self
            .disk()
            .current
            .get(&key)
            .map(|v| Bytes::copy_from_slice(v)))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let space = Space::Table(table);
        // Copied out first: `visit` may take its time, and the disk is shared.
        let entries: Vec<RawEntry> = {
            let disk = self.disk();
            disk.current
                .range((space, start.to_vec())..)
                .take_while(|((s, key), _)| *s == space && (end.is_empty() || key.as_slice() < end))
                .map(|((_, key), value)| (key.clone(), value.clone()))
                .collect()
        };
        for (key, value) in entries {
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
        let batch: Batch = self.staged.take().into_iter().collect();
        let mut disk = self.disk();
        if !batch.is_empty() {
            apply(&mut disk.current, &batch);
            disk.unsynced.push(batch);
        }
        if sync {
            disk.sync();
        }
        assert!(
            disk.unsynced.len() <= UNSYNCED_BATCHES_MAX,
            "{} batches committed without a sync",
            disk.unsynced.len()
        );
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        self.disk()
            .current
            .iter()
            .map(|((_, key), value)| (key.len() + value.len()) as u64)
            .sum()
    }
}

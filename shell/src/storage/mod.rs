//! Durable storage: the state machine in fjall and the raft log's segment
//! files on a real disk, or under `--cfg madsim` both in memory that loses
//! what was not synced when its node is killed.

#[cfg(not(madsim))]
mod drop_behind;
#[cfg(not(madsim))]
mod fjall_backend;
#[cfg(madsim)]
pub mod memory_disk;
#[cfg(madsim)]
pub mod memory_segments;
#[cfg(not(madsim))]
mod segment_dir;

#[cfg(not(madsim))]
pub use fjall_backend::{
    FjallBackend as DiskBackend, Ingester, PointInTime, Syncer, TableIngestion,
};
#[cfg(madsim)]
pub use memory_disk::{
    Ingester, MemoryBackend as DiskBackend, PointInTime, Syncer, TableIngestion,
};
#[cfg(madsim)]
pub use memory_segments::{SegmentDir, SegmentFile};
#[cfg(not(madsim))]
pub use segment_dir::{SegmentDir, SegmentFile};

use std::collections::BTreeMap;

use e2d_core::storage::{Bytes, StorageError, Table};

/// How a member whose data cannot be trusted is recovered: the cluster
/// holds the data.
macro_rules! damaged_data_remedy {
    () => {
        "This member's data cannot be trusted: remove the member (etcdctl member remove), move its data dir aside and add it again \
         (with e2d's cluster manager, moving the data dir aside and starting e2d again does both), or restore the cluster from a snapshot"
    };
}

/// What to do about a member whose data on disk is damaged, said when it
/// refuses to start.
pub(crate) const DAMAGED_DATA_WAY_OUT: &str = concat!(
    "Refusing to start; nothing on disk was changed. ",
    damaged_data_remedy!()
);

/// The same, said when a serving member stops because a read failed.
pub(crate) const UNREADABLE_DATA_WAY_OUT: &str = concat!(
    "e2d stops; nothing on disk was changed. ",
    damaged_data_remedy!()
);

/// How a failed read of the database begins: its files cannot be read or
/// are damaged (fjall checks every block it reads).
const READ_FAILED: &str = "cannot read the database in";

/// Whether `failed` is a read of the database that failed, not a write.
pub(crate) fn is_read_failure(failed: &StorageError) -> bool {
    failed.0.starts_with(READ_FAILED)
}

/// Renames the directory `from` to `to` durably; under `--cfg madsim`
/// the in-memory disks and log files under it follow.
pub fn rename_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    crate::durable_file::rename_synced(from, to)?;
    follow_rename(from, to);
    Ok(())
}

/// After `from` was renamed to `to`: under `--cfg madsim` the in-memory
/// disks and log files under `from` are under `to` now; nothing else.
pub fn follow_rename(from: &std::path::Path, to: &std::path::Path) {
    #[cfg(madsim)]
    memory_disk::moved(from, to);
    #[cfg(not(madsim))]
    let _ = (from, to);
}

/// A raft log segment's file name: its sequence number, 16 hex digits.
pub(crate) fn segment_file_name(seq: u64) -> String {
    format!("{seq:016x}.wal")
}

/// The sequence number of a segment file named `name`, if it is one.
pub(crate) fn segment_seq(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".wal")?;
    u64::from_str_radix(hex, 16).ok()
}

/// A key and its value, as stored.
pub type RawEntry = (Vec<u8>, Vec<u8>);

/// Where a write goes: a state machine table or the raft log's own spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Space {
    Table(Table),
    /// Raft log entries by index (8 bytes, big-endian), as data dirs
    /// kept them before the raft log had its own files; read once, to
    /// move them there.
    RaftLog,
    /// Hard state, conf state and log start, as [`Space::RaftLog`].
    RaftState,
}

/// fjall keeps each space in a keyspace of this name.
#[cfg(not(madsim))]
impl Space {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Space::Table(table) => table.name(),
            Space::RaftLog => "raft_log",
            Space::RaftState => "raft_state",
        }
    }

    pub(crate) const ALL: [Space; 6] = [
        Space::Table(Table::Kv),
        Space::Table(Table::Lease),
        Space::Table(Table::Meta),
        Space::Table(Table::Auth),
        Space::RaftLog,
        Space::RaftState,
    ];
}

/// Called with each entry of a [`PointInTime`]; an error stops the visit.
pub type VisitEntry<'a> = dyn FnMut(Table, &[u8], &[u8]) -> Result<(), StorageError> + 'a;

/// Writes staged for the next commit, by space and key; `None` is a delete.
#[derive(Default)]
pub(crate) struct Staged(BTreeMap<(Space, Vec<u8>), Option<Vec<u8>>>);

impl Staged {
    pub(crate) fn stage(&mut self, space: Space, key: &[u8], value: Option<&[u8]>) {
        self.0
            .insert((space, key.to_vec()), value.map(<[u8]>::to_vec));
    }

    /// The staged write to `key`, if there is one.
    pub(crate) fn get(&self, space: Space, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.0.get(&(space, key.to_vec()))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Everything staged, in key order, leaving nothing staged.
    pub(crate) fn take(&mut self) -> BTreeMap<(Space, Vec<u8>), Option<Vec<u8>>> {
        std::mem::take(&mut self.0)
    }
}

/// A [`PointInTime`] as core reads tables.
pub struct View<'a>(pub &'a PointInTime);

impl e2d_core::storage::ReadTables for View<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        self.0.get(table, key)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        self.0.scan(table, start, end, visit)
    }
}

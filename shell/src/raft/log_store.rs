//! The raft log on disk: entries by index in `Space::RaftLog`, hard and
//! conf state in `Space::RaftState`. At start they are loaded into raft-rs's
//! `MemStorage`, which serves the running node; every `Ready` stages its new
//! entries and state here, committed with one fsync.

use e2d_core::storage::{Backend, StorageError};
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;

use super::codec;
use crate::storage::{DiskBackend, Space};

const HARD_STATE_KEY: &[u8] = b"hard_state";
const CONF_STATE_KEY: &[u8] = b"conf_state";
/// Index and term of the entry just before the first one kept, once the log
/// has been compacted (16 bytes, big-endian).
const LOG_START_KEY: &[u8] = b"log_start";
/// Present while a snapshot replaces the state machine in several batches.
const INSTALLING_KEY: &[u8] = b"installing_snapshot";

fn corrupt(e: impl std::fmt::Display) -> StorageError {
    StorageError(e.to_string())
}

/// Loads the log into a `MemStorage`; `None` when this member has no raft
/// state yet (a new data dir).
pub fn load(backend: &DiskBackend) -> Result<Option<MemStorage>, StorageError> {
    let state = backend.read_raft(Space::RaftState)?;
    let mut hard_state = None;
    let mut conf_state = None;
    let mut log_start = None;
    for (key, value) in state {
        match key.as_slice() {
            INSTALLING_KEY => {
                return Err(StorageError(
                    "an interrupted snapshot install left this member's data incomplete: remove its data dir, remove the member (etcdctl member remove) and add it again".into(),
                ));
            }
            LOG_START_KEY => {
                let raw: [u8; 16] = value
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt("log start"))?;
                let index = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
                let term = u64::from_be_bytes(raw[8..].try_into().expect("8 bytes"));
                log_start = Some((index, term));
            }
            HARD_STATE_KEY => hard_state = Some(codec::decode_hard_state(&value).map_err(corrupt)?),
            CONF_STATE_KEY => conf_state = Some(codec::decode_conf_state(&value).map_err(corrupt)?),
            _ => {}
        }
    }
    let Some(conf_state) = conf_state else {
        return Ok(None);
    };
    let storage = MemStorage::new_with_conf_state(conf_state.clone());
    if let Some((index, term)) = log_start {
        storage
            .wl()
            .apply_snapshot(snapshot_marker(index, term, conf_state))
            .map_err(corrupt)?;
    }
    let entries = backend
        .read_raft(Space::RaftLog)?
        .into_iter()
        .map(|(_, value)| codec::decode_entry(&value).map_err(corrupt))
        .collect::<Result<Vec<Entry>, _>>()?;
    {
        let mut core = storage.wl();
        if !entries.is_empty() {
            core.append(&entries).map_err(corrupt)?;
        }
        if let Some(hard_state) = hard_state {
            core.set_hardstate(hard_state);
        }
    }
    Ok(Some(storage))
}

/// A new member's log. A founding member's log starts with the initial
/// voters and one committed entry, `first_entry`, identical on every
/// founding member (as etcd's bootstrap entries are); a joining member's
/// log starts empty and fills from the leader.
pub fn create(
    backend: &mut DiskBackend,
    conf_state: ConfState,
    first_entry: Option<Vec<u8>>,
) -> Result<MemStorage, StorageError> {
    stage_conf_state(backend, &conf_state);
    let storage = MemStorage::new_with_conf_state(conf_state);
    if let Some(data) = first_entry {
        let entry = Entry {
            term: 1,
            index: 1,
            data,
            ..Default::default()
        };
        let hard_state = HardState {
            term: 1,
            vote: 0,
            commit: 1,
        };
        stage_entries(backend, std::slice::from_ref(&entry));
        stage_hard_state(backend, &hard_state);
        let mut core = storage.wl();
        core.append(&[entry]).map_err(corrupt)?;
        core.set_hardstate(hard_state);
    }
    Ok(storage)
}

/// Marks the start of a snapshot install, durably, before the state
/// machine's tables are replaced batch by batch.
pub fn begin_snapshot_install(backend: &mut DiskBackend) -> Result<(), StorageError> {
    backend.stage_raft(Space::RaftState, INSTALLING_KEY, Some(&[]));
    backend.commit(true)
}

/// Stages the end of a snapshot install, to commit with its raft state.
pub fn end_snapshot_install(backend: &mut DiskBackend) {
    backend.stage_raft(Space::RaftState, INSTALLING_KEY, None);
}

/// A snapshot that only says where the log starts: entries up to `index`
/// are in the state machine, not the log.
pub fn snapshot_marker(index: u64, term: u64, conf_state: ConfState) -> Snapshot {
    let mut snapshot = Snapshot::default();
    let metadata = snapshot.mut_metadata();
    metadata.index = index;
    metadata.term = term;
    metadata.set_conf_state(conf_state);
    snapshot
}

/// Records that the log now starts after `index` and drops the entries
/// from `first_kept_before` up to and including `index`.
pub fn stage_log_start(backend: &mut DiskBackend, index: u64, term: u64, first_index: u64) {
    let mut value = index.to_be_bytes().to_vec();
    value.extend_from_slice(&term.to_be_bytes());
    backend.stage_raft(Space::RaftState, LOG_START_KEY, Some(&value));
    stage_removal(backend, first_index..=index);
}

/// Stages the removal of the entries at `indexes`.
pub fn stage_removal(backend: &mut DiskBackend, indexes: std::ops::RangeInclusive<u64>) {
    for index in indexes {
        backend.stage_raft(Space::RaftLog, &index.to_be_bytes(), None);
    }
}

pub fn stage_entries(backend: &mut DiskBackend, entries: &[Entry]) {
    for entry in entries {
        backend.stage_raft(
            Space::RaftLog,
            &entry.index.to_be_bytes(),
            Some(&codec::encode_entry(entry)),
        );
    }
}

pub fn stage_hard_state(backend: &mut DiskBackend, state: &HardState) {
    backend.stage_raft(
        Space::RaftState,
        HARD_STATE_KEY,
        Some(&codec::encode_hard_state(state)),
    );
}

pub fn stage_conf_state(backend: &mut DiskBackend, state: &ConfState) {
    backend.stage_raft(
        Space::RaftState,
        CONF_STATE_KEY,
        Some(&codec::encode_conf_state(state)),
    );
}

//! The raft log at start: replayed from the write-ahead log ([`Wal`]) into
//! raft-rs's `MemStorage`, which serves the running node; the conf state
//! comes from the state machine's meta table, where it is written with
//! the applied index it belongs to. Data dirs that kept the log in the
//! database move it to the write-ahead log the first time they open.

use e2d_core::storage::{Backend, StorageError, Table};
use e2d_core::wal::Replayed;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;

use super::codec;
use super::wal::Wal;
use crate::storage::{DiskBackend, Space};

/// The conf state as of the applied index, in `Table::Meta`.
const META_CONF_STATE: &[u8] = b"raft_conf_state";
/// The index and term (u64 BE each) of the last snapshot whose tables were
/// installed whole, in `Table::Meta`: written in the install's last,
/// synced batch, and this member's own (snapshots neither carry nor
/// replace it).
pub const META_INSTALLED_SNAPSHOT: &[u8] = b"installed_snapshot";

/// Stages the record that the tables of the snapshot at `index` of `term`
/// are installed whole.
pub fn stage_installed_snapshot(backend: &mut DiskBackend, index: u64, term: u64) {
    let mut value = index.to_be_bytes().to_vec();
    value.extend_from_slice(&term.to_be_bytes());
    backend.put(Table::Meta, META_INSTALLED_SNAPSHOT, &value);
}

fn installed_snapshot(backend: &DiskBackend) -> Result<Option<(u64, u64)>, StorageError> {
    let Some(value) = backend.get(Table::Meta, META_INSTALLED_SNAPSHOT)? else {
        return Ok(None);
    };
    let pair = <[u8; 16]>::try_from(value.as_ref())
        .map_err(|_| StorageError("the installed snapshot's record is not 16 bytes".into()))?;
    let index = u64::from_be_bytes(pair[..8].try_into().expect("8 bytes"));
    let term = u64::from_be_bytes(pair[8..].try_into().expect("8 bytes"));
    Ok(Some((index, term)))
}

/// A snapshot install the log marks as under way either finished its
/// tables (the database records the snapshot, newer than the log's start:
/// a crash came before the log's own record of it) and the log is brought
/// up to it, or it did not, and the member's data is incomplete.
fn finish_interrupted_install(
    wal: &mut Wal,
    mut replayed: Replayed,
    backend: &DiskBackend,
) -> Result<Replayed, StorageError> {
    match installed_snapshot(backend)? {
        Some((index, term)) if index > replayed.start.0 => {
            wal.snapshot(index, term)?;
            wal.set_installing(false)?;
            wal.sync()?;
            replayed.entries.clear();
            replayed.start = (index, term);
            replayed.installing = false;
            tracing::info!(
                index,
                "finished a snapshot install a crash interrupted after its tables were whole"
            );
            Ok(replayed)
        }
        _ => Err(StorageError(format!(
            "an interrupted snapshot install left this member's data incomplete. {}",
            crate::storage::DAMAGED_DATA_WAY_OUT
        ))),
    }
}

/// Keys of the log's state as the database kept it.
const LEGACY_HARD_STATE_KEY: &[u8] = b"hard_state";
const LEGACY_CONF_STATE_KEY: &[u8] = b"conf_state";
const LEGACY_LOG_START_KEY: &[u8] = b"log_start";
const LEGACY_INSTALLING_KEY: &[u8] = b"installing_snapshot";

fn corrupt(e: impl std::fmt::Display) -> StorageError {
    StorageError(e.to_string())
}

/// Loads the log into a `MemStorage`; `None` when this member has no raft
/// state yet (a new data dir). `applied` is the state machine's applied
/// index: the commit index starts at least there.
pub fn load(
    wal: &mut Wal,
    replayed: Replayed,
    backend: &mut DiskBackend,
    applied: u64,
) -> Result<Option<MemStorage>, StorageError> {
    let replayed = match move_from_database(wal, backend)? {
        Some(moved) => moved,
        None => replayed,
    };
    let replayed = if replayed.installing {
        finish_interrupted_install(wal, replayed, backend)?
    } else {
        replayed
    };
    let Some(conf_state) = backend.get(Table::Meta, META_CONF_STATE)? else {
        return Ok(None);
    };
    let conf_state = codec::decode_conf_state(&conf_state).map_err(corrupt)?;
    let storage = MemStorage::new_with_conf_state(conf_state.clone());
    let (start_index, start_term) = replayed.start;
    if start_index > 0 {
        storage
            .wl()
            .apply_snapshot(snapshot_marker(start_index, start_term, conf_state))
            .map_err(corrupt)?;
    }
    let entries = replayed
        .entries
        .iter()
        .map(|(_, encoded)| codec::decode_entry(encoded).map_err(corrupt))
        .collect::<Result<Vec<Entry>, _>>()?;
    let mut hard_state = match &replayed.hard_state {
        Some(encoded) => codec::decode_hard_state(encoded).map_err(corrupt)?,
        None => HardState::default(),
    };
    // The log holds every entry the state machine applied, but the hard
    // state that said they were committed may not have reached the disk.
    hard_state.commit = hard_state
        .commit
        .max(start_index)
        .max(applied.min(replayed.last_index()));
    if hard_state.commit > replayed.last_index() {
        return Err(commit_past_end(hard_state.commit, replayed.last_index()));
    }
    let mut core = storage.wl();
    if !entries.is_empty() {
        core.append(&entries).map_err(corrupt)?;
    }
    core.set_hardstate(hard_state);
    drop(core);
    Ok(Some(storage))
}

/// A log whose hard state commits an entry past its end: damaged.
pub(super) fn commit_past_end(commit: u64, last_index: u64) -> StorageError {
    StorageError(format!(
        "the raft log says entry {commit} is committed but ends at entry {last_index}: the log is damaged. {}",
        crate::storage::DAMAGED_DATA_WAY_OUT
    ))
}

/// Moves a log the database kept into the write-ahead log, durably, and
/// deletes it from the database. Returns the moved log, or `None` when
/// the database holds none.
fn move_from_database(
    wal: &mut Wal,
    backend: &mut DiskBackend,
) -> Result<Option<Replayed>, StorageError> {
    let state = backend.read_raft(Space::RaftState)?;
    if state.is_empty() {
        return Ok(None);
    }
    let mut moved = Replayed::default();
    for (key, value) in &state {
        match key.as_slice() {
            LEGACY_INSTALLING_KEY => moved.installing = true,
            LEGACY_LOG_START_KEY => {
                let raw: [u8; 16] = value
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt("log start"))?;
                let index = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
                let term = u64::from_be_bytes(raw[8..].try_into().expect("8 bytes"));
                moved.start = (index, term);
            }
            LEGACY_HARD_STATE_KEY => moved.hard_state = Some(value.clone()),
            LEGACY_CONF_STATE_KEY => backend.put(Table::Meta, META_CONF_STATE, value),
            _ => {}
        }
    }
    let log = backend.read_raft(Space::RaftLog)?;
    let mut entries = Vec::with_capacity(log.len());
    for (_, value) in &log {
        let entry = codec::decode_entry(value).map_err(corrupt)?;
        moved.entries.push((entry.index, value.clone()));
        entries.push(entry);
    }
    if moved.start.0 > 0 {
        wal.compact(moved.start.0, moved.start.1)?;
    }
    wal.append(&entries)?;
    if let Some(encoded) = &moved.hard_state {
        wal.set_hard_state(&codec::decode_hard_state(encoded).map_err(corrupt)?)?;
    }
    if moved.installing {
        wal.set_installing(true)?;
    }
    wal.sync()?;
    for (space, rows) in [(Space::RaftState, &state), (Space::RaftLog, &log)] {
        for (key, _) in rows {
            backend.stage_raft(space, key, None);
        }
    }
    backend.commit(true)?;
    tracing::info!(
        entries = moved.entries.len(),
        "moved the raft log from the database to its own files"
    );
    Ok(Some(moved))
}

/// A new member's log. A founding member's log starts with the initial
/// voters and one committed entry, `first_entry`, identical on every
/// founding member (as etcd's bootstrap entries are); a joining member's
/// log starts empty and fills from the leader.
pub fn create(
    wal: &mut Wal,
    backend: &mut DiskBackend,
    conf_state: ConfState,
    first_entry: Option<Vec<u8>>,
) -> Result<MemStorage, StorageError> {
    let storage = MemStorage::new_with_conf_state(conf_state.clone());
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
        wal.append(std::slice::from_ref(&entry))?;
        wal.set_hard_state(&hard_state)?;
        let mut core = storage.wl();
        core.append(&[entry]).map_err(corrupt)?;
        core.set_hardstate(hard_state);
    }
    wal.sync()?;
    // Last: a member whose conf state is on disk has its log.
    stage_conf_state(backend, &conf_state);
    backend.commit(true)?;
    Ok(storage)
}

/// Stages the conf state with the state machine's next batch, which
/// holds the applied index it belongs to.
pub fn stage_conf_state(backend: &mut DiskBackend, state: &ConfState) {
    backend.put(
        Table::Meta,
        META_CONF_STATE,
        &codec::encode_conf_state(state),
    );
}

/// After a snapshot replaced the tables: the conf state the snapshot's
/// meta table carried (as of the state it holds), or else `state`.
pub fn stage_conf_state_if_missing(
    backend: &mut DiskBackend,
    state: &ConfState,
) -> Result<(), StorageError> {
    if backend.get(Table::Meta, META_CONF_STATE)?.is_none() {
        stage_conf_state(backend, state);
    }
    Ok(())
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

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;
    use raft::Storage;

    #[test]
    fn a_log_the_database_kept_moves_to_the_write_ahead_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = DiskBackend::open(&dir.path().join("db")).unwrap();
        let conf_state = ConfState::from((vec![1, 2, 3], vec![]));
        let hard_state = HardState {
            term: 4,
            vote: 2,
            commit: 7,
        };
        let mut start = 5u64.to_be_bytes().to_vec();
        start.extend_from_slice(&3u64.to_be_bytes());
        let legacy = [
            (LEGACY_CONF_STATE_KEY, codec::encode_conf_state(&conf_state)),
            (LEGACY_HARD_STATE_KEY, codec::encode_hard_state(&hard_state)),
            (LEGACY_LOG_START_KEY, start),
        ];
        for (key, value) in &legacy {
            backend.stage_raft(Space::RaftState, key, Some(value));
        }
        for index in 6..=8 {
            let mut encoded = Vec::new();
            let entry = Entry {
                index,
                term: 4,
                data: vec![index as u8],
                ..Default::default()
            };
            codec::encode_entry_into(&entry, &mut encoded);
            backend.stage_raft(Space::RaftLog, &index.to_be_bytes(), Some(&encoded));
        }
        backend.commit(true).unwrap();

        let wal_dir = dir.path().join("wal");
        let (mut wal, replayed) = Wal::open(&wal_dir).unwrap();
        let storage = load(&mut wal, replayed, &mut backend, 6).unwrap().unwrap();
        let state = storage.initial_state().unwrap();
        assert_eq!(state.hard_state, hard_state);
        assert_eq!(state.conf_state, conf_state);
        assert_eq!(storage.first_index().unwrap(), 6);
        assert_eq!(storage.last_index().unwrap(), 8);
        assert_eq!(storage.term(5).unwrap(), 3);
        assert!(backend.read_raft(Space::RaftState).unwrap().is_empty());
        assert!(backend.read_raft(Space::RaftLog).unwrap().is_empty());
        drop(wal);

        // Once moved, the log is read from its own files.
        let (mut wal, replayed) = Wal::open(&wal_dir).unwrap();
        assert_eq!(replayed.start, (5, 3));
        assert_eq!(replayed.entries.len(), 3);
        let storage = load(&mut wal, replayed, &mut backend, 6).unwrap().unwrap();
        assert_eq!(storage.initial_state().unwrap().hard_state, hard_state);
    }

    fn entries_of_term_1(indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        indexes
            .map(|index| Entry {
                index,
                term: 1,
                ..Default::default()
            })
            .collect()
    }

    /// A log marked as installing, with the given snapshot recorded as
    /// installed in the database (or none); entries 1..=5 before it.
    fn interrupted_install(
        dir: &std::path::Path,
        installed: Option<(u64, u64)>,
    ) -> (Wal, Replayed, DiskBackend) {
        let mut backend = DiskBackend::open(&dir.join("db")).unwrap();
        let conf_state = ConfState::from((vec![1], vec![]));
        backend.put(
            Table::Meta,
            META_CONF_STATE,
            &codec::encode_conf_state(&conf_state),
        );
        if let Some((index, term)) = installed {
            stage_installed_snapshot(&mut backend, index, term);
        }
        backend.commit(true).unwrap();
        let wal_dir = dir.join("wal");
        let (mut wal, _) = Wal::open(&wal_dir).unwrap();
        wal.append(&entries_of_term_1(1..=5)).unwrap();
        wal.set_installing(true).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (wal, replayed) = Wal::open(&wal_dir).unwrap();
        assert!(replayed.installing);
        (wal, replayed, backend)
    }

    #[test]
    fn an_install_whose_tables_are_whole_is_finished_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, replayed, mut backend) = interrupted_install(dir.path(), Some((100, 3)));
        let storage = load(&mut wal, replayed, &mut backend, 100)
            .unwrap()
            .unwrap();
        assert_eq!(storage.first_index().unwrap(), 101);
        assert_eq!(storage.term(100).unwrap(), 3);
        drop(wal);
        let (_, replayed) = Wal::open(&dir.path().join("wal")).unwrap();
        assert!(!replayed.installing);
        assert_eq!(replayed.start, (100, 3));
        assert!(replayed.entries.is_empty());
    }

    #[test]
    fn an_install_whose_tables_are_not_whole_is_refused() {
        for installed in [None, Some((0, 0))] {
            let dir = tempfile::tempdir().unwrap();
            let (mut wal, replayed, mut backend) = interrupted_install(dir.path(), installed);
            let error = load(&mut wal, replayed, &mut backend, 5).err().unwrap();
            assert!(
                error.0.contains("interrupted snapshot install"),
                "{}",
                error.0
            );
        }
    }

    #[test]
    fn the_commit_index_covers_what_the_state_machine_applied() {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = DiskBackend::open(&dir.path().join("db")).unwrap();
        let wal_dir = dir.path().join("wal");
        let (mut wal, _) = Wal::open(&wal_dir).unwrap();
        let conf_state = ConfState::from((vec![1], vec![]));
        create(&mut wal, &mut backend, conf_state, Some(b"first".to_vec())).unwrap();
        wal.append(&entries_of_term_1(2..=4)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        // The state machine applied entry 3; the hard state on disk says 1.
        let (mut wal, replayed) = Wal::open(&wal_dir).unwrap();
        let storage = load(&mut wal, replayed, &mut backend, 3).unwrap().unwrap();
        assert_eq!(storage.initial_state().unwrap().hard_state.commit, 3);
        drop(wal);
        // It never claims entries the log does not hold.
        let (mut wal, replayed) = Wal::open(&wal_dir).unwrap();
        let storage = load(&mut wal, replayed, &mut backend, 9).unwrap().unwrap();
        assert_eq!(storage.initial_state().unwrap().hard_state.commit, 4);
    }
}

//! A survivor's raft log rewritten for a cluster of one: the log starts at
//! the state machine's applied entry and keeps every entry after it, and
//! the configuration holds this member alone.
//!
//! etcd's `--force-new-cluster` drops the entries the member never learned
//! were committed. Those may have been committed and acknowledged (the
//! leader learns it first and tells the followers with its next message),
//! so they are kept here, committed, as a leader elected with this log
//! would commit them: no acknowledged write that this member holds is
//! lost.

use std::path::Path;

use e2d_core::storage::StorageError;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState};

use super::codec;
use super::log_store::{commit_past_end, stage_conf_state};
use super::wal::Wal;
use crate::storage::DiskBackend;

/// What the rewrite kept and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRewrite {
    /// The entry the new log starts at (the state machine's applied one).
    pub start_index: u64,
    /// Entries after it, kept for the restart to apply.
    pub kept_entries: u64,
    /// Of those, the ones this member had not learned were committed.
    pub past_known_commit: u64,
    /// Membership changes among the kept entries, made into empty
    /// entries: the configuration is this member alone.
    pub emptied_conf_changes: u64,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError(format!("raft log: {what}: {e}"))
}

/// Writes the new log into `new_dir` (which must not exist yet) from the
/// log in `old_dir`, which keeps its entries (opening it may cut off a
/// write a crash interrupted, as any start does). `applied` is the state
/// machine's applied index.
pub fn rewrite_log_alone(
    old_dir: &Path,
    new_dir: &Path,
    applied: u64,
) -> Result<LogRewrite, StorageError> {
    let (old, replayed) = Wal::open(old_dir)?;
    drop(old);
    if replayed.installing {
        return Err(StorageError(
            "a snapshot install was under way when this member stopped, so its data may be incomplete: \
             start it once with `e2d run` to finish the install, or recover from another survivor"
                .into(),
        ));
    }
    let mut hard_state = match &replayed.hard_state {
        Some(encoded) => codec::decode_hard_state(encoded).map_err(|e| corrupt("hard state", e))?,
        None => HardState::default(),
    };
    let (start_index, start_term) = replayed.start;
    if applied < start_index || applied > replayed.last_index() {
        return Err(StorageError(format!(
            "the state machine applied entry {applied}, but the raft log holds entries {} to {}: \
             this member's data is inconsistent and cannot found a cluster",
            start_index,
            replayed.last_index()
        )));
    }
    if hard_state.commit > replayed.last_index() {
        return Err(commit_past_end(hard_state.commit, replayed.last_index()));
    }
    let known_commit = hard_state.commit.max(applied);
    let mut start = (applied, start_term);
    let mut kept = Vec::new();
    let mut rewrite = LogRewrite {
        start_index: applied,
        kept_entries: 0,
        past_known_commit: replayed.last_index() - known_commit,
        emptied_conf_changes: 0,
    };
    for (index, encoded) in &replayed.entries {
        let mut entry = codec::decode_entry(encoded).map_err(|e| corrupt("entry", e))?;
        if entry.index != *index {
            return Err(corrupt(
                "entry",
                format!("the record of entry {index} holds entry {}", entry.index),
            ));
        }
        if entry.index == applied {
            start.1 = entry.term;
        } else if entry.index > applied {
            if entry.get_entry_type() != EntryType::EntryNormal {
                entry = Entry {
                    term: entry.term,
                    index: entry.index,
                    ..Default::default()
                };
                rewrite.emptied_conf_changes += 1;
            }
            kept.push(entry);
        }
    }
    rewrite.kept_entries = kept.len() as u64;
    hard_state.commit = kept.last().map_or(applied, |e| e.index);
    // A term at least that of every entry the log holds.
    let last_term = kept.last().map_or(start.1, |e| e.term);
    hard_state.term = hard_state.term.max(last_term);
    let (mut new, _) = Wal::open(new_dir)?;
    new.snapshot(start.0, start.1)?;
    new.append(&kept)?;
    new.set_hard_state(&hard_state)?;
    new.sync()?;
    Ok(rewrite)
}

/// Stages the configuration of a cluster of one: `member_id` its only
/// voter.
pub fn stage_conf_state_alone(backend: &mut DiskBackend, member_id: u64) {
    stage_conf_state(backend, &ConfState::from((vec![member_id], Vec::new())));
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, entry_type: EntryType) -> Entry {
        let mut entry = Entry {
            index,
            term,
            data: vec![index as u8],
            ..Default::default()
        };
        entry.set_entry_type(entry_type);
        entry
    }

    #[test]
    fn the_new_log_starts_at_the_applied_entry_and_commits_every_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let (old_dir, new_dir) = (dir.path().join("wal"), dir.path().join("new"));
        let (mut wal, _) = Wal::open(&old_dir).unwrap();
        let entries: Vec<Entry> = (1..=10)
            .map(|i| {
                let kind = if i == 8 {
                    EntryType::EntryConfChangeV2
                } else {
                    EntryType::EntryNormal
                };
                entry(i, 1 + i / 5, kind)
            })
            .collect();
        wal.append(&entries).unwrap();
        wal.set_hard_state(&HardState {
            term: 3,
            vote: 7,
            commit: 9,
        })
        .unwrap();
        wal.sync().unwrap();
        drop(wal);

        let rewrite = rewrite_log_alone(&old_dir, &new_dir, 6).unwrap();
        assert_eq!(
            rewrite,
            LogRewrite {
                start_index: 6,
                kept_entries: 4,
                past_known_commit: 1,
                emptied_conf_changes: 1,
            }
        );
        let (_, replayed) = Wal::open(&new_dir).unwrap();
        assert_eq!(replayed.start, (6, 2), "entry 6's term");
        let kept: Vec<Entry> = replayed
            .entries
            .iter()
            .map(|(_, e)| codec::decode_entry(e).unwrap())
            .collect();
        assert_eq!(
            kept.iter().map(|e| e.index).collect::<Vec<_>>(),
            [7, 8, 9, 10]
        );
        assert_eq!(kept[0].data, [7]);
        assert_eq!(kept[1].get_entry_type(), EntryType::EntryNormal);
        assert!(kept[1].data.is_empty(), "the membership change is emptied");
        let hard = codec::decode_hard_state(replayed.hard_state.as_ref().unwrap()).unwrap();
        assert_eq!((hard.term, hard.vote, hard.commit), (3, 7, 10));
        // The old log keeps every entry.
        let (_, old) = Wal::open(&old_dir).unwrap();
        assert_eq!(old.last_index(), 10);
        assert_eq!(old.entries.len(), 10);
    }

    #[test]
    fn an_applied_index_outside_the_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (old_dir, new_dir) = (dir.path().join("wal"), dir.path().join("new"));
        let (mut wal, _) = Wal::open(&old_dir).unwrap();
        wal.append(&[entry(1, 1, EntryType::EntryNormal)]).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let refused = rewrite_log_alone(&old_dir, &new_dir, 5).unwrap_err();
        assert!(refused.0.contains("applied entry 5"), "{refused}");
        // Nor a log whose hard state commits past its end.
        let (mut wal, _) = Wal::open(&old_dir).unwrap();
        wal.set_hard_state(&HardState {
            term: 1,
            vote: 0,
            commit: 3,
        })
        .unwrap();
        wal.sync().unwrap();
        drop(wal);
        let refused = rewrite_log_alone(&old_dir, &new_dir, 1).unwrap_err();
        assert!(refused.0.contains("the log is damaged"), "{refused}");
    }
}

//! `e2d cluster recover`: after a majority of the members is lost for
//! good, a stopped survivor's data dir becomes a cluster of one, as etcd's
//! `--force-new-cluster` makes it; `e2d run` on it then serves alone, and
//! new nodes join it as learners up to the cluster's size.
//!
//! The steps, each safe to repeat after a crash:
//! 1. the new raft log is written whole into `wal.recovering`;
//! 2. the marker file `recovering` records the old and new cluster ids and
//!    the archive the old log goes to;
//! 3. the database takes the new cluster id, a configuration of this member
//!    alone, and a member list without the others (removed for good);
//! 4. the old log moves to `archive/before-recovery-<time>/wal`, never
//!    deleted;
//! 5. the new log takes its place, a recorded choice to leave the old
//!    cluster's recovery to another survivor (`recovery-left-to`) goes, and
//!    the marker goes.
//!
//! A start (`e2d run`, or `recover` again) that finds the marker finishes
//! from step 3; a `wal.recovering` without the marker is an attempt that
//! never reached step 2, and is set aside.

use std::path::{Path, PathBuf};

use e2d_core::storage::{read_meta_u64, Backend};
use e2d_core::StateMachine;

use super::data_dir::{data_dir_error, free_archive_name, ARCHIVE_DIR};
use super::start::{open_backend, wal_dir};
use super::RunError;
use crate::durable_file;
use crate::raft::{rewrite_log_alone, stage_conf_state_alone, LogRewrite};
use crate::server::node::META_APPLIED_INDEX;
use crate::server::{recovered_cluster_id, Identity};
use crate::storage::DiskBackend;

/// The marker of a recovery under way.
const MARKER_FILE: &str = "recovering";
/// Where the new log is written before it takes the old one's place.
const NEW_WAL_DIR: &str = "wal.recovering";

/// What a recovery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub member_id: u64,
    pub old_cluster_id: u64,
    pub cluster_id: u64,
    /// Members removed for good.
    pub removed_members: usize,
    pub log: LogRewrite,
    /// Where the old raft log was moved.
    pub archive: PathBuf,
}

/// A recovery's marker: the cluster ids and the archive's name.
struct Marker {
    old_cluster_id: u64,
    cluster_id: u64,
    archive_name: String,
}

impl Marker {
    fn encode(&self) -> String {
        format!(
            "{:x} {:x} {}\n",
            self.old_cluster_id, self.cluster_id, self.archive_name
        )
    }

    fn decode(text: &str) -> Option<Marker> {
        let mut parts = text.split_whitespace();
        let old_cluster_id = u64::from_str_radix(parts.next()?, 16).ok()?;
        let cluster_id = u64::from_str_radix(parts.next()?, 16).ok()?;
        let archive_name = parts.next()?.to_string();
        let plain = !archive_name.contains(['/', '\\']) && archive_name != "..";
        (plain && parts.next().is_none()).then_some(Marker {
            old_cluster_id,
            cluster_id,
            archive_name,
        })
    }

    /// Where the old log goes.
    fn archive(&self, data_dir: &Path) -> PathBuf {
        data_dir.join(ARCHIVE_DIR).join(&self.archive_name)
    }
}

fn database_error(data_dir: &Path, e: impl std::fmt::Display) -> RunError {
    RunError::Database {
        path: data_dir.display().to_string(),
        reason: e.to_string(),
    }
}

/// Recovers the stopped member in `data_dir` as a cluster of one.
pub fn recover(data_dir: &Path, now_unix_s: u64) -> Result<Recovered, RunError> {
    let no_member = || {
        RunError::Cluster(format!(
            "{} holds no member's data: pass the data dir of a member that survived",
            data_dir.display()
        ))
    };
    if !wal_dir(data_dir).exists() {
        return Err(no_member());
    }
    // Opening the database locks the data dir against a running e2d.
    let backend = open_backend(data_dir)?;
    if data_dir.join(MARKER_FILE).exists() {
        drop(finish_interrupted(data_dir, backend)?);
        return Err(RunError::Cluster(format!(
            "a recovery of {} that a stop interrupted is now finished: start the member with `e2d run`",
            data_dir.display()
        )));
    }
    set_aside_unmarked_attempt(data_dir)?;
    let (member_id, old_cluster_id) = Identity::stored_ids(&backend)?.ok_or_else(no_member)?;
    let applied = read_meta_u64(&backend, META_APPLIED_INDEX)
        .map_err(|e| database_error(data_dir, e))?
        .unwrap_or(0);
    let state = StateMachine::open(backend, 0).map_err(|e| database_error(data_dir, e))?;
    let members = state.members().map_err(|e| database_error(data_dir, e))?;
    match members.iter().find(|m| m.member_id == member_id) {
        Some(me) if me.is_learner => {
            return Err(RunError::Cluster(format!(
                "member {member_id:x} is a learner, which may lack committed writes: recover from the data dir of a voting member"
            )))
        }
        Some(_) => {}
        None => {
            return Err(RunError::Cluster(format!(
                "member {member_id:x} is not in its cluster's member list (it was removed): recover from the data dir of a current member"
            )))
        }
    }

    // 1. The new log, whole.
    let new_wal = data_dir.join(NEW_WAL_DIR);
    let log = rewrite_log_alone(&wal_dir(data_dir), &new_wal, applied)
        .map_err(|e| database_error(data_dir, e))?;
    // 2. The marker.
    let marker = Marker {
        old_cluster_id,
        cluster_id: recovered_cluster_id(old_cluster_id, member_id, applied),
        archive_name: free_archive_name(data_dir, &format!("before-recovery-{now_unix_s}")),
    };
    durable_file::replace(&data_dir.join(MARKER_FILE), marker.encode().as_bytes())
        .map_err(|e| data_dir_error(&data_dir.join(MARKER_FILE), e))?;
    // 3 to 5.
    let removed_members = members.len() - 1;
    drop(finish(data_dir, state, &marker)?);
    Ok(Recovered {
        member_id,
        old_cluster_id,
        cluster_id: marker.cluster_id,
        removed_members,
        log,
        archive: marker.archive(data_dir),
    })
}

/// `e2d cluster recover --data-dir DIR`: recovers, and says what it did
/// and what comes next.
pub fn recover_command(data_dir: &Path) -> Result<String, String> {
    let done = recover(data_dir, super::unix_now_s()).map_err(|e| e.to_string())?;
    Ok(format!(
        "member {:x} now forms cluster {:x} alone (recovered from cluster {:x}); \
         {} other members removed; the raft log starts at applied entry {} with {} \
         later entries kept ({} of them past the commit it knew of); the old log is in {}.\n\
         Start it with `e2d run` and the same flags: new nodes join it up to the cluster's size. \
         Do not start the lost members on their old data dirs: move those aside first.\n",
        done.member_id,
        done.cluster_id,
        done.old_cluster_id,
        done.removed_members,
        done.log.start_index,
        done.log.kept_entries,
        done.log.past_known_commit,
        done.archive.display()
    ))
}

/// Finishes a recovery a crash interrupted, if the data dir holds one.
pub fn finish_interrupted(data_dir: &Path, backend: DiskBackend) -> Result<DiskBackend, RunError> {
    let marker_path = data_dir.join(MARKER_FILE);
    let text = match std::fs::read_to_string(&marker_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            set_aside_unmarked_attempt(data_dir)?;
            return Ok(backend);
        }
        Err(e) => return Err(data_dir_error(&marker_path, e)),
    };
    let marker = Marker::decode(&text).ok_or_else(|| {
        RunError::Cluster(format!(
            "{} is damaged ({text:?}): a recovery of this data dir was under way; \
             restore the member from a snapshot, or move the data dir away",
            marker_path.display()
        ))
    })?;
    tracing::info!(
        "finishing the recovery of cluster {:x} as cluster {:x} that a stop interrupted",
        marker.old_cluster_id,
        marker.cluster_id
    );
    let state = StateMachine::open(backend, 0).map_err(|e| database_error(data_dir, e))?;
    Ok(finish(data_dir, state, &marker)?.into_backend())
}

/// Steps 3 to 5, on the member's opened state.
fn finish(
    data_dir: &Path,
    mut state: StateMachine<DiskBackend>,
    marker: &Marker,
) -> Result<StateMachine<DiskBackend>, RunError> {
    let (member_id, _) = Identity::stored_ids(state.mvcc().backend())?.ok_or_else(|| {
        RunError::Cluster(format!(
            "{} marks a recovery, but the database holds no member: restore the member from a snapshot",
            data_dir.display()
        ))
    })?;
    // 3. The database.
    let others: Vec<u64> = state
        .members()
        .map_err(|e| database_error(data_dir, e))?
        .into_iter()
        .map(|m| m.member_id)
        .filter(|&id| id != member_id)
        .collect();
    for id in others {
        state.remove_member(id);
    }
    let backend = state.backend_mut();
    Identity::stage_recovered(backend, marker.cluster_id, marker.old_cluster_id, member_id)
        .map_err(|e| database_error(data_dir, e))?;
    stage_conf_state_alone(backend, member_id);
    super::start::stage_forget_join_peers(backend);
    backend
        .commit(true)
        .map_err(|e| database_error(data_dir, e))?;
    // 4. The old log, aside.
    let new_wal = data_dir.join(NEW_WAL_DIR);
    let archive = marker.archive(data_dir);
    let old_wal = wal_dir(data_dir);
    if new_wal.exists() && old_wal.exists() {
        durable_file::create_dir_all(&archive).map_err(|e| data_dir_error(&archive, e))?;
        crate::storage::rename_dir(&old_wal, &archive.join("wal"))
            .map_err(|e| data_dir_error(&old_wal, e))?;
    }
    // 5. The new log in its place; the marker last.
    if new_wal.exists() {
        crate::storage::rename_dir(&new_wal, &old_wal).map_err(|e| data_dir_error(&new_wal, e))?;
    }
    super::data_dir::clear_recovery_left_to(data_dir).map_err(|e| data_dir_error(data_dir, e))?;
    let marker_path = data_dir.join(MARKER_FILE);
    std::fs::remove_file(&marker_path).map_err(|e| data_dir_error(&marker_path, e))?;
    durable_file::sync_dir(data_dir).map_err(|e| data_dir_error(data_dir, e))?;
    Ok(state)
}

/// A `wal.recovering` left by an attempt that stopped before its marker
/// was written: the old log is whole and in place, so the attempt's log
/// goes into the archive.
fn set_aside_unmarked_attempt(data_dir: &Path) -> Result<(), RunError> {
    let new_wal = data_dir.join(NEW_WAL_DIR);
    if !new_wal.exists() {
        return Ok(());
    }
    let archive_root = data_dir.join(ARCHIVE_DIR);
    durable_file::create_dir_all(&archive_root).map_err(|e| data_dir_error(&archive_root, e))?;
    let target = archive_root.join(free_archive_name(data_dir, "unfinished-recovery"));
    crate::storage::rename_dir(&new_wal, &target).map_err(|e| data_dir_error(&new_wal, e))?;
    tracing::info!(
        "set aside {} (a recovery that stopped before it began) as {}",
        new_wal.display(),
        target.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_reads_back_and_refuses_paths() {
        let marker = Marker {
            old_cluster_id: 0xabc,
            cluster_id: 0xdef,
            archive_name: "before-recovery-5".into(),
        };
        let read = Marker::decode(&marker.encode()).unwrap();
        assert_eq!(
            (
                read.old_cluster_id,
                read.cluster_id,
                read.archive_name.as_str()
            ),
            (0xabc, 0xdef, "before-recovery-5")
        );
        for bad in [
            "",
            "abc",
            "abc def",
            "abc def ../x",
            "abc def a/b",
            "zz def a",
            "abc def a b",
        ] {
            assert!(Marker::decode(bad).is_none(), "{bad:?}");
        }
    }
}

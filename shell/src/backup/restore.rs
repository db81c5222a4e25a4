//! Restoring a snapshot: fetch it, open and verify it into a staging file
//! (nothing unverified reaches a data dir), then load it into an empty
//! database as the start of a new cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use e2d_core::schedule::SnapshotInfo;
use e2d_core::storage::{Backend, Table};
use e2d_core::StateMachine;
use indicatif::ProgressBar;

use super::envelope::{self, Layers, OpenError};
use super::store::{Store, StoreError};
use super::take::TempFile;
use super::{snapshots_in, BackupConfig, SnapshotKeys};
use crate::payload::PayloadFormat;
use crate::snapshot::SnapshotError;
use crate::storage::DiskBackend;

/// e2d's own keys; a restored cluster starts without the old cluster's.
pub const E2D_PREFIX: &[u8] = b"/_e2d/";
/// Set, through raft, to the time of a restore once the restored cluster
/// runs.
pub const RESTORED_AT_KEY: &[u8] = b"/_e2d/snapshot";

/// Why a snapshot's contents were refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Envelope(#[from] OpenError),
    #[error(transparent)]
    Payload(#[from] SnapshotError),
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The store could not be reached or read: worth another try.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The snapshot itself was refused: another try gives the same.
    #[error("snapshot {name} refused: {refusal}")]
    Refused { name: String, refusal: Refusal },
}

/// Opens the stored snapshot at `stored` into a new payload file at
/// `payload` and verifies both layers: the envelope's tag, then the
/// payload (e2d's digest, or etcd's hash and every page). On refusal
/// `payload` is removed.
pub fn open_verified(
    stored: &Path,
    payload: &Path,
    keys: Option<&SnapshotKeys>,
    require_sealed: bool,
) -> Result<(Layers, PayloadFormat), Refusal> {
    let opened = (|| -> Result<(Layers, PayloadFormat), Refusal> {
        let input = std::io::BufReader::new(std::fs::File::open(stored).map_err(OpenError::Io)?);
        let file = crate::durable_file::create_new(payload).map_err(OpenError::Io)?;
        let mut out = std::io::BufWriter::new(file);
        let layers = envelope::open(input, &mut out, keys, require_sealed)?;
        let file = out
            .into_inner()
            .map_err(|e| OpenError::Io(e.into_error()))?;
        file.sync_all().map_err(OpenError::Io)?;
        drop(file);
        let format = crate::payload::verify(payload)?;
        Ok((layers, format))
    })();
    if opened.is_err() {
        let _ = std::fs::remove_file(payload);
    }
    opened
}

/// Downloads `name` into `staging` and verifies it; returns the payload
/// file.
pub async fn fetch_verified(
    store: &Store,
    name: &str,
    staging: &Path,
    config: &BackupConfig,
    progress: &ProgressBar,
) -> Result<PathBuf, FetchError> {
    let io = |e: std::io::Error| {
        FetchError::Store(StoreError {
            store: staging.display().to_string(),
            action: "staging".into(),
            reason: e.to_string(),
        })
    };
    crate::durable_file::create_dir_all(staging).map_err(io)?;
    let download = TempFile(staging.join(format!(".{name}.download")));
    let payload = staging.join(format!("{name}.payload"));
    match std::fs::remove_file(&payload) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    store.get(name, &download.0, progress).await?;
    let (stored, opened) = (download.0.clone(), payload.clone());
    let keys = config.open_keys.clone();
    let require_sealed = config.require_sealed();
    let verified = crate::blocking::spawn(move || {
        open_verified(&stored, &opened, keys.as_ref(), require_sealed)
    })
    .await
    .map_err(|e| io(std::io::Error::other(e)))?;
    verified.map_err(|refusal| FetchError::Refused {
        name: name.to_string(),
        refusal,
    })?;
    Ok(payload)
}

/// The newest snapshot in the store that opens and verifies, trying
/// older ones when a newer is refused (each refusal is logged and kept in
/// `refused`, so it is not fetched again). `Ok(None)`: the store holds no
/// snapshot at all. An error: the store failed, or every snapshot was
/// refused.
pub async fn fetch_newest_restorable(
    store: &Store,
    staging: &Path,
    config: &BackupConfig,
    refused: &mut BTreeMap<String, String>,
) -> Result<Option<(SnapshotInfo, PathBuf)>, String> {
    let mut snapshots: Vec<SnapshotInfo> =
        snapshots_in(&store.list().await.map_err(|e| e.to_string())?)
            .into_iter()
            .filter(|snapshot| snapshot.valid)
            .collect();
    if snapshots.is_empty() {
        return Ok(None);
    }
    snapshots.sort_by(|a, b| b.recency_key().cmp(&a.recency_key()));
    if crate::sim_bugs::planted().restore_skips_the_newest_snapshot && snapshots.len() > 1 {
        snapshots.remove(0);
    }
    for snapshot in snapshots {
        if refused.contains_key(&snapshot.name) {
            continue;
        }
        match fetch_verified(
            store,
            &snapshot.name,
            staging,
            config,
            &ProgressBar::hidden(),
        )
        .await
        {
            Ok(payload) => return Ok(Some((snapshot, payload))),
            Err(FetchError::Store(e)) => return Err(e.to_string()),
            Err(e @ FetchError::Refused { .. }) => {
                tracing::warn!(snapshot = %snapshot.name, "{e}; trying the next newest");
                refused.insert(snapshot.name.clone(), e.to_string());
            }
        }
    }
    let reasons: Vec<&str> = refused.values().map(String::as_str).collect();
    Err(format!(
        "{} holds snapshots, but none could be restored: {}",
        config.location,
        reasons.join("; ")
    ))
}

/// What a snapshot carries into a new cluster: the keys and leases, the
/// store's revisions and the auth store (users, roles, whether auth is on),
/// not the old cluster's members, alarms or raft position.
pub fn is_restored(table: Table, key: &[u8]) -> bool {
    match table {
        Table::Kv | Table::Lease | Table::Auth => true,
        Table::Meta => e2d_core::mvcc::is_store_meta(key),
    }
}

/// Loads the verified payload at `payload` into `backend` (which must hold
/// no member), then deletes e2d's own keys (`/_e2d/*`, the old cluster's
/// locks and markers) in one new revision, and puts `restored_at` under
/// [`RESTORED_AT_KEY`] when given. Returns the store's revision.
pub fn load_into(
    backend: DiskBackend,
    payload: &Path,
    restored_at: Option<String>,
    now_ms: u64,
) -> Result<(DiskBackend, i64), e2d_core::Error> {
    let mut backend = crate::payload::replace_tables(backend, payload, &is_restored)?;
    backend.commit(true)?;
    let mut state = StateMachine::open(backend, now_ms)?;
    let e2d_end = e2d_core::apply::prefix_end(E2D_PREFIX);
    state.delete_range(&e2d_proto::etcdserverpb::DeleteRangeRequest {
        key: E2D_PREFIX.to_vec(),
        range_end: e2d_end,
        ..Default::default()
    })?;
    if let Some(restored_at) = restored_at {
        state.put(&e2d_proto::etcdserverpb::PutRequest {
            key: RESTORED_AT_KEY.to_vec(),
            value: restored_at.into_bytes(),
            ..Default::default()
        })?;
    }
    let revision = state.current_revision();
    let mut backend = state.into_backend();
    backend.commit(true)?;
    Ok((backend, revision))
}

/// A time as `/_e2d/snapshot` holds it: RFC 3339 in UTC.
pub fn restored_at_text(now_ms: u64) -> String {
    e2d_core::schedule::utc_rfc3339(now_ms)
}

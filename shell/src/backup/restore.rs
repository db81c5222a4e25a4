//! Restoring a snapshot: fetch it, open and verify it into a staging file
//! (nothing unverified reaches a data dir), then load it into an empty
//! database as the start of a new cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::collections::BTreeSet;

use e2d_core::delta::replay::ReplayStop;
use e2d_core::delta::{decode_delta, replay_record, DeltaHeader};
use e2d_core::schedule::{chain_for, chains, next_delta, reach, Chain, ReplayTarget, SnapshotInfo};
use e2d_core::storage::StorageError;
use e2d_core::storage::{Backend, Table};
use e2d_core::StateMachine;
use indicatif::ProgressBar;

use super::envelope::{self, Layers, OpenError};
use super::store::{Store, StoreError};
use super::take::TempFile;
use super::{delta, snapshots_in, BackupConfig, SnapshotKeys};
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

/// A full snapshot fetched and verified, and the deltas planned on top.
pub struct Restorable {
    pub snapshot: SnapshotInfo,
    pub payload: PathBuf,
    pub replay: ReplayPlan,
}

impl Restorable {
    /// What founders agree on to restore the same state: the snapshot's
    /// name, then the raft index its deltas are replayed to, if any (one
    /// cluster's log holds one entry at an index, so the two name the
    /// state; short enough for gossip).
    pub fn identity(&self) -> String {
        match (self.replay.steps.is_empty(), self.replay.reached_index) {
            (false, Some(index)) => format!("{}+{index}", self.snapshot.name),
            _ => self.snapshot.name.clone(),
        }
    }
}

/// The newest chain in the store, or the one a point-in-time `target`
/// needs, whose full snapshot opens and verifies, trying older ones when
/// a newer is refused (each refusal is logged and kept in `refused`, so it
/// is not fetched again), with its deltas fetched and planned. `Ok(None)`:
/// the store holds no snapshot at all. An error: the store failed, or
/// every snapshot was refused.
pub async fn fetch_restorable(
    store: &Store,
    staging: &Path,
    config: &BackupConfig,
    target: ReplayTarget,
    refused: &mut BTreeMap<String, String>,
) -> Result<Option<Restorable>, String> {
    let objects = store.list().await.map_err(|e| e.to_string())?;
    let (snapshots, deltas) = (snapshots_in(&objects), delta::deltas_in(&objects));
    let chains = chains(&snapshots, &deltas);
    if !chains.iter().any(|chain| chain.full.valid) {
        return Ok(None);
    }
    let mut skipped: BTreeSet<String> = refused.keys().cloned().collect();
    if crate::sim_bugs::planted().restore_skips_the_newest_snapshot {
        let valid = chains.iter().filter(|c| c.full.valid).count();
        if let (true, Some(newest)) = (valid > 1, chain_for(&chains, None, target, &skipped)) {
            skipped.insert(newest.full.name.clone());
        }
    }
    while let Some(chain) = chain_for(&chains, None, target, &skipped) {
        let snapshot = chain.full;
        skipped.insert(snapshot.name.clone());
        match fetch_verified(
            store,
            &snapshot.name,
            staging,
            config,
            &ProgressBar::hidden(),
        )
        .await
        {
            Ok(payload) => {
                let replay = plan_replay(store, chain, staging, config, target).await?;
                return Ok(Some(Restorable {
                    snapshot: snapshot.clone(),
                    payload,
                    replay,
                }));
            }
            Err(FetchError::Store(e)) => return Err(e.to_string()),
            Err(e @ FetchError::Refused { .. }) => {
                tracing::warn!(snapshot = %snapshot.name, "{e}; trying the next newest");
                refused.insert(snapshot.name.clone(), e.to_string());
            }
        }
    }
    if refused.is_empty() {
        return Err(match target {
            ReplayTarget::Newest => format!("{} holds no valid snapshot", config.location),
            _ => format!(
                "{} holds no valid snapshot taken at or before {}",
                config.location,
                target_text(target)
            ),
        });
    }
    let reasons: Vec<&str> = refused.values().map(String::as_str).collect();
    Err(format!(
        "{} holds snapshots, but none could be restored: {}",
        config.location,
        reasons.join("; ")
    ))
}

/// A target as the user wrote it.
pub fn target_text(target: ReplayTarget) -> String {
    match target {
        ReplayTarget::Newest => "the newest".into(),
        ReplayTarget::Revision(revision) => format!("revision {revision}"),
        ReplayTarget::Time(ms) => e2d_core::schedule::utc_rfc3339(ms),
    }
}

/// One delta a replay reads: its payload, opened, on disk.
#[derive(Debug, Clone)]
pub struct ReplayStep {
    pub name: String,
    pub payload: PathBuf,
    /// Records to use (those before any damage).
    pub records: usize,
}

/// The deltas a restore replays on top of its full snapshot, in order.
#[derive(Debug, Clone, Default)]
pub struct ReplayPlan {
    pub steps: Vec<ReplayStep>,
    /// Where the replay starts: the raft index the full snapshot holds.
    pub start_index: u64,
    pub target: Option<ReplayTarget>,
    /// What the chain holds that cannot be replayed (a damaged or missing
    /// delta), said as what is lost.
    pub lost: Option<String>,
    /// The revision the planned deltas reach; `None` without deltas.
    pub reached: Option<i64>,
    /// The raft index they reach.
    pub reached_index: Option<u64>,
}

impl ReplayPlan {
    /// The revision a replay on a snapshot at `base_revision` reaches.
    pub fn reached_revision(&self, base_revision: i64) -> i64 {
        self.reached.unwrap_or(base_revision).max(base_revision)
    }
}

/// Fetches and checks the deltas of `chain` a replay to `target` reads,
/// following [`next_delta`] from the raft index the full snapshot holds:
/// a delta refused whole is passed over for another covering the same
/// entries; a damaged one gives the records before the damage. Where the
/// chain cannot go on, `lost` says what is lost.
async fn plan_replay(
    store: &Store,
    chain: &Chain<'_>,
    staging: &Path,
    config: &BackupConfig,
    target: ReplayTarget,
) -> Result<ReplayPlan, String> {
    let mut plan = ReplayPlan {
        target: Some(target),
        ..Default::default()
    };
    let Some(reach) = reach(&chain.deltas) else {
        return Ok(plan);
    };
    let mut refused = BTreeSet::new();
    let mut problems: Vec<String> = Vec::new();
    // The chain's earliest delta says where the snapshot's entries end.
    let mut base_index = None;
    let (mut at_index, mut at_revision) = (reach.start_index, chain.full.revision);
    // A delta read ends after the target time.
    let mut passed_time = false;
    loop {
        if passed_time
            || matches!(target, ReplayTarget::Revision(revision) if at_revision >= revision)
        {
            break;
        }
        let next = match base_index {
            None => chain
                .deltas
                .iter()
                .copied()
                .find(|d| d.span.from_index == reach.start_index && !refused.contains(&d.name)),
            Some(_) => next_delta(&chain.deltas, at_index, &refused),
        };
        let Some(next) = next else {
            break;
        };
        refused.insert(next.name.clone());
        let decoded = match delta::fetch(store, &next.name, staging, config).await {
            Ok(decoded) => decoded,
            Err(delta::DeltaReadError::Store(e)) => return Err(e.to_string()),
            Err(e @ delta::DeltaReadError::Refused { .. }) => {
                tracing::warn!("{e}");
                problems.push(e.to_string());
                continue;
            }
        };
        let base = *base_index.get_or_insert(decoded.header.base_index);
        if decoded.header.base_index != base || decoded.header.from_index > at_index.max(base) {
            problems.push(format!(
                "delta {} does not follow on (it starts after raft index {}, the replay stands at {})",
                next.name,
                decoded.header.from_index,
                at_index.max(base)
            ));
            if plan.steps.is_empty() && decoded.header.from_index > base {
                break;
            }
            continue;
        }
        if plan.steps.is_empty() {
            at_index = base;
            plan.start_index = base;
        }
        let usable: Vec<_> = decoded
            .records
            .iter()
            .filter(|r| r.index > at_index)
            .cloned()
            .collect();
        if let Some(last) = usable.last() {
            at_revision = last.revision;
        }
        at_index = match &decoded.damage {
            None => {
                passed_time =
                    matches!(target, ReplayTarget::Time(ms) if decoded.header.to_time_ms > ms);
                at_revision = at_revision.max(decoded.header.to_revision);
                decoded.header.to_index
            }
            Some(damage) => {
                let message = format!("delta {} is damaged: {damage}", next.name);
                tracing::warn!("{message}");
                problems.push(message);
                usable.last().map_or(at_index, |r| r.index)
            }
        };
        let payload = staging.join(format!("{}.payload", next.name));
        let header = DeltaHeader {
            to_index: at_index,
            to_revision: at_revision,
            ..decoded.header
        };
        let bytes = e2d_core::delta::encode_delta(&header, &usable);
        crate::durable_file::replace(&payload, &bytes)
            .map_err(|e| format!("staging {}: {e}", payload.display()))?;
        plan.steps.push(ReplayStep {
            name: next.name.clone(),
            payload,
            records: usable.len(),
        });
    }
    plan.reached = Some(at_revision);
    plan.reached_index = Some(at_index);
    let farthest = chain
        .deltas
        .iter()
        .max_by_key(|d| d.span.to_index)
        .expect("a chain with deltas");
    let target_reached = match target {
        ReplayTarget::Revision(revision) => at_revision >= revision,
        ReplayTarget::Time(_) => passed_time || at_index >= farthest.span.to_index,
        ReplayTarget::Newest => at_index >= farthest.span.to_index,
    };
    if base_index.is_none() || (!target_reached && at_index < farthest.span.to_index) {
        plan.lost = Some(format!(
            "the replay stops at revision {at_revision}: the chain's deltas after raft index {at_index} cannot be read ({}), so its changes up to revision {} ({}) are lost",
            if problems.is_empty() { "missing".to_string() } else { problems.join("; ") },
            farthest.span.to_revision,
            e2d_core::schedule::utc_rfc3339(farthest.span.to_time_ms),
        ));
    }
    Ok(plan)
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

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// The store's revision once restored (past e2d's own markers).
    pub revision: i64,
    /// Delta records replayed, and the revision they reached.
    pub replayed: usize,
    pub replayed_revision: Option<i64>,
    /// Why the replay stopped short of the chain's end, if it did.
    pub stopped: Option<String>,
}

/// Loads the verified payload at `payload` into `backend` (which must hold
/// no member), replays `replay`'s deltas on top up to its target, then
/// deletes e2d's own keys (`/_e2d/*`, the old cluster's locks and markers)
/// in one new revision, clears the old cluster's alarms, and puts
/// `restored_at` under [`RESTORED_AT_KEY`] when given.
pub fn load_into(
    backend: DiskBackend,
    payload: &Path,
    replay: &ReplayPlan,
    restored_at: Option<String>,
    now_ms: u64,
) -> Result<(DiskBackend, Restored), e2d_core::Error> {
    let mut backend = crate::payload::replace_tables(backend, payload, is_restored)?;
    backend.commit(true)?;
    let mut state = StateMachine::open(backend, now_ms)?;
    let mut restored = replay_deltas(&mut state, replay, now_ms)?;
    if let Some(lost) = &replay.lost {
        restored.stopped.get_or_insert_with(|| lost.clone());
    }
    for alarm in state.all_alarms() {
        state.alarm(&e2d_proto::etcdserverpb::AlarmRequest {
            action: e2d_proto::etcdserverpb::alarm_request::AlarmAction::Deactivate as i32,
            member_id: alarm.member_id,
            alarm: alarm.alarm,
        });
    }
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
    restored.revision = state.current_revision();
    let mut backend = state.into_backend();
    backend.commit(true)?;
    Ok((backend, restored))
}

/// Replays the plan's deltas, in bounded batches; a record the replay
/// refuses (a missing revision, one that replays differently) stops it
/// there, and `stopped` says so.
fn replay_deltas(
    state: &mut StateMachine<DiskBackend>,
    plan: &ReplayPlan,
    now_ms: u64,
) -> Result<Restored, e2d_core::Error> {
    let target = plan.target.unwrap_or(ReplayTarget::Newest);
    let mut restored = Restored::default();
    let mut at_index = plan.start_index;
    for step in &plan.steps {
        let bytes = std::fs::read(&step.payload)
            .map_err(|e| StorageError(format!("reading {}: {e}", step.payload.display())))?;
        let decoded = decode_delta(&bytes)
            .map_err(|e| StorageError(format!("{}: {e}", step.payload.display())))?;
        for record in decoded.records.iter().take(step.records) {
            if record.index <= at_index {
                continue;
            }
            if !target.includes(record.revision, record.applied_at_ms) {
                return Ok(restored);
            }
            match replay_record(state, record, now_ms) {
                Ok(_) => {}
                Err(ReplayStop::Storage(e)) => return Err(e),
                Err(stop) => {
                    restored.stopped = Some(format!(
                        "the replay stops at revision {} in delta {}: {stop}",
                        state.current_revision(),
                        step.name
                    ));
                    return Ok(restored);
                }
            }
            at_index = record.index;
            restored.replayed += 1;
            restored.replayed_revision = Some(record.revision);
        }
        state.backend_mut().commit(false)?;
    }
    Ok(restored)
}

/// A time as `/_e2d/snapshot` holds it: RFC 3339 in UTC.
pub fn restored_at_text(now_ms: u64) -> String {
    e2d_core::schedule::utc_rfc3339(now_ms)
}

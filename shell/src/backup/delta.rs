//! Backup deltas: the leader ships what was committed since the last full
//! snapshot or delta, from the member's journal, sealed in the snapshots'
//! envelope; a restore fetches and opens them again.

use std::path::Path;

use e2d_core::delta::{decode_delta, encode_delta, DecodedDelta, DeltaHeader, JournalGap};
use e2d_core::schedule::{
    chain_for, chains, parse_delta_name, reach, DeltaInfo, DeltaSpan, ReplayTarget, SnapshotInfo,
};
use indicatif::ProgressBar;

use super::envelope;
use super::store::{StoreError, StoredObject};
use super::take::{write_stored_unsynced, TempFile};
use super::{snapshots_in, BackupConfig, Store};
use crate::server::Node;

/// Where the leader's chain stands: the full snapshot it follows and how
/// far its deltas in the store reach.
#[derive(Debug, Clone)]
pub struct ChainPosition {
    pub base: SnapshotInfo,
    /// The raft index the full snapshot holds everything up to.
    pub base_index: u64,
    /// The last raft index the store's deltas hold.
    pub shipped_index: u64,
    pub shipped_revision: i64,
    /// When the last shipped entry applied.
    pub shipped_time_ms: u64,
}

impl ChainPosition {
    /// A chain that starts at a full snapshot just taken.
    pub fn at(base: SnapshotInfo, base_index: u64) -> Self {
        Self {
            base_index,
            shipped_index: base_index,
            shipped_revision: base.revision,
            shipped_time_ms: base.taken_at_ms,
            base,
        }
    }
}

/// Why a delta was not shipped.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The journal no longer holds what the chain needs: the chain ends,
    /// and a full snapshot starts the next.
    #[error(
        "the journal lost the entries after index {needed} (it holds those after {covered_from})"
    )]
    Gap { needed: u64, covered_from: u64 },
    /// Writing or uploading failed: worth another try.
    #[error("{0}")]
    Upload(String),
}

/// The deltas in a store's listing; other objects are left out.
pub fn deltas_in(objects: &[StoredObject]) -> Vec<DeltaInfo> {
    objects
        .iter()
        .filter_map(|object| {
            Some(DeltaInfo {
                span: parse_delta_name(&object.name)?,
                name: object.name.clone(),
                size_bytes: object.size_bytes,
            })
        })
        .collect()
}

/// Where the newest chain of `cluster_id` in the store stands, if its
/// deltas can be continued; `None` when there is no such chain or it has
/// no delta yet (its start is then unknown).
pub async fn find_chain(store: &Store, cluster_id: u64) -> Result<Option<ChainPosition>, String> {
    let objects = store.list().await.map_err(|e| e.to_string())?;
    let (snapshots, deltas) = (snapshots_in(&objects), deltas_in(&objects));
    let chains = chains(&snapshots, &deltas);
    let none = Default::default();
    let Some(chain) = chain_for(&chains, Some(cluster_id), ReplayTarget::Newest, &none) else {
        return Ok(None);
    };
    Ok(reach(&chain.deltas).map(|reach| ChainPosition {
        base: chain.full.clone(),
        base_index: reach.start_index,
        shipped_index: reach.last.span.to_index,
        shipped_revision: reach.last.span.to_revision,
        shipped_time_ms: reach.last.span.to_time_ms,
    }))
}

/// Ships what the member applied since `chain` last shipped; `Ok(None)`
/// when there is nothing new (an opening delta is shipped even empty: it
/// marks where the chain starts).
pub async fn ship(
    node: &Node,
    store: &Store,
    config: &BackupConfig,
    chain: &mut ChainPosition,
) -> Result<Option<DeltaInfo>, ShipError> {
    let opening = chain.shipped_index == chain.base_index;
    let slice = {
        let journal = node
            .delta_journal()
            .expect("deltas are shipped only by members that journal");
        match journal.since(chain.shipped_index) {
            Ok(slice) => slice,
            Err(JournalGap::Dropped { covered_from }) => {
                return Err(ShipError::Gap {
                    needed: chain.shipped_index,
                    covered_from,
                })
            }
            Err(JournalGap::Ahead { .. }) => return Ok(None),
        }
    };
    if slice.to_index == chain.shipped_index && !opening {
        return Ok(None);
    }
    let mut records = slice.records;
    if crate::sim_bugs::planted().delta_skips_a_revision {
        let creates_a_revision = |at: usize| records[at].revision > records[at - 1].revision;
        if let Some(at) = (1..records.len().saturating_sub(1)).find(|&at| creates_a_revision(at)) {
            records.remove(at);
        }
    }
    let span = DeltaSpan {
        cluster_id: node.identity.cluster_id,
        base_taken_at_ms: chain.base.taken_at_ms,
        base_revision: chain.base.revision,
        from_index: chain.shipped_index,
        to_index: slice.to_index,
        to_revision: slice.to_revision,
        to_time_ms: slice.to_time_ms.max(chain.shipped_time_ms),
    };
    let header = DeltaHeader {
        cluster_id: span.cluster_id,
        base_revision: span.base_revision,
        base_taken_at_ms: span.base_taken_at_ms,
        base_index: chain.base_index,
        from_index: span.from_index,
        from_revision: chain.shipped_revision,
        to_index: span.to_index,
        to_revision: span.to_revision,
        to_time_ms: span.to_time_ms,
    };
    let name = span.name();
    let dir = node.config.data_dir.join("tmp");
    let temp = TempFile(dir.join(format!(".{name}.shipping")));
    let (path, envelope) = (temp.0.clone(), config.envelope.clone());
    crate::blocking::spawn(move || {
        crate::durable_file::create_dir_all(&dir)?;
        let payload = encode_delta(&header, &records);
        write_stored_unsynced(&path, &envelope, |out| out.write_all(&payload))
    })
    .await
    .map_err(|e| ShipError::Upload(format!("writing delta {name}: {e}")))?
    .map_err(|e| ShipError::Upload(format!("writing delta {name}: {e}")))?;
    let size_bytes = store
        .put(&name, &temp.0, &ProgressBar::hidden())
        .await
        .map_err(|e| ShipError::Upload(e.to_string()))?;
    chain.shipped_index = span.to_index;
    chain.shipped_revision = span.to_revision;
    chain.shipped_time_ms = span.to_time_ms;
    if let Some(mut journal) = node.delta_journal() {
        journal.release_through(span.to_index);
    }
    Ok(Some(DeltaInfo {
        name,
        span,
        size_bytes,
    }))
}

/// Why a stored delta could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DeltaReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("delta {name} refused: {reason}")]
    Refused { name: String, reason: String },
}

/// Downloads delta `name` into `staging`, opens its envelope and decodes
/// it. Damaged records end its records early (`damage` says where); a
/// damaged envelope or header refuses it whole.
pub async fn fetch(
    store: &Store,
    name: &str,
    staging: &Path,
    config: &BackupConfig,
) -> Result<DecodedDelta, DeltaReadError> {
    let io = |e: std::io::Error| StoreError {
        store: staging.display().to_string(),
        action: "staging".into(),
        reason: e.to_string(),
    };
    crate::durable_file::create_dir_all(staging).map_err(io)?;
    let download = TempFile(staging.join(format!(".{name}.download")));
    store.get(name, &download.0, &ProgressBar::hidden()).await?;
    let stored = download.0.clone();
    let keys = config.open_keys.clone();
    let require_sealed = config.require_sealed();
    let opened = crate::blocking::spawn(move || -> Result<Vec<u8>, String> {
        let input =
            std::io::BufReader::new(std::fs::File::open(&stored).map_err(|e| e.to_string())?);
        let mut payload = Vec::new();
        envelope::open(input, &mut payload, keys.as_ref(), require_sealed)
            .map_err(|e| e.to_string())?;
        Ok(payload)
    })
    .await
    .map_err(|e| io(std::io::Error::other(e)))?;
    let refused = |reason: String| DeltaReadError::Refused {
        name: name.to_string(),
        reason,
    };
    let payload = opened.map_err(refused)?;
    let decoded = decode_delta(&payload).map_err(|e| refused(e.to_string()))?;
    let span = parse_delta_name(name);
    let agrees = span.is_some_and(|span| {
        span.cluster_id == decoded.header.cluster_id
            && span.from_index == decoded.header.from_index
            && span.to_index == decoded.header.to_index
            && span.to_revision == decoded.header.to_revision
            && span.base_revision == decoded.header.base_revision
            && span.base_taken_at_ms == decoded.header.base_taken_at_ms
    });
    if !agrees {
        return Err(refused(
            "its header does not match its name (renamed or copied over another)".into(),
        ));
    }
    Ok(decoded)
}

//! [`Node`]: what every request handler shares.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use e2d_core::storage::read_meta_u64;
use e2d_core::StateMachine;
use e2d_proto::etcdserverpb::ResponseHeader;
use tokio::sync::{mpsc, oneshot, watch};

use super::writer::{self, WriteJob, WriteOp, WriteOutcome, WRITE_QUEUE_MAX};
use super::{Clock, Identity};
use crate::metrics::Metrics;
use crate::storage::FjallBackend;

/// The raft term a single member reports: it has been leader since it
/// started, in the first term.
pub const SINGLE_MEMBER_TERM: u64 = 1;

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub quota_backend_bytes: u64,
    pub max_request_bytes: usize,
    pub progress_notify_interval_ms: u64,
}

pub struct Node {
    pub identity: Identity,
    pub config: NodeConfig,
    pub clock: Clock,
    pub metrics: Metrics,
    state: RwLock<StateMachine<FjallBackend>>,
    writes: mpsc::Sender<WriteJob>,
    committed_revision: watch::Receiver<i64>,
    lease_id_next: AtomicU64,
    applied_index: AtomicU64,
}

/// Where the count of applied writes is kept.
pub(super) const META_APPLIED_INDEX: &[u8] = b"applied_index";

impl Node {
    /// Starts the node's writer; the caller spawns the other duties.
    pub fn start(
        identity: Identity,
        config: NodeConfig,
        clock: Clock,
        state: StateMachine<FjallBackend>,
        lease_id_seed: u64,
    ) -> Arc<Self> {
        let (writes, jobs) = mpsc::channel(WRITE_QUEUE_MAX);
        let (revision_tx, committed_revision) = watch::channel(state.current_revision());
        let applied_index = read_meta_u64(state.mvcc().backend(), META_APPLIED_INDEX)
            .ok()
            .flatten()
            .unwrap_or(0);
        let node = Arc::new(Self {
            applied_index: AtomicU64::new(applied_index),
            lease_id_next: AtomicU64::new(lease_id_seed),
            identity,
            config,
            clock,
            metrics: Metrics::default(),
            state: RwLock::new(state),
            writes,
            committed_revision,
        });
        tokio::spawn(writer::run(node.clone(), jobs, revision_tx));
        node
    }

    /// The state machine as of the last committed write.
    pub fn read(&self) -> RwLockReadGuard<'_, StateMachine<FjallBackend>> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes applied since the data dir was created.
    pub fn applied_index(&self) -> u64 {
        self.applied_index.load(Ordering::Relaxed)
    }

    /// Counts `applied` more writes; returns the new total.
    pub(super) fn advance_applied_index(&self, applied: u64) -> u64 {
        self.applied_index.fetch_add(applied, Ordering::Relaxed) + applied
    }

    /// Compacts the on-disk tables; blocks, so call it off the runtime.
    pub fn defragment(&self) -> Result<(), e2d_core::Error> {
        let defragmenter = self.read().mvcc().backend().defragmenter();
        defragmenter.run().map_err(e2d_core::Error::from)
    }

    pub(super) fn state_for_writer(&self) -> &RwLock<StateMachine<FjallBackend>> {
        &self.state
    }

    /// Applies a write and waits until it is durable.
    pub async fn write(&self, op: WriteOp) -> WriteOutcome {
        let (reply, outcome) = oneshot::channel();
        if self.writes.send(WriteJob { op, reply }).await.is_err() {
            return WriteOutcome::Failed(e2d_core::Error::Storage(
                e2d_core::storage::StorageError("the writer has stopped".into()),
            ));
        }
        outcome.await.unwrap_or_else(|_| {
            WriteOutcome::Failed(e2d_core::Error::Storage(e2d_core::storage::StorageError(
                "the writer has stopped".into(),
            )))
        })
    }

    /// Changes of the committed revision, for watchers.
    pub fn subscribe_revision(&self) -> watch::Receiver<i64> {
        self.committed_revision.clone()
    }

    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.identity.cluster_id,
            member_id: self.identity.member_id,
            revision,
            raft_term: SINGLE_MEMBER_TERM,
        })
    }

    /// Fills cluster id, member id and term into a header from core.
    pub fn fill_header(&self, header: &mut Option<ResponseHeader>) {
        let revision = header.as_ref().map_or(0, |h| h.revision);
        *header = self.header(revision);
    }

    /// A fresh lease id, positive, in etcd's style: member bits on top,
    /// a counter seeded from the start time below.
    pub fn next_lease_id(&self) -> i64 {
        let counter = self.lease_id_next.fetch_add(1, Ordering::Relaxed);
        let prefix = (self.identity.member_id & 0xffff) << 48;
        let id = (prefix | (counter & 0xffff_ffff_ffff)) & (i64::MAX as u64);
        i64::try_from(id).expect("masked to 63 bits").max(1)
    }
}

//! [`Node`]: what every request handler shares.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use e2d_core::state_machine::QuotaState;
use e2d_core::{Error, StateMachine};
use e2d_proto::etcdserverpb::{LeaseGrantResponse, ResponseHeader};
use e2d_proto::peer::{outcome, proposal::Op, LeaseGrant, Outcome, Proposal, Requester};
use tokio::sync::{oneshot, watch, Notify};

use super::{Clock, Identity};
use crate::metrics::{Metrics, Refusal};
use crate::raft::{DriverHandle, DriverRequest, ProposalReply, RaftStatus};
use crate::storage::DiskBackend;

/// Where the index of the last applied raft entry is kept.
pub const META_APPLIED_INDEX: &[u8] = b"applied_index";
/// How long a write or a linearizable read may wait for the cluster.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);
/// Fresh lease ids tried before a grant gives up.
const LEASE_ID_ATTEMPTS_MAX: usize = 16;

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub quota_backend_bytes: u64,
    pub max_request_bytes: usize,
    pub progress_notify_interval_ms: u64,
    /// Automatic compaction keeps this much history; `None`: off.
    pub auto_compaction: Option<e2d_core::auto_compaction::Retention>,
    pub auth: crate::auth::AuthOptions,
    /// How often the leader compares the members' hashes
    /// (`--corrupt-check-time`); 0: never.
    pub corrupt_check_interval_ms: u64,
    /// `-n`: the cluster's size until one is replicated.
    pub cluster_size: usize,
    /// Keep a journal of applied entries this large for backup deltas;
    /// `None`: deltas are off.
    pub delta_journal_bytes: Option<usize>,
}

pub struct Node {
    pub identity: Identity,
    pub config: NodeConfig,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    /// Recent event reads, shared by the watch streams.
    pub recent_events: super::recent_events::RecentEvents,
    state: RwLock<StateMachine<DiskBackend>>,
    raft: DriverHandle,
    committed_revision: watch::Sender<i64>,
    /// The quota check's view of the state, as of the last applied batch
    /// (etcd reads its backend's size as of its last commit too), so a
    /// write checks it without the state's lock.
    quota: PublishedQuota,
    applied_index: watch::Sender<u64>,
    /// Raised when an applied entry starts a compaction, for the task that
    /// deletes what it drops (`server::duties`).
    compaction_applied: Notify,
    lease_id_next: AtomicU64,
    /// The entries applied lately, for the backups' deltas.
    delta_journal: Option<std::sync::Mutex<e2d_core::delta::DeltaJournal>>,
}

impl Node {
    pub fn new(
        identity: Identity,
        config: NodeConfig,
        clock: Clock,
        state: StateMachine<DiskBackend>,
        raft: DriverHandle,
        applied_index: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        // Lease ids start from the wall clock, so a restarted member does
        // not hand out the ids of its earlier run.
        let lease_id_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64)
            << 8;
        metrics.set_member_id(identity.member_id);
        let (committed_revision, _) = watch::channel(state.current_revision());
        let quota = PublishedQuota::default();
        quota.store(state.quota_state());
        let delta_journal = config.delta_journal_bytes.map(|bytes_max| {
            std::sync::Mutex::new(e2d_core::delta::DeltaJournal::new(
                bytes_max,
                applied_index,
                state.current_revision(),
                crate::backup::wall_clock_ms(),
            ))
        });
        let (applied_index, _) = watch::channel(applied_index);
        Self {
            lease_id_next: AtomicU64::new(lease_id_seed),
            identity,
            config,
            clock,
            metrics,
            recent_events: Default::default(),
            state: RwLock::new(state),
            raft,
            committed_revision,
            quota,
            applied_index,
            compaction_applied: Notify::new(),
            delta_journal,
        }
    }

    /// The journal of applied entries deltas are shipped from, when
    /// deltas are on.
    pub fn delta_journal(
        &self,
    ) -> Option<std::sync::MutexGuard<'_, e2d_core::delta::DeltaJournal>> {
        self.delta_journal.as_ref().map(crate::fail_stop::lock)
    }

    /// This member applied its own removal from the cluster (what to do
    /// about it is the caller's choice: a static member exits, a managed
    /// one rejoins).
    pub(crate) fn mark_removed(&self) {
        self.raft.mark_removed();
    }

    /// Resolves once this member has been removed from its cluster.
    pub async fn wait_removed(&self) {
        self.raft.wait_removed().await;
    }

    /// The state machine as of the last applied entry.
    pub fn read(&self) -> RwLockReadGuard<'_, StateMachine<DiskBackend>> {
        crate::fail_stop::read(&self.state)
    }

    /// The state machine for the raft driver, the one writer.
    pub(crate) fn write_state(&self) -> RwLockWriteGuard<'_, StateMachine<DiskBackend>> {
        crate::fail_stop::write(&self.state)
    }

    pub fn raft_status(&self) -> RaftStatus {
        self.raft.status()
    }

    pub fn raft(&self) -> &DriverHandle {
        &self.raft
    }

    /// Replicates one of the cluster's own changes through raft (no
    /// permission applies to it) and returns what applying it gave.
    pub async fn propose(&self, op: Op) -> Result<outcome::Result, Error> {
        self.propose_as(op, None).await
    }

    /// Replicates a client's change through raft, checked again as it
    /// applies against `requester`'s permissions.
    pub async fn propose_as(
        &self,
        op: Op,
        requester: Option<Requester>,
    ) -> Result<outcome::Result, Error> {
        let proposal = Proposal {
            op: Some(op),
            requester,
        };
        let committed_index = self.raft_status().commit_index;
        if let Err(refused) =
            e2d_core::limits::admit_proposal(committed_index, *self.applied_index.borrow())
        {
            self.metrics.count_refused(Refusal::ApplyBehindCommit);
            return Err(refused);
        }
        if let Some(Op::Put(_) | Op::Txn(_) | Op::LeaseGrant(_)) = &proposal.op {
            self.check_quota(&proposal).await?;
        }
        let outcome = {
            let _pending = self.metrics.proposal_pending();
            let answer = self.submit(|reply| DriverRequest::Propose { proposal, reply });
            let outcome = match answer.await {
                Ok(answer) => Self::outcome_of(answer).await,
                Err(refused) => Err(refused),
            };
            if let Err(Error::Timeout | Error::LeaderChanged | Error::NotLeader) = &outcome {
                self.metrics.count_failed_proposal();
            }
            outcome?
        };
        outcome
            .result
            .ok_or_else(|| Error::Internal("empty outcome".into()))
    }

    /// Hands the driver a request that answers through `reply`.
    async fn submit(
        &self,
        request: impl FnOnce(ProposalReply) -> DriverRequest,
    ) -> Result<oneshot::Receiver<Result<Outcome, Error>>, Error> {
        let (reply, answer) = oneshot::channel();
        self.hand_to_driver(request(reply)).await?;
        Ok(answer)
    }

    /// Queues a request for the raft driver, waiting for room at most the
    /// request timeout.
    async fn hand_to_driver(&self, request: DriverRequest) -> Result<(), Error> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.raft.send(request)).await {
            Ok(sent) => sent,
            Err(_) => {
                self.metrics.count_refused(Refusal::DriverQueueFull);
                Err(Error::Timeout)
            }
        }
    }

    /// Waits for a submitted request to apply, at most the request timeout.
    async fn outcome_of(
        answer: oneshot::Receiver<Result<Outcome, Error>>,
    ) -> Result<Outcome, Error> {
        tokio::time::timeout(REQUEST_TIMEOUT, answer)
            .await
            .map_err(|_| Error::Timeout)?
            .map_err(|_| Error::LeaderChanged)?
    }

    /// Raises the NOSPACE alarm through raft when a write would pass the
    /// quota, as etcd does, and refuses the write.
    async fn check_quota(&self, proposal: &Proposal) -> Result<(), Error> {
        use e2d_proto::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType};
        if let Some(Op::Txn(txn)) = &proposal.op {
            if e2d_core::state_machine::is_read_only(txn) {
                return Ok(());
            }
        }
        let request_bytes = prost::Message::encoded_len(proposal) as u64;
        let quota = self.quota.load();
        let alarmed = quota.nospace;
        let over = quota.exceeded_by(request_bytes, self.config.quota_backend_bytes);
        if !alarmed && !over {
            return Ok(());
        }
        if !alarmed {
            let proposal = Proposal {
                op: Some(Op::Alarm(AlarmRequest {
                    action: AlarmAction::Activate as i32,
                    member_id: self.identity.member_id,
                    alarm: AlarmType::Nospace as i32,
                })),
                requester: None,
            };
            let answer = self
                .submit(|reply| DriverRequest::Propose { proposal, reply })
                .await?;
            // Raising the alarm is best effort; the write is refused anyway.
            let _ = Self::outcome_of(answer).await;
        }
        Err(Error::NoSpace)
    }

    /// Waits until this member has applied everything committed before
    /// now: the read index, then the apply.
    pub async fn linearizable_barrier(&self) -> Result<(), Error> {
        if crate::sim_bugs::planted().reads_without_read_index {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.hand_to_driver(DriverRequest::ReadIndex { reply })
            .await?;
        let index = tokio::time::timeout(REQUEST_TIMEOUT, answer)
            .await
            .map_err(|_| Error::Timeout)?
            .map_err(|_| Error::LeaderChanged)?;
        let mut applied = self.applied_index.subscribe();
        tokio::time::timeout(REQUEST_TIMEOUT, applied.wait_for(|a| *a >= index))
            .await
            .map_err(|_| Error::Timeout)?
            .map_err(|_| Error::Timeout)?;
        Ok(())
    }

    pub(crate) fn set_applied_index(&self, index: u64) {
        self.applied_index.send_replace(index);
    }

    /// An applied entry started a compaction.
    pub(crate) fn announce_compaction(&self) {
        // A permit is kept when nobody waits: the next wait returns at once.
        self.compaction_applied.notify_one();
    }

    /// Resolves after the next [`Node::announce_compaction`] (or at once,
    /// if one came since the last wait).
    pub(crate) async fn compaction_announced(&self) {
        self.compaction_applied.notified().await;
    }

    /// Tells watchers the revision after an apply, and the quota check
    /// what the state holds now (also after a step of compaction and a
    /// defragmentation, which shrink it).
    pub(crate) fn publish_applied(&self) {
        let (current, quota) = {
            let state = self.read();
            (state.current_revision(), state.quota_state())
        };
        self.quota.store(quota);
        self.committed_revision.send_if_modified(|r| {
            let changed = *r != current;
            *r = current;
            changed
        });
    }

    /// Changes of the applied revision, for watchers.
    pub fn subscribe_revision(&self) -> watch::Receiver<i64> {
        self.committed_revision.subscribe()
    }

    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.identity.cluster_id,
            member_id: self.identity.member_id,
            revision,
            raft_term: self.raft.status().term,
        })
    }

    /// Fills cluster id, member id and term into a header from core.
    pub fn fill_header(&self, header: &mut Option<ResponseHeader>) {
        fill_header_from(self.header(0), header);
    }

    /// A fresh lease id, positive, in etcd's style: member bits on top,
    /// a counter seeded from the start time below.
    pub fn next_lease_id(&self) -> i64 {
        let counter = self.lease_id_next.fetch_add(1, Ordering::Relaxed);
        let prefix = (self.identity.member_id & 0xffff) << 48;
        let id = (prefix | (counter & 0xffff_ffff_ffff)) & (i64::MAX as u64);
        i64::try_from(id).expect("masked to 63 bits").max(1)
    }

    /// Grants a lease of `ttl_seconds`: with `requested_id`, or (0) a
    /// fresh id, tried again while fresh ids are taken.
    pub async fn grant_lease(
        &self,
        requested_id: i64,
        ttl_seconds: i64,
    ) -> Result<LeaseGrantResponse, Error> {
        let mut outcome = Err(Error::LeaseExists);
        for _ in 0..LEASE_ID_ATTEMPTS_MAX {
            let id = if requested_id != 0 {
                requested_id
            } else {
                self.next_lease_id()
            };
            let grant = LeaseGrant { id, ttl_seconds };
            outcome = self.propose(Op::LeaseGrant(grant)).await;
            let id_taken = matches!(outcome, Err(Error::LeaseExists));
            if requested_id != 0 || !id_taken {
                break;
            }
        }
        match outcome? {
            outcome::Result::LeaseGrant(granted) => Ok(granted),
            other => unreachable!("a lease grant answered with {other:?}"),
        }
    }

    /// Renews a lease on the leader (forwarding there from a follower) and
    /// replicates the renewal as a checkpoint; returns the TTL.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64, tonic::Status> {
        use e2d_proto::peer::{
            peer_client::PeerClient, KeepAliveRequest, LeaseCheckpoint, LeaseRemaining,
        };
        let status = self.raft_status();
        if status.is_leader {
            let now_ms = self.clock.now_ms();
            let ttl_seconds = self
                .read()
                .lease_ttl_if_alive(id, now_ms)
                .map_err(crate::grpc::to_status)?;
            let checkpoint = LeaseCheckpoint {
                leases: vec![LeaseRemaining {
                    id,
                    remaining_ms: u64::try_from(ttl_seconds).unwrap_or(0).saturating_mul(1000),
                }],
            };
            self.propose(Op::LeaseCheckpoint(checkpoint))
                .await
                .map_err(crate::grpc::to_status)?;
            return Ok(ttl_seconds);
        }
        let url = self
            .peer_url(status.leader_id)
            .ok_or_else(|| crate::grpc::to_status(Error::NoLeader))?;
        let channel = crate::outgoing::connect(&url)
            .await
            .map_err(|_| crate::grpc::to_status(Error::NoLeader))?;
        let mut client = PeerClient::new(channel);
        let response = client.keep_alive(KeepAliveRequest { id }).await?;
        Ok(response.into_inner().ttl_seconds)
    }

    /// Replicates a membership change and waits until it is applied.
    pub async fn change_membership(
        &self,
        change: e2d_proto::peer::MemberChange,
    ) -> Result<(), Error> {
        let answer = self
            .submit(|reply| DriverRequest::ChangeMembership { change, reply })
            .await?;
        Self::outcome_of(answer).await.map(|_| ())
    }

    /// The raft configuration and each member's progress, as this member
    /// sees them (complete only on the leader).
    pub async fn membership_view(&self) -> Result<crate::raft::MembershipView, Error> {
        let (reply, answer) = oneshot::channel();
        self.raft.send(DriverRequest::View { reply }).await?;
        answer.await.map_err(|_| Error::LeaderChanged)
    }

    /// Hands leadership to `target` and waits until it has it.
    pub async fn move_leader(&self, target: u64) -> Result<(), Error> {
        let status = self.raft_status();
        if !status.is_leader {
            return Err(Error::NotLeader);
        }
        if self.peer_url(target).is_none() {
            return Err(Error::BadLeaderTransferee);
        }
        if target == self.identity.member_id {
            return Ok(());
        }
        let mut watch = self.raft.subscribe();
        self.raft
            .send(DriverRequest::TransferLeader { target })
            .await?;
        tokio::time::timeout(REQUEST_TIMEOUT, watch.wait_for(|s| s.leader_id == target))
            .await
            .map_err(|_| Error::Timeout)?
            .map_err(|_| Error::Timeout)?;
        Ok(())
    }

    /// The peer URL of a member: from the replicated member list, or the
    /// initial cluster before that is known.
    pub fn peer_url(&self, member_id: u64) -> Option<String> {
        let replicated = self.read().member(member_id).ok().flatten();
        replicated
            .and_then(|m| m.peer_urls.first().cloned())
            .or_else(|| {
                self.identity
                    .initial_members
                    .iter()
                    .find(|m| m.id == member_id)
                    .map(|m| m.peer_url.clone())
            })
    }

    /// Compacts the on-disk tables; blocks, so call it off the runtime.
    pub fn defragment(&self) -> Result<(), Error> {
        let defragmenter = self.read().mvcc().backend().defragmenter();
        // A defragmentation that fails (no room for the rewritten tables)
        // leaves the data as it was: the member goes on.
        defragmenter
            .run()
            .map_err(|e| Error::Internal(format!("defragmenting the database: {}", e.0)))?;
        // The quota check sees the smaller size before the next write.
        self.publish_applied();
        Ok(())
    }
}

/// Fills a header from core with `member`'s cluster id, member id and term
/// (a [`Node::header`]), keeping the header's revision: for responses that
/// read the member's part once for many.
pub fn fill_header_from(member: Option<ResponseHeader>, header: &mut Option<ResponseHeader>) {
    let revision = header.as_ref().map_or(0, |h| h.revision);
    *header = member.map(|member| ResponseHeader { revision, ..member });
}

/// A [`QuotaState`] shared without a lock: each field is read on its own,
/// and either may be a batch behind the other.
#[derive(Default)]
struct PublishedQuota {
    size_bytes: AtomicU64,
    nospace: AtomicBool,
}

impl PublishedQuota {
    fn store(&self, quota: QuotaState) {
        self.size_bytes.store(quota.size_bytes, Ordering::Relaxed);
        self.nospace.store(quota.nospace, Ordering::Relaxed);
    }

    fn load(&self) -> QuotaState {
        QuotaState {
            size_bytes: self.size_bytes.load(Ordering::Relaxed),
            nospace: self.nospace.load(Ordering::Relaxed),
        }
    }
}

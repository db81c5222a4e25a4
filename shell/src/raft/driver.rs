//! The raft driver: one task owns the `RawNode`, feeds it ticks, proposals,
//! read-index requests and peer messages, and handles each `Ready` in
//! raft-rs's order: send, persist (one fsync), send persisted messages,
//! apply committed entries, advance.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use e2d_core::membership::{Change, LeaderProgress, Progress};
use e2d_core::proposal_codec::decode_proposal;
use e2d_core::state_machine::Answer;
use e2d_core::storage::{Backend, Table};
use e2d_core::Error;
use e2d_core::StateMachine;
use e2d_proto::peer::member_change::Kind as ChangeKind;
use e2d_proto::peer::proposal::Op;
use e2d_proto::peer::{MemberAttributes, MemberChange, MemberList, Outcome, Proposal};
use prost::Message as _;
use prost011::Message as _;
use raft::eraftpb::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message,
    MessageType, Snapshot,
};
use raft::storage::MemStorage;
use raft::SnapshotStatus;
use raft::{RawNode, StateRole, Storage};
use tokio::sync::{mpsc, oneshot, watch};

use super::election_timeout::ElectionTimeouts;
use super::wal::Wal;
use super::{log_store, Transport, ELECTION_TICKS, HEARTBEAT_TICKS, TICK_MS};
use crate::server::node::META_APPLIED_INDEX;
use crate::server::Node;
use crate::snapshot_load::IncomingSnapshot;
use crate::storage::DiskBackend;
use e2d_core::storage::read_meta_u64;

/// Requests waiting for the driver; senders wait when it is full.
const DRIVER_QUEUE_MAX: usize = 4096;
/// Requests taken from the queue before handling a `Ready`.
const DRIVER_BATCH_MAX: usize = 512;
/// A batch at least this large means requests are arriving faster than
/// the driver's cycle: it lets the tasks that are ready to propose run once
/// and takes what they sent, so one log sync covers them too, and the sync
/// hands the worker's other tasks to another thread while it blocks (which
/// costs a lone request more than the wait it saves).
const DRIVER_BATCH_BUSY: usize = 8;
/// Bytes of entries in one append message.
const RAFT_MESSAGE_BYTES_MAX: u64 = 1024 * 1024;
/// Append messages in flight to one follower: at most 16 MiB of entries.
/// A member catching up from the log writes and applies what arrives in
/// order, and its answers to heartbeats wait behind it; a deeper pipe
/// outlasts the election timeout, and the leader, not hearing from a
/// quorum, steps down (check quorum) while the member is being added.
const RAFT_INFLIGHT_MESSAGES_MAX: usize = 16;
/// The log is also compacted once this many bytes of entries were
/// appended to it since its last compaction, however few they are: the
/// log is held in memory, and `--snapshot-count` entries of the objects a
/// Kubernetes cluster stores (1-8 KiB) would take hundreds of megabytes.
const LOG_COMPACT_AFTER_BYTES: u64 = 64 * 1024 * 1024;
/// Of the applied entries a compaction keeps for followers slightly
/// behind, at most this many bytes' worth (a follower further behind
/// catches up from a snapshot, which large entries make the cheaper way).
const LOG_RETAINED_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Membership changes waiting for the one in flight to apply (raft takes
/// one at a time and would drop the others unanswered); more are refused.
const CONF_CHANGES_WAITING_MAX: usize = 16;

pub type ProposalReply = oneshot::Sender<Result<Outcome, Error>>;

pub enum DriverRequest {
    Propose {
        proposal: Proposal,
        reply: ProposalReply,
    },
    ReadIndex {
        reply: oneshot::Sender<u64>,
    },
    Step(Box<Message>),
    TransferLeader {
        target: u64,
    },
    /// A conf change, with what it does to the member list.
    ChangeMembership {
        change: MemberChange,
        reply: ProposalReply,
    },
    /// What the leader knows of each member's progress.
    View {
        reply: oneshot::Sender<MembershipView>,
    },
    /// A snapshot arrived: its records, then its raft message to step.
    InstallSnapshot {
        message: Box<Message>,
        /// The snapshot, its digest checked.
        snapshot: IncomingSnapshot,
    },
    /// How sending a snapshot to `to` went.
    ReportSnapshot {
        to: u64,
        delivered: bool,
    },
}

/// Whether this member leads and, if it does, how far each member is.
#[derive(Debug, Clone, Default)]
pub struct MembershipView {
    pub is_leader: bool,
    pub progress: LeaderProgress,
}

/// What the rest of the node may know of raft.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RaftStatus {
    pub leader_id: u64,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Where the log ends (its last entry's term and index).
    pub last_log: e2d_core::log_position::LogPosition,
    pub is_leader: bool,
}

#[derive(Clone)]
pub struct DriverHandle {
    requests: mpsc::Sender<DriverRequest>,
    status: watch::Receiver<RaftStatus>,
    /// Set once the cluster has removed this member.
    removed: Arc<watch::Sender<bool>>,
    /// Set once the driver's task has ended, whatever ended it.
    stopped: Arc<watch::Sender<bool>>,
}

impl DriverHandle {
    /// Hands `request` to the driver. Once its task has ended the member
    /// is stopping (what ended it stops the member, or starts it over as
    /// a new one), so the caller is answered that the server stopped: the
    /// driver's end is not a failed read of this member's data.
    pub async fn send(&self, request: DriverRequest) -> Result<(), Error> {
        self.requests
            .send(request)
            .await
            .map_err(|_| Error::Stopped)
    }

    pub fn status(&self) -> RaftStatus {
        *self.status.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<RaftStatus> {
        self.status.clone()
    }

    pub fn mark_removed(&self) {
        self.removed.send_replace(true);
    }

    /// Resolves once the driver's task has ended: the member cannot go on.
    pub async fn wait_stopped(&self) {
        let mut stopped = self.stopped.subscribe();
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }

    /// Resolves once this member has been removed from its cluster: it
    /// applied its removal, or a peer refused it as removed.
    pub async fn wait_removed(&self) {
        let mut removed = self.removed.subscribe();
        let _ = removed.wait_for(|removed| *removed).await;
    }
}

/// How a member without a raft log starts one.
pub enum Bootstrap {
    /// A founding member of a new cluster: these voters, and the first log
    /// entry that records them.
    Found {
        voters: Vec<u64>,
        members: Vec<MemberAttributes>,
    },
    /// A member added to a running cluster, which starts from the
    /// cluster's current voters and learners; the leader fills its log.
    Join {
        voters: Vec<u64>,
        learners: Vec<u64>,
    },
}

/// Opens the raft log (creating it as `bootstrap` says for a new member)
/// and prepares the driver task.
pub fn spawn_driver(
    node_id: u64,
    bootstrap: Bootstrap,
    wal_dir: &std::path::Path,
    backend: &mut crate::storage::DiskBackend,
    applied_index: u64,
    transport: Transport,
    log_limits: LogLimits,
) -> Result<(DriverHandle, DriverParts), Error> {
    let (mut wal, replayed) = Wal::open(wal_dir)?;
    let log = match log_store::load(&mut wal, replayed, backend, applied_index)? {
        Some(storage) => storage,
        None => match bootstrap {
            Bootstrap::Found { voters, members } => {
                let first = Proposal {
                    op: Some(Op::InitialMembers(MemberList { members })),
                    requester: None,
                };
                log_store::create(
                    &mut wal,
                    backend,
                    ConfState::from((voters, vec![])),
                    Some(first.encode_to_vec()),
                )?
            }
            Bootstrap::Join { voters, learners } => {
                log_store::create(&mut wal, backend, ConfState::from((voters, learners)), None)?
            }
        },
    };
    // The state machine may be ahead of the log's commit index on disk,
    // never of its entries; raft starts from what both hold.
    let raft_applied = applied_index.min(log.rl().hard_state().commit);
    let config = raft::Config {
        id: node_id,
        election_tick: ELECTION_TICKS,
        heartbeat_tick: HEARTBEAT_TICKS,
        applied: raft_applied,
        max_size_per_msg: RAFT_MESSAGE_BYTES_MAX,
        max_inflight_msgs: RAFT_INFLIGHT_MESSAGES_MAX,
        pre_vote: true,
        check_quorum: true,
        ..Default::default()
    };
    let logger = crate::logging::raft_logger();
    let raw_node =
        RawNode::new(&config, log, &logger).map_err(|e| storage(format!("raft: {e}")))?;
    let (requests, incoming) = mpsc::channel(DRIVER_QUEUE_MAX);
    let (status_tx, status) = watch::channel(RaftStatus {
        applied_index,
        ..Default::default()
    });
    let handle = DriverHandle {
        requests,
        status,
        removed: transport.removed_signal(),
        stopped: Arc::new(watch::Sender::new(false)),
    };
    Ok((
        handle.clone(),
        DriverParts {
            raw_node,
            wal,
            state_applied_floor: applied_index,
            conf_applied_floor: applied_index,
            incoming,
            status: status_tx,
            transport,
            log_limits,
            handle,
        },
    ))
}

/// What the driver task owns; started with [`DriverParts::run`] once the
/// node exists.
pub struct DriverParts {
    raw_node: RawNode<MemStorage>,
    wal: Wal,
    state_applied_floor: u64,
    conf_applied_floor: u64,
    incoming: mpsc::Receiver<DriverRequest>,
    status: watch::Sender<RaftStatus>,
    transport: Transport,
    log_limits: LogLimits,
    handle: DriverHandle,
}

impl DriverParts {
    pub fn run(self, node: Arc<Node>) {
        let stopped = self.handle.stopped.clone();
        let applied_through = self.raw_node.raft.raft_log.applied;
        let driver = Driver {
            raw_node: self.raw_node,
            wal: self.wal,
            status: self.status,
            transport: self.transport,
            node,
            pending_proposals: BTreeMap::new(),
            waiting_conf_changes: VecDeque::new(),
            next_proposal_id: 1,
            pending_reads: BTreeMap::new(),
            // Not 1: read requests of this member's earlier run may still
            // wait at the leader, and raft ignores a context it holds.
            next_read_id: crate::node_seed::node_seed() >> 1,
            was_leader: false,
            leader_id: raft::INVALID_ID,
            removed: false,
            incoming_snapshot: None,
            log_appended_bytes: 0,
            state_applied_floor: self.state_applied_floor,
            applied_through,
            conf_applied_floor: self.conf_applied_floor,
            log_limits: self.log_limits,
            handle: self.handle,
            election_timeouts: ElectionTimeouts::new(crate::node_seed::node_seed()),
            ticks: 0,
            heard_at_tick: BTreeMap::new(),
        };
        let task = tokio::spawn(driver.run(self.incoming));
        // The driver ends only when every handle is gone, at shutdown;
        // an end while the member runs (a panic where panics do not end
        // the process) must stop the member, not leave it serving.
        tokio::spawn(async move {
            let _ = task.await;
            stopped.send_replace(true);
        });
    }
}

/// An entry's bytes as the log holds them in memory, near enough.
fn entry_bytes(entry: &Entry) -> u64 {
    (entry.data.len() + entry.context.len()) as u64
}

struct Driver {
    raw_node: RawNode<MemStorage>,
    /// The log on disk; `raw_node`'s storage holds the same in memory.
    wal: Wal,
    status: watch::Sender<RaftStatus>,
    transport: Transport,
    node: Arc<Node>,
    pending_proposals: BTreeMap<u64, ProposalReply>,
    /// Conf changes proposed while another was in flight.
    waiting_conf_changes: VecDeque<(MemberChange, ProposalReply)>,
    next_proposal_id: u64,
    pending_reads: BTreeMap<u64, oneshot::Sender<u64>>,
    next_read_id: u64,
    was_leader: bool,
    leader_id: u64,
    /// This member was removed from the cluster; it stops after the Ready.
    removed: bool,
    /// Records of a snapshot whose raft message was stepped, waiting for
    /// raft to hand the snapshot over in a Ready.
    incoming_snapshot: Option<IncomingSnapshot>,
    /// Bytes of the entries appended to the log since its last compaction
    /// (or a snapshot's install, or the driver's start): see
    /// [`LOG_COMPACT_AFTER_BYTES`].
    log_appended_bytes: u64,
    /// Entries up to this index are in the state machine already (it came
    /// from a snapshot taken after them); their effects are not applied again.
    state_applied_floor: u64,
    /// The last entry handed over for applying (or a snapshot's index):
    /// the next must come after it.
    applied_through: u64,
    /// Conf changes up to this index are in raft's configuration already:
    /// at start it comes from the state machine, which may be ahead of the
    /// log's commit index (a snapshot taken after the one raft installed).
    conf_applied_floor: u64,
    log_limits: LogLimits,
    handle: DriverHandle,
    election_timeouts: ElectionTimeouts,
    /// Ticks since the driver started.
    ticks: u64,
    /// The tick at which each peer's last message was stepped; only the
    /// members of the current configuration are kept.
    heard_at_tick: BTreeMap<u64, u64>,
}

/// When the log is compacted: once `compact_after_entries` entries are
/// applied past its start, all but the last `retained_entries` go.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    pub compact_after_entries: u64,
    pub retained_entries: u64,
}

impl Driver {
    async fn run(mut self, mut incoming: mpsc::Receiver<DriverRequest>) {
        let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
        // Ticks missed while the driver was held up (a snapshot install, a
        // slow disk) are dropped, as a Go ticker drops them for etcd: in a
        // burst they would run out the election timeout before the
        // messages queued meanwhile (the leader's heartbeats, a follower's
        // answers) are read, and start an election nobody needs.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(DRIVER_BATCH_MAX);
        let mut busy = false;
        // A lone voter elects itself at once rather than after a timeout.
        if self.raw_node.raft.prs().conf().voters().ids().len() == 1 {
            let _ = self.raw_node.campaign();
        }
        loop {
            // Biased (replayable under simulation): the tick, ready once
            // per interval, before the requests.
            tokio::select! {
                biased;
                _ = tick.tick() => {
                    self.election_timeouts.settle(&mut self.raw_node.raft);
                    self.raw_node.tick();
                    self.ticks += 1;
                    self.forget_former_peers();
                    // Forget proposals whose callers gave up (a forwarded
                    // proposal the old leader dropped, say).
                    self.pending_proposals.retain(|_, reply| !reply.is_closed());
                    self.waiting_conf_changes.retain(|(_, reply)| !reply.is_closed());
                }
                received = incoming.recv_many(&mut batch, DRIVER_BATCH_MAX) => {
                    if received == 0 {
                        return;
                    }
                    busy = received >= DRIVER_BATCH_BUSY;
                    if busy {
                        tokio::task::yield_now().await;
                        while batch.len() < DRIVER_BATCH_MAX {
                            let Ok(request) = incoming.try_recv() else { break };
                            batch.push(request);
                        }
                    }
                    for request in batch.drain(..) {
                        self.handle(request);
                    }
                }
            }
            self.on_ready_or_exit(busy);
            // The conf change in flight may have applied just now.
            if self.propose_waiting_conf_change() {
                self.on_ready_or_exit(false);
            }
            if std::mem::take(&mut self.removed) {
                self.node.mark_removed();
            }
        }
    }

    fn on_ready_or_exit(&mut self, busy: bool) {
        if let Err(e) = self.on_ready(busy) {
            tracing::error!(error = %e, "the raft driver cannot go on; stopping so nothing unsynced or half-applied is served");
            std::process::exit(1);
        }
    }

    fn handle(&mut self, request: DriverRequest) {
        match request {
            DriverRequest::Propose { proposal, reply } => {
                let (id, context) = self.next_proposal();
                let proposed = self.raw_node.propose(context, proposal.encode_to_vec());
                self.track_proposal(id, proposed, reply);
            }
            DriverRequest::ReadIndex { reply } => {
                let id = self.next_read_id;
                self.next_read_id = self.next_read_id.wrapping_add(1);
                self.pending_reads.insert(id, reply);
                // Every member's reads meet in the leader's queue, which
                // ignores a request whose context it already holds: the
                // member's id makes the context unique in the cluster.
                let context = member_scoped_context(self.node.identity.member_id, id);
                self.raw_node.read_index(context.to_vec());
            }
            DriverRequest::ChangeMembership { change, reply } => {
                self.change_membership(change, reply);
            }
            DriverRequest::View { reply } => {
                let _ = reply.send(self.membership_view());
            }
            DriverRequest::InstallSnapshot { message, snapshot } => {
                if !self.addressed_to_me(&message) {
                    return;
                }
                self.incoming_snapshot = Some(snapshot);
                if let Err(e) = self.raw_node.step(*message) {
                    tracing::warn!(error = %e, "a snapshot's raft message was refused");
                }
            }
            DriverRequest::ReportSnapshot { to, delivered } => {
                let status = if delivered {
                    SnapshotStatus::Finish
                } else {
                    self.raw_node.report_unreachable(to);
                    SnapshotStatus::Failure
                };
                self.raw_node.report_snapshot(to, status);
            }
            DriverRequest::TransferLeader { target } => {
                self.raw_node.transfer_leader(target);
            }
            DriverRequest::Step(message) => {
                if !self.addressed_to_me(&message) {
                    return;
                }
                self.heard_from(&message);
                if let Err(e) = self.raw_node.step(*message) {
                    tracing::debug!(error = %e, "dropped a raft message");
                }
            }
        }
    }

    /// Whether a raft message is for this member. A node that took over a
    /// dead member's address receives what its peers still send that
    /// member; stepping it (its commit index, say) would break raft's
    /// invariants, so it is dropped, as etcd drops a message sent to
    /// another member.
    fn addressed_to_me(&self, message: &raft::eraftpb::Message) -> bool {
        let mine = message.to == self.raw_node.raft.id;
        if !mine {
            tracing::debug!(
                to = format!("{:x}", message.to),
                from = format!("{:x}", message.from),
                "dropped a raft message sent to another member"
            );
        }
        mine
    }

    /// Proposes a conf change, or keeps it until the one in flight has
    /// applied: raft would drop it unanswered.
    fn change_membership(&mut self, change: MemberChange, reply: ProposalReply) {
        let busy = self.raw_node.raft.has_pending_conf() || !self.waiting_conf_changes.is_empty();
        if !busy {
            self.propose_conf_change(change, reply);
        } else if self.waiting_conf_changes.len() < CONF_CHANGES_WAITING_MAX {
            self.waiting_conf_changes.push_back((change, reply));
        } else {
            let _ = reply.send(Err(Error::TooManyRequests));
        }
    }

    /// Proposes the next waiting conf change once the one in flight has
    /// applied; whether it proposed one.
    fn propose_waiting_conf_change(&mut self) -> bool {
        if self.raw_node.raft.has_pending_conf() {
            return false;
        }
        while let Some((change, reply)) = self.waiting_conf_changes.pop_front() {
            if !reply.is_closed() {
                self.propose_conf_change(change, reply);
                return true;
            }
        }
        false
    }

    fn propose_conf_change(&mut self, change: MemberChange, reply: ProposalReply) {
        let (id, mut context) = self.next_proposal();
        context.extend_from_slice(&change.encode_to_vec());
        let member_id = change.member.as_ref().map_or(0, |m| m.member_id);
        let change_type = match (
            change.kind(),
            change.member.as_ref().is_some_and(|m| m.is_learner),
        ) {
            (ChangeKind::Add, true) => ConfChangeType::AddLearnerNode,
            (ChangeKind::Add, false) | (ChangeKind::Promote, _) => ConfChangeType::AddNode,
            (ChangeKind::Remove, _) => ConfChangeType::RemoveNode,
        };
        let mut single = ConfChangeSingle::default();
        single.set_change_type(change_type);
        single.node_id = member_id;
        let conf_change = ConfChangeV2 {
            changes: vec![single],
            ..Default::default()
        };
        let proposed = self.raw_node.propose_conf_change(context, conf_change);
        self.track_proposal(id, proposed, reply);
    }

    /// A fresh proposal id and the entry context that carries it: this
    /// member's id and the proposal id, so only the member that proposed an
    /// entry answers for it.
    fn next_proposal(&mut self) -> (u64, Vec<u8>) {
        let id = self.next_proposal_id;
        self.next_proposal_id += 1;
        let context = member_scoped_context(self.node.identity.member_id, id).to_vec();
        (id, context)
    }

    /// Waits for the entry to apply, or answers at once that raft refused it.
    fn track_proposal(&mut self, id: u64, proposed: raft::Result<()>, reply: ProposalReply) {
        match proposed {
            Ok(()) => {
                self.pending_proposals.insert(id, reply);
            }
            Err(e) => {
                tracing::debug!(error = %e, "proposal refused");
                let _ = reply.send(Err(Error::NotLeader));
            }
        }
    }

    fn on_ready(&mut self, busy: bool) -> Result<(), Error> {
        if !self.raw_node.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw_node.ready();
        if !ready.messages().is_empty() {
            self.send_messages(ready.take_messages());
        }
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot().clone())?;
        }
        self.apply_entries(ready.take_committed_entries())?;
        // As etcd's `raft.MustSync`: new entries, a snapshot, or a new term
        // or vote. A commit index that moved alone may be lost in a crash
        // (raft learns it again), so it rides the next sync.
        let must_sync = ready.must_sync();
        if !ready.entries().is_empty() {
            let entries = ready.entries();
            // An entry replaces a conflicting tail, on disk as in memory.
            self.wal.append(entries)?;
            self.raw_node
                .mut_store()
                .wl()
                .append(entries)
                .map_err(|e| storage(format!("raft append: {e}")))?;
            self.log_appended_bytes += entries.iter().map(entry_bytes).sum::<u64>();
        }
        if let Some(hard_state) = ready.hs() {
            self.wal.set_hard_state(hard_state)?;
            self.raw_node
                .mut_store()
                .wl()
                .set_hardstate(hard_state.clone());
        }
        // Nothing in the Ready is acknowledged (the persisted messages, the
        // apply) until the sync returns.
        if must_sync && !crate::sim_bugs::planted().ack_before_fsync {
            let wal = &mut self.wal;
            let started = std::time::Instant::now();
            if busy {
                crate::blocking::in_place(|| wal.sync())?;
            } else {
                wal.sync()?;
            }
            self.node.metrics.observe_wal_fsync(started.elapsed());
        }
        if !ready.persisted_messages().is_empty() {
            self.send_messages(ready.take_persisted_messages());
        }
        for read in ready.take_read_states() {
            self.answer_read(&read.request_ctx, read.index);
        }
        if let Some(soft) = ready.ss() {
            self.on_role_change(soft.leader_id, soft.raft_state);
        }
        let mut light = self.raw_node.advance(ready);
        if let Some(commit) = light.commit_index() {
            let mut store = self.raw_node.mut_store().wl();
            store.mut_hard_state().commit = commit;
            let hard_state = store.hard_state().clone();
            drop(store);
            // Rides the next sync: raft learns a lost commit index again.
            self.wal.set_hard_state(&hard_state)?;
        }
        self.send_messages(light.take_messages());
        self.apply_entries(light.take_committed_entries())?;
        self.raw_node.advance_apply();
        self.compact_log();
        self.publish_status();
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), Error> {
        if entries.is_empty() {
            return Ok(());
        }
        assert!(
            entries
                .windows(2)
                .all(|pair| pair[1].index == pair[0].index + 1),
            "raft handed over committed entries that do not follow one another"
        );
        assert!(
            entries[0].index > self.applied_through,
            "raft handed over entry {} again after applying up to {}",
            entries[0].index,
            self.applied_through
        );
        self.applied_through = entries[entries.len() - 1].index;
        let now_ms = self.node.clock.now_ms();
        let mut answers = Vec::new();
        let mut compaction_applied = false;
        let last_index;
        let node = self.node.clone();
        {
            let mut state = node.write_state();
            let mut journal = node.delta_journal();
            let wall_ms = journal
                .as_ref()
                .map_or(0, |_| crate::backup::wall_clock_ms());
            for entry in &entries {
                match entry.get_entry_type() {
                    EntryType::EntryNormal if entry.index <= self.state_applied_floor => {}
                    EntryType::EntryNormal if !entry.data.is_empty() => {
                        let proposal = decode_proposal(&entry.data).map_err(|e| {
                            storage(format!(
                                "committed raft log entry {} cannot be decoded ({e}); every member must apply every entry, so this member stops rather than skip it",
                                entry.index
                            ))
                        })?;
                        let started = std::time::Instant::now();
                        let asker = self.own_request(&entry.context);
                        let answer = match asker {
                            Some(_) => Answer::Wanted,
                            None => Answer::Discarded,
                        };
                        let outcome =
                            match self.apply_proposal(&mut state, &proposal, now_ms, answer) {
                                Err(Error::Storage(e)) => return Err(Error::Storage(e)),
                                result => result,
                            };
                        self.node.metrics.observe_apply(started.elapsed());
                        compaction_applied |= matches!(proposal.op, Some(Op::Compaction(_)));
                        if let Some(journal) = journal.as_mut() {
                            if proposal
                                .op
                                .as_ref()
                                .is_some_and(e2d_core::delta::is_replayed)
                            {
                                journal.push(e2d_core::delta::DeltaRecord {
                                    index: entry.index,
                                    revision: state.current_revision(),
                                    applied_at_ms: wall_ms,
                                    data: entry.data.to_vec(),
                                });
                            }
                        }
                        if let Some(id) = asker {
                            answers.push((id, outcome));
                        }
                    }
                    EntryType::EntryNormal => {}
                    EntryType::EntryConfChangeV2 if entry.index <= self.conf_applied_floor => {}
                    EntryType::EntryConfChangeV2 if entry.index <= self.state_applied_floor => {
                        self.apply_held_membership(&mut state, entry)?;
                    }
                    EntryType::EntryConfChangeV2 => {
                        let outcome = self.apply_membership(&mut state, entry)?;
                        if let Some(id) = self.own_request(&entry.context) {
                            answers.push((id, outcome));
                        }
                    }
                    EntryType::EntryConfChange => {
                        tracing::error!(
                            index = entry.index,
                            "skipped a version 1 conf change, which e2d never proposes"
                        );
                    }
                }
            }
            // Never behind what a snapshot already brought.
            last_index = entries
                .last()
                .map_or(0, |e| e.index)
                .max(self.state_applied_floor);
            if let Some(journal) = journal.as_mut() {
                journal.advance(last_index, state.current_revision(), wall_ms);
            }
            drop(journal);
            state
                .backend_mut()
                .put(Table::Meta, META_APPLIED_INDEX, &last_index.to_be_bytes());
            // Watchers and the member list read committed data: make the
            // applied changes readable before anyone hears of them. The raft
            // log holds them durably already, so no fsync: a crash takes
            // back what the disk had not written, and the log replays it.
            let started = std::time::Instant::now();
            state.backend_mut().commit(false)?;
            self.node.metrics.observe_backend_commit(started.elapsed());
        }
        self.node.set_applied_index(last_index);
        if compaction_applied {
            self.node.announce_compaction();
        }
        for (id, outcome) in answers {
            if let Some(reply) = self.pending_proposals.remove(&id) {
                let _ = reply.send(outcome);
            }
        }
        self.node.publish_applied();
        Ok(())
    }

    /// Applies `proposal`, reading what its answer needs only when a
    /// client of this member waits for it.
    fn apply_proposal(
        &mut self,
        state: &mut StateMachine<DiskBackend>,
        proposal: &Proposal,
        now_ms: u64,
        answer: Answer,
    ) -> Result<Outcome, Error> {
        let outcome = state.apply_for(proposal, now_ms, answer)?;
        let announced: &[MemberAttributes] = match &proposal.op {
            Some(Op::MemberAttributes(member)) => std::slice::from_ref(member),
            Some(Op::InitialMembers(list)) => &list.members,
            _ => &[],
        };
        for member in announced {
            self.route(member);
        }
        Ok(outcome)
    }

    /// Sends this member's raft messages for `member` to its peer URL.
    fn route(&mut self, member: &MemberAttributes) {
        if member.member_id == self.node.identity.member_id {
            return;
        }
        if let Some(url) = member.peer_urls.first() {
            self.transport.set_peer(member.member_id, url);
        }
    }

    /// Applies a conf change entry: the member list, raft's configuration
    /// and the transport's peers. A change the member list refuses
    /// (`StateMachine::apply_member_change`) changes none of them, and its
    /// refusal is the proposer's answer: every member refuses it alike, so
    /// raft's configuration stays the same everywhere. The outer error is
    /// one this member cannot go on after.
    fn apply_membership(
        &mut self,
        state: &mut StateMachine<DiskBackend>,
        entry: &Entry,
    ) -> Result<Result<Outcome, Error>, Error> {
        let (conf_change, change) = decode_conf_change(entry)?;
        let Some(change) = change else {
            self.apply_conf_change(state, entry.index, &conf_change)?;
            return Ok(Ok(done()));
        };
        // The member list is read by a scan, which sees committed writes
        // only: the entries before this one must be committed first, or
        // the answer would depend on where this member's batches begin.
        // Their applied index goes with them, so that a crash leaves no
        // effect without its index.
        let before = entry.index.saturating_sub(1);
        let backend = state.backend_mut();
        backend.put(Table::Meta, META_APPLIED_INDEX, &before.to_be_bytes());
        backend.commit(false)?;
        if let Err(refused) = state.apply_member_change(&change)? {
            tracing::warn!(
                index = entry.index,
                member = format!("{:x}", change.member_id()),
                ?change,
                error = %refused,
                "refused a committed membership change that the member list no longer allows; raft's configuration stays as it was"
            );
            return Ok(Err(refused));
        }
        self.apply_conf_change(state, entry.index, &conf_change)?;
        self.follow_member_change(&change);
        tracing::info!(
            member = format!("{:x}", change.member_id()),
            ?change,
            "membership changed"
        );
        Ok(Ok(done()))
    }

    /// Applies a conf change entry the state machine already holds (it
    /// came from a snapshot taken after the entry) to raft's configuration
    /// and the transport, if it was applied where the member list could
    /// judge it. The list is past the entry and cannot judge it again;
    /// what it shows of the outcome (an added member's id stays known,
    /// even once removed) and raft's configuration, which is still at the
    /// entry, tell. Its proposer is not answered, as for the other entries
    /// the state machine holds.
    fn apply_held_membership(
        &mut self,
        state: &mut StateMachine<DiskBackend>,
        entry: &Entry,
    ) -> Result<(), Error> {
        let (conf_change, change) = decode_conf_change(entry)?;
        let Some(change) = change else {
            return self.apply_conf_change(state, entry.index, &conf_change);
        };
        let conf = self.raw_node.raft.prs().conf();
        let voters = conf.voters().ids();
        let is_learner = |id: &u64| conf.learners().contains(id);
        let was_applied = match &change {
            Change::Add(member) => {
                state.member(member.member_id)?.is_some()
                    || state.is_removed_member(member.member_id)?
            }
            Change::Remove { id } => is_learner(id) || (voters.contains(*id) && voters.len() > 1),
            Change::Promote { id } => is_learner(id),
        };
        if was_applied {
            self.apply_conf_change(state, entry.index, &conf_change)?;
            self.follow_member_change(&change);
        }
        Ok(())
    }

    /// The transport's peers and this member's removal after `change`.
    fn follow_member_change(&mut self, change: &Change) {
        match change {
            Change::Add(member) => self.route(member),
            Change::Promote { .. } => {}
            Change::Remove { id } => {
                self.transport.remove_peer(*id);
                if *id == self.node.identity.member_id {
                    self.removed = true;
                }
            }
        }
    }

    /// Changes raft's configuration and records it with the state machine.
    fn apply_conf_change(
        &mut self,
        state: &mut StateMachine<DiskBackend>,
        index: u64,
        conf_change: &ConfChangeV2,
    ) -> Result<(), Error> {
        let conf_state = self
            .raw_node
            .apply_conf_change(conf_change)
            .map_err(|e| storage(format!("conf change at {index}: {e}")))?;
        log_store::stage_conf_state(state.backend_mut(), &conf_state);
        // Snapshots sent from here carry the store's conf state.
        self.raw_node.mut_store().wl().set_conf_state(conf_state);
        Ok(())
    }

    /// Sends raft messages; a snapshot message goes with the state
    /// machine's snapshot, streamed by a task of its own.
    fn send_messages(&mut self, messages: Vec<Message>) {
        let (snapshots, others): (Vec<Message>, Vec<Message>) = messages
            .into_iter()
            .partition(|m| m.get_msg_type() == MessageType::MsgSnapshot);
        self.transport.send(others);
        for message in snapshots {
            let to = message.to;
            let Some(url) = self.node.peer_url(to) else {
                self.raw_node.report_snapshot(to, SnapshotStatus::Failure);
                continue;
            };
            tokio::spawn(super::snapshot_sender::send(
                self.node.clone(),
                self.handle.clone(),
                url,
                message,
            ));
        }
    }

    /// Replaces the state machine with the snapshot that came with raft's
    /// `snapshot`, and the log with the snapshot's position.
    fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), Error> {
        let incoming = self
            .incoming_snapshot
            .take()
            .ok_or_else(|| storage("raft handed over a snapshot that never arrived".into()))?;
        let metadata = snapshot.get_metadata().clone();
        let now_ms = self.node.clock.now_ms();
        let node = self.node.clone();
        // Marked durably first: the tables are replaced batch by batch.
        self.wal.set_installing(true)?;
        self.wal.sync()?;
        assert!(
            metadata.index >= self.raw_node.raft.raft_log.applied,
            "a snapshot at index {} would take back entries applied up to {}",
            metadata.index,
            self.raw_node.raft.raft_log.applied
        );
        let loading = std::time::Instant::now();
        let mut state = node.write_state();
        // Rewriting every table blocks for long: the worker's other tasks
        // move to another thread meanwhile.
        let built = crate::blocking::in_place(|| -> Result<_, Error> {
            let backend = state.backend_mut();
            let built = incoming.install(backend).map_err(Error::Storage)?;
            log_store::stage_conf_state_if_missing(backend, metadata.get_conf_state())?;
            log_store::stage_installed_snapshot(backend, metadata.index, metadata.term);
            backend.commit(true)?;
            Ok(built)
        })?;
        self.wal.snapshot(metadata.index, metadata.term)?;
        self.wal.set_installing(false)?;
        self.wal.sync()?;
        let loaded_ms = loading.elapsed().as_millis() as u64;
        match built {
            Some(built) => state.reload_with(now_ms, built)?,
            None => state.reload(now_ms)?,
        }
        let reloaded_ms = loading.elapsed().as_millis() as u64 - loaded_ms;
        self.raw_node
            .mut_store()
            .wl()
            .apply_snapshot(snapshot)
            .map_err(|e| storage(format!("raft snapshot: {e}")))?;
        self.log_appended_bytes = 0;
        let state_applied = read_meta_u64(state.mvcc().backend(), META_APPLIED_INDEX)?.unwrap_or(0);
        let members = state.members()?;
        drop(state);
        self.state_applied_floor = state_applied.max(metadata.index);
        self.applied_through = metadata.index;
        // raft's configuration is the snapshot's now: later conf changes
        // apply to it.
        self.conf_applied_floor = metadata.index;
        for member in &members {
            self.route(member);
        }
        self.node.set_applied_index(self.state_applied_floor);
        let revision = self.node.read().current_revision();
        if let Some(mut journal) = self.node.delta_journal() {
            journal.restart(
                self.state_applied_floor,
                revision,
                crate::backup::wall_clock_ms(),
            );
        }
        self.node.publish_applied();
        tracing::info!(
            index = metadata.index,
            state_applied,
            loaded_ms,
            reloaded_ms,
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    /// Drops applied entries from the log once there are many, or many
    /// bytes of them ([`LOG_COMPACT_AFTER_BYTES`]), keeping the last few
    /// for followers that are slightly behind.
    fn compact_log(&mut self) {
        let applied = self.raw_node.raft.raft_log.applied;
        let store = self.raw_node.store().clone();
        let first = store.first_index().unwrap_or(1);
        if applied < first + self.log_limits.compact_after_entries
            && self.log_appended_bytes < LOG_COMPACT_AFTER_BYTES
        {
            return;
        }
        let last_dropped = applied
            .saturating_sub(self.log_limits.retained_entries)
            .max(first - 1);
        if let Err(e) = self.compact_log_to(&store, first, last_dropped, applied) {
            tracing::warn!(error = %e, "log compaction failed; will retry");
        }
    }

    /// Drops the entries up to `last_dropped`, and more of those up to
    /// `applied` while the applied ones kept hold more than
    /// [`LOG_RETAINED_BYTES_MAX`].
    fn compact_log_to(
        &mut self,
        store: &MemStorage,
        first: u64,
        last_dropped: u64,
        applied: u64,
    ) -> Result<(), Error> {
        let raft_error = |e: raft::Error| storage(format!("raft log: {e}"));
        let last = store.last_index().map_err(raft_error)?;
        let mut kept = store
            .entries(
                last_dropped + 1,
                last + 1,
                None,
                raft::GetEntriesContext::empty(false),
            )
            .map_err(raft_error)?;
        let applied_kept = (applied.saturating_sub(last_dropped) as usize).min(kept.len());
        let mut retained_bytes: u64 = kept[..applied_kept].iter().map(entry_bytes).sum();
        let mut also_dropped = 0;
        while retained_bytes > LOG_RETAINED_BYTES_MAX && also_dropped < applied_kept {
            retained_bytes -= entry_bytes(&kept[also_dropped]);
            also_dropped += 1;
        }
        kept.drain(..also_dropped);
        let last_dropped = last_dropped + also_dropped as u64;
        if last_dropped < first {
            // Nothing applied to drop yet: count the bytes afresh.
            self.log_appended_bytes = 0;
            return Ok(());
        }
        let term = store.term(last_dropped).map_err(raft_error)?;
        let raft_state = store.initial_state().map_err(raft_error)?;
        // The dropped entries live on only in the state machine: make it
        // durable before the log lets them go.
        let syncer = self.node.read().mvcc().backend().syncer();
        crate::blocking::in_place(|| syncer.sync())?;
        self.wal.compact(last_dropped, term)?;
        // MemStorage can only move its start through a snapshot, which
        // also empties it: put the kept entries and the hard state back.
        let mut core = store.wl();
        core.apply_snapshot(log_store::snapshot_marker(
            last_dropped,
            term,
            raft_state.conf_state,
        ))
        .map_err(raft_error)?;
        if !kept.is_empty() {
            core.append(&kept).map_err(raft_error)?;
        }
        core.set_hardstate(raft_state.hard_state);
        // Only now: a compaction that failed is tried again at the next
        // Ready, whichever limit started it.
        self.log_appended_bytes = 0;
        tracing::debug!(
            first,
            last_dropped,
            kept = kept.len(),
            "compacted the raft log"
        );
        Ok(())
    }

    /// Records a peer's answer to this member's appends or heartbeats in
    /// its current term: proof that the peer runs and follows it.
    fn heard_from(&mut self, message: &raft::eraftpb::Message) {
        use raft::eraftpb::MessageType;
        let answers = matches!(
            message.get_msg_type(),
            MessageType::MsgAppendResponse | MessageType::MsgHeartbeatResponse
        );
        let peer = message.from;
        if answers
            && message.term == self.raw_node.raft.term
            && self.raw_node.raft.prs().get(peer).is_some()
        {
            self.heard_at_tick.insert(peer, self.ticks);
        }
    }

    /// Keeps `heard_at_tick` bounded by the configuration.
    fn forget_former_peers(&mut self) {
        let prs = self.raw_node.raft.prs();
        self.heard_at_tick.retain(|&id, _| prs.get(id).is_some());
    }

    /// Whether a peer was heard from within an election timeout. raft-rs
    /// clears every peer's `recent_active` at each election timeout under
    /// check-quorum and sets it again only at that peer's next response,
    /// so a membership check that falls in between would see no peer
    /// started; etcd, likewise, judges from its transport's "active since".
    fn heard_recently(&self, peer: u64) -> bool {
        self.heard_at_tick
            .get(&peer)
            .is_some_and(|&tick| self.ticks.saturating_sub(tick) <= ELECTION_TICKS as u64)
    }

    fn membership_view(&self) -> MembershipView {
        let raft = &self.raw_node.raft;
        let members = raft
            .prs()
            .iter()
            .map(|(&id, p)| {
                let progress = Progress {
                    matched_index: p.matched,
                    recently_active: p.recent_active || id == raft.id || self.heard_recently(id),
                };
                (id, progress)
            })
            .collect();
        MembershipView {
            is_leader: raft.state == StateRole::Leader,
            progress: LeaderProgress {
                last_index: raft.raft_log.last_index(),
                members,
            },
        }
    }

    /// The id of this member's request a context carries, if it is one
    /// of this member's.
    fn own_request(&self, context: &[u8]) -> Option<u64> {
        let (member, id) = parse_member_scoped_context(context)?;
        (member == self.node.identity.member_id).then_some(id)
    }

    fn answer_read(&mut self, context: &[u8], index: u64) {
        let Some(id) = self.own_request(context) else {
            return;
        };
        if let Some(reply) = self.pending_reads.remove(&id) {
            let _ = reply.send(index);
        }
    }

    fn on_role_change(&mut self, leader_id: u64, role: StateRole) {
        let is_leader = role == StateRole::Leader;
        if is_leader && !self.was_leader {
            tracing::info!(term = self.raw_node.raft.term, "became leader");
            let now_ms = self.node.clock.now_ms();
            let mut state = self.node.write_state();
            state.refresh_leases(now_ms);
        }
        if !is_leader && self.was_leader {
            tracing::info!(leader = format!("{leader_id:x}"), "lost leadership");
        }
        let changed = leader_id != self.leader_id;
        self.node
            .metrics
            .observe_leadership(leader_id, is_leader, changed);
        if changed {
            // Proposals sent to the old leader may be lost with it: their
            // clients hear so now rather than at their timeout.
            for (_, reply) in std::mem::take(&mut self.pending_proposals) {
                let _ = reply.send(Err(Error::LeaderChanged));
            }
            for (_, reply) in std::mem::take(&mut self.waiting_conf_changes) {
                let _ = reply.send(Err(Error::LeaderChanged));
            }
            self.leader_id = leader_id;
        }
        if leader_id == raft::INVALID_ID {
            // Reads waiting on a vanished leader would never be answered.
            self.pending_reads.clear();
        }
        self.was_leader = is_leader;
    }

    fn publish_status(&self) {
        let raft = &self.raw_node.raft;
        let status = RaftStatus {
            leader_id: raft.leader_id,
            term: raft.term,
            commit_index: raft.raft_log.committed,
            applied_index: raft.raft_log.applied,
            last_log: e2d_core::log_position::LogPosition::new(
                raft.raft_log.last_term(),
                raft.raft_log.last_index(),
            ),
            is_leader: raft.state == StateRole::Leader,
        };
        let is_learner = raft.prs().conf().learners().contains(&raft.id);
        self.node
            .metrics
            .observe_raft(status.commit_index, status.applied_index, is_learner);
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }
}

fn done() -> Outcome {
    Outcome {
        result: Some(e2d_proto::peer::outcome::Result::Done(
            e2d_proto::peer::Done {},
        )),
    }
}

/// A conf change entry's raft change and the member change its context
/// carries (`None` if it names no member: e2d proposes none such, and one
/// from elsewhere changes raft's configuration only, on every member).
fn decode_conf_change(entry: &Entry) -> Result<(ConfChangeV2, Option<Change>), Error> {
    let conf_change = ConfChangeV2::decode(entry.data.as_slice())
        .map_err(|e| storage(format!("corrupt conf change at {}: {e}", entry.index)))?;
    let change = entry
        .context
        .get(16..)
        .and_then(|bytes| MemberChange::decode(bytes).ok())
        .and_then(|change| Change::of(&change));
    Ok((conf_change, change))
}

fn storage(message: String) -> Error {
    Error::Storage(e2d_core::storage::StorageError(message))
}

/// The context of a proposal or read request: the member's id, then the
/// member's own request id, so no two members' requests share one.
fn member_scoped_context(member_id: u64, id: u64) -> [u8; 16] {
    let mut context = [0; 16];
    context[..8].copy_from_slice(&member_id.to_be_bytes());
    context[8..].copy_from_slice(&id.to_be_bytes());
    context
}

fn parse_member_scoped_context(context: &[u8]) -> Option<(u64, u64)> {
    let member = u64::from_be_bytes(context.get(..8)?.try_into().ok()?);
    let id = u64::from_be_bytes(context.get(8..16)?.try_into().ok()?);
    Some((member, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request that reaches a driver whose task has ended is told the
    /// server stopped (Unavailable, as etcd answers while it stops); it
    /// is not a failed read of the member's data, which would stop the
    /// process while it starts over as a new member.
    #[tokio::test]
    async fn a_request_after_the_driver_ended_is_told_the_server_stopped() {
        let (requests, incoming) = mpsc::channel(1);
        drop(incoming);
        let handle = DriverHandle {
            requests,
            status: watch::channel(RaftStatus::default()).1,
            removed: Arc::new(watch::Sender::new(false)),
            stopped: Arc::new(watch::Sender::new(true)),
        };
        let (reply, _) = oneshot::channel();
        let refused = handle.send(DriverRequest::ReadIndex { reply }).await;
        assert!(matches!(refused, Err(Error::Stopped)), "{refused:?}");
        let status = crate::grpc::to_status(Error::Stopped);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "etcdserver: server stopped");
    }
}

//! The manager state machine: from gossip, the local server and the snapshot
//! store to commands.

use std::collections::{BTreeMap, VecDeque};

use crate::log_position::LogPosition;
use crate::swim::{MemberView, NodeMeta, NodeStatus, META_NAMES_MAX};

use super::command::{
    ClusterMember, Command, CommandId, CommandResult, DataDir, Event, Founder, Proposal, Removal,
    ServerStatus,
};
use super::config::ManagerConfig;
use super::founding::{self, Step};
use super::quorum::GossipView;

mod join;
mod leader;
mod recovery;

pub use recovery::RECOVERY_SETTLE_MS;

/// The voters as gossip metadata lists them, at most [`META_NAMES_MAX`]:
/// each by its name, or, before it has started and published one, by its
/// id in a form no gossip name has.
pub fn voter_labels<'a>(voters: impl Iterator<Item = (u64, &'a str)>) -> Vec<String> {
    voters
        .map(|(member_id, name)| {
            if name.is_empty() {
                format!("#{member_id:x}")
            } else {
                name.to_string()
            }
        })
        .take(META_NAMES_MAX)
        .collect()
}

/// How long the founders must agree on a set, as this node sees them,
/// before it commits to it: several gossip rounds, so that a view about to
/// change does not lock a set in.
pub const FOUNDING_SETTLE_MS: u64 = 3_000;

/// Bound on the gossip view the manager keeps (names).
pub const VIEW_MEMBERS_MAX: usize = 1024;

/// Where the node is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// No member state: found or join a cluster.
    Pending,
    /// A start, restart or join is under way.
    Starting,
    /// The server runs as a member.
    Running,
    /// The server was removed from its cluster; its data dir is moved aside.
    Removed,
}

/// The one command in flight that awaits an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Awaiting {
    Listing,
    Persist(Option<Proposal>),
    Start,
    Lock,
    Fetch,
    Replace,
    AddLearner,
    Remove,
    Promote,
    Archive,
    ProposeSize,
    SetVersion,
    LeaveRecovery(u64),
    Recover,
}

/// The cluster manager: every decision about bootstrap, joining, restarts,
/// restores and membership.
///
/// Drain contract: after every `handle_*` call, drain [`Manager::poll_command`]
/// and [`Manager::poll_event`] until they return `None`, then sleep until
/// [`Manager::poll_timeout`] (or the next input) and call
/// [`Manager::handle_timeout`]. At most one command that needs an answer is
/// in flight at a time; its answer comes back through
/// [`Manager::handle_result`].
#[derive(Debug)]
pub struct Manager {
    config: ManagerConfig,
    phase: Phase,
    data_dir: DataDir,
    view: GossipView,
    founding: founding::Local,
    /// The snapshot store has been listed (or none is configured).
    listed: bool,
    server: Option<ServerStatus>,
    /// A membership change went through since the last server status: the
    /// member list in `server` is out of date until the next report.
    server_stale: bool,
    /// This evaluation runs on a server status just reported (not one
    /// kept from an earlier report while gossip changed).
    status_fresh: bool,
    /// The cluster the server runs, once started.
    cluster_id: u64,
    /// Founders of the cluster this node founded, kept in its metadata.
    founded_with: Option<Proposal>,
    join_lock_through: Option<Vec<String>>,
    published: Option<NodeMeta>,
    commands: VecDeque<Command>,
    events: VecDeque<Event>,
    next_id: CommandId,
    in_flight: Option<(CommandId, Awaiting)>,
    retry_at_ms: u64,
    /// When each member (by id) was first seen not up in gossip.
    missing_since_ms: BTreeMap<u64, u64>,
    next_health_check_ms: u64,
    waiting: String,
    /// Since when the founders have agreed on this node's proposal, without
    /// a break.
    agreement_since_ms: Option<u64>,
    /// The size this node still has to propose for its cluster, if any.
    size_to_propose: Option<usize>,
    recovery: recovery::Recovery,
    now_ms: u64,
}

impl Manager {
    /// `config` must have passed [`ManagerConfig::validate`].
    pub fn new(config: ManagerConfig, data_dir: DataDir, now_ms: u64) -> Self {
        assert!(config.validate().is_ok(), "invalid manager config");
        let founding = founding::Local {
            name: config.name.clone(),
            removed_from: match data_dir {
                DataDir::Member { .. } => None,
                _ => config.removed_from.clone(),
            },
            ..Default::default()
        };
        let mut manager = Manager {
            listed: !config.snapshots_configured,
            next_health_check_ms: now_ms + config.health_check_interval_ms,
            size_to_propose: config.propose_cluster_size,
            config,
            phase: Phase::Pending,
            data_dir: data_dir.clone(),
            view: GossipView::new(),
            founding,
            server: None,
            server_stale: false,
            status_fresh: false,
            cluster_id: 0,
            founded_with: None,
            join_lock_through: None,
            published: None,
            commands: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
            in_flight: None,
            retry_at_ms: now_ms,
            missing_since_ms: BTreeMap::new(),
            waiting: String::new(),
            agreement_since_ms: None,
            recovery: recovery::Recovery::default(),
            now_ms,
        };
        match data_dir {
            DataDir::Member {
                cluster_id,
                founders,
                recovery_left_to,
                ..
            } => {
                manager.cluster_id = cluster_id;
                manager.founded_with = founders;
                manager.recovery.left_to = recovery_left_to;
                manager.phase = Phase::Starting;
                manager.issue(Awaiting::Start, |id| Command::RestartFromDataDir { id });
            }
            DataDir::Committed(proposal) => {
                manager.founding.proposal = Some(proposal);
                manager.founding.committed = true;
            }
            DataDir::Empty => {}
        }
        manager.evaluate();
        manager
    }

    /// A member's gossip state changed (from the SWIM machine's events).
    pub fn handle_gossip(&mut self, member: MemberView, now_ms: u64) {
        self.advance(now_ms);
        if member.name == self.config.name {
            return;
        }
        if self.view.len() >= VIEW_MEMBERS_MAX && !self.view.contains_key(&member.name) {
            return;
        }
        self.view.insert(member.name.clone(), member);
        self.evaluate();
    }

    /// The local server's view of its cluster, reported while it runs.
    pub fn handle_server_status(&mut self, status: ServerStatus, now_ms: u64) {
        self.advance(now_ms);
        if self.phase == Phase::Running {
            self.cluster_id = status.cluster_id;
            self.server = Some(status);
            self.server_stale = false;
            self.status_fresh = true;
        }
        self.evaluate();
    }

    /// The local server learnt that its member was removed from the
    /// cluster; `members` is the member list as the server last knew it.
    pub fn handle_server_removed(&mut self, members: &[ClusterMember], now_ms: u64) {
        self.advance(now_ms);
        if self.phase == Phase::Running {
            self.phase = Phase::Removed;
            self.missing_since_ms.clear();
            let own_id = match (self.server.take(), &self.data_dir) {
                (Some(server), _) => Some(server.member_id),
                (None, DataDir::Member { member_id, .. }) => Some(*member_id),
                (None, _) => None,
            };
            // The voters it goes on with, as this member last saw them.
            let voters = voter_labels(
                members
                    .iter()
                    .filter(|m| !m.is_learner && Some(m.id) != own_id)
                    .map(|m| (m.id, m.name.as_str())),
            );
            self.founding.removed_from = (self.cluster_id != 0).then_some(Removal {
                cluster_id: self.cluster_id,
                voters,
            });
        }
        self.evaluate();
    }

    /// The answer to command `id`. Answers to unknown ids are ignored.
    pub fn handle_result(&mut self, id: CommandId, result: CommandResult, now_ms: u64) {
        self.advance(now_ms);
        let Some((expected, awaiting)) = self.in_flight.take() else {
            return;
        };
        if expected != id {
            self.in_flight = Some((expected, awaiting));
            return;
        }
        if let CommandResult::Failed(reason) = &result {
            self.set_waiting(format!("{awaiting:?} failed: {reason}; retrying"));
            self.retry_at_ms = self.now_ms + self.config.retry_interval_ms;
            if awaiting == Awaiting::Start && self.phase == Phase::Starting {
                self.phase = match self.data_dir {
                    DataDir::Member { .. } => Phase::Starting,
                    _ => Phase::Pending,
                };
            }
            self.release_join_lock();
            self.evaluate();
            return;
        }
        self.accept(awaiting, result);
        self.evaluate();
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.advance(now_ms);
        self.evaluate();
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next time the manager wants [`Manager::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<u64> {
        let retry = (self.in_flight.is_none() && self.retry_at_ms > self.now_ms)
            .then_some(self.retry_at_ms);
        // A due check waits for what holds it back (a retry time, an
        // answer), which wakes the manager anyway.
        let health = (self.phase == Phase::Running && self.next_health_check_ms > self.now_ms)
            .then_some(self.next_health_check_ms);
        let pending =
            (self.phase == Phase::Pending).then_some(self.now_ms + self.config.retry_interval_ms);
        [retry, health, pending].into_iter().flatten().min()
    }

    /// What the node waits for, if anything.
    pub fn waiting_for(&self) -> &str {
        &self.waiting
    }

    pub fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    /// The size the cluster should have: as replicated, else the size it
    /// was founded with.
    pub fn cluster_size(&self) -> usize {
        self.server
            .as_ref()
            .and_then(|status| status.cluster_size)
            .unwrap_or(self.config.required_cluster_size)
    }

    fn advance(&mut self, now_ms: u64) {
        // Time never goes back for the manager, even if the caller's does.
        self.now_ms = self.now_ms.max(now_ms);
    }

    fn issue(&mut self, awaiting: Awaiting, command: impl FnOnce(CommandId) -> Command) {
        assert!(self.in_flight.is_none(), "one command in flight at a time");
        let id = self.next_id;
        self.next_id += 1;
        self.commands.push_back(command(id));
        self.in_flight = Some((id, awaiting));
    }

    fn set_waiting(&mut self, reason: String) {
        if self.waiting != reason {
            self.waiting = reason.clone();
            self.events.push_back(Event::Waiting(reason));
        }
    }

    fn accept(&mut self, awaiting: Awaiting, result: CommandResult) {
        match (awaiting, result) {
            (Awaiting::Listing, CommandResult::NewestSnapshot(newest)) => {
                self.founding.newest_snapshot = newest;
                self.listed = true;
            }
            (Awaiting::Persist(proposal), _) => {
                self.founding.committed = proposal.is_some();
                if let Some(proposal) = proposal {
                    self.founding.proposal = Some(proposal);
                }
            }
            (Awaiting::Start, CommandResult::Started { cluster_id }) => {
                self.phase = Phase::Running;
                self.cluster_id = cluster_id;
                // A member again: no longer one its old cluster removed.
                self.founding.removed_from = None;
                self.release_join_lock();
            }
            (Awaiting::Recover, CommandResult::Started { cluster_id }) => {
                // A new cluster of this member alone, founded by nobody.
                self.cluster_id = cluster_id;
                self.founded_with = None;
                self.server = None;
                self.missing_since_ms.clear();
                self.recovery = recovery::Recovery::default();
            }
            (Awaiting::LeaveRecovery(member_id), CommandResult::Done) => {
                self.recovery.left_to = Some(member_id);
            }
            (Awaiting::Lock, _) => {}
            (
                Awaiting::Fetch,
                CommandResult::Members {
                    members,
                    cluster_size,
                    cluster_version,
                },
            ) => self.after_members(members, cluster_size, cluster_version),
            (Awaiting::AddLearner, CommandResult::Members { members, .. }) => {
                self.set_waiting("starting as a learner of the running cluster".into());
                self.phase = Phase::Starting;
                self.issue(Awaiting::Start, |id| Command::StartJoined { id, members });
            }
            (Awaiting::Archive, _) => {
                self.data_dir = DataDir::Empty;
                self.phase = Phase::Pending;
                self.cluster_id = 0;
                self.founded_with = None;
                self.founding = founding::Local {
                    name: self.config.name.clone(),
                    newest_snapshot: self.founding.newest_snapshot.clone(),
                    removed_from: self.founding.removed_from.clone(),
                    ..Default::default()
                };
            }
            (Awaiting::Remove | Awaiting::Promote | Awaiting::SetVersion, _) => {
                self.server_stale = true;
            }
            (Awaiting::ProposeSize, _) => {
                self.size_to_propose = None;
                self.server_stale = true;
            }
            (Awaiting::Replace, _) => {}
            (awaiting, result) => {
                self.set_waiting(format!("unexpected answer {result:?} to {awaiting:?}"));
                self.retry_at_ms = self.now_ms + self.config.retry_interval_ms;
                self.release_join_lock();
            }
        }
    }

    /// Runs the rules for the current phase, then publishes the metadata
    /// they imply.
    fn evaluate(&mut self) {
        if self.in_flight.is_none() && self.now_ms >= self.retry_at_ms {
            match self.phase {
                Phase::Pending => self.evaluate_pending(),
                Phase::Starting => {
                    if matches!(self.data_dir, DataDir::Member { .. }) {
                        self.issue(Awaiting::Start, |id| Command::RestartFromDataDir { id });
                    }
                }
                Phase::Running => self.evaluate_running(),
                Phase::Removed => {
                    self.set_waiting("this member was removed from its cluster; moving its data dir aside to join again".into());
                    let removed_from = self.founding.removed_from.clone();
                    self.issue(Awaiting::Archive, |id| Command::ArchiveDataDir {
                        id,
                        removed_from,
                    });
                }
            }
        }
        self.status_fresh = false;
        self.publish();
    }

    fn evaluate_pending(&mut self) {
        if !self.listed {
            self.set_waiting("listing the snapshot store".into());
            self.issue(Awaiting::Listing, |id| Command::ListSnapshots { id });
            return;
        }
        if self.config.required_cluster_size == 1 {
            let proposal = Proposal {
                founders: vec![self.config.name.clone()],
                restore: self.founding.newest_snapshot.clone(),
            };
            self.start_new_cluster(proposal);
            return;
        }
        let running = self.running_peer_urls();
        if !self.founding.committed && !running.is_empty() {
            self.evaluate_join(running);
            return;
        }
        let view: Vec<&MemberView> = self.view.values().collect();
        let step = founding::decide(&self.founding, &view, self.config.required_cluster_size);
        if !matches!(step, Step::Commit(_)) {
            self.agreement_since_ms = None;
        }
        match step {
            Step::Wait(reason) => self.set_waiting(reason),
            Step::Propose(proposal) => {
                self.founding.proposal = Some(proposal);
            }
            Step::Withdraw(reason) => {
                self.founding.proposal = None;
                self.set_waiting(reason);
            }
            Step::Commit(proposal) => {
                // Commit only after the agreement has held for a while, so a
                // view that is about to change does not lock a set in.
                let since_ms = *self.agreement_since_ms.get_or_insert(self.now_ms);
                if self.now_ms < since_ms + FOUNDING_SETTLE_MS {
                    self.set_waiting(format!(
                        "all of {} agree; committing once that has held for {FOUNDING_SETTLE_MS} ms",
                        proposal.founders.join(", ")
                    ));
                    return;
                }
                self.agreement_since_ms = None;
                let persisted = Some(proposal);
                self.issue(Awaiting::Persist(persisted.clone()), |id| {
                    Command::PersistCommitment {
                        id,
                        proposal: persisted,
                    }
                });
            }
            Step::Abandon => {
                self.founding.proposal = None;
                self.issue(Awaiting::Persist(None), |id| Command::PersistCommitment {
                    id,
                    proposal: None,
                });
            }
            Step::Start(proposal) => self.start_new_cluster(proposal),
        }
    }

    fn start_new_cluster(&mut self, proposal: Proposal) {
        assert!(
            !matches!(self.data_dir, DataDir::Member { .. }),
            "never found a cluster over a member's data dir"
        );
        let founders: Vec<Founder> = proposal
            .founders
            .iter()
            .map(|name| Founder {
                name: name.clone(),
                peer_url: if *name == self.config.name {
                    self.config.peer_url.clone()
                } else {
                    self.view
                        .get(name)
                        .map(|m| m.meta.peer_url.clone())
                        .unwrap_or_default()
                },
            })
            .collect();
        let unknown: Vec<&str> = founders
            .iter()
            .filter(|f| f.peer_url.is_empty())
            .map(|f| f.name.as_str())
            .collect();
        if !unknown.is_empty() {
            self.set_waiting(format!(
                "waiting to learn the peer URL of {} from gossip",
                unknown.join(", ")
            ));
            return;
        }
        let restore = proposal.restore.clone();
        self.set_waiting(format!(
            "starting a new cluster with {}{}",
            proposal.founders.join(", "),
            restore
                .as_deref()
                .map(|s| format!(", restored from {s}"))
                .unwrap_or_default()
        ));
        self.founded_with = Some(proposal);
        self.phase = Phase::Starting;
        self.issue(Awaiting::Start, |id| Command::StartNewCluster {
            id,
            founders,
            restore,
        });
    }

    /// The metadata the node should publish now; published when it changes.
    fn publish(&mut self) {
        let (status, cluster_id, proposal) = match self.phase {
            Phase::Running => (
                NodeStatus::Running,
                self.cluster_id,
                self.founded_with.clone(),
            ),
            Phase::Pending if self.listed => {
                (NodeStatus::Pending, 0, self.founding.proposal.clone())
            }
            Phase::Starting if self.founded_with.is_some() => {
                (NodeStatus::Pending, 0, self.founding.proposal.clone())
            }
            _ => (NodeStatus::Unknown, 0, None),
        };
        let running = status == NodeStatus::Running;
        let cluster_voters: Vec<String> = match (&self.phase, &self.server) {
            (Phase::Running, Some(server)) => voter_labels(
                server
                    .members
                    .iter()
                    .filter(|m| !m.is_learner)
                    .map(|m| (m.id, m.name.as_str())),
            ),
            _ => Vec::new(),
        };
        let (founders, founders_restore) = match (&proposal, running) {
            (Some(p), false) => (p.founders.clone(), p.restore.clone().unwrap_or_default()),
            _ => (Vec::new(), String::new()),
        };
        let (recovery_log, recovery_digest) = match self.phase {
            Phase::Running => self.recovery.standing.unwrap_or_default(),
            _ => (LogPosition::default(), 0),
        };
        let recovered_from = match (&self.phase, &self.server) {
            (Phase::Running, Some(server)) => server.recovered_from.clone(),
            _ => Vec::new(),
        };
        let recovery_left_to = match self.phase {
            Phase::Running => self.recovery.left_to.unwrap_or_default(),
            _ => 0,
        };
        let removed_from = match self.phase {
            Phase::Running => 0,
            _ => self
                .founding
                .removed_from
                .as_ref()
                .map_or(0, |r| r.cluster_id),
        };
        let meta = NodeMeta {
            name: self.config.name.clone(),
            client_url: self.config.client_url.clone(),
            peer_url: self.config.peer_url.clone(),
            cluster_id,
            status,
            founders,
            founders_restore,
            founders_committed: self.founding.committed || running && proposal.is_some(),
            cluster_voters,
            founders_digest: proposal.as_ref().map_or(0, Proposal::digest),
            version: self.config.version.to_string(),
            recovery_log,
            recovery_digest,
            recovered_from,
            recovery_left_to,
            removed_from,
        };
        if self.published.as_ref() != Some(&meta) {
            self.published = Some(meta.clone());
            self.commands.push_back(Command::PublishMeta(meta));
        }
    }
}

//! What the manager is told and what it asks the shell to do.

use crate::log_position::LogPosition;
use crate::swim::{NodeMeta, RecoveredFrom};
use crate::version::Version;

/// Identifies a command that expects an answer through
/// [`super::Manager::handle_result`].
pub type CommandId = u64;

/// A member of the etcd cluster, as the server's member list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMember {
    pub id: u64,
    /// Empty while the member has not started and published its name.
    pub name: String,
    pub peer_url: String,
    pub is_learner: bool,
    /// For learners, on the leader: its log has caught up with the leader's
    /// (it can be promoted). Always false elsewhere.
    pub caught_up: bool,
}

/// The local server's view of its cluster, reported while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    pub cluster_id: u64,
    pub member_id: u64,
    /// 0 while there is no leader.
    pub leader_id: u64,
    pub members: Vec<ClusterMember>,
    /// The cluster's size as replicated (`e2d cluster resize`), if it was
    /// ever set; until then the size the cluster was founded with (`-n`).
    pub cluster_size: Option<usize>,
    /// The cluster version as recorded, if one was.
    pub cluster_version: Option<Version>,
    /// Where the member's raft log ends.
    pub last_log: LogPosition,
    /// How this cluster came from recoveries, newest first (empty for
    /// one never recovered).
    pub recovered_from: Vec<RecoveredFrom>,
}

impl ServerStatus {
    pub fn is_leader(&self) -> bool {
        self.leader_id != 0 && self.leader_id == self.member_id
    }
}

/// A founding set of a new cluster, and the snapshot its members restore.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Proposal {
    /// Sorted, distinct names.
    pub founders: Vec<String>,
    pub restore: Option<String>,
}

/// The sorted member ids of `members`: the membership a decision was made
/// on, which the shell compares with the current one before a change.
pub fn member_ids(members: &[ClusterMember]) -> Vec<u64> {
    let mut ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    ids
}

impl Proposal {
    /// What a Running founder publishes instead of the whole set.
    pub fn digest(&self) -> u64 {
        crate::swim::founders_digest(&self.founders, self.restore.as_deref().unwrap_or(""))
    }
}

/// The cluster that removed this node's member, and the voters it went on
/// with as the member last saw them (names, or `#<id>` for one without):
/// while those may still run it, the node does not help found another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub cluster_id: u64,
    pub voters: Vec<String>,
}

/// What the data dir held when the node started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDir {
    /// Nothing: a new node, or one whose disk was lost.
    Empty,
    /// No member state yet, but the node had committed to founding this set
    /// (written before the commitment was published).
    Committed(Proposal),
    /// A member's state: restart with it, never wipe it. `founders` is the
    /// set the node founded its cluster with, if it was a founder (the
    /// commitment stays in the data dir), so that founders which have not
    /// started yet recognise the cluster as theirs.
    Member {
        cluster_id: u64,
        member_id: u64,
        founders: Option<Proposal>,
        /// The survivor this member left the recovery of its cluster to,
        /// once the survivors agreed (kept in the data dir): it never
        /// recovers the cluster itself.
        recovery_left_to: Option<u64>,
    },
}

/// One founding member, as `StartNewCluster` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Founder {
    pub name: String,
    pub peer_url: String,
}

/// Why a member is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    /// Gossip has not seen it up for longer than the health-check timeout.
    HealthCheckTimeout,
    /// A node with an empty data dir now uses its name or peer URL: the
    /// member's data is gone.
    Replaced,
    /// The cluster was resized below its members.
    Resize,
}

/// What the manager asks the shell to do. Commands with an `id` are answered
/// through [`super::Manager::handle_result`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Set this node's gossip metadata.
    PublishMeta(NodeMeta),
    /// List the snapshot store; answer with [`CommandResult::NewestSnapshot`].
    ListSnapshots { id: CommandId },
    /// Durably record (or, with `None`, clear) the founding set this node
    /// commits to, before the commitment is published.
    PersistCommitment {
        id: CommandId,
        proposal: Option<Proposal>,
    },
    /// Start the server from the member state in the data dir.
    RestartFromDataDir { id: CommandId },
    /// Start a new cluster with these founders, first restoring `restore`
    /// into the (empty) data dir when given.
    StartNewCluster {
        id: CommandId,
        founders: Vec<Founder>,
        restore: Option<String>,
    },
    /// Take the cluster-wide join lock through one of these peer URLs.
    AcquireJoinLock { id: CommandId, through: Vec<String> },
    /// Release the join lock (best effort; it also expires on its own).
    ReleaseJoinLock { through: Vec<String> },
    /// Read the member list through one of these peer URLs; answer with
    /// [`CommandResult::Members`].
    FetchMembers { id: CommandId, through: Vec<String> },
    /// Add this node as a learner through one of these peer URLs; answer
    /// with the member list after the change.
    AddLearner { id: CommandId, through: Vec<String> },
    /// Start the server as a member of the existing cluster `members`.
    StartJoined {
        id: CommandId,
        members: Vec<ClusterMember>,
    },
    /// Remove a member, through the local server when `through` is empty.
    /// Carried out only if the cluster's members are still `expected` (the
    /// list the decision was made on); otherwise answer `Failed`.
    RemoveMember {
        id: CommandId,
        member_id: u64,
        name: String,
        reason: RemovalReason,
        through: Vec<String>,
        expected: Vec<u64>,
    },
    /// Promote a caught-up learner (through the local server, the leader),
    /// only if the cluster's members are still `expected` and its size is
    /// still `cluster_size`.
    PromoteMember {
        id: CommandId,
        member_id: u64,
        expected: Vec<u64>,
        cluster_size: usize,
    },
    /// Stop the server and move the data dir of a removed member aside (it is
    /// kept, never deleted), leaving an empty data dir that records
    /// `removed_from`, the cluster that removed the member (none when the
    /// member yields to a cluster recovered from its own).
    ArchiveDataDir {
        id: CommandId,
        removed_from: Option<Removal>,
    },
    /// Durably record, in the data dir, that member `member_id` recovers
    /// this member's cluster: this member never does so itself.
    LeaveRecoveryTo { id: CommandId, member_id: u64 },
    /// Stop the server and restart it as the only member of a new cluster
    /// from its own data (`e2d cluster recover`); the other members are
    /// removed for good and their data kept where it is. Answered with
    /// [`CommandResult::Started`] for the new cluster.
    RecoverAlone { id: CommandId },
    /// Replicate `size` as the cluster's size, through the local server.
    ProposeClusterSize { id: CommandId, size: usize },
    /// Record `version` as the cluster's version, through the local server
    /// (the leader): every member of `expected` runs it or a newer one.
    /// Carried out only if the cluster's members are still `expected`
    /// (a member added since may run an older version).
    SetClusterVersion {
        id: CommandId,
        version: Version,
        expected: Vec<u64>,
    },
}

/// The answer to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandResult {
    Done,
    /// The server runs, as a member of this cluster (answers the start and
    /// restart commands).
    Started {
        cluster_id: u64,
    },
    /// The newest valid snapshot in the store, if any.
    NewestSnapshot(Option<String>),
    /// The member list, and the cluster's size as the answering member
    /// has it (replicated, or the size it was founded with), and its
    /// recorded version, if any.
    Members {
        members: Vec<ClusterMember>,
        cluster_size: usize,
        cluster_version: Option<Version>,
    },
    Failed(String),
}

/// What the manager reports for logs and `e2d status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// What the node is waiting for, each time it changes.
    Waiting(String),
}

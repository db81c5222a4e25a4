//! What each node says about itself in gossip, and how a member looks in a
//! node's view.

use std::net::SocketAddr;

use e2d_proto::gossip as wire;

use crate::log_position::LogPosition;

/// Where a node is in its life as an etcd member, as it tells the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum NodeStatus {
    /// Started; has not decided yet what to do (reading its data dir,
    /// listing snapshots).
    #[default]
    Unknown,
    /// Has no cluster and waits to found or join one.
    Pending,
    /// Runs an etcd member of cluster `cluster_id`.
    Running,
}

/// Per-node metadata, spread to all with the node's incarnation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeMeta {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    /// The etcd cluster this node serves; 0 while it serves none.
    pub cluster_id: u64,
    pub status: NodeStatus,
    /// The founding set this node proposes (sorted names) while it has no
    /// cluster; empty for none.
    pub founders: Vec<String>,
    /// The snapshot the founders restore; empty for none.
    pub founders_restore: String,
    /// The node has committed to `founders` and will not propose another
    /// set.
    pub founders_committed: bool,
    /// Names of the voting members of `cluster_id`, as last seen; empty
    /// while the node serves no cluster.
    pub cluster_voters: Vec<String>,
    /// Digest of the founding set proposed or founded with (see
    /// [`founders_digest`]); 0 for none.
    pub founders_digest: u64,
    /// The e2d version the node runs; empty if it does not say.
    pub version: String,
    /// A survivor of `cluster_id`'s lost majority stands for automatic
    /// recovery with where its raft log ends; index 0 when it does not
    /// stand.
    pub recovery_log: LogPosition,
    /// Digest of the survivors a standing node counts (see
    /// [`survivors_digest`]); 0 until it knows each one's log position.
    pub recovery_digest: u64,
    /// How `cluster_id` came from recoveries, newest first; at most
    /// [`RECOVERY_LINEAGE_MAX`] steps.
    pub recovered_from: Vec<RecoveredFrom>,
    /// The member id of the survivor this node left its cluster's
    /// recovery to; 0 when none.
    pub recovery_left_to: u64,
    /// The cluster that removed this node's member, while the node runs no
    /// cluster; 0 when none.
    pub removed_from: u64,
}

/// One step of a cluster's recovery lineage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct RecoveredFrom {
    /// The cluster it was recovered from.
    pub cluster_id: u64,
    /// The member that restarted it alone (it keeps its member id).
    pub by_member_id: u64,
}

/// Most steps of a recovery lineage kept and gossiped.
pub const RECOVERY_LINEAGE_MAX: usize = 2;

/// Most names `founders` and `cluster_voters` hold together.
pub const META_NAMES_MAX: usize = 9;

/// FNV-1a over the founders' names and the snapshot they restore: how a
/// Running founder names its founding set in little space.
pub fn founders_digest(founders: &[String], restore: &str) -> u64 {
    let parts = founders.iter().map(String::as_str).chain([restore]);
    digest(parts.flat_map(|part| part.bytes().chain([0])))
}

/// FNV-1a over a cluster id and its survivors' `(member id, log
/// position)` pairs, sorted: what survivors of a lost majority compare to
/// know that they count the same survivors at the same positions.
pub fn survivors_digest(cluster_id: u64, survivors: &[(u64, LogPosition)]) -> u64 {
    let mut sorted = survivors.to_vec();
    sorted.sort_unstable();
    let numbers = [cluster_id].into_iter().chain(
        sorted
            .into_iter()
            .flat_map(|(id, log)| [id, log.term, log.index]),
    );
    digest(numbers.flat_map(u64::to_be_bytes))
}

/// FNV-1a, never 0 (0 stands for "none" in the metadata).
fn digest(bytes: impl Iterator<Item = u8>) -> u64 {
    crate::fnv1a::fnv1a_64(bytes).max(1)
}

/// How alive a member is, in one node's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Liveness {
    Alive,
    Suspect,
    Dead,
    /// Left gracefully.
    Left,
}

impl Liveness {
    /// Alive or suspected: still counted as a member of the gossip group.
    pub fn is_up(self) -> bool {
        matches!(self, Liveness::Alive | Liveness::Suspect)
    }
}

/// One member as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub name: String,
    pub addr: SocketAddr,
    pub incarnation: u64,
    pub liveness: Liveness,
    pub meta: NodeMeta,
}

impl NodeStatus {
    pub fn to_wire(self) -> wire::NodeStatus {
        match self {
            NodeStatus::Unknown => wire::NodeStatus::Unknown,
            NodeStatus::Pending => wire::NodeStatus::Pending,
            NodeStatus::Running => wire::NodeStatus::Running,
        }
    }

    pub fn from_wire(status: wire::NodeStatus) -> Self {
        match status {
            wire::NodeStatus::Unknown => NodeStatus::Unknown,
            wire::NodeStatus::Pending => NodeStatus::Pending,
            wire::NodeStatus::Running => NodeStatus::Running,
        }
    }
}

impl Liveness {
    pub fn to_wire(self) -> wire::Liveness {
        match self {
            Liveness::Alive => wire::Liveness::Alive,
            Liveness::Suspect => wire::Liveness::Suspect,
            Liveness::Dead => wire::Liveness::Dead,
            Liveness::Left => wire::Liveness::Left,
        }
    }

    pub fn from_wire(liveness: wire::Liveness) -> Self {
        match liveness {
            wire::Liveness::Alive => Liveness::Alive,
            wire::Liveness::Suspect => Liveness::Suspect,
            wire::Liveness::Dead => Liveness::Dead,
            wire::Liveness::Left => Liveness::Left,
        }
    }
}

impl NodeMeta {
    pub fn to_wire(&self) -> wire::NodeMeta {
        wire::NodeMeta {
            name: self.name.clone(),
            client_url: self.client_url.clone(),
            peer_url: self.peer_url.clone(),
            cluster_id: self.cluster_id,
            status: self.status.to_wire() as i32,
            founders: self.founders.clone(),
            founders_restore: self.founders_restore.clone(),
            founders_committed: self.founders_committed,
            cluster_voters: self.cluster_voters.clone(),
            founders_digest: self.founders_digest,
            version: self.version.clone(),
            recovery_log_index: self.recovery_log.index,
            recovery_log_term: self.recovery_log.term,
            recovery_digest: self.recovery_digest,
            recovered_from: self
                .recovered_from
                .iter()
                .map(|step| wire::RecoveredFrom {
                    cluster_id: step.cluster_id,
                    by_member_id: step.by_member_id,
                })
                .collect(),
            recovery_left_to: self.recovery_left_to,
            removed_from: self.removed_from,
        }
    }

    /// Refuses unknown enum values; length limits are the decoder's job.
    pub fn from_wire(meta: wire::NodeMeta) -> Option<Self> {
        let status = wire::NodeStatus::try_from(meta.status).ok()?;
        Some(NodeMeta {
            name: meta.name,
            client_url: meta.client_url,
            peer_url: meta.peer_url,
            cluster_id: meta.cluster_id,
            status: NodeStatus::from_wire(status),
            founders: meta.founders,
            founders_restore: meta.founders_restore,
            founders_committed: meta.founders_committed,
            cluster_voters: meta.cluster_voters,
            founders_digest: meta.founders_digest,
            version: meta.version,
            recovery_log: LogPosition::new(meta.recovery_log_term, meta.recovery_log_index),
            recovery_digest: meta.recovery_digest,
            recovered_from: meta
                .recovered_from
                .into_iter()
                .map(|step| RecoveredFrom {
                    cluster_id: step.cluster_id,
                    by_member_id: step.by_member_id,
                })
                .collect(),
            recovery_left_to: meta.recovery_left_to,
            removed_from: meta.removed_from,
        })
    }
}

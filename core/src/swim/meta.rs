//! What each node says about itself in gossip, and how a member looks in a
//! node's view.

use std::net::SocketAddr;

use e2d_proto::gossip as wire;

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
}

/// Most names `founders` and `cluster_voters` hold together.
pub const META_NAMES_MAX: usize = 9;

/// FNV-1a over the founders' names and the snapshot they restore: how a
/// Running founder names its founding set in little space.
pub fn founders_digest(founders: &[String], restore: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for part in founders.iter().map(String::as_str).chain([restore]) {
        for byte in part.bytes().chain([0]) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
        }
    }
    hash.max(1)
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
        })
    }
}

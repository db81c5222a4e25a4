//! The cluster's size as a replicated setting: the key
//! `/_e2d/cluster-size`, its value the size in decimal, written through
//! raft as the cluster's own write (`e2d cluster resize`, or a member
//! restarted with another `-n`). Until it is written the cluster keeps the
//! size it was founded with.

use e2d_core::manager::check_cluster_size;
use e2d_core::version::{self, Feature};

use super::{cluster_version, replicated_setting, Node};

pub const CLUSTER_SIZE_KEY: &[u8] = b"/_e2d/cluster-size";

/// The replicated size, if one was written and is a size e2d forms.
pub fn replicated(node: &Node) -> Option<usize> {
    let size = replicated_setting::read(node, CLUSTER_SIZE_KEY)?
        .parse()
        .ok()?;
    check_cluster_size(size).ok().map(|()| size)
}

/// The size the cluster should have: replicated, else this member's `-n`.
pub fn effective(node: &Node) -> usize {
    replicated(node).unwrap_or(node.config.cluster_size)
}

/// Writes `size` as the cluster's size, once checked, if every member
/// can carry it out.
pub async fn propose(node: &Node, size: usize) -> Result<(), String> {
    check_cluster_size(size).map_err(|e| e.to_string())?;
    version::require(Feature::ClusterSize, cluster_version::effective(node))
        .map_err(|e| e.to_string())?;
    replicated_setting::write(node, CLUSTER_SIZE_KEY, size.to_string())
        .await
        .map_err(|e| format!("cannot replicate the cluster size {size}: {e}"))
}

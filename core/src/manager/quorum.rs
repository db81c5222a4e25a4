//! Quorum arithmetic and who counts as live in a node's gossip view.
//!
//! Every membership change the manager makes is judged here: a removal needs
//! a quorum of Running voters in view before it, and no command may leave
//! fewer live voters than the new quorum needs.

use std::collections::BTreeMap;

use crate::swim::{Liveness, MemberView, NodeStatus};

use super::command::ClusterMember;

/// Votes needed to commit with `voters` voting members.
pub fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// A node's gossip view of the others, by name (the node itself excluded).
pub type GossipView = BTreeMap<String, MemberView>;

/// The gossip entry that speaks for `member`: by name, or by peer URL for a
/// member that has not published its name yet.
pub fn entry_for<'a>(view: &'a GossipView, member: &ClusterMember) -> Option<&'a MemberView> {
    if !member.name.is_empty() {
        return view.get(&member.name);
    }
    view.values().find(|m| m.meta.peer_url == member.peer_url)
}

/// Whether `member` runs as a member of `cluster_id` as far as gossip shows:
/// Alive, Running, same cluster, same peer URL. `local_name` is always live
/// (the caller runs the server that asks).
pub fn is_live(
    view: &GossipView,
    member: &ClusterMember,
    cluster_id: u64,
    local_name: &str,
) -> bool {
    if member.name == local_name {
        return true;
    }
    entry_for(view, member).is_some_and(|m| {
        m.liveness == Liveness::Alive
            && m.meta.status == NodeStatus::Running
            && m.meta.cluster_id == cluster_id
            && m.meta.peer_url == member.peer_url
    })
}

/// Whether gossip shows `member`'s node up at all (Alive or Suspect). A
/// member that is not up is a candidate for the health-check timeout.
pub fn is_up(view: &GossipView, member: &ClusterMember, local_name: &str) -> bool {
    member.name == local_name || entry_for(view, member).is_some_and(|m| m.liveness.is_up())
}

/// Live voters among `voters`.
pub fn live_voters<'a>(
    voters: impl Iterator<Item = &'a ClusterMember>,
    view: &GossipView,
    cluster_id: u64,
    local_name: &str,
) -> usize {
    voters
        .filter(|m| is_live(view, m, cluster_id, local_name))
        .count()
}

/// Whether the voting set after a change (`voters_after`) keeps a quorum of
/// live members.
pub fn keeps_quorum(
    voters_after: &[&ClusterMember],
    view: &GossipView,
    cluster_id: u64,
    local_name: &str,
) -> bool {
    !voters_after.is_empty()
        && live_voters(voters_after.iter().copied(), view, cluster_id, local_name)
            >= quorum(voters_after.len())
}

/// Whether `member` may be removed from `members` (the cluster's whole
/// list): a learner always, a voter only if the voters left keep a quorum
/// of live members.
pub fn removal_keeps_quorum(
    members: &[ClusterMember],
    member: &ClusterMember,
    view: &GossipView,
    cluster_id: u64,
    local_name: &str,
) -> bool {
    if member.is_learner {
        return true;
    }
    let voters_after: Vec<&ClusterMember> = members
        .iter()
        .filter(|m| !m.is_learner && m.id != member.id)
        .collect();
    keeps_quorum(&voters_after, view, cluster_id, local_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_a_strict_majority() {
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(2), 2);
        assert_eq!(quorum(3), 2);
        assert_eq!(quorum(4), 3);
        assert_eq!(quorum(5), 3);
        assert_eq!(quorum(7), 4);
    }
}

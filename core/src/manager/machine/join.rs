//! Joining a running cluster: the join lock, the member list, the removal
//! of this node's old member, then add as learner and start.

use crate::swim::{Liveness, MemberView, NodeStatus};
use crate::version::Version;

use super::super::command::{member_ids, ClusterMember, Command, RemovalReason};
use super::super::quorum::removal_keeps_quorum;
use super::{Awaiting, Manager};

impl Manager {
    /// The nodes gossip shows Alive and Running, by name.
    fn running_nodes(&self) -> impl Iterator<Item = &MemberView> {
        self.view
            .values()
            .filter(|m| m.liveness == Liveness::Alive && m.meta.status == NodeStatus::Running)
    }

    /// Peer URLs of the nodes gossip shows Alive and Running, by name:
    /// the manager's calls go to peer ports, where the cluster's members
    /// trust each other (its writes and membership changes are its own,
    /// whatever auth asks of clients).
    pub(super) fn running_peer_urls(&self) -> Vec<String> {
        self.running_nodes()
            .map(|m| m.meta.peer_url.clone())
            .collect()
    }

    /// The cluster the Running nodes in view serve (the smallest id if they
    /// disagree).
    pub(super) fn running_cluster_id(&self) -> u64 {
        self.running_nodes()
            .map(|m| m.meta.cluster_id)
            .min()
            .unwrap_or(0)
    }

    pub(super) fn evaluate_join(&mut self, through: Vec<String>) {
        if self.join_lock_through.is_none() {
            self.set_waiting(format!(
                "a cluster is running; taking the join lock through {}",
                through.join(", ")
            ));
            self.join_lock_through = Some(through.clone());
            self.issue(Awaiting::Lock, |id| Command::AcquireJoinLock {
                id,
                through,
            });
            return;
        }
        self.issue(Awaiting::Fetch, |id| Command::FetchMembers { id, through });
    }

    /// Next join step once the member list is known.
    pub(super) fn after_members(
        &mut self,
        members: Vec<ClusterMember>,
        cluster_size: usize,
        cluster_version: Option<Version>,
    ) {
        let through = self.running_peer_urls();
        if through.is_empty() {
            self.release_join_lock();
            return;
        }
        let own = self.config.version;
        if let Some(cluster) = cluster_version.filter(|&cluster| own < cluster) {
            // It could not apply what the cluster writes, as etcd refuses
            // a member older than its cluster.
            self.set_waiting(format!(
                "the running cluster's version is {cluster} and this node runs e2d {own}: upgrade it to join"
            ));
            self.release_join_lock();
            self.retry_at_ms = self.now_ms + self.config.retry_interval_ms;
            return;
        }
        let ours = members
            .iter()
            .find(|m| m.name == self.config.name || m.peer_url == self.config.peer_url);
        if let Some(old) = ours {
            // Our old self, whose data is gone: remove it first, if that
            // keeps a quorum of live voters.
            let cluster_id = self.running_cluster_id();
            let may =
                removal_keeps_quorum(&members, old, &self.view, cluster_id, &self.config.name);
            if !may {
                self.set_waiting(format!(
                    "the cluster still lists this node's old member {:x}; removing it would leave fewer than a quorum of live members",
                    old.id
                ));
                self.release_join_lock();
                self.retry_at_ms = self.now_ms + self.config.retry_interval_ms;
                return;
            }
            let (member_id, name) = (old.id, old.name.clone());
            let expected = member_ids(&members);
            self.set_waiting(format!(
                "removing this node's old member {member_id:x} before joining again"
            ));
            self.issue(Awaiting::Replace, |id| Command::RemoveMember {
                id,
                member_id,
                name,
                reason: RemovalReason::Replaced,
                through,
                expected,
            });
            return;
        }
        if members.len() >= cluster_size {
            self.set_waiting(format!(
                "the cluster has its {} members; waiting for a vacancy",
                members.len()
            ));
            self.release_join_lock();
            self.retry_at_ms = self.now_ms + self.config.retry_interval_ms;
            return;
        }
        self.set_waiting("adding this node to the cluster as a learner".into());
        self.issue(Awaiting::AddLearner, |id| Command::AddLearner {
            id,
            through,
        });
    }

    pub(super) fn release_join_lock(&mut self) {
        if let Some(through) = self.join_lock_through.take() {
            self.commands
                .push_back(Command::ReleaseJoinLock { through });
        }
    }
}

//! The raft leader's duties: remove members missing past the health-check
//! timeout, move the cluster to its size (remove members above it, promote
//! caught-up learners below it), all only with a quorum in view, and
//! record the cluster's version once every member runs a newer one. And
//! any member's: propose the size it was restarted with.

use super::super::command::{member_ids, ClusterMember, Command, RemovalReason, ServerStatus};
use super::super::quorum::{is_live, is_up, keeps_quorum, quorum, removal_keeps_quorum};
use super::{Awaiting, Manager};
use crate::version::{self, Version};

impl Manager {
    pub(super) fn evaluate_running(&mut self) {
        // The check's time moves on whoever leads, so that a due check
        // never stays due (and the shell never wakes in a loop).
        let due = self.now_ms >= self.next_health_check_ms;
        if due {
            self.next_health_check_ms = self.now_ms + self.config.health_check_interval_ms;
        }
        let Some(status) = self.server.clone() else {
            return;
        };
        if self.server_stale {
            return;
        }
        self.track_missing(&status);
        if self.evaluate_recovery(&status) || self.propose_size(&status) {
            return;
        }
        if !status.is_leader() {
            self.set_waiting(String::new());
            return;
        }
        if due && self.remove_dead(&status) {
            return;
        }
        if self.shrink(&status) {
            return;
        }
        self.promote_learner(&status);
        if self.in_flight.is_none() {
            self.raise_cluster_version(&status);
        }
    }

    /// Records the lowest version the members run as the cluster's, once
    /// every member's is known and it is above the recorded one.
    fn raise_cluster_version(&mut self, status: &ServerStatus) {
        let planted = self.config.planted.cluster_version_before_every_member;
        let versions = status.members.iter().map(|member| {
            if member.id == status.member_id || planted {
                return Some(self.config.version);
            }
            let node = self.view.get(&member.name)?;
            Version::parse(&node.meta.version)
        });
        let Some(version) = version::to_record(status.cluster_version, version::lowest(versions))
        else {
            return;
        };
        self.set_waiting(format!(
            "every member runs e2d {version} or later; recording it as the cluster's version"
        ));
        let expected = member_ids(&status.members);
        self.issue(Awaiting::SetVersion, |id| Command::SetClusterVersion {
            id,
            version,
            expected,
        });
    }

    /// Proposes the size this node was restarted with, once, if the
    /// cluster has a leader and another size. Returns whether it did.
    fn propose_size(&mut self, status: &ServerStatus) -> bool {
        let Some(size) = self.size_to_propose else {
            return false;
        };
        if status.leader_id == 0 {
            return false;
        }
        if size == self.cluster_size() {
            self.size_to_propose = None;
            return false;
        }
        self.set_waiting(format!(
            "proposing {size} as the cluster's size (-n), in place of {}",
            self.cluster_size()
        ));
        self.issue(Awaiting::ProposeSize, |id| Command::ProposeClusterSize {
            id,
            size,
        });
        true
    }

    /// Removes one member while the cluster has more than its size:
    /// learners first, then members missing from gossip, then the other
    /// followers (highest id first), never the leader itself, and a voter
    /// only while a quorum of the voters stays live in view. Returns
    /// whether it issued a removal.
    fn shrink(&mut self, status: &ServerStatus) -> bool {
        let size = self.cluster_size();
        if status.members.len() <= size {
            return false;
        }
        let name = &self.config.name;
        let mut candidates: Vec<(bool, bool, std::cmp::Reverse<u64>, &ClusterMember)> = status
            .members
            .iter()
            .filter(|m| m.id != status.member_id)
            .map(|m| {
                let live = is_live(&self.view, m, status.cluster_id, name);
                (!m.is_learner, live, std::cmp::Reverse(m.id), m)
            })
            .collect();
        candidates.sort_unstable_by_key(|(voter, live, id, _)| (*voter, *live, *id));
        let removable = candidates
            .into_iter()
            .map(|(_, _, _, member)| member)
            .find(|member| {
                removal_keeps_quorum(&status.members, member, &self.view, status.cluster_id, name)
            });
        if let Some(member) = removable {
            let why = format!(
                "resizing the cluster from {} to {size} members",
                status.members.len()
            );
            self.remove(status, member, RemovalReason::Resize, &why);
            return true;
        }
        self.set_waiting(format!(
            "resizing the cluster from {} to {size} members: no member can go while keeping a quorum of live voters",
            status.members.len()
        ));
        false
    }

    pub(super) fn track_missing(&mut self, status: &ServerStatus) {
        let now_ms = self.now_ms;
        self.missing_since_ms
            .retain(|id, _| status.members.iter().any(|m| m.id == *id));
        for member in &status.members {
            if is_up(&self.view, member, &self.config.name) {
                self.missing_since_ms.remove(&member.id);
            } else {
                self.missing_since_ms.entry(member.id).or_insert(now_ms);
            }
        }
    }

    /// Removes one member missing longer than the health-check timeout, if
    /// a quorum of voters is live in view and stays so. Returns whether it
    /// issued a removal.
    pub(super) fn remove_dead(&mut self, status: &ServerStatus) -> bool {
        let name = &self.config.name;
        let voters: Vec<&ClusterMember> = status.members.iter().filter(|m| !m.is_learner).collect();
        if !keeps_quorum(&voters, &self.view, status.cluster_id, name) {
            self.set_waiting(format!(
                "fewer than {} of {} voting members are running in gossip; no membership changes",
                quorum(voters.len()),
                voters.len()
            ));
            return false;
        }
        let mut overdue: Vec<(u64, u64)> = self
            .missing_since_ms
            .iter()
            .filter(|(_, since)| self.now_ms >= **since + self.config.health_check_timeout_ms)
            .map(|(id, since)| (*since, *id))
            .collect();
        overdue.sort_unstable();
        for (_, member_id) in overdue {
            let Some(member) = status.members.iter().find(|m| m.id == member_id) else {
                continue;
            };
            if member.id == status.member_id
                || !removal_keeps_quorum(
                    &status.members,
                    member,
                    &self.view,
                    status.cluster_id,
                    name,
                )
            {
                continue;
            }
            let why = "missing from gossip for longer than the health-check timeout";
            self.remove(status, member, RemovalReason::HealthCheckTimeout, why);
            return true;
        }
        false
    }

    /// Removes `member` through the local server (the leader), on the
    /// member list of `status`; `why` goes into what the node waits for.
    fn remove(
        &mut self,
        status: &ServerStatus,
        member: &ClusterMember,
        reason: RemovalReason,
        why: &str,
    ) {
        let (member_id, member_name) = (member.id, member.name.clone());
        self.set_waiting(format!(
            "removing member {member_id:x} ({member_name}): {why}"
        ));
        self.issue(Awaiting::Remove, |id| Command::RemoveMember {
            id,
            member_id,
            name: member_name,
            reason,
            through: Vec::new(),
            expected: member_ids(&status.members),
        });
    }

    pub(super) fn promote_learner(&mut self, status: &ServerStatus) {
        let name = &self.config.name;
        let voters: Vec<&ClusterMember> = status.members.iter().filter(|m| !m.is_learner).collect();
        if voters.len() >= self.cluster_size() {
            return;
        }
        let planted = self.config.planted.promote_before_caught_up;
        let ready = status.members.iter().find(|m| {
            m.is_learner
                && (m.caught_up || planted)
                && is_live(&self.view, m, status.cluster_id, name)
        });
        let Some(learner) = ready else { return };
        let mut voters_after = voters.clone();
        voters_after.push(learner);
        if !keeps_quorum(&voters_after, &self.view, status.cluster_id, name) {
            return;
        }
        let member_id = learner.id;
        self.set_waiting(format!(
            "promoting learner {member_id:x} ({})",
            learner.name
        ));
        let expected = member_ids(&status.members);
        let cluster_size = self.cluster_size();
        self.issue(Awaiting::Promote, |id| Command::PromoteMember {
            id,
            member_id,
            expected,
            cluster_size,
        });
    }
}

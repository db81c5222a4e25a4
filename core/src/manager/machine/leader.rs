//! The raft leader's duties: remove members missing past the health-check
//! timeout, promote caught-up learners, both only with a quorum in view.

use super::super::command::{member_ids, ClusterMember, Command, RemovalReason, ServerStatus};
use super::super::quorum::{is_live, is_up, keeps_quorum, quorum};
use super::{Awaiting, Manager};

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
        if !status.is_leader() {
            self.set_waiting(String::new());
            return;
        }
        if due && self.remove_dead(&status) {
            return;
        }
        self.promote_learner(&status);
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
            if member.id == status.member_id {
                continue;
            }
            let voters_after: Vec<&ClusterMember> = voters
                .iter()
                .copied()
                .filter(|m| m.id != member_id)
                .collect();
            if !member.is_learner
                && !keeps_quorum(&voters_after, &self.view, status.cluster_id, name)
            {
                continue;
            }
            let member_name = member.name.clone();
            self.set_waiting(format!(
                "removing member {member_id:x} ({member_name}): missing from gossip for longer than the health-check timeout"
            ));
            self.issue(Awaiting::Remove, |id| Command::RemoveMember {
                id,
                member_id,
                name: member_name,
                reason: RemovalReason::HealthCheckTimeout,
                through: Vec::new(),
                expected: member_ids(&status.members),
            });
            return true;
        }
        false
    }

    pub(super) fn promote_learner(&mut self, status: &ServerStatus) {
        let name = &self.config.name;
        let voters: Vec<&ClusterMember> = status.members.iter().filter(|m| !m.is_learner).collect();
        if voters.len() >= self.config.required_cluster_size {
            return;
        }
        let ready = status.members.iter().find(|m| {
            m.is_learner && m.caught_up && is_live(&self.view, m, status.cluster_id, name)
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
        self.issue(Awaiting::Promote, |id| Command::PromoteMember {
            id,
            member_id,
            expected,
        });
    }
}

//! Recovery from a lost majority.
//!
//! - **Yield to the cluster that took over.** A cluster and one recovered
//!   from it (directly or through further recoveries: gossip carries each
//!   cluster's recovery lineage, the cluster and the member of each step)
//!   may both run. Which one keeps its data is decided by the member that
//!   recovered: if the old cluster still lists it as a voter, the old
//!   cluster never removed it (its majority was lost), so the old
//!   cluster's members move their data dirs aside and join the recovered
//!   one. If the old cluster removed it first, the recovered cluster was a
//!   minority cut off by a partition, and its members yield once the old
//!   cluster runs with a quorum again. A member without a leader also
//!   yields to any other cluster its voters run (founded again after a
//!   total loss, say): its own cannot come back.
//! - **Automatic recovery** (opt-in, `--unsafe-auto-recover-after`): when
//!   the cluster has no leader and a majority of its voters has not been
//!   live in gossip for that long, each other voter is a survivor (a
//!   learner is not: it waits, and joins the recovered cluster). Only a
//!   member that has seen its cluster with a leader, and each lost voter
//!   live, since it started stands: one that started during the outage,
//!   or never saw a lost voter that may have recovered the cluster while
//!   it was down, may be a lost member come back after a recovery it
//!   never saw, and must not recover again. A
//!   survivor stands with where its raft log ends (last term and index);
//!   once every survivor stands, each publishes a digest of the survivors
//!   and their positions. When all digests have been equal for
//!   [`RECOVERY_SETTLE_MS`], each survivor other than the one with the
//!   most up-to-date log, as raft orders logs (later term, then longer;
//!   ties: the lowest member id), records in its data dir that it left the
//!   recovery to that one, and publishes that; once all have, the chosen
//!   one restarts the cluster alone from its whole log. None of the others
//!   ever recovers the same cluster, whatever happens to the chosen one.
//!   A log at least as up to date as each other survivor's holds every
//!   entry of theirs that may have been committed, so no write a survivor
//!   holds is lost; the applied index would not do (a survivor may hold
//!   an acknowledged entry it has not applied, or not learned committed).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use crate::log_position::LogPosition;
use crate::swim::{survivors_digest, Liveness, MemberView, NodeStatus};

use super::super::command::{ClusterMember, Command, ServerStatus};
use super::super::quorum::{entry_for, is_live, quorum};
use super::{Awaiting, Manager, Phase};

/// How long the survivors' digests must agree, as this node sees them,
/// before one of them recovers the cluster: several gossip rounds.
pub const RECOVERY_SETTLE_MS: u64 = 3_000;

/// A member's part in recovering its cluster.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    /// When each voter (by id) was first seen not live in gossip while the
    /// cluster had no leader.
    not_live_since_ms: BTreeMap<u64, u64>,
    /// What this node publishes while it stands: where its log ends, and
    /// the survivors' digest (0 until every survivor stands).
    pub(super) standing: Option<(LogPosition, u64)>,
    /// The digest all survivors have published since when, unbroken.
    agreed_since_ms: Option<(u64, u64)>,
    /// The survivor this member left the recovery to (kept in its data
    /// dir).
    pub(super) left_to: Option<u64>,
    /// The cluster has had a leader since this node started.
    saw_leader: bool,
    /// Voters (by id) seen live in gossip since this node started.
    seen_live: BTreeSet<u64>,
}

/// Whether two clusters' voters (names) share a name.
fn share_a_voter(voters: &[String], others: &[String]) -> bool {
    voters
        .iter()
        .any(|name| !name.is_empty() && others.contains(name))
}

impl Manager {
    /// Yields to a cluster that took over, or stands for (and carries
    /// out) an automatic recovery. Returns whether it decided something
    /// that ends this round.
    pub(super) fn evaluate_recovery(&mut self, status: &ServerStatus) -> bool {
        if let Some(why) = self.superseded_by(status) {
            self.set_waiting(format!(
                "{why}; moving this member's data dir aside to join it"
            ));
            self.phase = Phase::Removed;
            self.server = None;
            self.missing_since_ms.clear();
            let removed_from = self.founding.removed_from.clone();
            self.issue(Awaiting::Archive, |id| Command::ArchiveDataDir {
                id,
                removed_from,
            });
            return true;
        }
        self.stand_for_recovery(status)
    }

    /// Why this member's cluster is superseded, if it is.
    fn superseded_by(&self, status: &ServerStatus) -> Option<String> {
        let own_voters: Vec<String> = status
            .members
            .iter()
            .filter(|m| !m.is_learner)
            .map(|m| m.name.clone())
            .collect();
        let name_of = |member_id: u64| {
            status
                .members
                .iter()
                .find(|m| m.id == member_id)
                .map(|m| (m.name.as_str(), m.is_learner))
        };
        let mine = status.cluster_id;
        let running: Vec<&MemberView> = self
            .view
            .values()
            .filter(|node| {
                node.liveness == Liveness::Alive
                    && node.meta.status == NodeStatus::Running
                    && node.meta.cluster_id != 0
            })
            .collect();
        let leaderless = status.leader_id == 0;
        for node in running.iter().filter(|node| node.meta.cluster_id != mine) {
            // Recovered from this cluster by a voter it never removed.
            let by = node.meta.recovered_from.iter().find_map(|step| {
                let (name, is_learner) = name_of(step.by_member_id)?;
                (step.cluster_id == mine && !is_learner).then_some(name)
            });
            if let Some(by) = by {
                return Some(format!(
                    "{} runs cluster {:x}, which {by} recovered from this member's cluster {mine:x} after its majority was lost",
                    node.name, node.meta.cluster_id
                ));
            }
            // Without a leader: another cluster some of its voters run
            // (founded again after a total loss, say), unless this one
            // was recovered from it. A cluster that counts this node among
            // its voters is older, not founded again: this node left it
            // (it lost its disk there, then joined this one), and only a
            // node with no member data founds or joins.
            let ancestor = status
                .recovered_from
                .iter()
                .any(|step| step.cluster_id == node.meta.cluster_id);
            let left_by_this_node = node.meta.cluster_voters.contains(&self.config.name);
            if leaderless
                && !ancestor
                && !left_by_this_node
                && share_a_voter(&own_voters, &node.meta.cluster_voters)
            {
                return Some(format!(
                    "this member's cluster {mine:x} has no leader, and {} runs cluster {:x} with some of its voters",
                    node.name, node.meta.cluster_id
                ));
            }
        }
        // A cluster this one was recovered from, running again with a
        // quorum that removed the member which recovered it (known by name
        // while this cluster still lists it).
        status.recovered_from.iter().find_map(|step| {
            let (by, _) = name_of(step.by_member_id)?;
            let old: Vec<&MemberView> = running
                .iter()
                .copied()
                .filter(|node| node.meta.cluster_id == step.cluster_id)
                .collect();
            let voters = old.iter().map(|node| &node.meta.cluster_voters).find(|voters| {
                let live = old.iter().filter(|n| voters.contains(&n.name)).count();
                !voters.is_empty()
                    && live >= quorum(voters.len())
                    && !voters.iter().any(|voter| voter == by)
            })?;
            Some(format!(
                "cluster {:x}, which {by} recovered this one from, runs again with a quorum ({}) that removed {by}: \
                 this cluster was a minority cut off from it",
                step.cluster_id,
                voters.join(", "),
            ))
        })
    }

    /// The opt-in automatic recovery. Returns whether the node stands.
    fn stand_for_recovery(&mut self, status: &ServerStatus) -> bool {
        self.recovery.standing = None;
        let Some(after_ms) = self.config.auto_recover_after_ms else {
            return false;
        };
        let me = status.member_id;
        let voters: Vec<&ClusterMember> = status.members.iter().filter(|m| !m.is_learner).collect();
        let name = self.config.name.clone();
        let live: BTreeSet<u64> = voters
            .iter()
            .filter(|m| is_live(&self.view, m, status.cluster_id, &name))
            .map(|m| m.id)
            .collect();
        self.recovery.seen_live.extend(&live);
        if status.leader_id != 0 {
            self.recovery.saw_leader = true;
        }
        if status.leader_id != 0 || !status.members.iter().any(|m| m.id == me) {
            self.recovery.not_live_since_ms.clear();
            self.recovery.agreed_since_ms = None;
            return false;
        }
        let now_ms = self.now_ms;
        let since = &mut self.recovery.not_live_since_ms;
        since.retain(|id, _| voters.iter().any(|m| m.id == *id));
        for member in &voters {
            if live.contains(&member.id) {
                since.remove(&member.id);
            } else {
                since.entry(member.id).or_insert(now_ms);
            }
        }
        let lost = |member: &ClusterMember| {
            since
                .get(&member.id)
                .is_some_and(|&from_ms| now_ms >= from_ms + after_ms)
        };
        let survivors: Vec<&ClusterMember> = voters.iter().copied().filter(|m| !lost(m)).collect();
        let lost_names: Vec<&str> = voters
            .iter()
            .filter(|m| lost(m))
            .map(|m| m.name.as_str())
            .collect();
        if survivors.len() >= quorum(voters.len()) || !survivors.iter().any(|m| m.id == me) {
            self.recovery.agreed_since_ms = None;
            return false;
        }
        // Lost voters this node never saw live since it started: one may
        // have recovered the cluster while this node was down.
        let unseen: Vec<&str> = voters
            .iter()
            .filter(|m| lost(m) && !self.recovery.seen_live.contains(&m.id))
            .map(|m| m.name.as_str())
            .collect();
        if !self.recovery.saw_leader || !unseen.is_empty() {
            // It may be a lost member come back after a recovery it did
            // not see: only a member that saw the majority go may stand.
            let why = if self.recovery.saw_leader {
                format!(
                    "has not seen {} since it started (one may have recovered the cluster while this member was down)",
                    unseen.join(", ")
                )
            } else {
                "has not seen its cluster with a leader since it started".to_string()
            };
            self.set_waiting(format!(
                "the majority ({}) is lost, but this member {why}, \
                 so it does not stand for automatic recovery: recover by hand (e2d cluster recover) if the majority is gone for good",
                lost_names.join(", ")
            ));
            return false;
        }
        // Index 0 stands for "not standing": a log without entries
        // stands at 1, behind every log that holds one.
        let own_log = LogPosition {
            index: status.last_log.index.max(1),
            ..status.last_log
        };
        self.recovery.standing = Some((own_log, 0));
        let lost_names = lost_names.join(", ");
        if self.config.planted.recover_every_survivor {
            if self.status_fresh {
                self.recover_alone(&lost_names);
            }
            return true;
        }
        let mut positions = vec![(me, own_log)];
        for survivor in survivors.iter().filter(|m| m.id != me) {
            let standing = entry_for(&self.view, survivor)
                .filter(|_| is_live(&self.view, survivor, status.cluster_id, &name))
                .map(|node| node.meta.recovery_log)
                .filter(|log| log.index > 0);
            let Some(log) = standing else {
                self.recovery.agreed_since_ms = None;
                self.set_waiting(format!(
                    "the majority ({lost_names}) has been gone for over {after_ms} ms; waiting for survivor {} to stand for recovery",
                    survivor.name
                ));
                return true;
            };
            positions.push((survivor.id, log));
        }
        let digest = survivors_digest(status.cluster_id, &positions);
        self.recovery.standing = Some((own_log, digest));
        if let Some(left_to) = self.recovery.left_to {
            // Still standing with the digest, so that the chosen survivor
            // sees the agreement it waits for.
            self.set_waiting(format!(
                "the majority ({lost_names}) is lost; member {left_to:x} was agreed on to recover the cluster and this member waits for it \
                 (if it is gone too, recover by hand: e2d cluster recover)"
            ));
            return true;
        }
        let agreed = survivors.iter().filter(|m| m.id != me).all(|survivor| {
            entry_for(&self.view, survivor).is_some_and(|node| node.meta.recovery_digest == digest)
        });
        if !agreed {
            self.recovery.agreed_since_ms = None;
            self.set_waiting(format!(
                "the majority ({lost_names}) is lost; waiting for the survivors to agree on who recovers the cluster"
            ));
            return true;
        }
        let since_ms = match self.recovery.agreed_since_ms {
            Some((agreed, since_ms)) if agreed == digest => since_ms,
            _ => {
                self.recovery.agreed_since_ms = Some((digest, now_ms));
                now_ms
            }
        };
        if now_ms < since_ms + RECOVERY_SETTLE_MS || !self.status_fresh {
            // Decided only on a status just reported: a leader elected
            // since the last one ends the recovery.
            self.set_waiting(format!(
                "the majority ({lost_names}) is lost and the survivors agree; deciding once that has held for {RECOVERY_SETTLE_MS} ms"
            ));
            return true;
        }
        let chosen = if self.config.planted.recover_least_up_to_date {
            positions.iter().min_by_key(|&&(id, log)| (log, id))
        } else {
            positions
                .iter()
                .max_by_key(|&&(id, log)| (log, Reverse(id)))
        };
        let (chosen, _) = *chosen.expect("the survivors include this member");
        if chosen == me {
            // Only once every other survivor has recorded that it leaves
            // the recovery to this one: none of them can recover the same
            // cluster later, whatever happens to this member.
            let waiting_for: Vec<&str> = survivors
                .iter()
                .filter(|m| m.id != me)
                .filter(|m| {
                    entry_for(&self.view, m).is_none_or(|node| node.meta.recovery_left_to != me)
                })
                .map(|m| m.name.as_str())
                .collect();
            if waiting_for.is_empty() {
                self.recover_alone(&lost_names);
            } else {
                self.set_waiting(format!(
                    "the survivors agree that this member (the most up-to-date log) recovers the cluster; \
                     waiting for {} to record that",
                    waiting_for.join(", ")
                ));
            }
        } else {
            self.set_waiting(format!(
                "the survivors agree that member {chosen:x} (the most up-to-date log) recovers the cluster; recording that"
            ));
            self.issue(Awaiting::LeaveRecovery(chosen), |id| {
                Command::LeaveRecoveryTo {
                    id,
                    member_id: chosen,
                }
            });
        }
        true
    }

    fn recover_alone(&mut self, lost_names: &str) {
        self.set_waiting(format!(
            "the majority ({lost_names}) is lost for good: restarting the cluster alone from this member's data"
        ));
        self.issue(Awaiting::Recover, |id| Command::RecoverAlone { id });
    }
}

//! Choosing the founding members of a new cluster, when no cluster runs.
//!
//! Gossip views differ between nodes, so the founders agree in two phases:
//!
//! 1. **Propose.** A Pending node proposes the first `n` names (sorted) of
//!    the Pending nodes it sees, with the newest snapshot to restore; if a
//!    committed proposal that names it is in view, it adopts that instead.
//! 2. **Commit.** Once every member of its proposal proposes the same set,
//!    it commits: it persists the set, then publishes the commitment. A
//!    commitment is never withdrawn except when a member of the set runs in
//!    another cluster (proof that the set can never start).
//! 3. **Start.** Once every other member of the set has committed to it (or
//!    already runs it), the node starts the cluster.
//!
//! Why at most one set starts (with fewer than `2n` empty nodes): starting
//! needs all `n` members committed to the same set; two different sets of
//! `n` among fewer than `2n` nodes share a node, and a node commits to one
//! set at a time. A node leaves its set only when a member of that set runs
//! in another cluster; that member never committed to the set (it would
//! have had to leave it first, and it is the first to leave), so the set
//! could not have been fully committed.

use crate::swim::{Liveness, MemberView, NodeStatus};

use super::command::{Proposal, Removal};
use super::quorum::quorum;

/// What the founding rules say to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do yet; the reason says what the node waits for.
    Wait(String),
    /// Publish this proposal (not committed).
    Propose(Proposal),
    /// Stop proposing (not committed): the node is not needed as a founder
    /// now; the reason says what it waits for.
    Withdraw(String),
    /// Commit to this proposal: persist it, then publish it as committed.
    Commit(Proposal),
    /// Withdraw the commitment: the set can never start.
    Abandon,
    /// Start the cluster with this set.
    Start(Proposal),
}

/// The local node's part in the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Local {
    pub name: String,
    /// What the node currently publishes.
    pub proposal: Option<Proposal>,
    pub committed: bool,
    /// The newest valid snapshot in the store, as listed.
    pub newest_snapshot: Option<String>,
    /// The cluster that removed this node's member, if one did since (it
    /// is published while the node runs no cluster).
    pub removed_from: Option<Removal>,
}

/// A member's published proposal, if it has one (only nodes without a
/// cluster publish the whole set).
fn proposal_of(member: &MemberView) -> Option<Proposal> {
    (member.meta.status != NodeStatus::Running && !member.meta.founders.is_empty()).then(|| {
        Proposal {
            founders: member.meta.founders.clone(),
            restore: (!member.meta.founders_restore.is_empty())
                .then(|| member.meta.founders_restore.clone()),
        }
    })
}

/// Whether `member` runs the cluster founded by `proposal`.
fn runs(member: &MemberView, proposal: &Proposal) -> bool {
    member.meta.status == NodeStatus::Running && member.meta.founders_digest == proposal.digest()
}

fn alive<'a>(view: &'a [&'a MemberView]) -> impl Iterator<Item = &'a MemberView> + 'a {
    view.iter()
        .copied()
        .filter(|m| m.liveness == Liveness::Alive)
}

/// Applies the rules. `view` holds the other nodes (any liveness);
/// `cluster_size` is `n`.
pub fn decide(local: &Local, view: &[&MemberView], cluster_size: usize) -> Step {
    match (&local.proposal, local.committed) {
        (Some(proposal), true) => decide_committed(local, proposal, view),
        _ => decide_uncommitted(local, view, cluster_size),
    }
}

fn decide_committed(local: &Local, proposal: &Proposal, view: &[&MemberView]) -> Step {
    let runs_elsewhere = alive(view).any(|m| {
        proposal.founders.contains(&m.name)
            && m.meta.status == NodeStatus::Running
            && !runs(m, proposal)
    });
    if runs_elsewhere {
        return Step::Abandon;
    }
    // The set already runs: a late founder starts at once (its member is
    // in the cluster's first member list).
    if alive(view).any(|m| proposal.founders.contains(&m.name) && runs(m, proposal)) {
        return Step::Start(proposal.clone());
    }
    let missing: Vec<&str> = proposal
        .founders
        .iter()
        .filter(|name| **name != local.name)
        .filter(|name| {
            !alive(view).any(|m| {
                m.name == **name
                    && (runs(m, proposal)
                        || m.meta.founders_committed && proposal_of(m).as_ref() == Some(proposal))
            })
        })
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Step::Start(proposal.clone())
    } else {
        Step::Wait(format!(
            "committed to found a cluster with {}; waiting for {} to commit",
            proposal.founders.join(", "),
            missing.join(", ")
        ))
    }
}

fn decide_uncommitted(local: &Local, view: &[&MemberView], cluster_size: usize) -> Step {
    if let Some(reason) = cluster_may_live(local, view) {
        return wait_or_withdraw(local, reason);
    }
    let wanted = match adoptable(local, view) {
        Some(proposal) => proposal,
        None => {
            let mut pending: Vec<&str> = alive(view)
                .filter(|m| m.meta.status == NodeStatus::Pending)
                .map(|m| m.name.as_str())
                .chain(std::iter::once(local.name.as_str()))
                .collect();
            pending.sort_unstable();
            pending.dedup();
            if pending.len() < cluster_size {
                return wait_or_withdraw(
                    local,
                    format!(
                        "no cluster is running; {} of {} nodes are pending ({})",
                        pending.len(),
                        cluster_size,
                        pending.join(", ")
                    ),
                );
            }
            let founders: Vec<String> = pending[..cluster_size]
                .iter()
                .map(|s| s.to_string())
                .collect();
            if !founders.contains(&local.name) {
                return wait_or_withdraw(
                    local,
                    format!(
                        "no cluster is running; {} will found it, this node joins later",
                        founders.join(", ")
                    ),
                );
            }
            Proposal {
                founders,
                restore: local.newest_snapshot.clone(),
            }
        }
    };
    if local.proposal.as_ref() != Some(&wanted) {
        return Step::Propose(wanted);
    }
    let disagreeing: Vec<&str> = wanted
        .founders
        .iter()
        .filter(|name| **name != local.name)
        .filter(|name| {
            !alive(view).any(|m| m.name == **name && proposal_of(m).as_ref() == Some(&wanted))
        })
        .map(String::as_str)
        .collect();
    if disagreeing.is_empty() {
        Step::Commit(wanted)
    } else {
        Step::Wait(format!(
            "proposed to found a cluster with {}; waiting for {} to agree",
            wanted.founders.join(", "),
            disagreeing.join(", ")
        ))
    }
}

fn wait_or_withdraw(local: &Local, reason: String) -> Step {
    debug_assert!(!local.committed);
    if local.proposal.is_some() {
        Step::Withdraw(reason)
    } else {
        Step::Wait(reason)
    }
}

/// Whether gossip remembers a cluster that may still have a quorum
/// somewhere (behind a partition, or only stopped): then no new cluster may
/// be founded. A voter is out of its cluster only when its node is Alive in
/// view and not Running that cluster (it came back without its data, or
/// serves another cluster); a Dead, Suspect or Left one may still run it.
/// A voter whose node says the cluster removed it is not counted at all:
/// the cluster went on without it (a voter list seen before the removal
/// would otherwise make the rest look like less than a quorum). A node
/// whose own member was removed also remembers that cluster, with the
/// voters it went on with, across restarts. Returns what the node waits
/// for.
fn cluster_may_live(local: &Local, view: &[&MemberView]) -> Option<String> {
    let removed = |name: &str, cluster_id: u64| {
        if name == local.name {
            return local
                .removed_from
                .as_ref()
                .is_some_and(|r| r.cluster_id == cluster_id);
        }
        view.iter().any(|m| {
            m.name == name
                && m.meta.removed_from == cluster_id
                && !(m.meta.status == NodeStatus::Running && m.meta.cluster_id == cluster_id)
        })
    };
    let is_out = |name: &str, cluster_id: u64| {
        name == local.name
            || view.iter().any(|m| {
                m.name == name
                    && m.liveness == Liveness::Alive
                    && !(m.meta.status == NodeStatus::Running && m.meta.cluster_id == cluster_id)
            })
    };
    let seen_running = view
        .iter()
        .filter(|m| m.meta.status == NodeStatus::Running && m.meta.cluster_id != 0)
        .map(|m| {
            let voters = if m.meta.cluster_voters.is_empty() {
                vec![m.name.clone()]
            } else {
                m.meta.cluster_voters.clone()
            };
            (m.meta.cluster_id, voters)
        });
    let own_removal = local
        .removed_from
        .iter()
        .map(|r| (r.cluster_id, r.voters.clone()));
    seen_running.chain(own_removal).find_map(|(cluster_id, listed)| {
        let voters: Vec<&String> = listed
            .iter()
            .filter(|v| !removed(v, cluster_id))
            .collect();
        let may_run: Vec<&str> = voters
            .iter()
            .filter(|v| !is_out(v, cluster_id))
            .map(|v| v.as_str())
            .collect();
        (!voters.is_empty() && may_run.len() >= quorum(voters.len())).then(|| {
            format!(
                "cluster {cluster_id:x} may still run on {} (not reachable now); waiting for it instead of founding a new one",
                may_run.join(", ")
            )
        })
    })
}

/// The smallest committed proposal in view that names this node and can
/// still start: none of its members is seen committed to another set.
fn adoptable(local: &Local, view: &[&MemberView]) -> Option<Proposal> {
    let committed_to = |name: &str| {
        view.iter()
            .find(|m| m.name == name && m.meta.founders_committed)
            .and_then(|m| proposal_of(m))
    };
    alive(view)
        .filter(|m| m.meta.founders_committed && m.meta.status == NodeStatus::Pending)
        .filter_map(proposal_of)
        .filter(|p| p.founders.contains(&local.name))
        .filter(|p| {
            p.founders
                .iter()
                .all(|name| committed_to(name).is_none_or(|other| other == *p))
        })
        .min()
}

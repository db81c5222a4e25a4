//! The cluster manager: what a node does to found, join, restart, restore
//! and heal its etcd cluster, decided from gossip, the local server and the
//! snapshot store.
//!
//! The rules (each has a unit test named after it in `tests`):
//!
//! - **Restart, never wipe.** A data dir with member state is restarted as
//!   is, at any cluster size. A member the cluster removed has its data dir
//!   moved aside (kept), then joins again as a new member.
//! - **Size 1** starts at once: restores the newest valid snapshot into an
//!   empty data dir if the store has one, else founds a new cluster.
//! - **Join a running cluster.** An empty node that sees a Running node in
//!   gossip takes the cluster-wide join lock, reads the member list, removes
//!   its own old member (same name or peer URL: its data is gone) if that
//!   keeps a quorum of live voters, and, when the cluster has fewer than `n`
//!   members, adds itself as a learner and starts; the leader promotes it
//!   once it has caught up.
//! - **Found a cluster** when none runs: see [`founding`] for the two-phase
//!   agreement that lets at most one founding set start; the founders
//!   restore the newest valid snapshot when there is one. No set is
//!   proposed while gossip remembers a cluster that may still have a quorum
//!   (its voters are Dead, Suspect or Left in view, not back without their
//!   data): a partition must not look like a total failure.
//! - **Resize.** The cluster's size is replicated (`e2d cluster resize`, or
//!   a member restarted with a changed `-n` proposes its own). The leader
//!   moves the cluster there one member at a time: up by promoting the
//!   learners spare nodes join as, down by removing learners, then members
//!   missing from gossip, then other followers, never itself and only
//!   while a quorum of the voters stays live in view.
//! - **Recovery from a lost majority**: see the `recovery` module of the
//!   machine. A cluster and one recovered from it settle which keeps its
//!   data by their voters; with `--unsafe-auto-recover-after`, the
//!   survivors of a majority lost for that long agree over gossip and the
//!   one with the most up-to-date raft log restarts the cluster alone.
//! - **Health check** (the raft leader only): a member missing from gossip
//!   for longer than `--health-check-timeout` is removed, one at a time, and
//!   only while a quorum of the voters is Running in gossip before and after
//!   the removal. A minority partition never changes membership.

mod command;
mod config;
pub mod founding;
mod machine;
pub mod quorum;
#[cfg(test)]
mod tests;

pub use crate::swim::{RecoveredFrom, RECOVERY_LINEAGE_MAX};
pub use command::{
    member_ids, ClusterMember, Command, CommandId, CommandResult, DataDir, Event, Founder,
    Proposal, Removal, RemovalReason, ServerStatus,
};
pub use config::{check_cluster_size, ConfigError, ManagerConfig, PlantedBugs, CLUSTER_SIZE_MAX};
pub use machine::{
    voter_labels, Manager, FOUNDING_SETTLE_MS, RECOVERY_SETTLE_MS, VIEW_MEMBERS_MAX,
};

//! Replication: a raft-rs `RawNode` driven by one task, its log kept in a
//! write-ahead log of its own beside the state machine, and the peer
//! transport.
//!
//! Data flow of a write: `Node::propose` → (forwarded to the leader if this
//! member follows) → [`driver`] proposes it → raft `Ready`: messages to
//! peers, entries and hard state staged and synced → committed entries
//! applied to the state machine in order → the proposer's waiter answered.

mod codec;
mod driver;
mod election_timeout;
mod log_store;
mod peer_service;
mod restart_alone;
#[cfg(not(madsim))]
mod snapshot_call;
pub(crate) mod snapshot_sender;
mod transport;
mod wal;

pub use driver::{
    spawn_driver, Bootstrap, DriverHandle, DriverRequest, LogLimits, MembershipView, ProposalReply,
    RaftStatus,
};
pub use log_store::META_INSTALLED_SNAPSHOT;
pub use peer_service::PeerService;
pub use restart_alone::{rewrite_log_alone, stage_conf_state_alone, LogRewrite};
pub use transport::Transport;

/// Raft ticks every this long; elections take `ELECTION_TICKS` of them.
pub const TICK_MS: u64 = 100;
pub const ELECTION_TICKS: usize = 10;
pub const HEARTBEAT_TICKS: usize = 1;

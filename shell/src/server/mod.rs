//! The running node: the state machine behind a lock, shared by the gRPC
//! handlers and the raft driver that applies to it, and the background
//! duties of the leader (lease expiry, lease checkpoints, automatic
//! compaction, corruption checks).

mod auto_compaction;
pub mod clock;
pub mod cluster_size;
pub mod cluster_version;
pub mod corrupt_check;
mod duties;
mod identity;
pub mod join_lock;
pub mod key_watch;
pub mod member_changes;
pub(crate) mod node;
pub mod recent_events;
mod replicated_setting;

pub use auto_compaction::spawn_auto_compaction;
pub use clock::Clock;
pub use duties::{spawn_duties, COMPACTION_STEP_INTERVAL};
pub use identity::{
    is_replicated, parse_initial_cluster, recovered_cluster_id, Identity, IdentityError,
    InitialMember,
};
pub use node::{Node, NodeConfig};

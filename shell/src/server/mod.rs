//! The running node: the state machine behind a lock, the single writer
//! that applies and syncs batches of writes, and the background duties
//! (lease expiry, lease checkpoints).

mod clock;
mod duties;
mod identity;
mod node;
mod writer;

pub use clock::Clock;
pub use duties::spawn_duties;
pub use identity::Identity;
pub use node::{Node, NodeConfig, SINGLE_MEMBER_TERM};
pub use writer::{WriteOp, WriteOutcome};

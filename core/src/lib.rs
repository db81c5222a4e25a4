//! e2d's decisions, as pure deterministic state machines.
//!
//! **Architecture invariant:** nothing here performs I/O, reads a clock,
//! draws OS randomness or spawns a thread. Time arrives as `now_ms`
//! arguments; storage is reached through the [`storage::Backend`] trait.

pub mod apply;
pub mod auth;
pub mod auto_compaction;
pub mod bbolt;
pub mod cert_lifetime;
pub mod corrupt_check;
pub mod crc32c;
pub mod delta;
pub mod error;
pub mod etcd_db;
pub mod fnv1a;
pub mod lease;
pub mod limits;
pub mod log_position;
pub mod manager;
pub mod membership;
pub mod mvcc;
pub mod proposal_codec;
pub mod revision;
pub mod rng;
pub mod schedule;
pub mod state_machine;
pub mod storage;
pub mod swim;
pub mod validate;
pub mod version;
pub mod wal;
pub mod watch;

pub use error::{Error, StatusCode};
pub use state_machine::StateMachine;

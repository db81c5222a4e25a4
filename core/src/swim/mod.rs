//! SWIM gossip membership (in the spirit of hashicorp/memberlist), as a
//! sans-IO state machine: [`Swim`] is fed datagrams, push-pull frames and
//! timeouts with the current time, and drained of transmits and events.
//!
//! - `config`: timings and bounds ([`Config::lan`] = memberlist's LAN
//!   defaults, with a shorter push-pull period).
//! - `codec`: the versioned wire, and the decoding that refuses anything
//!   malformed ([`DecodeError`]).
//! - `broadcast`: the retransmit queue of updates riding on datagrams.
//! - `probe`: the probe round-robin and probes in flight.
//! - `timer`: the one timer table.
//! - `state`: the machine and its API; `state::incarnation` (the incarnation
//!   rules), `state::messages` (what goes out and the answers to what comes
//!   in), `state::ticks` (what each timer does).
//! - `meta`: what a node says about itself and how a member looks in a view.
//!
//! **Architecture invariant:** no I/O, no clock, no OS randomness; every
//! decision iterates sorted maps, so a seed and a schedule of inputs replay
//! exactly.

mod broadcast;
mod codec;
mod config;
mod meta;
mod probe;
mod state;
mod timer;

pub use codec::{DecodeError, WIRE_VERSION};
pub use config::{Config, ADDR_BYTES_MAX};
pub use meta::{
    founders_digest, survivors_digest, Liveness, MemberView, NodeMeta, NodeStatus, RecoveredFrom,
    META_NAMES_MAX, RECOVERY_LINEAGE_MAX,
};
pub use state::{Event, Swim, Transmit, TransmitKind};

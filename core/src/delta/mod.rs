//! Deltas: the committed raft entries a backup chain replays on top of a
//! full snapshot.
//!
//! - [`journal`]: the entries a member applied lately, in memory and
//!   bounded, from which the leader ships deltas.
//! - [`codec`]: a delta's payload, every record checksummed, so damage is
//!   found where it starts.
//! - [`replay`]: applying a delta's records to a restored state machine,
//!   checking each lands on the revision it had.
//!
//! Naming and chains are the scheduler's business ([`crate::schedule`]).

pub mod codec;
pub mod journal;
pub mod replay;

use e2d_proto::peer::proposal::Op;

pub use codec::{decode_delta, encode_delta, DecodedDelta, DeltaDamage, DeltaHeader};
pub use journal::{DeltaJournal, DeltaRecord, JournalGap, JournalSlice};
pub use replay::{replay_record, Replayed};

/// Whether an applied proposal is part of what a restore replays: the
/// keys, leases, auth store and alarms are (an alarm decides whether the
/// writes after it applied; the restore clears alarms at the end, as a
/// full snapshot's restore leaves them out); the member list belongs to
/// the old cluster.
pub fn is_replayed(op: &Op) -> bool {
    !matches!(op, Op::MemberAttributes(_) | Op::InitialMembers(_))
}

//! Applying a delta's records on top of a restored full snapshot.
//!
//! Each record says which revision the store was at once it applied, and
//! a proposal creates at most one revision, so a record landing two or
//! more revisions ahead means one is missing: the replay stops before it
//! rather than build a store that never was.

use crate::error::Error;
use crate::proposal_codec::decode_proposal;
use crate::state_machine::StateMachine;
use crate::storage::Backend;

use super::journal::DeltaRecord;

/// Why a replay stops at a record.
#[derive(Debug, thiserror::Error)]
pub enum ReplayStop {
    #[error("entry {index} was recorded at revision {recorded}, but the replay stands at revision {current}: the revisions between are missing")]
    Gap {
        index: u64,
        recorded: i64,
        current: i64,
    },
    #[error("entry {index} cannot be decoded: {reason}")]
    Undecodable { index: u64, reason: String },
    #[error(
        "entry {index} replayed to revision {replayed}, but was recorded at revision {recorded}"
    )]
    Diverged {
        index: u64,
        recorded: i64,
        replayed: i64,
    },
    #[error(transparent)]
    Storage(Error),
}

/// What became of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    Applied,
    /// Not part of a restore (membership); nothing changed.
    Skipped,
}

/// Applies `record` to `state`; `now_ms` stands for the lessor's clock
/// (leases restart with their remaining time when the member opens).
pub fn replay_record<B: Backend>(
    state: &mut StateMachine<B>,
    record: &DeltaRecord,
    now_ms: u64,
) -> Result<Replayed, ReplayStop> {
    let current = state.current_revision();
    if record.revision != current && record.revision != current + 1 {
        return Err(ReplayStop::Gap {
            index: record.index,
            recorded: record.revision,
            current,
        });
    }
    let proposal = decode_proposal(&record.data).map_err(|e| ReplayStop::Undecodable {
        index: record.index,
        reason: e.to_string(),
    })?;
    if !proposal.op.as_ref().is_some_and(super::is_replayed) {
        return Ok(Replayed::Skipped);
    }
    // A refusal (a lease gone, a failed permission check) refused the
    // original alike: the store did not change then either.
    if let Err(Error::Storage(e)) = state.apply(&proposal, now_ms) {
        return Err(ReplayStop::Storage(Error::Storage(e)));
    }
    let replayed = state.current_revision();
    if replayed != record.revision {
        return Err(ReplayStop::Diverged {
            index: record.index,
            recorded: record.revision,
            replayed,
        });
    }
    Ok(Replayed::Applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemBackend;
    use e2d_proto::etcdserverpb::{PutRequest, RangeRequest};
    use e2d_proto::peer::proposal::Op;
    use e2d_proto::peer::{LeaseGrant, Proposal};
    use proptest::prelude::*;
    use prost::Message;

    fn put(key: u8) -> Proposal {
        Proposal {
            op: Some(Op::Put(PutRequest {
                key: vec![key],
                value: vec![key; 3],
                ..Default::default()
            })),
            requester: None,
        }
    }

    /// Applies `proposals` to a fresh store, journaling each; returns the
    /// records and the store.
    fn applied(proposals: &[Proposal]) -> (Vec<DeltaRecord>, StateMachine<MemBackend>) {
        let mut state = StateMachine::open(MemBackend::default(), 0).unwrap();
        let records = proposals
            .iter()
            .enumerate()
            .map(|(at, proposal)| {
                let _ = state.apply(proposal, 0);
                DeltaRecord {
                    index: at as u64 + 1,
                    revision: state.current_revision(),
                    applied_at_ms: 0,
                    data: proposal.encode_to_vec(),
                }
            })
            .collect();
        (records, state)
    }

    fn everything(state: &StateMachine<MemBackend>) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
        let all = state
            .range(&RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .unwrap();
        all.kvs
            .into_iter()
            .map(|kv| (kv.key.to_vec(), kv.value.to_vec(), kv.mod_revision))
            .collect()
    }

    proptest! {
        /// Replaying the records on an empty store gives the same store.
        #[test]
        fn a_replay_rebuilds_the_store(keys in prop::collection::vec(0u8..6, 0..20), lease_at in 0usize..20) {
            let mut proposals: Vec<Proposal> = keys.iter().map(|&k| put(k)).collect();
            let lease = Proposal { op: Some(Op::LeaseGrant(LeaseGrant { id: 7, ttl_seconds: 60 })), requester: None };
            proposals.insert(lease_at.min(proposals.len()), lease);
            let (records, original) = applied(&proposals);
            let mut replayed = StateMachine::open(MemBackend::default(), 0).unwrap();
            for record in &records {
                prop_assert_eq!(replay_record(&mut replayed, record, 0).unwrap(), Replayed::Applied);
            }
            prop_assert_eq!(everything(&replayed), everything(&original));
            prop_assert_eq!(replayed.lease_leases(), original.lease_leases());
        }
    }

    #[test]
    fn a_missing_revision_stops_the_replay() {
        let (records, _) = applied(&[put(1), put(2), put(3)]);
        let mut replayed = StateMachine::open(MemBackend::default(), 0).unwrap();
        replay_record(&mut replayed, &records[0], 0).unwrap();
        let stop = replay_record(&mut replayed, &records[2], 0).unwrap_err();
        assert!(
            matches!(
                stop,
                ReplayStop::Gap {
                    index: 3,
                    recorded: 4,
                    current: 2
                }
            ),
            "{stop}"
        );
        assert_eq!(replayed.current_revision(), 2);
    }
}

//! The entries a member applied lately, kept in memory so the leader can
//! ship them as a delta.
//!
//! Every member keeps one (a follower that becomes leader continues the
//! chain from it), bounded by bytes: past the bound the oldest records go,
//! and a chain that still needed them has a gap, which the leader answers
//! with a full snapshot. A restart or a snapshot install starts the
//! journal over at the applied index, for the same reason.

use std::collections::VecDeque;
use std::sync::Arc;

/// One applied proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaRecord {
    /// Its raft index.
    pub index: u64,
    /// The store revision once it applied.
    pub revision: i64,
    /// When it applied (wall clock, ms since the Unix epoch).
    pub applied_at_ms: u64,
    /// The proposal, as the raft entry holds it.
    pub data: Vec<u8>,
}

/// Bytes a record counts for beyond its data.
const RECORD_OVERHEAD_BYTES: usize = 32;

impl DeltaRecord {
    fn weight_bytes(&self) -> usize {
        self.data.len() + RECORD_OVERHEAD_BYTES
    }
}

/// What the journal holds past a point of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSlice {
    /// The records after the point asked for, oldest first (shared with
    /// the journal: taking a slice copies no proposal).
    pub records: Vec<Arc<DeltaRecord>>,
    /// The last applied index: the slice holds every replayed entry up
    /// to it.
    pub to_index: u64,
    pub to_revision: i64,
    /// When `to_index` applied.
    pub to_time_ms: u64,
}

/// Why the journal cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalGap {
    /// Records after the point were dropped (bound, restart, snapshot
    /// install): the journal holds everything after `covered_from` only.
    Dropped { covered_from: u64 },
    /// The point is past what this member applied; ask again later.
    Ahead { through_index: u64 },
}

#[derive(Debug)]
pub struct DeltaJournal {
    records: VecDeque<Arc<DeltaRecord>>,
    bytes: usize,
    bytes_max: usize,
    /// Every replayed entry after this index is in `records`.
    covered_from: u64,
    through_index: u64,
    through_revision: i64,
    through_time_ms: u64,
}

impl DeltaJournal {
    /// An empty journal at `index` (the member's applied index).
    pub fn new(bytes_max: usize, index: u64, revision: i64, now_ms: u64) -> Self {
        assert!(bytes_max > 0);
        Self {
            records: VecDeque::new(),
            bytes: 0,
            bytes_max,
            covered_from: index,
            through_index: index,
            through_revision: revision,
            through_time_ms: now_ms,
        }
    }

    /// Starts over at `index`: what came before is not journaled (a
    /// snapshot from the leader brought it).
    pub fn restart(&mut self, index: u64, revision: i64, now_ms: u64) {
        *self = Self::new(self.bytes_max, index, revision, now_ms);
    }

    /// Records an applied proposal; indexes only grow. The oldest records
    /// go past the bound (the newest stays, whatever its size).
    pub fn push(&mut self, record: DeltaRecord) {
        assert!(
            record.index > self.through_index,
            "journal at {} got entry {}",
            self.through_index,
            record.index
        );
        assert!(record.revision >= self.through_revision);
        self.bytes += record.weight_bytes();
        self.through_index = record.index;
        self.through_revision = record.revision;
        self.through_time_ms = record.applied_at_ms;
        self.records.push_back(Arc::new(record));
        while self.bytes > self.bytes_max && self.records.len() > 1 {
            self.drop_oldest();
        }
    }

    /// The member applied every entry up to `index` (some of which are not
    /// journaled: membership, empty entries).
    pub fn advance(&mut self, index: u64, revision: i64, now_ms: u64) {
        if index <= self.through_index {
            return;
        }
        assert!(revision >= self.through_revision);
        self.through_index = index;
        self.through_revision = revision;
        self.through_time_ms = now_ms;
    }

    /// Forgets the records up to `index`: they were shipped.
    pub fn release_through(&mut self, index: u64) {
        while self.records.front().is_some_and(|r| r.index <= index) {
            self.drop_oldest();
        }
        self.covered_from = self.covered_from.max(index.min(self.through_index));
    }

    fn drop_oldest(&mut self) {
        let dropped = self.records.pop_front().expect("a record to drop");
        self.bytes -= dropped.weight_bytes();
        self.covered_from = self.covered_from.max(dropped.index);
    }

    /// The records after raft index `from_index`, up to the last applied.
    pub fn since(&self, from_index: u64) -> Result<JournalSlice, JournalGap> {
        if from_index < self.covered_from {
            return Err(JournalGap::Dropped {
                covered_from: self.covered_from,
            });
        }
        if from_index > self.through_index {
            return Err(JournalGap::Ahead {
                through_index: self.through_index,
            });
        }
        Ok(JournalSlice {
            records: self
                .records
                .iter()
                .filter(|r| r.index > from_index)
                .cloned()
                .collect(),
            to_index: self.through_index,
            to_revision: self.through_revision,
            to_time_ms: self.through_time_ms,
        })
    }

    /// Bytes the records count for.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        Push { gap: u64, bumps: bool, len: usize },
        Advance { gap: u64 },
        Release { back: u64 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (1u64..3, any::<bool>(), 0usize..200).prop_map(|(gap, bumps, len)| Step::Push { gap, bumps, len }),
            1 => (1u64..4).prop_map(|gap| Step::Advance { gap }),
            1 => (0u64..30).prop_map(|back| Step::Release { back }),
        ]
    }

    proptest! {
        /// Whatever the journal answers holds exactly the records pushed
        /// after the point, none missing; otherwise it reports the gap.
        #[test]
        fn a_slice_holds_every_record_after_its_point(steps in prop::collection::vec(step(), 0..80), bytes_max in 64usize..2000, ask_back in 0u64..40) {
            let mut journal = DeltaJournal::new(bytes_max, 5, 2, 0);
            let mut pushed: Vec<DeltaRecord> = Vec::new();
            let (mut index, mut revision, mut released) = (5u64, 2i64, 5u64);
            for (at, step) in steps.into_iter().enumerate() {
                match step {
                    Step::Push { gap, bumps, len } => {
                        index += gap;
                        revision += i64::from(bumps);
                        let record = DeltaRecord { index, revision, applied_at_ms: at as u64, data: vec![at as u8; len] };
                        pushed.push(record.clone());
                        journal.push(record);
                    }
                    Step::Advance { gap } => {
                        index += gap;
                        journal.advance(index, revision, at as u64);
                    }
                    Step::Release { back } => {
                        let to = index.saturating_sub(back).max(released);
                        journal.release_through(to);
                        released = to;
                    }
                }
                prop_assert!(journal.bytes() <= bytes_max || journal.records.len() == 1);
            }
            let from = index.saturating_sub(ask_back);
            match journal.since(from) {
                Ok(slice) => {
                    let expected: Vec<DeltaRecord> = pushed.into_iter().filter(|r| r.index > from).collect();
                    let got: Vec<DeltaRecord> = slice.records.iter().map(|r| DeltaRecord::clone(r)).collect();
                    prop_assert_eq!(got, expected);
                    prop_assert_eq!(slice.to_index, index);
                    prop_assert_eq!(slice.to_revision, revision);
                }
                Err(JournalGap::Dropped { covered_from }) => prop_assert!(from < covered_from),
                Err(JournalGap::Ahead { .. }) => prop_assert!(false, "asked within what was applied"),
            }
        }
    }

    #[test]
    fn a_point_past_what_was_applied_waits() {
        let journal = DeltaJournal::new(100, 5, 2, 0);
        assert_eq!(
            journal.since(6),
            Err(JournalGap::Ahead { through_index: 5 })
        );
        assert_eq!(
            journal.since(4),
            Err(JournalGap::Dropped { covered_from: 5 })
        );
        assert!(journal.since(5).unwrap().records.is_empty());
    }
}

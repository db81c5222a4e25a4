//! Chains: a full snapshot and the deltas that follow it. Which chain a
//! restore takes, which delta it reads next, how far a chain reaches
//! without a gap (where a new leader continues it), and which deltas go
//! when their snapshot is pruned.

use std::collections::BTreeSet;

use super::delta_info::DeltaInfo;
use super::snapshot_info::SnapshotInfo;

/// A full snapshot and its deltas, sorted by name (where they start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain<'a> {
    pub full: &'a SnapshotInfo,
    pub deltas: Vec<&'a DeltaInfo>,
}

/// What a restore stops at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayTarget {
    /// Everything the store holds.
    Newest,
    /// The store as it was at this revision.
    Revision(i64),
    /// The store as it was at this time (ms since the Unix epoch).
    Time(u64),
}

impl ReplayTarget {
    /// Whether a chain whose full snapshot is `full` can reach the target.
    pub fn may_start_at(&self, full: &SnapshotInfo) -> bool {
        match *self {
            ReplayTarget::Newest => true,
            ReplayTarget::Revision(revision) => full.revision <= revision,
            ReplayTarget::Time(time_ms) => full.taken_at_ms <= time_ms,
        }
    }

    /// Whether an entry that left the store at `revision`, applied at
    /// `applied_at_ms`, is part of the restored state.
    pub fn includes(&self, revision: i64, applied_at_ms: u64) -> bool {
        match *self {
            ReplayTarget::Newest => true,
            ReplayTarget::Revision(target) => revision <= target,
            ReplayTarget::Time(target_ms) => applied_at_ms <= target_ms,
        }
    }
}

/// Every snapshot's chain, oldest first by [`SnapshotInfo::recency_key`].
pub fn chains<'a>(snapshots: &'a [SnapshotInfo], deltas: &'a [DeltaInfo]) -> Vec<Chain<'a>> {
    let mut chains: Vec<Chain<'a>> = snapshots
        .iter()
        .map(|full| Chain {
            full,
            deltas: Vec::new(),
        })
        .collect();
    chains.sort_by(|a, b| a.full.recency_key().cmp(&b.full.recency_key()));
    for delta in deltas {
        let base = delta.span.base_name();
        if let Some(chain) = chains.iter_mut().find(|chain| chain.full.name == base) {
            chain.deltas.push(delta);
        }
    }
    for chain in &mut chains {
        chain.deltas.sort_by(|a, b| a.name.cmp(&b.name));
    }
    chains
}

/// The chain a restore to `target` starts from: the newest valid full
/// snapshot of `cluster_id` (any cluster when `None`) that is not past the
/// target and not `refused`.
pub fn chain_for<'a, 'b>(
    chains: &'b [Chain<'a>],
    cluster_id: Option<u64>,
    target: ReplayTarget,
    refused: &BTreeSet<String>,
) -> Option<&'b Chain<'a>> {
    chains.iter().rev().find(|chain| {
        chain.full.valid
            && cluster_id.is_none_or(|id| chain.full.cluster_id == id)
            && target.may_start_at(chain.full)
            && !refused.contains(&chain.full.name)
    })
}

/// The delta a replay standing at raft index `at_index` reads next: of
/// those holding the entry after it, the one that reaches farthest (by
/// name when two reach as far), leaving out `refused` ones.
pub fn next_delta<'a>(
    deltas: &[&'a DeltaInfo],
    at_index: u64,
    refused: &BTreeSet<String>,
) -> Option<&'a DeltaInfo> {
    deltas
        .iter()
        .copied()
        .filter(|delta| {
            delta.span.from_index <= at_index
                && at_index < delta.span.to_index
                && !refused.contains(&delta.name)
        })
        .max_by(|a, b| (a.span.to_index, &b.name).cmp(&(b.span.to_index, &a.name)))
}

/// How far a chain's deltas reach without a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach<'a> {
    /// Where the earliest delta starts: the full snapshot's raft index
    /// when the chain's opening delta is there.
    pub start_index: u64,
    /// The last delta of the run from the start.
    pub last: &'a DeltaInfo,
}

/// How far `deltas` (of one chain) reach from the earliest one without a
/// gap; `None` without deltas.
pub fn reach<'a>(deltas: &[&'a DeltaInfo]) -> Option<Reach<'a>> {
    let first = deltas
        .iter()
        .copied()
        .min_by(|a, b| (a.span.from_index, &a.name).cmp(&(b.span.from_index, &b.name)))?;
    let mut last = first;
    let none = BTreeSet::new();
    while let Some(next) = next_delta(deltas, last.span.to_index, &none) {
        assert!(next.span.to_index > last.span.to_index);
        last = next;
    }
    Some(Reach {
        start_index: first.span.from_index,
        last,
    })
}

/// The deltas to delete once the snapshots named `pruned` are gone: their
/// chains' deltas, and deltas of the newest valid snapshot's cluster whose
/// snapshot is missing and older than it. Sorted, without duplicates.
pub fn deltas_to_prune(
    snapshots: &[SnapshotInfo],
    deltas: &[DeltaInfo],
    pruned: &[String],
) -> Vec<String> {
    let Some(newest) = super::newest_valid(snapshots) else {
        return Vec::new();
    };
    let pruned: BTreeSet<&str> = pruned.iter().map(String::as_str).collect();
    assert!(!pruned.contains(newest.name.as_str()));
    let listed: BTreeSet<&str> = snapshots
        .iter()
        .filter(|s| !pruned.contains(s.name.as_str()))
        .map(|s| s.name.as_str())
        .collect();
    let doomed: BTreeSet<String> = deltas
        .iter()
        .filter(|delta| {
            let base = delta.span.base_name();
            pruned.contains(base.as_str())
                || (delta.span.cluster_id == newest.cluster_id
                    && !listed.contains(base.as_str())
                    && delta.span.base_taken_at_ms < newest.taken_at_ms)
        })
        .map(|delta| delta.name.clone())
        .collect();
    doomed.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::super::delta_info::DeltaSpan;
    use super::*;
    use proptest::prelude::*;

    const CLUSTER: u64 = 0xe2d;
    const T0_MS: u64 = 1_709_251_200_000;

    fn full(revision: i64, at_ms: u64) -> SnapshotInfo {
        SnapshotInfo::named(CLUSTER, revision, at_ms, 1, true)
    }

    fn delta(base: &SnapshotInfo, from_index: u64, to_index: u64) -> DeltaInfo {
        let span = DeltaSpan {
            cluster_id: base.cluster_id,
            base_taken_at_ms: base.taken_at_ms,
            base_revision: base.revision,
            from_index,
            to_index,
            to_revision: base.revision + (to_index - from_index) as i64,
            to_time_ms: base.taken_at_ms + to_index,
        };
        DeltaInfo {
            name: span.name(),
            span,
            size_bytes: 1,
        }
    }

    #[test]
    fn deltas_join_their_snapshot_s_chain() {
        let snapshots = [full(10, T0_MS), full(20, T0_MS + 60_000)];
        let deltas = [
            delta(&snapshots[1], 50, 50),
            delta(&snapshots[0], 5, 9),
            delta(&snapshots[0], 5, 5),
            delta(&snapshots[1], 50, 60),
        ];
        let chains = chains(&snapshots, &deltas);
        assert_eq!(chains.len(), 2);
        assert_eq!(chains[0].deltas, vec![&deltas[2], &deltas[1]]);
        assert_eq!(chains[1].deltas, vec![&deltas[0], &deltas[3]]);
        let reach = reach(&chains[1].deltas).unwrap();
        assert_eq!((reach.start_index, reach.last.span.to_index), (50, 60));
    }

    #[test]
    fn a_restore_to_a_revision_or_time_starts_before_it() {
        let snapshots = [full(10, T0_MS), full(20, T0_MS + 60_000)];
        let chains = chains(&snapshots, &[]);
        let none = BTreeSet::new();
        let pick =
            |target| chain_for(&chains, Some(CLUSTER), target, &none).map(|c| c.full.revision);
        assert_eq!(pick(ReplayTarget::Newest), Some(20));
        assert_eq!(pick(ReplayTarget::Revision(19)), Some(10));
        assert_eq!(pick(ReplayTarget::Time(T0_MS + 59_999)), Some(10));
        assert_eq!(pick(ReplayTarget::Revision(9)), None);
        assert_eq!(
            chain_for(&chains, Some(1), ReplayTarget::Newest, &none),
            None
        );
    }

    #[test]
    fn pruning_a_snapshot_takes_its_deltas_and_orphans() {
        let snapshots = [full(10, T0_MS), full(20, T0_MS + 60_000)];
        let gone = full(5, T0_MS - 60_000);
        let deltas = [
            delta(&snapshots[0], 5, 9),
            delta(&snapshots[1], 50, 60),
            delta(&gone, 1, 2),
        ];
        let doomed = deltas_to_prune(&snapshots, &deltas, &[snapshots[0].name.clone()]);
        assert_eq!(doomed, {
            let mut names = vec![deltas[0].name.clone(), deltas[2].name.clone()];
            names.sort();
            names
        });
    }

    fn spans() -> impl Strategy<Value = Vec<(u64, u64)>> {
        prop::collection::vec((0u64..40, 0u64..10), 0..12).prop_map(|v| {
            v.into_iter()
                .map(|(from, len)| (from, from + len))
                .collect()
        })
    }

    proptest! {
        /// The run `reach` reports is covered entry by entry, and nothing
        /// covers the entry right after it.
        #[test]
        fn reach_ends_at_the_first_gap(spans in spans()) {
            let base = full(10, T0_MS);
            let deltas: Vec<DeltaInfo> = spans.iter().map(|&(a, b)| delta(&base, a, b)).collect();
            let refs: Vec<&DeltaInfo> = deltas.iter().collect();
            let Some(reach) = reach(&refs) else {
                prop_assert!(deltas.is_empty());
                return Ok(());
            };
            let covered = |index: u64| spans.iter().any(|&(a, b)| a < index && index <= b);
            prop_assert_eq!(reach.start_index, spans.iter().map(|s| s.0).min().unwrap());
            for index in reach.start_index + 1..=reach.last.span.to_index {
                prop_assert!(covered(index), "entry {} is not covered", index);
            }
            prop_assert!(!covered(reach.last.span.to_index + 1) || !spans.iter().any(|&(a, b)| a <= reach.last.span.to_index && reach.last.span.to_index < b));
        }

        /// The delta chosen holds the next entry, and none reaches farther.
        #[test]
        fn next_delta_reaches_farthest(spans in spans(), at in 0u64..50) {
            let base = full(10, T0_MS);
            let deltas: Vec<DeltaInfo> = spans.iter().map(|&(a, b)| delta(&base, a, b)).collect();
            let refs: Vec<&DeltaInfo> = deltas.iter().collect();
            match next_delta(&refs, at, &BTreeSet::new()) {
                Some(chosen) => {
                    prop_assert!(chosen.span.from_index <= at && at < chosen.span.to_index);
                    prop_assert!(spans.iter().all(|&(a, b)| !(a <= at && at < b) || b <= chosen.span.to_index));
                }
                None => prop_assert!(spans.iter().all(|&(a, b)| !(a <= at && at < b))),
            }
        }
    }
}

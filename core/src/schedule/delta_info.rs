//! Deltas: what was committed between two points of the raft log, kept
//! beside the full snapshot they follow, and how they are named.
//!
//! A delta belongs to the chain of one full snapshot (its *base*) and
//! covers the raft log entries in `(from_index, to_index]`. Its name
//! carries the base snapshot's time and revision, so a chain is grouped
//! from a listing alone, then the range it covers:
//!
//! ```text
//! e2d-delta-20240229T235959.123Z-00000000deadbeef-00000000000000000042-
//!           | base snapshot time | | cluster id | |  base revision   |
//!   00000000000000000100-00000000000000000180-00000000000000000077-20240301T000009.123Z.delta
//!   |    from index    | |     to index     | |   to revision    | |   to time (UTC)    |
//! ```
//! (one line in a store). Every field has a fixed width, so a chain's
//! deltas sort by where they start.
//!
//! Raft indexes are one sequence per cluster, so two deltas of a chain
//! may overlap (two leaders shipped the same committed entries), never
//! disagree: a replay reads whichever covers where it stands.

use super::snapshot_info::{
    name_time, parse_digits, parse_time, snapshot_name, CLUSTER_ID_HEX_LEN, REVISION_DIGITS_LEN,
    SNAPSHOT_TAKEN_AT_MS_MAX, TIME_LEN,
};

const NAME_PREFIX: &str = "e2d-delta-";
const NAME_SUFFIX: &str = ".delta";
const INDEX_DIGITS_LEN: usize = 20;
/// Length of every delta name.
pub const DELTA_NAME_LEN: usize = NAME_PREFIX.len()
    + TIME_LEN
    + 1
    + CLUSTER_ID_HEX_LEN
    + 1
    + REVISION_DIGITS_LEN
    + 1
    + INDEX_DIGITS_LEN
    + 1
    + INDEX_DIGITS_LEN
    + 1
    + REVISION_DIGITS_LEN
    + 1
    + TIME_LEN
    + NAME_SUFFIX.len();

/// Where a delta sits: its chain and the part of the log it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaSpan {
    pub cluster_id: u64,
    /// When the chain's full snapshot was taken.
    pub base_taken_at_ms: u64,
    /// The revision the chain's full snapshot holds.
    pub base_revision: i64,
    /// The last raft index the delta does not hold.
    pub from_index: u64,
    /// The last raft index it holds.
    pub to_index: u64,
    /// The store revision after `to_index`.
    pub to_revision: i64,
    /// When the leader had applied `to_index`.
    pub to_time_ms: u64,
}

/// One delta as a store listing reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaInfo {
    pub name: String,
    pub span: DeltaSpan,
    pub size_bytes: u64,
}

impl DeltaSpan {
    /// The name of the full snapshot this delta follows.
    pub fn base_name(&self) -> String {
        snapshot_name(self.cluster_id, self.base_revision, self.base_taken_at_ms)
    }

    /// This delta's name. The span must be well formed: revisions not
    /// negative, `from_index <= to_index`, times before year 10000; it
    /// comes from the log and the clock, so anything else is a bug.
    pub fn name(&self) -> String {
        assert!(
            self.from_index <= self.to_index,
            "delta from {} to {}",
            self.from_index,
            self.to_index
        );
        assert!(self.base_revision >= 0 && self.to_revision >= 0);
        assert!(self.to_time_ms <= SNAPSHOT_TAKEN_AT_MS_MAX);
        let name = format!(
            "{NAME_PREFIX}{}-{:016x}-{:020}-{:020}-{:020}-{:020}-{}{NAME_SUFFIX}",
            name_time(self.base_taken_at_ms),
            self.cluster_id,
            self.base_revision,
            self.from_index,
            self.to_index,
            self.to_revision,
            name_time(self.to_time_ms),
        );
        debug_assert_eq!(name.len(), DELTA_NAME_LEN);
        name
    }
}

/// The span a name made by [`DeltaSpan::name`] carries; `None` for any
/// other string.
pub fn parse_delta_name(name: &str) -> Option<DeltaSpan> {
    if name.len() != DELTA_NAME_LEN || !name.is_ascii() {
        return None;
    }
    let body = name.strip_prefix(NAME_PREFIX)?.strip_suffix(NAME_SUFFIX)?;
    let mut fields = body.split('-');
    let base_taken_at_ms = parse_time(fields.next()?)?;
    let cluster_id = fields.next()?;
    if cluster_id.len() != CLUSTER_ID_HEX_LEN {
        return None;
    }
    let cluster_id = u64::from_str_radix(cluster_id, 16).ok()?;
    let base_revision = i64::try_from(parse_digits(fields.next()?)?).ok()?;
    let from_index = parse_digits(fields.next()?)?;
    let to_index = parse_digits(fields.next()?)?;
    let to_revision = i64::try_from(parse_digits(fields.next()?)?).ok()?;
    let to_time_ms = parse_time(fields.next()?)?;
    if fields.next().is_some() || from_index > to_index {
        return None;
    }
    let span = DeltaSpan {
        cluster_id,
        base_taken_at_ms,
        base_revision,
        from_index,
        to_index,
        to_revision,
        to_time_ms,
    };
    // Only the canonical spelling (lower-case hex, zero padding).
    (span.name() == name).then_some(span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn span() -> impl Strategy<Value = DeltaSpan> {
        (
            any::<u64>(),
            0..=SNAPSHOT_TAKEN_AT_MS_MAX,
            0..=i64::MAX,
            any::<u64>(),
            any::<u64>(),
            0..=i64::MAX,
            0..=SNAPSHOT_TAKEN_AT_MS_MAX,
        )
            .prop_map(
                |(cluster_id, base_at, base_rev, a, b, to_rev, to_at)| DeltaSpan {
                    cluster_id,
                    base_taken_at_ms: base_at,
                    base_revision: base_rev,
                    from_index: a.min(b),
                    to_index: a.max(b),
                    to_revision: to_rev,
                    to_time_ms: to_at,
                },
            )
    }

    proptest! {
        #[test]
        fn names_round_trip(span in span()) {
            let name = span.name();
            prop_assert_eq!(name.len(), DELTA_NAME_LEN);
            prop_assert_eq!(parse_delta_name(&name), Some(span));
            prop_assert_eq!(super::super::parse_snapshot_name(&name), None);
        }

        #[test]
        fn a_chain_s_deltas_sort_by_where_they_start(a in span(), b in span()) {
            let b = DeltaSpan { cluster_id: a.cluster_id, base_taken_at_ms: a.base_taken_at_ms, base_revision: a.base_revision, ..b };
            if a.from_index < b.from_index {
                prop_assert!(a.name() < b.name());
            }
        }

        #[test]
        fn other_strings_are_refused(name in "e2d-delta-[0-9TZ.a-f-]{0,160}\\.delta") {
            if let Some(span) = parse_delta_name(&name) {
                prop_assert_eq!(span.name(), name);
            }
        }
    }

    #[test]
    fn the_name_has_the_documented_shape() {
        let span = DeltaSpan {
            cluster_id: 0xdead_beef,
            base_taken_at_ms: 1_709_251_199_123,
            base_revision: 42,
            from_index: 100,
            to_index: 180,
            to_revision: 77,
            to_time_ms: 1_709_251_209_123,
        };
        assert_eq!(
            span.name(),
            "e2d-delta-20240229T235959.123Z-00000000deadbeef-00000000000000000042-00000000000000000100-00000000000000000180-00000000000000000077-20240301T000009.123Z.delta"
        );
        assert_eq!(
            span.base_name(),
            "e2d-snapshot-20240229T235959.123Z-00000000deadbeef-00000000000000000042.snap"
        );
        let mut upper = span.name();
        upper.replace_range(31..47, "00000000DEADBEEF");
        assert_eq!(parse_delta_name(&upper), None);
    }
}

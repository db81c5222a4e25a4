//! Which snapshots to keep, and which to delete.
//!
//! The policy keeps, among the valid snapshots of one cluster:
//! - the newest `keep_newest`;
//! - the newest of each UTC hour, for the `keep_hourly` most recent hours
//!   that have a snapshot;
//! - the newest of each UTC day, for the `keep_daily` most recent days that
//!   have a snapshot.
//!
//! Hours and days without a snapshot do not count (as in borg and restic),
//! so a cluster that was stopped for a week still has its last `keep_daily`
//! days of history when it starts again; the plan depends only on the
//! listing, not on the clock.
//!
//! Whatever the policy, these hold:
//! - the newest valid snapshot is never deleted;
//! - only snapshots of the newest valid snapshot's cluster are touched, and
//!   only under a name in e2d's scheme for that cluster
//!   ([`super::parse_snapshot_name`]): a bucket shared by two clusters (an
//!   old cluster before a disaster recovery, say) keeps the other's;
//! - an invalid snapshot newer than the newest valid one is left alone (its
//!   upload may still be running); older invalid ones are deleted;
//! - with no valid snapshot at all, nothing is deleted;
//! - the plan is idempotent: planning again over what it keeps deletes
//!   nothing more.

use std::collections::BTreeSet;

use super::snapshot_info::{newest_valid, parse_snapshot_name, SnapshotInfo};
use super::utc::{DAY_MS, HOUR_MS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep_newest: usize,
    pub keep_hourly: usize,
    pub keep_daily: usize,
}

impl Default for Retention {
    /// The last five snapshots, a day of hourlies and a week of dailies.
    fn default() -> Self {
        Self {
            keep_newest: 5,
            keep_hourly: 24,
            keep_daily: 7,
        }
    }
}

/// The names to delete from `listing` under `policy`, sorted and without
/// duplicates.
pub fn plan_prune(listing: &[SnapshotInfo], policy: &Retention) -> Vec<String> {
    let Some(newest) = newest_valid(listing) else {
        return Vec::new();
    };
    let kept = kept_names(listing, newest, policy);
    let is_deletable = |s: &SnapshotInfo| {
        s.cluster_id == newest.cluster_id
            && is_own_name(s)
            && !kept.contains(s.name.as_str())
            && (s.valid || s.recency_key() < newest.recency_key())
    };
    // A name listed twice is deleted only if every entry under it may go.
    let protected: BTreeSet<&str> = listing
        .iter()
        .filter(|s| !is_deletable(s))
        .map(|s| s.name.as_str())
        .collect();
    let doomed: BTreeSet<&str> = listing
        .iter()
        .filter(|s| is_deletable(s))
        .map(|s| s.name.as_str())
        .filter(|name| !protected.contains(name))
        .collect();
    assert!(
        !doomed.contains(newest.name.as_str()),
        "plan would delete the newest valid snapshot {}",
        newest.name
    );
    doomed.into_iter().map(String::from).collect()
}

/// The names the policy keeps among the valid snapshots of `newest`'s
/// cluster, `newest` included.
fn kept_names<'a>(
    listing: &'a [SnapshotInfo],
    newest: &'a SnapshotInfo,
    policy: &Retention,
) -> BTreeSet<&'a str> {
    let mut valid_newest_first: Vec<&SnapshotInfo> = listing
        .iter()
        .filter(|s| s.valid && s.cluster_id == newest.cluster_id)
        .collect();
    valid_newest_first.sort_by(|a, b| b.recency_key().cmp(&a.recency_key()));
    let mut kept = BTreeSet::from([newest.name.as_str()]);
    kept.extend(
        valid_newest_first
            .iter()
            .take(policy.keep_newest)
            .map(|s| s.name.as_str()),
    );
    kept.extend(newest_per_bucket(
        &valid_newest_first,
        HOUR_MS,
        policy.keep_hourly,
    ));
    kept.extend(newest_per_bucket(
        &valid_newest_first,
        DAY_MS,
        policy.keep_daily,
    ));
    kept
}

/// The newest snapshot of each of the `buckets_max` most recent
/// `bucket_ms`-wide UTC buckets that have one. `newest_first` is sorted by
/// descending recency, so each bucket's first entry is its newest.
fn newest_per_bucket<'a>(
    newest_first: &[&'a SnapshotInfo],
    bucket_ms: u64,
    buckets_max: usize,
) -> Vec<&'a str> {
    let mut chosen = Vec::new();
    let mut previous_bucket = None;
    for snapshot in newest_first {
        let bucket = snapshot.taken_at_ms / bucket_ms;
        if previous_bucket == Some(bucket) {
            continue;
        }
        if chosen.len() == buckets_max {
            break;
        }
        debug_assert!(previous_bucket.is_none_or(|previous| bucket < previous));
        previous_bucket = Some(bucket);
        chosen.push(snapshot.name.as_str());
    }
    chosen
}

/// The name is in e2d's scheme and names the cluster the listing says.
fn is_own_name(snapshot: &SnapshotInfo) -> bool {
    parse_snapshot_name(&snapshot.name)
        .is_some_and(|(cluster_id, _, _)| cluster_id == snapshot.cluster_id)
}

#[cfg(test)]
mod tests {
    use super::super::snapshot_info::snapshot_name;
    use super::*;

    const CLUSTER: u64 = 7;
    const OTHER_CLUSTER: u64 = 8;
    /// 2024-03-01T00:00:00Z
    const MARCH_1_MS: u64 = 1_709_251_200_000;
    const MINUTE_MS: u64 = 60_000;

    fn snapshot(cluster_id: u64, revision: i64, taken_at_ms: u64, valid: bool) -> SnapshotInfo {
        SnapshotInfo::named(cluster_id, revision, taken_at_ms, 100, valid)
    }

    fn valid(revision: i64, taken_at_ms: u64) -> SnapshotInfo {
        snapshot(CLUSTER, revision, taken_at_ms, true)
    }

    fn only_newest() -> Retention {
        Retention {
            keep_newest: 1,
            keep_hourly: 0,
            keep_daily: 0,
        }
    }

    /// Checks that exactly the snapshots at `deleted` positions of `listing`
    /// are planned for deletion.
    fn check(listing: &[SnapshotInfo], policy: Retention, deleted: &[usize]) {
        let mut expected: Vec<String> = deleted.iter().map(|&i| listing[i].name.clone()).collect();
        expected.sort();
        assert_eq!(plan_prune(listing, &policy), expected);
    }

    #[test]
    fn empty_listing_deletes_nothing() {
        check(&[], Retention::default(), &[]);
    }

    #[test]
    fn no_valid_snapshot_deletes_nothing() {
        let listing = [
            snapshot(CLUSTER, 1, MARCH_1_MS, false),
            snapshot(CLUSTER, 2, MARCH_1_MS + 1, false),
        ];
        check(&listing, only_newest(), &[]);
    }

    #[test]
    fn newest_valid_snapshot_is_never_pruned() {
        let zero = Retention {
            keep_newest: 0,
            keep_hourly: 0,
            keep_daily: 0,
        };
        let listing = [
            valid(1, MARCH_1_MS),
            valid(3, MARCH_1_MS + 2 * MINUTE_MS),
            valid(2, MARCH_1_MS + MINUTE_MS),
        ];
        check(&listing, zero, &[0, 2]);
    }

    #[test]
    fn keeps_the_newest_n_valid() {
        let listing: Vec<_> = (0..6)
            .map(|i| valid(i + 1, MARCH_1_MS + i as u64 * MINUTE_MS))
            .collect();
        let policy = Retention {
            keep_newest: 4,
            ..only_newest()
        };
        check(&listing, policy, &[0, 1]);
    }

    #[test]
    fn keeps_one_per_hour_and_day() {
        // Every 20 minutes for three days.
        let listing: Vec<_> = (0..3 * 24 * 3)
            .map(|i| valid(i + 1, MARCH_1_MS + i as u64 * 20 * MINUTE_MS))
            .collect();
        let policy = Retention {
            keep_newest: 2,
            keep_hourly: 3,
            keep_daily: 2,
        };
        let newest = listing.len() - 1;
        // Two newest; the last of each of the three newest hours (the
        // newest hour's is the newest); the last of each of two days (the
        // newest day's is the newest).
        let kept = BTreeSet::from([
            newest,
            newest - 1,
            newest - 3,
            newest - 6,
            2 * 24 * 3 - 1, // 23:40 on the second day
        ]);
        let deleted: Vec<usize> = (0..listing.len()).filter(|i| !kept.contains(i)).collect();
        check(&listing, policy, &deleted);
    }

    #[test]
    fn hours_without_snapshots_do_not_count() {
        // One snapshot a day: each is the newest of its hour.
        let listing: Vec<_> = (0..5)
            .map(|i| valid(i + 1, MARCH_1_MS + i as u64 * 24 * 60 * MINUTE_MS))
            .collect();
        let policy = Retention {
            keep_hourly: 3,
            ..only_newest()
        };
        check(&listing, policy, &[0, 1]);
    }

    #[test]
    fn buckets_are_utc_hours_and_days() {
        let listing = [
            valid(1, MARCH_1_MS - 2 * MINUTE_MS), // 23:58 on Feb 29
            valid(2, MARCH_1_MS - MINUTE_MS),     // 23:59 on Feb 29
            valid(3, MARCH_1_MS),                 // 00:00 on Mar 1
        ];
        let daily = Retention {
            keep_daily: 2,
            ..only_newest()
        };
        check(&listing, daily, &[0]);
        let hourly = Retention {
            keep_hourly: 2,
            ..only_newest()
        };
        check(&listing, hourly, &[0]);
    }

    #[test]
    fn newer_invalid_snapshots_are_left_alone() {
        let listing = [
            snapshot(CLUSTER, 1, MARCH_1_MS, false),
            valid(2, MARCH_1_MS + MINUTE_MS),
            snapshot(CLUSTER, 3, MARCH_1_MS + 2 * MINUTE_MS, false),
        ];
        check(&listing, Retention::default(), &[0]);
    }

    #[test]
    fn other_clusters_are_never_touched() {
        let listing = [
            snapshot(OTHER_CLUSTER, 50, MARCH_1_MS, true),
            snapshot(OTHER_CLUSTER, 51, MARCH_1_MS + 1, false),
            valid(1, MARCH_1_MS + MINUTE_MS),
            valid(2, MARCH_1_MS + 2 * MINUTE_MS),
        ];
        check(&listing, only_newest(), &[2]);
    }

    #[test]
    fn foreign_names_are_never_touched() {
        let mut mislabelled = valid(1, MARCH_1_MS);
        mislabelled.name = snapshot_name(OTHER_CLUSTER, 1, MARCH_1_MS);
        let mut hand_made = valid(2, MARCH_1_MS + 1);
        hand_made.name = "backup-before-upgrade.snap".to_string();
        let listing = [mislabelled, hand_made, valid(3, MARCH_1_MS + 2)];
        check(&listing, only_newest(), &[]);
    }

    #[test]
    fn a_name_listed_twice_is_kept_if_either_entry_is_kept() {
        let newest = valid(2, MARCH_1_MS + MINUTE_MS);
        let mut stale_copy = valid(1, MARCH_1_MS);
        stale_copy.name = newest.name.clone();
        check(&[stale_copy, newest], only_newest(), &[]);
    }

    #[test]
    fn ties_in_time_are_broken_by_revision() {
        let listing = [valid(5, MARCH_1_MS), valid(4, MARCH_1_MS)];
        check(&listing, only_newest(), &[1]);
    }
}

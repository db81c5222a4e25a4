//! Corruption checks: whether the members' `HashKV` at one revision agree,
//! decided as etcd decides.
//!
//! - [`check_initial`] (`--initial-corrupt-check`, etcd's
//!   `checkInitialHashKV`): a member about to start compares its hash at
//!   its own revision with the hashes its peers computed at that revision.
//!   A peer whose compact revision differs is skipped (its hash covers
//!   other entries); any other difference is a mismatch and the member must
//!   not start.
//! - [`check_periodic`] (`--corrupt-check-time`, etcd's `checkHashKV`): the
//!   leader hashes at its revision, asks its peers for the hash at that
//!   revision, waits for a linearizable read and hashes again. Its own hash
//!   changing at the same revision, a peer ahead of it in revision or in
//!   compaction, or a peer at its compact revision with another hash, are
//!   mismatches; [`alarm_target`] names the member the CORRUPT alarm is
//!   raised for (etcd raises one alarm per check).
//!
//! Peers' answers are taken in member id order, so the result does not
//! depend on the order they arrived in.

use std::fmt;

/// Compact revision a member reports before its first compaction (etcd's).
pub const NEVER_COMPACTED: i64 = -1;

/// One member's `HashKV` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKv {
    pub member_id: u64,
    /// The hash of the key-value history up to `hash_revision`.
    pub hash: u32,
    /// The revision the hash covers.
    pub hash_revision: i64,
    /// The member's own revision when it answered (its header's).
    pub revision: i64,
    /// The member's compact revision ([`NEVER_COMPACTED`] before the first).
    pub compact_revision: i64,
}

/// Why a member's data is taken to differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// At the same compact revision, the hash at the revision differs.
    Hash,
    /// The checking member's own hash changed at the same revision.
    OwnHashChanged,
    /// A peer's revision is ahead of the leader's.
    RevisionAhead,
    /// A peer's compact revision is ahead of the leader's.
    CompactRevisionAhead,
}

/// A member whose data differs from the checking member's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// The member the difference is blamed on.
    pub member_id: u64,
    pub reason: Reason,
    /// What the checking member found (the second hash for
    /// [`Reason::OwnHashChanged`]).
    pub local: HashKv,
    /// What the other member answered (the first hash for
    /// [`Reason::OwnHashChanged`]).
    pub other: HashKv,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (local, other) = (&self.local, &self.other);
        match self.reason {
            Reason::Hash => write!(
                f,
                "member {:x} has hash {} at revision {} (compact revision {}), member {:x} has hash {}",
                other.member_id,
                other.hash,
                other.hash_revision,
                other.compact_revision,
                local.member_id,
                local.hash
            ),
            Reason::OwnHashChanged => write!(
                f,
                "member {:x}'s hash at revision {} (compact revision {}) changed from {} to {}",
                local.member_id, local.hash_revision, local.compact_revision, other.hash, local.hash
            ),
            Reason::RevisionAhead => write!(
                f,
                "member {:x} is at revision {}, past the leader {:x}'s {}",
                other.member_id, other.revision, local.member_id, local.revision
            ),
            Reason::CompactRevisionAhead => write!(
                f,
                "member {:x} is compacted at revision {}, past the leader {:x}'s {}",
                other.member_id,
                other.compact_revision,
                local.member_id,
                local.compact_revision
            ),
        }
    }
}

/// Peers' answers in member id order, each member once (its first answer),
/// without `local_id`'s own.
fn peers_in_order(local_id: u64, peers: &[HashKv]) -> Vec<HashKv> {
    let mut ordered: Vec<HashKv> = Vec::with_capacity(peers.len());
    for peer in peers.iter().filter(|p| p.member_id != local_id) {
        if !ordered.iter().any(|o| o.member_id == peer.member_id) {
            ordered.push(*peer);
        }
    }
    ordered.sort_by_key(|p| p.member_id);
    ordered
}

/// The peers whose data differs from `local`'s, as a member checks before
/// it starts (etcd's `checkInitialHashKV`). A peer is compared only when it
/// hashed `local`'s revision at `local`'s compact revision; a peer that
/// could not answer is simply absent from `peers`.
pub fn check_initial(local: &HashKv, peers: &[HashKv]) -> Vec<Mismatch> {
    peers_in_order(local.member_id, peers)
        .into_iter()
        .filter(|peer| {
            peer.hash_revision == local.hash_revision
                && peer.compact_revision == local.compact_revision
                && peer.hash != local.hash
        })
        .map(|peer| Mismatch {
            member_id: peer.member_id,
            reason: Reason::Hash,
            local: *local,
            other: peer,
        })
        .collect()
}

/// The mismatches the leader finds (etcd's `checkHashKV`): `before` is its
/// hash when it asked the peers (at `before.hash_revision`), `after` its
/// hash again once a linearizable read returned. In etcd's order: its own
/// hash first, then each peer's revision, compact revision and hash.
pub fn check_periodic(before: &HashKv, after: &HashKv, peers: &[HashKv]) -> Vec<Mismatch> {
    assert_eq!(
        before.member_id, after.member_id,
        "both hashes are the checking member's"
    );
    let mut found = Vec::new();
    if after.hash != before.hash
        && after.hash_revision == before.hash_revision
        && after.compact_revision == before.compact_revision
    {
        found.push(Mismatch {
            member_id: before.member_id,
            reason: Reason::OwnHashChanged,
            local: *after,
            other: *before,
        });
    }
    for peer in peers_in_order(before.member_id, peers) {
        let blame = |reason, local: &HashKv| Mismatch {
            member_id: peer.member_id,
            reason,
            local: *local,
            other: peer,
        };
        if peer.revision > after.revision {
            found.push(blame(Reason::RevisionAhead, after));
        }
        if peer.compact_revision > after.compact_revision {
            found.push(blame(Reason::CompactRevisionAhead, after));
        }
        if peer.hash_revision == before.hash_revision
            && peer.compact_revision == before.compact_revision
            && peer.hash != before.hash
        {
            found.push(blame(Reason::Hash, before));
        }
    }
    found
}

/// The member the CORRUPT alarm is raised for: etcd raises one per check,
/// for the first mismatch it finds.
pub fn alarm_target(mismatches: &[Mismatch]) -> Option<u64> {
    mismatches.first().map(|m| m.member_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn answer(member_id: u64, hash: u32, revision: i64, compact_revision: i64) -> HashKv {
        HashKv {
            member_id,
            hash,
            hash_revision: revision,
            revision,
            compact_revision,
        }
    }

    #[test]
    fn initial_check_finds_a_different_hash_at_the_same_compaction() {
        let local = answer(1, 7, 10, 4);
        let peers = [answer(3, 7, 10, 4), answer(2, 8, 10, 4)];
        let found = check_initial(&local, &peers);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].member_id, 2);
        assert_eq!(found[0].reason, Reason::Hash);
        assert_eq!(
            found[0].to_string(),
            "member 2 has hash 8 at revision 10 (compact revision 4), member 1 has hash 7"
        );
    }

    #[test]
    fn initial_check_skips_another_compaction() {
        let local = answer(1, 7, 10, 4);
        let peers = [answer(2, 8, 10, 6), answer(3, 9, 10, NEVER_COMPACTED)];
        assert!(check_initial(&local, &peers).is_empty());
    }

    #[test]
    fn periodic_check_blames_the_first_difference() {
        let before = answer(1, 7, 10, 4);
        let after = answer(1, 7, 12, 4);
        let peers = [
            HashKv {
                revision: 13,
                ..answer(3, 7, 10, 4)
            },
            HashKv {
                revision: 11,
                ..answer(2, 9, 10, 4)
            },
        ];
        let found = check_periodic(&before, &after, &peers);
        let blamed: Vec<(u64, Reason)> = found.iter().map(|m| (m.member_id, m.reason)).collect();
        assert_eq!(blamed, [(2, Reason::Hash), (3, Reason::RevisionAhead)]);
        assert_eq!(alarm_target(&found), Some(2));
    }

    #[test]
    fn periodic_check_blames_the_leader_whose_hash_changed() {
        let before = answer(1, 7, 10, 4);
        let after = answer(1, 8, 10, 4);
        let found = check_periodic(&before, &after, &[answer(2, 7, 10, 4)]);
        assert_eq!(alarm_target(&found), Some(1));
        assert_eq!(found[0].reason, Reason::OwnHashChanged);
        assert!(found[0].to_string().contains("changed from 7 to 8"));
    }

    #[test]
    fn periodic_check_blames_a_peer_compacted_past_the_leader() {
        let before = answer(1, 7, 10, 4);
        let found = check_periodic(&before, &before, &[answer(2, 5, 10, 6)]);
        let blamed: Vec<(u64, Reason)> = found.iter().map(|m| (m.member_id, m.reason)).collect();
        assert_eq!(blamed, [(2, Reason::CompactRevisionAhead)]);
    }

    /// A member's answer, as a cluster of up to 5 members might give:
    /// few hashes and revisions, so that equal ones are common.
    fn hash_kv() -> impl Strategy<Value = HashKv> {
        (1..6u64, 0..3u32, 5..8i64, -1..3i64, 0..3i64).prop_map(
            |(member_id, hash, hash_revision, compact_revision, ahead)| HashKv {
                member_id,
                hash,
                hash_revision,
                revision: hash_revision + ahead,
                compact_revision,
            },
        )
    }

    proptest! {
        #[test]
        fn initial_check_flags_exactly_the_comparable_differing_peers(
            local in hash_kv(),
            peers in prop::collection::vec(hash_kv(), 0..6),
        ) {
            let found = check_initial(&local, &peers);
            let ordered = peers_in_order(local.member_id, &peers);
            for peer in &ordered {
                let comparable = peer.hash_revision == local.hash_revision
                    && peer.compact_revision == local.compact_revision;
                let flagged = found.iter().any(|m| m.member_id == peer.member_id);
                prop_assert_eq!(flagged, comparable && peer.hash != local.hash);
            }
            // Never the member itself, each member at most once, in id order.
            prop_assert!(found.iter().all(|m| m.member_id != local.member_id));
            prop_assert!(found.windows(2).all(|w| w[0].member_id < w[1].member_id));
            prop_assert!(found.iter().all(|m| m.reason == Reason::Hash && m.local == local));
        }

        #[test]
        fn checks_do_not_depend_on_the_order_of_answers(
            local in hash_kv(),
            later_hash in 0..3u32,
            peers in prop::collection::vec(hash_kv(), 0..6),
            rotation in 0..6usize,
        ) {
            // Each member answers once; which answer counts is then unambiguous.
            let mut deduped = peers.clone();
            deduped.sort_by_key(|p| p.member_id);
            deduped.dedup_by_key(|p| p.member_id);
            let mut rotated = deduped.clone();
            if !rotated.is_empty() {
                let by = rotation % rotated.len();
                rotated.rotate_left(by);
            }
            rotated.reverse();
            prop_assert_eq!(check_initial(&local, &deduped), check_initial(&local, &rotated));
            let after = HashKv { hash: later_hash, ..local };
            prop_assert_eq!(
                check_periodic(&local, &after, &deduped),
                check_periodic(&local, &after, &rotated)
            );
        }

        #[test]
        fn an_agreeing_cluster_raises_nothing(
            local in hash_kv(),
            ids in prop::collection::btree_set(1..10u64, 0..5),
            behind in prop::collection::vec(0..3i64, 5),
            compacted_less in prop::collection::vec(0..2i64, 5),
        ) {
            // Peers that hashed the same history (at the same compaction),
            // or that were compacted less and so hashed other entries, at a
            // revision not past the leader's.
            let peers: Vec<HashKv> = ids
                .iter()
                .filter(|id| **id != local.member_id)
                .zip(behind.iter().zip(&compacted_less))
                .map(|(&member_id, (&behind, &less))| HashKv {
                    member_id,
                    hash: if less == 0 { local.hash } else { local.hash.wrapping_add(1) },
                    revision: (local.revision - behind).max(local.hash_revision),
                    compact_revision: local.compact_revision - less,
                    ..local
                })
                .collect();
            prop_assert!(check_initial(&local, &peers).is_empty());
            prop_assert!(check_periodic(&local, &local, &peers).is_empty());
            prop_assert_eq!(alarm_target(&check_periodic(&local, &local, &peers)), None);
        }

        #[test]
        fn a_differing_peer_at_the_same_compaction_is_always_caught(
            local in hash_kv(),
            others in prop::collection::btree_set(1..10u64, 1..5),
            bad_index in 0..5usize,
            flip in 1..u32::MAX,
        ) {
            let others: Vec<u64> = others.into_iter().filter(|id| *id != local.member_id).collect();
            prop_assume!(!others.is_empty());
            let bad = others[bad_index % others.len()];
            let peers: Vec<HashKv> = others
                .iter()
                .map(|&member_id| HashKv {
                    member_id,
                    hash: if member_id == bad { local.hash ^ flip } else { local.hash },
                    revision: local.hash_revision,
                    ..local
                })
                .collect();
            let initial = check_initial(&local, &peers);
            prop_assert_eq!(initial.iter().map(|m| m.member_id).collect::<Vec<_>>(), vec![bad]);
            let periodic = check_periodic(&local, &local, &peers);
            prop_assert_eq!(alarm_target(&periodic), Some(bad));
            prop_assert!(periodic.iter().all(|m| m.member_id == bad));
        }

        #[test]
        fn periodic_blames_every_peer_ahead_of_the_leader(
            before in hash_kv(),
            peers in prop::collection::vec(hash_kv(), 0..6),
        ) {
            let after = before;
            let found = check_periodic(&before, &after, &peers);
            for peer in peers_in_order(before.member_id, &peers) {
                let ahead = peer.revision > after.revision
                    || peer.compact_revision > after.compact_revision;
                let differs = peer.hash_revision == before.hash_revision
                    && peer.compact_revision == before.compact_revision
                    && peer.hash != before.hash;
                let flagged = found.iter().any(|m| m.member_id == peer.member_id);
                prop_assert_eq!(flagged, ahead || differs);
            }
            // The alarm names a peer that was found, or nobody.
            match alarm_target(&found) {
                Some(id) => prop_assert!(found.iter().any(|m| m.member_id == id)),
                None => prop_assert!(found.is_empty()),
            }
        }
    }
}

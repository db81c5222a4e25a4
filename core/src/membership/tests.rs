use proptest::prelude::*;

use super::*;
use crate::storage::MemBackend;
use crate::StateMachine;

fn url(host: u64) -> String {
    format!("http://h{host}:2380")
}

fn member(id: u64, is_learner: bool) -> MemberAttributes {
    MemberAttributes {
        member_id: id,
        name: format!("m{id}"),
        peer_urls: vec![url(id)],
        client_urls: Vec::new(),
        is_learner,
    }
}

fn add(id: u64, host: u64, is_learner: bool) -> Change {
    Change::Add(MemberAttributes {
        name: String::new(),
        peer_urls: vec![url(host)],
        ..member(id, is_learner)
    })
}

/// Voters `1..=voters`, then learners, every one active and caught up
/// except the ids in `behind` (silent, nothing matched).
fn cluster(voters: u64, learners: u64, behind: &[u64]) -> (Vec<MemberAttributes>, LeaderProgress) {
    let members: Vec<MemberAttributes> = (1..=voters + learners)
        .map(|id| member(id, id > voters))
        .collect();
    let progress = LeaderProgress {
        last_index: 100,
        members: members
            .iter()
            .map(|m| {
                let up = !behind.contains(&m.member_id);
                let progress = Progress {
                    matched_index: if up { 100 } else { 0 },
                    recently_active: up,
                };
                (m.member_id, progress)
            })
            .collect(),
    };
    (members, progress)
}

/// One leader-side case: the cluster, the change, the expected answer.
fn check(voters: u64, learners: u64, behind: &[u64], change: Change, expected: Result<(), Error>) {
    let (members, progress) = cluster(voters, learners, behind);
    assert_eq!(
        check_on_leader(&members, &progress, &change),
        expected,
        "{voters} voters, {learners} learners, behind {behind:?}: {change:?}"
    );
}

#[test]
fn removal_must_leave_a_quorum_of_started_voters() {
    check(
        3,
        0,
        &[3],
        Change::Remove { id: 2 },
        Err(Error::NotEnoughStartedMembers),
    );
    check(3, 0, &[3], Change::Remove { id: 3 }, Ok(()));
    check(3, 0, &[], Change::Remove { id: 1 }, Ok(()));
    check(2, 0, &[2], Change::Remove { id: 2 }, Ok(()));
    check(
        1,
        0,
        &[],
        Change::Remove { id: 1 },
        Err(Error::NotEnoughStartedMembers),
    );
    // A learner's removal leaves the voters as they were.
    check(3, 1, &[2, 3], Change::Remove { id: 4 }, Ok(()));
}

#[test]
fn a_voter_is_added_only_with_a_quorum_started_for_it() {
    check(3, 0, &[], add(9, 9, false), Ok(()));
    // 2 started of 4 voters to be.
    check(
        3,
        0,
        &[3],
        add(9, 9, false),
        Err(Error::NotEnoughStartedMembers),
    );
    check(
        2,
        0,
        &[2],
        add(9, 9, false),
        Err(Error::NotEnoughStartedMembers),
    );
    check(4, 0, &[4], add(9, 9, false), Ok(()));
    // A lone voter may always take a second.
    check(1, 0, &[], add(9, 9, false), Ok(()));
    // A learner changes no quorum.
    check(3, 0, &[2, 3], add(9, 9, true), Ok(()));
}

#[test]
fn at_most_one_learner() {
    check(3, 1, &[], add(9, 9, true), Err(Error::TooManyLearners));
    check(3, 1, &[], add(9, 9, false), Ok(()));
}

#[test]
fn peer_urls_and_ids_are_never_shared() {
    check(3, 0, &[], add(9, 2, true), Err(Error::PeerUrlExists));
    check(3, 0, &[], add(2, 9, true), Err(Error::MemberExists));
    let no_scheme = Change::Add(MemberAttributes {
        peer_urls: vec!["h9:2380".into()],
        ..member(9, true)
    });
    check(3, 0, &[], no_scheme, Err(Error::BadMemberUrls));
}

#[test]
fn unknown_members_are_not_found() {
    check(
        3,
        0,
        &[],
        Change::Remove { id: 9 },
        Err(Error::MemberNotFound),
    );
    check(
        3,
        0,
        &[],
        Change::Promote { id: 9 },
        Err(Error::MemberNotFound),
    );
}

#[test]
fn only_a_learner_in_sync_is_promoted() {
    check(
        3,
        1,
        &[],
        Change::Promote { id: 2 },
        Err(Error::MemberNotLearner),
    );
    check(
        3,
        1,
        &[4],
        Change::Promote { id: 4 },
        Err(Error::LearnerNotReady),
    );
    check(3, 1, &[], Change::Promote { id: 4 }, Ok(()));
    // The learner counts as started: 2 of 4 is not a quorum, 3 of 4 is.
    check(
        3,
        1,
        &[2, 3],
        Change::Promote { id: 4 },
        Err(Error::NotEnoughStartedMembers),
    );
    check(3, 1, &[3], Change::Promote { id: 4 }, Ok(()));
}

#[test]
fn a_learner_is_ready_at_ninety_percent_of_the_leaders_log() {
    let at = |matched_index| LeaderProgress {
        last_index: 1000,
        members: [(
            7,
            Progress {
                matched_index,
                recently_active: true,
            },
        )]
        .into(),
    };
    assert!(at(900).learner_ready(7));
    assert!(!at(899).learner_ready(7));
    assert!(
        !at(1000).learner_ready(8),
        "a member the leader does not track"
    );
    let huge = LeaderProgress {
        last_index: u64::MAX,
        members: [(
            7,
            Progress {
                matched_index: u64::MAX,
                recently_active: true,
            },
        )]
        .into(),
    };
    assert!(huge.learner_ready(7), "no overflow near u64::MAX");
}

#[test]
fn an_update_keeps_peer_urls_unique() {
    let (members, _) = cluster(3, 0, &[]);
    assert_eq!(check_update(&members, 1, &[url(1)]), Ok(()));
    assert_eq!(check_update(&members, 1, &[url(9)]), Ok(()));
    assert_eq!(
        check_update(&members, 1, &[url(2)]),
        Err(Error::PeerUrlExists)
    );
    assert_eq!(
        check_update(&members, 9, &[url(9)]),
        Err(Error::MemberNotFound)
    );
    assert_eq!(check_update(&members, 1, &[]), Err(Error::BadMemberUrls));
}

fn state_machine(members: &[MemberAttributes]) -> StateMachine<MemBackend> {
    let mut state = StateMachine::open(MemBackend::default(), 0).expect("open");
    for member in members {
        state.put_member(member);
    }
    state
}

#[test]
fn the_second_of_two_learners_checked_together_is_refused_when_applied() {
    let (members, progress) = cluster(3, 0, &[]);
    let first = add(8, 8, true);
    let second = add(9, 9, true);
    // Both pass on the leader: neither is applied when the other is checked.
    assert_eq!(check_on_leader(&members, &progress, &first), Ok(()));
    assert_eq!(check_on_leader(&members, &progress, &second), Ok(()));
    let mut state = state_machine(&members);
    assert_eq!(state.apply_member_change(&first).expect("storage"), Ok(()));
    assert_eq!(
        state.apply_member_change(&second).expect("storage"),
        Err(Error::TooManyLearners)
    );
    let after = state.members().expect("members");
    let ids: Vec<u64> = after.iter().map(|m| m.member_id).collect();
    assert_eq!(ids, [1, 2, 3, 8], "the refused learner left no trace");
    assert_eq!(
        Error::TooManyLearners.to_string(),
        "etcdserver: too many learner members in cluster"
    );
}

#[test]
fn applying_removes_and_promotes_as_checked() {
    let (members, _) = cluster(2, 1, &[]);
    let mut state = state_machine(&members);
    assert_eq!(
        state
            .apply_member_change(&Change::Promote { id: 3 })
            .expect("storage"),
        Ok(())
    );
    assert_eq!(
        state
            .apply_member_change(&Change::Promote { id: 3 })
            .expect("storage"),
        Err(Error::MemberNotLearner)
    );
    assert_eq!(
        state
            .apply_member_change(&Change::Remove { id: 1 })
            .expect("storage"),
        Ok(())
    );
    assert!(state.is_removed_member(1).expect("storage"));
    assert_eq!(
        state
            .apply_member_change(&Change::Remove { id: 1 })
            .expect("storage"),
        Err(Error::MemberNotFound)
    );
    let after = state.members().expect("members");
    assert_eq!(after, [member(2, false), member(3, false)]);
}

/// A change the model draws: kind, the member it names (an index into
/// the list, or a fresh id), and a host for a new member's URL.
#[derive(Debug, Clone)]
struct Drawn {
    kind: u8,
    pick: usize,
    host: u64,
    is_learner: bool,
}

fn drawn() -> impl Strategy<Value = Drawn> {
    (0u8..3, 0usize..10, 0u64..8, any::<bool>()).prop_map(|(kind, pick, host, is_learner)| Drawn {
        kind,
        pick,
        host,
        is_learner,
    })
}

/// The change `drawn` describes against `members`; `fresh_id` for an add
/// (one draw in ten reuses an existing id instead).
fn change_of(drawn: &Drawn, members: &[MemberAttributes], fresh_id: u64) -> Change {
    let existing = members
        .get(drawn.pick % members.len().max(1))
        .map_or(fresh_id, |m| m.member_id);
    match drawn.kind {
        0 => {
            let id = if drawn.pick == 9 { existing } else { fresh_id };
            add(id, drawn.host, drawn.is_learner)
        }
        1 => Change::Remove { id: existing },
        _ => Change::Promote { id: existing },
    }
}

/// The member list after `change`, as the model reads the rules.
fn applied(members: &[MemberAttributes], change: &Change) -> Vec<MemberAttributes> {
    let mut after = members.to_vec();
    match change {
        Change::Add(member) => after.push(member.clone()),
        Change::Remove { id } => after.retain(|m| m.member_id != *id),
        Change::Promote { id } => {
            for member in after.iter_mut().filter(|m| m.member_id == *id) {
                member.is_learner = false;
            }
        }
    }
    after
}

fn assert_well_formed(members: &[MemberAttributes]) {
    let learners = members.iter().filter(|m| m.is_learner).count();
    assert!(learners <= LEARNERS_MAX, "{learners} learners: {members:?}");
    assert!(
        members.iter().any(|m| !m.is_learner),
        "no voter: {members:?}"
    );
    let mut urls: Vec<&String> = members.iter().flat_map(|m| &m.peer_urls).collect();
    let all = urls.len();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), all, "a peer URL twice: {members:?}");
    let mut ids: Vec<u64> = members.iter().map(|m| m.member_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), members.len(), "an id twice: {members:?}");
}

proptest! {
    /// Whatever the leader accepts that changes the voters leaves a quorum
    /// of them started (a promoted learner is in sync, so it counts; an
    /// added voter has not started), except a lone voter taking a second.
    #[test]
    fn an_accepted_change_leaves_a_quorum_of_started_voters(
        voters in 1u64..=7,
        learners in 0u64..=1,
        silent in proptest::collection::vec(1u64..=8, 0..5),
        drawn in drawn(),
    ) {
        let (members, progress) = cluster(voters, learners, &silent);
        let change = change_of(&drawn, &members, 100);
        prop_assume!(check_on_leader(&members, &progress, &change).is_ok());
        prop_assert_eq!(check_replicated(&members, &change), Ok(()), "the leader is stricter");
        let after = applied(&members, &change);
        assert_well_formed(&after);
        let started = |list: &[MemberAttributes]| {
            list.iter()
                .filter(|m| !m.is_learner)
                .filter(|m| progress.is_started(m.member_id) || Change::Promote { id: m.member_id } == change)
                .count()
        };
        let voters_after = after.iter().filter(|m| !m.is_learner).count();
        let voters_changed = voters_after != voters as usize
            || matches!(change, Change::Promote { .. });
        let lone_voter_grows = voters == 1 && started(&members) == 1;
        if voters_changed && !lone_voter_grows {
            prop_assert!(
                started(&after) >= quorum(voters_after),
                "{} of {} voters started after {:?}", started(&after), voters_after, change
            );
        }
        if let Change::Promote { id } = change {
            prop_assert!(progress.learner_ready(id));
        }
    }

    /// Changes checked on the leader against a member list up to three
    /// changes old (the others still in flight), then applied in order:
    /// the check at apply keeps the list well formed whatever got through
    /// the leader, and refuses exactly what the replicated rules refuse.
    #[test]
    fn changes_in_flight_never_break_the_member_list(
        voters in 1u64..=5,
        lags in proptest::collection::vec(0usize..=3, 1..24),
        draws in proptest::collection::vec(drawn(), 1..24),
    ) {
        let (members, _) = cluster(voters, 0, &[]);
        let mut state = state_machine(&members);
        let mut history = vec![members];
        for (step, (lag, drawn)) in lags.iter().zip(&draws).enumerate() {
            let seen = &history[history.len().saturating_sub(lag + 1)];
            let change = change_of(drawn, seen, 1000 + step as u64);
            // Everyone up and in sync: the leader judges structure only.
            let progress = LeaderProgress {
                last_index: 1,
                members: seen
                    .iter()
                    .map(|m| (m.member_id, Progress { matched_index: 1, recently_active: true }))
                    .collect(),
            };
            if check_on_leader(seen, &progress, &change).is_err() {
                continue;
            }
            let before = state.members().expect("members");
            let verdict = state.apply_member_change(&change).expect("storage");
            prop_assert_eq!(&verdict, &check_replicated(&before, &change));
            let after = state.members().expect("members");
            if verdict.is_err() {
                prop_assert_eq!(&after, &before, "a refused change changed nothing");
            }
            assert_well_formed(&after);
            history.push(after);
        }
    }
}

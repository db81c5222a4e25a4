//! One test per decision rule, named after the rule.

use crate::log_position::LogPosition;
use crate::swim::{Liveness, MemberView, NodeMeta, NodeStatus};

use super::*;

const HEALTH_TIMEOUT_MS: u64 = 10_000;
const HEALTH_INTERVAL_MS: u64 = 1_000;
const RETRY_MS: u64 = 500;

fn config(name: &str, size: usize) -> ManagerConfig {
    ManagerConfig {
        name: name.into(),
        client_url: format!("http://{name}:2379"),
        peer_url: format!("http://{name}:2380"),
        required_cluster_size: size,
        health_check_interval_ms: HEALTH_INTERVAL_MS,
        health_check_timeout_ms: HEALTH_TIMEOUT_MS,
        snapshots_configured: false,
        retry_interval_ms: RETRY_MS,
        propose_cluster_size: None,
        removed_from: None,
        version: crate::version::CLUSTER_VERSION_BASELINE,
        planted: PlantedBugs::NONE,
        auto_recover_after_ms: None,
    }
}

fn node(name: &str, status: NodeStatus, cluster_id: u64) -> MemberView {
    MemberView {
        name: name.into(),
        addr: "127.0.0.1:7980".parse().unwrap(),
        incarnation: 1,
        liveness: Liveness::Alive,
        meta: NodeMeta {
            name: name.into(),
            client_url: format!("http://{name}:2379"),
            peer_url: format!("http://{name}:2380"),
            cluster_id,
            status,
            ..Default::default()
        },
    }
}

fn pending(name: &str) -> MemberView {
    node(name, NodeStatus::Pending, 0)
}

fn proposing(name: &str, founders: &[&str], committed: bool) -> MemberView {
    let mut m = pending(name);
    m.meta.founders = founders.iter().map(|s| s.to_string()).collect();
    m.meta.founders_committed = committed;
    m
}

fn running(name: &str, cluster_id: u64) -> MemberView {
    node(name, NodeStatus::Running, cluster_id)
}

fn dead(mut m: MemberView) -> MemberView {
    m.liveness = Liveness::Dead;
    m
}

fn drain(manager: &mut Manager) -> Vec<Command> {
    std::iter::from_fn(|| manager.poll_command()).collect()
}

/// Commands other than metadata publications.
fn actions(manager: &mut Manager) -> Vec<Command> {
    drain(manager)
        .into_iter()
        .filter(|c| !matches!(c, Command::PublishMeta(_)))
        .collect()
}

fn last_meta(commands: &[Command]) -> Option<&NodeMeta> {
    commands.iter().rev().find_map(|c| match c {
        Command::PublishMeta(meta) => Some(meta),
        _ => None,
    })
}

fn id_of(command: &Command) -> CommandId {
    match command {
        Command::ListSnapshots { id }
        | Command::PersistCommitment { id, .. }
        | Command::RestartFromDataDir { id }
        | Command::StartNewCluster { id, .. }
        | Command::AcquireJoinLock { id, .. }
        | Command::FetchMembers { id, .. }
        | Command::AddLearner { id, .. }
        | Command::StartJoined { id, .. }
        | Command::RemoveMember { id, .. }
        | Command::PromoteMember { id, .. }
        | Command::ProposeClusterSize { id, .. }
        | Command::SetClusterVersion { id, .. }
        | Command::LeaveRecoveryTo { id, .. }
        | Command::RecoverAlone { id }
        | Command::ArchiveDataDir { id, .. } => *id,
        Command::PublishMeta(_) | Command::ReleaseJoinLock { .. } => {
            panic!("{command:?} has no id")
        }
    }
}

fn member(id: u64, name: &str, is_learner: bool) -> ClusterMember {
    ClusterMember {
        id,
        name: name.into(),
        peer_url: format!("http://{name}:2380"),
        is_learner,
        caught_up: false,
    }
}

fn status(self_id: u64, leader_id: u64, members: Vec<ClusterMember>) -> ServerStatus {
    ServerStatus {
        cluster_id: 77,
        member_id: self_id,
        leader_id,
        members,
        cluster_size: None,
        cluster_version: None,
        last_log: LogPosition::default(),
        recovered_from: Vec::new(),
    }
}

/// A manager for `name` running as member `self_id` of cluster 77 with
/// members a(1), b(2), c(3), all seen Running in gossip.
fn running_manager(name: &str, self_id: u64, leader_id: u64) -> Manager {
    running_manager_with(config(name, 3), self_id, leader_id)
}

/// [`running_manager`] with `config`.
fn running_manager_with(config: ManagerConfig, self_id: u64, leader_id: u64) -> Manager {
    let name = config.name.clone();
    let mut m = Manager::new(
        config,
        DataDir::Member {
            cluster_id: 77,
            member_id: self_id,
            founders: None,
            recovery_left_to: None,
        },
        0,
    );
    let restart = actions(&mut m);
    m.handle_result(
        id_of(&restart[0]),
        CommandResult::Started { cluster_id: 77 },
        0,
    );
    for other in ["a", "b", "c"].into_iter().filter(|n| *n != name.as_str()) {
        m.handle_gossip(running(other, 77), 0);
    }
    m.handle_server_status(status(self_id, leader_id, abc()), 0);
    drain(&mut m);
    m
}

/// a, b, c, and d as a learner that has caught up.
fn abc_and_caught_up_learner_d() -> Vec<ClusterMember> {
    let mut learner = member(4, "d", true);
    learner.caught_up = true;
    let mut members = abc();
    members.push(learner);
    members
}

fn abc() -> Vec<ClusterMember> {
    vec![
        member(1, "a", false),
        member(2, "b", false),
        member(3, "c", false),
    ]
}

#[test]
fn intact_data_dir_is_restarted_never_refounded() {
    for size in [1, 3, 5] {
        let mut m = Manager::new(
            config("a", size),
            DataDir::Member {
                cluster_id: 9,
                member_id: 4,
                founders: None,
                recovery_left_to: None,
            },
            0,
        );
        let out = actions(&mut m);
        assert!(
            matches!(out.as_slice(), [Command::RestartFromDataDir { .. }]),
            "{out:?}"
        );
        for name in ["b", "c", "d", "e"] {
            m.handle_gossip(pending(name), 0);
        }
        assert!(actions(&mut m).is_empty());
    }
}

#[test]
fn size_one_founds_at_once_when_no_store_is_configured() {
    let mut m = Manager::new(config("a", 1), DataDir::Empty, 0);
    let out = actions(&mut m);
    match out.as_slice() {
        [Command::StartNewCluster {
            founders, restore, ..
        }] => {
            assert_eq!(founders.len(), 1);
            assert_eq!(founders[0].name, "a");
            assert_eq!(*restore, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn size_one_restores_the_newest_snapshot_into_an_empty_data_dir() {
    let mut cfg = config("a", 1);
    cfg.snapshots_configured = true;
    let mut m = Manager::new(cfg, DataDir::Empty, 0);
    let out = actions(&mut m);
    assert!(matches!(out.as_slice(), [Command::ListSnapshots { .. }]));
    m.handle_result(
        id_of(&out[0]),
        CommandResult::NewestSnapshot(Some("snap-7".into())),
        1,
    );
    match actions(&mut m).as_slice() {
        [Command::StartNewCluster { restore, .. }] => {
            assert_eq!(restore.as_deref(), Some("snap-7"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn store_listing_failure_is_retried_before_any_start() {
    let mut cfg = config("a", 1);
    cfg.snapshots_configured = true;
    let mut m = Manager::new(cfg, DataDir::Empty, 0);
    let out = actions(&mut m);
    m.handle_result(
        id_of(&out[0]),
        CommandResult::Failed("access denied".into()),
        10,
    );
    assert!(actions(&mut m).is_empty());
    assert!(m.waiting_for().contains("access denied"));
    assert_eq!(m.poll_timeout(), Some(10 + RETRY_MS));
    m.handle_timeout(10 + RETRY_MS);
    assert!(matches!(
        actions(&mut m).as_slice(),
        [Command::ListSnapshots { .. }]
    ));
}

#[test]
fn waits_until_n_nodes_are_pending() {
    let mut m = Manager::new(config("a", 3), DataDir::Empty, 0);
    let out = drain(&mut m);
    assert_eq!(last_meta(&out).unwrap().status, NodeStatus::Pending);
    m.handle_gossip(pending("b"), 1);
    assert!(actions(&mut m).is_empty());
    assert!(m.waiting_for().contains("2 of 3"), "{}", m.waiting_for());
}

#[test]
fn proposes_the_first_n_names_and_extra_nodes_wait() {
    let mut m = Manager::new(config("b", 3), DataDir::Empty, 0);
    for name in ["d", "c", "a"] {
        m.handle_gossip(pending(name), 1);
    }
    let out = drain(&mut m);
    assert_eq!(last_meta(&out).unwrap().founders, vec!["a", "b", "c"]);

    let mut extra = Manager::new(config("d", 3), DataDir::Empty, 0);
    for name in ["a", "b", "c"] {
        extra.handle_gossip(pending(name), 1);
    }
    let out = drain(&mut extra);
    assert!(last_meta(&out).unwrap().founders.is_empty());
    assert!(extra.waiting_for().contains("joins later"));
}

#[test]
fn commits_only_when_every_founder_proposes_the_same_set() {
    let mut m = Manager::new(config("a", 3), DataDir::Empty, 0);
    m.handle_gossip(pending("b"), 1);
    m.handle_gossip(pending("c"), 1);
    assert!(actions(&mut m).is_empty(), "b and c have not proposed yet");
    m.handle_gossip(proposing("b", &["a", "b", "c"], false), 2);
    m.handle_gossip(proposing("c", &["a", "b", "d"], false), 2);
    assert!(actions(&mut m).is_empty(), "c disagrees");
    m.handle_gossip(proposing("c", &["a", "b", "c"], false), 3);
    assert!(
        actions(&mut m).is_empty(),
        "agreement must hold for a while"
    );
    m.handle_gossip(proposing("c", &["a", "b", "d"], false), 4);
    m.handle_gossip(proposing("c", &["a", "b", "c"], false), 5);
    m.handle_timeout(5 + FOUNDING_SETTLE_MS - 1);
    assert!(
        actions(&mut m).is_empty(),
        "the settle time restarts after a break"
    );
    m.handle_timeout(5 + FOUNDING_SETTLE_MS);
    let out = actions(&mut m);
    match out.as_slice() {
        [Command::PersistCommitment {
            proposal: Some(p), ..
        }] => assert_eq!(p.founders, vec!["a", "b", "c"]),
        other => panic!("{other:?}"),
    }
    // Published as committed only once persisted.
    m.handle_result(id_of(&out[0]), CommandResult::Done, 6 + FOUNDING_SETTLE_MS);
    let out = drain(&mut m);
    assert!(last_meta(&out).unwrap().founders_committed);
}

#[test]
fn starts_only_when_every_founder_has_committed() {
    let proposal = Proposal {
        founders: vec!["a".into(), "b".into(), "c".into()],
        restore: None,
    };
    let mut m = Manager::new(config("a", 3), DataDir::Committed(proposal), 0);
    m.handle_gossip(proposing("b", &["a", "b", "c"], true), 1);
    m.handle_gossip(proposing("c", &["a", "b", "c"], false), 1);
    assert!(actions(&mut m).is_empty());
    assert!(m.waiting_for().contains("waiting for c"));
    m.handle_gossip(proposing("c", &["a", "b", "c"], true), 2);
    match actions(&mut m).as_slice() {
        [Command::StartNewCluster { founders, .. }] => {
            let names: Vec<&str> = founders.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(names, ["a", "b", "c"]);
            assert_eq!(founders[1].peer_url, "http://b:2380");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn adopts_a_committed_proposal_that_names_it() {
    let mut m = Manager::new(config("c", 3), DataDir::Empty, 0);
    // c's own view would choose a, c, d; a has committed to a, b, c.
    m.handle_gossip(proposing("a", &["a", "b", "c"], true), 1);
    m.handle_gossip(pending("d"), 1);
    let out = drain(&mut m);
    assert_eq!(last_meta(&out).unwrap().founders, vec!["a", "b", "c"]);
}

#[test]
fn abandons_a_commitment_when_a_founder_runs_another_cluster() {
    let proposal = Proposal {
        founders: vec!["a".into(), "b".into(), "c".into()],
        restore: None,
    };
    let mut m = Manager::new(config("a", 3), DataDir::Committed(proposal), 0);
    m.handle_gossip(proposing("b", &["a", "b", "c"], true), 1);
    assert!(actions(&mut m).is_empty());
    m.handle_gossip(running("c", 5), 2);
    match actions(&mut m).as_slice() {
        [Command::PersistCommitment { proposal: None, .. }] => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_committed_founder_starts_late_when_its_set_already_runs() {
    let proposal = Proposal {
        founders: vec!["a".into(), "b".into(), "c".into()],
        restore: None,
    };
    let mut m = Manager::new(config("c", 3), DataDir::Committed(proposal), 0);
    let mut a = running("a", 5);
    a.meta.founders_digest = Proposal {
        founders: vec!["a".into(), "b".into(), "c".into()],
        restore: None,
    }
    .digest();
    a.meta.founders_committed = true;
    m.handle_gossip(a, 1);
    m.handle_gossip(proposing("b", &["a", "b", "c"], true), 1);
    assert!(matches!(
        actions(&mut m).as_slice(),
        [Command::StartNewCluster { .. }]
    ));
}

/// Drives a fresh node named `name` through lock and member fetch; returns
/// it with the FetchMembers command answered by `members`.
fn joiner_after_fetch(name: &str, members: Vec<ClusterMember>) -> Manager {
    joiner_after_fetch_at(name, members, None)
}

/// [`joiner_after_fetch`] from a cluster whose recorded version is
/// `cluster_version`.
fn joiner_after_fetch_at(
    name: &str,
    members: Vec<ClusterMember>,
    cluster_version: Option<crate::version::Version>,
) -> Manager {
    let mut m = Manager::new(config(name, 3), DataDir::Empty, 0);
    m.handle_gossip(running("a", 77), 1);
    m.handle_gossip(running("b", 77), 1);
    let out = actions(&mut m);
    assert!(
        matches!(out.as_slice(), [Command::AcquireJoinLock { .. }]),
        "{out:?}"
    );
    m.handle_result(id_of(&out[0]), CommandResult::Done, 2);
    let out = actions(&mut m);
    assert!(
        matches!(out.as_slice(), [Command::FetchMembers { .. }]),
        "{out:?}"
    );
    m.handle_result(
        id_of(&out[0]),
        CommandResult::Members {
            members,
            cluster_size: 3,
            cluster_version,
        },
        3,
    );
    m
}

#[test]
fn a_node_older_than_the_cluster_version_waits_instead_of_joining() {
    let newer = crate::version::Version::new(0, 2, 0);
    let mut m = joiner_after_fetch_at(
        "d",
        vec![member(1, "a", false), member(2, "b", false)],
        Some(newer),
    );
    let out = actions(&mut m);
    assert!(
        matches!(out.as_slice(), [Command::ReleaseJoinLock { .. }]),
        "{out:?}"
    );
    assert_eq!(
        m.waiting_for(),
        "the running cluster's version is 0.2.0 and this node runs e2d 0.1.0: upgrade it to join"
    );
    // At its own version or older, the cluster takes it.
    let baseline = crate::version::CLUSTER_VERSION_BASELINE;
    let mut m = joiner_after_fetch_at(
        "d",
        vec![member(1, "a", false), member(2, "b", false)],
        Some(baseline),
    );
    assert!(matches!(
        actions(&mut m).as_slice(),
        [Command::AddLearner { .. }]
    ));
}

#[test]
fn the_leader_records_the_lowest_version_once_every_member_runs_a_newer_one() {
    use crate::version::Version;
    let (v2, v3) = (Version::new(0, 2, 0), Version::new(0, 3, 0));
    let mut m = running_manager_with(
        ManagerConfig {
            version: v3,
            ..config("a", 3)
        },
        1,
        1,
    );
    let at = |name: &str, version: &str| {
        let mut node = running(name, 77);
        node.meta.version = version.into();
        node
    };
    // b runs 0.2.0, c does not say: nothing is recorded.
    m.handle_gossip(at("b", "0.2.0"), 1);
    assert!(actions(&mut m).is_empty());
    // c runs a version this node cannot read: still nothing.
    m.handle_gossip(at("c", "0.3.0-rc.1"), 2);
    assert!(actions(&mut m).is_empty());
    m.handle_gossip(at("c", "0.3.0"), 3);
    let out = actions(&mut m);
    match out.as_slice() {
        [Command::SetClusterVersion {
            id,
            version,
            expected,
        }] => {
            assert_eq!(*version, v2, "the lowest");
            assert_eq!(*expected, vec![1, 2, 3], "the members it was decided on");
            m.handle_result(*id, CommandResult::Done, 4);
        }
        other => panic!("{other:?}"),
    }
    let mut recorded = status(1, 1, abc());
    recorded.cluster_version = Some(v2);
    m.handle_server_status(recorded.clone(), 5);
    assert!(actions(&mut m).is_empty(), "recorded already");
    // A follower never records it.
    let mut follower = running_manager_with(
        ManagerConfig {
            version: v3,
            ..config("b", 3)
        },
        2,
        1,
    );
    follower.handle_gossip(at("a", "0.3.0"), 1);
    follower.handle_gossip(at("c", "0.3.0"), 1);
    follower.handle_server_status(status(2, 1, abc()), 2);
    assert!(actions(&mut follower).is_empty());
}

#[test]
fn joins_a_running_cluster_as_a_learner() {
    let mut m = joiner_after_fetch("d", vec![member(1, "a", false), member(2, "b", false)]);
    let out = actions(&mut m);
    assert!(
        matches!(out.as_slice(), [Command::AddLearner { .. }]),
        "{out:?}"
    );
    let after = vec![
        member(1, "a", false),
        member(2, "b", false),
        member(4, "", true),
    ];
    m.handle_result(
        id_of(&out[0]),
        CommandResult::Members {
            members: after.clone(),
            cluster_size: 3,
            cluster_version: None,
        },
        4,
    );
    let out = actions(&mut m);
    match out.as_slice() {
        [Command::StartJoined { members, .. }] => assert_eq!(*members, after),
        other => panic!("{other:?}"),
    }
    m.handle_result(id_of(&out[0]), CommandResult::Started { cluster_id: 77 }, 5);
    let out = drain(&mut m);
    assert!(out
        .iter()
        .any(|c| matches!(c, Command::ReleaseJoinLock { .. })));
    let meta = last_meta(&out).unwrap();
    assert_eq!((meta.status, meta.cluster_id), (NodeStatus::Running, 77));
}

#[test]
fn removes_its_old_member_before_joining_again() {
    // "c" lost its disk; the cluster still lists it.
    let mut m = joiner_after_fetch("c", abc());
    match actions(&mut m).as_slice() {
        [Command::RemoveMember {
            member_id: 3,
            reason: RemovalReason::Replaced,
            through,
            ..
        }] => assert!(!through.is_empty()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_newcomer_on_a_members_peer_url_replaces_it_at_once() {
    let mut old = member(3, "old-c", false);
    old.peer_url = "http://c:2380".into();
    let mut m = joiner_after_fetch("c", vec![member(1, "a", false), member(2, "b", false), old]);
    assert!(matches!(
        actions(&mut m).as_slice(),
        [Command::RemoveMember { member_id: 3, .. }]
    ));
}

#[test]
fn old_member_is_not_removed_without_a_quorum_of_live_voters() {
    // Only "a" runs in view; removing "c" from a, b, c leaves a, b with one
    // live voter: below quorum.
    let mut m = Manager::new(config("c", 3), DataDir::Empty, 0);
    m.handle_gossip(running("a", 77), 1);
    m.handle_gossip(dead(running("b", 77)), 1);
    let out = actions(&mut m);
    m.handle_result(id_of(&out[0]), CommandResult::Done, 2);
    let out = actions(&mut m);
    m.handle_result(
        id_of(&out[0]),
        CommandResult::Members {
            members: abc(),
            cluster_size: 3,
            cluster_version: None,
        },
        3,
    );
    let out = actions(&mut m);
    assert!(
        out.iter()
            .all(|c| !matches!(c, Command::RemoveMember { .. })),
        "{out:?}"
    );
    assert!(out
        .iter()
        .any(|c| matches!(c, Command::ReleaseJoinLock { .. })));
}

#[test]
fn waits_for_a_vacancy_when_the_cluster_is_full() {
    let mut m = joiner_after_fetch("d", abc());
    let out = actions(&mut m);
    assert!(
        matches!(out.as_slice(), [Command::ReleaseJoinLock { .. }]),
        "{out:?}"
    );
    assert!(m.waiting_for().contains("vacancy"));
}

#[test]
fn leader_removes_a_member_missing_past_the_health_check_timeout() {
    let mut m = running_manager("a", 1, 1);
    m.handle_gossip(dead(running("c", 77)), 1_000);
    for t in (2_000..1_000 + HEALTH_TIMEOUT_MS).step_by(1_000) {
        m.handle_timeout(t);
        assert!(actions(&mut m).is_empty(), "removed too early at {t}");
    }
    m.handle_timeout(1_000 + HEALTH_TIMEOUT_MS);
    match actions(&mut m).as_slice() {
        [Command::RemoveMember {
            member_id: 3,
            reason: RemovalReason::HealthCheckTimeout,
            ..
        }] => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_member_back_in_gossip_resets_its_health_check_clock() {
    let mut m = running_manager("a", 1, 1);
    m.handle_gossip(dead(running("c", 77)), 1_000);
    m.handle_timeout(5_000);
    m.handle_gossip(running("c", 77), 6_000);
    m.handle_gossip(dead(running("c", 77)), 7_000);
    m.handle_timeout(1_000 + HEALTH_TIMEOUT_MS);
    assert!(actions(&mut m).is_empty());
    m.handle_timeout(7_000 + HEALTH_TIMEOUT_MS);
    assert_eq!(actions(&mut m).len(), 1);
}

#[test]
fn followers_never_remove_members() {
    let mut m = running_manager("b", 2, 1);
    m.handle_gossip(dead(running("c", 77)), 1_000);
    m.handle_timeout(100 * HEALTH_TIMEOUT_MS);
    assert!(actions(&mut m).is_empty());
}

#[test]
fn a_minority_partition_changes_no_membership() {
    // "a" leads (stale) but sees b and c dead: no quorum in view.
    let mut m = running_manager("a", 1, 1);
    m.handle_gossip(dead(running("b", 77)), 1_000);
    m.handle_gossip(dead(running("c", 77)), 1_000);
    m.handle_timeout(100 * HEALTH_TIMEOUT_MS);
    assert!(actions(&mut m).is_empty());
    assert!(m.waiting_for().contains("no membership changes"));
}

#[test]
fn leader_promotes_a_caught_up_learner() {
    let mut m = running_manager("a", 1, 1);
    let mut learner = member(4, "d", true);
    let members = vec![
        member(1, "a", false),
        member(2, "b", false),
        learner.clone(),
    ];
    m.handle_gossip(running("d", 77), 1);
    m.handle_server_status(status(1, 1, members.clone()), 1);
    assert!(actions(&mut m).is_empty(), "not caught up yet");
    learner.caught_up = true;
    let members = vec![member(1, "a", false), member(2, "b", false), learner];
    m.handle_server_status(status(1, 1, members), 2);
    assert!(matches!(
        actions(&mut m).as_slice(),
        [Command::PromoteMember { member_id: 4, .. }]
    ));
}

#[test]
fn no_promotion_beyond_the_required_size() {
    // A learner beyond the size (the cluster was resized while it joined)
    // is not promoted: it is removed.
    let mut m = running_manager("a", 1, 1);
    let members = abc_and_caught_up_learner_d();
    m.handle_gossip(running("d", 77), 1);
    m.handle_server_status(status(1, 1, members), 2);
    assert_eq!(removal(&actions(&mut m)), Some((4, RemovalReason::Resize)));
}

#[test]
fn a_removed_member_moves_its_data_dir_aside_then_joins_again() {
    let mut m = running_manager("c", 3, 1);
    m.handle_server_removed(&abc(), 5);
    let out = actions(&mut m);
    assert!(
        matches!(out.as_slice(), [Command::ArchiveDataDir { .. }]),
        "{out:?}"
    );
    m.handle_result(id_of(&out[0]), CommandResult::Done, 6);
    assert!(matches!(
        actions(&mut m).as_slice(),
        [Command::AcquireJoinLock { .. }]
    ));
}

#[test]
fn a_failed_start_is_retried_after_the_retry_interval() {
    let mut m = Manager::new(config("a", 1), DataDir::Empty, 0);
    let out = actions(&mut m);
    m.handle_result(
        id_of(&out[0]),
        CommandResult::Failed("port in use".into()),
        1,
    );
    assert!(actions(&mut m).is_empty());
    m.handle_timeout(1 + RETRY_MS);
    assert!(matches!(
        actions(&mut m).as_slice(),
        [Command::StartNewCluster { .. }]
    ));
}

#[test]
fn answers_to_unknown_commands_are_ignored() {
    let mut m = Manager::new(config("a", 1), DataDir::Empty, 0);
    let out = actions(&mut m);
    m.handle_result(
        id_of(&out[0]) + 100,
        CommandResult::Started { cluster_id: 1 },
        1,
    );
    assert!(!m.is_running());
    m.handle_result(id_of(&out[0]), CommandResult::Started { cluster_id: 1 }, 1);
    assert!(m.is_running());
}

#[test]
fn config_refuses_even_or_oversized_clusters() {
    for size in [0, 2, 4, 11] {
        let err = config("a", size).validate().unwrap_err();
        assert!(err.to_string().contains("odd number"), "{err}");
    }
    for size in [1, 3, 5, 7, 9] {
        config("a", size).validate().unwrap();
    }
}

fn running_with_voters(name: &str, cluster_id: u64, voters: &[&str]) -> MemberView {
    let mut m = running(name, cluster_id);
    m.meta.cluster_voters = voters.iter().map(|s| s.to_string()).collect();
    m
}

#[test]
fn no_new_cluster_while_a_remembered_cluster_may_have_a_quorum() {
    // a and b ran cluster 5 with c; now they are out of reach, c came back
    // empty and d, e are new: a and b may still serve cluster 5 together.
    let mut m = Manager::new(config("c", 3), DataDir::Empty, 0);
    m.handle_gossip(dead(running_with_voters("a", 5, &["a", "b", "c"])), 1);
    m.handle_gossip(dead(running_with_voters("b", 5, &["a", "b", "c"])), 1);
    m.handle_gossip(pending("d"), 1);
    m.handle_gossip(pending("e"), 1);
    let out = drain(&mut m);
    assert!(last_meta(&out).unwrap().founders.is_empty());
    assert!(
        m.waiting_for().contains("may still run on a, b"),
        "{}",
        m.waiting_for()
    );
}

#[test]
fn founds_again_when_the_remembered_cluster_cannot_have_a_quorum() {
    // Total failure: a is gone for good, b came back without its data.
    let mut m = Manager::new(config("c", 3), DataDir::Empty, 0);
    m.handle_gossip(dead(running_with_voters("a", 5, &["a", "b", "c"])), 1);
    m.handle_gossip(pending("b"), 1);
    m.handle_gossip(pending("d"), 1);
    let out = drain(&mut m);
    assert_eq!(last_meta(&out).unwrap().founders, vec!["b", "c", "d"]);
}

#[test]
fn a_voter_its_cluster_removed_is_not_counted_as_lost() {
    // a last showed cluster 5 with voters a and b; b says cluster 5
    // removed it, so a alone may still serve cluster 5 behind a partition.
    let setup = |b_removed: bool| {
        let mut m = Manager::new(config("c", 3), DataDir::Empty, 0);
        m.handle_gossip(dead(running_with_voters("a", 5, &["a", "b"])), 1);
        let mut b = pending("b");
        if b_removed {
            b.meta.removed_from = 5;
        }
        m.handle_gossip(b, 1);
        m.handle_gossip(pending("d"), 1);
        let out = drain(&mut m);
        (m, out)
    };
    let (m, out) = setup(true);
    assert!(last_meta(&out).unwrap().founders.is_empty());
    assert!(
        m.waiting_for().contains("may still run on a "),
        "{}",
        m.waiting_for()
    );
    // Without the record, b is a voter out of the cluster: a alone is not
    // a quorum of two, so the three found again.
    let (_, out) = setup(false);
    assert_eq!(last_meta(&out).unwrap().founders, vec!["b", "c", "d"]);
}

#[test]
fn a_removed_member_publishes_and_records_the_cluster_that_removed_it() {
    let mut m = running_manager("a", 1, 1);
    m.handle_server_removed(&abc(), 2);
    let out = drain(&mut m);
    // It records the cluster and the voters it goes on with.
    let removal = Removal {
        cluster_id: 77,
        voters: vec!["b".into(), "c".into()],
    };
    let archived = out.iter().find_map(|c| match c {
        Command::ArchiveDataDir { removed_from, .. } => Some(removed_from.clone()),
        _ => None,
    });
    assert_eq!(archived, Some(Some(removal.clone())), "{out:?}");
    assert_eq!(last_meta(&out).unwrap().removed_from, 77);
    // Started again from the record alone, it still says so, and waits
    // while those voters may still run the cluster.
    let mut cfg = config("a", 3);
    cfg.removed_from = Some(removal);
    let mut again = Manager::new(cfg, DataDir::Empty, 0);
    again.handle_gossip(pending("d"), 1);
    again.handle_gossip(pending("e"), 1);
    let out = drain(&mut again);
    assert_eq!(last_meta(&out).unwrap().removed_from, 77);
    assert!(last_meta(&out).unwrap().founders.is_empty());
    assert!(
        again
            .waiting_for()
            .contains("cluster 4d may still run on b, c"),
        "{}",
        again.waiting_for()
    );
    // Once b and c are seen out of it (back without their data), it
    // helps found a new one.
    again.handle_gossip(pending("b"), 2);
    again.handle_gossip(pending("c"), 2);
    let out = drain(&mut again);
    assert_eq!(last_meta(&out).unwrap().founders, vec!["a", "b", "c"]);
}

#[test]
fn running_nodes_publish_their_voters_and_founding_digest() {
    let proposal = Proposal {
        founders: vec!["a".into(), "b".into(), "c".into()],
        restore: Some("snap".into()),
    };
    let mut m = Manager::new(
        config("a", 3),
        DataDir::Member {
            cluster_id: 77,
            member_id: 1,
            founders: Some(proposal.clone()),
            recovery_left_to: None,
        },
        0,
    );
    let restart = actions(&mut m);
    m.handle_result(
        id_of(&restart[0]),
        CommandResult::Started { cluster_id: 77 },
        0,
    );
    let mut members = abc();
    members[2].name = String::new();
    m.handle_server_status(status(1, 1, members), 1);
    let out = drain(&mut m);
    let meta = last_meta(&out).unwrap();
    assert_eq!(meta.cluster_voters, vec!["a", "b", "#3"]);
    assert_eq!(meta.founders_digest, proposal.digest());
    assert!(meta.founders.is_empty(), "the digest stands for the set");
}

#[test]
fn adopts_only_a_committed_proposal_that_can_still_start() {
    // b committed to {a, b, c}, but c committed to {a, c, d}: only the
    // second can still start, and it needs a.
    let mut m = Manager::new(config("a", 3), DataDir::Empty, 0);
    m.handle_gossip(proposing("b", &["a", "b", "c"], true), 1);
    m.handle_gossip(proposing("c", &["a", "c", "d"], true), 1);
    m.handle_gossip(proposing("d", &["a", "c", "d"], true), 1);
    let out = drain(&mut m);
    assert_eq!(last_meta(&out).unwrap().founders, vec!["a", "c", "d"]);
}

fn resized(mut status: ServerStatus, size: usize) -> ServerStatus {
    status.cluster_size = Some(size);
    status
}

/// The member a removal command names, with its reason.
fn removal(commands: &[Command]) -> Option<(u64, RemovalReason)> {
    match commands {
        [Command::RemoveMember {
            member_id, reason, ..
        }] => Some((*member_id, *reason)),
        _ => None,
    }
}

#[test]
fn resize_down_removes_learners_then_missing_then_the_highest_follower_never_the_leader() {
    // Leader b (2) of a, b, c and learner d; resized to 1.
    let mut m = running_manager("b", 2, 2);
    m.handle_gossip(running("d", 77), 1);
    let mut members = abc();
    members.push(member(4, "d", true));
    m.handle_server_status(resized(status(2, 2, members), 1), 2);
    let out = actions(&mut m);
    assert_eq!(removal(&out), Some((4, RemovalReason::Resize)));
    m.handle_result(id_of(&out[0]), CommandResult::Done, 2);
    // a is missing from gossip: it goes before c, though its id is lower.
    m.handle_gossip(dead(running("a", 77)), 3);
    m.handle_server_status(resized(status(2, 2, abc()), 1), 4);
    let out = actions(&mut m);
    // Removing a (dead) keeps b and c, both live: a quorum of 2.
    assert_eq!(removal(&out), Some((1, RemovalReason::Resize)), "{out:?}");
    let bc = vec![member(2, "b", false), member(3, "c", false)];
    m.handle_result(id_of(&out[0]), CommandResult::Done, 5);
    m.handle_server_status(resized(status(2, 2, bc), 1), 6);
    assert_eq!(removal(&actions(&mut m)), Some((3, RemovalReason::Resize)));
    m.handle_server_status(resized(status(2, 2, vec![member(2, "b", false)]), 1), 7);
    assert!(actions(&mut m).is_empty());
    assert_eq!(m.cluster_size(), 1);
}

#[test]
fn resize_down_keeps_a_quorum_of_live_voters() {
    // Resized from 3 to 1 while c is dead: removing a (live) would leave b
    // and c, of whom only b is live; c must go first, and it may.
    let mut m = running_manager("b", 2, 2);
    m.handle_gossip(dead(running("c", 77)), 1);
    m.handle_server_status(resized(status(2, 2, abc()), 1), 2);
    assert_eq!(removal(&actions(&mut m)), Some((3, RemovalReason::Resize)));
    // With a and c both dead nothing can go: no quorum is live.
    let mut m = running_manager("b", 2, 2);
    m.handle_gossip(dead(running("a", 77)), 1);
    m.handle_gossip(dead(running("c", 77)), 1);
    m.handle_server_status(resized(status(2, 2, abc()), 1), 2);
    assert!(removal(&actions(&mut m)).is_none());
}

#[test]
fn followers_do_not_resize_and_the_leader_grows_only_to_the_new_size() {
    let mut m = running_manager("a", 1, 2);
    m.handle_server_status(resized(status(1, 2, abc()), 1), 1);
    assert!(actions(&mut m).is_empty(), "only the leader removes");
    // Resized up to 5, the leader promotes a caught-up learner past 3.
    let mut m = running_manager("a", 1, 1);
    let members = abc_and_caught_up_learner_d();
    m.handle_gossip(running("d", 77), 1);
    m.handle_server_status(resized(status(1, 1, members), 5), 2);
    assert!(matches!(
        actions(&mut m).as_slice(),
        [Command::PromoteMember {
            member_id: 4,
            cluster_size: 5,
            ..
        }]
    ));
}

#[test]
fn a_member_restarted_with_another_size_proposes_it_once() {
    let mut cfg = config("a", 3);
    cfg.propose_cluster_size = Some(5);
    let mut m = Manager::new(
        cfg,
        DataDir::Member {
            cluster_id: 77,
            member_id: 1,
            founders: None,
            recovery_left_to: None,
        },
        0,
    );
    let restart = actions(&mut m);
    m.handle_result(
        id_of(&restart[0]),
        CommandResult::Started { cluster_id: 77 },
        0,
    );
    // No leader yet: nothing to propose through.
    m.handle_server_status(status(1, 0, abc()), 1);
    assert!(actions(&mut m).is_empty());
    m.handle_server_status(status(1, 2, abc()), 2);
    let out = actions(&mut m);
    assert!(
        matches!(
            out.as_slice(),
            [Command::ProposeClusterSize { size: 5, .. }]
        ),
        "{out:?}"
    );
    m.handle_result(id_of(&out[0]), CommandResult::Done, 3);
    m.handle_server_status(resized(status(1, 2, abc()), 3), 4);
    assert!(
        actions(&mut m).is_empty(),
        "proposed once: a later resize by the operator stands"
    );
}

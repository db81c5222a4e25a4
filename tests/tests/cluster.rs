//! Replicated clusters formed with --initial-cluster: writes through any
//! member, leader failover, restarts that catch up.

use std::thread;
use std::time::{Duration, Instant};

use e2d_tests::cluster::Cluster;

/// Asserts that members `which` report the same store revision.
fn assert_same_revision(cluster: &Cluster, which: &[usize]) {
    let revisions: Vec<String> = which
        .iter()
        .map(|&i| {
            let status = cluster.members[i]
                .etcdctl(&["endpoint", "status", "-w", "json"])
                .ok()
                .json();
            status[0]["Status"]["header"]["revision"].to_string()
        })
        .collect();
    assert!(
        revisions.windows(2).all(|w| w[0] == w[1]),
        "revisions differ: {revisions:?}"
    );
}

/// Reads `key` from member `i` (linearizable) and returns its value.
fn get(cluster: &Cluster, i: usize, key: &str) -> String {
    cluster.members[i]
        .etcdctl(&["get", key, "--print-value-only"])
        .ok()
        .out()
        .trim()
        .to_string()
}

#[test]
fn writes_through_any_member_are_read_from_every_member() {
    let cluster = Cluster::start(3);
    for i in 0..3 {
        cluster.members[i]
            .etcdctl(&["put", &format!("from-{i}"), &format!("v{i}")])
            .ok();
    }
    for reader in 0..3 {
        for writer in 0..3 {
            assert_eq!(
                get(&cluster, reader, &format!("from-{writer}")),
                format!("v{writer}")
            );
        }
    }
    let list = cluster.members[0]
        .etcdctl(&["member", "list"])
        .ok()
        .out()
        .to_string();
    for member in &cluster.members {
        assert!(
            list.contains(&member.name),
            "member list lacks {}: {list}",
            member.name
        );
        assert!(
            list.contains(&member.endpoint()),
            "member list lacks {}: {list}",
            member.endpoint()
        );
    }
}

#[test]
fn killing_the_leader_elects_another_and_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let writer = (leader + 1) % 3;
    for n in 0..40 {
        cluster.members[writer]
            .etcdctl(&["put", &format!("k{n:02}"), &n.to_string()])
            .ok();
    }
    cluster.kill9(leader);
    let killed_at = Instant::now();
    cluster.put_eventually(writer, "after", "failover");
    eprintln!(
        "a write succeeded {:?} after the leader was killed",
        killed_at.elapsed()
    );
    let new_leader = cluster.leader();
    assert_ne!(new_leader, leader);
    let survivor = 3 - leader - writer;
    for n in 0..40 {
        assert_eq!(get(&cluster, survivor, &format!("k{n:02}")), n.to_string());
    }
    assert_eq!(get(&cluster, survivor, "after"), "failover");
}

#[test]
fn a_restarted_member_catches_up_from_its_data_dir() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    cluster.members[leader]
        .etcdctl(&["put", "before", "1"])
        .ok();
    cluster.kill9(follower);
    for n in 0..20 {
        cluster.members[leader]
            .etcdctl(&["put", &format!("while-down-{n}"), "x"])
            .ok();
    }
    cluster.start_member(follower);
    cluster.wait_for_leader(None);
    wait_for_keys(&cluster, follower, "while-down-", 20);
    assert_eq!(get(&cluster, follower, "before"), "1");
    assert_same_revision(&cluster, &[0, 1, 2]);
}

#[test]
fn five_members_survive_two_failures() {
    let mut cluster = Cluster::start(5);
    let leader = cluster.leader();
    cluster.members[leader]
        .etcdctl(&["put", "five", "members"])
        .ok();
    let follower = (leader + 1) % 5;
    cluster.kill9(follower);
    cluster.kill9(leader);
    let reader = (leader + 2) % 5;
    cluster.put_eventually(reader, "three", "left");
    assert_eq!(get(&cluster, reader, "five"), "members");
    assert_eq!(get(&cluster, (leader + 3) % 5, "three"), "left");
}

#[test]
fn a_member_cut_off_from_the_leader_refuses_requests_that_require_one() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let alone = (leader + 1) % 3;
    cluster.kill9(leader);
    cluster.kill9(3 - leader - alone);
    let endpoint = cluster.members[alone].endpoint();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let options = etcd_client::ConnectOptions::new().with_require_leader(true);
        let mut client = etcd_client::Client::connect([endpoint.as_str()], Some(options))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let options = etcd_client::GetOptions::new().with_serializable();
            match client.get("any", Some(options)).await {
                Err(etcd_client::Error::GRpcStatus(status)) => {
                    assert_eq!(status.code(), tonic::Code::Unavailable);
                    assert_eq!(status.message(), "etcdserver: no leader");
                    break;
                }
                other => assert!(
                    Instant::now() < deadline,
                    "a member alone kept answering as if it had a leader: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

#[test]
fn status_says_which_member_is_a_learner() {
    let mut cluster = Cluster::start(1);
    let learner = cluster.join(0, true);
    let is_learner = |i: usize| {
        let status = cluster.members[i]
            .etcdctl(&["endpoint", "status", "-w", "json"])
            .json();
        // etcdctl leaves out a false isLearner.
        status[0]["Status"]["isLearner"].as_bool() == Some(true)
    };
    assert!(is_learner(learner));
    assert!(!is_learner(0));
}

#[test]
fn a_learner_joins_catches_up_is_promoted_and_the_leader_can_be_removed() {
    let mut cluster = Cluster::start(3);
    for n in 0..30 {
        cluster.members[0]
            .etcdctl(&["put", &format!("k{n:02}"), "x"])
            .ok();
    }
    let learner = cluster.join(1, true);
    let listed = cluster.members[0]
        .etcdctl(&["member", "list"])
        .ok()
        .out()
        .to_string();
    assert!(
        listed
            .lines()
            .any(|l| l.contains(", m3, ") && l.ends_with("true")),
        "the new member is not a started learner: {listed}"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen = cluster.members[learner].etcdctl(&[
            "get",
            "k29",
            "--print-value-only",
            "--consistency=s",
        ]);
        if seen.success() && seen.out().trim() == "x" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the learner did not catch up: {seen}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let id = cluster.member_id(learner);
    cluster.members[2].etcdctl(&["member", "promote", &id]).ok();
    let listed = cluster.members[0]
        .etcdctl(&["member", "list"])
        .ok()
        .out()
        .to_string();
    assert_eq!(
        listed.lines().filter(|l| l.ends_with("false")).count(),
        4,
        "{listed}"
    );

    let leader = cluster.leader();
    let leader_id = cluster.member_id(leader);
    let other = (leader + 1) % 4;
    cluster.members[other]
        .etcdctl(&["member", "remove", &leader_id])
        .ok();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cluster.has_exited(leader) {
        assert!(Instant::now() < deadline, "the removed leader kept running");
        thread::sleep(Duration::from_millis(50));
    }
    cluster.wait_for_leader(None);
    cluster.put_eventually(learner, "after-removal", "ok");
    assert_eq!(get(&cluster, other, "after-removal"), "ok");
    let listed = cluster.members[other]
        .etcdctl(&["member", "list"])
        .ok()
        .out()
        .to_string();
    assert_eq!(listed.lines().count(), 3, "{listed}");
}

#[test]
fn membership_changes_that_would_lose_quorum_are_refused() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let dead = (leader + 1) % 3;
    let alive = (leader + 2) % 3;
    cluster.kill9(dead);
    // The leader counts a member as started while it heard from it within
    // the last election timeout or two.
    thread::sleep(Duration::from_secs(3));
    let alive_id = cluster.member_id(alive);
    cluster.members[leader]
        .etcdctl(&["member", "remove", &alive_id])
        .fails_with("etcdserver: re-configuration failed due to not enough started members");
    cluster.members[leader]
        .etcdctl(&["member", "remove", "1234"])
        .fails_with("etcdserver: member not found");
    cluster.members[leader]
        .etcdctl(&[
            "member",
            "add",
            "x",
            "--peer-urls",
            &format!("http://127.0.0.1:{}", cluster.members[alive].peer_port),
        ])
        .fails_with("etcdserver: Peer URLs already exists");
    cluster.members[leader]
        .etcdctl(&["member", "promote", &alive_id])
        .fails_with("etcdserver: can only promote a learner member");
}

/// Learner adds sent to the leader at once each pass its check before any
/// of them applies; the driver proposes them one after another, and the
/// check when each is applied refuses all but the first with etcd's
/// error, on every member alike.
#[test]
fn learner_adds_sent_together_leave_one_learner_on_every_member() {
    /// Adds sent at once: more than one makes the race, more than two
    /// makes it likelier that two of them pass the leader's check.
    const ADDS: u16 = 3;
    /// Time each add may take; a change raft dropped would never answer.
    const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
    let cluster = Cluster::start(3);
    let leader = cluster.leader();
    let endpoint = cluster.members[leader].endpoint();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answers = runtime.block_on(async {
        let client = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .unwrap();
        let mut adds = tokio::task::JoinSet::new();
        for i in 0..ADDS {
            let mut cluster_client = client.cluster_client();
            // Nothing listens there: the learners are never started.
            let url = format!("http://127.0.0.1:{}", 1 + i);
            adds.spawn(async move {
                let options = etcd_client::MemberAddOptions::new().with_is_learner();
                let add = cluster_client.member_add([url], Some(options));
                tokio::time::timeout(ANSWER_TIMEOUT, add)
                    .await
                    .expect("a member add was never answered")
            });
        }
        adds.join_all().await
    });
    let added = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(added, 1, "one add succeeds: {answers:?}");
    for answer in answers.iter().filter_map(|a| a.as_ref().err()) {
        let etcd_client::Error::GRpcStatus(status) = answer else {
            panic!("not a gRPC status: {answer:?}");
        };
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
        assert_eq!(
            status.message(),
            "etcdserver: too many learner members in cluster"
        );
    }
    // Every member applied the same changes: the same list, one learner.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lists: Vec<String> = (0..3)
            .map(|i| {
                cluster.members[i]
                    .etcdctl(&["member", "list"])
                    .ok()
                    .out()
                    .to_string()
            })
            .collect();
        let agreed = lists.windows(2).all(|w| w[0] == w[1]);
        let learners = lists[0].lines().filter(|l| l.ends_with(", true")).count();
        if agreed && lists[0].lines().count() == 4 && learners == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "members disagree or hold other than one learner: {lists:#?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_watch_on_a_follower_sees_every_write_in_order() {
    let cluster = Cluster::start(3);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let mut watch = e2d_tests::spawn_etcdctl(
        &cluster.members[follower].endpoint(),
        &["watch", "w/", "--prefix"],
    );
    thread::sleep(Duration::from_millis(300));
    for n in 0..50 {
        cluster.members[leader]
            .etcdctl(&["put", &format!("w/{n:02}"), &n.to_string()])
            .ok();
    }
    let lines = watch.lines(150, Duration::from_secs(15));
    let expected: Vec<String> = (0..50)
        .flat_map(|n| ["PUT".to_string(), format!("w/{n:02}"), n.to_string()])
        .collect();
    assert_eq!(lines, expected);
}

/// Waits until member `i` serves `count` keys under `prefix` from its own
/// state.
fn wait_for_keys(cluster: &Cluster, i: usize, prefix: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = cluster.members[i].etcdctl(&[
            "get",
            prefix,
            "--prefix",
            "--keys-only",
            "--consistency=s",
        ]);
        let found = seen.out().lines().filter(|l| !l.is_empty()).count();
        if seen.success() && found == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member {i} has {found} of {count} keys under {prefix}: {seen}\n{}",
            cluster.members[i].log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn members_behind_a_compacted_log_catch_up_from_a_snapshot() {
    let mut cluster = Cluster::start_with(3, &["--snapshot-count", "20"]);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    cluster.kill9(follower);
    for n in 0..120 {
        cluster.members[leader]
            .etcdctl(&["put", &format!("s/{n:03}"), "x"])
            .ok();
    }
    cluster.start_member(follower);
    wait_for_keys(&cluster, follower, "s/", 120);
    assert!(
        cluster.members[follower]
            .log()
            .contains("installed a snapshot"),
        "the follower caught up without a snapshot"
    );

    let joined = cluster.join(leader, true);
    wait_for_keys(&cluster, joined, "s/", 120);
    assert!(
        cluster.members[joined]
            .log()
            .contains("installed a snapshot"),
        "the new member caught up without a snapshot"
    );
    cluster.members[leader]
        .etcdctl(&["put", "s/after", "y"])
        .ok();
    wait_for_keys(&cluster, joined, "s/", 121);
    // A member whose own log was compacted restarts from it.
    cluster.kill9(leader);
    cluster.start_member(leader);
    cluster.wait_for_leader(None);
    wait_for_keys(&cluster, leader, "s/", 121);
    assert_same_revision(&cluster, &[leader, follower, joined]);
}

/// The log is held in memory, so it is compacted by its bytes too, not
/// only every `--snapshot-count` entries: a follower that missed 80 MiB of
/// large entries catches up from a snapshot although they are only 80.
#[test]
fn a_log_of_large_entries_is_compacted_by_its_bytes() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    cluster.kill9(follower);
    let value = vec![b'v'; 1024 * 1024];
    for n in 0..80 {
        cluster.members[leader]
            .etcdctl_stdin(&["put", &format!("big/{n:02}")], &value)
            .ok();
    }
    cluster.start_member(follower);
    wait_for_keys(&cluster, follower, "big/", 80);
    assert!(
        cluster.members[follower]
            .log()
            .contains("installed a snapshot"),
        "the follower caught up from the log: it was not compacted"
    );
    assert_same_revision(&cluster, &[leader, follower]);
}

#[test]
fn a_member_of_another_cluster_is_refused() {
    let cluster = Cluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stray.log");
    let stray_peer = format!("http://127.0.0.1:{}", e2d_tests::free_port());
    let initial = format!(
        "stray={stray_peer},m0=http://127.0.0.1:{}",
        cluster.members[0].peer_port
    );
    let log = std::fs::File::create(&log_path).unwrap();
    let mut stray = std::process::Command::new(e2d_tests::e2d_bin())
        .args(["run", "--name", "stray", "--initial-cluster", &initial])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--client-addr",
            &format!("127.0.0.1:{}", e2d_tests::free_port()),
        ])
        .args(["--peer-addr", stray_peer.trim_start_matches("http://")])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let refused = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("cluster ID mismatch") {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let _ = stray.kill();
    let _ = stray.wait();
    assert!(
        refused,
        "the stray member was not told it belongs to another cluster:\n{}\n--- m0 ---\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default(),
        cluster.members[0].log()
    );
    assert!(cluster.members[0]
        .log()
        .contains("refused raft traffic from another cluster"));
    cluster.members[0].etcdctl(&["put", "still", "fine"]).ok();
}

/// Linearizable reads sent at the same moment to every member of a fresh
/// cluster all wait in the leader's read-index queue at once; each must be
/// answered, none may wait out its deadline.
#[test]
fn simultaneous_linearizable_reads_on_every_member_are_all_answered() {
    const ROUNDS: usize = 30;
    const READ_TIMEOUT: Duration = Duration::from_secs(3);
    let cluster = Cluster::start(3);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let mut clients = Vec::new();
        for member in &cluster.members {
            let url = format!("http://{}", member.endpoint());
            let client = etcd_client::Client::connect([url], None)
                .await
                .expect("connect");
            clients.push(client);
        }
        for round in 0..ROUNDS {
            let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(clients.len()));
            let reads: Vec<_> = clients
                .iter()
                .cloned()
                .map(|mut client| {
                    let barrier = barrier.clone();
                    tokio::spawn(async move {
                        barrier.wait().await;
                        tokio::time::timeout(READ_TIMEOUT, client.get("round", None)).await
                    })
                })
                .collect();
            for (member, read) in reads.into_iter().enumerate() {
                match read.await.expect("the read task ends") {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => panic!("round {round}: the read on member {member} failed: {e}"),
                    Err(_) => panic!("round {round}: the read on member {member} hung"),
                }
            }
        }
    });
}

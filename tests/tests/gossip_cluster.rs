//! Self-bootstrapping, self-healing clusters: every node runs
//! `e2d run -n N --bootstrap-addrs ...` and the cluster forms, replaces
//! dead members and takes restarted ones back on its own.
//!
//! The tests run one at a time: each starts up to seven processes whose
//! failure detection works on second scales.

use std::net::Ipv4Addr;
use std::time::Duration;

use e2d_tests::gossip_cluster::{GossipCluster, Node, QUICK_HEALTH_CHECKS};
use e2d_tests::netns::Lab;
use e2d_tests::one_at_a_time;

/// Founding: gossip rounds, the settle time, then an election.
const FORM_TIMEOUT: Duration = Duration::from_secs(40);
/// Suspicion and death in gossip, the health-check timeout, then a join.
const HEAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until every running node serves with a leader and lists exactly
/// the running nodes as voters.
fn wait_until_whole(cluster: &GossipCluster, what: &str, timeout: Duration) {
    cluster.wait_until(what, timeout, |c| {
        c.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_running())
            .all(|(i, n)| n.is_healthy() && c.has_running_nodes_as_voters(i))
    });
}

/// A health check too slow to remove anyone during a test.
const SLOW_HEALTH_CHECKS: &[&str] = &[
    "--health-check-interval",
    "1s",
    "--health-check-timeout",
    "5m",
];

/// `size` nodes on loopback, started together, once they form a cluster.
fn formed_on_loopback(size: usize, flags: &[&str]) -> GossipCluster {
    let mut cluster = GossipCluster::on_loopback(size, flags);
    for i in 0..size {
        cluster.start(i);
    }
    wait_until_whole(&cluster, "the nodes form one cluster", FORM_TIMEOUT);
    cluster
}

/// The node that leads, by its own status.
fn leader(cluster: &GossipCluster) -> usize {
    (0..cluster.nodes.len())
        .find(|&i| {
            cluster.nodes[i]
                .status()
                .is_some_and(|s| s["leader_id"] == s["member_id"] && s["member_id"] != "")
        })
        .expect("a node leads")
}

fn put_keys(cluster: &GossipCluster, via: usize, prefix: &str, count: usize) {
    for k in 0..count {
        cluster.put(via, &format!("{prefix}{k:03}"), "v");
    }
}

#[test]
fn three_nodes_started_in_any_order_form_one_cluster() {
    let _serial = one_at_a_time();
    let mut cluster = GossipCluster::on_loopback(3, QUICK_HEALTH_CHECKS);
    for i in [2, 0, 1] {
        cluster.start(i);
        std::thread::sleep(Duration::from_millis(700));
    }
    wait_until_whole(&cluster, "3 nodes form one cluster", FORM_TIMEOUT);
    let members = cluster.members(0).unwrap();
    assert_eq!(members.len(), 3, "{members:?}");
    for i in 1..3 {
        assert_eq!(
            cluster.members(i).unwrap(),
            members,
            "node {i} sees another cluster"
        );
    }
    cluster.put(0, "/greeting", "hello");
    for i in 0..3 {
        let got = cluster.nodes[i].etcdctl(&["get", "/greeting", "--print-value-only"]);
        assert_eq!(got.out().trim(), "hello", "node {i}");
    }
    // `e2d status` shows the same cluster, as a table and as JSON.
    let status = std::process::Command::new(e2d_tests::e2d_bin())
        .args(["status", "--endpoint", &cluster.nodes[1].endpoint()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{table}");
    for member in &members {
        assert!(
            table.contains(&member.id),
            "{} missing from:\n{table}",
            member.id
        );
    }
    assert!(
        table.contains("leader") && table.contains("self"),
        "{table}"
    );
    let json = std::process::Command::new(e2d_tests::e2d_bin())
        .args([
            "status",
            "--json",
            "--endpoint",
            &cluster.nodes[2].endpoint(),
        ])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["state"], "running");
    assert_eq!(json["members"].as_array().unwrap().len(), 3);
    assert_eq!(json["gossip"].as_array().unwrap().len(), 2, "{json}");
}

#[test]
fn a_killed_member_is_removed_and_a_fresh_node_takes_its_place() {
    let _serial = one_at_a_time();
    let mut cluster = formed_on_loopback(3, QUICK_HEALTH_CHECKS);
    put_keys(&cluster, 0, "/before/", 30);
    let dead_id = cluster.nodes[2].member_id().unwrap();
    cluster.kill9(2);
    // The others keep serving while the dead member is still listed.
    put_keys(&cluster, 1, "/during/", 30);
    let fresh = replace_dead_member(&mut cluster, dead_id.clone());
    put_keys(&cluster, fresh, "/after/", 10);
    for i in [0, 1, fresh] {
        for (prefix, count) in [("/before/", 30), ("/during/", 30), ("/after/", 10)] {
            assert_eq!(
                cluster.count(i, prefix),
                Some(count),
                "{prefix} via node {i}"
            );
        }
    }
}

const ROOT: &str = "--user=root:rootpw";

/// Puts as root through node `i`, retrying for up to 20 s (leader
/// elections).
#[track_caller]
fn put_as_root(cluster: &GossipCluster, i: usize, key: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let put = cluster.nodes[i].etcdctl(&[ROOT, "put", key, "v", "--command-timeout=2s"]);
        if put.success() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node {i} accepted no write: {put}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Keys under `prefix`, read as root through node `i`.
fn count_as_root(cluster: &GossipCluster, i: usize, prefix: &str) -> Option<u64> {
    let got =
        cluster.nodes[i].etcdctl(&[ROOT, "get", prefix, "--prefix", "--keys-only", "-w", "json"]);
    got.success()
        .then(|| got.json()["count"].as_u64().unwrap_or(0))
}

#[test]
fn with_auth_enabled_a_killed_member_is_still_replaced() {
    let _serial = one_at_a_time();
    let mut cluster = formed_on_loopback(3, QUICK_HEALTH_CHECKS);
    let etcdctl = |args: &[&str]| cluster.nodes[0].etcdctl(args);
    etcdctl(&["user", "add", "root", "--new-user-password=rootpw"]).ok();
    etcdctl(&["role", "add", "reader"]).ok();
    etcdctl(&[
        "role",
        "grant-permission",
        "reader",
        "--prefix=true",
        "read",
        "/before/",
    ])
    .ok();
    etcdctl(&["user", "add", "alice", "--new-user-password=alicepw"]).ok();
    etcdctl(&["user", "grant-role", "alice", "reader"]).ok();
    etcdctl(&["auth", "enable"]).ok();
    for k in 0..10 {
        put_as_root(&cluster, 0, &format!("/before/{k:03}"));
    }
    let dead_id = cluster.nodes[2].member_id().unwrap();
    cluster.kill9(2);
    // Removing the dead member is a membership change, which auth allows
    // root alone on the client port: the manager makes it as the cluster.
    // Joining takes the join lock (a write to /_e2d/join-lock) and adds
    // a learner, then the leader promotes it.
    let fresh = replace_dead_member(&mut cluster, dead_id.clone());
    // The auth data came along, and auth still holds on the fresh member.
    let node = &cluster.nodes[fresh];
    let users = node.etcdctl(&[ROOT, "user", "list"]);
    assert_eq!(
        users.out().split_whitespace().collect::<Vec<_>>(),
        ["alice", "root"]
    );
    assert_eq!(count_as_root(&cluster, fresh, "/before/"), Some(10));
    let read = node.etcdctl(&[
        "--user=alice:alicepw",
        "get",
        "/before/003",
        "--print-value-only",
    ]);
    assert_eq!(read.out().trim(), "v");
    node.etcdctl(&["--user=alice:alicepw", "put", "/before/003", "w"])
        .fails_with("etcdserver: permission denied");
    node.etcdctl(&["put", "/after/anonymous", "v"])
        .fails_with("etcdserver: user name is empty");
    put_as_root(&cluster, fresh, "/after/root");
    assert_eq!(count_as_root(&cluster, 0, "/after/"), Some(1));
}

#[test]
fn a_restarted_member_rejoins_as_itself_with_its_data() {
    let _serial = one_at_a_time();
    let mut cluster = formed_on_loopback(3, SLOW_HEALTH_CHECKS);
    let members = cluster.members(0).unwrap();
    let id = cluster.nodes[1].member_id().unwrap();
    put_keys(&cluster, 1, "/a/", 10);
    cluster.kill9(1);
    put_keys(&cluster, 0, "/b/", 10);
    cluster.start(1);
    wait_until_whole(&cluster, "the restarted member serves again", FORM_TIMEOUT);
    assert_eq!(cluster.nodes[1].member_id().unwrap(), id);
    assert_eq!(cluster.members(1).unwrap(), members);
    assert_eq!(cluster.count(1, "/a/"), Some(10));
    assert_eq!(cluster.count(1, "/b/"), Some(10));
    let log = cluster.nodes[1].log();
    assert!(
        !log.contains("moved the removed member's data aside"),
        "{log}"
    );
    assert!(!cluster.nodes[1].data_dir().join("archive").exists());
}

#[test]
fn a_new_node_on_a_dead_members_address_replaces_it_at_once() {
    let _serial = one_at_a_time();
    // A health check too slow to matter: the replacement alone removes
    // the old member.
    let mut cluster = formed_on_loopback(3, SLOW_HEALTH_CHECKS);
    put_keys(&cluster, 0, "/k/", 20);
    let old_id = cluster.nodes[2].member_id().unwrap();
    let old_name = cluster.members(0).unwrap()[2].name.clone();
    cluster.kill9(2);
    let fresh = Node::replacing(&cluster.nodes[2]);
    cluster.nodes[2] = fresh;
    cluster.start(2);
    wait_until_whole(
        &cluster,
        "the new node takes the dead member's place",
        HEAL_TIMEOUT,
    );
    let members = cluster.members(0).unwrap();
    assert!(members.iter().all(|m| m.id != old_id), "{members:?}");
    let new = members
        .iter()
        .find(|m| m.peer_url == cluster.nodes[2].peer_url())
        .unwrap();
    assert_ne!(new.name, old_name);
    assert_eq!(cluster.count(2, "/k/"), Some(20));
}

#[test]
fn five_nodes_replace_two_failed_members() {
    let _serial = one_at_a_time();
    let mut cluster = GossipCluster::on_loopback(5, QUICK_HEALTH_CHECKS);
    for i in [4, 3, 2, 1, 0] {
        cluster.start(i);
    }
    wait_until_whole(&cluster, "5 nodes form one cluster", FORM_TIMEOUT);
    put_keys(&cluster, 0, "/five/", 20);
    cluster.kill9(3);
    cluster.kill9(4);
    cluster.wait_until("both dead members are removed", HEAL_TIMEOUT, |c| {
        c.members(0).is_some_and(|m| m.len() == 3)
    });
    put_keys(&cluster, 1, "/three/", 10);
    cluster.add(Node::new(Ipv4Addr::LOCALHOST));
    cluster.add(Node::new(Ipv4Addr::LOCALHOST));
    wait_until_whole(
        &cluster,
        "two fresh nodes fill the cluster again",
        HEAL_TIMEOUT,
    );
    assert_eq!(cluster.members(0).unwrap().len(), 5);
    for i in [0, 5, 6] {
        assert_eq!(cluster.count(i, "/five/"), Some(20), "node {i}");
        assert_eq!(cluster.count(i, "/three/"), Some(10), "node {i}");
    }
}

#[test]
fn a_cut_off_leader_removes_nobody_and_rejoins_after_healing() {
    let _serial = one_at_a_time();
    let lab = match Lab::create(3) {
        Ok(lab) => lab,
        Err(e) => {
            eprintln!("skipped: network namespaces are not available here ({e})");
            return;
        }
    };
    let nodes = (0..3)
        .map(|i| {
            let mut node = Node::new(lab.host(i).ip);
            node.netns = Some(lab.host(i).netns.clone());
            node
        })
        .collect();
    // Removal is quick, but needs a quorum in view: the cut-off side has
    // none, and the partition heals before the majority's timeout.
    let flags = [
        "--health-check-interval",
        "1s",
        "--health-check-timeout",
        "40s",
    ];
    let mut cluster = GossipCluster::new(3, nodes, &flags);
    for i in 0..3 {
        cluster.start(i);
    }
    wait_until_whole(&cluster, "3 nodes form one cluster", FORM_TIMEOUT);
    let members = cluster.members(0).unwrap();
    let leader = leader(&cluster);
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    lab.cut(leader);
    // The majority elects a new leader and keeps serving.
    put_keys(&cluster, a, "/split/", 10);
    cluster.wait_until(
        "gossip on the majority side sees the cut node dead",
        HEAL_TIMEOUT,
        |c| {
            c.nodes[a].status().is_some_and(|s| {
                s["gossip"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|g| g["liveness"] == "dead")
            })
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(cluster.members(a).unwrap(), members, "membership changed");
    lab.heal(leader);
    wait_until_whole(&cluster, "the cut-off node rejoins", HEAL_TIMEOUT);
    assert_eq!(cluster.members(leader).unwrap(), members);
    assert_eq!(cluster.count(leader, "/split/"), Some(10));
    assert_eq!(cluster.count(b, "/split/"), Some(10));
    let log = cluster.nodes[leader].log();
    assert!(!log.contains("removing member"), "{log}");
}

#[test]
fn bad_sizes_and_missing_seeds_are_refused_before_the_data_dir_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let cases: [(&[&str], &str); 5] = [
        (
            &["-n", "2", "--bootstrap-addrs", "127.0.0.1"],
            "use an odd number from 1 to 9",
        ),
        (
            &["-n", "11", "--bootstrap-addrs", "127.0.0.1"],
            "use an odd number from 1 to 9",
        ),
        (
            &["-n", "3"],
            "--required-cluster-size 3 needs --bootstrap-addrs",
        ),
        (
            &[
                "--health-check-interval",
                "1m",
                "--health-check-timeout",
                "10s",
            ],
            "--health-check-timeout (10000 ms) must be at least --health-check-interval (60000 ms)",
        ),
        (
            &["--unsafe-auto-recover-after", "1m"],
            "--unsafe-auto-recover-after (60000 ms) must be longer than --health-check-timeout (300000 ms)",
        ),
    ];
    for (args, needle) in cases {
        let out = std::process::Command::new(e2d_tests::e2d_bin())
            .arg("run")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!data_dir.exists(), "{args:?} touched the data dir");
    }
}

#[test]
fn a_node_waiting_for_its_peers_says_what_it_waits_for() {
    let _serial = one_at_a_time();
    // Two seeds nobody answers on.
    let mut cluster = GossipCluster::new(
        3,
        (0..3).map(|_| Node::new(Ipv4Addr::LOCALHOST)).collect(),
        QUICK_HEALTH_CHECKS,
    );
    cluster.start(0);
    cluster.wait_until("the node reports that it waits", FORM_TIMEOUT, |c| {
        c.nodes[0].status().is_some_and(|s| {
            s["state"] == "pending"
                && s["waiting_for"]
                    .as_str()
                    .is_some_and(|w| w.contains("1 of 3 nodes are pending"))
        })
    });
    let health = e2d_tests::http_get(cluster.nodes[0].client_port, "/health").unwrap();
    assert_eq!(health.status, 503);
    assert!(health.body.contains("NOT STARTED"), "{}", health.body);
    cluster.nodes[0]
        .etcdctl(&["put", "k", "v", "--command-timeout=2s"])
        .fails_with("has not started yet");
    let table = std::process::Command::new(e2d_tests::e2d_bin())
        .args(["status", "--endpoint", &cluster.nodes[0].endpoint()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("state         pending"), "{table}");
}

#[test]
fn a_member_removed_while_paused_moves_its_data_aside_and_joins_again() {
    let _serial = one_at_a_time();
    let cluster = formed_on_loopback(3, QUICK_HEALTH_CHECKS);
    put_keys(&cluster, 0, "/k/", 10);
    // The leader: its streams to the others stay open while it is paused,
    // and it comes back believing it still leads.
    let paused = leader(&cluster);
    let other = (paused + 1) % 3;
    let old_id = cluster.nodes[paused].member_id().unwrap();
    cluster.nodes[paused].signal("STOP");
    cluster.wait_until("the paused member is removed", HEAL_TIMEOUT, |c| {
        c.members(other).is_some_and(|m| m.len() == 2)
    });
    put_keys(&cluster, other, "/while-away/", 10);
    cluster.nodes[paused].signal("CONT");
    wait_until_whole(&cluster, "the removed node joins again", HEAL_TIMEOUT);
    let new_id = cluster.nodes[paused].member_id().unwrap();
    assert_ne!(new_id, old_id, "it came back as its old member");
    let archive = cluster.nodes[paused].data_dir().join("archive");
    let archived: Vec<_> = std::fs::read_dir(&archive).unwrap().collect();
    assert_eq!(archived.len(), 1, "{archive:?}");
    assert_eq!(cluster.count(paused, "/k/"), Some(10));
    assert_eq!(cluster.count(paused, "/while-away/"), Some(10));
}

/// Waits until the managed 3-member `cluster` removes the dead member
/// `dead_id`, then adds a fresh node and waits until it is the third
/// member; the fresh node's index.
fn replace_dead_member(cluster: &mut GossipCluster, dead_id: String) -> usize {
    cluster.wait_until(
        "the dead member is removed after the health-check timeout",
        HEAL_TIMEOUT,
        |c| {
            c.members(0)
                .is_some_and(|m| m.len() == 2 && m.iter().all(|m| m.id != dead_id))
        },
    );
    let fresh = cluster.add(Node::new(Ipv4Addr::LOCALHOST));
    wait_until_whole(
        cluster,
        "a fresh node joins as the third member",
        HEAL_TIMEOUT,
    );
    assert!(cluster.nodes[fresh].member_id().unwrap() != dead_id);
    fresh
}

/// Voters, learners: the members node `via` lists.
fn member_counts(cluster: &GossipCluster, via: usize) -> Option<(usize, usize)> {
    let members = cluster.members(via)?;
    let learners = members.iter().filter(|m| m.is_learner).count();
    Some((members.len() - learners, learners))
}

/// `e2d cluster resize size` through node `via`.
fn resize(cluster: &GossipCluster, via: usize, size: usize) {
    let endpoint = cluster.nodes[via].endpoint();
    e2d_tests::e2d_command(
        &[
            "cluster",
            "resize",
            &size.to_string(),
            "--endpoint",
            &endpoint,
        ],
        &[],
    )
    .ok();
}

#[test]
fn a_single_node_grows_to_three_and_five_and_shrinks_back_while_a_client_writes() {
    let _serial = one_at_a_time();
    let mut cluster = GossipCluster::on_loopback(5, SLOW_HEALTH_CHECKS);
    cluster.size = 1;
    cluster.start(0);
    wait_until_whole(&cluster, "the first node serves", FORM_TIMEOUT);
    // A client writes through every node it can reach all along; each
    // acknowledged key must survive the resizes.
    let endpoints: Vec<String> = cluster.nodes.iter().map(|n| n.endpoint()).collect();
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        std::thread::spawn(move || {
            let mut acknowledged = Vec::new();
            let mut k = 0;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("resize-{k:05}");
                let endpoint = &endpoints[k % endpoints.len()];
                let put =
                    e2d_tests::etcdctl(endpoint, &["put", &key, "v", "--command-timeout=2s"], None);
                if put.success() {
                    acknowledged.push(key);
                }
                k += 1;
            }
            acknowledged
        })
    };

    // Two spare nodes, started with -n 3, wait for a vacancy until the
    // cluster is resized to 3; then they join and are promoted.
    cluster.size = 3;
    cluster.start(1);
    cluster.start(2);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        member_counts(&cluster, 0),
        Some((1, 0)),
        "no vacancy before the resize"
    );
    resize(&cluster, 0, 3);
    cluster.wait_until("the cluster grows to 3 voters", HEAL_TIMEOUT, |c| {
        member_counts(c, 0) == Some((3, 0))
    });
    let status = cluster.nodes[0].status().expect("status");
    assert_eq!(status["cluster_size"], 3, "{status}");

    // Two more spares, started with -n 5, fill the cluster up to 5.
    cluster.size = 5;
    cluster.start(3);
    cluster.start(4);
    resize(&cluster, 1, 5);
    cluster.wait_until("the cluster grows to 5 voters", HEAL_TIMEOUT, |c| {
        member_counts(c, 0) == Some((5, 0))
    });
    // Every member says which e2d it runs (once gossip has carried it),
    // and the cluster runs at the version they share.
    cluster.wait_until("every member's version shows", HEAL_TIMEOUT, |c| {
        c.nodes[0].status().is_some_and(|s| {
            s["members"]
                .as_array()
                .is_some_and(|m| m.len() == 5 && m.iter().all(|m| m["version"] != ""))
        })
    });
    let status = cluster.nodes[0].status().expect("status");
    let own = status["version"].as_str().expect("a version").to_string();
    assert!(!own.is_empty(), "{status}");
    let members = status["members"].as_array().expect("members");
    assert_eq!(members.len(), 5, "{status}");
    for member in members {
        assert_eq!(member["version"], own.as_str(), "{status}");
    }
    assert_eq!(status["cluster_version"], "0.1.0", "{status}");

    // Down to 3, then to 1: the leader removes followers, one at a time.
    let leader = leader(&cluster);
    resize(&cluster, leader, 3);
    cluster.wait_until("the cluster shrinks to 3 voters", HEAL_TIMEOUT, |c| {
        member_counts(c, leader) == Some((3, 0))
    });
    resize(&cluster, leader, 1);
    cluster.wait_until("the cluster shrinks to 1 voter", HEAL_TIMEOUT, |c| {
        member_counts(c, leader) == Some((1, 0))
    });
    std::thread::sleep(Duration::from_secs(2));
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = writer.join().expect("the writer ran");
    assert!(acknowledged.len() > 20, "{} writes", acknowledged.len());
    let listed = cluster.nodes[leader].etcdctl(&["get", "resize-", "--prefix", "--keys-only"]);
    let keys: std::collections::BTreeSet<&str> =
        listed.stdout.lines().filter(|l| !l.is_empty()).collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|k| !keys.contains(k.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged writes lost: {lost:?}\n{}",
        cluster.logs()
    );
    // The removed nodes keep their data dirs aside and wait as spares,
    // each recording the cluster that removed it (which they gossip, so
    // that no spare counts that cluster as lost while it runs on fewer).
    let cluster_id = cluster.nodes[leader].status().expect("status")["cluster_id"].clone();
    for i in (0..5).filter(|&i| i != leader) {
        let status = cluster.nodes[i].status().expect("status");
        assert_eq!(status["state"], "pending", "{status}");
        let data_dir = cluster.nodes[i].data_dir();
        assert!(
            data_dir.join("archive").exists(),
            "{}",
            cluster.nodes[i].log()
        );
        let removed_from = std::fs::read_to_string(data_dir.join("removed-from")).unwrap();
        let removed_from: serde_json::Value = serde_json::from_str(&removed_from).unwrap();
        assert_eq!(removed_from["cluster_id"], cluster_id, "node {i}");
        // The voters it went on with, never the removed node itself.
        let voters = removed_from["voters"].as_array().expect("voters");
        assert!(!voters.is_empty(), "node {i}: {removed_from}");
        assert!(
            !voters.contains(&status["name"]),
            "node {i}: {removed_from}"
        );
    }
}

/// `nodes` nodes on loopback running with `flags`, of which the first 3
/// have formed a cluster of 3; the others are not started.
fn three_formed_of(nodes: usize, flags: &[&str]) -> GossipCluster {
    let mut cluster = GossipCluster::on_loopback(nodes, flags);
    cluster.size = 3;
    for i in 0..3 {
        cluster.start(i);
    }
    wait_until_whole(&cluster, "3 nodes form one cluster", FORM_TIMEOUT);
    cluster
}

/// A recovery moved the old raft log, and nothing else, into
/// `archive/before-recovery-<time>/wal` of `data_dir`.
fn assert_old_log_archived(data_dir: &std::path::Path) {
    let archived: Vec<_> = std::fs::read_dir(data_dir.join("archive"))
        .expect("the old log is archived")
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        archived.len() == 1
            && archived[0]
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("before-recovery-")
            && archived[0].join("wal").is_dir(),
        "{archived:?}"
    );
}

/// Nodes 3 and 4 start with empty data dirs and join the cluster node 0
/// recovered alone: three voters, each with the 30 `kept-` and 10
/// `after-` keys.
fn two_fresh_nodes_join(cluster: &mut GossipCluster) {
    cluster.start(3);
    cluster.start(4);
    wait_until_whole(cluster, "two fresh nodes join", HEAL_TIMEOUT);
    assert_eq!(member_counts(cluster, 0), Some((3, 0)));
    for i in [0, 3, 4] {
        assert_eq!(cluster.count(i, "kept-"), Some(30), "node {i}");
        assert_eq!(cluster.count(i, "after-"), Some(10), "node {i}");
    }
}

#[test]
fn by_hand_e2d_cluster_recover_restarts_a_stopped_survivor_alone_and_fresh_nodes_join() {
    let _serial = one_at_a_time();
    let mut cluster = three_formed_of(5, SLOW_HEALTH_CHECKS);
    put_keys(&cluster, 0, "kept-", 30);
    let old_cluster = cluster.nodes[0].status().expect("status")["cluster_id"].clone();

    // Two of the three are lost for good: the survivor has no leader.
    cluster.kill9(1);
    cluster.kill9(2);
    cluster.wait_until("the survivor has no leader", HEAL_TIMEOUT, |c| {
        !c.nodes[0].is_healthy()
    });
    let data_dir = cluster.nodes[0].data_dir();
    let recover = |dir: &std::path::Path| {
        e2d_tests::e2d_command(
            &["cluster", "recover", "--data-dir", dir.to_str().unwrap()],
            &[],
        )
    };
    // Not while the member runs: its data dir is locked.
    recover(&data_dir).fails_with("is another e2d running on this data dir?");
    assert!(
        !data_dir.join("archive").exists(),
        "a refused recovery changes nothing"
    );

    cluster.kill9(0);
    let recovered = recover(&data_dir);
    recovered.ok();
    assert!(recovered.out().contains("alone"), "{recovered}");
    assert_old_log_archived(&data_dir);

    // It serves alone, under a new cluster id, with everything it held.
    cluster.start(0);
    wait_until_whole(&cluster, "the survivor serves alone", FORM_TIMEOUT);
    let status = cluster.nodes[0].status().expect("status");
    assert_ne!(status["cluster_id"], old_cluster, "{status}");
    assert_eq!(status["recovered_from"], old_cluster, "{status}");
    assert_eq!(cluster.count(0, "kept-"), Some(30));
    put_keys(&cluster, 0, "after-", 10);

    two_fresh_nodes_join(&mut cluster);

    // A data dir with no member in it is refused with the reason.
    let empty = tempfile::tempdir().unwrap();
    recover(empty.path()).fails_with("holds no member's data");
}

#[test]
fn with_the_opt_in_a_survivor_recovers_a_lost_majority_on_its_own_and_fresh_nodes_join() {
    let _serial = one_at_a_time();
    let flags = [QUICK_HEALTH_CHECKS, &["--unsafe-auto-recover-after", "6s"]].concat();
    let mut cluster = three_formed_of(5, &flags);
    put_keys(&cluster, 0, "kept-", 30);
    let old_cluster = cluster.nodes[0].status().expect("status")["cluster_id"].clone();

    // Two of the three are lost for good; the survivor recovers alone.
    cluster.kill9(1);
    cluster.kill9(2);
    cluster.wait_until(
        "the survivor recovers the cluster alone",
        HEAL_TIMEOUT,
        |c| {
            c.nodes[0].is_healthy()
                && c.nodes[0]
                    .status()
                    .is_some_and(|s| s["recovered_from"] == old_cluster)
        },
    );
    let status = cluster.nodes[0].status().expect("status");
    assert_ne!(status["cluster_id"], old_cluster, "{status}");
    assert_eq!(cluster.count(0, "kept-"), Some(30));
    assert_old_log_archived(&cluster.nodes[0].data_dir());
    put_keys(&cluster, 0, "after-", 10);

    two_fresh_nodes_join(&mut cluster);
}

#[test]
fn with_the_opt_in_two_survivors_of_five_agree_on_one_and_the_lost_members_come_back_into_its_cluster(
) {
    let _serial = one_at_a_time();
    let flags = [QUICK_HEALTH_CHECKS, &["--unsafe-auto-recover-after", "6s"]].concat();
    let mut cluster = formed_on_loopback(5, &flags);
    put_keys(&cluster, 0, "kept-", 30);
    let old_cluster = cluster.nodes[0].status().expect("status")["cluster_id"].clone();
    // Every member has applied the writes before three are lost.
    std::thread::sleep(Duration::from_secs(2));

    for i in [2, 3, 4] {
        cluster.kill9(i);
    }
    // One survivor recovers; the other records its choice, then yields to
    // the recovered cluster and joins it.
    wait_until_whole(
        &cluster,
        "the two survivors form the recovered cluster",
        HEAL_TIMEOUT,
    );
    for i in [0, 1] {
        let status = cluster.nodes[i].status().expect("status");
        assert_eq!(status["recovered_from"], old_cluster, "node {i}: {status}");
        assert_eq!(cluster.count(i, "kept-"), Some(30), "node {i}");
    }
    let recovered = cluster.nodes[0].status().expect("status")["cluster_id"].clone();
    put_keys(&cluster, 0, "after-", 10);

    // The lost members come back on their old data dirs: each sees that
    // a voter of its cluster recovered it, moves its data aside and joins.
    for i in [2, 3, 4] {
        cluster.start(i);
    }
    wait_until_whole(
        &cluster,
        "the lost members join the recovered cluster",
        HEAL_TIMEOUT,
    );
    assert_eq!(member_counts(&cluster, 0), Some((5, 0)));
    for i in 0..5 {
        let status = cluster.nodes[i].status().expect("status");
        assert_eq!(status["cluster_id"], recovered, "node {i}: {status}");
        assert_eq!(cluster.count(i, "kept-"), Some(30), "node {i}");
        assert_eq!(cluster.count(i, "after-"), Some(10), "node {i}");
    }
    for i in [2, 3, 4] {
        let archive = cluster.nodes[i].data_dir().join("archive");
        let archived = std::fs::read_dir(&archive).map_or(0, |entries| entries.count());
        assert_eq!(
            archived,
            1,
            "node {i}'s old data is archived in {}",
            archive.display()
        );
    }
}

#[test]
fn a_node_older_than_the_clusters_version_waits_instead_of_joining() {
    let _serial = one_at_a_time();
    let mut cluster = three_formed_of(4, SLOW_HEALTH_CHECKS);
    // The cluster as a newer e2d would leave it: its version recorded.
    cluster.put(0, "/_e2d/cluster-version", "9.0.0");
    cluster.start(3);
    cluster.wait_until("the older node says why it waits", FORM_TIMEOUT, |c| {
        c.nodes[3].status().is_some_and(|s| {
            s["waiting_for"]
                .as_str()
                .is_some_and(|w| w.contains("the running cluster's version is 9.0.0 and this node runs e2d 0.1.0: upgrade it to join"))
        })
    });
    assert_eq!(member_counts(&cluster, 0), Some((3, 0)), "nobody was added");
    let status = cluster.nodes[0].status().expect("status");
    assert_eq!(status["cluster_version"], "9.0.0", "{status}");
}

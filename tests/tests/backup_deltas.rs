//! Continuous backups end to end: a cluster that loses every node and disk
//! comes back with every write its last delta holds; `e2d snapshot
//! restore --to-revision / --to-time` gives the store as it was then.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2d_tests::gossip_cluster::GossipCluster;
use e2d_tests::{e2d_command, one_at_a_time, Server};
use serde_json::Value;

const CA_KEY: &str = include_str!("../../shell/src/backup/testdata/ec_sec1.pem");
const FORM_TIMEOUT: Duration = Duration::from_secs(60);
const DELTA_TIMEOUT: Duration = Duration::from_secs(30);

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("e2d-deltas-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("ca.key"), CA_KEY).unwrap();
        Scratch { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn store_url(&self) -> String {
        format!("file://{}", self.path("store").display())
    }

    /// `e2d run` flags: sealed backups into the scratch store, a full
    /// snapshot an hour (the first at once), deltas every `delta`.
    fn backing_up(&self, delta: &str) -> Vec<String> {
        [
            "--snapshot-backup-url",
            &self.store_url(),
            "--snapshot-interval",
            "1h",
            "--snapshot-delta-interval",
            delta,
            "--snapshot-compression",
            "--snapshot-encryption",
            "--ca-key",
            &self.path("ca.key").display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

fn as_strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// The chains `e2d snapshot list --json` shows.
fn chains(scratch: &Scratch) -> Vec<Value> {
    e2d_command(&["snapshot", "list", &scratch.store_url(), "--json"], &[])
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The revision the newest chain's deltas reach.
fn backed_up_revision(scratch: &Scratch) -> i64 {
    chains(scratch)
        .iter()
        .filter(|c| !c["deltas"].as_array().unwrap().is_empty())
        .map(|c| c["reaches_revision"].as_i64().unwrap())
        .max()
        .unwrap_or(0)
}

#[track_caller]
fn wait_backed_up(scratch: &Scratch, revision: i64) -> i64 {
    let deadline = Instant::now() + DELTA_TIMEOUT;
    loop {
        let reached = backed_up_revision(scratch);
        if reached >= revision {
            return reached;
        }
        assert!(
            Instant::now() < deadline,
            "the deltas reach revision {reached}, not {revision}: {:#?}",
            chains(scratch)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `(key, value)` of every key under `prefix`, from `get -w json`.
fn contents(get: &Value) -> BTreeMap<String, Value> {
    get["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| (kv["key"].as_str().unwrap().to_string(), kv.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_cluster_that_lost_every_disk_comes_back_with_the_writes_of_its_last_delta() {
    let _serial = one_at_a_time();
    let scratch = Scratch::new();
    let flags = scratch.backing_up("2s");
    let mut cluster = GossipCluster::on_loopback(3, &as_strs(&flags));
    for i in 0..3 {
        cluster.start(i);
    }
    cluster.wait_until("the nodes form one cluster", FORM_TIMEOUT, |c| {
        (0..3).all(|i| c.nodes[i].is_healthy() && c.has_running_nodes_as_voters(i))
    });
    // Writes, each acknowledged with its revision, across the members;
    // halfway the leader is killed, and the new one goes on with the chain.
    let mut acknowledged: Vec<(String, String, i64)> = Vec::new();
    let mut alive: Vec<usize> = (0..3).collect();
    let mut i = 0;
    for phase in 0..2 {
        if phase == 1 {
            wait_backed_up(&scratch, acknowledged.last().unwrap().2);
            let leader = alive
                .iter()
                .copied()
                .find(|&n| {
                    let status = cluster.nodes[n].status().unwrap_or_default();
                    status["leader_id"] == status["member_id"]
                })
                .expect("a leader");
            cluster.kill9(leader);
            alive.retain(|&n| n != leader);
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            let (key, value) = (format!("/load/key-{i:04}"), format!("value-{i}"));
            let put =
                cluster.nodes[alive[i % alive.len()]].etcdctl(&["put", &key, &value, "-w", "json"]);
            if put.success() {
                acknowledged.push((
                    key,
                    value,
                    put.json()["header"]["revision"].as_i64().unwrap(),
                ));
            }
            i += 1;
        }
    }
    let last = acknowledged.last().unwrap().2;
    // Some of the writes are in a delta by now; more may follow before
    // the kill.
    let before_kill = wait_backed_up(&scratch, last - 5);
    for &n in &alive {
        cluster.kill9(n);
    }
    // One chain: the new leader went on from the old leader's last delta
    // rather than start over with a full snapshot.
    let listed = chains(&scratch);
    assert_eq!(listed.len(), 1, "{listed:#?}");
    let backed_up = backed_up_revision(&scratch);
    assert!(backed_up >= before_kill);
    let fresh: Vec<_> = cluster
        .nodes
        .iter()
        .map(e2d_tests::gossip_cluster::Node::replacing)
        .collect();
    cluster.nodes = fresh;
    for i in 0..3 {
        assert!(!cluster.nodes[i].data_dir().exists());
        cluster.start(i);
    }
    cluster.wait_until("the fresh nodes form one cluster", FORM_TIMEOUT, |c| {
        (0..3).all(|i| c.nodes[i].is_healthy() && c.has_running_nodes_as_voters(i))
    });
    // Exactly the acknowledged writes up to the last delta: none missing,
    // none that was not acknowledged, on every member.
    let expected: BTreeMap<String, String> = acknowledged
        .iter()
        .filter(|(_, _, revision)| *revision <= backed_up)
        .map(|(key, value, _)| (key.clone(), value.clone()))
        .collect();
    assert!(
        expected.len() > 10,
        "only {} writes backed up",
        expected.len()
    );
    for node in 0..3 {
        let got = cluster.nodes[node].etcdctl(&["get", "/load/", "--prefix", "-w", "json"]);
        let got: BTreeMap<String, String> = e2d_tests::kv_pairs(&got.json()).into_iter().collect();
        assert_eq!(
            got.len(),
            expected.len(),
            "node {node}: {} keys restored, {} acknowledged up to revision {backed_up} (of {} written)\n{}",
            got.len(),
            expected.len(),
            acknowledged.len(),
            cluster.logs()
        );
        assert_eq!(got, expected, "node {node}");
    }
}

/// The wall clock as RFC 3339, to the millisecond.
fn now_rfc3339() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%3NZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_restore_to_a_revision_or_a_time_gives_the_store_as_it_was_then() {
    let _serial = one_at_a_time();
    let scratch = Scratch::new();
    let flags = scratch.backing_up("1s");
    let mut server = Server::e2d_with(&as_strs(&flags));
    // The chain starts with the full snapshot the leader takes at once; a
    // restore cannot go back before it.
    let deadline = Instant::now() + DELTA_TIMEOUT;
    while chains(&scratch).is_empty() {
        assert!(Instant::now() < deadline, "no full snapshot in the store");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Three rounds of puts, overwrites, deletes and a lease; the store is
    // read at the end of the second.
    let lease = server.etcdctl(&["lease", "grant", "600"]);
    let lease_id = lease.out().split_whitespace().nth(1).unwrap().to_string();
    let mut middle = None;
    for round in 0..3 {
        for k in 0..8 {
            server
                .etcdctl(&["put", &format!("/pitr/k{k}"), &format!("r{round}-{k}")])
                .ok();
        }
        server
            .etcdctl(&["del", &format!("/pitr/k{}", round + 1)])
            .ok();
        server
            .etcdctl(&[
                "put",
                &format!("/pitr/leased-{round}"),
                "x",
                "--lease",
                &lease_id,
            ])
            .ok();
        if round == 1 {
            let revision = server.revision();
            let at = server.etcdctl(&[
                "get",
                "/pitr/",
                "--prefix",
                "-w",
                "json",
                "--rev",
                &revision.to_string(),
            ]);
            // The time between the rounds: after the last change of the
            // second, before the first of the third.
            std::thread::sleep(Duration::from_millis(600));
            let time = now_rfc3339();
            std::thread::sleep(Duration::from_millis(600));
            middle = Some((revision, contents(&at.json()), time));
        }
    }
    let (revision, expected, time) = middle.unwrap();
    let newest = server.revision();
    wait_backed_up(&scratch, newest);
    server.kill9();

    let key = scratch.path("ca.key").display().to_string();
    let url = scratch.store_url();
    for (name, flag, target) in [
        ("by-revision", "--to-revision", revision.to_string()),
        ("by-time", "--to-time", time.clone()),
    ] {
        // A fresh server, stopped, its data dir made by the restore.
        let mut restored = Server::e2d();
        restored.kill9();
        std::fs::remove_dir_all(restored.data_dir()).unwrap();
        let data_dir_text = restored.data_dir().display().to_string();
        let out = e2d_command(
            &[
                "snapshot",
                "restore",
                &url,
                "--data-dir",
                &data_dir_text,
                "--ca-key",
                &key,
                flag,
                &target,
            ],
            &[],
        );
        assert!(
            out.out().contains(&format!("up to revision {revision}")),
            "{name}: {out}"
        );
        restored.start();
        let got = restored.etcdctl(&["get", "/pitr/", "--prefix", "-w", "json"]);
        assert_eq!(contents(&got.json()), expected, "{name}");
        let leases = restored.etcdctl(&["lease", "list"]);
        assert!(
            leases.out().contains(&lease_id.to_lowercase()) || leases.out().contains(&lease_id),
            "{name}: {leases}"
        );
        restored.kill9();
    }
    // Past what the store holds: refused, nothing written.
    let past = scratch.path("past").display().to_string();
    e2d_command(
        &[
            "snapshot",
            "restore",
            &url,
            "--data-dir",
            &past,
            "--ca-key",
            &key,
            "--to-revision",
            &(newest + 1000).to_string(),
        ],
        &[],
    )
    .fails_with("cannot restore revision");
    assert!(!scratch.path("past").join("member").exists());
}

//! Corruption checks on a 3-member static cluster, as etcd's: a member
//! whose data was changed while it was stopped (one kv record rewritten in
//! its database, as damage would) is caught by `--initial-corrupt-check`
//! before it starts, or by the leader's `--corrupt-check-time` checks,
//! which raise the CORRUPT alarm: writes fail with "etcdserver: corrupt
//! cluster" on every member, reads go on, and once the bad member is
//! replaced `etcdctl alarm disarm` lets writes through again.
//!
//! etcd 3.4 and 3.5 name the flags `--experimental-initial-corrupt-check`
//! and `--experimental-corrupt-check-time` (e2d takes those names too).
//! Their initial check fails the start with "<member id> found data
//! inconsistency with peers"; 3.4 raises the alarm for the member that
//! differs (as e2d and etcd 3.6 do), 3.5.7 and later for member 0.

#![cfg(not(madsim))]

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use e2d_core::storage::{Backend, Table};
use e2d_tests::cluster::Cluster;
use prost::Message;

const KEY: &str = "/config/replicas";
const VALUE: &str = "3";
const DAMAGED_VALUE: &str = "300";
const WAIT: Duration = Duration::from_secs(30);

/// Rewrites the newest record of `key` in the stopped member's database
/// with `value`, at the same revision.
fn change_value_in_place(data_dir: &Path, key: &str, value: &str) {
    let mut backend = e2d_shell::run::open_backend(data_dir).expect("the data dir opens");
    let mut newest = None;
    backend
        .scan(Table::Kv, &[], &[], &mut |record_key, record| {
            let (tombstone, kv) =
                e2d_core::mvcc::decode_kv_record(record_key, record).expect("a kv record");
            if !tombstone && kv.key == key.as_bytes() {
                newest = Some((record_key.to_vec(), kv));
            }
            true
        })
        .expect("the kv table reads");
    let (record_key, mut kv) = newest.expect("the key is stored");
    kv.value = value.as_bytes().to_vec().into();
    backend.put(Table::Kv, &record_key, &kv.encode_to_vec());
    backend.commit(true).expect("the change is written");
}

/// Writes the key and waits until every member has applied it.
fn write_and_replicate(cluster: &Cluster) {
    cluster.put_eventually(0, KEY, VALUE);
    for i in 0..cluster.members.len() {
        wait_until_applied(cluster, i);
    }
}

/// Waits until member `i` serves the key from its own state.
fn wait_until_applied(cluster: &Cluster, i: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got =
            cluster.members[i].etcdctl(&["get", KEY, "--print-value-only", "--consistency=s"]);
        if got.success() && got.stdout.trim() == VALUE {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member {i} never applied the key: {got}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Two followers of the cluster.
fn followers(cluster: &Cluster) -> (usize, usize) {
    let leader = cluster.leader();
    let mut others = (0..cluster.members.len()).filter(|i| *i != leader);
    (
        others.next().expect("a follower"),
        others.next().expect("a second follower"),
    )
}

fn decimal_id(hex: &str) -> u64 {
    u64::from_str_radix(hex, 16).expect("a hex member id")
}

#[test]
fn the_initial_check_stops_a_member_whose_data_differs() {
    let mut cluster = Cluster::start(3);
    write_and_replicate(&cluster);
    let (healthy, bad) = followers(&cluster);
    let bad_id = cluster.member_id(bad);

    // A member whose data agrees passes the check and serves.
    cluster.kill9(healthy);
    cluster.start_member_with(healthy, &["--initial-corrupt-check"]);
    cluster.wait_for_leader(None);
    let log = cluster.members[healthy].log();
    assert!(
        log.contains("initial corruption checking passed; no corruption"),
        "{log}"
    );

    cluster.kill9(bad);
    change_value_in_place(cluster.members[bad].data_dir(), KEY, DAMAGED_VALUE);
    cluster.start_member_with(bad, &["--initial-corrupt-check"]);
    let status = cluster
        .wait_for_exit(bad, WAIT)
        .expect("the member with changed data stops");
    let log = cluster.members[bad].log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(&format!("{bad_id} found data inconsistency with peers")),
        "{log}"
    );
    // The message names the members that differ and the revision.
    let revision = cluster.members[healthy]
        .etcdctl(&["get", KEY, "-w", "json"])
        .json()["header"]["revision"]
        .as_i64()
        .expect("a revision");
    assert!(log.contains(&format!("at revision {revision}")), "{log}");
    let peer_ids = [
        cluster.member_id(healthy),
        cluster.member_id(cluster.leader()),
    ];
    assert!(
        peer_ids
            .iter()
            .any(|id| log.contains(&format!("member {id} has hash"))),
        "{log}"
    );
    // It never served clients.
    assert!(!cluster.members[bad].has_leader());

    // The healthy members keep the data and take writes.
    for i in (0..3).filter(|i| *i != bad) {
        let got = cluster.members[i].etcdctl(&["get", KEY, "--print-value-only"]);
        assert_eq!(got.out().trim(), VALUE, "member {i}");
    }
    cluster.members[healthy]
        .etcdctl(&["put", "/after", "ok"])
        .ok();
}

#[test]
fn the_periodic_check_raises_the_corrupt_alarm_and_writes_stop() {
    let mut cluster = Cluster::start_with(3, &["--corrupt-check-time", "1s"]);
    write_and_replicate(&cluster);
    let (healthy, bad) = followers(&cluster);
    let bad_id = cluster.member_id(bad);
    // Checks pass while the data agrees.
    thread::sleep(Duration::from_secs(3));
    let alarms = cluster.members[healthy].etcdctl(&["alarm", "list"]);
    assert_eq!(alarms.out().trim(), "", "no alarm while the data agrees");

    cluster.kill9(bad);
    change_value_in_place(cluster.members[bad].data_dir(), KEY, DAMAGED_VALUE);
    cluster.start_member(bad);
    let expected = format!("memberID:{} alarm:CORRUPT", decimal_id(&bad_id));
    let deadline = Instant::now() + WAIT;
    loop {
        let alarms = cluster.members[healthy].etcdctl(&["alarm", "list"]);
        if alarms.success() && alarms.stdout.contains(&expected) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no CORRUPT alarm for {bad_id}: {alarms}\n{}",
            cluster.members[cluster.leader()].log()
        );
        thread::sleep(Duration::from_millis(200));
    }

    // Writes fail on every member, with etcd's error; reads go on, and
    // the healthy members keep the data.
    for i in 0..3 {
        let put = cluster.members[i].etcdctl(&["put", "/refused", "x"]);
        assert!(!put.success(), "member {i} took a write: {put}");
        assert!(
            put.stderr.contains("etcdserver: corrupt cluster"),
            "member {i}: {put}"
        );
    }
    let delete = cluster.members[healthy].etcdctl(&["del", KEY]);
    assert!(
        delete.stderr.contains("etcdserver: corrupt cluster"),
        "{delete}"
    );
    let grant = cluster.members[healthy].etcdctl(&["lease", "grant", "60"]);
    assert!(
        grant.stderr.contains("etcdserver: corrupt cluster"),
        "{grant}"
    );
    for i in (0..3).filter(|i| *i != bad) {
        let got = cluster.members[i].etcdctl(&["get", KEY, "--print-value-only"]);
        assert_eq!(got.out().trim(), VALUE, "member {i}");
    }
    let status = cluster.members[healthy].etcdctl(&["endpoint", "status", "-w", "json"]);
    let errors = status.json()[0]["Status"]["errors"].to_string();
    assert!(errors.contains(&expected), "{errors}");
    let table = std::process::Command::new(e2d_tests::e2d_bin())
        .args(["status", "--endpoint", &cluster.members[healthy].endpoint()])
        .output()
        .expect("e2d status runs");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&format!("CORRUPT (member {bad_id})")),
        "{table}"
    );

    // Replace the bad member as the README says: remove it, disarm, and
    // add a member with an empty data dir.
    cluster.kill9(bad);
    cluster.members[healthy]
        .etcdctl(&["member", "remove", &bad_id])
        .ok();
    cluster.members[healthy].etcdctl(&["alarm", "disarm"]).ok();
    let alarms = cluster.members[healthy].etcdctl(&["alarm", "list"]);
    assert_eq!(alarms.out().trim(), "", "disarmed");
    cluster.members[healthy]
        .etcdctl(&["put", "/after", "ok"])
        .ok();
    let replacement = cluster.join(healthy, false);
    wait_until_applied(&cluster, replacement);
    // The checks go on and find the replaced cluster whole.
    thread::sleep(Duration::from_secs(3));
    let alarms = cluster.members[healthy].etcdctl(&["alarm", "list"]);
    assert_eq!(alarms.out().trim(), "", "no alarm after the replacement");
    cluster.members[replacement]
        .etcdctl(&["put", "/after", "again"])
        .ok();
}

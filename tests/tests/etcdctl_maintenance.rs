//! Maintenance through `etcdctl` against e2d: compaction, endpoint
//! status/health/hashkv, defrag, alarms (NOSPACE), snapshots, member list.

use std::time::Duration;

use e2d_tests::{int, kv_pairs, uint, Server};
use sha2::{Digest, Sha256};

fn write_history(s: &Server) {
    for v in ["v1", "v2", "v3", "v4"] {
        s.etcdctl(&["put", "k", v]).ok(); // revs 2..=5
    }
}

#[test]
fn compaction_discards_old_revisions() {
    let s = Server::e2d();
    write_history(&s);

    assert_eq!(
        s.etcdctl(&["compaction", "3"]).out(),
        "compacted revision 3\n"
    );
    s.etcdctl(&["get", "k", "--rev", "2"])
        .fails_with("required revision has been compacted");
    // The compaction revision itself stays readable.
    assert_eq!(s.etcdctl(&["get", "k", "--rev", "3"]).out(), "k\nv2\n");
    assert_eq!(s.etcdctl(&["get", "k", "--rev", "4"]).out(), "k\nv3\n");
    assert_eq!(s.etcdctl(&["get", "k"]).out(), "k\nv4\n");

    s.etcdctl(&["compaction", "3"])
        .fails_with("required revision has been compacted");
    s.etcdctl(&["compaction", "2"])
        .fails_with("required revision has been compacted");
    s.etcdctl(&["compaction", "100"])
        .fails_with("required revision is a future revision");

    assert_eq!(
        s.etcdctl(&["compaction", "--physical", "5"]).out(),
        "compacted revision 5\n"
    );
    s.etcdctl(&["get", "k", "--rev", "4"])
        .fails_with("required revision has been compacted");
    // Compaction writes no revision and keeps the current value's metadata.
    let now = s.etcdctl(&["get", "k", "-w", "json"]).json();
    assert_eq!(int(&now["header"]["revision"]), 5, "{now}");
    let kv = &now["kvs"][0];
    assert_eq!(
        (
            int(&kv["create_revision"]),
            int(&kv["mod_revision"]),
            int(&kv["version"])
        ),
        (2, 5, 4),
        "{kv}"
    );
    // And the next write continues the revision sequence.
    s.etcdctl(&["put", "k", "v5"]).ok();
    assert_eq!(s.revision(), 6);
}

#[test]
fn watch_from_a_compacted_revision_is_canceled() {
    let s = Server::e2d();
    write_history(&s);
    s.etcdctl(&["compaction", "4"]).ok();
    let mut watch = s.spawn_etcdctl(&["watch", "k", "--rev", "2"]);
    let (status, stderr) = watch.wait_exit(Duration::from_secs(10));
    assert!(!status.success(), "watch exited with {status}");
    assert!(
        stderr.contains("required revision has been compacted"),
        "stderr: {stderr}"
    );
    // From the compaction revision on, history is there.
    let mut watch = s.spawn_etcdctl(&["watch", "k", "--rev", "4"]);
    assert_eq!(
        watch.lines(6, Duration::from_secs(10)),
        ["PUT", "k", "v3", "PUT", "k", "v4"]
    );
}

#[test]
fn endpoint_status_health_and_hashkv() {
    let s = Server::e2d();
    write_history(&s);

    let status = s.etcdctl(&["endpoint", "status", "-w", "json"]).json();
    let entry = &status[0];
    assert_eq!(entry["Endpoint"], s.endpoint().as_str(), "{status}");
    let st = &entry["Status"];
    assert_eq!(int(&st["header"]["revision"]), 5, "{status}");
    let member = uint(&st["header"]["member_id"]);
    assert_ne!(member, 0, "{status}");
    assert_eq!(
        uint(&st["leader"]),
        member,
        "a single member leads itself: {status}"
    );
    assert!(int(&st["dbSize"]) > 0, "{status}");
    assert!(int(&st["raftIndex"]) > 0, "{status}");
    assert!(int(&st["raftTerm"]) > 0, "{status}");
    let version = st["version"].as_str().expect("version string");
    assert!(version.starts_with("3."), "{status}");

    let text = s.etcdctl(&["endpoint", "status"]);
    assert!(
        text.out()
            .starts_with(&format!("{}, {:x}, {version}, ", s.endpoint(), member)),
        "{text}"
    );

    let health = s.etcdctl(&["endpoint", "health", "-w", "json"]).json();
    assert_eq!(health[0]["endpoint"], s.endpoint().as_str(), "{health}");
    assert_eq!(health[0]["health"], true, "{health}");
    let text = s.etcdctl(&["endpoint", "health"]);
    assert!(
        text.stdout.starts_with(&format!(
            "{} is healthy: successfully committed proposal",
            s.endpoint()
        )) || text.stderr.starts_with(&format!(
            "{} is healthy: successfully committed proposal",
            s.endpoint()
        )),
        "{text}"
    );

    let hash = |extra: &[&str]| {
        let mut args = vec!["endpoint", "hashkv", "-w", "json"];
        args.extend_from_slice(extra);
        let json = s.etcdctl(&args).json();
        let h = &json[0]["HashKV"];
        (
            int(&h["hash"]),
            int(&h["header"]["revision"]),
            int(&h["compact_revision"]),
        )
    };
    let (h1, rev, _) = hash(&[]);
    assert_eq!(rev, 5);
    assert_eq!(hash(&[]).0, h1, "hash is stable without writes");
    let (at4, _, _) = hash(&["--rev", "4"]);
    s.etcdctl(&["put", "k", "v5"]).ok();
    let (h2, rev, _) = hash(&[]);
    assert_eq!(rev, 6);
    assert_ne!(h1, h2, "a write changes the hash");
    assert_eq!(
        hash(&["--rev", "4"]).0,
        at4,
        "hash at a fixed revision is stable"
    );
    assert_eq!(hash(&["--rev", "5"]).0, h1, "hash at 5 is what it was at 5");
    s.etcdctl(&["compaction", "3"]).ok();
    assert_eq!(hash(&[]).2, 3, "hashkv reports the compaction revision");
}

/// `dbSize` and `dbSizeInUse` from `etcdctl endpoint status`.
fn db_sizes(s: &Server) -> (i64, i64) {
    let status = s.etcdctl(&["endpoint", "status", "-w", "json"]).json();
    let st = &status[0]["Status"];
    (int(&st["dbSize"]), int(&st["dbSizeInUse"]))
}

#[test]
fn status_reports_the_history_in_use_apart_from_the_files() {
    const VALUE_BYTES: usize = 64 * 1024;
    const PUTS: usize = 20;
    let s = Server::e2d();
    // Values that do not compress, so the files hold them all.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut value = || {
        let mut text = String::with_capacity(VALUE_BYTES);
        while text.len() < VALUE_BYTES {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            text.push_str(&format!("{state:016x}"));
        }
        text
    };
    for _ in 0..PUTS {
        s.etcdctl(&["put", "big", &value()]).ok();
    }
    let (size, in_use) = db_sizes(&s);
    let history = (PUTS * VALUE_BYTES) as i64;
    assert!(
        in_use >= history && in_use <= size,
        "{PUTS} values of {VALUE_BYTES} bytes: {in_use} in use of {size}"
    );
    // Compaction drops all but the newest value from what is in use at
    // once, whatever the files still hold.
    let revision = s.revision().to_string();
    s.etcdctl(&["compaction", &revision]).ok();
    let (size, in_use) = db_sizes(&s);
    assert!(
        in_use >= VALUE_BYTES as i64 && in_use < 2 * VALUE_BYTES as i64,
        "one value of {VALUE_BYTES} bytes left: {in_use} in use of {size}"
    );
}

#[test]
fn endpoints_given_as_urls_are_served() {
    // etcdctl 3.4 sends the endpoint as given, scheme and all, as the
    // request's :authority; etcd takes it.
    let s = Server::e2d();
    s.etcdctl(&["put", "k", "v"]).ok();
    let url = s.url();
    let status = e2d_tests::etcdctl(&url, &["endpoint", "status", "-w", "json"], None);
    let status = status.ok().json();
    assert_eq!(status[0]["Endpoint"], url.as_str(), "{status}");
    assert_eq!(
        int(&status[0]["Status"]["header"]["revision"]),
        2,
        "{status}"
    );
    // A lock takes several requests on one connection; the later ones
    // refer to the first one's authority through the header table.
    let locked = e2d_tests::etcdctl(&url, &["lock", "l", "echo", "locked"], None);
    assert_eq!(locked.ok().out(), "locked\n");
}

#[test]
fn defrag_keeps_data() {
    let s = Server::e2d();
    write_history(&s);
    s.etcdctl(&["compaction", "5"]).ok();
    assert_eq!(
        s.etcdctl(&["defrag"]).out(),
        format!("Finished defragmenting etcd member[{}]\n", s.endpoint())
    );
    assert_eq!(s.etcdctl(&["get", "k"]).out(), "k\nv4\n");
    assert_eq!(s.revision(), 5);
    s.etcdctl(&["put", "k2", "after"]).ok();
    assert_eq!(s.revision(), 6);
}

#[test]
fn alarm_list_is_empty_when_healthy() {
    let s = Server::e2d();
    assert_eq!(s.etcdctl(&["alarm", "list"]).out(), "");
    assert_eq!(s.etcdctl(&["alarm", "disarm"]).out(), "");
}

#[test]
fn nospace_alarm_blocks_writes_but_not_reads() {
    let mut s = Server::e2d();
    s.etcdctl(&["put", "before", "quota"]).ok();
    let member = uint(&s.etcdctl(&["get", "x", "-w", "json"]).json()["header"]["member_id"]);
    // Restart with a quota every database exceeds.
    s.kill9();
    s.set_extra_args(&["--quota-backend-bytes", "1"]);
    s.start();

    s.etcdctl(&["put", "k", "v"])
        .fails_with("database space exceeded");
    assert_eq!(
        s.etcdctl(&["alarm", "list"]).out(),
        format!("memberID:{member} alarm:NOSPACE \n")
    );
    // Still refused while the alarm is up, also inside a txn.
    s.etcdctl(&["put", "k", "v"])
        .fails_with("database space exceeded");
    s.etcdctl_stdin(&["txn", "-i"], "\nput t v\n\n\n")
        .fails_with("database space exceeded");
    s.etcdctl(&["lease", "grant", "60"])
        .fails_with("database space exceeded");

    // Reads work and see the data from before.
    assert_eq!(s.etcdctl(&["get", "before"]).out(), "before\nquota\n");
    assert_eq!(s.etcdctl(&["get", "k"]).out(), "");
    assert_eq!(s.revision(), 2);
    // Deleting frees space, so it is allowed.
    assert_eq!(s.etcdctl(&["del", "before"]).out(), "1\n");

    let health = s.http_get("/health");
    assert_eq!(health.status, 503, "{health:?}");
    assert_eq!(health.json()["health"], "false", "{health:?}");
}

#[test]
fn nospace_on_a_fresh_server_with_a_tiny_quota() {
    let s = Server::e2d_with(&["--quota-backend-bytes", "1"]);
    s.etcdctl(&["put", "k", "v"])
        .fails_with("database space exceeded");
    let alarms = s.etcdctl(&["alarm", "list"]);
    assert!(alarms.out().contains("alarm:NOSPACE"), "{alarms}");
    assert_eq!(s.etcdctl(&["get", "k"]).out(), "");
    let status = s.etcdctl(&["endpoint", "status", "-w", "json"]).json();
    assert_eq!(
        int(&status[0]["Status"]["header"]["revision"]),
        1,
        "{status}"
    );
    s.etcdctl(&["put", "k2", "v"])
        .fails_with("database space exceeded");
}

#[test]
fn snapshot_save_writes_a_checksummed_db() {
    let s = Server::e2d();
    for i in 0..20 {
        s.etcdctl(&["put", &format!("key-{i:02}"), &"v".repeat(100)])
            .ok();
    }
    let path = s.scratch_dir().join("snap.db");
    let path_text = path.to_str().expect("utf-8 temp path");
    let out = s.etcdctl(&["snapshot", "save", path_text]);
    assert!(
        out.out()
            .contains(&format!("Snapshot saved at {path_text}")),
        "{out}"
    );
    let bytes = std::fs::read(&path).expect("snapshot file exists");
    assert!(bytes.len() > 32, "snapshot of {} bytes", bytes.len());
    assert_eq!(
        bytes.len() % 512,
        32,
        "size {} is not 512*n + 32",
        bytes.len()
    );
    let (db, sum) = bytes.split_at(bytes.len() - 32);
    assert_eq!(
        Sha256::digest(db).as_slice(),
        sum,
        "trailing sha256 does not match"
    );
    // Data is unchanged by taking a snapshot.
    assert_eq!(s.revision(), 21);
}

#[test]
fn member_list_shows_this_member() {
    let s = Server::e2d();
    let json = s.etcdctl(&["member", "list", "-w", "json"]).json();
    let members = json["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{json}");
    let m = &members[0];
    assert_eq!(uint(&m["ID"]), uint(&json["header"]["member_id"]), "{json}");
    assert_eq!(m["name"], "default", "{json}");
    assert_eq!(
        m["peerURLs"],
        serde_json::json!([format!("http://127.0.0.1:{}", s.peer_port())]),
        "{json}"
    );
    assert_eq!(m["clientURLs"], serde_json::json!([s.url()]), "{json}");
    assert!(
        m.get("isLearner").is_none() || m["isLearner"] == false,
        "{json}"
    );

    let text = s.etcdctl(&["member", "list"]);
    assert_eq!(
        text.out(),
        format!(
            "{:x}, started, default, http://127.0.0.1:{}, {}, false\n",
            uint(&m["ID"]),
            s.peer_port(),
            s.url()
        )
    );
}

#[test]
fn get_json_after_maintenance_is_consistent() {
    let s = Server::e2d();
    write_history(&s);
    s.etcdctl(&["put", "other", "o"]).ok();
    s.etcdctl(&["compaction", "6"]).ok();
    s.etcdctl(&["defrag"]).ok();
    let json = s.etcdctl(&["get", "--prefix", "", "-w", "json"]).json();
    assert_eq!(
        kv_pairs(&json),
        vec![("k".into(), "v4".into()), ("other".into(), "o".into())]
    );
    assert_eq!(int(&json["count"]), 2);
}

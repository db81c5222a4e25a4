//! etcd's snapshot format both ways, with a real etcd: an etcd snapshot
//! (`etcdctl snapshot save`) restored into e2d, and e2d's snapshot
//! restored by `etcdctl snapshot restore` and served by etcd, each compared
//! with its source key by key and by `HashKV`; `e2d migrate` from a
//! running etcd; damaged files refused before any data dir is written.

use std::path::Path;

use e2d_tests::{e2d_command, int, one_at_a_time, unb64, CmdOutput, Server};
use serde_json::Value;

/// The same history on any server: puts, overwrites, deletes, a txn, a
/// lease with keys and a compaction, then writes after it.
fn load(server: &Server) {
    load_with(server, true)
}

fn load_with(server: &Server, with_lease: bool) {
    for i in 0..20 {
        server
            .etcdctl(&["put", &format!("key/{i:02}"), &format!("first {i}")])
            .ok();
    }
    for i in (0..20).step_by(3) {
        server
            .etcdctl(&["put", &format!("key/{i:02}"), &format!("second {i}")])
            .ok();
    }
    server.etcdctl(&["del", "key/05"]).ok();
    server.etcdctl(&["del", "key/1", "--prefix"]).ok();
    server
        .etcdctl_stdin(
            &["txn"],
            "value(\"key/00\") = \"second 0\"\n\nput txn/yes 1\nput key/00 third\n\nput txn/no 1\n\n",
        )
        .ok();
    if with_lease {
        lease_with_keys(server);
    }
    let compact_at = server.revision() - 3;
    server
        .etcdctl(&["compact", &compact_at.to_string(), "--physical"])
        .ok();
    server.etcdctl(&["put", "after/compaction", "yes"]).ok();
    server.etcdctl(&["del", "key/00"]).ok();
}

fn lease_with_keys(server: &Server) {
    let lease = server.etcdctl(&["lease", "grant", "600"]);
    let lease_id = lease
        .out()
        .split_whitespace()
        .nth(1)
        .expect("lease grant prints the id")
        .to_string();
    server
        .etcdctl(&["put", "leased/a", "1", "--lease", &lease_id])
        .ok();
    server
        .etcdctl(&["put", "leased/b", "2", "--lease", &lease_id])
        .ok();
}

/// A key as `get -w json` shows it: key, value, create and mod revision,
/// version, and whether it has a lease.
type KeyRow = (String, String, i64, i64, i64, i64);

/// Every key with its revisions and version, and the store's revision.
fn contents(server: &Server) -> (i64, Vec<KeyRow>) {
    let got = server
        .etcdctl(&["get", "", "--from-key", "-w", "json"])
        .json();
    let revision = int(&got["header"]["revision"]);
    let kvs = got["kvs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|kv| {
            (
                unb64(&kv["key"]),
                unb64(&kv["value"]),
                int(&kv["create_revision"]),
                int(&kv["mod_revision"]),
                int(&kv["version"]),
                int(&kv["lease"]).min(1),
            )
        })
        .collect();
    (revision, kvs)
}

/// `HashKV` at `revision` and the compacted revision it reports.
fn hash_kv(server: &Server, revision: i64) -> (u64, i64) {
    let got = server
        .etcdctl(&[
            "endpoint",
            "hashkv",
            "--rev",
            &revision.to_string(),
            "-w",
            "json",
        ])
        .json();
    let entry = &got[0]["HashKV"];
    (
        entry["hash"].as_u64().expect("a hash"),
        int(&entry["compact_revision"]),
    )
}

/// The compacted revision, as a read below it is refused with it.
fn compacted_below(server: &Server, revision: i64) -> String {
    let got = server.etcdctl(&["get", "key/", "--prefix", "--rev", &revision.to_string()]);
    assert!(
        !got.success(),
        "a read at {revision} was not refused: {got}"
    );
    got.error_line()
}

fn e2d(args: &[&str]) -> CmdOutput {
    e2d_command(args, &[])
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

/// The lease TTLs the server knows, sorted.
fn lease_ttls(server: &Server) -> Vec<i64> {
    let listed = server.etcdctl(&["lease", "list", "-w", "json"]).json();
    let mut ttls: Vec<i64> = listed["leases"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|lease| {
            let id = format!("{:x}", int(&lease["id"]));
            let ttl = server
                .etcdctl(&["lease", "timetolive", &id, "-w", "json"])
                .json();
            int(&ttl["granted-ttl"])
        })
        .collect();
    ttls.sort();
    ttls
}

fn assert_same_store(restored: &Server, source: &Server) {
    let (revision, kvs) = contents(source);
    assert_eq!(contents(restored), (revision, kvs), "keys and revisions");
    assert_eq!(
        hash_kv(restored, revision),
        hash_kv(source, revision),
        "HashKV at {revision}"
    );
    let (_, compact_revision) = hash_kv(source, revision);
    assert!(compact_revision > 0);
    assert_eq!(
        compacted_below(restored, compact_revision - 1),
        compacted_below(source, compact_revision - 1)
    );
    assert_eq!(lease_ttls(restored), lease_ttls(source), "leases");
    assert_eq!(lease_ttls(source), vec![600]);
}

/// Stops `etcd`, replaces its data dir with `etcdctl snapshot restore` of
/// `file`, and starts it again.
fn restart_etcd_from(etcd: &mut Server, file: &Path) {
    etcd.kill9();
    std::fs::remove_dir_all(etcd.data_dir()).unwrap();
    let peer = format!("http://127.0.0.1:{}", etcd.peer_port());
    let restored = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore", &path_text(file)])
        .args(["--data-dir", &path_text(&etcd.data_dir())])
        .args(["--name", "default"])
        .args(["--initial-cluster", &format!("default={peer}")])
        .args(["--initial-advertise-peer-urls", &peer])
        .output()
        .expect("etcdctl runs");
    assert!(
        restored.status.success(),
        "etcdctl snapshot restore refused the snapshot: {}",
        String::from_utf8_lossy(&restored.stderr)
    );
    etcd.start();
}

#[test]
fn an_etcd_snapshot_restores_into_e2d_with_its_revisions() {
    let _one = one_at_a_time();
    let (mut e2d_server, etcd) = Server::e2d_and_etcd();
    load(&etcd);
    let file = etcd.scratch_dir().join("etcd.db");
    etcd.etcdctl(&["snapshot", "save", &path_text(&file)]).ok();
    let status = etcd
        .etcdctl(&["snapshot", "status", &path_text(&file), "-w", "json"])
        .json();
    let inspected = e2d(&["snapshot", "inspect", &path_text(&file), "--json"]).json();
    assert_eq!(inspected["format"], "etcd", "{inspected}");
    assert_eq!(inspected["hash"], status["hash"], "{inspected} {status}");
    assert_eq!(
        inspected["revision"], status["revision"],
        "{inspected} {status}"
    );
    assert_eq!(
        inspected["total_keys"], status["totalKey"],
        "{inspected} {status}"
    );
    assert_eq!(inspected["leases"], 1, "{inspected}");

    e2d_server.kill9();
    std::fs::remove_dir_all(e2d_server.data_dir()).unwrap();
    let data_dir = path_text(&e2d_server.data_dir());
    e2d(&[
        "snapshot",
        "restore",
        &path_text(&file),
        "--data-dir",
        &data_dir,
    ])
    .ok();
    e2d_server.start();
    assert_same_store(&e2d_server, &etcd);
    // The restored store takes writes on from etcd's revision.
    let before = etcd.revision();
    e2d_server.etcdctl(&["put", "new", "write"]).ok();
    assert_eq!(e2d_server.revision(), before + 1);
}

#[test]
fn an_e2d_snapshot_is_restored_and_served_by_etcd() {
    let _one = one_at_a_time();
    let (e2d_server, mut etcd) = Server::e2d_and_etcd();
    load(&e2d_server);
    let file = e2d_server.scratch_dir().join("from-e2d.db");
    e2d_server
        .etcdctl(&["snapshot", "save", &path_text(&file)])
        .ok();
    let status = etcd
        .etcdctl(&["snapshot", "status", &path_text(&file), "-w", "json"])
        .json();
    assert_eq!(int(&status["revision"]), e2d_server.revision(), "{status}");

    restart_etcd_from(&mut etcd, &file);
    assert_same_store(&etcd, &e2d_server);
}

#[test]
fn e2d_migrate_copies_a_running_etcd() {
    let _one = one_at_a_time();
    let (mut e2d_server, etcd) = Server::e2d_and_etcd();
    load(&etcd);
    e2d_server.kill9();
    std::fs::remove_dir_all(e2d_server.data_dir()).unwrap();
    let data_dir = path_text(&e2d_server.data_dir());
    let unreachable = format!("127.0.0.1:{}", e2d_tests::free_port());
    let migrated = e2d(&[
        "migrate",
        "--from-endpoints",
        &format!("{unreachable},{}", etcd.endpoint()),
        "--data-dir",
        &data_dir,
    ]);
    migrated.ok();
    assert!(migrated.out().contains("Migrated"), "{migrated}");
    e2d_server.start();
    assert_same_store(&e2d_server, &etcd);
    // A data dir that holds something is never written over.
    e2d_server.kill9();
    e2d(&[
        "migrate",
        "--from-endpoints",
        &etcd.endpoint(),
        "--data-dir",
        &data_dir,
    ])
    .fails_with("already exists and is not empty");
}

#[test]
fn damaged_etcd_files_are_refused_before_a_data_dir_is_written() {
    let _one = one_at_a_time();
    let etcd = Server::etcd();
    load(&etcd);
    let dir = etcd.scratch_dir();
    let good = dir.join("good.db");
    etcd.etcdctl(&["snapshot", "save", &path_text(&good)]).ok();
    let bytes = std::fs::read(&good).unwrap();

    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let cut = bytes[..bytes.len() - 4096 - 32].to_vec();
    // A database file has no digest, but each meta page has a checksum:
    // with both damaged, nothing says where the database is.
    let mut metas_flipped = bytes[..bytes.len() - 32].to_vec();
    metas_flipped[40] ^= 0xff;
    metas_flipped[4096 + 40] ^= 0xff;
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("flipped.db", flipped, "SHA-256 does not match"),
        ("cut.db", cut, "damaged"),
        ("metas-flipped.db", metas_flipped, "damaged"),
        (
            "text.db",
            b"not a database at all\n".to_vec(),
            "not a snapshot",
        ),
    ];
    for (name, contents, reason) in cases {
        let file = dir.join(name);
        std::fs::write(&file, contents).unwrap();
        let data_dir = dir.join(format!("{name}.data"));
        e2d(&[
            "snapshot",
            "restore",
            &path_text(&file),
            "--data-dir",
            &path_text(&data_dir),
        ])
        .fails_with(reason);
        assert!(
            !data_dir.join("db").exists(),
            "{name}: a data dir was written"
        );
        e2d(&["snapshot", "inspect", &path_text(&file)]).fails_with(reason);
    }
}

#[test]
fn snapshot_save_writes_either_format() {
    let _one = one_at_a_time();
    let server = Server::e2d();
    load(&server);
    let dir = server.scratch_dir();
    let endpoint = server.endpoint();
    for (format, expected) in [("etcd", "etcd"), ("e2d", "e2d")] {
        let file = dir.join(format!("saved.{format}"));
        e2d(&[
            "snapshot",
            "save",
            &path_text(&file),
            "--endpoint",
            &endpoint,
            "--format",
            format,
        ])
        .ok();
        let inspected: Value = e2d(&["snapshot", "inspect", &path_text(&file), "--json"]).json();
        assert_eq!(inspected["format"], expected, "{inspected}");
        assert_eq!(
            int(&inspected["revision"]),
            server.revision(),
            "{inspected}"
        );
    }
}

#[test]
fn the_same_history_hashes_the_same_on_both() {
    let _one = one_at_a_time();
    let (e2d_server, etcd) = Server::e2d_and_etcd();
    // Without a lease: the lease ids, which each server picks, are part
    // of the hashed values.
    load_with(&e2d_server, false);
    load_with(&etcd, false);
    let revision = etcd.revision();
    assert_eq!(contents(&e2d_server), contents(&etcd));
    for at in [revision, revision - 2] {
        assert_eq!(
            hash_kv(&e2d_server, at),
            hash_kv(&etcd, at),
            "HashKV at {at}"
        );
    }
    // A hash at the compacted revision itself is refused by both.
    let (_, compacted) = hash_kv(&etcd, revision);
    for server in [&e2d_server, &etcd] {
        server
            .etcdctl(&["endpoint", "hashkv", "--rev", &compacted.to_string()])
            .fails_with("required revision has been compacted");
    }
}

/// Users, roles and auth on, as `etcdctl` sets them up.
fn set_up_auth(server: &Server) {
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "ann:secret"],
        &["role", "add", "reader"],
        &[
            "role",
            "grant-permission",
            "reader",
            "read",
            "key/",
            "--prefix",
        ],
        &["user", "grant-role", "ann", "reader"],
        &["auth", "enable"],
    ] {
        server.etcdctl(args).ok();
    }
}

/// What users see with auth on: ann reads under key/ and nothing else,
/// root everything, nobody without credentials.
fn auth_answers(server: &Server) -> Vec<String> {
    let as_user = |user: &str, args: &[&str]| {
        let mut all = vec!["--user", user];
        all.extend_from_slice(args);
        let got = server.etcdctl(&all);
        if got.success() {
            got.out().trim().to_string()
        } else {
            got.error_line()
        }
    };
    vec![
        as_user("ann:secret", &["get", "key/01", "--print-value-only"]),
        as_user("ann:secret", &["put", "key/01", "mine"]),
        as_user("ann:secret", &["get", "txn/yes"]),
        as_user("ann:wrong", &["get", "key/01"]),
        as_user("root:rootpw", &["user", "list"]),
        as_user("root:rootpw", &["role", "get", "reader"]),
        {
            let got = server.etcdctl(&["get", "key/01"]);
            got.error_line()
        },
    ]
}

#[test]
fn users_roles_and_auth_move_both_ways() {
    let _one = one_at_a_time();
    let (mut e2d_server, mut etcd) = Server::e2d_and_etcd();
    load(&etcd);
    set_up_auth(&etcd);
    let on_etcd = auth_answers(&etcd);
    assert_eq!(on_etcd[0], "first 1", "{on_etcd:?}");

    // etcd -> e2d, through a migration as root.
    e2d_server.kill9();
    std::fs::remove_dir_all(e2d_server.data_dir()).unwrap();
    let data_dir = path_text(&e2d_server.data_dir());
    e2d(&[
        "migrate",
        "--from-endpoints",
        &etcd.endpoint(),
        "--data-dir",
        &data_dir,
    ])
    .fails_with("user name is empty");
    e2d(&[
        "migrate",
        "--from-endpoints",
        &etcd.endpoint(),
        "--user",
        "root:rootpw",
        "--data-dir",
        &data_dir,
    ])
    .ok();
    e2d_server.start();
    assert_eq!(auth_answers(&e2d_server), on_etcd);

    // e2d -> etcd, through etcdctl snapshot save and restore.
    let file = e2d_server.scratch_dir().join("with-auth.db");
    e2d_server
        .etcdctl(&[
            "--user",
            "root:rootpw",
            "snapshot",
            "save",
            &path_text(&file),
        ])
        .ok();
    restart_etcd_from(&mut etcd, &file);
    assert_eq!(auth_answers(&etcd), on_etcd);
}

#[test]
fn a_new_cluster_restores_an_etcd_snapshot_from_its_backup_store() {
    let _one = one_at_a_time();
    let etcd = Server::etcd();
    load(&etcd);
    let store = etcd.scratch_dir().join("store");
    let store_url = format!("file://{}", path_text(&store));
    e2d(&[
        "snapshot",
        "save",
        &store_url,
        "--endpoint",
        &etcd.endpoint(),
        "--format",
        "etcd",
    ])
    .ok();
    // A fresh member with that store and no data restores it at start.
    let restored = Server::e2d_with(&["--snapshot-backup-url", &store_url]);
    let (revision, kvs) = contents(&etcd);
    let (restored_revision, restored_kvs) = contents(&restored);
    // The restore marks itself under /_e2d/snapshot, one write later.
    assert_eq!(restored_revision, revision + 1);
    let without_marker: Vec<_> = restored_kvs
        .into_iter()
        .filter(|kv| !kv.0.starts_with("/_e2d/"))
        .collect();
    assert_eq!(without_marker, kvs);
    assert_eq!(hash_kv(&restored, revision), hash_kv(&etcd, revision));
}

//! etcd's database files both ways, against a real etcd 3.4: a snapshot
//! `etcdctl snapshot save` took from etcd read into e2d's tables (keys,
//! revisions, compaction, leases, auth and HashKV as etcd has them), and
//! e2d's tables written as an etcd snapshot that `etcdctl snapshot
//! restore` takes and a restored etcd serves as e2d does. Damaged files
//! are refused with a message that says what is wrong.
//!
//! Here rather than in `tests/`: built with the shell's own dependencies,
//! not a second copy of them with the test crate's features.

#![cfg(not(madsim))]

use std::path::{Path, PathBuf};
use std::process::Command;

use e2d_core::storage::Backend;
use e2d_core::StateMachine;
use e2d_proto::etcdserverpb::RangeRequest;
use e2d_shell::etcd_snapshot::{load_etcd_snapshot, verify_etcd_snapshot, write_etcd_snapshot};
use e2d_shell::storage::DiskBackend;
use e2d_tests::{e2d_bin, int, normalize_json, Server};
use serde_json::Value;

const ROOT: &str = "--user=root:rootpw";
const LEASE_TTL_SECONDS: i64 = 600;

/// What the workload leaves behind.
struct Loaded {
    lease_id: i64,
}

fn etcdctl_ok(server: &Server, args: &[&str]) -> String {
    let out = server.etcdctl(args);
    out.ok();
    out.stdout.clone()
}

/// Puts, an overwrite, a delete, a txn, a lease with two keys, a
/// compaction, writes after it (one over a key the compaction kept), then
/// users and roles and auth enabled.
fn load(server: &Server) -> Loaded {
    for (key, value) in [("k1", "v1"), ("k2", "v2"), ("k3", "v3"), ("k1", "v1b")] {
        etcdctl_ok(server, &["put", key, value]);
    }
    etcdctl_ok(server, &["del", "k2"]);
    let txn = server.etcdctl_stdin(&["txn", "-i"], "\nput t/a 1\nput t/b 2\ndel k3\n\n\n");
    txn.ok();
    let granted = etcdctl_ok(server, &["lease", "grant", &LEASE_TTL_SECONDS.to_string()]);
    let hex = granted
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no lease id in {granted:?}"));
    let lease_id = i64::from_str_radix(hex, 16).expect("a hex lease id");
    etcdctl_ok(server, &["put", "l/a", "x", &format!("--lease={hex}")]);
    etcdctl_ok(server, &["put", "l/b", "y", &format!("--lease={hex}")]);
    let revision = server.revision();
    etcdctl_ok(server, &["compaction", &(revision - 2).to_string()]);
    etcdctl_ok(server, &["put", "k1", "v1c"]);
    etcdctl_ok(server, &["put", "k6", "v6"]);
    etcdctl_ok(server, &["user", "add", "root:rootpw"]);
    etcdctl_ok(server, &["role", "add", "root"]);
    etcdctl_ok(server, &["user", "grant-role", "root", "root"]);
    etcdctl_ok(server, &["role", "add", "reader"]);
    etcdctl_ok(
        server,
        &[
            "role",
            "grant-permission",
            "reader",
            "read",
            "k",
            "--prefix",
        ],
    );
    etcdctl_ok(server, &["user", "add", "alice:alicepw"]);
    etcdctl_ok(server, &["user", "grant-role", "alice", "reader"]);
    etcdctl_ok(server, &["auth", "enable"]);
    Loaded { lease_id }
}

fn json(server: &Server, args: &[&str]) -> Value {
    let mut all = vec![ROOT, "-w", "json"];
    all.extend_from_slice(args);
    let mut value = server.etcdctl(&all).json();
    normalize_json(&mut value);
    value
}

/// The revision, compacted revision and hash as `endpoint hashkv` says.
fn hashkv(server: &Server, revision: i64) -> (i64, i64, i64) {
    let value = json(
        server,
        &["endpoint", "hashkv", "--rev", &revision.to_string()],
    );
    let hash = &value[0]["HashKV"];
    (
        int(&hash["hash_revision"]),
        int(&hash["compact_revision"]),
        int(&hash["hash"]),
    )
}

/// Every key-value, as `get --prefix` answers: (key, create, mod,
/// version, value, lease).
type Kv = (Vec<u8>, i64, i64, i64, Vec<u8>, i64);

fn kvs_of(value: &Value) -> Vec<Kv> {
    use base64::Engine;
    let bytes = |field: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(field.as_str().unwrap_or(""))
            .expect("base64")
    };
    value["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| {
                    (
                        bytes(&kv["key"]),
                        int(&kv["create_revision"]),
                        int(&kv["mod_revision"]),
                        int(&kv["version"]),
                        bytes(&kv["value"]),
                        int(&kv["lease"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn snapshot_save(server: &Server, path: &Path) {
    etcdctl_ok(server, &[ROOT, "snapshot", "save", path.to_str().unwrap()]);
}

#[test]
fn an_etcd_snapshot_reads_into_e2d_tables_as_etcd_serves_it() {
    let mut etcd = Server::etcd();
    let loaded = load(&etcd);
    let snapshot = etcd.scratch_dir().join("etcd.db");
    snapshot_save(&etcd, &snapshot);
    let served = json(&etcd, &["get", "", "--prefix"]);
    let current = int(&served["header"]["revision"]);
    let (_, compacted, _) = hashkv(&etcd, current);

    let (layout, verified) = verify_etcd_snapshot(&snapshot).expect("the snapshot verifies");
    assert!(layout.has_digest);
    assert_eq!(verified.current_revision, current);
    assert_eq!(verified.compact_revision, compacted);
    assert!(verified.auth_enabled);
    assert_eq!((verified.users, verified.roles, verified.leases), (2, 2, 1));

    let dir = tempfile::tempdir().unwrap();
    let backend = DiskBackend::open(&dir.path().join("db")).unwrap();
    let (mut backend, loaded_summary) =
        load_etcd_snapshot(backend, &snapshot, |_, _| true).expect("the snapshot loads");
    backend.commit(true).unwrap();
    assert_eq!(loaded_summary, verified);
    let state = StateMachine::open(backend, 0).unwrap();
    assert_eq!(state.current_revision(), current);
    assert_eq!(state.mvcc().compact_revision(), compacted);
    let range = state
        .range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .unwrap();
    let ours: Vec<Kv> = range
        .kvs
        .iter()
        .map(|kv| {
            (
                kv.key.to_vec(),
                kv.create_revision,
                kv.mod_revision,
                kv.version,
                kv.value.to_vec(),
                kv.lease,
            )
        })
        .collect();
    assert_eq!(ours, kvs_of(&served));
    assert_eq!(ours.len(), 6, "k1 k6 l/a l/b t/a t/b: {ours:?}");
    for revision in compacted + 1..=current {
        assert_eq!(
            i64::from(state.mvcc().hash_kv(revision).unwrap()),
            hashkv(&etcd, revision).2,
            "HashKV at revision {revision}"
        );
    }
    let lease = state
        .lessor()
        .get(loaded.lease_id)
        .expect("the lease came over");
    assert_eq!(lease.ttl_seconds, LEASE_TTL_SECONDS);
    assert_eq!(
        lease.keys.iter().cloned().collect::<Vec<_>>(),
        vec![b"l/a".to_vec(), b"l/b".to_vec()]
    );
    let auth = state.auth();
    assert!(auth.is_enabled());
    assert_eq!(auth.user_names().collect::<Vec<_>>(), ["alice", "root"]);
    assert_eq!(auth.role_names().collect::<Vec<_>>(), ["reader", "root"]);
    assert_eq!(auth.user("alice").unwrap().roles, ["reader"]);
    assert_eq!(
        auth.revision(),
        raw_auth_revision(&snapshot_bytes_without_digest(&snapshot))
    );
    // A member's own database file (no trailer; bbolt grows the file past
    // its last page) reads the same.
    etcd.kill9();
    let member_db = etcd.data_dir().join("member").join("snap").join("db");
    let (layout, from_member) = verify_etcd_snapshot(&member_db).expect("member/snap/db verifies");
    assert!(!layout.has_digest);
    assert_eq!(from_member, verified);
}

fn snapshot_bytes_without_digest(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    bytes.truncate(bytes.len() - 32);
    bytes
}

/// etcd's `authRevision`, read from its file with core's reader.
fn raw_auth_revision(bytes: &[u8]) -> u64 {
    use e2d_core::bbolt::{Db, EntryValue};
    let db = Db::open(bytes).unwrap();
    let auth = db.bucket(&db.root(), b"auth").unwrap().unwrap();
    let mut cursor = db.cursor(&auth);
    while let Some(entry) = cursor.next().unwrap() {
        if let (b"authRevision", EntryValue::Data(value)) = (entry.key.as_slice(), entry.value) {
            return u64::from_be_bytes(value.try_into().unwrap());
        }
    }
    panic!("no authRevision in etcd's auth bucket");
}

/// Restores the etcd snapshot at `snapshot` into `etcd`'s data dir with
/// `etcdctl snapshot restore`, as an operator would, and starts it there.
fn restore_etcd(etcd: &mut Server, snapshot: &Path) {
    etcd.kill9();
    std::fs::remove_dir_all(etcd.data_dir()).unwrap();
    let peer = format!("http://127.0.0.1:{}", etcd.peer_port());
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore"])
        .arg(snapshot)
        .arg("--data-dir")
        .arg(etcd.data_dir())
        .args(["--name", "default"])
        .args(["--initial-cluster", &format!("default={peer}")])
        .args(["--initial-advertise-peer-urls", &peer])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdctl snapshot restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    etcd.start();
}

/// Restores e2d's own snapshot at `snapshot` into `e2d`'s data dir (not
/// started).
fn restore_e2d(e2d: &mut Server, snapshot: &Path) {
    e2d.kill9();
    std::fs::remove_dir_all(e2d.data_dir()).unwrap();
    let out = Command::new(e2d_bin())
        .args(["snapshot", "restore"])
        .arg(snapshot)
        .arg("--data-dir")
        .arg(e2d.data_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "e2d snapshot restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes the tables of the (stopped) e2d's data dir as an etcd snapshot.
fn export_data_dir(data_dir: &Path, out: &Path) -> e2d_core::etcd_db::ExportSummary {
    let backend = DiskBackend::open(&data_dir.join("db")).unwrap();
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(out)
        .unwrap();
    let (summary, length) = write_etcd_snapshot(&backend.point_in_time(), &file).unwrap();
    assert_eq!(length % 512, 32, "etcd's test for a trailing SHA-256");
    summary
}

#[test]
fn e2d_tables_written_as_an_etcd_snapshot_are_served_by_etcd_as_by_e2d() {
    let (mut e2d, mut etcd) = Server::e2d_and_etcd();
    let loaded = load(&e2d);
    let own = e2d.scratch_dir().join("e2d.snap");
    snapshot_save(&e2d, &own);
    // e2d's own restore gives the tables a member holds (its members,
    // raft position and all), which the export must leave out.
    restore_e2d(&mut e2d, &own);
    let exported_path: PathBuf = e2d.scratch_dir().join("etcd.db");
    let exported = export_data_dir(&e2d.data_dir(), &exported_path);
    assert_eq!(exported.current_revision, exported.e2d_current_revision);
    e2d.start();

    let status = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&exported_path)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "etcdctl snapshot status: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(int(&status["revision"]), exported.current_revision);

    restore_etcd(&mut etcd, &exported_path);
    let ours = json(&e2d, &["get", "", "--prefix"]);
    let theirs = json(&etcd, &["get", "", "--prefix"]);
    assert_eq!(ours["header"]["revision"], theirs["header"]["revision"]);
    assert_eq!(kvs_of(&ours), kvs_of(&theirs));
    assert!(kvs_of(&ours).len() >= 6, "{ours}");
    let current = int(&ours["header"]["revision"]);
    let (_, compacted, _) = hashkv(&e2d, current);
    assert!(compacted > 0);
    for revision in compacted + 1..=current {
        assert_eq!(
            hashkv(&e2d, revision),
            hashkv(&etcd, revision),
            "hashkv --rev {revision}: e2d (left), etcd (right)"
        );
    }
    let lease = |server: &Server| {
        let value = json(
            server,
            &[
                "lease",
                "timetolive",
                &format!("{:x}", loaded.lease_id),
                "--keys",
            ],
        );
        // etcd lists a lease's keys in Go map order, which varies.
        let mut keys: Vec<String> = value["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|key| key.as_str().unwrap_or_default().to_owned())
            .collect();
        keys.sort();
        (int(&value["granted-ttl"]), keys)
    };
    assert_eq!(lease(&e2d), lease(&etcd));
    assert_eq!(lease(&etcd).0, LEASE_TTL_SECONDS);
    for args in [
        &["user", "list"][..],
        &["role", "list"],
        &["role", "get", "reader"],
        &["user", "get", "alice"],
    ] {
        let mut all = vec![ROOT];
        all.extend_from_slice(args);
        assert_eq!(
            e2d.etcdctl(&all).stdout,
            etcd.etcdctl(&all).stdout,
            "etcdctl {}",
            args.join(" ")
        );
    }
    // Auth is on in both: alice may read k*, not l/*.
    for server in [&e2d, &etcd] {
        server.etcdctl(&["--user=alice:alicepw", "get", "k1"]).ok();
        server
            .etcdctl(&["--user=alice:alicepw", "get", "l/a"])
            .fails_with("permission denied");
    }
    // etcd writes on through bbolt's own code over the pages e2d wrote,
    // and defragmenting reads them all: both still agree.
    for server in [&e2d, &etcd] {
        for key in ["k1", "k7", "t/a"] {
            etcdctl_ok(server, &[ROOT, "put", key, "after"]);
        }
        etcdctl_ok(server, &[ROOT, "del", "l/a"]);
    }
    etcdctl_ok(&etcd, &[ROOT, "defrag"]);
    let ours = json(&e2d, &["get", "", "--prefix"]);
    assert_eq!(
        kvs_of(&ours),
        kvs_of(&json(&etcd, &["get", "", "--prefix"]))
    );
    let current = int(&ours["header"]["revision"]);
    assert_eq!(hashkv(&e2d, current), hashkv(&etcd, current));
}

#[test]
fn damaged_etcd_snapshots_are_refused_with_a_clear_message() {
    let etcd = Server::etcd();
    etcdctl_ok(&etcd, &["put", "a", "1"]);
    let good = etcd.scratch_dir().join("good.db");
    etcdctl_ok(&etcd, &["snapshot", "save", good.to_str().unwrap()]);
    let bytes = std::fs::read(&good).unwrap();
    verify_etcd_snapshot(&good).expect("the undamaged snapshot verifies");
    let dir = tempfile::tempdir().unwrap();
    let refused = |name: &str, bytes: &[u8], expected: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let error = verify_etcd_snapshot(&path).expect_err(name).to_string();
        assert!(
            error.contains(expected),
            "{name}: {error:?} lacks {expected:?}"
        );
    };
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x01;
    refused("flipped", &flipped, "SHA-256 does not match");
    refused("cut", &bytes[..bytes.len() / 2], "truncated file");
    refused("text", &vec![b'#'; 8192], "not a bbolt database");
    // e2d's own snapshot format is not etcd's.
    let e2d = Server::e2d();
    let own = e2d.scratch_dir().join("e2d.snap");
    e2d_tests::e2d_command(
        &[
            "snapshot",
            "save",
            own.to_str().unwrap(),
            "--endpoint",
            &e2d.endpoint(),
            "--format",
            "e2d",
        ],
        &[],
    )
    .ok();
    refused("e2d", &std::fs::read(&own).unwrap(), "not a bbolt database");
    // The database alone (as `member/snap/db` holds it): damage in a page
    // is named with the page.
    let mut db = bytes[..bytes.len() - 32].to_vec();
    let meta = e2d_core::bbolt::layout::Meta::decode(db[16..80].try_into().unwrap());
    let root = meta.root.root as usize;
    db[root * 4096 + 8] = 0x20;
    refused("page", &db, &format!("page {root}"));
    // A bbolt file that is not etcd's.
    let mut writer = e2d_core::bbolt::DbWriter::new(Vec::new());
    writer.begin_bucket(b"widgets").unwrap();
    writer.put(b"w", b"1").unwrap();
    writer.end_bucket().unwrap();
    let (other, _) = writer.finish().unwrap();
    refused(
        "other",
        &other,
        "not an etcd database: it has no `key` bucket",
    );
}

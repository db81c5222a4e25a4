//! Snapshot backups end to end: the leader's periodic snapshots into a
//! directory, S3 (moto_server on loopback) and a Spaces URL mapped to the
//! same endpoint; `e2d snapshot save | list | inspect | restore`; refusal
//! of damaged, truncated, foreign-keyed and unencrypted snapshots without
//! touching the data dir; and a three-node cluster restored after losing
//! every node and disk.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2d_tests::gossip_cluster::GossipCluster;
use e2d_tests::moto::Moto;
use e2d_tests::one_at_a_time;
use e2d_tests::{e2d_command, CmdOutput, Server};
use serde_json::Value;

const CA_KEY: &str = include_str!("../../shell/src/backup/testdata/ec_sec1.pem");
const OTHER_CA_KEY: &str = include_str!("../../shell/src/backup/testdata/other_ec_sec1.pem");
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30);
const FORM_TIMEOUT: Duration = Duration::from_secs(60);

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("e2d-snapshots-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("ca.key"), CA_KEY).unwrap();
        std::fs::write(dir.path().join("other-ca.key"), OTHER_CA_KEY).unwrap();
        Scratch { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn text(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn store_url(&self) -> String {
        format!("file://{}", self.text("store"))
    }
}

fn e2d(args: &[&str]) -> CmdOutput {
    e2d_command(args, &[])
}

fn e2d_env(args: &[&str], env: &[(&'static str, String)]) -> CmdOutput {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    e2d_command(args, &env)
}

/// The snapshots `e2d snapshot list --json` shows.
fn listed(url: &str, env: &[(&'static str, String)], extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["snapshot", "list", url, "--json"];
    args.extend_from_slice(extra);
    e2d_env(&args, env)
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until the store holds a snapshot at `revision` or later; returns
/// its name.
#[track_caller]
fn wait_for_snapshot(
    url: &str,
    env: &[(&'static str, String)],
    extra: &[&str],
    revision: i64,
) -> String {
    let deadline = Instant::now() + SNAPSHOT_TIMEOUT;
    loop {
        // Listed while the member writes and prunes beside it: a file
        // store's listing passes over what goes away as it reads.
        if let Some(found) = listed(url, env, extra)
            .iter()
            .find(|s| s["revision"].as_i64().unwrap_or(0) >= revision)
        {
            return found["name"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot at revision {revision} in {url}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn sealed_flags(scratch: &Scratch) -> Vec<String> {
    vec![
        "--snapshot-compression".into(),
        "--snapshot-encryption".into(),
        "--ca-key".into(),
        scratch.text("ca.key"),
    ]
}

/// `e2d run` flags for sealed, compressed snapshots into the scratch
/// store every second, and `extra`.
fn backing_up(scratch: &Scratch, extra: &[&str]) -> Vec<String> {
    let mut flags = vec![
        "--snapshot-backup-url".to_string(),
        scratch.store_url(),
        "--snapshot-interval".into(),
        "1s".into(),
    ];
    flags.extend(sealed_flags(scratch));
    flags.extend(extra.iter().map(|f| f.to_string()));
    flags
}

fn as_strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

#[test]
fn the_leader_snapshots_prunes_and_an_offline_restore_serves_the_data() {
    let _serial = one_at_a_time();
    let scratch = Scratch::new();
    let url = scratch.store_url();
    let flags = backing_up(&scratch, &["--snapshot-retention", "2"]);
    let server = Server::e2d_with(&as_strs(&flags));
    for i in 0..5 {
        server
            .etcdctl(&["put", &format!("k{i}"), &format!("v{i}")])
            .ok();
        std::thread::sleep(Duration::from_millis(700));
    }
    server.etcdctl(&["del", "k4"]).ok();
    let revision = server.revision();
    let name = wait_for_snapshot(&url, &[], &[], revision);
    // Retention 2: older snapshots are pruned after each new one.
    let deadline = Instant::now() + SNAPSHOT_TIMEOUT;
    while listed(&url, &[], &[]).len() > 2 {
        assert!(
            Instant::now() < deadline,
            "snapshots were not pruned to 2: {:?}",
            listed(&url, &[], &[])
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let file = scratch.path("store").join(&name);
    let file = file.to_str().unwrap();
    let key = scratch.text("ca.key");
    let inspected = e2d(&["snapshot", "inspect", file, "--json", "--ca-key", &key]).json();
    assert_eq!(inspected["encrypted"], true);
    assert_eq!(inspected["compressed"], true);
    assert_eq!(inspected["keys"], 4, "{inspected}");
    assert!(inspected["revision"].as_i64().unwrap() >= revision);
    e2d(&["snapshot", "inspect", file]).fails_with("pass the CA key it was encrypted with");

    let mut restored = GossipCluster::on_loopback(1, &[]);
    let data_dir = restored.nodes[0].data_dir();
    let out = e2d(&[
        "snapshot",
        "restore",
        &url,
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--ca-key",
        &key,
    ]);
    assert!(out.out().contains("Restored"), "{out}");
    e2d(&[
        "snapshot",
        "restore",
        file,
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--ca-key",
        &key,
    ])
    .fails_with("already exists and is not empty");
    restored.start(0);
    restored.wait_until("the restored node serves", FORM_TIMEOUT, |c| {
        c.nodes[0].is_healthy()
    });
    let got = restored.nodes[0]
        .etcdctl(&["get", "k", "--prefix", "-w", "json"])
        .json();
    assert_eq!(got["count"], 4, "{got}");
    let marker = restored.nodes[0].etcdctl(&["get", "/_e2d/snapshot", "--print-value-only"]);
    assert!(marker.out().trim().ends_with('Z'), "{marker}");
}

/// Writes `bytes` to a new file and returns its path as text.
fn write_variant(scratch: &Scratch, name: &str, bytes: &[u8]) -> String {
    std::fs::write(scratch.path(name), bytes).unwrap();
    scratch.text(name)
}

#[test]
fn tampered_snapshots_are_refused_and_the_data_dir_is_untouched() {
    let _serial = one_at_a_time();
    let scratch = Scratch::new();
    let server = Server::e2d();
    for i in 0..50 {
        server
            .etcdctl(&["put", &format!("key-{i:03}"), &"x".repeat(200)])
            .ok();
    }
    let sealed = sealed_flags(&scratch);
    let endpoint = server.endpoint();
    let save = |path: &str, extra: &[&str]| {
        let mut args = vec!["snapshot", "save", path, "--endpoint", &endpoint];
        args.extend_from_slice(extra);
        let out = e2d(&args);
        assert!(out.out().contains("Snapshot saved at"), "{out}");
        std::fs::read(path).unwrap()
    };
    let good = save(&scratch.text("good.snap"), &as_strs(&sealed));
    let second = save(&scratch.text("second.snap"), &as_strs(&sealed));
    save(&scratch.text("plain.snap"), &["--snapshot-compression"]);
    // What etcdctl saves from us is a snapshot too.
    let etcdctl_copy = scratch.text("etcdctl.snap");
    server.etcdctl(&["snapshot", "save", &etcdctl_copy]).ok();

    let key = scratch.text("ca.key");
    let other_key = scratch.text("other-ca.key");
    let require = ["--snapshot-encryption", "--ca-key", key.as_str()];
    let restore = |file: &str, flags: &[&str]| {
        let data_dir = scratch.path("restored");
        let mut args = vec![
            "snapshot",
            "restore",
            file,
            "--data-dir",
            data_dir.to_str().unwrap(),
        ];
        args.extend_from_slice(flags);
        let out = e2d(&args);
        (out, data_dir)
    };
    let refused = |file: &str, flags: &[&str], reason: &str| {
        let (out, data_dir) = restore(file, flags);
        out.fails_with(reason);
        assert!(out.stderr.contains("the data dir was not touched"), "{out}");
        assert!(
            !data_dir.exists(),
            "a refused restore created {}",
            data_dir.display()
        );
        let mut inspect = vec!["snapshot", "inspect", file];
        inspect.extend_from_slice(flags);
        e2d(&inspect).fails_with(reason);
    };

    // One flipped byte anywhere: the header, the middle, the tag. Under
    // gzip the damage shows as a broken stream or a failed tag.
    for at in [12, 40, good.len() / 2, good.len() - 20, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        let file = write_variant(&scratch, &format!("flip-{at}.snap"), &bad);
        let (out, data_dir) = restore(&file, &require);
        assert!(!out.success(), "a flip at byte {at} was accepted: {out}");
        assert!(!data_dir.exists());
    }
    for cut in [good.len() - 1, good.len() - 40, good.len() / 2, 30] {
        let file = write_variant(&scratch, &format!("cut-{cut}.snap"), &good[..cut]);
        let (out, data_dir) = restore(&file, &require);
        assert!(
            !out.success(),
            "a snapshot cut at {cut} was accepted: {out}"
        );
        assert!(!data_dir.exists());
    }
    refused(
        &scratch.text("good.snap"),
        &["--snapshot-encryption", "--ca-key", &other_key],
        "encrypted with another CA key",
    );
    refused(&scratch.text("plain.snap"), &require, "is not encrypted");
    refused(&scratch.text("etcdctl.snap"), &require, "is not encrypted");

    // The header of one sealed snapshot on the body of another: without
    // gzip the bytes can be spliced directly.
    let raw_first = save(
        &scratch.text("raw1.snap"),
        &["--snapshot-encryption", "--ca-key", &key],
    );
    let raw_second = save(
        &scratch.text("raw2.snap"),
        &["--snapshot-encryption", "--ca-key", &key],
    );
    let header = 8 + 8 + 16;
    let mut swapped = raw_second[..header].to_vec();
    swapped.extend_from_slice(&raw_first[header..]);
    let file = write_variant(&scratch, "swapped.snap", &swapped);
    refused(&file, &require, "failed authentication");
    let not_a_snapshot = write_variant(&scratch, "text.snap", b"hello, world\n");
    refused(&not_a_snapshot, &[], "not a snapshot");
    assert_ne!(good, second, "two sealed snapshots share an IV");

    // The good ones restore: sealed, plain, and etcdctl's copy.
    for (file, flags) in [
        ("good.snap", &require[..]),
        ("plain.snap", &[][..]),
        ("etcdctl.snap", &[][..]),
    ] {
        let (out, data_dir) = restore(&scratch.text(file), flags);
        assert!(out.out().contains("Restored"), "{file}: {out}");
        std::fs::remove_dir_all(&data_dir).unwrap();
    }

    // A stopped member's data dir snapshots without a server.
    let mut server = server;
    server.kill9();
    let offline = scratch.text("offline.snap");
    let data_dir = server.data_dir();
    let out = e2d(&[
        "snapshot",
        "save",
        &offline,
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--snapshot-compression",
    ]);
    assert!(out.out().contains("Snapshot saved at"), "{out}");
    let inspected = e2d(&["snapshot", "inspect", &offline, "--json"]).json();
    assert_eq!(inspected["keys"], 50, "{inspected}");

    // A store whose newest snapshot is damaged falls back to the next.
    let store = scratch.path("store");
    std::fs::create_dir_all(&store).unwrap();
    let older = "e2d-snapshot-20260101T000000.000Z-0000000000000001-00000000000000000010.snap";
    let newer = "e2d-snapshot-20260101T000100.000Z-0000000000000001-00000000000000000020.snap";
    std::fs::write(store.join(older), &good).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x80;
    std::fs::write(store.join(newer), &bad).unwrap();
    let (out, _) = restore(&scratch.store_url(), &require);
    assert!(out.out().contains(older), "{out}");
}

#[test]
fn a_cluster_that_lost_every_node_and_disk_comes_back_from_its_snapshot() {
    let _serial = one_at_a_time();
    let scratch = Scratch::new();
    let url = scratch.store_url();
    let flags = backing_up(&scratch, &[]);
    let flags = as_strs(&flags);
    let mut cluster = GossipCluster::on_loopback(3, &flags);
    for i in 0..3 {
        cluster.start(i);
    }
    cluster.wait_until("the nodes form one cluster", FORM_TIMEOUT, |c| {
        (0..3).all(|i| c.nodes[i].is_healthy() && c.has_running_nodes_as_voters(i))
    });
    for i in 0..20 {
        cluster.put(i % 3, &format!("/app/key-{i:02}"), &format!("value-{i}"));
    }
    let revision = cluster.nodes[0]
        .etcdctl(&["get", "/app/key-19", "-w", "json"])
        .json()["header"]["revision"]
        .as_i64()
        .unwrap();
    wait_for_snapshot(&url, &[], &[], revision);

    for i in 0..3 {
        cluster.kill9(i);
    }
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
    for i in 0..3 {
        assert_eq!(
            cluster.count(i, "/app/"),
            Some(20),
            "node {i}\n{}",
            cluster.logs()
        );
    }
    let value = cluster.nodes[1].etcdctl(&["get", "/app/key-07", "--print-value-only"]);
    assert_eq!(value.out().trim(), "value-7");
    cluster.wait_until("/_e2d/snapshot is set", SNAPSHOT_TIMEOUT, |c| {
        c.nodes[2]
            .etcdctl(&["get", "/_e2d/snapshot", "--print-value-only"])
            .stdout
            .trim()
            .ends_with('Z')
    });
    assert_eq!(cluster.count(0, "/_e2d/join-lock"), Some(0));
    // The restored cluster writes and snapshots on its own.
    cluster.put(0, "/app/after", "restore");
    let after = cluster.nodes[0]
        .etcdctl(&["get", "/app/after", "-w", "json"])
        .json()["header"]["revision"]
        .as_i64()
        .unwrap();
    wait_for_snapshot(&url, &[], &[], after);
}

#[test]
fn s3_and_spaces_stores_on_a_real_s3_api() {
    let _serial = one_at_a_time();
    let scratch = Scratch::new();
    let moto = Moto::start();
    moto.create_bucket("e2d-backups");
    let env = moto.aws_env();
    let s3_url = "s3://e2d-backups/prod/etcd";

    // Periodic snapshots into S3, then a fresh node restores from there.
    let mut single = GossipCluster::on_loopback(
        1,
        &[
            "--snapshot-backup-url",
            s3_url,
            "--snapshot-interval",
            "1s",
            "--snapshot-compression",
        ],
    );
    single.nodes[0].env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    single.start(0);
    single.wait_until("the node serves", FORM_TIMEOUT, |c| c.nodes[0].is_healthy());
    for i in 0..10 {
        single.put(0, &format!("s3-{i}"), "v");
    }
    let revision = single.nodes[0]
        .etcdctl(&["get", "s3-9", "-w", "json"])
        .json()["header"]["revision"]
        .as_i64()
        .unwrap();
    wait_for_snapshot(s3_url, &env, &[], revision);
    single.kill9(0);
    single.nodes[0] = e2d_tests::gossip_cluster::Node::replacing(&single.nodes[0]);
    single.start(0);
    single.wait_until(
        "the fresh node serves the restored data",
        FORM_TIMEOUT,
        |c| c.nodes[0].is_healthy() && c.count(0, "s3-") == Some(10),
    );

    // A database larger than one upload part goes up as a multipart
    // upload, and comes back whole.
    let server = Server::e2d();
    let mut value = vec![0u8; 1024 * 1024];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for byte in value.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = b'a' + (state % 26) as u8;
    }
    let value = String::from_utf8(value).unwrap();
    for i in 0..18 {
        server
            .etcdctl_stdin(&["put", &format!("big-{i:02}")], &value)
            .ok();
    }
    let big_url = "s3://e2d-backups/big";
    let saved = e2d_env(
        &[
            "snapshot",
            "save",
            big_url,
            "--endpoint",
            &server.endpoint(),
        ],
        &env,
    );
    assert!(
        saved
            .out()
            .contains("Snapshot saved at s3://e2d-backups/big/"),
        "{saved}"
    );
    let big = listed(big_url, &env, &[]);
    assert_eq!(big.len(), 1, "{big:?}");
    assert!(
        big[0]["size_bytes"].as_u64().unwrap() > 16 * 1024 * 1024,
        "{big:?}"
    );
    let data_dir = scratch.path("big-restored");
    let restored = e2d_env(
        &[
            "snapshot",
            "restore",
            big_url,
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        &env,
    );
    assert!(restored.out().contains("Restored"), "{restored}");

    // A Spaces URL, pointed at the same S3 API.
    moto.create_bucket("my-space");
    let spaces_url = "https://nyc3.digitaloceanspaces.com/my-space/e2d";
    let endpoint = moto.endpoint();
    let spaces_flags = [
        "--do-spaces-endpoint",
        &endpoint,
        "--do-spaces-key",
        "key",
        "--do-spaces-secret",
        "secret",
    ];
    let key = scratch.text("ca.key");
    let server_endpoint = server.endpoint();
    let mut save = vec![
        "snapshot",
        "save",
        spaces_url,
        "--endpoint",
        &server_endpoint,
        "--snapshot-encryption",
        "--ca-key",
        &key,
    ];
    save.extend_from_slice(&spaces_flags);
    let saved = e2d(&save);
    assert!(
        saved
            .out()
            .contains("Snapshot saved at https://nyc3.digitaloceanspaces.com/my-space/e2d/"),
        "{saved}"
    );
    let in_spaces = listed(spaces_url, &[], &spaces_flags);
    assert_eq!(in_spaces.len(), 1, "{in_spaces:?}");
    let data_dir = scratch.path("spaces-restored");
    let mut restore = vec![
        "snapshot",
        "restore",
        spaces_url,
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--snapshot-encryption",
        "--ca-key",
        &key,
    ];
    restore.extend_from_slice(&spaces_flags);
    assert!(e2d(&restore).out().contains("Restored"));
    assert!(data_dir.join("db").exists());
    // Half a key pair is refused before anything is sent.
    e2d(&["snapshot", "list", spaces_url, "--do-spaces-key", "key"])
        .fails_with("give both the access key and the secret key");
}

#[test]
fn bad_snapshot_flags_are_refused_with_the_reason() {
    let scratch = Scratch::new();
    let data_dir = scratch.text("data");
    let run = |flags: &[&str]| {
        let mut args = vec![
            "run",
            "--data-dir",
            &data_dir,
            "--client-addr",
            "127.0.0.1:0",
            "--peer-addr",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(flags);
        e2d(&args)
    };
    run(&["--snapshot-backup-url", "ftp://host/x"]).fails_with("unknown scheme");
    run(&[
        "--snapshot-backup-url",
        "file:///tmp/x",
        "--snapshot-encryption",
    ])
    .fails_with("needs --ca-key");
    run(&["--snapshot-encryption"]).fails_with("need --snapshot-backup-url");
    let missing = scratch.text("missing.key");
    run(&[
        "--snapshot-backup-url",
        "file:///tmp/x",
        "--snapshot-encryption",
        "--ca-key",
        &missing,
    ])
    .fails_with("cannot read the CA key");
    let not_a_key = write_variant(
        &scratch,
        "cert.pem",
        b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    run(&[
        "--snapshot-backup-url",
        "file:///tmp/x",
        "--snapshot-encryption",
        "--ca-key",
        &not_a_key,
    ])
    .fails_with("found a CERTIFICATE block");
    run(&["--snapshot-retention", "0"]).fails_with("at least one snapshot must be kept");
    run(&[
        "--snapshot-backup-url",
        "file:///tmp/x",
        "--snapshot-interval",
        "10ms",
    ])
    .fails_with("snapshot interval");
    assert!(!Path::new(&data_dir).join("db").exists());
}

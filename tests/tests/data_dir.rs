//! The data dir is private, as etcd's: e2d makes its directories 0700 and
//! the files it writes 0600 (the raft log's segments, the member's name,
//! saved snapshots), and a data dir that others may enter is warned about
//! in etcd's words at start and narrowed to 0700.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use e2d_tests::{e2d_command, Server};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The raft log's segment files in `data_dir`.
fn segments(data_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data_dir.join("wal"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect()
}

#[test]
fn the_data_dir_its_log_and_saved_snapshots_are_private() {
    let server = Server::e2d();
    server.etcdctl(&["put", "k", "v"]).ok();
    let data_dir = server.data_dir();
    for dir in [&data_dir, &data_dir.join("wal"), &data_dir.join("db")] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
    let segments = segments(&data_dir);
    assert!(
        !segments.is_empty(),
        "no segments in {}",
        data_dir.display()
    );
    for file in segments.iter().chain([&data_dir.join("name")]) {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }

    let saved = server.scratch_dir().join("saved.snap");
    let saved_text = saved.to_str().unwrap();
    let endpoint = server.endpoint();
    let out = e2d_command(
        &["snapshot", "save", saved_text, "--endpoint", &endpoint],
        &[],
    );
    assert!(out.ok().out().contains("Snapshot saved at"), "{out}");
    assert_eq!(mode(&saved), 0o600);

    let restored = server.scratch_dir().join("restored");
    let restored_text = restored.to_str().unwrap();
    let out = e2d_command(
        &[
            "snapshot",
            "restore",
            saved_text,
            "--data-dir",
            restored_text,
        ],
        &[],
    );
    assert!(out.ok().out().contains("Restored"), "{out}");
    assert_eq!(mode(&restored), 0o700);
    assert_eq!(mode(&restored.join("db")), 0o700);
}

#[test]
fn a_data_dir_others_may_enter_is_warned_about_and_made_private() {
    let mut server = Server::e2d();
    server.kill9();
    let data_dir = server.data_dir();
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    server.start();
    let warning = format!(
        "directory \"{}\" exist, but the permission is \"drwxr-xr-x\". \
         The recommended permission is \"-rwx------\"",
        data_dir.display()
    );
    let log = server.log();
    assert!(log.contains(&warning), "{log}");
    assert_eq!(mode(&data_dir), 0o700);
    server.etcdctl(&["put", "k", "v"]).ok();
}

#[test]
fn a_data_dir_written_by_a_newer_e2d_is_refused_and_left_as_is() {
    let mut server = Server::e2d();
    server.etcdctl(&["put", "kept", "v"]).ok();
    server.kill9();
    let format = server.data_dir().join("format");
    assert_eq!(std::fs::read_to_string(&format).unwrap(), "1");
    std::fs::write(&format, "2").unwrap();
    let refused = server.try_start().unwrap_err();
    assert!(
        refused.contains("was written by a newer e2d (data format 2"),
        "{refused}"
    );
    assert_eq!(std::fs::read_to_string(&format).unwrap(), "2");
    // Back at a format it reads, the member starts with its data.
    std::fs::write(&format, "1").unwrap();
    server.start();
    let got = server.etcdctl(&["get", "kept", "--print-value-only"]);
    assert_eq!(got.stdout.trim(), "v");
}

#[test]
fn a_recovery_that_stopped_before_it_began_is_set_aside_and_one_with_a_damaged_marker_refused() {
    let mut server = Server::e2d();
    server.etcdctl(&["put", "kept", "v"]).ok();
    server.kill9();
    let data_dir = server.data_dir();
    // `e2d cluster recover` stopped after writing part of the new log and
    // before its marker: the old log is whole, and the attempt goes aside.
    let attempt = data_dir.join("wal.recovering");
    std::fs::create_dir(&attempt).unwrap();
    std::fs::write(attempt.join("0000000000000001.wal"), b"partial").unwrap();
    server.start();
    let got = server.etcdctl(&["get", "kept", "--print-value-only"]);
    assert_eq!(got.stdout.trim(), "v");
    assert!(!attempt.exists());
    assert!(
        data_dir
            .join("archive/unfinished-recovery/0000000000000001.wal")
            .exists(),
        "{}",
        server.log()
    );
    // A marker that cannot be read stops the start, naming the file.
    server.kill9();
    std::fs::write(data_dir.join("recovering"), b"not a marker").unwrap();
    let refused = server.try_start().unwrap_err();
    assert!(
        refused.contains("recovering is damaged")
            && refused.contains("a recovery of this data dir was under way"),
        "{refused}"
    );
}

#[test]
fn a_damaged_automatic_recovery_choice_stops_the_start_naming_the_file() {
    let mut server = Server::e2d();
    server.etcdctl(&["put", "kept", "v"]).ok();
    server.kill9();
    let choice = server.data_dir().join("recovery-left-to");
    std::fs::write(&choice, "not a member id").unwrap();
    let refused = server.try_start().unwrap_err();
    assert!(
        refused.contains("recovery-left-to is not a recovery record e2d wrote"),
        "{refused}"
    );
    assert_eq!(std::fs::read_to_string(&choice).unwrap(), "not a member id");
    // A record e2d wrote lets it start with its data.
    std::fs::write(&choice, "8b31080a69e19b03\n").unwrap();
    server.start();
    let got = server.etcdctl(&["get", "kept", "--print-value-only"]);
    assert_eq!(got.stdout.trim(), "v");
}

#[test]
fn a_damaged_record_of_the_cluster_that_removed_the_member_stops_the_start() {
    let mut server = Server::e2d();
    server.kill9();
    // The data dir as a removed member leaves it: its member data moved
    // aside, the cluster that removed it recorded.
    let data_dir = server.data_dir();
    std::fs::remove_dir_all(&data_dir).unwrap();
    std::fs::create_dir(&data_dir).unwrap();
    let record = data_dir.join("removed-from");
    std::fs::write(&record, "not a cluster id").unwrap();
    let refused = server.try_start().unwrap_err();
    assert!(
        refused.contains("removed-from is not a record e2d wrote of the cluster that removed"),
        "{refused}"
    );
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        "not a cluster id"
    );
    // A record e2d wrote lets it start, here founding a cluster of one.
    std::fs::write(&record, r#"{"cluster_id":"3419bbf89d1d3110","voters":[]}"#).unwrap();
    server.start();
    server.etcdctl(&["put", "after", "v"]).ok();
}

#[test]
fn a_member_older_than_its_clusters_recorded_version_refuses_to_start() {
    let mut server = Server::e2d();
    // The cluster as a newer e2d would leave it: its version recorded.
    server
        .etcdctl(&["put", "/_e2d/cluster-version", "9.0.0"])
        .ok();
    let status = e2d_command(&["status", "--endpoint", &server.endpoint(), "--json"], &[]);
    assert_eq!(status.ok().json()["cluster_version"], "9.0.0", "{status}");
    server.kill9();
    let refused = server.try_start().unwrap_err();
    assert!(
        refused.contains("this member's cluster runs at version 9.0.0 and this e2d is 0.1.0"),
        "{refused}"
    );
}

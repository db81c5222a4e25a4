//! Automatic compaction (`--auto-compaction-mode`,
//! `--auto-compaction-retention`): the leader compacts on its own, and the
//! flags are read as etcd reads them.

use std::thread;
use std::time::{Duration, Instant};

use e2d_tests::{e2d_command, Server};

/// A retention of one second compacts within a few: a first compaction
/// one retention after the start, then one every retention.
const COMPACTED_WITHIN: Duration = Duration::from_secs(15);

#[test]
fn periodic_mode_compacts_the_history_older_than_the_retention() {
    let s = Server::e2d_with(&["--auto-compaction-retention", "1s"]);
    s.etcdctl(&["put", "k", "old"]).ok();
    let old = s.revision();
    s.etcdctl(&["put", "k", "new"]).ok();
    // Readable until the leader compacts past it; the newest value stays.
    assert_eq!(
        s.etcdctl(&["get", "k", "--rev", &old.to_string(), "--print-value-only"])
            .out(),
        "old\n"
    );
    let deadline = Instant::now() + COMPACTED_WITHIN;
    loop {
        // Writes keep the revision moving, so each sample is a new one.
        s.etcdctl(&["put", "other", "x"]).ok();
        let got = s.etcdctl(&["get", "k", "--rev", &old.to_string()]);
        if !got.success() {
            got.fails_with("required revision has been compacted");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "revision {old} still readable after {COMPACTED_WITHIN:?}:\n{}",
            s.log()
        );
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        s.etcdctl(&["get", "k", "--print-value-only"]).out(),
        "new\n"
    );
}

#[test]
fn a_duration_is_refused_in_revision_mode() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data").display().to_string();
    let args = [
        "run",
        "--data-dir",
        &data_dir,
        "--auto-compaction-mode",
        "revision",
        "--auto-compaction-retention",
        "1h",
    ];
    e2d_command(&args, &[]).fails_with("not a number of revisions");
    let args = [
        "run",
        "--data-dir",
        &data_dir,
        "--auto-compaction-mode",
        "hourly",
    ];
    e2d_command(&args, &[]).fails_with("hourly");
}

//! What `e2d run` logs: JSON lines with `--log-format json`, plain text
//! without colour codes when the log is a file, and raft's own lines in
//! both.

use e2d_tests::cluster::Cluster;

#[test]
fn json_logs_are_one_object_per_line_with_raft_lines_through_a_leader_kill() {
    let mut cluster = Cluster::start_with(3, &["--log-format", "json"]);
    let leader = cluster.leader();
    cluster.kill9(leader);
    let survivor = (leader + 1) % 3;
    cluster.wait_for_leader(Some(leader));
    cluster.put_eventually(survivor, "after-kill", "v");

    let mut raft_lines = Vec::new();
    let mut leader_lines = 0;
    for member in &cluster.members {
        let log = member.log();
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty(), "{} logged nothing", member.name);
        for line in lines {
            let object: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", member.name));
            let time = object["time"].as_str().unwrap_or_default();
            assert!(
                time.len() >= 20 && time.as_bytes()[10] == b'T' && time.ends_with('Z'),
                "{}: no RFC 3339 time: {line}",
                member.name
            );
            assert!(
                ["error", "warn", "info", "debug", "trace"]
                    .contains(&object["level"].as_str().unwrap_or_default()),
                "{}: no level: {line}",
                member.name
            );
            assert!(
                object["message"].is_string(),
                "{}: no message: {line}",
                member.name
            );
            assert_eq!(
                object["member"].as_str(),
                Some(member.name.as_str()),
                "{}: not named: {line}",
                member.name
            );
            if object["target"] == "raft" {
                assert!(
                    object["cluster_id"].is_string(),
                    "{}: a raft line without the cluster id: {line}",
                    member.name
                );
                let message = object["message"].as_str().unwrap_or_default().to_string();
                if message.starts_with("became leader") {
                    leader_lines += 1;
                }
                raft_lines.push(message);
            }
        }
    }
    assert!(!raft_lines.is_empty(), "no raft line in any log");
    // The first leader and the one elected after the kill.
    assert!(
        leader_lines >= 2,
        "{leader_lines} \"became leader\" lines; raft lines: {raft_lines:?}"
    );
}

#[test]
fn a_text_log_written_to_a_file_has_no_colour_codes() {
    let cluster = Cluster::start(1);
    cluster.put_eventually(0, "k", "v");
    let log = cluster.members[0].log();
    assert!(log.contains("serving clients"), "unexpected log: {log}");
    assert!(
        log.lines()
            .any(|l| l.contains("raft") && l.contains("became leader")),
        "no raft line in the text log: {log}"
    );
    assert!(
        !log.as_bytes().contains(&0x1b),
        "colour codes in a log file: {log:?}"
    );
}

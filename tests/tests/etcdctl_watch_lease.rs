//! `etcdctl watch` (as a child process) and `etcdctl lease` against e2d.

use std::time::Duration;

use e2d_tests::{int, Server};

const LINES: Duration = Duration::from_secs(10);

#[test]
fn watch_from_a_past_revision_with_prev_kv() {
    let s = Server::e2d();
    s.etcdctl(&["put", "k", "v1"]).ok(); // rev 2
    s.etcdctl(&["put", "k", "v2"]).ok(); // rev 3
    s.etcdctl(&["put", "other", "x"]).ok(); // rev 4

    let mut watch = s.spawn_etcdctl(&["watch", "k", "--rev", "2", "--prev-kv"]);
    // History replays in order; the first event has no previous value.
    assert_eq!(watch.lines(3, LINES), ["PUT", "k", "v1"]);
    assert_eq!(watch.lines(5, LINES), ["PUT", "k", "v1", "k", "v2"]);

    // Live events follow the replay.
    s.etcdctl(&["del", "k"]).ok();
    assert_eq!(watch.lines(5, LINES), ["DELETE", "k", "v2", "k", ""]);
    s.etcdctl(&["put", "k", "v3"]).ok();
    assert_eq!(watch.lines(3, LINES), ["PUT", "k", "v3"]);
}

#[test]
fn watch_prefix_sees_only_matching_keys_in_order() {
    let s = Server::e2d();
    s.etcdctl(&["put", "seed", "0"]).ok();
    let next = (s.revision() + 1).to_string();
    // Starting at the next revision makes the watch see every later write,
    // however long it takes to connect.
    let mut watch = s.spawn_etcdctl(&["watch", "--prefix", "p/", "--rev", &next]);

    s.etcdctl(&["put", "p/a", "1"]).ok();
    s.etcdctl(&["put", "q", "not watched"]).ok();
    s.etcdctl(&["put", "p", "not under p/"]).ok();
    s.etcdctl(&["put", "p/b", "2"]).ok();
    s.etcdctl(&["del", "--prefix", "p/"]).ok();
    s.etcdctl(&["put", "p/z", "last"]).ok();

    assert_eq!(
        watch.lines(15, LINES),
        [
            "PUT", "p/a", "1", //
            "PUT", "p/b", "2", //
            "DELETE", "p/a", "", //
            "DELETE", "p/b", "", //
            "PUT", "p/z", "last",
        ]
    );
}

#[test]
fn watch_range_and_txn_events() {
    let s = Server::e2d();
    let next = (s.revision() + 1).to_string();
    // Range [b, d).
    let mut watch = s.spawn_etcdctl(&["watch", "b", "d", "--rev", &next]);
    s.etcdctl_stdin(&["txn", "-i"], "\nput a 1\nput b 2\nput c 3\nput d 4\n\n\n")
        .ok();
    s.etcdctl(&["put", "c", "33"]).ok();
    assert_eq!(
        watch.lines(9, LINES),
        ["PUT", "b", "2", "PUT", "c", "3", "PUT", "c", "33"]
    );
}

/// Parses "lease 694d7a6b2b7e1a05 granted with TTL(60s)".
fn grant(s: &Server, ttl: &str) -> String {
    let out = s.etcdctl(&["lease", "grant", ttl]);
    let text = out.out().trim_end();
    let id = text
        .strip_prefix("lease ")
        .and_then(|rest| rest.strip_suffix(&format!(" granted with TTL({ttl}s)")))
        .unwrap_or_else(|| panic!("unexpected lease grant output: {text:?}"));
    assert!(
        !id.is_empty() && i64::from_str_radix(id, 16).is_ok_and(|n| n > 0),
        "lease id {id:?} is not positive hex"
    );
    id.to_string()
}

/// Remaining seconds from "lease X granted with TTL(60s), remaining(59s)...".
fn remaining(text: &str) -> i64 {
    let start = text.find("remaining(").expect("remaining(...) in output") + "remaining(".len();
    let end = start + text[start..].find("s)").expect("closing s)");
    text[start..end].parse().expect("remaining seconds")
}

#[test]
fn lease_grant_attach_keepalive_timetolive_revoke() {
    let s = Server::e2d();
    let id = grant(&s, "60");
    let other = grant(&s, "120");
    assert_ne!(id, other);

    s.etcdctl(&["put", "--lease", &id, "l/a", "1"]).ok();
    s.etcdctl(&["put", "--lease", &id, "l/b", "2"]).ok();
    s.etcdctl(&["put", "kept", "3"]).ok();

    let get = s.etcdctl(&["get", "l/a", "-w", "json"]).json();
    assert_eq!(
        format!("{:016x}", int(&get["kvs"][0]["lease"])),
        id,
        "key carries its lease: {get}"
    );

    let ttl = s.etcdctl(&["lease", "timetolive", &id, "--keys"]);
    let text = ttl.out().trim_end();
    assert!(
        text.starts_with(&format!("lease {id} granted with TTL(60s), remaining(")),
        "{text:?}"
    );
    assert!(text.ends_with("attached keys([l/a l/b])"), "{text:?}");
    let left = remaining(text);
    assert!(
        (55..=60).contains(&left),
        "remaining {left} for a fresh 60 s lease"
    );

    let json = s
        .etcdctl(&["lease", "timetolive", &id, "--keys", "-w", "json"])
        .json();
    assert_eq!(int(&json["granted-ttl"]), 60, "{json}");
    assert_eq!(json["keys"].as_array().map(Vec::len), Some(2), "{json}");

    assert_eq!(
        s.etcdctl(&["lease", "keep-alive", "--once", &id]).out(),
        format!("lease {id} keepalived with TTL(60)\n")
    );

    let list = s.etcdctl(&["lease", "list"]);
    let mut lines: Vec<&str> = list.out().lines().collect();
    assert_eq!(lines.remove(0), "found 2 leases");
    lines.sort();
    let mut want = vec![id.as_str(), other.as_str()];
    want.sort();
    assert_eq!(lines, want);

    assert_eq!(
        s.etcdctl(&["lease", "revoke", &id]).out(),
        format!("lease {id} revoked\n")
    );
    // Revoking deleted the attached keys, in one revision, and nothing else.
    assert_eq!(
        s.etcdctl(&["get", "--prefix", "", "--keys-only"]).out(),
        "kept\n\n"
    );
    assert_eq!(s.revision(), 5);
    assert_eq!(
        s.etcdctl(&["lease", "timetolive", &id]).out(),
        format!("lease {id} already expired\n")
    );
    s.etcdctl(&["lease", "keep-alive", "--once", &id])
        .fails_with("requested lease not found");
    s.etcdctl(&["lease", "revoke", &id])
        .fails_with("requested lease not found");
    s.etcdctl(&["put", "--lease", &id, "x", "y"])
        .fails_with("requested lease not found");
    assert_eq!(
        s.etcdctl(&["lease", "list"]).out(),
        format!("found 1 leases\n{other}\n")
    );
}

#[test]
fn lease_expiry_deletes_keys_and_notifies_watchers() {
    let s = Server::e2d();
    let id = grant(&s, "2");
    s.etcdctl(&["put", "--lease", &id, "short", "lived"]).ok();
    let next = s.revision().to_string();
    let mut watch = s.spawn_etcdctl(&["watch", "short", "--rev", &next]);
    assert_eq!(watch.lines(3, LINES), ["PUT", "short", "lived"]);
    // The lease expires after about 2 s; the key goes with it.
    assert_eq!(watch.lines(3, LINES), ["DELETE", "short", ""]);
    assert_eq!(s.etcdctl(&["get", "short"]).out(), "");
    assert_eq!(
        s.etcdctl(&["lease", "timetolive", &id]).out(),
        format!("lease {id} already expired\n")
    );
}

//! The same etcdctl command sequences against a fresh e2d and a fresh real
//! etcd, side by side: normalized outputs must be equal.
//!
//! `-w json` outputs are compared as JSON without `cluster_id`, `member_id`
//! and `raft_term` (which legitimately differ); text outputs are compared
//! as they are; failures are compared by exit status and etcdctl's final
//! `Error:` line.

use std::time::Duration;

use e2d_tests::{normalize_json, CmdOutput, Server};
use serde_json::Value;

struct Pair {
    e2d: Server,
    etcd: Server,
}

/// A fresh e2d and a fresh etcd, started concurrently.
fn pair() -> Pair {
    let (e2d, etcd) = Server::e2d_and_etcd();
    Pair { e2d, etcd }
}

/// What of an etcdctl result must match between the two servers.
#[derive(Debug, PartialEq)]
enum Outcome {
    Json(Value),
    Text(String),
    Failed(String),
}

fn outcome(out: &CmdOutput, json: bool, replace: &[(String, &str)]) -> Outcome {
    let subst = |text: &str| {
        replace.iter().fold(text.to_string(), |t, (from, to)| {
            t.replace(from.as_str(), to)
        })
    };
    if !out.success() {
        return Outcome::Failed(subst(&out.error_line()));
    }
    if json {
        let mut value = out.json();
        normalize_json(&mut value);
        substitute_json(&mut value, replace);
        Outcome::Json(value)
    } else {
        Outcome::Text(subst(&out.stdout))
    }
}

/// Replaces numbers equal to a `from` with the string `to`, and `from`
/// inside strings.
fn substitute_json(value: &mut Value, replace: &[(String, &str)]) {
    match value {
        Value::Number(n) => {
            if let Some((_, to)) = replace.iter().find(|(from, _)| *from == n.to_string()) {
                *value = Value::String(to.to_string());
            }
        }
        Value::String(text) => {
            for (from, to) in replace {
                *text = text.replace(from.as_str(), to);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| substitute_json(v, replace)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute_json(v, replace)),
        _ => {}
    }
}

impl Pair {
    /// Runs `args` on both, asserts equal normalized outcomes and that the
    /// command succeeded; returns the e2d outcome.
    #[track_caller]
    fn same(&self, args: &[&str]) -> Outcome {
        self.same_with(args, None, &[], &[], true)
    }

    /// [`Pair::same`] with `stdin` as etcdctl's input.
    #[track_caller]
    fn same_stdin(&self, args: &[&str], stdin: &str) -> Outcome {
        self.same_with(args, Some(stdin), &[], &[], true)
    }

    /// Runs `args` on both and asserts both fail with the same error.
    #[track_caller]
    fn fails(&self, args: &[&str]) -> Outcome {
        self.same_with(args, None, &[], &[], false)
    }

    /// [`Pair::fails`] with `stdin` as etcdctl's input.
    #[track_caller]
    fn fails_stdin(&self, args: &[&str], stdin: &str) -> Outcome {
        self.same_with(args, Some(stdin), &[], &[], false)
    }

    /// Runs `args` on both and compares. `e2d_subst` and `etcd_subst` map
    /// each server's own strings (such as lease IDs) to placeholders: the
    /// placeholders in `args` become the real strings, and the real strings
    /// in the outputs become placeholders. `succeed` says whether etcd is
    /// expected to accept the command (checked so that a typo in a step
    /// cannot make both fail alike).
    #[track_caller]
    fn same_with(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        e2d_subst: &[(String, &str)],
        etcd_subst: &[(String, &str)],
        succeed: bool,
    ) -> Outcome {
        let json = args.windows(2).any(|w| w == ["-w", "json"]);
        let run = |s: &Server, subst: &[(String, &str)]| {
            let args: Vec<String> = args
                .iter()
                .map(|a| {
                    subst.iter().fold(a.to_string(), |t, (real, placeholder)| {
                        t.replace(placeholder, real)
                    })
                })
                .collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match stdin {
                Some(input) => s.etcdctl_stdin(&args, input),
                None => s.etcdctl(&args),
            }
        };
        let (e2d_out, etcd_out) = std::thread::scope(|scope| {
            let etcd = scope.spawn(|| run(&self.etcd, etcd_subst));
            let e2d = run(&self.e2d, e2d_subst);
            (e2d, etcd.join().expect("etcdctl thread"))
        });
        assert_eq!(
            etcd_out.success(),
            succeed,
            "test step `etcdctl {}` on etcd itself: expected success={succeed}\n{etcd_out}",
            args.join(" ")
        );
        let got = outcome(&e2d_out, json, e2d_subst);
        let want = outcome(&etcd_out, json, etcd_subst);
        assert_eq!(
            got,
            want,
            "`etcdctl {}` differs between e2d (left) and etcd (right)\n=== e2d ===\n{e2d_out}\n=== etcd ===\n{etcd_out}",
            args.join(" ")
        );
        got
    }
}

#[test]
fn kv_put_get_delete_match_etcd() {
    let p = pair();
    p.same(&["put", "a", "1"]);
    p.same(&["put", "b", "2", "-w", "json"]);
    p.same(&["put", "a", "3"]);
    p.same(&["put", "c/1", "x"]);
    p.same(&["put", "c/2", "y"]);
    p.same(&["put", "--prev-kv", "b", "22", "-w", "json"]);
    p.same(&["put", "--prev-kv", "b", "222"]);
    p.same(&["get", "a"]);
    p.same(&["get", "a", "-w", "json"]);
    p.same(&["get", "missing", "-w", "json"]);
    p.same(&["get", "a", "c", "-w", "json"]);
    p.same(&["get", "a", "c"]);
    p.same(&["get", "--prefix", "c/", "-w", "json"]);
    p.same(&["get", "--prefix", "", "-w", "json"]);
    p.same(&["get", "--from-key", "b", "-w", "json"]);
    p.same(&["get", "--from-key", "", "--keys-only"]);
    p.same(&["get", "--prefix", "", "--keys-only", "-w", "json"]);
    p.same(&["get", "--prefix", "", "--print-value-only"]);
    p.same(&["get", "a", "--rev", "2", "-w", "json"]);
    p.same(&["get", "a", "--rev", "3"]);
    p.same(&["get", "--prefix", "", "--rev", "4", "-w", "json"]);
    p.fails(&["get", "a", "--rev", "100"]);
    p.same(&["get", "--prefix", "", "--consistency", "s", "-w", "json"]);
    p.same(&["del", "missing", "-w", "json"]);
    p.same(&["del", "a"]);
    p.same(&["del", "--prev-kv", "b", "-w", "json"]);
    p.same(&["del", "--prefix", "c/", "--prev-kv"]);
    p.same(&["get", "--prefix", "", "-w", "json"]);
    p.same(&["put", "a", "again", "-w", "json"]);
    p.same(&["get", "a", "-w", "json"]);
    p.same(&["get", "--prefix", "", "-w", "json", "--rev", "5"]);
}

#[test]
fn odd_keys_range_deletes_and_put_flags_match_etcd() {
    let p = pair();
    for (k, v) in [
        ("key with spaces", "value with spaces"),
        ("ключ", "значение"),
        ("a/b/c", "1"),
        ("a/b", "2"),
        ("a", "3"),
        ("a0", "4"),
        ("b", "5"),
        ("~tilde", "6"),
    ] {
        p.same(&["put", k, v]);
    }
    p.same(&["get", "--prefix", "", "-w", "json"]);
    p.same(&["get", "--prefix", "ключ"]);
    p.same(&["get", "--prefix", "a/", "-w", "json"]);
    p.same(&["get", "a", "a0", "-w", "json"]);
    p.same(&["get", "--from-key", "a/", "--keys-only"]);
    p.same(&[
        "get", "--prefix", "", "--rev", "5", "--limit", "2", "-w", "json",
    ]);

    // --ignore-value keeps the value, --ignore-lease the lease.
    p.same(&["put", "--ignore-value", "a", "-w", "json"]);
    p.same(&["get", "a", "-w", "json"]);
    p.fails(&["put", "--ignore-value", "missing"]);
    p.same(&["put", "--ignore-lease", "a0", "40"]);
    p.fails(&["put", "--ignore-lease", "missing", "v"]);

    p.same(&["del", "a", "a0", "--prev-kv", "-w", "json"]);
    p.same(&["del", "--from-key", "b", "--prev-kv"]);
    p.same(&["get", "--prefix", "", "-w", "json"]);
    p.same(&["del", "--prefix", "", "-w", "json"]);
    p.same(&["get", "--prefix", "", "-w", "json"]);
}

#[test]
fn member_list_matches_etcd() {
    let p = pair();
    let subst = |s: &Server| {
        let json = s.etcdctl(&["member", "list", "-w", "json"]).json();
        let id = e2d_tests::uint(&json["members"][0]["ID"]);
        vec![
            (format!("{id:x}"), "<id-hex>"),
            (id.to_string(), "<id>"),
            (format!("127.0.0.1:{}", s.client_port()), "<client>"),
            (format!("127.0.0.1:{}", s.peer_port()), "<peer>"),
        ]
    };
    let (e2d_subst, etcd_subst) = (subst(&p.e2d), subst(&p.etcd));
    for args in [
        &["member", "list"][..],
        &["member", "list", "-w", "json"][..],
    ] {
        p.same_with(args, None, &e2d_subst, &etcd_subst, true);
    }
}

#[test]
fn limits_and_sorting_match_etcd() {
    let p = pair();
    for (k, v) in [("d", "4"), ("b", "9"), ("a", "7"), ("c", "1"), ("e", "5")] {
        p.same(&["put", k, v]);
    }
    p.same(&["put", "b", "0"]);
    p.same(&["put", "b", "3"]);
    for limit in ["1", "2", "5", "6", "0"] {
        p.same(&["get", "--prefix", "", "--limit", limit, "-w", "json"]);
    }
    p.same(&["get", "b", "e", "--limit", "2", "-w", "json"]);
    for target in ["KEY", "VERSION", "CREATE", "MODIFY", "VALUE"] {
        for order in ["ASCEND", "DESCEND"] {
            let sort = format!("--sort-by={target}");
            let order = format!("--order={order}");
            p.same(&["get", "--prefix", "", &sort, &order, "-w", "json"]);
            p.same(&[
                "get", "--prefix", "", &sort, &order, "--limit", "2", "-w", "json",
            ]);
        }
    }
    p.same(&["get", "--prefix", "", "--order=DESCEND", "-w", "json"]);
    p.same(&["get", "--prefix", "", "--sort-by=MODIFY", "--keys-only"]);
}

const TXNS: &[&str] = &[
    // All compares true.
    "value(\"k\") = \"v\"\nmod(\"k\") > \"0\"\nversion(\"nope\") = \"0\"\n\nput t1 a\nget k\n\nput f1 b\n\n",
    // One compare false.
    "value(\"k\") = \"v\"\nversion(\"k\") > \"5\"\n\nput t2 a\n\nput f2 b\nget k\ndel t1\n\n",
    // Create revision, less-than, not-equal.
    "create(\"k\") = \"2\"\nmod(\"k\") < \"100\"\nvalue(\"k\") != \"x\"\n\nput k w\nget k\n\n\n",
    // No compares: success branch.
    "\nput u1 1\nput u2 2\ndel f1\n\nput never 1\n\n",
    // Range delete in a branch and a range get.
    "version(\"u1\") = \"1\"\n\ndel u1 u3\nget --prefix \"\"\n\n\n",
    // Value comparisons are bytewise.
    "value(\"k\") > \"v\"\nvalue(\"k\") < \"x\"\n\nput cmp yes\n\nput cmp no\n\n",
    // Compare on a missing key's value.
    "value(\"missing\") = \"\"\n\nput m1 yes\n\nput m1 no\n\n",
];

#[test]
fn txn_matches_etcd() {
    let p = pair();
    p.same(&["put", "k", "v"]);
    for txn in TXNS {
        p.same_stdin(&["txn", "-i", "-w", "json"], txn);
        p.same(&["get", "--prefix", "", "-w", "json"]);
    }
    for txn in TXNS {
        p.same_stdin(&["txn", "-i"], txn);
    }
    p.same(&["get", "--prefix", "", "-w", "json"]);
    // Duplicate keys in one branch.
    p.fails_stdin(&["txn", "-i"], "\nput d 1\nput d 2\n\n\n");
}

#[test]
fn compaction_matches_etcd() {
    let p = pair();
    for v in ["v1", "v2", "v3", "v4", "v5"] {
        p.same(&["put", "k", v]);
    }
    p.same(&["put", "other", "o"]);
    p.same(&["del", "other"]);
    p.same(&["compaction", "3"]);
    p.fails(&["get", "k", "--rev", "2"]);
    p.same(&["get", "k", "--rev", "3", "-w", "json"]);
    p.fails(&["get", "k", "--rev", "1"]);
    p.fails(&["compaction", "3"]);
    p.fails(&["compaction", "2"]);
    p.fails(&["compaction", "100"]);
    p.fails(&["get", "k", "--rev", "100"]);
    p.same(&["compaction", "--physical", "7"]);
    p.same(&["get", "--prefix", "", "--rev", "7", "-w", "json"]);
    p.fails(&["get", "--prefix", "", "--rev", "6"]);
    p.same(&["get", "--prefix", "", "-w", "json"]);
    p.same(&["put", "k", "v6", "-w", "json"]);
    p.same(&["compaction", "8"]);
    p.same(&["get", "k", "-w", "json"]);
    p.fails(&["compaction", "8"]);
}

#[test]
fn errors_match_etcd() {
    let p = pair();
    p.fails(&["put", "", "v"]);
    p.fails(&["get", ""]);
    p.fails(&["del", ""]);
    p.fails(&["get", "a", "--rev", "2"]);
    p.fails_stdin(&["put", "big"], &"x".repeat(1_700_000));
    p.fails(&["lease", "revoke", "123"]);
    p.fails(&["lease", "keep-alive", "--once", "123"]);
    p.same(&["lease", "timetolive", "123"]);
    p.fails(&["put", "--lease", "123", "k", "v"]);
    p.same(&["get", "--prefix", "", "-w", "json"]);
}

#[test]
fn leases_match_etcd() {
    let p = pair();
    let grant = |s: &Server| -> String {
        let out = s.etcdctl(&["lease", "grant", "100"]);
        out.out()
            .split_whitespace()
            .nth(1)
            .expect("lease ID in grant output")
            .to_string()
    };
    let (e2d_id, etcd_id) = (grant(&p.e2d), grant(&p.etcd));
    let subst = |hex: &str| {
        let decimal = i64::from_str_radix(hex, 16)
            .expect("hex lease ID")
            .to_string();
        vec![(hex.to_string(), "<lease>"), (decimal, "<lease-decimal>")]
    };
    let (e2d_subst, etcd_subst) = (subst(&e2d_id), subst(&etcd_id));
    let same = |args: &[&str]| p.same_with(args, None, &e2d_subst, &etcd_subst, true);

    same(&["put", "--lease", "<lease>", "l1", "a"]);
    same(&["put", "--lease", "<lease>", "l2", "b", "-w", "json"]);
    same(&["put", "plain", "c"]);
    same(&["get", "--prefix", "", "-w", "json"]);
    same(&["lease", "list"]);
    same(&["lease", "keep-alive", "--once", "<lease>"]);
    // Detach one key by writing it without a lease.
    same(&["put", "l2", "bb"]);
    same(&["put", "--ignore-lease", "l1", "aa"]);
    same(&["get", "--prefix", "", "-w", "json"]);
    same(&["lease", "revoke", "<lease>"]);
    same(&["get", "--prefix", "", "-w", "json"]);
    same(&["lease", "timetolive", "<lease>"]);
    same(&["lease", "list"]);
}

#[test]
fn watch_history_matches_etcd() {
    let p = pair();
    let steps: &[&[&str]] = &[
        &["put", "w/a", "1"],
        &["put", "w/b", "2"],
        &["put", "w/a", "3"],
        &["put", "x", "outside"],
        &["del", "w/b"],
        &["del", "--prefix", "w/"],
        &["put", "w/c", "4"],
    ];
    for step in steps {
        p.same(step);
    }
    p.same_stdin(&["txn", "-i"], "\nput w/d 5\nput w/e 6\ndel w/c\n\n\n");

    // 9 events, each a PUT/DELETE line, then (prev key, prev value,) key,
    // value: 4 of them have a previous value.
    let lines = 5 * 3 + 4 * 5;
    let collect = |s: &Server| {
        let mut watch = s.spawn_etcdctl(&["watch", "--prefix", "w/", "--rev", "1", "--prev-kv"]);
        let mut replay = watch.lines(lines, Duration::from_secs(10));
        // A marker write shows nothing else was pending before it.
        s.etcdctl(&["put", "w/marker", "m"]).ok();
        replay.extend(watch.lines(3, Duration::from_secs(10)));
        replay
    };
    let (got, want) = std::thread::scope(|scope| {
        let etcd = scope.spawn(|| collect(&p.etcd));
        (collect(&p.e2d), etcd.join().expect("watch thread"))
    });
    assert_eq!(&want[lines..], ["PUT", "w/marker", "m"]);
    assert_eq!(
        got, want,
        "watch --prev-kv replay differs between e2d (left) and etcd (right)"
    );
}

#[test]
fn hashkv_fields_match_etcd() {
    let p = pair();
    let hashkv = |extra: &[&str]| {
        let mut args = vec!["endpoint", "hashkv", "-w", "json"];
        args.extend_from_slice(extra);
        let run = |s: &Server| {
            let mut json = s.etcdctl(&args).json();
            normalize_json(&mut json);
            let entry = &mut json[0];
            entry.as_object_mut().expect("object").remove("Endpoint");
            entry["HashKV"]
                .as_object_mut()
                .expect("HashKV object")
                .remove("hash");
            json
        };
        let (got, want) = (run(&p.e2d), run(&p.etcd));
        assert_eq!(
            got,
            want,
            "`etcdctl {}` fields differ (hash ignored)",
            args.join(" ")
        );
    };
    hashkv(&[]);
    p.same(&["put", "a", "1"]);
    p.same(&["put", "a", "2"]);
    hashkv(&[]);
    hashkv(&["--rev", "2"]);
    p.same(&["compaction", "2"]);
    hashkv(&[]);
}

#[test]
fn hashkv_hash_matches_etcd() {
    let p = pair();
    p.same(&["put", "a", "1"]);
    p.same(&["put", "b", "2"]);
    p.same(&["put", "a", "3"]);
    p.same(&["del", "b"]);
    let hash = |s: &Server, rev: &str| {
        let json = s
            .etcdctl(&["endpoint", "hashkv", "--rev", rev, "-w", "json"])
            .json();
        e2d_tests::int(&json[0]["HashKV"]["hash"])
    };
    for rev in ["1", "2", "3", "5"] {
        assert_eq!(
            hash(&p.e2d, rev),
            hash(&p.etcd, rev),
            "hashkv --rev {rev} differs between e2d (left) and etcd (right)"
        );
    }
}

/// A member restarted with a quota its database already exceeds raises
/// NOSPACE on the first write and refuses writes while it is up; reads
/// and deletes go on, as on etcd.
#[test]
fn nospace_matches_etcd() {
    let mut p = pair();
    p.same(&["put", "before", "quota"]);
    for server in [&mut p.e2d, &mut p.etcd] {
        server.kill9();
        server.set_extra_args(&["--quota-backend-bytes", "1"]);
        server.start();
    }
    let member = |s: &Server| {
        let json = s.etcdctl(&["get", "x", "-w", "json"]).json();
        vec![(
            e2d_tests::uint(&json["header"]["member_id"]).to_string(),
            "<id>",
        )]
    };
    let (e2d_subst, etcd_subst) = (member(&p.e2d), member(&p.etcd));
    p.fails(&["put", "k", "v"]);
    p.same_with(&["alarm", "list"], None, &e2d_subst, &etcd_subst, true);
    p.fails(&["put", "k", "v"]);
    p.fails_stdin(&["txn", "-i"], "\nput t v\n\n\n");
    p.fails(&["lease", "grant", "60"]);
    p.same(&["get", "before"]);
    p.same(&["get", "k"]);
    p.same(&["del", "before"]);
}

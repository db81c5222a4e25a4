//! Key-value commands of `etcdctl` against e2d: put, get (ranges, limits,
//! revisions, sorting, keys-only, JSON fields), del, txn, and request errors.

use e2d_tests::{int, kv_pairs, unb64, Server};

#[test]
fn put_and_get_show_revisions_and_versions() {
    let s = Server::e2d();
    assert_eq!(s.etcdctl(&["put", "a", "1"]).out(), "OK\n");
    assert_eq!(s.etcdctl(&["put", "b", "2"]).out(), "OK\n");
    assert_eq!(s.etcdctl(&["put", "a", "3"]).out(), "OK\n");

    assert_eq!(s.etcdctl(&["get", "a"]).out(), "a\n3\n");
    assert_eq!(s.etcdctl(&["get", "a", "--print-value-only"]).out(), "3\n");
    assert_eq!(s.etcdctl(&["get", "missing"]).out(), "");

    let put = s.etcdctl(&["put", "c", "x", "-w", "json"]).json();
    assert_eq!(int(&put["header"]["revision"]), 5, "{put}");

    let get = s.etcdctl(&["get", "a", "-w", "json"]).json();
    assert_eq!(int(&get["header"]["revision"]), 5, "{get}");
    assert_eq!(int(&get["count"]), 1, "{get}");
    assert!(get.get("more").is_none() || get["more"] == false, "{get}");
    let kv = &get["kvs"][0];
    assert_eq!(unb64(&kv["key"]), "a");
    assert_eq!(unb64(&kv["value"]), "3");
    assert_eq!(int(&kv["create_revision"]), 2, "{kv}");
    assert_eq!(int(&kv["mod_revision"]), 4, "{kv}");
    assert_eq!(int(&kv["version"]), 2, "{kv}");
    assert_eq!(int(&kv["lease"]), 0, "{kv}");

    let missing = s.etcdctl(&["get", "missing", "-w", "json"]).json();
    assert_eq!(int(&missing["count"]), 0, "{missing}");
    assert!(missing.get("kvs").is_none(), "{missing}");
    assert_eq!(int(&missing["header"]["revision"]), 5, "{missing}");
}

#[test]
fn put_prev_kv_and_values_with_spaces() {
    let s = Server::e2d();
    s.etcdctl(&["put", "k", "old value"]).ok();
    assert_eq!(
        s.etcdctl(&["put", "--prev-kv", "k", "new value"]).out(),
        "OK\nk\nold value\n"
    );
    assert_eq!(s.etcdctl(&["get", "k"]).out(), "k\nnew value\n");
    // A value from stdin.
    s.etcdctl_stdin(&["put", "from-stdin"], "piped").ok();
    assert_eq!(
        s.etcdctl(&["get", "from-stdin", "--print-value-only"])
            .out(),
        "piped\n"
    );
}

fn put_all(s: &Server, pairs: &[(&str, &str)]) {
    for (k, v) in pairs {
        s.etcdctl(&["put", k, v]).ok();
    }
}

#[test]
fn get_ranges_prefixes_and_limits() {
    let s = Server::e2d();
    put_all(
        &s,
        &[
            ("a", "1"),
            ("b", "2"),
            ("c", "3"),
            ("k/1", "x"),
            ("k/2", "y"),
            ("k2", "z"),
        ],
    );

    // [a, c)
    assert_eq!(s.etcdctl(&["get", "a", "c"]).out(), "a\n1\nb\n2\n");
    // Prefix is exact: k2 is not under k/.
    assert_eq!(
        s.etcdctl(&["get", "--prefix", "k/"]).out(),
        "k/1\nx\nk/2\ny\n"
    );
    assert_eq!(
        s.etcdctl(&["get", "--from-key", "k/2"]).out(),
        "k/2\ny\nk2\nz\n"
    );
    assert_eq!(
        s.etcdctl(&["get", "--prefix", "k", "--keys-only"]).out(),
        "k/1\n\nk/2\n\nk2\n\n"
    );

    let limited = s
        .etcdctl(&["get", "--prefix", "", "--limit", "2", "-w", "json"])
        .json();
    assert_eq!(
        kv_pairs(&limited),
        vec![("a".into(), "1".into()), ("b".into(), "2".into())],
        "{limited}"
    );
    assert_eq!(limited["more"], true, "{limited}");
    assert_eq!(int(&limited["count"]), 6, "{limited}");

    let exact = s
        .etcdctl(&["get", "--prefix", "k", "--limit", "3", "-w", "json"])
        .json();
    assert_eq!(kv_pairs(&exact).len(), 3, "{exact}");
    assert!(
        exact.get("more").is_none() || exact["more"] == false,
        "{exact}"
    );
    assert_eq!(int(&exact["count"]), 3, "{exact}");

    let keys_only = s
        .etcdctl(&["get", "a", "c", "--keys-only", "-w", "json"])
        .json();
    for kv in keys_only["kvs"].as_array().expect("kvs") {
        assert!(
            kv.get("value").is_none(),
            "keys-only returned a value: {kv}"
        );
        assert!(int(&kv["mod_revision"]) > 0, "{kv}");
    }
}

#[test]
fn get_sorted() {
    let s = Server::e2d();
    // Modified in an order unlike key order and value order.
    put_all(&s, &[("b", "3"), ("c", "1"), ("a", "2")]);
    s.etcdctl(&["put", "b", "0"]).ok();

    let keys = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["get", "--prefix", "", "-w", "json"];
        full.extend_from_slice(args);
        kv_pairs(&s.etcdctl(&full).json())
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(keys(&["--sort-by=KEY", "--order=DESCEND"]), ["c", "b", "a"]);
    assert_eq!(keys(&["--sort-by=KEY", "--order=ASCEND"]), ["a", "b", "c"]);
    assert_eq!(
        keys(&["--sort-by=MODIFY", "--order=ASCEND"]),
        ["c", "a", "b"]
    );
    assert_eq!(
        keys(&["--sort-by=MODIFY", "--order=DESCEND"]),
        ["b", "a", "c"]
    );
    assert_eq!(
        keys(&["--sort-by=CREATE", "--order=ASCEND"]),
        ["b", "c", "a"]
    );
    assert_eq!(keys(&["--sort-by=VERSION", "--order=DESCEND"])[0], "b");
    assert_eq!(
        keys(&["--sort-by=VALUE", "--order=ASCEND"]),
        ["b", "c", "a"]
    );
    // Sorting applies before the limit.
    assert_eq!(
        keys(&["--sort-by=VALUE", "--order=DESCEND", "--limit=1"]),
        ["a"]
    );
}

#[test]
fn get_at_past_revisions() {
    let s = Server::e2d();
    s.etcdctl(&["put", "k", "v1"]).ok(); // rev 2
    s.etcdctl(&["put", "k", "v2"]).ok(); // rev 3
    s.etcdctl(&["del", "k"]).ok(); // rev 4
    s.etcdctl(&["put", "k", "v3"]).ok(); // rev 5

    assert_eq!(s.etcdctl(&["get", "k", "--rev", "2"]).out(), "k\nv1\n");
    assert_eq!(s.etcdctl(&["get", "k", "--rev", "3"]).out(), "k\nv2\n");
    assert_eq!(s.etcdctl(&["get", "k", "--rev", "4"]).out(), "");
    assert_eq!(s.etcdctl(&["get", "k", "--rev", "1"]).out(), "");
    let now = s.etcdctl(&["get", "k", "-w", "json"]).json();
    let kv = &now["kvs"][0];
    assert_eq!(
        (
            int(&kv["create_revision"]),
            int(&kv["mod_revision"]),
            int(&kv["version"])
        ),
        (5, 5, 1),
        "a re-created key starts a new generation: {kv}"
    );
    let old = s.etcdctl(&["get", "k", "--rev", "3", "-w", "json"]).json();
    assert_eq!(
        int(&old["header"]["revision"]),
        5,
        "header has the current revision: {old}"
    );
    let kv = &old["kvs"][0];
    assert_eq!(
        (
            int(&kv["create_revision"]),
            int(&kv["mod_revision"]),
            int(&kv["version"])
        ),
        (2, 3, 2),
        "{kv}"
    );

    s.etcdctl(&["get", "k", "--rev", "6"])
        .fails_with("required revision is a future revision");
}

#[test]
fn delete_single_prefix_range_and_prev_kv() {
    let s = Server::e2d();
    put_all(
        &s,
        &[
            ("a", "1"),
            ("b", "2"),
            ("c", "3"),
            ("p/1", "x"),
            ("p/2", "y"),
            ("q", "z"),
        ],
    );

    assert_eq!(s.etcdctl(&["del", "missing"]).out(), "0\n");
    assert_eq!(s.etcdctl(&["del", "a"]).out(), "1\n");
    assert_eq!(s.etcdctl(&["get", "a"]).out(), "");
    assert_eq!(s.etcdctl(&["del", "--prev-kv", "b"]).out(), "1\nb\n2\n");
    assert_eq!(s.etcdctl(&["del", "--prefix", "p/"]).out(), "2\n");
    assert_eq!(s.etcdctl(&["get", "--prefix", ""]).out(), "c\n3\nq\nz\n");

    // Revision so far: 7 puts + 3 delete transactions.
    let json = s
        .etcdctl(&["del", "c", "r", "--prev-kv", "-w", "json"])
        .json();
    assert_eq!(int(&json["deleted"]), 2, "{json}");
    assert_eq!(int(&json["header"]["revision"]), 11, "{json}");
    assert_eq!(
        kv_pairs(&serde_json::json!({"kvs": json["prev_kvs"]})),
        vec![("c".into(), "3".into()), ("q".into(), "z".into())],
        "{json}"
    );
    // Deleting nothing does not create a revision.
    let none = s.etcdctl(&["del", "nothing", "-w", "json"]).json();
    assert_eq!(int(&none["deleted"]), 0, "{none}");
    assert_eq!(int(&none["header"]["revision"]), 11, "{none}");
}

const TXN_SUCCESS: &str = r#"value("k") = "v"
mod("k") > "0"
version("fresh") = "0"

put then-key then-value
get k

put else-key else-value

"#;

#[test]
fn txn_interactive_takes_the_success_branch() {
    let s = Server::e2d();
    s.etcdctl(&["put", "k", "v"]).ok();
    let out = s.etcdctl_stdin(&["txn", "-i"], TXN_SUCCESS);
    let stdout = out.out();
    assert!(
        stdout.ends_with("SUCCESS\n\nOK\n\nk\nv\n"),
        "unexpected txn output:\n{out}"
    );
    assert_eq!(
        s.etcdctl(&["get", "then-key"]).out(),
        "then-key\nthen-value\n"
    );
    assert_eq!(s.etcdctl(&["get", "else-key"]).out(), "");

    let json = s
        .etcdctl_stdin(&["txn", "-i", "-w", "json"], TXN_SUCCESS)
        .json();
    assert_eq!(json["succeeded"], true, "{json}");
    assert_eq!(int(&json["header"]["revision"]), 4, "{json}");
    let responses = json["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), 2, "{json}");
    assert!(
        responses[0]["Response"]["ResponsePut"].is_object(),
        "{json}"
    );
    let range = &responses[1]["Response"]["ResponseRange"];
    assert_eq!(kv_pairs(range), vec![("k".into(), "v".into())], "{json}");
}

#[test]
fn txn_interactive_takes_the_failure_branch() {
    let s = Server::e2d();
    s.etcdctl(&["put", "k", "other"]).ok();
    s.etcdctl(&["put", "fresh", "exists"]).ok();

    // Value differs.
    let out = s.etcdctl_stdin(
        &["txn", "-i"],
        "value(\"k\") = \"v\"\n\nput then-key x\n\nput else-key y\n\n",
    );
    assert!(
        out.out().ends_with("FAILURE\n\nOK\n"),
        "unexpected txn output:\n{out}"
    );
    assert_eq!(
        s.etcdctl(&["get", "else-key", "--print-value-only"]).out(),
        "y\n"
    );
    assert_eq!(s.etcdctl(&["get", "then-key"]).out(), "");

    // One false compare among true ones fails the whole txn.
    let json = s
        .etcdctl_stdin(
            &["txn", "-i", "-w", "json"],
            "mod(\"k\") > \"0\"\nversion(\"fresh\") = \"0\"\n\nput then-key x\n\ndel else-key\n\n",
        )
        .json();
    assert!(
        json.get("succeeded").is_none() || json["succeeded"] == false,
        "{json}"
    );
    let del = &json["responses"][0]["Response"]["ResponseDeleteRange"];
    assert_eq!(int(&del["deleted"]), 1, "{json}");
    assert_eq!(s.etcdctl(&["get", "else-key"]).out(), "");

    // Compares on create revision and a missing key's mod revision.
    let out = s.etcdctl_stdin(
        &["txn", "-i"],
        "create(\"k\") = \"2\"\nmod(\"nope\") = \"0\"\n\nput both yes\n\n\n",
    );
    assert!(
        out.out().ends_with("SUCCESS\n\nOK\n"),
        "unexpected txn output:\n{out}"
    );
    assert_eq!(
        s.etcdctl(&["get", "both", "--print-value-only"]).out(),
        "yes\n"
    );
}

#[test]
fn txn_put_and_delete_same_revision() {
    let s = Server::e2d();
    s.etcdctl(&["put", "x", "1"]).ok(); // rev 2
    s.etcdctl_stdin(&["txn", "-i"], "\nput y 2\nput z 3\ndel x\n\n\n")
        .ok();
    let json = s.etcdctl(&["get", "--prefix", "", "-w", "json"]).json();
    assert_eq!(
        int(&json["header"]["revision"]),
        3,
        "one txn is one revision: {json}"
    );
    for kv in json["kvs"].as_array().expect("kvs") {
        assert_eq!(int(&kv["mod_revision"]), 3, "{kv}");
    }
    assert_eq!(
        kv_pairs(&json),
        vec![("y".into(), "2".into()), ("z".into(), "3".into())]
    );
}

#[test]
fn empty_key_is_rejected() {
    let s = Server::e2d();
    s.etcdctl(&["put", "", "v"])
        .fails_with("key is not provided");
    s.etcdctl(&["get", ""]).fails_with("key is not provided");
    // Nothing was written.
    assert_eq!(s.revision(), 1);
}

#[test]
fn too_large_request_is_rejected() {
    let s = Server::e2d();
    // Over the 1.5 MiB request limit, under etcdctl's own 2 MiB send limit.
    let big = "x".repeat(1_700_000);
    s.etcdctl_stdin(&["put", "big"], &big)
        .fails_with("request is too large");
    assert_eq!(s.etcdctl(&["get", "big"]).out(), "");
    // Just under the limit still works.
    let fits = "y".repeat(1024 * 1024);
    s.etcdctl_stdin(&["put", "fits"], &fits).ok();
    let got = s.etcdctl(&["get", "fits", "--print-value-only"]);
    assert_eq!(got.out().trim_end().len(), fits.len());
}

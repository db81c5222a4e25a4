//! The etcd3 npm client (tests/node/flows.js: KV, txn, leases, watch, its
//! locks, elections and software transactions, users, roles and auth)
//! against e2d and etcd side by side: every step must answer the same.
//! `.ci/run` installs the client (`npm ci` in tests/node).

use e2d_tests::{one_at_a_time, Server};

fn flows(server: &Server) -> Vec<String> {
    let dir = e2d_tests::tests_crate_dir().join("node");
    assert!(
        dir.join("node_modules/etcd3").is_dir(),
        "the etcd3 npm client is not installed: run `npm ci --prefix tests/node`"
    );
    let out = std::process::Command::new("node")
        .arg(dir.join("flows.js"))
        .arg(format!("http://{}", server.endpoint()))
        .output()
        .expect("cannot run node: install Node.js");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the flows failed against {}: {stdout}\n{}",
        server.endpoint(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_string).collect()
}

#[test]
fn the_node_etcd3_client_sees_e2d_as_it_sees_etcd() {
    let _one = one_at_a_time();
    let (e2d, etcd) = Server::e2d_and_etcd();
    let on_etcd = flows(&etcd);
    let on_e2d = flows(&e2d);
    // Every flow ran to its last step on etcd.
    assert!(
        on_etcd.last().is_some_and(|l| l.contains("after disable")),
        "{on_etcd:#?}"
    );
    assert_eq!(on_e2d, on_etcd);
}

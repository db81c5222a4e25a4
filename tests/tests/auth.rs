//! etcd's users, roles and permissions: the etcdctl flow side by side with
//! a real etcd, the `etcd-client` crate's auth calls, a 3-member cluster
//! that keeps its users when the leader dies, and a snapshot that brings
//! them back.

use e2d_tests::cluster::Cluster;
use e2d_tests::{e2d_command, CmdOutput, Server};
use etcd_client::{Client, ConnectOptions, Permission, PermissionType};

const ROOT: &str = "--user=root:rootpw";
const ALICE: &str = "--user=alice:alicepw";

/// Users `root` (with the root role) and `alice` (read-write under `foo/`,
/// read on `bar`), then auth enabled, through `etcdctl`.
fn set_up(etcdctl: &dyn Fn(&[&str]) -> CmdOutput) {
    etcdctl(&["user", "add", "root", "--new-user-password=rootpw"]).ok();
    etcdctl(&["role", "add", "reader"]).ok();
    etcdctl(&[
        "role",
        "grant-permission",
        "reader",
        "--prefix=true",
        "readwrite",
        "foo/",
    ])
    .ok();
    etcdctl(&["role", "grant-permission", "reader", "read", "bar"]).ok();
    etcdctl(&["user", "add", "alice", "--new-user-password=alicepw"]).ok();
    etcdctl(&["user", "grant-role", "alice", "reader"]).ok();
    etcdctl(&["auth", "enable"]).ok();
}

/// What of an etcdctl run must be the same on both servers.
fn seen(out: &CmdOutput) -> String {
    if out.success() {
        out.stdout.clone()
    } else {
        format!("failed: {}", out.error_line())
    }
}

#[test]
fn the_etcdctl_auth_flow_answers_as_etcd_does() {
    let (e2d, etcd) = Server::e2d_and_etcd();
    let steps: &[&[&str]] = &[
        &["user", "add", "root", "--new-user-password=rootpw"],
        &["user", "add", "root", "--new-user-password=again"],
        &["role", "add", "reader"],
        &["role", "add", "reader"],
        &[
            "role",
            "grant-permission",
            "reader",
            "--prefix=true",
            "readwrite",
            "foo/",
        ],
        &["role", "grant-permission", "reader", "read", "bar"],
        &["role", "grant-permission", "nobody", "read", "bar"],
        &["user", "add", "alice", "--new-user-password=alicepw"],
        &["user", "grant-role", "alice", "reader"],
        &["user", "grant-role", "alice", "missing"],
        &["user", "grant-role", "missing", "reader"],
        &["user", "revoke-role", "alice", "missing"],
        &["auth", "enable"],
        &[ALICE, "put", "foo/1", "one"],
        &[ALICE, "get", "foo/1"],
        &[ALICE, "get", "foo/", "--prefix"],
        &[ALICE, "put", "bar", "denied"],
        &[ALICE, "get", "bar"],
        &[ALICE, "get", "", "--prefix"],
        &[ALICE, "del", "foo/1", "--prev-kv"],
        &[ALICE, "txn"],
        &["get", "foo/1"],
        &["put", "foo/2", "nobody"],
        &["--user=alice:wrong", "get", "foo/1"],
        &["--user=nobody:pw", "get", "foo/1"],
        &[ALICE, "user", "list"],
        &[ALICE, "role", "list"],
        &[ALICE, "user", "get", "alice"],
        &[ALICE, "role", "get", "reader"],
        &[ALICE, "user", "add", "mallory", "--new-user-password=pw"],
        &[ROOT, "user", "list"],
        &[ROOT, "role", "list"],
        &[ROOT, "user", "get", "alice"],
        &[ROOT, "role", "get", "reader"],
        &[ROOT, "get", "", "--prefix"],
        &[ROOT, "user", "delete", "root"],
        &[ROOT, "role", "delete", "root"],
        &[ROOT, "user", "revoke-role", "root", "root"],
        &[ROOT, "role", "revoke-permission", "reader", "bar"],
        &[ROOT, "role", "revoke-permission", "reader", "bar"],
        &[ALICE, "get", "bar"],
        &[
            ROOT,
            "user",
            "passwd",
            "alice",
            "--new-user-password=changed",
        ],
        &[ALICE, "get", "foo/1"],
        &["--user=alice:changed", "put", "foo/3", "three"],
        &[ROOT, "role", "delete", "reader"],
        &[ROOT, "user", "get", "alice"],
        &["--user=alice:changed", "get", "foo/3"],
        &[ROOT, "user", "delete", "alice"],
        &[ROOT, "user", "delete", "alice"],
        &[ROOT, "auth", "disable"],
        &["get", "foo/3"],
    ];
    // Input lines for `txn`: a compare on foo/1 and a put outside foo/.
    let txn_input = "mod(\"foo/1\") > \"0\"\n\nput bar x\n\n\n";
    let mut differences = Vec::new();
    let mut refusals = 0;
    for step in steps {
        let run = |server: &Server| {
            if step.contains(&"txn") {
                server.etcdctl_stdin(step, txn_input)
            } else {
                server.etcdctl(step)
            }
        };
        let (ours, theirs) = (run(&e2d), run(&etcd));
        refusals += usize::from(!ours.success());
        if seen(&ours) != seen(&theirs) {
            differences.push(format!(
                "etcdctl {}\n  e2d:  {:?}\n  etcd: {:?}",
                step.join(" "),
                seen(&ours),
                seen(&theirs)
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    // etcd 3.5 shows root's role as one permission on every key (the 3.4
    // here shows none).
    let root_role = e2d.etcdctl(&["role", "get", "root"]);
    assert!(root_role.out().contains("[, <open ended>"), "{root_role}");
    // Equal is not vacuous: many steps are refusals.
    assert!(refusals >= 15, "only {refusals} steps were refused");
}

#[test]
fn refusals_carry_etcds_texts() {
    let server = Server::e2d();
    set_up(&|args| server.etcdctl(args));
    server
        .etcdctl(&[ALICE, "put", "bar", "v"])
        .fails_with("etcdserver: permission denied");
    server
        .etcdctl(&["get", "foo/1"])
        .fails_with("etcdserver: user name is empty");
    server
        .etcdctl(&["--user=alice:nope", "get", "foo/1"])
        .fails_with("etcdserver: authentication failed, invalid user ID or password");
    server
        .etcdctl(&[
            ALICE,
            "member",
            "add",
            "x",
            "--peer-urls=http://127.0.0.1:1",
        ])
        .fails_with("etcdserver: permission denied");
    server
        .etcdctl(&[ALICE, "defrag"])
        .fails_with("permission denied");
    let status = server.etcdctl(&[ROOT, "endpoint", "status", "-w", "json"]);
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn locks_and_elections_are_checked_as_the_caller() {
    let server = Server::e2d();
    set_up(&|args| server.etcdctl(args));
    let mut alice = connect_as(&server, Some(("alice", "alicepw"))).await;
    // alice may write under foo/, so the lock's key there is hers to take.
    let held = alice.lock("foo/lock", None).await.unwrap();
    assert!(held.key().starts_with(b"foo/lock/"), "{held:?}");
    alice.unlock(held.key()).await.unwrap();
    // bar is only hers to read: she may not create a key under it.
    let denied = alice.lock("bar", None).await.unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    let lease = alice.lease_grant(60, None).await.unwrap().id();
    let denied = alice.campaign("bar", "me", lease).await.unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    // Nobody at all: etcd's "user name is empty".
    let mut anonymous = connect_as(&server, None).await;
    let denied = anonymous.lock("foo/lock", None).await.unwrap_err();
    assert!(
        denied.to_string().contains("user name is empty"),
        "{denied}"
    );
}

#[tokio::test]
async fn a_leases_keys_are_listed_only_to_who_may_read_them() {
    let server = Server::e2d();
    set_up(&|args| server.etcdctl(args));
    let mut root = connect_as(&server, Some(("root", "rootpw"))).await;
    let lease = root.lease_grant(60, None).await.unwrap().id();
    let attached = etcd_client::PutOptions::new().with_lease(lease);
    root.put("foo/mine", "v", Some(attached.clone()))
        .await
        .unwrap();
    let with_keys = || Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys());
    let mut alice = connect_as(&server, Some(("alice", "alicepw"))).await;
    let listed = alice.lease_time_to_live(lease, with_keys()).await.unwrap();
    assert_eq!(listed.keys(), [b"foo/mine".to_vec()]);
    // A key outside what alice may read on the same lease: refused.
    root.put("secret", "v", Some(attached)).await.unwrap();
    let denied = alice
        .lease_time_to_live(lease, with_keys())
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    // Without the keys, the lease itself is anyone's to look at.
    alice.lease_time_to_live(lease, None).await.unwrap();
    let listed = root.lease_time_to_live(lease, with_keys()).await.unwrap();
    assert_eq!(listed.keys().len(), 2);
}

async fn connect_as(server: &Server, user: Option<(&str, &str)>) -> Client {
    let options = user.map(|(name, password)| ConnectOptions::new().with_user(name, password));
    Client::connect([server.url()], options)
        .await
        .expect("connects")
}

#[tokio::test]
async fn the_client_crates_auth_calls_work() {
    let server = Server::e2d();
    let mut admin = connect_as(&server, None).await;
    admin.user_add("root", "rootpw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.role_add("writer").await.unwrap();
    admin
        .role_grant_permission(
            "writer",
            Permission::new(PermissionType::Readwrite, "app/").with_prefix(),
        )
        .await
        .unwrap();
    admin.user_add("bob", "bobpw", None).await.unwrap();
    admin.user_grant_role("bob", "writer").await.unwrap();
    admin.auth_enable().await.unwrap();
    let denied = admin.get("app/1", None).await.unwrap_err();
    assert!(
        denied.to_string().contains("user name is empty"),
        "{denied}"
    );

    let mut bob = connect_as(&server, Some(("bob", "bobpw"))).await;
    bob.put("app/1", "v", None).await.unwrap();
    let got = bob.get("app/1", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"v");
    let denied = bob.put("other", "v", None).await.unwrap_err();
    assert!(
        denied.to_string().contains("etcdserver: permission denied"),
        "{denied}"
    );
    let denied = bob.user_list().await.unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");

    // A watch outside bob's keys is canceled at creation.
    let mut stream = bob.watch("other", None).await.unwrap();
    let first = stream.message().await.unwrap().expect("a response");
    assert!(first.canceled(), "{first:?}");
    assert!(
        first.cancel_reason().contains("permission denied"),
        "{first:?}"
    );

    let mut root = connect_as(&server, Some(("root", "rootpw"))).await;
    let users = root.user_list().await.unwrap();
    assert_eq!(users.users(), ["bob", "root"]);
    let roles = root.user_get("bob").await.unwrap();
    assert_eq!(roles.roles(), ["writer"]);
    // Deleting bob ends his token.
    root.user_delete("bob").await.unwrap();
    let gone = bob.get("app/1", None).await.unwrap_err();
    assert!(
        gone.to_string().contains("invalid auth token")
            || gone.to_string().contains("authentication failed"),
        "{gone}"
    );
}

#[test]
fn a_cluster_keeps_its_users_when_the_leader_dies() {
    let mut cluster = Cluster::start(3);
    set_up(&|args| cluster.members[0].etcdctl(args));
    cluster.members[0]
        .etcdctl(&[ALICE, "put", "foo/1", "before"])
        .ok();
    let leader = cluster.leader();
    cluster.kill9(leader);
    cluster.wait_for_leader(Some(leader));
    let survivor = (0..3).find(|&i| i != leader).unwrap();
    let member = &cluster.members[survivor];
    // The first requests after the election may hear "leader changed".
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let got = loop {
        let got = member.etcdctl(&[ALICE, "get", "foo/1", "--print-value-only"]);
        if got.success() || std::time::Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(got.out().trim(), "before");
    member
        .etcdctl(&[ALICE, "put", "bar", "x"])
        .fails_with("etcdserver: permission denied");
    member
        .etcdctl(&["get", "foo/1"])
        .fails_with("etcdserver: user name is empty");
    let users = member.etcdctl(&[ROOT, "user", "list"]);
    assert_eq!(users.out(), "alice\nroot\n");
}

#[test]
fn a_snapshot_brings_users_and_roles_back() {
    let mut server = Server::e2d();
    set_up(&|args| server.etcdctl(args));
    server.etcdctl(&[ALICE, "put", "foo/1", "kept"]).ok();
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("auth.snap");
    let file = file.to_str().unwrap();
    server
        .etcdctl(&["snapshot", "save", file])
        .fails_with("user name is empty");
    server.etcdctl(&[ROOT, "snapshot", "save", file]).ok();
    server.kill9();
    let data_dir = server.data_dir();
    std::fs::remove_dir_all(&data_dir).unwrap();
    let restored = e2d_command(
        &[
            "snapshot",
            "restore",
            file,
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(restored.out().contains("Restored"), "{restored}");
    server.restart();
    let got = server.etcdctl(&[ALICE, "get", "foo/1", "--print-value-only"]);
    assert_eq!(got.out().trim(), "kept");
    server
        .etcdctl(&["get", "foo/1"])
        .fails_with("etcdserver: user name is empty");
    let role = server.etcdctl(&[ROOT, "role", "get", "reader"]);
    assert!(role.out().contains("prefix foo/"), "{role}");
}

#[tokio::test]
async fn jwt_tokens_signed_with_the_given_key_authenticate_users() {
    // RSA and ECDSA keys, as openssl makes them.
    let rsa: &[&[&str]] = &[
        &["genrsa", "-out", "{private}", "2048"],
        &["rsa", "-in", "{private}", "-pubout", "-out", "{public}"],
    ];
    let ecdsa: &[&[&str]] = &[
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "{private}",
        ],
        &["ec", "-in", "{private}", "-pubout", "-out", "{public}"],
    ];
    for (method, openssl) in [("RS256", rsa), ("ES256", ecdsa)] {
        jwt_tokens_authenticate_users(method, openssl).await;
    }
}

async fn jwt_tokens_authenticate_users(method: &str, openssl: &[&[&str]]) {
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = (keys.path().join("jwt.key"), keys.path().join("jwt.pub"));
    for args in openssl {
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("{private}", private.to_str().unwrap())
                    .replace("{public}", public.to_str().unwrap())
            })
            .collect();
        let out = std::process::Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    }
    let token_flag = format!(
        "jwt,pub-key={},priv-key={},sign-method={method},ttl=5m",
        public.display(),
        private.display()
    );
    let server = Server::e2d_with(&["--auth-token", &token_flag]);
    set_up(&|args| server.etcdctl(args));
    let mut alice = connect_as(&server, Some(("alice", "alicepw"))).await;
    alice.put("foo/1", "v", None).await.unwrap();
    let denied = alice.put("bar", "v", None).await.unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    // The token is a JWT: three base64url parts, the first naming the
    // sign method.
    let auth = connect_as(&server, None).await;
    let token = auth
        .auth_client()
        .authenticate("alice".into(), "alicepw".into())
        .await
        .unwrap()
        .token()
        .to_string();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    use base64::Engine;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[0])
        .unwrap();
    assert!(String::from_utf8_lossy(&header).contains(method), "{token}");
}

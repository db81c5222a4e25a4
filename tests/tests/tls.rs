//! Mutual TLS end to end: certificates from `e2d pki`, etcdctl with and
//! without them, a three-node self-managed cluster over TLS on every
//! port, and certificate rotation without a restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2d_tests::gossip_cluster::{GossipCluster, Node};
use e2d_tests::one_at_a_time;
use e2d_tests::{e2d_command, etcdctl, CmdOutput};

const FORM_TIMEOUT: Duration = Duration::from_secs(60);

/// A CA and its certificates, made by `e2d pki` in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("e2d-pki-")
            .tempdir()
            .unwrap();
        let pki = Pki { dir };
        pki.e2d(&["pki", "init"]).ok();
        pki.e2d(&["pki", "gencerts"]).ok();
        pki
    }

    fn e2d(&self, args: &[&str]) -> CmdOutput {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        for flag in ["--ca-cert", "--ca-key"] {
            if args.len() > 1 {
                let file = if flag == "--ca-cert" {
                    "ca.crt"
                } else {
                    "ca.key"
                };
                all.push(flag.into());
                all.push(self.file(file));
            }
        }
        if args.get(1) == Some(&"gencerts") {
            all.push("--output-dir".into());
            all.push(self.dir.path().display().to_string());
        }
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        e2d_command(&all, &[])
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `e2d run` flags for TLS everywhere.
    fn run_flags(&self) -> Vec<String> {
        e2d_tests::tls_run_flags(self.dir.path())
    }

    /// etcdctl flags presenting this PKI's client certificate.
    fn client_flags(&self) -> Vec<String> {
        vec![
            "--cacert".into(),
            self.file("ca.crt"),
            "--cert".into(),
            self.file("client.crt"),
            "--key".into(),
            self.file("client.key"),
        ]
    }
}

fn https(node: &Node) -> String {
    format!("https://{}", node.endpoint())
}

/// etcdctl against `node` with `tls` flags, then `args`.
fn tls_etcdctl(node: &Node, tls: &[String], args: &[&str]) -> CmdOutput {
    let mut all: Vec<&str> = tls.iter().map(String::as_str).collect();
    all.extend_from_slice(&["--dial-timeout", "2s", "--command-timeout", "4s"]);
    all.extend_from_slice(args);
    etcdctl(&https(node), &all, None)
}

#[track_caller]
fn wait_until(what: &str, cluster: &GossipCluster, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + FORM_TIMEOUT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "not within {FORM_TIMEOUT:?}: {what}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Every running node lists the running nodes as started voters, over TLS.
fn whole(cluster: &GossipCluster, pki: &Pki) -> bool {
    let running: Vec<&Node> = cluster.nodes.iter().filter(|n| n.is_running()).collect();
    running.iter().all(|node| {
        let list = tls_etcdctl(node, &pki.client_flags(), &["member", "list", "-w", "json"]);
        if !list.success() {
            return false;
        }
        let members = list.json()["members"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        members.len() == running.len()
            && members.iter().all(|m| {
                m["name"].as_str().is_some_and(|n| !n.is_empty())
                    && m["isLearner"].as_bool() != Some(true)
                    && m["peerURLs"][0]
                        .as_str()
                        .is_some_and(|u| u.starts_with("https://"))
                    && m["clientURLs"][0]
                        .as_str()
                        .is_some_and(|u| u.starts_with("https://"))
            })
    })
}

fn tls_cluster(size: usize, pki: &Pki, extra: &[&str]) -> GossipCluster {
    tls_cluster_with(size, pki, pki.run_flags(), extra)
}

/// `flags` without the flag `name` and its value.
fn without_flag(mut flags: Vec<String>, name: &str) -> Vec<String> {
    let at = flags.iter().position(|f| f == name).unwrap();
    flags.drain(at..at + 2);
    flags
}

fn tls_cluster_with(size: usize, pki: &Pki, tls: Vec<String>, extra: &[&str]) -> GossipCluster {
    let mut flags = tls;
    flags.extend(extra.iter().map(|f| f.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut cluster = GossipCluster::on_loopback(size, &flags);
    for i in 0..size {
        cluster.start(i);
    }
    wait_until("the nodes form one cluster over TLS", &cluster, || {
        whole(&cluster, pki)
    });
    cluster
}

#[test]
fn etcdctl_needs_a_client_certificate_from_the_cluster_ca() {
    let _serial = one_at_a_time();
    let pki = Pki::new();
    let cluster = tls_cluster(1, &pki, &[]);
    let node = &cluster.nodes[0];
    tls_etcdctl(node, &pki.client_flags(), &["put", "greeting", "hello"]).ok();
    let got = tls_etcdctl(
        node,
        &pki.client_flags(),
        &["get", "greeting", "--print-value-only"],
    );
    assert_eq!(got.out().trim(), "hello");

    // No client certificate: the handshake is refused.
    let ca_only = vec!["--cacert".to_string(), pki.file("ca.crt")];
    assert!(!tls_etcdctl(node, &ca_only, &["get", "greeting"]).success());
    // A client certificate from another CA: refused as well.
    let other = Pki::new();
    let foreign = vec![
        "--cacert".to_string(),
        pki.file("ca.crt"),
        "--cert".into(),
        other.file("client.crt"),
        "--key".into(),
        other.file("client.key"),
    ];
    assert!(!tls_etcdctl(node, &foreign, &["get", "greeting"]).success());
    // `e2d status` speaks TLS with the same certificates.
    let endpoint = https(node);
    let status = tls_status(node, &pki);
    assert_eq!(status["state"], "running", "{status}");
    e2d_command(&["status", "--endpoint", &endpoint], &[])
        .fails_with("pass --cacert, --cert and --key");
    // Plain text on a TLS port gets nowhere.
    let plain = etcdctl(
        &node.endpoint(),
        &["--dial-timeout", "2s", "get", "greeting"],
        None,
    );
    assert!(!plain.success());
}

#[test]
fn without_client_cert_auth_clients_need_only_the_ca() {
    let _serial = one_at_a_time();
    let pki = Pki::new();
    // The node needs no client certificate of its own for that either.
    let server_only = without_flag(
        without_flag(pki.run_flags(), "--client-cert"),
        "--client-key",
    );
    let cluster = tls_cluster_with(1, &pki, server_only, &["--client-cert-auth=false"]);
    let node = &cluster.nodes[0];
    // The server presents its certificate and asks for none back.
    let ca_only = vec!["--cacert".to_string(), pki.file("ca.crt")];
    tls_etcdctl(node, &ca_only, &["put", "greeting", "hello"]).ok();
    let got = tls_etcdctl(node, &ca_only, &["get", "greeting", "--print-value-only"]);
    assert_eq!(got.out().trim(), "hello", "{got}");
    // A client with a certificate is served too.
    let got = tls_etcdctl(
        node,
        &pki.client_flags(),
        &["get", "greeting", "--print-value-only"],
    );
    assert_eq!(got.out().trim(), "hello", "{got}");
    // It is still TLS: a client that does not trust the CA is refused.
    let other = Pki::new();
    let untrusting = vec!["--cacert".to_string(), other.file("ca.crt")];
    assert!(!tls_etcdctl(node, &untrusting, &["get", "greeting"]).success());
}

#[test]
fn a_three_node_cluster_forms_and_heals_over_mutual_tls() {
    let _serial = one_at_a_time();
    let pki = Pki::new();
    let mut cluster = tls_cluster(
        3,
        &pki,
        &[
            "--health-check-interval",
            "1s",
            "--health-check-timeout",
            "3s",
        ],
    );
    tls_etcdctl(&cluster.nodes[0], &pki.client_flags(), &["put", "k", "v"]).ok();
    // A member lost for good is replaced by a fresh node, all over TLS.
    cluster.kill9(2);
    let fresh = Node::replacing(&cluster.nodes[2]);
    cluster.nodes[2] = fresh;
    cluster.start(2);
    wait_until(
        "the fresh node takes the lost member's place",
        &cluster,
        || {
            whole(&cluster, &pki)
                && tls_etcdctl(
                    &cluster.nodes[2],
                    &pki.client_flags(),
                    &["get", "k", "--print-value-only"],
                )
                .stdout
                .trim()
                    == "v"
        },
    );
}

/// The SHA-256 fingerprint of the certificate `node` presents.
fn served_fingerprint(node: &Node, pki: &Pki) -> String {
    let connect = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &node.endpoint(),
            "-cert",
            &pki.file("client.crt"),
            "-key",
            &pki.file("client.key"),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    fingerprint_of_pem(&String::from_utf8_lossy(&connect.stdout))
}

fn fingerprint_of_pem(text: &str) -> String {
    let mut child = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn fingerprint_of_file(path: &Path) -> String {
    fingerprint_of_pem(&std::fs::read_to_string(path).unwrap())
}

#[test]
fn new_certificates_are_taken_up_on_sighup_without_downtime() {
    let _serial = one_at_a_time();
    let pki = Pki::new();
    let cluster = tls_cluster(1, &pki, &[]);
    let node = &cluster.nodes[0];
    let before = served_fingerprint(node, &pki);
    assert_eq!(before, fingerprint_of_file(&pki.path("server.crt")));
    // New certificates from the same CA, written over the old ones.
    pki.e2d(&["pki", "gencerts", "--force"]).ok();
    let after_file = fingerprint_of_file(&pki.path("server.crt"));
    assert_ne!(before, after_file);
    node.signal("HUP");
    wait_until("the node presents the new certificate", &cluster, || {
        served_fingerprint(node, &pki) == after_file
    });
    // Clients with the new client certificate are served; the node never
    // stopped.
    tls_etcdctl(node, &pki.client_flags(), &["put", "after", "rotation"]).ok();
    assert!(
        node.log().contains("reloaded the certificates"),
        "{}",
        node.log()
    );
}

#[test]
fn bad_certificates_are_refused_with_the_reason() {
    let pki = Pki::new();
    let other = Pki::new();
    let data_dir = pki.file("data");
    let run_with = |mut flags: Vec<String>, replace: &[(&str, String)]| {
        for (flag, value) in replace {
            let at = flags.iter().position(|f| f == flag).unwrap();
            flags[at + 1] = value.clone();
        }
        let mut args = vec![
            "run",
            "--data-dir",
            &data_dir,
            "--client-addr",
            "127.0.0.1:0",
            "--peer-addr",
            "127.0.0.1:0",
        ];
        args.extend(flags.iter().map(String::as_str));
        e2d_command(&args, &[])
    };
    let run = |replace: &[(&str, String)]| run_with(pki.run_flags(), replace);
    run_with(without_flag(pki.run_flags(), "--client-key"), &[])
        .fails_with("--client-cert was given without --client-key: pass both");
    run(&[("--server-cert", pki.file("missing.crt"))]).fails_with("cannot read");
    run(&[("--server-key", pki.file("client.key"))]).fails_with("is not the key of");
    run(&[
        ("--peer-cert", other.file("peer.crt")),
        ("--peer-key", other.file("peer.key")),
    ])
    .fails_with("is not signed by the CA");
    run(&[("--client-cert", pki.file("ca.key"))]).fails_with("holds no certificate");
    let args = [
        "run",
        "--data-dir",
        &data_dir,
        "--ca-cert",
        &pki.file("ca.crt"),
    ];
    e2d_command(&args, &[]).fails_with("pass --server-cert and --server-key");
    pki.e2d(&["pki", "init"])
        .fails_with("already exists; pass --force");
    assert!(!Path::new(&data_dir).join("db").exists());
}

#[test]
fn a_gossip_node_without_the_ca_key_can_neither_join_nor_disturb() {
    let _serial = one_at_a_time();
    let pki = Pki::new();
    let other = Pki::new();
    let key = pki.file("ca.key");
    let mut cluster = GossipCluster::on_loopback(3, &[]);
    for i in 0..3 {
        cluster.nodes[i]
            .env
            .push(("E2D_CA_KEY".into(), key.clone()));
        cluster.start(i);
    }
    cluster.wait_until("the sealed gossip forms a cluster", FORM_TIMEOUT, |c| {
        (0..3).all(|i| c.nodes[i].is_healthy() && c.has_running_nodes_as_voters(i))
    });
    // Two intruders seeded with the cluster: one gossips in the clear, one
    // with another CA's key. Neither is let in; the cluster stays as it is.
    let other_key = other.file("ca.key");
    for intruder_key in [None, Some(other_key.as_str())] {
        let mut intruder = Node::new(std::net::Ipv4Addr::LOCALHOST);
        if let Some(key) = intruder_key {
            intruder.env.push(("E2D_CA_KEY".into(), key.into()));
        }
        cluster.add(intruder);
    }
    std::thread::sleep(Duration::from_secs(8));
    for i in 0..3 {
        let status = cluster.nodes[i].status().expect("a member answers");
        let gossip = status["gossip"].as_array().cloned().unwrap_or_default();
        // The other two members, and no one else.
        assert_eq!(gossip.len(), 2, "node {i} sees {gossip:?}");
        assert!(
            gossip.iter().all(|g| g["status"] == "running"),
            "node {i} sees {gossip:?}"
        );
        assert_eq!(cluster.members(i).map(|m| m.len()), Some(3), "node {i}");
    }
    let dropped: u64 = (0..3)
        .map(|i| {
            cluster.nodes[i].status().unwrap()["gossip_unauthenticated_dropped"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert!(
        dropped > 0,
        "the intruders' messages were not counted as dropped"
    );
    for intruder in &cluster.nodes[3..] {
        let status = intruder.status().expect("the intruder answers");
        assert_eq!(status["state"], "pending", "{status}");
        let seen = status["gossip"].as_array().cloned().unwrap_or_default();
        assert!(
            seen.iter().all(|g| g["status"] != "running"),
            "the intruder sees {seen:?}"
        );
    }
    assert_eq!(cluster.members(0).map(|m| m.len()), Some(3));
}

impl Pki {
    /// A client certificate for the common name `user`, signed by this CA
    /// with openssl (as an operator would make one); etcdctl flags
    /// presenting it.
    fn client_flags_for(&self, user: &str) -> Vec<String> {
        let (key, csr, crt, ext) = (
            self.file(&format!("{user}.key")),
            self.file(&format!("{user}.csr")),
            self.file(&format!("{user}.crt")),
            self.file(&format!("{user}.ext")),
        );
        std::fs::write(&ext, "extendedKeyUsage = clientAuth\n").unwrap();
        let (ca_crt, ca_key, subject) = (
            self.file("ca.crt"),
            self.file("ca.key"),
            format!("/CN={user}"),
        );
        let steps: [Vec<&str>; 3] = [
            vec![
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ],
            vec!["req", "-new", "-key", &key, "-subj", &subject, "-out", &csr],
            vec![
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &ext,
                "-out",
                &crt,
            ],
        ];
        for args in steps {
            let out = std::process::Command::new("openssl")
                .args(&args)
                .output()
                .expect("openssl runs");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        }
        vec![
            "--cacert".into(),
            self.file("ca.crt"),
            "--cert".into(),
            crt,
            "--key".into(),
            key,
        ]
    }
}

#[test]
fn with_auth_on_a_client_certificates_common_name_is_the_user() {
    let _serial = one_at_a_time();
    let pki = Pki::new();
    let cluster = tls_cluster(1, &pki, &[]);
    let node = &cluster.nodes[0];
    let admin = pki.client_flags();
    for step in [
        &["user", "add", "root", "--new-user-password=rootpw"][..],
        &["role", "add", "writer"],
        &[
            "role",
            "grant-permission",
            "writer",
            "--prefix=true",
            "readwrite",
            "foo/",
        ],
        &["user", "add", "alice", "--no-password"],
        &["user", "grant-role", "alice", "writer"],
        &["auth", "enable"],
    ] {
        tls_etcdctl(node, &admin, step).ok();
    }
    let alice = pki.client_flags_for("alice");
    // No token: the certificate's common name, alice, is the user.
    tls_etcdctl(node, &alice, &["put", "foo/1", "v"]).ok();
    let got = tls_etcdctl(node, &alice, &["get", "foo/1", "--print-value-only"]);
    assert_eq!(got.out().trim(), "v");
    tls_etcdctl(node, &alice, &["put", "bar", "v"]).fails_with("etcdserver: permission denied");
    // A name that is no user is refused.
    let mallory = pki.client_flags_for("mallory");
    assert!(!tls_etcdctl(node, &mallory, &["get", "foo/1"]).success());
}

/// `e2d status --json` of `node`, over mutual TLS with the PKI's client
/// pair.
fn tls_status(node: &Node, pki: &Pki) -> serde_json::Value {
    let endpoint = https(node);
    let status = e2d_command(
        &[
            "status",
            "--endpoint",
            &endpoint,
            "--json",
            "--cacert",
            &pki.file("ca.crt"),
            "--cert",
            &pki.file("client.crt"),
            "--key",
            &pki.file("client.key"),
        ],
        &[],
    );
    status.json()
}

/// `/metrics` of `node`, over mutual TLS with the PKI's client pair.
fn scrape_metrics(node: &Node, pki: &Pki) -> String {
    let scraped = std::process::Command::new("curl")
        .args(["-sS", "--cacert", &pki.file("ca.crt")])
        .args([
            "--cert",
            &pki.file("client.crt"),
            "--key",
            &pki.file("client.key"),
        ])
        .arg(format!("{}/metrics", https(node)))
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&scraped.stdout).into_owned()
}

/// The SHA-256 fingerprints of the certificates in `dir`, by file name.
fn fingerprints_in(dir: &Path) -> Vec<String> {
    ["server.crt", "peer.crt", "client.crt"]
        .iter()
        .map(|name| fingerprint_of_file(&dir.join(name)))
        .collect()
}

#[test]
fn certificates_renew_themselves_on_a_running_cluster_while_clients_write() {
    let _serial = one_at_a_time();
    // The CA and a long-lived client certificate for the writer; each node
    // its own certificates good for 86 seconds, renewed after about 55.
    let pki = Pki::new();
    let node_dirs: Vec<PathBuf> = (0..3).map(|i| pki.path(&format!("node-{i}"))).collect();
    for dir in &node_dirs {
        let out = dir.display().to_string();
        e2d_command(
            &[
                "pki",
                "gencerts",
                "--days",
                "0.001",
                "--ca-cert",
                &pki.file("ca.crt"),
                "--ca-key",
                &pki.file("ca.key"),
                "--output-dir",
                &out,
            ],
            &[],
        )
        .ok();
    }
    let shared = [
        "--ca-cert",
        &pki.file("ca.crt"),
        "--ca-key",
        &pki.file("ca.key"),
    ]
    .map(String::from);
    let mut cluster = GossipCluster::on_loopback(3, &shared.each_ref().map(String::as_str));
    for (node, dir) in cluster.nodes.iter_mut().zip(&node_dirs) {
        for (var, file) in [
            ("E2D_SERVER_CERT", "server.crt"),
            ("E2D_SERVER_KEY", "server.key"),
            ("E2D_PEER_CERT", "peer.crt"),
            ("E2D_PEER_KEY", "peer.key"),
            ("E2D_CLIENT_CERT", "client.crt"),
            ("E2D_CLIENT_KEY", "client.key"),
        ] {
            node.env
                .push((var.into(), dir.join(file).display().to_string()));
        }
    }
    let first: Vec<Vec<String>> = node_dirs.iter().map(|d| fingerprints_in(d)).collect();
    for i in 0..3 {
        cluster.start(i);
    }
    wait_until("the nodes form one cluster over TLS", &cluster, || {
        whole(&cluster, &pki)
    });

    // Write through TLS, round robin, until every node presents a renewed
    // certificate and the first ones have ended; no request may fail.
    let first_end = Instant::now() + Duration::from_secs(90);
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut written = 0;
    loop {
        let node = &cluster.nodes[written % 3];
        let key = format!("renewal-{written}");
        let put = tls_etcdctl(node, &pki.client_flags(), &["put", &key, "v"]);
        assert!(
            put.success(),
            "put {key} through {} failed: {}\n{}",
            node.endpoint(),
            put.stderr,
            cluster.logs()
        );
        written += 1;
        let renewed = node_dirs.iter().zip(&first).all(|(dir, first)| {
            fingerprints_in(dir)
                .iter()
                .zip(first)
                .all(|(now, then)| now != then)
        });
        if renewed && Instant::now() >= first_end {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the certificates were not renewed in time\n{}",
            cluster.logs()
        );
    }
    for (node, dir) in cluster.nodes.iter().zip(&node_dirs) {
        assert_eq!(
            served_fingerprint(node, &pki),
            fingerprint_of_file(&dir.join("server.crt")),
            "{} presents its renewed certificate",
            node.endpoint()
        );
        assert!(
            node.log().contains("renewed the peer certificate"),
            "{}",
            node.log()
        );
    }
    // Every member still answers, with every write.
    for node in &cluster.nodes {
        let count = tls_etcdctl(
            node,
            &pki.client_flags(),
            &["get", "renewal-", "--prefix", "--keys-only", "-w", "json"],
        );
        assert_eq!(
            count.json()["count"].as_u64(),
            Some(written as u64),
            "{}",
            count.stdout
        );
    }
    // The expiry of each certificate is on /metrics and in e2d status.
    let node = &cluster.nodes[0];
    let status = tls_status(node, &pki);
    let certificates = status["certificates"].clone();
    let server = certificates
        .as_array()
        .and_then(|all| all.iter().find(|c| c["certificate"] == "server"))
        .unwrap_or_else(|| panic!("no server certificate in {certificates}"));
    assert_eq!(server["renewed_here"], true, "{certificates}");
    let metrics = scrape_metrics(node, &pki);
    let not_after = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("e2d_tls_certificate_expiry_timestamp_seconds{certificate=\"server\"} ")
        })
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or_else(|| panic!("no server expiry on /metrics:\n{metrics}"));
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        now_s < not_after && not_after <= now_s + 87,
        "{not_after} vs now {now_s}"
    );
    assert!(
        metrics.contains("e2d_tls_certificate_expiring{certificate=\"server\"} 0"),
        "a certificate this node renews is not reported as expiring:\n{metrics}"
    );
}

#[test]
fn a_node_without_the_ca_key_warns_of_certificates_that_end_within_30_days() {
    let _serial = one_at_a_time();
    let pki = Pki::new();
    pki.e2d(&["pki", "gencerts", "--force", "--days", "10"])
        .ok();
    let cluster = tls_cluster_with(1, &pki, without_flag(pki.run_flags(), "--ca-key"), &[]);
    let node = &cluster.nodes[0];
    wait_until("the warning is logged", &cluster, || {
        node.log().contains("the server certificate ends at")
    });
    assert!(
        node.log().contains("start e2d with --ca-key to renew it"),
        "{}",
        node.log()
    );
    let metrics = scrape_metrics(node, &pki);
    for certificate in ["server", "peer", "client"] {
        assert!(
            metrics.contains(&format!(
                "e2d_tls_certificate_expiring{{certificate=\"{certificate}\"}} 1"
            )),
            "{certificate}:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("e2d_tls_certificate_expiring{certificate=\"ca\"} 0"),
        "the ten-year CA is not near its end:\n{metrics}"
    );
}

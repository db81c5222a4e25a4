//! `--peer-discovery` end to end: `e2d discover` against the DigitalOcean
//! API and metadata stand-in, a DNS responder for k8s-dns, and moto_server
//! for EC2 tags and Auto Scaling groups (with an instance metadata
//! stand-in); then a 3-node cluster whose peers come from discovery alone.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use e2d_tests::gossip_cluster::{GossipCluster, Node};
use e2d_tests::moto::Moto;
use e2d_tests::stub_digitalocean::{Droplet, StubDigitalOcean, PAGE_SIZE};
use e2d_tests::stub_dns::StubDns;
use e2d_tests::stub_imds::StubImds;
use e2d_tests::{e2d_command_without, free_port, CmdOutput};
use serde_json::Value;

const TOKEN: &str = "dop_v1_test_token";
const GOSSIP_PORT: u16 = 7980;

/// `e2d discover ARGS` with only `envs` of the cloud variables.
fn discover(args: &[&str], envs: &[(&str, String)]) -> CmdOutput {
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut argv = vec!["discover"];
    argv.extend_from_slice(args);
    e2d_command_without(&["E2D_", "AWS_", "DIGITALOCEAN_"], &argv, &envs)
}

/// The peers of a successful `--json` discovery, as `ip:port` strings.
#[track_caller]
fn peers(out: &CmdOutput) -> Vec<String> {
    assert!(out.success(), "{out}");
    let json: Value = out.json();
    let mut peers: Vec<String> = json["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p.as_str().expect("an address").to_string())
        .collect();
    peers.sort();
    peers
}

fn with_port(ips: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = ips.iter().map(|ip| format!("{ip}:{GOSSIP_PORT}")).collect();
    out.sort();
    out
}

fn droplet(id: u64, private: Option<&str>, tags: &[&str]) -> Droplet {
    Droplet {
        id,
        name: format!("e2d-{id}"),
        private_ip: private.map(|ip| ip.parse().unwrap()),
        public_ip: Ipv4Addr::new(203, 0, 113, id as u8),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

#[test]
fn do_tags_lists_every_page_of_tagged_droplets_without_this_one() {
    let api = StubDigitalOcean::start(
        TOKEN,
        vec![
            droplet(101, Some("10.10.0.1"), &["e2d", "prod"]),
            droplet(102, Some("10.10.0.2"), &["e2d"]),
            droplet(103, Some("10.10.0.3"), &["e2d"]),
            droplet(104, None, &["e2d"]),
            droplet(105, Some("10.10.0.5"), &["e2d"]),
            droplet(106, Some("10.10.0.6"), &["other"]),
            droplet(107, Some("10.10.0.7"), &["prod"]),
        ],
    );
    let env = |metadata: String| {
        vec![
            ("DIGITALOCEAN_ACCESS_TOKEN", TOKEN.to_string()),
            ("E2D_DO_API_URL", api.api_url()),
            ("E2D_DO_METADATA_URL", metadata),
        ]
    };
    let as_101 = env(api.metadata_url(101));

    let out = discover(&["--peer-discovery", "do-tags:e2d", "--json"], &as_101);
    assert_eq!(
        peers(&out),
        with_port(&["10.10.0.2", "10.10.0.3", "10.10.0.5"])
    );
    let json = out.json();
    assert_eq!(json["self_excluded_by"], "droplet id 101", "{out}");
    let warnings = json["warnings"].to_string();
    assert!(
        warnings.contains("e2d-104 (104) has no private IPv4"),
        "{out}"
    );
    // 5 droplets tagged e2d, PAGE_SIZE to a page: every page was read,
    // each with the token.
    let pages: Vec<String> = api
        .api_requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.query.get("page").cloned().unwrap_or_default())
        .collect();
    assert_eq!(pages.len(), 5usize.div_ceil(PAGE_SIZE), "{pages:?}");
    assert_eq!(pages, ["1", "2", "3"]);

    // Several tags: droplets carrying any of them.
    let out = discover(&["--peer-discovery", "do-tags:e2d,prod", "--json"], &as_101);
    assert_eq!(
        peers(&out),
        with_port(&["10.10.0.2", "10.10.0.3", "10.10.0.5", "10.10.0.7"])
    );

    // No tags named: this droplet's own (e2d and prod, from metadata).
    let out = discover(&["--peer-discovery", "do-tags", "--json"], &as_101);
    assert_eq!(
        peers(&out),
        with_port(&["10.10.0.2", "10.10.0.3", "10.10.0.5", "10.10.0.7"])
    );

    // The text output a user reads.
    let out = discover(&["--peer-discovery", "do-tags:e2d"], &as_101);
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("peers (3):"), "{out}");
    assert!(out.stdout.contains("10.10.0.2:7980"), "{out}");

    // Off a droplet (no metadata service), this node's own addresses are
    // left out instead, with a warning.
    let closed = format!("http://127.0.0.1:{}/metadata/v1", free_port());
    let out = discover(
        &[
            "--peer-discovery",
            "do-tags:e2d",
            "--host",
            "10.10.0.3",
            "--json",
        ],
        &env(closed.clone()),
    );
    assert_eq!(
        peers(&out),
        with_port(&["10.10.0.1", "10.10.0.2", "10.10.0.5"])
    );
    assert!(
        out.json()["warnings"]
            .to_string()
            .contains("cannot tell this droplet's id"),
        "{out}"
    );

    // Bad tokens and missing ones are refused with what to do.
    let mut bad = as_101.clone();
    bad[0].1 = "wrong".into();
    let out = discover(&["--peer-discovery", "do-tags:e2d"], &bad);
    assert!(!out.success());
    assert!(out.stderr.contains("refused the token (401"), "{out}");
    let out = discover(&["--peer-discovery", "do-tags:e2d"], &as_101[1..]);
    assert!(!out.success());
    assert!(out.stderr.contains("DIGITALOCEAN_ACCESS_TOKEN"), "{out}");
    // No tags named and no metadata service: name the tags.
    let out = discover(&["--peer-discovery", "do-tags"], &env(closed));
    assert!(!out.success());
    assert!(out.stderr.contains("name the tags instead"), "{out}");
}

#[test]
fn k8s_dns_finds_the_pods_of_a_headless_service() {
    let name = "e2d.default.svc.cluster.local";
    let dns = StubDns::start(BTreeMap::from([(
        name.to_string(),
        vec![
            Ipv4Addr::new(10, 1, 0, 1),
            Ipv4Addr::new(10, 1, 0, 2),
            Ipv4Addr::new(10, 1, 0, 3),
        ],
    )]));
    let server = dns.addr.to_string();
    let method = format!("k8s-dns:{name}");
    let as_pod_2 = [
        "--peer-discovery",
        &method,
        "--dns-server",
        &server,
        "--host",
        "10.1.0.2",
        "--json",
    ];
    let out = discover(&as_pod_2, &[]);
    assert_eq!(peers(&out), with_port(&["10.1.0.1", "10.1.0.3"]));

    // A pod joins: the next discovery sees it.
    dns.records
        .lock()
        .unwrap()
        .get_mut(name)
        .unwrap()
        .push(Ipv4Addr::new(10, 1, 0, 4));
    let out = discover(&as_pod_2, &[]);
    assert_eq!(
        peers(&out),
        with_port(&["10.1.0.1", "10.1.0.3", "10.1.0.4"])
    );

    let out = discover(
        &[
            "--peer-discovery",
            "k8s-dns:missing.default.svc.cluster.local",
            "--dns-server",
            &server,
        ],
        &[],
    );
    assert!(!out.success());
    assert!(out.stderr.contains("does not resolve"), "{out}");
    assert!(out.stderr.contains("publishNotReadyAddresses"), "{out}");
}

#[test]
fn ec2_tags_and_autoscaling_groups_against_moto() {
    let moto = Moto::start();
    let setup = Command::new("python3")
        .arg(e2d_tests::tests_crate_dir().join("scripts/moto_ec2.py"))
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .expect("cannot run python3");
    assert!(
        setup.status.success(),
        "moto setup failed: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let made: Value = serde_json::from_slice(&setup.stdout).expect("the setup prints JSON");
    let ip = |group: &str, i: usize| made[group][i]["ip"].as_str().unwrap().to_string();
    let id = |group: &str, i: usize| made[group][i]["id"].as_str().unwrap().to_string();
    let env = |imds: Option<&StubImds>| {
        let mut env = vec![
            ("AWS_ENDPOINT_URL", moto.endpoint()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ];
        match imds {
            Some(imds) => env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url())),
            None => env.push(("AWS_EC2_METADATA_DISABLED", "true".to_string())),
        }
        env
    };

    // ec2-tags as the first tagged instance, IMDSv2: the other running
    // instances with both tags (not the stopped one, not the other
    // cluster's, not the untagged one).
    let imds = StubImds::start(&id("tagged", 0), true);
    let tagged_peers = with_port(&[&ip("tagged", 1), &ip("tagged", 2)]);
    let out = discover(
        &[
            "--peer-discovery",
            "ec2-tags:Role=etcd,Cluster=c1",
            "--json",
        ],
        &env(Some(&imds)),
    );
    assert_eq!(peers(&out), tagged_peers, "{made}");
    assert_eq!(
        out.json()["self_excluded_by"],
        format!("instance id {}", id("tagged", 0))
    );
    // One tag: the other cluster's instance matches too.
    let out = discover(
        &["--peer-discovery", "ec2-tags:Role=etcd", "--json"],
        &env(Some(&imds)),
    );
    let mut role_peers = tagged_peers.clone();
    role_peers.extend(with_port(&[&ip("other", 0)]));
    role_peers.sort();
    assert_eq!(peers(&out), role_peers);
    // No tags named: this instance's own tags (Role and Cluster).
    let out = discover(
        &["--peer-discovery", "ec2-tags", "--json"],
        &env(Some(&imds)),
    );
    assert_eq!(peers(&out), tagged_peers);

    // Without the metadata service, tags still work; nothing of this
    // node's own addresses matches, so all three come back, with a warning.
    let out = discover(
        &[
            "--peer-discovery",
            "ec2-tags:Role=etcd,Cluster=c1",
            "--json",
        ],
        &env(None),
    );
    assert_eq!(
        peers(&out),
        with_port(&[&ip("tagged", 0), &ip("tagged", 1), &ip("tagged", 2)])
    );
    assert!(
        out.json()["warnings"]
            .to_string()
            .contains("cannot tell this instance's id"),
        "{out}"
    );
    let out = discover(&["--peer-discovery", "ec2-tags"], &env(None));
    assert!(!out.success());
    assert!(out.stderr.contains("name the tags instead"), "{out}");

    // aws-autoscaling-group as a group member, over IMDSv1.
    let imds_v1 = StubImds::start(&id("asg", 0), false);
    let out = discover(
        &["--peer-discovery", "aws-autoscaling-group", "--json"],
        &env(Some(&imds_v1)),
    );
    assert_eq!(
        peers(&out),
        with_port(&[&ip("asg", 1), &ip("asg", 2)]),
        "{made}"
    );
    assert!(
        out.json()["self_excluded_by"]
            .to_string()
            .contains("e2d-asg"),
        "{out}"
    );
    // An instance outside any group, and a machine off EC2.
    let out = discover(
        &["--peer-discovery", "aws-autoscaling-group"],
        &env(Some(&imds)),
    );
    assert!(!out.success());
    assert!(
        out.stderr.contains("is not in an Auto Scaling group"),
        "{out}"
    );
    let out = discover(&["--peer-discovery", "aws-autoscaling-group"], &env(None));
    assert!(!out.success());
    assert!(
        out.stderr.contains("cannot tell this instance's id"),
        "{out}"
    );
}

#[test]
fn three_nodes_form_a_cluster_from_do_tags_alone() {
    let _serial = e2d_tests::one_at_a_time();
    let ips: Vec<Ipv4Addr> = (1..=3).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    let gossip_port = free_port();
    // Only the first droplet exists at first: it finds nobody and keeps
    // asking; the others appear later, as new droplets would.
    let api = StubDigitalOcean::start(TOKEN, vec![droplet(1, Some("127.0.0.1"), &["e2d"])]);
    let nodes: Vec<Node> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            let mut node = Node::new(*ip);
            node.gossip_port = gossip_port;
            node.env = vec![
                ("E2D_PEER_DISCOVERY".into(), "do-tags:e2d".into()),
                ("DIGITALOCEAN_ACCESS_TOKEN".into(), TOKEN.into()),
                ("E2D_DO_API_URL".into(), api.api_url()),
                ("E2D_DO_METADATA_URL".into(), api.metadata_url(i as u64 + 1)),
                ("E2D_HOST".into(), ip.to_string()),
            ];
            node
        })
        .collect();
    let mut cluster = GossipCluster::discovering(3, nodes, &[]);
    cluster.start(0);
    cluster.wait_until(
        "the first node retries an empty discovery",
        Duration::from_secs(15),
        |c| {
            c.nodes[0]
                .log()
                .contains("peer discovery found no other node yet")
        },
    );
    {
        let mut droplets = api.droplets.lock().unwrap();
        droplets.push(droplet(2, Some("127.0.0.2"), &["e2d"]));
        droplets.push(droplet(3, Some("127.0.0.3"), &["e2d"]));
    }
    cluster.start(1);
    cluster.start(2);
    cluster.wait_until("3 voting members", Duration::from_secs(60), |c| {
        (0..3).all(|i| c.has_running_nodes_as_voters(i))
    });
    cluster.put(2, "/discovered", "yes");
    for i in 0..3 {
        let got = cluster.nodes[i].etcdctl(&["get", "/discovered", "--print-value-only"]);
        assert_eq!(got.stdout.trim(), "yes", "node {i}: {got}");
    }
    // The later nodes found the first through discovery (the first may
    // have heard of them through gossip before asking again).
    for i in 1..3 {
        let log = cluster.nodes[i].log();
        assert!(
            log.contains("peer discovery found peers"),
            "node {i}: {log}"
        );
    }
}

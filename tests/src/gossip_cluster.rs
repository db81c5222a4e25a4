//! Self-managed e2d clusters, as a user starts them: every node runs
//! `e2d run -n N --bootstrap-addrs ...` with the same flags, as a real
//! process on its own address and ports (on loopback, or in a network
//! namespace of [`crate::netns`]).

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::{e2d_bin, etcdctl, free_port, http_get_at, CmdOutput};

/// One node: its address, ports and data dir, and its process while it
/// runs.
pub struct Node {
    pub ip: Ipv4Addr,
    pub client_port: u16,
    pub peer_port: u16,
    pub gossip_port: u16,
    /// `--name`, or none to let e2d choose (and keep) one.
    pub name: Option<String>,
    /// Runs in this network namespace (`ip netns exec`), if any.
    pub netns: Option<String>,
    /// Environment variables the process gets.
    pub env: Vec<(String, String)>,
    dir: TempDir,
    child: Option<Child>,
    starts: u32,
}

impl Node {
    /// A node on `ip` with fresh ports and an empty data dir.
    pub fn new(ip: Ipv4Addr) -> Node {
        Node {
            ip,
            client_port: free_port(),
            peer_port: free_port(),
            gossip_port: free_port(),
            name: None,
            netns: None,
            env: Vec::new(),
            dir: tempfile::Builder::new()
                .prefix("e2d-node-")
                .tempdir()
                .expect("cannot create a temp dir"),
            child: None,
            starts: 0,
        }
    }

    /// A new node (empty data dir, no name) on the same address and ports
    /// as `other`: a machine replaced by a fresh one.
    pub fn replacing(other: &Node) -> Node {
        let mut node = Node::new(other.ip);
        node.client_port = other.client_port;
        node.peer_port = other.peer_port;
        node.gossip_port = other.gossip_port;
        node.netns = other.netns.clone();
        node.env = other.env.clone();
        node
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `ip:port` of the client API.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.ip, self.client_port)
    }

    pub fn gossip_addr(&self) -> String {
        format!("{}:{}", self.ip, self.gossip_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.peer_port)
    }

    pub fn etcdctl(&self, args: &[&str]) -> CmdOutput {
        etcdctl(&self.endpoint(), args, None)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Everything the node logged, over all its starts.
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| std::fs::read_to_string(self.log_path(n)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n--- restart ---\n")
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir.path().join(format!("e2d-{start}.log"))
    }

    /// `/health` says true: the node serves, and knows a leader.
    pub fn is_healthy(&self) -> bool {
        let addr = SocketAddr::from((self.ip, self.client_port));
        http_get_at(addr, "/health").is_ok_and(|r| r.status == 200)
    }

    /// What the node reports at `/e2d/status`, if it answers.
    pub fn status(&self) -> Option<Value> {
        let addr = SocketAddr::from((self.ip, self.client_port));
        let answer = http_get_at(addr, "/e2d/status").ok()?;
        (answer.status == 200).then(|| answer.json())
    }

    /// The member id the node runs as (hex), once its server runs.
    pub fn member_id(&self) -> Option<String> {
        let id = self.status()?["member_id"].as_str()?.to_string();
        (!id.is_empty()).then_some(id)
    }

    fn spawn(&mut self, size: usize, seeds: &str, flags: &[String]) {
        assert!(self.child.is_none(), "the node already runs");
        self.starts += 1;
        let log = File::create(self.log_path(self.starts)).expect("cannot create the node log");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(e2d_bin());
                cmd
            }
            None => Command::new(e2d_bin()),
        };
        cmd.arg("run")
            .args(["-n", &size.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--client-addr", &self.endpoint()])
            .args(["--peer-addr", &format!("{}:{}", self.ip, self.peer_port)])
            .args(["--gossip-addr", &self.gossip_addr()])
            .args(flags);
        if !seeds.is_empty() {
            cmd.args(["--bootstrap-addrs", seeds]);
        }
        if let Some(name) = &self.name {
            cmd.args(["--name", name]);
        }
        crate::remove_env_with_prefix(&mut cmd, "E2D_");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot clone a file handle"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("cannot start e2d"));
    }

    /// Sends `signal` (such as `STOP` or `CONT`) to the node's process.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the node runs");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGKILLs the node, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One member as `etcdctl member list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedMember {
    /// Hex, as e2d's status reports it.
    pub id: String,
    pub name: String,
    pub peer_url: String,
    pub is_learner: bool,
}

pub struct GossipCluster {
    pub size: usize,
    /// `--bootstrap-addrs` of every node: the first nodes' gossip addresses.
    seeds: String,
    /// Flags every node gets.
    flags: Vec<String>,
    pub nodes: Vec<Node>,
}

/// Flags for quick failure detection in tests.
pub const QUICK_HEALTH_CHECKS: &[&str] = &[
    "--health-check-interval",
    "1s",
    "--health-check-timeout",
    "3s",
];

impl GossipCluster {
    /// `nodes` not yet started; all of them are seeds.
    pub fn new(size: usize, nodes: Vec<Node>, flags: &[&str]) -> GossipCluster {
        let seeds = nodes
            .iter()
            .map(Node::gossip_addr)
            .collect::<Vec<_>>()
            .join(",");
        GossipCluster {
            size,
            seeds,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            nodes,
        }
    }

    /// `nodes` not yet started, finding each other only through
    /// `--peer-discovery` (in `flags` or each node's environment).
    pub fn discovering(size: usize, nodes: Vec<Node>, flags: &[&str]) -> GossipCluster {
        let mut cluster = GossipCluster::new(size, nodes, flags);
        cluster.seeds.clear();
        cluster
    }

    /// `size` nodes on 127.0.0.1, not yet started.
    pub fn on_loopback(size: usize, flags: &[&str]) -> GossipCluster {
        let nodes = (0..size).map(|_| Node::new(Ipv4Addr::LOCALHOST)).collect();
        GossipCluster::new(size, nodes, flags)
    }

    /// Starts node `i` (on its data dir, which may hold a member).
    pub fn start(&mut self, i: usize) {
        let (size, seeds, flags) = (self.size, self.seeds.clone(), self.flags.clone());
        self.nodes[i].spawn(size, &seeds, &flags);
    }

    /// Adds `node` and starts it; returns its index.
    pub fn add(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        let i = self.nodes.len() - 1;
        self.start(i);
        i
    }

    pub fn kill9(&mut self, i: usize) {
        self.nodes[i].kill9();
    }

    /// The running nodes' logs, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("=== node {i} ({}) ===\n{}", n.endpoint(), n.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until `done` holds, at most `timeout`; panics with `what` and
    /// every node's log otherwise.
    #[track_caller]
    pub fn wait_until(&self, what: &str, timeout: Duration, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            if Instant::now() > deadline {
                panic!("not within {timeout:?}: {what}\n{}", self.logs());
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// The members as node `via` lists them (`None` if it does not answer).
    pub fn members(&self, via: usize) -> Option<Vec<ListedMember>> {
        let list = self.nodes[via].etcdctl(&["member", "list", "-w", "json"]);
        if !list.success() {
            return None;
        }
        let json = list.json();
        let mut members: Vec<ListedMember> = json["members"]
            .as_array()?
            .iter()
            .map(|m| ListedMember {
                id: format!("{:x}", m["ID"].as_u64().unwrap_or(0)),
                name: m["name"].as_str().unwrap_or_default().to_string(),
                peer_url: m["peerURLs"][0].as_str().unwrap_or_default().to_string(),
                is_learner: m["isLearner"].as_bool().unwrap_or(false),
            })
            .collect();
        members.sort_by(|a, b| a.peer_url.cmp(&b.peer_url));
        Some(members)
    }

    /// Whether node `via` lists exactly the running nodes' peer URLs as
    /// voting members, all named (started).
    pub fn has_running_nodes_as_voters(&self, via: usize) -> bool {
        let Some(members) = self.members(via) else {
            return false;
        };
        let mut running: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(Node::peer_url)
            .collect();
        running.sort();
        let listed: Vec<String> = members.iter().map(|m| m.peer_url.clone()).collect();
        listed == running && members.iter().all(|m| !m.is_learner && !m.name.is_empty())
    }

    /// Puts through node `i`, retrying for up to 20 s (leader elections).
    #[track_caller]
    pub fn put(&self, i: usize, key: &str, value: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let put = self.nodes[i].etcdctl(&["put", key, value, "--command-timeout=2s"]);
            if put.success() {
                return;
            }
            if Instant::now() > deadline {
                panic!("node {i} accepted no write: {put}\n{}", self.logs());
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The number of keys under `prefix`, read linearizably through node `i`.
    pub fn count(&self, i: usize, prefix: &str) -> Option<u64> {
        let got = self.nodes[i].etcdctl(&["get", prefix, "--prefix", "--keys-only", "-w", "json"]);
        got.success()
            .then(|| got.json()["count"].as_u64().unwrap_or(0))
    }
}

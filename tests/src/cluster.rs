//! A cluster of e2d members as real processes on loopback, formed with
//! `--initial-cluster`.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{e2d_bin, etcdctl, free_port, http_get, CmdOutput};

/// How long a member or the whole cluster gets to come up.
const CLUSTER_START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub gossip_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn etcdctl(&self, args: &[&str]) -> CmdOutput {
        etcdctl(&self.endpoint(), args, None)
    }

    /// Runs `etcdctl ARGS` against this member with `stdin` as its input.
    pub fn etcdctl_stdin(&self, args: &[&str], stdin: &[u8]) -> CmdOutput {
        etcdctl(&self.endpoint(), args, Some(stdin))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The member's data dir.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Whether this member answers and knows a leader.
    pub fn has_leader(&self) -> bool {
        http_get(self.client_port, "/health").is_ok_and(|r| r.status == 200)
    }
}

pub struct Cluster {
    _dir: TempDir,
    initial_cluster: String,
    /// Flags every member gets.
    common_args: Vec<String>,
    pub members: Vec<Member>,
}

impl Cluster {
    /// Starts `size` members and waits until every one knows the leader.
    pub fn start(size: usize) -> Cluster {
        Cluster::start_with(size, &[])
    }

    /// Starts `size` members that all get `common_args` besides the usual
    /// flags.
    pub fn start_with(size: usize, common_args: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("e2d-cluster-")
            .tempdir()
            .expect("cannot create a temp dir");
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                gossip_port: free_port(),
                data_dir: dir.path().join(format!("m{i}")),
                log_path: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            _dir: dir,
            initial_cluster,
            common_args: common_args.iter().map(|a| a.to_string()).collect(),
            members,
        };
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster.wait_for_leader(None);
        for i in 0..size {
            cluster.wait_until_announced(i);
        }
        cluster
    }

    /// Waits until the member list shows member `i` started, with its
    /// client URL.
    pub fn wait_until_announced(&self, i: usize) {
        let deadline = Instant::now() + CLUSTER_START_TIMEOUT;
        let endpoint = self.members[i].endpoint();
        loop {
            let list = self.members[self.any_running()].etcdctl(&["member", "list"]);
            if list.success() && list.out().contains(&endpoint) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "member {i} never announced itself: {list}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Adds a member through `etcdctl member add` on member `via`, then
    /// starts it with `--initial-cluster-state existing`; returns its index.
    pub fn join(&mut self, via: usize, learner: bool) -> usize {
        let i = self.members.len();
        let dir = self._dir.path();
        let member = Member {
            name: format!("m{i}"),
            client_port: free_port(),
            peer_port: free_port(),
            gossip_port: free_port(),
            data_dir: dir.join(format!("m{i}")),
            log_path: dir.join(format!("m{i}.log")),
            child: None,
        };
        let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
        let mut args = vec!["member", "add", &member.name, "--peer-urls", &peer_url];
        if learner {
            args.push("--learner");
        }
        let added = self.members[via].etcdctl(&args);
        assert!(added.success(), "member add failed: {added}");
        self.initial_cluster = format!("{},{}={peer_url}", self.initial_cluster, member.name);
        self.members.push(member);
        self.spawn_with(i, &["--initial-cluster-state", "existing"]);
        self.wait_until_announced(i);
        i
    }

    /// The id of member `i` as the cluster lists it, in hex.
    pub fn member_id(&self, i: usize) -> String {
        let list = self.members[self.any_running()].etcdctl(&["member", "list"]);
        list.out()
            .lines()
            .find(|l| l.contains(&format!(", {}, ", self.members[i].name)))
            .and_then(|l| l.split(',').next())
            .unwrap_or_else(|| panic!("{} is not listed: {list}", self.members[i].name))
            .to_string()
    }

    fn any_running(&self) -> usize {
        self.members
            .iter()
            .position(Member::is_running)
            .expect("a running member")
    }

    /// Whether member `i`'s process has exited (and reaps it).
    pub fn has_exited(&mut self, i: usize) -> bool {
        let exited = self.members[i]
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
        if exited {
            self.members[i].child = None;
        }
        exited
    }

    fn spawn(&mut self, i: usize) {
        self.spawn_with(i, &[]);
    }

    fn spawn_with(&mut self, i: usize, extra_args: &[&str]) {
        let initial_cluster = self.initial_cluster.clone();
        let common_args = self.common_args.clone();
        let member = &mut self.members[i];
        assert!(member.child.is_none(), "member {i} already runs");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&member.log_path)
            .expect("cannot open the member log");
        let mut cmd = Command::new(e2d_bin());
        cmd.arg("run")
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args([
                "--client-addr",
                &format!("127.0.0.1:{}", member.client_port),
            ])
            .args(["--peer-addr", &format!("127.0.0.1:{}", member.peer_port)])
            .args([
                "--gossip-addr",
                &format!("127.0.0.1:{}", member.gossip_port),
            ])
            .args(["--initial-cluster", &initial_cluster])
            .args(&common_args)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot clone a file handle"))
            .stderr(log);
        crate::remove_env_with_prefix(&mut cmd, "E2D_");
        member.child = Some(cmd.spawn().expect("cannot start e2d"));
    }

    /// Restarts member `i` on its data dir.
    pub fn start_member(&mut self, i: usize) {
        self.spawn(i);
    }

    /// Restarts member `i` on its data dir with `extra_args` besides the
    /// usual flags.
    pub fn start_member_with(&mut self, i: usize, extra_args: &[&str]) {
        self.spawn_with(i, extra_args);
    }

    /// Waits up to `timeout` for member `i`'s process to exit, and reaps
    /// it; `None` if it still runs.
    pub fn wait_for_exit(&mut self, i: usize, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.members[i].child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.members[i].child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILLs member `i`, as a crash would.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until every running member (but `except`) knows a leader.
    pub fn wait_for_leader(&self, except: Option<usize>) {
        let deadline = Instant::now() + CLUSTER_START_TIMEOUT;
        loop {
            let ready = self
                .members
                .iter()
                .enumerate()
                .filter(|(i, m)| m.is_running() && Some(*i) != except)
                .all(|(_, m)| m.has_leader());
            if ready {
                return;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| format!("--- {} ---\n{}", m.name, m.log()))
                    .collect();
                panic!(
                    "no leader within {CLUSTER_START_TIMEOUT:?}:\n{}",
                    logs.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The index of the member that reports itself leader.
    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + CLUSTER_START_TIMEOUT;
        loop {
            for (i, member) in self.members.iter().enumerate() {
                if !member.is_running() {
                    continue;
                }
                let status = member.etcdctl(&["endpoint", "status", "-w", "json"]);
                if !status.success() {
                    continue;
                }
                let json = status.json();
                let own = &json[0]["Status"]["header"]["member_id"];
                let leader = &json[0]["Status"]["leader"];
                if !leader.is_null() && own == leader {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no member reports itself leader");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Puts through member `i`, retrying while the cluster elects a
    /// leader; panics if no attempt succeeds within the start timeout.
    pub fn put_eventually(&self, i: usize, key: &str, value: &str) {
        let deadline = Instant::now() + CLUSTER_START_TIMEOUT;
        loop {
            let put = self.members[i].etcdctl(&["put", key, value, "--command-timeout=1s"]);
            if put.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "member {i} accepted no write: {put}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Comma-separated endpoints of the running members.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.is_running())
            .map(Member::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i);
        }
    }
}

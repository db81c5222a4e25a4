//! A cluster of real e2d nodes on simulated hosts: each runs `e2d run -n`
//! (gossip, manager, raft, the gRPC services) on its own IP with its data
//! dir on an in-memory disk that outlives it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clap::Parser;
use e2d_core::schedule::{chain_for, chains, reach, ReplayTarget};
use e2d_core::version::Version;
use e2d_shell::backup::delta::deltas_in;
use e2d_shell::backup::snapshots_in;
use e2d_shell::backup::store::StoredObject;
use e2d_shell::cli::{Cli, Command, RunArgs};
use e2d_shell::discovery::simulated;
use e2d_shell::storage::{memory_disk, memory_segments};
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};

pub const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;
const GOSSIP_PORT: u16 = 7980;

/// The health-check flags every node runs with: short, so that dead
/// members are replaced within a run.
pub const HEALTH_CHECK_INTERVAL: &str = "1s";
pub const HEALTH_CHECK_TIMEOUT: &str = "10s";
/// How often the leader snapshots into the bucket.
pub const SNAPSHOT_INTERVAL: &str = "5s";
/// How often the leader ships a delta into the bucket between snapshots.
pub const SNAPSHOT_DELTA_INTERVAL: &str = "1s";
/// `--unsafe-auto-recover-after` in runs that opt in: longer than the
/// health-check timeout, as the flag requires.
pub const AUTO_RECOVER_AFTER: &str = "30s";
/// Applied entries between raft log compactions: few, so that runs drop
/// log segments and send members behind the log's start a snapshot.
pub const SNAPSHOT_COUNT: &str = "500";

/// One machine: its slot in the cluster, and who runs there now.
pub struct Member {
    pub slot: usize,
    pub name: String,
    pub ip: IpAddr,
    pub node: NodeHandle,
    data_dir: PathBuf,
    /// Down by a crash or a power loss (not yet restarted).
    pub down: bool,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("http://{}:{CLIENT_PORT}", self.ip)
    }
}

/// Errors nodes stopped with, for the report.
pub type NodeErrors = Arc<Mutex<Vec<String>>>;

/// Machines whose member stopped to have its data dir changed, waiting to
/// be restarted: `e2d` changes the data dir and runs again on a fresh
/// runtime, so that nothing of the old one (tasks, sockets, the open
/// database) survives; a simulated machine restarts and then changes it.
type RestartRequests = Arc<Mutex<Vec<madsim::task::NodeId>>>;

/// What a member asked be done to its data dir before it runs again.
#[derive(Debug, Clone)]
enum DataDirStep {
    /// Removed from its cluster (the one named, if any): archive the data
    /// and join as new.
    StartOver(Option<e2d_core::manager::Removal>),
    /// Agreed on to recover its cluster alone.
    Recover,
}

/// What restarts one machine needs: the restart queue, its own node id
/// once built, and the data dir step it waits for.
#[derive(Clone, Default)]
struct Restart {
    requests: RestartRequests,
    itself: Arc<Mutex<Option<madsim::task::NodeId>>>,
    step: Arc<Mutex<Option<DataDirStep>>>,
}

/// How often restart requests are served.
const RESTART_POLL: std::time::Duration = std::time::Duration::from_millis(100);

pub struct Cluster {
    handle: Handle,
    /// This run's own directory for data dirs (real files hold the small
    /// ones: the name, the founding commitment).
    root: PathBuf,
    /// The snapshot bucket every node uses (a directory under `root`): it
    /// outlives every machine.
    bucket: PathBuf,
    size: usize,
    members: Vec<Member>,
    /// Hosts handed out so far (a replacement gets a new address).
    hosts: u8,
    /// The simulated cloud's tag the nodes find each other by, when they
    /// use peer discovery rather than bootstrap addresses.
    discovery_tag: Option<String>,
    pub errors: NodeErrors,
    restarts: RestartRequests,
    /// Every node runs with `--unsafe-auto-recover-after`.
    auto_recover: bool,
    /// The e2d version new machines run, once a rolling upgrade began
    /// (before: the build's own).
    new_machines_run: Option<Version>,
    /// The version each machine runs, by node name, for the checkers.
    pub versions: VersionBook,
}

/// The e2d version each machine runs, by node name; the build's own for
/// those not listed.
pub type VersionBook = Arc<Mutex<BTreeMap<String, Version>>>;

fn host_ip(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, host))
}

impl Cluster {
    /// Starts `size` nodes that find each other through gossip, seeded by
    /// bootstrap addresses or, with `discovery`, by the simulated cloud;
    /// with `auto_recover`, every node (replacements too) recovers a lost
    /// majority on its own.
    pub fn start(root: PathBuf, size: usize, discovery: bool, auto_recover: bool) -> Self {
        // Runs in one process share the simulated cloud: a tag per run.
        let discovery_tag = discovery.then(|| {
            let run = root.file_name().map(|n| n.to_string_lossy().into_owned());
            run.unwrap_or_else(|| "e2d-sim".into())
        });
        let mut cluster = Self {
            discovery_tag,
            handle: Handle::current(),
            bucket: root.join("bucket"),
            root,
            size,
            members: Vec::new(),
            hosts: 0,
            errors: NodeErrors::default(),
            restarts: RestartRequests::default(),
            auto_recover,
            new_machines_run: None,
            versions: VersionBook::default(),
        };
        e2d_shell::sim_versions::clear();
        let (handle, restarts) = (cluster.handle.clone(), cluster.restarts.clone());
        madsim::task::spawn(async move {
            loop {
                madsim::time::sleep(RESTART_POLL).await;
                let due: Vec<_> =
                    std::mem::take(&mut *restarts.lock().unwrap_or_else(|p| p.into_inner()));
                // Killed first: a killed node's tasks (and the sockets they
                // hold) go at the executor's next turn, not at once.
                for &node in &due {
                    handle.kill(node);
                }
                madsim::time::sleep(RESTART_POLL).await;
                for node in due {
                    handle.restart(node);
                }
            }
        });
        let seeds: Vec<IpAddr> = (1..=size as u8).map(host_ip).collect();
        for slot in 0..size {
            let member = cluster.launch(slot, &seeds);
            cluster.members.push(member);
        }
        cluster
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// The node ids of the members, by slot.
    pub fn node_ids(&self) -> Vec<madsim::task::NodeId> {
        self.members.iter().map(|m| m.node.id()).collect()
    }

    fn launch(&mut self, slot: usize, seeds: &[IpAddr]) -> Member {
        self.hosts += 1;
        let host = self.hosts;
        let ip = host_ip(host);
        let name = format!("n{slot}-h{host}");
        let data_dir = self.root.join(&name);
        let seeding = match &self.discovery_tag {
            Some(tag) => {
                simulated::register(tag, ip);
                Seeding::Discovery(tag.clone())
            }
            None => Seeding::Bootstrap(seeds.to_vec()),
        };
        let args = run_args(
            &name,
            ip,
            &data_dir,
            &seeding,
            (self.size, self.auto_recover),
            &self.bucket,
        );
        let errors = self.errors.clone();
        let restart = Restart {
            requests: self.restarts.clone(),
            ..Restart::default()
        };
        let itself = restart.itself.clone();
        let node = self
            .handle
            .create_node()
            .name(name.clone())
            .ip(ip)
            .init(move || run_member(args.clone(), errors.clone(), restart.clone()))
            .build();
        *itself.lock().unwrap_or_else(|p| p.into_inner()) = Some(node.id());
        if let Some(version) = self.new_machines_run {
            self.set_version(node.id(), &name, version);
        }
        Member {
            slot,
            name,
            ip,
            node,
            data_dir,
            down: false,
        }
    }

    /// `kill -9`: the node stops at once and its disk keeps what it had
    /// synced, plus `kept_batches` of what it had not.
    pub fn crash(&mut self, slot: usize, kept_batches: usize) -> usize {
        let member = &mut self.members[slot];
        self.handle.kill(member.node.id());
        member.down = true;
        memory_disk::crash(&member.data_dir, kept_batches)
    }

    /// While the node in `slot` is down after a crash, changes a byte of a
    /// synced record in its newest raft log segment, then starts it again.
    /// Returns the damaged file, or `None` if its log held too little.
    pub fn damage_log(&mut self, slot: usize, seed: usize) -> Option<PathBuf> {
        self.crash(slot, 0);
        let wal = self.members[slot].data_dir.join("wal");
        let damaged = memory_segments::damage_synced_record(&wal, seed);
        self.restart(slot);
        damaged.map(|(file, _)| file)
    }

    /// The machine `node` (named `name`) runs e2d `version` from now on.
    fn set_version(&self, node: madsim::task::NodeId, name: &str, version: Version) {
        e2d_shell::sim_versions::set(node, version);
        self.versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), version);
    }

    /// A rolling upgrade to `version` begins: machines started from now on
    /// run it.
    pub fn begin_upgrade(&mut self, version: Version) {
        self.new_machines_run = Some(version);
    }

    /// Starts the stopped node in `slot` again, running `version`.
    pub fn upgrade(&mut self, slot: usize, version: Version) {
        let member = &self.members[slot];
        self.set_version(member.node.id(), &member.name, version);
        self.restart(slot);
    }

    /// Takes the error the node in `slot` stopped with, if it stopped.
    pub fn take_error_of(&self, slot: usize) -> Option<String> {
        let prefix = format!("{} stopped: ", self.members[slot].name);
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let position = errors.iter().position(|e| e.starts_with(&prefix))?;
        Some(errors.remove(position))
    }

    /// Counts a failure of the run.
    pub fn fail(&self, failure: String) {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(failure);
    }

    pub fn restart(&mut self, slot: usize) {
        let member = &mut self.members[slot];
        assert!(member.down, "only a stopped node restarts");
        self.handle.restart(member.node.id());
        member.down = false;
    }

    pub fn pause(&self, slot: usize) {
        self.handle.pause(self.members[slot].node.id());
    }

    pub fn resume(&self, slot: usize) {
        self.handle.resume(self.members[slot].node.id());
    }

    /// The machine in `slot` is lost with its disk, for good.
    pub fn lose(&mut self, slot: usize) {
        let old = &mut self.members[slot];
        self.handle.kill(old.node.id());
        old.down = true;
        wipe(&old.data_dir);
        let ip = old.ip;
        self.leave_cloud(ip);
    }

    /// The machine in `slot` is lost with its disk; a fresh node with a
    /// new name and address takes the slot, seeded with the others.
    pub fn replace(&mut self, slot: usize) {
        self.lose(slot);
        let seeds: Vec<IpAddr> = self
            .members
            .iter()
            .filter(|m| m.slot != slot)
            .map(|m| m.ip)
            .collect();
        let member = self.launch(slot, &seeds);
        self.members[slot] = member;
    }

    /// Every machine is lost with its disk at once; fresh nodes with new
    /// names and addresses take every slot, seeded with each other.
    pub fn replace_all(&mut self) {
        for member in &self.members {
            self.handle.kill(member.node.id());
            wipe(&member.data_dir);
            self.leave_cloud(member.ip);
        }
        let first = self.hosts + 1;
        let seeds: Vec<IpAddr> = (first..first + self.size as u8).map(host_ip).collect();
        for slot in 0..self.size {
            let member = self.launch(slot, &seeds);
            self.members[slot] = member;
        }
    }

    /// A lost machine no longer shows in the simulated cloud.
    fn leave_cloud(&self, ip: IpAddr) {
        if let Some(tag) = &self.discovery_tag {
            simulated::deregister(tag, ip);
        }
    }

    /// The newest chain in the bucket, as its names tell: its full
    /// snapshot's name and the revision its deltas reach without a gap
    /// (the snapshot's own without deltas).
    pub fn newest_backup(&self) -> Option<(String, i64)> {
        let objects: Vec<StoredObject> = std::fs::read_dir(&self.bucket)
            .ok()?
            .flatten()
            .map(|entry| StoredObject {
                name: entry.file_name().to_string_lossy().into_owned(),
                size_bytes: entry.metadata().map_or(0, |m| m.len()),
            })
            .collect();
        let snapshots = snapshots_in(&objects);
        let deltas = deltas_in(&objects);
        let chains = chains(&snapshots, &deltas);
        let chain = chain_for(&chains, None, ReplayTarget::Newest, &Default::default())?;
        let revision = reach(&chain.deltas)
            .map_or(chain.full.revision, |reach| reach.last.span.to_revision)
            .max(chain.full.revision);
        Some((chain.full.name.clone(), revision))
    }

    /// Cuts the links between `side` and everyone else, both ways.
    pub fn isolate(&self, side: &[usize]) {
        let net = NetSim::current();
        for a in side {
            for b in (0..self.size).filter(|b| !side.contains(b)) {
                net.clog_link(self.id(*a), self.id(b));
                net.clog_link(self.id(b), self.id(*a));
            }
        }
    }

    pub fn cut_one_way(&self, from: usize, to: usize) {
        NetSim::current().clog_link(self.id(from), self.id(to));
    }

    /// Two halves that cannot reach each other; `bridge` reaches both.
    pub fn split_with_bridge(&self, bridge: usize) {
        let others: Vec<usize> = (0..self.size).filter(|s| *s != bridge).collect();
        let (left, right) = others.split_at(others.len() / 2);
        let net = NetSim::current();
        for a in left {
            for b in right {
                net.clog_link(self.id(*a), self.id(*b));
                net.clog_link(self.id(*b), self.id(*a));
            }
        }
    }

    /// Every link among the machines in the slots works again.
    pub fn heal(&self) {
        let net = NetSim::current();
        for a in 0..self.size {
            for b in 0..self.size {
                if a != b {
                    net.unclog_link(self.id(a), self.id(b));
                }
            }
        }
    }

    fn id(&self, slot: usize) -> madsim::task::NodeId {
        self.members[slot].node.id()
    }
}

/// Everything a machine stored under `dir` is gone: its in-memory disks
/// and its files.
impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(tag) = &self.discovery_tag {
            simulated::forget(tag);
        }
    }
}

pub fn wipe(dir: &Path) {
    memory_disk::destroy_under(dir);
    let _ = std::fs::remove_dir_all(dir);
}

/// What the simulated machine runs: `e2d run`, again as a new member when
/// the cluster removed it, or on its recovered data dir, as the binary's
/// `main` does: the data dir changes once the machine restarted, when
/// nothing of the run before holds it.
async fn run_member(args: RunArgs, errors: NodeErrors, restart: Restart) {
    use e2d_shell::run::{recover_alone, start_over, Stopped};
    let step = restart
        .step
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let prepared = match step {
        None => Ok(()),
        Some(DataDirStep::StartOver(removed_from)) => {
            start_over(&args.data_dir, removed_from.as_ref())
        }
        Some(DataDirStep::Recover) => recover_alone(&args.data_dir),
    };
    let step = match prepared {
        Ok(()) => e2d_shell::run::run(args.clone()).await,
        Err(e) => Err(e),
    };
    let step = match step {
        Ok(Stopped::Shutdown) => return,
        Ok(Stopped::Removed { removed_from }) => DataDirStep::StartOver(removed_from),
        Ok(Stopped::Recover) => DataDirStep::Recover,
        Err(e) => return record(&errors, &args, e),
    };
    *restart.step.lock().unwrap_or_else(|p| p.into_inner()) = Some(step);
    let id = *restart.itself.lock().unwrap_or_else(|p| p.into_inner());
    let id = id.expect("the node id is known once the node is built");
    restart
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(id);
    std::future::pending::<()>().await;
}

fn record(errors: &NodeErrors, args: &RunArgs, e: e2d_shell::run::RunError) {
    let name = args.name.clone().unwrap_or_default();
    errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(format!("{name} stopped: {e}"));
}

/// How a node finds the others.
enum Seeding {
    Bootstrap(Vec<IpAddr>),
    /// `--peer-discovery do-tags:<tag>` in the simulated cloud.
    Discovery(String),
}

/// The flags of one node, parsed as the binary parses them.
fn run_args(
    name: &str,
    ip: IpAddr,
    data_dir: &Path,
    seeding: &Seeding,
    (size, auto_recover): (usize, bool),
    bucket: &Path,
) -> RunArgs {
    let (seed_flag, seed_value) = match seeding {
        Seeding::Bootstrap(seeds) => {
            let seeds: Vec<String> = seeds.iter().map(|ip| ip.to_string()).collect();
            ("--bootstrap-addrs", seeds.join(","))
        }
        Seeding::Discovery(tag) => ("--peer-discovery", format!("do-tags:{tag}")),
    };
    let mut argv = vec![
        "e2d".to_string(),
        "run".into(),
        "--name".into(),
        name.into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--host".into(),
        ip.to_string(),
        "--client-addr".into(),
        format!("{ip}:{CLIENT_PORT}"),
        "--peer-addr".into(),
        format!("{ip}:{PEER_PORT}"),
        "--gossip-addr".into(),
        format!("{ip}:{GOSSIP_PORT}"),
        "--required-cluster-size".into(),
        size.to_string(),
        seed_flag.into(),
        seed_value,
        "--health-check-interval".into(),
        HEALTH_CHECK_INTERVAL.into(),
        "--health-check-timeout".into(),
        HEALTH_CHECK_TIMEOUT.into(),
        "--snapshot-backup-url".into(),
        format!("file://{}", bucket.display()),
        "--snapshot-interval".into(),
        SNAPSHOT_INTERVAL.into(),
        "--snapshot-delta-interval".into(),
        SNAPSHOT_DELTA_INTERVAL.into(),
        "--snapshot-count".into(),
        SNAPSHOT_COUNT.into(),
    ];
    if auto_recover {
        argv.extend([
            "--unsafe-auto-recover-after".into(),
            AUTO_RECOVER_AFTER.into(),
        ]);
    }
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Run(args),
        }) => *args,
        Ok(_) => unreachable!("the command is run"),
        Err(e) => panic!("the simulator's own flags parse: {e}"),
    }
}

//! The cluster manager against random schedules of crashes, lost disks,
//! partitions and stale gossip, for clusters of 1 to 7 nodes.
//!
//! A small world stands in for the shell: it derives each node's gossip view
//! from the truth (each view entry catches up with probability 0.7 per tick,
//! so views lag and differ), runs a model of the etcd clusters (members,
//! learners, a leader only where a quorum of voters runs on one side of a
//! partition), and carries out every command. It checks:
//!
//! - **one cluster identity**: at no time can two clusters make progress
//!   (have a quorum of voters whose disks still hold their member state);
//! - **quorum in view**: a health-check removal is issued only when the
//!   issuer's view shows a quorum of voters Running;
//! - **never below quorum**: no removal or promotion leaves fewer live
//!   voters (in the issuer's view) than the new quorum;
//! - **never wipe**: no founding, commitment or restore over a member's
//!   data; a data dir is moved aside only for a member that was removed.
//!
//! - **rolling upgrades**: a cluster version is recorded only when every
//!   member runs it or a newer one, and it never goes down; no node older
//!   than its cluster's version is added to it.
//!
//! A second property checks liveness: after the faults stop (no lost disks
//! in that run) and every node is upgraded to the newest version, `n` nodes
//! end up running one cluster of `n` voters with a leader, at the newest
//! version (and none is founded when there are fewer than `n` nodes).

use std::collections::{BTreeMap, BTreeSet};

use e2d_core::log_position::LogPosition;
use e2d_core::manager::{
    member_ids, quorum::quorum, ClusterMember, Command, CommandResult, DataDir, Manager,
    ManagerConfig, PlantedBugs, Proposal, RecoveredFrom, Removal, RemovalReason, ServerStatus,
    RECOVERY_LINEAGE_MAX,
};
use e2d_core::rng::Rng;
use e2d_core::swim::{Liveness, MemberView, NodeMeta, NodeStatus};
use e2d_core::version::Version;
use proptest::prelude::*;

const HEALTH_TIMEOUT_MS: u64 = 10_000;
const LOCK_TTL_MS: u64 = 10_000;
/// How long a learner's server runs before it has caught up.
const CATCH_UP_MS: u64 = 1_000;
/// The e2d versions nodes run, oldest first; every node starts at the first.
const VERSIONS: [Version; 3] = [
    Version::new(0, 1, 0),
    Version::new(0, 2, 0),
    Version::new(0, 3, 0),
];

#[derive(Debug, Clone)]
enum Action {
    Tick(u64),
    Crash(usize),
    Restart(usize),
    /// Crash, lose the disk, come back empty.
    LoseDisk(usize),
    /// Bit i set: node i on the far side.
    Partition(u8),
    Heal,
    /// The operator resizes the newest cluster (`e2d cluster resize`),
    /// through a leader on the near side.
    Resize(usize),
    /// Restart a node at the next version, if it is not at the newest.
    Upgrade(usize),
    /// Crash and restart at once, with the disk kept.
    Bounce(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Disk {
    Empty,
    Committed(Proposal),
    Member { cluster: usize, member_id: u64 },
}

/// What a lost disk held that bound its node to a cluster.
#[derive(Debug)]
enum Forgotten {
    Disk(Disk),
    /// The record of its removal from the cluster of this id.
    Removal(u64),
}

struct Node {
    name: String,
    alive: bool,
    disk: Disk,
    manager: Option<Manager>,
    /// (cluster index, member id) while the server runs.
    server: Option<(usize, u64)>,
    meta: NodeMeta,
    view: BTreeMap<String, MemberView>,
    side: bool,
    /// Index into [`VERSIONS`] of what the node runs.
    version: usize,
    /// When the server started (a learner catches up [`CATCH_UP_MS`] later).
    server_since_ms: u64,
    /// The learners the last server status told this node's manager were
    /// caught up.
    reported_caught_up: BTreeSet<u64>,
    planted: PlantedBugs,
    /// Where its raft log ends (kept on its disk).
    log: LogPosition,
    /// The survivor this member left its cluster's recovery to (kept on
    /// its disk).
    recovery_left_to: Option<u64>,
    /// The cluster that removed its member, recorded on its disk when the
    /// member's data was moved aside.
    removed_record: Option<Removal>,
}

struct Cluster {
    founders: Vec<String>,
    /// Founding members that started it.
    founded_by: BTreeSet<u64>,
    /// The member id of each founder, in the first member list.
    founder_ids: BTreeMap<String, u64>,
    members: Vec<ClusterMember>,
    lock: Option<(usize, u64)>,
    /// The replicated size, once set.
    size: Option<usize>,
    /// The recorded cluster version, once set.
    version: Option<Version>,
    /// The cluster this one was recovered from, and by which member.
    recovered_from: Option<(usize, u64)>,
    /// Where its leader's log ends.
    log: LogPosition,
    /// The leader of the current term, if one was elected in it.
    term_leader: Option<u64>,
}

struct World {
    nodes: Vec<Node>,
    clusters: Vec<Cluster>,
    size: usize,
    now_ms: u64,
    rng: Rng,
    next_member_id: u64,
    snapshot: Option<String>,
    lost_disks: bool,
    /// What `LoseDisk` took from nodes whose disk bound them to a
    /// cluster, by node name.
    forgotten: Vec<(String, Forgotten)>,
    /// `--unsafe-auto-recover-after`, if the nodes run with it.
    auto_recover_ms: Option<u64>,
}

fn cluster_id(index: usize) -> u64 {
    100 + index as u64
}

fn client_url(name: &str) -> String {
    format!("http://{name}:2379")
}

fn peer_url(name: &str) -> String {
    format!("http://{name}:2380")
}

impl World {
    fn new(nodes: usize, size: usize, seed: u64) -> Self {
        Self::with_planted(nodes, size, seed, PlantedBugs::NONE)
    }

    /// A world whose managers break the rules `planted` names.
    fn with_planted(nodes: usize, size: usize, seed: u64, planted: PlantedBugs) -> Self {
        let mut world = World {
            nodes: (0..nodes)
                .map(|i| Node {
                    name: format!("n{i}"),
                    alive: false,
                    disk: Disk::Empty,
                    manager: None,
                    server: None,
                    meta: NodeMeta::default(),
                    view: BTreeMap::new(),
                    side: false,
                    version: 0,
                    server_since_ms: 0,
                    reported_caught_up: BTreeSet::new(),
                    planted,
                    log: LogPosition::default(),
                    recovery_left_to: None,
                    removed_record: None,
                })
                .collect(),
            clusters: Vec::new(),
            size,
            now_ms: 0,
            rng: Rng::new(seed),
            next_member_id: 1,
            snapshot: seed.is_multiple_of(2).then(|| "snap-1".to_string()),
            lost_disks: false,
            forgotten: Vec::new(),
            auto_recover_ms: None,
        };
        for i in 0..nodes {
            world.boot(i);
        }
        world
    }

    fn config(&self, i: usize) -> ManagerConfig {
        let name = &self.nodes[i].name;
        ManagerConfig {
            name: name.clone(),
            client_url: client_url(name),
            peer_url: peer_url(name),
            required_cluster_size: self.size,
            health_check_interval_ms: 1_000,
            health_check_timeout_ms: HEALTH_TIMEOUT_MS,
            snapshots_configured: true,
            retry_interval_ms: 500,
            propose_cluster_size: None,
            removed_from: self.nodes[i].removed_record.clone(),
            version: VERSIONS[self.nodes[i].version],
            auto_recover_after_ms: self.auto_recover_ms,
            planted: self.nodes[i].planted,
        }
    }

    fn boot(&mut self, i: usize) {
        let data_dir = match &self.nodes[i].disk {
            Disk::Empty => DataDir::Empty,
            Disk::Committed(p) => DataDir::Committed(p.clone()),
            Disk::Member { cluster, member_id } => DataDir::Member {
                cluster_id: cluster_id(*cluster),
                member_id: *member_id,
                founders: self.clusters[*cluster]
                    .founded_by
                    .contains(member_id)
                    .then(|| Proposal {
                        founders: self.clusters[*cluster].founders.clone(),
                        restore: self.snapshot.clone(),
                    }),
                recovery_left_to: self.nodes[i].recovery_left_to,
            },
        };
        let manager = Manager::new(self.config(i), data_dir, self.now_ms);
        let node = &mut self.nodes[i];
        node.alive = true;
        node.manager = Some(manager);
        node.view.clear();
        self.drain(i);
    }

    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.alive = false;
        node.manager = None;
        node.server = None;
        for cluster in &mut self.clusters {
            if matches!(cluster.lock, Some((holder, _)) if holder == i) {
                cluster.lock = None;
            }
        }
    }

    fn apply(&mut self, action: &Action) {
        match *action {
            Action::Tick(dt) => self.tick(dt),
            _ if std::env::var_os("WORLD_TRACE").is_some() => {
                eprintln!("{:>7} == {action:?}", self.now_ms);
            }
            _ => {}
        }
        match *action {
            Action::Tick(_) => {}
            Action::Crash(i) => {
                if self.nodes[i].alive {
                    self.crash(i)
                }
            }
            Action::Restart(i) => {
                if !self.nodes[i].alive {
                    self.boot(i)
                }
            }
            Action::LoseDisk(i) => {
                self.crash(i);
                let name = &self.nodes[i].name;
                if self.nodes[i].disk != Disk::Empty {
                    let lost = Forgotten::Disk(self.nodes[i].disk.clone());
                    self.forgotten.push((name.clone(), lost));
                }
                if let Some(removal) = &self.nodes[i].removed_record {
                    let lost = Forgotten::Removal(removal.cluster_id);
                    self.forgotten.push((name.clone(), lost));
                }
                self.set_disk(i, Disk::Empty);
                self.nodes[i].removed_record = None;
                self.lost_disks = true;
                self.boot(i);
            }
            Action::Partition(mask) => {
                for (i, node) in self.nodes.iter_mut().enumerate() {
                    node.side = mask & (1 << i) != 0;
                }
            }
            Action::Heal => {
                for node in &mut self.nodes {
                    node.side = false;
                }
            }
            Action::Upgrade(i) => {
                if self.nodes[i].version + 1 < VERSIONS.len() {
                    if self.nodes[i].alive {
                        self.crash(i);
                    }
                    self.nodes[i].version += 1;
                    self.boot(i);
                }
            }
            Action::Bounce(i) => {
                if self.nodes[i].alive {
                    self.crash(i);
                    self.boot(i);
                }
            }
            Action::Resize(size) => {
                let newest = self.clusters.len().checked_sub(1);
                if let Some(cluster) = newest.filter(|&c| self.leader(c, false).is_some()) {
                    self.clusters[cluster].size = Some(size);
                }
            }
        }
        self.check_one_cluster_identity();
    }

    fn connected(&self, i: usize, j: usize) -> bool {
        self.nodes[i].alive && self.nodes[j].alive && self.nodes[i].side == self.nodes[j].side
    }

    fn tick(&mut self, dt: u64) {
        self.now_ms += dt;
        self.apply_entries();
        let n = self.nodes.len();
        for i in 0..n {
            if !self.nodes[i].alive {
                continue;
            }
            for j in (0..n).filter(|j| *j != i) {
                if self.rng.below(10) >= 7 {
                    continue;
                }
                let update =
                    if self.connected(i, j) && self.nodes[j].meta.name == self.nodes[j].name {
                        Some(MemberView {
                            name: self.nodes[j].name.clone(),
                            addr: "127.0.0.1:7980".parse().unwrap(),
                            incarnation: 1,
                            liveness: Liveness::Alive,
                            meta: self.nodes[j].meta.clone(),
                        })
                    } else {
                        self.nodes[i]
                            .view
                            .get(&self.nodes[j].name)
                            .map(|old| MemberView {
                                liveness: Liveness::Dead,
                                ..old.clone()
                            })
                    };
                let Some(update) = update else { continue };
                if self.nodes[i].view.get(&update.name) == Some(&update) {
                    continue;
                }
                self.nodes[i]
                    .view
                    .insert(update.name.clone(), update.clone());
                let now = self.now_ms;
                self.nodes[i]
                    .manager
                    .as_mut()
                    .unwrap()
                    .handle_gossip(update, now);
                self.drain(i);
            }
            self.report_server(i);
            let now = self.now_ms;
            let manager = self.nodes[i].manager.as_mut().unwrap();
            if manager.poll_timeout().is_some_and(|t| t <= now) {
                manager.handle_timeout(now);
                // A timeout that is still due after it was handled would
                // wake the shell again at once, forever.
                let next = manager.poll_timeout();
                assert!(
                    next.is_none_or(|t| t > now),
                    "{}: poll_timeout {next:?} is not after now ({now}) right after handle_timeout",
                    self.nodes[i].name
                );
            }
            self.drain(i);
        }
    }

    /// Each cluster with a leader appends one more entry (in a new term
    /// when the leader changed): the leader at once, each other member
    /// running on its side with probability 1/2, so survivors' logs
    /// differ.
    fn apply_entries(&mut self) {
        for cluster in 0..self.clusters.len() {
            for side in [false, true] {
                let Some(leader) = self.leader(cluster, side) else {
                    continue;
                };
                let state = &mut self.clusters[cluster];
                if state.term_leader != Some(leader) {
                    state.term_leader = Some(leader);
                    state.log.term += 1;
                }
                state.log.index += 1;
                let log = state.log;
                for i in 0..self.nodes.len() {
                    let node = &self.nodes[i];
                    if !node.alive || node.side != side {
                        continue;
                    }
                    let Some((c, member_id)) = node.server else {
                        continue;
                    };
                    if c == cluster && (member_id == leader || self.rng.below(2) == 0) {
                        self.nodes[i].log = log;
                    }
                }
            }
        }
    }

    /// Each node's state and what its manager waits for, for failure reports.
    fn report(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "{} alive={} disk={:?} server={:?} meta={:?}/{:?} waiting={:?}",
                    n.name,
                    n.alive,
                    n.disk,
                    n.server,
                    n.meta.status,
                    n.meta.founders,
                    n.manager.as_ref().map(|m| m.waiting_for().to_string())
                )
            })
            .collect()
    }

    /// The leader of `cluster` on `side`: the smallest running voter, when a
    /// quorum of voters runs there.
    fn leader(&self, cluster: usize, side: bool) -> Option<u64> {
        let voters: Vec<&ClusterMember> = self.clusters[cluster]
            .members
            .iter()
            .filter(|m| !m.is_learner)
            .collect();
        let running: Vec<u64> = voters
            .iter()
            .filter(|m| {
                self.nodes
                    .iter()
                    .any(|n| n.alive && n.side == side && n.server == Some((cluster, m.id)))
            })
            .map(|m| m.id)
            .collect();
        (running.len() >= quorum(voters.len()))
            .then(|| running.iter().copied().min())
            .flatten()
    }

    fn report_server(&mut self, i: usize) {
        let Some((cluster, member_id)) = self.nodes[i].server else {
            return;
        };
        let now = self.now_ms;
        if !self.clusters[cluster]
            .members
            .iter()
            .any(|m| m.id == member_id)
        {
            self.nodes[i].server = None;
            let members = self.clusters[cluster].members.clone();
            self.nodes[i]
                .manager
                .as_mut()
                .unwrap()
                .handle_server_removed(&members, now);
            self.drain(i);
            return;
        }
        let side = self.nodes[i].side;
        let leader = self.leader(cluster, side);
        let members: Vec<ClusterMember> = self.clusters[cluster]
            .members
            .iter()
            .map(|m| ClusterMember {
                caught_up: m.is_learner
                    && leader == Some(member_id)
                    && self.nodes.iter().any(|n| {
                        n.alive
                            && n.side == side
                            && n.server == Some((cluster, m.id))
                            && now >= n.server_since_ms + CATCH_UP_MS
                    }),
                ..m.clone()
            })
            .collect();
        self.nodes[i].reported_caught_up = members
            .iter()
            .filter(|m| m.caught_up)
            .map(|m| m.id)
            .collect();
        let status = ServerStatus {
            cluster_id: cluster_id(cluster),
            member_id,
            leader_id: leader.unwrap_or(0),
            members,
            cluster_size: self.clusters[cluster].size,
            cluster_version: self.clusters[cluster].version,
            last_log: self.nodes[i].log,
            recovered_from: self.lineage(cluster),
        };
        self.nodes[i]
            .manager
            .as_mut()
            .unwrap()
            .handle_server_status(status, now);
        self.drain(i);
    }

    fn drain(&mut self, i: usize) {
        let mut commands = 0;
        while let Some(command) = self.nodes[i]
            .manager
            .as_mut()
            .and_then(|m| m.poll_command())
        {
            commands += 1;
            assert!(
                commands < 1_000,
                "{} loops on {command:?}",
                self.nodes[i].name
            );
            let answer = self.execute(i, command);
            if let Some((id, result)) = answer {
                let now = self.now_ms;
                self.nodes[i]
                    .manager
                    .as_mut()
                    .unwrap()
                    .handle_result(id, result, now);
            }
        }
    }

    /// The cluster reachable through one of `through` from node `i`, with a
    /// leader on `i`'s side.
    fn reachable(&self, i: usize, through: &[String]) -> Option<usize> {
        through.iter().find_map(|url| {
            let j = self.nodes.iter().position(|n| peer_url(&n.name) == *url)?;
            let (cluster, _) = self.nodes[j].server?;
            (self.connected(i, j) && self.leader(cluster, self.nodes[i].side).is_some())
                .then_some(cluster)
        })
    }

    fn execute(&mut self, i: usize, command: Command) -> Option<(u64, CommandResult)> {
        if std::env::var_os("WORLD_TRACE").is_some() {
            eprintln!("{:>7} {} {:?}", self.now_ms, self.nodes[i].name, command);
        }
        let failed = |id| Some((id, CommandResult::Failed("unreachable".into())));
        match command {
            Command::PublishMeta(meta) => {
                self.nodes[i].meta = meta;
                None
            }
            Command::ListSnapshots { id } => {
                Some((id, CommandResult::NewestSnapshot(self.snapshot.clone())))
            }
            Command::PersistCommitment { id, proposal } => {
                assert!(
                    !matches!(self.nodes[i].disk, Disk::Member { .. }),
                    "commitment written over a member's data dir"
                );
                let disk = match proposal {
                    Some(p) => Disk::Committed(p),
                    None => Disk::Empty,
                };
                self.set_disk(i, disk);
                Some((id, CommandResult::Done))
            }
            Command::RestartFromDataDir { id } => {
                let Disk::Member { cluster, member_id } = self.nodes[i].disk else {
                    panic!("restart without member data");
                };
                self.nodes[i].server = Some((cluster, member_id));
                self.nodes[i].server_since_ms = self.now_ms;
                Some((
                    id,
                    CommandResult::Started {
                        cluster_id: cluster_id(cluster),
                    },
                ))
            }
            Command::StartNewCluster {
                id,
                founders,
                restore,
            } => {
                assert!(
                    !matches!(self.nodes[i].disk, Disk::Member { .. }),
                    "new cluster over a member's data dir"
                );
                assert_eq!(restore, self.snapshot, "restores the newest snapshot");
                let names: Vec<String> = founders.iter().map(|f| f.name.clone()).collect();
                for f in &founders {
                    assert_eq!(f.peer_url, peer_url(&f.name));
                }
                let cluster = match self.clusters.iter().position(|c| c.founders == names) {
                    Some(c) => c,
                    None => {
                        let members: Vec<ClusterMember> = names
                            .iter()
                            .map(|name| {
                                self.next_member_id += 1;
                                ClusterMember {
                                    id: self.next_member_id,
                                    name: name.clone(),
                                    peer_url: peer_url(name),
                                    is_learner: false,
                                    caught_up: false,
                                }
                            })
                            .collect();
                        let founder_ids = names
                            .iter()
                            .cloned()
                            .zip(members.iter().map(|m: &ClusterMember| m.id))
                            .collect();
                        self.clusters.push(Cluster {
                            founders: names.clone(),
                            founded_by: BTreeSet::new(),
                            founder_ids,
                            members,
                            lock: None,
                            size: None,
                            version: None,
                            recovered_from: None,
                            log: LogPosition::default(),
                            term_leader: None,
                        });
                        self.clusters.len() - 1
                    }
                };
                // A founder starts under its id in the first member list,
                // even if it was removed since: then its server learns that
                // it was removed, as a real member would.
                let member_id = self.clusters[cluster].founder_ids[&self.nodes[i].name];
                self.clusters[cluster].founded_by.insert(member_id);
                Some((id, self.start_server(i, cluster, member_id)))
            }
            Command::AcquireJoinLock { id, through } => {
                let Some(cluster) = self.reachable(i, &through) else {
                    return failed(id);
                };
                let now = self.now_ms;
                let lock = &mut self.clusters[cluster].lock;
                match *lock {
                    Some((holder, at)) if holder != i && now < at + LOCK_TTL_MS => {
                        Some((id, CommandResult::Failed("join lock held".into())))
                    }
                    _ => {
                        *lock = Some((i, now));
                        Some((id, CommandResult::Done))
                    }
                }
            }
            Command::ReleaseJoinLock { .. } => {
                for cluster in &mut self.clusters {
                    if matches!(cluster.lock, Some((holder, _)) if holder == i) {
                        cluster.lock = None;
                    }
                }
                None
            }
            Command::FetchMembers { id, through } => {
                let Some(cluster) = self.reachable(i, &through) else {
                    return failed(id);
                };
                Some((
                    id,
                    CommandResult::Members {
                        members: self.clusters[cluster].members.clone(),
                        cluster_size: self.size_of(cluster),
                        cluster_version: self.clusters[cluster].version,
                    },
                ))
            }
            Command::AddLearner { id, through } => {
                let Some(cluster) = self.reachable(i, &through) else {
                    return failed(id);
                };
                let url = peer_url(&self.nodes[i].name);
                let own = VERSIONS[self.nodes[i].version];
                assert!(
                    self.clusters[cluster].version.is_none_or(|v| own >= v),
                    "{} runs {own} and was added to a cluster at {:?}",
                    self.nodes[i].name,
                    self.clusters[cluster].version
                );
                let members = &mut self.clusters[cluster].members;
                assert!(
                    members.iter().all(|m| m.peer_url != url),
                    "peer URL added twice"
                );
                self.next_member_id += 1;
                members.push(ClusterMember {
                    id: self.next_member_id,
                    name: String::new(),
                    peer_url: url,
                    is_learner: true,
                    caught_up: false,
                });
                let members = members.clone();
                Some((
                    id,
                    CommandResult::Members {
                        members,
                        cluster_size: self.size_of(cluster),
                        cluster_version: self.clusters[cluster].version,
                    },
                ))
            }
            Command::StartJoined { id, members } => {
                let url = peer_url(&self.nodes[i].name);
                let me = members
                    .iter()
                    .find(|m| m.peer_url == url)
                    .expect("joined list names us");
                let cluster = self
                    .clusters
                    .iter()
                    .position(|c| c.members.iter().any(|m| m.id == me.id))
                    .expect("the member exists");
                let name = self.nodes[i].name.clone();
                let member_id = me.id;
                if let Some(m) = self.clusters[cluster]
                    .members
                    .iter_mut()
                    .find(|m| m.id == member_id)
                {
                    m.name = name;
                }
                Some((id, self.start_server(i, cluster, member_id)))
            }
            Command::RemoveMember {
                id,
                member_id,
                reason,
                through,
                expected,
                ..
            } => {
                let cluster = if through.is_empty() {
                    let (cluster, me) = self.nodes[i].server.expect("local removal needs a server");
                    if self.leader(cluster, self.nodes[i].side) != Some(me) {
                        return failed(id);
                    }
                    cluster
                } else {
                    match self.reachable(i, &through) {
                        Some(c) => c,
                        None => return failed(id),
                    }
                };
                if member_ids(&self.clusters[cluster].members) != expected {
                    return Some((id, CommandResult::Failed("membership changed".into())));
                }
                self.check_removal(i, cluster, member_id, reason);
                self.clusters[cluster].members.retain(|m| m.id != member_id);
                Some((id, CommandResult::Done))
            }
            Command::PromoteMember {
                id,
                member_id,
                expected,
                cluster_size,
            } => {
                let Some((cluster, _)) = self.nodes[i].server else {
                    return failed(id);
                };
                if member_ids(&self.clusters[cluster].members) != expected {
                    return Some((id, CommandResult::Failed("membership changed".into())));
                }
                if self.size_of(cluster) != cluster_size {
                    return Some((id, CommandResult::Failed("cluster size changed".into())));
                }
                self.check_promotion(i, cluster, member_id);
                match self.clusters[cluster]
                    .members
                    .iter_mut()
                    .find(|m| m.id == member_id)
                {
                    Some(m) => {
                        m.is_learner = false;
                        Some((id, CommandResult::Done))
                    }
                    None => failed(id),
                }
            }
            Command::ProposeClusterSize { id, size } => {
                let Some((cluster, _)) = self.nodes[i].server else {
                    return failed(id);
                };
                if self.leader(cluster, self.nodes[i].side).is_none() {
                    return failed(id);
                }
                self.clusters[cluster].size = Some(size);
                Some((id, CommandResult::Done))
            }
            Command::SetClusterVersion {
                id,
                version,
                expected,
            } => {
                let Some((cluster, me)) = self.nodes[i].server else {
                    return failed(id);
                };
                if self.leader(cluster, self.nodes[i].side) != Some(me) {
                    return failed(id);
                }
                if member_ids(&self.clusters[cluster].members) != expected {
                    return Some((id, CommandResult::Failed("membership changed".into())));
                }
                self.check_cluster_version(cluster, version);
                self.clusters[cluster].version = Some(version);
                Some((id, CommandResult::Done))
            }
            Command::ArchiveDataDir { id, removed_from } => {
                if let Disk::Member { cluster, member_id } = self.nodes[i].disk {
                    // A member still listed yields only between a cluster
                    // and one recovered from it, or when its cluster lost
                    // a quorum of its voters' data for good, or to a rival
                    // that a lost disk let be founded beside it.
                    assert!(
                        self.is_superseded(cluster)
                            || self.clusters[cluster].recovered_from.is_some()
                            || !self.keeps_a_quorum_of_disks(cluster)
                            || self.has_a_rival_founded_by_forgetting(cluster)
                            || !self.clusters[cluster]
                                .members
                                .iter()
                                .any(|m| m.id == member_id),
                        "moved aside the data dir of a member still in its cluster"
                    );
                }
                self.set_disk(i, Disk::Empty);
                self.nodes[i].removed_record = removed_from;
                self.nodes[i].server = None;
                Some((id, CommandResult::Done))
            }
            Command::LeaveRecoveryTo { id, member_id } => {
                assert!(
                    matches!(self.nodes[i].disk, Disk::Member { .. }),
                    "a recovery choice recorded without member data"
                );
                self.nodes[i].recovery_left_to = Some(member_id);
                Some((id, CommandResult::Done))
            }
            Command::RecoverAlone { id } => Some((id, self.recover_alone(i))),
        }
    }

    /// The size `cluster` should have: replicated, else the founding one.
    fn size_of(&self, cluster: usize) -> usize {
        self.clusters[cluster].size.unwrap_or(self.size)
    }

    /// Node `i`'s disk now holds `disk`; its log and its recovery
    /// choice belong to the member state it replaces.
    fn set_disk(&mut self, i: usize, disk: Disk) {
        if self.nodes[i].disk != disk {
            self.nodes[i].log = LogPosition::default();
            self.nodes[i].recovery_left_to = None;
        }
        self.nodes[i].disk = disk;
    }

    /// Whether a quorum of `cluster`'s voters still have their member data:
    /// else it can never make progress again.
    fn keeps_a_quorum_of_disks(&self, cluster: usize) -> bool {
        let voters: Vec<&ClusterMember> = self.clusters[cluster]
            .members
            .iter()
            .filter(|m| !m.is_learner)
            .collect();
        let intact = voters
            .iter()
            .filter(|m| {
                self.nodes.iter().any(|n| {
                    n.disk
                        == Disk::Member {
                            cluster,
                            member_id: m.id,
                        }
                })
            })
            .count();
        intact >= quorum(voters.len())
    }

    /// Whether a cluster was recovered from `cluster`.
    fn is_superseded(&self, cluster: usize) -> bool {
        self.clusters.iter().any(|c| {
            c.recovered_from
                .as_ref()
                .is_some_and(|(old, _)| *old == cluster)
        })
    }

    /// How `cluster` came from recoveries, newest first.
    fn lineage(&self, mut cluster: usize) -> Vec<RecoveredFrom> {
        let mut steps = Vec::new();
        while let Some((old, by_member_id)) = self.clusters[cluster].recovered_from {
            if steps.len() == RECOVERY_LINEAGE_MAX {
                break;
            }
            steps.push(RecoveredFrom {
                cluster_id: cluster_id(old),
                by_member_id,
            });
            cluster = old;
        }
        steps
    }

    /// Node `i` restarts its cluster alone from its own data, as
    /// `e2d cluster recover` does: a new cluster of its member alone,
    /// which keeps the replicated size and version and its whole log.
    /// Checks that the old cluster cannot make progress anywhere, that no
    /// survivor in reach has a more up-to-date log, and that no other
    /// survivor formed.
    fn recover_alone(&mut self, i: usize) -> CommandResult {
        let (old, member_id) = self.nodes[i].server.expect("a recovery needs a server");
        let name = self.nodes[i].name.clone();
        for side in [false, true] {
            assert!(
                self.leader(old, side).is_none(),
                "{name} recovered cluster {old} while it has a leader: {:#?}",
                self.report()
            );
        }
        let log = self.nodes[i].log;
        for j in (0..self.nodes.len()).filter(|&j| self.connected(i, j)) {
            let other = &self.nodes[j];
            let voter = |(c, id): (usize, u64)| {
                c == old
                    && self.clusters[old]
                        .members
                        .iter()
                        .any(|m| m.id == id && !m.is_learner)
            };
            // A voter whose server started within the wait was lost (or
            // back too late) when the survivors agreed: a survivor that
            // restarts never stands, so none recovers while it is one.
            let came_back = other.server_since_ms + AUTO_RECOVER_MS > self.now_ms;
            if other.server.is_some_and(voter) && !came_back {
                assert!(
                    other.log <= log,
                    "{name} recovered cluster {old} with its log at {log:?} while survivor {}'s is at {:?}",
                    other.name,
                    other.log
                );
            }
        }
        assert!(
            !self.is_superseded(old),
            "a second survivor ({name}) formed a cluster recovered from {old}: {:#?}",
            self.report()
        );
        let member = ClusterMember {
            id: member_id,
            name: name.clone(),
            peer_url: peer_url(&name),
            is_learner: false,
            caught_up: false,
        };
        self.clusters.push(Cluster {
            founders: Vec::new(),
            founded_by: BTreeSet::new(),
            founder_ids: BTreeMap::new(),
            members: vec![member],
            lock: None,
            size: self.clusters[old].size,
            version: self.clusters[old].version,
            recovered_from: Some((old, member_id)),
            log,
            term_leader: None,
        });
        let cluster = self.clusters.len() - 1;
        self.nodes[i].disk = Disk::Member { cluster, member_id };
        self.nodes[i].recovery_left_to = None;
        self.nodes[i].server = Some((cluster, member_id));
        CommandResult::Started {
            cluster_id: cluster_id(cluster),
        }
    }

    /// Node `i` now runs `member_id` of `cluster`, from its disk.
    fn start_server(&mut self, i: usize, cluster: usize, member_id: u64) -> CommandResult {
        self.set_disk(i, Disk::Member { cluster, member_id });
        self.nodes[i].server = Some((cluster, member_id));
        self.nodes[i].server_since_ms = self.now_ms;
        CommandResult::Started {
            cluster_id: cluster_id(cluster),
        }
    }

    /// Live in node `i`'s view: Alive, Running, in `cluster`, same peer URL.
    fn live_in_view(&self, i: usize, cluster: usize, member: &ClusterMember) -> bool {
        if member.peer_url == peer_url(&self.nodes[i].name) {
            return self.nodes[i]
                .server
                .is_some_and(|(c, id)| c == cluster && id == member.id);
        }
        self.nodes[i].view.values().any(|v| {
            v.liveness == Liveness::Alive
                && v.meta.status == NodeStatus::Running
                && v.meta.cluster_id == cluster_id(cluster)
                && v.meta.peer_url == member.peer_url
        })
    }

    fn live_voters(&self, i: usize, cluster: usize, voters: &[ClusterMember]) -> usize {
        voters
            .iter()
            .filter(|m| self.live_in_view(i, cluster, m))
            .count()
    }

    fn check_removal(&self, i: usize, cluster: usize, member_id: u64, reason: RemovalReason) {
        let voters: Vec<ClusterMember> = self.clusters[cluster]
            .members
            .iter()
            .filter(|m| !m.is_learner)
            .cloned()
            .collect();
        if reason == RemovalReason::HealthCheckTimeout {
            assert!(
                self.live_voters(i, cluster, &voters) >= quorum(voters.len()),
                "{} removed {member_id} without a quorum of Running voters in view; members {:?}; view {:?}",
                self.nodes[i].name,
                self.clusters[cluster].members,
                self.nodes[i].view.values().map(|v| (&v.name, v.liveness, v.meta.status, v.meta.cluster_id)).collect::<Vec<_>>()
            );
        }
        if !voters.iter().any(|m| m.id == member_id) {
            return; // a learner: the voters do not change
        }
        let after: Vec<ClusterMember> = voters.into_iter().filter(|m| m.id != member_id).collect();
        assert!(
            self.live_voters(i, cluster, &after) >= quorum(after.len()),
            "{} removed {member_id} ({reason:?}), leaving fewer live voters than a quorum; members {:?}; view {:?}",
            self.nodes[i].name,
            self.clusters[cluster].members,
            self.nodes[i].view.values().map(|v| (&v.name, v.liveness, v.meta.status, v.meta.cluster_id)).collect::<Vec<_>>()
        );
    }

    fn check_promotion(&self, i: usize, cluster: usize, member_id: u64) {
        assert!(
            self.nodes[i].reported_caught_up.contains(&member_id),
            "{} promoted learner {member_id} before its server said it caught up",
            self.nodes[i].name
        );
        let after: Vec<ClusterMember> = self.clusters[cluster]
            .members
            .iter()
            .filter(|m| !m.is_learner || m.id == member_id)
            .cloned()
            .collect();
        assert!(
            after.len() <= self.size_of(cluster),
            "promoted beyond the cluster's size"
        );
        assert!(
            self.live_voters(i, cluster, &after) >= quorum(after.len()),
            "promotion by {} leaves fewer live voters than a quorum",
            self.nodes[i].name
        );
    }

    /// Every member of `cluster` runs `version` or a newer one, and the
    /// recorded version does not go down.
    fn check_cluster_version(&self, cluster: usize, version: Version) {
        let recorded = self.clusters[cluster].version;
        assert!(
            recorded.is_none_or(|old| version > old),
            "cluster version {version} recorded over {recorded:?}"
        );
        for member in &self.clusters[cluster].members {
            let node = self
                .nodes
                .iter()
                .find(|n| peer_url(&n.name) == member.peer_url)
                .expect("every member is one of the nodes");
            assert!(
                VERSIONS[node.version] >= version,
                "cluster version {version} recorded while {} runs {}",
                node.name,
                VERSIONS[node.version]
            );
        }
    }

    /// At most one cluster has a quorum of voters whose disks still hold
    /// their member state: only one can ever make progress.
    fn check_one_cluster_identity(&self) {
        let able: Vec<usize> = (0..self.clusters.len())
            .filter(|&c| !self.is_superseded(c) && self.keeps_a_quorum_of_disks(c))
            .collect();
        for (n, &a) in able.iter().enumerate() {
            for &b in &able[n + 1..] {
                assert!(
                    self.founded_by_one_that_forgot(b, a) || self.founded_by_one_that_forgot(a, b),
                    "two clusters can make progress: {:?} and {:?}",
                    self.clusters[a].founders,
                    self.clusters[b].founders,
                );
            }
        }
    }

    /// Whether another cluster stands beside `cluster` because a founder
    /// of one had lost the disk that bound it to the other.
    fn has_a_rival_founded_by_forgetting(&self, cluster: usize) -> bool {
        (0..self.clusters.len()).any(|other| {
            other != cluster
                && (self.founded_by_one_that_forgot(other, cluster)
                    || self.founded_by_one_that_forgot(cluster, other))
        })
    }

    /// Whether one of `cluster`'s founders had lost the disk that bound
    /// it to `other` (its member data, its commitment to `other`'s
    /// founding set, or the record of its removal from `other`). The
    /// founding rules rest on that disk: a node that lost it cannot know
    /// of `other` when a partition or a crash hides every node that does,
    /// so nothing can keep it from founding again.
    fn founded_by_one_that_forgot(&self, cluster: usize, other: usize) -> bool {
        let binds_to_other = |lost: &Forgotten| match lost {
            Forgotten::Disk(Disk::Member { cluster, .. }) => *cluster == other,
            Forgotten::Disk(Disk::Committed(proposal)) => {
                proposal.founders == self.clusters[other].founders
            }
            Forgotten::Disk(Disk::Empty) => false,
            Forgotten::Removal(id) => *id == cluster_id(other),
        };
        self.clusters[cluster].founders.iter().any(|founder| {
            self.forgotten
                .iter()
                .any(|(name, disk)| name == founder && binds_to_other(disk))
        })
    }
}

/// Cluster shapes where two founding sets cannot both be filled: fewer than
/// `2n` nodes.
fn shape() -> impl Strategy<Value = (usize, usize)> {
    (1usize..=7).prop_flat_map(|nodes| {
        let sizes: Vec<usize> = [1usize, 3, 5, 7]
            .into_iter()
            .filter(|n| nodes < 2 * n)
            .collect();
        (Just(nodes), proptest::sample::select(sizes))
    })
}

fn action(nodes: usize, lose_disks: bool) -> impl Strategy<Value = Action> {
    let node = 0..nodes;
    let node_for_upgrade = 0..nodes;
    let lose = if lose_disks { 1u32 } else { 0 };
    let sizes: Vec<usize> = [1usize, 3, 5, 7]
        .into_iter()
        .filter(|&n| n <= nodes)
        .collect();
    prop_oneof![
        1 => proptest::sample::select(sizes).prop_map(Action::Resize),
        8 => (100u64..3_000).prop_map(Action::Tick),
        1 => node.clone().prop_map(Action::Crash),
        1 => node.clone().prop_map(Action::Restart),
        lose => node.prop_map(Action::LoseDisk),
        1 => any::<u8>().prop_map(Action::Partition),
        1 => Just(Action::Heal),
        1 => node_for_upgrade.prop_map(Action::Upgrade),
    ]
}

fn schedule(lose_disks: bool) -> impl Strategy<Value = (usize, usize, u64, Vec<Action>)> {
    shape().prop_flat_map(move |(nodes, size)| {
        (
            Just(nodes),
            Just(size),
            any::<u64>(),
            proptest::collection::vec(action(nodes, lose_disks), 10..80),
        )
    })
}

/// `PROPTEST_CASES` when set (`just soak N`), else `default`.
fn cases_or(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases_or(128), ..ProptestConfig::default() })]

    #[test]
    fn manager_keeps_one_cluster_and_quorum((nodes, size, seed, actions) in schedule(true)) {
        let mut world = World::new(nodes, size, seed);
        for action in &actions {
            world.apply(action);
        }
    }

    #[test]
    fn cluster_forms_and_heals_once_faults_stop((nodes, size, seed, actions) in schedule(false)) {
        let mut world = World::new(nodes, size, seed);
        for action in &actions {
            world.apply(action);
        }
        world.apply(&Action::Heal);
        for i in 0..nodes {
            world.apply(&Action::Restart(i));
            for _ in 0..VERSIONS.len() {
                world.apply(&Action::Upgrade(i));
            }
        }
        // Long enough for dead members to time out, be removed and replaced.
        for _ in 0..200 {
            world.apply(&Action::Tick(500));
        }
        let running: BTreeSet<usize> = world.nodes.iter().filter_map(|n| n.server.map(|s| s.0)).collect();
        if nodes < size {
            // Fewer nodes than the cluster needs: nobody may found one.
            prop_assert!(world.clusters.is_empty());
            return Ok(());
        }
        prop_assert_eq!(running.len(), 1, "nodes run {} clusters: {:#?}", running.len(), world.report());
        let cluster = *running.iter().next().unwrap();
        let size = world.size_of(cluster);
        let voters = world.clusters[cluster].members.iter().filter(|m| !m.is_learner).count();
        prop_assert_eq!(voters, size, "members: {:?}\nnodes: {:#?}", world.clusters[cluster].members, world.report());
        let serving = world.nodes.iter().filter(|n| n.server.is_some()).count();
        prop_assert_eq!(serving, size, "nodes: {:#?}", world.report());
        prop_assert!(world.leader(cluster, false).is_some());
        prop_assert_eq!(world.clusters[cluster].version, Some(VERSIONS[VERSIONS.len() - 1]));
    }
}

/// A recovery schedule: `nodes` nodes (`size` and up to two spares) form
/// a cluster of `size`, then nodes crash for a while or bounce.
fn recovery_schedule() -> impl Strategy<Value = (usize, usize, u64, Vec<Action>)> {
    (prop_oneof![Just(3usize), Just(5)], 0usize..=2).prop_flat_map(|(size, spares)| {
        let nodes = size + spares;
        let action = prop_oneof![
            8 => (100u64..5_000).prop_map(Action::Tick),
            2 => (0..nodes).prop_map(Action::Crash),
            1 => (0..nodes).prop_map(Action::Restart),
            1 => (0..nodes).prop_map(Action::Bounce),
        ];
        (
            Just(nodes),
            Just(size),
            any::<u64>(),
            proptest::collection::vec(action, 10..80),
        )
    })
}

const AUTO_RECOVER_MS: u64 = 2 * HEALTH_TIMEOUT_MS;

/// A world whose nodes run with `--unsafe-auto-recover-after`, once its
/// cluster has formed.
fn formed_recovering_world(nodes: usize, size: usize, seed: u64, planted: PlantedBugs) -> World {
    if std::env::var_os("WORLD_TRACE").is_some() {
        eprintln!("a recovering world of {nodes} nodes, size {size}, seed {seed}");
    }
    let mut world = World::with_planted(nodes, size, seed, planted);
    world.auto_recover_ms = Some(AUTO_RECOVER_MS);
    for i in 0..nodes {
        world.apply(&Action::Bounce(i));
    }
    for _ in 0..40 {
        world.apply(&Action::Tick(500));
    }
    world
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases_or(128), ..ProptestConfig::default() })]

    /// With automatic recovery on, whatever crashes: at most one survivor
    /// recovers a cluster, the one with the most up-to-date log, only when the
    /// cluster has no quorum anywhere; and once every node is back, one
    /// cluster of its size runs, whose members came back from the lost
    /// majority's old data dirs too.
    #[test]
    fn survivors_recover_once_and_the_cluster_grows_back((nodes, size, seed, actions) in recovery_schedule()) {
        recover_and_grow_back(nodes, size, seed, &actions)?;
    }
}

/// The run of [`survivors_recover_once_and_the_cluster_grows_back`]: the
/// world's own checks hold throughout, and once every node is back, one
/// cluster of its size runs with a leader.
fn recover_and_grow_back(
    nodes: usize,
    size: usize,
    seed: u64,
    actions: &[Action],
) -> Result<(), TestCaseError> {
    let mut world = formed_recovering_world(nodes, size, seed, PlantedBugs::NONE);
    for action in actions {
        world.apply(action);
    }
    for i in 0..nodes {
        world.apply(&Action::Restart(i));
    }
    for _ in 0..300 {
        world.apply(&Action::Tick(500));
    }
    let running: BTreeSet<usize> = world
        .nodes
        .iter()
        .filter_map(|n| n.server.map(|s| s.0))
        .collect();
    prop_assert_eq!(
        running.len(),
        1,
        "nodes run {} clusters: {:#?}",
        running.len(),
        world.report()
    );
    let cluster = *running.iter().next().unwrap();
    let voters = world.clusters[cluster]
        .members
        .iter()
        .filter(|m| !m.is_learner)
        .count();
    prop_assert_eq!(
        voters,
        world.size_of(cluster),
        "members: {:?}\nnodes: {:#?}",
        world.clusters[cluster].members,
        world.report()
    );
    prop_assert!(
        world.leader(cluster, false).is_some(),
        "members: {:?}\nnodes: {:#?}",
        world.clusters[cluster].members,
        world.report()
    );
    Ok(())
}

/// A survivor recovers its cluster alone and goes down; two lost members
/// come back, run the old cluster with a quorum, and one of them goes down
/// again. The other saw a leader since it started but never saw the
/// survivor that recovered: it must not recover the old cluster a second
/// time (it waits, and joins the recovered cluster once that is back).
#[test]
fn a_member_that_never_saw_a_lost_voter_does_not_recover_again() {
    use Action::{Crash, Restart, Tick};
    let actions = [
        Crash(0),
        Crash(2),
        Tick(100),
        Tick(100),
        Tick(2917),
        Tick(4905),
        Tick(2236),
        Tick(4965),
        Tick(3385),
        Tick(1592),
        Tick(3000),
        Crash(1),
        Restart(2),
        Restart(0),
        Tick(100),
        Crash(2),
        Tick(100),
        Tick(4052),
        Tick(4910),
        Tick(3505),
        Tick(3386),
        Tick(4147),
        Tick(1803),
        Tick(1197),
    ];
    recover_and_grow_back(3, 3, 55_249_126_373_828_890, &actions).unwrap();
}

/// Whether some seed's run of `actions` (after the cluster forms) trips a
/// check of the world whose managers break the rules `planted` names.
fn some_seed_is_caught(
    nodes: usize,
    size: usize,
    planted: PlantedBugs,
    actions: &[Action],
) -> bool {
    (0..16u64).any(|seed| {
        std::panic::catch_unwind(|| {
            let mut world = World::with_planted(nodes, size, seed, planted);
            for _ in 0..40 {
                world.apply(&Action::Tick(500));
            }
            for action in actions {
                world.apply(action);
                for _ in 0..30 {
                    world.apply(&Action::Tick(500));
                }
            }
        })
        .is_err()
    })
}

#[test]
fn the_checks_catch_a_promotion_before_the_learner_caught_up() {
    let planted = PlantedBugs {
        promote_before_caught_up: true,
        ..PlantedBugs::NONE
    };
    // Down to one member, then back to three: the other two join again
    // as learners.
    let regrow = [Action::Resize(1), Action::Resize(3)];
    assert!(!some_seed_is_caught(3, 3, PlantedBugs::NONE, &regrow));
    assert!(some_seed_is_caught(3, 3, planted, &regrow));
}

#[test]
fn the_checks_catch_a_cluster_version_recorded_before_every_member_runs_it() {
    let planted = PlantedBugs {
        cluster_version_before_every_member: true,
        ..PlantedBugs::NONE
    };
    let upgrade = [Action::Upgrade(0), Action::Upgrade(1), Action::Upgrade(2)];
    assert!(!some_seed_is_caught(3, 3, PlantedBugs::NONE, &upgrade));
    assert!(some_seed_is_caught(3, 3, planted, &upgrade));
}

/// Two of three lost for good, then the survivor's peer comes back after
/// the wait: without the opt-in nothing recovers; with it, one survivor
/// does (each planted rule is caught, where survivors' logs end in
/// different places).
#[test]
fn a_lost_majority_recovers_only_with_the_opt_in_and_the_checks_catch_planted_rules() {
    // Five nodes of five; three crash for good.
    let lose = |world: &mut World| {
        for i in [0, 1, 2] {
            world.apply(&Action::Crash(i));
        }
        for _ in 0..120 {
            world.apply(&Action::Tick(500));
        }
    };
    let mut without = World::new(5, 5, 7);
    for _ in 0..40 {
        without.apply(&Action::Tick(500));
    }
    lose(&mut without);
    assert_eq!(
        without.clusters.len(),
        1,
        "nothing recovers without the opt-in"
    );

    let run = |seed: u64, planted: PlantedBugs| {
        std::panic::catch_unwind(|| {
            let mut world = formed_recovering_world(5, 5, seed, planted);
            lose(&mut world);
            if std::env::var_os("WORLD_REPORT").is_some() {
                eprintln!("{:#?}", world.report());
            }
            world.clusters.len()
        })
    };
    for seed in 0..8 {
        assert_eq!(
            run(seed, PlantedBugs::NONE).ok(),
            Some(2),
            "seed {seed}: one recovery"
        );
    }
    let every = PlantedBugs {
        recover_every_survivor: true,
        ..PlantedBugs::NONE
    };
    assert!((0..8).any(|seed| run(seed, every).is_err()));
    let least = PlantedBugs {
        recover_least_up_to_date: true,
        ..PlantedBugs::NONE
    };
    assert!((0..8).any(|seed| run(seed, least).is_err()));
}

/// A founder that committed to a founding set loses its disk before it
/// started, while the two others started and a partition hides them; it
/// then founds a second cluster with the spare nodes. Nothing can keep it
/// from doing so: the founding agreement rests on the commitment its disk
/// held, and no node it reaches knows of the first cluster. The checks
/// excuse exactly this: the second cluster has a founder that forgot the
/// first.
#[test]
fn a_committed_founder_that_loses_its_disk_behind_a_partition_founds_again() {
    use Action::{Crash, LoseDisk, Partition, Resize, Tick};
    let mut world = World::new(5, 3, 8_091_988_557_442_140_501);
    let actions = [
        Tick(100),
        Tick(100),
        Tick(100),
        Tick(100),
        Tick(400),
        Partition(231),
        Tick(2080),
        Tick(920),
        Tick(100),
        Crash(2),
        Resize(1),
        Resize(1),
        LoseDisk(1),
        Partition(126),
        Tick(100),
        Tick(100),
        Tick(100),
        Tick(500),
        Tick(177),
        Tick(2823),
        Tick(100),
    ];
    for action in &actions {
        world.apply(action);
    }
    assert_eq!(world.clusters.len(), 2, "{:#?}", world.report());
    assert!(world.founded_by_one_that_forgot(1, 0));
}

/// A known gap of the opt-in automatic recovery: with two voters of three
/// down longer than the wait, the third recovers the cluster alone and
/// crashes before any node hears of it. The two come back as the old
/// cluster, elect a leader, and one crashes again; the last, which no
/// node can tell of the first recovery, recovers the old cluster a second
/// time. Only a record of the recovery that both could read would prevent
/// it, which gossip is not. Run with `--ignored` to see it.
#[test]
#[ignore = "a recovery whose survivor crashes before it is heard of can be made again"]
fn a_recovery_no_node_heard_of_before_its_survivor_crashed() {
    use Action::{Crash, Restart, Tick};
    let mut world = formed_recovering_world(3, 3, 225_602_117_705_215_447, PlantedBugs::NONE);
    let mut actions = vec![Tick(100), Tick(100), Crash(2), Crash(1), Tick(100)];
    actions.extend([Tick(3649), Tick(3297), Tick(2500), Tick(2465), Tick(2378)]);
    actions.extend([Tick(218), Tick(2441), Tick(3052), Tick(1876), Tick(1124)]);
    actions.extend([
        Crash(0),
        Restart(1),
        Restart(2),
        Tick(100),
        Crash(1),
        Tick(100),
    ]);
    actions.extend([Tick(845), Tick(4708), Tick(1554), Tick(3703), Tick(3342)]);
    actions.extend([Tick(1803), Tick(4045), Tick(3000)]);
    for action in &actions {
        world.apply(action);
    }
}

/// A cluster resized down to one member while a partition hides part of
/// the shrink from the spares: the removed members and a spare last saw
/// the cluster with two voters, one of them now a spare. When a partition
/// hides the remaining member (and the removed ones restart meanwhile),
/// they must not count the cluster as having lost its quorum: each removed
/// member says over gossip, and records in its data dir, which cluster
/// removed it, so the others count that cluster as smaller instead. Once
/// the partition heals, one cluster remains.
#[test]
fn spares_that_saw_part_of_a_shrink_to_one_behind_a_partition() {
    use Action::{Bounce, Heal, Partition, Resize, Restart, Tick};
    let mut world = World::new(4, 3, 1_262_304_590_491_553_616);
    let mut actions = vec![Tick(100), Tick(100), Tick(524), Tick(2476), Tick(524)];
    actions.extend(std::iter::repeat_n(Tick(100), 3));
    actions.push(Partition(9));
    actions.extend(std::iter::repeat_n(Tick(100), 4));
    actions.push(Resize(1));
    actions.extend(std::iter::repeat_n(Tick(100), 2));
    actions.extend([
        Partition(34),
        Bounce(0),
        Bounce(2),
        Tick(100),
        Tick(400),
        Tick(100),
        Tick(1008),
        Tick(1992),
    ]);
    actions.extend([Heal, Restart(1), Tick(500)]);
    for action in &actions {
        world.apply(action);
    }
    assert_eq!(world.clusters.len(), 1, "{:#?}", world.report());
}

/// Two of a new cluster's three disks are lost at once, so it can never
/// make progress again; the two nodes, knowing nothing of it, found a
/// second cluster with the spare. When the first cluster's survivor is
/// back and a partition leaves a member of the second beside it without
/// a leader, that member keeps its data: the first cluster counts it as a
/// voter, so it is the cluster this member left, not one founded again
/// without it. The survivor of the first yields instead, and once the
/// partition heals the second has a leader.
#[test]
fn a_member_keeps_its_data_beside_the_older_cluster_that_lists_it() {
    use Action::{Crash, Heal, LoseDisk, Partition, Resize, Restart, Tick};
    let mut world = World::new(4, 3, 1_071_973_274_488_045_153);
    let mut actions = vec![
        Tick(100),
        Tick(100),
        Tick(100),
        Crash(2),
        Tick(100),
        LoseDisk(2),
    ];
    actions.extend(std::iter::repeat_n(Tick(100), 5));
    actions.extend([Tick(335), Tick(2565), Tick(100), LoseDisk(1), LoseDisk(2)]);
    actions.extend(std::iter::repeat_n(Tick(100), 9));
    actions.extend([Partition(174), Tick(100), Tick(100), Crash(2), Restart(2)]);
    actions.extend([Tick(100), Tick(100), Crash(0), Tick(100), Tick(100)]);
    actions.extend([Tick(539), Tick(555), Tick(471), Tick(646), Tick(1328)]);
    actions.extend([Tick(100), Tick(100), Restart(0), Resize(1), Crash(3)]);
    actions.extend([Tick(100), Tick(100), Partition(170)]);
    actions.extend(std::iter::repeat_n(Tick(100), 30));
    for action in &actions {
        world.apply(action);
    }
    let second = world
        .clusters
        .iter()
        .position(|c| c.founders == ["n1", "n2", "n3"])
        .expect("the second cluster was founded");
    assert!(
        matches!(world.nodes[2].disk, Disk::Member { cluster, .. } if cluster == second),
        "n2 gave up the second cluster's data: {:#?}",
        world.report()
    );
    assert_eq!(
        world.nodes[0].disk,
        Disk::Empty,
        "the first cluster's survivor yields"
    );
    world.apply(&Heal);
    for _ in 0..30 {
        world.apply(&Tick(100));
    }
    assert!(
        world.leader(second, false).is_some(),
        "{:#?}",
        world.report()
    );
}

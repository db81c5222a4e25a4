//! A self-managed member: gossip finds the other nodes and `core::manager`
//! decides when to found, join, restart, promote and remove; this module
//! carries its commands out and feeds the results, gossip events and the
//! server's status back.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use e2d_core::manager::{
    ClusterMember, Command, CommandId, CommandResult, DataDir, Event, Founder, Manager,
    ManagerConfig, ServerStatus,
};
use e2d_core::swim::{MemberView, NodeMeta};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::cluster_calls::MemberChange;
use super::start::{
    listed_member, listen_for_peers, open_backend, start_node, Membership, NodeSettings,
};
use super::status_board::StatusBoard;
use super::{
    before_exit, cluster_calls, data_dir, node_settings, seeds, serve_started, shutdown_signal,
    ClientPort, NodeRoutes, RunError, Stopped,
};
use crate::backup::{restore, Backups};
use crate::cli::RunArgs;
use crate::discovery::{self, seeding};
use crate::gossip::{Gossip, GossipConfig};
use crate::server::{cluster_size, cluster_version, Identity, InitialMember, Node};
use crate::storage::DiskBackend;

/// How often the running server's view of its cluster goes to the manager.
const SERVER_STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Pause before the manager tries a failed command again.
const RETRY_INTERVAL_MS: u64 = 2_000;
/// How often a running member asks the others whether they still list
/// it; a member removed while it was away may never hear of it otherwise
/// (a learner sends no raft traffic to be refused).
const MEMBERSHIP_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// Answers in a row that must leave this member out before it counts as
/// removed (a member just added may not be applied everywhere yet).
const ABSENT_ANSWERS_FOR_REMOVAL: u32 = 2;
/// Other members asked per membership check.
const MEMBERSHIP_CHECK_PEERS_MAX: usize = 2;

/// The manager's settings from the flags, checked.
fn manager_config(
    args: &RunArgs,
    settings: &NodeSettings,
    snapshots_configured: bool,
) -> Result<ManagerConfig, RunError> {
    let config = ManagerConfig {
        name: settings.name.clone(),
        client_url: settings.client_url.clone(),
        peer_url: settings.peer_url.clone(),
        required_cluster_size: args.required_cluster_size,
        health_check_interval_ms: args.health_check_interval,
        health_check_timeout_ms: args.health_check_timeout,
        snapshots_configured,
        retry_interval_ms: RETRY_INTERVAL_MS,
        propose_cluster_size: None,
        removed_from: None,
        version: cluster_version::own(),
        planted: crate::sim_bugs::planted().manager,
        auto_recover_after_ms: args.unsafe_auto_recover_after,
    };
    config
        .validate()
        .map_err(|e| RunError::Config(e.to_string()))?;
    if args.required_cluster_size > 1
        && args.bootstrap_addrs.is_empty()
        && args.discovery.peer_discovery.is_none()
    {
        return Err(RunError::Config(format!(
            "--required-cluster-size {} needs --bootstrap-addrs (the gossip addresses, host or host:port, \
             of one or more of the other nodes) or --peer-discovery, so this node can find them",
            args.required_cluster_size
        )));
    }
    Ok(config)
}

/// Checks the flags of a managed member before anything is written.
pub fn check_flags(args: &RunArgs) -> Result<(), RunError> {
    let placeholder = node_settings(args, "unnamed");
    manager_config(args, &placeholder, args.snapshot_backup_url.is_some()).map(|_| ())
}

pub async fn run(
    args: RunArgs,
    name: String,
    backend: DiskBackend,
    backups: Option<Backups>,
) -> Result<Stopped, RunError> {
    let settings = node_settings(&args, &name);
    let mut config = manager_config(&args, &settings, backups.is_some())?;
    config.propose_cluster_size = data_dir::size_to_propose(
        &settings.node.data_dir,
        args.required_cluster_size,
        args.cluster_size_given,
    )?;
    let data_dir_state = data_dir_state(&backend, &args)?;
    if !matches!(data_dir_state, DataDir::Member { .. }) {
        config.removed_from = data_dir::read_removed_from(&args.data_dir)?;
    }
    let board = StatusBoard::new(name.clone(), args.required_cluster_size);
    let mut port = ClientPort::open(&args, board).await?;
    let peer_listener = listen_for_peers(&settings).await?;
    let gossiping = args.required_cluster_size > 1
        || !args.bootstrap_addrs.is_empty()
        || args.discovery.peer_discovery.is_some();
    let source = match &args.discovery.peer_discovery {
        Some(method) => Some(
            discovery::open(method, &args.discovery.settings(&args.host))
                .map_err(|e| RunError::Config(format!("--peer-discovery {e}")))?,
        ),
        None => None,
    };
    let (gossip, mut gossip_events, seeding) = if gossiping {
        let (gossip, events) = start_gossip(&args, &settings).await?;
        port.routes.board.set_gossip_seal(gossip.seal.clone());
        let board = port.routes.board.clone();
        let seeding = tokio::spawn(seeding::keep_seeding(
            seeding::Seeding {
                bootstrap_addrs: args.bootstrap_addrs.clone(),
                gossip_port: args.gossip_addr.port(),
                source,
                peers_needed: args.required_cluster_size.saturating_sub(1).max(1),
            },
            gossip.clone(),
            move || board.alive_peers(),
        ));
        (Some(gossip), Some(events), Some(seeding))
    } else {
        (None, None, None)
    };
    let origin = Instant::now();
    let manager = Manager::new(config, data_dir_state, 0);
    let mut agent = Agent {
        manager,
        origin,
        settings,
        token: args.initial_cluster_token.clone(),
        backend: Some(backend),
        peer_listener: Some(peer_listener),
        node: None,
        removed: false,
        gossip: gossip.clone(),
        routes: port.routes.clone(),
        joined_cluster_id: 0,
        absent_answers: 0,
        backups,
        staged_restore: None,
        refused_snapshots: BTreeMap::new(),
        fatal: None,
    };
    let stopped = agent.run(&mut port, gossip_events.as_mut()).await;
    if let Some(seeding) = seeding {
        seeding.abort();
    }
    port.close().await;
    if let Some(node) = &agent.node {
        before_exit(node).await;
    }
    if let Some(gossip) = &gossip {
        gossip.leave().await;
    }
    let stopped = stopped?;
    tracing::info!("stopped");
    Ok(stopped)
}

/// What the data dir holds, as the manager needs to know it.
fn data_dir_state(backend: &DiskBackend, args: &RunArgs) -> Result<DataDir, RunError> {
    let founders = data_dir::read_commitment(&args.data_dir)?;
    let ids = Identity::stored_ids(backend)?;
    Ok(match (ids, founders) {
        (Some((member_id, cluster_id)), founders) => DataDir::Member {
            cluster_id,
            member_id,
            founders,
            recovery_left_to: data_dir::read_recovery_left_to(&args.data_dir)?,
        },
        (None, Some(proposal)) => DataDir::Committed(proposal),
        (None, None) => DataDir::Empty,
    })
}

async fn start_gossip(
    args: &RunArgs,
    settings: &NodeSettings,
) -> Result<(Arc<Gossip>, mpsc::Receiver<MemberView>), RunError> {
    let advertise_ip = if args.gossip_addr.ip().is_unspecified() {
        args.host.parse().map_err(|_| RunError::GossipHost {
            host: args.host.clone(),
        })?
    } else {
        args.gossip_addr.ip()
    };
    // Gossip leaves its own address out of the seeds.
    let seeds = seeds::resolve_seeds(&args.bootstrap_addrs, args.gossip_addr.port()).await;
    let meta = NodeMeta {
        name: settings.name.clone(),
        client_url: settings.client_url.clone(),
        peer_url: settings.peer_url.clone(),
        version: cluster_version::own().to_string(),
        ..NodeMeta::default()
    };
    let config = GossipConfig {
        bind: args.gossip_addr,
        advertise_ip,
        seeds,
        swim: e2d_core::swim::Config::lan(),
        rng_seed: crate::node_seed::node_seed(),
        seal: match &args.envelope.ca_key {
            Some(path) => crate::gossip::Seal::from_ca_secret(
                &crate::backup::ca_key::ca_secret_from_file(path)
                    .map_err(|e| RunError::Config(e.to_string()))?,
            ),
            None => crate::gossip::Seal::default(),
        },
    };
    let (gossip, events) =
        Gossip::start(config, meta)
            .await
            .map_err(|source| RunError::Listen {
                addr: args.gossip_addr,
                what: "gossip",
                flag: "--gossip-addr",
                source,
            })?;
    tracing::info!(gossip_addr = %gossip.local_addr, "gossiping");
    Ok((Arc::new(gossip), events))
}

struct Agent {
    manager: Manager,
    origin: Instant,
    settings: NodeSettings,
    token: String,
    /// The open database, until the server takes it.
    backend: Option<DiskBackend>,
    /// The peer port, bound at start, until the server takes it.
    peer_listener: Option<TcpListener>,
    node: Option<Arc<Node>>,
    /// The server has reported this member's removal.
    removed: bool,
    gossip: Option<Arc<Gossip>>,
    /// What the client port serves, the status board included.
    routes: NodeRoutes,
    /// The cluster a learner was added to, for the start that follows.
    joined_cluster_id: u64,
    /// Membership checks in a row whose answer left this member out.
    absent_answers: u32,
    backups: Option<Backups>,
    /// The newest restorable snapshot, fetched and verified by the
    /// listing: its name and payload file.
    staged_restore: Option<(String, restore::Restorable)>,
    /// Snapshots refused on this start, with the reason.
    refused_snapshots: BTreeMap<String, String>,
    /// Why the member must stop: its data dir is damaged.
    fatal: Option<RunError>,
}

impl Agent {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn run(
        &mut self,
        port: &mut ClientPort,
        mut gossip_events: Option<&mut mpsc::Receiver<MemberView>>,
    ) -> Result<Stopped, RunError> {
        let mut status_tick = tokio::time::interval(SERVER_STATUS_INTERVAL);
        let mut membership_check = tokio::time::interval_at(
            Instant::now() + MEMBERSHIP_CHECK_INTERVAL,
            MEMBERSHIP_CHECK_INTERVAL,
        );
        let signal = shutdown_signal();
        tokio::pin!(signal);
        loop {
            if let Some(stopped) = self.drain().await {
                return Ok(stopped);
            }
            if let Some(fatal) = self.fatal.take() {
                return Err(fatal);
            }
            let wake_at = match self.manager.poll_timeout() {
                Some(ms) => self.origin + Duration::from_millis(ms),
                None => Instant::now() + Duration::from_secs(3600),
            };
            let removal = {
                let node = self.node.clone().filter(|_| !self.removed);
                async move {
                    match node {
                        Some(node) => node.wait_removed().await,
                        None => std::future::pending().await,
                    }
                }
            };
            let gossip_event = async {
                match gossip_events.as_mut() {
                    Some(events) => events.recv().await,
                    None => std::future::pending().await,
                }
            };
            let driver_stopped = {
                let node = self.node.clone();
                async move {
                    match node {
                        Some(node) => node.raft().wait_stopped().await,
                        None => std::future::pending().await,
                    }
                }
            };
            tokio::select! {
                biased;
                _ = &mut signal => return Ok(Stopped::Shutdown),
                e = port.failed() => return Err(e),
                _ = driver_stopped => return Err(RunError::Cluster(super::DRIVER_STOPPED.into())),
                Some(member) = gossip_event => {
                    tracing::info!(
                        member = %member.name,
                        addr = %member.addr,
                        liveness = ?member.liveness,
                        status = ?member.meta.status,
                        "gossip member changed"
                    );
                    self.routes.board.gossip_changed(member.clone());
                    let now_ms = self.now_ms();
                    self.manager.handle_gossip(member, now_ms);
                }
                _ = tokio::time::sleep_until(wake_at) => {
                    let now_ms = self.now_ms();
                    self.manager.handle_timeout(now_ms);
                }
                _ = status_tick.tick() => {
                    if let Some(node) = self.node.clone().filter(|_| !self.removed) {
                        match server_status(&node, &self.settings.node.data_dir).await {
                            Ok(status) => {
                                let now_ms = self.now_ms();
                                self.manager.handle_server_status(status, now_ms);
                            }
                            Err(damaged) => self.fatal = Some(damaged),
                        }
                    }
                }
                () = removal => {
                    tracing::warn!("the cluster removed this member");
                    self.removed = true;
                    self.routes.board.set_node(self.node.clone(), "removed");
                    let members = match &self.node {
                        Some(node) => cluster_members(node, None),
                        None => Vec::new(),
                    };
                    let now_ms = self.now_ms();
                    self.manager.handle_server_removed(&members, now_ms);
                }
                _ = membership_check.tick() => self.check_still_listed().await,
            }
        }
    }

    /// Asks other running members whether this one is still listed; after
    /// enough answers that leave it out, it counts as removed.
    async fn check_still_listed(&mut self) {
        let Some(node) = self.node.clone().filter(|_| !self.removed) else {
            return;
        };
        let cluster_id = node.identity.cluster_id;
        let mut through = self.routes.board.running_peer_urls(cluster_id);
        through.truncate(MEMBERSHIP_CHECK_PEERS_MAX);
        if through.is_empty() {
            return;
        }
        let Ok(cluster_calls::MemberList {
            cluster_id: answer_cluster,
            members,
            ..
        }) = cluster_calls::members(&through).await
        else {
            return;
        };
        let listed = members.iter().any(|m| m.id == node.identity.member_id);
        if answer_cluster != cluster_id || members.is_empty() || listed {
            self.absent_answers = 0;
            return;
        }
        self.absent_answers += 1;
        if self.absent_answers >= ABSENT_ANSWERS_FOR_REMOVAL {
            tracing::warn!(
                member_id = format!("{:x}", node.identity.member_id),
                "the other members no longer list this member: it was removed while away"
            );
            node.mark_removed();
        }
    }

    /// Carries out the manager's commands until it has none; returns how
    /// `run` ends if a command ends it.
    async fn drain(&mut self) -> Option<Stopped> {
        loop {
            while let Some(Event::Waiting(reason)) = self.manager.poll_event() {
                if !reason.is_empty() {
                    tracing::info!("{reason}");
                }
                self.routes.board.set_waiting(&reason);
            }
            let command = self.manager.poll_command()?;
            self.routes
                .board
                .metrics
                .count_manager_decision(command_kind(&command));
            match command {
                Command::ArchiveDataDir { removed_from, .. } => {
                    return Some(Stopped::Removed { removed_from })
                }
                Command::RecoverAlone { .. } => return Some(Stopped::Recover),
                _ => {}
            }
            if let Some((id, result)) = self.execute(command).await {
                if let CommandResult::Failed(reason) = &result {
                    tracing::warn!(command = id, "{reason}");
                }
                let now_ms = self.now_ms();
                self.manager.handle_result(id, result, now_ms);
            }
            if self.fatal.is_some() {
                return None;
            }
        }
    }

    /// Runs one command; commands that expect an answer return it.
    async fn execute(&mut self, command: Command) -> Option<(CommandId, CommandResult)> {
        let name = self.settings.name.clone();
        let answer =
            |result: Result<CommandResult, String>| result.unwrap_or_else(CommandResult::Failed);
        let done = |result: Result<(), String>| answer(result.map(|()| CommandResult::Done));
        Some(match command {
            Command::PublishMeta(meta) => {
                if let Some(gossip) = &self.gossip {
                    gossip.set_meta(meta).await;
                }
                return None;
            }
            Command::ReleaseJoinLock { through } => {
                tokio::spawn(async move {
                    if let Err(e) = cluster_calls::release_join_lock(&through, &name).await {
                        tracing::debug!(error = %e, "join lock not released; it lapses on its own");
                    }
                });
                return None;
            }
            // The caller stops `run` for these.
            Command::ArchiveDataDir { .. } | Command::RecoverAlone { .. } => return None,
            Command::LeaveRecoveryTo { id, member_id } => {
                let written =
                    data_dir::write_recovery_left_to(&self.settings.node.data_dir, member_id);
                (
                    id,
                    done(written.map_err(|e| format!("cannot record the recovery choice: {e}"))),
                )
            }
            Command::ListSnapshots { id } => (id, self.list_snapshots().await),
            Command::PersistCommitment { id, proposal } => {
                let written =
                    data_dir::write_commitment(&self.settings.node.data_dir, proposal.as_ref());
                (
                    id,
                    done(written.map_err(|e| format!("cannot record the founding set: {e}"))),
                )
            }
            Command::RestartFromDataDir { id } => (id, self.start(Membership::Restart).await),
            Command::StartNewCluster {
                id,
                founders,
                restore,
            } => (id, self.found(&founders, restore).await),
            Command::AcquireJoinLock { id, through } => (
                id,
                done(cluster_calls::acquire_join_lock(&through, &name).await),
            ),
            Command::FetchMembers { id, through } => {
                let own_size = self.settings.node.cluster_size;
                let members = cluster_calls::members(&through).await;
                let members = members.map(|list| CommandResult::Members {
                    members: list.members,
                    cluster_size: list.cluster_size.unwrap_or(own_size),
                    cluster_version: list.cluster_version,
                });
                (id, answer(members))
            }
            Command::AddLearner { id, through } => {
                let added = cluster_calls::add_learner(&through, &self.settings.peer_url).await;
                let own_size = self.settings.node.cluster_size;
                let added = added.map(|(cluster_id, members)| {
                    self.joined_cluster_id = cluster_id;
                    CommandResult::Members {
                        members,
                        cluster_size: own_size,
                        cluster_version: None,
                    }
                });
                (id, answer(added))
            }
            Command::StartJoined { id, members } => (id, self.join(&members).await),
            Command::RemoveMember {
                id,
                member_id,
                name,
                reason,
                through,
                expected,
            } => {
                tracing::debug!(member = format!("{member_id:x}"), %name, ?reason, "removing member");
                let through = self.through_local(through);
                (
                    id,
                    done(
                        cluster_calls::change_member(
                            &through,
                            MemberChange::Remove(member_id),
                            &expected,
                        )
                        .await,
                    ),
                )
            }
            Command::PromoteMember {
                id,
                member_id,
                expected,
                cluster_size,
            } => {
                let now = self
                    .node
                    .as_ref()
                    .map_or(self.settings.node.cluster_size, |node| {
                        cluster_size::effective(node)
                    });
                if now != cluster_size {
                    let changed = format!("the cluster's size is now {now}, not {cluster_size}");
                    return Some((id, CommandResult::Failed(changed)));
                }
                let through = self.through_local(Vec::new());
                (
                    id,
                    done(
                        cluster_calls::change_member(
                            &through,
                            MemberChange::Promote(member_id),
                            &expected,
                        )
                        .await,
                    ),
                )
            }
            Command::ProposeClusterSize { id, size } => {
                let proposed = match &self.node {
                    Some(node) => cluster_size::propose(node, size).await,
                    None => Err("the server does not run".into()),
                };
                if proposed.is_ok() {
                    if let Err(e) =
                        data_dir::write_proposed_size(&self.settings.node.data_dir, size)
                    {
                        tracing::warn!("cannot record the proposed cluster size: {e}");
                    }
                }
                (id, done(proposed))
            }
            Command::SetClusterVersion {
                id,
                version,
                expected,
            } => {
                let recorded = match &self.node {
                    Some(node) => cluster_version::record(node, version, &expected).await,
                    None => Err("the server does not run".into()),
                };
                if recorded.is_ok() {
                    tracing::info!(%version, "every member runs e2d {version} or later: recorded it as the cluster's version");
                }
                (id, done(recorded))
            }
        })
    }

    /// `through`, or this member's own peer URL when it is empty.
    fn through_local(&self, through: Vec<String>) -> Vec<String> {
        if through.is_empty() {
            vec![self.settings.peer_url.clone()]
        } else {
            through
        }
    }

    /// The open database, or the data dir's opened again (a failed start
    /// took it).
    fn take_backend(&mut self) -> Result<DiskBackend, RunError> {
        match self.backend.take() {
            Some(backend) => Ok(backend),
            None => open_backend(&self.settings.node.data_dir),
        }
    }

    /// The peer port bound at start; a failed start dropped the one it
    /// took, so the next binds again.
    async fn take_peer_listener(&mut self) -> Result<TcpListener, RunError> {
        match self.peer_listener.take() {
            Some(listener) => Ok(listener),
            None => listen_for_peers(&self.settings).await,
        }
    }

    /// Where snapshots are fetched to and verified before a restore.
    fn restore_staging(&self) -> PathBuf {
        self.settings.node.data_dir.join("restore")
    }

    /// Finds the newest snapshot that can be restored, and stages it.
    async fn list_snapshots(&mut self) -> CommandResult {
        let Some(backups) = &self.backups else {
            return CommandResult::NewestSnapshot(None);
        };
        let staging = self.restore_staging();
        let found = restore::fetch_restorable(
            &backups.store,
            &staging,
            &backups.config,
            e2d_core::schedule::ReplayTarget::Newest,
            &mut self.refused_snapshots,
        )
        .await;
        match found {
            Ok(Some(found)) => {
                let identity = found.identity();
                tracing::info!(
                    snapshot = %found.snapshot.name,
                    revision = found.replay.reached_revision(found.snapshot.revision),
                    deltas = found.replay.steps.len(),
                    store = %backups.config.location,
                    "found the newest valid snapshot and its deltas; a new cluster will restore them"
                );
                if let Some(lost) = &found.replay.lost {
                    tracing::warn!("{lost}");
                }
                self.staged_restore = Some((identity.clone(), found));
                CommandResult::NewestSnapshot(Some(identity))
            }
            Ok(None) => CommandResult::NewestSnapshot(None),
            Err(e) => CommandResult::Failed(format!("cannot list snapshots: {e}")),
        }
    }

    /// Loads the snapshot and deltas `identity` names (see
    /// [`restore::Restorable::identity`]) into the (empty) database;
    /// returns the store's revision.
    async fn restore(&mut self, identity: &str) -> Result<i64, String> {
        let backups = self
            .backups
            .as_ref()
            .ok_or_else(|| format!("cannot restore {identity}: no --snapshot-backup-url is set"))?;
        let staged = match self.staged_restore.take() {
            Some((staged, found)) if staged == identity => found,
            _ => {
                let found = restore::fetch_restorable(
                    &backups.store,
                    &self.restore_staging(),
                    &backups.config,
                    e2d_core::schedule::ReplayTarget::Newest,
                    &mut self.refused_snapshots,
                )
                .await
                .map_err(|e| format!("cannot restore: {e}"))?
                .ok_or_else(|| {
                    format!("cannot restore {identity}: the store holds no snapshot now")
                })?;
                if found.identity() != identity {
                    return Err(format!(
                        "cannot restore {identity}: the store now holds {} instead",
                        found.identity()
                    ));
                }
                found
            }
        };
        let backend = self.take_backend().map_err(|e| e.to_string())?;
        let now_ms = crate::backup::wall_clock_ms();
        let loaded = crate::blocking::spawn(move || {
            restore::load_into(backend, &staged.payload, &staged.replay, None, now_ms)
        })
        .await
        .map_err(|e| format!("cannot restore {identity}: {e}"))?;
        let (backend, restored) = loaded.map_err(|e| format!("cannot restore {identity}: {e}"))?;
        if let Some(stopped) = &restored.stopped {
            tracing::warn!("{stopped}");
        }
        self.backend = Some(backend);
        Ok(restored.revision)
    }

    async fn found(&mut self, founders: &[Founder], restore: Option<String>) -> CommandResult {
        // A restored cluster is a new cluster: its ids differ from those
        // of one founded without it, and agree among founders only if
        // they all restored the same snapshot.
        let token = match &restore {
            Some(name) => format!("{}/{name}", self.token),
            None => self.token.clone(),
        };
        if let Some(name) = &restore {
            match self.restore(name).await {
                Ok(revision) => tracing::info!(snapshot = %name, revision, "restored the snapshot"),
                Err(e) => return CommandResult::Failed(e),
            }
        }
        let members = founders
            .iter()
            .map(|f| InitialMember::new(&f.name, &f.peer_url, &token))
            .collect();
        let started = self.start(Membership::Found { members, token }).await;
        if let (Some(node), Some(_)) = (&self.node, &restore) {
            spawn_restored_marker(node.clone());
        }
        self.clear_restore_staging();
        started
    }

    fn clear_restore_staging(&mut self) {
        self.staged_restore = None;
        let staging = self.restore_staging();
        if let Err(e) = std::fs::remove_dir_all(&staging) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %staging.display(), error = %e, "cannot remove the restore staging dir");
            }
        }
    }

    async fn join(&mut self, members: &[ClusterMember]) -> CommandResult {
        let Some(me) = members
            .iter()
            .find(|m| m.peer_url == self.settings.peer_url)
        else {
            return CommandResult::Failed(format!(
                "the cluster's member list has no member with peer URL {}",
                self.settings.peer_url
            ));
        };
        if let Err(e) = data_dir::write_commitment(&self.settings.node.data_dir, None) {
            return CommandResult::Failed(format!("cannot clear the founding record: {e}"));
        }
        self.clear_restore_staging();
        let membership = Membership::Joined {
            member_id: me.id,
            cluster_id: self.joined_cluster_id,
            members: members
                .iter()
                .map(|m| listed_member(m.id, &m.name, &m.peer_url, m.is_learner))
                .collect(),
        };
        self.start(membership).await
    }

    async fn start(&mut self, membership: Membership) -> CommandResult {
        if let Some(node) = &self.node {
            // Started before; the answer was what got lost.
            return CommandResult::Started {
                cluster_id: node.identity.cluster_id,
            };
        }
        match self.open_and_start(membership).await {
            Ok(node) => {
                let cluster_id = node.identity.cluster_id;
                serve_started(&node, &self.routes, self.backups.as_ref());
                self.node = Some(node);
                CommandResult::Started { cluster_id }
            }
            // No retry opens damaged data: the member stops, saying why.
            Err(e) if e.is_damaged_data() => {
                let failed = CommandResult::Failed(e.to_string());
                self.fatal = Some(e);
                failed
            }
            Err(e) => CommandResult::Failed(e.to_string()),
        }
    }

    /// Opens the data dir again if a failed start took it, and starts the
    /// member on it.
    async fn open_and_start(&mut self, membership: Membership) -> Result<Arc<Node>, RunError> {
        let backend = self.take_backend()?;
        let peer_listener = self.take_peer_listener().await?;
        let metrics = self.routes.board.metrics.clone();
        start_node(&self.settings, backend, membership, peer_listener, metrics).await
    }
}

/// Pause between tries to record the restore.
const RESTORED_MARKER_RETRY: Duration = Duration::from_secs(2);
/// Tries to record the restore before giving up.
const RESTORED_MARKER_TRIES_MAX: u32 = 60;

/// Records the time of the restore under `/_e2d/snapshot`, through raft,
/// once: every founder that restored tries, and a compare on the key's
/// version lets only the first write it.
fn spawn_restored_marker(node: Arc<Node>) {
    use e2d_proto::etcdserverpb::{
        compare, request_op, Compare, PutRequest, RequestOp, TxnRequest,
    };
    use e2d_proto::peer::proposal::Op;
    tokio::spawn(async move {
        for _ in 0..RESTORED_MARKER_TRIES_MAX {
            let txn = TxnRequest {
                compare: vec![Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Version as i32,
                    key: restore::RESTORED_AT_KEY.to_vec(),
                    target_union: Some(compare::TargetUnion::Version(0)),
                    ..Default::default()
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: restore::RESTORED_AT_KEY.to_vec(),
                        value: restore::restored_at_text(crate::backup::wall_clock_ms())
                            .into_bytes(),
                        ..Default::default()
                    })),
                }],
                failure: Vec::new(),
            };
            match node.propose(Op::Txn(txn)).await {
                Ok(_) => return,
                Err(e) => tracing::debug!(error = %e, "restore not recorded yet"),
            }
            tokio::time::sleep(RESTORED_MARKER_RETRY).await;
        }
        tracing::warn!("could not record the restore under /_e2d/snapshot");
    });
}

/// The running server's view of its cluster; an error when the member's
/// recorded recovery lineage is damaged (gossiping none would keep it from
/// yielding to a cluster recovered from its own).
async fn server_status(node: &Node, data_dir: &std::path::Path) -> Result<ServerStatus, RunError> {
    let raft = node.raft_status();
    let view = if raft.is_leader {
        tokio::time::timeout(SERVER_STATUS_INTERVAL, node.membership_view())
            .await
            .ok()
            .and_then(Result::ok)
    } else {
        None
    };
    let recovered_from = crate::server::Identity::recovery_lineage(node.read().mvcc().backend())
        .map_err(|e| RunError::Database {
            path: super::start::database_dir(data_dir).display().to_string(),
            reason: format!("{e}. {}", crate::storage::DAMAGED_DATA_WAY_OUT),
        })?;
    Ok(ServerStatus {
        cluster_id: node.identity.cluster_id,
        member_id: node.identity.member_id,
        leader_id: raft.leader_id,
        last_log: raft.last_log,
        recovered_from,
        cluster_size: cluster_size::replicated(node),
        cluster_version: cluster_version::recorded(node),
        members: cluster_members(node, view.as_ref()),
    })
}

/// The cluster's members as this server knows them; with the leader's
/// `view`, which learners have caught up.
fn cluster_members(node: &Node, view: Option<&crate::raft::MembershipView>) -> Vec<ClusterMember> {
    let members = node.read().members().unwrap_or_default();
    members
        .into_iter()
        .map(|m| ClusterMember {
            caught_up: m.is_learner && view.is_some_and(|v| v.progress.learner_ready(m.member_id)),
            id: m.member_id,
            name: m.name,
            peer_url: m.peer_urls.first().cloned().unwrap_or_default(),
            is_learner: m.is_learner,
        })
        .collect()
}

/// A manager command's kind, as `e2d_manager_decisions_total` labels it.
fn command_kind(command: &Command) -> &'static str {
    match command {
        Command::PublishMeta(_) => "publish_meta",
        Command::ListSnapshots { .. } => "list_snapshots",
        Command::PersistCommitment { .. } => "persist_commitment",
        Command::RestartFromDataDir { .. } => "restart_from_data_dir",
        Command::StartNewCluster { .. } => "start_new_cluster",
        Command::AcquireJoinLock { .. } => "acquire_join_lock",
        Command::ReleaseJoinLock { .. } => "release_join_lock",
        Command::FetchMembers { .. } => "fetch_members",
        Command::AddLearner { .. } => "add_learner",
        Command::StartJoined { .. } => "start_joined",
        Command::RemoveMember { .. } => "remove_member",
        Command::PromoteMember { .. } => "promote_member",
        Command::ArchiveDataDir { .. } => "archive_data_dir",
        Command::ProposeClusterSize { .. } => "propose_cluster_size",
        Command::SetClusterVersion { .. } => "set_cluster_version",
        Command::LeaveRecoveryTo { .. } => "leave_recovery_to",
        Command::RecoverAlone { .. } => "recover_alone",
    }
}

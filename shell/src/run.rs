//! `e2d run`: open the data dir, start the node, serve clients until a
//! signal says stop.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use e2d_core::storage::{read_meta_u64, Backend};
use e2d_core::swim::{NodeMeta, NodeStatus};
use e2d_core::StateMachine;
use e2d_proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use e2d_proto::peer::peer_server::PeerServer;
use e2d_proto::peer::MemberAttributes;
use tokio::net::TcpListener;

use crate::cli::RunArgs;
use crate::gossip::{Gossip, GossipConfig};
use crate::grpc::{self, grpc_message_bytes_max};
use crate::raft::{spawn_driver, Bootstrap, LogLimits, PeerService, Transport};
use crate::server::node::META_APPLIED_INDEX;
use crate::server::{parse_initial_cluster, spawn_duties, Clock, Identity, Node, NodeConfig};
use crate::storage::FjallBackend;

/// Largest message between members: a raft append of up to 1 MiB of
/// entries plus framing.
const PEER_MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Entries kept after a log compaction, for followers slightly behind
/// (etcd keeps as many).
const LOG_ENTRIES_RETAINED_MAX: u64 = 5_000;

/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Why `e2d run` could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot use data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the database in {path}: {reason} (is another e2d using this data dir?)")]
    Database { path: String, reason: String },
    #[error("cannot listen on {addr} for {what}: {source} (is another process using the port? pass another address with {flag})")]
    Listen {
        addr: std::net::SocketAddr,
        what: &'static str,
        flag: &'static str,
        source: std::io::Error,
    },
    #[error("{0}")]
    Cluster(String),
    #[error("--host {host:?} is not an IP address; gossip advertises an IP (pass --host with this node's address)")]
    GossipHost { host: String },
    #[error("serving clients failed: {0}")]
    Serve(String),
}

pub async fn run(args: RunArgs) -> Result<(), RunError> {
    let db_dir = args.data_dir.join("db");
    std::fs::create_dir_all(&db_dir).map_err(|source| RunError::DataDir {
        path: args.data_dir.display().to_string(),
        source,
    })?;
    let database_error = |e: e2d_core::Error| RunError::Database {
        path: db_dir.display().to_string(),
        reason: e.to_string(),
    };
    let cluster_error = |e: crate::server::IdentityError| RunError::Cluster(e.to_string());
    let mut backend = FjallBackend::open(&db_dir).map_err(|e| database_error(e.into()))?;
    let name = args.member_name();
    let own_peer_url = args.advertised_url(args.peer_addr);
    let client_urls = vec![args.advertised_url(args.client_addr)];
    let initial_cluster = args
        .initial_cluster
        .clone()
        .unwrap_or_else(|| format!("{name}={own_peer_url}"));
    let token = &args.initial_cluster_token;
    let initial_members = parse_initial_cluster(&initial_cluster, token).map_err(cluster_error)?;
    let joining = args.initial_cluster_state == "existing";
    let mut known_peers: Vec<(u64, String)> = Vec::new();
    let (identity, bootstrap) = if joining {
        let (ids, bootstrap) = match Identity::stored_ids(&backend).map_err(cluster_error)? {
            // A restart: the raft log already exists and the bootstrap is unused.
            Some(ids) => (
                ids,
                Bootstrap::Join {
                    voters: Vec::new(),
                    learners: Vec::new(),
                },
            ),
            None => {
                let (ids, members) = discover_self(&initial_members, &own_peer_url).await?;
                let (learners, voters): (Vec<_>, Vec<_>) =
                    members.iter().partition(|m| m.is_learner);
                known_peers = members
                    .iter()
                    .filter_map(|m| Some((m.member_id, m.peer_urls.first()?.clone())))
                    .collect();
                let bootstrap = Bootstrap::Join {
                    voters: voters.iter().map(|m| m.member_id).collect(),
                    learners: learners.iter().map(|m| m.member_id).collect(),
                };
                (ids, bootstrap)
            }
        };
        let identity = Identity::adopt(
            &mut backend,
            name,
            ids,
            own_peer_url.clone(),
            client_urls,
            initial_members,
        )
        .map_err(cluster_error)?;
        (identity, bootstrap)
    } else {
        let (identity, _) =
            Identity::load_or_create(&mut backend, name, initial_members, token, client_urls)
                .map_err(cluster_error)?;
        let members = identity
            .initial_members
            .iter()
            .map(|m| MemberAttributes {
                member_id: m.id,
                name: m.name.clone(),
                peer_urls: vec![m.peer_url.clone()],
                client_urls: Vec::new(),
                is_learner: false,
            })
            .collect();
        let voters = identity.initial_members.iter().map(|m| m.id).collect();
        (identity, Bootstrap::Found { voters, members })
    };
    let applied_index = read_meta_u64(&backend, META_APPLIED_INDEX)
        .map_err(|e| database_error(e.into()))?
        .unwrap_or(0);
    let clock = Clock::start();
    let mut state = StateMachine::open(backend, clock.now_ms()).map_err(database_error)?;
    // Routes to peers: the replicated member list, the initial cluster for a
    // founding member, what a joining member learned from its cluster.
    let mut peers: Vec<(u64, String)> = state
        .members()
        .map_err(database_error)?
        .into_iter()
        .filter_map(|m| Some((m.member_id, m.peer_urls.first()?.clone())))
        .collect();
    if !joining {
        peers.extend(
            identity
                .initial_members
                .iter()
                .map(|m| (m.id, m.peer_url.clone())),
        );
    }
    peers.extend(known_peers);
    peers.retain(|(id, _)| *id != identity.member_id);
    peers.sort();
    peers.dedup_by_key(|(id, _)| *id);
    let transport = Transport::start(identity.cluster_id, &peers);
    let (raft, driver) = spawn_driver(
        identity.member_id,
        bootstrap,
        state.backend_mut(),
        applied_index,
        transport,
        LogLimits {
            compact_after_entries: args.snapshot_count,
            retained_entries: (args.snapshot_count / 2).min(LOG_ENTRIES_RETAINED_MAX),
        },
    )
    .map_err(database_error)?;
    state
        .backend_mut()
        .commit(true)
        .map_err(|e| database_error(e.into()))?;
    tracing::info!(
        name = %identity.name,
        member_id = format!("{:x}", identity.member_id),
        cluster_id = format!("{:x}", identity.cluster_id),
        peers = peers.len(),
        revision = state.current_revision(),
        data_dir = %args.data_dir.display(),
        "opened data dir"
    );
    let config = NodeConfig {
        data_dir: args.data_dir.clone(),
        quota_backend_bytes: args.quota_backend_bytes,
        max_request_bytes: args.max_request_bytes,
        progress_notify_interval_ms: args.watch_progress_notify_interval,
    };
    let lease_id_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64)
        << 8;
    let node = Arc::new(Node::new(
        identity,
        config,
        clock,
        state,
        raft,
        applied_index,
        lease_id_seed,
    ));
    driver.run(node.clone());
    spawn_duties(node.clone());

    let client_listener = listen(args.client_addr, "clients", "--client-addr").await?;
    let peer_listener = listen(args.peer_addr, "peers", "--peer-addr").await?;
    let metrics_listener = match args.metrics_addr {
        Some(addr) => Some(listen(addr, "metrics", "--metrics-addr").await?),
        None => None,
    };
    tracing::info!(
        client_url = %args.advertised_url(args.client_addr),
        peer_url = %own_peer_url,
        "serving clients on {} and peers on {}",
        args.client_addr,
        args.peer_addr
    );
    if let Some(listener) = metrics_listener {
        let router = crate::http::router(node.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "metrics listener stopped");
            }
        });
    }
    tokio::spawn(serve_peers(node.clone(), peer_listener));
    let gossip = start_gossip(&args, &node).await?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    let serving = serve_clients(node.clone(), client_listener, shutdown);
    tokio::pin!(serving);
    tokio::select! {
        served = &mut serving => served?,
        _ = stop_rx.wait_for(|stop| *stop) => {
            // Open watch and keep-alive streams never end on their own: give
            // in-flight requests a grace period, then stop regardless.
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut serving).await.is_err() {
                tracing::info!("streams still open after {SHUTDOWN_GRACE:?}; closing them");
            }
        }
    }
    checkpoint_leases_before_exit(&node).await;
    gossip.leave().await;
    tracing::info!("stopped");
    Ok(())
}

/// Joins the gossip group through `--bootstrap-addrs` and advertises this
/// member; gossip events are logged.
async fn start_gossip(args: &RunArgs, node: &Arc<Node>) -> Result<Arc<Gossip>, RunError> {
    let advertise_ip = if args.gossip_addr.ip().is_unspecified() {
        args.host.parse().map_err(|_| RunError::GossipHost {
            host: args.host.clone(),
        })?
    } else {
        args.gossip_addr.ip()
    };
    let seeds = resolve_seeds(&args.bootstrap_addrs, args.gossip_addr.port()).await;
    let identity = &node.identity;
    let meta = NodeMeta {
        name: identity.name.clone(),
        client_url: args.advertised_url(args.client_addr),
        peer_url: args.advertised_url(args.peer_addr),
        cluster_id: identity.cluster_id,
        status: NodeStatus::Running,
        ..NodeMeta::default()
    };
    let config = GossipConfig {
        bind: args.gossip_addr,
        advertise_ip,
        seeds,
        swim: e2d_core::swim::Config::lan(),
        rng_seed: identity.member_id ^ node_seed(),
    };
    let meta_base = meta.clone();
    let (gossip, mut events) =
        Gossip::start(config, meta)
            .await
            .map_err(|source| RunError::Listen {
                addr: args.gossip_addr,
                what: "gossip",
                flag: "--gossip-addr",
                source,
            })?;
    tracing::info!(gossip_addr = %gossip.local_addr, "gossiping");
    let gossip = Arc::new(gossip);
    tokio::spawn(advertise_voters(node.clone(), gossip.clone(), meta_base));
    tokio::spawn(async move {
        while let Some(member) = events.recv().await {
            tracing::info!(
                member = %member.name,
                addr = %member.addr,
                liveness = ?member.liveness,
                status = ?member.meta.status,
                "gossip member changed"
            );
        }
    });
    Ok(gossip)
}

/// How often the member list is checked for a change of voters to
/// advertise.
const VOTERS_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps this member's gossip metadata listing its cluster's voters, so
/// nodes without a cluster can tell whether it may still have a quorum.
async fn advertise_voters(node: Arc<Node>, gossip: Arc<Gossip>, mut meta: NodeMeta) {
    let mut ticker = tokio::time::interval(VOTERS_REFRESH);
    loop {
        ticker.tick().await;
        let Ok(members) = node.read().members() else {
            continue;
        };
        let voters = e2d_core::manager::voter_labels(
            members
                .iter()
                .filter(|m| !m.is_learner)
                .map(|m| (m.member_id, m.name.as_str())),
        );
        if voters != meta.cluster_voters {
            meta.cluster_voters = voters;
            gossip.set_meta(meta.clone()).await;
        }
    }
}

/// `host` or `host:port` seeds as socket addresses; names that do not
/// resolve are left out with a warning.
async fn resolve_seeds(seeds: &[String], default_port: u16) -> Vec<SocketAddr> {
    let mut resolved = Vec::new();
    for seed in seeds.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let with_port = seed_with_port(seed, default_port);
        let found = tokio::net::lookup_host(with_port).await;
        match found {
            Ok(addrs) => resolved.extend(addrs),
            Err(e) => {
                tracing::warn!(seed, error = %e, "bootstrap address does not resolve; leaving it out")
            }
        }
    }
    resolved.sort();
    resolved.dedup();
    resolved
}

/// `seed` as `host:port`: `host`, `host:port`, `ip`, `ip:port`,
/// `[v6]:port` and a bare IPv6 address all work.
fn seed_with_port(seed: &str, default_port: u16) -> String {
    if let Ok(ip) = seed.parse::<IpAddr>() {
        return SocketAddr::new(ip, default_port).to_string();
    }
    let has_port = seed
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if has_port {
        seed.to_string()
    } else {
        format!("{seed}:{default_port}")
    }
}

/// A seed for gossip's random choices that differs between processes.
fn node_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id())
}

/// Finds this member's ids in the running cluster it was added to, asking
/// the other members of `--initial-cluster` in turn; returns the ids and the
/// cluster's members.
async fn discover_self(
    initial_members: &[crate::server::InitialMember],
    own_peer_url: &str,
) -> Result<((u64, u64), Vec<MemberAttributes>), RunError> {
    use e2d_proto::peer::{peer_client::PeerClient, MembersRequest};
    let mut failures = Vec::new();
    for member in initial_members
        .iter()
        .filter(|m| m.peer_url != own_peer_url)
    {
        let answer = async {
            let mut client = PeerClient::connect(member.peer_url.clone()).await?;
            Ok::<_, Box<dyn std::error::Error>>(
                client.members(MembersRequest {}).await?.into_inner(),
            )
        };
        match tokio::time::timeout(std::time::Duration::from_secs(5), answer).await {
            Ok(Ok(answer)) => {
                let me = answer
                    .members
                    .iter()
                    .find(|m| m.peer_urls.iter().any(|u| u == own_peer_url));
                let Some(me) = me else {
                    return Err(RunError::Cluster(format!(
                        "the cluster at {} has no member with peer URL {own_peer_url}: add this member first (etcdctl member add NAME --peer-urls={own_peer_url})",
                        member.peer_url
                    )));
                };
                return Ok(((me.member_id, answer.cluster_id), answer.members.clone()));
            }
            Ok(Err(e)) => failures.push(format!("{}: {e}", member.peer_url)),
            Err(_) => failures.push(format!("{}: no answer within 5s", member.peer_url)),
        }
    }
    Err(RunError::Cluster(format!(
        "cannot join: no member of --initial-cluster answered ({})",
        failures.join("; ")
    )))
}

/// The leader records every lease's remaining time, so a restart resumes it.
async fn checkpoint_leases_before_exit(node: &Node) {
    use e2d_proto::peer::{proposal::Op, LeaseCheckpoint, LeaseRemaining};
    if !node.raft_status().is_leader {
        return;
    }
    let leases = node
        .read()
        .lease_remaining(node.clock.now_ms())
        .into_iter()
        .map(|(id, remaining_ms)| LeaseRemaining { id, remaining_ms })
        .collect();
    let _ = node
        .propose(Op::LeaseCheckpoint(LeaseCheckpoint { leases }))
        .await;
}

async fn serve_peers(node: Arc<Node>, listener: TcpListener) {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let service =
        PeerServer::new(PeerService::new(node)).max_decoding_message_size(PEER_MESSAGE_BYTES_MAX);
    if let Err(e) = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming(incoming)
        .await
    {
        tracing::error!(error = %e, "peer listener stopped");
    }
}

async fn listen(
    addr: std::net::SocketAddr,
    what: &'static str,
    flag: &'static str,
) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen {
            addr,
            what,
            flag,
            source,
        })
}

async fn serve_clients(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let max = grpc_message_bytes_max(node.config.max_request_bytes);
    let mut routes = tonic::service::RoutesBuilder::default();
    routes
        .add_service(
            KvServer::new(grpc::KvService::new(node.clone())).max_decoding_message_size(max),
        )
        .add_service(
            WatchServer::new(grpc::WatchService::new(node.clone())).max_decoding_message_size(max),
        )
        .add_service(
            LeaseServer::new(grpc::LeaseService::new(node.clone())).max_decoding_message_size(max),
        )
        .add_service(
            ClusterServer::new(grpc::ClusterService::new(node.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            MaintenanceServer::new(grpc::MaintenanceService::new(node.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            AuthServer::new(grpc::AuthService::new(node.clone())).max_decoding_message_size(max),
        );
    let router = routes
        .routes()
        .into_axum_router()
        .merge(crate::http::router(node))
        .fallback(crate::http::not_found);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(tonic::service::Routes::from(router))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| RunError::Serve(e.to_string()))
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::seed_with_port;

    #[test]
    fn seeds_get_the_gossip_port_when_they_have_none() {
        for (seed, expected) in [
            ("10.0.2.15", "10.0.2.15:7980"),
            ("10.0.2.15:8000", "10.0.2.15:8000"),
            ("node-1.internal", "node-1.internal:7980"),
            ("node-1.internal:8000", "node-1.internal:8000"),
            ("::1", "[::1]:7980"),
            ("[::1]:8000", "[::1]:8000"),
        ] {
            assert_eq!(seed_with_port(seed, 7980), expected, "{seed}");
        }
    }
}

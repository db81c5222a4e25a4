//! Starting the replicated server on an open data dir: founding a new
//! cluster, joining a running one, or restarting from the member state
//! the data dir holds. The peer port is served from here on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use e2d_core::storage::{read_meta_u64, Backend, StorageError, Table};
use e2d_core::StateMachine;
use e2d_proto::peer::peer_server::PeerServer;
use e2d_proto::peer::MemberAttributes;
use tokio::net::TcpListener;

use super::{listen, RunError};
use crate::raft::{spawn_driver, Bootstrap, LogLimits, PeerService, Transport};
use crate::server::node::META_APPLIED_INDEX;
use crate::server::{
    corrupt_check, spawn_auto_compaction, spawn_duties, Clock, Identity, IdentityError,
    InitialMember, Node, NodeConfig,
};
use crate::storage::DiskBackend;

/// Largest message between members: a raft append of up to 1 MiB of
/// entries plus framing.
const PEER_MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Largest HTTP/2 frame a member takes on its peer port (the protocol's
/// default is 16 KiB).
const PEER_FRAME_BYTES_MAX: u32 = 1024 * 1024;
/// What a member may have sent on one stream, and on one connection,
/// before this member has read it.
const PEER_STREAM_WINDOW_BYTES: u32 = 4 * 1024 * 1024;
const PEER_CONNECTION_WINDOW_BYTES: u32 = 8 * 1024 * 1024;

/// Entries kept after a log compaction, for followers slightly behind
/// (etcd keeps as many).
const LOG_ENTRIES_RETAINED_MAX: u64 = 5_000;

/// What a member needs to know of itself to start.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub name: String,
    pub peer_url: String,
    pub client_url: String,
    pub peer_addr: SocketAddr,
    pub snapshot_count: u64,
    /// Compare the data with the peers' before starting
    /// (`--initial-corrupt-check`).
    pub initial_corrupt_check: bool,
    pub node: NodeConfig,
}

/// How the member comes to belong to its cluster.
#[derive(Debug, Clone)]
pub enum Membership {
    /// A founding member of a new cluster of `members`; ids derive from
    /// their names, URLs and `token` (a data dir that already has ids keeps
    /// them).
    Found {
        members: Vec<InitialMember>,
        token: String,
    },
    /// Member `member_id`, added to running cluster `cluster_id` whose
    /// members are `members`.
    Joined {
        member_id: u64,
        cluster_id: u64,
        members: Vec<MemberAttributes>,
    },
    /// The member state in the data dir.
    Restart,
}

/// A member as the member list holds it before it has announced its
/// client URLs.
pub fn listed_member(id: u64, name: &str, peer_url: &str, is_learner: bool) -> MemberAttributes {
    MemberAttributes {
        member_id: id,
        name: name.to_string(),
        peer_urls: vec![peer_url.to_string()],
        client_urls: Vec::new(),
        is_learner,
    }
}

/// The members a joining member was told of, as `<hex id> <peer URL>`
/// lines.
const META_JOIN_PEERS: &[u8] = b"join_peers";

/// Forgets the members a joining member was told of (a recovered member
/// has no peers left).
pub fn stage_forget_join_peers(backend: &mut DiskBackend) {
    backend.delete(Table::Meta, META_JOIN_PEERS);
}

fn stage_join_peers(backend: &mut DiskBackend, peers: &[(u64, String)]) {
    let lines: Vec<String> = peers
        .iter()
        .map(|(id, url)| format!("{id:x} {url}"))
        .collect();
    backend.put(Table::Meta, META_JOIN_PEERS, lines.join("\n").as_bytes());
}

fn stored_join_peers(backend: &DiskBackend) -> Result<Vec<(u64, String)>, StorageError> {
    let Some(bytes) = backend.get(Table::Meta, META_JOIN_PEERS)? else {
        return Ok(Vec::new());
    };
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .filter_map(|line| {
            let (id, url) = line.split_once(' ')?;
            Some((u64::from_str_radix(id, 16).ok()?, url.to_string()))
        })
        .collect())
}

/// The database directory inside a data dir.
pub fn database_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("db")
}

/// The raft log's directory inside a data dir.
pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

/// Opens (creating) the database in `data_dir`.
pub fn open_backend(data_dir: &Path) -> Result<DiskBackend, RunError> {
    let db_dir = database_dir(data_dir);
    let create = |dir: &Path| {
        crate::durable_file::create_dir_all(dir).map_err(|source| RunError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })
    };
    create(data_dir)?;
    super::data_dir::check_format(data_dir)?;
    create(&db_dir)?;
    DiskBackend::open(&db_dir).map_err(|e| database_error(data_dir, e.into()))
}

/// Why the data in `data_dir` does not start. A read of it that failed
/// (a block its checksum refuses, an I/O error) is damage: the start
/// refuses for good, with the way out, as it does for a damaged log.
fn database_error(data_dir: &Path, e: e2d_core::Error) -> RunError {
    let reason = match &e {
        e2d_core::Error::Storage(failed) if crate::storage::is_read_failure(failed) => {
            format!("{e}. {}", crate::storage::DAMAGED_DATA_WAY_OUT)
        }
        _ => e.to_string(),
    };
    RunError::Database {
        path: data_dir.display().to_string(),
        reason,
    }
}

/// Why the member's identity could not be read or stored: its storage's
/// failures are the database's, the rest the cluster's.
fn identity_error(data_dir: &Path, e: IdentityError) -> RunError {
    match e {
        IdentityError::Storage(failed) => database_error(data_dir, failed.into()),
        other => other.into(),
    }
}

/// Binds the peer port. `run` does so as it starts, beside the client
/// port, so that a port in use stops it at once with a message naming the
/// port, in a managed member too, whose server starts only later.
pub async fn listen_for_peers(settings: &NodeSettings) -> Result<TcpListener, RunError> {
    listen(settings.peer_addr, "peers", "--peer-addr").await
}

/// Starts raft, the state machine and serves the peer port on
/// `peer_listener`; the caller serves clients with the returned node.
pub async fn start_node(
    settings: &NodeSettings,
    mut backend: DiskBackend,
    membership: Membership,
    peer_listener: TcpListener,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<Arc<Node>, RunError> {
    let data_dir = &settings.node.data_dir;
    let database_error = |e: e2d_core::Error| database_error(data_dir, e);
    let identity_error = |e: IdentityError| identity_error(data_dir, e);
    let name = settings.name.clone();
    let peer_url = settings.peer_url.clone();
    let client_urls = vec![settings.client_url.clone()];
    let mut peers: Vec<(u64, String)> = Vec::new();
    let (identity, bootstrap) = match membership {
        Membership::Found { members, token } => {
            let (identity, _) =
                Identity::load_or_create(&mut backend, name, members, &token, client_urls)
                    .map_err(identity_error)?;
            peers.extend(
                identity
                    .initial_members
                    .iter()
                    .map(|m| (m.id, m.peer_url.clone())),
            );
            let members = identity
                .initial_members
                .iter()
                .map(|m| listed_member(m.id, &m.name, &m.peer_url, false))
                .collect();
            let voters = identity.initial_members.iter().map(|m| m.id).collect();
            (identity, Bootstrap::Found { voters, members })
        }
        Membership::Joined {
            member_id,
            cluster_id,
            members,
        } => {
            peers.extend(
                members
                    .iter()
                    .filter_map(|m| Some((m.member_id, m.peer_urls.first()?.clone()))),
            );
            let (learners, voters): (Vec<_>, Vec<_>) = members.iter().partition(|m| m.is_learner);
            let bootstrap = Bootstrap::Join {
                voters: voters.iter().map(|m| m.member_id).collect(),
                learners: learners.iter().map(|m| m.member_id).collect(),
            };
            let identity = Identity::adopt(
                &mut backend,
                name,
                (member_id, cluster_id),
                peer_url,
                client_urls,
                Vec::new(),
            )
            .map_err(identity_error)?;
            stage_join_peers(&mut backend, &peers);
            (identity, bootstrap)
        }
        Membership::Restart => {
            let ids = Identity::stored_ids(&backend)
                .map_err(identity_error)?
                .ok_or_else(|| {
                    RunError::Cluster(format!(
                        "the data dir {} holds no member state to restart from",
                        data_dir.display()
                    ))
                })?;
            let identity =
                Identity::adopt(&mut backend, name, ids, peer_url, client_urls, Vec::new())
                    .map_err(identity_error)?;
            // The raft log exists: the bootstrap goes unused.
            let bootstrap = Bootstrap::Join {
                voters: Vec::new(),
                learners: Vec::new(),
            };
            (identity, bootstrap)
        }
    };
    peers.extend(stored_join_peers(&backend).map_err(|e| database_error(e.into()))?);
    let applied_index = read_meta_u64(&backend, META_APPLIED_INDEX)
        .map_err(|e| database_error(e.into()))?
        .unwrap_or(0);
    let clock = Clock::start();
    let mut state = StateMachine::open(backend, clock.now_ms()).map_err(database_error)?;
    crate::server::cluster_version::check_own_against(&state).map_err(RunError::Cluster)?;
    state.set_token_ttl_ms(settings.node.auth.token_ttl_seconds.saturating_mul(1000));
    // Routes to peers: the replicated member list, plus the founders or the
    // members a joining member learned of (kept, for a restart before the
    // member list has reached this member).
    peers.extend(
        state
            .members()
            .map_err(database_error)?
            .into_iter()
            .filter_map(|m| Some((m.member_id, m.peer_urls.first()?.clone()))),
    );
    crate::logging::set_cluster(identity.cluster_id);
    peers.retain(|(id, _)| *id != identity.member_id);
    peers.sort();
    peers.dedup_by_key(|(id, _)| *id);
    if settings.initial_corrupt_check {
        if applied_index == 0 || peers.is_empty() {
            tracing::info!("initial corruption check skipped: a new member, or one without peers, has nothing to compare");
        } else {
            corrupt_check::initial_check(&state, identity.member_id, &peers)
                .await
                .map_err(RunError::Cluster)?;
        }
    }
    let transport = Transport::start(identity.cluster_id, &peers, metrics.clone());
    let (raft, driver) = spawn_driver(
        identity.member_id,
        bootstrap,
        &wal_dir(data_dir),
        state.backend_mut(),
        applied_index,
        transport,
        LogLimits {
            compact_after_entries: settings.snapshot_count,
            retained_entries: (settings.snapshot_count / 2).min(LOG_ENTRIES_RETAINED_MAX),
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
        data_dir = %data_dir.display(),
        "opened data dir"
    );
    let node = Arc::new(Node::new(
        identity,
        settings.node.clone(),
        clock,
        state,
        raft,
        applied_index,
        metrics,
    ));
    driver.run(node.clone());
    spawn_duties(node.clone());
    if let Some(retention) = settings.node.auto_compaction {
        spawn_auto_compaction(node.clone(), retention);
    }
    if settings.node.corrupt_check_interval_ms > 0 {
        let interval = std::time::Duration::from_millis(settings.node.corrupt_check_interval_ms);
        corrupt_check::spawn_periodic_check(node.clone(), interval);
    }
    tokio::spawn(serve_peers(node.clone(), peer_listener));
    tracing::info!(peer_url = %settings.peer_url, "serving peers on {}", settings.peer_addr);
    Ok(node)
}

async fn serve_peers(node: Arc<Node>, listener: TcpListener) {
    let service =
        PeerServer::new(PeerService::new(node)).max_decoding_message_size(PEER_MESSAGE_BYTES_MAX);
    // A snapshot's chunks (256 KiB each) come in one HTTP/2 frame apiece,
    // not sixteen, and several are in flight before the sender waits for
    // this member to take them.
    let router = tonic::transport::Server::builder()
        .max_frame_size(Some(PEER_FRAME_BYTES_MAX))
        .initial_stream_window_size(Some(PEER_STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(PEER_CONNECTION_WINDOW_BYTES))
        .add_service(service);
    #[cfg(not(madsim))]
    let served = match crate::tls::client::installed() {
        Some(material) => match material.server_config(crate::tls::material::Role::Peer) {
            Ok(config) => {
                let incoming = crate::tls::incoming::accept(listener, config, "peer port");
                router.serve_with_incoming(incoming).await
            }
            Err(e) => {
                tracing::error!(error = %e, "peer port TLS");
                return;
            }
        },
        None => {
            router
                .serve_with_incoming(super::without_delay(listener))
                .await
        }
    };
    // The simulated transport binds its own endpoint.
    #[cfg(madsim)]
    let served = {
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        drop(listener);
        router.serve(addr).await
    };
    if let Err(e) = served {
        tracing::error!(error = %e, "peer listener stopped");
    }
}

//! `e2d run`: serve the client port, start the member (at once for a
//! static cluster, when the manager decides for a managed one), and serve
//! until a signal says stop or the cluster removes the member.

#[cfg(not(madsim))]
mod client_port;
#[cfg(madsim)]
#[path = "client_port_sim.rs"]
mod client_port;
mod cluster_calls;
mod data_dir;
#[cfg(not(madsim))]
mod kv_unary;
mod managed;
pub mod recover;
pub(crate) mod seeds;
mod start;
mod static_members;
mod status_board;
#[cfg(not(madsim))]
mod url_authority;

use tokio::net::TcpListener;

use std::sync::Arc;

use crate::backup::Backups;
use crate::cli::RunArgs;
use crate::server::{Node, NodeConfig};
use client_port::{ClientPort, NodeRoutes};
use start::NodeSettings;
pub use start::{database_dir, open_backend};

/// Why `e2d run` could not start or stopped with an error.
impl RunError {
    /// Whether the data dir is damaged: no retry can help, and the member
    /// must stop rather than run on it.
    pub fn is_damaged_data(&self) -> bool {
        matches!(self, RunError::Database { reason, .. } if reason.contains(crate::storage::DAMAGED_DATA_WAY_OUT))
    }
}

/// Why a member stops when its raft driver's task has ended.
pub(crate) const DRIVER_STOPPED: &str =
    "the raft driver's task ended while the member ran (see the error before this one); stopping rather than serve without it";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot use data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start on the data in {path}: {reason}")]
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
    #[error("{0}")]
    Config(String),
    #[error("--name {name:?} is not allowed: use 1 to 64 letters, digits, '.', '_' or '-'")]
    Name { name: String },
    #[error("--host {host:?} is not an IP address; gossip advertises an IP (pass --host with this node's address)")]
    GossipHost { host: String },
    #[error("serving clients failed: {0}")]
    Serve(String),
}

impl From<crate::server::IdentityError> for RunError {
    fn from(e: crate::server::IdentityError) -> Self {
        RunError::Cluster(e.to_string())
    }
}

/// How `e2d run` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// A signal asked it to stop.
    Shutdown,
    /// The cluster removed this managed member (`removed_from`, none when
    /// it yields to a cluster recovered from its own): move its data dir
    /// aside, record that cluster, and run again, to join as a new member.
    Removed {
        removed_from: Option<e2d_core::manager::Removal>,
    },
    /// The survivors of a lost majority agreed that this member restarts
    /// the cluster alone (`--unsafe-auto-recover-after`): recover its data
    /// dir as `e2d cluster recover` does, and run again.
    Recover,
}

pub async fn run(args: RunArgs) -> Result<Stopped, RunError> {
    let is_static = args.initial_cluster.is_some() || args.initial_cluster_state == "existing";
    if is_static {
        if args.required_cluster_size != 1
            || !args.bootstrap_addrs.is_empty()
            || args.discovery.peer_discovery.is_some()
        {
            return Err(RunError::Config(
                "--initial-cluster and --initial-cluster-state describe a static cluster; \
                 --required-cluster-size, --bootstrap-addrs and --peer-discovery a self-managed one: use one or the other"
                    .into(),
            ));
        }
    } else {
        managed::check_flags(&args)?;
    }
    args.auto_compaction().map_err(RunError::Config)?;
    if let Some(warning) = data_dir::make_private(&args.data_dir)? {
        tracing::warn!("{warning}");
    }
    let backups = Backups::from_run_args(&args)
        .await
        .map_err(RunError::Config)?;
    #[cfg(not(madsim))]
    {
        let material = crate::tls::Material::from_args(&args.tls, args.envelope.ca_key.as_deref())
            .map_err(|e| RunError::Config(e.0))?;
        crate::tls::client::install(material.clone());
        if let Some(material) = material {
            crate::tls::reload::spawn(material);
        }
    }
    // The database first: it locks the data dir against a second e2d.
    let backend = start::open_backend(&args.data_dir)?;
    let backend = recover::finish_interrupted(&args.data_dir, backend)?;
    if is_static {
        // As etcd: the --initial-cluster entry with this member's peer URL,
        // else the host name.
        let peer_url = args.advertised_url(args.peer_addr);
        let from_flags = || {
            let initial_cluster = args.initial_cluster.as_deref().unwrap_or_default();
            name_for_peer_url(initial_cluster, &peer_url).unwrap_or_else(data_dir::host_name)
        };
        let name = data_dir::member_name(&args.data_dir, args.name.as_deref(), from_flags)?;
        crate::logging::set_member(&name);
        static_members::run(args, name, backend, backups).await
    } else {
        let generated = || data_dir::generated_name(crate::node_seed::node_seed());
        let name = data_dir::member_name(&args.data_dir, args.name.as_deref(), generated)?;
        crate::logging::set_member(&name);
        managed::run(args, name, backend, backups).await
    }
}

/// The name `--initial-cluster` gives the member with `peer_url` (none if
/// it does not parse; the start says why).
fn name_for_peer_url(initial_cluster: &str, peer_url: &str) -> Option<String> {
    // The token only shapes ids, which are not needed here.
    crate::server::parse_initial_cluster(initial_cluster, "")
        .ok()?
        .into_iter()
        .find(|m| m.peer_url == peer_url)
        .map(|m| m.name)
}

fn node_settings(args: &RunArgs, name: &str) -> NodeSettings {
    NodeSettings {
        name: name.to_string(),
        peer_url: args.advertised_url(args.peer_addr),
        client_url: args.advertised_url(args.client_addr),
        peer_addr: args.peer_addr,
        snapshot_count: args.snapshot_count,
        initial_corrupt_check: args.initial_corrupt_check,
        node: NodeConfig {
            data_dir: args.data_dir.clone(),
            quota_backend_bytes: args.quota_backend_bytes,
            max_request_bytes: args.max_request_bytes,
            progress_notify_interval_ms: args.watch_progress_notify_interval,
            // `run` refused flags that do not parse before it got here.
            auto_compaction: args.auto_compaction().unwrap_or_default(),
            auth: crate::auth::AuthOptions {
                token: args.auth_token.clone(),
                token_ttl_seconds: args.auth_token_ttl,
                bcrypt_cost: args.bcrypt_cost,
            },
            corrupt_check_interval_ms: args.corrupt_check_time,
            cluster_size: args.required_cluster_size,
            delta_journal_bytes: (args.snapshot_backup_url.is_some()
                && args.snapshot_delta_interval > 0)
                .then_some(crate::backup::DELTA_JOURNAL_BYTES),
        },
    }
}

/// Serves `node` on the client port, and starts its backups.
fn serve_started(node: &Arc<Node>, routes: &NodeRoutes, backups: Option<&Backups>) {
    routes.serve_node(node);
    if let Some(backups) = backups {
        let board = routes.board.clone();
        backups.start_schedule(node.clone(), move |uploaded| board.set_uploaded(uploaded));
    }
}

/// The wall clock in seconds since the Unix epoch (0 before it), for the
/// names of archives a data dir keeps.
pub(crate) fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Moves a removed member's data aside and records the cluster that
/// removed it (`removed_from`), so that `run` joins the cluster again as a
/// new member and, until then, tells the others that cluster went on
/// without it.
pub fn start_over(
    data_dir: &std::path::Path,
    removed_from: Option<&e2d_core::manager::Removal>,
) -> Result<(), RunError> {
    let data_dir_error = |source| RunError::DataDir {
        path: data_dir.display().to_string(),
        source,
    };
    let archived = data_dir::archive(data_dir, unix_now_s()).map_err(data_dir_error)?;
    if let Some(removal) = removed_from {
        data_dir::write_removed_from(data_dir, removal).map_err(data_dir_error)?;
    }
    tracing::warn!(
        archived = %archived.display(),
        "moved the removed member's data aside; joining the cluster again as a new member"
    );
    Ok(())
}

/// Recovers the stopped member alone, as the survivors agreed, so that
/// `run` serves the recovered cluster.
pub fn recover_alone(data_dir: &std::path::Path) -> Result<(), RunError> {
    let done = recover::recover(data_dir, unix_now_s())?;
    tracing::warn!(
        cluster_id = format!("{:x}", done.cluster_id),
        recovered_from = format!("{:x}", done.old_cluster_id),
        removed_members = done.removed_members,
        kept_past_known_commit = done.log.past_known_commit,
        archive = %done.archive.display(),
        "recovered the cluster alone from this member's data; the lost members' data stays theirs, \
         and they join the recovered cluster as new members"
    );
    Ok(())
}

/// What a member does on its way out, so its next start is quick and
/// loses no lease time: the leader records every lease's remaining time,
/// and the storage engine writes its memtables to its tables, so the next
/// start does not replay them from its journal. Its database stops
/// serving, so a task still reading a view as the member starts over is
/// told of a failed read rather than stopping the process.
async fn before_exit(node: &Node) {
    checkpoint_leases(node).await;
    let state = node.read();
    state.mvcc().backend().stop_serving();
    if let Err(e) = crate::blocking::in_place(|| state.mvcc().backend().flush_memtables()) {
        tracing::warn!(error = %e, "the tables were not flushed; the next start replays the journal");
    }
}

/// The leader records every lease's remaining time, so a restart resumes it.
async fn checkpoint_leases(node: &Node) {
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

/// Connections the kernel queues for a listening port before `accept`
/// takes them, as etcd's (Go's) listeners: with the OS default of 128, a
/// burst of connecting clients waits for SYN retransmits (a second each).
/// Linux caps it at `net.core.somaxconn`.
#[cfg(not(madsim))]
const LISTEN_BACKLOG_CONNECTIONS: u32 = 4096;

async fn listen(
    addr: std::net::SocketAddr,
    what: &'static str,
    flag: &'static str,
) -> Result<TcpListener, RunError> {
    bind_listener(addr)
        .await
        .map_err(|source| RunError::Listen {
            addr,
            what,
            flag,
            source,
        })
}

#[cfg(not(madsim))]
async fn bind_listener(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As TcpListener::bind: a restart may bind while old connections
    // linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG_CONNECTIONS)
}

/// The simulator's network has no backlog to size.
#[cfg(madsim)]
async fn bind_listener(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// The connections of `listener` with Nagle's algorithm off: a small
/// answer goes out at once instead of waiting for the client's delayed
/// acknowledgement (40 ms on Linux). Answers ready together still leave
/// together: see [`e2d_coalesced_io`].
#[cfg(not(madsim))]
fn without_delay(
    listener: TcpListener,
) -> impl tokio_stream::Stream<
    Item = std::io::Result<e2d_coalesced_io::CoalescedIo<tokio::net::TcpStream>>,
> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(e2d_coalesced_io::CoalescedIo::new(stream))
    })
}

#[cfg(not(madsim))]
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler installs");
    tokio::select! {
        biased;
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
}

/// A simulated node is stopped by killing it.
#[cfg(madsim)]
async fn shutdown_signal() {
    std::future::pending::<()>().await
}

#[cfg(test)]
mod tests {
    use super::name_for_peer_url;

    #[test]
    fn a_static_member_is_named_by_its_peer_url() {
        let cluster = "a=http://10.0.0.1:2380, b=http://10.0.0.2:2380";
        assert_eq!(
            name_for_peer_url(cluster, "http://10.0.0.2:2380").as_deref(),
            Some("b")
        );
        assert_eq!(name_for_peer_url(cluster, "http://10.0.0.3:2380"), None);
        assert_eq!(name_for_peer_url("", "http://10.0.0.3:2380"), None);
    }
}

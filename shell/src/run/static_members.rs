//! A static cluster, as etcd runs one: the members come from
//! `--initial-cluster`, and a member joins a running cluster
//! (`--initial-cluster-state existing`) after a MemberAdd. No gossip and no
//! manager: membership changes are the operator's.

use std::time::Duration;

use e2d_proto::peer::MemberAttributes;

use super::start::{listen_for_peers, start_node, Membership};
use super::status_board::StatusBoard;
use super::{
    before_exit, node_settings, serve_started, shutdown_signal, ClientPort, RunError, Stopped,
};
use crate::backup::Backups;
use crate::cli::RunArgs;
use crate::server::{parse_initial_cluster, Identity};
use crate::storage::DiskBackend;

/// How long a removed member keeps answering before it stops.
const REMOVED_EXIT_GRACE: Duration = Duration::from_secs(1);

pub async fn run(
    args: RunArgs,
    name: String,
    backend: DiskBackend,
    backups: Option<Backups>,
) -> Result<Stopped, RunError> {
    let settings = node_settings(&args, &name);
    let initial_cluster = args
        .initial_cluster
        .clone()
        .unwrap_or_else(|| format!("{name}={}", settings.peer_url));
    let token = args.initial_cluster_token.clone();
    let members = parse_initial_cluster(&initial_cluster, &token)?;
    let board = StatusBoard::new(name, 1);
    let mut port = ClientPort::open(&args, board).await?;
    let peer_listener = listen_for_peers(&settings).await?;
    let membership = if args.initial_cluster_state != "existing" {
        Membership::Found { members, token }
    } else if Identity::stored_ids(&backend)?.is_some() {
        Membership::Restart
    } else {
        let ((member_id, cluster_id), members) =
            discover_self(&members, &settings.peer_url).await?;
        Membership::Joined {
            member_id,
            cluster_id,
            members,
        }
    };
    let metrics = port.routes.board.metrics.clone();
    let node = start_node(&settings, backend, membership, peer_listener, metrics).await?;
    serve_started(&node, &port.routes, backups.as_ref());
    let stopped = tokio::select! {
        biased;
        _ = shutdown_signal() => Stopped::Shutdown,
        _ = node.wait_removed() => {
            tracing::warn!("this member was removed from the cluster; stopping (wipe its data dir to add it again)");
            // Answers to the request that removed it still have to leave.
            tokio::time::sleep(REMOVED_EXIT_GRACE).await;
            Stopped::Shutdown
        }
        e = port.failed() => return Err(e),
        _ = node.raft().wait_stopped() => return Err(RunError::Cluster(super::DRIVER_STOPPED.into())),
    };
    port.close().await;
    before_exit(&node).await;
    tracing::info!("stopped");
    Ok(stopped)
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
            let channel = crate::outgoing::connect(&member.peer_url).await?;
            let mut client = PeerClient::new(channel);
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

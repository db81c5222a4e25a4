//! Corruption checks, as etcd's `--initial-corrupt-check` and
//! `--corrupt-check-time`: this member's `HashKV` compared with its
//! peers', which it asks over their peer ports (`Peer.HashKV`, as etcd
//! asks its peers' `/members/hashkv`); [`e2d_core::corrupt_check`]
//! decides which members differ.
//!
//! - [`initial_check`] runs before raft starts and before clients are
//!   served; a mismatch stops the member.
//! - [`spawn_periodic_check`]: every interval, the leader checks and
//!   raises the CORRUPT alarm through raft for the member that differs;
//!   every member then refuses writes until `etcdctl alarm disarm`.

use std::sync::Arc;
use std::time::Duration;

use e2d_core::corrupt_check::{self, HashKv, NEVER_COMPACTED};
use e2d_core::{Error, StateMachine};
use e2d_proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmRequest, AlarmType, HashKvRequest, HashKvResponse,
};
use e2d_proto::peer::proposal::Op;

use super::Node;
use crate::storage::DiskBackend;

/// How long a peer gets to answer (etcd's request timeout: 5 s plus two
/// election timeouts of 1 s).
const PEER_ANSWER_TIMEOUT: Duration = Duration::from_secs(7);
/// Most peers asked at once; a cluster has at most a few members.
const PEERS_ASKED_MAX: usize = 16;

/// This member's `HashKV` at `revision` (0: its current revision), as the
/// Maintenance and Peer services answer it.
pub fn hash_kv_response(
    state: &StateMachine<DiskBackend>,
    revision: i64,
) -> Result<HashKvResponse, Error> {
    let mvcc = state.mvcc();
    // Unlike a read, a hash at the compacted revision itself is refused,
    // as etcd refuses it.
    if revision > 0 && revision <= mvcc.compact_revision() {
        return Err(Error::Compacted);
    }
    let hash_revision = mvcc.resolve_read_revision(revision)?;
    let hash = mvcc.hash_kv(hash_revision)?;
    Ok(HashKvResponse {
        header: Some(e2d_proto::etcdserverpb::ResponseHeader {
            revision: mvcc.current_revision(),
            ..Default::default()
        }),
        hash,
        // etcd reports -1 until the first compaction.
        compact_revision: match mvcc.compact_revision() {
            0 => NEVER_COMPACTED,
            revision => revision,
        },
        hash_revision,
    })
}

/// A `HashKV` answer as the decision takes it.
fn answer_of(member_id: u64, response: &HashKvResponse) -> HashKv {
    HashKv {
        member_id,
        hash: response.hash,
        hash_revision: response.hash_revision,
        revision: response.header.as_ref().map_or(0, |h| h.revision),
        compact_revision: response.compact_revision,
    }
}

/// This member's hash at its current revision.
fn local_hash(state: &StateMachine<DiskBackend>, member_id: u64) -> Result<HashKv, Error> {
    hash_kv_response(state, 0).map(|response| answer_of(member_id, &response))
}

/// Asks every peer (`(member id, peer URL)`) for its hash at `revision`,
/// all at once; a peer that cannot answer is left out (logged, as etcd
/// does), as is one whose answer names another member.
async fn peer_hashes(peers: &[(u64, String)], revision: i64) -> Vec<HashKv> {
    let mut asked = Vec::new();
    for (member_id, url) in peers.iter().take(PEERS_ASKED_MAX).cloned() {
        asked.push(tokio::spawn(async move {
            let answer = tokio::time::timeout(PEER_ANSWER_TIMEOUT, ask_peer(&url, revision)).await;
            (member_id, url, answer)
        }));
    }
    let mut answers = Vec::new();
    for task in asked {
        let Ok((member_id, url, answer)) = task.await else {
            continue;
        };
        let peer = format!("{member_id:x}");
        match answer {
            Ok(Ok(response)) => {
                let answered_by = response.header.as_ref().map_or(0, |h| h.member_id);
                if answered_by != member_id {
                    tracing::warn!(%peer, %url, answered_by = format!("{answered_by:x}"), "another member answered for the peer; its hash is not compared");
                    continue;
                }
                answers.push(answer_of(member_id, &response));
            }
            Ok(Err(status)) if status.message() == Error::FutureRevision.to_string() => {
                tracing::warn!(%peer, %url, revision, "cannot fetch hash from slow remote peer");
            }
            Ok(Err(status)) if status.message() == Error::Compacted.to_string() => {
                tracing::warn!(%peer, %url, revision, "cannot fetch hash from remote peer; local member is behind");
            }
            Ok(Err(status)) => {
                tracing::warn!(%peer, %url, revision, error = %status.message(), "failed hash kv request");
            }
            Err(_) => {
                tracing::warn!(%peer, %url, revision, "failed hash kv request: no answer within {PEER_ANSWER_TIMEOUT:?}");
            }
        }
    }
    answers
}

async fn ask_peer(url: &str, revision: i64) -> Result<HashKvResponse, tonic::Status> {
    use e2d_proto::peer::peer_client::PeerClient;
    let channel = crate::outgoing::connect(url)
        .await
        .map_err(tonic::Status::unavailable)?;
    let response = PeerClient::new(channel)
        .hash_kv(HashKvRequest { revision })
        .await?;
    Ok(response.into_inner())
}

/// `--initial-corrupt-check`: compares this member's hash at its revision
/// with its peers' at that revision, before raft starts (etcd's
/// `checkInitialHashKV`); an error, naming the members and revisions,
/// when a peer at the same compaction has another hash.
pub async fn initial_check(
    state: &StateMachine<DiskBackend>,
    member_id: u64,
    peers: &[(u64, String)],
) -> Result<(), String> {
    let local = local_hash(state, member_id)
        .map_err(|e| format!("{member_id:x} failed to fetch hash ({e})"))?;
    tracing::info!(
        local_member_id = format!("{member_id:x}"),
        revision = local.hash_revision,
        compact_revision = local.compact_revision,
        hash = local.hash,
        peers = peers.len(),
        "starting initial corruption check"
    );
    let answers = peer_hashes(peers, local.hash_revision).await;
    for answer in answers
        .iter()
        .filter(|a| a.compact_revision != local.compact_revision && a.hash != local.hash)
    {
        tracing::warn!(
            remote_peer_id = format!("{:x}", answer.member_id),
            remote_peer_compact_revision = answer.compact_revision,
            local_member_compact_revision = local.compact_revision,
            "found different compact revision values from remote peer"
        );
    }
    let mismatches = corrupt_check::check_initial(&local, &answers);
    if mismatches.is_empty() {
        tracing::info!(
            local_member_id = format!("{member_id:x}"),
            peers_checked = answers.len(),
            "initial corruption checking passed; no corruption"
        );
        return Ok(());
    }
    let found: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
    Err(format!(
        "{member_id:x} found data inconsistency with peers: {} (this member's data differs from its peers': remove it from the cluster, wipe its data dir and add it again)",
        found.join("; ")
    ))
}

/// `--corrupt-check-time`: checks every `interval` while this member leads.
pub fn spawn_periodic_check(node: Arc<Node>, interval: Duration) {
    tracing::info!(
        local_member_id = format!("{:x}", node.identity.member_id),
        ?interval,
        "enabled corruption checking"
    );
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if !node.raft_status().is_leader {
                continue;
            }
            if let Err(e) = periodic_check(&node).await {
                tracing::warn!(error = %e, "failed to check hash KV");
            }
        }
    });
}

/// One check of the leader (etcd's `checkHashKV`).
async fn periodic_check(node: &Node) -> Result<(), Error> {
    let member_id = node.identity.member_id;
    let (before, peers) = {
        let state = node.read();
        let peers: Vec<(u64, String)> = state
            .members()?
            .into_iter()
            .filter(|m| m.member_id != member_id)
            .filter_map(|m| Some((m.member_id, m.peer_urls.first()?.clone())))
            .collect();
        (local_hash(&state, member_id)?, peers)
    };
    let answers = peer_hashes(&peers, before.hash_revision).await;
    node.linearizable_barrier().await?;
    let after = local_hash(&node.read(), member_id)?;
    let mismatches = corrupt_check::check_periodic(&before, &after, &answers);
    for mismatch in &mismatches {
        tracing::warn!(member = format!("{:x}", mismatch.member_id), reason = ?mismatch.reason, "found hash mismatch: {mismatch}");
    }
    tracing::debug!(
        peers_checked = answers.len(),
        "finished peer corruption check"
    );
    let Some(target) = corrupt_check::alarm_target(&mismatches) else {
        return Ok(());
    };
    if node.read().alarms_of(AlarmType::Corrupt).contains(&target) {
        return Ok(());
    }
    tracing::error!(
        member = format!("{target:x}"),
        "raising the CORRUPT alarm: the cluster refuses writes until `etcdctl alarm disarm`"
    );
    node.propose(Op::Alarm(AlarmRequest {
        action: AlarmAction::Activate as i32,
        member_id: target,
        alarm: AlarmType::Corrupt as i32,
    }))
    .await
    .map(|_| ())
}

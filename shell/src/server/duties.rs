//! Background duties of the leader: revoking expired leases and
//! replicating lease checkpoints; and of every member: announcing its name
//! and URLs to the cluster.

use std::sync::Arc;
use std::time::Duration;

use e2d_proto::peer::proposal::Op;
use e2d_proto::peer::{LeaseCheckpoint, LeaseRemaining, LeaseRevoke, MemberAttributes};

use super::Node;

/// How often expired leases are looked for.
const LEASE_EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// Most leases revoked per check (etcd revokes at most 1000 per second).
const LEASE_REVOKES_PER_CHECK_MAX: usize = 250;
/// How often remaining lease TTLs are replicated for restarts and new leaders.
const LEASE_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
/// Leases in one checkpoint proposal.
const LEASES_PER_CHECKPOINT_MAX: usize = 1000;
/// Wait between attempts to announce this member.
const ANNOUNCE_RETRY_INTERVAL: Duration = Duration::from_millis(500);

pub fn spawn_duties(node: Arc<Node>) {
    tokio::spawn(revoke_expired_leases(node.clone()));
    tokio::spawn(checkpoint_leases(node.clone()));
    tokio::spawn(announce_member(node));
}

async fn revoke_expired_leases(node: Arc<Node>) {
    let mut tick = tokio::time::interval(LEASE_EXPIRY_CHECK_INTERVAL);
    loop {
        tick.tick().await;
        if !node.raft_status().is_leader {
            continue;
        }
        let now_ms = node.clock.now_ms();
        let expired = node
            .read()
            .lessor()
            .expired(now_ms, LEASE_REVOKES_PER_CHECK_MAX);
        for id in expired {
            match node.propose(Op::LeaseRevoke(LeaseRevoke { id })).await {
                Err(e) => tracing::debug!(lease = id, error = %e, "expired lease not revoked"),
                Ok(_) => tracing::debug!(lease = id, "revoked expired lease"),
            }
        }
    }
}

async fn checkpoint_leases(node: Arc<Node>) {
    let mut tick = tokio::time::interval(LEASE_CHECKPOINT_INTERVAL);
    loop {
        tick.tick().await;
        if !node.raft_status().is_leader {
            continue;
        }
        let remaining = node.read().lease_remaining(node.clock.now_ms());
        for chunk in remaining.chunks(LEASES_PER_CHECKPOINT_MAX) {
            let leases = chunk
                .iter()
                .map(|&(id, remaining_ms)| LeaseRemaining { id, remaining_ms })
                .collect();
            let _ = node
                .propose(Op::LeaseCheckpoint(LeaseCheckpoint { leases }))
                .await;
        }
    }
}

/// Publishes this member's name and URLs through raft, once per start.
async fn announce_member(node: Arc<Node>) {
    let attributes = MemberAttributes {
        member_id: node.identity.member_id,
        name: node.identity.name.clone(),
        peer_urls: node.identity.peer_urls.clone(),
        client_urls: node.identity.client_urls.clone(),
        // Ignored when applied: the membership decides who votes.
        is_learner: false,
    };
    loop {
        match node.propose(Op::MemberAttributes(attributes.clone())).await {
            Ok(_) => return,
            Err(e) => tracing::debug!(error = %e, "announcing this member; will retry"),
        }
        tokio::time::sleep(ANNOUNCE_RETRY_INTERVAL).await;
    }
}

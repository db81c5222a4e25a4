//! Background duties of the leader: revoking expired leases and
//! replicating lease checkpoints; and of every member: announcing its name
//! and URLs to the cluster.

use std::sync::Arc;
use std::time::Duration;

use e2d_proto::peer::proposal::Op;
use e2d_proto::peer::{LeaseCheckpoint, LeaseRemaining, LeaseRevoke, MemberAttributes};

use e2d_core::storage::Backend;

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

/// Keys of the index a compaction step takes, holding the state's lock.
const COMPACTION_STEP_KEYS_MAX: usize = 1024;
/// How long the compaction's deletes pause between steps; and how often
/// a physical compaction's caller looks whether they are done.
pub const COMPACTION_STEP_INTERVAL: Duration = Duration::from_millis(2);
/// With no compaction under way, how often a member looks for one it did
/// not hear of (one its start or an installed snapshot brought); an
/// applied compaction is announced at once.
const COMPACTION_IDLE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

pub fn spawn_duties(node: Arc<Node>) {
    tokio::spawn(finish_compactions(node.clone()));
    tokio::spawn(revoke_expired_leases(node.clone()));
    tokio::spawn(checkpoint_leases(node.clone()));
    tokio::spawn(announce_member(node));
}

/// Deletes what compactions dropped from the kv table, a bounded step at a
/// time with pauses between, so writes go on meanwhile (as etcd's
/// compaction batches do); every member does, as each applies the
/// compaction.
async fn finish_compactions(node: Arc<Node>) {
    loop {
        if !node.read().compaction_under_way() {
            // An idle member sleeps here rather than waking every step's
            // interval to look.
            let _ =
                tokio::time::timeout(COMPACTION_IDLE_CHECK_INTERVAL, node.compaction_announced())
                    .await;
            continue;
        }
        tokio::time::sleep(COMPACTION_STEP_INTERVAL).await;
        {
            let mut state = node.write_state();
            state.compact_step(COMPACTION_STEP_KEYS_MAX);
            if let Err(e) = state.backend_mut().commit(false) {
                tracing::error!(error = %e, "the compaction's deletes cannot be written; stopping so nothing half-written is served");
                std::process::exit(1);
            }
        }
        node.publish_applied();
    }
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

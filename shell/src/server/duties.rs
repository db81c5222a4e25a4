//! Background duties of a node: revoking expired leases and recording
//! lease checkpoints.

use std::sync::Arc;
use std::time::Duration;

use super::{Node, WriteOp, WriteOutcome};

/// How often expired leases are looked for.
const LEASE_EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// Most leases revoked per check (etcd revokes at most 1000 per second).
const LEASE_REVOKES_PER_CHECK_MAX: usize = 250;
/// How often remaining lease TTLs are recorded for restarts.
const LEASE_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

pub fn spawn_duties(node: Arc<Node>) {
    tokio::spawn(revoke_expired_leases(node.clone()));
    tokio::spawn(checkpoint_leases(node));
}

async fn revoke_expired_leases(node: Arc<Node>) {
    let mut tick = tokio::time::interval(LEASE_EXPIRY_CHECK_INTERVAL);
    loop {
        tick.tick().await;
        let now_ms = node.clock.now_ms();
        let expired = node
            .read()
            .lessor()
            .expired(now_ms, LEASE_REVOKES_PER_CHECK_MAX);
        for id in expired {
            match node.write(WriteOp::LeaseRevoke { id }).await {
                WriteOutcome::Failed(e) => {
                    tracing::debug!(lease = id, error = %e, "expired lease already gone")
                }
                _ => tracing::debug!(lease = id, "revoked expired lease"),
            }
        }
    }
}

async fn checkpoint_leases(node: Arc<Node>) {
    let mut tick = tokio::time::interval(LEASE_CHECKPOINT_INTERVAL);
    loop {
        tick.tick().await;
        if !node.read().lessor().is_empty() {
            node.write(WriteOp::LeaseCheckpoint).await;
        }
    }
}

//! Automatic compaction (`--auto-compaction-mode`,
//! `--auto-compaction-retention`): drives a core [`AutoCompactor`] with the
//! node's clock, revision and leadership, and proposes its compactions
//! through raft as a client's Compaction would be.

use std::sync::Arc;
use std::time::Duration;

use e2d_core::auto_compaction::{AutoCompactor, CompactOutcome, Retention};
use e2d_core::Error;
use e2d_proto::etcdserverpb::CompactionRequest;
use e2d_proto::peer::proposal::Op;

use super::Node;

/// Starts automatic compaction on `node`, keeping `retention`.
pub fn spawn_auto_compaction(node: Arc<Node>, retention: Retention) {
    tokio::spawn(run(node, retention));
}

async fn run(node: Arc<Node>, retention: Retention) {
    let mut compactor = AutoCompactor::new(
        retention,
        node.clock.now_ms(),
        node.read().current_revision(),
    );
    tracing::info!(?retention, "automatic compaction on");
    loop {
        // Every command is answered before the next poll, so a timer is
        // always armed here.
        let Some(due_ms) = compactor.poll_timeout() else {
            debug_assert!(false, "no compaction timer armed");
            return;
        };
        let wait_ms = due_ms.saturating_sub(node.clock.now_ms());
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        let revision = node.read().current_revision();
        let is_leader = node.raft_status().is_leader;
        compactor.handle_timeout(node.clock.now_ms(), revision, is_leader);
        while let Some(command) = compactor.poll_command() {
            let outcome = compact(&node, command.revision).await;
            compactor.handle_result(command.id, outcome, node.clock.now_ms());
        }
    }
}

async fn compact(node: &Node, revision: i64) -> CompactOutcome {
    tracing::info!(revision, "starting automatic compaction");
    let request = CompactionRequest {
        revision,
        physical: false,
    };
    match node.propose(Op::Compaction(request)).await {
        Ok(_) => {
            tracing::info!(revision, "finished automatic compaction");
            CompactOutcome::Compacted
        }
        Err(Error::Compacted) => {
            tracing::debug!(revision, "already compacted at or past this revision");
            CompactOutcome::AlreadyCompacted
        }
        Err(e) => {
            tracing::warn!(revision, error = %e, "automatic compaction failed; retrying at the next tick");
            CompactOutcome::Failed
        }
    }
}

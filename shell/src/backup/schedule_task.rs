//! The leader's periodic backups: `core::schedule::Scheduler` driven by
//! the running member's leadership and revision, its commands carried out
//! against the store.

use std::sync::Arc;
use std::time::Duration;

use e2d_core::schedule::{ScheduleCommand, Scheduler, SchedulerConfig};

use super::take::take_and_upload;
use super::{snapshots_in, wall_clock_ms, BackupConfig, Store};
use crate::server::Node;

/// How often leadership and the applied revision are read.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Takes snapshots while `node` leads, until the runtime stops.
/// `uploaded` hears of each snapshot taken.
pub fn spawn(
    node: Arc<Node>,
    store: Arc<Store>,
    config: BackupConfig,
    schedule: SchedulerConfig,
    uploaded: impl Fn(&str) + Send + Sync + 'static,
) {
    tokio::spawn(async move {
        let mut scheduler = Scheduler::new(schedule, wall_clock_ms());
        loop {
            let status = node.raft_status();
            let is_leader = status.leader_id != 0 && status.leader_id == node.identity.member_id;
            scheduler.handle_leadership(is_leader, wall_clock_ms());
            drain(&mut scheduler, &node, &store, &config, &uploaded).await;
            scheduler.handle_applied_revision(node.read().current_revision());
            scheduler.handle_timeout(wall_clock_ms());
            drain(&mut scheduler, &node, &store, &config, &uploaded).await;
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    });
}

/// Carries out the scheduler's commands, answering each.
async fn drain(
    scheduler: &mut Scheduler,
    node: &Node,
    store: &Store,
    config: &BackupConfig,
    uploaded: &impl Fn(&str),
) {
    while let Some(command) = scheduler.poll_command() {
        match command {
            ScheduleCommand::TakeSnapshot { id, revision } => {
                let taken = take_and_upload(node, store, config).await;
                match &taken {
                    Ok(info) => {
                        tracing::info!(
                            snapshot = %info.name,
                            revision = info.revision,
                            size_bytes = info.size_bytes,
                            store = %config.location,
                            "snapshot taken"
                        );
                        uploaded(&info.name);
                        node.metrics
                            .observe_backup(wall_clock_ms(), info.size_bytes);
                    }
                    Err(e) => {
                        tracing::warn!(revision, "snapshot failed: {e}");
                        node.metrics.count_backup_failure();
                    }
                }
                scheduler.handle_snapshot_result(id, taken, wall_clock_ms());
            }
            ScheduleCommand::ListSnapshots { id } => {
                let listing = store
                    .list()
                    .await
                    .map(|objects| snapshots_in(&objects))
                    .map_err(|e| e.to_string());
                if let Err(e) = &listing {
                    tracing::warn!("cannot list the snapshots to prune: {e}");
                }
                scheduler.handle_listing(id, listing, wall_clock_ms());
            }
            ScheduleCommand::Prune { names } => {
                for name in names {
                    match store.delete(&name).await {
                        Ok(()) => tracing::info!(snapshot = %name, "pruned snapshot"),
                        Err(e) => tracing::warn!("cannot prune: {e}"),
                    }
                }
            }
        }
    }
}

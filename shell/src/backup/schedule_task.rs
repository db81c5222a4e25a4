//! The leader's backups: `core::schedule::Scheduler` driven by the running
//! member's leadership and revision, its commands carried out against the
//! store; and between full snapshots, the deltas of the chain.

use std::sync::Arc;
use std::time::Duration;

use e2d_core::schedule::{deltas_to_prune, ScheduleCommand, Scheduler, SchedulerConfig};

use super::delta::{self, ChainPosition, ShipError};
use super::take::take_and_upload;
use super::{snapshots_in, wall_clock_ms, BackupConfig, Store, Uploaded};
use crate::server::Node;

/// How often leadership and the applied revision are read.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What the task does after each poll, besides the scheduler's commands.
struct Deltas {
    interval_ms: u64,
    /// Where this leader's chain stands; `None` until found or started.
    chain: Option<ChainPosition>,
    /// The store was searched for a chain since this member became
    /// leader.
    searched: bool,
    next_at_ms: u64,
}

/// Takes snapshots and ships deltas while `node` leads, until the runtime
/// stops. `uploaded` hears of each snapshot and delta.
pub fn spawn(
    node: Arc<Node>,
    store: Arc<Store>,
    config: BackupConfig,
    schedule: SchedulerConfig,
    uploaded: impl Fn(Uploaded<'_>) + Send + Sync + 'static,
) {
    tokio::spawn(async move {
        let mut scheduler = Scheduler::new(schedule, wall_clock_ms());
        let mut deltas = Deltas {
            interval_ms: config.delta_interval_ms,
            chain: None,
            searched: false,
            next_at_ms: 0,
        };
        let poll = if deltas.interval_ms > 0 {
            POLL_INTERVAL.min(Duration::from_millis(deltas.interval_ms))
        } else {
            POLL_INTERVAL
        };
        let mut task = Task {
            node: &node,
            store: &store,
            config: &config,
            uploaded: &uploaded,
            listing: None,
        };
        loop {
            let status = node.raft_status();
            let is_leader = status.leader_id != 0 && status.leader_id == node.identity.member_id;
            if !is_leader {
                deltas.chain = None;
                deltas.searched = false;
                node.metrics.set_backed_up(None);
            }
            scheduler.handle_leadership(is_leader, wall_clock_ms());
            task.drain(&mut scheduler, &mut deltas).await;
            scheduler.handle_applied_revision(node.read().current_revision());
            scheduler.handle_timeout(wall_clock_ms());
            task.drain(&mut scheduler, &mut deltas).await;
            if is_leader && deltas.interval_ms > 0 {
                task.ship_delta(&mut scheduler, &mut deltas).await;
            }
            tokio::time::sleep(poll).await;
        }
    });
}

struct Task<'a, F> {
    node: &'a Node,
    store: &'a Store,
    config: &'a BackupConfig,
    uploaded: &'a F,
    /// The store's last listing, for the prune it leads to.
    listing: Option<Vec<super::store::StoredObject>>,
}

impl<F: Fn(Uploaded<'_>)> Task<'_, F> {
    /// Carries out the scheduler's commands, answering each.
    async fn drain(&mut self, scheduler: &mut Scheduler, deltas: &mut Deltas) {
        let (node, store, config) = (self.node, self.store, self.config);
        while let Some(command) = scheduler.poll_command() {
            match command {
                ScheduleCommand::TakeSnapshot { id, revision } => {
                    let taken = take_and_upload(node, store, config).await;
                    match &taken {
                        Ok(taken) => {
                            let info = &taken.info;
                            tracing::info!(
                                snapshot = %info.name,
                                revision = info.revision,
                                size_bytes = info.size_bytes,
                                store = %config.location,
                                "snapshot taken"
                            );
                            (self.uploaded)(Uploaded::Snapshot(&info.name));
                            node.metrics
                                .observe_backup(wall_clock_ms(), info.size_bytes);
                            node.metrics
                                .set_backed_up(Some((info.revision, info.taken_at_ms)));
                            if deltas.interval_ms > 0 {
                                // The next delta opens the new chain at once.
                                deltas.chain =
                                    Some(ChainPosition::at(info.clone(), taken.applied_index));
                                deltas.next_at_ms = 0;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(revision, "snapshot failed: {e}");
                            node.metrics.count_backup_failure();
                        }
                    }
                    scheduler.handle_snapshot_result(
                        id,
                        taken.map(|taken| taken.info),
                        wall_clock_ms(),
                    );
                }
                ScheduleCommand::ListSnapshots { id } => {
                    let listing = store.list().await.map_err(|e| e.to_string());
                    if let Err(e) = &listing {
                        tracing::warn!("cannot list the snapshots to prune: {e}");
                    }
                    let snapshots = match &listing {
                        Ok(objects) => Ok(snapshots_in(objects)),
                        Err(e) => Err(e.clone()),
                    };
                    self.listing = listing.ok();
                    scheduler.handle_listing(id, snapshots, wall_clock_ms());
                }
                ScheduleCommand::Prune { names } => {
                    // A delta goes with its snapshot: those pruned now, and
                    // those whose snapshot is gone.
                    let doomed_deltas = self.listing.take().map_or_else(Vec::new, |objects| {
                        deltas_to_prune(
                            &snapshots_in(&objects),
                            &delta::deltas_in(&objects),
                            &names,
                        )
                    });
                    self.prune(names.into_iter().chain(doomed_deltas)).await;
                }
            }
        }
    }

    async fn prune(&self, names: impl Iterator<Item = String>) {
        for name in names {
            match self.store.delete(&name).await {
                Ok(()) => tracing::info!(backup = %name, "pruned"),
                Err(e) => tracing::warn!("cannot prune: {e}"),
            }
        }
    }

    /// Ships a delta when one is due (the interval passed, or the journal
    /// is half full); finds the chain first after a leader change, and
    /// asks for a full snapshot at once when there is none to continue.
    async fn ship_delta(&mut self, scheduler: &mut Scheduler, deltas: &mut Deltas) {
        let node = self.node;
        if deltas.chain.is_none() && !deltas.searched {
            deltas.searched = true;
            match delta::find_chain(self.store, node.identity.cluster_id).await {
                Ok(Some(chain)) => {
                    tracing::info!(
                        snapshot = %chain.base.name,
                        from_index = chain.shipped_index,
                        "continuing the chain of deltas"
                    );
                    deltas.chain = Some(chain);
                }
                Ok(None) => {
                    tracing::info!("no chain of deltas to continue: taking a full snapshot");
                    scheduler.handle_chain_broken(wall_clock_ms());
                    self.drain(scheduler, deltas).await;
                }
                Err(e) => {
                    tracing::warn!("cannot list the store to continue its chain of deltas: {e}");
                    deltas.searched = false;
                }
            }
        }
        let Some(chain) = deltas.chain.as_mut() else {
            return;
        };
        let journal_half_full = node
            .delta_journal()
            .is_some_and(|journal| journal.bytes() * 2 >= journal.bytes_max());
        let now_ms = wall_clock_ms();
        if now_ms < deltas.next_at_ms && !journal_half_full {
            return;
        }
        match delta::ship(node, self.store, self.config, chain).await {
            Ok(shipped) => {
                deltas.next_at_ms = now_ms.saturating_add(deltas.interval_ms);
                if let Some(shipped) = shipped {
                    tracing::debug!(delta = %shipped.name, size_bytes = shipped.size_bytes, "delta shipped");
                    node.metrics
                        .observe_delta(wall_clock_ms(), shipped.size_bytes);
                    (self.uploaded)(Uploaded::Delta(&shipped.name));
                }
                node.metrics
                    .set_backed_up(Some((chain.shipped_revision, chain.shipped_time_ms)));
            }
            Err(e @ ShipError::Gap { .. }) => {
                tracing::warn!("the chain of deltas ends: {e}; taking a full snapshot");
                deltas.chain = None;
                scheduler.handle_chain_broken(wall_clock_ms());
                self.drain(scheduler, deltas).await;
            }
            Err(ShipError::Upload(e)) => {
                tracing::warn!("delta failed: {e}; trying again");
                node.metrics.count_delta_failure();
            }
        }
    }
}

//! Snapshot scheduling and retention: when the leader backs the cluster
//! up, and which backups it keeps.
//!
//! - [`snapshot_info`]: what a store listing says about a snapshot, and the
//!   naming scheme (names sort by time).
//! - [`delta_info`]: deltas, what each covers, and their names (grouped
//!   by the full snapshot they follow).
//! - [`chain`]: a full snapshot and its deltas: which chain a restore
//!   takes, which delta it reads next, how far a chain reaches, which
//!   deltas go with a pruned snapshot.
//! - [`retention`]: which snapshots a prune deletes ([`plan_prune`]).
//! - [`config`]: the scheduler's checked settings and its back-off.
//! - [`scheduler`]: the [`Scheduler`] state machine that asks the shell to
//!   take, list and prune.
//!
//! **Architecture invariant:** nothing here touches the store; the shell
//! runs the [`ScheduleCommand`]s and reports back.

pub mod chain;
pub mod config;
pub mod delta_info;
pub mod retention;
pub mod scheduler;
pub mod snapshot_info;
mod utc;

pub use chain::{
    chain_for, chains, deltas_to_prune, next_delta, reach, Chain, Reach, ReplayTarget,
};
pub use config::{ConfigError, SchedulerConfig};
pub use delta_info::{parse_delta_name, DeltaInfo, DeltaSpan};
pub use retention::{plan_prune, Retention};
pub use scheduler::{ScheduleCommand, Scheduler};
pub use snapshot_info::{newest_valid, parse_snapshot_name, snapshot_name, SnapshotInfo};
pub use utc::rfc3339 as utc_rfc3339;

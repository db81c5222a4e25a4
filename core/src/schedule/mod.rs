//! Snapshot scheduling and retention: when the leader backs the cluster
//! up, and which backups it keeps.
//!
//! - [`snapshot_info`]: what a store listing says about a snapshot, and the
//!   naming scheme (names sort by time).
//! - [`retention`]: which snapshots a prune deletes ([`plan_prune`]).
//! - [`config`]: the scheduler's checked settings and its back-off.
//! - [`scheduler`]: the [`Scheduler`] state machine that asks the shell to
//!   take, list and prune.
//!
//! **Architecture invariant:** nothing here touches the store; the shell
//! runs the [`ScheduleCommand`]s and reports back.

pub mod config;
pub mod retention;
pub mod scheduler;
pub mod snapshot_info;
mod utc;

pub use config::{ConfigError, SchedulerConfig};
pub use retention::{plan_prune, Retention};
pub use scheduler::{ScheduleCommand, Scheduler};
pub use snapshot_info::{newest_valid, parse_snapshot_name, snapshot_name, SnapshotInfo};
pub use utc::rfc3339 as utc_rfc3339;

//! The manager's settings and their checks.

use crate::version::Version;

/// Largest cluster e2d forms. etcd advises 3, 5 or 7 voting members; the
/// founding set travels in every node's gossip metadata, so it is bounded.
pub const CLUSTER_SIZE_MAX: usize = 9;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerConfig {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    /// `-n`: voting members the cluster should have.
    pub required_cluster_size: usize,
    /// How often the leader looks for dead members.
    pub health_check_interval_ms: u64,
    /// How long a member may be missing from gossip before it is removed.
    pub health_check_timeout_ms: u64,
    /// A snapshot store is configured: list it before founding a cluster.
    pub snapshots_configured: bool,
    /// Pause before a failed command is tried again.
    pub retry_interval_ms: u64,
    /// A size this node proposes for its cluster once it runs as a member,
    /// if the cluster's differs (`-n` given on a restart, changed since
    /// the node last proposed one).
    pub propose_cluster_size: Option<usize>,
    /// The cluster that removed this node's member, as its data dir
    /// records it once the member's data was moved aside; ignored when the
    /// data dir holds a member again.
    pub removed_from: Option<super::Removal>,
    /// The e2d version this node runs.
    pub version: Version,
    /// `--unsafe-auto-recover-after`: how long a majority of the voters
    /// must have been gone before the survivors restart the cluster from
    /// one of them; `None` (the default) never does.
    pub auto_recover_after_ms: Option<u64>,
    /// Rules broken on purpose, so that a test can show its checks catch
    /// the break; [`PlantedBugs::NONE`] everywhere else.
    pub planted: PlantedBugs,
}

/// Decision rules a test may break on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlantedBugs {
    /// Promote a learner before the server says it caught up.
    pub promote_before_caught_up: bool,
    /// Record the leader's own version as the cluster's without waiting
    /// for every member to run it.
    pub cluster_version_before_every_member: bool,
    /// Every survivor of a lost majority recovers the cluster alone at
    /// once, without standing and agreeing with the others.
    pub recover_every_survivor: bool,
    /// The survivor with the least up-to-date raft log recovers the
    /// cluster.
    pub recover_least_up_to_date: bool,
}

impl PlantedBugs {
    pub const NONE: PlantedBugs = PlantedBugs {
        promote_before_caught_up: false,
        cluster_version_before_every_member: false,
        recover_every_survivor: false,
        recover_least_up_to_date: false,
    };
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "a cluster size of {size} is not allowed (-n, e2d cluster resize): use an odd number from 1 to {CLUSTER_SIZE_MAX} \
         (an even size tolerates no more failures than the odd size below it)"
    )]
    ClusterSize { size: usize },
    #[error("--health-check-interval must be greater than zero")]
    HealthCheckInterval,
    #[error(
        "--health-check-timeout ({timeout_ms} ms) must be at least --health-check-interval ({interval_ms} ms)"
    )]
    HealthCheckTimeout { timeout_ms: u64, interval_ms: u64 },
    #[error(
        "--unsafe-auto-recover-after ({after_ms} ms) must be longer than --health-check-timeout ({timeout_ms} ms): \
         a majority cut off by a partition must remove the members it lost before they could recover on their own"
    )]
    AutoRecoverAfter { after_ms: u64, timeout_ms: u64 },
    #[error("the node needs a name")]
    EmptyName,
}

/// Fails unless `size` is a cluster size e2d forms: odd, 1 to 9.
pub fn check_cluster_size(size: usize) -> Result<(), ConfigError> {
    if size == 0 || size.is_multiple_of(2) || size > CLUSTER_SIZE_MAX {
        return Err(ConfigError::ClusterSize { size });
    }
    Ok(())
}

impl ManagerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let size = self.required_cluster_size;
        check_cluster_size(size)?;
        if let Some(size) = self.propose_cluster_size {
            check_cluster_size(size)?;
        }
        if self.health_check_interval_ms == 0 {
            return Err(ConfigError::HealthCheckInterval);
        }
        if self.health_check_timeout_ms < self.health_check_interval_ms {
            return Err(ConfigError::HealthCheckTimeout {
                timeout_ms: self.health_check_timeout_ms,
                interval_ms: self.health_check_interval_ms,
            });
        }
        if let Some(after_ms) = self.auto_recover_after_ms {
            if after_ms <= self.health_check_timeout_ms {
                return Err(ConfigError::AutoRecoverAfter {
                    after_ms,
                    timeout_ms: self.health_check_timeout_ms,
                });
            }
        }
        if self.name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        Ok(())
    }
}

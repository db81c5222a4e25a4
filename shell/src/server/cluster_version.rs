//! The cluster's version as a replicated setting: the key
//! `/_e2d/cluster-version`, the lowest e2d version its members run, which
//! the leader's cluster manager records once every member runs a newer one
//! (it only rises). Until one is recorded the cluster runs at
//! [`CLUSTER_VERSION_BASELINE`].

use e2d_core::version::{Version, CLUSTER_VERSION_BASELINE};

use e2d_core::StateMachine;

use super::{replicated_setting, Node};
use crate::storage::DiskBackend;

pub const CLUSTER_VERSION_KEY: &[u8] = b"/_e2d/cluster-version";

/// The e2d version this binary is (under `--cfg madsim`, the one the
/// simulator gave the machine, if it gave one).
pub fn own() -> Version {
    #[cfg(madsim)]
    if let Some(version) = crate::sim_versions::of_this_machine() {
        return version;
    }
    // The crate's own version is `major.minor.patch` (a unit test holds
    // it so); the baseline keeps a build with another form working.
    Version::parse(env!("CARGO_PKG_VERSION")).unwrap_or(CLUSTER_VERSION_BASELINE)
}

/// The recorded cluster version, if one was.
pub fn recorded(node: &Node) -> Option<Version> {
    recorded_in(&node.read())
}

/// The cluster version recorded in `state`, if one was.
pub fn recorded_in(state: &StateMachine<DiskBackend>) -> Option<Version> {
    Version::parse(&replicated_setting::read_from(state, CLUSTER_VERSION_KEY)?)
}

/// Fails if this binary is older than the cluster version `state`
/// records: it may not apply what the cluster replicates (etcd refuses
/// such a member too).
pub fn check_own_against(state: &StateMachine<DiskBackend>) -> Result<(), String> {
    let own = own();
    match recorded_in(state) {
        Some(cluster) if own < cluster => Err(format!(
            "this member's cluster runs at version {cluster} and this e2d is {own}: \
             start it with e2d {cluster} or later (a cluster version never goes back down)"
        )),
        _ => Ok(()),
    }
}

/// The version the cluster runs at.
pub fn effective(node: &Node) -> Version {
    recorded(node).unwrap_or(CLUSTER_VERSION_BASELINE)
}

/// Records `version` as the cluster's, if its members are still the ones
/// of `expected` (sorted ids) that the version was decided on.
pub async fn record(node: &Node, version: Version, expected: &[u64]) -> Result<(), String> {
    let members = node.read().members().map_err(|e| e.to_string())?;
    let mut ids: Vec<u64> = members.iter().map(|m| m.member_id).collect();
    ids.sort_unstable();
    if ids != expected {
        return Err(format!(
            "the members changed since every member was seen to run e2d {version} or later"
        ));
    }
    // Only upward, and only over the value it was decided on: a leader
    // that has not applied the newest record yet must not lower it.
    let read = replicated_setting::read(node, CLUSTER_VERSION_KEY);
    let current = read.as_deref().and_then(Version::parse);
    if let Some(current) = current.filter(|&current| current >= version) {
        return Err(format!("the cluster version is {current} already"));
    }
    let written = replicated_setting::write_if_unchanged(
        node,
        CLUSTER_VERSION_KEY,
        read.as_deref(),
        version.to_string(),
    )
    .await
    .map_err(|e| format!("cannot record the cluster version {version}: {e}"))?;
    if !written {
        return Err("the cluster version changed while it was being recorded".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_crate_has_a_released_version() {
        assert!(e2d_core::version::Version::parse(env!("CARGO_PKG_VERSION")).is_some());
    }
}

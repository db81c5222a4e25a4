//! The cluster's version as a replicated setting: the key
//! `/_e2d/cluster-version`, the lowest e2d version its members run, which
//! the leader's cluster manager records once every member runs a newer one
//! (it only rises). Until one is recorded the cluster runs at
//! [`CLUSTER_VERSION_BASELINE`].

use e2d_core::version::{Version, CLUSTER_VERSION_BASELINE};

use super::{replicated_setting, Node};

pub const CLUSTER_VERSION_KEY: &[u8] = b"/_e2d/cluster-version";

/// The e2d version this binary is.
pub fn own() -> Version {
    // The crate's own version is `major.minor.patch` (a unit test holds
    // it so); the baseline keeps a build with another form working.
    Version::parse(env!("CARGO_PKG_VERSION")).unwrap_or(CLUSTER_VERSION_BASELINE)
}

/// The recorded cluster version, if one was.
pub fn recorded(node: &Node) -> Option<Version> {
    Version::parse(&replicated_setting::read(node, CLUSTER_VERSION_KEY)?)
}

/// The version the cluster runs at.
pub fn effective(node: &Node) -> Version {
    recorded(node).unwrap_or(CLUSTER_VERSION_BASELINE)
}

/// Records `version` as the cluster's.
pub async fn record(node: &Node, version: Version) -> Result<(), String> {
    replicated_setting::write(node, CLUSTER_VERSION_KEY, version.to_string())
        .await
        .map_err(|e| format!("cannot record the cluster version {version}: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_crate_has_a_released_version() {
        assert!(e2d_core::version::Version::parse(env!("CARGO_PKG_VERSION")).is_some());
    }
}

//! e2d's versions for rolling upgrades: each member's, the cluster's (the
//! lowest its members run, as etcd's cluster version), and the features
//! that change what is replicated and so wait until every member has them.

use std::fmt;

/// A released e2d version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

/// The cluster version of a cluster that never recorded one: the first
/// e2d that keeps a cluster version. Nothing is written while the members
/// run no newer one, so a cluster's revision never moves on its own.
pub const CLUSTER_VERSION_BASELINE: Version = Version::new(0, 1, 0);

/// Longest version text a node may publish in gossip.
pub const VERSION_BYTES_MAX: usize = 32;

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Reads `major.minor.patch`, with build metadata (`+...`) ignored. A
    /// pre-release (`-rc.1`) or anything else is not a version: a member
    /// that runs one never raises the cluster's version.
    pub fn parse(text: &str) -> Option<Version> {
        let core = text.split_once('+').map_or(text, |(core, _)| core);
        let mut parts = core.split('.');
        let mut next = || -> Option<u32> {
            let part = parts.next()?;
            let digits_only = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
            // No leading zeros, as semver writes numbers.
            let canonical = part == "0" || !part.starts_with('0');
            (digits_only && canonical)
                .then(|| part.parse().ok())
                .flatten()
        };
        let version = Version::new(next()?, next()?, next()?);
        parts.next().is_none().then_some(version)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The version a cluster runs at, given each member's (None where a
/// member's is not known): the lowest, or None while any is unknown.
pub fn lowest(versions: impl IntoIterator<Item = Option<Version>>) -> Option<Version> {
    let mut lowest: Option<Version> = None;
    for version in versions {
        let version = version?;
        lowest = Some(lowest.map_or(version, |low| low.min(version)));
    }
    lowest
}

/// The cluster version to record, if the members' lowest is above the
/// recorded one (the baseline when none is): it only ever rises.
pub fn to_record(recorded: Option<Version>, members_lowest: Option<Version>) -> Option<Version> {
    let recorded = recorded.unwrap_or(CLUSTER_VERSION_BASELINE);
    members_lowest.filter(|&lowest| lowest > recorded)
}

/// A feature that changes what the cluster replicates: a member that
/// predates it could not apply what it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Users, roles and `AuthEnable`.
    Auth,
    /// The replicated cluster size (`e2d cluster resize`, `-n` on restart).
    ClusterSize,
}

impl Feature {
    /// The first e2d version that has the feature.
    pub fn first_version(self) -> Version {
        match self {
            Feature::Auth | Feature::ClusterSize => Version::new(0, 1, 0),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Feature::Auth => "auth",
            Feature::ClusterSize => "resizing the cluster",
        }
    }
}

/// A feature was asked for below its version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} needs every member to run e2d {} or later, and the cluster runs at {cluster}: upgrade the older members first",
    feature.name(),
    feature.first_version()
)]
pub struct FeatureUnavailable {
    pub feature: Feature,
    pub cluster: Version,
}

/// Fails unless a cluster at `cluster` may use `feature`.
pub fn require(feature: Feature, cluster: Version) -> Result<(), FeatureUnavailable> {
    if cluster < feature.first_version() {
        return Err(FeatureUnavailable { feature, cluster });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_released_versions_only() {
        assert_eq!(Version::parse("0.1.0"), Some(Version::new(0, 1, 0)));
        assert_eq!(
            Version::parse("12.0.7+git.abc"),
            Some(Version::new(12, 0, 7))
        );
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "1.2.x",
            "01.2.3",
            "1.2.3-rc.1",
            " 1.2.3",
            "1..3",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_cluster_runs_at_its_lowest_member_and_not_while_one_is_unknown() {
        let (a, b) = (Version::new(0, 1, 0), Version::new(0, 2, 0));
        assert_eq!(lowest([Some(b), Some(a), Some(b)]), Some(a));
        assert_eq!(lowest([Some(b), None]), None);
        assert_eq!(lowest([]), None);
    }

    #[test]
    fn the_recorded_version_only_rises_and_the_baseline_is_never_written() {
        let (base, next) = (CLUSTER_VERSION_BASELINE, Version::new(0, 2, 0));
        assert_eq!(to_record(None, Some(base)), None);
        assert_eq!(to_record(None, Some(next)), Some(next));
        assert_eq!(to_record(Some(next), Some(base)), None);
        assert_eq!(to_record(Some(next), Some(next)), None);
        assert_eq!(to_record(Some(base), None), None);
    }

    #[test]
    fn a_feature_below_its_version_is_refused_with_what_to_do() {
        let old = Version::new(0, 0, 9);
        let refused = require(Feature::Auth, old).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "auth needs every member to run e2d 0.1.0 or later, and the cluster runs at 0.0.9: upgrade the older members first"
        );
        assert!(require(Feature::ClusterSize, CLUSTER_VERSION_BASELINE).is_ok());
    }

    proptest! {
        #[test]
        fn display_and_parse_agree(major in 0u32..1000, minor in 0u32..1000, patch in 0u32..1000) {
            let version = Version::new(major, minor, patch);
            prop_assert_eq!(Version::parse(&version.to_string()), Some(version));
            prop_assert!(version.to_string().len() <= VERSION_BYTES_MAX);
        }

        #[test]
        fn lowest_is_a_member_and_at_most_every_member(
            versions in prop::collection::vec((0u32..3, 0u32..3, 0u32..3), 1..9),
        ) {
            let versions: Vec<Version> =
                versions.into_iter().map(|(a, b, c)| Version::new(a, b, c)).collect();
            let low = lowest(versions.iter().copied().map(Some)).unwrap();
            prop_assert!(versions.contains(&low));
            prop_assert!(versions.iter().all(|&v| low <= v));
            // Whatever it records, a cluster never goes below what it had.
            for &recorded in &versions {
                if let Some(new) = to_record(Some(recorded), Some(low)) {
                    prop_assert!(new > recorded);
                }
            }
        }
    }
}

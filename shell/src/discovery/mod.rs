//! Peer discovery: the addresses of the other nodes, from a cloud API or
//! DNS, as gossip seeds (`--peer-discovery`).
//!
//! Each method is a [`PeerSource`]. The real ones ask EC2 and Auto Scaling
//! (`aws`, with the instance metadata service in `imds`), DigitalOcean
//! (`digitalocean`) or DNS (`k8s_dns`); under `--cfg madsim` every method
//! reads the simulator's in-memory cloud (`simulated`). `seeding` runs the
//! source at start and again whenever gossip has fewer peers than the
//! cluster needs, with back-off after an empty or failed answer.

pub mod method;
pub mod seeding;
pub mod simulated;

#[cfg(not(madsim))]
mod aws;
#[cfg(not(madsim))]
mod digitalocean;
#[cfg(not(madsim))]
pub(crate) mod http;
#[cfg(not(madsim))]
mod imds;
#[cfg(not(madsim))]
mod k8s_dns;
#[cfg(not(madsim))]
pub mod report;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

pub use method::Method;

/// Longest a single HTTP or DNS exchange of discovery may take.
#[cfg_attr(madsim, allow(dead_code))]
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Most pages read from one paged listing.
#[cfg_attr(madsim, allow(dead_code))]
const PAGES_MAX: usize = 100;
/// Most peers one answer may hold; the rest are left out.
pub const PEERS_MAX: usize = 1_000;

/// What a discovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    /// The peers' addresses, sorted, without this node.
    pub peers: Vec<IpAddr>,
    /// How this node was told apart from its peers.
    pub self_excluded_by: String,
    /// Things the operator should know (a fallback taken, a peer left out).
    pub warnings: Vec<String>,
}

/// Why a discovery failed; the reason says what to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryError {
    pub method: &'static str,
    pub reason: String,
}

impl DiscoveryError {
    fn new(method: &'static str, reason: impl Into<String>) -> Self {
        Self {
            method,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.method, self.reason)
    }
}

impl std::error::Error for DiscoveryError {}

pub type DiscoverFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Discovered, DiscoveryError>> + Send + 'a>>;

/// One way of finding peers.
pub trait PeerSource: Send + Sync {
    /// The method, as `--peer-discovery` spells it.
    fn method(&self) -> String;
    /// Asks the cloud (or DNS) now.
    fn discover(&self) -> DiscoverFuture<'_>;
}

/// What the sources need beyond the method: API endpoints and tokens, the
/// DNS servers, and this node's own addresses.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub do_access_token: Option<String>,
    pub do_api_url: String,
    pub do_metadata_url: String,
    /// DNS servers for k8s-dns; empty means the system's configuration.
    pub dns_servers: Vec<SocketAddr>,
    /// The addresses this node is reached at (advertised and local).
    pub own_ips: Vec<IpAddr>,
}

/// The source for `method`.
#[cfg(not(madsim))]
pub fn open(method: &Method, settings: &Settings) -> Result<Box<dyn PeerSource>, DiscoveryError> {
    Ok(match method {
        Method::AwsAutoscalingGroup => Box::new(aws::AutoScalingGroup::new(settings)?),
        Method::Ec2Tags(tags) => Box::new(aws::Ec2Tags::new(tags.clone(), settings)?),
        Method::DoTags(tags) => Box::new(digitalocean::DoTags::new(tags.clone(), settings)?),
        Method::K8sDns { service } => Box::new(k8s_dns::K8sDns::new(service, settings)?),
    })
}

/// Under the simulator every method reads the in-memory cloud.
#[cfg(madsim)]
pub fn open(method: &Method, settings: &Settings) -> Result<Box<dyn PeerSource>, DiscoveryError> {
    Ok(Box::new(simulated::SimulatedSource::new(
        method.clone(),
        settings.own_ips.clone(),
    )))
}

/// This machine's interface addresses and `advertised`, deduplicated.
pub fn own_ips(advertised: &[IpAddr]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = advertised.to_vec();
    #[cfg(not(madsim))]
    if let Ok(interfaces) = if_addrs::get_if_addrs() {
        ips.extend(interfaces.iter().map(|i| i.ip()));
    }
    ips.sort();
    ips.dedup();
    ips
}

/// `found` sorted, deduplicated and bounded, without `own`; says in
/// `discovered` what was left out.
pub(crate) fn finish(
    mut found: Vec<IpAddr>,
    own: &[IpAddr],
    self_excluded_by: String,
    mut warnings: Vec<String>,
) -> Discovered {
    found.sort();
    found.dedup();
    found.retain(|ip| !own.contains(ip) && !ip.is_unspecified());
    if found.len() > PEERS_MAX {
        warnings.push(format!(
            "{} peers found; only the first {PEERS_MAX} are used",
            found.len()
        ));
        found.truncate(PEERS_MAX);
    }
    Discovered {
        peers: found,
        self_excluded_by,
        warnings,
    }
}

/// This node's id in the cloud (`kind`: "instance", "droplet") as its
/// metadata service told it, or `None` with a warning that its own
/// addresses are left out instead.
#[cfg_attr(madsim, allow(dead_code))]
pub(crate) fn own_id_or_warn<T>(
    id: Result<T, String>,
    kind: &str,
    warnings: &mut Vec<String>,
) -> Option<T> {
    match id {
        Ok(id) => Some(id),
        Err(e) => {
            warnings.push(format!(
                "cannot tell this {kind}'s id ({e}); leaving out this node's own addresses instead"
            ));
            None
        }
    }
}

/// [`finish`] for a cloud listing: with `own_id` known the caller has
/// skipped this node's entry already; without it, `own_ips` go.
#[cfg_attr(madsim, allow(dead_code))]
pub(crate) fn finish_listing(
    found: Vec<IpAddr>,
    own_id: Option<impl fmt::Display>,
    kind: &str,
    own_ips: &[IpAddr],
    warnings: Vec<String>,
) -> Discovered {
    match own_id {
        Some(id) => finish(found, &[], format!("{kind} id {id}"), warnings),
        None => finish(found, own_ips, "this node's own addresses".into(), warnings),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::{finish, PEERS_MAX};

    #[test]
    fn results_are_sorted_deduplicated_bounded_and_leave_this_node_out() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let found = vec![
            ip("10.0.0.3"),
            ip("10.0.0.1"),
            ip("10.0.0.3"),
            ip("10.0.0.2"),
        ];
        let done = finish(found, &[ip("10.0.0.2")], "own addresses".into(), vec![]);
        assert_eq!(done.peers, vec![ip("10.0.0.1"), ip("10.0.0.3")]);
        assert!(done.warnings.is_empty());

        let many: Vec<IpAddr> = (0..PEERS_MAX as u32 + 5)
            .map(|i| IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()))
            .collect();
        let done = finish(many, &[], String::new(), vec![]);
        assert_eq!(done.peers.len(), PEERS_MAX);
        assert_eq!(done.warnings.len(), 1, "{:?}", done.warnings);
    }
}

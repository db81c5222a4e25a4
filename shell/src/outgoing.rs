//! Connections this node opens to other members. All of them go to peer
//! ports (raft, snapshots, lease keep-alives, member lookups, the cluster
//! manager's calls, membership changes relayed to the leader), where
//! members trust each other; an https URL gets TLS with the peer
//! certificate. The node never calls another member's client port, so
//! nothing it does as the cluster depends on what auth allows clients.

use tonic::transport::{Channel, Endpoint};

/// The endpoint for a peer `url`, with TLS when it is https.
pub fn endpoint(url: &str) -> Result<Endpoint, String> {
    let endpoint =
        Endpoint::from_shared(url.to_string()).map_err(|e| format!("{url} is not a URL: {e}"))?;
    #[cfg(not(madsim))]
    let endpoint = crate::tls::client::secure(endpoint, crate::tls::material::Role::Peer)?;
    Ok(endpoint)
}

/// Connects to the peer `url`.
pub async fn connect(url: &str) -> Result<Channel, String> {
    endpoint(url)?
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))
}

//! Connections this node opens to other members: to their peer ports
//! (raft, snapshots, lease keep-alives, member lookups) and to their
//! client ports (the manager's cluster calls, membership changes relayed
//! to the leader). An https URL gets TLS, with the certificate of the
//! role the call is made in.

use tonic::transport::{Channel, Endpoint};

/// In which role a call is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallAs {
    /// To a peer port, with the peer certificate.
    Peer,
    /// To a client port, with the client certificate.
    Client,
}

/// The endpoint for `url`, with TLS when it is https.
pub fn endpoint(url: &str, role: CallAs) -> Result<Endpoint, String> {
    let endpoint =
        Endpoint::from_shared(url.to_string()).map_err(|e| format!("{url} is not a URL: {e}"))?;
    #[cfg(not(madsim))]
    let endpoint = crate::tls::client::secure(
        endpoint,
        match role {
            CallAs::Peer => crate::tls::material::Role::Peer,
            CallAs::Client => crate::tls::material::Role::Client,
        },
    )?;
    #[cfg(madsim)]
    let _ = role;
    Ok(endpoint)
}

/// Connects to `url` in `role`.
pub async fn connect(url: &str, role: CallAs) -> Result<Channel, String> {
    endpoint(url, role)?
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))
}

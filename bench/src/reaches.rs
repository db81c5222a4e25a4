//! `reaches`: waits for a member to serve a revision, as a bench times a
//! member that joins. One process polls the member's status on one
//! connection; a poll that started a client process each time (`etcdctl
//! endpoint status`) would take CPU from the members whose catch-up it
//! times.

use std::time::{Duration, Instant};

use etcd_client::Client;

use crate::workloads::Error;
use crate::Cli;

/// How long one status request may take before the poll tries again.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Polls the first of `--endpoints` every `poll` until it answers a status
/// at `revision` or later, and returns when that answer came, in
/// nanoseconds since the Unix epoch (a script times from its own clock);
/// a member not yet listening, or one that fails a request, is tried
/// again at the next poll. Gives up after `timeout`.
pub async fn reaches(
    cli: &Cli,
    revision: i64,
    poll: Duration,
    timeout: Duration,
) -> Result<u128, Error> {
    let endpoint = &cli.endpoints[0];
    let tls = crate::workloads::tls_options(cli)?;
    let started = Instant::now();
    let mut client: Option<Client> = None;
    let mut last = String::from("no answer yet");
    loop {
        if client.is_none() {
            match crate::channel::connect(endpoint, tls.clone()).await {
                Ok(channel) => client = Some(Client::from_channel(channel, None).await?),
                Err(e) => last = format!("cannot connect: {e}"),
            }
        }
        if let Some(connected) = client.as_mut() {
            match tokio::time::timeout(STATUS_TIMEOUT, connected.status()).await {
                Ok(Ok(status)) => {
                    let served = status.header().map_or(0, |h| h.revision());
                    if served >= revision {
                        let now = std::time::SystemTime::now();
                        return Ok(now.duration_since(std::time::UNIX_EPOCH)?.as_nanos());
                    }
                    last = format!("serves revision {served}");
                }
                Ok(Err(e)) => {
                    last = format!("status failed: {e}");
                    client = None;
                }
                Err(_) => {
                    last = format!("no status within {STATUS_TIMEOUT:?}");
                    client = None;
                }
            }
        }
        if started.elapsed() >= timeout {
            return Err(format!(
                "{endpoint} did not reach revision {revision} within {timeout:?} ({last})"
            )
            .into());
        }
        tokio::time::sleep(poll).await;
    }
}

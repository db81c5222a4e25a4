//! Keeps gossip seeded: at start, and again whenever gossip has fewer live
//! peers than the cluster needs, the bootstrap addresses are resolved and
//! the discovery method asked; gossip then (re)joins through all of them.
//! An empty or failed discovery is retried with capped exponential
//! back-off, and the log says why.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::PeerSource;
use crate::gossip::Gossip;
use crate::run::seeds::resolve_seeds;

/// Time between checks while gossip has the peers it needs, and between
/// re-seedings while it does not.
const CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// First wait after an empty or failed discovery; it doubles up to
/// `BACKOFF_MAX`.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Re-seedings from bootstrap addresses alone between warnings.
const RESEEDS_PER_WARNING: u32 = 3;

/// Where seeds come from.
pub struct Seeding {
    /// `--bootstrap-addrs`, resolved again each round.
    pub bootstrap_addrs: Vec<String>,
    /// The gossip port every discovered address gets.
    pub gossip_port: u16,
    pub source: Option<Box<dyn PeerSource>>,
    /// Live gossip peers below which seeding runs again.
    pub peers_needed: usize,
}

/// Capped exponential back-off.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { next: BACKOFF_MIN }
    }

    fn wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        wait
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// Runs until the task is aborted; `alive_peers` counts gossip's live
/// peers now.
pub async fn keep_seeding(
    seeding: Seeding,
    gossip: Arc<Gossip>,
    alive_peers: impl Fn() -> usize + Send,
) {
    let mut backoff = Backoff::new();
    let mut short_rounds: u32 = 0;
    let mut last_found: Vec<SocketAddr> = Vec::new();
    let mut wait = Duration::ZERO;
    loop {
        tokio::time::sleep(wait).await;
        wait = CHECK_INTERVAL;
        let alive = alive_peers();
        if alive >= seeding.peers_needed {
            short_rounds = 0;
            continue;
        }
        short_rounds += 1;
        let mut seeds = resolve_seeds(&seeding.bootstrap_addrs, seeding.gossip_port).await;
        match &seeding.source {
            Some(source) => match source.discover().await {
                Ok(found) => {
                    for warning in &found.warnings {
                        tracing::warn!(method = %source.method(), "peer discovery: {warning}");
                    }
                    let addrs: Vec<SocketAddr> = found
                        .peers
                        .iter()
                        .map(|ip| SocketAddr::new(*ip, seeding.gossip_port))
                        .collect();
                    if addrs.is_empty() {
                        wait = backoff.wait();
                        tracing::warn!(
                            method = %source.method(),
                            self_excluded_by = %found.self_excluded_by,
                            "peer discovery found no other node yet; asking again in {wait:?}"
                        );
                    } else {
                        backoff.reset();
                        if addrs != last_found {
                            tracing::info!(method = %source.method(), peers = ?addrs, "peer discovery found peers");
                            last_found = addrs.clone();
                        }
                    }
                    seeds.extend(addrs);
                }
                Err(e) => {
                    wait = backoff.wait();
                    tracing::warn!("peer discovery failed: {e}; asking again in {wait:?}");
                }
            },
            None if alive == 0 && short_rounds.is_multiple_of(RESEEDS_PER_WARNING) => {
                tracing::warn!(
                    bootstrap_addrs = %seeding.bootstrap_addrs.join(","),
                    resolved = ?seeds,
                    "no other node has answered on gossip yet; still trying the bootstrap addresses (check that they run e2d and that UDP and TCP reach their gossip port)"
                );
            }
            None => {}
        }
        seeds.sort();
        seeds.dedup();
        if !seeds.is_empty() {
            gossip.join(seeds).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Backoff, BACKOFF_MAX, BACKOFF_MIN};

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new();
        let waits: Vec<_> = (0..9).map(|_| backoff.wait()).collect();
        assert_eq!(waits[0], BACKOFF_MIN);
        assert_eq!(waits[1], BACKOFF_MIN * 2);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*waits.last().unwrap(), BACKOFF_MAX);
        backoff.reset();
        assert_eq!(backoff.wait(), BACKOFF_MIN);
    }
}

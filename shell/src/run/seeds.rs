//! Gossip seeds from `--bootstrap-addrs`.

use std::net::{IpAddr, SocketAddr};

/// `host` or `host:port` seeds as socket addresses; names that do not
/// resolve are left out with a warning.
pub async fn resolve_seeds(seeds: &[String], default_port: u16) -> Vec<SocketAddr> {
    let mut resolved = Vec::new();
    for seed in seeds.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let with_port = seed_with_port(seed, default_port);
        let found = tokio::net::lookup_host(with_port).await;
        match found {
            Ok(addrs) => resolved.extend(addrs),
            Err(e) => {
                tracing::warn!(seed, error = %e, "bootstrap address does not resolve; leaving it out")
            }
        }
    }
    resolved.sort();
    resolved.dedup();
    resolved
}

/// `seed` as `host:port`: `host`, `host:port`, `ip`, `ip:port`,
/// `[v6]:port` and a bare IPv6 address all work.
fn seed_with_port(seed: &str, default_port: u16) -> String {
    if let Ok(ip) = seed.parse::<IpAddr>() {
        return SocketAddr::new(ip, default_port).to_string();
    }
    let has_port = seed
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if has_port {
        seed.to_string()
    } else {
        format!("{seed}:{default_port}")
    }
}

#[cfg(test)]
mod tests {
    use super::seed_with_port;

    #[test]
    fn seeds_get_the_gossip_port_when_they_have_none() {
        for (seed, expected) in [
            ("10.0.2.15", "10.0.2.15:7980"),
            ("10.0.2.15:8000", "10.0.2.15:8000"),
            ("node-1.internal", "node-1.internal:7980"),
            ("node-1.internal:8000", "node-1.internal:8000"),
            ("::1", "[::1]:7980"),
            ("[::1]:8000", "[::1]:8000"),
        ] {
            assert_eq!(seed_with_port(seed, 7980), expected, "{seed}");
        }
    }
}

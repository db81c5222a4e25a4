//! The one place a node seeds its pseudo-random generators from.

/// A seed for this node's random choices (gossip, election timeouts,
/// generated names) that differs between processes and calls:
/// the time through a randomly keyed hash (std seeds the keys from the
/// OS; under madsim, from the simulation's seed, so runs replay).
pub fn node_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(nanos);
    hasher.finish()
}

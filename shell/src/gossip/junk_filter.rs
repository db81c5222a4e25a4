//! Sheds floods of junk: a source address whose datagrams keep failing to
//! decode is ignored for a while, so a misbehaving or hostile sender cannot
//! make the gossip loop spend its time on it.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// Decode failures a source may cause per window before it is muted.
pub const JUNK_PER_WINDOW_MAX: u32 = 20;
/// The counting window and the mute time.
pub const WINDOW_MS: u64 = 1_000;
pub const MUTE_MS: u64 = 10_000;
/// Sources tracked at once; beyond it the stalest entry is forgotten.
pub const SOURCES_MAX: usize = 1_024;

#[derive(Debug, Clone, Copy)]
struct Source {
    window_start_ms: u64,
    junk_in_window: u32,
    muted_until_ms: u64,
}

#[derive(Debug, Default)]
pub struct JunkFilter {
    sources: BTreeMap<IpAddr, Source>,
    /// Datagrams dropped because their source was muted.
    pub dropped_total: u64,
}

impl JunkFilter {
    /// Whether a datagram from `ip` should be processed now.
    pub fn admit(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        let muted = self
            .sources
            .get(&ip)
            .is_some_and(|s| now_ms < s.muted_until_ms);
        if muted {
            self.dropped_total += 1;
        }
        !muted
    }

    /// A datagram from `ip` failed to decode.
    pub fn record_junk(&mut self, ip: IpAddr, now_ms: u64) {
        if !self.sources.contains_key(&ip) && self.sources.len() >= SOURCES_MAX {
            let stalest = self
                .sources
                .iter()
                .min_by_key(|(_, s)| s.window_start_ms)
                .map(|(ip, _)| *ip);
            if let Some(stalest) = stalest {
                self.sources.remove(&stalest);
            }
        }
        let source = self.sources.entry(ip).or_insert(Source {
            window_start_ms: now_ms,
            junk_in_window: 0,
            muted_until_ms: 0,
        });
        if now_ms >= source.window_start_ms + WINDOW_MS {
            source.window_start_ms = now_ms;
            source.junk_in_window = 0;
        }
        source.junk_in_window += 1;
        if source.junk_in_window > JUNK_PER_WINDOW_MAX {
            source.muted_until_ms = now_ms + MUTE_MS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_flooding_junk_is_muted_then_forgiven() {
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let other: IpAddr = "10.0.0.8".parse().unwrap();
        let mut filter = JunkFilter::default();
        for _ in 0..JUNK_PER_WINDOW_MAX {
            filter.record_junk(ip, 5);
        }
        assert!(filter.admit(ip, 5), "within the allowance");
        filter.record_junk(ip, 5);
        assert!(!filter.admit(ip, 6));
        assert!(filter.admit(other, 6), "other sources are not affected");
        assert!(filter.admit(ip, 5 + MUTE_MS));
        assert_eq!(filter.dropped_total, 1);
    }

    #[test]
    fn tracked_sources_are_bounded() {
        let mut filter = JunkFilter::default();
        for i in 0..(SOURCES_MAX as u32 + 10) {
            filter.record_junk(IpAddr::from(i.to_be_bytes()), u64::from(i));
        }
        assert_eq!(filter.sources.len(), SOURCES_MAX);
    }
}

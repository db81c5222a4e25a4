//! Timings and bounds of the SWIM machine, with memberlist's LAN defaults
//! (but a shorter push-pull period).

use super::meta::META_NAMES_MAX;

/// Up members one push-pull interval serves; each further such number of
/// members begun adds an interval to the period (memberlist stretches its
/// period past 32 members too, by log2).
pub const PUSH_PULL_MEMBERS_PER_INTERVAL: usize = 32;

/// Longest textual socket address accepted on the wire
/// (`[ffff:...:ffff%scope]:65535` fits well within it).
pub const ADDR_BYTES_MAX: usize = 64;

/// How often and how hard a node probes, gossips and exchanges state, and
/// the bounds on everything it holds or sends.
///
/// All nodes of a group should run the same config: a node refuses
/// datagrams larger than its own `max_packet_bytes` and names or URLs longer
/// than its own limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// One member is probed per interval.
    pub probe_interval_ms: u64,
    /// How long a direct ping waits for its ack before indirect probes go out.
    pub probe_timeout_ms: u64,
    /// Members asked to probe the target on our behalf after a direct miss.
    pub indirect_checks: usize,
    /// Suspicion lasts `suspicion_mult * max(1, log10(n)) * probe_interval_ms`.
    pub suspicion_mult: u32,
    /// Each update is sent at most `retransmit_mult * ceil(log10(n + 1))` times.
    pub retransmit_mult: u32,
    /// Queued updates are gossiped this often (when there are any).
    pub gossip_interval_ms: u64,
    /// Members each gossip tick sends to.
    pub gossip_nodes: usize,
    /// A dead member still receives gossip for this long, so it can hear of
    /// its death and refute it.
    pub gossip_to_the_dead_ms: u64,
    /// A full state exchange with one random up member this often, in a
    /// group of up to [`PUSH_PULL_MEMBERS_PER_INTERVAL`] up members; larger
    /// groups exchange less often ([`Config::push_pull_period_ms`]).
    pub push_pull_interval_ms: u64,
    /// While no other member is up, the seeds are pushed-pulled this often.
    pub rejoin_interval_ms: u64,
    /// A random dead member is pushed-pulled this often, so that the halves
    /// of a healed partition find each other again.
    pub reconnect_interval_ms: u64,
    /// Largest datagram sent or accepted.
    pub max_packet_bytes: usize,
    /// Longest member name.
    pub name_bytes_max: usize,
    /// Longest client or peer URL in a member's metadata.
    pub url_bytes_max: usize,
    /// Most members (the local node included) held in the view; beyond it
    /// new names are ignored, after the oldest dead or left member has been
    /// forgotten to make room if there is one.
    pub members_max: usize,
    /// Most indirect probes relayed for others at once; further requests are
    /// ignored until one completes.
    pub relays_max: usize,
    /// Most seeds remembered by `join`.
    pub seeds_max: usize,
}

impl Config {
    /// memberlist's `DefaultLANConfig` with a shorter push-pull period, plus
    /// serf-like rejoin and reconnect.
    pub fn lan() -> Self {
        Self {
            probe_interval_ms: 1_000,
            probe_timeout_ms: 500,
            indirect_checks: 3,
            suspicion_mult: 4,
            retransmit_mult: 4,
            gossip_interval_ms: 200,
            gossip_nodes: 3,
            gossip_to_the_dead_ms: 30_000,
            // memberlist exchanges every 30 s. A member whose every copy of
            // an update was lost or went elsewhere learns it only from an
            // exchange, and e2d's founding and replacement decisions wait
            // for every node's view to agree; in the small groups e2d runs
            // an exchange costs a few KiB, so it comes sooner.
            push_pull_interval_ms: 5_000,
            rejoin_interval_ms: 2_000,
            reconnect_interval_ms: 10_000,
            max_packet_bytes: 1_400,
            name_bytes_max: 64,
            url_bytes_max: 128,
            members_max: 1_024,
            relays_max: 64,
            seeds_max: 64,
        }
    }

    /// How long a member stays suspect before it is declared dead, with `up`
    /// members (alive or suspect, the local node included) in view.
    pub fn suspicion_timeout_ms(&self, up: usize) -> u64 {
        let scale = (up.max(1) as f64).log10().max(1.0);
        let timeout_ms = f64::from(self.suspicion_mult) * scale * self.probe_interval_ms as f64;
        timeout_ms.ceil() as u64
    }

    /// The time between one member's full state exchanges, with `up` members
    /// (alive or suspect, the local node included) in view: the interval for
    /// every [`PUSH_PULL_MEMBERS_PER_INTERVAL`] of them begun, so that the
    /// bytes a member exchanges per second do not grow with the group (each
    /// exchange carries every member).
    pub fn push_pull_period_ms(&self, up: usize) -> u64 {
        let steps = up.div_ceil(PUSH_PULL_MEMBERS_PER_INTERVAL).max(1) as u64;
        self.push_pull_interval_ms.saturating_mul(steps)
    }

    /// How many times one update is sent, with `up` members in view.
    pub fn retransmit_limit(&self, up: usize) -> u32 {
        let scale = ((up + 1) as f64).log10().ceil().max(1.0) as u32;
        self.retransmit_mult.saturating_mul(scale).max(1)
    }

    /// Upper bound on one encoded member statement (`MemberState`), its
    /// field key and length prefix included.
    pub fn member_state_bytes_max(&self) -> usize {
        // Key (1) + length varint (at most 3 for anything below 2 MiB) + body.
        const KEY_AND_LEN: usize = 1 + 3;
        const VARINT64: usize = 10;
        // A pending node's snapshot to restore, or a running member's
        // recovery (log index, digest, choice, lineage, and the log term
        // under a two-byte key): never both (the codec refuses that).
        let restore_or_recovery = (KEY_AND_LEN + self.url_bytes_max).max(
            3 * (1 + VARINT64)
                + (2 + VARINT64)
                + super::RECOVERY_LINEAGE_MAX * (KEY_AND_LEN + 2 * (1 + VARINT64)),
        );
        let meta = KEY_AND_LEN * 3
            + self.name_bytes_max
            + 2 * self.url_bytes_max
            + 4 * (1 + VARINT64)
            + 2 * (1 + 1)
            // founders and cluster voters
            + META_NAMES_MAX * (1 + 1 + self.name_bytes_max)
            + restore_or_recovery
            // the version
            + KEY_AND_LEN
            + crate::version::VERSION_BYTES_MAX
            // the cluster that removed it, under a two-byte key
            + (2 + VARINT64);
        let state = KEY_AND_LEN * 2
            + self.name_bytes_max
            + ADDR_BYTES_MAX
            + (1 + VARINT64)
            + (1 + 1)
            + KEY_AND_LEN
            + meta;
        KEY_AND_LEN + state
    }

    /// Largest push-pull frame sent or accepted: every member at its largest.
    pub fn max_push_pull_bytes(&self) -> usize {
        const HEADER_BYTES: usize = 16;
        HEADER_BYTES + self.members_max * self.member_state_bytes_max()
    }

    /// Panics on a config the machine cannot run with (a caller's bug).
    pub fn assert_valid(&self) {
        assert!(self.probe_interval_ms > 0, "probe_interval_ms must be > 0");
        assert!(
            self.probe_timeout_ms > 0 && self.probe_timeout_ms < self.probe_interval_ms,
            "probe_timeout_ms must be within (0, probe_interval_ms)"
        );
        assert!(
            self.gossip_interval_ms > 0,
            "gossip_interval_ms must be > 0"
        );
        assert!(
            self.push_pull_interval_ms > 0,
            "push_pull_interval_ms must be > 0"
        );
        assert!(
            self.rejoin_interval_ms > 0,
            "rejoin_interval_ms must be > 0"
        );
        assert!(
            self.reconnect_interval_ms > 0,
            "reconnect_interval_ms must be > 0"
        );
        assert!(self.members_max >= 1, "members_max must be >= 1");
        assert!(self.name_bytes_max >= 1, "name_bytes_max must be >= 1");
        // Every update must fit a datagram on its own (a gossip packet
        // without a probe), or it could never be disseminated.
        const PACKET_HEADER_BYTES: usize = 8;
        assert!(
            self.max_packet_bytes >= PACKET_HEADER_BYTES + self.member_state_bytes_max(),
            "max_packet_bytes {} cannot hold one update ({} bytes)",
            self.max_packet_bytes,
            PACKET_HEADER_BYTES + self.member_state_bytes_max()
        );
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::lan()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_defaults_are_valid() {
        Config::lan().assert_valid();
        assert_eq!(Config::default(), Config::lan());
    }

    #[test]
    fn suspicion_timeout_scales_with_log10_of_members() {
        let config = Config::lan();
        assert_eq!(config.suspicion_timeout_ms(1), 4_000);
        assert_eq!(config.suspicion_timeout_ms(7), 4_000);
        assert_eq!(config.suspicion_timeout_ms(100), 8_000);
    }

    #[test]
    fn push_pull_period_grows_with_every_32_members() {
        let periods_ms = [
            (0, 5_000),
            (5, 5_000),
            (32, 5_000),
            (33, 10_000),
            (1_024, 160_000),
        ];
        for (up, period_ms) in periods_ms {
            assert_eq!(
                Config::lan().push_pull_period_ms(up),
                period_ms,
                "{up} up members"
            );
        }
    }

    #[test]
    fn retransmit_limit_scales_with_log10_of_members() {
        let config = Config::lan();
        assert_eq!(config.retransmit_limit(1), 4);
        assert_eq!(config.retransmit_limit(9), 4);
        assert_eq!(config.retransmit_limit(10), 8);
    }
}

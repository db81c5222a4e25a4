//! The faults one seed injects, decided up front from the seed alone, so a
//! run can be replayed and its plan printed before it starts.
//!
//! Faults come one at a time with a quiet gap after each, and each leaves
//! a majority of the founding size able to come back on its own: the
//! checkers judge safety through every fault and liveness once they stop.

use std::collections::BTreeMap;
use std::fmt;

use e2d_core::rng::Rng;

/// A number in `low..=high`, from the seed's generator.
fn between(rng: &mut Rng, low: u64, high: u64) -> u64 {
    assert!(low <= high, "an empty range");
    let span = usize::try_from(high - low + 1).expect("a span that fits in usize");
    low + rng.below(span) as u64
}

/// What goes wrong. Nodes are named by slot (0..cluster size); a replaced
/// node's slot is taken by its replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9`, then a restart on the same disk after `down_ms`; what
    /// the disk had not synced is lost, but for a prefix of its writes.
    Crash { slot: usize, down_ms: u64 },
    /// Every node killed at once (a power cut), all restarted after
    /// `down_ms`.
    PowerLoss { down_ms: u64 },
    /// The machine is lost for good: a fresh node with a new name, a new
    /// address and an empty disk takes its place.
    Replace { slot: usize },
    /// A byte of a synced record in the node's newest raft log segment
    /// changes while it is down: on restart it must refuse to run, and
    /// then is replaced as a lost machine is.
    DamagedLog { slot: usize },
    /// `isolated` cannot reach the rest and the rest cannot reach them.
    Partition { isolated: Vec<usize>, ms: u64 },
    /// Packets from `from` to `to` are dropped; the way back works.
    OneWay { from: usize, to: usize, ms: u64 },
    /// Two sides that cannot reach each other, and `bridge` that reaches
    /// both.
    Bridge { bridge: usize, ms: u64 },
    /// Every packet has a `percent` chance of being lost.
    PacketLoss { percent: u8, ms: u64 },
    /// Every packet takes up to `latency_ms` to arrive.
    DelaySpike { latency_ms: u64, ms: u64 },
    /// The process stops being scheduled (SIGSTOP) and resumes later.
    Pause { slot: usize, ms: u64 },
    /// `e2d cluster resize size` (fewer members), then back to the
    /// founding size after `ms`: the leader removes followers one at a
    /// time, and the removed nodes join again as learners.
    Shrink { size: usize, ms: u64 },
    /// Each machine in `order` in turn is stopped (killed) and started
    /// again `down_ms` later on its disk running a newer e2d, `gap_ms`
    /// apart; machines started from then on run it too. At most once a
    /// run.
    RollingUpgrade {
        order: Vec<usize>,
        down_ms: u64,
        gap_ms: u64,
    },
    /// Every machine and disk is lost at once; fresh machines restore the
    /// newest snapshot from the bucket. Comes after the other faults, at
    /// most once a run ([`total_loss`]).
    TotalLoss,
    /// The machines in `lost`, a majority, are lost for good while clients
    /// write, and fresh nodes take their slots; `lagging`, a survivor, was
    /// cut off just before, so it lacks the last writes. With `opt_in`
    /// (every node runs with `--unsafe-auto-recover-after`) the survivor
    /// with the most up-to-date log recovers the cluster and everyone else
    /// joins it; without, nothing may take a write again. Ends a run that
    /// has no total loss, at most once ([`majority_loss`]).
    MajorityLoss {
        lost: Vec<usize>,
        lagging: Option<usize>,
        opt_in: bool,
    },
}

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Crash { .. } => "crash",
            Fault::PowerLoss { .. } => "power-loss",
            Fault::Replace { .. } => "replace",
            Fault::DamagedLog { .. } => "damaged-log",
            Fault::Partition { .. } => "partition",
            Fault::OneWay { .. } => "one-way",
            Fault::Bridge { .. } => "bridge",
            Fault::PacketLoss { .. } => "packet-loss",
            Fault::DelaySpike { .. } => "delay-spike",
            Fault::Pause { .. } => "pause",
            Fault::Shrink { .. } => "shrink",
            Fault::RollingUpgrade { .. } => "rolling-upgrade",
            Fault::TotalLoss => "total-loss",
            Fault::MajorityLoss { .. } => "majority-loss",
        }
    }

    /// How long the fault lasts before it heals (a replacement is for good
    /// at once).
    pub fn duration_ms(&self) -> u64 {
        match self {
            Fault::Crash { down_ms, .. } | Fault::PowerLoss { down_ms } => *down_ms,
            Fault::Replace { .. }
            | Fault::DamagedLog { .. }
            | Fault::TotalLoss
            | Fault::MajorityLoss { .. } => 0,
            Fault::Partition { ms, .. }
            | Fault::OneWay { ms, .. }
            | Fault::Bridge { ms, .. }
            | Fault::PacketLoss { ms, .. }
            | Fault::DelaySpike { ms, .. }
            | Fault::Pause { ms, .. }
            | Fault::Shrink { ms, .. } => *ms,
            Fault::RollingUpgrade {
                order,
                down_ms,
                gap_ms,
            } => order.len() as u64 * (down_ms + gap_ms),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Crash { slot, down_ms } => write!(f, "crash n{slot} for {down_ms} ms"),
            Fault::PowerLoss { down_ms } => write!(f, "power loss for {down_ms} ms"),
            Fault::Replace { slot } => write!(f, "replace n{slot} with a fresh node"),
            Fault::DamagedLog { slot } => {
                write!(
                    f,
                    "damage a synced raft log record of n{slot}, then replace it"
                )
            }
            Fault::Partition { isolated, ms } => write!(f, "isolate {isolated:?} for {ms} ms"),
            Fault::OneWay { from, to, ms } => write!(f, "drop n{from} -> n{to} for {ms} ms"),
            Fault::Bridge { bridge, ms } => write!(f, "split with bridge n{bridge} for {ms} ms"),
            Fault::PacketLoss { percent, ms } => {
                write!(f, "lose {percent}% of packets for {ms} ms")
            }
            Fault::DelaySpike { latency_ms, ms } => {
                write!(f, "delay packets up to {latency_ms} ms for {ms} ms")
            }
            Fault::Pause { slot, ms } => write!(f, "pause n{slot} for {ms} ms"),
            Fault::Shrink { size, ms } => {
                write!(f, "resize to {size} members, back after {ms} ms")
            }
            Fault::RollingUpgrade { order, down_ms, .. } => write!(
                f,
                "upgrade {} one at a time, each down {down_ms} ms",
                slot_names(order)
            ),
            Fault::TotalLoss => write!(f, "lose every machine and disk, restore from the bucket"),
            Fault::MajorityLoss {
                lost,
                lagging,
                opt_in,
            } => {
                write!(f, "lose {} for good", slot_names(lost))?;
                if let Some(slot) = lagging {
                    write!(f, " while n{slot} is cut off")?;
                }
                if *opt_in {
                    write!(f, "; the survivors recover on their own")
                } else {
                    write!(f, "; without the opt-in, nothing recovers")
                }
            }
        }
    }
}

/// `n0, n2, ...`: the slots as faults name them.
fn slot_names(slots: &[usize]) -> String {
    let names: Vec<String> = slots.iter().map(|slot| format!("n{slot}")).collect();
    names.join(", ")
}

/// `count` of the slots `0..size`, drawn one at a time, in the order drawn.
fn draw_slots(rng: &mut Rng, size: usize, count: usize) -> Vec<usize> {
    assert!(count <= size, "more slots than the cluster has");
    let mut left: Vec<usize> = (0..size).collect();
    (0..count)
        .map(|_| left.remove(rng.below(left.len())))
        .collect()
}

/// A fault and when it starts, in simulated ms since the cluster started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    pub at_ms: u64,
    pub fault: Fault,
}

/// The shape of the runs a plan is made for.
#[derive(Debug, Clone, Copy)]
pub struct PlanConfig {
    /// The founding cluster size (`-n`).
    pub cluster_size: usize,
    /// When the first fault may start: the cluster has formed by then.
    pub first_fault_ms: u64,
    /// No fault starts after this.
    pub faults_end_ms: u64,
    /// The quiet time after a fault heals before the next starts.
    pub gap_ms: u64,
    /// Faults per run at most.
    pub faults_max: usize,
}

/// The least time between two machines lost for good: the health-check
/// timeout the simulated nodes run with, a join and a promotion, with room.
pub const REPLACE_SPACING_MS: u64 = 60_000;

/// Which fault kinds a plan may draw, by weight.
const KIND_WEIGHTS: [(&str, u64); 12] = [
    ("crash", 20),
    ("power-loss", 6),
    ("replace", 8),
    ("damaged-log", 4),
    ("partition", 16),
    ("one-way", 10),
    ("bridge", 8),
    ("packet-loss", 12),
    ("delay-spike", 10),
    ("pause", 10),
    ("shrink", 6),
    ("rolling-upgrade", 6),
];

fn draw_kind(rng: &mut Rng) -> &'static str {
    let total: u64 = KIND_WEIGHTS.iter().map(|(_, w)| w).sum();
    let mut pick = between(rng, 0, total - 1);
    for (kind, weight) in KIND_WEIGHTS {
        if pick < weight {
            return kind;
        }
        pick -= weight;
    }
    unreachable!("the weights sum to the total")
}

fn crash(rng: &mut Rng, slot: usize) -> Fault {
    Fault::Crash {
        slot,
        down_ms: between(rng, 100, 6_000),
    }
}

fn draw_fault(rng: &mut Rng, size: usize) -> Fault {
    let slot = rng.below(size);
    let ms = between(rng, 1_000, 8_000);
    match draw_kind(rng) {
        "crash" => crash(rng, slot),
        "power-loss" => Fault::PowerLoss {
            down_ms: between(rng, 100, 3_000),
        },
        "replace" => Fault::Replace { slot },
        "damaged-log" => Fault::DamagedLog { slot },
        "partition" => {
            // A minority: one node, or two of five.
            let count = 1 + rng.below(size.div_ceil(2) - 1).min(1);
            let mut isolated: Vec<usize> = Vec::new();
            while isolated.len() < count {
                let pick = rng.below(size);
                if !isolated.contains(&pick) {
                    isolated.push(pick);
                }
            }
            isolated.sort_unstable();
            Fault::Partition { isolated, ms }
        }
        "one-way" => {
            let to = (slot + 1 + rng.below(size - 1)) % size;
            Fault::OneWay { from: slot, to, ms }
        }
        "bridge" => Fault::Bridge { bridge: slot, ms },
        "packet-loss" => Fault::PacketLoss {
            percent: between(rng, 5, 30) as u8,
            ms,
        },
        "delay-spike" => Fault::DelaySpike {
            latency_ms: between(rng, 50, 400),
            ms,
        },
        "pause" => Fault::Pause {
            slot,
            ms: between(rng, 500, 12_000),
        },
        "shrink" => Fault::Shrink {
            size: size - 2,
            ms: between(rng, 5_000, 20_000),
        },
        "rolling-upgrade" => Fault::RollingUpgrade {
            order: draw_slots(rng, size, size),
            down_ms: between(rng, 200, 2_000),
            gap_ms: between(rng, 1_000, 4_000),
        },
        other => unreachable!("no fault kind {other}"),
    }
}

/// The faults of `seed`, in start order, none overlapping.
pub fn plan(seed: u64, config: PlanConfig) -> Vec<Scheduled> {
    assert!(
        config.cluster_size >= 3,
        "faults need a cluster of 3 or more"
    );
    // The plan depends on nothing but the seed.
    let mut rng = Rng::new(seed ^ 0x5eed_fa17);
    let mut at_ms = config.first_fault_ms + between(&mut rng, 0, 2_000);
    let mut faults = Vec::new();
    let mut last_replace_ms: Option<u64> = None;
    let mut upgraded = false;
    while faults.len() < config.faults_max && at_ms <= config.faults_end_ms {
        let mut fault = draw_fault(&mut rng, config.cluster_size);
        if let Fault::RollingUpgrade { order, .. } = &fault {
            // One upgrade a run: the newer version is the newest there is.
            if upgraded {
                fault = crash(&mut rng, order[0]);
            }
            upgraded = true;
        }
        if let Fault::Replace { slot } | Fault::DamagedLog { slot } = fault {
            // A second machine lost before the first is replaced would be
            // a majority lost: that needs a restore, not self-healing.
            if last_replace_ms.is_some_and(|last| at_ms < last + REPLACE_SPACING_MS) {
                fault = crash(&mut rng, slot);
            } else {
                last_replace_ms = Some(at_ms);
            }
        }
        if let Fault::Shrink { .. } = fault {
            // Back at its size only once the removed nodes have joined
            // again: until then a lost machine may be a majority lost.
            last_replace_ms = Some(at_ms + fault.duration_ms());
        }
        let next = at_ms + fault.duration_ms() + config.gap_ms + between(&mut rng, 0, 3_000);
        faults.push(Scheduled { at_ms, fault });
        at_ms = next;
    }
    faults
}

/// Whether the run of `seed` ends with a [`Fault::TotalLoss`]: one seed
/// in three.
pub fn total_loss(seed: u64) -> bool {
    Rng::new(seed ^ 0x0007_07a1_1055).below(3) == 0
}

/// The majority loss the run of `seed` ends with, if any: one seed in
/// four of those without a total loss; three in four of those run with
/// the opt-in. In a cluster of `cluster_size`, a majority is lost and,
/// where two or more survive, one of them lags.
pub fn majority_loss(seed: u64, cluster_size: usize) -> Option<Fault> {
    let mut rng = Rng::new(seed ^ 0x00a1_05e5_0a10);
    if total_loss(seed) || rng.below(4) != 0 {
        return None;
    }
    let opt_in = rng.below(4) != 0;
    let mut lost = draw_slots(&mut rng, cluster_size, cluster_size / 2 + 1);
    lost.sort_unstable();
    let survivors: Vec<usize> = (0..cluster_size).filter(|s| !lost.contains(s)).collect();
    let lagging = (survivors.len() >= 2).then(|| survivors[rng.below(survivors.len())]);
    Some(Fault::MajorityLoss {
        lost,
        lagging,
        opt_in,
    })
}

/// Whether the nodes of the run of `seed` find each other through peer
/// discovery (the simulated cloud) rather than bootstrap addresses: one
/// seed in two.
pub fn peer_discovery(seed: u64) -> bool {
    Rng::new(seed ^ 0x00d1_5c0f_e4ed).below(2) == 0
}

/// How many faults of each kind a set of plans holds.
pub fn count_by_kind<'a>(
    faults: impl IntoIterator<Item = &'a Fault>,
) -> BTreeMap<&'static str, u64> {
    let mut counts = BTreeMap::new();
    for fault in faults {
        *counts.entry(fault.kind()).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: PlanConfig = PlanConfig {
        cluster_size: 3,
        first_fault_ms: 10_000,
        faults_end_ms: 60_000,
        gap_ms: 2_000,
        faults_max: 8,
    };

    #[test]
    fn a_seed_always_gives_the_same_plan() {
        assert_eq!(plan(7, CONFIG), plan(7, CONFIG));
        assert_ne!(plan(7, CONFIG), plan(8, CONFIG));
    }

    #[test]
    fn faults_never_overlap_and_stay_in_bounds() {
        for seed in 0..500 {
            let faults = plan(seed, CONFIG);
            assert!(!faults.is_empty());
            assert!(faults.len() <= CONFIG.faults_max);
            for pair in faults.windows(2) {
                let end = pair[0].at_ms + pair[0].fault.duration_ms() + CONFIG.gap_ms;
                assert!(pair[1].at_ms >= end, "seed {seed}: {pair:?}");
            }
            for scheduled in &faults {
                assert!(scheduled.at_ms >= CONFIG.first_fault_ms);
                assert!(scheduled.at_ms <= CONFIG.faults_end_ms);
                if let Fault::Partition { isolated, .. } = &scheduled.fault {
                    assert!(isolated.len() * 2 < CONFIG.cluster_size, "a minority");
                }
                if let Fault::OneWay { from, to, .. } = scheduled.fault {
                    assert_ne!(from, to);
                }
            }
            let replaces: Vec<u64> = faults
                .iter()
                .filter(|s| matches!(s.fault, Fault::Replace { .. }))
                .map(|s| s.at_ms)
                .collect();
            for pair in replaces.windows(2) {
                assert!(
                    pair[1] >= pair[0] + REPLACE_SPACING_MS,
                    "seed {seed}: {replaces:?}"
                );
            }
        }
    }

    #[test]
    fn every_kind_is_drawn() {
        let all: Vec<Fault> = (0..300)
            .flat_map(|seed| plan(seed, CONFIG))
            .map(|s| s.fault)
            .collect();
        let counts = count_by_kind(&all);
        assert_eq!(counts.len(), KIND_WEIGHTS.len(), "{counts:?}");
    }
}

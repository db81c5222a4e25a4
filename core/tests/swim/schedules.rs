//! Random schedules against clusters of 1..=7 nodes, in two phases (VOPR
//! style): a fault phase (random per-link loss, partitions, crashes,
//! restarts under the same name, metadata changes; message delay 1..=100 ms
//! throughout), then a healing phase with no faults, after which the views
//! must have converged.
//!
//! Checkers see only the events the machines emit (recorded by the net with
//! the time and the subject's link health at that moment) and the final
//! views.

use e2d_core::swim::{Config, Liveness};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use crate::net::Net;

fn config() -> Config {
    Config {
        push_pull_interval_ms: 5_000,
        reconnect_interval_ms: 5_000,
        ..Config::lan()
    }
}

/// How long after the last fault the views must have converged: a few
/// push-pull and reconnect intervals, plus a probe round and a suspicion
/// timeout for crashed nodes still thought alive.
const CONVERGENCE_BOUND_MS: u64 = 40_000;

/// Slack on top of the suspicion timeout in the safety window: a death
/// declared by one node reaches the others by gossip a little later (each
/// hop forwards it within a few gossip intervals plus the message delay).
/// Thousands of schedules pass with no margin at all; the slack keeps the
/// property honest about dissemination without hiding a real violation
/// (skipping refutation is caught with it).
const DISSEMINATION_MARGIN_MS: u64 = 2_000;

/// Printed with every failure.
const REPLAY: &str = "replay: cargo test -p e2d-core --test swim schedules \
    (proptest saves the failing schedule in tests/swim/schedules.proptest-regressions \
    and runs it first)";

#[derive(Debug, Clone)]
enum Fault {
    /// Datagrams from `from` to `to` are lost with this chance.
    Loss {
        from: usize,
        to: usize,
        percent: u32,
    },
    /// Nodes whose bit is set in `side` are cut off from the others.
    Partition {
        side: u8,
    },
    Heal,
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    SetMeta {
        node: usize,
        cluster_id: u64,
    },
}

#[derive(Debug, Clone)]
struct Schedule {
    nodes: usize,
    seed: u64,
    /// Each fault is followed by this much time.
    steps: Vec<(Fault, u64)>,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        3 => (0..7usize, 0..7usize, 0..=100u32)
            .prop_map(|(from, to, percent)| Fault::Loss { from, to, percent }),
        1 => any::<u8>().prop_map(|side| Fault::Partition { side }),
        1 => Just(Fault::Heal),
        1 => (0..7usize).prop_map(|node| Fault::Crash { node }),
        1 => (0..7usize).prop_map(|node| Fault::Restart { node }),
        1 => (0..7usize, 1..4u64).prop_map(|(node, cluster_id)| Fault::SetMeta { node, cluster_id }),
    ]
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        1..=7usize,
        any::<u64>(),
        proptest::collection::vec((fault(), 100..6_000u64), 0..14),
    )
        .prop_map(|(nodes, seed, steps)| Schedule { nodes, seed, steps })
}

fn apply(net: &mut Net, fault: &Fault) {
    let count = net.nodes.len();
    match *fault {
        Fault::Loss { from, to, percent } if from % count != to % count => {
            net.set_loss(from % count, to % count, percent)
        }
        Fault::Loss { .. } => {}
        Fault::Partition { side } => {
            let side: Vec<usize> = (0..count).filter(|i| side & (1 << i) != 0).collect();
            net.partition(&side);
        }
        Fault::Heal => net.heal(),
        Fault::Crash { node } if net.is_running(node % count) => net.crash(node % count),
        Fault::Restart { node } if !net.is_running(node % count) => net.restart(node % count),
        Fault::SetMeta { node, cluster_id } if net.is_running(node % count) => {
            let mut meta = net.nodes[node % count].meta.clone();
            meta.cluster_id = cluster_id;
            net.set_meta(node % count, meta);
        }
        Fault::Crash { .. } | Fault::Restart { .. } | Fault::SetMeta { .. } => {}
    }
}

/// Safety: SWIM never declares a live, connected node dead while its
/// refutation can reach the others.
///
/// Precisely: when any node records `Dead` for a subject at time `t`, the
/// subject must not have been *healthy* throughout `[t - W, t]`, where
/// healthy means the process now running under that name was running and
/// every link to and from it (both directions, to every other node) had no
/// loss and no partition, and `W` = suspicion timeout + dissemination
/// margin. Why this must hold: a healthy node answers every direct probe
/// within two message delays (< probe timeout), so no fresh suspicion of it
/// can arise; an older suspicion is told to it directly by each node that
/// adopts it, and it answers that node directly with a refutation, well
/// within the suspicion timeout. A death declared before the window opened
/// may still reach a node inside it; the margin covers that dissemination.
fn check_safety(net: &Net, schedule: &Schedule) {
    let window_ms = net.config.suspicion_timeout_ms(7) + DISSEMINATION_MARGIN_MS;
    for seen in &net.history {
        if seen.view.liveness != Liveness::Dead {
            continue;
        }
        if let Some(healthy_since_ms) = seen.subject_healthy_since_ms {
            assert!(
                healthy_since_ms + window_ms > seen.at_ms,
                "n{} declared {} dead at {} ms, healthy since {} ms\n{schedule:?}\n{REPLAY}",
                seen.observer,
                seen.view.name,
                seen.at_ms,
                healthy_since_ms,
            );
        }
    }
}

/// Convergence: every running node sees every running node alive with the
/// incarnation and metadata that node has for itself, and every crashed
/// node dead, left or not at all.
fn converged(net: &Net) -> Result<(), String> {
    for observer in (0..net.nodes.len()).filter(|i| net.is_running(*i)) {
        for subject in 0..net.nodes.len() {
            let view = net.view(observer, subject);
            if net.is_running(subject) {
                let own = net.swim(subject).local();
                let agrees = view.is_some_and(|view| {
                    view.liveness == Liveness::Alive
                        && view.incarnation == own.incarnation
                        && view.meta == own.meta
                        && view.addr == own.addr
                });
                if !agrees {
                    return Err(format!(
                        "n{observer} sees n{subject} as {view:?}, it is {own:?}"
                    ));
                }
            } else if view.is_some_and(|view| view.liveness.is_up()) {
                return Err(format!("n{observer} sees crashed n{subject} as {view:?}"));
            }
        }
    }
    Ok(())
}

fn run(schedule: &Schedule) {
    let mut net = Net::new(config(), schedule.nodes, schedule.seed);
    for index in 0..schedule.nodes {
        net.join_all(index);
    }
    net.run_for(3_000);
    for (fault, wait_ms) in &schedule.steps {
        apply(&mut net, fault);
        net.run_for(*wait_ms);
    }
    net.heal();
    let healed_at_ms = net.now_ms;
    while converged(&net).is_err() && net.now_ms < healed_at_ms + CONVERGENCE_BOUND_MS {
        net.run_for(500);
    }
    check_safety(&net, schedule);
    if let Err(why) = converged(&net) {
        panic!(
            "not converged {CONVERGENCE_BOUND_MS} ms after healing: {why}\n{schedule:?}\n{REPLAY}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: crate::proptest_cases(64),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/swim/schedules.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_schedules_are_safe_and_converge(schedule in schedule()) {
        run(&schedule);
    }
}

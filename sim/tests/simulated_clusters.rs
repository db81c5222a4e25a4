//! Whole simulated clusters (`--cfg madsim` only): a bounded batch of
//! seeds must pass, a seed must replay to the same trace, and each bug
//! planted in the shell must be caught within a bounded number of seeds.
#![cfg(madsim)]

use e2d_sim::plan::Fault;
use e2d_sim::runner::{run_batch, run_one};
use e2d_sim::scenario::{Report, RunConfig};

/// Seeds the clean batch runs; `just sim N` runs more.
const CLEAN_SEEDS: u64 = 60;
/// Seeds within which each planted bug must be caught.
const SEEDS_TO_CATCH_A_BUG: u64 = 8;

fn jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn quiet(_: &Report) {}

#[test]
fn a_batch_of_seeds_passes_every_check() {
    let reports = run_batch(&RunConfig::new(1), 1, CLEAN_SEEDS, jobs(), &quiet);
    let failed: Vec<(u64, &Vec<String>)> = reports
        .iter()
        .filter(|r| !r.failures.is_empty())
        .map(|r| (r.seed, &r.failures))
        .collect();
    assert!(failed.is_empty(), "failed seeds: {failed:#?}");
    // The runs did real work: faults came and operations were checked.
    let faults: usize = reports.iter().map(|r| r.faults.len()).sum();
    let operations: usize = reports.iter().map(|r| r.operations).sum();
    assert!(faults as u64 >= CLEAN_SEEDS, "{faults} faults");
    let restores = reports
        .iter()
        .filter(|r| r.faults.contains(&Fault::TotalLoss))
        .count();
    assert!(
        restores as u64 >= CLEAN_SEEDS / 6,
        "{restores} total losses"
    );
    let recoveries = reports
        .iter()
        .flat_map(|r| &r.faults)
        .filter(|f| matches!(f, Fault::MajorityLoss { opt_in: true, .. }))
        .count();
    let without_opt_in = reports
        .iter()
        .flat_map(|r| &r.faults)
        .filter(|f| matches!(f, Fault::MajorityLoss { opt_in: false, .. }))
        .count();
    assert!(
        recoveries as u64 >= CLEAN_SEEDS / 10 && without_opt_in >= 1,
        "{recoveries} majority losses recovered, {without_opt_in} without the opt-in"
    );
    let upgrades = reports
        .iter()
        .flat_map(|r| &r.faults)
        .filter(|f| matches!(f, Fault::RollingUpgrade { .. }))
        .count();
    assert!(upgrades >= 2, "{upgrades} rolling upgrades");
    assert!(
        operations as u64 >= CLEAN_SEEDS * 1_000,
        "{operations} operations"
    );
}

#[test]
fn a_seed_replays_to_the_same_trace() {
    for seed in [7, 8] {
        let first = run_one(RunConfig::new(seed));
        let second = run_one(RunConfig::new(seed));
        assert!(!first.trace_hash.is_empty());
        assert_eq!(first.trace_hash, second.trace_hash, "seed {seed}");
        assert_eq!(first.operations, second.operations, "seed {seed}");
    }
    let other = run_one(RunConfig::new(9));
    assert_ne!(run_one(RunConfig::new(7)).trace_hash, other.trace_hash);
}

/// Runs seeds with `plant` until one fails with a failure `caught`
/// accepts; returns that failure.
fn caught_within_bound(
    plant: impl Fn(&mut e2d_shell::sim_bugs::Bugs),
    caught: impl Fn(&str) -> bool,
) -> String {
    let mut config = RunConfig::new(1);
    config.workload_ms = 30_000;
    plant(&mut config.bugs);
    let reports = run_batch(&config, 1, SEEDS_TO_CATCH_A_BUG, jobs(), &quiet);
    reports
        .iter()
        .flat_map(|r| r.failures.iter())
        .find(|f| caught(f))
        .cloned()
        .unwrap_or_else(|| {
            panic!("the bug went unnoticed in {SEEDS_TO_CATCH_A_BUG} seeds: {reports:#?}")
        })
}

#[test]
fn acknowledging_before_fsync_is_caught() {
    let failure = caught_within_bound(
        |bugs| bugs.ack_before_fsync = true,
        |f| {
            f.starts_with("not linearizable")
                || f.contains("is missing")
                || f.contains("never saw the acknowledged")
                || f.contains("disagree")
                || f.starts_with("panicked")
        },
    );
    eprintln!("caught: {failure}");
}

#[test]
fn reading_without_a_read_index_is_caught() {
    let failure = caught_within_bound(
        |bugs| bugs.reads_without_read_index = true,
        |f| f.starts_with("not linearizable"),
    );
    eprintln!("caught: {failure}");
}

#[test]
fn a_watch_that_skips_on_resume_is_caught() {
    let failure = caught_within_bound(
        |bugs| bugs.watch_resume_skips_a_revision = true,
        |f| f.contains("the watcher never saw"),
    );
    eprintln!("caught: {failure}");
}

#[test]
fn restoring_an_older_snapshot_than_the_newest_is_caught() {
    let failure = caught_within_bound(
        |bugs| bugs.restore_skips_the_newest_snapshot = true,
        |f| {
            f.contains("older than the acknowledged")
                || f.contains("is missing: the write")
                || f.contains("after the snapshot at revision")
        },
    );
    eprintln!("caught: {failure}");
}

#[test]
fn a_delta_that_skips_a_revision_is_caught() {
    let failure = caught_within_bound(
        |bugs| bugs.delta_skips_a_revision = true,
        |f| f.contains("is missing: the write") || f.contains("older than the acknowledged"),
    );
    eprintln!("caught: {failure}");
}

/// Seeds whose five-node runs lose three machines for good, with a
/// lagging survivor, and recover on their own: `count` of them.
fn recovering_seeds(count: usize) -> Vec<u64> {
    (1..)
        .filter(|&seed| {
            matches!(
                e2d_sim::plan::majority_loss(seed, 5),
                Some(Fault::MajorityLoss { opt_in: true, .. })
            )
        })
        .take(count)
        .collect()
}

/// Five-node runs of [`recovering_seeds`] with `plant`.
fn recovering_runs(plant: impl Fn(&mut e2d_core::manager::PlantedBugs)) -> Vec<Report> {
    recovering_seeds(2)
        .into_iter()
        .map(|seed| {
            let mut config = RunConfig::new(seed);
            config.cluster_size = 5;
            config.workload_ms = 20_000;
            plant(&mut config.bugs.manager);
            run_one(config)
        })
        .collect()
}

/// Runs five-node clusters that lose a majority with `plant`; returns the
/// first failure `caught` accepts.
fn caught_after_a_majority_loss(
    plant: impl Fn(&mut e2d_core::manager::PlantedBugs),
    caught: impl Fn(&str) -> bool,
) -> String {
    let reports = recovering_runs(plant);
    reports
        .iter()
        .flat_map(|r| r.failures.iter())
        .find(|f| caught(f))
        .cloned()
        .unwrap_or_else(|| panic!("the planted rule went unnoticed: {reports:#?}"))
}

#[test]
fn five_nodes_recover_a_lost_majority_from_the_most_up_to_date_survivor() {
    for report in recovering_runs(|_| {}) {
        assert!(report.failures.is_empty(), "{report:#?}");
        assert!(
            report.faults.iter().any(|f| matches!(
                f,
                Fault::MajorityLoss {
                    lagging: Some(_),
                    ..
                }
            )),
            "{report:#?}"
        );
    }
}

#[test]
fn two_survivors_that_both_recover_are_caught() {
    let failure = caught_after_a_majority_loss(
        |bugs| bugs.recover_every_survivor = true,
        // Two clusters, members that disagree, or a survivor's recovery
        // that won over a more up-to-date one's and took back writes.
        |f| {
            f.contains("not whole again")
                || f.contains("clusters")
                || f.contains("disagree")
                || f.contains("is missing")
                || (f.starts_with("after the recovery")
                    && f.contains("older than the acknowledged"))
        },
    );
    eprintln!("caught: {failure}");
}

#[test]
fn recovering_from_the_least_up_to_date_survivor_is_caught() {
    let failure = caught_after_a_majority_loss(
        |bugs| bugs.recover_least_up_to_date = true,
        |f| {
            f.starts_with("after the recovery")
                && (f.contains("is missing") || f.contains("older than the acknowledged"))
        },
    );
    eprintln!("caught: {failure}");
}

#[test]
fn recording_the_cluster_version_before_every_member_runs_it_is_caught() {
    // Seeds whose plan upgrades every machine, until one catches the rule.
    let mut seen = Vec::new();
    for seed in 1..200 {
        let mut config = RunConfig::new(seed);
        config.workload_ms = 30_000;
        if !config
            .plan()
            .iter()
            .any(|s| matches!(s.fault, Fault::RollingUpgrade { .. }))
        {
            continue;
        }
        config.bugs.manager.cluster_version_before_every_member = true;
        let report = run_one(config);
        if let Some(failure) = report
            .failures
            .iter()
            .find(|f| f.starts_with("the cluster version") && f.contains("was recorded while"))
        {
            eprintln!("caught: {failure}");
            return;
        }
        seen.push(report);
        assert!(
            seen.len() < 12,
            "the planted rule went unnoticed in {} upgrades: {seen:#?}",
            seen.len()
        );
    }
    panic!("too few seeds upgrade: {seen:#?}");
}

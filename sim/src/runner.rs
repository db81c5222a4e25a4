//! Many seeds across threads (one simulated world per thread at a time),
//! and the summary a batch prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::plan::count_by_kind;
use crate::scenario::{self, Report, RunConfig};

/// Runs `config` with its seed on a thread of its own; a panic anywhere in
/// the simulated world is a failure of that seed.
pub fn run_one(config: RunConfig) -> Report {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let seed = config.seed;
    let root = std::env::temp_dir().join(format!(
        "e2d-sim-{}-{seed}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    // A fresh thread per seed: thread-local state that outlives a run
    // (hash keys, tokio's select! randomness) starts from the seed each time.
    let outcome = std::thread::Builder::new()
        .name(format!("seed-{seed}"))
        .spawn({
            let root = root.clone();
            move || scenario::run(config, root)
        })
        .expect("a thread starts")
        .join();
    match outcome {
        Ok(report) => report,
        Err(panic) => {
            crate::cluster::wipe(&root);
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            Report {
                seed,
                failures: vec![format!("panicked: {message}")],
                ..Report::default()
            }
        }
    }
}

/// Runs seeds `first..first + count` with `template`'s shape on `jobs`
/// threads; `progress` sees each report as it lands.
pub fn run_batch(
    template: &RunConfig,
    first: u64,
    count: u64,
    jobs: usize,
    progress: &(dyn Fn(&Report) + Sync),
) -> Vec<Report> {
    let next = AtomicU64::new(first);
    let reports = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= first + count {
                    return;
                }
                let report = run_one(RunConfig {
                    seed,
                    ..template.clone()
                });
                progress(&report);
                reports
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(report);
            });
        }
    });
    let mut reports = reports.into_inner().unwrap_or_else(|p| p.into_inner());
    reports.sort_by_key(|r| r.seed);
    reports
}

/// The batch summary: seeds, simulated time, faults by kind, operations
/// checked, and each failure with the command that replays it: `replay`
/// (the command and its flags) and `--seed S`.
pub fn summary(reports: &[Report], wall: std::time::Duration, replay: &str) -> String {
    let mut out = String::new();
    let failed: Vec<&Report> = reports.iter().filter(|r| !r.failures.is_empty()).collect();
    let simulated_ms: u64 = reports.iter().map(|r| r.simulated_ms).sum();
    let minutes = wall.as_secs_f64() / 60.0;
    let _ = writeln!(
        out,
        "seeds: {} ({} failed), simulated: {:.2} h, wall: {:.1} s, {:.1} seeds/min",
        reports.len(),
        failed.len(),
        simulated_ms as f64 / 3_600_000.0,
        wall.as_secs_f64(),
        reports.len() as f64 / minutes.max(1e-9)
    );
    let faults: BTreeMap<&str, u64> = count_by_kind(reports.iter().flat_map(|r| &r.faults));
    let listed: Vec<String> = faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(out, "faults: {}", listed.join(", "));
    let discovered = reports
        .iter()
        .filter(|r| crate::plan::peer_discovery(r.seed))
        .count();
    let _ = writeln!(
        out,
        "seeding: {discovered} clusters by peer discovery (the simulated cloud), {} by bootstrap addresses",
        reports.len() - discovered
    );
    let operations: usize = reports.iter().map(|r| r.operations).sum();
    let unknown: usize = reports.iter().map(|r| r.unknown_outcomes).sum();
    let events: usize = reports.iter().map(|r| r.watch_events).sum();
    let whole = reports.iter().filter(|r| r.linearizability_decided).count();
    let undecided: usize = reports.iter().map(|r| r.undecided_keys.len()).sum();
    let _ = writeln!(
        out,
        "operations checked: {operations} ({unknown} with lost answers), watch events: {events}, \
         histories decided whole: {whole} of {} (the rest key by key; {undecided} keys undecided)",
        reports.len()
    );
    let recovery: Vec<u64> = reports.iter().filter_map(|r| r.recovery_ms).collect();
    if let Some(max) = recovery.iter().max() {
        let _ = writeln!(
            out,
            "recovery after the last fault: at most {:.1} s",
            *max as f64 / 1000.0
        );
    }
    for report in failed {
        let _ = writeln!(out, "FAILED seed {}:", report.seed);
        for failure in report.failures.iter().take(5) {
            for line in failure.lines().take(12) {
                let _ = writeln!(out, "  {line}");
            }
        }
        let _ = writeln!(out, "  replay: {replay} --seed {}", report.seed);
    }
    out
}

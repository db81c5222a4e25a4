//! One seed from start to verdict: a cluster forms, clients and a watcher
//! run while the seed's faults come and go, the faults stop, the cluster
//! must recover within a bound, and the checkers judge what was seen.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2d_proto::etcdserverpb::cluster_client::ClusterClient;
use e2d_proto::etcdserverpb::kv_client::KvClient;
use e2d_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use e2d_proto::etcdserverpb::{
    MemberListRequest, PutRequest, RangeRequest, StatusRequest, StatusResponse,
};
use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use madsim::time::{sleep, Instant};
use sha2::{Digest, Sha256};

use e2d_core::version::Version;

use crate::checks::{self, Contents, WatchLog};
use crate::cluster::Cluster;
use crate::history::History;
use crate::kv_model::KvState;
use crate::linearizability::{self, Verdict};
use crate::plan::{self, Fault, PlanConfig, Scheduled};
use crate::workload::{self, connect, elapsed_ms, Directory};

/// What one run does.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub seed: u64,
    pub cluster_size: usize,
    pub clients: u8,
    /// How long clients run, in simulated ms after the cluster formed.
    pub workload_ms: u64,
    pub faults_max: usize,
    /// Bugs planted in the shell for this run (to prove the checkers
    /// bite); none in a real run.
    pub bugs: e2d_shell::sim_bugs::Bugs,
}

impl RunConfig {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            cluster_size: 3,
            clients: 3,
            workload_ms: 60_000,
            faults_max: 8,
            bugs: e2d_shell::sim_bugs::Bugs::NONE,
        }
    }

    fn plan_config(&self) -> PlanConfig {
        PlanConfig {
            cluster_size: self.cluster_size,
            first_fault_ms: 3_000,
            faults_end_ms: self.workload_ms.saturating_sub(10_000),
            gap_ms: 2_000,
            faults_max: self.faults_max,
        }
    }

    /// The faults this run injects.
    pub fn plan(&self) -> Vec<Scheduled> {
        plan::plan(self.seed, self.plan_config())
    }
}

/// What one run found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub seed: u64,
    pub simulated_ms: u64,
    pub faults: Vec<Fault>,
    pub operations: usize,
    pub unknown_outcomes: usize,
    pub watch_events: usize,
    /// Whether the whole history was decided by the linearizability check
    /// (else it was checked key by key).
    pub linearizability_decided: bool,
    /// Keys whose history the bounded search could not decide either way.
    pub undecided_keys: Vec<String>,
    pub recovery_ms: Option<u64>,
    /// Wall time the checkers took.
    pub check_wall_ms: u64,
    /// Everything that went wrong; empty when the run passed.
    pub failures: Vec<String>,
    /// A hash of everything that happened: the same seed must give the
    /// same hash.
    pub trace_hash: String,
}

/// How long a resize may take to be written, through any member.
const RESIZE_BOUND: Duration = Duration::from_secs(20);

/// How long the cluster gets to form before anything else.
const FORMATION_BOUND: Duration = Duration::from_secs(60);
/// How long the cluster gets, once faults stop, to be whole again:
/// health-check timeout plus a join, with room for elections.
const RECOVERY_BOUND: Duration = Duration::from_secs(90);
/// Search states the whole-history linearizability check may explore.
const LINEARIZABILITY_STATES_MAX: usize = 300_000;
/// The same, per key, when the whole history is undecided.
const KEY_STATES_MAX: usize = 300_000;
/// How often the observer asks every member for its status.
const OBSERVE_INTERVAL: Duration = Duration::from_secs(1);

/// Runs one seed to its verdict. Must be called outside any runtime.
pub fn run(config: RunConfig, root: PathBuf) -> Report {
    let seed = config.seed;
    let mut runtime_config = madsim::Config::default();
    runtime_config.net.send_latency = Duration::from_millis(1)..Duration::from_millis(5);
    let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, runtime_config);
    let (mut report, seen, mut trace) = runtime.block_on(scenario(config, root.clone()));
    crate::cluster::wipe(&root);
    // Judged outside the simulation, where time is the real one.
    if let Some(seen) = seen {
        let checking = std::time::Instant::now();
        judge(&mut report, &seen);
        report.check_wall_ms = checking.elapsed().as_millis() as u64;
        let mut lines: Vec<String> = Vec::new();
        lines.extend(seen.history.operations.iter().map(|op| format!("{op:?}")));
        lines.extend(seen.watch.events.iter().map(|e| format!("{e:?}")));
        if let Some(restored) = &seen.restored {
            lines.push(format!("restored from {:?}", restored.snapshot));
            restored.life.trace(&mut lines);
        }
        if let Some(lost) = &seen.majority_lost {
            lines.push("majority lost".into());
            lines.extend(lost.history.operations.iter().map(|op| format!("{op:?}")));
            if let Some(recovered) = &lost.recovered {
                lines.push("recovered".into());
                recovered.trace(&mut lines);
            }
        }
        for line in &lines {
            trace.update(line.as_bytes());
            trace.update(b"\n");
        }
        // For comparing two runs of one seed line by line.
        if let Some(dir) = std::env::var_os("E2D_SIM_TRACE_DIR") {
            static WRITTEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = WRITTEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = PathBuf::from(dir).join(format!("seed-{seed}-{n}.trace"));
            let _ = std::fs::write(path, lines.join("\n"));
        }
    }
    for failure in &report.failures {
        trace.update(failure.as_bytes());
    }
    let digest = trace.finalize();
    report.trace_hash = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    report
}

/// What the clients and the observer saw, for the checkers.
struct Seen {
    history: History,
    watch: WatchLog,
    cluster_ids: BTreeSet<u64>,
    contents: Vec<(String, Option<Contents>)>,
    /// After a total loss: the cluster restored from the bucket.
    restored: Option<Restored>,
    /// After a majority lost for good.
    majority_lost: Option<MajorityLost>,
}

/// A majority lost for good while clients wrote, and what came after.
struct MajorityLost {
    /// The workload while the majority went (no watcher: a watch may end
    /// with the machines, before it saw the last writes).
    history: History,
    cluster_ids: BTreeSet<u64>,
    /// With the opt-in: the cluster the survivors recovered.
    recovered: Option<SecondLife>,
}

/// A cluster that came back (restored, or recovered by a survivor): what
/// it served before any client wrote to it, at which store revision, then
/// a workload on it, checked on its own.
struct SecondLife {
    first_contents: Vec<(String, Option<Contents>)>,
    revision: i64,
    history: History,
    watch: WatchLog,
    cluster_ids: BTreeSet<u64>,
    contents: Vec<(String, Option<Contents>)>,
}

impl SecondLife {
    fn trace(&self, lines: &mut Vec<String>) {
        lines.push(format!("from revision {}", self.revision));
        lines.extend(self.history.operations.iter().map(|op| format!("{op:?}")));
        lines.extend(self.watch.events.iter().map(|e| format!("{e:?}")));
    }
}

/// The second life of a cluster that lost every machine and disk.
struct Restored {
    /// The newest chain the bucket held at the loss: its full snapshot's
    /// name and the revision its deltas reach.
    snapshot: Option<(String, i64)>,
    /// What clients did in the seconds before the loss, the loss striking
    /// while they wrote.
    last_writes: History,
    /// The restored cluster, from the snapshot's revision.
    life: SecondLife,
}

/// What one workload period records.
#[derive(Default)]
struct Shared {
    history: Arc<Mutex<History>>,
    watch: Arc<Mutex<WatchLog>>,
    cluster_ids: Arc<Mutex<BTreeSet<u64>>>,
}

impl Shared {
    fn take(&self) -> (History, WatchLog, BTreeSet<u64>) {
        (
            std::mem::take(&mut *self.history.lock().unwrap_or_else(|p| p.into_inner())),
            std::mem::take(&mut *self.watch.lock().unwrap_or_else(|p| p.into_inner())),
            std::mem::take(&mut *self.cluster_ids.lock().unwrap_or_else(|p| p.into_inner())),
        )
    }
}

/// How long clients run on a cluster restored after a total loss.
const RESTORED_WORKLOAD_MS: u64 = 10_000;
/// Client ids on a restored cluster start here, so that their values
/// differ from those the snapshot brought back.
const RESTORED_CLIENT_BASE: u32 = 10;

/// Starts the clients, the watcher (from `first_revision`, if given) and
/// the observer, all running until `until_ms`.
fn start_workload(
    config: &RunConfig,
    directory: &Directory,
    origin: Instant,
    until_ms: u64,
    first_revision: Option<i64>,
    client_base: u32,
    control: &madsim::runtime::NodeHandle,
) -> (Shared, Vec<madsim::task::JoinHandle<()>>) {
    let handle = madsim::runtime::Handle::current();
    let shared = Shared::default();
    let mut tasks = Vec::new();
    for client in 0..config.clients {
        let id = client_base + u32::from(client);
        let node = handle
            .create_node()
            .name(format!("client-{id}"))
            .ip(workload::client_ip(id as u8))
            .build();
        let (directory, history) = (directory.clone(), shared.history.clone());
        tasks.push(node.spawn(workload::run_client(
            id, directory, origin, until_ms, history,
        )));
    }
    if let Some(first_revision) = first_revision {
        let watcher = handle
            .create_node()
            .name(format!("watcher-{client_base}"))
            .ip(workload::client_ip(100 + client_base as u8))
            .build();
        tasks.push(watcher.spawn(workload::run_watcher(
            directory.clone(),
            origin,
            until_ms + 5_000,
            shared.watch.clone(),
            first_revision,
        )));
    }
    let (directory, ids) = (directory.clone(), shared.cluster_ids.clone());
    tasks.push(control.spawn(observe(directory, origin, until_ms, ids)));
    (shared, tasks)
}

async fn scenario(config: RunConfig, root: PathBuf) -> (Report, Option<Seen>, Sha256) {
    e2d_shell::sim_bugs::plant(config.bugs);
    let origin = Instant::now();
    let mut report = Report {
        seed: config.seed,
        ..Report::default()
    };
    let mut trace = Sha256::new();
    let majority_loss = plan::majority_loss(config.seed, config.cluster_size);
    let auto_recover = matches!(
        majority_loss,
        Some(Fault::MajorityLoss { opt_in: true, .. })
    );
    let mut cluster = Cluster::start(
        root,
        config.cluster_size,
        plan::peer_discovery(config.seed),
        auto_recover,
    );
    let directory = Directory::default();
    directory.set(cluster.members().iter().map(|m| m.client_url()).collect());
    let handle = madsim::runtime::Handle::current();
    let control = handle
        .create_node()
        .name("control")
        .ip(workload::client_ip(200))
        .build();

    // Formation.
    let formed = takes_a_write(&control, &directory).await;
    if !formed {
        report.failures.push(format!(
            "the cluster did not take a write within {FORMATION_BOUND:?} of starting"
        ));
        finish(&mut report, origin, &cluster);
        return (report, None, trace);
    }
    let start_ms = elapsed_ms(origin);
    trace.update(format!("formed at {start_ms}\n"));
    let until_ms = start_ms + config.workload_ms;

    let (shared, tasks) =
        start_workload(&config, &directory, origin, until_ms, Some(1), 0, &control);
    let versions_watch = {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watched = (cluster.versions.clone(), cluster.errors.clone());
        let task = control.spawn(watch_cluster_version(
            directory.clone(),
            watched,
            stop.clone(),
        ));
        (stop, task)
    };

    // Faults.
    for scheduled in config.plan() {
        let at_ms = start_ms + scheduled.at_ms;
        sleep(Duration::from_millis(
            at_ms.saturating_sub(elapsed_ms(origin)),
        ))
        .await;
        let line = format!("{} ms: {}", elapsed_ms(origin), scheduled.fault);
        tracing::info!("{line}");
        trace.update(line.as_bytes());
        inject(&mut cluster, &directory, &scheduled.fault, &control).await;
        report.faults.push(scheduled.fault);
    }
    for task in tasks {
        let _ = task.await;
    }

    // Recovery: everything heals; the cluster must be whole again.
    cluster.heal();
    let healed_ms = elapsed_ms(origin);
    let intended: BTreeSet<String> = cluster.members().iter().map(|m| m.name.clone()).collect();
    let recovered = {
        let directory = directory.clone();
        control
            .spawn(async move { wait_for_recovery(&directory, &intended, RECOVERY_BOUND).await })
            .await
    };
    match recovered {
        Ok(Ok(())) => report.recovery_ms = Some(elapsed_ms(origin) - healed_ms),
        Ok(Err(state)) => report.failures.push(format!(
            "not whole again {RECOVERY_BOUND:?} after the faults stopped: {state}"
        )),
        Err(e) => report
            .failures
            .push(format!("the recovery check failed: {e}")),
    }
    let upgraded = report
        .faults
        .iter()
        .any(|f| matches!(f, Fault::RollingUpgrade { .. }));
    if upgraded {
        // Every member runs the newer version: the cluster does too.
        let directory = directory.clone();
        let raised = control
            .spawn(async move { cluster_version_reaches(&directory, newer_version()).await })
            .await;
        if let Ok(Err(state)) = raised {
            report.failures.push(state);
        }
    }
    versions_watch
        .0
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = versions_watch.1.await;

    // What each member serves, once they have caught up.
    let contents = contents_of(&control, &directory).await;
    let (history, watch, cluster_ids) = shared.take();
    let restored = if plan::total_loss(config.seed) {
        trace.update(format!("{} ms: {}\n", elapsed_ms(origin), Fault::TotalLoss));
        report.faults.push(Fault::TotalLoss);
        match restore_after_total_loss(&config, &mut cluster, &directory, origin, &control).await {
            Ok(restored) => Some(restored),
            Err(failure) => {
                report.failures.push(failure);
                None
            }
        }
    } else {
        None
    };
    let majority_lost = match majority_loss {
        Some(fault) => {
            trace.update(format!("{} ms: {fault}\n", elapsed_ms(origin)));
            report.faults.push(fault.clone());
            let lost = lose_majority(&config, &fault, &mut cluster, &directory, origin, &control);
            match lost.await {
                Ok(lost) => Some(lost),
                Err(failure) => {
                    report.failures.push(failure);
                    None
                }
            }
        }
        None => None,
    };
    let seen = Seen {
        history,
        watch,
        cluster_ids,
        contents,
        restored,
        majority_lost,
    };
    finish(&mut report, origin, &cluster);
    (report, Some(seen), trace)
}

/// Loses every machine and disk at once, starts fresh machines that
/// restore the newest snapshot of the bucket and its deltas, reads what they restored,
/// then runs a workload on the restored cluster.
async fn restore_after_total_loss(
    config: &RunConfig,
    cluster: &mut Cluster,
    directory: &Directory,
    origin: Instant,
    control: &madsim::runtime::NodeHandle,
) -> Result<Restored, String> {
    // Clients write until every machine is lost at once, so the last
    // writes are in deltas only (if at all).
    let loss_ms = elapsed_ms(origin) + BEFORE_TOTAL_LOSS_MS;
    let (shared, tasks) = start_workload(
        config,
        directory,
        origin,
        loss_ms,
        None,
        LOSS_CLIENT_BASE,
        control,
    );
    sleep(Duration::from_millis(BEFORE_TOTAL_LOSS_MS)).await;
    cluster.replace_all();
    for task in tasks {
        let _ = task.await;
    }
    let (last_writes, _, _) = shared.take();
    // Nothing writes to the bucket any more: the newest chain there is
    // what a restore must take, up to its last delta.
    let snapshot = cluster.newest_backup();
    directory.set(cluster.members().iter().map(|m| m.client_url()).collect());
    let formed = takes_a_write(control, directory).await;
    if !formed {
        return Err(format!(
            "after losing every machine, the fresh ones did not take a write within {FORMATION_BOUND:?}"
        ));
    }
    let restored_contents = contents_of(control, directory).await;
    let revision = snapshot.as_ref().map_or(0, |(_, revision)| *revision);
    let life = second_life(
        config,
        directory,
        (origin, control),
        (restored_contents, revision),
        RESTORED_CLIENT_BASE,
    )
    .await;
    Ok(Restored {
        life,
        snapshot,
        last_writes,
    })
}

/// How long clients write before every machine is lost.
const BEFORE_TOTAL_LOSS_MS: u64 = 4_000;
/// How long clients write in a run's last phase before the majority goes;
/// the lagging survivor is cut off for the last [`LAG_MS`] of it.
const BEFORE_LOSS_MS: u64 = 6_000;
const LAG_MS: u64 = 4_000;
/// How long clients keep trying once the majority is gone.
const AFTER_LOSS_MS: u64 = 3_000;
/// Client ids while the majority is lost, and on the recovered cluster.
const LOSS_CLIENT_BASE: u32 = 20;
const RECOVERED_CLIENT_BASE: u32 = 30;
/// How long the survivors get to recover and the replacements to join:
/// the opt-in's wait, the agreement, the restart and a join and promotion
/// per replacement, with room.
const MAJORITY_RECOVERY_BOUND: Duration = Duration::from_secs(180);
/// How long, without the opt-in, no member may take a write: well past
/// the wait of a run that opts in.
const NO_RECOVERY_WATCH: Duration = Duration::from_secs(60);

/// Clients write while a majority of the machines is lost for good (the
/// lagging survivor cut off just before, so that it lacks the last
/// writes), and fresh nodes take their slots. With the opt-in, the
/// survivors must recover the cluster and everyone join it; then it
/// serves a workload of its own. Without, no member may take a write.
async fn lose_majority(
    config: &RunConfig,
    fault: &Fault,
    cluster: &mut Cluster,
    directory: &Directory,
    origin: Instant,
    control: &madsim::runtime::NodeHandle,
) -> Result<MajorityLost, String> {
    let Fault::MajorityLoss {
        lost,
        lagging,
        opt_in,
    } = fault
    else {
        unreachable!("lose_majority takes a majority loss")
    };
    let loss_ms = elapsed_ms(origin) + BEFORE_LOSS_MS;
    let (shared, tasks) = start_workload(
        config,
        directory,
        origin,
        loss_ms + AFTER_LOSS_MS,
        None,
        LOSS_CLIENT_BASE,
        control,
    );
    sleep(Duration::from_millis(BEFORE_LOSS_MS - LAG_MS)).await;
    if let Some(slot) = lagging {
        cluster.isolate(&[*slot]);
    }
    sleep(Duration::from_millis(
        loss_ms.saturating_sub(elapsed_ms(origin)),
    ))
    .await;
    for &slot in lost {
        cluster.lose(slot);
    }
    for task in tasks {
        let _ = task.await;
    }
    // Fresh nodes take the lost slots, then the links among the machines
    // now in the slots heal. The lost machines' links to the lagging
    // survivor stay cut: the simulated network delivers what was queued
    // on a cut link once it heals, even from a machine since killed,
    // where a real network loses it with the machine.
    for &slot in lost {
        cluster.replace(slot);
    }
    cluster.heal();
    directory.set(cluster.members().iter().map(|m| m.client_url()).collect());
    let (history, _, cluster_ids) = shared.take();
    if !opt_in {
        let probe = {
            let directory = directory.clone();
            control.spawn(async move {
                wait_for_write(&directory, NO_RECOVERY_WATCH, b"/sim/probe", b"1").await
            })
        };
        if probe.await.unwrap_or(false) {
            return Err(format!(
                "without --unsafe-auto-recover-after, a member took a write within {NO_RECOVERY_WATCH:?} of losing {lost:?} for good"
            ));
        }
        return Ok(MajorityLost {
            history,
            cluster_ids,
            recovered: None,
        });
    }
    let intended: BTreeSet<String> = cluster.members().iter().map(|m| m.name.clone()).collect();
    let recovered = {
        let directory = directory.clone();
        control
            .spawn(async move {
                wait_for_recovery(&directory, &intended, MAJORITY_RECOVERY_BOUND).await
            })
            .await
    };
    match recovered {
        Ok(Ok(())) => {}
        Ok(Err(state)) => {
            return Err(format!(
                "after losing {lost:?} for good, not whole again within {MAJORITY_RECOVERY_BOUND:?}: {state}"
            ))
        }
        Err(e) => return Err(format!("the recovery check failed: {e}")),
    }
    let first_contents = contents_of(control, directory).await;
    let revision = current_revision(control, directory).await;
    let life = second_life(
        config,
        directory,
        (origin, control),
        (first_contents, revision),
        RECOVERED_CLIENT_BASE,
    )
    .await;
    Ok(MajorityLost {
        history,
        cluster_ids,
        recovered: Some(life),
    })
}

/// Runs a workload (clients from `client_base`, a watcher from after
/// `revision`) on a cluster that came back serving `first_contents` at
/// store revision `revision`, and records what it saw.
async fn second_life(
    config: &RunConfig,
    directory: &Directory,
    (origin, control): (Instant, &madsim::runtime::NodeHandle),
    (first_contents, revision): (Vec<(String, Option<Contents>)>, i64),
    client_base: u32,
) -> SecondLife {
    let until_ms = elapsed_ms(origin) + RESTORED_WORKLOAD_MS;
    let (shared, tasks) = start_workload(
        config,
        directory,
        origin,
        until_ms,
        Some(revision + 1),
        client_base,
        control,
    );
    for task in tasks {
        let _ = task.await;
    }
    let contents = contents_of(control, directory).await;
    let (history, watch, cluster_ids) = shared.take();
    SecondLife {
        first_contents,
        revision,
        history,
        watch,
        cluster_ids,
        contents,
    }
}

/// The store revision a member reports, read from the control host; 0 if
/// none answers.
async fn current_revision(control: &madsim::runtime::NodeHandle, directory: &Directory) -> i64 {
    let directory = directory.clone();
    control
        .spawn(async move {
            for url in directory.all() {
                let status = member_status(&url, Duration::from_secs(2)).await;
                if let Some(header) = status.ok().and_then(|s| s.header) {
                    return header.revision;
                }
            }
            0
        })
        .await
        .unwrap_or(0)
}

/// Adds what the nodes stopped with, and the simulated time.
fn finish(report: &mut Report, origin: Instant, cluster: &Cluster) {
    report.failures.extend(
        cluster
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned(),
    );
    report.simulated_ms = elapsed_ms(origin);
}

fn judge(report: &mut Report, seen: &Seen) {
    report.linearizability_decided = true;
    let mut failures = judge_period(
        report,
        KvState::with_background_writes(),
        &seen.history,
        Some(&seen.watch),
        &seen.cluster_ids,
        &seen.contents,
    );
    if let Some(restored) = &seen.restored {
        failures.extend(judge_restore(report, &seen.history, restored));
    }
    if let Some(lost) = &seen.majority_lost {
        failures.extend(judge_majority_loss(report, seen, lost));
    }
    report.failures.extend(failures);
}

/// A majority lost for good: what clients saw while it went is
/// linearizable from what the cluster served before; the recovered
/// cluster serves every write acknowledged before (none lost with the
/// majority or missed by a lagging survivor), its members agree, and it
/// then behaves as any other.
fn judge_majority_loss(report: &mut Report, seen: &Seen, lost: &MajorityLost) -> Vec<String> {
    let mut failures = Vec::new();
    let served_before = served_contents(&seen.contents, "before the loss", &mut Vec::new());
    let before = served_before
        .first()
        .map(|(_, contents)| contents.clone())
        .unwrap_or_default();
    let initial = KvState {
        revision: before
            .values()
            .map(|(_, revision)| *revision)
            .max()
            .unwrap_or(0),
        keys: before,
        background_writes: true,
    };
    let during = judge_period(report, initial, &lost.history, None, &lost.cluster_ids, &[]);
    failures.extend(
        during
            .into_iter()
            .map(|f| format!("while the majority was lost: {f}")),
    );
    let Some(recovered) = &lost.recovered else {
        return failures;
    };
    let served = served_contents(
        &recovered.first_contents,
        "after the recovery",
        &mut failures,
    );
    failures.extend(checks::agreement(&served));
    let Some((_, first)) = served.first() else {
        return failures;
    };
    let mut every_write = seen.history.clone();
    for op in &lost.history.operations {
        every_write.push(op.clone());
    }
    failures.extend(
        checks::durability(&every_write, first)
            .into_iter()
            .map(|f| format!("after the recovery: {f}")),
    );
    let after = judge_second_life(report, first, recovered);
    failures.extend(
        after
            .into_iter()
            .map(|f| format!("after the recovery: {f}")),
    );
    failures
}

/// The checks of a workload on a cluster that came back serving `first`
/// (what one member served of `life.first_contents`).
fn judge_second_life(report: &mut Report, first: &Contents, life: &SecondLife) -> Vec<String> {
    let initial = KvState {
        revision: life.revision,
        keys: first.clone(),
        background_writes: true,
    };
    judge_period(
        report,
        initial,
        &life.history,
        Some(&life.watch),
        &life.cluster_ids,
        &life.contents,
    )
}

/// The checks of one workload period, from the store state `initial`.
fn judge_period(
    report: &mut Report,
    initial: KvState,
    history: &History,
    watch: Option<&WatchLog>,
    cluster_ids: &BTreeSet<u64>,
    contents: &[(String, Option<Contents>)],
) -> Vec<String> {
    let mut failures = Vec::new();
    report.operations += history.operations.len();
    report.unknown_outcomes += history
        .operations
        .iter()
        .filter(|op| op.completed.is_none())
        .count();
    report.watch_events += watch.map_or(0, |w| w.events.len());
    match linearizability::check_from(initial.clone(), history, LINEARIZABILITY_STATES_MAX) {
        Verdict::Linearizable => {}
        Verdict::Violation(v) => failures.push(format!("not linearizable: {v}")),
        Verdict::Undecided { .. } => {
            report.linearizability_decided = false;
            for (key, part) in split_by_key(history) {
                match linearizability::check_from(initial.clone(), &part, KEY_STATES_MAX) {
                    Verdict::Linearizable => {}
                    Verdict::Undecided { .. } => report.undecided_keys.push(key),
                    Verdict::Violation(v) => {
                        failures.push(format!("not linearizable on {key}: {v}"))
                    }
                }
            }
        }
    }
    if let Some(watch) = watch {
        failures.extend(checks::watch(history, watch));
    }
    failures.extend(checks::identity(cluster_ids));
    let served = served_contents(contents, "after recovery", &mut failures);
    failures.extend(checks::agreement(&served));
    if let Some((_, contents)) = served.first() {
        failures.extend(checks::durability(history, contents));
    }
    failures
}

/// The members that answered with their contents; one failure for each
/// that did not.
fn served_contents(
    contents: &[(String, Option<Contents>)],
    when: &str,
    failures: &mut Vec<String>,
) -> Vec<(String, Contents)> {
    let mut served = Vec::new();
    for (name, contents) in contents {
        match contents {
            Some(contents) => served.push((name.clone(), contents.clone())),
            None => failures.push(format!("{name} did not serve its contents {when}")),
        }
    }
    served
}

/// A restore after a total loss: the fresh members agree, serve exactly
/// what the newest snapshot held of the acknowledged writes, and the
/// restored cluster then behaves as any other.
fn judge_restore(report: &mut Report, before: &History, restored: &Restored) -> Vec<String> {
    let mut failures = Vec::new();
    let served = served_contents(
        &restored.life.first_contents,
        "after the restore",
        &mut failures,
    );
    failures.extend(checks::agreement(&served));
    let Some((_, first)) = served.first() else {
        return failures;
    };
    let mut written = before.clone();
    written
        .operations
        .extend(restored.last_writes.operations.iter().cloned());
    match &restored.snapshot {
        Some((_, revision)) => failures.extend(checks::restored(&written, first, *revision)),
        None if !first.is_empty() => failures.push(format!(
            "the bucket held no snapshot, yet the fresh cluster serves {} keys",
            first.len()
        )),
        None => {}
    }
    let after = judge_second_life(report, first, &restored.life);
    failures.extend(after.into_iter().map(|f| format!("after the restore: {f}")));
    failures
}

fn split_by_key(history: &History) -> BTreeMap<String, History> {
    let mut parts: BTreeMap<String, History> = BTreeMap::new();
    for op in &history.operations {
        parts
            .entry(op.request.key().to_string())
            .or_default()
            .push(op.clone());
    }
    parts
}

/// The version a rolling upgrade moves the machines to: the next minor
/// version after the build's own.
fn newer_version() -> Version {
    let own = e2d_shell::own_version();
    Version::new(own.major, own.minor + 1, 0)
}

/// How long the cluster gets, once the faults stopped, to record the
/// version every member runs after an upgrade.
const CLUSTER_VERSION_BOUND: Duration = Duration::from_secs(30);

/// Waits until the recorded cluster version is `version`; says what it is
/// when that does not come within [`CLUSTER_VERSION_BOUND`].
async fn cluster_version_reaches(directory: &Directory, version: Version) -> Result<(), String> {
    let deadline = Instant::now() + CLUSTER_VERSION_BOUND;
    let mut last = None;
    while Instant::now() < deadline {
        last = recorded_cluster_version(directory).await;
        if last == Some(version) {
            return Ok(());
        }
        sleep(Duration::from_secs(1)).await;
    }
    Err(format!(
        "every member runs {version} after the upgrade, yet the cluster version is {last:?} \
         {CLUSTER_VERSION_BOUND:?} after the faults stopped"
    ))
}

/// The cluster version recorded under its key, read linearizably through
/// any member; `None` when none is recorded or no member answers.
async fn recorded_cluster_version(directory: &Directory) -> Option<Version> {
    let channel = connect(&directory.pick()).await?;
    let mut client = KvClient::new(channel);
    let call = client.range(RangeRequest {
        key: e2d_shell::CLUSTER_VERSION_KEY.to_vec(),
        ..Default::default()
    });
    let answer = madsim::time::timeout(Duration::from_secs(2), call)
        .await
        .ok()?
        .ok()?;
    let kv = answer.into_inner().kvs.into_iter().next()?;
    Version::parse(&String::from_utf8_lossy(&kv.value))
}

/// Until `stop`: every second, the recorded cluster version must not be
/// above the version any current member runs (as the simulator gave it;
/// a machine being upgraded counts with its old version until it starts
/// on the new one). A violation is a failure of the run.
async fn watch_cluster_version(
    directory: Directory,
    (versions, errors): (crate::cluster::VersionBook, crate::cluster::NodeErrors),
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let own = e2d_shell::own_version();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        sleep(OBSERVE_INTERVAL).await;
        let Some(recorded) = recorded_cluster_version(&directory).await else {
            continue;
        };
        let Some(channel) = connect(&directory.pick()).await else {
            continue;
        };
        let mut client = ClusterClient::new(channel);
        let call = client.member_list(MemberListRequest { linearizable: true });
        let Ok(Ok(answer)) = madsim::time::timeout(Duration::from_secs(2), call).await else {
            continue;
        };
        let book = versions.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for member in answer.into_inner().members {
            let runs = book.get(&member.name).copied().unwrap_or(own);
            if !member.name.is_empty() && runs < recorded {
                errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!(
                        "the cluster version {recorded} was recorded while member {} runs {runs}",
                        member.name
                    ));
                return;
            }
        }
    }
}

/// How long a node restarted on a damaged raft log gets to refuse it.
const DAMAGED_LOG_REFUSAL_MS: u64 = 10_000;

async fn inject(
    cluster: &mut Cluster,
    directory: &Directory,
    fault: &Fault,
    control: &madsim::runtime::NodeHandle,
) {
    let hold = |ms: u64| sleep(Duration::from_millis(ms));
    match fault {
        Fault::Crash { slot, down_ms } => {
            let kept = thread_rng().gen_range(0..4);
            cluster.crash(*slot, kept);
            hold(*down_ms).await;
            cluster.restart(*slot);
        }
        Fault::PowerLoss { down_ms } => {
            for slot in 0..cluster.size() {
                let kept = thread_rng().gen_range(0..4);
                cluster.crash(slot, kept);
            }
            hold(*down_ms).await;
            for slot in 0..cluster.size() {
                cluster.restart(slot);
            }
        }
        Fault::DamagedLog { slot } => {
            let damaged = cluster.damage_log(*slot, thread_rng().gen_range(0..usize::MAX));
            hold(DAMAGED_LOG_REFUSAL_MS).await;
            if let Some(file) = damaged {
                let file = file.display().to_string();
                match cluster.take_error_of(*slot) {
                    Some(error) if error.contains("damaged") && error.contains(&file) => {}
                    other => cluster.fail(format!(
                        "n{slot} did not refuse its damaged raft log {file}: {other:?}"
                    )),
                }
            }
            cluster.replace(*slot);
            directory.set(cluster.members().iter().map(|m| m.client_url()).collect());
        }
        Fault::Replace { slot } => {
            cluster.replace(*slot);
            directory.set(cluster.members().iter().map(|m| m.client_url()).collect());
        }
        Fault::Partition { isolated, ms } => {
            cluster.isolate(isolated);
            hold(*ms).await;
            cluster.heal();
        }
        Fault::OneWay { from, to, ms } => {
            cluster.cut_one_way(*from, *to);
            hold(*ms).await;
            cluster.heal();
        }
        Fault::Bridge { bridge, ms } => {
            cluster.split_with_bridge(*bridge);
            hold(*ms).await;
            cluster.heal();
        }
        Fault::PacketLoss { percent, ms } => {
            let net = NetSim::current();
            net.update_config(|c| c.packet_loss_rate = f64::from(*percent) / 100.0);
            hold(*ms).await;
            net.update_config(|c| c.packet_loss_rate = 0.0);
        }
        Fault::DelaySpike { latency_ms, ms } => {
            let net = NetSim::current();
            let mut normal = None;
            net.update_config(|c| {
                normal = Some(c.send_latency.clone());
                c.send_latency = Duration::from_millis(1)..Duration::from_millis(*latency_ms);
            });
            hold(*ms).await;
            net.update_config(|c| c.send_latency = normal.expect("read above"));
        }
        Fault::Pause { slot, ms } => {
            cluster.pause(*slot);
            hold(*ms).await;
            cluster.resume(*slot);
        }
        Fault::Shrink { size, ms } => {
            resize(cluster, directory, control, *size).await;
            hold(*ms).await;
            let founding = cluster.size();
            resize(cluster, directory, control, founding).await;
        }
        Fault::RollingUpgrade {
            order,
            down_ms,
            gap_ms,
        } => {
            let version = newer_version();
            cluster.begin_upgrade(version);
            for &slot in order {
                cluster.crash(slot, thread_rng().gen_range(0..4));
                hold(*down_ms).await;
                cluster.upgrade(slot, version);
                hold(*gap_ms).await;
            }
        }
        Fault::TotalLoss | Fault::MajorityLoss { .. } => {
            unreachable!("a total or majority loss ends a run; plans never hold one")
        }
    }
}

/// `e2d cluster resize size`, written from the control host through any
/// member; a resize no member takes fails the run.
async fn resize(
    cluster: &Cluster,
    directory: &Directory,
    control: &madsim::runtime::NodeHandle,
    size: usize,
) {
    let directory = directory.clone();
    let value = size.to_string().into_bytes();
    let written = control
        .spawn(async move {
            let key = e2d_shell::CLUSTER_SIZE_KEY;
            wait_for_write(&directory, RESIZE_BOUND, key, &value).await
        })
        .await
        .unwrap_or(false);
    if !written {
        cluster.fail(format!("no member took the resize to {size}"));
    }
}

/// Whether the cluster takes a write within the formation bound, asked
/// from the control host.
async fn takes_a_write(control: &madsim::runtime::NodeHandle, directory: &Directory) -> bool {
    let directory = directory.clone();
    control
        .spawn(
            async move { wait_for_write(&directory, FORMATION_BOUND, b"/sim/probe", b"1").await },
        )
        .await
        .unwrap_or(false)
}

/// What each member serves, read from the control host.
async fn contents_of(
    control: &madsim::runtime::NodeHandle,
    directory: &Directory,
) -> Vec<(String, Option<Contents>)> {
    let directory = directory.clone();
    control
        .spawn(async move { final_contents(&directory).await })
        .await
        .unwrap_or_default()
}

/// Retries a put of `value` under `key` through any member until one
/// succeeds.
async fn wait_for_write(directory: &Directory, bound: Duration, key: &[u8], value: &[u8]) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Some(channel) = connect(&directory.pick()).await {
            let put = PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                ..Default::default()
            };
            let mut client = KvClient::new(channel);
            let call = client.put(put);
            if let Ok(Ok(_)) = madsim::time::timeout(Duration::from_secs(3), call).await {
                return true;
            }
        }
        sleep(Duration::from_millis(500)).await;
    }
    false
}

/// One member's status, or why there is none.
async fn member_status(url: &str, timeout: Duration) -> Result<StatusResponse, String> {
    let channel = connect(url).await.ok_or(format!("{url} does not answer"))?;
    let mut client = MaintenanceClient::new(channel);
    let call = client.status(StatusRequest {});
    Ok(madsim::time::timeout(timeout, call)
        .await
        .map_err(|_| format!("{url}: status timed out"))?
        .map_err(|e| format!("{url}: {}", e.message()))?
        .into_inner())
}

/// Records the cluster id every member answers with.
async fn observe(
    directory: Directory,
    origin: Instant,
    until_ms: u64,
    ids: Arc<Mutex<BTreeSet<u64>>>,
) {
    while elapsed_ms(origin) < until_ms {
        sleep(OBSERVE_INTERVAL).await;
        for url in directory.all() {
            let status = member_status(&url, Duration::from_secs(1)).await;
            if let Some(header) = status.ok().and_then(|s| s.header) {
                ids.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(header.cluster_id);
            }
        }
    }
}

/// Waits until every member runs, all agree on one leader, the member
/// list is exactly `intended` with no learner, and a write succeeds.
/// On timeout, says what was still wrong.
async fn wait_for_recovery(
    directory: &Directory,
    intended: &BTreeSet<String>,
    bound: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + bound;
    let mut state = String::from("no member answered");
    while Instant::now() < deadline {
        sleep(Duration::from_secs(1)).await;
        match recovery_state(directory, intended).await {
            Ok(())
                if wait_for_write(directory, Duration::from_secs(5), b"/sim/probe", b"1").await =>
            {
                return Ok(())
            }
            Ok(()) => state = "a write did not succeed".into(),
            Err(now) => state = now,
        }
    }
    Err(state)
}

async fn recovery_state(directory: &Directory, intended: &BTreeSet<String>) -> Result<(), String> {
    let mut leaders = BTreeSet::new();
    for url in directory.all() {
        let status = member_status(&url, Duration::from_secs(2)).await?;
        if status.leader == 0 {
            return Err(format!("{url} knows no leader"));
        }
        leaders.insert(status.leader);
    }
    if leaders.len() > 1 {
        return Err(format!("members name different leaders: {leaders:x?}"));
    }
    let channel = connect(&directory.pick())
        .await
        .ok_or("no member answers")?;
    let mut client = ClusterClient::new(channel);
    let call = client.member_list(MemberListRequest { linearizable: true });
    let members = madsim::time::timeout(Duration::from_secs(2), call)
        .await
        .map_err(|_| "member list timed out".to_string())?
        .map_err(|e| format!("member list: {}", e.message()))?
        .into_inner()
        .members;
    let names: BTreeSet<String> = members.iter().map(|m| m.name.clone()).collect();
    if names != *intended || members.len() != intended.len() {
        return Err(format!("members are {names:?}, not {intended:?}"));
    }
    if let Some(learner) = members.iter().find(|m| m.is_learner) {
        return Err(format!("{} is still a learner", learner.name));
    }
    Ok(())
}

/// Each member's keys, read locally (serializable) once every member
/// reports the same applied index; `None` for a member that did not
/// answer.
async fn final_contents(directory: &Directory) -> Vec<(String, Option<Contents>)> {
    // Let the members apply what the leader committed.
    for _ in 0..30 {
        let mut applied = BTreeSet::new();
        for url in directory.all() {
            if let Ok(status) = member_status(&url, Duration::from_secs(2)).await {
                applied.insert(status.raft_applied_index);
            }
        }
        if applied.len() == 1 {
            break;
        }
        sleep(Duration::from_millis(500)).await;
    }
    let mut all = Vec::new();
    for url in directory.all() {
        let mut contents = None;
        if let Some(channel) = connect(&url).await {
            let mut client = KvClient::new(channel);
            let call = client.range(RangeRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                serializable: true,
                ..Default::default()
            });
            if let Ok(Ok(answer)) = madsim::time::timeout(Duration::from_secs(2), call).await {
                contents = Some(
                    answer
                        .into_inner()
                        .kvs
                        .into_iter()
                        .map(|kv| {
                            (
                                String::from_utf8_lossy(&kv.key).into_owned(),
                                (
                                    String::from_utf8_lossy(&kv.value).into_owned(),
                                    kv.mod_revision,
                                ),
                            )
                        })
                        .collect(),
                );
            }
        }
        all.push((url, contents));
    }
    all
}

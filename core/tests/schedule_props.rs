//! Properties of snapshot retention and scheduling over random inputs.
//!
//! Retention is checked against a naive model that groups snapshots into
//! hour and day buckets with maps; the scheduler is driven by a fake shell
//! that records every command and checks each against the rules it must
//! follow, with time, leadership, revisions and results chosen at random.

use std::collections::{BTreeMap, BTreeSet};

use e2d_core::schedule::{
    newest_valid, plan_prune, snapshot_name, Retention, ScheduleCommand, Scheduler,
    SchedulerConfig, SnapshotInfo,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
/// 2024-02-28T00:00:00Z, a day before a leap day.
const T0_MS: u64 = 1_709_078_400_000;
const CLUSTER: u64 = 1;
const OTHER_CLUSTER: u64 = 2;

// ---------------------------------------------------------------------------
// Retention.

/// How an entry of a generated listing is named.
#[derive(Debug, Clone)]
enum NameKind {
    Canonical,
    /// Another entry's name: a store listing the same object twice.
    CopyOf(usize),
    /// Not in e2d's scheme.
    Foreign,
}

fn arb_entry() -> impl Strategy<Value = (u64, i64, u64, bool, NameKind)> {
    (
        prop_oneof![4 => Just(CLUSTER), 1 => Just(OTHER_CLUSTER)],
        0i64..50,
        // Clumps of minutes inside a few days, so buckets hold several.
        (0u64..4, 0u64..24, 0u64..60, 0u64..3).prop_map(|(day, hour, minute, ms)| {
            T0_MS + day * DAY_MS + hour * HOUR_MS + minute * 60_000 + ms
        }),
        prop::bool::weighted(0.8),
        prop_oneof![
            18 => Just(NameKind::Canonical),
            1 => (0usize..64).prop_map(NameKind::CopyOf),
            1 => Just(NameKind::Foreign),
        ],
    )
}

fn arb_listing() -> impl Strategy<Value = Vec<SnapshotInfo>> {
    prop::collection::vec(arb_entry(), 0..40).prop_map(|entries| {
        let mut listing: Vec<SnapshotInfo> = entries
            .iter()
            .enumerate()
            .map(
                |(i, &(cluster_id, revision, taken_at_ms, valid, _))| SnapshotInfo {
                    name: match entries[i].4 {
                        NameKind::Foreign => format!("manual-backup-{i}.db"),
                        _ => snapshot_name(cluster_id, revision, taken_at_ms),
                    },
                    cluster_id,
                    revision,
                    taken_at_ms,
                    size_bytes: 1,
                    valid,
                },
            )
            .collect();
        for (i, entry) in entries.iter().enumerate() {
            if let NameKind::CopyOf(j) = entry.4 {
                listing[i].name = listing[j % listing.len()].name.clone();
            }
        }
        listing
    })
}

fn arb_retention() -> impl Strategy<Value = Retention> {
    (
        0usize..6,
        prop_oneof![Just(0usize), 0usize..30],
        prop_oneof![Just(0usize), 0usize..8],
    )
        .prop_map(|(keep_newest, keep_hourly, keep_daily)| Retention {
            keep_newest,
            keep_hourly,
            keep_daily,
        })
}

fn newest_first(mut snapshots: Vec<&SnapshotInfo>) -> Vec<&SnapshotInfo> {
    snapshots.sort_by(|a, b| b.recency_key().cmp(&a.recency_key()));
    snapshots
}

/// The newest of each of the `count` most recent buckets that have one.
fn model_per_bucket<'a>(
    valid: &[&'a SnapshotInfo],
    bucket_ms: u64,
    count: usize,
) -> Vec<&'a SnapshotInfo> {
    let mut buckets: BTreeMap<u64, Vec<&SnapshotInfo>> = BTreeMap::new();
    for s in valid {
        buckets
            .entry(s.taken_at_ms / bucket_ms)
            .or_default()
            .push(s);
    }
    buckets
        .into_values()
        .rev()
        .take(count)
        .map(|bucket| newest_first(bucket)[0])
        .collect()
}

/// The valid snapshots of the newest's cluster the policy keeps.
fn model_kept<'a>(
    listing: &'a [SnapshotInfo],
    newest: &'a SnapshotInfo,
    policy: &Retention,
) -> BTreeSet<&'a str> {
    let valid = newest_first(
        listing
            .iter()
            .filter(|s| s.valid && s.cluster_id == newest.cluster_id)
            .collect(),
    );
    let mut kept = BTreeSet::from([newest.name.as_str()]);
    kept.extend(
        valid
            .iter()
            .take(policy.keep_newest)
            .map(|s| s.name.as_str()),
    );
    for s in model_per_bucket(&valid, HOUR_MS, policy.keep_hourly) {
        kept.insert(&s.name);
    }
    for s in model_per_bucket(&valid, DAY_MS, policy.keep_daily) {
        kept.insert(&s.name);
    }
    kept
}

fn check_plan(listing: &[SnapshotInfo], policy: &Retention) -> Result<(), TestCaseError> {
    let plan = plan_prune(listing, policy);
    let Some(newest) = newest_valid(listing) else {
        prop_assert!(plan.is_empty(), "nothing valid, yet deletes {plan:?}");
        return Ok(());
    };
    let planned: BTreeSet<&str> = plan.iter().map(String::as_str).collect();
    prop_assert_eq!(planned.iter().copied().collect::<Vec<_>>(), plan.clone());
    prop_assert!(!planned.contains(newest.name.as_str()));
    let own_valid = newest_first(
        listing
            .iter()
            .filter(|s| s.valid && s.cluster_id == newest.cluster_id)
            .collect(),
    );
    for s in own_valid.iter().take(policy.keep_newest) {
        prop_assert!(!planned.contains(s.name.as_str()), "deletes {}", s.name);
    }
    for s in listing.iter().filter(|s| planned.contains(s.name.as_str())) {
        prop_assert_eq!(
            s.cluster_id,
            newest.cluster_id,
            "other cluster's {}",
            &s.name
        );
        prop_assert!(
            s.valid || s.recency_key() < newest.recency_key(),
            "deletes {} while it may be uploading",
            &s.name
        );
    }
    // Exactly the model's plan, where each name is listed once and in scheme.
    let kept = model_kept(listing, newest, policy);
    let mut names_seen = BTreeMap::<&str, usize>::new();
    for s in listing {
        *names_seen.entry(&s.name).or_default() += 1;
    }
    for s in listing {
        let plain = names_seen[s.name.as_str()] == 1
            && s.name == snapshot_name(s.cluster_id, s.revision, s.taken_at_ms);
        if !plain {
            continue;
        }
        let deletable = s.cluster_id == newest.cluster_id
            && !kept.contains(s.name.as_str())
            && (s.valid || s.recency_key() < newest.recency_key());
        prop_assert_eq!(planned.contains(s.name.as_str()), deletable, "{}", &s.name);
    }
    // Idempotent: the remainder has nothing more to delete.
    let remainder: Vec<SnapshotInfo> = listing
        .iter()
        .filter(|s| !planned.contains(s.name.as_str()))
        .cloned()
        .collect();
    prop_assert_eq!(plan_prune(&remainder, policy), Vec::<String>::new());
    Ok(())
}

// ---------------------------------------------------------------------------
// Scheduler.

#[derive(Debug, Clone)]
enum Input {
    Advance { ms: u64 },
    FireTimer,
    SpuriousTimeout,
    Apply { revisions: i64 },
    Leadership { is_leader: bool },
    AnswerTake { outcome: TakeOutcome },
    AnswerListing { ok: bool },
    UnknownIds { offset: u64 },
}

#[derive(Debug, Clone, Copy)]
enum TakeOutcome {
    Uploaded,
    Invalid,
    Failed,
}

fn arb_input(interval_ms: u64) -> impl Strategy<Value = Input> {
    prop_oneof![
        3 => (0..3 * interval_ms).prop_map(|ms| Input::Advance { ms }),
        6 => Just(Input::FireTimer),
        1 => Just(Input::SpuriousTimeout),
        4 => (0i64..3).prop_map(|revisions| Input::Apply { revisions }),
        2 => prop::bool::weighted(0.7).prop_map(|is_leader| Input::Leadership { is_leader }),
        5 => prop_oneof![
            3 => Just(TakeOutcome::Uploaded),
            1 => Just(TakeOutcome::Invalid),
            2 => Just(TakeOutcome::Failed),
        ]
        .prop_map(|outcome| Input::AnswerTake { outcome }),
        3 => prop::bool::weighted(0.8).prop_map(|ok| Input::AnswerListing { ok }),
        1 => (1u64..5).prop_map(|offset| Input::UnknownIds { offset }),
    ]
}

fn arb_config() -> impl Strategy<Value = SchedulerConfig> {
    (
        prop_oneof![Just(1_000u64), Just(60_000), 1_000u64..100_000],
        1u64..=100,
        1u64..=40,
        (0usize..3, 0usize..3, 0usize..3),
    )
        .prop_map(|(interval_ms, base_percent, max_factor, keep)| {
            let base_ms = (interval_ms * base_percent / 100).max(1);
            let retention = Retention {
                keep_newest: keep.0,
                keep_hourly: keep.1,
                keep_daily: keep.2,
            };
            SchedulerConfig::new(interval_ms, base_ms, base_ms * max_factor, retention).unwrap()
        })
}

fn arb_run() -> impl Strategy<Value = (SchedulerConfig, Vec<Input>)> {
    arb_config().prop_flat_map(|config| {
        let inputs = prop::collection::vec(arb_input(config.interval_ms()), 1..120);
        (Just(config), inputs)
    })
}

#[derive(Debug, Clone, Copy)]
struct PendingTake {
    id: u64,
    revision: i64,
}

/// When the scheduler may next take a snapshot, as the rules say.
#[derive(Debug, Clone, Copy)]
enum LastTake {
    Never,
    Succeeded {
        started_at_ms: u64,
    },
    Failed {
        at_ms: u64,
        failures_consecutive: u32,
    },
}

/// A shell that answers as told and checks every command.
struct FakeShell {
    config: SchedulerConfig,
    scheduler: Scheduler,
    now_ms: u64,
    /// The time of the last input that told the scheduler the time.
    last_timed_input_ms: u64,
    is_leader: bool,
    became_leader_at_ms: u64,
    applied_revision: i64,
    take: Option<PendingTake>,
    take_started_at_ms: u64,
    last_take: LastTake,
    listing: Option<u64>,
    ids_seen: BTreeSet<u64>,
    snapshot_revisions: BTreeSet<i64>,
    store: BTreeMap<String, SnapshotInfo>,
    takes: usize,
}

impl FakeShell {
    fn new(config: SchedulerConfig) -> Self {
        Self {
            scheduler: Scheduler::new(config.clone(), T0_MS),
            config,
            now_ms: T0_MS,
            last_timed_input_ms: T0_MS,
            is_leader: false,
            became_leader_at_ms: 0,
            applied_revision: 1,
            take: None,
            take_started_at_ms: 0,
            last_take: LastTake::Never,
            listing: None,
            ids_seen: BTreeSet::new(),
            snapshot_revisions: BTreeSet::new(),
            store: BTreeMap::new(),
            takes: 0,
        }
    }

    fn expected_backoff_ms(&self, failures_consecutive: u32) -> u64 {
        let mut wait_ms = self.config.backoff_base_ms();
        for _ in 1..failures_consecutive {
            wait_ms = wait_ms.saturating_mul(2);
        }
        wait_ms.min(self.config.backoff_max_ms())
    }

    fn run(&mut self, input: &Input) -> Result<(), TestCaseError> {
        match *input {
            Input::Advance { ms } => {
                self.now_ms += ms;
                return Ok(());
            }
            Input::FireTimer => {
                let Some(due_ms) = self.scheduler.poll_timeout() else {
                    return Ok(());
                };
                self.now_ms = self.now_ms.max(due_ms);
                self.scheduler.handle_timeout(self.now_ms);
            }
            Input::SpuriousTimeout => self.scheduler.handle_timeout(self.now_ms),
            Input::Apply { revisions } => {
                self.applied_revision += revisions;
                self.scheduler
                    .handle_applied_revision(self.applied_revision);
                self.drain()?;
                return self.check_timer();
            }
            Input::Leadership { is_leader } => {
                let becomes_leader = is_leader && !self.is_leader;
                if becomes_leader {
                    self.became_leader_at_ms = self.now_ms;
                }
                self.is_leader = is_leader;
                self.scheduler.handle_leadership(is_leader, self.now_ms);
                if becomes_leader && self.take.is_none() {
                    self.check_due_exactly()?;
                }
            }
            Input::AnswerTake { outcome } => {
                let Some(take) = self.take.take() else {
                    return Ok(());
                };
                let result = self.answer_take(take, outcome)?;
                self.scheduler
                    .handle_snapshot_result(take.id, result, self.now_ms);
                if self.is_leader {
                    self.check_due_exactly()?;
                }
            }
            Input::AnswerListing { ok } => {
                let Some(id) = self.listing.take() else {
                    return Ok(());
                };
                let listing = match ok {
                    true => Ok(self.store.values().cloned().collect()),
                    false => Err("list: timeout".to_string()),
                };
                self.scheduler.handle_listing(id, listing, self.now_ms);
            }
            Input::UnknownIds { offset } => {
                let unknown_id = self.ids_seen.last().copied().unwrap_or(0) + offset;
                let stale = uploaded(CLUSTER, self.applied_revision, self.now_ms);
                self.scheduler
                    .handle_snapshot_result(unknown_id, Ok(stale), self.now_ms);
                self.drain()?;
                self.scheduler
                    .handle_listing(unknown_id, Ok(vec![]), self.now_ms);
            }
        }
        self.last_timed_input_ms = self.now_ms;
        self.drain()?;
        self.check_timer()
    }

    fn answer_take(
        &mut self,
        take: PendingTake,
        outcome: TakeOutcome,
    ) -> Result<Result<SnapshotInfo, String>, TestCaseError> {
        // The shell snapshots whatever is applied when it runs.
        let snapshot = uploaded(CLUSTER, self.applied_revision, self.now_ms);
        prop_assert!(snapshot.revision >= take.revision);
        match outcome {
            TakeOutcome::Uploaded => {
                prop_assert!(
                    self.snapshot_revisions.insert(snapshot.revision),
                    "second snapshot at revision {}",
                    snapshot.revision
                );
                self.store.insert(snapshot.name.clone(), snapshot.clone());
                self.last_take = LastTake::Succeeded {
                    started_at_ms: self.take_started_at_ms,
                };
                Ok(Ok(snapshot))
            }
            TakeOutcome::Invalid | TakeOutcome::Failed => {
                let failures_consecutive = match self.last_take {
                    LastTake::Failed {
                        failures_consecutive,
                        ..
                    } => failures_consecutive + 1,
                    _ => 1,
                };
                self.last_take = LastTake::Failed {
                    at_ms: self.now_ms,
                    failures_consecutive,
                };
                Ok(match outcome {
                    TakeOutcome::Invalid => Ok(SnapshotInfo {
                        valid: false,
                        ..snapshot
                    }),
                    _ => Err("upload: 503".to_string()),
                })
            }
        }
    }

    fn drain(&mut self) -> Result<(), TestCaseError> {
        while let Some(command) = self.scheduler.poll_command() {
            match command {
                ScheduleCommand::TakeSnapshot { id, revision } => self.on_take(id, revision)?,
                ScheduleCommand::ListSnapshots { id } => {
                    prop_assert!(self.is_leader, "listing while follower");
                    prop_assert!(self.listing.is_none(), "two listings in flight");
                    prop_assert!(self.ids_seen.insert(id), "id {} reused", id);
                    self.listing = Some(id);
                }
                ScheduleCommand::Prune { names } => self.on_prune(names)?,
            }
        }
        Ok(())
    }

    fn on_take(&mut self, id: u64, revision: i64) -> Result<(), TestCaseError> {
        prop_assert!(self.take.is_none(), "two takes in flight");
        prop_assert!(self.is_leader, "take while follower");
        prop_assert!(self.ids_seen.insert(id), "id {} reused", id);
        prop_assert_eq!(revision, self.applied_revision);
        if let Some(&saved) = self.snapshot_revisions.last() {
            prop_assert!(revision > saved, "take at {} already saved", revision);
        }
        let interval_ms = self.config.interval_ms();
        prop_assert!(self.now_ms >= self.became_leader_at_ms + interval_ms);
        match self.last_take {
            LastTake::Never => {}
            LastTake::Succeeded { started_at_ms } => prop_assert!(
                self.now_ms >= started_at_ms + interval_ms,
                "take at {} ms, {} ms after the last",
                self.now_ms,
                self.now_ms - started_at_ms
            ),
            LastTake::Failed {
                at_ms,
                failures_consecutive,
            } => {
                let backoff_ms = self.expected_backoff_ms(failures_consecutive);
                prop_assert!(
                    self.now_ms >= at_ms + backoff_ms,
                    "retry {} ms after failure {}, back-off is {} ms",
                    self.now_ms - at_ms,
                    failures_consecutive,
                    backoff_ms
                );
            }
        }
        self.take = Some(PendingTake { id, revision });
        self.take_started_at_ms = self.now_ms;
        self.takes += 1;
        Ok(())
    }

    fn on_prune(&mut self, names: Vec<String>) -> Result<(), TestCaseError> {
        prop_assert!(self.is_leader, "prune while follower");
        prop_assert!(!names.is_empty());
        let listing: Vec<SnapshotInfo> = self.store.values().cloned().collect();
        let newest = newest_valid(&listing).map(|s| s.name.clone());
        for name in &names {
            prop_assert!(Some(name) != newest.as_ref(), "prunes the newest");
            prop_assert!(self.store.remove(name).is_some(), "prunes unknown {}", name);
        }
        Ok(())
    }

    /// Right after a take's answer, or a new leadership with no take
    /// running, the timer is set exactly by the rules: one interval after
    /// the last take started or after becoming leader, or the back-off
    /// after a failure. (A deadline already reached fires at once instead.)
    fn check_due_exactly(&self) -> Result<(), TestCaseError> {
        let interval_ms = self.config.interval_ms();
        let rule_ms = match self.last_take {
            LastTake::Never => 0,
            LastTake::Succeeded { started_at_ms } => started_at_ms + interval_ms,
            LastTake::Failed {
                at_ms,
                failures_consecutive,
            } => at_ms + self.expected_backoff_ms(failures_consecutive),
        };
        let expected_ms = rule_ms.max(self.became_leader_at_ms + interval_ms);
        if expected_ms > self.now_ms {
            prop_assert_eq!(self.scheduler.poll_timeout(), Some(expected_ms));
        }
        Ok(())
    }

    fn check_timer(&self) -> Result<(), TestCaseError> {
        let due_ms = self.scheduler.poll_timeout();
        if let Some(due_ms) = due_ms {
            prop_assert!(
                due_ms > self.last_timed_input_ms,
                "timer {} ms before the last input",
                self.last_timed_input_ms - due_ms
            );
        }
        let may_take = self.is_leader && self.take.is_none();
        prop_assert_eq!(due_ms.is_some(), may_take, "timer armed: {:?}", due_ms);
        Ok(())
    }
}

fn uploaded(cluster_id: u64, revision: i64, taken_at_ms: u64) -> SnapshotInfo {
    SnapshotInfo::named(cluster_id, revision, taken_at_ms, 1, true)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/schedule_props.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn prune_plan_keeps_what_it_must(listing in arb_listing(), policy in arb_retention()) {
        check_plan(&listing, &policy)?;
    }

    #[test]
    fn scheduler_follows_its_rules((config, inputs) in arb_run()) {
        let mut shell = FakeShell::new(config);
        for input in &inputs {
            shell.run(input)?;
        }
    }
}

/// The random runs reach the interesting states: takes, successes,
/// failures, prunes.
#[test]
fn scheduler_runs_take_snapshots() {
    let config = SchedulerConfig::default();
    let mut shell = FakeShell::new(config);
    let inputs = [
        Input::Leadership { is_leader: true },
        Input::Apply { revisions: 1 },
        Input::FireTimer,
        Input::AnswerTake {
            outcome: TakeOutcome::Failed,
        },
        Input::FireTimer,
        Input::AnswerTake {
            outcome: TakeOutcome::Uploaded,
        },
        Input::AnswerListing { ok: true },
    ];
    for input in &inputs {
        shell.run(input).unwrap();
    }
    assert_eq!(shell.takes, 2);
    assert_eq!(shell.snapshot_revisions.len(), 1);
}

//! Automatic compaction, as etcd's `--auto-compaction-mode` and
//! `--auto-compaction-retention` (etcd's `v3compactor`): which revision the
//! leader compacts the store at, and when.
//!
//! - **Periodic** (keep `period_ms` of history): the current revision is
//!   sampled every tenth of the period (of an hour for periods above an
//!   hour), the samples of the last period plus one kept. Once a period has
//!   passed since the start, and then every period (every hour for longer
//!   periods) after the last success, the store is compacted at the oldest
//!   sample: the revision current one period (plus one sampling interval)
//!   ago.
//! - **Revision** (keep `revisions` revisions): every 5 minutes the store
//!   is compacted at the current revision minus `revisions`.
//!
//! Either skips a revision it has already compacted at, and runs only
//! while this member leads (every member samples, so a new leader has the
//! history at once). A compaction that finds its revision compacted
//! already counts as done, as etcd's does.
//!
//! # Drain contract
//!
//! After [`AutoCompactor::new`] and every `handle_*`, drain
//! [`AutoCompactor::poll_command`] until `None`, then sleep until
//! [`AutoCompactor::poll_timeout`] and call
//! [`AutoCompactor::handle_timeout`]. Each [`CompactCommand`] must be
//! answered once with [`AutoCompactor::handle_result`]: until it is, no
//! timer runs (one compaction at a time, as etcd's compactor loop).
//! `now_ms` is a monotonic clock; a timeout before the deadline does
//! nothing.

use std::collections::VecDeque;

/// Revision mode compacts this often (etcd's `revInterval`).
pub const REVISION_INTERVAL_MS: u64 = 5 * 60 * 1000;
/// Periodic mode samples `SAMPLES_PER_PERIOD` times per period, of at most
/// [`PERIODIC_INTERVAL_MAX_MS`] (etcd's `retryDivisor`).
const SAMPLES_PER_PERIOD: u64 = 10;
/// Periodic mode compacts at least this often, whatever its period.
pub const PERIODIC_INTERVAL_MAX_MS: u64 = 60 * 60 * 1000;
/// Samples a periodic compactor keeps: a period of 24 h sampled every 6
/// minutes keeps 241, a 10-year period as many; nothing keeps more.
const SAMPLES_MAX: usize = 1_000_000;

/// How much history automatic compaction keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// The history of the last `period_ms` (more than zero).
    Periodic { period_ms: u64 },
    /// The last `revisions` revisions (more than zero).
    Revision { revisions: i64 },
}

/// Compact the store at `revision`, as a client's Compaction would, and
/// answer with [`AutoCompactor::handle_result`] and the same `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactCommand {
    pub id: u64,
    pub revision: i64,
}

/// How a [`CompactCommand`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactOutcome {
    Compacted,
    /// The store was compacted at this revision or later already: done.
    AlreadyCompacted,
    /// Anything else (no leader, a timeout): tried again at the next tick.
    Failed,
}

/// The compaction in flight.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    id: u64,
    revision: i64,
}

#[derive(Debug)]
pub struct AutoCompactor {
    retention: Retention,
    /// Time between ticks.
    interval_ms: u64,
    /// Periodic: revisions sampled at past ticks, oldest first.
    samples: VecDeque<i64>,
    samples_max: usize,
    /// Periodic: time since the last success before the next compaction;
    /// the whole period before the first.
    wait_ms: u64,
    last_success_ms: u64,
    /// The last revision compacted at (or found compacted).
    last_revision: i64,
    in_flight: Option<InFlight>,
    /// The one timer; `None` while a compaction is in flight.
    tick_due_ms: Option<u64>,
    command: Option<CompactCommand>,
    next_command_id: u64,
}

impl AutoCompactor {
    /// Starts at `now_ms`, with the store at `current_revision`.
    ///
    /// # Panics
    /// If `retention` keeps nothing (a zero period or count): automatic
    /// compaction is then off, and the shell makes no compactor.
    pub fn new(retention: Retention, now_ms: u64, current_revision: i64) -> Self {
        let interval_ms = match retention {
            Retention::Periodic { period_ms } => {
                assert!(period_ms > 0, "a periodic retention of zero");
                (period_ms.min(PERIODIC_INTERVAL_MAX_MS) / SAMPLES_PER_PERIOD).max(1)
            }
            Retention::Revision { revisions } => {
                assert!(revisions > 0, "a revision retention of {revisions}");
                REVISION_INTERVAL_MS
            }
        };
        let (samples_max, wait_ms) = match retention {
            Retention::Periodic { period_ms } => {
                let samples = usize::try_from(period_ms / interval_ms)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1);
                (samples.min(SAMPLES_MAX), period_ms)
            }
            Retention::Revision { .. } => (0, 0),
        };
        let mut compactor = Self {
            retention,
            interval_ms,
            samples: VecDeque::new(),
            samples_max,
            wait_ms,
            last_success_ms: now_ms,
            last_revision: 0,
            in_flight: None,
            tick_due_ms: Some(now_ms.saturating_add(interval_ms)),
            command: None,
            next_command_id: 1,
        };
        compactor.sample(current_revision);
        compactor
    }

    /// Time between ticks: the sampling interval, or revision mode's 5
    /// minutes.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    /// A tick: the store is at `current_revision`, and this member leads
    /// or not. A call before [`AutoCompactor::poll_timeout`] does nothing.
    pub fn handle_timeout(&mut self, now_ms: u64, current_revision: i64, is_leader: bool) {
        let Some(due_ms) = self.tick_due_ms else {
            return;
        };
        if now_ms < due_ms {
            return;
        }
        let target = if is_leader {
            self.target(now_ms, current_revision)
        } else {
            None
        };
        self.sample(current_revision);
        match target {
            Some(revision) => {
                let id = self.next_command_id;
                self.next_command_id += 1;
                self.in_flight = Some(InFlight { id, revision });
                self.command = Some(CompactCommand { id, revision });
                self.tick_due_ms = None;
                if matches!(self.retention, Retention::Periodic { .. }) {
                    // After the first attempt, compact every period, or
                    // every hour for longer ones.
                    self.wait_ms = self.wait_ms.min(PERIODIC_INTERVAL_MAX_MS);
                }
            }
            None => self.tick_due_ms = Some(now_ms.saturating_add(self.interval_ms)),
        }
    }

    /// The answer to the [`CompactCommand`] `id`; other ids are ignored.
    pub fn handle_result(&mut self, id: u64, outcome: CompactOutcome, now_ms: u64) {
        let Some(in_flight) = self.in_flight.filter(|f| f.id == id) else {
            return;
        };
        self.in_flight = None;
        match outcome {
            CompactOutcome::Compacted | CompactOutcome::AlreadyCompacted => {
                self.last_revision = in_flight.revision;
                self.last_success_ms = now_ms;
            }
            CompactOutcome::Failed => {}
        }
        self.tick_due_ms = Some(now_ms.saturating_add(self.interval_ms));
    }

    pub fn poll_command(&mut self) -> Option<CompactCommand> {
        self.command.take()
    }

    /// When to call [`AutoCompactor::handle_timeout`]; `None` while a
    /// compaction is in flight.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.tick_due_ms
    }

    /// The revision to compact at now, if any.
    fn target(&self, now_ms: u64, current_revision: i64) -> Option<i64> {
        let revision = match self.retention {
            Retention::Periodic { .. } => {
                if now_ms.saturating_sub(self.last_success_ms) < self.wait_ms {
                    return None;
                }
                *self.samples.front()?
            }
            Retention::Revision { revisions } => current_revision.saturating_sub(revisions),
        };
        (revision > 0 && revision != self.last_revision).then_some(revision)
    }

    fn sample(&mut self, revision: i64) {
        if self.samples_max == 0 {
            return;
        }
        if self.samples.len() == self.samples_max {
            self.samples.pop_front();
        }
        self.samples.push_back(revision);
        debug_assert!(self.samples.len() <= self.samples_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MINUTE_MS: u64 = 60_000;
    const HOUR_MS: u64 = 60 * MINUTE_MS;

    #[test]
    fn intervals_follow_etcd() {
        let periodic = |period_ms| AutoCompactor::new(Retention::Periodic { period_ms }, 0, 1);
        assert_eq!(periodic(HOUR_MS).interval_ms(), 6 * MINUTE_MS);
        assert_eq!(periodic(HOUR_MS).samples_max, 11);
        assert_eq!(periodic(10 * MINUTE_MS).interval_ms(), MINUTE_MS);
        assert_eq!(periodic(24 * HOUR_MS).interval_ms(), 6 * MINUTE_MS);
        assert_eq!(periodic(24 * HOUR_MS).samples_max, 241);
        let revision = AutoCompactor::new(Retention::Revision { revisions: 5 }, 0, 1);
        assert_eq!(revision.interval_ms(), REVISION_INTERVAL_MS);
    }

    /// Drives a compactor whose store gains `revisions_per_tick` each tick
    /// and answers each compaction with `outcome`; returns each
    /// compaction as (time, revision).
    fn run(
        compactor: &mut AutoCompactor,
        ticks: usize,
        revisions_per_tick: i64,
        outcome: CompactOutcome,
    ) -> Vec<(u64, i64)> {
        let mut revision = 1;
        let mut compactions = Vec::new();
        for _ in 0..ticks {
            let now_ms = compactor.poll_timeout().unwrap();
            revision += revisions_per_tick;
            compactor.handle_timeout(now_ms, revision, true);
            while let Some(command) = compactor.poll_command() {
                compactions.push((now_ms, command.revision));
                compactor.handle_result(command.id, outcome, now_ms);
            }
        }
        compactions
    }

    #[test]
    fn periodic_keeps_an_hour_and_compacts_hourly() {
        let mut compactor = AutoCompactor::new(Retention::Periodic { period_ms: HOUR_MS }, 0, 1);
        // One revision a minute: the revision at minute m is 1 + m.
        let compactions = run(&mut compactor, 30, 6, CompactOutcome::Compacted);
        assert_eq!(
            compactions,
            vec![
                // An hour after the start, at the revision of the start.
                (HOUR_MS, 1),
                // Then hourly, at the revision of 66 minutes before.
                (2 * HOUR_MS, 1 + 54),
                (3 * HOUR_MS, 1 + 114),
            ]
        );
    }

    #[test]
    fn revision_mode_compacts_every_five_minutes() {
        let mut compactor = AutoCompactor::new(Retention::Revision { revisions: 10 }, 0, 1);
        let compactions = run(&mut compactor, 3, 7, CompactOutcome::Compacted);
        // At revision 8 there is nothing 10 revisions back; at 15 and 22
        // there is.
        assert_eq!(
            compactions,
            vec![
                (2 * REVISION_INTERVAL_MS, 5),
                (3 * REVISION_INTERVAL_MS, 12)
            ]
        );
    }

    #[test]
    fn a_revision_is_not_compacted_twice_and_failures_retry() {
        let mut compactor = AutoCompactor::new(Retention::Revision { revisions: 1 }, 0, 50);
        let due = compactor.poll_timeout().unwrap();
        compactor.handle_timeout(due, 50, true);
        let first = compactor.poll_command().unwrap();
        assert_eq!(compactor.poll_timeout(), None, "one compaction at a time");
        compactor.handle_result(first.id, CompactOutcome::Failed, due + 1);
        let due = compactor.poll_timeout().unwrap();
        compactor.handle_timeout(due, 50, true);
        let again = compactor.poll_command().unwrap();
        assert_eq!(again.revision, first.revision);
        compactor.handle_result(again.id, CompactOutcome::AlreadyCompacted, due);
        let due = compactor.poll_timeout().unwrap();
        compactor.handle_timeout(due, 50, true);
        assert_eq!(compactor.poll_command(), None);
    }

    #[test]
    fn a_follower_samples_but_does_not_compact() {
        let period_ms = 10 * MINUTE_MS;
        let mut compactor = AutoCompactor::new(Retention::Periodic { period_ms }, 0, 1);
        for tick in 1..=20 {
            let now_ms = compactor.poll_timeout().unwrap();
            compactor.handle_timeout(now_ms, 1 + tick, false);
            assert_eq!(compactor.poll_command(), None);
        }
        // Leading now: the history is there at once.
        let now_ms = compactor.poll_timeout().unwrap();
        compactor.handle_timeout(now_ms, 22, true);
        let command = compactor.poll_command().unwrap();
        assert_eq!(command.revision, 11, "the revision of 11 minutes before");
    }

    #[test]
    fn an_early_timeout_does_nothing() {
        let mut compactor = AutoCompactor::new(Retention::Revision { revisions: 1 }, 0, 9);
        compactor.handle_timeout(REVISION_INTERVAL_MS - 1, 9, true);
        assert_eq!(compactor.poll_command(), None);
        assert_eq!(compactor.poll_timeout(), Some(REVISION_INTERVAL_MS));
        compactor.handle_result(1, CompactOutcome::Compacted, 5);
        assert_eq!(compactor.poll_timeout(), Some(REVISION_INTERVAL_MS));
    }

    /// One step of a random schedule.
    #[derive(Debug, Clone)]
    struct Step {
        /// Revisions written since the step before.
        writes: i64,
        /// Late by this much past the deadline.
        late_ms: u64,
        is_leader: bool,
        outcome: CompactOutcome,
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            0..20i64,
            0..5_000u64,
            prop::bool::weighted(0.8),
            prop_oneof![
                6 => Just(CompactOutcome::Compacted),
                1 => Just(CompactOutcome::AlreadyCompacted),
                1 => Just(CompactOutcome::Failed),
            ],
        )
            .prop_map(|(writes, late_ms, is_leader, outcome)| Step {
                writes,
                late_ms,
                is_leader,
                outcome,
            })
    }

    fn retention() -> impl Strategy<Value = Retention> {
        prop_oneof![
            (1..3 * HOUR_MS).prop_map(|period_ms| Retention::Periodic { period_ms }),
            (1..200i64).prop_map(|revisions| Retention::Revision { revisions }),
        ]
    }

    proptest! {
        /// Whatever the schedule: compactions happen only on the leader,
        /// one at a time, never twice at one revision, and never at a
        /// revision that the retention still keeps: periodic mode only
        /// compacts at a revision that was current a whole period ago
        /// (or earlier), revision mode keeps the last `revisions`.
        #[test]
        fn compactions_keep_the_retention(
            retention in retention(),
            steps in prop::collection::vec(step(), 1..300),
        ) {
            let mut compactor = AutoCompactor::new(retention, 0, 1);
            let mut history = vec![(0u64, 1i64)];
            let mut revision = 1;
            let mut last_compacted = 0;
            for step in steps {
                let now_ms = compactor.poll_timeout().unwrap() + step.late_ms;
                revision += step.writes;
                history.push((now_ms, revision));
                compactor.handle_timeout(now_ms, revision, step.is_leader);
                let Some(command) = compactor.poll_command() else {
                    prop_assert!(compactor.poll_timeout().unwrap() > now_ms);
                    continue;
                };
                prop_assert!(step.is_leader);
                prop_assert!(command.revision > 0);
                prop_assert!(command.revision != last_compacted);
                prop_assert_eq!(compactor.poll_command(), None);
                prop_assert_eq!(compactor.poll_timeout(), None);
                match retention {
                    Retention::Periodic { period_ms } => {
                        // The newest revision seen a period ago.
                        let kept_from = history
                            .iter()
                            .filter(|(at_ms, _)| at_ms + period_ms <= now_ms)
                            .map(|&(_, revision)| revision)
                            .max();
                        prop_assert!(kept_from.is_some_and(|kept| command.revision <= kept));
                    }
                    Retention::Revision { revisions } => {
                        prop_assert_eq!(command.revision, revision - revisions);
                    }
                }
                compactor.handle_result(command.id, step.outcome, now_ms);
                if step.outcome != CompactOutcome::Failed {
                    last_compacted = command.revision;
                }
            }
        }

        /// A steady leader whose store moves compacts within two
        /// retentions (periodic) or two intervals (revision mode).
        #[test]
        fn a_steady_leader_compacts(retention in retention(), writes in 1..10i64) {
            let mut compactor = AutoCompactor::new(retention, 0, 1);
            let mut revision = 1;
            let deadline_ms = match retention {
                Retention::Periodic { period_ms } => 2 * period_ms + compactor.interval_ms(),
                Retention::Revision { revisions } => {
                    let ticks = u64::try_from(revisions / writes + 2).unwrap();
                    ticks * REVISION_INTERVAL_MS
                }
            };
            loop {
                let now_ms = compactor.poll_timeout().unwrap();
                prop_assert!(now_ms <= deadline_ms, "no compaction by {deadline_ms} ms");
                revision += writes;
                compactor.handle_timeout(now_ms, revision, true);
                if compactor.poll_command().is_some() {
                    break;
                }
            }
        }
    }
}

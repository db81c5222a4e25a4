//! When to take a snapshot, when to retry, and when to prune.

use std::collections::VecDeque;

use super::config::SchedulerConfig;
use super::retention::plan_prune;
use super::snapshot_info::SnapshotInfo;

/// Most names in one [`ScheduleCommand::Prune`]; the oldest go first and the
/// rest wait for the next prune.
pub const PRUNE_NAMES_MAX: usize = 1_000;
/// At most a take, a listing and a prune wait between two drains.
const COMMANDS_QUEUED_MAX: usize = 3;

/// What the scheduler asks the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleCommand {
    /// Snapshot the state machine (at `revision` or later) and upload it;
    /// answer with [`Scheduler::handle_snapshot_result`] and the same `id`.
    TakeSnapshot { id: u64, revision: i64 },
    /// List the store; answer with [`Scheduler::handle_listing`] and the same
    /// `id`.
    ListSnapshots { id: u64 },
    /// Delete these snapshots from the store (sorted by name, oldest
    /// first). Needs no answer: a failed delete is planned again after the
    /// next snapshot.
    Prune { names: Vec<String> },
}

/// The take the shell is running.
#[derive(Debug, Clone, Copy)]
struct TakeInFlight {
    id: u64,
    revision: i64,
    started_at_ms: u64,
}

/// Periodic snapshots by the leader, with back-off and pruning.
///
/// Only the leader snapshots. Every `interval_ms` it asks for a snapshot,
/// unless the applied revision has not moved since the last successful one.
/// One take runs at a time: the next is planned only when the shell has
/// answered the last, `interval_ms` after it started (or at once if it took
/// longer). A failed take is retried after an exponential back-off
/// ([`SchedulerConfig::backoff_ms`]). After each successful take the
/// scheduler asks for a listing and prunes it by the retention policy.
///
/// Losing leadership cancels what is planned. A take or listing still
/// running is not forgotten: its answer is recorded (a successful snapshot
/// still counts, so a regained leadership does not snapshot the same
/// revision again), but schedules nothing while not leader; and no new take
/// starts, even after regaining leadership, until the old one is answered.
/// After becoming leader the first take waits one interval, and at least
/// for whatever back-off is pending.
///
/// # Drain contract
///
/// After every input (`new`, `handle_*`), call [`Scheduler::poll_command`]
/// until it returns `None`, then sleep until [`Scheduler::poll_timeout`] and
/// call [`Scheduler::handle_timeout`]. Each `TakeSnapshot` and
/// `ListSnapshots` must be answered exactly once (a shell-side timeout or a
/// cancellation is answered as an error), or no further take starts.
///
/// # Time
///
/// `now_ms` is the wall clock (milliseconds since the Unix epoch), the
/// clock that names snapshots. If it steps back, the pending deadlines step
/// back with it, so a clock correction never delays a snapshot; a step
/// forward may bring the next one early.
#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    is_leader: bool,
    /// When this member last became leader.
    leader_since_ms: u64,
    /// Highest revision applied locally; `None` until the first is known.
    applied_revision: Option<i64>,
    /// Highest revision of a successful snapshot reported by the shell.
    snapshot_revision: Option<i64>,
    take: Option<TakeInFlight>,
    listing_id: Option<u64>,
    /// A successful take asked for a listing while another was running.
    listing_wanted: bool,
    failures_consecutive: u32,
    /// No take starts before this, whoever leads: the interval after the
    /// last take started, or the back-off after the last failure.
    next_take_earliest_ms: u64,
    /// The one timer: when the next take is due. Armed only while leader
    /// with no take in flight.
    take_due_ms: Option<u64>,
    /// A delta chain broke: the next take starts as soon as it may (after
    /// any back-off), even with the revision unchanged.
    take_wanted_now: bool,
    last_now_ms: u64,
    next_command_id: u64,
    commands: VecDeque<ScheduleCommand>,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig, now_ms: u64) -> Self {
        Self {
            config,
            is_leader: false,
            leader_since_ms: 0,
            applied_revision: None,
            snapshot_revision: None,
            take: None,
            listing_id: None,
            listing_wanted: false,
            failures_consecutive: 0,
            next_take_earliest_ms: 0,
            take_due_ms: None,
            take_wanted_now: false,
            last_now_ms: now_ms,
            next_command_id: 1,
            commands: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// This member became, or stopped being, the raft leader.
    pub fn handle_leadership(&mut self, is_leader: bool, now_ms: u64) {
        self.begin_input(now_ms);
        if is_leader != self.is_leader {
            self.is_leader = is_leader;
            if is_leader {
                self.leader_since_ms = now_ms;
                self.arm_take_timer();
            } else {
                self.take_due_ms = None;
                self.listing_wanted = false;
            }
        }
        self.end_input(now_ms);
    }

    /// The state machine applied up to `revision`. Revisions only grow.
    pub fn handle_applied_revision(&mut self, revision: i64) {
        debug_assert!(revision >= 0, "negative revision {revision}");
        debug_assert!(
            self.applied_revision
                .is_none_or(|applied| revision >= applied),
            "applied revision went back from {:?} to {revision}",
            self.applied_revision
        );
        self.applied_revision = Some(self.applied_revision.map_or(revision, |a| a.max(revision)));
    }

    /// The shell's answer to `TakeSnapshot { id }`: the uploaded snapshot as
    /// the store lists it, or why it failed. A snapshot that is not `valid`
    /// counts as a failure. Unknown ids are ignored.
    pub fn handle_snapshot_result(
        &mut self,
        id: u64,
        result: Result<SnapshotInfo, String>,
        now_ms: u64,
    ) {
        self.begin_input(now_ms);
        if let Some(take) = self.take.filter(|take| take.id == id) {
            self.take = None;
            match result {
                Ok(info) if info.valid => self.record_success(take, &info),
                Ok(_) | Err(_) => self.record_failure(now_ms),
            }
            self.arm_take_timer();
        }
        self.end_input(now_ms);
    }

    /// The shell's answer to `ListSnapshots { id }`. While leader, a
    /// successful listing is pruned by the retention policy; a failed one
    /// is not retried (the next successful snapshot lists again). Unknown
    /// ids are ignored.
    pub fn handle_listing(
        &mut self,
        id: u64,
        listing: Result<Vec<SnapshotInfo>, String>,
        now_ms: u64,
    ) {
        self.begin_input(now_ms);
        if self.listing_id == Some(id) {
            self.listing_id = None;
            if let (true, Ok(listing)) = (self.is_leader, listing) {
                self.prune(&listing);
            }
            if std::mem::take(&mut self.listing_wanted) {
                self.request_listing();
            }
        }
        self.end_input(now_ms);
    }

    /// The deltas cannot go on from the last full snapshot (entries they
    /// needed are gone, or no chain was found): a full snapshot is taken
    /// at once, or as soon as a take in flight or a back-off allows,
    /// whatever the interval and the revision.
    pub fn handle_chain_broken(&mut self, now_ms: u64) {
        self.begin_input(now_ms);
        self.take_wanted_now = true;
        if self.failures_consecutive == 0 {
            self.next_take_earliest_ms = self.next_take_earliest_ms.min(now_ms);
        }
        self.arm_take_timer();
        self.end_input(now_ms);
    }

    /// Time passed; a call before the deadline does nothing.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.begin_input(now_ms);
        self.end_input(now_ms);
    }

    pub fn poll_command(&mut self) -> Option<ScheduleCommand> {
        self.commands.pop_front()
    }

    /// When to call [`Scheduler::handle_timeout`]; `None` while there is
    /// nothing to wait for (not leader, or a take in flight).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.take_due_ms
    }

    fn begin_input(&mut self, now_ms: u64) {
        debug_assert!(
            self.commands.is_empty(),
            "drain poll_command before the next input"
        );
        if now_ms < self.last_now_ms {
            self.shift_deadlines_back(self.last_now_ms - now_ms);
        }
        self.last_now_ms = now_ms;
    }

    /// Fires a due timer, so no input returns with a deadline in the past.
    fn end_input(&mut self, now_ms: u64) {
        if self.take_due_ms.is_some_and(|due_ms| due_ms <= now_ms) {
            self.take_due_ms = None;
            self.take_or_skip(now_ms);
        }
        debug_assert!(self.take_due_ms.is_none_or(|due_ms| due_ms > now_ms));
        debug_assert!(self.take_due_ms.is_none() || (self.is_leader && self.take.is_none()));
        debug_assert!(self.commands.len() <= COMMANDS_QUEUED_MAX);
    }

    fn shift_deadlines_back(&mut self, step_ms: u64) {
        self.next_take_earliest_ms = self.next_take_earliest_ms.saturating_sub(step_ms);
        self.leader_since_ms = self.leader_since_ms.saturating_sub(step_ms);
        self.take_due_ms = self.take_due_ms.map(|due| due.saturating_sub(step_ms));
        if let Some(take) = &mut self.take {
            take.started_at_ms = take.started_at_ms.saturating_sub(step_ms);
        }
    }

    fn take_or_skip(&mut self, now_ms: u64) {
        assert!(self.is_leader && self.take.is_none());
        let revision = match (self.applied_revision, self.snapshot_revision) {
            (Some(applied), Some(snapshot)) if applied <= snapshot && !self.take_wanted_now => None,
            (applied, snapshot) => applied.or(snapshot),
        };
        let Some(revision) = revision else {
            self.next_take_earliest_ms = now_ms.saturating_add(self.config.interval_ms());
            self.arm_take_timer();
            return;
        };
        self.take_wanted_now = false;
        let id = self.next_id();
        self.take = Some(TakeInFlight {
            id,
            revision,
            started_at_ms: now_ms,
        });
        self.commands
            .push_back(ScheduleCommand::TakeSnapshot { id, revision });
    }

    fn record_success(&mut self, take: TakeInFlight, info: &SnapshotInfo) {
        debug_assert!(
            info.revision >= take.revision,
            "snapshot at {} for a take at {}",
            info.revision,
            take.revision
        );
        self.failures_consecutive = 0;
        // The new snapshot starts a new chain.
        self.take_wanted_now = false;
        self.snapshot_revision = Some(self.snapshot_revision.unwrap_or(0).max(info.revision));
        self.next_take_earliest_ms = take.started_at_ms.saturating_add(self.config.interval_ms());
        if self.is_leader {
            self.request_listing();
        }
    }

    fn record_failure(&mut self, now_ms: u64) {
        self.failures_consecutive = self.failures_consecutive.saturating_add(1);
        self.next_take_earliest_ms =
            now_ms.saturating_add(self.config.backoff_ms(self.failures_consecutive));
    }

    /// Arms the take timer if a take may start: leader, none in flight. A
    /// new leader waits one interval.
    fn arm_take_timer(&mut self) {
        if self.is_leader && self.take.is_none() {
            let first_as_leader_ms = if self.take_wanted_now {
                self.leader_since_ms
            } else {
                self.leader_since_ms
                    .saturating_add(self.config.interval_ms())
            };
            self.take_due_ms = Some(self.next_take_earliest_ms.max(first_as_leader_ms));
        }
    }

    fn request_listing(&mut self) {
        if self.listing_id.is_some() {
            self.listing_wanted = true;
            return;
        }
        let id = self.next_id();
        self.listing_id = Some(id);
        self.commands
            .push_back(ScheduleCommand::ListSnapshots { id });
    }

    fn prune(&mut self, listing: &[SnapshotInfo]) {
        let mut names = plan_prune(listing, self.config.retention());
        names.truncate(PRUNE_NAMES_MAX);
        if !names.is_empty() {
            self.commands.push_back(ScheduleCommand::Prune { names });
        }
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_command_id;
        self.next_command_id += 1;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::super::retention::Retention;
    use super::super::snapshot_info::snapshot_name;
    use super::*;

    const INTERVAL_MS: u64 = 60_000;
    const CLUSTER: u64 = 0xe2d;
    /// 2024-03-01T00:00:00Z: any realistic wall-clock time.
    const T0_MS: u64 = 1_709_251_200_000;

    fn config() -> SchedulerConfig {
        SchedulerConfig::default()
    }

    fn drain(scheduler: &mut Scheduler) -> Vec<ScheduleCommand> {
        std::iter::from_fn(|| scheduler.poll_command()).collect()
    }

    fn uploaded(revision: i64, taken_at_ms: u64) -> SnapshotInfo {
        SnapshotInfo {
            name: snapshot_name(CLUSTER, revision, taken_at_ms),
            cluster_id: CLUSTER,
            revision,
            taken_at_ms,
            size_bytes: 4096,
            valid: true,
        }
    }

    /// A leader at `T0_MS` with revision 10 applied.
    fn leader() -> Scheduler {
        let mut scheduler = Scheduler::new(config(), T0_MS);
        scheduler.handle_applied_revision(10);
        scheduler.handle_leadership(true, T0_MS);
        assert_eq!(drain(&mut scheduler), []);
        scheduler
    }

    /// Fires the timer; returns the take's id and revision.
    fn expect_take(scheduler: &mut Scheduler, at_ms: u64) -> (u64, i64) {
        assert_eq!(scheduler.poll_timeout(), Some(at_ms));
        scheduler.handle_timeout(at_ms);
        match drain(scheduler).as_slice() {
            [ScheduleCommand::TakeSnapshot { id, revision }] => (*id, *revision),
            other => panic!("expected one take at {at_ms}, got {other:?}"),
        }
    }

    /// Answers a take with success; returns the listing id it asks for.
    fn succeed(scheduler: &mut Scheduler, id: u64, revision: i64, now_ms: u64) -> u64 {
        scheduler.handle_snapshot_result(id, Ok(uploaded(revision, now_ms)), now_ms);
        match drain(scheduler).as_slice() {
            [ScheduleCommand::ListSnapshots { id }] => *id,
            other => panic!("expected a listing, got {other:?}"),
        }
    }

    fn fail(scheduler: &mut Scheduler, id: u64, now_ms: u64) {
        scheduler.handle_snapshot_result(id, Err("upload: connection reset".into()), now_ms);
        assert_eq!(drain(scheduler), []);
    }

    #[test]
    fn follower_never_snapshots() {
        let mut scheduler = Scheduler::new(config(), T0_MS);
        scheduler.handle_applied_revision(10);
        scheduler.handle_timeout(T0_MS + 10 * INTERVAL_MS);
        assert_eq!(drain(&mut scheduler), []);
        assert_eq!(scheduler.poll_timeout(), None);
    }

    #[test]
    fn first_take_waits_one_interval_after_becoming_leader() {
        let mut scheduler = leader();
        scheduler.handle_timeout(T0_MS + INTERVAL_MS - 1);
        assert_eq!(drain(&mut scheduler), []);
        assert_eq!(
            expect_take(&mut scheduler, T0_MS + INTERVAL_MS),
            (1, 10),
            "the applied revision"
        );
    }

    #[test]
    fn takes_a_snapshot_every_interval() {
        let mut scheduler = leader();
        let mut at_ms = T0_MS + INTERVAL_MS;
        for revision in 10..15 {
            scheduler.handle_applied_revision(revision);
            let (id, took) = expect_take(&mut scheduler, at_ms);
            assert_eq!(took, revision);
            let listing_id = succeed(&mut scheduler, id, revision, at_ms + 2_000);
            scheduler.handle_listing(listing_id, Ok(vec![]), at_ms + 2_100);
            assert_eq!(drain(&mut scheduler), []);
            at_ms += INTERVAL_MS;
        }
    }

    #[test]
    fn skips_when_revision_has_not_moved() {
        let mut scheduler = leader();
        let at_ms = T0_MS + INTERVAL_MS;
        let (id, _) = expect_take(&mut scheduler, at_ms);
        succeed(&mut scheduler, id, 10, at_ms + 1_000);
        assert_eq!(scheduler.poll_timeout(), Some(at_ms + INTERVAL_MS));
        scheduler.handle_timeout(at_ms + INTERVAL_MS);
        assert_eq!(drain(&mut scheduler), [], "revision 10 is already saved");
        scheduler.handle_applied_revision(11);
        assert_eq!(
            expect_take(&mut scheduler, at_ms + 2 * INTERVAL_MS),
            (3, 11)
        );
    }

    #[test]
    fn skips_when_the_snapshot_was_newer_than_asked() {
        let mut scheduler = leader();
        let at_ms = T0_MS + INTERVAL_MS;
        let (id, _) = expect_take(&mut scheduler, at_ms);
        scheduler.handle_applied_revision(12);
        succeed(&mut scheduler, id, 12, at_ms + 1_000);
        scheduler.handle_timeout(at_ms + INTERVAL_MS);
        assert_eq!(drain(&mut scheduler), []);
    }

    #[test]
    fn a_broken_chain_takes_a_snapshot_at_once() {
        let mut scheduler = leader();
        let at_ms = T0_MS + 5_000;
        scheduler.handle_chain_broken(at_ms);
        match drain(&mut scheduler).as_slice() {
            [ScheduleCommand::TakeSnapshot { id, revision: 10 }] => {
                succeed(&mut scheduler, *id, 10, at_ms + 1_000);
            }
            other => panic!("expected a take at once, got {other:?}"),
        }
        // Unchanged revision: a broken chain still takes one.
        scheduler.handle_chain_broken(at_ms + 2_000);
        assert!(matches!(
            drain(&mut scheduler).as_slice(),
            [ScheduleCommand::TakeSnapshot { revision: 10, .. }]
        ));
    }

    #[test]
    fn a_broken_chain_waits_out_a_back_off() {
        let mut scheduler = leader();
        let (id, _) = expect_take(&mut scheduler, T0_MS + INTERVAL_MS);
        fail(&mut scheduler, id, T0_MS + INTERVAL_MS);
        let due = scheduler.poll_timeout().unwrap();
        scheduler.handle_chain_broken(T0_MS + INTERVAL_MS + 1);
        assert_eq!(drain(&mut scheduler), []);
        assert_eq!(scheduler.poll_timeout(), Some(due));
    }

    #[test]
    fn nothing_to_snapshot_before_the_first_applied_revision() {
        let mut scheduler = Scheduler::new(config(), T0_MS);
        scheduler.handle_leadership(true, T0_MS);
        scheduler.handle_timeout(T0_MS + INTERVAL_MS);
        assert_eq!(drain(&mut scheduler), []);
        scheduler.handle_applied_revision(1);
        assert_eq!(expect_take(&mut scheduler, T0_MS + 2 * INTERVAL_MS).1, 1);
    }

    #[test]
    fn backs_off_after_upload_failure() {
        let mut scheduler = leader();
        let mut at_ms = T0_MS + INTERVAL_MS;
        for backoff_ms in [5_000, 10_000, 20_000] {
            let (id, _) = expect_take(&mut scheduler, at_ms);
            fail(&mut scheduler, id, at_ms + 500);
            at_ms += 500 + backoff_ms;
            scheduler.handle_timeout(at_ms - 1);
            assert_eq!(drain(&mut scheduler), []);
        }
        let (id, _) = expect_take(&mut scheduler, at_ms);
        succeed(&mut scheduler, id, 10, at_ms + 500);
        scheduler.handle_applied_revision(11);
        let (id, _) = expect_take(&mut scheduler, at_ms + INTERVAL_MS);
        // After a success the back-off starts again from its base.
        fail(&mut scheduler, id, at_ms + INTERVAL_MS + 1);
        assert_eq!(scheduler.poll_timeout(), Some(at_ms + INTERVAL_MS + 5_001));
    }

    #[test]
    fn invalid_snapshot_counts_as_failure() {
        let mut scheduler = leader();
        let at_ms = T0_MS + INTERVAL_MS;
        let (id, _) = expect_take(&mut scheduler, at_ms);
        let mut truncated = uploaded(10, at_ms);
        truncated.valid = false;
        scheduler.handle_snapshot_result(id, Ok(truncated), at_ms + 1);
        assert_eq!(drain(&mut scheduler), [], "no listing after a failure");
        assert_eq!(expect_take(&mut scheduler, at_ms + 5_001).1, 10);
    }

    #[test]
    fn backoff_is_capped() {
        let mut scheduler = leader();
        let mut at_ms = T0_MS + INTERVAL_MS;
        for _ in 0..20 {
            let (id, _) = expect_take(&mut scheduler, at_ms);
            fail(&mut scheduler, id, at_ms);
            let wait_ms = scheduler.poll_timeout().unwrap() - at_ms;
            assert!(wait_ms <= config().backoff_max_ms());
            at_ms += wait_ms;
        }
        assert_eq!(
            scheduler.poll_timeout(),
            Some(at_ms),
            "still retrying after 20 failures"
        );
        assert_eq!(
            scheduler.poll_timeout().unwrap() - (at_ms - config().backoff_max_ms()),
            config().backoff_max_ms()
        );
    }

    #[test]
    fn only_one_snapshot_in_flight() {
        let mut scheduler = leader();
        let at_ms = T0_MS + INTERVAL_MS;
        let (id, _) = expect_take(&mut scheduler, at_ms);
        assert_eq!(scheduler.poll_timeout(), None);
        for later_ms in [1, INTERVAL_MS, 100 * INTERVAL_MS] {
            scheduler.handle_applied_revision(11);
            scheduler.handle_timeout(at_ms + later_ms);
            assert_eq!(drain(&mut scheduler), []);
        }
        // A take slower than the interval is followed by the next at once.
        let done_ms = at_ms + 100 * INTERVAL_MS;
        scheduler.handle_snapshot_result(id, Ok(uploaded(10, done_ms)), done_ms);
        assert!(matches!(
            drain(&mut scheduler).as_slice(),
            [
                ScheduleCommand::ListSnapshots { .. },
                ScheduleCommand::TakeSnapshot { revision: 11, .. }
            ]
        ));
    }

    #[test]
    fn losing_leadership_stops_snapshots() {
        let mut scheduler = leader();
        scheduler.handle_leadership(false, T0_MS + 1_000);
        assert_eq!(scheduler.poll_timeout(), None);
        scheduler.handle_applied_revision(20);
        scheduler.handle_timeout(T0_MS + 10 * INTERVAL_MS);
        assert_eq!(drain(&mut scheduler), []);
    }

    #[test]
    fn result_after_losing_leadership_is_recorded_but_schedules_nothing() {
        let mut scheduler = leader();
        let at_ms = T0_MS + INTERVAL_MS;
        let (id, _) = expect_take(&mut scheduler, at_ms);
        scheduler.handle_leadership(false, at_ms + 1);
        scheduler.handle_snapshot_result(id, Ok(uploaded(10, at_ms)), at_ms + 2);
        assert_eq!(drain(&mut scheduler), [], "no listing, no prune");
        assert_eq!(scheduler.poll_timeout(), None);
        scheduler.handle_leadership(true, at_ms + 3);
        scheduler.handle_timeout(at_ms + 3 + INTERVAL_MS);
        assert_eq!(drain(&mut scheduler), [], "revision 10 is saved already");
    }

    #[test]
    fn regained_leadership_waits_for_the_old_take() {
        let mut scheduler = leader();
        let at_ms = T0_MS + INTERVAL_MS;
        let (id, _) = expect_take(&mut scheduler, at_ms);
        scheduler.handle_leadership(false, at_ms + 1);
        scheduler.handle_leadership(true, at_ms + 2);
        assert_eq!(scheduler.poll_timeout(), None);
        scheduler.handle_applied_revision(11);
        scheduler.handle_timeout(at_ms + 10 * INTERVAL_MS);
        assert_eq!(drain(&mut scheduler), []);
        fail(&mut scheduler, id, at_ms + 10 * INTERVAL_MS);
        assert_eq!(
            expect_take(&mut scheduler, at_ms + 10 * INTERVAL_MS + 5_000).1,
            11
        );
    }

    #[test]
    fn regained_leadership_respects_pending_backoff() {
        let mut scheduler = leader();
        let mut at_ms = T0_MS + INTERVAL_MS;
        for _ in 0..8 {
            let (id, _) = expect_take(&mut scheduler, at_ms);
            fail(&mut scheduler, id, at_ms);
            at_ms = scheduler.poll_timeout().unwrap();
        }
        scheduler.handle_leadership(false, at_ms - 500_000);
        scheduler.handle_leadership(true, at_ms - 499_000);
        assert_eq!(scheduler.poll_timeout(), Some(at_ms));
    }

    #[test]
    fn prunes_after_each_successful_upload() {
        let mut scheduler = leader();
        let at_ms = T0_MS + INTERVAL_MS;
        let (id, _) = expect_take(&mut scheduler, at_ms);
        let listing_id = succeed(&mut scheduler, id, 10, at_ms + 1);
        let old: Vec<SnapshotInfo> = (1..=6)
            .map(|revision| uploaded(revision, T0_MS - 7 * 60_000 + revision as u64 * 1_000))
            .collect();
        let mut listing = old.clone();
        listing.push(uploaded(10, at_ms + 1));
        let retention = Retention {
            keep_newest: 3,
            keep_hourly: 0,
            keep_daily: 0,
        };
        let mut scheduler_3 = Scheduler {
            config: SchedulerConfig::new(INTERVAL_MS, 1_000, 10_000, retention).unwrap(),
            ..scheduler
        };
        scheduler_3.handle_listing(listing_id, Ok(listing), at_ms + 2);
        let expected: Vec<String> = old[..4].iter().map(|s| s.name.clone()).collect();
        assert_eq!(
            drain(&mut scheduler_3),
            [ScheduleCommand::Prune { names: expected }]
        );
    }

    #[test]
    fn listing_after_losing_leadership_prunes_nothing() {
        let mut scheduler = leader();
        let at_ms = T0_MS + INTERVAL_MS;
        let (id, _) = expect_take(&mut scheduler, at_ms);
        let listing_id = succeed(&mut scheduler, id, 10, at_ms + 1);
        scheduler.handle_leadership(false, at_ms + 2);
        let listing = vec![uploaded(1, T0_MS), uploaded(10, at_ms + 1)];
        let zero = Retention {
            keep_newest: 0,
            keep_hourly: 0,
            keep_daily: 0,
        };
        scheduler.config = SchedulerConfig::new(INTERVAL_MS, 1_000, 10_000, zero).unwrap();
        scheduler.handle_listing(listing_id, Ok(listing), at_ms + 3);
        assert_eq!(drain(&mut scheduler), []);
    }

    #[test]
    fn a_second_listing_waits_for_the_first() {
        let mut scheduler = leader();
        let mut at_ms = T0_MS + INTERVAL_MS;
        let (id, _) = expect_take(&mut scheduler, at_ms);
        let first_listing = succeed(&mut scheduler, id, 10, at_ms);
        scheduler.handle_applied_revision(11);
        at_ms += INTERVAL_MS;
        let (id, _) = expect_take(&mut scheduler, at_ms);
        scheduler.handle_snapshot_result(id, Ok(uploaded(11, at_ms)), at_ms);
        assert_eq!(drain(&mut scheduler), [], "the first listing still runs");
        scheduler.handle_listing(first_listing, Err("timeout".into()), at_ms + 1);
        assert!(matches!(
            drain(&mut scheduler).as_slice(),
            [ScheduleCommand::ListSnapshots { .. }]
        ));
    }

    #[test]
    fn prune_is_bounded() {
        let mut scheduler = leader();
        let at_ms = T0_MS + INTERVAL_MS;
        let (id, _) = expect_take(&mut scheduler, at_ms);
        let listing_id = succeed(&mut scheduler, id, 10, at_ms);
        let mut listing: Vec<SnapshotInfo> = (0..PRUNE_NAMES_MAX as u64 + 500)
            .map(|i| {
                let mut s = uploaded(1, T0_MS - 400 * 86_400_000 + i);
                s.valid = false;
                s
            })
            .collect();
        listing.push(uploaded(10, at_ms));
        scheduler.handle_listing(listing_id, Ok(listing.clone()), at_ms + 1);
        let commands = drain(&mut scheduler);
        let [ScheduleCommand::Prune { names }] = commands.as_slice() else {
            panic!("expected a prune, got {commands:?}");
        };
        assert_eq!(names.len(), PRUNE_NAMES_MAX);
        assert_eq!(names[0], listing[0].name, "oldest first");
    }

    #[test]
    fn stale_and_unknown_ids_are_ignored() {
        let mut scheduler = leader();
        let at_ms = T0_MS + INTERVAL_MS;
        let (id, _) = expect_take(&mut scheduler, at_ms);
        scheduler.handle_snapshot_result(id + 100, Ok(uploaded(10, at_ms)), at_ms);
        scheduler.handle_listing(id + 100, Ok(vec![]), at_ms);
        assert_eq!(drain(&mut scheduler), []);
        let listing_id = succeed(&mut scheduler, id, 10, at_ms + 1);
        scheduler.handle_snapshot_result(id, Err("late duplicate".into()), at_ms + 2);
        assert_eq!(drain(&mut scheduler), []);
        assert_eq!(scheduler.poll_timeout(), Some(at_ms + INTERVAL_MS));
        scheduler.handle_listing(listing_id, Ok(vec![]), at_ms + 3);
        scheduler.handle_listing(listing_id, Ok(vec![uploaded(1, T0_MS)]), at_ms + 4);
        assert_eq!(drain(&mut scheduler), []);
    }

    #[test]
    fn spurious_timeout_does_nothing() {
        let mut scheduler = leader();
        for now_ms in [T0_MS, T0_MS + 1, T0_MS + INTERVAL_MS - 1] {
            scheduler.handle_timeout(now_ms);
            assert_eq!(drain(&mut scheduler), []);
            assert_eq!(scheduler.poll_timeout(), Some(T0_MS + INTERVAL_MS));
        }
    }

    #[test]
    fn clock_stepping_back_does_not_delay_snapshots() {
        let mut scheduler = leader();
        scheduler.handle_timeout(T0_MS + 1_000);
        let step_ms = 3_600_000;
        // The deadline keeps its distance from the clock's last reading.
        scheduler.handle_timeout(T0_MS + 1_000 - step_ms);
        assert_eq!(
            scheduler.poll_timeout(),
            Some(T0_MS + INTERVAL_MS - step_ms)
        );
        expect_take(&mut scheduler, T0_MS + INTERVAL_MS - step_ms);
    }
}

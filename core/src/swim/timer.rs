//! The machine's one timer table: every deadline it waits for, keyed by what
//! happens when it passes.

use std::collections::BTreeMap;

/// What the machine does when a deadline passes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// End the current probe (suspect an unanswered target) and start the
    /// next one.
    Probe,
    /// The direct ping went unanswered: ask others to probe the target.
    ProbeIndirect,
    /// Send queued updates to a few random members.
    Gossip,
    /// Full state exchange with one random up member.
    PushPull,
    /// Push-pull the seeds again if no other member is up.
    Rejoin,
    /// Push-pull one random dead member.
    Reconnect,
    /// The member has been suspect for the whole suspicion timeout.
    Suspicion(String),
    /// An indirect probe relayed for another node (by our ping's seq) went
    /// unanswered: send the requester a nack.
    Relay(u32),
}

/// Deadlines in ms; at most one per timer. Holds at most
/// `members_max + relays_max + 6` entries, since suspicions and relays are
/// bounded by the view and the relay table.
#[derive(Debug, Clone, Default)]
pub struct TimerTable {
    deadlines_ms: BTreeMap<Timer, u64>,
}

impl TimerTable {
    pub fn set(&mut self, timer: Timer, deadline_ms: u64) {
        self.deadlines_ms.insert(timer, deadline_ms);
    }

    pub fn cancel(&mut self, timer: &Timer) {
        self.deadlines_ms.remove(timer);
    }

    pub fn len(&self) -> usize {
        self.deadlines_ms.len()
    }

    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.deadlines_ms.values().copied().min()
    }

    /// Removes and returns the timer with the earliest deadline at or before
    /// `now_ms` (ties broken by the timer's order), if any.
    pub fn pop_expired(&mut self, now_ms: u64) -> Option<Timer> {
        let (timer, _) = self
            .deadlines_ms
            .iter()
            .filter(|(_, deadline_ms)| **deadline_ms <= now_ms)
            .min_by_key(|(timer, deadline_ms)| (**deadline_ms, *timer))?;
        let timer = timer.clone();
        self.deadlines_ms.remove(&timer);
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_expired_timers_earliest_first() {
        let mut timers = TimerTable::default();
        timers.set(Timer::Gossip, 30);
        timers.set(Timer::Probe, 10);
        timers.set(Timer::Suspicion("a".to_string()), 20);
        assert_eq!(timers.next_deadline_ms(), Some(10));
        assert_eq!(timers.pop_expired(5), None);
        assert_eq!(timers.pop_expired(25), Some(Timer::Probe));
        assert_eq!(
            timers.pop_expired(25),
            Some(Timer::Suspicion("a".to_string()))
        );
        assert_eq!(timers.pop_expired(25), None);
        assert_eq!(timers.len(), 1);
    }
}

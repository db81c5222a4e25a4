//! The scheduler's settings, checked once so the scheduler never sees a
//! nonsensical one.

use super::retention::Retention;
use super::utc::DAY_MS;

/// Default time between snapshots (`--snapshot-interval 1m`).
pub const SNAPSHOT_INTERVAL_MS_DEFAULT: u64 = 60_000;
/// Shortest interval accepted: a snapshot is a full copy of the keyspace.
pub const SNAPSHOT_INTERVAL_MS_MIN: u64 = 1_000;
/// Longest interval accepted.
pub const SNAPSHOT_INTERVAL_MS_MAX: u64 = 7 * DAY_MS;
/// The first retry after a failure waits at most this long.
pub const BACKOFF_BASE_MS_DEFAULT: u64 = 5_000;
/// Back-off ceiling for intervals under this long (see
/// [`SchedulerConfig::from_interval`]).
pub const BACKOFF_MAX_MS_DEFAULT: u64 = 15 * 60_000;
/// A failure is retried after at most this many intervals.
pub const BACKOFF_MAX_INTERVALS: u64 = 10;

/// A setting the scheduler refuses, in the terms of the flags that set it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "snapshot interval {interval_ms} ms is outside {SNAPSHOT_INTERVAL_MS_MIN}..={SNAPSHOT_INTERVAL_MS_MAX} ms"
    )]
    IntervalOutOfRange { interval_ms: u64 },
    #[error("snapshot back-off base must be at least 1 ms")]
    BackoffBaseZero,
    #[error("snapshot back-off base {base_ms} ms is above its cap {max_ms} ms")]
    BackoffBaseAboveMax { base_ms: u64, max_ms: u64 },
}

/// When to snapshot, how to retry, and what to keep.
///
/// After `n` consecutive failures the next attempt waits
/// `min(backoff_base_ms * 2^(n-1), backoff_max_ms)` from the failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    interval_ms: u64,
    backoff_base_ms: u64,
    backoff_max_ms: u64,
    retention: Retention,
}

impl SchedulerConfig {
    pub fn new(
        interval_ms: u64,
        backoff_base_ms: u64,
        backoff_max_ms: u64,
        retention: Retention,
    ) -> Result<Self, ConfigError> {
        if !(SNAPSHOT_INTERVAL_MS_MIN..=SNAPSHOT_INTERVAL_MS_MAX).contains(&interval_ms) {
            return Err(ConfigError::IntervalOutOfRange { interval_ms });
        }
        if backoff_base_ms == 0 {
            return Err(ConfigError::BackoffBaseZero);
        }
        if backoff_base_ms > backoff_max_ms {
            return Err(ConfigError::BackoffBaseAboveMax {
                base_ms: backoff_base_ms,
                max_ms: backoff_max_ms,
            });
        }
        Ok(Self {
            interval_ms,
            backoff_base_ms,
            backoff_max_ms,
            retention,
        })
    }

    /// The back-off follows the interval: the first retry after
    /// `min(5 s, interval)`, doubling up to `10 × interval` but no more than
    /// 15 minutes, unless the interval itself is longer (then up to one
    /// interval). With the default minute: 5 s, 10 s, 20 s, ... 320 s, then
    /// every 10 minutes.
    pub fn from_interval(interval_ms: u64, retention: Retention) -> Result<Self, ConfigError> {
        let backoff_base_ms = BACKOFF_BASE_MS_DEFAULT.min(interval_ms);
        let backoff_max_ms = interval_ms
            .saturating_mul(BACKOFF_MAX_INTERVALS)
            .min(BACKOFF_MAX_MS_DEFAULT.max(interval_ms));
        Self::new(interval_ms, backoff_base_ms, backoff_max_ms, retention)
    }

    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    pub fn backoff_base_ms(&self) -> u64 {
        self.backoff_base_ms
    }

    pub fn backoff_max_ms(&self) -> u64 {
        self.backoff_max_ms
    }

    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// How long to wait after the `failures_consecutive`-th failure in a row.
    pub fn backoff_ms(&self, failures_consecutive: u32) -> u64 {
        debug_assert!(failures_consecutive >= 1);
        let doublings = failures_consecutive.saturating_sub(1);
        let factor = 1u64.checked_shl(doublings).unwrap_or(u64::MAX);
        self.backoff_base_ms
            .saturating_mul(factor)
            .min(self.backoff_max_ms)
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self::from_interval(SNAPSHOT_INTERVAL_MS_DEFAULT, Retention::default())
            .expect("the default interval is in range")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_backoff_for_one_minute() {
        let config = SchedulerConfig::default();
        assert_eq!(config.interval_ms(), 60_000);
        assert_eq!(config.backoff_base_ms(), 5_000);
        assert_eq!(config.backoff_max_ms(), 600_000);
    }

    #[test]
    fn backoff_follows_the_interval() {
        let check = |interval_ms, base_ms, max_ms| {
            let config = SchedulerConfig::from_interval(interval_ms, Retention::default()).unwrap();
            assert_eq!(
                (config.backoff_base_ms(), config.backoff_max_ms()),
                (base_ms, max_ms),
                "interval {interval_ms} ms"
            );
        };
        check(1_000, 1_000, 10_000);
        check(10 * 60_000, 5_000, 15 * 60_000);
        check(3_600_000, 5_000, 3_600_000);
    }

    #[test]
    fn backoff_is_capped() {
        let config = SchedulerConfig::default();
        let waits: Vec<u64> = (1..=9).map(|n| config.backoff_ms(n)).collect();
        assert_eq!(
            waits,
            [5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 600_000, 600_000]
        );
        assert_eq!(config.backoff_ms(64), 600_000);
        assert_eq!(config.backoff_ms(u32::MAX), 600_000);
    }

    #[test]
    fn refuses_nonsense() {
        let retention = Retention::default();
        assert_eq!(
            SchedulerConfig::new(999, 1, 1, retention),
            Err(ConfigError::IntervalOutOfRange { interval_ms: 999 })
        );
        assert_eq!(
            SchedulerConfig::new(8 * DAY_MS, 1, 1, retention),
            Err(ConfigError::IntervalOutOfRange {
                interval_ms: 8 * DAY_MS
            })
        );
        assert_eq!(
            SchedulerConfig::new(60_000, 0, 1, retention),
            Err(ConfigError::BackoffBaseZero)
        );
        assert_eq!(
            SchedulerConfig::new(60_000, 2, 1, retention),
            Err(ConfigError::BackoffBaseAboveMax {
                base_ms: 2,
                max_ms: 1
            })
        );
    }
}

//! UTC calendar time from milliseconds since the Unix epoch, and back.
//!
//! Unix time has no leap seconds, so every day is exactly
//! [`DAY_MS`] long and the conversion is pure arithmetic on the proleptic
//! Gregorian calendar (Howard Hinnant's `days_from_civil` and
//! `civil_from_days`). Only years 1970 to 9999 are represented, so a
//! formatted year always has four digits.

pub(crate) const SECOND_MS: u64 = 1_000;
pub(crate) const HOUR_MS: u64 = 3_600 * SECOND_MS;
pub(crate) const DAY_MS: u64 = 24 * HOUR_MS;

/// Days from 1970-01-01 to 10000-01-01.
const DAYS_TO_YEAR_10000: u64 = 2_932_897;
/// First millisecond that would need a five-digit year.
pub(crate) const EPOCH_MS_YEAR_10000: u64 = DAYS_TO_YEAR_10000 * DAY_MS;

/// A UTC instant split into calendar fields, to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UtcDateTime {
    pub year: u32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millisecond: u32,
}

impl UtcDateTime {
    /// Splits `epoch_ms`; it must be before year 10000.
    pub fn from_epoch_ms(epoch_ms: u64) -> Self {
        assert!(
            epoch_ms < EPOCH_MS_YEAR_10000,
            "epoch ms {epoch_ms} is past year 9999"
        );
        let days = epoch_ms / DAY_MS;
        let ms_of_day = epoch_ms % DAY_MS;
        let (year, month, day) = civil_from_days(days);
        let seconds_of_day = (ms_of_day / SECOND_MS) as u32;
        Self {
            year,
            month,
            day,
            hour: seconds_of_day / 3_600,
            minute: seconds_of_day / 60 % 60,
            second: seconds_of_day % 60,
            millisecond: (ms_of_day % SECOND_MS) as u32,
        }
    }

    /// Joins the fields back; `None` unless each is in range (a real date in
    /// 1970..=9999, a time of day without leap second).
    pub fn to_epoch_ms(self) -> Option<u64> {
        let in_range = (1970..=9999).contains(&self.year)
            && (1..=12).contains(&self.month)
            && (1..=days_in_month(self.year, self.month)).contains(&self.day)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60
            && self.millisecond < 1_000;
        if !in_range {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        let seconds_of_day =
            u64::from(self.hour) * 3_600 + u64::from(self.minute) * 60 + u64::from(self.second);
        Some(days * DAY_MS + seconds_of_day * SECOND_MS + u64::from(self.millisecond))
    }
}

pub(crate) fn is_leap_year(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a valid date in 1970..=9999.
fn days_from_civil(year: u32, month: u32, day: u32) -> u64 {
    debug_assert!(year >= 1970 && (1..=12).contains(&month) && day >= 1);
    // Years start in March, so the leap day is the last day of its year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year % 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days_from_year_0 = u64::from(era) * 146_097 + u64::from(day_of_era);
    days_from_year_0 - 719_468
}

/// The date `days` after 1970-01-01.
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    let days_from_march_year_0 = days + 719_468;
    let era = days_from_march_year_0 / 146_097;
    let day_of_era = (days_from_march_year_0 % 146_097) as u32;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era as u32 * 400 + year_of_era + u32::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: u32, month: u32, day: u32) -> UtcDateTime {
        UtcDateTime {
            year,
            month,
            day,
            hour: 0,
            minute: 0,
            second: 0,
            millisecond: 0,
        }
    }

    fn days_since_epoch(year: u32, month: u32, day: u32) -> u64 {
        date(year, month, day).to_epoch_ms().unwrap() / DAY_MS
    }

    #[test]
    fn epoch_is_1970_01_01() {
        assert_eq!(UtcDateTime::from_epoch_ms(0), date(1970, 1, 1));
        assert_eq!(days_since_epoch(1970, 1, 1), 0);
    }

    #[test]
    fn known_instants_split_into_fields() {
        // 2009-02-13T23:31:30Z, the famous 1234567890 seconds.
        let t = UtcDateTime::from_epoch_ms(1_234_567_890_123);
        assert_eq!(
            t,
            UtcDateTime {
                year: 2009,
                month: 2,
                day: 13,
                hour: 23,
                minute: 31,
                second: 30,
                millisecond: 123,
            }
        );
        assert_eq!(days_since_epoch(2000, 1, 1), 10_957);
        assert_eq!(days_since_epoch(2038, 1, 19), 24_855);
    }

    #[test]
    fn leap_years_follow_the_gregorian_rules() {
        assert!(is_leap_year(2024));
        assert!(is_leap_year(2000), "divisible by 400");
        assert!(!is_leap_year(2100), "divisible by 100 only");
        assert!(!is_leap_year(2023));
        assert_eq!(
            days_since_epoch(2024, 3, 1) - days_since_epoch(2024, 2, 28),
            2
        );
        assert_eq!(
            days_since_epoch(2000, 3, 1) - days_since_epoch(2000, 2, 28),
            2
        );
        assert_eq!(
            days_since_epoch(2100, 3, 1) - days_since_epoch(2100, 2, 28),
            1
        );
        assert_eq!(
            days_since_epoch(2025, 1, 1) - days_since_epoch(2024, 1, 1),
            366
        );
        assert_eq!(
            days_since_epoch(2101, 1, 1) - days_since_epoch(2100, 1, 1),
            365
        );
    }

    #[test]
    fn leap_day_exists_only_in_leap_years() {
        let leap_day = date(2024, 2, 29).to_epoch_ms().unwrap();
        assert_eq!(UtcDateTime::from_epoch_ms(leap_day), date(2024, 2, 29));
        assert_eq!(
            UtcDateTime::from_epoch_ms(leap_day + DAY_MS - 1).day,
            29,
            "last ms of the leap day"
        );
        assert_eq!(
            UtcDateTime::from_epoch_ms(leap_day + DAY_MS),
            date(2024, 3, 1)
        );
        assert_eq!(date(2023, 2, 29).to_epoch_ms(), None);
        assert_eq!(date(2100, 2, 29).to_epoch_ms(), None);
        assert!(date(2000, 2, 29).to_epoch_ms().is_some());
    }

    #[test]
    fn out_of_range_fields_are_refused() {
        assert_eq!(date(1969, 12, 31).to_epoch_ms(), None);
        assert_eq!(date(2024, 13, 1).to_epoch_ms(), None);
        assert_eq!(date(2024, 0, 1).to_epoch_ms(), None);
        assert_eq!(date(2024, 4, 31).to_epoch_ms(), None);
        assert_eq!(date(2024, 1, 0).to_epoch_ms(), None);
        let mut t = date(2024, 1, 1);
        t.second = 60;
        assert_eq!(t.to_epoch_ms(), None, "no leap seconds in Unix time");
    }

    #[test]
    fn last_representable_instant_is_the_end_of_9999() {
        let t = UtcDateTime::from_epoch_ms(EPOCH_MS_YEAR_10000 - 1);
        assert_eq!((t.year, t.month, t.day), (9999, 12, 31));
        assert_eq!(
            (t.hour, t.minute, t.second, t.millisecond),
            (23, 59, 59, 999)
        );
        assert_eq!(t.to_epoch_ms(), Some(EPOCH_MS_YEAR_10000 - 1));
    }

    #[test]
    fn every_day_round_trips_and_follows_the_previous() {
        let mut previous = UtcDateTime::from_epoch_ms(0);
        for days in 1..DAYS_TO_YEAR_10000 {
            let t = UtcDateTime::from_epoch_ms(days * DAY_MS);
            assert_eq!(t.to_epoch_ms(), Some(days * DAY_MS));
            let next_of_previous = if previous.day < days_in_month(previous.year, previous.month) {
                (previous.year, previous.month, previous.day + 1)
            } else if previous.month < 12 {
                (previous.year, previous.month + 1, 1)
            } else {
                (previous.year + 1, 1, 1)
            };
            assert_eq!((t.year, t.month, t.day), next_of_previous, "day {days}");
            previous = t;
        }
    }
}

/// `epoch_ms` as RFC 3339 in UTC, to the millisecond
/// (`2024-02-29T23:59:59.123Z`); times past year 9999 show as its last
/// millisecond.
pub fn rfc3339(epoch_ms: u64) -> String {
    let t = UtcDateTime::from_epoch_ms(epoch_ms.min(EPOCH_MS_YEAR_10000 - 1));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millisecond
    )
}

#[cfg(test)]
mod rfc3339_tests {
    #[test]
    fn formats_in_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339(951_868_799_123), "2000-02-29T23:59:59.123Z");
    }
}

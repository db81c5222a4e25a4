//! What a snapshot store holds, and how snapshots are named in it.
//!
//! A name carries everything needed to order and group snapshots without
//! reading them:
//!
//! ```text
//! e2d-snapshot-20240229T235959.123Z-00000000deadbeef-00000000000000000042.snap
//!              |  UTC time taken  | | cluster id   | |     revision     |
//! ```
//!
//! Every field has a fixed width, so names sort lexicographically by time,
//! then cluster id, then revision; an object store's plain listing order is
//! the time order.

use super::utc::{UtcDateTime, EPOCH_MS_YEAR_10000};

const NAME_PREFIX: &str = "e2d-snapshot-";
const NAME_SUFFIX: &str = ".snap";
/// `yyyymmddThhmmss.mmmZ`
pub(super) const TIME_LEN: usize = 20;
pub(super) const CLUSTER_ID_HEX_LEN: usize = 16;
pub(super) const REVISION_DIGITS_LEN: usize = 20;
/// Length of every snapshot name.
pub const SNAPSHOT_NAME_LEN: usize = NAME_PREFIX.len()
    + TIME_LEN
    + 1
    + CLUSTER_ID_HEX_LEN
    + 1
    + REVISION_DIGITS_LEN
    + NAME_SUFFIX.len();
/// Latest time a name can carry: the last millisecond of year 9999.
pub const SNAPSHOT_TAKEN_AT_MS_MAX: u64 = EPOCH_MS_YEAR_10000 - 1;

/// One snapshot as a store listing reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub name: String,
    pub cluster_id: u64,
    /// The store revision the snapshot holds.
    pub revision: i64,
    pub taken_at_ms: u64,
    pub size_bytes: u64,
    /// The listing or its verification found the snapshot complete and
    /// readable. An invalid one may be an upload still in progress.
    pub valid: bool,
}

impl SnapshotInfo {
    /// A snapshot named in e2d's scheme (see [`snapshot_name`]).
    pub fn named(
        cluster_id: u64,
        revision: i64,
        taken_at_ms: u64,
        size_bytes: u64,
        valid: bool,
    ) -> Self {
        SnapshotInfo {
            name: snapshot_name(cluster_id, revision, taken_at_ms),
            cluster_id,
            revision,
            taken_at_ms,
            size_bytes,
            valid,
        }
    }

    /// The order of "newer": time taken, then revision, then name, so two
    /// different snapshots are never equally new.
    pub fn recency_key(&self) -> (u64, i64, &str) {
        (self.taken_at_ms, self.revision, &self.name)
    }
}

/// The name of the snapshot of `cluster_id` at `revision`, taken at
/// `taken_at_ms` (milliseconds since the Unix epoch).
///
/// `revision` must not be negative and `taken_at_ms` must not pass
/// [`SNAPSHOT_TAKEN_AT_MS_MAX`]; both come from the store and the clock, so
/// anything else is a bug.
pub fn snapshot_name(cluster_id: u64, revision: i64, taken_at_ms: u64) -> String {
    assert!(revision >= 0, "negative revision {revision}");
    assert!(
        taken_at_ms <= SNAPSHOT_TAKEN_AT_MS_MAX,
        "snapshot time {taken_at_ms} ms is past year 9999"
    );
    let time = name_time(taken_at_ms);
    let name = format!("{NAME_PREFIX}{time}-{cluster_id:016x}-{revision:020}{NAME_SUFFIX}");
    debug_assert_eq!(name.len(), SNAPSHOT_NAME_LEN);
    name
}

/// `(cluster_id, revision, taken_at_ms)` of a name made by
/// [`snapshot_name`]; `None` for any other string, including near misses
/// such as upper-case hex, an impossible date or a revision past `i64::MAX`.
pub fn parse_snapshot_name(name: &str) -> Option<(u64, i64, u64)> {
    if name.len() != SNAPSHOT_NAME_LEN || !name.is_ascii() {
        return None;
    }
    let body = name.strip_prefix(NAME_PREFIX)?.strip_suffix(NAME_SUFFIX)?;
    let (time, rest) = body.split_at(TIME_LEN);
    let (cluster_id_hex, revision_digits) = rest
        .strip_prefix('-')?
        .split_at_checked(CLUSTER_ID_HEX_LEN)?;
    let revision_digits = revision_digits.strip_prefix('-')?;
    let taken_at_ms = parse_time(time)?;
    let cluster_id = u64::from_str_radix(cluster_id_hex, 16).ok()?;
    let revision = parse_digits(revision_digits)?;
    let revision = i64::try_from(revision).ok()?;
    // Refuses every spelling but the canonical one (`+` signs, upper case).
    (snapshot_name(cluster_id, revision, taken_at_ms) == name).then_some((
        cluster_id,
        revision,
        taken_at_ms,
    ))
}

/// `epoch_ms` as names carry it: `yyyymmddThhmmss.mmmZ`.
pub(super) fn name_time(epoch_ms: u64) -> String {
    let t = UtcDateTime::from_epoch_ms(epoch_ms);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millisecond,
    )
}

/// `yyyymmddThhmmss.mmmZ` to milliseconds since the epoch.
pub(super) fn parse_time(time: &str) -> Option<u64> {
    let bytes = time.as_bytes();
    if bytes.len() != TIME_LEN || bytes[8] != b'T' || bytes[15] != b'.' || bytes[19] != b'Z' {
        return None;
    }
    let field = |from: usize, to: usize| -> Option<u32> {
        u32::try_from(parse_digits(&time[from..to])?).ok()
    };
    UtcDateTime {
        year: field(0, 4)?,
        month: field(4, 6)?,
        day: field(6, 8)?,
        hour: field(9, 11)?,
        minute: field(11, 13)?,
        second: field(13, 15)?,
        millisecond: field(16, 19)?,
    }
    .to_epoch_ms()
}

/// A run of ASCII digits (no sign, not empty) as a number.
pub(super) fn parse_digits(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The newest valid snapshot by [`SnapshotInfo::recency_key`], of any
/// cluster.
pub fn newest_valid(listing: &[SnapshotInfo]) -> Option<&SnapshotInfo> {
    listing
        .iter()
        .filter(|s| s.valid)
        .max_by(|a, b| a.recency_key().cmp(&b.recency_key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: u64 = 0xdead_beef;

    fn info(cluster_id: u64, revision: i64, taken_at_ms: u64, valid: bool) -> SnapshotInfo {
        SnapshotInfo::named(cluster_id, revision, taken_at_ms, 1, valid)
    }

    #[test]
    fn name_has_the_documented_shape() {
        // 2024-02-29T23:59:59.123Z
        let name = snapshot_name(CLUSTER, 42, 1_709_251_199_123);
        assert_eq!(
            name,
            "e2d-snapshot-20240229T235959.123Z-00000000deadbeef-00000000000000000042.snap"
        );
        assert_eq!(name.len(), SNAPSHOT_NAME_LEN);
    }

    #[test]
    fn name_round_trips() {
        let cases = [
            (0, 0, 0),
            (CLUSTER, 42, 1_709_251_199_123),
            (u64::MAX, i64::MAX, SNAPSHOT_TAKEN_AT_MS_MAX),
            (1, 1, 951_782_400_000), // 2000-02-29
        ];
        for (cluster_id, revision, taken_at_ms) in cases {
            let name = snapshot_name(cluster_id, revision, taken_at_ms);
            assert_eq!(
                parse_snapshot_name(&name),
                Some((cluster_id, revision, taken_at_ms)),
                "{name}"
            );
        }
    }

    #[test]
    fn names_sort_by_time_first() {
        let older = snapshot_name(u64::MAX, i64::MAX, 1_000);
        let newer = snapshot_name(0, 0, 1_001);
        assert!(older < newer);
        let year_9 = snapshot_name(0, 0, 9 * 365 * 86_400_000);
        let year_10 = snapshot_name(0, 0, 10 * 365 * 86_400_000);
        assert!(year_9 < year_10);
    }

    #[test]
    fn parse_refuses_garbage() {
        let good = "e2d-snapshot-20240229T235959.123Z-00000000deadbeef-00000000000000000042.snap";
        assert!(parse_snapshot_name(good).is_some());
        let bad = [
            "",
            "e2d-snapshot-",
            "snapshot.db",
            // Wrong prefix or suffix.
            "e2d-snapshoT-20240229T235959.123Z-00000000deadbeef-00000000000000000042.snap",
            "e2d-snapshot-20240229T235959.123Z-00000000deadbeef-00000000000000000042.snaq",
            // Impossible dates and times.
            "e2d-snapshot-20230229T235959.123Z-00000000deadbeef-00000000000000000042.snap",
            "e2d-snapshot-20241301T235959.123Z-00000000deadbeef-00000000000000000042.snap",
            "e2d-snapshot-20240229T245959.123Z-00000000deadbeef-00000000000000000042.snap",
            "e2d-snapshot-20240229T235960.123Z-00000000deadbeef-00000000000000000042.snap",
            "e2d-snapshot-19691231T235959.123Z-00000000deadbeef-00000000000000000042.snap",
            // Separators moved or missing.
            "e2d-snapshot-20240229t235959.123Z-00000000deadbeef-00000000000000000042.snap",
            "e2d-snapshot-20240229T235959,123Z-00000000deadbeef-00000000000000000042.snap",
            "e2d-snapshot-20240229T235959.123Z_00000000deadbeef-00000000000000000042.snap",
            "e2d-snapshot-20240229T235959.123Z-00000000deadbeef_00000000000000000042.snap",
            // Not canonical: upper-case hex, signs, spaces.
            "e2d-snapshot-20240229T235959.123Z-00000000DEADBEEF-00000000000000000042.snap",
            "e2d-snapshot-20240229T235959.123Z-+0000000deadbeef-00000000000000000042.snap",
            "e2d-snapshot-20240229T235959.123Z-00000000deadbeef-+0000000000000000042.snap",
            "e2d-snapshot-+0240229T235959.123Z-00000000deadbeef-00000000000000000042.snap",
            "e2d-snapshot-20240229T235959.123Z-00000000deadbeef- 0000000000000000042.snap",
            // Revision past i64::MAX.
            "e2d-snapshot-20240229T235959.123Z-00000000deadbeef-09223372036854775808.snap",
            "e2d-snapshot-20240229T235959.123Z-00000000deadbeef-99999999999999999999.snap",
            // Right length, multi-byte characters.
            "e2d-snapshot-20240229T235959.123Z-00000000deadbeé-00000000000000000042.snap",
        ];
        for name in bad {
            assert_eq!(parse_snapshot_name(name), None, "{name}");
        }
    }

    #[test]
    fn parse_never_panics_on_any_cut_of_a_good_name() {
        let good = snapshot_name(CLUSTER, 42, 1_709_251_199_123);
        for end in 0..good.len() {
            assert_eq!(parse_snapshot_name(&good[..end]), None);
            assert_eq!(parse_snapshot_name(&format!("{}x", &good[..end])), None);
        }
        let mut bytes = good.into_bytes();
        for i in 0..bytes.len() {
            let original = bytes[i];
            for replacement in [b'0', b'9', b'f', b'-', b'.', b'Z', 0xff] {
                bytes[i] = replacement;
                let mutated = String::from_utf8_lossy(&bytes);
                let _ = parse_snapshot_name(&mutated);
            }
            bytes[i] = original;
        }
    }

    #[test]
    fn newest_valid_orders_by_time_then_revision_then_name() {
        assert_eq!(newest_valid(&[]), None);
        let invalid_newest = info(CLUSTER, 9, 9_000, false);
        assert_eq!(newest_valid(std::slice::from_ref(&invalid_newest)), None);
        let by_time = [info(CLUSTER, 5, 2_000, true), info(CLUSTER, 7, 1_000, true)];
        assert_eq!(newest_valid(&by_time).unwrap().revision, 5);
        let by_revision = [info(CLUSTER, 5, 1_000, true), info(CLUSTER, 7, 1_000, true)];
        assert_eq!(newest_valid(&by_revision).unwrap().revision, 7);
        let by_name = [info(2, 5, 1_000, true), info(1, 5, 1_000, true)];
        assert_eq!(newest_valid(&by_name).unwrap().cluster_id, 2);
        let skips_invalid = [info(CLUSTER, 5, 1_000, true), invalid_newest];
        assert_eq!(newest_valid(&skips_invalid).unwrap().revision, 5);
    }
}

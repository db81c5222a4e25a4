//! Key ranges and the question "do a user's permissions cover this range",
//! with etcd's conventions for ranges.
//!
//! A permission or a request names a key and a range end, as etcd's API
//! does: an empty range end is the one key; a range end of `[0]` is every
//! key from the key on; otherwise it is `[key, range_end)`. Each becomes a
//! half-open interval of byte strings, [`KeyInterval`]. A user may do an
//! operation on a range when the union of the intervals its roles grant for
//! that access covers every key of the range (etcd's interval tree
//! `Contains`); for a single key, when one interval holds it.

use std::cmp::Ordering;

use e2d_proto::authpb::permission::Type as PermissionType;
use e2d_proto::authpb::{Permission, Role};

/// What an operation does to the keys it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// The end of a key interval: a key (exclusive) or no end at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Before(Vec<u8>),
    Unbounded,
}

impl PartialOrd for End {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for End {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (End::Unbounded, End::Unbounded) => Ordering::Equal,
            (End::Unbounded, End::Before(_)) => Ordering::Greater,
            (End::Before(_), End::Unbounded) => Ordering::Less,
            (End::Before(a), End::Before(b)) => a.cmp(b),
        }
    }
}

/// The keys `begin <= k < end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInterval {
    pub begin: Vec<u8>,
    pub end: End,
}

impl KeyInterval {
    /// The interval a key and range end name, in etcd's conventions. A
    /// range end at or before the key names no key in a read; it is
    /// judged here as the key alone, so it is allowed no more than that.
    pub fn of(key: &[u8], range_end: &[u8]) -> KeyInterval {
        let point_end = || {
            let mut end = key.to_vec();
            end.push(0);
            End::Before(end)
        };
        let end = match range_end {
            [] => point_end(),
            [0] => End::Unbounded,
            end if end <= key => point_end(),
            end => End::Before(end.to_vec()),
        };
        KeyInterval {
            begin: key.to_vec(),
            end,
        }
    }

    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.begin.as_slice() <= key
            && match &self.end {
                End::Unbounded => true,
                End::Before(end) => key < end.as_slice(),
            }
    }
}

/// Whether a permission's key and range end are acceptable, as etcd's
/// `isValidPermissionRange`: a key, and a range end that is empty, `[0]`
/// or after the key.
pub fn is_valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || range_end == [0] || key < range_end)
}

/// One user's permissions merged over all its roles: for each access, the
/// union of its intervals as disjoint, sorted intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPermissions {
    read: Vec<KeyInterval>,
    write: Vec<KeyInterval>,
}

impl UserPermissions {
    /// Merges the permissions of `roles`.
    pub fn of<'a>(roles: impl IntoIterator<Item = &'a Role>) -> UserPermissions {
        let mut read = Vec::new();
        let mut write = Vec::new();
        for permission in roles.into_iter().flat_map(|r| &r.key_permission) {
            let interval = permission_interval(permission);
            match permission.perm_type() {
                PermissionType::Read => read.push(interval),
                PermissionType::Write => write.push(interval),
                PermissionType::Readwrite => {
                    read.push(interval.clone());
                    write.push(interval);
                }
            }
        }
        UserPermissions {
            read: union(read),
            write: union(write),
        }
    }

    /// Whether these permissions allow `access` to every key of `range`.
    pub fn covers(&self, access: Access, range: &KeyInterval) -> bool {
        let intervals = match access {
            Access::Read => &self.read,
            Access::Write => &self.write,
        };
        // The disjoint intervals are sorted, so at most one can start at or
        // before the range's begin and still hold it; it must reach the end.
        let after = intervals.partition_point(|i| i.begin <= range.begin);
        let Some(candidate) = after.checked_sub(1).map(|i| &intervals[i]) else {
            return false;
        };
        candidate.contains_key(&range.begin) && candidate.end >= range.end
    }
}

/// The interval a stored permission grants.
pub fn permission_interval(permission: &Permission) -> KeyInterval {
    KeyInterval::of(&permission.key, &permission.range_end)
}

/// The union of `intervals` as disjoint, sorted intervals; touching
/// intervals (`[a, b)` and `[b, c)`) become one.
fn union(mut intervals: Vec<KeyInterval>) -> Vec<KeyInterval> {
    intervals.sort_by(|a, b| a.begin.cmp(&b.begin));
    let mut merged: Vec<KeyInterval> = Vec::with_capacity(intervals.len());
    for interval in intervals {
        if let Some(last) = merged.last_mut() {
            let touches = match &last.end {
                End::Unbounded => true,
                End::Before(end) => interval.begin <= *end,
            };
            if touches {
                if interval.end > last.end {
                    last.end = interval.end;
                }
                continue;
            }
        }
        merged.push(interval);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(perms: &[(PermissionType, &[u8], &[u8])]) -> Role {
        Role {
            name: b"r".to_vec(),
            key_permission: perms
                .iter()
                .map(|(t, k, e)| Permission {
                    perm_type: *t as i32,
                    key: k.to_vec(),
                    range_end: e.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_prefix_permission_covers_its_keys_and_ranges_only() {
        let perms = UserPermissions::of(&[role(&[(PermissionType::Readwrite, b"foo", b"fop")])]);
        assert!(perms.covers(Access::Read, &KeyInterval::of(b"foo", b"")));
        assert!(perms.covers(Access::Write, &KeyInterval::of(b"foo/bar", b"")));
        assert!(perms.covers(Access::Read, &KeyInterval::of(b"foo", b"fop")));
        assert!(!perms.covers(Access::Read, &KeyInterval::of(b"foo", b"foq")));
        assert!(!perms.covers(Access::Read, &KeyInterval::of(b"fo", b"")));
        assert!(!perms.covers(Access::Read, &KeyInterval::of(b"foo", &[0])));
    }

    #[test]
    fn adjacent_permissions_of_two_roles_cover_the_range_between() {
        let perms = UserPermissions::of(&[
            role(&[(PermissionType::Read, b"a", b"c")]),
            role(&[(PermissionType::Readwrite, b"c", b"e")]),
        ]);
        assert!(perms.covers(Access::Read, &KeyInterval::of(b"a", b"e")));
        assert!(!perms.covers(Access::Write, &KeyInterval::of(b"a", b"e")));
        assert!(perms.covers(Access::Write, &KeyInterval::of(b"c", b"e")));
    }

    #[test]
    fn a_from_key_permission_covers_everything_after() {
        let perms = UserPermissions::of(&[role(&[(PermissionType::Write, b"m", &[0])])]);
        assert!(perms.covers(Access::Write, &KeyInterval::of(b"m", &[0])));
        assert!(perms.covers(Access::Write, &KeyInterval::of(b"zzz", b"")));
        assert!(!perms.covers(Access::Write, &KeyInterval::of(b"l", &[0])));
        assert!(!perms.covers(Access::Read, &KeyInterval::of(b"m", b"")));
    }

    #[test]
    fn permission_ranges_are_checked_as_etcd() {
        assert!(is_valid_permission_range(b"a", b""));
        assert!(is_valid_permission_range(b"a", &[0]));
        assert!(is_valid_permission_range(b"a", b"b"));
        assert!(!is_valid_permission_range(b"b", b"a"));
        assert!(!is_valid_permission_range(b"a", b"a"));
        assert!(!is_valid_permission_range(b"", b""));
    }
}

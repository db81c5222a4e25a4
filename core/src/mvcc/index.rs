//! The in-memory key index: for every key, the revisions that changed it.
//!
//! Values live in the backend under their revision; the index answers "which
//! revision holds key K as of revision R" and "which keys lie in [a, b)".

use std::collections::BTreeMap;
use std::ops::Bound;

use e2d_proto::mvccpb::KeyValue;

use super::index_key::IndexKey;
use crate::revision::Revision;

/// One change of a key: a put, or a delete (tombstone), and the bytes its
/// entry takes in the kv table. 16 bytes: the sub revision (a change's
/// place within its revision) is kept in 31 bits, beside the tombstone
/// mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    main: i64,
    /// The sub revision, and [`TOMBSTONE_BIT`] for a delete.
    sub_and_mark: u32,
    /// Revision key and stored value, saturated at `u32::MAX` (no entry
    /// comes close: a request is at most 63 MiB).
    entry_bytes: u32,
}

/// Marks a tombstone in [`Change::sub_and_mark`].
const TOMBSTONE_BIT: u32 = 1 << 31;

impl Change {
    /// `None` when the sub revision does not fit in 31 bits: no revision
    /// this store writes has that many changes.
    pub fn new(revision: Revision, tombstone: bool, entry_bytes: usize) -> Option<Self> {
        let sub = u32::try_from(revision.sub)
            .ok()
            .filter(|sub| sub & TOMBSTONE_BIT == 0)?;
        Some(Change {
            main: revision.main,
            sub_and_mark: if tombstone { sub | TOMBSTONE_BIT } else { sub },
            entry_bytes: u32::try_from(entry_bytes).unwrap_or(u32::MAX),
        })
    }

    pub fn revision(&self) -> Revision {
        Revision::new(self.main, i64::from(self.sub_and_mark & !TOMBSTONE_BIT))
    }

    /// Whether the change is a delete.
    pub fn tombstone(&self) -> bool {
        self.sub_and_mark & TOMBSTONE_BIT != 0
    }

    /// Bytes of the change's entry in the kv table.
    pub fn entry_bytes(&self) -> u64 {
        u64::from(self.entry_bytes)
    }
}

/// The changes of one key, oldest first. Most keys have a single live
/// change, kept inline: with a million keys the index is much of the
/// server's memory.
#[derive(Debug, Clone)]
enum History {
    One(Change),
    Many(Vec<Change>),
}

impl History {
    fn as_slice(&self) -> &[Change] {
        match self {
            History::One(change) => std::slice::from_ref(change),
            History::Many(changes) => changes,
        }
    }

    fn push(&mut self, change: Change) {
        match self {
            History::One(first) => *self = History::Many(vec![*first, change]),
            History::Many(changes) => changes.push(change),
        }
    }

    /// Appends `newer`'s changes, all newer than this history's.
    fn extend(&mut self, newer: History) {
        let last = self.as_slice().last().expect("histories are never empty");
        let first_newer = newer.as_slice().first().expect("histories are never empty");
        assert!(
            last.revision() < first_newer.revision(),
            "key index: revisions of a key must grow"
        );
        match (&mut *self, newer) {
            (History::Many(changes), newer) => changes.extend_from_slice(newer.as_slice()),
            (History::One(first), History::One(next)) => *self = History::Many(vec![*first, next]),
            (History::One(first), History::Many(mut changes)) => {
                changes.insert(0, *first);
                *self = History::Many(changes);
            }
        }
    }

    /// Removes the oldest `n` changes into `out`; returns whether any
    /// change is left.
    fn drop_oldest(&mut self, n: usize, out: &mut Vec<Change>) -> bool {
        let kept: Vec<Change> = {
            let all = self.as_slice();
            out.extend_from_slice(&all[..n]);
            all[n..].to_vec()
        };
        match kept.as_slice() {
            [] => false,
            [one] => {
                *self = History::One(*one);
                true
            }
            _ => {
                *self = History::Many(kept);
                true
            }
        }
    }
}

/// What a write needs of a key's live value without reading the value:
/// the first revision of its generation, its version and its lease.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Live {
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
}

impl Live {
    pub fn of(kv: &KeyValue) -> Self {
        Live {
            create_revision: kv.create_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    history: History,
    /// Of the newest change when it is a put; after a delete, the default,
    /// whose version 0 no put has. [`HeldKey::live`] answers from it
    /// alone, without following the history to its heap.
    live: Live,
}

impl Entry {
    fn new(change: Change, live: Live) -> Self {
        Entry {
            history: History::One(change),
            live: live_after(change, live),
        }
    }

    /// What the newest change stored, when it is a put.
    fn live(&self) -> Option<Live> {
        debug_assert_eq!(
            self.live.version > 0,
            self.history
                .as_slice()
                .last()
                .is_some_and(|c| !c.tombstone())
        );
        (self.live.version > 0).then_some(self.live)
    }

    /// Appends `change`; false (and nothing changes) unless it is newer
    /// than the newest change held.
    fn push(&mut self, change: Change, live: Live) -> bool {
        let last = self
            .history
            .as_slice()
            .last()
            .expect("histories are never empty");
        if last.revision() >= change.revision() {
            return false;
        }
        self.history.push(change);
        self.live = live_after(change, live);
        true
    }
}

/// A put has a version; a delete's `live` is ignored.
fn recordable(change: Change, live: Live) -> bool {
    change.tombstone() || live.version > 0
}

/// What an entry keeps as its live value after `change`.
fn live_after(change: Change, live: Live) -> Live {
    if change.tombstone() {
        Live::default()
    } else {
        live
    }
}

/// A key the index holds, found once for a write that reads what the key
/// holds ([`HeldKey::live`]) and then records its change there.
pub struct HeldKey<'a>(&'a mut Entry);

impl HeldKey<'_> {
    /// What the newest change stored, when it is a put.
    pub fn live(&self) -> Option<Live> {
        self.0.live()
    }

    /// As [`KeyIndex::record`].
    pub fn record(self, change: Change, live: Live) {
        let recorded = recordable(change, live) && self.0.push(change, live);
        assert!(recorded, "{RECORD_REFUSED}");
    }
}

const RECORD_REFUSED: &str = "key index: revisions of a key must grow, and a put has a version";

/// Takes a key alive at the revision read, the revision of its value and,
/// when that is the key's newest change, what it stored; false stops.
pub type VisitLive<'a> = dyn FnMut(&[u8], Revision, Option<Live>) -> bool + 'a;

#[derive(Debug, Default, Clone)]
pub struct KeyIndex {
    keys: BTreeMap<IndexKey, Entry>,
}

/// Which keys a request covers, in etcd's terms: `range_end` empty means the
/// single key, `"\0"` means every key from `key` on, anything else `[key, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpan<'a> {
    Single(&'a [u8]),
    From(&'a [u8]),
    Between(&'a [u8], &'a [u8]),
}

impl<'a> KeySpan<'a> {
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeySpan::Single(key),
            [0] => KeySpan::From(key),
            end => KeySpan::Between(key, end),
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match *self {
            KeySpan::Single(k) => k == key,
            KeySpan::From(start) => key >= start,
            KeySpan::Between(start, end) => key >= start && key < end,
        }
    }

    /// Whether two spans share a key.
    pub fn overlaps(&self, other: &KeySpan<'_>) -> bool {
        let (a_start, a_end) = self.bounds();
        let (b_start, b_end) = other.bounds();
        let a_before_b_end = b_end.is_none_or(|e| a_start < e);
        let b_before_a_end = a_end.is_none_or(|e| b_start < e);
        a_before_b_end && b_before_a_end
    }

    /// `(start, exclusive end)`; `None` end means unbounded. A single key's
    /// end is the key followed by a zero byte.
    fn bounds(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        match *self {
            KeySpan::Single(k) => {
                let mut end = k.to_vec();
                end.push(0);
                (k.to_vec(), Some(end))
            }
            KeySpan::From(s) => (s.to_vec(), None),
            KeySpan::Between(s, e) => (s.to_vec(), Some(e.to_vec())),
        }
    }
}

impl KeyIndex {
    /// Records `change` of `key`; `live` describes the value a put stores
    /// (it is ignored for a delete).
    pub fn record(&mut self, key: &[u8], change: Change, live: Live) {
        let recorded = self.record_newer(key, change, live);
        assert!(recorded, "{RECORD_REFUSED}");
    }

    /// [`KeyIndex::record`] for changes read from storage: a change not
    /// newer than the key's last, or a put without a version, is refused
    /// (false), and nothing is recorded.
    #[must_use]
    pub fn record_newer(&mut self, key: &[u8], change: Change, live: Live) -> bool {
        if !recordable(change, live) {
            return false;
        }
        match self.keys.get_mut(key) {
            Some(entry) => entry.push(change, live),
            None => {
                self.keys
                    .insert(IndexKey::new(key), Entry::new(change, live));
                true
            }
        }
    }

    /// `key`'s entry, if the index holds the key: a write that reads it
    /// and records its change there looks the key up once.
    pub fn held(&mut self, key: &[u8]) -> Option<HeldKey<'_>> {
        self.keys.get_mut(key).map(HeldKey)
    }

    /// Records the first change of `key`, which [`KeyIndex::held`] found
    /// the index does not hold: inserted without looking the key up again.
    pub fn record_new(&mut self, key: &[u8], change: Change, live: Live) {
        assert!(recordable(change, live), "{RECORD_REFUSED}");
        let replaced = self
            .keys
            .insert(IndexKey::new(key), Entry::new(change, live));
        assert!(
            replaced.is_none(),
            "key index: a key recorded as new was held"
        );
    }

    /// This index's changes followed by `newer`'s, every change of which
    /// is newer than every change here: two ranges of revisions indexed
    /// apart, joined. Both key lists are merged in one pass and the map is
    /// built from the sorted result, not key by key.
    pub fn followed_by(self, newer: KeyIndex) -> KeyIndex {
        use std::cmp::Ordering;
        if self.keys.is_empty() {
            return newer;
        }
        if newer.keys.is_empty() {
            return self;
        }
        let mut merged = Vec::with_capacity(self.keys.len().max(newer.keys.len()));
        let mut older = self.keys.into_iter().peekable();
        let mut newer = newer.keys.into_iter().peekable();
        loop {
            let order = match (older.peek(), newer.peek()) {
                (Some((a, _)), Some((b, _))) => a.cmp(b),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => break,
            };
            let next = match order {
                Ordering::Less => older.next(),
                Ordering::Greater => newer.next(),
                Ordering::Equal => {
                    let (key, mut entry) = older.next().expect("peeked");
                    let (_, later) = newer.next().expect("peeked");
                    entry.history.extend(later.history);
                    entry.live = later.live;
                    Some((key, entry))
                }
            };
            merged.extend(next);
        }
        KeyIndex {
            keys: merged.into_iter().collect(),
        }
    }

    /// The put that holds `key` as of `at_main`, if the key exists then.
    pub fn get(&self, key: &[u8], at_main: i64) -> Option<Revision> {
        live_at(self.keys.get(key)?.history.as_slice(), at_main)
    }

    /// The newest value of `key`, if its newest change is a put (writes
    /// read it through [`KeyIndex::held`]).
    #[cfg(test)]
    pub fn live(&self, key: &[u8]) -> Option<Live> {
        self.keys.get(key)?.live()
    }

    /// Every key whose newest change is a put, in key order, with what that
    /// put stored. Reads no values: a member's start attaches leases from
    /// it without holding the store in memory.
    pub fn visit_newest_puts(&self, visit: &mut dyn FnMut(&[u8], Live)) {
        for (key, entry) in &self.keys {
            if let Some(live) = entry.live() {
                visit(key.as_bytes(), live);
            }
        }
    }

    /// The entries of the keys in `span`, in key order.
    fn entries_in<'a>(
        &'a self,
        span: &KeySpan<'a>,
    ) -> impl Iterator<Item = (&'a [u8], &'a Entry)> + 'a {
        type KeyBounds<'k> = (Bound<&'k [u8]>, Bound<&'k [u8]>);
        let range: Option<KeyBounds<'a>> = match *span {
            KeySpan::Single(k) => Some((Bound::Included(k), Bound::Included(k))),
            KeySpan::From(s) => Some((Bound::Included(s), Bound::Unbounded)),
            KeySpan::Between(s, e) => (s < e).then_some((Bound::Included(s), Bound::Excluded(e))),
        };
        range
            .into_iter()
            .flat_map(|range| self.keys.range::<[u8], _>(range))
            .map(|(key, entry)| (key.as_bytes(), entry))
    }

    /// Keys in `span` alive at `at_main`, in key order, with their
    /// revisions and, when that revision is the key's newest change, what
    /// it stored. Visits until `visit` returns false.
    pub fn visit_live(&self, span: &KeySpan<'_>, at_main: i64, visit: &mut VisitLive<'_>) {
        for (key, entry) in self.entries_in(span) {
            let history = entry.history.as_slice();
            if let Some(rev) = live_at(history, at_main) {
                let newest = history.last().is_some_and(|c| c.revision() == rev);
                if !visit(key, rev, newest.then_some(entry.live)) {
                    return;
                }
            }
        }
    }

    /// Keys in `span` whose newest change is a put, in key order, with that
    /// put's revision and what it stored: the keys alive at the newest
    /// revision, found without reading a value.
    pub fn visit_newest_puts_in(
        &self,
        span: &KeySpan<'_>,
        visit: &mut dyn FnMut(&[u8], Revision, Live),
    ) {
        for (key, entry) in self.entries_in(span) {
            match entry.history.as_slice().last() {
                Some(newest) if !newest.tombstone() => visit(key, newest.revision(), entry.live),
                _ => {}
            }
        }
    }

    /// Removes the history that compaction at `at_main` makes unreachable
    /// from at most `keys_max` keys, from `start` on in key order: the
    /// newest change at or below `at_main` is kept unless it is a
    /// tombstone. Returns the changes dropped (to delete from the backend)
    /// and the key to go on from (`None` once the last key is done).
    pub fn compact_from(
        &mut self,
        start: &[u8],
        at_main: i64,
        keys_max: usize,
    ) -> (Vec<Change>, Option<Vec<u8>>) {
        assert!(keys_max > 0);
        let mut dropped = Vec::new();
        let mut emptied = Vec::new();
        let mut next = None;
        let from = (Bound::Included(start), Bound::Unbounded);
        for (done, (key, entry)) in self.keys.range_mut::<[u8], _>(from).enumerate() {
            if done == keys_max {
                next = Some(key.as_bytes().to_vec());
                break;
            }
            if !compact_history(&mut entry.history, at_main, &mut dropped) {
                emptied.push(key.clone());
            }
        }
        for key in emptied {
            self.keys.remove(key.as_bytes());
        }
        (dropped, next)
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

/// Drops from `history` what a compaction at `at_main` drops (every change
/// at or below it but the newest, and that too when it is a delete) into
/// `dropped`; returns whether any change is left.
fn compact_history(history: &mut History, at_main: i64, dropped: &mut Vec<Change>) -> bool {
    let changes = history.as_slice();
    let keep_from = match changes.iter().rposition(|c| c.main <= at_main) {
        None => 0,
        Some(i) if changes[i].tombstone() => i + 1,
        Some(i) => i,
    };
    keep_from == 0 || history.drop_oldest(keep_from, dropped)
}

fn live_at(history: &[Change], at_main: i64) -> Option<Revision> {
    let i = history.partition_point(|c| c.main <= at_main);
    let change = history[..i].last()?;
    (!change.tombstone()).then_some(change.revision())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(index: &mut KeyIndex, key: &[u8], main: i64) {
        let version = index.live(key).map_or(1, |live| live.version + 1);
        let change = Change::new(Revision::new(main, 0), false, 30).unwrap();
        let live = Live {
            create_revision: index.live(key).map_or(main, |live| live.create_revision),
            version,
            lease: main * 10,
        };
        index.record(key, change, live);
    }

    fn del(index: &mut KeyIndex, key: &[u8], main: i64) {
        let change = Change::new(Revision::new(main, 0), true, 20).unwrap();
        index.record(key, change, Live::default());
    }

    #[test]
    fn get_sees_history() {
        let mut index = KeyIndex::default();
        put(&mut index, b"a", 2);
        del(&mut index, b"a", 4);
        put(&mut index, b"a", 6);
        assert_eq!(index.get(b"a", 1), None);
        assert_eq!(index.get(b"a", 3), Some(Revision::new(2, 0)));
        assert_eq!(index.get(b"a", 5), None);
        assert_eq!(index.get(b"a", 9), Some(Revision::new(6, 0)));
    }

    #[test]
    fn live_follows_the_newest_change() {
        let mut index = KeyIndex::default();
        assert_eq!(index.live(b"a"), None);
        put(&mut index, b"a", 2);
        put(&mut index, b"a", 3);
        let live = Live {
            create_revision: 2,
            version: 2,
            lease: 30,
        };
        assert_eq!(index.live(b"a"), Some(live));
        del(&mut index, b"a", 4);
        assert_eq!(index.live(b"a"), None);
        put(&mut index, b"a", 5);
        assert_eq!(
            index.live(b"a").map(|l| (l.create_revision, l.version)),
            Some((5, 1))
        );
        // Compaction drops old changes, not what the newest one says.
        index.compact_from(&[], 5, usize::MAX);
        assert_eq!(
            index.live(b"a").map(|l| (l.create_revision, l.version)),
            Some((5, 1))
        );
    }

    #[test]
    fn compaction_keeps_the_live_revision() {
        let mut index = KeyIndex::default();
        put(&mut index, b"a", 2);
        put(&mut index, b"a", 3);
        put(&mut index, b"b", 2);
        del(&mut index, b"b", 3);
        let (first, next) = index.compact_from(&[], 3, 1);
        assert_eq!(first.len(), 1);
        assert_eq!(next.as_deref(), Some(&b"b"[..]));
        let (rest, next) = index.compact_from(b"b", 3, 1);
        assert_eq!(next, None);
        assert_eq!(first.len() + rest.len(), 3);
        assert_eq!(index.get(b"a", 3), Some(Revision::new(3, 0)));
        assert_eq!(index.key_count(), 1);
    }

    #[test]
    fn entries_stay_small() {
        // With a million keys the index is much of the server's memory.
        assert_eq!(std::mem::size_of::<Change>(), 16);
        assert_eq!(std::mem::size_of::<History>(), 24);
        assert!(Change::new(Revision::new(1, 1 << 31), false, 0).is_none());
        let change = Change::new(Revision::new(7, (1 << 31) - 1), true, 99).unwrap();
        assert_eq!(change.revision(), Revision::new(7, (1 << 31) - 1));
        assert!(change.tombstone());
        assert_eq!(change.entry_bytes(), 99);
        let change = Change::new(Revision::new(7, 3), false, usize::MAX).unwrap();
        assert!(!change.tombstone());
        assert_eq!(change.entry_bytes(), u64::from(u32::MAX));
    }

    #[test]
    fn spans_overlap() {
        let a = KeySpan::new(b"a", b"c");
        assert!(a.overlaps(&KeySpan::new(b"b", b"")));
        assert!(!a.overlaps(&KeySpan::new(b"c", b"")));
        assert!(KeySpan::new(b"x", b"\0").overlaps(&KeySpan::new(b"z", b"")));
        assert!(!KeySpan::new(b"x", b"\0").overlaps(&KeySpan::new(b"a", b"b")));
    }
}

//! Multi-version concurrency control: every change gets a revision, every
//! revision stays readable until compaction.
//!
//! [`Mvcc`] owns the [`KeyIndex`] (in memory, rebuilt on open) and a
//! [`Backend`] that stores each key-value under its revision, the layout etcd
//! uses. Writes go through a [`WriteTxn`], which gives all its changes one
//! store revision.

pub mod index;
mod index_key;
mod range;
mod write;

pub use index::{Change, KeyIndex, KeySpan, Live};
pub use range::{RangePlan, RangeResult, Reads};
pub use write::WriteTxn;

use e2d_proto::mvccpb::{event::EventType, Event, KeyValue};
use prost::Message;

use crate::crc32c::Crc32c;
use crate::error::Error;
use crate::revision::{Revision, REVISION_LEN_BYTES};
use crate::storage::{read_meta_u64, Backend, ReadTables, ScanPart, StorageError, Table};

/// Marks a tombstone in the kv table: appended to the revision key.
const TOMBSTONE_MARK: u8 = b't';
pub const META_CURRENT_REVISION: &[u8] = b"current_revision";
pub const META_COMPACT_REVISION: &[u8] = b"compact_revision";
/// The compaction whose entries are all gone from the kv table; below
/// [`META_COMPACT_REVISION`] while a compaction's deletes are under way
/// (absent: equal to it, as a store that deleted at once left it).
pub const META_COMPACT_FINISHED_REVISION: &[u8] = b"compact_finished_revision";

/// Whether `key` of the `Meta` table belongs to the store itself (its
/// revisions), not to the member or the cluster it runs in: what a backup
/// restored into another cluster keeps.
pub fn is_store_meta(key: &[u8]) -> bool {
    key == META_CURRENT_REVISION
        || key == META_COMPACT_REVISION
        || key == META_COMPACT_FINISHED_REVISION
}

pub struct Mvcc<B> {
    backend: B,
    index: KeyIndex,
    current_revision: i64,
    compact_revision: i64,
    /// Bytes of the kv table's entries: see [`Mvcc::kv_bytes`].
    kv_bytes: u64,
    /// While a compaction is under way, the key its next step starts
    /// from: [`Mvcc::compact_step`] takes the index and the kv table a
    /// bounded number of keys at a time, so a compaction of millions of
    /// revisions does not hold up writes. What it drops stays unread
    /// meanwhile ([`Mvcc::compacted_away`]).
    compaction_cursor: Option<Vec<u8>>,
}

impl<B: Backend> Mvcc<B> {
    /// Opens the store over `backend`, rebuilding the key index from it.
    pub fn open(backend: B) -> Result<Self, Error> {
        let mut mvcc = Self {
            backend,
            index: KeyIndex::default(),
            current_revision: 1,
            compact_revision: 0,
            kv_bytes: 0,
            compaction_cursor: None,
        };
        mvcc.reload()?;
        Ok(mvcc)
    }

    /// Rebuilds the key index and revisions from what the backend holds
    /// (after its contents were replaced wholesale, say).
    pub fn reload(&mut self) -> Result<(), Error> {
        let backend = &self.backend;
        let current_revision =
            read_meta_u64(backend, META_CURRENT_REVISION)?.map_or(1, |v| v as i64);
        // Each part of the revisions is indexed on its own (at once, where
        // the backend reads parts at once), then the parts are joined.
        let mut built: Vec<PartIndex> = (0..backend.scan_parallelism().max(1))
            .map(|_| PartIndex::default())
            .collect();
        let bounds = revision_parts(current_revision, built.len());
        let mut parts: Vec<ScanPart<'_>> = built
            .iter_mut()
            .zip(bounds)
            .map(|(part, (start, end))| ScanPart {
                start,
                end,
                visit: Box::new(move |key: &[u8], value: &[u8]| part.record(key, value)),
            })
            .collect();
        backend.scan_parts(Table::Kv, &mut parts)?;
        drop(parts);
        self.take_index(built)
    }

    /// Reloads as [`Mvcc::reload`] does, with the key index `built` from
    /// every entry the kv table now holds, in revision order, as they were
    /// written to it: the table is not read again.
    pub fn reload_with(&mut self, built: IndexBuilder) -> Result<(), Error> {
        self.take_index(vec![built.0])
    }

    /// Makes the index of `parts`, consecutive ranges of the kv table's
    /// revisions, this store's, with the revisions the backend records.
    fn take_index(&mut self, parts: Vec<PartIndex>) -> Result<(), Error> {
        let backend = &self.backend;
        let current_revision =
            read_meta_u64(backend, META_CURRENT_REVISION)?.map_or(1, |v| v as i64);
        let compact_revision =
            read_meta_u64(backend, META_COMPACT_REVISION)?.map_or(0, |v| v as i64);
        let mut index = KeyIndex::default();
        let mut kv_bytes = 0;
        for part in parts {
            if let Some(e) = part.corrupt {
                return Err(e.into());
            }
            kv_bytes += part.kv_bytes;
            index = index.followed_by(part.index);
        }
        // A compaction that was under way starts over: what it had not
        // deleted is in the index again.
        let finished = read_meta_u64(backend, META_COMPACT_FINISHED_REVISION)?
            .map_or(compact_revision, |v| v as i64);
        self.index = index;
        self.current_revision = current_revision;
        self.compact_revision = compact_revision;
        self.kv_bytes = kv_bytes;
        self.compaction_cursor = (finished < compact_revision).then(Vec::new);
        Ok(())
    }

    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn into_backend(self) -> B {
        self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    pub fn key_count(&self) -> usize {
        self.index.key_count()
    }

    /// Every key alive at the current revision with the lease it is
    /// attached to (or `NO_LEASE`), in key order; reads no values.
    pub fn visit_current_leases(&self, visit: &mut dyn FnMut(&[u8], i64)) {
        self.index
            .visit_newest_puts(&mut |key, live| visit(key, live.lease));
    }

    /// Bytes of the kv table's entries, revision keys and stored values:
    /// every revision compaction has kept, tombstones included. What the
    /// history takes before the storage engine's own overhead (indexes,
    /// compression, versions its compaction has not dropped yet).
    pub fn kv_bytes(&self) -> u64 {
        self.kv_bytes
    }

    /// Starts a write; all its changes share revision `current + 1`.
    pub fn write(&mut self) -> WriteTxn<'_, B> {
        WriteTxn::new(self)
    }

    /// Checks that `revision` (0 = current) can be read and resolves it.
    pub fn resolve_read_revision(&self, revision: i64) -> Result<i64, Error> {
        if revision <= 0 {
            return Ok(self.current_revision);
        }
        if revision > self.current_revision {
            return Err(Error::FutureRevision);
        }
        if revision < self.compact_revision {
            return Err(Error::Compacted);
        }
        Ok(revision)
    }

    /// The value of `key` as of store revision `at_main`.
    pub fn get(&self, key: &[u8], at_main: i64) -> Result<Option<KeyValue>, Error> {
        match self.index.get(key, at_main) {
            // Below the compacted revision, only what compaction keeps
            // (the index's answer is a put, not a delete).
            Some(rev)
                if at_main < self.compact_revision && self.compacted_away(key, rev, false) =>
            {
                Ok(None)
            }
            Some(rev) => Ok(Some(self.read_kv(rev)?)),
            None => Ok(None),
        }
    }

    /// Removes history older than `revision`; reads below it fail at
    /// once. What it drops leaves the index and the kv table through
    /// [`Mvcc::compact_step`].
    pub fn compact(&mut self, revision: i64) -> Result<(), Error> {
        if revision <= self.compact_revision {
            return Err(Error::Compacted);
        }
        if revision > self.current_revision {
            return Err(Error::FutureRevision);
        }
        if self.compaction_cursor.is_none() {
            // Every earlier compaction is finished: say so, as the store
            // reads an absent mark as this one finished.
            self.put_compaction_finished();
        }
        self.compact_revision = revision;
        self.backend
            .put(Table::Meta, META_COMPACT_REVISION, &revision.to_be_bytes());
        // Keys a compaction under way has done are done again, to this one.
        self.compaction_cursor = Some(Vec::new());
        Ok(())
    }

    /// Whether a compaction's steps are still to come.
    pub fn compaction_under_way(&self) -> bool {
        self.compaction_cursor.is_some()
    }

    /// One step of the compaction under way: up to `keys_max` keys of the
    /// index lose what it drops, and their kv table entries are deleted
    /// (staged: the caller commits); after the last key the compaction is
    /// marked finished. Returns whether steps remain.
    pub fn compact_step(&mut self, keys_max: usize) -> bool {
        let Some(start) = self.compaction_cursor.take() else {
            return false;
        };
        let (dropped, next) = self
            .index
            .compact_from(&start, self.compact_revision, keys_max);
        for change in dropped {
            self.backend.delete(
                Table::Kv,
                &kv_entry_key(change.revision(), change.tombstone()),
            );
            debug_assert!(self.kv_bytes >= change.entry_bytes());
            self.kv_bytes = self.kv_bytes.saturating_sub(change.entry_bytes());
        }
        self.compaction_cursor = next;
        if self.compaction_cursor.is_none() {
            self.put_compaction_finished();
        }
        self.compaction_cursor.is_some()
    }

    fn put_compaction_finished(&mut self) {
        self.backend.put(
            Table::Meta,
            META_COMPACT_FINISHED_REVISION,
            &self.compact_revision.to_be_bytes(),
        );
    }

    /// Whether the change of `key` at `revision` (a delete when
    /// `tombstone`) is one the compaction under way drops but has not
    /// deleted yet: readers skip it. Those are the changes at or
    /// below the compacted revision but the newest, and that too when it
    /// is a delete: the newest a read at that revision would not find.
    fn compacted_away(&self, key: &[u8], revision: Revision, tombstone: bool) -> bool {
        self.compaction_cursor.is_some()
            && revision.main <= self.compact_revision
            && (tombstone || self.index.get(key, self.compact_revision) != Some(revision))
    }

    /// Events of store revisions `from_main..=to_main`, in revision order, at
    /// most `events_max` of them, but never splitting a revision. Only reads
    /// committed revisions. `with_prev` fills each event's previous value.
    pub fn events(
        &self,
        from_main: i64,
        to_main: i64,
        events_max: usize,
        with_prev: bool,
    ) -> Result<Vec<Event>, Error> {
        assert!(events_max > 0);
        let mut events = Vec::new();
        let mut failure = None;
        let start = Revision::start_of(from_main.max(1));
        let end = Revision::start_of(to_main.saturating_add(1));
        let mut last_main = 0;
        self.backend
            .scan(Table::Kv, &start, &end, &mut |key, value| {
                let (change, mut kv) = match decode_kv_entry(key, value) {
                    Ok(entry) => entry,
                    Err(e) => {
                        failure = Some(Error::from(e));
                        return false;
                    }
                };
                if self.compacted_away(&kv.key, change.revision(), change.tombstone()) {
                    return true;
                }
                if events.len() >= events_max && change.revision().main != last_main {
                    return false;
                }
                last_main = change.revision().main;
                if change.tombstone() {
                    kv.mod_revision = change.revision().main;
                }
                events.push(Event {
                    r#type: if change.tombstone() {
                        EventType::Delete as i32
                    } else {
                        EventType::Put as i32
                    },
                    kv: Some(kv),
                    prev_kv: None,
                });
                true
            })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if with_prev {
            for event in &mut events {
                let kv = event.kv.as_ref().expect("events carry their kv");
                event.prev_kv = self.get(&kv.key, kv.mod_revision - 1)?;
            }
        }
        Ok(events)
    }

    /// etcd's HashKV: CRC-32C over the bucket name `key`, then the revision
    /// key and stored value of every change up to `revision` that
    /// compaction kept, except that of the changes at or below the
    /// compacted revision only those a compaction at `revision` would keep
    /// count (each key's value as of `revision`), unless it would keep
    /// none. Equal on every member (and on etcd) holding the same history.
    pub fn hash_kv(&self, revision: i64) -> Result<u32, Error> {
        let mut any_live = false;
        self.index
            .visit_live(&KeySpan::From(b""), revision, &mut |_, _, _| {
                any_live = true;
                false
            });
        let mut crc = Crc32c::new();
        crc.update(b"key");
        let end = Revision::start_of(revision.saturating_add(1));
        let compacted_end = Revision::start_of(self.compact_revision.saturating_add(1));
        let mut failure = None;
        self.backend.scan(Table::Kv, &[], &end, &mut |key, value| {
            // Below the compacted revision, entries are left out that a
            // compaction at `revision` would drop, or the one under way has.
            if key < compacted_end.as_slice() && (any_live || self.compaction_under_way()) {
                match decode_kv_entry(key, value) {
                    Ok((change, kv))
                        if self.compacted_away(&kv.key, change.revision(), change.tombstone()) =>
                    {
                        return true
                    }
                    Ok((change, kv)) if any_live => {
                        let kept = self.index.get(&kv.key, revision) == Some(change.revision());
                        if change.tombstone() || !kept {
                            return true;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        failure = Some(e);
                        return false;
                    }
                }
            }
            crc.update(key);
            crc.update(value);
            true
        })?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        Ok(crc.finish())
    }

    fn read_kv(&self, rev: Revision) -> Result<KeyValue, Error> {
        read_kv(&self.backend, rev)
    }
}

/// The key-value stored at `rev`, from `tables`.
fn read_kv(tables: &dyn ReadTables, rev: Revision) -> Result<KeyValue, Error> {
    let bytes = tables
        .get(Table::Kv, &kv_entry_key(rev, false))?
        .ok_or_else(|| StorageError(format!("missing value of revision {rev:?}")))?;
    // Decoded from `Bytes`, the key and value share what the read returned
    // instead of being copied out of it once more.
    KeyValue::decode(bytes)
        .map_err(|e| StorageError(format!("corrupt value at revision {rev:?}: {e}")).into())
}

fn kv_entry_key(rev: Revision, tombstone: bool) -> Vec<u8> {
    let mut key = rev.encode().to_vec();
    if tombstone {
        key.push(TOMBSTONE_MARK);
    }
    key
}

/// One record of the kv table as a snapshot carries it: whether it is a
/// delete (tombstone), and the key-value it holds.
pub fn decode_kv_record(key: &[u8], value: &[u8]) -> Result<(bool, KeyValue), StorageError> {
    decode_kv_entry(key, value).map(|(change, kv)| (change.tombstone(), kv))
}

fn decode_kv_entry(key: &[u8], value: &[u8]) -> Result<(Change, KeyValue), StorageError> {
    let change = decode_change(key, value)?;
    let kv = KeyValue::decode(value).map_err(|_| corrupt_entry(key))?;
    Ok((change, kv))
}

fn corrupt_entry(key: &[u8]) -> StorageError {
    StorageError(format!("corrupt kv entry key {key:02x?}"))
}

/// The change a kv table entry records, from its key.
fn decode_change(key: &[u8], value: &[u8]) -> Result<Change, StorageError> {
    let corrupt = || corrupt_entry(key);
    let revision =
        Revision::decode(key.get(..REVISION_LEN_BYTES).ok_or_else(corrupt)?).ok_or_else(corrupt)?;
    let tombstone = match &key[REVISION_LEN_BYTES..] {
        [] => false,
        [TOMBSTONE_MARK] => true,
        _ => return Err(corrupt()),
    };
    let entry_bytes = key.len() + value.len();
    Change::new(revision, tombstone, entry_bytes).ok_or_else(corrupt)
}

/// The key index of one range of revisions, as a start rebuilds it.
#[derive(Default)]
struct PartIndex {
    index: KeyIndex,
    kv_bytes: u64,
    /// The first entry that did not decode; the part stops there.
    corrupt: Option<StorageError>,
}

impl PartIndex {
    /// Records one kv table entry; false (stop) when it does not decode,
    /// or does not follow the key's last change.
    fn record(&mut self, key: &[u8], value: &[u8]) -> bool {
        let recorded = decode_indexed_entry(key, value).and_then(|(change, user_key, live)| {
            if !self.index.record_newer(user_key, change, live) {
                return Err(corrupt_entry(key));
            }
            self.kv_bytes += change.entry_bytes();
            Ok(())
        });
        match recorded {
            Ok(()) => true,
            Err(e) => {
                self.corrupt = Some(e);
                false
            }
        }
    }
}

/// The key index of a whole kv table built from its entries as they are
/// written (a snapshot loading as it streams in), in revision order, so
/// [`Mvcc::reload_with`] need not read them back.
#[derive(Default)]
pub struct IndexBuilder(PartIndex);

impl IndexBuilder {
    /// Records the kv table's next entry, whose revision follows the last
    /// one's; an entry that does not decode is refused.
    pub fn record(&mut self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        if self.0.record(key, value) {
            return Ok(());
        }
        Err(self.0.corrupt.take().expect("a refused entry is recorded"))
    }
}

/// `parts` consecutive ranges of the kv table's keys that together cover
/// it, split evenly by main revision over `1..=current_revision`: the
/// first starts at the beginning, the last has no end.
fn revision_parts(current_revision: i64, parts: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    assert!(parts > 0);
    let span = i128::from(current_revision.max(1));
    let cuts: Vec<Vec<u8>> = (1..parts)
        .map(|i| {
            let main = 1 + span * i as i128 / parts as i128;
            Revision::start_of(main as i64).to_vec()
        })
        .collect();
    let starts = std::iter::once(Vec::new()).chain(cuts.iter().cloned());
    let ends = cuts.iter().cloned().chain(std::iter::once(Vec::new()));
    starts.zip(ends).collect()
}

/// What the key index keeps of a kv table entry: its change, the user key
/// (borrowed from `value`) and the live fields. Read in place, without
/// copying the value out: a start rebuilds the index from every entry,
/// and a whole decode would copy every stored value once more.
fn decode_indexed_entry<'v>(
    key: &[u8],
    value: &'v [u8],
) -> Result<(Change, &'v [u8], Live), StorageError> {
    let change = decode_change(key, value)?;
    let (user_key, live) = decode_indexed_fields(value).ok_or_else(|| corrupt_entry(key))?;
    Ok((change, user_key, live))
}

/// `KeyValue`'s key (field 1), create_revision (2), version (4) and lease
/// (6) from its encoding; other fields are skipped. `None` when the bytes
/// are not a `KeyValue`.
fn decode_indexed_fields(value: &[u8]) -> Option<(&[u8], Live)> {
    use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
    let mut buf = value;
    let mut user_key: &[u8] = &[];
    let mut live = Live {
        create_revision: 0,
        version: 0,
        lease: 0,
    };
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).ok()?;
        match (tag, wire_type) {
            (1, WireType::LengthDelimited) => {
                let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                (user_key, buf) = (buf.get(..len)?, buf.get(len..)?);
            }
            (2 | 4 | 6, WireType::Varint) => {
                let field = decode_varint(&mut buf).ok()? as i64;
                match tag {
                    2 => live.create_revision = field,
                    4 => live.version = field,
                    _ => live.lease = field,
                }
            }
            (2 | 4 | 6 | 1, _) => return None,
            _ => skip_field(wire_type, tag, &mut buf, DecodeContext::default()).ok()?,
        }
    }
    Some((user_key, live))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemBackend;

    fn put(mvcc: &mut Mvcc<MemBackend>, key: &[u8], value: &[u8]) {
        let mut txn = mvcc.write();
        txn.put(key, value.to_vec(), |_| 0);
        txn.end();
    }

    fn delete(mvcc: &mut Mvcc<MemBackend>, key: &[u8]) {
        let mut txn = mvcc.write();
        txn.delete_span(&KeySpan::Single(key), false).unwrap();
        txn.end();
    }

    #[test]
    fn the_index_reads_the_same_fields_in_place_as_a_whole_decode() {
        use proptest::prelude::*;
        let kvs = (
            proptest::collection::vec(any::<u8>(), 0..40),
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
            proptest::collection::vec(any::<u8>(), 0..100),
            any::<i64>(),
        );
        proptest!(|((key, create_revision, mod_revision, version, value, lease) in kvs)| {
            let kv = KeyValue { key: key.into(), create_revision, mod_revision, version, value: value.into(), lease };
            let encoded = kv.encode_to_vec();
            let (user_key, live) = decode_indexed_fields(&encoded).expect("a KeyValue");
            prop_assert_eq!(user_key, &kv.key[..]);
            prop_assert_eq!(
                (live.create_revision, live.version, live.lease),
                (kv.create_revision, kv.version, kv.lease)
            );
        });
        // Not a KeyValue: a key given as a number, a length past the end.
        assert!(decode_indexed_fields(&[0x08, 0x01]).is_none());
        assert!(decode_indexed_fields(&[0x0a, 0x05, b'a']).is_none());
    }

    #[test]
    fn an_entry_that_does_not_decode_refuses_the_open() {
        // Read in one part or several, whichever part the entry lands in.
        for parts in 1..=3 {
            let mut mvcc = Mvcc::open(MemBackend::default()).unwrap();
            put(&mut mvcc, b"a", b"1");
            put(&mut mvcc, b"b", b"1");
            put(&mut mvcc, b"c", b"1");
            let mut backend = mvcc.into_backend().with_scan_parallelism(parts);
            // A key given as a number: not a KeyValue.
            backend.put(Table::Kv, &Revision::new(3, 0).encode(), &[0x08, 0x01]);
            backend.commit(true).unwrap();
            let refused = Mvcc::open(backend).err().expect("the open is refused");
            assert!(
                refused.to_string().contains("corrupt kv entry"),
                "{parts} parts: {refused}"
            );
        }
    }

    #[test]
    fn changes_of_a_key_that_do_not_grow_or_a_put_without_a_version_refuse_the_open() {
        let kv_of = |revision: i64, version: i64| KeyValue {
            key: b"a".to_vec().into(),
            mod_revision: revision,
            version,
            ..KeyValue::default()
        };
        let mut tombstone_beside_its_put = Revision::new(2, 0).encode().to_vec();
        tombstone_beside_its_put.push(TOMBSTONE_MARK);
        for (what, key, kv) in [
            (
                "a put without a version",
                Revision::new(2, 0).encode().to_vec(),
                kv_of(2, 0),
            ),
            (
                "a delete at the put's revision",
                tombstone_beside_its_put,
                kv_of(2, 0),
            ),
        ] {
            let mut mvcc = Mvcc::open(MemBackend::default()).unwrap();
            put(&mut mvcc, b"a", b"1");
            let mut backend = mvcc.into_backend();
            backend.put(Table::Kv, &key, &kv.encode_to_vec());
            backend.commit(true).unwrap();
            let refused = Mvcc::open(backend).err().expect("the open is refused");
            assert!(
                refused.to_string().contains("corrupt kv entry"),
                "{what}: {refused}"
            );
        }
    }

    /// etcd 3.4's `endpoint hashkv` after the same calls: `put a 1`, `put
    /// b 1`, `compaction 3`, `put a 2` (then `del a`, `del b`).
    #[test]
    fn hash_kv_skips_compacted_values_overwritten_since_as_etcd_does() {
        let mut mvcc = Mvcc::open(MemBackend::default()).unwrap();
        put(&mut mvcc, b"a", b"1");
        put(&mut mvcc, b"b", b"1");
        mvcc.compact(3).unwrap();
        put(&mut mvcc, b"a", b"2");
        assert_eq!(mvcc.hash_kv(4).unwrap(), 2_393_049_859);
        delete(&mut mvcc, b"a");
        delete(&mut mvcc, b"b");
        // No key is left to keep: etcd then hashes every revision.
        assert_eq!(mvcc.hash_kv(6).unwrap(), 1_423_040_355);
    }
}

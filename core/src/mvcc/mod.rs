//! Multi-version concurrency control: every change gets a revision, every
//! revision stays readable until compaction.
//!
//! [`Mvcc`] owns the [`KeyIndex`] (in memory, rebuilt on open) and a
//! [`Backend`] that stores each key-value under its revision, the layout etcd
//! uses. Writes go through a [`WriteTxn`], which gives all its changes one
//! store revision.

pub mod index;
mod range;
mod write;

pub use index::{Change, KeyIndex, KeySpan, Live};
pub use range::RangeResult;
pub use write::WriteTxn;

use e2d_proto::mvccpb::{event::EventType, Event, KeyValue};
use prost::Message;

use crate::crc32c::Crc32c;
use crate::error::Error;
use crate::revision::{Revision, REVISION_LEN_BYTES};
use crate::storage::{read_meta_u64, Backend, StorageError, Table};

/// Marks a tombstone in the kv table: appended to the revision key.
const TOMBSTONE_MARK: u8 = b't';
pub const META_CURRENT_REVISION: &[u8] = b"current_revision";
pub const META_COMPACT_REVISION: &[u8] = b"compact_revision";

/// Whether `key` of the `Meta` table belongs to the store itself (its
/// revisions), not to the member or the cluster it runs in: what a backup
/// restored into another cluster keeps.
pub fn is_store_meta(key: &[u8]) -> bool {
    key == META_CURRENT_REVISION || key == META_COMPACT_REVISION
}

pub struct Mvcc<B> {
    backend: B,
    index: KeyIndex,
    current_revision: i64,
    compact_revision: i64,
    /// Bytes of the kv table's entries: see [`Mvcc::kv_bytes`].
    kv_bytes: u64,
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
        let compact_revision =
            read_meta_u64(backend, META_COMPACT_REVISION)?.map_or(0, |v| v as i64);
        let mut index = KeyIndex::default();
        let mut corrupt = None;
        let mut kv_bytes = 0;
        backend.scan(Table::Kv, &[], &[], &mut |key, value| {
            match decode_kv_entry(key, value) {
                Ok((change, kv)) => {
                    kv_bytes += change.entry_bytes();
                    index.record(&kv.key, change, Live::of(&kv));
                }
                Err(e) => {
                    corrupt = Some(e);
                    return false;
                }
            }
            true
        })?;
        if let Some(e) = corrupt {
            return Err(e.into());
        }
        self.index = index;
        self.current_revision = current_revision;
        self.compact_revision = compact_revision;
        self.kv_bytes = kv_bytes;
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
            Some(rev) => Ok(Some(self.read_kv(rev)?)),
            None => Ok(None),
        }
    }

    /// Removes history older than `revision`; reads below it fail afterwards.
    pub fn compact(&mut self, revision: i64) -> Result<(), Error> {
        if revision <= self.compact_revision {
            return Err(Error::Compacted);
        }
        if revision > self.current_revision {
            return Err(Error::FutureRevision);
        }
        for change in self.index.compact(revision) {
            self.backend.delete(
                Table::Kv,
                &kv_entry_key(change.revision(), change.tombstone()),
            );
            debug_assert!(self.kv_bytes >= change.entry_bytes());
            self.kv_bytes = self.kv_bytes.saturating_sub(change.entry_bytes());
        }
        self.compact_revision = revision;
        self.backend
            .put(Table::Meta, META_COMPACT_REVISION, &revision.to_be_bytes());
        Ok(())
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
            .visit_live(&KeySpan::From(b""), revision, &mut |_, _| {
                any_live = true;
                false
            });
        let mut crc = Crc32c::new();
        crc.update(b"key");
        let end = Revision::start_of(revision.saturating_add(1));
        let compacted_end = Revision::start_of(self.compact_revision.saturating_add(1));
        let mut failure = None;
        self.backend.scan(Table::Kv, &[], &end, &mut |key, value| {
            if any_live && key < compacted_end.as_slice() {
                match decode_kv_entry(key, value) {
                    Ok((change, kv)) => {
                        let kept = self.index.get(&kv.key, revision) == Some(change.revision());
                        if change.tombstone() || !kept {
                            return true;
                        }
                    }
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
        let bytes = self
            .backend
            .get(Table::Kv, &kv_entry_key(rev, false))?
            .ok_or_else(|| StorageError(format!("missing value of revision {rev:?}")))?;
        KeyValue::decode(bytes.as_slice())
            .map_err(|e| StorageError(format!("corrupt value at revision {rev:?}: {e}")).into())
    }
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
    let corrupt = || StorageError(format!("corrupt kv entry key {key:02x?}"));
    let revision =
        Revision::decode(key.get(..REVISION_LEN_BYTES).ok_or_else(corrupt)?).ok_or_else(corrupt)?;
    let tombstone = match &key[REVISION_LEN_BYTES..] {
        [] => false,
        [TOMBSTONE_MARK] => true,
        _ => return Err(corrupt()),
    };
    let kv = KeyValue::decode(value).map_err(|_| corrupt())?;
    let entry_bytes = key.len() + value.len();
    let change = Change::new(revision, tombstone, entry_bytes).ok_or_else(corrupt)?;
    Ok((change, kv))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemBackend;

    fn put(mvcc: &mut Mvcc<MemBackend>, key: &[u8], value: &[u8]) {
        let mut txn = mvcc.write();
        let live = txn.live(key);
        txn.put(key, live, value.to_vec(), 0);
        txn.end();
    }

    fn delete(mvcc: &mut Mvcc<MemBackend>, key: &[u8]) {
        let mut txn = mvcc.write();
        txn.delete_span(&KeySpan::Single(key)).unwrap();
        txn.end();
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

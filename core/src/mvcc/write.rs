//! A write transaction: puts and deletes that share one store revision.

use e2d_proto::mvccpb::{event::EventType, Event, KeyValue};
use prost::bytes::Bytes;
use prost::Message;

use super::index::HeldKey;
use super::{kv_entry_key, Change, KeySpan, Live, Mvcc, RangeResult, Reads, META_CURRENT_REVISION};
use crate::error::Error;
use crate::revision::Revision;
use crate::storage::{Backend, Table};

/// Changes staged under revision `main`. Dropping it ends it too, so the
/// index never holds changes the store revision does not cover.
pub struct WriteTxn<'a, B: Backend> {
    mvcc: &'a mut Mvcc<B>,
    main: i64,
    events: Vec<Event>,
    ended: bool,
}

impl<'a, B: Backend> WriteTxn<'a, B> {
    pub(super) fn new(mvcc: &'a mut Mvcc<B>) -> Self {
        let main = mvcc.current_revision + 1;
        Self {
            mvcc,
            main,
            events: Vec::new(),
            ended: false,
        }
    }

    /// The store revision reads inside this txn see: the new one once
    /// something changed, else the current one.
    pub fn read_revision(&self) -> i64 {
        if self.events.is_empty() {
            self.mvcc.current_revision
        } else {
            self.main
        }
    }

    /// The revision this txn's changes get.
    pub fn write_revision(&self) -> i64 {
        self.main
    }

    pub fn mvcc(&self) -> &Mvcc<B> {
        self.mvcc
    }

    pub fn read_span(&self, span: &KeySpan<'_>) -> Result<RangeResult, Error> {
        self.mvcc
            .read_span(span, self.read_revision(), 0, Reads::Values)
    }

    /// What `key` holds as this txn reads it.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, Error> {
        self.mvcc.get(key, self.read_revision())
    }

    /// Writes `key`: `lease` picks the new value's lease from what the key
    /// index says of the value it replaces, which is returned. A key the
    /// index holds is looked up once; a new one once more, to insert it.
    pub fn put(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        lease: impl FnOnce(Option<Live>) -> i64,
    ) -> Option<Live> {
        let revision = self.next_revision();
        let main = self.main;
        let mvcc = &mut *self.mvcc;
        let held = mvcc.index.held(key);
        let prev = held.as_ref().and_then(HeldKey::live);
        let kv = KeyValue {
            key: key.to_vec().into(),
            create_revision: prev.map_or(main, |p| p.create_revision),
            mod_revision: main,
            version: prev.map_or(1, |p| p.version + 1),
            value: value.into(),
            lease: lease(prev),
        };
        let stored = kv.encode_to_vec();
        let change = stage(
            &mut mvcc.backend,
            &mut mvcc.kv_bytes,
            revision,
            &stored,
            false,
        );
        let live = Live::of(&kv);
        match held {
            Some(held) => held.record(change, live),
            None => mvcc.index.record_new(key, change, live),
        }
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: None,
        });
        prev
    }

    /// Deletes every key of `span`; returns the deleted key-values, their
    /// values read only `with_values` (else left empty).
    pub fn delete_span(
        &mut self,
        span: &KeySpan<'_>,
        with_values: bool,
    ) -> Result<Vec<KeyValue>, Error> {
        let deleted = if with_values {
            self.read_span(span)?.kvs
        } else {
            self.mvcc.newest_headers(span)
        };
        for kv in &deleted {
            let revision = self.next_revision();
            self.store_tombstone(revision, kv.key.clone());
        }
        Ok(deleted)
    }

    /// Finishes the txn: the store revision moves on if anything changed.
    /// Returns the events of the txn, in order.
    pub fn end(mut self) -> Vec<Event> {
        self.finish();
        std::mem::take(&mut self.events)
    }

    fn finish(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        if !self.events.is_empty() {
            assert!(self.main == self.mvcc.current_revision + 1);
            self.mvcc.current_revision = self.main;
            self.mvcc
                .backend
                .put(Table::Meta, META_CURRENT_REVISION, &self.main.to_be_bytes());
        }
    }

    fn next_revision(&self) -> Revision {
        Revision::new(self.main, self.events.len() as i64)
    }

    fn store_tombstone(&mut self, revision: Revision, key: Bytes) {
        // A tombstone is stored as etcd stores it, the key alone; its
        // revision lives in the entry key.
        let tombstone = KeyValue {
            key,
            mod_revision: self.main,
            ..Default::default()
        };
        let stored = KeyValue {
            key: tombstone.key.clone(),
            ..Default::default()
        }
        .encode_to_vec();
        let change = stage(
            &mut self.mvcc.backend,
            &mut self.mvcc.kv_bytes,
            revision,
            &stored,
            true,
        );
        self.mvcc
            .index
            .record(&tombstone.key, change, Live::default());
        self.events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(tombstone),
            prev_kv: None,
        });
    }
}

/// Writes a change's entry to the kv table and counts its bytes; returns
/// the change for the key index.
fn stage<B: Backend>(
    backend: &mut B,
    kv_bytes: &mut u64,
    revision: Revision,
    stored: &[u8],
    tombstone: bool,
) -> Change {
    let entry_key = kv_entry_key(revision, tombstone);
    backend.put(Table::Kv, &entry_key, stored);
    let change = Change::new(revision, tombstone, entry_key.len() + stored.len())
        .expect("a revision's changes are counted in 31 bits");
    *kv_bytes += change.entry_bytes();
    change
}

impl<B: Backend> Drop for WriteTxn<'_, B> {
    fn drop(&mut self) {
        self.finish();
    }
}

//! A write transaction: puts and deletes that share one store revision.

use e2d_proto::mvccpb::{event::EventType, Event, KeyValue};
use prost::Message;

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

    /// What the key index says of `key`'s value as this txn reads it,
    /// without reading the value.
    pub fn live(&self, key: &[u8]) -> Option<Live> {
        self.mvcc.index.live(key)
    }

    /// Writes `key` over `prev`, which must be what [`WriteTxn::live`]
    /// returns for it (the caller has asked already).
    pub fn put(&mut self, key: &[u8], prev: Option<Live>, value: Vec<u8>, lease: i64) {
        debug_assert_eq!(prev, self.live(key));
        let revision = self.next_revision();
        let kv = KeyValue {
            key: key.to_vec().into(),
            create_revision: prev.map_or(self.main, |p| p.create_revision),
            mod_revision: self.main,
            version: prev.map_or(1, |p| p.version + 1),
            value: value.into(),
            lease,
        };
        self.store(revision, false, kv, EventType::Put);
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
            let tombstone = KeyValue {
                key: kv.key.clone(),
                mod_revision: self.main,
                ..Default::default()
            };
            self.store(revision, true, tombstone, EventType::Delete);
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

    fn store(&mut self, revision: Revision, tombstone: bool, kv: KeyValue, kind: EventType) {
        // A tombstone is stored as etcd stores it, the key alone; its
        // revision lives in the entry key.
        let stored = if tombstone {
            KeyValue {
                key: kv.key.clone(),
                ..Default::default()
            }
            .encode_to_vec()
        } else {
            kv.encode_to_vec()
        };
        let entry_key = kv_entry_key(revision, tombstone);
        self.mvcc.backend.put(Table::Kv, &entry_key, &stored);
        let live = if tombstone {
            Live::default()
        } else {
            Live::of(&kv)
        };
        let entry_bytes = entry_key.len() + stored.len();
        let change = Change::new(revision, tombstone, entry_bytes)
            .expect("a revision's changes are counted in 31 bits");
        self.mvcc.kv_bytes += change.entry_bytes();
        self.mvcc.index.record(&kv.key, change, live);
        self.events.push(Event {
            r#type: kind as i32,
            kv: Some(kv),
            prev_kv: None,
        });
    }
}

impl<B: Backend> Drop for WriteTxn<'_, B> {
    fn drop(&mut self) {
        self.finish();
    }
}

//! Range reads with etcd's semantics: limit and `more`, count, sorting,
//! keys-only, and revision filters.

use e2d_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use e2d_proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use e2d_proto::mvccpb::KeyValue;

use super::index::Live;
use super::{read_kv, KeySpan, Mvcc};
use crate::error::Error;
use crate::revision::Revision;
use crate::storage::{Backend, ReadTables};

/// Key-values found by a raw range read, before etcd's response shaping.
#[derive(Debug, Default)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// Keys in the span at the read revision, regardless of limit.
    pub count: i64,
}

/// What a range read takes from each key it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Nothing: the count alone.
    Count,
    /// Everything a key-value holds but its value, left empty: from the
    /// key index alone where the key's newest change is the one read,
    /// otherwise from the stored key-value.
    Headers,
    /// Whole key-values.
    Values,
}

/// A key a range found, before its value is read.
#[derive(Debug, Clone)]
enum Found {
    /// Answered from the key index: all but the value.
    Known(KeyValue),
    /// Its stored key-value, read at this revision; with `value` false,
    /// its value is dropped.
    Stored { revision: Revision, value: bool },
}

/// The keys a range read found in the key index, in key order, and how
/// many there are: everything but the values, which [`SpanRead::resolve`]
/// reads from a view of the tables (see [`RangePlan`]).
#[derive(Debug, Clone)]
struct SpanRead {
    found: Vec<Found>,
    count: i64,
}

impl SpanRead {
    /// Stored key-values this read still has to fetch.
    fn values_to_read(&self) -> usize {
        self.found
            .iter()
            .filter(|f| matches!(f, Found::Stored { .. }))
            .count()
    }

    /// Reads what the index did not answer from `tables`, which must hold
    /// everything the index held when the read was made.
    fn resolve(self, tables: &dyn ReadTables) -> Result<RangeResult, Error> {
        let kvs = self
            .found
            .into_iter()
            .map(|found| match found {
                Found::Known(kv) => Ok(kv),
                Found::Stored { revision, value } => {
                    let mut kv = read_kv(tables, revision)?;
                    if !value {
                        kv.value.clear();
                    }
                    Ok(kv)
                }
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(RangeResult {
            kvs,
            count: self.count,
        })
    }
}

impl<B: Backend> Mvcc<B> {
    /// Reads keys of `span` alive at `at_main`. `limit` 0 reads all.
    pub fn read_span(
        &self,
        span: &KeySpan<'_>,
        at_main: i64,
        limit: usize,
        reads: Reads,
    ) -> Result<RangeResult, Error> {
        self.find_span(span, at_main, limit, reads)
            .resolve(&self.backend)
    }

    /// What [`Mvcc::read_span`] finds in the key index alone.
    fn find_span(&self, span: &KeySpan<'_>, at_main: i64, limit: usize, reads: Reads) -> SpanRead {
        let mut found = Vec::new();
        let mut count = 0i64;
        self.index
            .visit_live(span, at_main, &mut |key, revision, newest| {
                count += 1;
                if reads == Reads::Count || (limit != 0 && found.len() >= limit) {
                    return true;
                }
                found.push(match (reads, newest) {
                    (Reads::Headers, Some(live)) => Found::Known(header_kv(key, revision, live)),
                    (Reads::Headers, None) => Found::Stored {
                        revision,
                        value: false,
                    },
                    _ => Found::Stored {
                        revision,
                        value: true,
                    },
                });
                true
            });
        SpanRead { found, count }
    }

    /// The keys of `span` whose newest change is a put, each with all its
    /// key-value holds but the value (left empty), from the key index
    /// alone: what a compare of anything but the value, or a delete that
    /// returns no values, needs. Outside a write txn these are the keys
    /// alive at the current revision; inside one, as the txn reads them.
    pub fn newest_headers(&self, span: &KeySpan<'_>) -> Vec<KeyValue> {
        let mut kvs = Vec::new();
        self.index
            .visit_newest_puts_in(span, &mut |key, revision, live| {
                kvs.push(header_kv(key, revision, live));
            });
        kvs
    }

    /// Serves a Range request as of `read_main` (already resolved and
    /// checked), returning etcd's response with only the revision in the
    /// header.
    pub fn range_at(&self, req: &RangeRequest, read_main: i64) -> Result<RangeResponse, Error> {
        self.plan_range(req, read_main)?.finish(&self.backend)
    }

    /// The key index's part of [`Mvcc::range_at`]; the values are read by
    /// [`RangePlan::finish`].
    pub fn plan_range(&self, req: &RangeRequest, read_main: i64) -> Result<RangePlan, Error> {
        let sort_order =
            SortOrder::try_from(req.sort_order).map_err(|_| Error::InvalidSortOption)?;
        let sort_target =
            SortTarget::try_from(req.sort_target).map_err(|_| Error::InvalidSortOption)?;
        let filtered = req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        let requested_limit = usize::try_from(req.limit.max(0)).unwrap_or(usize::MAX);
        let fetch_limit = if sort_order != SortOrder::None || filtered || requested_limit == 0 {
            0
        } else {
            requested_limit.saturating_add(1)
        };
        let span = KeySpan::new(&req.key, &req.range_end);
        // A keys-only answer sorted by anything but the value needs no
        // value: where the index holds what the newest put stored, a key
        // costs no read.
        let reads = if req.count_only {
            Reads::Count
        } else if req.keys_only && sort_target != SortTarget::Value {
            Reads::Headers
        } else {
            Reads::Values
        };
        Ok(RangePlan {
            read: self.find_span(&span, read_main, fetch_limit, reads),
            filters: RevisionFilters::of(req),
            sort_order,
            sort_target,
            requested_limit,
            keys_only: req.keys_only,
            header_revision: self.current_revision.max(read_main),
        })
    }
}

/// A Range request's answer with the key index read and the values not
/// yet. The index is read under the state's lock; the values can be read
/// after it is let go, from a point in time of the tables taken with the
/// index, so that writes do not wait for a large read.
#[derive(Debug, Clone)]
pub struct RangePlan {
    read: SpanRead,
    filters: RevisionFilters,
    sort_order: SortOrder,
    sort_target: SortTarget,
    requested_limit: usize,
    keys_only: bool,
    header_revision: i64,
}

impl RangePlan {
    /// Stored key-values [`RangePlan::finish`] will read.
    pub fn values_to_read(&self) -> usize {
        self.read.values_to_read()
    }

    /// Reads the values from `tables` (holding at least what the tables
    /// held when the plan was made) and shapes etcd's answer.
    pub fn finish(self, tables: &dyn ReadTables) -> Result<RangeResponse, Error> {
        let RangeResult { mut kvs, count } = self.read.resolve(tables)?;
        kvs.retain(|kv| self.filters.pass(kv));
        sort_kvs(&mut kvs, self.sort_order, self.sort_target);
        let mut more = false;
        if self.requested_limit > 0 && kvs.len() > self.requested_limit {
            kvs.truncate(self.requested_limit);
            more = true;
        }
        if self.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        Ok(RangeResponse {
            header: Some(ResponseHeader {
                revision: self.header_revision,
                ..Default::default()
            }),
            kvs,
            more,
            count,
        })
    }
}

/// A Range request's bounds on the revisions of what it returns (0: none).
#[derive(Debug, Clone, Copy)]
struct RevisionFilters {
    min_mod: i64,
    max_mod: i64,
    min_create: i64,
    max_create: i64,
}

impl RevisionFilters {
    fn of(req: &RangeRequest) -> Self {
        RevisionFilters {
            min_mod: req.min_mod_revision,
            max_mod: req.max_mod_revision,
            min_create: req.min_create_revision,
            max_create: req.max_create_revision,
        }
    }

    fn pass(&self, kv: &KeyValue) -> bool {
        let above = |min: i64, value: i64| min == 0 || value >= min;
        let below = |max: i64, value: i64| max == 0 || value <= max;
        above(self.min_mod, kv.mod_revision)
            && below(self.max_mod, kv.mod_revision)
            && above(self.min_create, kv.create_revision)
            && below(self.max_create, kv.create_revision)
    }
}

/// Sorts as etcd does: results come in ascending key order already, so
/// target KEY with ASCEND is a no-op, and any other target without an order
/// sorts ascending.
fn sort_kvs(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    let order = match (target, order) {
        (SortTarget::Key, SortOrder::Ascend) => SortOrder::None,
        (SortTarget::Key, order) => order,
        (_, SortOrder::None) => SortOrder::Ascend,
        (_, order) => order,
    };
    if order == SortOrder::None {
        return;
    }
    let compare = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    if order == SortOrder::Descend {
        kvs.sort_by(|a, b| compare(b, a));
    } else {
        kvs.sort_by(compare);
    }
}

/// The key-value the put at `revision` stored under `key`, but its value.
fn header_kv(key: &[u8], revision: Revision, live: Live) -> KeyValue {
    KeyValue {
        key: prost::bytes::Bytes::copy_from_slice(key),
        create_revision: live.create_revision,
        mod_revision: revision.main,
        version: live.version,
        value: Default::default(),
        lease: live.lease,
    }
}

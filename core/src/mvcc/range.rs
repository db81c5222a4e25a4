//! Range reads with etcd's semantics: limit and `more`, count, sorting,
//! keys-only, and revision filters.

use e2d_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use e2d_proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use e2d_proto::mvccpb::KeyValue;

use super::index::Live;
use super::{KeySpan, Mvcc};
use crate::error::Error;
use crate::revision::Revision;
use crate::storage::Backend;

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

impl<B: Backend> Mvcc<B> {
    /// Reads keys of `span` alive at `at_main`. `limit` 0 reads all.
    pub fn read_span(
        &self,
        span: &KeySpan<'_>,
        at_main: i64,
        limit: usize,
        reads: Reads,
    ) -> Result<RangeResult, Error> {
        let mut kvs = Vec::new();
        let mut count = 0i64;
        let mut failure = None;
        self.index
            .visit_live(span, at_main, &mut |key, rev, newest| {
                count += 1;
                if reads == Reads::Count || (limit != 0 && kvs.len() >= limit) {
                    return true;
                }
                let kv = match (reads, newest) {
                    (Reads::Headers, Some(live)) => Ok(header_kv(key, rev, live)),
                    (Reads::Headers, None) => self.read_kv(rev).map(|mut kv| {
                        kv.value.clear();
                        kv
                    }),
                    _ => self.read_kv(rev),
                };
                match kv {
                    Ok(kv) => {
                        kvs.push(kv);
                        true
                    }
                    Err(e) => {
                        failure = Some(e);
                        false
                    }
                }
            });
        match failure {
            Some(e) => Err(e),
            None => Ok(RangeResult { kvs, count }),
        }
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
        let RangeResult { mut kvs, count } =
            self.read_span(&span, read_main, fetch_limit, reads)?;
        kvs.retain(|kv| passes_revision_filters(req, kv));
        sort_kvs(&mut kvs, sort_order, sort_target);
        let mut more = false;
        if requested_limit > 0 && kvs.len() > requested_limit {
            kvs.truncate(requested_limit);
            more = true;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        Ok(RangeResponse {
            header: Some(ResponseHeader {
                revision: self.current_revision.max(read_main),
                ..Default::default()
            }),
            kvs,
            more,
            count,
        })
    }
}

fn passes_revision_filters(req: &RangeRequest, kv: &KeyValue) -> bool {
    let above = |min: i64, value: i64| min == 0 || value >= min;
    let below = |max: i64, value: i64| max == 0 || value <= max;
    above(req.min_mod_revision, kv.mod_revision)
        && below(req.max_mod_revision, kv.mod_revision)
        && above(req.min_create_revision, kv.create_revision)
        && below(req.max_create_revision, kv.create_revision)
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

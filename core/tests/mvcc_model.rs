//! Model-based tests of the state machine's KV, txn, compaction and lease
//! semantics against a deliberately naive reference model of etcd.
//!
//! The model keeps, for every key, its whole history as `(revision, value,
//! lease)` changes (a `None` value is a delete) and derives create revision,
//! mod revision and version from it on every read. It never forgets history:
//! compaction only moves the lowest readable revision, so every read at or
//! above it must give exactly the model's answer, before and after a restart.

use std::collections::BTreeMap;

use e2d_core::state_machine::is_read_only;
use e2d_core::storage::MemBackend;
use e2d_core::{validate, Error, StateMachine};
use e2d_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use e2d_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use e2d_proto::etcdserverpb::{
    request_op::Request, response_op::Response, CompactionRequest, CompactionResponse, Compare,
    DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest,
    TxnResponse,
};
use e2d_proto::mvccpb::KeyValue;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Leases never expire here: time stands still.
const NOW_MS: u64 = 0;
const KEYS: &[&str] = &["a", "b", "c", "d", "e"];
const RANGE_ENDS: &[&str] = &["a", "b", "c", "d", "e", "f"];
const VALUES: &[&str] = &["", "x", "y", "z"];

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

// ---------------------------------------------------------------------------
// The model.

/// One change of a key: `Some((value, lease))` for a put, `None` for a delete.
#[derive(Debug, Clone)]
struct Change {
    revision: i64,
    put: Option<(Vec<u8>, i64)>,
}

#[derive(Debug, Clone)]
struct Model {
    history: BTreeMap<Vec<u8>, Vec<Change>>,
    revision: i64,
    compacted: i64,
    /// Lease id → granted TTL.
    leases: BTreeMap<i64, i64>,
}

fn in_span(k: &[u8], key: &[u8], range_end: &[u8]) -> bool {
    match range_end {
        [] => k == key,
        [0] => k >= key,
        end => k >= key && k < end,
    }
}

impl Model {
    fn new() -> Self {
        Self {
            history: BTreeMap::new(),
            revision: 1,
            compacted: 0,
            leases: BTreeMap::new(),
        }
    }

    /// `key` as of revision `at`, replaying its history from the start.
    fn get(&self, key: &[u8], at: i64) -> Option<KeyValue> {
        let mut kv: Option<KeyValue> = None;
        for change in self
            .history
            .get(key)?
            .iter()
            .take_while(|c| c.revision <= at)
        {
            kv = change.put.as_ref().map(|(value, lease)| KeyValue {
                key: key.to_vec().into(),
                create_revision: kv.as_ref().map_or(change.revision, |p| p.create_revision),
                mod_revision: change.revision,
                version: kv.as_ref().map_or(1, |p| p.version + 1),
                value: value.clone().into(),
                lease: *lease,
            });
        }
        kv
    }

    /// Keys of the span alive at `at`, in key order.
    fn live(&self, key: &[u8], range_end: &[u8], at: i64) -> Vec<KeyValue> {
        self.history
            .keys()
            .filter(|k| in_span(k, key, range_end))
            .filter_map(|k| self.get(k, at))
            .collect()
    }

    fn lease_keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.live(b"\0", b"\0", self.revision)
            .into_iter()
            .filter(|kv| kv.lease == id)
            .map(|kv| kv.key.to_vec())
            .collect()
    }

    fn resolve_read(&self, revision: i64) -> Result<i64, Error> {
        if revision <= 0 {
            Ok(self.revision)
        } else if revision > self.revision {
            Err(Error::FutureRevision)
        } else if revision < self.compacted {
            Err(Error::Compacted)
        } else {
            Ok(revision)
        }
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResponse, Error> {
        let at = self.resolve_read(req.revision)?;
        Ok(self.range_at(req, at, self.revision))
    }

    fn range_at(&self, req: &RangeRequest, at: i64, header_revision: i64) -> RangeResponse {
        let found = self.live(&req.key, &req.range_end, at);
        let count = found.len() as i64;
        let mut kvs = if req.count_only { Vec::new() } else { found };
        let filtered = req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        if req.limit > 0 && req.sort_order == SortOrder::None as i32 && !filtered {
            // etcd quirk: without an explicit order it reads only limit + 1
            // keys (in key order) even when a non-key target then sorts them.
            kvs.truncate(req.limit as usize + 1);
        }
        let at_least = |min: i64, v: i64| min == 0 || v >= min;
        let at_most = |max: i64, v: i64| max == 0 || v <= max;
        kvs.retain(|kv| {
            at_least(req.min_mod_revision, kv.mod_revision)
                && at_most(req.max_mod_revision, kv.mod_revision)
                && at_least(req.min_create_revision, kv.create_revision)
                && at_most(req.max_create_revision, kv.create_revision)
        });
        let target = SortTarget::try_from(req.sort_target).expect("valid sort target");
        let mut order = SortOrder::try_from(req.sort_order).expect("valid sort order");
        if target != SortTarget::Key && order == SortOrder::None {
            order = SortOrder::Ascend;
        }
        let by_target = |a: &KeyValue, b: &KeyValue| match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        // etcd sorts unstably; ties keep key order here (and in e2d).
        match order {
            SortOrder::None => {}
            SortOrder::Ascend => kvs.sort_by(by_target),
            SortOrder::Descend => kvs.sort_by(|a, b| by_target(b, a)),
        }
        let more = req.limit > 0 && kvs.len() > req.limit as usize;
        if more {
            kvs.truncate(req.limit as usize);
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        RangeResponse {
            header: header(header_revision),
            kvs,
            more,
            count,
        }
    }

    /// etcd's put preconditions, checked against the store before the write.
    fn check_put(&self, req: &PutRequest) -> Result<(), Error> {
        if (req.ignore_value || req.ignore_lease) && self.get(&req.key, self.revision).is_none() {
            return Err(Error::KeyNotFound);
        }
        if req.lease != 0 && !self.leases.contains_key(&req.lease) {
            return Err(Error::LeaseNotFound);
        }
        Ok(())
    }

    /// A put inside a write at revision `self.revision + 1`.
    fn write_put(&mut self, req: &PutRequest, changed: &mut bool) -> PutResponse {
        let new_revision = self.revision + 1;
        let prev = self.get(&req.key, new_revision);
        let value = match (&prev, req.ignore_value) {
            (Some(p), true) => p.value.to_vec(),
            _ => req.value.clone(),
        };
        let lease = match (&prev, req.ignore_lease) {
            (Some(p), true) => p.lease,
            _ => req.lease,
        };
        self.history
            .entry(req.key.clone())
            .or_default()
            .push(Change {
                revision: new_revision,
                put: Some((value, lease)),
            });
        *changed = true;
        PutResponse {
            header: header(new_revision),
            prev_kv: if req.prev_kv { prev } else { None },
        }
    }

    fn write_delete(
        &mut self,
        req: &DeleteRangeRequest,
        changed: &mut bool,
    ) -> DeleteRangeResponse {
        let new_revision = self.revision + 1;
        let deleted = self.live(&req.key, &req.range_end, new_revision);
        for kv in &deleted {
            self.history
                .get_mut(&kv.key[..])
                .expect("live key")
                .push(Change {
                    revision: new_revision,
                    put: None,
                });
            *changed = true;
        }
        DeleteRangeResponse {
            header: header(if *changed {
                new_revision
            } else {
                self.revision
            }),
            deleted: deleted.len() as i64,
            prev_kvs: if req.prev_kv { deleted } else { Vec::new() },
        }
    }

    fn end_write(&mut self, changed: bool) {
        if changed {
            self.revision += 1;
        }
    }

    fn put(&mut self, req: &PutRequest) -> Result<PutResponse, Error> {
        self.check_put(req)?;
        let mut changed = false;
        let resp = self.write_put(req, &mut changed);
        self.end_write(changed);
        Ok(resp)
    }

    fn delete(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, Error> {
        let mut changed = false;
        let resp = self.write_delete(req, &mut changed);
        self.end_write(changed);
        Ok(resp)
    }

    fn compare_holds(&self, c: &Compare) -> bool {
        let target = CompareTarget::try_from(c.target).expect("valid compare target");
        let found = self.live(&c.key, &c.range_end, self.revision);
        if found.is_empty() {
            // No value can stand for a missing key; the other targets are 0.
            return target != CompareTarget::Value && compare_kv(c, &KeyValue::default());
        }
        found.iter().all(|kv| compare_kv(c, kv))
    }

    /// Which branch every txn on the taken path takes, in pre-order; all
    /// compares see the store before the txn.
    fn choose_path(&self, req: &TxnRequest, path: &mut Vec<bool>) {
        let succeeded = req.compare.iter().all(|c| self.compare_holds(c));
        path.push(succeeded);
        for op in branch(req, succeeded) {
            if let Some(Request::RequestTxn(nested)) = &op.request {
                self.choose_path(nested, path);
            }
        }
    }

    /// etcd checks the puts of the whole taken path first, then the ranges.
    fn check_path(
        &self,
        req: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
        puts: bool,
    ) -> Result<(), Error> {
        let succeeded = path.next().expect("path step");
        for op in branch(req, succeeded) {
            match &op.request {
                Some(Request::RequestTxn(nested)) => self.check_path(nested, path, puts)?,
                Some(Request::RequestPut(p)) if puts => self.check_put(p)?,
                Some(Request::RequestRange(r)) if !puts => {
                    self.resolve_read(r.revision)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, Error> {
        let mut path = Vec::new();
        self.choose_path(req, &mut path);
        self.check_path(req, &mut path.iter().copied(), true)?;
        self.check_path(req, &mut path.iter().copied(), false)?;
        let mut changed = false;
        let mut resp = self.apply_txn(req, &mut path.iter().copied(), &mut changed);
        self.end_write(changed);
        resp.header = header(self.revision);
        Ok(resp)
    }

    /// Applies the taken branch; nested responses carry no header (etcd
    /// leaves them empty).
    fn apply_txn(
        &mut self,
        req: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
        changed: &mut bool,
    ) -> TxnResponse {
        let succeeded = path.next().expect("path step");
        let mut responses = Vec::new();
        for op in branch(req, succeeded) {
            let response = match op.request.as_ref().expect("ops are never empty") {
                Request::RequestRange(r) => {
                    // Reads see the txn's own writes; the header is the
                    // txn's revision whatever revision was read.
                    let txn_revision = if *changed {
                        self.revision + 1
                    } else {
                        self.revision
                    };
                    let at = if r.revision > 0 {
                        r.revision
                    } else {
                        txn_revision
                    };
                    Response::ResponseRange(self.range_at(r, at, txn_revision))
                }
                Request::RequestPut(p) => Response::ResponsePut(self.write_put(p, changed)),
                Request::RequestDeleteRange(d) => {
                    Response::ResponseDeleteRange(self.write_delete(d, changed))
                }
                Request::RequestTxn(nested) => {
                    Response::ResponseTxn(self.apply_txn(nested, path, changed))
                }
            };
            responses.push(ResponseOp {
                response: Some(response),
            });
        }
        TxnResponse {
            header: None,
            succeeded,
            responses,
        }
    }

    fn compact(&mut self, revision: i64) -> Result<CompactionResponse, Error> {
        if revision <= self.compacted {
            return Err(Error::Compacted);
        }
        if revision > self.revision {
            return Err(Error::FutureRevision);
        }
        self.compacted = revision;
        Ok(CompactionResponse {
            header: header(self.revision),
        })
    }

    fn lease_grant(&mut self, id: i64, ttl: i64) -> Result<LeaseGrantResponse, Error> {
        if self.leases.contains_key(&id) {
            return Err(Error::LeaseExists);
        }
        let ttl = ttl.max(2);
        self.leases.insert(id, ttl);
        Ok(LeaseGrantResponse {
            header: header(self.revision),
            id,
            ttl,
            error: String::new(),
        })
    }

    fn lease_revoke(&mut self, id: i64) -> Result<LeaseRevokeResponse, Error> {
        if self.leases.remove(&id).is_none() {
            return Err(Error::LeaseNotFound);
        }
        let mut changed = false;
        for key in self.lease_keys(id) {
            self.history.get_mut(&key).expect("live key").push(Change {
                revision: self.revision + 1,
                put: None,
            });
            changed = true;
        }
        self.end_write(changed);
        Ok(LeaseRevokeResponse {
            header: header(self.revision),
        })
    }
}

fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let ordering = match (CompareTarget::try_from(c.target), &c.target_union) {
        (Ok(CompareTarget::Value), Some(TargetUnion::Value(v))) => kv.value[..].cmp(&v[..]),
        (Ok(CompareTarget::Version), Some(TargetUnion::Version(v))) => kv.version.cmp(v),
        (Ok(CompareTarget::Create), Some(TargetUnion::CreateRevision(v))) => {
            kv.create_revision.cmp(v)
        }
        (Ok(CompareTarget::Mod), Some(TargetUnion::ModRevision(v))) => kv.mod_revision.cmp(v),
        (Ok(CompareTarget::Lease), Some(TargetUnion::Lease(v))) => kv.lease.cmp(v),
        other => panic!("the generator pairs targets with their values: {other:?}"),
    };
    match CompareResult::try_from(c.result).expect("valid compare result") {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::NotEqual => ordering.is_ne(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
    }
}

// ---------------------------------------------------------------------------
// Operations, and running them against both the state machine and the model.

#[derive(Debug, Clone)]
enum Op {
    Range(RangeRequest),
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    /// Revision seed, see [`revision_from_seed`].
    Compact(i64),
    Grant {
        id: i64,
        ttl: i64,
    },
    Revoke(i64),
    /// Reopens the state machine over a copy of its backend, its kv table
    /// read in this many parts.
    Restart(usize),
    /// One step of the compaction under way, over this many keys.
    CompactStep(usize),
}

/// Generated requests carry revision *seeds*, turned into revisions when the
/// op runs so that they land near the store's history: 0 stays 0 (latest),
/// anything else maps onto `1..=current + 1` (the last one in the future),
/// leaving seeds already in that range as they are.
fn revision_from_seed(seed: i64, current: i64) -> i64 {
    if seed <= 0 {
        0
    } else {
        1 + (seed - 1) % (current + 1)
    }
}

fn resolve_range(r: &mut RangeRequest, current: i64) {
    for field in [
        &mut r.revision,
        &mut r.min_mod_revision,
        &mut r.max_mod_revision,
        &mut r.min_create_revision,
        &mut r.max_create_revision,
    ] {
        *field = revision_from_seed(*field, current);
    }
}

fn resolve_txn(t: &mut TxnRequest, current: i64) {
    for c in &mut t.compare {
        if let Some(TargetUnion::CreateRevision(v) | TargetUnion::ModRevision(v)) =
            &mut c.target_union
        {
            *v = revision_from_seed(*v, current);
        }
    }
    for op in t.success.iter_mut().chain(t.failure.iter_mut()) {
        match &mut op.request {
            Some(Request::RequestRange(r)) => resolve_range(r, current),
            Some(Request::RequestTxn(nested)) => resolve_txn(nested, current),
            _ => {}
        }
    }
}

/// etcd leaves the headers of nested txn responses empty; e2d fills in a
/// revision. Neither is documented, so they are not compared.
fn without_nested_headers(mut resp: TxnResponse) -> TxnResponse {
    fn strip(responses: &mut [ResponseOp]) {
        for r in responses {
            if let Some(Response::ResponseTxn(t)) = &mut r.response {
                t.header = None;
                strip(&mut t.responses);
            }
        }
    }
    strip(&mut resp.responses);
    resp
}

/// What the state machine answered to one op (already checked against the
/// model), for tests that look closer.
#[derive(Debug)]
enum Answer {
    Range(Result<RangeResponse, Error>),
    Put(Result<PutResponse, Error>),
    Delete(Result<DeleteRangeResponse, Error>),
    /// `None` when validation refused the txn before it reached the store.
    Txn(Option<Result<TxnResponse, Error>>),
    Other,
}

struct Harness {
    sm: StateMachine<MemBackend>,
    model: Model,
    refused_txns: usize,
}

impl Harness {
    fn new() -> Self {
        Self {
            sm: StateMachine::open(MemBackend::default(), NOW_MS).expect("open"),
            model: Model::new(),
            refused_txns: 0,
        }
    }

    fn step(&mut self, op: &Op) -> Answer {
        let current = self.model.revision;
        let answer = match op {
            Op::Range(r) => {
                let mut r = r.clone();
                resolve_range(&mut r, current);
                validate::check_range(&r).expect("generated ranges are valid");
                let actual = self.sm.range(&r);
                assert_eq!(actual, self.model.range(&r), "range {r:?}");
                Answer::Range(actual)
            }
            Op::Put(p) => {
                validate::check_put(p).expect("generated puts are valid");
                let actual = self.sm.put(p);
                assert_eq!(actual, self.model.put(p), "put {p:?}");
                Answer::Put(actual)
            }
            Op::Delete(d) => {
                validate::check_delete_range(d).expect("generated deletes are valid");
                let actual = self.sm.delete_range(d);
                assert_eq!(actual, self.model.delete(d), "delete {d:?}");
                Answer::Delete(actual)
            }
            Op::Txn(t) => {
                let mut t = t.clone();
                resolve_txn(&mut t, current);
                match validate::check_txn(&t) {
                    Err(e) => {
                        assert!(
                            matches!(e, Error::DuplicateKey | Error::TooManyOps),
                            "unexpected validation error {e:?} for {t:?}"
                        );
                        self.refused_txns += 1;
                        Answer::Txn(None)
                    }
                    Ok(()) => {
                        let expected = self.model.txn(&t);
                        if is_read_only(&t) {
                            // The shell serves these without the write path.
                            let read = self.sm.txn_read_only(&t).map(without_nested_headers);
                            assert_eq!(read, expected, "read-only txn {t:?}");
                        }
                        let actual = self.sm.txn(&t).map(without_nested_headers);
                        assert_eq!(actual, expected, "txn {t:?}");
                        Answer::Txn(Some(actual))
                    }
                }
            }
            Op::Compact(seed) => {
                let revision = revision_from_seed(*seed, current).max(1);
                let req = CompactionRequest {
                    revision,
                    physical: false,
                };
                assert_eq!(
                    self.sm.compact(&req),
                    self.model.compact(revision),
                    "compact at {revision}"
                );
                Answer::Other
            }
            Op::Grant { id, ttl } => {
                assert_eq!(
                    self.sm.lease_grant(*id, *ttl, NOW_MS),
                    self.model.lease_grant(*id, *ttl),
                    "grant {id} ttl {ttl}"
                );
                Answer::Other
            }
            Op::Revoke(id) => {
                assert_eq!(
                    self.sm.lease_revoke(*id),
                    self.model.lease_revoke(*id),
                    "revoke {id}"
                );
                Answer::Other
            }
            Op::CompactStep(entries) => {
                self.sm.compact_step(*entries);
                e2d_core::storage::Backend::commit(self.sm.backend_mut(), false).expect("commit");
                Answer::Other
            }
            Op::Restart(parts) => {
                let backend = self
                    .sm
                    .mvcc()
                    .backend()
                    .clone()
                    .with_scan_parallelism(*parts);
                self.sm = StateMachine::open(backend, NOW_MS).expect("reopen");
                Answer::Other
            }
        };
        assert_eq!(
            self.sm.current_revision(),
            self.model.revision,
            "revision after {op:?}"
        );
        // Cheap at this size, so after every op rather than now and then.
        self.check_all();
        answer
    }

    /// Every readable revision in full, the unreadable ones just outside,
    /// and the leases with their keys.
    fn check_all(&self) {
        let (sm, model) = (&self.sm, &self.model);
        assert_eq!(sm.current_revision(), model.revision);
        assert_eq!(sm.mvcc().compact_revision(), model.compacted);
        // The same store with compaction's deletes all done: what readers
        // see must not depend on how far they got.
        let mut done = StateMachine::open(sm.mvcc().backend().clone(), NOW_MS).expect("reopen");
        assert_eq!(done.compaction_under_way(), sm.compaction_under_way());
        while done.compact_step(2) {}
        e2d_core::storage::Backend::commit(done.backend_mut(), false).expect("commit");
        assert!(!done.compaction_under_way());
        let mut kv_bytes = 0;
        let kv = e2d_core::storage::Table::Kv;
        e2d_core::storage::Backend::scan(done.mvcc().backend(), kv, &[], &[], &mut |k, v| {
            kv_bytes += (k.len() + v.len()) as u64;
            true
        })
        .expect("scan");
        assert_eq!(done.mvcc().kv_bytes(), kv_bytes, "the kv table's bytes");
        if !sm.compaction_under_way() {
            assert_eq!(sm.mvcc().kv_bytes(), kv_bytes, "the kv table's bytes");
        }
        for revision in model.compacted.max(1)..=model.revision {
            assert_eq!(
                sm.mvcc().hash_kv(revision).expect("hash"),
                done.mvcc().hash_kv(revision).expect("hash"),
                "hash at {revision}, compaction under way: {}",
                sm.compaction_under_way()
            );
            assert_eq!(
                sm.mvcc()
                    .events(revision, model.revision, 1000, true)
                    .expect("events"),
                done.mvcc()
                    .events(revision, model.revision, 1000, true)
                    .expect("events"),
                "events from {revision}"
            );
        }
        let first = model.compacted.max(1);
        for revision in (first - 1).max(1)..=model.revision + 1 {
            let all = RangeRequest {
                key: vec![0],
                range_end: vec![0],
                revision,
                ..Default::default()
            };
            assert_eq!(sm.range(&all), model.range(&all), "all keys at {revision}");
        }
        let mut ids: Vec<i64> = sm.lease_leases().leases.iter().map(|l| l.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, model.leases.keys().copied().collect::<Vec<_>>());
        for (&id, &ttl) in &model.leases {
            let live = sm.lease_time_to_live(id, true, NOW_MS);
            assert_eq!(live.granted_ttl, ttl, "ttl of lease {id}");
            assert_eq!(live.keys, model.lease_keys(id), "keys of lease {id}");
        }
    }
}

/// Runs `ops` against the state machine and the model, checking every
/// answer and the whole store after each op; returns the answers.
fn check(ops: &[Op]) -> (Harness, Vec<Answer>) {
    let mut h = Harness::new();
    let answers = ops.iter().map(|op| h.step(op)).collect();
    (h, answers)
}

// ---------------------------------------------------------------------------
// Generators: few keys and values, so ops collide and ranges cover them.

fn bytes(s: &&str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(KEYS).prop_map(|k| bytes(&k))
}

fn range_end() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => Just(Vec::new()),
        1 => Just(vec![0u8]),
        3 => prop::sample::select(RANGE_ENDS).prop_map(|e| bytes(&e)),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(VALUES).prop_map(|v| bytes(&v))
}

fn lease_id() -> impl Strategy<Value = i64> {
    prop_oneof![6 => Just(0i64), 2 => 1..=3i64]
}

fn revision_seed(zero_weight: u32) -> impl Strategy<Value = i64> {
    prop_oneof![zero_weight => Just(0i64), 1 => 1..=64i64]
}

fn range_request() -> impl Strategy<Value = RangeRequest> {
    (
        prop_oneof![6 => key(), 1 => Just(vec![0u8])],
        range_end(),
        prop_oneof![3 => Just(0i64), 2 => 1..=3i64],
        revision_seed(2),
        (
            0..=2i32,
            0..=4i32,
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.1),
        ),
        (
            revision_seed(20),
            revision_seed(20),
            revision_seed(20),
            revision_seed(20),
        ),
    )
        .prop_map(
            |(
                key,
                range_end,
                limit,
                revision,
                (sort_order, sort_target, keys_only, count_only),
                (min_mod, max_mod, min_create, max_create),
            )| RangeRequest {
                key,
                range_end,
                limit,
                revision,
                sort_order,
                sort_target,
                serializable: false,
                keys_only,
                count_only,
                min_mod_revision: min_mod,
                max_mod_revision: max_mod,
                min_create_revision: min_create,
                max_create_revision: max_create,
            },
        )
}

fn put_request() -> impl Strategy<Value = PutRequest> {
    (
        key(),
        value(),
        lease_id(),
        any::<bool>(),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.05),
    )
        .prop_map(
            |(key, value, lease, prev_kv, ignore_value, ignore_lease)| PutRequest {
                key,
                value: if ignore_value { Vec::new() } else { value },
                lease: if ignore_lease { 0 } else { lease },
                prev_kv,
                ignore_value,
                ignore_lease,
            },
        )
}

fn delete_request() -> impl Strategy<Value = DeleteRangeRequest> {
    let range_end = prop_oneof![2 => Just(Vec::new()), 1 => range_end()];
    (key(), range_end, any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

fn compare() -> impl Strategy<Value = Compare> {
    (
        key(),
        prop_oneof![4 => Just(Vec::new()), 1 => range_end()],
        0..=4i32,
        0..=3i32,
        0..=3i64,
        revision_seed(1),
        value(),
        0..=3i64,
    )
        .prop_map(
            |(key, range_end, target, result, version, revision, value, lease)| {
                let target_union = match CompareTarget::try_from(target).expect("in range") {
                    CompareTarget::Version => TargetUnion::Version(version),
                    CompareTarget::Create => TargetUnion::CreateRevision(revision),
                    CompareTarget::Mod => TargetUnion::ModRevision(revision),
                    CompareTarget::Value => TargetUnion::Value(value),
                    CompareTarget::Lease => TargetUnion::Lease(lease),
                };
                Compare {
                    result,
                    target,
                    key,
                    range_end,
                    target_union: Some(target_union),
                }
            },
        )
}

fn request_op(depth: u32) -> BoxedStrategy<RequestOp> {
    let leaf = prop_oneof![
        2 => range_request().prop_map(Request::RequestRange),
        3 => put_request().prop_map(Request::RequestPut),
        1 => delete_request().prop_map(Request::RequestDeleteRange),
    ];
    let request = if depth == 0 {
        leaf.boxed()
    } else {
        prop_oneof![
            5 => leaf,
            1 => txn_request(depth - 1).prop_map(Request::RequestTxn),
        ]
        .boxed()
    };
    request
        .prop_map(|request| RequestOp {
            request: Some(request),
        })
        .boxed()
}

/// A txn whose ops nest at most `depth` txns deep.
fn txn_request(depth: u32) -> BoxedStrategy<TxnRequest> {
    (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(request_op(depth), 0..4),
        prop::collection::vec(request_op(depth), 0..3),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
        .boxed()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => put_request().prop_map(Op::Put),
        3 => delete_request().prop_map(Op::Delete),
        5 => range_request().prop_map(Op::Range),
        6 => txn_request(2).prop_map(Op::Txn),
        1 => revision_seed(0).prop_map(Op::Compact),
        3 => (1..=3i64, 0..=5i64).prop_map(|(id, ttl)| Op::Grant { id, ttl }),
        1 => (1..=3i64).prop_map(Op::Revoke),
        1 => (1..=4usize).prop_map(Op::Restart),
        2 => (1..=3usize).prop_map(Op::CompactStep),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/mvcc_model.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn state_machine_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        check(&ops);
    }
}

// ---------------------------------------------------------------------------
// Examples of specific etcd behaviours.

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn get(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        ..Default::default()
    }
}

fn req_op(request: Request) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

fn only_kv(answer: &Answer) -> KeyValue {
    match answer {
        Answer::Range(Ok(r)) if r.kvs.len() == 1 => r.kvs[0].clone(),
        other => panic!("expected one key-value, got {other:?}"),
    }
}

#[test]
fn txn_range_sees_the_revision_of_an_earlier_put() {
    let txn = TxnRequest {
        success: vec![req_op(Request::RequestRange(get("a")))],
        ..Default::default()
    };
    let (_, answers) = check(&[Op::Put(put("a", "x")), Op::Txn(txn)]);
    let Answer::Txn(Some(Ok(resp))) = &answers[1] else {
        panic!("txn failed: {:?}", answers[1]);
    };
    assert!(resp.succeeded);
    assert_eq!(resp.header.as_ref().unwrap().revision, 2, "read-only txn");
    let Some(Response::ResponseRange(range)) = &resp.responses[0].response else {
        panic!("not a range response");
    };
    assert_eq!(range.kvs[0].mod_revision, 2);
    assert_eq!(range.kvs[0].create_revision, 2);
}

#[test]
fn deleting_a_missing_key_keeps_the_revision() {
    let (h, answers) = check(&[
        Op::Put(put("a", "x")),
        Op::Delete(DeleteRangeRequest {
            key: "b".into(),
            range_end: "d".into(),
            prev_kv: true,
        }),
    ]);
    let Answer::Delete(Ok(resp)) = &answers[1] else {
        panic!("delete failed");
    };
    assert_eq!(resp.deleted, 0);
    assert_eq!(resp.header.as_ref().unwrap().revision, 2);
    assert_eq!(h.sm.current_revision(), 2);
}

#[test]
fn version_restarts_after_delete() {
    let (_, answers) = check(&[
        Op::Put(put("a", "x")),
        Op::Put(put("a", "y")),
        Op::Delete(DeleteRangeRequest {
            key: "a".into(),
            ..Default::default()
        }),
        Op::Put(PutRequest {
            prev_kv: true,
            ..put("a", "z")
        }),
        Op::Range(get("a")),
    ]);
    let Answer::Put(Ok(recreated)) = &answers[3] else {
        panic!("put failed: {:?}", answers[3]);
    };
    assert_eq!(
        recreated.prev_kv, None,
        "a deleted key has no previous value"
    );
    let kv = only_kv(&answers[4]);
    assert_eq!((kv.version, kv.create_revision, kv.mod_revision), (1, 5, 5));
}

#[test]
fn all_changes_of_a_txn_share_one_revision() {
    let txn = TxnRequest {
        success: vec![
            req_op(Request::RequestPut(put("a", "x"))),
            req_op(Request::RequestDeleteRange(DeleteRangeRequest {
                key: "b".into(),
                ..Default::default()
            })),
            // Reads inside the txn see its writes; the header says so even
            // for a read of an older revision.
            req_op(Request::RequestRange(RangeRequest {
                key: "a".into(),
                range_end: "c".into(),
                revision: 2,
                ..Default::default()
            })),
            req_op(Request::RequestRange(get("a"))),
        ],
        ..Default::default()
    };
    let (h, answers) = check(&[Op::Put(put("b", "y")), Op::Txn(txn)]);
    let Answer::Txn(Some(Ok(resp))) = &answers[1] else {
        panic!("txn failed: {:?}", answers[1]);
    };
    let revisions: Vec<i64> = resp
        .responses
        .iter()
        .map(|r| match &r.response {
            Some(Response::ResponsePut(p)) => p.header.as_ref().unwrap().revision,
            Some(Response::ResponseDeleteRange(d)) => d.header.as_ref().unwrap().revision,
            Some(Response::ResponseRange(r)) => r.header.as_ref().unwrap().revision,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(revisions, [3, 3, 3, 3]);
    assert_eq!(h.sm.current_revision(), 3);
}

#[test]
fn compaction_bounds_reads() {
    let (mut h, answers) = check(&[
        Op::Put(put("a", "x")),
        Op::Put(put("a", "y")),
        Op::Put(put("b", "z")),
        Op::Compact(3),
        Op::Compact(3),
        Op::Range(RangeRequest {
            revision: 3,
            ..get("a")
        }),
        Op::Range(RangeRequest {
            revision: 2,
            ..get("a")
        }),
        Op::Restart(2),
    ]);
    assert_eq!(h.sm.mvcc().compact_revision(), 3);
    assert_eq!(only_kv(&answers[5]).value, &b"y"[..]);
    assert!(matches!(answers[6], Answer::Range(Err(Error::Compacted))));
    assert_eq!(
        h.sm.compact(&CompactionRequest {
            revision: 3,
            physical: false
        }),
        Err(Error::Compacted)
    );
}

//! Which writes read stored values. A txn guarded by a key's revision or
//! version (kube-apiserver's every create, update and delete), a delete
//! that returns no previous values and a lease's revoke find what they
//! need in the key index, as does a keys-only range of keys whose newest
//! change it reads; only a compare of the value, `prev_kv` and reads of
//! values fetch them from the backend, which on disk costs a block read
//! each. A range may read its values after the key index, from a view of
//! the tables taken with it.

use std::cell::Cell;

use e2d_core::state_machine::Answer;
use e2d_core::storage::{Backend, Bytes, MemBackend, StorageError, Table};
use e2d_core::StateMachine;
use e2d_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use e2d_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use e2d_proto::etcdserverpb::{
    request_op::Request, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};

/// A memory backend that counts the reads of the kv table.
#[derive(Default)]
struct CountingBackend {
    inner: MemBackend,
    kv_gets: Cell<usize>,
}

impl Backend for CountingBackend {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        if table == Table::Kv {
            self.kv_gets.set(self.kv_gets.get() + 1);
        }
        self.inner.get(table, key)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        self.inner.scan(table, start, end, visit)
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) {
        self.inner.put(table, key, value)
    }

    fn delete(&mut self, table: Table, key: &[u8]) {
        self.inner.delete(table, key)
    }

    fn commit(&mut self, sync: bool) -> Result<(), StorageError> {
        self.inner.commit(sync)
    }

    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }
}

fn kv_gets(sm: &StateMachine<CountingBackend>) -> usize {
    sm.mvcc().backend().kv_gets.get()
}

fn put(key: &str, value: &str, lease: i64) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        lease,
        ..Default::default()
    }
}

fn op(request: Request) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

/// `key`'s field that `union` names equals the value it holds.
fn compare(key: &str, union: TargetUnion) -> Compare {
    let target = match union {
        TargetUnion::Version(_) => CompareTarget::Version,
        TargetUnion::CreateRevision(_) => CompareTarget::Create,
        TargetUnion::ModRevision(_) => CompareTarget::Mod,
        TargetUnion::Value(_) => CompareTarget::Value,
        TargetUnion::Lease(_) => CompareTarget::Lease,
    };
    Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key: key.into(),
        target_union: Some(union),
        ..Default::default()
    }
}

/// `Txn(If(key's field == union)).Then(Put(key, value)).Else(Get(key))`,
/// as kube-apiserver writes.
fn guarded_put(key: &str, union: TargetUnion, value: &str) -> TxnRequest {
    TxnRequest {
        compare: vec![compare(key, union)],
        success: vec![op(Request::RequestPut(put(key, value, 0)))],
        failure: vec![op(Request::RequestRange(RangeRequest {
            key: key.into(),
            ..Default::default()
        }))],
    }
}

#[test]
fn guarded_writes_deletes_and_revokes_read_no_values_and_the_rest_do() {
    let mut sm = StateMachine::open(CountingBackend::default(), 0).unwrap();
    let (a, b) = ("/registry/pods/a", "/registry/pods/b");
    sm.put(&put(a, "v1", 0)).unwrap();
    let revision = sm.mvcc().current_revision();
    // Each txn, whether it succeeds, and the kv reads it takes: a create
    // of an existing key fails and its failure branch reads the value, as
    // it must; updates guarded by the revision read, by version and by
    // create revision, and the create of a new key, read nothing; a stale
    // guard reads only for its failure branch; a compare of the value
    // reads the value.
    let steps = [
        (guarded_put(a, TargetUnion::ModRevision(0), "v0"), false, 1),
        (
            guarded_put(a, TargetUnion::ModRevision(revision), "v2"),
            true,
            0,
        ),
        (guarded_put(a, TargetUnion::Version(2), "v3"), true, 0),
        (
            guarded_put(a, TargetUnion::CreateRevision(revision), "v4"),
            true,
            0,
        ),
        (guarded_put(b, TargetUnion::ModRevision(0), "v1"), true, 0),
        (
            guarded_put(a, TargetUnion::ModRevision(revision), "v5"),
            false,
            1,
        ),
        (
            guarded_put(a, TargetUnion::Value(b"v4".to_vec()), "v6"),
            true,
            1,
        ),
    ];
    for (n, (txn, succeeds, reads)) in steps.iter().enumerate() {
        let before = kv_gets(&sm);
        assert_eq!(sm.txn(txn).unwrap().succeeded, *succeeds, "txn {n}");
        assert_eq!(kv_gets(&sm) - before, *reads, "kv reads of txn {n}");
    }

    // A delete reads values only for prev_kv, and still returns the count.
    let before = kv_gets(&sm);
    let deleted = sm
        .delete_range(&DeleteRangeRequest {
            key: "/registry/pods/b".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(deleted.deleted, 1);
    assert!(deleted.prev_kvs.is_empty());
    assert_eq!(kv_gets(&sm), before, "a delete without prev_kv");
    let with_prev = sm
        .delete_range(&DeleteRangeRequest {
            key: "/registry/pods/a".into(),
            prev_kv: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(with_prev.prev_kvs.len(), 1);
    assert_eq!(&with_prev.prev_kvs[0].value[..], b"v6");
    assert_eq!(kv_gets(&sm) - before, 1, "prev_kv reads the value");

    // A revoke deletes its keys without reading them, and they are gone.
    sm.lease_grant(7, 60, 0).unwrap();
    for key in ["/registry/events/x", "/registry/events/y"] {
        sm.put(&put(key, "event", 7)).unwrap();
    }
    let before = kv_gets(&sm);
    sm.lease_revoke(7).unwrap();
    assert_eq!(kv_gets(&sm), before, "a revoke reads no value");
    let left = sm
        .mvcc()
        .read_span(
            &e2d_core::mvcc::KeySpan::new(b"/registry/events/", b"/registry/events0"),
            sm.mvcc().current_revision(),
            0,
            e2d_core::mvcc::Reads::Count,
        )
        .unwrap();
    assert_eq!(left.count, 0, "the lease's keys are deleted");
}

#[test]
fn keys_only_ranges_read_only_the_values_the_index_cannot_answer() {
    let mut sm = StateMachine::open(CountingBackend::default(), 0).unwrap();
    sm.lease_grant(7, 60, 0).unwrap();
    for (key, lease) in [("k/a", 7), ("k/b", 0), ("k/c", 0)] {
        sm.put(&put(key, "v1", lease)).unwrap();
    }
    let before_update = sm.mvcc().current_revision();
    sm.put(&put("k/b", "v2", 0)).unwrap();
    let all = |revision: i64, keys_only: bool, sort_target: SortTarget| RangeRequest {
        key: "k/".into(),
        range_end: "k0".into(),
        revision,
        keys_only,
        sort_target: sort_target as i32,
        sort_order: SortOrder::Descend as i32,
        ..Default::default()
    };
    // Each read: at the newest revision every key's newest change is the
    // one read; before the update, k/b's is not, and its fields come from
    // its stored key-value. Sorted by value, the values are read to sort.
    let reads = [
        (0, SortTarget::Key, 0),
        (0, SortTarget::Mod, 0),
        (before_update, SortTarget::Key, 1),
        (0, SortTarget::Value, 3),
    ];
    for (revision, target, expected_reads) in reads {
        let full = sm.range(&all(revision, false, target)).unwrap();
        let before = kv_gets(&sm);
        let keys_only = sm.range(&all(revision, true, target)).unwrap();
        assert_eq!(
            kv_gets(&sm) - before,
            expected_reads,
            "kv reads of a keys-only range at {revision} sorted by {target:?}"
        );
        let without_values: Vec<_> = full
            .kvs
            .iter()
            .map(|kv| {
                let mut kv = kv.clone();
                kv.value.clear();
                kv
            })
            .collect();
        assert_eq!(keys_only.kvs, without_values, "at {revision} by {target:?}");
        assert_eq!(keys_only.count, full.count);
        assert!(full.kvs.iter().all(|kv| !kv.value.is_empty()));
    }
}

/// A range planned under the state's lock reads its values from a view
/// of the tables taken with the plan: the writes and the compaction that
/// come meanwhile change nothing in its answer.
#[test]
fn a_planned_range_reads_its_values_from_the_view_taken_with_it() {
    use e2d_proto::etcdserverpb::CompactionRequest;
    let mut sm = StateMachine::open(MemBackend::default(), 0).unwrap();
    for key in ["r/a", "r/b", "r/c"] {
        sm.put(&put(key, "old", 0)).unwrap();
    }
    let req = RangeRequest {
        key: "r/".into(),
        range_end: "r0".into(),
        ..Default::default()
    };
    let expected = sm.range(&req).unwrap();
    let plan = sm.plan_range(&req).unwrap();
    assert_eq!(plan.values_to_read(), 3);
    let view = sm.mvcc().backend().clone();
    // Meanwhile every key changes and compaction drops the old values.
    for key in ["r/a", "r/b", "r/c"] {
        sm.put(&put(key, "new", 0)).unwrap();
    }
    sm.compact(&CompactionRequest {
        revision: sm.mvcc().current_revision(),
        physical: true,
    })
    .unwrap();
    while sm.compact_step(1024) {}
    assert_eq!(plan.clone().finish(&view).unwrap(), expected);
    // The live tables no longer hold what the plan found.
    assert!(plan.finish(sm.mvcc().backend()).is_err());
}

/// A txn applied for no client reads no values for its ranges, and
/// changes, answers the branch taken and refuses exactly as one applied
/// for the client that asked: a member applies every entry, but only the
/// one the client asked through sends the answer.
#[test]
fn a_txn_applied_for_no_client_reads_no_values_and_changes_the_same() {
    use e2d_proto::peer::outcome::Result as Applied;
    use e2d_proto::peer::proposal::Op;
    use e2d_proto::peer::Proposal;
    let txn = |req: TxnRequest| Proposal {
        op: Some(Op::Txn(req)),
        ..Default::default()
    };
    let a = "/registry/pods/a";
    let mut nested = guarded_put(a, TargetUnion::ModRevision(0), "v9");
    nested.failure.push(op(Request::RequestTxn(guarded_put(
        a,
        TargetUnion::Version(0),
        "v8",
    ))));
    let future_read = TxnRequest {
        success: vec![op(Request::RequestRange(RangeRequest {
            key: a.into(),
            revision: 1_000,
            ..Default::default()
        }))],
        ..Default::default()
    };
    let proposals = [
        txn(guarded_put(a, TargetUnion::ModRevision(0), "v1")),
        // A create of a key that exists: its failure branch reads it.
        txn(guarded_put(a, TargetUnion::ModRevision(0), "v2")),
        txn(guarded_put(a, TargetUnion::Version(1), "v3")),
        txn(nested),
        txn(future_read),
    ];
    let mut answered = StateMachine::open(CountingBackend::default(), 0).unwrap();
    let mut unanswered = StateMachine::open(CountingBackend::default(), 0).unwrap();
    let mut answered_reads = Vec::new();
    for proposal in &proposals {
        let before = (kv_gets(&answered), kv_gets(&unanswered));
        let full = answered.apply(proposal, 0);
        let bare = unanswered.apply_for(proposal, 0, Answer::Discarded);
        answered_reads.push(kv_gets(&answered) - before.0);
        assert_eq!(kv_gets(&unanswered), before.1, "{proposal:?} read values");
        match (full, bare) {
            (Ok(full), Ok(bare)) => {
                let (Some(Applied::Txn(full)), Some(Applied::Txn(bare))) =
                    (full.result, bare.result)
                else {
                    panic!("a txn's outcome is a txn response");
                };
                assert_eq!(full.succeeded, bare.succeeded);
                assert_eq!(full.header, bare.header);
            }
            (full, bare) => assert_eq!(full.map(|_| ()), bare.map(|_| ())),
        }
    }
    // The failed create and both failure branches of the nested txn read
    // the value when answered; the future read is refused by both.
    assert_eq!(answered_reads, [0, 1, 0, 2, 0]);
    let everything = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    assert_eq!(
        answered.range(&everything).unwrap().kvs,
        unanswered.range(&everything).unwrap().kvs
    );
    assert_eq!(
        answered.mvcc().current_revision(),
        unanswered.mvcc().current_revision()
    );
}

//! What the Lock and Election services share, as etcd builds both on its
//! client's `concurrency` package: a queue of keys under `<name>/`, one per
//! lease (`<name>/<lease in lowercase hex>`), ordered by create revision;
//! the key created first holds the lock or leads the election. A caller
//! joins with one txn (create the key unless it exists, and read the first
//! key) and then waits, by watching, until every key created before its
//! own is deleted.
//!
//! Every read and write of both services goes through a [`Caller`].

use std::sync::Arc;

use e2d_core::auth::AuthInfo;
use e2d_core::Error;
use e2d_proto::etcdserverpb::{
    compare, range_request, request_op, response_op, Compare, DeleteRangeRequest, PutRequest,
    RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest, TxnResponse,
};
use e2d_proto::mvccpb::{event::EventType, KeyValue};
use e2d_proto::peer::proposal::Op;
use tonic::Status;

use crate::auth::{identify, requester};
use crate::server::key_watch::KeyWatch;
use crate::server::Node;

/// The TTL of the lease the server grants a caller that names none (lease
/// 0), as etcd's `concurrency` sessions do.
pub const SESSION_TTL_SECONDS: i64 = 60;

/// Why a Lock or Election call failed. etcd serves these services through
/// its own client, which hands on every error as a plain one: gRPC code
/// Unknown, with the error's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Store(#[from] Error),
    #[error("mutex: session is expired")]
    SessionExpired,
    #[error("election: not leader")]
    NotLeader,
    #[error("election: no leader")]
    NoLeader,
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
}

impl From<Failure> for Status {
    fn from(failure: Failure) -> Status {
        Status::unknown(failure.to_string())
    }
}

/// `<name>/`, under which the keys of a lock or an election live.
pub fn prefix_of(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// `<prefix><lease in hex>`, spelled as Go's `%x` spells an int64.
pub fn key_of(prefix: &[u8], lease: i64) -> Vec<u8> {
    let hex = if lease < 0 {
        format!("-{:x}", lease.unsigned_abs())
    } else {
        format!("{lease:x}")
    };
    let mut key = prefix.to_vec();
    key.extend_from_slice(hex.as_bytes());
    key
}

/// The store as one caller of the Lock and Election services reaches it.
pub struct Caller {
    node: Arc<Node>,
    /// Who asked: every read is checked against this user's permissions,
    /// every write proposed as theirs (checked again at apply).
    who: Option<AuthInfo>,
}

impl Caller {
    /// The caller of a request: the user its token or client certificate
    /// names. Every read and write below is checked against that user's
    /// permissions on the keys it touches, as etcd runs these services'
    /// txns, reads and deletes as KV requests of the caller.
    pub async fn of<T>(node: &Arc<Node>, request: &tonic::Request<T>) -> Result<Self, Status> {
        super::status::check_has_leader(request.metadata(), node)?;
        let who = identify(node, request.metadata(), request.extensions()).await?;
        Ok(Self {
            node: node.clone(),
            who,
        })
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// `lease`, or for 0 a fresh lease of [`SESSION_TTL_SECONDS`], as
    /// etcd's session with no lease of its own grants one.
    pub async fn session_lease(&self, lease: i64) -> Result<i64, Failure> {
        if lease != 0 {
            return Ok(lease);
        }
        let granted = self.node.grant_lease(0, SESSION_TTL_SECONDS).await?;
        Ok(granted.id)
    }

    /// Runs a txn through raft.
    pub async fn txn(&self, txn: TxnRequest) -> Result<TxnResponse, Failure> {
        e2d_core::validate::check_txn(&txn)?;
        match self
            .node
            .propose_as(Op::Txn(txn), Some(requester(&self.who)))
            .await?
        {
            e2d_proto::peer::outcome::Result::Txn(mut resp) => {
                self.node.fill_header(&mut resp.header);
                Ok(resp)
            }
            other => unreachable!("a txn answered with {other:?}"),
        }
    }

    /// Deletes `key`; the header of the delete.
    pub async fn delete(&self, key: Vec<u8>) -> Result<Option<ResponseHeader>, Failure> {
        let delete = DeleteRangeRequest {
            key,
            ..Default::default()
        };
        e2d_core::validate::check_delete_range(&delete)?;
        match self
            .node
            .propose_as(Op::DeleteRange(delete), Some(requester(&self.who)))
            .await?
        {
            e2d_proto::peer::outcome::Result::DeleteRange(mut resp) => {
                self.node.fill_header(&mut resp.header);
                Ok(resp.header)
            }
            other => unreachable!("a delete answered with {other:?}"),
        }
    }

    /// A linearizable read.
    pub async fn range(&self, range: &RangeRequest) -> Result<RangeResponse, Failure> {
        self.node.linearizable_barrier().await?;
        self.range_applied(range)
    }

    /// A read of what this member has applied.
    fn range_applied(&self, range: &RangeRequest) -> Result<RangeResponse, Failure> {
        let mut resp = {
            let state = self.node.read();
            state
                .auth()
                .check_get(&self.who.clone().unwrap_or_default(), range)?;
            state.range(range)?
        };
        self.node.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// Watches `key..range_end` from `start_revision` on.
    pub fn watch(
        &self,
        key: Vec<u8>,
        range_end: Vec<u8>,
        start_revision: i64,
        deletes_only: bool,
    ) -> KeyWatch {
        KeyWatch::new(
            self.node.clone(),
            key,
            range_end,
            start_revision,
            deletes_only,
        )
    }

    /// Waits until every key under `prefix` created before `own_revision`
    /// is deleted (etcd's `waitDeletes`): reads the newest such key, waits
    /// for its delete, again until none is left. Ends early with
    /// [`Turn::OwnKeyGone`] when `own_key` (created at `own_revision`) is
    /// deleted meanwhile, as when its lease expires.
    ///
    /// The caller's own txn was applied here before it returned, so every
    /// key created before `own_revision` is in this member's store.
    pub async fn wait_for_turn(
        &self,
        prefix: &[u8],
        own_key: &[u8],
        own_revision: i64,
    ) -> Result<Turn, Failure> {
        let range_end = e2d_core::apply::prefix_end(prefix);
        // A store's first write has revision 2; no key precedes one of
        // revision 1 (and a max create revision of 0 would mean no bound).
        if own_revision <= 1 {
            return Ok(Turn::Reached);
        }
        let under_prefix = RangeRequest {
            key: prefix.to_vec(),
            range_end: range_end.clone(),
            ..Default::default()
        };
        loop {
            // Both read from one state, so a delete after it is watched.
            let (own, before) = {
                let state = self.node.read();
                state
                    .auth()
                    .check_get(&self.who.clone().unwrap_or_default(), &under_prefix)?;
                let own = state.range(&RangeRequest {
                    key: own_key.to_vec(),
                    ..Default::default()
                })?;
                let before = state.range(&RangeRequest {
                    key: prefix.to_vec(),
                    range_end: range_end.clone(),
                    limit: 1,
                    sort_order: range_request::SortOrder::Descend as i32,
                    sort_target: range_request::SortTarget::Create as i32,
                    max_create_revision: own_revision - 1,
                    ..Default::default()
                })?;
                (own, before)
            };
            if own.kvs.first().map(|kv| kv.create_revision) != Some(own_revision) {
                return Ok(Turn::OwnKeyGone);
            }
            let Some(last) = before.kvs.first() else {
                return Ok(Turn::Reached);
            };
            let read_at = before.header.map_or(0, |h| h.revision);
            // Deletes under the prefix after that read: the predecessor's or
            // the caller's own end the wait for this one.
            let mut watch = self.watch(prefix.to_vec(), range_end.clone(), read_at + 1, true);
            'waiting: loop {
                let batch = watch.next().await?;
                for event in &batch.events {
                    let deleted = event.r#type == EventType::Delete as i32;
                    let key = event.kv.as_ref().map(|kv| &kv.key[..]);
                    if deleted && (key == Some(&last.key[..]) || key == Some(own_key)) {
                        break 'waiting;
                    }
                }
            }
        }
    }

    /// The key created first under `prefix`, by a linearizable read: the
    /// lock's holder, the election's leader.
    pub async fn first_created(
        &self,
        prefix: &[u8],
    ) -> Result<(Option<KeyValue>, Option<ResponseHeader>), Failure> {
        let resp = self.range(&first_created_range(prefix)).await?;
        Ok((resp.kvs.into_iter().next(), resp.header))
    }
}

/// How a wait for the caller's turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Every key created before the caller's is gone.
    Reached,
    /// The caller's own key was deleted while it waited.
    OwnKeyGone,
}

/// The first key created under `prefix` (etcd's `WithFirstCreate`).
pub fn first_created_range(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: e2d_core::apply::prefix_end(prefix),
        limit: 1,
        sort_order: range_request::SortOrder::Ascend as i32,
        sort_target: range_request::SortTarget::Create as i32,
        ..Default::default()
    }
}

/// A compare of `key`'s create revision with `revision` (0: absent).
pub fn created_at(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::CreateRevision(revision)),
        range_end: Vec::new(),
    }
}

pub fn put_op(key: &[u8], value: Vec<u8>, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value,
            lease,
            ..Default::default()
        })),
    }
}

pub fn range_op(range: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(range)),
    }
}

pub fn delete_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            },
        )),
    }
}

/// The key-values of the `index`th response of a txn, if it was a range.
pub fn range_kvs(resp: &TxnResponse, index: usize) -> &[KeyValue] {
    match resp.responses.get(index).and_then(|r| r.response.as_ref()) {
        Some(response_op::Response::ResponseRange(range)) => &range.kvs,
        _ => &[],
    }
}

/// The joining txn: create `key` bound to `lease` with `value` unless it
/// exists (a caller that joins again keeps its place), then read
/// `also_read` (etcd's lock reads the first key in the same txn).
pub fn join_txn(
    key: &[u8],
    value: Vec<u8>,
    lease: i64,
    also_read: Option<RangeRequest>,
) -> TxnRequest {
    let own = RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    };
    let mut success = vec![put_op(key, value, lease)];
    let mut failure = vec![range_op(own)];
    if let Some(read) = also_read {
        success.push(range_op(read.clone()));
        failure.push(range_op(read));
    }
    TxnRequest {
        compare: vec![created_at(key, 0)],
        success,
        failure,
    }
}

/// Where a caller stands after joining: the create revision of its key,
/// and the key as it was if it already existed.
pub fn joined_at(resp: &TxnResponse) -> (i64, Option<&KeyValue>) {
    if resp.succeeded {
        return (resp.header.as_ref().map_or(0, |h| h.revision), None);
    }
    // The failure branch read the key the compare found.
    let existing = range_kvs(resp, 0).first();
    (existing.map_or(0, |kv| kv.create_revision), existing)
}

/// A change proposed when dropped unless disarmed: a call the client
/// cancels while it waits takes its key back out of the queue, as etcd's
/// does when its context ends.
pub struct WithdrawOnDrop {
    node: Arc<Node>,
    op: Option<Op>,
}

impl WithdrawOnDrop {
    pub fn new(node: &Arc<Node>, op: Op) -> Self {
        Self {
            node: node.clone(),
            op: Some(op),
        }
    }

    /// The call ended on its own: nothing to withdraw.
    pub fn disarm(mut self) {
        self.op = None;
    }
}

impl Drop for WithdrawOnDrop {
    fn drop(&mut self) {
        let Some(op) = self.op.take() else {
            return;
        };
        // Without a runtime (the process is ending) the key stays until
        // its lease ends.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let node = self.node.clone();
            runtime.spawn(async move {
                if let Err(e) = node.propose(op).await {
                    tracing::debug!(error = %e, "withdrawing a cancelled lock or campaign failed");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_spelled_as_go_spells_them() {
        assert_eq!(
            key_of(b"lk/", 0x694d_8a3c_1b2e_7f10),
            b"lk/694d8a3c1b2e7f10"
        );
        assert_eq!(key_of(b"lk/", 255), b"lk/ff");
        assert_eq!(key_of(b"lk/", -1), b"lk/-1");
        assert_eq!(key_of(b"lk/", i64::MIN), b"lk/-8000000000000000");
        assert_eq!(prefix_of(b"my-lock"), b"my-lock/");
    }

    #[test]
    fn a_caller_that_joins_again_keeps_its_revision() {
        let mut resp = TxnResponse {
            header: Some(ResponseHeader {
                revision: 9,
                ..Default::default()
            }),
            succeeded: true,
            ..Default::default()
        };
        assert_eq!(joined_at(&resp).0, 9);
        resp.succeeded = false;
        resp.responses = vec![e2d_proto::etcdserverpb::ResponseOp {
            response: Some(response_op::Response::ResponseRange(RangeResponse {
                kvs: vec![KeyValue {
                    create_revision: 4,
                    ..Default::default()
                }],
                ..Default::default()
            })),
        }];
        assert_eq!(joined_at(&resp).0, 4);
    }
}

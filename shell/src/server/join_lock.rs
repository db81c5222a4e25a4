//! The cluster-wide join lock: the key `/_e2d/join-lock`, put with the
//! holder's name under a lease, so that it lapses should its holder die
//! before releasing it. A joining node's cluster manager takes it through
//! a member's peer port; the writes are the cluster's own, which no
//! permission check applies to (auth may be enabled).

use e2d_core::Error;
use e2d_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use e2d_proto::etcdserverpb::request_op::Request as RequestedOp;
use e2d_proto::etcdserverpb::response_op::Response as OpResponse;
use e2d_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, TxnResponse,
};
use e2d_proto::peer::proposal::Op;
use e2d_proto::peer::{outcome, LeaseRevoke};

use super::Node;

/// The key whose holder may change the membership to join.
const JOIN_LOCK_KEY: &[u8] = b"/_e2d/join-lock";
/// The join lock lapses this long after it was taken, should its holder
/// die before releasing it.
const JOIN_LOCK_TTL_S: i64 = 30;
/// Longest holder name taken (a node name is far shorter).
pub const HOLDER_BYTES_MAX: usize = 1024;

/// Takes the lock for `holder` unless another holds it; returns who holds
/// it now (empty for nobody: the holder's lease lapsed between the looks).
pub async fn take(node: &Node, holder: &str) -> Result<String, Error> {
    let lease = node.grant_lease(0, JOIN_LOCK_TTL_S).await?;
    let take = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Create as i32,
            key: JOIN_LOCK_KEY.to_vec(),
            target_union: Some(TargetUnion::CreateRevision(0)),
            range_end: Vec::new(),
        }],
        success: vec![RequestOp {
            request: Some(RequestedOp::RequestPut(PutRequest {
                key: JOIN_LOCK_KEY.to_vec(),
                value: holder.as_bytes().to_vec(),
                lease: lease.id,
                ..Default::default()
            })),
        }],
        failure: vec![read_holder()],
    };
    let answer = txn(node, take).await?;
    if answer.succeeded {
        return Ok(holder.to_string());
    }
    // Another holds it: the lease bound nothing.
    let revoke = Op::LeaseRevoke(LeaseRevoke { id: lease.id });
    if let Err(e) = node.propose(revoke).await {
        tracing::debug!(error = %e, "an unused join lock lease lapses on its own");
    }
    Ok(holder_read(answer))
}

/// Releases the lock if `holder` has it; returns who holds it now (empty
/// for nobody).
pub async fn release(node: &Node, holder: &str) -> Result<String, Error> {
    let release = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Value as i32,
            key: JOIN_LOCK_KEY.to_vec(),
            target_union: Some(TargetUnion::Value(holder.as_bytes().to_vec())),
            range_end: Vec::new(),
        }],
        success: vec![RequestOp {
            request: Some(RequestedOp::RequestDeleteRange(DeleteRangeRequest {
                key: JOIN_LOCK_KEY.to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![read_holder()],
    };
    let answer = txn(node, release).await?;
    if answer.succeeded {
        return Ok(String::new());
    }
    Ok(holder_read(answer))
}

/// The read of the lock's key a txn makes when its compare fails.
fn read_holder() -> RequestOp {
    RequestOp {
        request: Some(RequestedOp::RequestRange(RangeRequest {
            key: JOIN_LOCK_KEY.to_vec(),
            ..Default::default()
        })),
    }
}

/// The holder [`read_holder`] found; empty for nobody.
fn holder_read(answer: TxnResponse) -> String {
    answer
        .responses
        .into_iter()
        .find_map(|r| match r.response {
            Some(OpResponse::ResponseRange(range)) => range.kvs.into_iter().next(),
            _ => None,
        })
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
        .unwrap_or_default()
}

pub(super) async fn txn(node: &Node, request: TxnRequest) -> Result<TxnResponse, Error> {
    match node.propose(Op::Txn(request)).await? {
        outcome::Result::Txn(answer) => Ok(answer),
        other => unreachable!("a txn answered with {other:?}"),
    }
}

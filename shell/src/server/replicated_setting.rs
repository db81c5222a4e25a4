//! A cluster-wide setting kept as one key under `/_e2d/`, its value text,
//! written through raft as the cluster's own write: the cluster's size and
//! its version.

use e2d_core::Error;
use e2d_core::StateMachine;
use e2d_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use e2d_proto::etcdserverpb::{
    request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

use super::join_lock::txn;
use super::Node;
use crate::storage::DiskBackend;

/// The setting's text in `state`, if it was ever written.
pub fn read_from(state: &StateMachine<DiskBackend>, key: &[u8]) -> Option<String> {
    let request = RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    };
    let found = state.range(&request).ok()?;
    let value = &found.kvs.first()?.value;
    std::str::from_utf8(value).ok().map(str::to_string)
}

/// The setting's text, if it was ever written.
pub fn read(node: &Node, key: &[u8]) -> Option<String> {
    read_from(&node.read(), key)
}

/// Writes `value` under `key` through raft.
pub async fn write(node: &Node, key: &[u8], value: String) -> Result<(), Error> {
    put_if(node, key, value, Vec::new()).await.map(|_| ())
}

/// Writes `value` under `key` through raft if the setting still reads
/// `read` (absent for `None`) when the write applies. Returns whether it
/// did.
pub async fn write_if_unchanged(
    node: &Node,
    key: &[u8],
    read: Option<&str>,
    value: String,
) -> Result<bool, Error> {
    let compare = match read {
        None => Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Create as i32,
            key: key.to_vec(),
            target_union: Some(TargetUnion::CreateRevision(0)),
            range_end: Vec::new(),
        },
        Some(text) => Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Value as i32,
            key: key.to_vec(),
            target_union: Some(TargetUnion::Value(text.as_bytes().to_vec())),
            range_end: Vec::new(),
        },
    };
    put_if(node, key, value, vec![compare]).await
}

async fn put_if(
    node: &Node,
    key: &[u8],
    value: String,
    compare: Vec<Compare>,
) -> Result<bool, Error> {
    let request = TxnRequest {
        compare,
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.to_vec(),
                value: value.into_bytes(),
                ..Default::default()
            })),
        }],
        failure: Vec::new(),
    };
    Ok(txn(node, request).await?.succeeded)
}

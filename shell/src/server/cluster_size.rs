//! The cluster's size as a replicated setting: the key
//! `/_e2d/cluster-size`, its value the size in decimal, written through
//! raft as the cluster's own write (`e2d cluster resize`, or a member
//! restarted with another `-n`). Until it is written the cluster keeps the
//! size it was founded with.

use e2d_core::manager::check_cluster_size;
use e2d_core::Error;
use e2d_proto::etcdserverpb::{request_op, PutRequest, RangeRequest, RequestOp, TxnRequest};
use e2d_proto::peer::proposal::Op;

use super::Node;

pub const CLUSTER_SIZE_KEY: &[u8] = b"/_e2d/cluster-size";

/// The replicated size, if one was written and is a size e2d forms.
pub fn replicated(node: &Node) -> Option<usize> {
    let request = RangeRequest {
        key: CLUSTER_SIZE_KEY.to_vec(),
        ..Default::default()
    };
    let found = node.read().range(&request).ok()?;
    let value = &found.kvs.first()?.value;
    let size = std::str::from_utf8(value).ok()?.parse().ok()?;
    check_cluster_size(size).ok().map(|()| size)
}

/// The size the cluster should have: replicated, else this member's `-n`.
pub fn effective(node: &Node) -> usize {
    replicated(node).unwrap_or(node.config.cluster_size)
}

/// Writes `size` as the cluster's size, once checked.
pub async fn propose(node: &Node, size: usize) -> Result<(), String> {
    check_cluster_size(size).map_err(|e| e.to_string())?;
    let txn = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: CLUSTER_SIZE_KEY.to_vec(),
                value: size.to_string().into_bytes(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    node.propose(Op::Txn(txn))
        .await
        .map(|_| ())
        .map_err(|e: Error| format!("cannot replicate the cluster size {size}: {e}"))
}

//! A cluster-wide setting kept as one key under `/_e2d/`, its value text,
//! written through raft as the cluster's own write: the cluster's size and
//! its version.

use e2d_core::Error;
use e2d_proto::etcdserverpb::{request_op, PutRequest, RangeRequest, RequestOp, TxnRequest};
use e2d_proto::peer::proposal::Op;

use super::Node;

/// The setting's text, if it was ever written.
pub fn read(node: &Node, key: &[u8]) -> Option<String> {
    let request = RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    };
    let found = node.read().range(&request).ok()?;
    let value = &found.kvs.first()?.value;
    std::str::from_utf8(value).ok().map(str::to_string)
}

/// Writes `value` under `key` through raft.
pub async fn write(node: &Node, key: &[u8], value: String) -> Result<(), Error> {
    let txn = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.to_vec(),
                value: value.into_bytes(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    node.propose(Op::Txn(txn)).await.map(|_| ())
}

//! A raft log entry's payload, the `Proposal`, to and from bytes.
//!
//! prost bounds how deeply nested a message it decodes may be, counting
//! from the message it starts at. The client port decodes a `TxnRequest`
//! as the outermost message; inside a `Proposal` the same txn sits one
//! level deeper, so a txn nested right up to the bound would be taken from
//! the client and then refused when its committed entry is applied. The
//! decoder here reads the `Proposal`'s one field itself and decodes the txn
//! as the outermost message again: whatever the client port took, every
//! member can apply.

use e2d_proto::etcdserverpb::TxnRequest;
use e2d_proto::peer::proposal::Op;
use e2d_proto::peer::{Proposal, Requester};
use prost::encoding::{decode_key, decode_varint, WireType};
use prost::Message;

/// The field of `Proposal`'s oneof that holds a txn (`e2d.peer.Proposal`).
const TXN_FIELD: u32 = 3;

/// The field of `Proposal` that names its requester.
const REQUESTER_FIELD: u32 = 20;

/// Decodes an entry's payload. A payload that is one txn field (and at
/// most a requester beside it) is decoded from the txn itself; anything
/// else as a whole `Proposal`.
pub fn decode_proposal(bytes: &[u8]) -> Result<Proposal, prost::DecodeError> {
    if let Some((txn, requester)) = txn_fields(bytes) {
        return Ok(Proposal {
            op: Some(Op::Txn(TxnRequest::decode(txn)?)),
            requester: requester.map(Requester::decode).transpose()?,
        });
    }
    Proposal::decode(bytes)
}

/// The bytes of the txn and of the requester, if `bytes` holds one txn
/// field and at most one requester field, and nothing else.
fn txn_fields(bytes: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let mut rest = bytes;
    let mut txn = None;
    let mut requester = None;
    while !rest.is_empty() {
        let (field, wire_type) = decode_key(&mut rest).ok()?;
        if wire_type != WireType::LengthDelimited {
            return None;
        }
        let length = usize::try_from(decode_varint(&mut rest).ok()?).ok()?;
        if length > rest.len() {
            return None;
        }
        let (value, after) = rest.split_at(length);
        rest = after;
        let slot = match field {
            TXN_FIELD => &mut txn,
            REQUESTER_FIELD => &mut requester,
            _ => return None,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    Some((txn?, requester))
}

#[cfg(test)]
mod tests {
    use super::*;
    use e2d_proto::etcdserverpb::{request_op, PutRequest, RequestOp};
    use proptest::prelude::*;

    /// A txn whose success branch holds a txn, `depth` times over, with a
    /// put at the bottom.
    fn nested_txn(depth: usize) -> TxnRequest {
        let mut txn = TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: b"deep".to_vec(),
                    value: b"v".to_vec(),
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        for _ in 0..depth {
            txn = TxnRequest {
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestTxn(txn)),
                }],
                ..Default::default()
            };
        }
        txn
    }

    /// The deepest txn prost decodes as the outermost message, as the
    /// client port does, decodes from a log entry too.
    #[test]
    fn every_txn_the_client_port_decodes_decodes_from_its_entry() {
        let deepest = (0..200)
            .take_while(|&depth| {
                TxnRequest::decode(nested_txn(depth).encode_to_vec().as_slice()).is_ok()
            })
            .last()
            .expect("a flat txn decodes");
        assert!(
            deepest >= 40,
            "prost's bound is lower than expected: {deepest}"
        );
        let proposal = Proposal {
            op: Some(Op::Txn(nested_txn(deepest))),
            requester: Some(Requester {
                user: "alice".into(),
                auth_revision: 7,
            }),
        };
        let bytes = proposal.encode_to_vec();
        assert!(
            Proposal::decode(bytes.as_slice()).is_err(),
            "the whole proposal is one level too deep for prost"
        );
        assert_eq!(decode_proposal(&bytes), Ok(proposal));
    }

    #[test]
    fn other_proposals_decode_whole() {
        let put = Proposal {
            op: Some(Op::Put(PutRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })),
            requester: None,
        };
        assert_eq!(decode_proposal(&put.encode_to_vec()), Ok(put));
        assert_eq!(decode_proposal(&[]), Ok(Proposal::default()));
    }

    proptest! {
        /// On any bytes the decoder agrees with prost's own wherever
        /// prost's succeeds, and never panics.
        #[test]
        fn decoding_agrees_with_prost(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let ours = decode_proposal(&bytes);
            if let Ok(theirs) = Proposal::decode(bytes.as_slice()) {
                prop_assert_eq!(ours, Ok(theirs));
            }
        }

        #[test]
        fn txns_round_trip(depth in 0..30usize, compare_key in prop::collection::vec(any::<u8>(), 0..8)) {
            let mut txn = nested_txn(depth);
            txn.compare.push(e2d_proto::etcdserverpb::Compare { key: compare_key, ..Default::default() });
            let proposal = Proposal { op: Some(Op::Txn(txn)), requester: None };
            prop_assert_eq!(decode_proposal(&proposal.encode_to_vec()), Ok(proposal));
        }
    }
}

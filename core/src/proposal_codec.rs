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
use e2d_proto::peer::Proposal;
use prost::encoding::{decode_key, decode_varint, WireType};
use prost::Message;

/// The field of `Proposal`'s oneof that holds a txn (`e2d.peer.Proposal`).
const TXN_FIELD: u32 = 3;

/// Decodes an entry's payload. A payload that is one txn field is decoded
/// from the txn itself; anything else as a whole `Proposal`.
pub fn decode_proposal(bytes: &[u8]) -> Result<Proposal, prost::DecodeError> {
    if let Some(txn) = lone_txn_field(bytes) {
        return Ok(Proposal {
            op: Some(Op::Txn(TxnRequest::decode(txn)?)),
        });
    }
    Proposal::decode(bytes)
}

/// The bytes of the txn, if `bytes` is exactly one txn field.
fn lone_txn_field(bytes: &[u8]) -> Option<&[u8]> {
    let mut rest = bytes;
    let (field, wire_type) = decode_key(&mut rest).ok()?;
    if field != TXN_FIELD || wire_type != WireType::LengthDelimited {
        return None;
    }
    let length = decode_varint(&mut rest).ok()?;
    (usize::try_from(length).ok()? == rest.len()).then_some(rest)
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
            let proposal = Proposal { op: Some(Op::Txn(txn)) };
            prop_assert_eq!(decode_proposal(&proposal.encode_to_vec()), Ok(proposal));
        }
    }
}

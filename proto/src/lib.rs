//! The etcd v3 gRPC API as Rust types, generated at build time by prost (and,
//! with the `grpc` feature, tonic client/server stubs).
//!
//! The `.proto` sources under `proto/` are e2d's own, but packages, services,
//! message and field names, field numbers and enum values follow etcd 3.5/3.6's
//! wire format exactly, so any etcd client can talk to e2d. Field names go
//! through prost's usual snake_case conversion (e.g. `ID` -> `id`,
//! `grantedTTL` -> `granted_ttl`, `peerURLs` -> `peer_ur_ls`).

/// Includes the code prost generated for a proto package: with the
/// `grpc` feature under `--cfg madsim`, the variant whose services run on
/// the simulated network.
macro_rules! generated {
    ($package:literal) => {
        #[cfg(not(all(madsim, feature = "grpc")))]
        include!(concat!(env!("OUT_DIR"), "/", $package, ".rs"));
        #[cfg(all(madsim, feature = "grpc"))]
        include!(concat!(env!("OUT_DIR"), "/sim/", $package, ".rs"));
    };
}

/// Includes the serde implementations pbjson generated for a proto
/// package (the protobuf JSON mapping), with the `json` feature.
macro_rules! generated_json {
    ($package:literal) => {
        #[cfg(feature = "json")]
        include!(concat!(env!("OUT_DIR"), "/", $package, ".serde.rs"));
    };
}

#[cfg(all(feature = "grpc", not(madsim)))]
pub mod codec;

/// etcd's MVCC types: `KeyValue` and `Event`.
#[allow(clippy::all, missing_docs)]
pub mod mvccpb {
    generated!("mvccpb");
    generated_json!("mvccpb");
}

/// etcd's auth store types: `User`, `Role`, `Permission`.
#[allow(clippy::all, missing_docs)]
pub mod authpb {
    generated!("authpb");
    generated_json!("authpb");
}

/// etcd's client API: requests, responses and (with `grpc`) the KV, Watch,
/// Lease, Cluster, Maintenance and Auth services.
#[allow(clippy::all, missing_docs)]
pub mod etcdserverpb {
    generated!("etcdserverpb");
    generated_json!("etcdserverpb");
}

/// etcd's Lock service: `Lock` and `Unlock`.
#[allow(clippy::all, missing_docs)]
pub mod v3lockpb {
    generated!("v3lockpb");
    generated_json!("v3lockpb");
}

/// etcd's Election service: `Campaign`, `Proclaim`, `Leader`, `Observe`,
/// `Resign`.
#[allow(clippy::all, missing_docs)]
pub mod v3electionpb {
    generated!("v3electionpb");
    generated_json!("v3electionpb");
}

/// e2d's wire between members: raft messages, forwarded writes, read
/// indexes. Internal; not part of the etcd API.
pub mod e2d {
    #[allow(clippy::all, missing_docs)]
    pub mod peer {
        generated!("e2d.peer");
    }

    /// The gossip wire: SWIM packets and push-pull frames.
    #[allow(clippy::all, missing_docs)]
    pub mod gossip {
        generated!("e2d.gossip");
    }
}

pub use e2d::{gossip, peer};

/// The gRPC health checking protocol: `grpc.health.v1.Health`.
#[allow(clippy::all, missing_docs)]
pub mod health {
    generated!("grpc.health.v1");
}

#[cfg(test)]
mod tests {
    use super::etcdserverpb::*;
    use prost::Message;

    /// Splits an encoded message into (field number, wire type) pairs of its
    /// top-level fields.
    fn tags(mut buf: &[u8]) -> Vec<(u32, u8)> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let key = prost::encoding::decode_varint(&mut buf).unwrap();
            let (field, wire) = ((key >> 3) as u32, (key & 7) as u8);
            out.push((field, wire));
            match wire {
                0 => {
                    prost::encoding::decode_varint(&mut buf).unwrap();
                }
                2 => {
                    let len = prost::encoding::decode_varint(&mut buf).unwrap() as usize;
                    buf = &buf[len..];
                }
                other => panic!("unexpected wire type {other}"),
            }
        }
        out
    }

    #[test]
    fn range_request_field_numbers() {
        let req = RangeRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            limit: 10,
            revision: 7,
            sort_order: range_request::SortOrder::Descend as i32,
            keys_only: true,
            min_mod_revision: 3,
            ..Default::default()
        };
        let bytes = req.encode_to_vec();
        assert_eq!(
            tags(&bytes),
            vec![(1, 2), (2, 2), (3, 0), (4, 0), (5, 0), (8, 0), (10, 0)]
        );
        // key = "a": tag 0x0a, len 1, 'a'.
        assert_eq!(&bytes[..3], &[0x0a, 0x01, b'a']);
        assert_eq!(RangeRequest::decode(&bytes[..]).unwrap(), req);
    }

    #[test]
    fn watch_request_oneof_field_numbers() {
        use watch_request::RequestUnion;
        let cases = [
            (
                RequestUnion::CreateRequest(WatchCreateRequest {
                    key: b"k".to_vec(),
                    fragment: true,
                    ..Default::default()
                }),
                1,
            ),
            (
                RequestUnion::CancelRequest(WatchCancelRequest { watch_id: 5 }),
                2,
            ),
            (RequestUnion::ProgressRequest(WatchProgressRequest {}), 3),
        ];
        for (union, field) in cases {
            let req = WatchRequest {
                request_union: Some(union),
            };
            let bytes = req.encode_to_vec();
            assert_eq!(tags(&bytes), vec![(field, 2)]);
            assert_eq!(WatchRequest::decode(&bytes[..]).unwrap(), req);
        }
        // WatchCreateRequest.fragment is field 8 (varint): tag byte 0x40.
        let create = WatchCreateRequest {
            fragment: true,
            ..Default::default()
        };
        assert_eq!(create.encode_to_vec(), vec![0x40, 0x01]);
    }

    #[test]
    fn compare_range_end_and_target_union() {
        let cmp = Compare {
            result: compare::CompareResult::Greater as i32,
            target: compare::CompareTarget::Mod as i32,
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            target_union: Some(compare::TargetUnion::ModRevision(9)),
        };
        let bytes = cmp.encode_to_vec();
        assert_eq!(tags(&bytes), vec![(1, 0), (2, 0), (3, 2), (6, 0), (64, 2)]);
    }

    #[test]
    fn lock_and_election_field_numbers() {
        use crate::v3electionpb::{CampaignRequest, LeaderKey, ProclaimRequest};
        use crate::v3lockpb::{LockRequest, LockResponse};
        let lock = LockRequest {
            name: b"n".to_vec(),
            lease: 7,
        };
        assert_eq!(tags(&lock.encode_to_vec()), vec![(1, 2), (2, 0)]);
        let locked = LockResponse {
            header: Some(ResponseHeader::default()),
            key: b"k".to_vec(),
        };
        assert_eq!(tags(&locked.encode_to_vec()), vec![(1, 2), (2, 2)]);
        let campaign = CampaignRequest {
            name: b"n".to_vec(),
            lease: 1,
            value: b"v".to_vec(),
        };
        assert_eq!(
            tags(&campaign.encode_to_vec()),
            vec![(1, 2), (2, 0), (3, 2)]
        );
        let leader = LeaderKey {
            name: b"n".to_vec(),
            key: b"k".to_vec(),
            rev: 3,
            lease: 4,
        };
        assert_eq!(
            tags(&leader.encode_to_vec()),
            vec![(1, 2), (2, 2), (3, 0), (4, 0)]
        );
        let proclaim = ProclaimRequest {
            leader: Some(leader),
            value: b"v".to_vec(),
        };
        assert_eq!(tags(&proclaim.encode_to_vec()), vec![(1, 2), (2, 2)]);
    }

    #[test]
    fn status_and_lease_field_numbers() {
        let st = StatusResponse {
            db_size_quota: 1,
            storage_version: "3.6.0".into(),
            downgrade_info: Some(DowngradeInfo::default()),
            ..Default::default()
        };
        assert_eq!(tags(&st.encode_to_vec()), vec![(11, 2), (12, 0), (13, 2)]);

        let ttl = LeaseTimeToLiveResponse {
            id: 1,
            ttl: 2,
            granted_ttl: 3,
            ..Default::default()
        };
        assert_eq!(tags(&ttl.encode_to_vec()), vec![(2, 0), (3, 0), (4, 0)]);

        let m = Member {
            id: 1,
            peer_ur_ls: vec!["http://a".into()],
            client_ur_ls: vec!["http://b".into()],
            is_learner: true,
            ..Default::default()
        };
        assert_eq!(
            tags(&m.encode_to_vec()),
            vec![(1, 0), (3, 2), (4, 2), (5, 0)]
        );
    }
}

/// The JSON mapping, checked against what etcd's gateway writes and reads.
#[cfg(all(test, feature = "json"))]
mod json_tests {
    use super::etcdserverpb::*;
    use super::mvccpb::KeyValue;
    use serde_json::{json, Value};

    fn to_json<T: serde::Serialize>(message: &T) -> Value {
        serde_json::to_value(message).unwrap()
    }

    #[test]
    fn responses_have_proto_names_string_64_bit_numbers_and_base64_bytes() {
        let response = RangeResponse {
            header: Some(ResponseHeader {
                cluster_id: 324952591200643719,
                member_id: 3319814642761637952,
                revision: 2,
                raft_term: 2,
            }),
            kvs: vec![KeyValue {
                key: b"foo".to_vec().into(),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                value: b"bar".to_vec().into(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        // As etcd 3.4.23's gateway answered `{"key":"Zm9v"}`.
        let etcd = json!({
            "header": {"cluster_id": "324952591200643719", "member_id": "3319814642761637952",
                       "revision": "2", "raft_term": "2"},
            "kvs": [{"key": "Zm9v", "create_revision": "2", "mod_revision": "2",
                     "version": "1", "value": "YmFy"}],
            "count": "1"
        });
        assert_eq!(to_json(&response), etcd);

        let ttl = LeaseTimeToLiveResponse {
            id: 77,
            ttl: 29,
            granted_ttl: 30,
            ..Default::default()
        };
        assert_eq!(
            to_json(&ttl),
            json!({"ID": "77", "TTL": "29", "grantedTTL": "30"})
        );
        let hash = HashResponse {
            hash: 1239660030,
            ..Default::default()
        };
        assert_eq!(to_json(&hash), json!({"hash": 1239660030}));
        let member = Member {
            id: 1,
            peer_ur_ls: vec!["http://a:2380".into()],
            is_learner: true,
            ..Default::default()
        };
        assert_eq!(
            to_json(&member),
            json!({"ID": "1", "peerURLs": ["http://a:2380"], "isLearner": true})
        );
    }

    #[test]
    fn oneofs_and_enums_are_written_by_name() {
        let response = TxnResponse {
            responses: vec![ResponseOp {
                response: Some(response_op::Response::ResponseDeleteRange(
                    DeleteRangeResponse {
                        deleted: 1,
                        ..Default::default()
                    },
                )),
            }],
            ..Default::default()
        };
        assert_eq!(
            to_json(&response),
            json!({"responses": [{"response_delete_range": {"deleted": "1"}}]})
        );
        let event = super::mvccpb::Event {
            r#type: super::mvccpb::event::EventType::Delete as i32,
            kv: Some(KeyValue {
                mod_revision: 6,
                ..Default::default()
            }),
            prev_kv: None,
        };
        assert_eq!(
            to_json(&event),
            json!({"type": "DELETE", "kv": {"mod_revision": "6"}})
        );
    }

    #[test]
    fn requests_take_both_name_styles_numbers_as_strings_or_not_and_enums_by_name_or_number() {
        let request: RangeRequest = serde_json::from_value(json!({
            "key": "Zm9v", "rangeEnd": "Zm9w", "sort_order": "DESCEND", "sortTarget": 1,
            "limit": "5", "revision": 3, "keys_only": true, "unknown_field": {"x": 1}
        }))
        .unwrap();
        assert_eq!(
            request,
            RangeRequest {
                key: b"foo".to_vec(),
                range_end: b"fop".to_vec(),
                sort_order: range_request::SortOrder::Descend as i32,
                sort_target: range_request::SortTarget::Version as i32,
                limit: 5,
                revision: 3,
                keys_only: true,
                ..Default::default()
            }
        );
        let txn: TxnRequest = serde_json::from_value(json!({
            "compare": [{"key": "Zm9v", "result": "EQUAL", "target": "VALUE", "value": "YmFy"}],
            "success": [{"requestPut": {"key": "Zm9v", "value": "YmF6", "prev_kv": true}}],
            "failure": [{"request_range": {"key": "Zm9v"}}]
        }))
        .unwrap();
        assert_eq!(
            txn.compare[0].target_union,
            Some(compare::TargetUnion::Value(b"bar".to_vec()))
        );
        assert_eq!(txn.compare[0].target, compare::CompareTarget::Value as i32);
        assert!(matches!(
            &txn.success[0].request,
            Some(request_op::Request::RequestPut(put)) if put.prev_kv && put.value == b"baz"
        ));
        assert!(matches!(
            &txn.failure[0].request,
            Some(request_op::Request::RequestRange(range)) if range.key == b"foo"
        ));
        let grant: LeaseGrantRequest =
            serde_json::from_value(json!({"TTL": "30", "ID": 77})).unwrap();
        assert_eq!(grant, LeaseGrantRequest { ttl: 30, id: 77 });
        let watch: WatchRequest = serde_json::from_value(
            json!({"create_request": {"key": "Zm9v", "filters": ["NOPUT"]}}),
        )
        .unwrap();
        assert!(matches!(
            watch.request_union,
            Some(watch_request::RequestUnion::CreateRequest(create)) if create.filters == vec![0]
        ));
    }

    #[test]
    fn malformed_values_are_refused() {
        assert!(serde_json::from_value::<RangeRequest>(json!({"key": "!!"})).is_err());
        assert!(serde_json::from_value::<RangeRequest>(json!({"limit": "abc"})).is_err());
        assert!(serde_json::from_value::<RangeRequest>(json!({"sort_order": "WHAT"})).is_err());
    }
}

//! Hand-made datagrams and push-pull frames, to feed one machine exactly the
//! statement a rule is about.

use std::net::SocketAddr;

use e2d_core::swim::{Liveness, NodeMeta, Transmit, WIRE_VERSION};
use e2d_proto::gossip as pb;
use prost::Message;

pub fn statement(
    name: &str,
    addr: SocketAddr,
    incarnation: u64,
    liveness: Liveness,
) -> pb::MemberState {
    pb::MemberState {
        name: name.to_string(),
        addr: addr.to_string(),
        incarnation,
        liveness: liveness.to_wire() as i32,
        meta: Some(
            NodeMeta {
                name: name.to_string(),
                ..NodeMeta::default()
            }
            .to_wire(),
        ),
    }
}

pub fn packet(body: Option<pb::packet::Body>, updates: Vec<pb::MemberState>) -> Vec<u8> {
    pb::Packet {
        version: WIRE_VERSION,
        body,
        updates,
    }
    .encode_to_vec()
}

pub fn gossip(updates: Vec<pb::MemberState>) -> Vec<u8> {
    packet(None, updates)
}

pub fn ping(seq: u32, target: &str, source: &str) -> Vec<u8> {
    packet(
        Some(pb::packet::Body::Ping(pb::Ping {
            seq,
            target: target.to_string(),
            source: source.to_string(),
        })),
        Vec::new(),
    )
}

pub fn push_pull(members: Vec<pb::MemberState>, reply: bool) -> Vec<u8> {
    pb::PushPull {
        version: WIRE_VERSION,
        join: false,
        members,
        reply,
    }
    .encode_to_vec()
}

pub fn decode(transmit: &Transmit) -> pb::Packet {
    pb::Packet::decode(transmit.bytes.as_slice()).expect("own datagram decodes")
}

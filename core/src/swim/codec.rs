//! The gossip wire: encoding of datagrams and push-pull frames, and decoding
//! that refuses anything malformed, oversized or out of bounds with a
//! [`DecodeError`] instead of panicking.

use std::net::SocketAddr;

use e2d_proto::gossip as wire;
use prost::Message;

use super::config::{Config, ADDR_BYTES_MAX};
use super::meta::{Liveness, MemberView, NodeMeta, META_NAMES_MAX, RECOVERY_LINEAGE_MAX};
use crate::version::VERSION_BYTES_MAX;

/// The only wire layout this code speaks.
pub const WIRE_VERSION: u32 = 1;

/// Why a datagram or push-pull frame was refused. The sender is faulty or
/// speaks another version; the machine's state is left untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("gossip message of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge { size_bytes: usize, max_bytes: usize },
    #[error("gossip message is not valid protobuf: {0}")]
    Malformed(#[from] prost::DecodeError),
    #[error("gossip wire version {version} is not supported (this node speaks {WIRE_VERSION})")]
    UnsupportedVersion { version: u32 },
    #[error("gossip message carries {count} member statements, more than the limit of {max}")]
    TooManyMembers { count: usize, max: usize },
    #[error("{field} is empty")]
    EmptyName { field: &'static str },
    #[error("{field} is {len_bytes} bytes long, more than the limit of {max_bytes} bytes")]
    TooLong {
        field: &'static str,
        len_bytes: usize,
        max_bytes: usize,
    },
    #[error("{field} is not an ip:port socket address")]
    InvalidAddress { field: &'static str },
    #[error("metadata names {count} founders and voters, more than the limit of {max}")]
    TooManyNames { count: usize, max: usize },
    #[error("metadata names {count} recovery steps, more than the limit of {max}")]
    TooManyRecoverySteps { count: usize, max: usize },
    #[error("metadata names both a snapshot to restore (a pending node) and a recovery (a running member)")]
    RestoreWhileRecovering,
    #[error("unknown liveness value {0}")]
    UnknownLiveness(i32),
    #[error("unknown node status value {0}")]
    UnknownNodeStatus(i32),
    #[error("member statement about {name:?} carries no metadata")]
    MissingMeta { name: String },
    #[error("member statement about {name:?} carries metadata of another node")]
    MetaNameMismatch { name: String },
}

/// What a datagram asks of its receiver, besides its piggybacked updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Answer with an `Ack { seq }` if `target` is the receiver's name.
    Ping {
        seq: u32,
        target: String,
        source: String,
    },
    /// Ping `target` at `target_addr` and forward its ack (or a nack).
    IndirectPing {
        seq: u32,
        target: String,
        target_addr: SocketAddr,
        source: String,
    },
    Ack {
        seq: u32,
    },
    Nack {
        seq: u32,
    },
}

/// A datagram that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// `None` for a packet that only disseminates.
    pub body: Option<Body>,
    pub updates: Vec<MemberView>,
}

/// A push-pull frame that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPullFrame {
    pub join: bool,
    pub reply: bool,
    pub members: Vec<MemberView>,
}

/// The wire form of one statement about a member.
pub fn member_to_wire(member: &MemberView) -> wire::MemberState {
    wire::MemberState {
        name: member.name.clone(),
        addr: member.addr.to_string(),
        incarnation: member.incarnation,
        liveness: member.liveness.to_wire() as i32,
        meta: Some(member.meta.to_wire()),
    }
}

/// Bytes one statement adds to a `Packet` as an element of `updates`.
pub fn update_encoded_bytes(state: &wire::MemberState) -> usize {
    prost::encoding::message::encoded_len(6, state)
}

/// A datagram with no updates yet: its size is the base that updates are
/// added to.
pub fn packet_to_wire(body: Option<&Body>) -> wire::Packet {
    let body = body.map(|body| match body {
        Body::Ping {
            seq,
            target,
            source,
        } => wire::packet::Body::Ping(wire::Ping {
            seq: *seq,
            target: target.clone(),
            source: source.clone(),
        }),
        Body::IndirectPing {
            seq,
            target,
            target_addr,
            source,
        } => wire::packet::Body::IndirectPing(wire::IndirectPing {
            seq: *seq,
            target: target.clone(),
            target_addr: target_addr.to_string(),
            source: source.clone(),
        }),
        Body::Ack { seq } => wire::packet::Body::Ack(wire::Ack { seq: *seq }),
        Body::Nack { seq } => wire::packet::Body::Nack(wire::Nack { seq: *seq }),
    });
    wire::Packet {
        version: WIRE_VERSION,
        body,
        updates: Vec::new(),
    }
}

pub fn encode_push_pull<'a>(
    members: impl Iterator<Item = &'a MemberView>,
    join: bool,
    reply: bool,
) -> Vec<u8> {
    wire::PushPull {
        version: WIRE_VERSION,
        join,
        members: members.map(member_to_wire).collect(),
        reply,
    }
    .encode_to_vec()
}

pub fn decode_packet(config: &Config, bytes: &[u8]) -> Result<Datagram, DecodeError> {
    check_size(bytes, config.max_packet_bytes)?;
    let packet = wire::Packet::decode(bytes)?;
    check_version(packet.version)?;
    check_count(packet.updates.len(), config.members_max)?;
    let body = packet
        .body
        .map(|body| body_from_wire(config, body))
        .transpose()?;
    let updates = members_from_wire(config, packet.updates)?;
    Ok(Datagram { body, updates })
}

pub fn decode_push_pull(config: &Config, bytes: &[u8]) -> Result<PushPullFrame, DecodeError> {
    check_size(bytes, config.max_push_pull_bytes())?;
    let frame = wire::PushPull::decode(bytes)?;
    check_version(frame.version)?;
    check_count(frame.members.len(), config.members_max)?;
    let members = members_from_wire(config, frame.members)?;
    Ok(PushPullFrame {
        join: frame.join,
        reply: frame.reply,
        members,
    })
}

fn check_size(bytes: &[u8], max_bytes: usize) -> Result<(), DecodeError> {
    if bytes.len() > max_bytes {
        return Err(DecodeError::TooLarge {
            size_bytes: bytes.len(),
            max_bytes,
        });
    }
    Ok(())
}

fn check_version(version: u32) -> Result<(), DecodeError> {
    if version != WIRE_VERSION {
        return Err(DecodeError::UnsupportedVersion { version });
    }
    Ok(())
}

fn check_count(count: usize, max: usize) -> Result<(), DecodeError> {
    if count > max {
        return Err(DecodeError::TooManyMembers { count, max });
    }
    Ok(())
}

fn body_from_wire(config: &Config, body: wire::packet::Body) -> Result<Body, DecodeError> {
    Ok(match body {
        wire::packet::Body::Ping(ping) => Body::Ping {
            seq: ping.seq,
            target: check_name(config, "ping target", ping.target)?,
            source: check_name(config, "ping source", ping.source)?,
        },
        wire::packet::Body::IndirectPing(ping) => Body::IndirectPing {
            seq: ping.seq,
            target: check_name(config, "indirect ping target", ping.target)?,
            target_addr: parse_addr("indirect ping target address", &ping.target_addr)?,
            source: check_name(config, "indirect ping source", ping.source)?,
        },
        wire::packet::Body::Ack(ack) => Body::Ack { seq: ack.seq },
        wire::packet::Body::Nack(nack) => Body::Nack { seq: nack.seq },
    })
}

fn members_from_wire(
    config: &Config,
    states: Vec<wire::MemberState>,
) -> Result<Vec<MemberView>, DecodeError> {
    states
        .into_iter()
        .map(|state| member_from_wire(config, state))
        .collect()
}

fn member_from_wire(config: &Config, state: wire::MemberState) -> Result<MemberView, DecodeError> {
    let name = check_name(config, "member name", state.name)?;
    let addr = parse_addr("member address", &state.addr)?;
    let liveness = wire::Liveness::try_from(state.liveness)
        .map_err(|_| DecodeError::UnknownLiveness(state.liveness))?;
    let Some(meta) = state.meta else {
        return Err(DecodeError::MissingMeta { name });
    };
    let meta = meta_from_wire(config, meta)?;
    if meta.name != name {
        return Err(DecodeError::MetaNameMismatch { name });
    }
    Ok(MemberView {
        name,
        addr,
        incarnation: state.incarnation,
        liveness: Liveness::from_wire(liveness),
        meta,
    })
}

fn meta_from_wire(config: &Config, meta: wire::NodeMeta) -> Result<NodeMeta, DecodeError> {
    check_name(config, "metadata name", meta.name.clone())?;
    check_len("client URL", &meta.client_url, config.url_bytes_max)?;
    check_len("peer URL", &meta.peer_url, config.url_bytes_max)?;
    check_len(
        "snapshot to restore",
        &meta.founders_restore,
        config.url_bytes_max,
    )?;
    let names = meta.founders.len() + meta.cluster_voters.len();
    if names > META_NAMES_MAX {
        return Err(DecodeError::TooManyNames {
            count: names,
            max: META_NAMES_MAX,
        });
    }
    for name in meta.founders.iter().chain(&meta.cluster_voters) {
        check_len("founder or voter name", name, config.name_bytes_max)?;
    }
    check_len("version", &meta.version, VERSION_BYTES_MAX)?;
    if meta.recovered_from.len() > RECOVERY_LINEAGE_MAX {
        return Err(DecodeError::TooManyRecoverySteps {
            count: meta.recovered_from.len(),
            max: RECOVERY_LINEAGE_MAX,
        });
    }
    let recovering = meta.recovery_log_index != 0
        || meta.recovery_log_term != 0
        || meta.recovery_digest != 0
        || meta.recovery_left_to != 0
        || !meta.recovered_from.is_empty();
    if recovering && !meta.founders_restore.is_empty() {
        return Err(DecodeError::RestoreWhileRecovering);
    }
    let status = meta.status;
    NodeMeta::from_wire(meta).ok_or(DecodeError::UnknownNodeStatus(status))
}

fn check_name(config: &Config, field: &'static str, name: String) -> Result<String, DecodeError> {
    if name.is_empty() {
        return Err(DecodeError::EmptyName { field });
    }
    check_len(field, &name, config.name_bytes_max)?;
    Ok(name)
}

fn check_len(field: &'static str, text: &str, max_bytes: usize) -> Result<(), DecodeError> {
    if text.len() > max_bytes {
        return Err(DecodeError::TooLong {
            field,
            len_bytes: text.len(),
            max_bytes,
        });
    }
    Ok(())
}

fn parse_addr(field: &'static str, text: &str) -> Result<SocketAddr, DecodeError> {
    check_len(field, text, ADDR_BYTES_MAX)?;
    text.parse()
        .map_err(|_| DecodeError::InvalidAddress { field })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_position::LogPosition;

    fn member(name: &str) -> MemberView {
        MemberView {
            name: name.to_string(),
            addr: "10.0.0.1:7946".parse().unwrap(),
            incarnation: 3,
            liveness: Liveness::Suspect,
            meta: NodeMeta {
                name: name.to_string(),
                client_url: "http://10.0.0.1:2379".to_string(),
                ..NodeMeta::default()
            },
        }
    }

    fn packet_bytes(packet: &wire::Packet) -> Vec<u8> {
        packet.encode_to_vec()
    }

    #[test]
    fn packet_round_trips() {
        let config = Config::lan();
        let body = Body::IndirectPing {
            seq: 9,
            target: "b".to_string(),
            target_addr: "10.0.0.2:7946".parse().unwrap(),
            source: "a".to_string(),
        };
        let mut packet = packet_to_wire(Some(&body));
        packet.updates.push(member_to_wire(&member("c")));
        let decoded = decode_packet(&config, &packet_bytes(&packet)).unwrap();
        assert_eq!(decoded.body, Some(body));
        assert_eq!(decoded.updates, vec![member("c")]);
    }

    #[test]
    fn update_bytes_add_up_exactly() {
        let mut packet = packet_to_wire(Some(&Body::Ack { seq: 1 }));
        let mut expected = packet.encoded_len();
        for name in ["a", "bb", "ccc"] {
            let state = member_to_wire(&member(name));
            expected += update_encoded_bytes(&state);
            packet.updates.push(state);
        }
        assert_eq!(packet.encoded_len(), expected);
    }

    /// The largest member a pending node (restoring a snapshot) and a
    /// running member (recovering) can publish; the codec refuses both at
    /// once.
    fn largest_members(config: &Config) -> [MemberView; 2] {
        let name = "n".repeat(config.name_bytes_max);
        let url = "u".repeat(config.url_bytes_max);
        let pending = MemberView {
            name: name.clone(),
            addr: "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
                .parse()
                .unwrap(),
            incarnation: u64::MAX,
            liveness: Liveness::Left,
            meta: NodeMeta {
                name: name.clone(),
                client_url: url.clone(),
                peer_url: url.clone(),
                cluster_id: u64::MAX,
                status: super::super::meta::NodeStatus::Running,
                founders: vec![name.clone(); META_NAMES_MAX],
                founders_restore: url.clone(),
                founders_committed: true,
                cluster_voters: Vec::new(),
                founders_digest: u64::MAX,
                version: "9".repeat(VERSION_BYTES_MAX),
                removed_from: u64::MAX,
                ..NodeMeta::default()
            },
        };
        let mut running = pending.clone();
        running.meta.founders_restore = String::new();
        running.meta.removed_from = 0;
        running.meta.recovery_log = LogPosition::new(u64::MAX, u64::MAX);
        running.meta.recovery_digest = u64::MAX;
        running.meta.recovery_left_to = u64::MAX;
        running.meta.recovered_from = vec![
            super::super::meta::RecoveredFrom {
                cluster_id: u64::MAX,
                by_member_id: u64::MAX,
            };
            RECOVERY_LINEAGE_MAX
        ];
        [pending, running]
    }

    #[test]
    fn member_state_bound_holds_for_the_largest_member() {
        let config = Config::lan();
        for largest in largest_members(&config) {
            let bytes = update_encoded_bytes(&member_to_wire(&largest));
            assert!(bytes <= config.member_state_bytes_max(), "{bytes}");
        }
    }

    #[test]
    fn refuses_a_restore_and_a_recovery_in_one_meta() {
        let config = Config::lan();
        let [pending, running] = largest_members(&config);
        let mut both = member_to_wire(&running);
        let meta = both.meta.as_mut().expect("a member states its meta");
        meta.founders_restore = pending.meta.founders_restore;
        assert_eq!(
            meta_from_wire(&config, meta.clone()),
            Err(DecodeError::RestoreWhileRecovering)
        );
    }

    #[test]
    fn refuses_other_versions() {
        let mut packet = packet_to_wire(None);
        packet.version = 2;
        assert_eq!(
            decode_packet(&Config::lan(), &packet_bytes(&packet)),
            Err(DecodeError::UnsupportedVersion { version: 2 })
        );
        let frame = wire::PushPull::default().encode_to_vec();
        assert_eq!(
            decode_push_pull(&Config::lan(), &frame),
            Err(DecodeError::UnsupportedVersion { version: 0 })
        );
    }

    #[test]
    fn refuses_oversized_datagrams() {
        let config = Config::lan();
        let bytes = vec![0u8; config.max_packet_bytes + 1];
        assert!(matches!(
            decode_packet(&config, &bytes),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn refuses_long_names_bad_addresses_and_unknown_enums() {
        let config = Config::lan();
        let check = |state: wire::MemberState, expected: DecodeError| {
            let mut packet = packet_to_wire(None);
            packet.updates.push(state);
            assert_eq!(
                decode_packet(&config, &packet_bytes(&packet)),
                Err(expected)
            );
        };
        let good = member_to_wire(&member("a"));
        let long = "x".repeat(config.name_bytes_max + 1);
        check(
            wire::MemberState {
                name: long.clone(),
                ..good.clone()
            },
            DecodeError::TooLong {
                field: "member name",
                len_bytes: long.len(),
                max_bytes: config.name_bytes_max,
            },
        );
        check(
            wire::MemberState {
                addr: "10.0.0.1".to_string(),
                ..good.clone()
            },
            DecodeError::InvalidAddress {
                field: "member address",
            },
        );
        check(
            wire::MemberState {
                liveness: 9,
                ..good.clone()
            },
            DecodeError::UnknownLiveness(9),
        );
        check(
            wire::MemberState {
                meta: None,
                ..good.clone()
            },
            DecodeError::MissingMeta {
                name: "a".to_string(),
            },
        );
        check(
            wire::MemberState {
                name: "b".to_string(),
                ..good.clone()
            },
            DecodeError::MetaNameMismatch {
                name: "b".to_string(),
            },
        );
        check(
            wire::MemberState {
                name: String::new(),
                ..good
            },
            DecodeError::EmptyName {
                field: "member name",
            },
        );
    }

    #[test]
    fn refuses_too_many_members_in_a_push_pull() {
        let config = Config {
            members_max: 2,
            ..Config::lan()
        };
        let members = [member("a"), member("b"), member("c")];
        let frame = encode_push_pull(members.iter(), false, false);
        assert_eq!(
            decode_push_pull(&config, &frame),
            Err(DecodeError::TooManyMembers { count: 3, max: 2 })
        );
    }
}

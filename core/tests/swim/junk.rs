//! Junk on the wire never panics a machine: random bytes, valid messages
//! with bytes flipped, cut or inserted, and well-formed messages with wild
//! field values. Each is fed as a datagram and as a push-pull frame to a
//! node that knows a few members, then its timers run for a while.

use e2d_core::swim::{Config, Liveness, Swim};
use e2d_proto::gossip as pb;
use proptest::prelude::*;

use crate::net::{addr_of, meta_of};
use crate::wire::{gossip, packet, ping, push_pull, statement};

fn node() -> Swim {
    let mut swim = Swim::new(Config::lan(), addr_of(0), meta_of("n0", addr_of(0)), 1, 0);
    let known = vec![
        statement("n1", addr_of(1), 0, Liveness::Alive),
        statement("n2", addr_of(2), 3, Liveness::Alive),
    ];
    swim.handle_packet(addr_of(1), &gossip(known), 1).unwrap();
    swim
}

fn feed_everywhere(bytes: &[u8]) {
    let mut swim = node();
    let from = addr_of(1);
    let _ = swim.handle_packet(from, bytes, 10);
    let _ = swim.handle_push_pull(from, bytes, 20);
    for now_ms in (100..5_000).step_by(100) {
        swim.handle_timeout(now_ms);
        while swim.poll_transmit().is_some() {}
        while swim.poll_event().is_some() {}
    }
    assert!(swim.members().count() <= swim.config().members_max);
}

fn valid_messages() -> Vec<Vec<u8>> {
    let about_self = statement("n0", addr_of(0), 2, Liveness::Suspect);
    let about_other = statement("n2", addr_of(2), 3, Liveness::Dead);
    vec![
        ping(1, "n0", "n1"),
        packet(
            Some(pb::packet::Body::IndirectPing(pb::IndirectPing {
                seq: 2,
                target: "n2".to_string(),
                target_addr: addr_of(2).to_string(),
                source: "n1".to_string(),
            })),
            vec![about_other.clone()],
        ),
        packet(
            Some(pb::packet::Body::Ack(pb::Ack { seq: 0 })),
            vec![about_self.clone()],
        ),
        gossip(vec![about_self.clone(), about_other.clone()]),
        push_pull(vec![about_self, about_other], false),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Cut { at: usize },
    Insert { at: usize, byte: u8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        any::<usize>().prop_map(|at| Mutation::Cut { at }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
    ]
}

fn wild_statement() -> impl Strategy<Value = pb::MemberState> {
    let name = prop_oneof![
        Just("n0".to_string()),
        Just("n1".to_string()),
        "\\PC{0,200}"
    ];
    let addr = prop_oneof![Just(addr_of(1).to_string()), "\\PC{0,80}"];
    (name, addr, any::<u64>(), -2..6i32, any::<bool>(), -2..5i32).prop_map(
        |(name, addr, incarnation, liveness, with_meta, status)| pb::MemberState {
            meta: with_meta.then(|| pb::NodeMeta {
                name: name.clone(),
                status,
                ..pb::NodeMeta::default()
            }),
            name,
            addr,
            incarnation,
            liveness,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(64)))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2_000)) {
        feed_everywhere(&bytes);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        which in 0..5usize,
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let mut bytes = valid_messages()[which].clone();
        for mutation in mutations {
            match mutation {
                Mutation::Flip { at, xor } if !bytes.is_empty() => {
                    let at = at % bytes.len();
                    bytes[at] ^= xor;
                }
                Mutation::Cut { at } => bytes.truncate(at % (bytes.len() + 1)),
                Mutation::Insert { at, byte } => bytes.insert(at % (bytes.len() + 1), byte),
                Mutation::Flip { .. } => {}
            }
        }
        feed_everywhere(&bytes);
    }

    #[test]
    fn wild_field_values_never_panic(
        statements in proptest::collection::vec(wild_statement(), 0..8),
        reply in any::<bool>(),
    ) {
        feed_everywhere(&gossip(statements.clone()));
        feed_everywhere(&push_pull(statements, reply));
    }
}

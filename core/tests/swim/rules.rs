//! One test per SWIM rule: single machines fed hand-made statements, and
//! small clusters on the in-memory network.

use std::net::SocketAddr;

use e2d_core::swim::{Config, Event, Liveness, NodeStatus, Swim, Transmit, TransmitKind};
use e2d_proto::gossip as pb;

use crate::net::{addr_of, meta_of, Net};
use crate::wire::{decode, gossip, packet, ping, push_pull, statement};

const A: usize = 0;

fn b_addr() -> SocketAddr {
    addr_of(1)
}

/// Node "n0" alone, at time 0, with its queues drained.
fn lone(config: Config) -> Swim {
    let mut swim = Swim::new(config, addr_of(A), meta_of("n0", addr_of(A)), 7, 0);
    drain(&mut swim);
    swim
}

fn drain(swim: &mut Swim) -> (Vec<Transmit>, Vec<Event>) {
    let transmits = std::iter::from_fn(|| swim.poll_transmit()).collect();
    let events = std::iter::from_fn(|| swim.poll_event()).collect();
    (transmits, events)
}

fn feed(swim: &mut Swim, updates: Vec<pb::MemberState>, now_ms: u64) -> Vec<Transmit> {
    swim.handle_packet(b_addr(), &gossip(updates), now_ms)
        .unwrap();
    drain(swim).0
}

fn liveness_of(swim: &Swim, name: &str) -> Option<(Liveness, u64)> {
    swim.member(name).map(|m| (m.liveness, m.incarnation))
}

/// What node n0 believes of "b" after hearing `first` then `then` about it.
fn check(first: (Liveness, u64), then: (Liveness, u64), expected: (Liveness, u64)) {
    let mut swim = lone(Config::lan());
    feed(
        &mut swim,
        vec![statement("b", b_addr(), 0, Liveness::Alive)],
        1,
    );
    if first != (Liveness::Alive, 0) {
        feed(
            &mut swim,
            vec![statement("b", b_addr(), first.1, first.0)],
            2,
        );
    }
    assert_eq!(liveness_of(&swim, "b"), Some(first), "setting up {first:?}");
    feed(&mut swim, vec![statement("b", b_addr(), then.1, then.0)], 3);
    assert_eq!(
        liveness_of(&swim, "b"),
        Some(expected),
        "{first:?} then {then:?}"
    );
}

#[test]
fn incarnation_rules() {
    use Liveness::*;
    // Alive needs a strictly greater incarnation to override anything.
    check((Alive, 2), (Alive, 3), (Alive, 3));
    check((Alive, 2), (Alive, 2), (Alive, 2));
    check((Suspect, 2), (Alive, 2), (Suspect, 2));
    check((Suspect, 2), (Alive, 3), (Alive, 3));
    check((Dead, 2), (Alive, 2), (Dead, 2));
    check((Dead, 2), (Alive, 3), (Alive, 3));
    check((Left, 2), (Alive, 2), (Left, 2));
    check((Left, 2), (Alive, 3), (Alive, 3));
    // Suspect overrides Alive at the same or a lower incarnation only.
    check((Alive, 2), (Suspect, 2), (Suspect, 2));
    check((Alive, 2), (Suspect, 5), (Suspect, 5));
    check((Alive, 2), (Suspect, 1), (Alive, 2));
    check((Dead, 2), (Suspect, 3), (Dead, 2));
    // Dead and Left override anything up at the same or a lower incarnation.
    check((Alive, 2), (Dead, 2), (Dead, 2));
    check((Suspect, 2), (Dead, 2), (Dead, 2));
    check((Alive, 2), (Dead, 1), (Alive, 2));
    check((Alive, 2), (Left, 2), (Left, 2));
    check((Dead, 2), (Left, 3), (Dead, 2));
}

#[test]
fn suspect_is_declared_dead_after_suspicion_timeout() {
    let config = Config::lan();
    let timeout_ms = config.suspicion_timeout_ms(2);
    let mut swim = lone(config);
    feed(
        &mut swim,
        vec![statement("b", b_addr(), 0, Liveness::Alive)],
        10,
    );
    feed(
        &mut swim,
        vec![statement("b", b_addr(), 0, Liveness::Suspect)],
        100,
    );
    // Step through every deadline up to just before the timeout.
    while let Some(at_ms) = swim
        .poll_timeout()
        .filter(|at_ms| *at_ms < 100 + timeout_ms)
    {
        swim.handle_timeout(at_ms);
        drain(&mut swim);
    }
    assert_eq!(liveness_of(&swim, "b"), Some((Liveness::Suspect, 0)));
    swim.handle_timeout(100 + timeout_ms);
    assert_eq!(liveness_of(&swim, "b"), Some((Liveness::Dead, 0)));
    let (_, events) = drain(&mut swim);
    assert!(events
        .iter()
        .any(|Event::MemberChanged(view)| view.name == "b" && view.liveness == Liveness::Dead));
}

#[test]
fn refutes_suspicion_with_higher_incarnation() {
    let mut swim = lone(Config::lan());
    let sent = feed(
        &mut swim,
        vec![statement("n0", addr_of(A), 0, Liveness::Suspect)],
        5,
    );
    assert_eq!(swim.local().incarnation, 1);
    assert_eq!(swim.local().liveness, Liveness::Alive);
    // The accuser hears the refutation directly.
    let to_accuser = sent
        .iter()
        .find(|t| t.to == b_addr())
        .expect("answer to accuser");
    let refutation = &decode(to_accuser).updates[0];
    assert_eq!(
        (refutation.name.as_str(), refutation.incarnation),
        ("n0", 1)
    );
    assert_eq!(refutation.liveness, pb::Liveness::Alive as i32);
    // Dead at a higher incarnation: refuted above it.
    feed(
        &mut swim,
        vec![statement("n0", addr_of(A), 6, Liveness::Dead)],
        6,
    );
    assert_eq!(swim.local().incarnation, 7);
}

#[test]
fn stale_accusation_is_answered_with_current_state() {
    let mut swim = lone(Config::lan());
    feed(
        &mut swim,
        vec![statement("n0", addr_of(A), 3, Liveness::Suspect)],
        5,
    );
    assert_eq!(swim.local().incarnation, 4);
    let sent = feed(
        &mut swim,
        vec![statement("n0", addr_of(A), 2, Liveness::Dead)],
        6,
    );
    assert_eq!(swim.local().incarnation, 4);
    let answer = sent
        .iter()
        .find(|t| t.to == b_addr())
        .expect("answer to accuser");
    assert!(decode(answer)
        .updates
        .iter()
        .any(|u| u.name == "n0" && u.incarnation == 4 && u.liveness == pb::Liveness::Alive as i32));
}

#[test]
fn suspected_member_is_told_of_its_suspicion() {
    let mut swim = lone(Config::lan());
    let c_addr = addr_of(2);
    feed(
        &mut swim,
        vec![statement("c", c_addr, 4, Liveness::Alive)],
        1,
    );
    let sent = feed(
        &mut swim,
        vec![statement("c", c_addr, 4, Liveness::Suspect)],
        2,
    );
    let told = sent
        .iter()
        .find(|t| t.to == c_addr)
        .expect("suspect is told");
    assert!(decode(told)
        .updates
        .iter()
        .any(|u| u.name == "c" && u.liveness == pb::Liveness::Suspect as i32));
}

#[test]
fn ping_for_another_name_is_not_answered() {
    let mut swim = lone(Config::lan());
    swim.handle_packet(b_addr(), &ping(9, "someone-else", "b"), 1)
        .unwrap();
    assert!(drain(&mut swim).0.is_empty());
    swim.handle_packet(b_addr(), &ping(9, "n0", "b"), 2)
        .unwrap();
    let (sent, _) = drain(&mut swim);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, b_addr());
    assert_eq!(
        decode(&sent[0]).body,
        Some(pb::packet::Body::Ack(pb::Ack { seq: 9 }))
    );
}

#[test]
fn indirect_ping_is_relayed_and_answered_with_ack_or_nack() {
    let config = Config::lan();
    let timeout_ms = config.probe_timeout_ms;
    let mut swim = lone(config);
    let c_addr = addr_of(2);
    let request = |seq| {
        packet(
            Some(pb::packet::Body::IndirectPing(pb::IndirectPing {
                seq,
                target: "c".to_string(),
                target_addr: c_addr.to_string(),
                source: "b".to_string(),
            })),
            Vec::new(),
        )
    };
    // Answered: the target's ack goes back to the requester under its seq.
    swim.handle_packet(b_addr(), &request(41), 10).unwrap();
    let (sent, _) = drain(&mut swim);
    let Some(pb::packet::Body::Ping(relayed)) = decode(&sent[0]).body else {
        panic!("expected a ping to the target");
    };
    assert_eq!((sent[0].to, relayed.target.as_str()), (c_addr, "c"));
    let ack = packet(
        Some(pb::packet::Body::Ack(pb::Ack { seq: relayed.seq })),
        Vec::new(),
    );
    swim.handle_packet(c_addr, &ack, 50).unwrap();
    let (sent, _) = drain(&mut swim);
    assert_eq!(sent[0].to, b_addr());
    assert_eq!(
        decode(&sent[0]).body,
        Some(pb::packet::Body::Ack(pb::Ack { seq: 41 }))
    );
    // Unanswered: a nack at the probe timeout.
    swim.handle_packet(b_addr(), &request(42), 100).unwrap();
    drain(&mut swim);
    swim.handle_timeout(100 + timeout_ms);
    let (sent, _) = drain(&mut swim);
    let nack = sent.iter().find(|t| t.to == b_addr()).expect("nack");
    assert_eq!(
        decode(nack).body,
        Some(pb::packet::Body::Nack(pb::Nack { seq: 42 }))
    );
}

#[test]
fn spurious_timeout_does_nothing() {
    let mut swim = lone(Config::lan());
    let deadline_ms = swim.poll_timeout().expect("timers are set");
    swim.handle_timeout(deadline_ms - 1);
    assert_eq!(drain(&mut swim), (Vec::new(), Vec::new()));
    assert_eq!(swim.poll_timeout(), Some(deadline_ms));
}

#[test]
fn push_pull_dead_from_a_remote_only_raises_suspicion() {
    let mut swim = lone(Config::lan());
    feed(
        &mut swim,
        vec![statement("b", b_addr(), 2, Liveness::Alive)],
        1,
    );
    let frame = push_pull(vec![statement("b", b_addr(), 2, Liveness::Dead)], true);
    assert_eq!(swim.handle_push_pull(b_addr(), &frame, 2).unwrap(), None);
    assert_eq!(liveness_of(&swim, "b"), Some((Liveness::Suspect, 2)));
}

#[test]
fn push_pull_request_is_answered_with_the_whole_view() {
    let mut swim = lone(Config::lan());
    let frame = push_pull(vec![statement("b", b_addr(), 0, Liveness::Alive)], false);
    let reply = swim
        .handle_push_pull(b_addr(), &frame, 1)
        .unwrap()
        .expect("reply");
    let reply = <pb::PushPull as prost::Message>::decode(reply.as_slice()).unwrap();
    assert!(reply.reply);
    let names: Vec<&str> = reply.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["b", "n0"]);
}

#[test]
fn members_max_bounds_the_view_and_forgets_the_oldest_dead_first() {
    let config = Config {
        members_max: 3,
        ..Config::lan()
    };
    let mut swim = lone(config);
    let alive = |name: &str, index| statement(name, addr_of(index), 0, Liveness::Alive);
    feed(
        &mut swim,
        vec![alive("b", 1), alive("c", 2), alive("d", 3)],
        1,
    );
    assert_eq!(swim.members().count(), 3);
    assert!(swim.member("d").is_none());
    feed(
        &mut swim,
        vec![statement("b", addr_of(1), 0, Liveness::Dead)],
        2,
    );
    feed(&mut swim, vec![alive("d", 3)], 3);
    let names: Vec<&str> = swim.members().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["c", "d", "n0"]);
}

#[test]
fn members_are_sorted_by_name_and_include_self() {
    let net = Net::joined(Config::lan(), 4, 3);
    for index in 0..4 {
        let names: Vec<&str> = net.swim(index).members().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["n0", "n1", "n2", "n3"]);
        assert_eq!(net.swim(index).local().name, format!("n{index}"));
    }
}

#[test]
fn crashed_member_is_declared_dead_by_all() {
    let mut net = Net::joined(Config::lan(), 4, 4);
    net.crash(3);
    net.run_for(15_000);
    for observer in 0..3 {
        assert_eq!(net.liveness(observer, 3), Some(Liveness::Dead));
    }
    assert!(net
        .history_of(3)
        .any(|seen| seen.view.liveness == Liveness::Suspect));
}

fn suspicions_raised(net: &Net, after_ms: u64) -> usize {
    net.history
        .iter()
        .filter(|seen| seen.at_ms >= after_ms && seen.view.liveness == Liveness::Suspect)
        .count()
}

/// n0 and n1 cannot reach each other directly, but both reach n2 and n3.
fn run_with_cut_direct_path(config: Config) -> usize {
    let mut net = Net::joined(config, 4, 5);
    let cut_at_ms = net.now_ms;
    net.block(0, 1, true);
    net.block(1, 0, true);
    net.run_for(60_000);
    suspicions_raised(&net, cut_at_ms)
}

#[test]
fn indirect_probe_saves_node_behind_lossy_direct_path() {
    assert_eq!(run_with_cut_direct_path(Config::lan()), 0);
}

#[test]
fn without_indirect_probes_a_cut_direct_path_raises_suspicion() {
    let config = Config {
        indirect_checks: 0,
        ..Config::lan()
    };
    assert!(run_with_cut_direct_path(config) > 0);
}

#[test]
fn packet_never_exceeds_max_bytes() {
    // Metadata so large that the queued updates of all members never fit
    // one datagram: the net asserts the bound on every datagram sent.
    let config = Config {
        url_bytes_max: 150,
        ..Config::lan()
    };
    let count = 10;
    let mut net = Net::joined(config.clone(), count, 6);
    for index in 0..count {
        let mut meta = net.nodes[index].meta.clone();
        meta.client_url = format!("http://{}", "c".repeat(140));
        meta.peer_url = format!("http://{}", "p".repeat(140));
        net.set_meta(index, meta);
    }
    net.run_for(20_000);
    assert!(net.datagram_bytes_max > config.max_packet_bytes / 2);
    assert!(net.datagram_bytes_max <= config.max_packet_bytes);
    for observer in 0..count {
        for subject in 0..count {
            let view = net.view(observer, subject).unwrap();
            assert_eq!(
                view.meta, net.nodes[subject].meta,
                "{observer} sees {subject}"
            );
        }
    }
}

#[test]
fn meta_update_reaches_all() {
    let mut net = Net::joined(Config::lan(), 5, 7);
    let mut meta = net.nodes[2].meta.clone();
    meta.status = NodeStatus::Running;
    meta.cluster_id = 77;
    net.set_meta(2, meta.clone());
    assert_eq!(net.swim(2).local().incarnation, 1);
    net.run_for(3_000);
    for observer in 0..5 {
        let view = net.view(observer, 2).unwrap();
        assert_eq!((&view.meta, view.incarnation), (&meta, 1));
    }
}

/// State exchanges begun by `count` joined nodes in 60 s.
fn push_pulls_in_a_minute(count: usize) -> u64 {
    let mut net = Net::joined(Config::lan(), count, 21);
    net.run_for(30_000);
    let before = net.push_pulls_sent;
    net.run_for(60_000);
    net.push_pulls_sent - before
}

#[test]
fn each_member_exchanges_state_every_period_and_less_often_in_large_groups() {
    // 5 s for up to 32 members: a member that missed every copy of an
    // update hears it within seconds.
    assert_eq!(Config::lan().push_pull_period_ms(5), 5_000);
    let small = push_pulls_in_a_minute(5);
    assert!((5 * 11..=5 * 13).contains(&small), "{small} exchanges");
    // 10 s for 33 to 64 members, so each member's bytes a second stay flat.
    let large = push_pulls_in_a_minute(40);
    assert!((40 * 5..=40 * 7).contains(&large), "{large} exchanges");
}

#[test]
fn leave_is_disseminated() {
    let mut net = Net::joined(Config::lan(), 5, 8);
    net.leave(4);
    net.run_for(3_000);
    for observer in 0..4 {
        assert_eq!(net.liveness(observer, 4), Some(Liveness::Left));
    }
    // Nobody probes a left member: no suspicion or death follows.
    let left_at_ms = net.now_ms;
    net.crash(4);
    net.run_for(30_000);
    assert!(!net
        .history_of(4)
        .any(|seen| seen.at_ms >= left_at_ms && seen.view.liveness != Liveness::Left));
}

#[test]
fn left_member_returns_with_higher_incarnation() {
    let mut net = Net::joined(Config::lan(), 3, 9);
    net.leave(2);
    net.run_for(3_000);
    net.crash(2);
    net.restart(2);
    net.run_for(5_000);
    assert!(net.all_alive());
    assert!(net.swim(2).local().incarnation > 0);
}

fn assert_same_incarnation_everywhere(net: &Net) {
    for subject in 0..net.nodes.len() {
        let own = net.swim(subject).local().incarnation;
        for observer in 0..net.nodes.len() {
            assert_eq!(net.view(observer, subject).unwrap().incarnation, own);
        }
    }
}

#[test]
fn restarted_node_rejoins_under_same_name() {
    let mut net = Net::joined(Config::lan(), 4, 10);
    net.crash(3);
    net.run_for(15_000);
    assert_eq!(net.liveness(0, 3), Some(Liveness::Dead));
    net.restart(3);
    net.run_for(5_000);
    assert!(net.all_alive());
    assert!(net.swim(3).local().incarnation > 0);
    assert_same_incarnation_everywhere(&net);
}

#[test]
fn restarted_node_rejoins_at_a_new_address() {
    let mut net = Net::joined(Config::lan(), 4, 11);
    net.crash(3);
    net.run_for(15_000);
    let new_addr: SocketAddr = "10.0.1.4:7946".parse().unwrap();
    net.restart_at(3, new_addr);
    net.run_for(5_000);
    assert!(net.all_alive());
    for observer in 0..4 {
        assert_eq!(net.view(observer, 3).unwrap().addr, new_addr);
    }
}

#[test]
fn partitioned_halves_merge_after_heal() {
    let config = Config {
        push_pull_interval_ms: 5_000,
        reconnect_interval_ms: 5_000,
        ..Config::lan()
    };
    let mut net = Net::joined(config, 5, 12);
    net.partition(&[0, 1]);
    net.run_for(30_000);
    assert_eq!(net.liveness(0, 4), Some(Liveness::Dead));
    assert_eq!(net.liveness(4, 0), Some(Liveness::Dead));
    net.heal();
    net.run_for(20_000);
    assert!(net.all_alive());
    assert_same_incarnation_everywhere(&net);
}

#[test]
fn rejoin_retries_seeds_until_one_answers() {
    let mut net = Net::new(Config::lan(), 2, 13);
    net.block(0, 1, true);
    net.block(1, 0, true);
    net.join(0, &[addr_of(1)]);
    net.run_for(10_000);
    assert_eq!(net.swim(0).members().count(), 1);
    net.heal();
    net.run_for(5_000);
    assert!(net.all_alive());
}

#[test]
fn same_seed_same_run() {
    let run = || {
        let mut net = Net::joined(Config::lan(), 4, 14);
        net.crash(1);
        net.set_loss(0, 2, 30);
        net.run_for(20_000);
        net.history
            .iter()
            .map(|seen| format!("{} {} {:?}", seen.at_ms, seen.observer, seen.view))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn push_pulls_go_out_as_push_pull_transmits() {
    let mut swim = lone(Config::lan());
    swim.join(&[b_addr(), b_addr(), addr_of(A)], 1);
    let (sent, _) = drain(&mut swim);
    assert_eq!(sent.len(), 1, "own address and duplicates are skipped");
    assert_eq!(
        (sent[0].to, sent[0].kind),
        (b_addr(), TransmitKind::PushPull)
    );
}

//! Datagrams and push-pull frames going out, and the answers to probes,
//! indirect probes and accusations coming in.

use std::net::SocketAddr;

use prost::Message;

use super::{Event, Swim, Transmit, TransmitKind};
use crate::swim::codec::{self, Body};
use crate::swim::meta::MemberView;
use crate::swim::probe::Relay;
use crate::swim::timer::Timer;

impl Swim {
    /// Tells a member what we now believe of it, so that a live member
    /// learns at once that it must refute (Lifeguard's buddy system,
    /// applied to every accusation rather than only to probes).
    pub(super) fn tell_accused(&mut self, name: &str) {
        let view = self.members[name].view.clone();
        self.send_datagram(view.addr, None, Some(&view));
    }

    /// Whoever accused us hears our current state directly.
    pub(super) fn answer_accusation(&mut self, to: SocketAddr) {
        if self.has_left() {
            return;
        }
        let local = self.local().clone();
        self.send_datagram(to, None, Some(&local));
    }

    pub(super) fn handle_body(&mut self, from: SocketAddr, body: Body) {
        match body {
            Body::Ping { seq, target, .. } => {
                if target == self.name {
                    self.send_datagram(from, Some(Body::Ack { seq }), None);
                }
            }
            Body::IndirectPing {
                seq,
                target,
                target_addr,
                ..
            } => self.relay_probe(from, seq, target, target_addr),
            Body::Ack { seq } => self.handle_ack(seq),
            Body::Nack { seq } => {
                if let Some(probe) = self.probe.as_mut().filter(|probe| probe.seq == seq) {
                    probe.nacks += 1;
                }
            }
        }
    }

    pub(super) fn relay_probe(
        &mut self,
        requester: SocketAddr,
        requester_seq: u32,
        target: String,
        target_addr: SocketAddr,
    ) {
        if target == self.name {
            self.send_datagram(requester, Some(Body::Ack { seq: requester_seq }), None);
            return;
        }
        if self.relays.len() >= self.config.relays_max {
            return;
        }
        let seq = self.next_seq();
        self.relays.insert(
            seq,
            Relay {
                requester,
                requester_seq,
            },
        );
        self.timers.set(
            Timer::Relay(seq),
            self.now_ms + self.config.probe_timeout_ms,
        );
        let ping = Body::Ping {
            seq,
            target,
            source: self.name.clone(),
        };
        self.send_datagram(target_addr, Some(ping), None);
    }

    pub(super) fn handle_ack(&mut self, seq: u32) {
        if let Some(probe) = self.probe.as_mut().filter(|probe| probe.seq == seq) {
            probe.acked = true;
            self.timers.cancel(&Timer::ProbeIndirect);
            return;
        }
        if let Some(relay) = self.relays.remove(&seq) {
            self.timers.cancel(&Timer::Relay(seq));
            let ack = Body::Ack {
                seq: relay.requester_seq,
            };
            self.send_datagram(relay.requester, Some(ack), None);
        }
    }

    /// Sends `body` (if any) with `first` (if any) and as many queued updates
    /// as fit in `max_packet_bytes`. Sends nothing when there would be
    /// nothing in it.
    pub(super) fn send_datagram(
        &mut self,
        to: SocketAddr,
        body: Option<Body>,
        first: Option<&MemberView>,
    ) {
        let mut packet = codec::packet_to_wire(body.as_ref());
        if let Some(first) = first {
            packet.updates.push(codec::member_to_wire(first));
        }
        let base_bytes = packet.encoded_len();
        assert!(
            base_bytes <= self.config.max_packet_bytes,
            "probe body over max_packet_bytes"
        );
        let limit = self.config.retransmit_limit(self.up_count());
        let budget_bytes = self.config.max_packet_bytes - base_bytes;
        packet
            .updates
            .extend(self.broadcasts.take(budget_bytes, limit));
        if packet.body.is_none() && packet.updates.is_empty() {
            return;
        }
        let bytes = packet.encode_to_vec();
        assert!(bytes.len() <= self.config.max_packet_bytes);
        self.push_transmit(Transmit {
            to,
            bytes,
            kind: TransmitKind::Datagram,
        });
    }

    pub(super) fn push_pull(&mut self, to: SocketAddr, join: bool) {
        let bytes = codec::encode_push_pull(self.members(), join, false);
        debug_assert!(bytes.len() <= self.config.max_push_pull_bytes());
        self.push_transmit(Transmit {
            to,
            bytes,
            kind: TransmitKind::PushPull,
        });
    }

    pub(super) fn push_pull_seeds(&mut self) {
        for seed in self.seeds.clone() {
            self.push_pull(seed, true);
        }
    }

    pub(super) fn push_transmit(&mut self, transmit: Transmit) {
        self.transmits.push_back(transmit);
        debug_assert!(
            self.transmits.len() <= self.queued_max(),
            "transmits not drained (see the drain contract)"
        );
    }

    pub(super) fn push_event(&mut self, event: Event) {
        self.events.push_back(event);
        debug_assert!(
            self.events.len() <= 2 * self.queued_max(),
            "events not drained (see the drain contract)"
        );
    }

    /// Most transmits (and half the events) one input can queue.
    pub(super) fn queued_max(&self) -> usize {
        2 * self.config.members_max
            + self.config.relays_max
            + self.config.seeds_max
            + self.config.indirect_checks
            + self.config.gossip_nodes
            + 8
    }
}

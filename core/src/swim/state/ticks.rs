//! What each timer does when its deadline passes: probing, gossip,
//! push-pull, rejoin, reconnect, suspicion and relay timeouts.

use std::net::SocketAddr;

use super::Swim;
use crate::swim::codec::Body;
use crate::swim::meta::{Liveness, MemberView};
use crate::swim::probe::ProbeInFlight;
use crate::swim::timer::Timer;

impl Swim {
    pub(super) fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::Probe => self.probe_tick(),
            Timer::ProbeIndirect => self.probe_indirectly(),
            Timer::Gossip => self.gossip_tick(),
            Timer::PushPull => self.push_pull_tick(),
            Timer::Rejoin => self.rejoin_tick(),
            Timer::Reconnect => self.reconnect_tick(),
            Timer::Suspicion(name) => self.suspicion_expired(&name),
            Timer::Relay(seq) => self.relay_expired(seq),
        }
    }

    /// Ends the probe in flight (an unanswered target becomes suspect) and
    /// starts the next one.
    pub(super) fn probe_tick(&mut self) {
        if let Some(probe) = self.probe.take() {
            self.timers.cancel(&Timer::ProbeIndirect);
            if !probe.acked {
                if let Some(member) = self.members.get(&probe.target) {
                    let incarnation = member.view.incarnation;
                    self.on_suspect(&probe.target, incarnation);
                }
            }
        }
        self.timers
            .set(Timer::Probe, self.now_ms + self.config.probe_interval_ms);
        self.start_probe();
    }

    pub(super) fn start_probe(&mut self) {
        let local_name = &self.name;
        let members = &self.members;
        let target = self.probe_order.next(
            &mut self.rng,
            |name| {
                name != local_name
                    && members
                        .get(name)
                        .is_some_and(|member| member.view.liveness.is_up())
            },
            || {
                members
                    .values()
                    .filter(|member| {
                        member.view.name != *local_name && member.view.liveness.is_up()
                    })
                    .map(|member| member.view.name.clone())
                    .collect()
            },
        );
        let Some(target) = target else {
            return;
        };
        let view = self.members[&target].view.clone();
        let seq = self.next_seq();
        let ping = Body::Ping {
            seq,
            target: target.clone(),
            source: self.name.clone(),
        };
        // A suspect hears of its suspicion with the probe, so it can refute.
        let suspicion = (view.liveness == Liveness::Suspect).then_some(&view);
        self.send_datagram(view.addr, Some(ping), suspicion);
        self.probe = Some(ProbeInFlight {
            seq,
            target,
            acked: false,
            nacks: 0,
        });
        self.timers.set(
            Timer::ProbeIndirect,
            self.now_ms + self.config.probe_timeout_ms,
        );
    }

    pub(super) fn probe_indirectly(&mut self) {
        let Some(probe) = self.probe.clone().filter(|probe| !probe.acked) else {
            return;
        };
        let Some(target_addr) = self.members.get(&probe.target).map(|m| m.view.addr) else {
            return;
        };
        let mut helpers: Vec<SocketAddr> = self
            .members
            .values()
            .filter(|member| {
                member.view.name != self.name
                    && member.view.name != probe.target
                    && member.view.liveness == Liveness::Alive
            })
            .map(|member| member.view.addr)
            .collect();
        self.rng.shuffle(&mut helpers);
        helpers.truncate(self.config.indirect_checks);
        for helper in helpers {
            let request = Body::IndirectPing {
                seq: probe.seq,
                target: probe.target.clone(),
                target_addr,
                source: self.name.clone(),
            };
            self.send_datagram(helper, Some(request), None);
        }
    }

    /// Sends queued updates to a few random up members and recently dead
    /// ones (which may still be alive and need to hear it to refute).
    pub(super) fn gossip_tick(&mut self) {
        self.timers
            .set(Timer::Gossip, self.now_ms + self.config.gossip_interval_ms);
        if self.broadcasts.is_empty() {
            return;
        }
        let now_ms = self.now_ms;
        let to_the_dead_ms = self.config.gossip_to_the_dead_ms;
        let mut targets: Vec<SocketAddr> = self
            .members
            .values()
            .filter(|member| {
                member.view.name != self.name
                    && match member.view.liveness {
                        Liveness::Alive | Liveness::Suspect => true,
                        Liveness::Dead => {
                            now_ms.saturating_sub(member.state_change_ms) <= to_the_dead_ms
                        }
                        Liveness::Left => false,
                    }
            })
            .map(|member| member.view.addr)
            .collect();
        self.rng.shuffle(&mut targets);
        targets.truncate(self.config.gossip_nodes);
        for target in targets {
            if self.broadcasts.is_empty() {
                break;
            }
            self.send_datagram(target, None, None);
        }
    }

    pub(super) fn push_pull_tick(&mut self) {
        let period_ms = self.config.push_pull_period_ms(self.up_count());
        self.timers.set(Timer::PushPull, self.now_ms + period_ms);
        let peer = self.random_member(|member| member.liveness.is_up());
        if let Some(addr) = peer {
            self.push_pull(addr, false);
        }
    }

    pub(super) fn rejoin_tick(&mut self) {
        if self.seeds.is_empty() {
            return;
        }
        self.timers
            .set(Timer::Rejoin, self.now_ms + self.config.rejoin_interval_ms);
        let alone = self.up_count() <= 1;
        if alone {
            self.push_pull_seeds();
        }
    }

    pub(super) fn reconnect_tick(&mut self) {
        self.timers.set(
            Timer::Reconnect,
            self.now_ms + self.config.reconnect_interval_ms,
        );
        let peer = self.random_member(|member| member.liveness == Liveness::Dead);
        if let Some(addr) = peer {
            self.push_pull(addr, false);
        }
    }

    /// The address of a random other member matching `wanted`.
    pub(super) fn random_member(
        &mut self,
        wanted: impl Fn(&MemberView) -> bool,
    ) -> Option<SocketAddr> {
        let candidates: Vec<SocketAddr> = self
            .members
            .values()
            .filter(|member| member.view.name != self.name && wanted(&member.view))
            .map(|member| member.view.addr)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[self.rng.below(candidates.len())])
    }

    pub(super) fn suspicion_expired(&mut self, name: &str) {
        let Some(member) = self.members.get(name) else {
            return;
        };
        if member.view.liveness == Liveness::Suspect {
            let incarnation = member.view.incarnation;
            self.on_dead(name, incarnation, Liveness::Dead);
        }
    }

    pub(super) fn relay_expired(&mut self, seq: u32) {
        if let Some(relay) = self.relays.remove(&seq) {
            let nack = Body::Nack {
                seq: relay.requester_seq,
            };
            self.send_datagram(relay.requester, Some(nack), None);
        }
    }
}

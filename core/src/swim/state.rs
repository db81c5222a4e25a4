//! The SWIM machine: the view of the group, the incarnation rules that
//! update it, and the probes, gossip and push-pull exchanges that feed it.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use prost::Message;

use super::broadcast::BroadcastQueue;
use super::codec::{self, Body, DecodeError};
use super::config::Config;
use super::meta::{Liveness, MemberView, NodeMeta};
use super::probe::{ProbeInFlight, ProbeOrder, Relay};
use super::timer::{Timer, TimerTable};
use crate::rng::Rng;

/// Something for the shell to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
    pub kind: TransmitKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransmitKind {
    /// One UDP datagram to `to`.
    Datagram,
    /// Open a TCP connection to `to`, send the frame, read one reply frame
    /// and feed it to [`Swim::handle_push_pull`] (or report
    /// [`Swim::handle_push_pull_failed`]).
    PushPull,
}

/// What changed in the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A member was added, or its liveness, incarnation, address or
    /// metadata changed (the local node's own entry included).
    MemberChanged(MemberView),
}

/// Whether a statement about the local node accused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    Nothing,
    /// Suspect or dead at our incarnation or above: refuted.
    Refuted,
    /// Suspect or dead at an incarnation we already refuted.
    StaleAccusation,
}

#[derive(Debug, Clone)]
struct Member {
    view: MemberView,
    state_change_ms: u64,
}

/// A SWIM member: probes the others, spreads what it learns and keeps a view
/// of the group, without doing any I/O.
///
/// # Drain contract
///
/// The shell feeds the machine what happened (`handle_packet`,
/// `handle_push_pull`, `handle_push_pull_failed`, `handle_timeout`, and the
/// calls `join`, `set_meta`, `leave`) and after **every** such call drains
/// [`poll_transmit`](Self::poll_transmit) and [`poll_event`](Self::poll_event)
/// until both return `None`, then sleeps until
/// [`poll_timeout`](Self::poll_timeout) (re-reading it after each input).
/// Each input queues a bounded number of transmits and events (at most about
/// two per member in view), so the queues stay bounded as long as the shell
/// drains them.
///
/// Time only comes in as `now_ms` (milliseconds on any monotonic clock,
/// never going back; an earlier value is treated as the latest seen), and all
/// chance comes from the seed, so a run replays exactly.
#[derive(Debug)]
pub struct Swim {
    config: Config,
    name: String,
    members: BTreeMap<String, Member>,
    broadcasts: BroadcastQueue,
    timers: TimerTable,
    rng: Rng,
    probe_order: ProbeOrder,
    probe: Option<ProbeInFlight>,
    relays: BTreeMap<u32, Relay>,
    seq_next: u32,
    seeds: Vec<SocketAddr>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    now_ms: u64,
}

impl Swim {
    /// A node alone in its group, named `meta.name`, at incarnation 0.
    ///
    /// Panics if the config is invalid or the name or URLs break its limits
    /// (the caller's bugs).
    pub fn new(
        config: Config,
        local_addr: SocketAddr,
        meta: NodeMeta,
        seed: u64,
        now_ms: u64,
    ) -> Self {
        config.assert_valid();
        assert!(!meta.name.is_empty(), "a node needs a name");
        assert!(
            meta.name.len() <= config.name_bytes_max,
            "node name too long"
        );
        assert!(
            meta.client_url.len() <= config.url_bytes_max,
            "client URL too long"
        );
        assert!(
            meta.peer_url.len() <= config.url_bytes_max,
            "peer URL too long"
        );
        let name = meta.name.clone();
        let local = MemberView {
            name: name.clone(),
            addr: local_addr,
            incarnation: 0,
            liveness: Liveness::Alive,
            meta,
        };
        let mut swim = Self {
            broadcasts: BroadcastQueue::new(config.members_max),
            config,
            name: name.clone(),
            members: BTreeMap::new(),
            timers: TimerTable::default(),
            rng: Rng::new(seed),
            probe_order: ProbeOrder::default(),
            probe: None,
            relays: BTreeMap::new(),
            seq_next: 0,
            seeds: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            now_ms,
        };
        swim.members.insert(
            name,
            Member {
                view: local.clone(),
                state_change_ms: now_ms,
            },
        );
        swim.events.push_back(Event::MemberChanged(local));
        swim.start_timers();
        swim
    }

    /// Push-pulls (as a join) each seed, and remembers the seeds to try again
    /// every `rejoin_interval_ms` while no other member is up.
    pub fn join(&mut self, seeds: &[SocketAddr], now_ms: u64) {
        self.advance(now_ms);
        if self.has_left() {
            return;
        }
        let local_addr = self.local().addr;
        self.seeds.clear();
        for seed in seeds {
            if *seed != local_addr
                && !self.seeds.contains(seed)
                && self.seeds.len() < self.config.seeds_max
            {
                self.seeds.push(*seed);
            }
        }
        self.push_pull_seeds();
        if !self.seeds.is_empty() {
            self.timers
                .set(Timer::Rejoin, self.now_ms + self.config.rejoin_interval_ms);
        }
    }

    /// A datagram from `from`. A refused datagram leaves the machine as it
    /// was.
    pub fn handle_packet(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(), DecodeError> {
        let datagram = codec::decode_packet(&self.config, bytes)?;
        self.advance(now_ms);
        let mut accused = false;
        for update in datagram.updates {
            accused |= self.apply_update(update, false) != Heard::Nothing;
        }
        if let Some(body) = datagram.body {
            self.handle_body(from, body);
        }
        if accused {
            self.answer_accusation(from);
        }
        Ok(())
    }

    /// A push-pull frame read from a TCP connection. Returns the reply frame
    /// to write back on the same connection when the frame asks for one (a
    /// join or a periodic exchange); a reply to our own request returns
    /// `None`. `from` is only used for replies, where it must be the address
    /// the request was sent to.
    pub fn handle_push_pull(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Option<Vec<u8>>, DecodeError> {
        let frame = codec::decode_push_pull(&self.config, bytes)?;
        self.advance(now_ms);
        let mut accused = false;
        for member in frame.members {
            accused |= self.apply_update(member, true) != Heard::Nothing;
        }
        if frame.reply {
            if accused {
                self.answer_accusation(from);
            }
            return Ok(None);
        }
        let reply = codec::encode_push_pull(self.members.values().map(|m| &m.view), false, true);
        Ok(Some(reply))
    }

    /// A push-pull to `to` could not be completed. Nothing depends on it:
    /// the rejoin and reconnect timers try again on their own.
    pub fn handle_push_pull_failed(&mut self, _to: SocketAddr, now_ms: u64) {
        self.advance(now_ms);
    }

    /// Runs every timer whose deadline is at or before `now_ms`; does
    /// nothing when none is.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.advance(now_ms);
        while let Some(timer) = self.timers.pop_expired(self.now_ms) {
            self.fire(timer);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest deadline, in the same ms as `now_ms`.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.next_deadline_ms()
    }

    /// New metadata for the local node, spread with a bumped incarnation.
    /// Panics if `meta.name` is not the node's name (a caller's bug).
    pub fn set_meta(&mut self, meta: NodeMeta, now_ms: u64) {
        assert_eq!(meta.name, self.name, "set_meta cannot rename a node");
        assert!(
            meta.client_url.len() <= self.config.url_bytes_max,
            "client URL too long"
        );
        assert!(
            meta.peer_url.len() <= self.config.url_bytes_max,
            "peer URL too long"
        );
        self.advance(now_ms);
        if self.has_left() {
            return;
        }
        let now_ms = self.now_ms;
        let member = self.members.get_mut(&self.name).expect("local member");
        member.view.incarnation = member.view.incarnation.saturating_add(1);
        member.view.meta = meta;
        member.state_change_ms = now_ms;
        self.changed(&self.name.clone());
    }

    /// Leaves the group gracefully: spreads `Left` and stops probing and
    /// exchanging state. Gossip and answers to pings go on, so the news
    /// spreads; the machine cannot join again.
    pub fn leave(&mut self, now_ms: u64) {
        self.advance(now_ms);
        if self.has_left() {
            return;
        }
        let now_ms = self.now_ms;
        let member = self.members.get_mut(&self.name).expect("local member");
        member.view.liveness = Liveness::Left;
        member.state_change_ms = now_ms;
        self.changed(&self.name.clone());
        self.probe = None;
        for timer in [
            Timer::Probe,
            Timer::ProbeIndirect,
            Timer::PushPull,
            Timer::Rejoin,
            Timer::Reconnect,
        ] {
            self.timers.cancel(&timer);
        }
    }

    /// Every member in view, the local node included, sorted by name.
    pub fn members(&self) -> impl Iterator<Item = &MemberView> {
        self.members.values().map(|member| &member.view)
    }

    pub fn member(&self, name: &str) -> Option<&MemberView> {
        self.members.get(name).map(|member| &member.view)
    }

    pub fn local(&self) -> &MemberView {
        &self.members[&self.name].view
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn advance(&mut self, now_ms: u64) {
        self.check_bounds();
        self.now_ms = self.now_ms.max(now_ms);
    }

    /// Every table stays within its bound (checked on each input).
    fn check_bounds(&self) {
        debug_assert!(self.members.len() <= self.config.members_max);
        debug_assert!(self.broadcasts.len() <= self.config.members_max);
        debug_assert!(self.relays.len() <= self.config.relays_max);
        debug_assert!(self.seeds.len() <= self.config.seeds_max);
        debug_assert!(self.timers.len() <= self.config.members_max + self.config.relays_max + 6);
    }

    fn has_left(&self) -> bool {
        self.local().liveness == Liveness::Left
    }

    fn start_timers(&mut self) {
        let now_ms = self.now_ms;
        let probe_jitter_ms = self.jitter_ms(self.config.probe_interval_ms);
        let gossip_jitter_ms = self.jitter_ms(self.config.gossip_interval_ms);
        let push_pull_jitter_ms = self.jitter_ms(self.config.push_pull_interval_ms);
        let reconnect_jitter_ms = self.jitter_ms(self.config.reconnect_interval_ms);
        self.timers.set(Timer::Probe, now_ms + 1 + probe_jitter_ms);
        self.timers
            .set(Timer::Gossip, now_ms + 1 + gossip_jitter_ms);
        self.timers.set(
            Timer::PushPull,
            now_ms + self.config.push_pull_interval_ms + push_pull_jitter_ms,
        );
        self.timers.set(
            Timer::Reconnect,
            now_ms + self.config.reconnect_interval_ms + reconnect_jitter_ms,
        );
    }

    fn jitter_ms(&mut self, interval_ms: u64) -> u64 {
        self.rng.next_u64() % interval_ms.max(1)
    }

    fn up_count(&self) -> usize {
        self.members
            .values()
            .filter(|member| member.view.liveness.is_up())
            .count()
    }

    fn next_seq(&mut self) -> u32 {
        let seq = self.seq_next;
        self.seq_next = self.seq_next.wrapping_add(1);
        seq
    }

    // ---- incarnation rules -------------------------------------------

    /// Applies one statement. From a push-pull, `Dead` only raises
    /// suspicion, so a live node gets the chance to refute it.
    fn apply_update(&mut self, update: MemberView, from_push_pull: bool) -> Heard {
        match update.liveness {
            Liveness::Alive => self.on_alive(update),
            Liveness::Suspect => self.on_suspect(&update.name, update.incarnation),
            Liveness::Dead if from_push_pull => self.on_suspect(&update.name, update.incarnation),
            Liveness::Dead | Liveness::Left => {
                self.on_dead(&update.name, update.incarnation, update.liveness)
            }
        }
    }

    /// `Alive(inc)` replaces what we know when `inc` is strictly greater, or
    /// when it moves a dead or left member to a new address (a restart).
    fn on_alive(&mut self, alive: MemberView) -> Heard {
        if alive.name == self.name {
            return self.on_alive_about_self(&alive);
        }
        let Some(member) = self.members.get(&alive.name) else {
            self.add_member(alive);
            return Heard::Nothing;
        };
        let moves = alive.addr != member.view.addr;
        if moves && member.view.liveness.is_up() {
            return Heard::Nothing;
        }
        if alive.incarnation <= member.view.incarnation && !moves {
            return Heard::Nothing;
        }
        let was_up = member.view.liveness.is_up();
        let name = alive.name.clone();
        let now_ms = self.now_ms;
        let member = self.members.get_mut(&name).expect("checked above");
        if member.view.liveness != Liveness::Alive {
            member.state_change_ms = now_ms;
        }
        member.view = MemberView {
            liveness: Liveness::Alive,
            ..alive
        };
        self.timers.cancel(&Timer::Suspicion(name.clone()));
        if !was_up {
            self.probe_order.insert(&name, &mut self.rng);
        }
        self.changed(&name);
        Heard::Nothing
    }

    /// Someone else's idea of us that differs from ours at the same or a
    /// higher incarnation (a previous life of this node) is overridden.
    fn on_alive_about_self(&mut self, alive: &MemberView) -> Heard {
        let local = self.local();
        if self.has_left() || alive.incarnation < local.incarnation {
            return Heard::Nothing;
        }
        if alive.incarnation == local.incarnation
            && alive.addr == local.addr
            && alive.meta == local.meta
        {
            return Heard::Nothing;
        }
        self.refute(alive.incarnation);
        Heard::Refuted
    }

    /// `Suspect(inc)` replaces `Alive(inc' <= inc)` and starts the
    /// suspicion timer.
    fn on_suspect(&mut self, name: &str, incarnation: u64) -> Heard {
        if name == self.name {
            return self.on_accused(incarnation);
        }
        let Some(member) = self.members.get_mut(name) else {
            return Heard::Nothing;
        };
        if incarnation < member.view.incarnation || member.view.liveness != Liveness::Alive {
            return Heard::Nothing;
        }
        member.view.incarnation = incarnation;
        member.view.liveness = Liveness::Suspect;
        member.state_change_ms = self.now_ms;
        let timeout_ms = self.config.suspicion_timeout_ms(self.up_count());
        self.timers
            .set(Timer::Suspicion(name.to_string()), self.now_ms + timeout_ms);
        self.changed(name);
        self.tell_accused(name);
        Heard::Nothing
    }

    /// `Dead(inc)` or `Left(inc)` replaces any state at `inc' <= inc` that is
    /// not already dead or left.
    fn on_dead(&mut self, name: &str, incarnation: u64, liveness: Liveness) -> Heard {
        debug_assert!(matches!(liveness, Liveness::Dead | Liveness::Left));
        if name == self.name {
            return self.on_accused(incarnation);
        }
        let Some(member) = self.members.get_mut(name) else {
            return Heard::Nothing;
        };
        if incarnation < member.view.incarnation || !member.view.liveness.is_up() {
            return Heard::Nothing;
        }
        member.view.incarnation = incarnation;
        member.view.liveness = liveness;
        member.state_change_ms = self.now_ms;
        self.timers.cancel(&Timer::Suspicion(name.to_string()));
        self.changed(name);
        if liveness == Liveness::Dead {
            self.tell_accused(name);
        }
        Heard::Nothing
    }

    /// We were said to be suspect, dead or gone at `incarnation`.
    fn on_accused(&mut self, incarnation: u64) -> Heard {
        if self.has_left() {
            return Heard::Nothing;
        }
        if incarnation < self.local().incarnation {
            return Heard::StaleAccusation;
        }
        self.refute(incarnation);
        Heard::Refuted
    }

    fn refute(&mut self, incarnation: u64) {
        debug_assert!(!self.has_left());
        let member = self.members.get_mut(&self.name).expect("local member");
        member.view.incarnation = member.view.incarnation.max(incarnation).saturating_add(1);
        self.changed(&self.name.clone());
    }

    fn add_member(&mut self, alive: MemberView) {
        if self.members.len() >= self.config.members_max && !self.forget_oldest_gone() {
            return;
        }
        let name = alive.name.clone();
        self.members.insert(
            name.clone(),
            Member {
                view: MemberView {
                    liveness: Liveness::Alive,
                    ..alive
                },
                state_change_ms: self.now_ms,
            },
        );
        self.probe_order.insert(&name, &mut self.rng);
        self.changed(&name);
    }

    /// Makes room by forgetting the dead or left member that has been so the
    /// longest. Returns false when every member is up.
    fn forget_oldest_gone(&mut self) -> bool {
        let oldest = self
            .members
            .values()
            .filter(|member| !member.view.liveness.is_up())
            .min_by_key(|member| (member.state_change_ms, member.view.name.clone()))
            .map(|member| member.view.name.clone());
        let Some(name) = oldest else {
            return false;
        };
        self.members.remove(&name);
        self.broadcasts.remove(&name);
        true
    }

    /// Queues the member's new state for dissemination and reports it.
    fn changed(&mut self, name: &str) {
        let view = self.members[name].view.clone();
        self.broadcasts.enqueue(&view);
        self.push_event(Event::MemberChanged(view));
    }

    // ---- talking to others -------------------------------------------

    /// Tells a member what we now believe of it, so that a live member
    /// learns at once that it must refute (Lifeguard's buddy system,
    /// applied to every accusation rather than only to probes).
    fn tell_accused(&mut self, name: &str) {
        let view = self.members[name].view.clone();
        self.send_datagram(view.addr, None, Some(&view));
    }

    /// Whoever accused us hears our current state directly.
    fn answer_accusation(&mut self, to: SocketAddr) {
        if self.has_left() {
            return;
        }
        let local = self.local().clone();
        self.send_datagram(to, None, Some(&local));
    }

    fn handle_body(&mut self, from: SocketAddr, body: Body) {
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

    fn relay_probe(
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

    fn handle_ack(&mut self, seq: u32) {
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
    fn send_datagram(&mut self, to: SocketAddr, body: Option<Body>, first: Option<&MemberView>) {
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

    fn push_pull(&mut self, to: SocketAddr, join: bool) {
        let bytes = codec::encode_push_pull(self.members(), join, false);
        debug_assert!(bytes.len() <= self.config.max_push_pull_bytes());
        self.push_transmit(Transmit {
            to,
            bytes,
            kind: TransmitKind::PushPull,
        });
    }

    fn push_pull_seeds(&mut self) {
        for seed in self.seeds.clone() {
            self.push_pull(seed, true);
        }
    }

    fn push_transmit(&mut self, transmit: Transmit) {
        self.transmits.push_back(transmit);
        debug_assert!(
            self.transmits.len() <= self.queued_max(),
            "transmits not drained (see the drain contract)"
        );
    }

    fn push_event(&mut self, event: Event) {
        self.events.push_back(event);
        debug_assert!(
            self.events.len() <= 2 * self.queued_max(),
            "events not drained (see the drain contract)"
        );
    }

    /// Most transmits (and half the events) one input can queue.
    fn queued_max(&self) -> usize {
        2 * self.config.members_max
            + self.config.relays_max
            + self.config.seeds_max
            + self.config.indirect_checks
            + self.config.gossip_nodes
            + 8
    }

    // ---- timers ------------------------------------------------------

    fn fire(&mut self, timer: Timer) {
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
    fn probe_tick(&mut self) {
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

    fn start_probe(&mut self) {
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

    fn probe_indirectly(&mut self) {
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
    fn gossip_tick(&mut self) {
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

    fn push_pull_tick(&mut self) {
        self.timers.set(
            Timer::PushPull,
            self.now_ms + self.config.push_pull_interval_ms,
        );
        let peer = self.random_member(|member| member.liveness.is_up());
        if let Some(addr) = peer {
            self.push_pull(addr, false);
        }
    }

    fn rejoin_tick(&mut self) {
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

    fn reconnect_tick(&mut self) {
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
    fn random_member(&mut self, wanted: impl Fn(&MemberView) -> bool) -> Option<SocketAddr> {
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

    fn suspicion_expired(&mut self, name: &str) {
        let Some(member) = self.members.get(name) else {
            return;
        };
        if member.view.liveness == Liveness::Suspect {
            let incarnation = member.view.incarnation;
            self.on_dead(name, incarnation, Liveness::Dead);
        }
    }

    fn relay_expired(&mut self, seq: u32) {
        if let Some(relay) = self.relays.remove(&seq) {
            let nack = Body::Nack {
                seq: relay.requester_seq,
            };
            self.send_datagram(relay.requester, Some(nack), None);
        }
    }
}

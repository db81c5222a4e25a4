//! The SWIM machine: the view of the group, the incarnation rules that
//! update it, and the probes, gossip and push-pull exchanges that feed it.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use super::broadcast::BroadcastQueue;
use super::codec::{self, DecodeError};
use super::config::Config;
use super::meta::{Liveness, MemberView, NodeMeta};
use super::probe::{ProbeInFlight, ProbeOrder, Relay};
use super::timer::{Timer, TimerTable};
use crate::rng::Rng;

mod incarnation;
mod messages;
mod ticks;

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
}

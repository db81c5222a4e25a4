//! An in-memory network of SWIM machines with a fake clock (quinn-proto's
//! `Pair`, for N nodes): datagrams arrive after a random delay unless a
//! link's loss or a partition drops them; push-pull frames are answered by
//! the target's `handle_push_pull` and the reply is fed back to the sender,
//! or the sender hears `handle_push_pull_failed` when the target is down or
//! cut off. Nodes crash and restart under the same name.
//!
//! Everything is driven by one seed; the network's own chance (delays,
//! losses) comes from its own `Rng`, never from the OS.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use e2d_core::rng::Rng;
use e2d_core::swim::{Config, Event, Liveness, MemberView, NodeMeta, Swim, TransmitKind};

/// One change a node saw in its view, as the checkers see it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub at_ms: u64,
    pub observer: usize,
    pub view: MemberView,
    /// Since when the subject (the node now running under that name) has
    /// been running with every link to and from it free of loss and
    /// partition; `None` when it is down or has a faulty link right now.
    pub subject_healthy_since_ms: Option<u64>,
}

#[derive(Debug)]
enum Payload {
    Datagram,
    PushPullRequest,
    PushPullReply,
    PushPullFailed,
}

#[derive(Debug)]
struct Message {
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
    payload: Payload,
}

pub struct Node {
    pub name: String,
    pub addr: SocketAddr,
    pub meta: NodeMeta,
    pub swim: Option<Swim>,
    healthy_since_ms: Option<u64>,
    restarts: u64,
}

pub struct Net {
    pub now_ms: u64,
    pub config: Config,
    pub nodes: Vec<Node>,
    pub delay_ms_min: u64,
    pub delay_ms_max: u64,
    /// Loss in percent, `[from][to]`, for datagrams.
    loss_percent: Vec<Vec<u32>>,
    /// Partitioned links, `[from][to]`, for everything.
    blocked: Vec<Vec<bool>>,
    in_flight: BTreeMap<(u64, u64), Message>,
    message_seq: u64,
    rng: Rng,
    seed: u64,
    pub history: Vec<Observed>,
    pub datagrams_sent: u64,
    pub datagram_bytes_max: usize,
    /// State exchanges the nodes began.
    pub push_pulls_sent: u64,
}

pub fn addr_of(index: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, index as u8 + 1], 7946))
}

pub fn meta_of(name: &str, addr: SocketAddr) -> NodeMeta {
    NodeMeta {
        name: name.to_string(),
        client_url: format!("http://{}:2379", addr.ip()),
        peer_url: format!("http://{}:2380", addr.ip()),
        ..NodeMeta::default()
    }
}

impl Net {
    /// `count` nodes named `n0`.., started at time 0; not joined yet.
    pub fn new(config: Config, count: usize, seed: u64) -> Self {
        let mut net = Self {
            now_ms: 0,
            config,
            nodes: Vec::new(),
            delay_ms_min: 1,
            delay_ms_max: 100,
            loss_percent: vec![vec![0; count]; count],
            blocked: vec![vec![false; count]; count],
            in_flight: BTreeMap::new(),
            message_seq: 0,
            rng: Rng::new(seed ^ 0x006e_6574_776f_726b),
            seed,
            history: Vec::new(),
            datagrams_sent: 0,
            datagram_bytes_max: 0,
            push_pulls_sent: 0,
        };
        for index in 0..count {
            let name = format!("n{index}");
            let addr = addr_of(index);
            net.nodes.push(Node {
                meta: meta_of(&name, addr),
                name,
                addr,
                swim: None,
                healthy_since_ms: None,
                restarts: 0,
            });
            net.boot(index);
        }
        net
    }

    /// `count` nodes, each joined to every other, run until they all see
    /// each other alive (or `limit_ms` passes).
    pub fn joined(config: Config, count: usize, seed: u64) -> Self {
        let mut net = Self::new(config, count, seed);
        for index in 0..count {
            net.join_all(index);
        }
        let deadline_ms = net.now_ms + 30_000;
        while net.now_ms < deadline_ms && !net.all_alive() {
            net.run_for(100);
        }
        assert!(net.all_alive(), "cluster of {count} did not form");
        net
    }

    pub fn swim(&self, index: usize) -> &Swim {
        self.nodes[index].swim.as_ref().expect("node is running")
    }

    pub fn swim_mut(&mut self, index: usize) -> &mut Swim {
        self.nodes[index].swim.as_mut().expect("node is running")
    }

    pub fn is_running(&self, index: usize) -> bool {
        self.nodes[index].swim.is_some()
    }

    /// Node `observer`'s view of node `subject`.
    pub fn view(&self, observer: usize, subject: usize) -> Option<&MemberView> {
        self.swim(observer).member(&self.nodes[subject].name)
    }

    pub fn liveness(&self, observer: usize, subject: usize) -> Option<Liveness> {
        self.view(observer, subject).map(|view| view.liveness)
    }

    /// Every running node sees every running node alive.
    pub fn all_alive(&self) -> bool {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.is_running(*i))
            .collect();
        running.iter().all(|observer| {
            running
                .iter()
                .all(|subject| self.liveness(*observer, *subject) == Some(Liveness::Alive))
        })
    }

    /// Every event some node saw about `subject`, in order.
    pub fn history_of(&self, subject: usize) -> impl Iterator<Item = &Observed> {
        let name = self.nodes[subject].name.clone();
        self.history
            .iter()
            .filter(move |seen| seen.view.name == name)
    }

    pub fn join_all(&mut self, index: usize) {
        let seeds: Vec<SocketAddr> = (0..self.nodes.len())
            .filter(|other| *other != index)
            .map(|other| self.nodes[other].addr)
            .collect();
        self.join(index, &seeds);
    }

    pub fn join(&mut self, index: usize, seeds: &[SocketAddr]) {
        let now_ms = self.now_ms;
        self.swim_mut(index).join(seeds, now_ms);
        self.drain(index);
    }

    pub fn set_meta(&mut self, index: usize, meta: NodeMeta) {
        let now_ms = self.now_ms;
        self.nodes[index].meta = meta.clone();
        self.swim_mut(index).set_meta(meta, now_ms);
        self.drain(index);
    }

    pub fn leave(&mut self, index: usize) {
        let now_ms = self.now_ms;
        self.swim_mut(index).leave(now_ms);
        self.drain(index);
    }

    pub fn crash(&mut self, index: usize) {
        self.nodes[index].swim = None;
        self.update_health();
    }

    /// Starts a fresh machine under the same name (incarnation 0) at
    /// `addr` and joins it to every other node.
    pub fn restart_at(&mut self, index: usize, addr: SocketAddr) {
        assert!(!self.is_running(index), "crash the node first");
        self.nodes[index].addr = addr;
        self.nodes[index].meta = meta_of(&self.nodes[index].name, addr);
        self.nodes[index].restarts += 1;
        self.boot(index);
        self.join_all(index);
    }

    pub fn restart(&mut self, index: usize) {
        let addr = self.nodes[index].addr;
        self.restart_at(index, addr);
    }

    fn boot(&mut self, index: usize) {
        let node = &self.nodes[index];
        let seed = self
            .seed
            .wrapping_mul(31)
            .wrapping_add(index as u64 * 1_000 + node.restarts);
        let swim = Swim::new(
            self.config.clone(),
            node.addr,
            node.meta.clone(),
            seed,
            self.now_ms,
        );
        self.nodes[index].swim = Some(swim);
        self.update_health();
        self.drain(index);
    }

    pub fn set_loss(&mut self, from: usize, to: usize, percent: u32) {
        self.loss_percent[from][to] = percent;
        self.update_health();
    }

    pub fn block(&mut self, from: usize, to: usize, blocked: bool) {
        self.blocked[from][to] = blocked;
        self.update_health();
    }

    /// Cuts every link between `side` and the other nodes, both ways.
    pub fn partition(&mut self, side: &[usize]) {
        for a in 0..self.nodes.len() {
            for b in 0..self.nodes.len() {
                if side.contains(&a) != side.contains(&b) {
                    self.blocked[a][b] = true;
                }
            }
        }
        self.update_health();
    }

    /// No loss, no partition.
    pub fn heal(&mut self) {
        for row in &mut self.loss_percent {
            row.fill(0);
        }
        for row in &mut self.blocked {
            row.fill(false);
        }
        self.update_health();
    }

    fn link_is_clean(&self, a: usize, b: usize) -> bool {
        self.loss_percent[a][b] == 0
            && self.loss_percent[b][a] == 0
            && !self.blocked[a][b]
            && !self.blocked[b][a]
    }

    fn update_health(&mut self) {
        for index in 0..self.nodes.len() {
            let healthy = self.is_running(index)
                && (0..self.nodes.len())
                    .all(|other| other == index || self.link_is_clean(index, other));
            let node = &mut self.nodes[index];
            node.healthy_since_ms = match (healthy, node.healthy_since_ms) {
                (false, _) => None,
                (true, Some(since_ms)) => Some(since_ms),
                (true, None) => Some(self.now_ms),
            };
        }
    }

    pub fn run_for(&mut self, duration_ms: u64) {
        let end_ms = self.now_ms + duration_ms;
        self.run_until(end_ms);
    }

    /// Delivers messages and fires timers in time order until `end_ms`.
    pub fn run_until(&mut self, end_ms: u64) {
        loop {
            let next_message_ms = self.in_flight.keys().next().map(|(at_ms, _)| *at_ms);
            let next_timer_ms = (0..self.nodes.len())
                .filter_map(|index| self.nodes[index].swim.as_ref()?.poll_timeout())
                .min();
            let next_ms = match (next_message_ms, next_timer_ms) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(at_ms) => at_ms,
                    None => break,
                },
            };
            if next_ms > end_ms {
                break;
            }
            self.now_ms = self.now_ms.max(next_ms);
            self.step();
        }
        self.now_ms = self.now_ms.max(end_ms);
    }

    fn step(&mut self) {
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > self.now_ms {
                break;
            }
            let message = entry.remove();
            self.deliver(message);
        }
        for index in 0..self.nodes.len() {
            let due = self.nodes[index]
                .swim
                .as_ref()
                .and_then(|swim| swim.poll_timeout())
                .is_some_and(|at_ms| at_ms <= self.now_ms);
            if due {
                let now_ms = self.now_ms;
                self.swim_mut(index).handle_timeout(now_ms);
                self.drain(index);
            }
        }
    }

    fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|node| node.addr == addr)
    }

    fn deliver(&mut self, message: Message) {
        let Some(to) = self.index_of(message.to) else {
            return;
        };
        let now_ms = self.now_ms;
        match message.payload {
            Payload::Datagram => {
                let Some(swim) = self.nodes[to].swim.as_mut() else {
                    return;
                };
                swim.handle_packet(message.from, &message.bytes, now_ms)
                    .expect("a node's own datagram decodes");
            }
            Payload::PushPullRequest => {
                let from = self.index_of(message.from);
                let cut = from.is_some_and(|from| self.blocked[from][to] || self.blocked[to][from]);
                let reply = match self.nodes[to].swim.as_mut() {
                    Some(swim) if !cut => swim
                        .handle_push_pull(message.from, &message.bytes, now_ms)
                        .expect("a node's own push-pull decodes")
                        .expect("a request is answered"),
                    _ => {
                        self.schedule(
                            message.to,
                            message.from,
                            Vec::new(),
                            Payload::PushPullFailed,
                        );
                        return;
                    }
                };
                self.schedule(message.to, message.from, reply, Payload::PushPullReply);
            }
            Payload::PushPullReply => {
                let Some(swim) = self.nodes[to].swim.as_mut() else {
                    return;
                };
                let answer = swim
                    .handle_push_pull(message.from, &message.bytes, now_ms)
                    .expect("a node's own push-pull decodes");
                assert!(answer.is_none(), "a reply is not answered");
            }
            Payload::PushPullFailed => {
                let Some(swim) = self.nodes[to].swim.as_mut() else {
                    return;
                };
                swim.handle_push_pull_failed(message.from, now_ms);
            }
        }
        self.drain(to);
    }

    /// Drains the node's transmits and events (the drain contract).
    fn drain(&mut self, index: usize) {
        let from = self.nodes[index].addr;
        loop {
            let Some(swim) = self.nodes[index].swim.as_mut() else {
                return;
            };
            let Some(transmit) = swim.poll_transmit() else {
                break;
            };
            match transmit.kind {
                TransmitKind::Datagram => self.send_datagram(index, transmit.to, transmit.bytes),
                TransmitKind::PushPull => {
                    self.push_pulls_sent += 1;
                    self.schedule(from, transmit.to, transmit.bytes, Payload::PushPullRequest)
                }
            }
        }
        while let Some(event) = self.nodes[index].swim.as_mut().and_then(Swim::poll_event) {
            let Event::MemberChanged(view) = event;
            let subject_healthy_since_ms = self
                .nodes
                .iter()
                .find(|node| node.name == view.name)
                .and_then(|node| node.healthy_since_ms);
            self.history.push(Observed {
                at_ms: self.now_ms,
                observer: index,
                view,
                subject_healthy_since_ms,
            });
        }
    }

    fn send_datagram(&mut self, from: usize, to: SocketAddr, bytes: Vec<u8>) {
        assert!(
            bytes.len() <= self.config.max_packet_bytes,
            "datagram of {} bytes over max_packet_bytes",
            bytes.len()
        );
        self.datagrams_sent += 1;
        self.datagram_bytes_max = self.datagram_bytes_max.max(bytes.len());
        if let Some(to_index) = self.index_of(to) {
            if self.blocked[from][to_index] {
                return;
            }
            let loss = self.loss_percent[from][to_index];
            if loss > 0 && self.rng.below(100) < loss as usize {
                return;
            }
        }
        let from_addr = self.nodes[from].addr;
        self.schedule(from_addr, to, bytes, Payload::Datagram);
    }

    fn schedule(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>, payload: Payload) {
        let spread = (self.delay_ms_max - self.delay_ms_min + 1) as usize;
        let delay_ms = self.delay_ms_min + self.rng.below(spread) as u64;
        self.message_seq += 1;
        let message = Message {
            from,
            to,
            bytes,
            payload,
        };
        self.in_flight
            .insert((self.now_ms + delay_ms, self.message_seq), message);
    }
}

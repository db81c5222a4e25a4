//! The gossip transport: `core::swim` on a UDP socket (probes and
//! dissemination) and a TCP listener (push-pull), both on `--gossip-addr`.
//!
//! One task owns the `Swim` machine. It feeds it datagrams, push-pull frames
//! and timeouts, and carries out what it asks: datagrams are sent at once,
//! push-pull exchanges run as their own tasks (a bounded number at a time)
//! and report back. Member changes go out on a bounded channel.

mod frame;
pub mod seal;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use e2d_core::swim::{self, Event, MemberView, NodeMeta, Swim, TransmitKind};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::server::clock::Clock;
pub use seal::Seal;
use seal::{Channel, SEAL_OVERHEAD_BYTES};

/// Largest datagram read; anything longer is truncated and refused.
const DATAGRAM_BUFFER_BYTES: usize = 64 * 1024;
/// Push-pull exchanges (in and out) running at once; more are dropped and
/// retried by SWIM's own timers.
const PUSH_PULLS_IN_FLIGHT_MAX: usize = 16;
/// Member changes buffered for the consumer; the gossip loop waits when it
/// is full.
pub const EVENTS_QUEUE_MAX: usize = 4_096;
const CONTROL_QUEUE_MAX: usize = 64;
/// Pause after a failed accept before the next one.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// What the rest of the node may ask of gossip.
enum Control {
    SetMeta(Box<NodeMeta>),
    Join(Vec<SocketAddr>),
    Leave(oneshot::Sender<()>),
    #[cfg(test)]
    Members(oneshot::Sender<Vec<MemberView>>),
}

/// What push-pull tasks report to the loop.
enum Exchange {
    /// A request arrived; the reply (if any) goes back on `reply`.
    Inbound {
        from: SocketAddr,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// Our request to `to` was answered.
    Answered {
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    Failed {
        to: SocketAddr,
    },
}

/// A running gossip member.
pub struct Gossip {
    control: mpsc::Sender<Control>,
    pub local_addr: SocketAddr,
    /// The seal in use, and its count of dropped messages.
    pub seal: Seal,
}

#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// Where to listen (UDP and TCP).
    pub bind: SocketAddr,
    /// The address others reach this node at (the bound port if `bind` has
    /// port 0).
    pub advertise_ip: std::net::IpAddr,
    pub seeds: Vec<SocketAddr>,
    pub swim: swim::Config,
    pub rng_seed: u64,
    /// Seals every message (or none, without a CA key).
    pub seal: Seal,
}

impl Gossip {
    /// Binds the sockets and starts the gossip task. Member changes arrive
    /// on the returned receiver, which must be drained.
    pub async fn start(
        config: GossipConfig,
        meta: NodeMeta,
    ) -> std::io::Result<(Gossip, mpsc::Receiver<MemberView>)> {
        let seal = config.seal.clone();
        let mut swim_config = config.swim;
        if seal.is_on() {
            // Sealed datagrams stay within the size the network takes.
            swim_config.max_packet_bytes -= SEAL_OVERHEAD_BYTES;
        }
        let udp = UdpSocket::bind(config.bind).await?;
        let bound = udp.local_addr()?;
        let tcp = TcpListener::bind(bound).await?;
        let local_addr = SocketAddr::new(config.advertise_ip, bound.port());
        let clock = Clock::start();
        let mut machine = Swim::new(
            swim_config,
            local_addr,
            meta,
            config.rng_seed,
            clock.now_ms(),
        );
        // `join` leaves this node's own address out.
        if !config.seeds.is_empty() {
            machine.join(&config.seeds, clock.now_ms());
        }
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE_MAX);
        let (events_tx, events_rx) = mpsc::channel(EVENTS_QUEUE_MAX);
        let (exchange_tx, exchange_rx) = mpsc::channel(PUSH_PULLS_IN_FLIGHT_MAX * 2);
        let permits = Arc::new(Semaphore::new(PUSH_PULLS_IN_FLIGHT_MAX));
        tokio::spawn(accept_push_pulls(
            tcp,
            exchange_tx.clone(),
            permits.clone(),
            machine.config().max_push_pull_bytes(),
            seal.clone(),
        ));
        let task = Loop {
            machine,
            clock,
            udp,
            control: control_rx,
            events: events_tx,
            exchanges: exchange_rx,
            exchange_tx,
            permits,
            junk_total: 0,
            seal,
        };
        tokio::spawn(task.run());
        let gossip = Gossip {
            control: control_tx,
            local_addr,
            seal: config.seal,
        };
        Ok((gossip, events_rx))
    }

    pub async fn set_meta(&self, meta: NodeMeta) {
        let _ = self.control.send(Control::SetMeta(Box::new(meta))).await;
    }

    /// Replaces the seeds gossip (re)joins through while it is alone.
    pub async fn join(&self, seeds: Vec<SocketAddr>) {
        let _ = self.control.send(Control::Join(seeds)).await;
    }

    /// Tells the others this node leaves, and waits (bounded) until the
    /// message is out.
    pub async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Leave(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
    }

    /// The current view, sorted by name, this node included.
    #[cfg(test)]
    pub async fn members(&self) -> Vec<MemberView> {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Members(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

/// Accepts push-pull connections and hands each frame to the loop.
async fn accept_push_pulls(
    listener: TcpListener,
    exchanges: mpsc::Sender<Exchange>,
    permits: Arc<Semaphore>,
    max_bytes: usize,
    seal: Seal,
) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: do not spin on it.
                tracing::warn!(error = %e, "gossip cannot accept a push-pull connection");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%from, "push-pull refused: too many in flight");
            continue;
        };
        let (exchanges, seal) = (exchanges.clone(), seal.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let work = serve_push_pull(stream, from, &exchanges, max_bytes, &seal);
            match tokio::time::timeout(frame::EXCHANGE_TIMEOUT, work).await {
                Ok(Err(e)) => tracing::debug!(%from, error = %e, "push-pull from peer failed"),
                Err(_) => tracing::debug!(%from, "push-pull from peer timed out"),
                Ok(Ok(())) => {}
            }
        });
    }
}

async fn serve_push_pull(
    mut stream: TcpStream,
    from: SocketAddr,
    exchanges: &mpsc::Sender<Exchange>,
    max_bytes: usize,
    seal: &Seal,
) -> Result<(), frame::FrameError> {
    let sealed = frame::read_frame(&mut stream, max_bytes + SEAL_OVERHEAD_BYTES).await?;
    let Some(bytes) = seal
        .open(Channel::PushPull, &sealed)
        .map(|b| b.into_owned())
    else {
        return Ok(());
    };
    let (reply_tx, reply_rx) = oneshot::channel();
    let inbound = Exchange::Inbound {
        from,
        bytes,
        reply: reply_tx,
    };
    if exchanges.send(inbound).await.is_err() {
        return Ok(());
    }
    if let Ok(Some(reply)) = reply_rx.await {
        if let Some(sealed) = seal.seal(Channel::PushPull, &reply) {
            frame::write_frame(&mut stream, &sealed).await?;
        }
    }
    Ok(())
}

struct Loop {
    machine: Swim,
    clock: Clock,
    udp: UdpSocket,
    control: mpsc::Receiver<Control>,
    events: mpsc::Sender<MemberView>,
    exchanges: mpsc::Receiver<Exchange>,
    exchange_tx: mpsc::Sender<Exchange>,
    permits: Arc<Semaphore>,
    /// Datagrams dropped because they failed authentication or decoding.
    /// Each is judged alone: junk sent from a member's address never
    /// keeps that member's own messages out.
    junk_total: u64,
    seal: Seal,
}

impl Loop {
    async fn run(mut self) {
        let mut buffer = vec![0u8; DATAGRAM_BUFFER_BYTES];
        loop {
            if !self.drain().await {
                return;
            }
            let now_ms = self.clock.now_ms();
            let wait_ms = self
                .machine
                .poll_timeout()
                .map_or(1_000, |at| at.saturating_sub(now_ms));
            // Biased (replayable under simulation), with datagrams last
            // so that a flood cannot starve timeouts or control.
            tokio::select! {
                biased;
                control = self.control.recv() => match control {
                    Some(control) => self.control(control).await,
                    None => return,
                },
                _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {
                    self.machine.handle_timeout(self.clock.now_ms());
                }
                Some(exchange) = self.exchanges.recv() => self.exchange(exchange),
                received = self.udp.recv_from(&mut buffer) => {
                    if let Ok((len, from)) = received {
                        self.datagram(from, &buffer[..len]);
                    }
                }
            }
        }
    }

    fn datagram(&mut self, from: SocketAddr, bytes: &[u8]) {
        let now_ms = self.clock.now_ms();
        let Some(bytes) = self.seal.open(Channel::Datagram, bytes) else {
            self.junk_total += 1;
            tracing::debug!(%from, junk_total = self.junk_total, "gossip datagram failed authentication; dropped");
            return;
        };
        if let Err(e) = self.machine.handle_packet(from, &bytes, now_ms) {
            self.junk_total += 1;
            tracing::debug!(%from, error = %e, junk_total = self.junk_total, "gossip datagram refused");
        }
    }

    fn exchange(&mut self, exchange: Exchange) {
        let now_ms = self.clock.now_ms();
        match exchange {
            Exchange::Inbound { from, bytes, reply } => {
                match self.machine.handle_push_pull(from, &bytes, now_ms) {
                    Ok(answer) => {
                        let _ = reply.send(answer);
                    }
                    Err(e) => tracing::debug!(%from, error = %e, "push-pull frame refused"),
                }
            }
            Exchange::Answered { to, bytes } => {
                if let Err(e) = self.machine.handle_push_pull(to, &bytes, now_ms) {
                    tracing::debug!(%to, error = %e, "push-pull reply refused");
                }
            }
            Exchange::Failed { to } => self.machine.handle_push_pull_failed(to, now_ms),
        }
    }

    async fn control(&mut self, control: Control) {
        let now_ms = self.clock.now_ms();
        match control {
            Control::SetMeta(meta) => self.machine.set_meta(*meta, now_ms),
            Control::Join(seeds) => self.machine.join(&seeds, now_ms),
            Control::Leave(done) => {
                self.machine.leave(now_ms);
                self.drain().await;
                let _ = done.send(());
            }
            #[cfg(test)]
            Control::Members(reply) => {
                let _ = reply.send(self.machine.members().cloned().collect());
            }
        }
    }

    /// Carries out everything the machine wants now. Returns false once the
    /// consumer of events is gone.
    async fn drain(&mut self) -> bool {
        while let Some(transmit) = self.machine.poll_transmit() {
            match transmit.kind {
                TransmitKind::Datagram => {
                    let Some(sealed) = self.seal.seal(Channel::Datagram, &transmit.bytes) else {
                        continue;
                    };
                    if let Err(e) = send_datagram(&self.udp, &sealed, transmit.to).await {
                        tracing::debug!(to = %transmit.to, error = %e, "gossip datagram not sent");
                    }
                }
                TransmitKind::PushPull => self.push_pull(transmit.to, transmit.bytes),
            }
        }
        while let Some(Event::MemberChanged(member)) = self.machine.poll_event() {
            if self.events.send(member).await.is_err() {
                return false;
            }
        }
        true
    }

    fn push_pull(&mut self, to: SocketAddr, request: Vec<u8>) {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.machine
                .handle_push_pull_failed(to, self.clock.now_ms());
            return;
        };
        let max_bytes = self.machine.config().max_push_pull_bytes() + SEAL_OVERHEAD_BYTES;
        let report = self.exchange_tx.clone();
        let seal = self.seal.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let answered = match seal.seal(Channel::PushPull, &request) {
                Some(sealed) => frame::exchange(to, &sealed, max_bytes)
                    .await
                    .map(|reply| seal.open(Channel::PushPull, &reply).map(|b| b.into_owned())),
                None => Ok(None),
            };
            let outcome = match answered {
                Ok(Some(bytes)) => Exchange::Answered { to, bytes },
                Ok(None) => Exchange::Failed { to },
                Err(e) => {
                    tracing::debug!(%to, error = %e, "push-pull failed");
                    Exchange::Failed { to }
                }
            };
            let _ = report.send(outcome).await;
        });
    }
}

/// Sends one datagram (madsim's socket takes the address first).
async fn send_datagram(udp: &UdpSocket, bytes: &[u8], to: SocketAddr) -> std::io::Result<()> {
    #[cfg(not(madsim))]
    return udp.send_to(bytes, to).await.map(|_| ());
    #[cfg(madsim)]
    return udp.send_to(to, bytes).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use e2d_core::swim::{Liveness, NodeStatus};

    fn meta(name: &str) -> NodeMeta {
        NodeMeta {
            name: name.into(),
            client_url: format!("http://{name}:2379"),
            peer_url: format!("http://{name}:2380"),
            status: NodeStatus::Pending,
            ..Default::default()
        }
    }

    fn config(seeds: Vec<SocketAddr>, seed: u64) -> GossipConfig {
        GossipConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            advertise_ip: "127.0.0.1".parse().unwrap(),
            seeds,
            swim: swim::Config {
                probe_interval_ms: 200,
                probe_timeout_ms: 100,
                gossip_interval_ms: 50,
                ..swim::Config::lan()
            },
            rng_seed: seed,
            seal: Seal::default(),
        }
    }

    async fn wait_for(gossip: &Gossip, what: impl Fn(&[MemberView]) -> bool) -> Vec<MemberView> {
        for _ in 0..100 {
            let members = gossip.members().await;
            if what(&members) {
                return members;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gossip did not converge: {:?}", gossip.members().await);
    }

    /// Node a, and node b seeded with a.
    async fn a_and_b_through_a() -> (
        (Gossip, mpsc::Receiver<MemberView>),
        (Gossip, mpsc::Receiver<MemberView>),
    ) {
        let a = Gossip::start(config(Vec::new(), 1), meta("a"))
            .await
            .unwrap();
        let b = Gossip::start(config(vec![a.0.local_addr], 2), meta("b"))
            .await
            .unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn three_nodes_meet_through_one_seed_and_spread_metadata() {
        let ((a, _a_events), (b, _b_events)) = a_and_b_through_a().await;
        let (c, _c_events) = Gossip::start(config(vec![a.local_addr], 3), meta("c"))
            .await
            .unwrap();
        for node in [&a, &b, &c] {
            wait_for(node, |m| {
                m.len() == 3 && m.iter().all(|m| m.liveness == Liveness::Alive)
            })
            .await;
        }
        let mut running = meta("a");
        running.status = NodeStatus::Running;
        running.cluster_id = 7;
        a.set_meta(running.clone()).await;
        let seen = wait_for(&c, |m| {
            m.iter().any(|m| m.name == "a" && m.meta.cluster_id == 7)
        })
        .await;
        assert_eq!(seen[0].meta, running);
    }

    /// Junk sent from a member's own address, for longer than a probe
    /// takes to time out, never makes the other members suspect it.
    #[tokio::test]
    async fn junk_from_a_members_address_does_not_keep_its_messages_out() {
        const FLOOD: Duration = Duration::from_secs(4);
        let ((a, _a_events), (b, _b_events)) = a_and_b_through_a().await;
        wait_for(&a, |m| {
            m.len() == 2 && m.iter().all(|m| m.liveness == Liveness::Alive)
        })
        .await;
        wait_for(&b, |m| m.len() == 2).await;
        let junk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let started = tokio::time::Instant::now();
        let mut sent = 0u32;
        while started.elapsed() < FLOOD {
            send_datagram(&junk, &sent.to_be_bytes(), a.local_addr)
                .await
                .unwrap();
            sent += 1;
            if sent.is_multiple_of(20) {
                let members = a.members().await;
                assert!(
                    members.iter().all(|m| m.liveness == Liveness::Alive),
                    "after {sent} junk datagrams: {members:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    #[tokio::test]
    async fn junk_datagrams_are_refused_and_the_node_keeps_working() {
        let (a, _a_events) = Gossip::start(config(Vec::new(), 1), meta("a"))
            .await
            .unwrap();
        let junk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for i in 0..200u32 {
            send_datagram(&junk, &i.to_be_bytes(), a.local_addr)
                .await
                .unwrap();
        }
        let (b, _b_events) = Gossip::start(config(vec![a.local_addr], 2), meta("b"))
            .await
            .unwrap();
        wait_for(&b, |m| m.len() == 2).await;
        wait_for(&a, |m| m.len() == 2).await;
    }
}

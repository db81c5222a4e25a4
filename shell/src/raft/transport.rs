//! Outgoing raft messages: one task and one gRPC stream per peer, a
//! bounded queue in front of each; a full queue or a broken stream drops
//! messages (raft resends what matters, and each drop is counted in
//! `etcd_network_peer_sent_failures_total`) and the task reconnects with
//! backoff. Beside it, a prober per peer measures the round trip
//! (`etcd_network_peer_round_trip_time_seconds`), as etcd's does.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use e2d_proto::peer::peer_client::PeerClient;
use e2d_proto::peer::{ProbeRequest, RaftEnvelope};
use prometheus::IntCounter;
use raft::eraftpb::Message;
use tokio::sync::{mpsc, watch};

use super::codec;
use crate::metrics::Metrics;

/// Messages queued for one peer before new ones are dropped.
const PEER_QUEUE_MAX: usize = 1024;
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often a peer is probed (etcd's `proberInterval`).
const PROBE_INTERVAL: Duration = Duration::from_secs(4);
/// A probe unanswered this long is a failed one, not a round trip.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

struct PeerLink {
    url: String,
    queue: mpsc::Sender<RaftEnvelope>,
    /// Dropped with the link, which ends its prober.
    _prober: watch::Sender<()>,
}

pub struct Transport {
    cluster_id: u64,
    metrics: Arc<Metrics>,
    peers: BTreeMap<u64, PeerLink>,
    /// Raised when a peer refuses this member as removed from the cluster.
    removed: Arc<watch::Sender<bool>>,
}

/// What a member answers a removed member's raft traffic with (etcd's
/// words).
pub const REMOVED_MEMBER_MESSAGE: &str = "the member has been permanently removed from the cluster";

/// The request metadata that names the sender's cluster; a member refuses
/// raft traffic from another cluster.
pub const CLUSTER_ID_HEADER: &str = "e2d-cluster-id";

impl Transport {
    /// Starts a sender task for each `(member id, peer URL)`.
    pub fn start(cluster_id: u64, peers: &[(u64, String)], metrics: Arc<Metrics>) -> Self {
        let mut transport = Self {
            cluster_id,
            metrics,
            peers: BTreeMap::new(),
            removed: Arc::new(watch::channel(false).0),
        };
        for (id, url) in peers {
            transport.set_peer(*id, url);
        }
        transport
    }

    /// The signal raised when a peer says this member was removed.
    pub fn removed_signal(&self) -> Arc<watch::Sender<bool>> {
        self.removed.clone()
    }

    /// Routes messages for `id` to `url`, replacing an older route.
    pub fn set_peer(&mut self, id: u64, url: &str) {
        if self.peers.get(&id).is_some_and(|link| link.url == url) {
            return;
        }
        let (queue, rx) = mpsc::channel(PEER_QUEUE_MAX);
        tokio::spawn(send_loop(
            self.cluster_id,
            id,
            url.to_string(),
            rx,
            self.removed.clone(),
            self.metrics.clone(),
        ));
        let (prober, link_dropped) = watch::channel(());
        tokio::spawn(probe_loop(
            id,
            url.to_string(),
            link_dropped,
            self.metrics.clone(),
        ));
        // Dropping the old link's queue ends its tasks.
        self.peers.insert(
            id,
            PeerLink {
                url: url.to_string(),
                queue,
                _prober: prober,
            },
        );
    }

    pub fn remove_peer(&mut self, id: u64) {
        self.peers.remove(&id);
    }

    pub fn send(&self, messages: Vec<Message>) {
        for message in messages {
            let Some(peer) = self.peers.get(&message.to) else {
                tracing::debug!(to = format!("{:x}", message.to), "no route to member");
                continue;
            };
            let envelope = RaftEnvelope {
                message: codec::encode_message(&message),
            };
            if peer.queue.try_send(envelope).is_err() {
                self.metrics.count_peer_sent_failures(message.to, 1);
                tracing::debug!(
                    to = format!("{:x}", message.to),
                    "peer queue full; message dropped"
                );
            }
        }
    }
}

async fn send_loop(
    cluster_id: u64,
    id: u64,
    url: String,
    queue: mpsc::Receiver<RaftEnvelope>,
    removed: Arc<watch::Sender<bool>>,
    metrics: Arc<Metrics>,
) {
    let queue = SharedQueue::new(queue, id, metrics);
    let mut backoff = RECONNECT_BACKOFF_MIN;
    loop {
        let mut client = match crate::outgoing::connect(&url).await {
            Ok(channel) => PeerClient::new(channel),
            Err(e) => {
                tracing::debug!(peer = format!("{id:x}"), %url, error = %e, "peer unreachable");
                if !drain_while_down(&queue, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                continue;
            }
        };
        backoff = RECONNECT_BACKOFF_MIN;
        // The queue itself is the call's body: the connection takes each
        // message from it with no task in between.
        let mut request = tonic::Request::new(queue.next_call());
        request.metadata_mut().insert(
            CLUSTER_ID_HEADER,
            format!("{cluster_id:x}")
                .parse()
                .expect("hex is valid metadata"),
        );
        let outcome = client.raft(request).await;
        if queue.is_closed() {
            // The member is no longer a peer.
            return;
        }
        let drained = match outcome {
            Err(status) if status.message() == REMOVED_MEMBER_MESSAGE => {
                tracing::warn!(peer = format!("{id:x}"), %url, "{REMOVED_MEMBER_MESSAGE}");
                removed.send_replace(true);
                drain_while_down(&queue, RECONNECT_BACKOFF_MAX).await
            }
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                tracing::warn!(peer = format!("{id:x}"), %url, "{}", status.message());
                drain_while_down(&queue, RECONNECT_BACKOFF_MAX).await
            }
            outcome => {
                tracing::debug!(
                    peer = format!("{id:x}"),
                    ?outcome,
                    "peer stream ended; reconnecting"
                );
                true
            }
        };
        if !drained {
            return;
        }
    }
}

/// One peer's queue, kept by the send loop across reconnects and lent to
/// the body of the raft call in progress.
struct SharedQueue {
    queue: Arc<Mutex<mpsc::Receiver<RaftEnvelope>>>,
    /// Bumped for each call; only the newest call's body reads the queue.
    call: Arc<AtomicU64>,
    /// The peer, as the metrics name it.
    to: u64,
    metrics: Arc<Metrics>,
}

/// The body of one raft call: the queue while this call is the newest.
/// An older call's body (its connection may poll it once more before it
/// goes) ends at once, so it never takes a message or the queue's waker.
struct CallBody {
    queue: Arc<Mutex<mpsc::Receiver<RaftEnvelope>>>,
    call: Arc<AtomicU64>,
    this_call: u64,
    /// `etcd_network_peer_sent_bytes_total` of the peer.
    sent_bytes: IntCounter,
}

impl SharedQueue {
    fn new(queue: mpsc::Receiver<RaftEnvelope>, to: u64, metrics: Arc<Metrics>) -> Self {
        Self {
            queue: Arc::new(Mutex::new(queue)),
            call: Arc::new(AtomicU64::new(0)),
            to,
            metrics,
        }
    }

    /// The body of a new call; older calls' bodies end.
    fn next_call(&self) -> CallBody {
        let this_call = self.call.fetch_add(1, Ordering::SeqCst) + 1;
        CallBody {
            queue: self.queue.clone(),
            call: self.call.clone(),
            this_call,
            sent_bytes: self.metrics.peer_sent_bytes_to(self.to),
        }
    }

    /// Takes a message between calls, ending any call's body first.
    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<RaftEnvelope>> {
        self.call.fetch_add(1, Ordering::SeqCst);
        lock(&self.queue).poll_recv(cx)
    }

    /// The transport dropped this peer and nothing is left to send.
    fn is_closed(&self) -> bool {
        let queue = lock(&self.queue);
        queue.is_closed() && queue.is_empty()
    }
}

fn lock(
    queue: &Mutex<mpsc::Receiver<RaftEnvelope>>,
) -> std::sync::MutexGuard<'_, mpsc::Receiver<RaftEnvelope>> {
    crate::fail_stop::lock(queue)
}

impl tokio_stream::Stream for CallBody {
    type Item = RaftEnvelope;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RaftEnvelope>> {
        if self.call.load(Ordering::SeqCst) != self.this_call {
            return Poll::Ready(None);
        }
        let polled = lock(&self.queue).poll_recv(cx);
        if let Poll::Ready(Some(envelope)) = &polled {
            self.sent_bytes.inc_by(envelope.message.len() as u64);
        }
        polled
    }
}

/// Drops what is queued while the peer is down, for `wait`; false once
/// the transport has dropped the peer.
async fn drain_while_down(queue: &SharedQueue, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
    loop {
        match tokio::time::timeout(left(), std::future::poll_fn(|cx| queue.poll_recv(cx))).await {
            Ok(Some(_)) => queue.metrics.count_peer_sent_failures(queue.to, 1),
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

/// Probes peer `id` at `url` every [`PROBE_INTERVAL`] and records each
/// answer's round trip, until its link is dropped. The channel is made
/// anew after a failed probe, so it presents the certificate in use now;
/// a probe that fails is not a round trip.
async fn probe_loop(
    id: u64,
    url: String,
    mut link_dropped: watch::Receiver<()>,
    metrics: Arc<Metrics>,
) {
    let mut client = None;
    let mut interval = tokio::time::interval(PROBE_INTERVAL);
    loop {
        tokio::select! {
            _ = link_dropped.changed() => return,
            _ = interval.tick() => {}
        }
        let prober = match &mut client {
            Some(prober) => prober,
            None => match crate::outgoing::endpoint(&url) {
                Ok(endpoint) => client.insert(PeerClient::new(endpoint.connect_lazy())),
                Err(e) => {
                    tracing::debug!(peer = format!("{id:x}"), error = %e, "peer not probed");
                    return;
                }
            },
        };
        let started = tokio::time::Instant::now();
        let probe = prober.probe(ProbeRequest {});
        let failure = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(_)) => {
                metrics.observe_peer_round_trip(id, started.elapsed());
                continue;
            }
            Ok(Err(status)) => format!("probe failed: {status}"),
            Err(_) => "probe unanswered".to_string(),
        };
        tracing::debug!(peer = format!("{id:x}"), "{failure}");
        client = None;
    }
}

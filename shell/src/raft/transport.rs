//! Outgoing raft messages: one task and one gRPC stream per peer, a
//! bounded queue in front of each; a full queue or a broken stream drops
//! messages (raft resends what matters) and the task reconnects with
//! backoff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use e2d_proto::peer::peer_client::PeerClient;
use e2d_proto::peer::RaftEnvelope;
use raft::eraftpb::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::codec;

/// Messages queued for one peer before new ones are dropped.
const PEER_QUEUE_MAX: usize = 1024;
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);

struct PeerLink {
    url: String,
    queue: mpsc::Sender<RaftEnvelope>,
}

pub struct Transport {
    cluster_id: u64,
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
    pub fn start(cluster_id: u64, peers: &[(u64, String)]) -> Self {
        let mut transport = Self {
            cluster_id,
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
        ));
        // Dropping the old link's queue ends its task.
        self.peers.insert(
            id,
            PeerLink {
                url: url.to_string(),
                queue,
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
    mut queue: mpsc::Receiver<RaftEnvelope>,
    removed: Arc<watch::Sender<bool>>,
) {
    let mut backoff = RECONNECT_BACKOFF_MIN;
    loop {
        let client = match crate::outgoing::connect(&url, crate::outgoing::CallAs::Peer).await {
            Ok(channel) => PeerClient::new(channel),
            Err(e) => {
                tracing::debug!(peer = format!("{id:x}"), %url, error = %e, "peer unreachable");
                drain_while_down(&mut queue, backoff).await;
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                continue;
            }
        };
        backoff = RECONNECT_BACKOFF_MIN;
        let (stream_tx, stream_rx) = mpsc::channel(PEER_QUEUE_MAX);
        let mut client = client;
        let mut request = tonic::Request::new(ReceiverStream::new(stream_rx));
        request.metadata_mut().insert(
            CLUSTER_ID_HEADER,
            format!("{cluster_id:x}")
                .parse()
                .expect("hex is valid metadata"),
        );
        let mut call = tokio::spawn(async move { client.raft(request).await });
        let outcome = loop {
            tokio::select! {
                biased;
                outcome = &mut call => break outcome,
                envelope = queue.recv() => {
                    let Some(envelope) = envelope else {
                        return;
                    };
                    if stream_tx.send(envelope).await.is_err() {
                        break call.await;
                    }
                }
            }
        };
        match outcome {
            Ok(Err(status)) if status.message() == REMOVED_MEMBER_MESSAGE => {
                tracing::warn!(peer = format!("{id:x}"), %url, "{REMOVED_MEMBER_MESSAGE}");
                removed.send_replace(true);
                drain_while_down(&mut queue, RECONNECT_BACKOFF_MAX).await;
            }
            Ok(Err(status)) if status.code() == tonic::Code::FailedPrecondition => {
                tracing::warn!(peer = format!("{id:x}"), %url, "{}", status.message());
                drain_while_down(&mut queue, RECONNECT_BACKOFF_MAX).await;
            }
            outcome => {
                tracing::debug!(
                    peer = format!("{id:x}"),
                    ?outcome,
                    "peer stream ended; reconnecting"
                )
            }
        }
    }
}

/// Drops what is queued while the peer is down, for `wait`.
async fn drain_while_down(queue: &mut mpsc::Receiver<RaftEnvelope>, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
    while let Ok(Some(_)) = tokio::time::timeout(left(), queue.recv()).await {}
}

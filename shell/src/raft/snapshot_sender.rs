//! Sends a member the state machine when it is too far behind for the
//! log: a consistent view streamed in chunks as it is read (so memory
//! stays bounded), the first with the raft message that announces it; the
//! driver learns how it went.

use std::io::Write;
use std::sync::Arc;

use e2d_proto::peer::peer_client::PeerClient;
use e2d_proto::peer::SnapshotChunk;
use raft::eraftpb::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::codec;
use super::driver::{DriverHandle, DriverRequest};
use crate::server::Node;

/// Bytes per snapshot chunk.
const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks read ahead of the network.
const CHUNKS_BUFFERED_MAX: usize = 4;

pub async fn send(node: Arc<Node>, driver: DriverHandle, url: String, message: Message) {
    let to = message.to;
    let delivered = match stream(&node, &url, message).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(to = format!("{to:x}"), %url, error = %e, "sending a snapshot failed");
            false
        }
    };
    let _ = driver
        .send(DriverRequest::ReportSnapshot { to, delivered })
        .await;
}

async fn stream(
    node: &Node,
    url: &str,
    message: Message,
) -> Result<(), Box<dyn std::error::Error>> {
    let view = node.read().mvcc().backend().point_in_time();
    let (chunks, outgoing) = mpsc::channel(CHUNKS_BUFFERED_MAX);
    let raft_message = codec::encode_message(&message);
    // The view is written straight into the stream's chunks: nothing goes
    // to disk on this side, and memory holds the chunks in flight only.
    let writer = crate::blocking::spawn(move || -> std::io::Result<()> {
        let mut out = ChunkWriter {
            chunks,
            raft_message: Some(raft_message),
            data: Vec::with_capacity(CHUNK_BYTES),
        };
        crate::snapshot::write_snapshot(&view, &mut out).map_err(|e| std::io::Error::other(e.0))?;
        out.send_chunk()
    });
    let channel = crate::outgoing::connect(url)
        .await
        .map_err(std::io::Error::other)?;
    let mut client = PeerClient::new(channel).max_encoding_message_size(CHUNK_BYTES * 2);
    let sent = client.install_snapshot(ReceiverStream::new(outgoing)).await;
    let written = writer.await?;
    sent?;
    written?;
    Ok(())
}

/// Cuts what is written into [`SnapshotChunk`]s of [`CHUNK_BYTES`], the
/// first carrying the raft message, and hands each to the stream (waiting
/// while [`CHUNKS_BUFFERED_MAX`] are in flight).
struct ChunkWriter {
    chunks: mpsc::Sender<SnapshotChunk>,
    raft_message: Option<Vec<u8>>,
    data: Vec<u8>,
}

impl ChunkWriter {
    /// Sends what is buffered (the first chunk even when empty).
    fn send_chunk(&mut self) -> std::io::Result<()> {
        if self.data.is_empty() && self.raft_message.is_none() {
            return Ok(());
        }
        let chunk = SnapshotChunk {
            raft_message: self.raft_message.take().unwrap_or_default(),
            data: std::mem::replace(&mut self.data, Vec::with_capacity(CHUNK_BYTES)),
        };
        self.chunks
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::other("the receiving member closed the stream"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK_BYTES - self.data.len();
        let taken = buf.len().min(room);
        self.data.extend_from_slice(&buf[..taken]);
        if self.data.len() == CHUNK_BYTES {
            self.send_chunk()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

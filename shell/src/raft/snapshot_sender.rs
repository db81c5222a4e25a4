//! Sends a member the state machine when it is too far behind for the
//! log: a consistent view written to a temporary file (so memory stays
//! bounded), then streamed in chunks with the raft message that announces
//! it; the driver learns how it went.

use std::io::{BufWriter, Read, Seek};
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
    let dir = node.config.data_dir.join("tmp");
    let file = crate::blocking::spawn(move || -> std::io::Result<std::fs::File> {
        let mut file = crate::durable_file::unnamed_in(&dir)?;
        {
            let mut out = BufWriter::new(&mut file);
            crate::snapshot::write_snapshot(&view, &mut out)
                .map_err(|e| std::io::Error::other(e.0))?;
        }
        file.rewind()?;
        Ok(file)
    })
    .await??;
    let (chunks, outgoing) = mpsc::channel(CHUNKS_BUFFERED_MAX);
    let raft_message = codec::encode_message(&message);
    let reader = crate::blocking::spawn(move || -> std::io::Result<()> {
        let mut file = file;
        let mut first = Some(raft_message);
        loop {
            let mut data = vec![0u8; CHUNK_BYTES];
            let n = file.read(&mut data)?;
            data.truncate(n);
            if n == 0 && first.is_none() {
                return Ok(());
            }
            let chunk = SnapshotChunk {
                raft_message: first.take().unwrap_or_default(),
                data,
            };
            if chunks.blocking_send(chunk).is_err() || n == 0 {
                return Ok(());
            }
        }
    });
    let channel = crate::outgoing::connect(url)
        .await
        .map_err(std::io::Error::other)?;
    let mut client = PeerClient::new(channel).max_encoding_message_size(CHUNK_BYTES * 2);
    client
        .install_snapshot(ReceiverStream::new(outgoing))
        .await?;
    reader.await??;
    Ok(())
}

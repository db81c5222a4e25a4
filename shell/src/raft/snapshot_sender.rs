//! Sends a member the state machine when it is too far behind for the
//! log: a consistent view streamed in chunks as it is read (so memory
//! stays bounded), the first with the raft message that announces it,
//! each with the name of the digest that closes the stream; the driver
//! learns how it went.

use std::io::Write;
use std::sync::Arc;

use e2d_proto::peer::{SnapshotChunk, StreamDigest};
use raft::eraftpb::Message;
use tokio::sync::mpsc;

use super::codec;
use super::driver::{DriverHandle, DriverRequest};
use crate::server::Node;
use crate::snapshot::{DigestKind, SnapshotDigest};

/// Bytes per snapshot chunk.
const CHUNK_BYTES: usize = 256 * 1024;
/// Largest chunk message sent, its data and the raft message the first
/// carries together; a larger one fails the send.
const CHUNK_MESSAGE_BYTES_MAX: usize = CHUNK_BYTES * 2;
/// Chunks read ahead of the network.
const CHUNKS_BUFFERED_MAX: usize = 4;
/// The digest that closes the snapshots a member streams.
pub const STREAM_DIGEST: DigestKind = DigestKind::Xxh3_128;

/// The digest a stream's first chunk names; `None` for a name this member
/// does not know (a newer member's).
pub fn digest_named(first: &SnapshotChunk) -> Option<DigestKind> {
    match StreamDigest::try_from(first.digest).ok()? {
        StreamDigest::Sha256 => Some(DigestKind::Sha256),
        StreamDigest::Xxh3128 => Some(DigestKind::Xxh3_128),
    }
}

fn wire_name(kind: DigestKind) -> StreamDigest {
    match kind {
        DigestKind::Sha256 => StreamDigest::Sha256,
        DigestKind::Xxh3_128 => StreamDigest::Xxh3128,
    }
}

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
        crate::snapshot::write_snapshot_body(&view, &mut out)
            .map_err(|e| std::io::Error::other(e.0))?;
        out.send_chunk()?;
        out.chunks
            .blocking_send(Piece::BodyEnd)
            .map_err(|_| closed())
    });
    let channel = crate::outgoing::connect(url)
        .await
        .map_err(std::io::Error::other)?;
    #[cfg(not(madsim))]
    let sent = super::snapshot_call::install_snapshot(
        channel,
        digested(outgoing),
        CHUNK_MESSAGE_BYTES_MAX,
    )
    .await;
    #[cfg(madsim)]
    let sent = e2d_proto::peer::peer_client::PeerClient::new(channel)
        .max_encoding_message_size(CHUNK_MESSAGE_BYTES_MAX)
        .install_snapshot(digested(outgoing))
        .await;
    let written = writer.await?;
    sent?;
    written?;
    Ok(())
}

/// What the reading side hands the stream.
enum Piece {
    Body(SnapshotChunk),
    /// The body is whole: its digest may follow.
    BodyEnd,
}

/// The chunks of `pieces`, then the digest of their bodies. The digest is
/// taken here, beside the network, so the thread reading the view only
/// reads. A body that stops short of [`Piece::BodyEnd`] gets no digest, so
/// the receiving member refuses what came.
fn digested(
    pieces: mpsc::Receiver<Piece>,
) -> impl futures_util::Stream<Item = SnapshotChunk> + Send + 'static {
    futures_util::stream::unfold(
        (pieces, Some(SnapshotDigest::new(STREAM_DIGEST))),
        |(mut pieces, mut digest)| async move {
            match pieces.recv().await? {
                Piece::Body(chunk) => {
                    digest.as_mut()?.update(&chunk.data);
                    Some((chunk, (pieces, digest)))
                }
                Piece::BodyEnd => {
                    let chunk = SnapshotChunk {
                        data: digest.take()?.finish().into(),
                        ..SnapshotChunk::default()
                    };
                    Some((chunk, (pieces, None)))
                }
            }
        },
    )
}

fn closed() -> std::io::Error {
    std::io::Error::other("the receiving member closed the stream")
}

/// Cuts what is written into [`SnapshotChunk`]s of [`CHUNK_BYTES`], the
/// first carrying the raft message, each the digest's name (the receiving
/// member reads the first's), and hands each to the stream (waiting while
/// [`CHUNKS_BUFFERED_MAX`] are in flight).
struct ChunkWriter {
    chunks: mpsc::Sender<Piece>,
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
            data: std::mem::replace(&mut self.data, Vec::with_capacity(CHUNK_BYTES)).into(),
            digest: wire_name(STREAM_DIGEST) as i32,
        };
        self.chunks
            .blocking_send(Piece::Body(chunk))
            .map_err(|_| closed())
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

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;
    use crate::snapshot::VerifyingWriter;

    /// What a receiving member makes of the pieces sent: the bytes it
    /// would keep, or its refusal.
    async fn received(pieces: Vec<Piece>) -> Result<Vec<u8>, String> {
        let (sender, receiver) = mpsc::channel(pieces.len() + 1);
        for piece in pieces {
            sender.send(piece).await.unwrap();
        }
        drop(sender);
        let mut out = VerifyingWriter::closed_by(Vec::new(), STREAM_DIGEST);
        let chunks: Vec<SnapshotChunk> = digested(receiver).collect().await;
        for chunk in chunks {
            out.write_all(&chunk.data).unwrap();
        }
        out.finish().map_err(|e| e.to_string())
    }

    fn body(data: &[u8]) -> Piece {
        Piece::Body(SnapshotChunk {
            data: data.to_vec().into(),
            ..SnapshotChunk::default()
        })
    }

    #[tokio::test]
    async fn a_whole_body_is_closed_by_its_digest_and_a_cut_one_is_refused() {
        let whole = received(vec![body(b"first "), body(b"second"), Piece::BodyEnd]).await;
        let mut expected = b"first second".to_vec();
        expected.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(b"first second").to_be_bytes());
        assert_eq!(whole.unwrap(), expected);
        // The reading side failed after its first chunk: no digest follows,
        // so the bytes that came cannot pass for a snapshot.
        let cut = received(vec![body(b"first "), body(b"second")]).await;
        assert!(cut.unwrap_err().contains("XXH3-128 digest does not match"));
        let nothing = received(Vec::new()).await;
        assert!(nothing.is_err());
    }

    /// The first chunk names the digest the receiving member checks; a
    /// stream from a member that names none (an older one) is closed by a
    /// SHA-256, and a name this member does not know is refused.
    #[test]
    fn a_stream_names_its_digest_in_its_first_chunk() {
        for kind in [DigestKind::Sha256, DigestKind::Xxh3_128] {
            let first = SnapshotChunk {
                digest: wire_name(kind) as i32,
                ..SnapshotChunk::default()
            };
            assert_eq!(digest_named(&first), Some(kind));
        }
        assert_eq!(
            digest_named(&SnapshotChunk::default()),
            Some(DigestKind::Sha256)
        );
        let unknown = SnapshotChunk {
            digest: 7,
            ..SnapshotChunk::default()
        };
        assert_eq!(digest_named(&unknown), None);
    }
}

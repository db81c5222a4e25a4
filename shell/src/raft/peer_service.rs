//! The peer service on `--peer-addr`: raft streams from other members,
//! lease renewals forwarded to the leader, the cluster manager's calls
//! (the join lock, membership changes), and the corruption checks'
//! `HashKV`. The peer port is where members
//! trust each other (with TLS, only a peer certificate the CA signed gets
//! in), so what comes in here is the cluster's own and no auth check
//! applies; the client port never serves these.

use std::sync::Arc;

use e2d_proto::etcdserverpb::{HashKvRequest, HashKvResponse};
use e2d_proto::peer::join_lock_request::Action;
use e2d_proto::peer::peer_server::Peer;
use e2d_proto::peer::{
    ChangeMembersRequest, ChangeMembersResponse, JoinLockRequest, JoinLockResponse,
    KeepAliveRequest, KeepAliveResponse, MembersRequest, MembersResponse, ProbeRequest,
    ProbeResponse, RaftEnvelope, SendAck, SnapshotChunk,
};
use prometheus::IntCounter;
use tonic::{Request, Response, Status, Streaming};

use super::codec;
use super::driver::DriverRequest;
use crate::grpc::to_status;
use crate::server::{corrupt_check, join_lock, member_changes, Node};
use crate::snapshot::{SnapshotError, VerifyingWriter};
use crate::snapshot_load::{IncomingSnapshot, StagedTables, StreamedLoad};

/// How often a raft stream's sender is checked against the removed members.
const REMOVED_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

pub struct PeerService {
    node: Arc<Node>,
}

impl PeerService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(
        &self,
        request: Request<Streaming<RaftEnvelope>>,
    ) -> Result<Response<SendAck>, Status> {
        let own = format!("{:x}", self.node.identity.cluster_id);
        let sender = request
            .metadata()
            .get(super::transport::CLUSTER_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown")
            .to_string();
        if sender != own {
            tracing::warn!(sender_cluster = %sender, "refused raft traffic from another cluster");
            return Err(Status::failed_precondition(format!(
                "cluster ID mismatch: this member belongs to cluster {own}, the sender to cluster {sender}"
            )));
        }
        let mut incoming = request.into_inner();
        // A stream comes from one member, which may be removed while the
        // stream lasts: its id is looked up again at most every second.
        let mut checked: Option<(u64, tokio::time::Instant)> = None;
        let mut received_bytes: Option<(u64, IntCounter)> = None;
        while let Some(envelope) = incoming.message().await? {
            let message = codec::decode_message(&envelope.message)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let counter = match &received_bytes {
                Some((from, counter)) if *from == message.from => counter,
                _ => {
                    let counter = self.node.metrics.peer_received_bytes_from(message.from);
                    &received_bytes.insert((message.from, counter)).1
                }
            };
            counter.inc_by(envelope.message.len() as u64);
            let fresh = checked.is_some_and(|(from, at)| {
                from == message.from && at.elapsed() < REMOVED_CHECK_INTERVAL
            });
            if !fresh
                && self
                    .node
                    .read()
                    .is_removed_member(message.from)
                    .map_err(to_status)?
            {
                return Err(Status::permission_denied(
                    super::transport::REMOVED_MEMBER_MESSAGE,
                ));
            }
            if !fresh {
                checked = Some((message.from, tokio::time::Instant::now()));
            }
            self.node
                .raft()
                .send(DriverRequest::Step(Box::new(message)))
                .await
                .map_err(to_status)?;
        }
        Ok(Response::new(SendAck {}))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        Ok(Response::new(ProbeResponse {}))
    }

    async fn keep_alive(
        &self,
        request: Request<KeepAliveRequest>,
    ) -> Result<Response<KeepAliveResponse>, Status> {
        let id = request.into_inner().id;
        let ttl_seconds = self.node.lease_keep_alive(id).await?;
        Ok(Response::new(KeepAliveResponse { ttl_seconds }))
    }

    async fn members(
        &self,
        _request: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        let members = self.node.read().members().map_err(to_status)?;
        let cluster_size = crate::server::cluster_size::effective(&self.node);
        let cluster_size = u32::try_from(cluster_size).unwrap_or(0);
        let cluster_version = crate::server::cluster_version::recorded(&self.node)
            .map(|v| v.to_string())
            .unwrap_or_default();
        Ok(Response::new(MembersResponse {
            cluster_id: self.node.identity.cluster_id,
            members,
            cluster_size,
            cluster_version,
        }))
    }

    async fn join_lock(
        &self,
        request: Request<JoinLockRequest>,
    ) -> Result<Response<JoinLockResponse>, Status> {
        let request = request.into_inner();
        let holder = request.holder;
        if holder.is_empty() || holder.len() > join_lock::HOLDER_BYTES_MAX {
            return Err(Status::invalid_argument(format!(
                "a join lock holder is a name of 1 to {} bytes",
                join_lock::HOLDER_BYTES_MAX
            )));
        }
        let holder = match Action::try_from(request.action) {
            Ok(Action::Take) => join_lock::take(&self.node, &holder).await,
            Ok(Action::Release) => join_lock::release(&self.node, &holder).await,
            Err(_) => return Err(Status::invalid_argument("an unknown join lock action")),
        };
        Ok(Response::new(JoinLockResponse {
            holder: holder.map_err(to_status)?,
        }))
    }

    async fn change_members(
        &self,
        request: Request<ChangeMembersRequest>,
    ) -> Result<Response<ChangeMembersResponse>, Status> {
        member_changes::change_members(&self.node, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let revision = request.into_inner().revision;
        let mut resp =
            corrupt_check::hash_kv_response(&self.node.read(), revision).map_err(to_status)?;
        self.node.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SendAck>, Status> {
        let mut incoming = request.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an empty snapshot stream"))?;
        let message = codec::decode_message(&first.raft_message)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let digest = super::snapshot_sender::digest_named(&first).ok_or_else(|| {
            Status::invalid_argument(format!(
                "the snapshot stream is closed by a digest this member does not know \
                 (StreamDigest {}): upgrade this member to the leader's e2d version",
                first.digest
            ))
        })?;
        let receiving = std::time::Instant::now();
        let ingester = self.node.read().mvcc().backend().ingester();
        // A load given up on leaves its table files behind until the next
        // start: once one was, snapshots go through a file instead, which
        // is removed whatever happens.
        let snapshot = if ingester.abandoned_any() {
            let dir = self.node.config.data_dir.join("tmp");
            let file = crate::blocking::spawn(move || crate::durable_file::unnamed_in(&dir))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| Status::internal(format!("cannot store the snapshot: {e}")))?;
            let check = VerifyingWriter::closed_by(file, digest);
            let file = receive(first.data, &mut incoming, check).await?;
            IncomingSnapshot::File(file, crate::server::is_replicated)
        } else {
            let load = StreamedLoad::new(ingester, crate::server::is_replicated, digest);
            IncomingSnapshot::Staged(receive(first.data, &mut incoming, load).await?)
        };
        tracing::info!(
            received_ms = receiving.elapsed().as_millis() as u64,
            "received a snapshot from the leader"
        );
        self.node
            .raft()
            .send(DriverRequest::InstallSnapshot {
                message: Box::new(message),
                snapshot,
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(SendAck {}))
    }
}

/// Where a snapshot's chunks go as they arrive, checked against the digest
/// that ends them.
trait ChunkSink: Send + 'static {
    type Whole: Send + 'static;
    fn take(&mut self, chunk: &[u8]) -> Result<(), SnapshotError>;
    /// What came, once its digest matches.
    fn finish(self) -> Result<Self::Whole, SnapshotError>;
}

impl ChunkSink for VerifyingWriter<std::fs::File> {
    type Whole = std::fs::File;

    fn take(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        use std::io::Write;
        Ok(self.write_all(chunk)?)
    }

    fn finish(self) -> Result<std::fs::File, SnapshotError> {
        let mut file = VerifyingWriter::finish(self)?;
        use std::io::Seek;
        file.rewind()?;
        Ok(file)
    }
}

impl ChunkSink for StreamedLoad {
    type Whole = StagedTables;

    fn take(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        self.write(chunk)
    }

    fn finish(self) -> Result<StagedTables, SnapshotError> {
        StreamedLoad::finish(self)
    }
}

/// Chunk bytes collected for the sink while it works on earlier ones, at
/// most: past this, the stream waits for the sink (and HTTP/2's window
/// holds the leader back).
const RECEIVED_AHEAD_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Chunk bytes an idle sink waits for before it is handed them (unless
/// the stream ended): a few chunks a handoff when the sink is the faster.
const HANDOVER_BYTES_MIN: usize = 1024 * 1024;

/// Hands `first` and every later chunk of `incoming` to `sink`, off the
/// async worker while the next ones come in. The chunks that arrive while
/// the sink works go to it together when it is done, up to
/// [`RECEIVED_AHEAD_BYTES_MAX`], and an idle sink waits for
/// [`HANDOVER_BYTES_MIN`]: the sink takes them a few at a time, not with
/// a thread handoff each.
async fn receive<S: ChunkSink>(
    first: prost::bytes::Bytes,
    incoming: &mut Streaming<SnapshotChunk>,
    mut sink: S,
) -> Result<S::Whole, Status> {
    let refused = |e: SnapshotError| match e {
        SnapshotError::Io(_) | SnapshotError::Load(_) => {
            Status::internal(format!("cannot store the snapshot: {e}"))
        }
        other => Status::invalid_argument(other.to_string()),
    };
    let mut ahead = ChunksAhead::default();
    ahead.push(first);
    let mut ended = false;
    loop {
        // The sink is idle: it waits for enough to take, or the end.
        while !ended && ahead.bytes < HANDOVER_BYTES_MIN {
            ahead.receive(incoming.message().await?, &mut ended);
        }
        if ahead.is_empty() {
            return crate::blocking::spawn(move || sink.finish())
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(refused);
        }
        let chunks = std::mem::take(&mut ahead);
        let mut taking = crate::blocking::spawn(move || chunks.into_sink(sink));
        // While it takes them, the next ones are read, up to the bound.
        let taken = loop {
            if ended || ahead.bytes >= RECEIVED_AHEAD_BYTES_MAX {
                break taking.await;
            }
            tokio::select! {
                biased;
                taken = &mut taking => break taken,
                message = incoming.message() => ahead.receive(message?, &mut ended),
            }
        };
        sink = taken
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(refused)?;
    }
}

/// Chunks received and not yet handed to the sink.
#[derive(Default)]
struct ChunksAhead {
    chunks: Vec<prost::bytes::Bytes>,
    bytes: usize,
}

impl ChunksAhead {
    fn push(&mut self, data: prost::bytes::Bytes) {
        self.bytes += data.len();
        self.chunks.push(data);
    }

    /// Takes in the stream's next message; `None` is its end.
    fn receive(&mut self, message: Option<SnapshotChunk>, ended: &mut bool) {
        match message {
            Some(chunk) => self.push(chunk.data),
            None => *ended = true,
        }
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Hands every chunk to `sink` in turn, and the sink back.
    fn into_sink<S: ChunkSink>(self, mut sink: S) -> Result<S, SnapshotError> {
        for chunk in &self.chunks {
            sink.take(chunk)?;
        }
        Ok(sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::snapshot_sender::STREAM_DIGEST;
    use crate::snapshot_load::tests::{backend_in, bytes_of, everything_but_kept, many_records};
    use e2d_core::storage::{Backend, Table};

    fn take_all<S: ChunkSink>(mut sink: S, bytes: &[u8]) -> S::Whole {
        for chunk in bytes.chunks(256 * 1024) {
            sink.take(chunk).unwrap();
        }
        sink.finish().unwrap()
    }

    fn everything(backend: &crate::storage::DiskBackend) -> Vec<(Table, Vec<u8>, Vec<u8>)> {
        let mut all = Vec::new();
        for table in Table::ALL {
            backend
                .scan(table, b"", b"", &mut |key, value| {
                    all.push((table, key.to_vec(), value.to_vec()));
                    true
                })
                .unwrap();
        }
        all
    }

    /// `receive` over a real request body (the simulator's tonic has no
    /// bodies to build one from).
    #[cfg(not(madsim))]
    mod receiving {
        use super::*;

        /// Takes chunks into memory; refuses the chunk after `refuse_after`
        /// bytes, if set, and is slow enough that chunks come in meanwhile.
        struct Collecting {
            bytes: Vec<u8>,
            refuse_after: Option<usize>,
        }

        impl ChunkSink for Collecting {
            type Whole = Vec<u8>;

            fn take(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
                if self
                    .refuse_after
                    .is_some_and(|after| self.bytes.len() >= after)
                {
                    return Err(SnapshotError::Load(e2d_core::storage::StorageError(
                        "the disk is full".into(),
                    )));
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
                self.bytes.extend_from_slice(chunk);
                Ok(())
            }

            fn finish(self) -> Result<Vec<u8>, SnapshotError> {
                Ok(self.bytes)
            }
        }

        /// A snapshot call's request stream, its chunks sent one at a time
        /// from another task, as a peer's connection hands them over.
        fn streamed(chunks: Vec<SnapshotChunk>) -> Streaming<SnapshotChunk> {
            use e2d_proto::codec::SizedCodec;
            use tonic::codec::Codec;
            let (frames, mut incoming) = tokio::sync::mpsc::channel(1);
            tokio::spawn(async move {
                for chunk in chunks {
                    let framed = crate::raft::snapshot_call::tests::as_generated(&chunk);
                    let frame = hyper::body::Frame::data(prost::bytes::Bytes::from(framed));
                    if frames
                        .send(Ok::<_, std::convert::Infallible>(frame))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            let body = http_body_util::StreamBody::new(futures_util::stream::poll_fn(move |cx| {
                incoming.poll_recv(cx)
            }));
            let decoder = SizedCodec::<SendAck, SnapshotChunk>::default().decoder();
            Streaming::new_request(decoder, body, None, None)
        }

        /// Chunks of `sizes` bytes, each byte telling its chunk and place.
        fn chunks_of(sizes: &[usize]) -> Vec<SnapshotChunk> {
            sizes
                .iter()
                .enumerate()
                .map(|(i, &size)| SnapshotChunk {
                    data: (0..size)
                        .map(|at| (i * 7 + at % 13) as u8)
                        .collect::<Vec<u8>>()
                        .into(),
                    ..SnapshotChunk::default()
                })
                .collect()
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_sink_takes_every_chunk_in_order_whatever_their_sizes() {
            let mut sizes = vec![0, 1, 300_000, 5];
            sizes.extend(std::iter::repeat_n(256 * 1024, 40));
            sizes.extend([17, 2 * 1024 * 1024, 0, 900]);
            let mut chunks = chunks_of(&sizes);
            let first = chunks.remove(0).data;
            let expected: Vec<u8> = chunks.iter().flat_map(|c| c.data.to_vec()).collect();
            let sink = Collecting {
                bytes: Vec::new(),
                refuse_after: None,
            };
            let taken = receive(first, &mut streamed(chunks), sink).await.unwrap();
            assert_eq!(taken.len(), expected.len());
            assert!(taken == expected, "the chunks were taken out of order");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_sink_that_refuses_a_chunk_fails_the_call_with_its_reason() {
            let chunks = chunks_of(&[256 * 1024; 30]);
            let sink = Collecting {
                bytes: Vec::new(),
                refuse_after: Some(3 * 1024 * 1024),
            };
            let first = prost::bytes::Bytes::new();
            let refused = receive(first, &mut streamed(chunks), sink)
                .await
                .unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Internal);
            assert_eq!(
                refused.message(),
                "cannot store the snapshot: cannot load the snapshot: storage failure: the disk is full"
            );
        }
    }

    /// A member takes the leader's snapshot through a file once a load
    /// was abandoned, and loads it as it streams otherwise: both install
    /// the same tables.
    #[test]
    fn a_snapshot_taken_through_a_file_installs_what_a_streamed_one_does() {
        let bytes = bytes_of(&many_records());
        let dir = tempfile::tempdir().unwrap();

        let mut through_file = backend_in(&dir.path().join("file"));
        let file = crate::durable_file::unnamed_in(dir.path()).unwrap();
        let file = take_all(VerifyingWriter::closed_by(file, STREAM_DIGEST), &bytes);
        IncomingSnapshot::File(file, everything_but_kept)
            .install(&mut through_file)
            .unwrap();

        let mut streamed = backend_in(&dir.path().join("streamed"));
        let load = StreamedLoad::new(streamed.ingester(), everything_but_kept, STREAM_DIGEST);
        let staged = take_all(load, &bytes);
        IncomingSnapshot::Staged(staged)
            .install(&mut streamed)
            .unwrap();

        let installed = everything(&streamed);
        assert!(installed.len() > 300, "{} entries", installed.len());
        assert_eq!(everything(&through_file), installed);
    }
}

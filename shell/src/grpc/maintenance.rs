//! The Maintenance service: status, hashes, defragmentation, alarms and
//! snapshots.

use std::io::Read;
use std::sync::Arc;

use e2d_core::Error;
use e2d_proto::etcdserverpb::maintenance_server::Maintenance;
use e2d_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::kv::expect_outcome;
use super::to_status;
use e2d_proto::peer::proposal::Op;

use crate::server::Node;

/// The etcd version e2d reports; clients enable features by it.
pub const ETCD_VERSION: &str = "3.5.17";
/// The storage version reported in Status (etcd 3.6 field).
const STORAGE_VERSION: &str = "3.5.0";
/// Metadata a client sends to ask a member for its snapshot in e2d's own
/// format; without it a member sends etcd's database, as etcd does (etcd
/// ignores the metadata).
pub const SNAPSHOT_FORMAT_METADATA: &str = "e2d-snapshot-format";

/// Bytes per snapshot message.
const SNAPSHOT_CHUNK_BYTES: usize = 64 * 1024;
/// Snapshot messages buffered before the reader waits for the client.
const SNAPSHOT_CHUNKS_BUFFERED_MAX: usize = 8;

pub struct MaintenanceService {
    node: Arc<Node>,
}

impl MaintenanceService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

/// A failure of the member's own work (a task, a file of its own), not of
/// its data.
fn internal(e: impl std::fmt::Display) -> Status {
    to_status(Error::Internal(e.to_string()))
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        if request.get_ref().action() != e2d_proto::etcdserverpb::alarm_request::AlarmAction::Get {
            super::check_admin(&self.node, &request).await?;
        }
        let req = request.into_inner();
        let mut resp = expect_outcome!(self.node.propose(Op::Alarm(req)).await, Alarm);
        self.node.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(status_of(&self.node)))
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        super::check_admin(&self.node, &request).await?;
        let node = self.node.clone();
        crate::blocking::spawn(move || node.defragment())
            .await
            .map_err(internal)?
            .map_err(to_status)?;
        // etcd answers with no header here (clients check for none).
        Ok(Response::new(DefragmentResponse::default()))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        super::check_admin(&self.node, &request).await?;
        let (view, revision) = {
            let state = self.node.read();
            (
                state.mvcc().backend().point_in_time(),
                state.current_revision(),
            )
        };
        let hash = crate::blocking::spawn(move || {
            let mut hasher = crc32fast::Hasher::new();
            view.visit_all(&mut |_, key, value| {
                hasher.update(key);
                hasher.update(value);
                Ok(())
            })
            .map(|()| hasher.finalize())
        })
        .await
        .map_err(internal)?
        .map_err(|e| to_status(e.into()))?;
        Ok(Response::new(HashResponse {
            header: self.node.header(revision),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        super::check_admin(&self.node, &request).await?;
        let req = request.into_inner();
        let mut resp =
            crate::server::corrupt_check::hash_kv_response(&self.node.read(), req.revision)
                .map_err(to_status)?;
        self.node.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    type SnapshotStream = ReceiverStream<Result<SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        super::check_admin(&self.node, &request).await?;
        let format = match request.metadata().get(SNAPSHOT_FORMAT_METADATA) {
            None => crate::payload::PayloadFormat::Etcd,
            Some(value) if value.as_bytes() == b"e2d" => crate::payload::PayloadFormat::E2d,
            Some(value) if value.as_bytes() == b"etcd" => crate::payload::PayloadFormat::Etcd,
            Some(_) => {
                return Err(Status::invalid_argument(format!(
                    "{SNAPSHOT_FORMAT_METADATA} must be e2d or etcd"
                )))
            }
        };
        let (view, revision) = {
            let state = self.node.read();
            (
                state.mvcc().backend().point_in_time(),
                state.current_revision(),
            )
        };
        let header = self.node.header(revision);
        let dir = self.node.config.data_dir.join("tmp");
        let file = crate::blocking::spawn(move || -> std::io::Result<(std::fs::File, u64)> {
            let mut file = crate::durable_file::unnamed_in(&dir)?;
            let size =
                crate::payload::write(&view, format, &mut file).map_err(std::io::Error::other)?;
            Ok((file, size))
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        let (chunks, outgoing) = mpsc::channel(SNAPSHOT_CHUNKS_BUFFERED_MAX);
        crate::blocking::spawn(move || stream_file(file, header, chunks));
        Ok(Response::new(ReceiverStream::new(outgoing)))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        super::check_admin(&self.node, &request).await?;
        let target = request.into_inner().target_id;
        self.node.move_leader(target).await.map_err(to_status)?;
        // etcd answers with no header here (clients check for none).
        Ok(Response::new(MoveLeaderResponse::default()))
    }

    async fn downgrade(
        &self,
        request: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        super::check_admin(&self.node, &request).await?;
        Err(to_status(Error::NotCapable))
    }
}

/// The database's size on disk and the part of it in use: the bytes of
/// the kv table's entries (every revision compaction kept, keys and
/// values as stored; leases and the member list are small and not
/// counted), at most the size on disk (the storage engine compresses).
/// After a compaction the size in use falls at once, the size on disk as
/// the storage engine's own compaction drops the old data.
pub fn db_sizes_bytes(mvcc: &e2d_core::mvcc::Mvcc<crate::storage::DiskBackend>) -> (u64, u64) {
    let size = e2d_core::storage::Backend::size_bytes(mvcc.backend());
    (size, mvcc.kv_bytes().min(size))
}

pub fn status_of(node: &Node) -> StatusResponse {
    let state = node.read();
    let (db_size, db_size_in_use) = db_sizes_bytes(state.mvcc());
    // A member that cannot read its own entry is reported a voter; the
    // member list says learners.
    let is_learner = state
        .member(node.identity.member_id)
        .ok()
        .flatten()
        .is_some_and(|member| member.is_learner);
    let raft = node.raft_status();
    StatusResponse {
        header: node.header(state.current_revision()),
        version: ETCD_VERSION.to_string(),
        db_size: i64::try_from(db_size).unwrap_or(i64::MAX),
        leader: raft.leader_id,
        raft_index: raft.commit_index,
        raft_term: raft.term,
        raft_applied_index: raft.applied_index,
        errors: state
            .all_alarms()
            .iter()
            .map(|a| {
                let name = AlarmType::try_from(a.alarm)
                    .map(|t| t.as_str_name())
                    .unwrap_or("UNKNOWN");
                format!("memberID:{} alarm:{} ", a.member_id, name)
            })
            .collect(),
        db_size_in_use: i64::try_from(db_size_in_use).unwrap_or(i64::MAX),
        is_learner,
        storage_version: STORAGE_VERSION.to_string(),
        db_size_quota: i64::try_from(node.config.quota_backend_bytes).unwrap_or(i64::MAX),
        downgrade_info: None,
    }
}

fn stream_file(
    file: (std::fs::File, u64),
    header: Option<e2d_proto::etcdserverpb::ResponseHeader>,
    chunks: mpsc::Sender<Result<SnapshotResponse, Status>>,
) {
    let (mut file, size) = file;
    let mut remaining = size;
    let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
    while remaining > 0 {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = chunks.blocking_send(Err(internal(e)));
                return;
            }
        };
        remaining -= n as u64;
        let message = SnapshotResponse {
            header,
            remaining_bytes: remaining,
            blob: buf[..n].to_vec(),
            version: ETCD_VERSION.to_string(),
        };
        if chunks.blocking_send(Ok(message)).is_err() {
            return;
        }
    }
}

//! The peer service on `--peer-addr`: raft streams from other members and
//! lease renewals forwarded to the leader.

use std::sync::Arc;

use e2d_proto::peer::peer_server::Peer;
use e2d_proto::peer::{
    KeepAliveRequest, KeepAliveResponse, MembersRequest, MembersResponse, RaftEnvelope, SendAck,
    SnapshotChunk,
};
use tonic::{Request, Response, Status, Streaming};

use super::codec;
use super::driver::DriverRequest;
use crate::grpc::to_status;
use crate::server::Node;

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
        while let Some(envelope) = incoming.message().await? {
            let message = codec::decode_message(&envelope.message)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
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
        Ok(Response::new(MembersResponse {
            cluster_id: self.node.identity.cluster_id,
            members,
        }))
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
        let dir = self.node.config.data_dir.join("tmp");
        let mut file = crate::blocking::spawn(move || crate::durable_file::unnamed_in(&dir))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("cannot store the snapshot: {e}")))?;
        let mut write = |data: &[u8]| {
            use std::io::Write;
            file.write_all(data)
                .map_err(|e| Status::internal(format!("cannot store the snapshot: {e}")))
        };
        write(&first.data)?;
        while let Some(chunk) = incoming.message().await? {
            write(&chunk.data)?;
        }
        let file = crate::blocking::spawn(move || {
            crate::snapshot::verify_snapshot(&mut file).map(|()| file)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.node
            .raft()
            .send(DriverRequest::InstallSnapshot {
                message: Box::new(message),
                file,
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(SendAck {}))
    }
}

//! The peer service on `--peer-addr`: raft streams from other members and
//! lease renewals forwarded to the leader.

use std::sync::Arc;

use e2d_proto::peer::peer_server::Peer;
use e2d_proto::peer::{
    KeepAliveRequest, KeepAliveResponse, MembersRequest, MembersResponse, RaftEnvelope, SendAck,
};
use tonic::{Request, Response, Status, Streaming};

use super::codec;
use super::driver::DriverRequest;
use crate::grpc::to_status;
use crate::server::Node;

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
        let mut incoming = request.into_inner();
        while let Some(envelope) = incoming.message().await? {
            let message = codec::decode_message(&envelope.message)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
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
}

//! The Lease service: grants, revocations, keep-alive streams, TTL queries.

use std::sync::Arc;

use e2d_proto::etcdserverpb::lease_server::Lease;
use e2d_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use e2d_proto::peer::proposal::Op;
use e2d_proto::peer::LeaseRevoke;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::kv::expect_outcome;
use super::to_status;
use crate::auth::{identify, requester};
use crate::server::Node;
use e2d_core::auth::Access;

/// Keep-alive responses buffered per stream.
const KEEP_ALIVE_RESPONSES_BUFFERED_MAX: usize = 16;

pub struct LeaseService {
    node: Arc<Node>,
}

impl LeaseService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let req = request.into_inner();
        let mut resp = self
            .node
            .grant_lease(req.id, req.ttl)
            .await
            .map_err(super::to_status)?;
        self.node.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let who = identify(&self.node, request.metadata(), request.extensions()).await?;
        let id = request.into_inner().id;
        {
            let state = self.node.read();
            let checked = state.auth().check_lease_revoke(
                &who.clone().unwrap_or_default(),
                state.lessor(),
                id,
            );
            checked.map_err(super::to_status)?;
        }
        let outcome = self
            .node
            .propose_as(Op::LeaseRevoke(LeaseRevoke { id }), Some(requester(&who)))
            .await;
        let mut resp = expect_outcome!(outcome, LeaseRevoke);
        self.node.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        super::status::check_has_leader(request.metadata(), &self.node)?;
        let mut incoming = request.into_inner();
        let (responses, outgoing) = mpsc::channel(KEEP_ALIVE_RESPONSES_BUFFERED_MAX);
        let node = self.node.clone();
        tokio::spawn(async move {
            while let Ok(Some(req)) = incoming.message().await {
                let response = keep_alive(&node, req.id).await;
                if responses.send(response).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(outgoing)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let who = identify(&self.node, request.metadata(), request.extensions()).await?;
        let req = request.into_inner();
        let now_ms = self.node.clock.now_ms();
        let mut resp = {
            let state = self.node.read();
            let resp = state.lease_time_to_live(req.id, req.keys, now_ms);
            // Listing the lease's keys needs READ on each, as etcd checks.
            let who = who.unwrap_or_default();
            for key in &resp.keys {
                state
                    .auth()
                    .check_range(&who, key, &[], Access::Read)
                    .map_err(to_status)?;
            }
            resp
        };
        self.node.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let mut resp = self.node.read().lease_leases();
        self.node.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }
}

/// Renews one lease; an unknown or expired lease answers TTL 0, as etcd does.
async fn keep_alive(node: &Node, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
    let ttl = match node.lease_keep_alive(id).await {
        Ok(ttl_seconds) => ttl_seconds,
        Err(status) if status.code() == tonic::Code::NotFound => 0,
        Err(status) => return Err(status),
    };
    let revision = node.read().current_revision();
    Ok(LeaseKeepAliveResponse {
        header: node.header(revision),
        id,
        ttl,
    })
}

//! The Cluster service. A single member lists itself; membership changes
//! arrive with replication, so until then they are refused clearly.

use std::sync::Arc;

use e2d_proto::etcdserverpb::cluster_server::Cluster;
use e2d_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use crate::server::Node;

const MEMBERSHIP_FIXED: &str =
    "e2d: this member runs without peers; start members with --initial-cluster to change membership";

pub struct ClusterService {
    node: Arc<Node>,
}

impl ClusterService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    fn members(&self) -> Vec<Member> {
        let identity = &self.node.identity;
        vec![Member {
            id: identity.member_id,
            name: identity.name.clone(),
            peer_ur_ls: identity.peer_urls.clone(),
            client_ur_ls: identity.client_urls.clone(),
            is_learner: false,
        }]
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(Status::failed_precondition(MEMBERSHIP_FIXED))
    }

    async fn member_remove(
        &self,
        _request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(Status::failed_precondition(MEMBERSHIP_FIXED))
    }

    async fn member_update(
        &self,
        _request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(Status::failed_precondition(MEMBERSHIP_FIXED))
    }

    async fn member_list(
        &self,
        _request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let _timer = self.node.metrics.time("MemberList");
        // etcd's cluster API headers carry no revision.
        Ok(Response::new(MemberListResponse {
            header: self.node.header(0),
            members: self.members(),
        }))
    }

    async fn member_promote(
        &self,
        _request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(Status::failed_precondition(MEMBERSHIP_FIXED))
    }
}

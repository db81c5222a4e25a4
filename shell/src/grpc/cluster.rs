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

    /// Members of the initial cluster, with the names and URLs they
    /// announced once they did.
    fn members(&self) -> Result<Vec<Member>, Status> {
        let announced = self.node.read().members().map_err(super::to_status)?;
        let members = self
            .node
            .identity
            .initial_members
            .iter()
            .map(
                |initial| match announced.iter().find(|a| a.member_id == initial.id) {
                    Some(a) => Member {
                        id: a.member_id,
                        name: a.name.clone(),
                        peer_ur_ls: a.peer_urls.clone(),
                        client_ur_ls: a.client_urls.clone(),
                        is_learner: false,
                    },
                    None => Member {
                        id: initial.id,
                        name: String::new(),
                        peer_ur_ls: vec![initial.peer_url.clone()],
                        client_ur_ls: Vec::new(),
                        is_learner: false,
                    },
                },
            )
            .collect();
        Ok(members)
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
            members: self.members()?,
        }))
    }

    async fn member_promote(
        &self,
        _request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(Status::failed_precondition(MEMBERSHIP_FIXED))
    }
}

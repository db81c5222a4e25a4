//! The Cluster service: the member list, and membership changes through
//! raft conf changes, made by `server::member_changes` (on the leader,
//! relayed there from a follower) once the caller passed the admin check.

use std::sync::Arc;

use e2d_core::membership;
use e2d_proto::etcdserverpb::cluster_server::Cluster;
use e2d_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use e2d_proto::peer::change_members_request::Change as Requested;
use e2d_proto::peer::proposal::Op;
use e2d_proto::peer::{ChangeMembersRequest, ChangeMembersResponse, MemberAttributes};
use tonic::{Request, Response, Status};

use super::to_status;
use crate::server::{member_changes, Node};

pub struct ClusterService {
    node: Arc<Node>,
}

fn to_member(m: &MemberAttributes) -> Member {
    Member {
        id: m.member_id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

impl ClusterService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    fn members(&self) -> Result<Vec<MemberAttributes>, Status> {
        self.node.read().members().map_err(to_status)
    }

    fn listed(members: &[MemberAttributes]) -> Vec<Member> {
        members.iter().map(to_member).collect()
    }

    /// Makes `change` as the cluster's own: the caller was checked here.
    async fn change(&self, change: Requested) -> Result<ChangeMembersResponse, Status> {
        let request = ChangeMembersRequest {
            change: Some(change),
            relayed: false,
            joiner_version: String::new(),
        };
        member_changes::change_members(&self.node, request).await
    }

    fn header(&self) -> Option<e2d_proto::etcdserverpb::ResponseHeader> {
        // etcd's cluster API headers carry no revision.
        self.node.header(0)
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        super::check_admin(&self.node, &request).await?;
        let changed = self.change(Requested::Add(request.into_inner())).await?;
        Ok(Response::new(MemberAddResponse {
            header: self.header(),
            member: changed.added.as_ref().map(to_member),
            members: Self::listed(&changed.members),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        super::check_admin(&self.node, &request).await?;
        let changed = self.change(Requested::Remove(request.into_inner())).await?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.header(),
            members: Self::listed(&changed.members),
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        super::check_admin(&self.node, &request).await?;
        let req = request.into_inner();
        let mut members = self.members()?;
        membership::check_update(&members, req.id, &req.peer_ur_ls).map_err(to_status)?;
        let index = member_changes::position_of(&members, req.id)?;
        members[index].peer_urls = req.peer_ur_ls.clone();
        let updated = members[index].clone();
        self.node
            .propose(Op::MemberAttributes(updated))
            .await
            .map_err(to_status)?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.header(),
            members: Self::listed(&members),
        }))
    }

    async fn member_list(
        &self,
        _request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(MemberListResponse {
            header: self.header(),
            members: Self::listed(&self.members()?),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        super::check_admin(&self.node, &request).await?;
        let changed = self
            .change(Requested::Promote(request.into_inner()))
            .await?;
        Ok(Response::new(MemberPromoteResponse {
            header: self.header(),
            members: Self::listed(&changed.members),
        }))
    }
}

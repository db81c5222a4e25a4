//! The Cluster service: the member list, and membership changes through
//! raft conf changes. The leader judges a change by `core::membership`'s
//! rules against its member list and its raft progress; a follower relays
//! the request there. The raft driver checks the change again when it
//! applies it.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use e2d_core::membership::{self, Change};
use e2d_core::Error;
use e2d_proto::etcdserverpb::cluster_client::ClusterClient;
use e2d_proto::etcdserverpb::cluster_server::Cluster;
use e2d_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use e2d_proto::peer::member_change::Kind;
use e2d_proto::peer::proposal::Op;
use e2d_proto::peer::{MemberAttributes, MemberChange};
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use super::to_status;
use crate::raft::MembershipView;
use crate::server::Node;

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

    /// Where member `id` stands in `members`.
    fn position_of(members: &[MemberAttributes], id: u64) -> Result<usize, Status> {
        members
            .iter()
            .position(|m| m.member_id == id)
            .ok_or_else(|| to_status(Error::MemberNotFound))
    }

    fn listed(members: &[MemberAttributes]) -> Vec<Member> {
        members.iter().map(to_member).collect()
    }

    /// This member's view if it leads; otherwise a client of the leader to
    /// relay the request to.
    async fn leader_view(
        &self,
    ) -> Result<Result<MembershipView, ClusterClient<tonic::transport::Channel>>, Status> {
        let view = self.node.membership_view().await.map_err(to_status)?;
        if view.is_leader {
            return Ok(Ok(view));
        }
        let leader = self.node.raft_status().leader_id;
        let url = self
            .node
            .read()
            .member(leader)
            .map_err(to_status)?
            .and_then(|m| m.client_urls.first().cloned())
            .ok_or_else(|| to_status(Error::NoLeader))?;
        let channel = crate::outgoing::connect(&url, crate::outgoing::CallAs::Client)
            .await
            .map_err(|_| to_status(Error::NoLeader))?;
        let client = ClusterClient::new(channel);
        Ok(Err(client))
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
        let req = request.into_inner();
        let view = match self.leader_view().await? {
            Ok(view) => view,
            Err(mut leader) => return leader.member_add(req).await,
        };
        let mut members = self.members()?;
        let member = MemberAttributes {
            member_id: new_member_id(&req.peer_ur_ls, self.node.identity.cluster_id),
            name: String::new(),
            peer_urls: req.peer_ur_ls.clone(),
            client_urls: Vec::new(),
            is_learner: req.is_learner,
        };
        check(&members, &view, &Change::Add(member.clone()))?;
        let change = MemberChange {
            kind: Kind::Add as i32,
            member: Some(member.clone()),
        };
        self.node
            .change_membership(change)
            .await
            .map_err(to_status)?;
        members.push(member.clone());
        Ok(Response::new(MemberAddResponse {
            header: self.header(),
            member: Some(to_member(&member)),
            members: Self::listed(&members),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        super::check_admin(&self.node, &request).await?;
        let req = request.into_inner();
        let view = match self.leader_view().await? {
            Ok(view) => view,
            Err(mut leader) => return leader.member_remove(req).await,
        };
        let mut members = self.members()?;
        check(&members, &view, &Change::Remove { id: req.id })?;
        let member = members[Self::position_of(&members, req.id)?].clone();
        let change = MemberChange {
            kind: Kind::Remove as i32,
            member: Some(member),
        };
        self.node
            .change_membership(change)
            .await
            .map_err(to_status)?;
        members.retain(|m| m.member_id != req.id);
        Ok(Response::new(MemberRemoveResponse {
            header: self.header(),
            members: Self::listed(&members),
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
        let index = Self::position_of(&members, req.id)?;
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
        let _timer = self.node.metrics.time("MemberList");
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
        let req = request.into_inner();
        let view = match self.leader_view().await? {
            Ok(view) => view,
            Err(mut leader) => return leader.member_promote(req).await,
        };
        let mut members = self.members()?;
        check(&members, &view, &Change::Promote { id: req.id })?;
        let index = Self::position_of(&members, req.id)?;
        let change = MemberChange {
            kind: Kind::Promote as i32,
            member: Some(members[index].clone()),
        };
        self.node
            .change_membership(change)
            .await
            .map_err(to_status)?;
        members[index].is_learner = false;
        Ok(Response::new(MemberPromoteResponse {
            header: self.header(),
            members: Self::listed(&members),
        }))
    }
}

/// The leader's judgement of `change` (`view` is the leader's).
fn check(
    members: &[MemberAttributes],
    view: &MembershipView,
    change: &Change,
) -> Result<(), Status> {
    membership::check_on_leader(members, &view.progress, change).map_err(to_status)
}

/// A fresh member id, unique to these URLs, this cluster and this moment.
fn new_member_id(peer_urls: &[String], cluster_id: u64) -> u64 {
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut hasher = Sha256::new();
    hasher.update(peer_urls.join(",").as_bytes());
    hasher.update(cluster_id.to_be_bytes());
    hasher.update(now_ns.to_be_bytes());
    let digest = hasher.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("sha256 has 32 bytes")).max(1)
}

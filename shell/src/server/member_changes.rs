//! Membership changes as the cluster makes them. The leader judges a
//! change by `core::membership`'s rules against its member list and its
//! raft progress and replicates it; a follower relays it to the leader's
//! peer port. Who may ask was settled where the change came in: the
//! client port's Cluster service admits root only while auth is enabled,
//! the peer port serves the cluster's own (the manager's) changes. The
//! raft driver checks the change again when it applies it.

use std::time::{SystemTime, UNIX_EPOCH};

use e2d_core::membership::{self, Change};
use e2d_core::Error;
use e2d_proto::peer::change_members_request::Change as Requested;
use e2d_proto::peer::member_change::Kind;
use e2d_proto::peer::peer_client::PeerClient;
use e2d_proto::peer::{
    ChangeMembersRequest, ChangeMembersResponse, MemberAttributes, MemberChange,
};
use sha2::{Digest, Sha256};
use tonic::Status;

use super::Node;
use crate::grpc::to_status;
use crate::raft::MembershipView;

/// Makes `request`'s change on the leader, relaying it there from a
/// follower; answers with the members after it.
pub async fn change_members(
    node: &Node,
    request: ChangeMembersRequest,
) -> Result<ChangeMembersResponse, Status> {
    let requested = request
        .change
        .ok_or_else(|| Status::invalid_argument("the request names no membership change"))?;
    let view = node.membership_view().await.map_err(to_status)?;
    if !view.is_leader {
        if request.relayed {
            return Err(to_status(Error::NotLeader));
        }
        return relay_to_leader(node, requested, request.joiner_version).await;
    }
    if matches!(requested, Requested::Add(_)) {
        check_joiner_version(node, &request.joiner_version)?;
    }
    let mut members = node.read().members().map_err(to_status)?;
    let mut added = None;
    let (kind, member) = match requested {
        Requested::Add(add) => {
            let member = MemberAttributes {
                member_id: new_member_id(&add.peer_ur_ls, node.identity.cluster_id),
                name: String::new(),
                peer_urls: add.peer_ur_ls,
                client_urls: Vec::new(),
                is_learner: add.is_learner,
            };
            check(&members, &view, &Change::Add(member.clone()))?;
            members.push(member.clone());
            added = Some(member.clone());
            (Kind::Add, member)
        }
        Requested::Remove(remove) => {
            check(&members, &view, &Change::Remove { id: remove.id })?;
            let index = position_of(&members, remove.id)?;
            (Kind::Remove, members.remove(index))
        }
        Requested::Promote(promote) => {
            check(&members, &view, &Change::Promote { id: promote.id })?;
            let index = position_of(&members, promote.id)?;
            let member = members[index].clone();
            members[index].is_learner = false;
            (Kind::Promote, member)
        }
    };
    let change = MemberChange {
        kind: kind as i32,
        member: Some(member),
    };
    node.change_membership(change).await.map_err(to_status)?;
    Ok(ChangeMembersResponse {
        cluster_id: node.identity.cluster_id,
        added,
        members,
    })
}

/// Refuses to add a node that runs an older e2d than the cluster's
/// recorded version (it could not apply what the cluster replicates). A
/// MemberAdd from a client names no version and is not checked, as etcd
/// checks a member's version only when it starts.
fn check_joiner_version(node: &Node, joiner_version: &str) -> Result<(), Status> {
    if joiner_version.is_empty() {
        return Ok(());
    }
    let joiner = e2d_core::version::Version::parse(joiner_version).ok_or_else(|| {
        Status::invalid_argument(format!(
            "the joining node's version {joiner_version:?} is not major.minor.patch"
        ))
    })?;
    let cluster = super::cluster_version::effective(node);
    if joiner < cluster {
        return Err(Status::failed_precondition(format!(
            "the running cluster's version is {cluster} and this node runs e2d {joiner}: upgrade it to join"
        )));
    }
    Ok(())
}

/// Hands the change to the leader's peer port, as the cluster's own.
async fn relay_to_leader(
    node: &Node,
    requested: Requested,
    joiner_version: String,
) -> Result<ChangeMembersResponse, Status> {
    let leader = node.raft_status().leader_id;
    let url = node
        .peer_url(leader)
        .ok_or_else(|| to_status(Error::NoLeader))?;
    let channel = crate::outgoing::connect(&url)
        .await
        .map_err(|_| to_status(Error::NoLeader))?;
    let relayed = ChangeMembersRequest {
        change: Some(requested),
        relayed: true,
        joiner_version,
    };
    let answer = PeerClient::new(channel).change_members(relayed).await?;
    Ok(answer.into_inner())
}

/// Where member `id` stands in `members`.
pub fn position_of(members: &[MemberAttributes], id: u64) -> Result<usize, Status> {
    members
        .iter()
        .position(|m| m.member_id == id)
        .ok_or_else(|| to_status(Error::MemberNotFound))
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

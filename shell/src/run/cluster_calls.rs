//! The manager's commands that go to a cluster's members: the cluster-wide
//! join lock, the member list, adding a learner, and the guarded remove
//! and promote. They go to peer URLs (from gossip, where each node
//! publishes its own), through the `e2d.peer.Peer` service, in the peer
//! role: the peer port is where members trust each other (with TLS, the
//! peer certificates), so the manager's writes and membership changes are
//! the cluster's own and keep working when a user enables auth, which
//! governs the client port only. Each call tries the given URLs in turn,
//! each with a timeout.

use std::future::Future;
use std::time::Duration;

use e2d_core::manager::{member_ids, ClusterMember};
use e2d_core::version::Version;
use e2d_proto::etcdserverpb::{MemberAddRequest, MemberPromoteRequest, MemberRemoveRequest};
use e2d_proto::peer::change_members_request::Change;
use e2d_proto::peer::join_lock_request::Action;
use e2d_proto::peer::peer_client::PeerClient;
use e2d_proto::peer::{
    ChangeMembersRequest, ChangeMembersResponse, JoinLockRequest, MemberAttributes, MembersRequest,
};
use tonic::transport::Channel;

/// How long one call through one URL may take: longer than a server gives
/// a membership change (7 s), so a slow change is not taken for a failed one.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Calls `call` through the first of `urls` that answers.
async fn through_any<T, F, Fut>(urls: &[String], mut call: F) -> Result<T, String>
where
    F: FnMut(PeerClient<Channel>) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    if urls.is_empty() {
        return Err("no peer URL to call through".into());
    }
    let mut failures = Vec::new();
    for url in urls {
        let attempt = async {
            let channel = crate::outgoing::endpoint(url)?
                .connect_timeout(CALL_TIMEOUT)
                .connect()
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            call(PeerClient::new(channel))
                .await
                .map_err(|s| s.message().to_string())
        };
        match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => failures.push(format!("{url}: {e}")),
            Err(_) => failures.push(format!("{url}: no answer within {CALL_TIMEOUT:?}")),
        }
    }
    Err(failures.join("; "))
}

fn cluster_member(member: &MemberAttributes) -> ClusterMember {
    ClusterMember {
        id: member.member_id,
        name: member.name.clone(),
        peer_url: member.peer_urls.first().cloned().unwrap_or_default(),
        is_learner: member.is_learner,
        caught_up: false,
    }
}

fn cluster_members(members: &[MemberAttributes]) -> Vec<ClusterMember> {
    members.iter().map(cluster_member).collect()
}

/// Takes the join lock for `holder` (taking it again is fine).
pub async fn acquire_join_lock(through: &[String], holder: &str) -> Result<(), String> {
    let current = through_any(through, |mut peer| async move {
        let take = JoinLockRequest {
            action: Action::Take as i32,
            holder: holder.to_string(),
        };
        Ok(peer.join_lock(take).await?.into_inner().holder)
    })
    .await?;
    match current.as_str() {
        current if current == holder => Ok(()),
        // The holder's lease lapsed between the two looks.
        "" => Err("the join lock changed hands; trying again".into()),
        current => Err(format!("the join lock is held by {current}")),
    }
}

/// Releases the join lock if `holder` has it.
pub async fn release_join_lock(through: &[String], holder: &str) -> Result<(), String> {
    through_any(through, |mut peer| async move {
        let release = JoinLockRequest {
            action: Action::Release as i32,
            holder: holder.to_string(),
        };
        peer.join_lock(release).await.map(|_| ())
    })
    .await
}

/// The cluster as a member sees it: its id, its members, the size it
/// should have and its recorded version (`None` from a member that does
/// not say).
pub struct MemberList {
    pub cluster_id: u64,
    pub members: Vec<ClusterMember>,
    pub cluster_size: Option<usize>,
    pub cluster_version: Option<Version>,
}

pub async fn members(through: &[String]) -> Result<MemberList, String> {
    through_any(through, |mut peer| async move {
        let answer = peer.members(MembersRequest {}).await?.into_inner();
        Ok(MemberList {
            cluster_id: answer.cluster_id,
            members: cluster_members(&answer.members),
            cluster_size: usize::try_from(answer.cluster_size).ok().filter(|&n| n > 0),
            cluster_version: Version::parse(&answer.cluster_version),
        })
    })
    .await
}

/// Makes `change` (on the leader, to which the member called relays it).
async fn change_members(
    through: &[String],
    change: Change,
) -> Result<ChangeMembersResponse, String> {
    change_members_as(through, change, String::new()).await
}

/// [`change_members`] for an add of a node that runs `joiner_version`.
async fn change_members_as(
    through: &[String],
    change: Change,
    joiner_version: String,
) -> Result<ChangeMembersResponse, String> {
    through_any(through, |mut peer| {
        let request = ChangeMembersRequest {
            change: Some(change.clone()),
            relayed: false,
            joiner_version: joiner_version.clone(),
        };
        async move { Ok(peer.change_members(request).await?.into_inner()) }
    })
    .await
}

/// Adds a learner with `peer_url`; returns the cluster's id and members
/// after the change.
pub async fn add_learner(
    through: &[String],
    peer_url: &str,
) -> Result<(u64, Vec<ClusterMember>), String> {
    let add = Change::Add(MemberAddRequest {
        peer_ur_ls: vec![peer_url.to_string()],
        is_learner: true,
    });
    let own = crate::server::cluster_version::own().to_string();
    let answer = change_members_as(through, add, own).await?;
    Ok((answer.cluster_id, cluster_members(&answer.members)))
}

/// Fails unless the cluster's members are still `expected`.
async fn check_expected(through: &[String], expected: &[u64]) -> Result<(), String> {
    let now = member_ids(&members(through).await?.members);
    if now != expected {
        return Err(format!(
            "the members changed since the decision ({} now, {} then); deciding again",
            ids_text(&now),
            ids_text(expected)
        ));
    }
    Ok(())
}

fn ids_text(ids: &[u64]) -> String {
    ids.iter()
        .map(|id| format!("{id:x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A change to one member.
#[derive(Debug, Clone, Copy)]
pub enum MemberChange {
    Remove(u64),
    Promote(u64),
}

/// Makes `change` if the cluster's members are still `expected`.
pub async fn change_member(
    through: &[String],
    change: MemberChange,
    expected: &[u64],
) -> Result<(), String> {
    check_expected(through, expected).await?;
    let change = match change {
        MemberChange::Remove(id) => Change::Remove(MemberRemoveRequest { id }),
        MemberChange::Promote(id) => Change::Promote(MemberPromoteRequest { id }),
    };
    change_members(through, change).await.map(|_| ())
}

//! The manager's commands that go through a cluster's client API: the
//! cluster-wide join lock, the member list, adding a learner, and the
//! guarded remove and promote. Each call tries the given client URLs in
//! turn, each with a timeout.

use std::future::Future;
use std::time::Duration;

use e2d_core::manager::{member_ids, ClusterMember};
use e2d_proto::etcdserverpb::cluster_client::ClusterClient;
use e2d_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use e2d_proto::etcdserverpb::kv_client::KvClient;
use e2d_proto::etcdserverpb::lease_client::LeaseClient;
use e2d_proto::etcdserverpb::request_op::Request as Op;
use e2d_proto::etcdserverpb::response_op::Response as OpResponse;
use e2d_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, Member, MemberAddRequest, MemberListRequest,
    MemberPromoteRequest, MemberRemoveRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use tonic::transport::Channel;

/// How long one call through one URL may take: longer than a server gives
/// a membership change (7 s), so a slow change is not taken for a failed one.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The key whose holder may change the membership to join.
const JOIN_LOCK_KEY: &[u8] = b"/_e2d/join-lock";
/// The join lock lapses this long after it was taken, should its holder
/// die before releasing it.
const JOIN_LOCK_TTL_S: i64 = 30;

/// Calls `call` through the first of `urls` that answers.
async fn through_any<T, F, Fut>(urls: &[String], mut call: F) -> Result<T, String>
where
    F: FnMut(Channel) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    if urls.is_empty() {
        return Err("no client URL to call through".into());
    }
    let mut failures = Vec::new();
    for url in urls {
        let attempt = async {
            let channel = crate::outgoing::endpoint(url, crate::outgoing::CallAs::Client)?
                .connect_timeout(CALL_TIMEOUT)
                .connect()
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            call(channel).await.map_err(|s| s.message().to_string())
        };
        match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => failures.push(format!("{url}: {e}")),
            Err(_) => failures.push(format!("{url}: no answer within {CALL_TIMEOUT:?}")),
        }
    }
    Err(failures.join("; "))
}

fn cluster_member(member: &Member) -> ClusterMember {
    ClusterMember {
        id: member.id,
        name: member.name.clone(),
        peer_url: member.peer_ur_ls.first().cloned().unwrap_or_default(),
        is_learner: member.is_learner,
        caught_up: false,
    }
}

/// The cluster id of a Cluster API answer, and its member list.
fn id_and_members(
    header: Option<e2d_proto::etcdserverpb::ResponseHeader>,
    members: &[Member],
) -> (u64, Vec<ClusterMember>) {
    let cluster_id = header.map_or(0, |h| h.cluster_id);
    (cluster_id, members.iter().map(cluster_member).collect())
}

/// Takes the join lock for `holder` (taking it again is fine).
pub async fn acquire_join_lock(through: &[String], holder: &str) -> Result<(), String> {
    let current = through_any(through, |channel| async move {
        let lease = LeaseClient::new(channel.clone())
            .lease_grant(LeaseGrantRequest {
                ttl: JOIN_LOCK_TTL_S,
                id: 0,
            })
            .await?
            .into_inner();
        let take = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Create as i32,
                key: JOIN_LOCK_KEY.to_vec(),
                target_union: Some(TargetUnion::CreateRevision(0)),
                range_end: Vec::new(),
            }],
            success: vec![RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: JOIN_LOCK_KEY.to_vec(),
                    value: holder.as_bytes().to_vec(),
                    lease: lease.id,
                    ..Default::default()
                })),
            }],
            failure: vec![RequestOp {
                request: Some(Op::RequestRange(RangeRequest {
                    key: JOIN_LOCK_KEY.to_vec(),
                    ..Default::default()
                })),
            }],
        };
        let answer = KvClient::new(channel).txn(take).await?.into_inner();
        if answer.succeeded {
            return Ok(Some(holder.to_string()));
        }
        let holder = answer
            .responses
            .into_iter()
            .find_map(|r| match r.response {
                Some(OpResponse::ResponseRange(range)) => range.kvs.into_iter().next(),
                _ => None,
            })
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
        Ok(holder)
    })
    .await?;
    match current {
        Some(current) if current == holder => Ok(()),
        Some(current) => Err(format!("the join lock is held by {current}")),
        // The holder's lease lapsed between the two looks.
        None => Err("the join lock changed hands; trying again".into()),
    }
}

/// Releases the join lock if `holder` has it.
pub async fn release_join_lock(through: &[String], holder: &str) -> Result<(), String> {
    through_any(through, |channel| async move {
        let release = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Value as i32,
                key: JOIN_LOCK_KEY.to_vec(),
                target_union: Some(TargetUnion::Value(holder.as_bytes().to_vec())),
                range_end: Vec::new(),
            }],
            success: vec![RequestOp {
                request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                    key: JOIN_LOCK_KEY.to_vec(),
                    ..Default::default()
                })),
            }],
            failure: Vec::new(),
        };
        KvClient::new(channel).txn(release).await.map(|_| ())
    })
    .await
}

/// The cluster's id and members.
pub async fn members(through: &[String]) -> Result<(u64, Vec<ClusterMember>), String> {
    through_any(through, |channel| async move {
        let answer = ClusterClient::new(channel)
            .member_list(MemberListRequest { linearizable: true })
            .await?
            .into_inner();
        Ok(id_and_members(answer.header, &answer.members))
    })
    .await
}

/// Adds a learner with `peer_url`; returns the cluster's id and members
/// after the change.
pub async fn add_learner(
    through: &[String],
    peer_url: &str,
) -> Result<(u64, Vec<ClusterMember>), String> {
    through_any(through, |channel| async move {
        let answer = ClusterClient::new(channel)
            .member_add(MemberAddRequest {
                peer_ur_ls: vec![peer_url.to_string()],
                is_learner: true,
            })
            .await?
            .into_inner();
        Ok(id_and_members(answer.header, &answer.members))
    })
    .await
}

/// Fails unless the cluster's members are still `expected`.
async fn check_expected(through: &[String], expected: &[u64]) -> Result<(), String> {
    let (_, now) = members(through).await?;
    let now = member_ids(&now);
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
    through_any(through, |channel| async move {
        let mut client = ClusterClient::new(channel);
        match change {
            MemberChange::Remove(id) => client
                .member_remove(MemberRemoveRequest { id })
                .await
                .map(|_| ()),
            MemberChange::Promote(id) => client
                .member_promote(MemberPromoteRequest { id })
                .await
                .map(|_| ()),
        }
    })
    .await
}

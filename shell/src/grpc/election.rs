//! The Election service (etcd's `v3electionpb.Election`): Campaign waits
//! in the key queue of [`super::key_queue`] until the caller's key is the
//! oldest; the leader's key carries the proclaimed value; Observe follows
//! whichever key leads.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use e2d_proto::etcdserverpb::{ResponseHeader, TxnRequest};
use e2d_proto::mvccpb::{event::EventType, KeyValue};
use e2d_proto::peer::proposal::Op;
use e2d_proto::v3electionpb::election_server::Election;
use e2d_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use tonic::{Request, Response, Status};

use super::key_queue::{
    created_at, delete_op, join_txn, joined_at, key_of, prefix_of, put_op, Caller, Failure, Turn,
    WithdrawOnDrop,
};
use crate::server::key_watch::KeyWatch;
use crate::server::Node;

type Observed = Pin<Box<dyn futures_util::Stream<Item = Result<LeaderResponse, Status>> + Send>>;

pub struct ElectionService {
    node: Arc<Node>,
}

impl ElectionService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let caller = Caller::of(&self.node, &request).await?;
        Ok(Response::new(
            campaign(&caller, request.into_inner()).await?,
        ))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let caller = Caller::of(&self.node, &request).await?;
        let req = request.into_inner();
        let leader = req.leader.ok_or(Failure::MissingLeaderKey)?;
        let lease = caller.session_lease(leader.lease).await?;
        let header = proclaim(&caller, &leader, lease, req.value).await?;
        Ok(Response::new(ProclaimResponse { header }))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let caller = Caller::of(&self.node, &request).await?;
        let prefix = prefix_of(&request.into_inner().name);
        let (first, header) = caller.first_created(&prefix).await?;
        let kv = first.ok_or(Failure::NoLeader)?;
        Ok(Response::new(LeaderResponse {
            header,
            kv: Some(kv),
        }))
    }

    type ObserveStream = Observed;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let caller = Caller::of(&self.node, &request).await?;
        let observer = Observer {
            caller,
            prefix: prefix_of(&request.into_inner().name),
            following: None,
            ready: VecDeque::new(),
        };
        let responses = futures_util::stream::unfold(Box::new(observer), |mut observer| async {
            let response = observer.next().await?;
            Some((Ok(response), observer))
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let caller = Caller::of(&self.node, &request).await?;
        let leader = request
            .into_inner()
            .leader
            .ok_or(Failure::MissingLeaderKey)?;
        // As etcd's, which opens a session on the leader's lease first.
        caller.session_lease(leader.lease).await?;
        let resigned = caller.txn(resign_txn(&leader)).await?;
        Ok(Response::new(ResignResponse {
            header: resigned.header,
        }))
    }
}

/// etcd's `concurrency.Election.Campaign` under the caller's lease.
///
/// One difference: a campaigner whose key is deleted while it waits (its
/// lease ended) is told `election: not leader` at once; etcd's waits for
/// the keys before it and then answers as if elected.
async fn campaign(caller: &Caller, req: CampaignRequest) -> Result<CampaignResponse, Failure> {
    let lease = caller.session_lease(req.lease).await?;
    let prefix = prefix_of(&req.name);
    let key = key_of(&prefix, lease);
    let joined = caller
        .txn(join_txn(&key, req.value.clone(), lease, None))
        .await?;
    let (rev, existing) = joined_at(&joined);
    let stale_value = existing.is_some_and(|kv| kv.value[..] != req.value[..]);
    let leader = LeaderKey {
        name: req.name,
        key,
        rev,
        lease,
    };
    if stale_value {
        // A campaigner that joins again posts its new value.
        if let Err(failure) = proclaim(caller, &leader, lease, req.value).await {
            let _ = caller.txn(resign_txn(&leader)).await;
            return Err(failure);
        }
    }
    // A client that gives up while waiting resigns.
    let withdraw = WithdrawOnDrop::new(caller.node(), Op::Txn(resign_txn(&leader)));
    let turn = caller.wait_for_turn(&prefix, &leader.key, rev).await;
    withdraw.disarm();
    match turn? {
        Turn::Reached => Ok(CampaignResponse {
            header: joined.header,
            leader: Some(leader),
        }),
        Turn::OwnKeyGone => Err(Failure::NotLeader),
    }
}

/// Posts `value` on the leader's key if it still leads (its key has the
/// create revision it was elected with).
async fn proclaim(
    caller: &Caller,
    leader: &LeaderKey,
    lease: i64,
    value: Vec<u8>,
) -> Result<Option<ResponseHeader>, Failure> {
    let txn = TxnRequest {
        compare: vec![created_at(&leader.key, leader.rev)],
        success: vec![put_op(&leader.key, value, lease)],
        failure: Vec::new(),
    };
    let resp = caller.txn(txn).await?;
    if !resp.succeeded {
        return Err(Failure::NotLeader);
    }
    Ok(resp.header)
}

/// Deletes the leader's key if it still is the one elected.
fn resign_txn(leader: &LeaderKey) -> TxnRequest {
    TxnRequest {
        compare: vec![created_at(&leader.key, leader.rev)],
        success: vec![delete_op(&leader.key)],
        failure: Vec::new(),
    }
}

/// One Observe stream (etcd's `Election.Observe`): the leader's key-value
/// now (or, with no leader, the first key put), then every put of that key
/// until it is deleted, then the next leader's.
struct Observer {
    caller: Caller,
    prefix: Vec<u8>,
    /// The watch of the leader's key, once there is a leader.
    following: Option<KeyWatch>,
    /// Responses made and not yet sent: at most one watch batch.
    ready: VecDeque<LeaderResponse>,
}

impl Observer {
    /// The stream's next response; `None` ends it, as etcd's ends (with no
    /// error) when a read or a watch fails.
    async fn next(&mut self) -> Option<LeaderResponse> {
        loop {
            if let Some(response) = self.ready.pop_front() {
                return Some(response);
            }
            match &mut self.following {
                None => {
                    let (kv, header) = self.find_leader().await.ok()?;
                    let from = header.as_ref().map_or(0, |h| h.revision) + 1;
                    let watch = self.caller.watch(kv.key.to_vec(), Vec::new(), from, false);
                    self.following = Some(watch);
                    self.ready.push_back(LeaderResponse {
                        header,
                        kv: Some(kv),
                    });
                }
                Some(watch) => {
                    let batch = watch.next().await.ok()?;
                    let header = self.node().header(batch.revision);
                    for event in batch.events {
                        if event.r#type == EventType::Delete as i32 {
                            self.following = None;
                            break;
                        }
                        self.ready.push_back(LeaderResponse {
                            header,
                            kv: event.kv,
                        });
                    }
                }
            }
        }
    }

    /// The leader, or with none, the first key put under the prefix after
    /// the read that found none.
    async fn find_leader(&self) -> Result<(KeyValue, Option<ResponseHeader>), Failure> {
        let (first, header) = self.caller.first_created(&self.prefix).await?;
        if let Some(kv) = first {
            return Ok((kv, header));
        }
        let read_at = header.map_or(0, |h| h.revision);
        let range_end = e2d_core::apply::prefix_end(&self.prefix);
        let mut watch = self
            .caller
            .watch(self.prefix.clone(), range_end, read_at.max(1), false);
        loop {
            let batch = watch.next().await?;
            let put = batch
                .events
                .into_iter()
                .find(|e| e.r#type == EventType::Put as i32)
                .and_then(|e| e.kv);
            if let Some(kv) = put {
                // As etcd: the header of a leader seen put is at its put.
                let header = self.node().header(kv.mod_revision);
                return Ok((kv, header));
            }
        }
    }

    fn node(&self) -> &Arc<Node> {
        self.caller.node()
    }
}

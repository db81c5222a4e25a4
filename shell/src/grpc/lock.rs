//! The Lock service (etcd's `v3lockpb.Lock`): Lock waits in the key queue
//! of [`super::key_queue`] until the caller's key is the oldest; Unlock
//! deletes the key.

use std::sync::Arc;

use e2d_proto::etcdserverpb::{DeleteRangeRequest, RangeRequest, ResponseHeader};
use e2d_proto::peer::proposal::Op;
use e2d_proto::v3lockpb::lock_server::Lock;
use e2d_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use super::key_queue::{
    first_created_range, join_txn, joined_at, key_of, prefix_of, range_kvs, Caller, Failure, Turn,
    WithdrawOnDrop,
};
use crate::server::Node;

pub struct LockService {
    node: Arc<Node>,
}

impl LockService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let caller = Caller::of(&self.node, &request).await?;
        Ok(Response::new(lock(&caller, request.into_inner()).await?))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let caller = Caller::of(&self.node, &request).await?;
        let header = caller.delete(request.into_inner().key).await?;
        Ok(Response::new(UnlockResponse { header }))
    }
}

/// etcd's `concurrency.Mutex.Lock` under the caller's lease.
async fn lock(caller: &Caller, req: LockRequest) -> Result<LockResponse, Failure> {
    let lease = caller.session_lease(req.lease).await?;
    let prefix = prefix_of(&req.name);
    let key = key_of(&prefix, lease);
    let joined = caller
        .txn(join_txn(
            &key,
            Vec::new(),
            lease,
            Some(first_created_range(&prefix)),
        ))
        .await?;
    let (own_revision, _) = joined_at(&joined);
    // The txn read the holder too: uncontended, one round trip is all.
    let holder = range_kvs(&joined, 1).first();
    if holder.is_none_or(|kv| kv.create_revision == own_revision) {
        return Ok(LockResponse {
            header: joined.header,
            key,
        });
    }
    // A client that gives up while waiting takes its key back out.
    let delete_own = Op::DeleteRange(DeleteRangeRequest {
        key: key.clone(),
        ..Default::default()
    });
    let withdraw = WithdrawOnDrop::new(caller.node(), delete_own);
    let held = wait_held(caller, &prefix, &key, own_revision).await;
    if let Err(Failure::Store(_)) = &held {
        // As etcd: a lock whose wait failed is released before the answer
        // (a lost key has nothing to release).
        let _ = caller.delete(key.clone()).await;
    }
    withdraw.disarm();
    Ok(LockResponse { header: held?, key })
}

/// Waits until `key` holds the lock; the header of the read that found it
/// still there (its lease may have ended while it waited).
async fn wait_held(
    caller: &Caller,
    prefix: &[u8],
    key: &[u8],
    own_revision: i64,
) -> Result<Option<ResponseHeader>, Failure> {
    if caller.wait_for_turn(prefix, key, own_revision).await? == Turn::OwnKeyGone {
        return Err(Failure::SessionExpired);
    }
    let own = caller
        .range(&RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })
        .await?;
    if own.kvs.is_empty() {
        return Err(Failure::SessionExpired);
    }
    Ok(own.header)
}

//! The KV service: Range, Put, DeleteRange, Txn, Compact.

use std::sync::Arc;

use e2d_core::validate;
use e2d_proto::etcdserverpb::kv_server::Kv;
use e2d_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use prost::Message;
use tonic::{Request, Response, Status};

use super::status::{check_has_leader, check_request_size, to_status};
use e2d_proto::peer::proposal::Op;

use crate::auth::{identify, requester};
use crate::server::Node;

/// Values a range reads while it holds the state's lock, at most: a
/// larger one reads them from a point in time after letting it go.
const VALUES_READ_UNDER_LOCK_MAX: usize = 64;

pub struct KvService {
    node: Arc<Node>,
}

impl KvService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

/// Unwraps the outcome a write op must produce; anything else is a bug.
macro_rules! expect_outcome {
    ($outcome:expr, $variant:ident) => {
        match $outcome {
            Ok(e2d_proto::peer::outcome::Result::$variant(resp)) => resp,
            Err(e) => return Err($crate::grpc::to_status(e)),
            Ok(other) => unreachable!("write answered with {other:?}"),
        }
    };
}
pub(crate) use expect_outcome;

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        check_has_leader(request.metadata(), &self.node)?;
        let who = identify(&self.node, request.metadata(), request.extensions()).await?;
        let req = request.into_inner();
        validate::check_range(&req).map_err(to_status)?;
        if !req.serializable {
            self.node.linearizable_barrier().await.map_err(to_status)?;
        }
        // The key index is read under the state's lock. A range that
        // reads many values reads them after letting the lock go, from a
        // point in time of the tables taken with the index, so writes
        // (which take the lock to apply) do not wait for it.
        let mut resp = {
            let state = self.node.read();
            let who = who.unwrap_or_default();
            state.auth().check_get(&who, &req).map_err(to_status)?;
            let plan = state.plan_range(&req).map_err(to_status)?;
            if plan.values_to_read() <= VALUES_READ_UNDER_LOCK_MAX {
                plan.finish(state.mvcc().backend()).map_err(to_status)?
            } else {
                let tables = state.mvcc().backend().point_in_time();
                drop(state);
                // Many reads: the worker's other tasks move to another
                // thread meanwhile.
                crate::blocking::in_place(|| plan.finish(&crate::storage::View(&tables)))
                    .map_err(to_status)?
            }
        };
        self.node.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        check_has_leader(request.metadata(), &self.node)?;
        let who = identify(&self.node, request.metadata(), request.extensions()).await?;
        let req = request.into_inner();
        check_request_size(req.encoded_len(), self.node.config.max_request_bytes)?;
        validate::check_put(&req).map_err(to_status)?;
        let outcome = self
            .node
            .propose_as(Op::Put(req), Some(requester(&who)))
            .await;
        let mut resp = expect_outcome!(outcome, Put);
        self.node.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        check_has_leader(request.metadata(), &self.node)?;
        let who = identify(&self.node, request.metadata(), request.extensions()).await?;
        let req = request.into_inner();
        check_request_size(req.encoded_len(), self.node.config.max_request_bytes)?;
        validate::check_delete_range(&req).map_err(to_status)?;
        let outcome = self
            .node
            .propose_as(Op::DeleteRange(req), Some(requester(&who)))
            .await;
        let mut resp = expect_outcome!(outcome, DeleteRange);
        self.node.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        check_has_leader(request.metadata(), &self.node)?;
        let who = identify(&self.node, request.metadata(), request.extensions()).await?;
        let req = request.into_inner();
        check_request_size(req.encoded_len(), self.node.config.max_request_bytes)?;
        validate::check_txn(&req).map_err(to_status)?;
        let mut resp = if e2d_core::state_machine::is_read_only(&req) {
            self.node.linearizable_barrier().await.map_err(to_status)?;
            let state = self.node.read();
            let who = who.unwrap_or_default();
            state
                .auth()
                .check_txn(&who, state.lessor(), &req)
                .map_err(to_status)?;
            state.txn_read_only(&req).map_err(to_status)?
        } else {
            let outcome = self
                .node
                .propose_as(Op::Txn(req), Some(requester(&who)))
                .await;
            expect_outcome!(outcome, Txn)
        };
        self.node.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        check_has_leader(request.metadata(), &self.node)?;
        let req = request.into_inner();
        let physical = req.physical;
        let mut resp = expect_outcome!(self.node.propose(Op::Compaction(req)).await, Compaction);
        if physical {
            // As etcd: the answer waits until this member's kv table holds
            // none of what the compaction dropped.
            while self.node.read().compaction_under_way() {
                tokio::time::sleep(crate::server::COMPACTION_STEP_INTERVAL).await;
            }
        }
        self.node.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }
}

//! The single writer: applies writes to the state machine in arrival
//! order, commits each batch with one fsync, then answers and publishes
//! the new revision. Nothing is acknowledged before it is on disk.

use std::sync::Arc;

use e2d_core::storage::{Backend, Table};
use e2d_core::{Error, StateMachine};
use e2d_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, CompactionRequest, CompactionResponse, DeleteRangeRequest,
    DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutRequest, PutResponse,
    TxnRequest, TxnResponse,
};
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};

use super::node::META_APPLIED_INDEX;
use super::Node;
use crate::storage::FjallBackend;

/// Writes waiting for the writer; senders wait when it is full.
pub const WRITE_QUEUE_MAX: usize = 4096;
/// Writes applied and synced together.
pub const WRITE_BATCH_MAX: usize = 512;

#[derive(Debug)]
pub enum WriteOp {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    LeaseGrant { id: i64, ttl_seconds: i64 },
    LeaseRevoke { id: i64 },
    LeaseRenew { id: i64 },
    LeaseCheckpoint,
    Alarm(AlarmRequest),
}

#[derive(Debug)]
pub enum WriteOutcome {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseRenew { ttl_seconds: i64 },
    LeaseCheckpoint,
    Alarm(AlarmResponse),
    Failed(Error),
}

pub(super) struct WriteJob {
    pub op: WriteOp,
    pub reply: oneshot::Sender<WriteOutcome>,
}

pub(super) async fn run(
    node: Arc<Node>,
    mut jobs: mpsc::Receiver<WriteJob>,
    revision: watch::Sender<i64>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH_MAX);
    while jobs.recv_many(&mut batch, WRITE_BATCH_MAX).await > 0 {
        let outcomes = tokio::task::block_in_place(|| apply_batch(&node, &batch));
        let (outcomes, current) = match outcomes {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "cannot write to the data dir; stopping so no unsynced state is served");
                std::process::exit(1);
            }
        };
        revision.send_if_modified(|r| {
            let changed = *r != current;
            *r = current;
            changed
        });
        for (job, outcome) in batch.drain(..).zip(outcomes) {
            let _ = job.reply.send(outcome);
        }
    }
}

fn apply_batch(node: &Node, batch: &[WriteJob]) -> Result<(Vec<WriteOutcome>, i64), Error> {
    let mut state = node
        .state_for_writer()
        .write()
        .unwrap_or_else(|p| p.into_inner());
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        let outcome = match apply(node, &mut state, &job.op) {
            Err(Error::Storage(e)) => return Err(Error::Storage(e)),
            Err(e) => WriteOutcome::Failed(e),
            Ok(outcome) => outcome,
        };
        outcomes.push(outcome);
    }
    let applied_index = node.advance_applied_index(batch.len() as u64);
    state.backend_mut().put(
        Table::Meta,
        META_APPLIED_INDEX,
        &applied_index.to_be_bytes(),
    );
    state.backend_mut().commit(true)?;
    Ok((outcomes, state.current_revision()))
}

fn apply(
    node: &Node,
    state: &mut StateMachine<FjallBackend>,
    op: &WriteOp,
) -> Result<WriteOutcome, Error> {
    let quota = |state: &mut StateMachine<FjallBackend>, bytes: usize| {
        state.check_quota(
            node.identity.member_id,
            node.config.quota_backend_bytes,
            bytes as u64,
        )
    };
    let now_ms = node.clock.now_ms();
    Ok(match op {
        WriteOp::Put(req) => {
            quota(state, req.encoded_len())?;
            WriteOutcome::Put(state.put(req)?)
        }
        WriteOp::DeleteRange(req) => WriteOutcome::DeleteRange(state.delete_range(req)?),
        WriteOp::Txn(req) => {
            if !e2d_core::state_machine::is_read_only(req) {
                quota(state, req.encoded_len())?;
            }
            WriteOutcome::Txn(state.txn(req)?)
        }
        WriteOp::Compact(req) => WriteOutcome::Compact(state.compact(req)?),
        WriteOp::LeaseGrant { id, ttl_seconds } => {
            quota(state, 64)?;
            WriteOutcome::LeaseGrant(state.lease_grant(*id, *ttl_seconds, now_ms)?)
        }
        WriteOp::LeaseRevoke { id } => WriteOutcome::LeaseRevoke(state.lease_revoke(*id)?),
        WriteOp::LeaseRenew { id } => WriteOutcome::LeaseRenew {
            ttl_seconds: state.lease_renew(*id, now_ms)?,
        },
        WriteOp::LeaseCheckpoint => {
            state.checkpoint_leases(now_ms);
            WriteOutcome::LeaseCheckpoint
        }
        WriteOp::Alarm(req) => WriteOutcome::Alarm(state.alarm(req)),
    })
}

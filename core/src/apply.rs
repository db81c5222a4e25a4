//! Applying a replicated proposal (a raft log entry) to the state machine.
//! Every member applies the same proposals in the same order; only lease
//! expiry times depend on the member's own clock.

use e2d_proto::peer::outcome::Result as Applied;
use e2d_proto::peer::proposal::Op;
use e2d_proto::peer::{Done, MemberAttributes, Outcome, Proposal};
use prost::Message;

use e2d_proto::etcdserverpb::{AuthenticateResponse, ResponseHeader};

use crate::auth::{AuthInfo, AuthStore, Changed};
use crate::error::Error;
use crate::membership::{self, Change};
use crate::state_machine::{Answer, StateMachine};
use crate::storage::{Backend, StorageError, Table};

const META_MEMBER_PREFIX: &[u8] = b"member/";
/// Ids of members removed from the cluster (they never come back).
const META_REMOVED_MEMBER_PREFIX: &[u8] = b"removed_member/";

impl<B: Backend> StateMachine<B> {
    /// Applies a committed proposal and answers it.
    pub fn apply(&mut self, proposal: &Proposal, now_ms: u64) -> Result<Outcome, Error> {
        self.apply_for(proposal, now_ms, Answer::Wanted)
    }

    /// Applies a committed proposal, answered as `answer` says: a member
    /// applies every entry, but only the one a client asked through needs
    /// what its txns' ranges read (see [`Answer::Discarded`]).
    pub fn apply_for(
        &mut self,
        proposal: &Proposal,
        now_ms: u64,
        answer: Answer,
    ) -> Result<Outcome, Error> {
        if let (Some(requester), Some(op)) = (&proposal.requester, &proposal.op) {
            let who = AuthInfo::new(requester.user.clone(), requester.auth_revision);
            self.check_permitted(&who, op)?;
        }
        let done = || Applied::Done(Done {});
        let result = match &proposal.op {
            Some(Op::Put(req)) => Applied::Put(self.put(req)?),
            Some(Op::DeleteRange(req)) => Applied::DeleteRange(self.delete_range(req)?),
            Some(Op::Txn(req)) => Applied::Txn(self.txn_for(req, answer)?),
            Some(Op::Compaction(req)) => Applied::Compaction(self.compact(req)?),
            Some(Op::LeaseGrant(grant)) => {
                Applied::LeaseGrant(self.lease_grant(grant.id, grant.ttl_seconds, now_ms)?)
            }
            Some(Op::LeaseRevoke(revoke)) => Applied::LeaseRevoke(self.lease_revoke(revoke.id)?),
            Some(Op::LeaseCheckpoint(checkpoint)) => {
                let leases: Vec<(i64, u64)> = checkpoint
                    .leases
                    .iter()
                    .map(|l| (l.id, l.remaining_ms))
                    .collect();
                self.lease_checkpoint(&leases, now_ms);
                done()
            }
            Some(Op::Alarm(req)) => Applied::Alarm(self.alarm(req)),
            Some(Op::MemberAttributes(announced)) => {
                // A member names itself and its URLs; whether it votes is
                // the membership's business, and a removed member stays out.
                if let Some(known) = self.member(announced.member_id)? {
                    self.put_member(&MemberAttributes {
                        is_learner: known.is_learner,
                        ..announced.clone()
                    });
                }
                done()
            }
            Some(Op::InitialMembers(list)) => {
                for member in &list.members {
                    self.put_member(member);
                }
                done()
            }
            Some(Op::Auth(change)) => match self.apply_auth_change(change, now_ms)? {
                Changed::Done => done(),
                Changed::Token(token) => Applied::Authenticate(AuthenticateResponse {
                    header: Some(ResponseHeader {
                        revision: self.current_revision(),
                        ..Default::default()
                    }),
                    token,
                }),
            },
            None => done(),
        };
        Ok(Outcome {
            result: Some(result),
        })
    }

    /// Checks again, as the entry applies, that its requester may make it
    /// (etcd's `authApplierV3`): the store may have changed since the
    /// member that proposed it checked.
    fn check_permitted(&self, who: &AuthInfo, op: &Op) -> Result<(), Error> {
        let auth = self.auth();
        match op {
            Op::Put(req) => auth.check_put(who, self.lessor(), req),
            Op::DeleteRange(req) => auth.check_delete_range(who, req),
            Op::Txn(req) => auth.check_txn(who, self.lessor(), req),
            Op::LeaseRevoke(revoke) => auth.check_lease_revoke(who, self.lessor(), revoke.id),
            Op::Auth(change) if AuthStore::needs_admin(change) => auth.check_admin(who),
            _ => Ok(()),
        }
    }

    /// Applies a committed membership change to the member list, unless
    /// the list as it stands refuses it
    /// ([`membership::check_replicated`]): then nothing changes, and the
    /// refusal is what its proposer hears. Every member decides the same,
    /// provided every earlier entry's writes are committed: the member
    /// list is read by a scan, which sees committed writes only. The outer
    /// error is a storage failure.
    pub fn apply_member_change(&mut self, change: &Change) -> Result<Result<(), Error>, Error> {
        let members = self.members()?;
        if let Err(refused) = membership::check_replicated(&members, change) {
            return Ok(Err(refused));
        }
        match change {
            Change::Add(member) => self.put_member(member),
            Change::Promote { id } => {
                if let Some(known) = members.into_iter().find(|m| m.member_id == *id) {
                    self.put_member(&MemberAttributes {
                        is_learner: false,
                        ..known
                    });
                }
            }
            Change::Remove { id } => self.remove_member(*id),
        }
        Ok(Ok(()))
    }

    /// Adds or replaces a member of the replicated member list.
    pub fn put_member(&mut self, member: &MemberAttributes) {
        self.backend_mut().put(
            Table::Meta,
            &member_key(member.member_id),
            &member.encode_to_vec(),
        );
    }

    /// Removes a member for good: its id is remembered, so that its raft
    /// traffic can be refused should it come back.
    pub fn remove_member(&mut self, member_id: u64) {
        self.backend_mut()
            .delete(Table::Meta, &member_key(member_id));
        self.backend_mut()
            .put(Table::Meta, &removed_member_key(member_id), &[]);
    }

    /// Whether `member_id` was removed from the cluster.
    pub fn is_removed_member(&self, member_id: u64) -> Result<bool, Error> {
        Ok(self
            .mvcc()
            .backend()
            .get(Table::Meta, &removed_member_key(member_id))?
            .is_some())
    }

    pub fn member(&self, member_id: u64) -> Result<Option<MemberAttributes>, Error> {
        match self
            .mvcc()
            .backend()
            .get(Table::Meta, &member_key(member_id))?
        {
            None => Ok(None),
            Some(bytes) => MemberAttributes::decode(bytes)
                .map(Some)
                .map_err(|_| StorageError(format!("corrupt member entry {member_id:x}")).into()),
        }
    }

    /// The replicated member list, by id.
    pub fn members(&self) -> Result<Vec<MemberAttributes>, Error> {
        let mut members = Vec::new();
        let mut corrupt = None;
        let end = prefix_end(META_MEMBER_PREFIX);
        self.mvcc()
            .backend()
            .scan(Table::Meta, META_MEMBER_PREFIX, &end, &mut |key, value| {
                match MemberAttributes::decode(value) {
                    Ok(member) => members.push(member),
                    Err(_) => {
                        corrupt = Some(StorageError(format!("corrupt member entry {key:02x?}")));
                        return false;
                    }
                }
                true
            })?;
        match corrupt {
            Some(e) => Err(e.into()),
            None => Ok(members),
        }
    }
}

fn member_key(member_id: u64) -> Vec<u8> {
    let mut key = META_MEMBER_PREFIX.to_vec();
    key.extend_from_slice(&member_id.to_be_bytes());
    key
}

fn removed_member_key(member_id: u64) -> Vec<u8> {
    let mut key = META_REMOVED_MEMBER_PREFIX.to_vec();
    key.extend_from_slice(&member_id.to_be_bytes());
    key
}

/// The first key after every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    Vec::new()
}

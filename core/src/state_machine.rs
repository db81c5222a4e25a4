//! The etcd state machine: applies KV, lease and alarm requests to the
//! MVCC store, the lessor and the alarm list, with etcd's semantics.
//!
//! Every response carries a header holding only the revision; the shell
//! fills in cluster id, member id and raft term. Validation that depends on
//! the request alone lives in [`crate::validate`] and runs before this.

use std::collections::BTreeSet;

use e2d_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use e2d_proto::etcdserverpb::{
    alarm_request::AlarmAction, request_op::Request, response_op::Response, AlarmMember,
    AlarmRequest, AlarmResponse, AlarmType, CompactionRequest, CompactionResponse, Compare,
    DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse, LeaseLeasesResponse,
    LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use e2d_proto::mvccpb::KeyValue;

use e2d_proto::peer::AuthChange;

use crate::auth::{AuthStore, Changed, SimpleTokens};
use crate::error::Error;
use crate::lease::{LeaseId, LeaseRecord, Lessor, NO_LEASE};
use crate::mvcc::{IndexBuilder, KeySpan, Live, Mvcc, RangePlan, Reads, WriteTxn};
use crate::storage::{Backend, StorageError, Table};

/// Where alarms live in the `Meta` table.
pub const META_ALARM_PREFIX: &[u8] = b"alarm/";

pub struct StateMachine<B: Backend> {
    mvcc: Mvcc<B>,
    lessor: Lessor,
    alarms: BTreeSet<(u64, i32)>,
    auth: AuthStore,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

impl<B: Backend> StateMachine<B> {
    /// Opens the state machine over `backend`; leases restart with the time
    /// they had left at their last checkpoint, counted from `now_ms`.
    pub fn open(backend: B, now_ms: u64) -> Result<Self, Error> {
        let mut state = Self {
            mvcc: Mvcc::open(backend)?,
            lessor: Lessor::default(),
            alarms: BTreeSet::new(),
            auth: AuthStore::default(),
        };
        state.reload_leases_and_alarms(now_ms)?;
        state.reload_auth()?;
        Ok(state)
    }

    /// Rebuilds everything held in memory from the backend's committed
    /// contents, as after a restart.
    pub fn reload(&mut self, now_ms: u64) -> Result<(), Error> {
        self.mvcc.reload()?;
        self.reload_leases_and_alarms(now_ms)?;
        self.reload_auth()
    }

    /// As [`StateMachine::reload`], with the key index `built` as the kv
    /// table was written ([`crate::mvcc::Mvcc::reload_with`]).
    pub fn reload_with(&mut self, now_ms: u64, built: IndexBuilder) -> Result<(), Error> {
        self.mvcc.reload_with(built)?;
        self.reload_leases_and_alarms(now_ms)?;
        self.reload_auth()
    }

    /// Reads the auth store again; this member's tokens stay.
    fn reload_auth(&mut self) -> Result<(), Error> {
        let tokens = std::mem::take(&mut self.auth).into_tokens();
        self.auth = AuthStore::load(self.mvcc.backend(), tokens)?;
        Ok(())
    }

    /// The auth store as of the last applied entry.
    pub fn auth(&self) -> &AuthStore {
        &self.auth
    }

    /// How long this member's simple tokens live past their last use.
    pub fn set_token_ttl_ms(&mut self, ttl_ms: u64) {
        *self.auth.tokens_mut() = SimpleTokens::new(ttl_ms);
    }

    /// Applies a change to the auth store (see [`crate::auth`]).
    pub fn apply_auth_change(
        &mut self,
        change: &AuthChange,
        now_ms: u64,
    ) -> Result<Changed, Error> {
        let backend = self.mvcc.backend_mut();
        self.auth.apply_change(change, backend, now_ms)
    }

    fn reload_leases_and_alarms(&mut self, now_ms: u64) -> Result<(), Error> {
        let mvcc = &self.mvcc;
        let mut lessor = Lessor::default();
        let mut corrupt = None;
        mvcc.backend()
            .scan(Table::Lease, &[], &[], &mut |key, value| {
                let id = key.try_into().ok().map(i64::from_be_bytes);
                match (id, LeaseRecord::decode(value)) {
                    (Some(id), Some(record)) => lessor.restore(id, record, now_ms),
                    _ => {
                        corrupt = Some(StorageError(format!("corrupt lease record {key:02x?}")));
                        return false;
                    }
                }
                true
            })?;
        if let Some(e) = corrupt {
            return Err(e.into());
        }
        mvcc.visit_current_leases(&mut |key, lease| {
            if lease != NO_LEASE {
                lessor.attach(lease, key);
            }
        });
        let mut alarms = BTreeSet::new();
        let alarm_end = crate::apply::prefix_end(META_ALARM_PREFIX);
        mvcc.backend()
            .scan(Table::Meta, META_ALARM_PREFIX, &alarm_end, &mut |key, _| {
                if let Some(alarm) = decode_alarm_key(key) {
                    alarms.insert(alarm);
                }
                true
            })?;
        self.lessor = lessor;
        self.alarms = alarms;
        Ok(())
    }

    pub fn mvcc(&self) -> &Mvcc<B> {
        &self.mvcc
    }

    /// Gives the backend back, with everything staged in it.
    pub fn into_backend(self) -> B {
        self.mvcc.into_backend()
    }

    pub fn backend_mut(&mut self) -> &mut B {
        self.mvcc.backend_mut()
    }

    pub fn lessor(&self) -> &Lessor {
        &self.lessor
    }

    pub fn current_revision(&self) -> i64 {
        self.mvcc.current_revision()
    }

    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, Error> {
        self.plan_range(req)?.finish(self.mvcc.backend())
    }

    /// [`StateMachine::range`] with the key index read and the values
    /// not yet: see [`RangePlan`].
    pub fn plan_range(&self, req: &RangeRequest) -> Result<RangePlan, Error> {
        let read_main = self.mvcc.resolve_read_revision(req.revision)?;
        self.mvcc.plan_range(req, read_main)
    }

    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse, Error> {
        self.refuse_writes_if_corrupt()?;
        self.refuse_writes_without_space()?;
        self.check_put_preconditions(req, self.mvcc.current_revision())?;
        let mut txn = self.mvcc.write();
        let resp = apply_put(&mut txn, &mut self.lessor, req)?;
        txn.end();
        Ok(resp)
    }

    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, Error> {
        self.refuse_writes_if_corrupt()?;
        let mut txn = self.mvcc.write();
        let resp = apply_delete(&mut txn, &mut self.lessor, req)?;
        txn.end();
        Ok(resp)
    }

    /// A txn that reaches the log is refused whole under the CORRUPT alarm,
    /// as etcd does; one without writes is served by
    /// [`Self::txn_read_only`] instead.
    pub fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, Error> {
        self.txn_for(req, Answer::Wanted)
    }

    /// [`StateMachine::txn`], answered as `answer` says.
    pub(crate) fn txn_for(
        &mut self,
        req: &TxnRequest,
        answer: Answer,
    ) -> Result<TxnResponse, Error> {
        self.refuse_writes_if_corrupt()?;
        if !self.alarms_of(AlarmType::Nospace).is_empty() && !is_read_only(req) {
            return Err(Error::NoSpace);
        }
        let mut path = Vec::new();
        self.choose_path(req, &mut path)?;
        // As etcd: the puts of the whole path first, then the ranges.
        self.check_txn_preconditions(req, &mut path.iter().copied(), true)?;
        self.check_txn_preconditions(req, &mut path.iter().copied(), false)?;
        let mut txn = self.mvcc.write();
        let resp = apply_txn(
            &mut txn,
            &mut self.lessor,
            req,
            &mut path.iter().copied(),
            answer,
        )?;
        txn.end();
        Ok(resp)
    }

    /// Serves a txn that writes nothing without taking the write path.
    pub fn txn_read_only(&self, req: &TxnRequest) -> Result<TxnResponse, Error> {
        assert!(
            is_read_only(req),
            "txn_read_only is for txns without writes"
        );
        let mut path = Vec::new();
        self.choose_path(req, &mut path)?;
        // As etcd: the puts of the whole path first, then the ranges.
        self.check_txn_preconditions(req, &mut path.iter().copied(), true)?;
        self.check_txn_preconditions(req, &mut path.iter().copied(), false)?;
        read_txn(&self.mvcc, req, &mut path.iter().copied())
    }

    /// Whether a compaction's steps are still to come.
    pub fn compaction_under_way(&self) -> bool {
        self.mvcc.compaction_under_way()
    }

    /// One step of the compaction under way, over up to `keys_max` keys
    /// (see [`Mvcc::compact_step`]); the caller commits. Returns whether
    /// steps remain.
    pub fn compact_step(&mut self, keys_max: usize) -> bool {
        self.mvcc.compact_step(keys_max)
    }

    pub fn compact(&mut self, req: &CompactionRequest) -> Result<CompactionResponse, Error> {
        self.refuse_writes_if_corrupt()?;
        self.mvcc.compact(req.revision)?;
        Ok(CompactionResponse {
            header: header(self.mvcc.current_revision()),
        })
    }

    /// Grants lease `id` (chosen by the caller, never 0).
    pub fn lease_grant(
        &mut self,
        id: LeaseId,
        ttl_seconds: i64,
        now_ms: u64,
    ) -> Result<LeaseGrantResponse, Error> {
        self.refuse_writes_if_corrupt()?;
        self.refuse_writes_without_space()?;
        let lease = self.lessor.grant(id, ttl_seconds, now_ms)?;
        let ttl = lease.ttl_seconds;
        let record = LeaseRecord {
            ttl_seconds: ttl,
            remaining_ms: lease.remaining_ms(now_ms),
        };
        self.mvcc
            .backend_mut()
            .put(Table::Lease, &id.to_be_bytes(), &record.encode());
        Ok(LeaseGrantResponse {
            header: header(self.mvcc.current_revision()),
            id,
            ttl,
            error: String::new(),
        })
    }

    /// Revokes a lease, deleting its keys in one revision.
    pub fn lease_revoke(&mut self, id: LeaseId) -> Result<LeaseRevokeResponse, Error> {
        self.refuse_writes_if_corrupt()?;
        let lease = self.lessor.remove(id).ok_or(Error::LeaseNotFound)?;
        let mut txn = self.mvcc.write();
        for key in &lease.keys {
            txn.delete_span(&KeySpan::Single(key), false)?;
        }
        txn.end();
        self.mvcc
            .backend_mut()
            .delete(Table::Lease, &id.to_be_bytes());
        Ok(LeaseRevokeResponse {
            header: header(self.mvcc.current_revision()),
        })
    }

    /// Checks that a lease is alive and returns its TTL; renewing it
    /// happens when the leader's checkpoint of the renewal applies.
    pub fn lease_ttl_if_alive(&self, id: LeaseId, now_ms: u64) -> Result<i64, Error> {
        match self.lessor.get(id) {
            Some(lease) if lease.expiry_ms > now_ms => Ok(lease.ttl_seconds),
            _ => Err(Error::LeaseNotFound),
        }
    }

    pub fn lease_time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
        now_ms: u64,
    ) -> LeaseTimeToLiveResponse {
        let revision = self.mvcc.current_revision();
        match self.lessor.get(id) {
            None => LeaseTimeToLiveResponse {
                header: header(revision),
                id,
                ttl: -1,
                ..Default::default()
            },
            Some(lease) => LeaseTimeToLiveResponse {
                header: header(revision),
                id,
                ttl: (lease.remaining_ms(now_ms) / 1000) as i64,
                granted_ttl: lease.ttl_seconds,
                keys: if keys {
                    lease.keys.iter().cloned().collect()
                } else {
                    Vec::new()
                },
            },
        }
    }

    pub fn lease_leases(&self) -> LeaseLeasesResponse {
        LeaseLeasesResponse {
            header: header(self.mvcc.current_revision()),
            leases: self.lessor.ids().map(|id| LeaseStatus { id }).collect(),
        }
    }

    /// Every lease's remaining time, for a checkpoint proposal.
    pub fn lease_remaining(&self, now_ms: u64) -> Vec<(LeaseId, u64)> {
        self.lessor
            .leases()
            .map(|lease| (lease.id, lease.remaining_ms(now_ms)))
            .collect()
    }

    /// Applies a checkpoint: each lease has the given time left from now,
    /// and that is recorded so a restart resumes it.
    pub fn lease_checkpoint(&mut self, leases: &[(LeaseId, u64)], now_ms: u64) {
        for &(id, remaining_ms) in leases {
            self.lessor.set_remaining(id, remaining_ms, now_ms);
            self.write_lease_record(id, now_ms);
        }
    }

    /// Gives every lease its full TTL, as a new leader does.
    pub fn refresh_leases(&mut self, now_ms: u64) {
        self.lessor.refresh_all(now_ms);
    }

    /// Applies an Alarm request on behalf of member `member_id` (used when
    /// the request names no member).
    pub fn alarm(&mut self, req: &AlarmRequest) -> AlarmResponse {
        let action = AlarmAction::try_from(req.action).unwrap_or(AlarmAction::Get);
        let changed: Vec<(u64, i32)> = match action {
            AlarmAction::Get => Vec::new(),
            AlarmAction::Activate => {
                if req.alarm != AlarmType::None as i32 {
                    self.set_alarm(req.member_id, req.alarm, true);
                }
                vec![(req.member_id, req.alarm)]
            }
            AlarmAction::Deactivate => {
                let existed = self.alarms.contains(&(req.member_id, req.alarm));
                self.set_alarm(req.member_id, req.alarm, false);
                if existed {
                    vec![(req.member_id, req.alarm)]
                } else {
                    Vec::new()
                }
            }
        };
        let alarms = if action == AlarmAction::Get {
            self.alarms
                .iter()
                .filter(|(_, a)| req.alarm == AlarmType::None as i32 || *a == req.alarm)
                .copied()
                .collect()
        } else {
            changed
        };
        AlarmResponse {
            header: header(self.mvcc.current_revision()),
            alarms: alarms
                .into_iter()
                .map(|(member_id, alarm)| AlarmMember { member_id, alarm })
                .collect(),
        }
    }

    /// Active alarms of one type.
    pub fn alarms_of(&self, alarm: AlarmType) -> Vec<u64> {
        self.alarms
            .iter()
            .filter(|(_, a)| *a == alarm as i32)
            .map(|(m, _)| *m)
            .collect()
    }

    pub fn all_alarms(&self) -> Vec<AlarmMember> {
        self.alarms
            .iter()
            .map(|&(member_id, alarm)| AlarmMember { member_id, alarm })
            .collect()
    }

    /// What a write's quota check reads, as of now.
    pub fn quota_state(&self) -> QuotaState {
        QuotaState {
            size_bytes: self.mvcc.backend().size_bytes(),
            nospace: !self.alarms_of(AlarmType::Nospace).is_empty(),
        }
    }

    fn set_alarm(&mut self, member_id: u64, alarm: i32, active: bool) {
        let key = encode_alarm_key(member_id, alarm);
        if active {
            self.alarms.insert((member_id, alarm));
            self.mvcc.backend_mut().put(Table::Meta, &key, &[]);
        } else {
            self.alarms.remove(&(member_id, alarm));
            self.mvcc.backend_mut().delete(Table::Meta, &key);
        }
    }

    fn refuse_writes_without_space(&self) -> Result<(), Error> {
        if self.alarms_of(AlarmType::Nospace).is_empty() {
            Ok(())
        } else {
            Err(Error::NoSpace)
        }
    }

    /// Under the CORRUPT alarm, etcd refuses what changes the key space
    /// or leases (puts, deletes, txns, compactions, lease grants and
    /// revokes) on every member; reads go on.
    fn refuse_writes_if_corrupt(&self) -> Result<(), Error> {
        if self.alarms_of(AlarmType::Corrupt).is_empty() {
            Ok(())
        } else {
            Err(Error::Corrupt)
        }
    }

    fn write_lease_record(&mut self, id: LeaseId, now_ms: u64) {
        if let Some(lease) = self.lessor.get(id) {
            let record = LeaseRecord {
                ttl_seconds: lease.ttl_seconds,
                remaining_ms: lease.remaining_ms(now_ms),
            };
            self.mvcc
                .backend_mut()
                .put(Table::Lease, &id.to_be_bytes(), &record.encode());
        }
    }

    /// Evaluates the compares of `req` and of the nested txns on the chosen
    /// branches, in pre-order, against the store before the txn.
    fn choose_path(&self, req: &TxnRequest, path: &mut Vec<bool>) -> Result<(), Error> {
        let mut succeeded = true;
        for compare in &req.compare {
            if !self.compare_holds(compare)? {
                succeeded = false;
                break;
            }
        }
        path.push(succeeded);
        for op in branch(req, succeeded) {
            if let Some(Request::RequestTxn(nested)) = &op.request {
                self.choose_path(nested, path)?;
            }
        }
        Ok(())
    }

    fn compare_holds(&self, compare: &Compare) -> Result<bool, Error> {
        let span = KeySpan::new(&compare.key, &compare.range_end);
        let on_value = compare.target == CompareTarget::Value as i32;
        // Only a compare of the value reads values; the others (a guarded
        // update's mod_revision, a create's version) ask the key index.
        // Compares come before the txn writes, so its newest is current.
        let found = if on_value {
            self.mvcc
                .read_span(&span, self.mvcc.current_revision(), 0, Reads::Values)?
                .kvs
        } else {
            self.mvcc.newest_headers(&span)
        };
        if found.is_empty() {
            return Ok(!on_value && compare_kv(compare, &KeyValue::default()));
        }
        Ok(found.iter().all(|kv| compare_kv(compare, kv)))
    }

    /// Checks the puts (`puts`) or the ranges (`!puts`) on the chosen path.
    fn check_txn_preconditions(
        &self,
        req: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
        puts: bool,
    ) -> Result<(), Error> {
        let succeeded = path.next().expect("a path step per txn");
        let current = self.mvcc.current_revision();
        for op in branch(req, succeeded) {
            match &op.request {
                Some(Request::RequestRange(r)) if !puts => {
                    self.mvcc.resolve_read_revision(r.revision)?;
                }
                Some(Request::RequestPut(p)) if puts => self.check_put_preconditions(p, current)?,
                Some(Request::RequestTxn(nested)) => {
                    self.check_txn_preconditions(nested, path, puts)?
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_put_preconditions(&self, req: &PutRequest, at_main: i64) -> Result<(), Error> {
        if (req.ignore_value || req.ignore_lease) && self.mvcc.get(&req.key, at_main)?.is_none() {
            return Err(Error::KeyNotFound);
        }
        if !req.ignore_lease && req.lease != NO_LEASE && !self.lessor.contains(req.lease) {
            return Err(Error::LeaseNotFound);
        }
        Ok(())
    }
}

fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

/// What a write's quota check reads: the backend's size and whether
/// the NOSPACE alarm is raised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaState {
    pub size_bytes: u64,
    pub nospace: bool,
}

impl QuotaState {
    /// Whether a write of `request_bytes` would take the backend over
    /// `quota_bytes`.
    pub fn exceeded_by(&self, request_bytes: u64, quota_bytes: u64) -> bool {
        self.size_bytes.saturating_add(request_bytes) > quota_bytes
    }
}

/// Whether no branch of `req`, nested txns included, writes anything.
pub fn is_read_only(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| match &op.request {
            Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => false,
            Some(Request::RequestTxn(nested)) => is_read_only(nested),
            Some(Request::RequestRange(_)) | None => true,
        })
}

fn compare_kv(compare: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ordering = match (
        CompareTarget::try_from(compare.target),
        &compare.target_union,
    ) {
        (Ok(CompareTarget::Value), target) => {
            let expected: &[u8] = match target {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value[..].cmp(expected)
        }
        (Ok(target), union) => {
            // etcd reads the expected number only from the union member
            // that matches the target; any other member counts as 0.
            let (actual, expected) = match (target, union) {
                (CompareTarget::Version, Some(TargetUnion::Version(v))) => (kv.version, *v),
                (CompareTarget::Version, _) => (kv.version, 0),
                (CompareTarget::Create, Some(TargetUnion::CreateRevision(v))) => {
                    (kv.create_revision, *v)
                }
                (CompareTarget::Create, _) => (kv.create_revision, 0),
                (CompareTarget::Mod, Some(TargetUnion::ModRevision(v))) => (kv.mod_revision, *v),
                (CompareTarget::Mod, _) => (kv.mod_revision, 0),
                (CompareTarget::Lease, Some(TargetUnion::Lease(v))) => (kv.lease, *v),
                (CompareTarget::Lease, _) => (kv.lease, 0),
                (CompareTarget::Value, _) => unreachable!("handled above"),
            };
            actual.cmp(&expected)
        }
        (Err(_), _) => return false,
    };
    match CompareResult::try_from(compare.result) {
        Ok(CompareResult::Equal) => ordering == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ordering != Ordering::Equal,
        Ok(CompareResult::Greater) => ordering == Ordering::Greater,
        Ok(CompareResult::Less) => ordering == Ordering::Less,
        Err(_) => false,
    }
}

fn apply_put<B: Backend>(
    txn: &mut WriteTxn<'_, B>,
    lessor: &mut Lessor,
    req: &PutRequest,
) -> Result<PutResponse, Error> {
    // The previous value is read only when the request needs it; what the
    // new one takes from it (create revision, version, lease) the key
    // index holds.
    let reads_prev_value = req.prev_kv || req.ignore_value;
    let prev_kv = if reads_prev_value {
        txn.get(&req.key)?
    } else {
        None
    };
    let value = match (&prev_kv, req.ignore_value) {
        (Some(kv), true) => kv.value.to_vec(),
        _ => req.value.clone(),
    };
    let lease = |prev: Option<Live>| match (prev, req.ignore_lease) {
        (Some(live), true) => live.lease,
        _ => req.lease,
    };
    let prev = txn.put(&req.key, value, lease);
    debug_assert!(!reads_prev_value || prev.is_some() == prev_kv.is_some());
    let lease = lease(prev);
    if let Some(prev) = prev {
        if prev.lease != lease {
            lessor.detach(prev.lease, &req.key);
        }
    }
    if lease != NO_LEASE {
        lessor.attach(lease, &req.key);
    }
    Ok(PutResponse {
        header: header(txn.write_revision()),
        prev_kv: if req.prev_kv { prev_kv } else { None },
    })
}

fn apply_delete<B: Backend>(
    txn: &mut WriteTxn<'_, B>,
    lessor: &mut Lessor,
    req: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse, Error> {
    let deleted = txn.delete_span(&KeySpan::new(&req.key, &req.range_end), req.prev_kv)?;
    for kv in &deleted {
        lessor.detach(kv.lease, &kv.key);
    }
    Ok(DeleteRangeResponse {
        header: header(txn.read_revision()),
        deleted: deleted.len() as i64,
        prev_kvs: if req.prev_kv { deleted } else { Vec::new() },
    })
}

/// Whether an applied request's answer reaches a client. Every member
/// applies every entry, but only the one a client asked through answers
/// it: the others need its writes, not what its ranges read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Wanted,
    /// A txn's ranges are planned (so they fail where an answered one
    /// would) but read no values, and answer empty.
    Discarded,
}

fn apply_txn<B: Backend>(
    txn: &mut WriteTxn<'_, B>,
    lessor: &mut Lessor,
    req: &TxnRequest,
    path: &mut impl Iterator<Item = bool>,
    answer: Answer,
) -> Result<TxnResponse, Error> {
    let succeeded = path.next().expect("a path step per txn");
    let mut responses = Vec::new();
    for op in branch(req, succeeded) {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => {
                let read_main = if r.revision > 0 {
                    r.revision
                } else {
                    txn.read_revision()
                };
                let plan = txn.mvcc().plan_range(r, read_main)?;
                let mut resp = match answer {
                    Answer::Wanted => plan.finish(txn.mvcc().backend())?,
                    Answer::Discarded => RangeResponse::default(),
                };
                // etcd reports the txn's revision, even for an older read.
                resp.header = header(txn.read_revision());
                Response::ResponseRange(resp)
            }
            Some(Request::RequestPut(p)) => Response::ResponsePut(apply_put(txn, lessor, p)?),
            Some(Request::RequestDeleteRange(d)) => {
                Response::ResponseDeleteRange(apply_delete(txn, lessor, d)?)
            }
            Some(Request::RequestTxn(nested)) => {
                Response::ResponseTxn(apply_txn(txn, lessor, nested, path, answer)?)
            }
            None => continue,
        };
        responses.push(ResponseOp {
            response: Some(response),
        });
    }
    Ok(TxnResponse {
        header: header(txn.read_revision()),
        succeeded,
        responses,
    })
}

/// Range ops of a read-only txn, following the chosen branches.
fn read_txn<B: Backend>(
    mvcc: &Mvcc<B>,
    req: &TxnRequest,
    path: &mut impl Iterator<Item = bool>,
) -> Result<TxnResponse, Error> {
    let succeeded = path.next().expect("a path step per txn");
    let current = mvcc.current_revision();
    let mut responses = Vec::new();
    for op in branch(req, succeeded) {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => {
                Response::ResponseRange(mvcc.range_at(r, mvcc.resolve_read_revision(r.revision)?)?)
            }
            Some(Request::RequestTxn(nested)) => {
                Response::ResponseTxn(read_txn(mvcc, nested, path)?)
            }
            Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => {
                unreachable!("read-only txns hold no writes")
            }
            None => continue,
        };
        responses.push(ResponseOp {
            response: Some(response),
        });
    }
    Ok(TxnResponse {
        header: header(current),
        succeeded,
        responses,
    })
}

/// An alarm's key in the `Meta` table: the prefix, the member id and the
/// alarm type, big-endian.
pub fn encode_alarm_key(member_id: u64, alarm: i32) -> Vec<u8> {
    let mut key = META_ALARM_PREFIX.to_vec();
    key.extend_from_slice(&member_id.to_be_bytes());
    key.extend_from_slice(&alarm.to_be_bytes());
    key
}

/// The member id and alarm type of an alarm key of the `Meta` table.
pub fn decode_alarm_key(key: &[u8]) -> Option<(u64, i32)> {
    let rest = key.strip_prefix(META_ALARM_PREFIX)?;
    if rest.len() != 12 {
        return None;
    }
    let member_id = u64::from_be_bytes(rest[..8].try_into().ok()?);
    let alarm = i32::from_be_bytes(rest[8..].try_into().ok()?);
    Some((member_id, alarm))
}

//! Whether an identity may do an operation, given the auth store: etcd's
//! `isOpPermitted`, `IsAdminPermitted` and the checks its `authApplierV3`
//! runs on each request. Pure functions of the store.

use e2d_proto::etcdserverpb::{
    request_op::Request, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

use super::permission::{Access, KeyInterval};
use super::{has_root_role, AuthStore};
use crate::error::Error;
use crate::lease::{Lessor, NO_LEASE};

/// Who makes a request: a user and the auth revision it was authenticated
/// at. The empty name with revision 0 is nobody (no token, no certificate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthInfo {
    pub user: String,
    pub revision: u64,
}

impl AuthInfo {
    pub fn new(user: impl Into<String>, revision: u64) -> Self {
        Self {
            user: user.into(),
            revision,
        }
    }
}

impl AuthStore {
    /// May `who` do `access` on every key of `key..range_end` (etcd's key
    /// and range end conventions)? Everyone may while auth is disabled;
    /// root may always.
    pub fn check_range(
        &self,
        who: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
        access: Access,
    ) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        if who.revision == 0 {
            return Err(Error::UserEmpty);
        }
        if who.revision < self.revision {
            return Err(Error::AuthOldRevision);
        }
        let Some(user) = self.users.get(&who.user) else {
            return Err(Error::PermissionDenied);
        };
        if has_root_role(user) {
            return Ok(());
        }
        let allowed = self
            .permissions
            .get(&who.user)
            .is_some_and(|p| p.covers(access, &KeyInterval::of(key, range_end)));
        if allowed {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    /// May `who` administer the cluster and the auth store? Only root's
    /// role may, once auth is enabled.
    pub fn check_admin(&self, who: &AuthInfo) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        if who.user.is_empty() {
            return Err(Error::UserEmpty);
        }
        match self.users.get(&who.user) {
            None => Err(Error::UserNotFound),
            Some(user) if has_root_role(user) => Ok(()),
            Some(_) => Err(Error::PermissionDenied),
        }
    }

    /// The revision check alone, for requests that name no key (etcd
    /// refuses a request whose identity predates the store's revision).
    pub fn check_revision(&self, who: &AuthInfo) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        if who.revision == 0 {
            return Err(Error::UserEmpty);
        }
        if who.revision < self.revision {
            return Err(Error::AuthOldRevision);
        }
        Ok(())
    }

    pub fn check_get(&self, who: &AuthInfo, req: &RangeRequest) -> Result<(), Error> {
        self.check_range(who, &req.key, &req.range_end, Access::Read)
    }

    /// A put needs WRITE on its key, READ too when it returns the previous
    /// value, and WRITE on every key of the lease it attaches to (unless
    /// the user is root).
    pub fn check_put(
        &self,
        who: &AuthInfo,
        lessor: &Lessor,
        req: &PutRequest,
    ) -> Result<(), Error> {
        self.check_range(who, &req.key, &[], Access::Write)?;
        if req.lease != NO_LEASE {
            self.check_lease_keys(who, lessor, req.lease)?;
        }
        if req.prev_kv {
            self.check_range(who, &req.key, &[], Access::Read)?;
        }
        Ok(())
    }

    pub fn check_delete_range(
        &self,
        who: &AuthInfo,
        req: &DeleteRangeRequest,
    ) -> Result<(), Error> {
        self.check_range(who, &req.key, &req.range_end, Access::Write)?;
        if req.prev_kv {
            self.check_range(who, &req.key, &req.range_end, Access::Read)?;
        }
        Ok(())
    }

    /// Every compare needs READ, and every op of both branches (nested
    /// txns included) what it needs on its own.
    pub fn check_txn(
        &self,
        who: &AuthInfo,
        lessor: &Lessor,
        req: &TxnRequest,
    ) -> Result<(), Error> {
        for compare in &req.compare {
            self.check_range(who, &compare.key, &compare.range_end, Access::Read)?;
        }
        self.check_ops(who, lessor, &req.success)?;
        self.check_ops(who, lessor, &req.failure)
    }

    fn check_ops(&self, who: &AuthInfo, lessor: &Lessor, ops: &[RequestOp]) -> Result<(), Error> {
        for op in ops {
            match &op.request {
                Some(Request::RequestRange(range)) => self.check_get(who, range)?,
                Some(Request::RequestPut(put)) => self.check_put(who, lessor, put)?,
                Some(Request::RequestDeleteRange(delete)) => {
                    if delete.prev_kv {
                        self.check_range(who, &delete.key, &delete.range_end, Access::Read)?;
                    }
                    self.check_range(who, &delete.key, &delete.range_end, Access::Write)?;
                }
                Some(Request::RequestTxn(txn)) => self.check_txn(who, lessor, txn)?,
                None => {}
            }
        }
        Ok(())
    }

    /// Revoking a lease deletes its keys: WRITE on each, unless root.
    pub fn check_lease_revoke(
        &self,
        who: &AuthInfo,
        lessor: &Lessor,
        id: i64,
    ) -> Result<(), Error> {
        self.check_revision(who)?;
        self.check_lease_keys(who, lessor, id)
    }

    fn check_lease_keys(&self, who: &AuthInfo, lessor: &Lessor, id: i64) -> Result<(), Error> {
        let Some(lease) = lessor.get(id) else {
            return Ok(());
        };
        if self.check_admin(who).is_ok() {
            return Ok(());
        }
        for key in &lease.keys {
            self.check_range(who, key, &[], Access::Write)?;
        }
        Ok(())
    }

    /// May `who` read user `name`? Root may read any; a user itself.
    pub fn check_user_get(&self, who: &AuthInfo, name: &str) -> Result<(), Error> {
        match self.check_admin(who) {
            Err(refused) if who.user != name => Err(refused),
            _ => Ok(()),
        }
    }

    /// May `who` read role `name`? Root may read any; a user its roles.
    pub fn check_role_get(&self, who: &AuthInfo, name: &str) -> Result<(), Error> {
        match self.check_admin(who) {
            Err(refused) => {
                let holds = self
                    .users
                    .get(&who.user)
                    .is_some_and(|u| u.roles.iter().any(|r| r == name));
                if holds {
                    Ok(())
                } else {
                    Err(refused)
                }
            }
            Ok(()) => Ok(()),
        }
    }
}

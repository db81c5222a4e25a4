//! Checks a request must pass before it is applied, with etcd's errors.
//! They depend on the request alone, never on the store.

use std::collections::BTreeSet;

use e2d_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use e2d_proto::etcdserverpb::{
    request_op::Request, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

use crate::error::Error;
use crate::lease::NO_LEASE;
use crate::limits::TXN_OPS_MAX;
use crate::mvcc::KeySpan;

pub fn check_range(req: &RangeRequest) -> Result<(), Error> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if SortOrder::try_from(req.sort_order).is_err()
        || SortTarget::try_from(req.sort_target).is_err()
    {
        return Err(Error::InvalidSortOption);
    }
    Ok(())
}

pub fn check_put(req: &PutRequest) -> Result<(), Error> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if req.ignore_lease && req.lease != NO_LEASE {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete_range(req: &DeleteRangeRequest) -> Result<(), Error> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

pub fn check_txn(req: &TxnRequest) -> Result<(), Error> {
    check_txn_ops(req)?;
    check_unique_writes(&req.success)?;
    check_unique_writes(&req.failure)?;
    Ok(())
}

fn check_txn_ops(req: &TxnRequest) -> Result<(), Error> {
    if req.compare.len() > TXN_OPS_MAX
        || req.success.len() > TXN_OPS_MAX
        || req.failure.len() > TXN_OPS_MAX
    {
        return Err(Error::TooManyOps);
    }
    for compare in &req.compare {
        if compare.key.is_empty() {
            return Err(Error::EmptyKey);
        }
    }
    for op in req.success.iter().chain(&req.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) => check_range(r)?,
            Some(Request::RequestPut(r)) => check_put(r)?,
            Some(Request::RequestDeleteRange(r)) => check_delete_range(r)?,
            Some(Request::RequestTxn(r)) => check_txn_ops(r)?,
            None => {}
        }
    }
    Ok(())
}

/// Key spans deleted and keys put by one branch, nested txns included.
struct Writes<'a> {
    deletes: Vec<KeySpan<'a>>,
    puts: BTreeSet<&'a [u8]>,
}

impl Writes<'_> {
    fn deletes_key(&self, key: &[u8]) -> bool {
        let span = KeySpan::Single(key);
        self.deletes.iter().any(|d| d.overlaps(&span))
    }
}

/// etcd refuses a branch that puts a key twice or puts a key it deletes.
fn check_unique_writes(ops: &[RequestOp]) -> Result<Writes<'_>, Error> {
    let mut writes = Writes {
        deletes: Vec::new(),
        puts: BTreeSet::new(),
    };
    for op in ops {
        if let Some(Request::RequestDeleteRange(d)) = &op.request {
            writes.deletes.push(KeySpan::new(&d.key, &d.range_end));
        }
    }
    for op in ops {
        if let Some(Request::RequestTxn(t)) = &op.request {
            let success = check_unique_writes(&t.success)?;
            let failure = check_unique_writes(&t.failure)?;
            for key in success.puts.iter().chain(&failure.puts) {
                if writes.puts.contains(key) || writes.deletes_key(key) {
                    return Err(Error::DuplicateKey);
                }
            }
            writes.deletes.extend(success.deletes);
            writes.deletes.extend(failure.deletes);
            writes.puts.extend(success.puts);
            writes.puts.extend(failure.puts);
        }
    }
    for op in ops {
        if let Some(Request::RequestPut(p)) = &op.request {
            let key = p.key.as_slice();
            if !writes.puts.insert(key) || writes.deletes_key(key) {
                return Err(Error::DuplicateKey);
            }
        }
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.into(),
                ..Default::default()
            })),
        }
    }

    fn del(key: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: key.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    fn txn(success: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            success,
            ..Default::default()
        }
    }

    #[test]
    fn duplicate_puts_and_overlapping_deletes_are_refused() {
        assert_eq!(check_txn(&txn(vec![put("a"), put("b")])), Ok(()));
        assert_eq!(
            check_txn(&txn(vec![put("a"), put("a")])),
            Err(Error::DuplicateKey)
        );
        assert_eq!(
            check_txn(&txn(vec![del("a", "c"), put("b")])),
            Err(Error::DuplicateKey)
        );
        assert_eq!(check_txn(&txn(vec![del("a", "c"), del("b", "")])), Ok(()));
        let nested = RequestOp {
            request: Some(Request::RequestTxn(txn(vec![put("a")]))),
        };
        assert_eq!(
            check_txn(&txn(vec![nested, put("a")])),
            Err(Error::DuplicateKey)
        );
    }

    #[test]
    fn too_many_ops_are_refused() {
        let ops = (0..=TXN_OPS_MAX).map(|i| put(&format!("k{i}"))).collect();
        assert_eq!(check_txn(&txn(ops)), Err(Error::TooManyOps));
    }

    #[test]
    fn put_flags_are_checked() {
        let mut req = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        };
        assert_eq!(check_put(&req), Err(Error::ValueProvided));
        req.value.clear();
        req.ignore_lease = true;
        req.lease = 5;
        assert_eq!(check_put(&req), Err(Error::LeaseProvided));
        req.key.clear();
        assert_eq!(check_put(&req), Err(Error::EmptyKey));
    }
}

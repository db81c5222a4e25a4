//! Bounds on requests, with etcd's defaults.

/// Largest request the server accepts (etcd's `--max-request-bytes`).
pub const REQUEST_BYTES_MAX: usize = 1536 * 1024;
/// Most operations in one branch of a txn (etcd's `--max-txn-ops`).
pub const TXN_OPS_MAX: usize = 128;
/// Default backend quota (etcd's `--quota-backend-bytes`): 2 GiB.
pub const QUOTA_BACKEND_BYTES_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;
/// Shortest lease TTL granted; shorter requests are raised to it.
pub const LEASE_TTL_MIN_SECONDS: i64 = 2;
/// Longest lease TTL accepted.
pub const LEASE_TTL_MAX_SECONDS: i64 = 9_000_000_000;

/// Most committed entries a member may have left to apply before it
/// refuses new proposals (etcd's `maxGapBetweenApplyAndCommitIndex`).
pub const APPLY_LAG_ENTRIES_MAX: u64 = 5000;

/// Whether a member committed up to `committed_index` and applied up to
/// `applied_index` takes a new proposal. Past [`APPLY_LAG_ENTRIES_MAX`]
/// it refuses, as etcd does, rather than queue work it cannot apply in
/// time.
pub fn admit_proposal(committed_index: u64, applied_index: u64) -> Result<(), crate::Error> {
    if committed_index > applied_index.saturating_add(APPLY_LAG_ENTRIES_MAX) {
        return Err(crate::Error::TooManyRequests);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn proposals_are_refused_exactly_when_apply_lags_too_far(committed in 0..20_000u64, applied in 0..20_000u64) {
            let admitted = admit_proposal(committed, applied).is_ok();
            prop_assert_eq!(admitted, committed <= applied + APPLY_LAG_ENTRIES_MAX);
        }
    }

    #[test]
    fn the_refusal_is_etcds() {
        let refused = admit_proposal(APPLY_LAG_ENTRIES_MAX + 1, 0).unwrap_err();
        assert_eq!(refused.to_string(), "etcdserver: too many requests");
        assert_eq!(
            refused.status_code(),
            crate::error::StatusCode::ResourceExhausted
        );
        assert!(admit_proposal(APPLY_LAG_ENTRIES_MAX, 0).is_ok());
    }
}

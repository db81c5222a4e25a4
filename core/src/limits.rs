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

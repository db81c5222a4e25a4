//! The etcd v3 gRPC services, each a thin adapter from tonic to the node:
//! check the request, read or write through [`crate::server::Node`], fill
//! the response header.

mod auth;
mod cluster;
mod election;
mod health;
mod key_queue;
mod kv;
mod lease;
mod lock;
pub mod maintenance;
mod status;
mod wake_gate;
mod watch;

pub use auth::AuthService;
pub use cluster::ClusterService;
pub use election::ElectionService;
pub use health::HealthService;
pub use kv::KvService;
pub use lease::LeaseService;
pub use lock::LockService;
pub use maintenance::ETCD_VERSION;
pub use maintenance::{db_sizes_bytes, MaintenanceService};
pub use status::to_status;
pub use watch::WatchService;

/// Refuses a request whose caller is not root while auth is enabled
/// (etcd's admin calls: membership, maintenance).
pub(crate) async fn check_admin<T>(
    node: &crate::server::Node,
    request: &tonic::Request<T>,
) -> Result<(), tonic::Status> {
    let who = crate::auth::identify(node, request.metadata(), request.extensions()).await?;
    node.read()
        .auth()
        .check_admin(&who.unwrap_or_default())
        .map_err(to_status)
}

/// Bytes a gRPC message may have on the wire: the request limit plus
/// etcd's 512 KiB allowance for gRPC framing, so slightly larger requests
/// get etcd's "request is too large" rather than a transport error.
pub fn grpc_message_bytes_max(max_request_bytes: usize) -> usize {
    max_request_bytes + 512 * 1024
}

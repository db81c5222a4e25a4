//! The e2d node: CLI, storage, raft, the gRPC and HTTP servers, gossip
//! and the manager's driver. The `e2d` binary is a thin `main` over it;
//! the simulator (`sim/`) runs the same code under `--cfg madsim`.

pub mod auth;
pub mod backup;
mod blocking;
pub mod cli;
pub mod discovery;
mod durable_file;
pub mod etcd_snapshot;
pub mod fail_stop;
#[cfg(not(madsim))]
mod gateway;
mod gossip;
pub mod grpc;
#[cfg(not(madsim))]
mod http;
pub mod logging;
mod metrics;
mod node_seed;
mod outgoing;
pub mod payload;
pub mod pki;
mod raft;
pub mod run;
mod server;
/// The key `e2d cluster resize` writes the cluster's size under.
pub use server::cluster_size::CLUSTER_SIZE_KEY;
/// The key the cluster version is recorded under, and the version this
/// build is.
pub use server::cluster_version::{own as own_version, CLUSTER_VERSION_KEY};
pub mod sim_bugs;
#[cfg(madsim)]
pub mod sim_versions;
mod snapshot;
mod snapshot_load;
pub mod status;
pub mod storage;
#[cfg(not(madsim))]
pub mod tls;

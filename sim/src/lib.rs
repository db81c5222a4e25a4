//! The simulation harness: whole clusters of real e2d nodes in simulated
//! time, and the checkers that judge what their clients saw.
//!
//! - [`history`]: operations with invocation and completion times.
//! - [`kv_model`]: the sequential model of etcd's KV store, revisions
//!   included.
//! - [`linearizability`]: a bounded search for an order of a history that
//!   respects real time and the model.
//! - [`checks`]: durability, replica agreement, the watch guarantees, one
//!   cluster identity.
//! - [`plan`]: the faults a seed injects, decided from the seed alone.
//!
//! Under `--cfg madsim` (`just sim`), also:
//! - `cluster`: real nodes (`e2d run -n`) on simulated hosts and disks.
//! - `workload`: clients and a watcher recording what they saw.
//! - `scenario`: one seed from start to verdict.
//! - `runner`: many seeds across threads, with a summary.

pub mod checks;
pub mod history;
pub mod kv_model;
pub mod linearizability;
pub mod plan;

#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod runner;
#[cfg(madsim)]
pub mod scenario;
#[cfg(madsim)]
pub mod workload;

pub use e2d_core as core;

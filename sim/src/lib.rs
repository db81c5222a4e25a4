//! The simulation harness: whole clusters of real e2d nodes in simulated
//! time, and the checkers that judge what their clients saw.
//!
//! - [`history`]: operations with invocation and completion times.
//! - [`kv_model`]: the sequential model of etcd's KV store, revisions
//!   included.
//! - [`linearizability`]: a bounded search for an order of a history that
//!   respects real time and the model.

pub mod history;
pub mod kv_model;
pub mod linearizability;

pub use e2d_core as core;

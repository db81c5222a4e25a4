//! The simulation harness: whole clusters of real e2d nodes in simulated
//! time. Grows with replication; today it re-exports the core it drives.

pub use e2d_core as core;

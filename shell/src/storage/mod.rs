//! Durable storage for the state machine: the fjall backend and the data
//! directory layout.

mod fjall_backend;

pub use fjall_backend::{FjallBackend, PointInTime, Space};

//! Mutual TLS for `e2d run`: the certificates, checked at start and
//! reloaded on SIGHUP or when their files change (`material`); the
//! listeners' handshakes (`incoming`); and the client side every outgoing
//! call takes its settings from (`client`).

pub mod client;
pub mod incoming;
pub mod material;
pub mod reload;

pub use material::{Material, TlsError};

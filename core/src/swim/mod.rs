//! SWIM gossip membership (in the spirit of hashicorp/memberlist).

mod meta;

pub use meta::{Liveness, MemberView, NodeMeta, NodeStatus};

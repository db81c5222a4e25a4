//! The retransmit queue: the latest statement about each member, waiting to
//! ride on outgoing datagrams a bounded number of times.

use std::collections::BTreeMap;

use e2d_proto::gossip as wire;

use super::codec::{member_to_wire, update_encoded_bytes};
use super::meta::MemberView;

#[derive(Debug, Clone)]
struct Queued {
    state: wire::MemberState,
    encoded_bytes: usize,
    transmits: u32,
    /// Larger is newer; breaks ties between equally transmitted updates.
    order: u64,
}

/// One pending update per member; a newer statement replaces the older one
/// and starts its transmit count over. Bounded by the number of members it
/// may hold, which the caller asserts with `len_max`.
#[derive(Debug, Clone)]
pub struct BroadcastQueue {
    queued: BTreeMap<String, Queued>,
    order_next: u64,
    len_max: usize,
}

impl BroadcastQueue {
    pub fn new(len_max: usize) -> Self {
        Self {
            queued: BTreeMap::new(),
            order_next: 0,
            len_max,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queued.len()
    }

    pub fn enqueue(&mut self, member: &MemberView) {
        let state = member_to_wire(member);
        let encoded_bytes = update_encoded_bytes(&state);
        let order = self.order_next;
        self.order_next += 1;
        self.queued.insert(
            member.name.clone(),
            Queued {
                state,
                encoded_bytes,
                transmits: 0,
                order,
            },
        );
        assert!(
            self.queued.len() <= self.len_max,
            "broadcast queue over its bound"
        );
    }

    /// Forgets the pending update about `name` (a member the view dropped).
    pub fn remove(&mut self, name: &str) {
        self.queued.remove(name);
    }

    /// Takes the updates that fit in `budget_bytes`, fewest transmitted
    /// first and newest first among equals, counts one transmit for each and
    /// drops those sent `transmit_limit` times.
    pub fn take(&mut self, budget_bytes: usize, transmit_limit: u32) -> Vec<wire::MemberState> {
        let mut candidates: Vec<(u32, std::cmp::Reverse<u64>, &String)> = self
            .queued
            .iter()
            .map(|(name, queued)| (queued.transmits, std::cmp::Reverse(queued.order), name))
            .collect();
        candidates.sort();
        let mut remaining_bytes = budget_bytes;
        let mut chosen = Vec::new();
        for (_, _, name) in candidates {
            let queued = &self.queued[name];
            if queued.encoded_bytes <= remaining_bytes {
                remaining_bytes -= queued.encoded_bytes;
                chosen.push(name.clone());
            }
        }
        let mut taken = Vec::with_capacity(chosen.len());
        for name in chosen {
            let queued = self.queued.get_mut(&name).expect("chosen from the queue");
            queued.transmits += 1;
            taken.push(queued.state.clone());
            if queued.transmits >= transmit_limit {
                self.queued.remove(&name);
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::super::meta::{Liveness, NodeMeta};
    use super::*;

    fn member(name: &str, incarnation: u64) -> MemberView {
        MemberView {
            name: name.to_string(),
            addr: "10.0.0.1:1".parse().unwrap(),
            incarnation,
            liveness: Liveness::Alive,
            meta: NodeMeta {
                name: name.to_string(),
                ..NodeMeta::default()
            },
        }
    }

    #[test]
    fn newer_update_replaces_older() {
        let mut queue = BroadcastQueue::new(8);
        queue.enqueue(&member("a", 1));
        queue.enqueue(&member("a", 2));
        let taken = queue.take(10_000, 4);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].incarnation, 2);
    }

    #[test]
    fn each_update_is_sent_at_most_transmit_limit_times() {
        let mut queue = BroadcastQueue::new(8);
        queue.enqueue(&member("a", 1));
        for _ in 0..3 {
            assert_eq!(queue.take(10_000, 3).len(), 1);
        }
        assert!(queue.is_empty());
        assert!(queue.take(10_000, 3).is_empty());
    }

    #[test]
    fn fewest_transmitted_go_first_and_budget_is_respected() {
        let mut queue = BroadcastQueue::new(8);
        queue.enqueue(&member("a", 1));
        let one = update_encoded_bytes(&member_to_wire(&member("a", 1)));
        assert_eq!(queue.take(one, 4)[0].name, "a");
        queue.enqueue(&member("b", 1));
        // Room for one: "b" has never been sent.
        assert_eq!(queue.take(one, 4)[0].name, "b");
        assert!(queue.take(one - 1, 4).is_empty());
        assert_eq!(queue.len(), 2);
    }
}

//! Who to probe next: a shuffled round-robin over the other up members, and
//! the bookkeeping of probes in flight (ours and those relayed for others).

use std::net::SocketAddr;

use crate::rng::Rng;

/// The order members are probed in. Each full round is reshuffled; a member
/// that joins mid-round is inserted at a random position.
#[derive(Debug, Clone, Default)]
pub struct ProbeOrder {
    names: Vec<String>,
    next_index: usize,
}

impl ProbeOrder {
    pub fn insert(&mut self, name: &str, rng: &mut Rng) {
        if self.names.iter().any(|known| known == name) {
            return;
        }
        let at = rng.below(self.names.len() + 1);
        self.names.insert(at, name.to_string());
        if at < self.next_index {
            self.next_index += 1;
        }
    }

    /// The next member for which `probeable` holds. When the round is over,
    /// a new one starts from `round()` (shuffled); gives up after one fresh
    /// round without a probeable member.
    pub fn next(
        &mut self,
        rng: &mut Rng,
        probeable: impl Fn(&str) -> bool,
        round: impl Fn() -> Vec<String>,
    ) -> Option<String> {
        let mut reshuffled = false;
        loop {
            if self.next_index >= self.names.len() {
                if reshuffled {
                    return None;
                }
                self.names = round();
                rng.shuffle(&mut self.names);
                self.next_index = 0;
                reshuffled = true;
                continue;
            }
            let name = &self.names[self.next_index];
            self.next_index += 1;
            if probeable(name) {
                return Some(name.clone());
            }
        }
    }
}

/// Our probe of one member, from its ping until the next probe starts.
#[derive(Debug, Clone)]
pub struct ProbeInFlight {
    pub seq: u32,
    pub target: String,
    pub acked: bool,
    /// Helpers whose own ping to the target went unanswered.
    pub nacks: u32,
}

/// A ping we sent on another node's behalf: its ack (or, at the deadline, a
/// nack) goes back to `requester` under the requester's `seq`.
#[derive(Debug, Clone)]
pub struct Relay {
    pub requester: SocketAddr,
    pub requester_seq: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn each_round_visits_every_member_once() {
        let mut order = ProbeOrder::default();
        let mut rng = Rng::new(1);
        let all = names(&["a", "b", "c", "d"]);
        for _ in 0..3 {
            let mut round: Vec<String> = (0..4)
                .map(|_| order.next(&mut rng, |_| true, || all.clone()).unwrap())
                .collect();
            round.sort();
            assert_eq!(round, all);
        }
    }

    #[test]
    fn skips_members_that_are_not_probeable() {
        let mut order = ProbeOrder::default();
        let mut rng = Rng::new(2);
        let all = names(&["a", "b"]);
        for _ in 0..5 {
            assert_eq!(
                order.next(&mut rng, |name| name == "b", || all.clone()),
                Some("b".to_string())
            );
        }
        assert_eq!(order.next(&mut rng, |_| false, || all.clone()), None);
    }

    #[test]
    fn inserted_member_is_probed_within_the_next_round() {
        let mut order = ProbeOrder::default();
        let mut rng = Rng::new(3);
        let all = names(&["a", "b", "c"]);
        order.next(&mut rng, |_| true, || all.clone());
        order.insert("d", &mut rng);
        let with_d = names(&["a", "b", "c", "d"]);
        let seen: Vec<String> = (0..7)
            .map(|_| order.next(&mut rng, |_| true, || with_d.clone()).unwrap())
            .collect();
        assert!(seen.contains(&"d".to_string()));
    }
}

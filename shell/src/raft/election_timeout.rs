//! Randomized election timeouts from a generator the driver owns.
//!
//! raft-rs draws each randomized election timeout from `rand::thread_rng`,
//! which reads the OS directly and so cannot be seeded by the simulator.
//! The driver replaces each draw, before every tick, with one of its own,
//! seeded per member: simulated runs replay exactly, and real members still
//! spread their timeouts over `[election, 2 × election)` ticks as raft-rs
//! would.

use e2d_core::rng::Rng;
use raft::{Raft, StateRole, Storage};

use super::ELECTION_TICKS;

pub struct ElectionTimeouts {
    rng: Rng,
    /// The (term, role) the current timeout was drawn for: raft-rs draws a
    /// new one each time either changes.
    drawn_for: Option<(u64, StateRole)>,
    ticks: usize,
}

impl ElectionTimeouts {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            drawn_for: None,
            ticks: ELECTION_TICKS,
        }
    }

    /// Puts this generator's timeout in place of raft-rs's own draw.
    pub fn settle<S: Storage>(&mut self, raft: &mut Raft<S>) {
        let now = (raft.term, raft.state);
        if self.drawn_for != Some(now) {
            self.drawn_for = Some(now);
            self.ticks = ELECTION_TICKS + self.rng.below(ELECTION_TICKS);
        }
        if raft.randomized_election_timeout() != self.ticks {
            raft.set_randomized_election_timeout(self.ticks);
        }
    }
}

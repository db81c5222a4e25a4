//! Randomized election timeouts from a generator the driver owns.
//!
//! raft-rs draws each randomized election timeout from `rand::thread_rng`,
//! which reads the OS directly and so cannot be seeded by the simulator.
//! The driver replaces each draw, before every tick, with one of its own,
//! seeded per member: simulated runs replay exactly, and real members still
//! spread their timeouts over `[election, 2 × election)` ticks as raft-rs
//! would.

use raft::{Raft, StateRole, Storage};

use super::ELECTION_TICKS;

pub struct ElectionTimeouts {
    state: u64,
    /// The (term, role) the current timeout was drawn for: raft-rs draws a
    /// new one each time either changes.
    drawn_for: Option<(u64, StateRole)>,
    ticks: usize,
}

impl ElectionTimeouts {
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed,
            drawn_for: None,
            ticks: ELECTION_TICKS,
        }
    }

    /// SplitMix64.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Puts this generator's timeout in place of raft-rs's own draw.
    pub fn settle<S: Storage>(&mut self, raft: &mut Raft<S>) {
        let now = (raft.term, raft.state);
        if self.drawn_for != Some(now) {
            self.drawn_for = Some(now);
            self.ticks = ELECTION_TICKS + (self.next_u64() % ELECTION_TICKS as u64) as usize;
        }
        if raft.randomized_election_timeout() != self.ticks {
            raft.set_randomized_election_timeout(self.ticks);
        }
    }
}

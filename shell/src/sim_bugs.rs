//! Bugs the simulator can plant in the shell, to prove its checkers catch
//! them. Simulator builds only (`--cfg madsim`); each simulated run is on
//! one thread, so the switches are per thread.

use std::cell::Cell;

/// Which bugs are planted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bugs {
    /// The raft log and hard state are acknowledged before they are
    /// synced to disk.
    pub ack_before_fsync: bool,
    /// Linearizable reads are served from the local state without a read
    /// index (a follower or a deposed leader answers stale).
    pub reads_without_read_index: bool,
    /// A watch that resumes from a revision skips that revision.
    pub watch_resume_skips_a_revision: bool,
}

thread_local! {
    static PLANTED: Cell<Bugs> = const { Cell::new(Bugs {
        ack_before_fsync: false,
        reads_without_read_index: false,
        watch_resume_skips_a_revision: false,
    }) };
}

/// Plants `bugs` for everything this thread runs from now on.
pub fn plant(bugs: Bugs) {
    PLANTED.with(|p| p.set(bugs));
}

pub fn planted() -> Bugs {
    PLANTED.with(Cell::get)
}

//! Bugs the simulator can plant in the shell, to prove its checkers catch
//! them. Only a simulator build (`--cfg madsim`) can plant one; elsewhere
//! [`planted`] is a constant with none, so the checks at the planting
//! sites compile away. Each simulated run is on one thread, so the
//! switches are per thread.

/// Which bugs are planted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bugs {
    /// The raft log and hard state are acknowledged before they are
    /// synced to disk.
    pub ack_before_fsync: bool,
    /// Linearizable reads are served from the local state without a read
    /// index (a follower or a deposed leader answers stale).
    pub reads_without_read_index: bool,
    /// A watch that resumes from a revision skips that revision.
    pub watch_resume_skips_a_revision: bool,
    /// A cluster restored after a total loss takes an older snapshot than
    /// the newest valid one.
    pub restore_skips_the_newest_snapshot: bool,
    /// A backup delta leaves out one entry that created a revision.
    pub delta_skips_a_revision: bool,
    /// Decision rules of the cluster manager broken (in core).
    pub manager: e2d_core::manager::PlantedBugs,
}

impl Bugs {
    pub const NONE: Bugs = Bugs {
        ack_before_fsync: false,
        reads_without_read_index: false,
        watch_resume_skips_a_revision: false,
        restore_skips_the_newest_snapshot: false,
        delta_skips_a_revision: false,
        manager: e2d_core::manager::PlantedBugs::NONE,
    };
}

#[cfg(madsim)]
thread_local! {
    static PLANTED: std::cell::Cell<Bugs> = const { std::cell::Cell::new(Bugs::NONE) };
}

/// Plants `bugs` for everything this thread runs from now on.
#[cfg(madsim)]
pub fn plant(bugs: Bugs) {
    PLANTED.with(|p| p.set(bugs));
}

#[cfg(madsim)]
pub fn planted() -> Bugs {
    PLANTED.with(std::cell::Cell::get)
}

#[cfg(not(madsim))]
pub const fn planted() -> Bugs {
    Bugs::NONE
}

//! SWIM tests: each rule driven through an in-memory network of machines
//! (`net`), junk on the wire (`junk`), and random schedules of faults with
//! safety and convergence checkers (`schedules`).

mod junk;
mod net;
mod rules;
mod schedules;
mod wire;

//! SWIM tests: each rule driven through an in-memory network of machines
//! (`net`), junk on the wire (`junk`), and random schedules of faults with
//! safety and convergence checkers (`schedules`).

mod junk;
mod net;
mod rules;
mod schedules;
mod wire;

/// Proptest cases: `PROPTEST_CASES` when set, else a count that keeps the
/// suite fast in debug builds.
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

//! Where a raft log ends, ordered as raft orders logs when it elects a
//! leader: the later last term wins, then the longer log. A log at least as
//! up to date as another holds every entry the other's holds that may have
//! been committed, so the survivor with the greatest position is the one
//! that keeps every write a survivor holds.

/// The term and index of a raft log's last entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogPosition {
    /// Compared first.
    pub term: u64,
    pub index: u64,
}

impl LogPosition {
    pub const fn new(term: u64, index: u64) -> Self {
        Self { term, index }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_term_is_more_up_to_date_than_a_longer_log() {
        assert!(LogPosition::new(5, 100) > LogPosition::new(4, 101));
        assert!(LogPosition::new(4, 101) > LogPosition::new(4, 100));
        assert_eq!(
            [LogPosition::new(4, 101), LogPosition::new(5, 1)]
                .into_iter()
                .max(),
            Some(LogPosition::new(5, 1))
        );
    }
}

//! The events watch streams read most recently, shared: when a thousand
//! streams wake for the same new revision, one reads it from the store
//! and the rest copy it from here.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use e2d_core::Error;
use e2d_proto::mvccpb::Event;

/// Reads kept; a read is keyed by its exact range, and streams that are
/// caught up ask for the same one.
const READS_KEPT_MAX: usize = 16;
/// A read larger than this many events is not kept.
const EVENTS_PER_READ_KEPT_MAX: usize = 1_000;

/// `(from, to, events_max, with_prev)` of a read.
type ReadKey = (i64, i64, usize, bool);

#[derive(Default)]
pub struct RecentEvents {
    reads: Mutex<VecDeque<(ReadKey, Arc<[Event]>)>>,
}

impl RecentEvents {
    /// The events of `key`, from a recent identical read (shared, not
    /// copied) or from `read`. Committed revisions never change, so a kept
    /// read stays true.
    pub fn get_or_read(
        &self,
        key: ReadKey,
        read: impl FnOnce() -> Result<Vec<Event>, Error>,
    ) -> Result<Arc<[Event]>, Error> {
        let kept = {
            let reads = crate::fail_stop::lock(&self.reads);
            reads
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, events)| events.clone())
        };
        if let Some(events) = kept {
            return Ok(events);
        }
        let events: Arc<[Event]> = read()?.into();
        if events.len() <= EVENTS_PER_READ_KEPT_MAX {
            let mut reads = crate::fail_stop::lock(&self.reads);
            if reads.len() >= READS_KEPT_MAX {
                reads.pop_front();
            }
            reads.push_back((key, events.clone()));
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_identical_read_comes_from_memory() {
        let recent = RecentEvents::default();
        let mut reads = 0;
        for _ in 0..3 {
            let events = recent
                .get_or_read((5, 9, 100, false), || {
                    reads += 1;
                    Ok(vec![Event::default()])
                })
                .unwrap();
            assert_eq!(events.len(), 1);
        }
        assert_eq!(reads, 1);
        for from in 0..(READS_KEPT_MAX as i64 + 1) {
            recent
                .get_or_read((from, 100, 10, false), || Ok(Vec::new()))
                .unwrap();
        }
        let mut again = false;
        recent
            .get_or_read((5, 9, 100, false), || {
                again = true;
                Ok(Vec::new())
            })
            .unwrap();
        assert!(again, "the oldest read was not forgotten");
    }
}

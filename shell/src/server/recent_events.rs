//! The events watch streams read most recently, shared: when a thousand
//! streams wake for the same new revision, one stream per thread reads it
//! from the store and the rest share that read.
//!
//! Kept per thread: a shared read's reference count, and those of the
//! keys and values in it, change with every watcher's response. Kept by
//! one thread, they stay in that core's cache; kept for all, they moved
//! between cores on every response. A thread keeps its reads for every
//! member it serves (a simulation runs many on one), told apart by
//! [`RecentEvents`]' owner number.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use e2d_core::Error;
use e2d_proto::mvccpb::Event;
use prost::Message;

/// Reads a thread keeps; a read is keyed by its exact range, and streams
/// that are caught up ask for the same one.
const READS_KEPT_MAX: usize = 16;
/// A read larger than this many events is not kept.
const EVENTS_PER_READ_KEPT_MAX: usize = 1_000;
/// Encoded bytes of events a thread keeps in reads before its newest one:
/// older reads go first once past it.
const OLDER_READ_BYTES_KEPT_MAX: usize = 4 << 20;

/// `(from, to, events_max, with_prev)` of a read.
type ReadKey = (i64, i64, usize, bool);

/// Tells one [`RecentEvents`] from another in a thread's reads.
static NEXT_OWNER: AtomicU64 = AtomicU64::new(0);

struct KeptRead {
    owner: u64,
    key: ReadKey,
    events: Arc<[Event]>,
    bytes: usize,
}

thread_local! {
    static KEPT: RefCell<VecDeque<KeptRead>> = const { RefCell::new(VecDeque::new()) };
}

/// One member's handle on the reads its threads keep.
pub struct RecentEvents {
    owner: u64,
}

impl Default for RecentEvents {
    fn default() -> Self {
        Self {
            owner: NEXT_OWNER.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl RecentEvents {
    /// The events of `key`, from a recent identical read on this thread
    /// (shared, not copied) or from `read`. Committed revisions never
    /// change, so a kept read stays true.
    pub fn get_or_read(
        &self,
        key: ReadKey,
        read: impl FnOnce() -> Result<Vec<Event>, Error>,
    ) -> Result<Arc<[Event]>, Error> {
        let kept = KEPT.with_borrow(|reads| {
            reads
                .iter()
                .rev()
                .find(|r| r.owner == self.owner && r.key == key)
                .map(|r| r.events.clone())
        });
        if let Some(events) = kept {
            return Ok(events);
        }
        let events: Arc<[Event]> = read()?.into();
        if events.len() <= EVENTS_PER_READ_KEPT_MAX {
            let bytes = events.iter().map(Message::encoded_len).sum();
            KEPT.with_borrow_mut(|reads| {
                reads.push_back(KeptRead {
                    owner: self.owner,
                    key,
                    events: events.clone(),
                    bytes,
                });
                let mut older_bytes: usize = reads.iter().map(|r| r.bytes).sum::<usize>() - bytes;
                while reads.len() > READS_KEPT_MAX
                    || (reads.len() > 1 && older_bytes > OLDER_READ_BYTES_KEPT_MAX)
                {
                    let oldest = reads.pop_front().expect("more than one read kept");
                    older_bytes -= oldest.bytes;
                }
            });
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

    fn event_of(value_bytes: usize) -> Event {
        Event {
            kv: Some(e2d_proto::mvccpb::KeyValue {
                key: b"k".to_vec().into(),
                value: vec![0; value_bytes].into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_member_never_gets_another_members_read() {
        let (one, other) = (RecentEvents::default(), RecentEvents::default());
        let key = (3, 4, 100, false);
        one.get_or_read(key, || Ok(vec![event_of(1)])).unwrap();
        let events = other.get_or_read(key, || Ok(vec![event_of(2)])).unwrap();
        assert_eq!(events[0].kv.as_ref().unwrap().value.len(), 2);
        let events = one.get_or_read(key, || unreachable!("kept")).unwrap();
        assert_eq!(events[0].kv.as_ref().unwrap().value.len(), 1);
    }

    #[test]
    fn older_reads_go_once_past_the_byte_bound_and_the_newest_stays() {
        let recent = RecentEvents::default();
        let big = OLDER_READ_BYTES_KEPT_MAX / 2 + 1;
        for from in 0..3 {
            recent
                .get_or_read((from, 9, 100, false), || Ok(vec![event_of(big)]))
                .unwrap();
        }
        // Two big reads are more than the bound: the first went.
        let mut reread = Vec::new();
        for from in (0..3).rev() {
            recent
                .get_or_read((from, 9, 100, false), || {
                    reread.push(from);
                    Ok(vec![event_of(1)])
                })
                .unwrap();
        }
        assert_eq!(reread, vec![0]);
    }
}

//! One gRPC watch stream as a sans-IO state machine: many watchers, each
//! with a key span, filters and the next revision it has to see.
//!
//! Drain contract: after every `handle_*` call and every [`WatchStream::sync`],
//! drain [`WatchStream::poll_response`] until it returns `None`.
//! Events are read through a callback over committed revisions only, so a
//! watcher never sees a revision the store could still lose.

use std::collections::{BTreeMap, VecDeque};

use e2d_proto::etcdserverpb::watch_create_request::FilterType;
use e2d_proto::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchResponse};
use e2d_proto::mvccpb::{event::EventType, Event};
use prost::Message;

use crate::error::Error;
use crate::mvcc::KeySpan;

/// Most watchers one stream may hold.
pub const WATCHERS_PER_STREAM_MAX: usize = 10_000;
/// Most events read from the store in one sync step (a revision is never
/// split, so one step may exceed this by the size of one revision).
pub const EVENTS_PER_SYNC_MAX: usize = 1_000;
/// The watch id etcd uses for "no watcher" (progress responses, refusals).
pub const INVALID_WATCH_ID: i64 = -1;

const DUPLICATE_WATCH_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
const TOO_MANY_WATCHERS: &str = "e2d: too many watchers on one stream";

#[derive(Debug, Clone)]
struct Watcher {
    key: Vec<u8>,
    range_end: Vec<u8>,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
    fragment: bool,
    /// The first revision this watcher has not seen yet.
    next_revision: i64,
}

impl Watcher {
    fn matches(&self, event: &Event) -> bool {
        let Some(kv) = &event.kv else {
            return false;
        };
        let is_put = event.r#type == EventType::Put as i32;
        if (is_put && self.no_put) || (!is_put && self.no_delete) {
            return false;
        }
        KeySpan::new(&self.key, &self.range_end).contains(&kv.key)
    }
}

/// Reads committed events `from..=to`, at most about `max` of them, with
/// previous values when asked.
pub type ReadEvents<'a> = dyn FnMut(i64, i64, usize, bool) -> Result<Vec<Event>, Error> + 'a;

#[derive(Debug)]
pub struct WatchStream {
    watchers: BTreeMap<i64, Watcher>,
    next_auto_id: i64,
    progress_requested: bool,
    fragment_bytes_max: usize,
    responses: VecDeque<WatchResponse>,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

impl WatchStream {
    /// `fragment_bytes_max`: responses of watchers that asked for fragments
    /// are split below this size.
    pub fn new(fragment_bytes_max: usize) -> Self {
        assert!(fragment_bytes_max > 0);
        Self {
            watchers: BTreeMap::new(),
            next_auto_id: 0,
            progress_requested: false,
            fragment_bytes_max,
            responses: VecDeque::new(),
        }
    }

    pub fn watcher_count(&self) -> usize {
        self.watchers.len()
    }

    pub fn handle_create(&mut self, req: &WatchCreateRequest, current_revision: i64) {
        let refuse = |reason: &str| WatchResponse {
            header: header(current_revision),
            watch_id: INVALID_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        if self.watchers.len() >= WATCHERS_PER_STREAM_MAX {
            self.responses.push_back(refuse(TOO_MANY_WATCHERS));
            return;
        }
        let id = if req.watch_id > 0 {
            if self.watchers.contains_key(&req.watch_id) {
                self.responses.push_back(refuse(DUPLICATE_WATCH_ID));
                return;
            }
            req.watch_id
        } else {
            while self.watchers.contains_key(&self.next_auto_id) {
                self.next_auto_id += 1;
            }
            self.next_auto_id
        };
        if id == self.next_auto_id {
            self.next_auto_id += 1;
        }
        let watcher = Watcher {
            key: req.key.clone(),
            range_end: req.range_end.clone(),
            no_put: req.filters.contains(&(FilterType::Noput as i32)),
            no_delete: req.filters.contains(&(FilterType::Nodelete as i32)),
            prev_kv: req.prev_kv,
            progress_notify: req.progress_notify,
            fragment: req.fragment,
            next_revision: if req.start_revision > 0 {
                req.start_revision
            } else {
                current_revision + 1
            },
        };
        self.watchers.insert(id, watcher);
        self.responses.push_back(WatchResponse {
            header: header(current_revision),
            watch_id: id,
            created: true,
            ..Default::default()
        });
    }

    pub fn handle_cancel(&mut self, watch_id: i64, current_revision: i64) {
        if self.watchers.remove(&watch_id).is_some() {
            self.responses.push_back(WatchResponse {
                header: header(current_revision),
                watch_id,
                canceled: true,
                ..Default::default()
            });
        }
    }

    /// A client asked where the stream stands; answered once every watcher
    /// has caught up.
    pub fn handle_progress_request(&mut self, current_revision: i64) {
        self.progress_requested = true;
        self.answer_progress_request(current_revision);
    }

    /// The periodic progress timer fired: caught-up watchers that asked for
    /// progress notifications learn the current revision.
    pub fn handle_progress_tick(&mut self, current_revision: i64) {
        for (&id, watcher) in &self.watchers {
            if watcher.progress_notify && watcher.next_revision > current_revision {
                self.responses.push_back(WatchResponse {
                    header: header(current_revision),
                    watch_id: id,
                    ..Default::default()
                });
            }
        }
    }

    /// Whether some watcher is behind `current_revision`.
    pub fn wants_sync(&self, current_revision: i64) -> bool {
        self.watchers
            .values()
            .any(|w| w.next_revision <= current_revision)
    }

    /// Moves lagging watchers forward by one bounded step of events; call
    /// again while [`WatchStream::wants_sync`] says so.
    pub fn sync(
        &mut self,
        current_revision: i64,
        compact_revision: i64,
        read: &mut ReadEvents<'_>,
    ) -> Result<(), Error> {
        self.cancel_compacted(current_revision, compact_revision);
        let lagging = self
            .watchers
            .values()
            .filter(|w| w.next_revision <= current_revision);
        let Some(from) = lagging.clone().map(|w| w.next_revision).min() else {
            self.answer_progress_request(current_revision);
            return Ok(());
        };
        let with_prev = lagging.clone().any(|w| w.prev_kv);
        let events = read(from, current_revision, EVENTS_PER_SYNC_MAX, with_prev)?;
        let read_to = match events.last().and_then(|e| e.kv.as_ref()) {
            Some(kv) if events.len() >= EVENTS_PER_SYNC_MAX => kv.mod_revision,
            _ => current_revision,
        };
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            self.deliver(id, &events, read_to, current_revision);
        }
        self.answer_progress_request(current_revision);
        Ok(())
    }

    pub fn poll_response(&mut self) -> Option<WatchResponse> {
        self.responses.pop_front()
    }

    fn deliver(&mut self, id: i64, events: &[Event], read_to: i64, current_revision: i64) {
        let watcher = self
            .watchers
            .get_mut(&id)
            .expect("delivering to a known watcher");
        if watcher.next_revision > read_to {
            return;
        }
        let from = watcher.next_revision;
        let selected: Vec<Event> = events
            .iter()
            .filter(|e| {
                let revision = e.kv.as_ref().map_or(0, |kv| kv.mod_revision);
                revision >= from && watcher.matches(e)
            })
            .map(|e| {
                let mut e = e.clone();
                if !watcher.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect();
        watcher.next_revision = read_to + 1;
        if selected.is_empty() {
            return;
        }
        let fragment = watcher.fragment;
        let batches = if fragment {
            split_fragments(selected, self.fragment_bytes_max)
        } else {
            vec![selected]
        };
        let last = batches.len() - 1;
        for (i, events) in batches.into_iter().enumerate() {
            self.responses.push_back(WatchResponse {
                header: header(current_revision),
                watch_id: id,
                fragment: i < last,
                events,
                ..Default::default()
            });
        }
    }

    fn cancel_compacted(&mut self, current_revision: i64, compact_revision: i64) {
        let compacted: Vec<i64> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.next_revision < compact_revision)
            .map(|(&id, _)| id)
            .collect();
        for id in compacted {
            self.watchers.remove(&id);
            self.responses.push_back(WatchResponse {
                header: header(current_revision),
                watch_id: id,
                canceled: true,
                compact_revision,
                ..Default::default()
            });
        }
    }

    fn answer_progress_request(&mut self, current_revision: i64) {
        if self.progress_requested && !self.wants_sync(current_revision) {
            self.progress_requested = false;
            self.responses.push_back(WatchResponse {
                header: header(current_revision),
                watch_id: INVALID_WATCH_ID,
                ..Default::default()
            });
        }
    }
}

/// Splits events into batches whose encoded size stays below `bytes_max`,
/// each holding at least one event.
fn split_fragments(events: Vec<Event>, bytes_max: usize) -> Vec<Vec<Event>> {
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    for event in events {
        let bytes = event.encoded_len();
        if !batch.is_empty() && batch_bytes + bytes > bytes_max {
            batches.push(std::mem::take(&mut batch));
            batch_bytes = 0;
        }
        batch_bytes += bytes;
        batch.push(event);
    }
    batches.push(batch);
    batches
}

//! One gRPC watch stream as a sans-IO state machine: many watchers, each
//! with a key span, filters and the next revision it has to see.
//!
//! Drain contract: after every `handle_*` call and every [`WatchStream::sync`],
//! drain [`WatchStream::poll_response`] until it returns `None`.
//! Events are read through a callback over committed revisions only, so a
//! watcher never sees a revision the store could still lose.

mod by_id;

use std::collections::VecDeque;

use e2d_proto::etcdserverpb::watch_create_request::FilterType;
use e2d_proto::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchResponse};
use e2d_proto::mvccpb::{event::EventType, Event};
use prost::Message;

use crate::error::Error;
use crate::mvcc::KeySpan;
use by_id::ById;

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
/// previous values when asked. Shared: streams woken for the same
/// revision can be handed one read.
pub type ReadEvents<'a> =
    dyn FnMut(i64, i64, usize, bool) -> Result<std::sync::Arc<[Event]>, Error> + 'a;

#[derive(Debug)]
pub struct WatchStream {
    watchers: ById<Watcher>,
    next_auto_id: i64,
    progress_requested: bool,
    fragment_bytes_max: usize,
    responses: VecDeque<WatchResponse>,
    /// The least next revision of any watcher (`i64::MAX` with none): a
    /// stream woken for a revision learns whether it lags without
    /// visiting its watchers.
    lag_floor: i64,
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
            watchers: ById::default(),
            next_auto_id: 0,
            progress_requested: false,
            fragment_bytes_max,
            responses: VecDeque::new(),
            lag_floor: i64::MAX,
        }
    }

    pub fn watcher_count(&self) -> usize {
        self.watchers.len()
    }

    /// Refuses a create request the shell judged, with `reason` (e.g. the
    /// requester may not read the range), as etcd answers it.
    pub fn handle_refused_create(&mut self, reason: &str, current_revision: i64) {
        self.responses.push_back(WatchResponse {
            header: header(current_revision),
            watch_id: INVALID_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        });
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
        if req.start_revision < 0 {
            // As etcd: no revision before the first can be watched, so the
            // watch is refused as if that history had been compacted.
            self.responses
                .push_back(refuse(&Error::Compacted.to_string()));
            return;
        }
        if self.watchers.len() >= WATCHERS_PER_STREAM_MAX {
            self.responses.push_back(refuse(TOO_MANY_WATCHERS));
            return;
        }
        let id = if req.watch_id > 0 {
            if self.watchers.contains(req.watch_id) {
                self.responses.push_back(refuse(DUPLICATE_WATCH_ID));
                return;
            }
            req.watch_id
        } else {
            while self.watchers.contains(self.next_auto_id) {
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
        self.lag_floor = self.lag_floor.min(watcher.next_revision);
        self.watchers.insert(id, watcher);
        self.responses.push_back(WatchResponse {
            header: header(current_revision),
            watch_id: id,
            created: true,
            ..Default::default()
        });
    }

    pub fn handle_cancel(&mut self, watch_id: i64, current_revision: i64) {
        if self.watchers.remove(watch_id).is_some() {
            self.lag_floor = self.least_next_revision();
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

    /// Whether some watcher asked for progress notifications: without one,
    /// the progress timer has nothing to do.
    pub fn wants_progress_ticks(&self) -> bool {
        self.watchers.values().any(|w| w.progress_notify)
    }

    /// The periodic progress timer fired: caught-up watchers that asked for
    /// progress notifications learn the current revision.
    pub fn handle_progress_tick(&mut self, current_revision: i64) {
        for (id, watcher) in self.watchers.iter() {
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
        debug_assert_eq!(self.lag_floor, self.least_next_revision());
        self.lag_floor <= current_revision
    }

    fn least_next_revision(&self) -> i64 {
        self.watchers
            .values()
            .map(|w| w.next_revision)
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Moves lagging watchers forward by one bounded step of events; call
    /// again while [`WatchStream::wants_sync`] says so.
    pub fn sync(
        &mut self,
        current_revision: i64,
        compact_revision: i64,
        read: &mut ReadEvents<'_>,
    ) -> Result<(), Error> {
        if self.lag_floor < compact_revision {
            self.cancel_compacted(compact_revision);
        }
        if !self.wants_sync(current_revision) {
            self.answer_progress_request(current_revision);
            return Ok(());
        }
        let from = self.lag_floor;
        let with_prev = self
            .watchers
            .values()
            .any(|w| w.prev_kv && w.next_revision <= current_revision);
        let events = read(from, current_revision, EVENTS_PER_SYNC_MAX, with_prev)?;
        let read_to = match events.last().and_then(|e| e.kv.as_ref()) {
            Some(kv) if events.len() >= EVENTS_PER_SYNC_MAX => kv.mod_revision,
            _ => current_revision,
        };
        let delivery = Delivery {
            events: &events,
            read_to,
            current_revision,
            fragment_bytes_max: self.fragment_bytes_max,
        };
        let mut lag_floor = i64::MAX;
        for (id, watcher) in self.watchers.iter_mut() {
            delivery.to(id, watcher, &mut self.responses);
            lag_floor = lag_floor.min(watcher.next_revision);
        }
        self.lag_floor = lag_floor;
        self.answer_progress_request(current_revision);
        Ok(())
    }

    pub fn poll_response(&mut self) -> Option<WatchResponse> {
        self.responses.pop_front()
    }

    /// Cancels the watchers whose next revision was compacted away; as
    /// etcd's, the answer's header carries no revision.
    fn cancel_compacted(&mut self, compact_revision: i64) {
        let compacted = self
            .watchers
            .remove_where(|w| w.next_revision < compact_revision);
        for id in compacted {
            self.responses.push_back(WatchResponse {
                header: header(0),
                watch_id: id,
                canceled: true,
                compact_revision,
                ..Default::default()
            });
        }
        self.lag_floor = self.least_next_revision();
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

/// One sync step's events on their way to the watchers.
struct Delivery<'a> {
    events: &'a [Event],
    /// The events cover the store up to this revision.
    read_to: i64,
    current_revision: i64,
    fragment_bytes_max: usize,
}

impl Delivery<'_> {
    /// Queues the events watcher `id` wants as responses and moves it past
    /// them.
    fn to(&self, id: i64, watcher: &mut Watcher, responses: &mut VecDeque<WatchResponse>) {
        if watcher.next_revision > self.read_to {
            return;
        }
        let from = watcher.next_revision;
        let selected: Vec<Event> = self
            .events
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
        watcher.next_revision = self.read_to + 1;
        if selected.is_empty() {
            return;
        }
        let response = |events, fragment| WatchResponse {
            header: header(self.current_revision),
            watch_id: id,
            fragment,
            events,
            ..Default::default()
        };
        if !watcher.fragment {
            responses.push_back(response(selected, false));
            return;
        }
        let batches = split_fragments(selected, self.fragment_bytes_max);
        let last = batches.len() - 1;
        for (i, events) in batches.into_iter().enumerate() {
            responses.push_back(response(events, i < last));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use e2d_proto::mvccpb::KeyValue;

    fn event(kind: EventType, key: &str, revision: i64, value_bytes: usize) -> Event {
        Event {
            r#type: kind as i32,
            kv: Some(KeyValue {
                key: key.as_bytes().to_vec().into(),
                mod_revision: revision,
                value: vec![b'v'; value_bytes].into(),
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    /// A store history: one event per revision, starting at revision 2.
    fn history() -> Vec<Event> {
        vec![
            event(EventType::Put, "a", 2, 1),
            event(EventType::Put, "b", 3, 1),
            event(EventType::Delete, "a", 4, 0),
            event(EventType::Put, "c", 5, 1),
        ]
    }

    fn reader(
        history: &[Event],
    ) -> impl FnMut(i64, i64, usize, bool) -> Result<std::sync::Arc<[Event]>, Error> + '_ {
        move |from, to, _max, _prev| {
            Ok(history
                .iter()
                .filter(|e| {
                    let rev = e.kv.as_ref().unwrap().mod_revision;
                    rev >= from && rev <= to
                })
                .cloned()
                .collect())
        }
    }

    fn drain(stream: &mut WatchStream) -> Vec<WatchResponse> {
        std::iter::from_fn(|| stream.poll_response()).collect()
    }

    fn create(key: &str, range_end: &str, start_revision: i64) -> WatchCreateRequest {
        WatchCreateRequest {
            key: key.into(),
            range_end: range_end.into(),
            start_revision,
            ..Default::default()
        }
    }

    fn revisions(response: &WatchResponse) -> Vec<i64> {
        response
            .events
            .iter()
            .map(|e| e.kv.as_ref().unwrap().mod_revision)
            .collect()
    }

    #[test]
    fn replays_history_then_follows_new_revisions() {
        let history = history();
        let mut stream = WatchStream::new(1 << 20);
        stream.handle_create(&create("a", "z", 2), 3);
        let created = drain(&mut stream);
        assert_eq!(created.len(), 1);
        assert!(created[0].created);
        assert_eq!(created[0].watch_id, 0);
        stream.sync(3, 0, &mut reader(&history)).unwrap();
        let first = drain(&mut stream);
        assert_eq!(revisions(&first[0]), vec![2, 3]);
        assert!(!stream.wants_sync(3));
        stream.sync(5, 0, &mut reader(&history)).unwrap();
        let second = drain(&mut stream);
        assert_eq!(revisions(&second[0]), vec![4, 5]);
        assert_eq!(second[0].header.unwrap().revision, 5);
    }

    #[test]
    fn filters_and_key_spans_select_events() {
        let history = history();
        let mut stream = WatchStream::new(1 << 20);
        let mut no_delete = create("a", "", 2);
        no_delete.filters = vec![FilterType::Nodelete as i32];
        stream.handle_create(&no_delete, 5);
        stream.handle_create(&create("b", "\0", 2), 5);
        drain(&mut stream);
        stream.sync(5, 0, &mut reader(&history)).unwrap();
        let responses = drain(&mut stream);
        assert_eq!(responses.len(), 2);
        assert_eq!(
            (responses[0].watch_id, revisions(&responses[0])),
            (0, vec![2])
        );
        assert_eq!(
            (responses[1].watch_id, revisions(&responses[1])),
            (1, vec![3, 5])
        );
    }

    #[test]
    fn compacted_start_revision_cancels_with_the_compact_revision() {
        let history = history();
        let mut stream = WatchStream::new(1 << 20);
        stream.handle_create(&create("a", "", 2), 5);
        drain(&mut stream);
        stream.sync(5, 4, &mut reader(&history)).unwrap();
        let responses = drain(&mut stream);
        assert_eq!(responses.len(), 1);
        assert!(responses[0].canceled);
        assert_eq!(responses[0].compact_revision, 4);
        assert_eq!(responses[0].header.as_ref().unwrap().revision, 0);
        assert_eq!(stream.watcher_count(), 0);
    }

    #[test]
    fn negative_start_revision_is_refused_as_compacted() {
        let mut stream = WatchStream::new(1 << 20);
        stream.handle_create(&create("a", "", -1), 3);
        let responses = drain(&mut stream);
        assert_eq!(responses.len(), 1);
        let refused = &responses[0];
        assert!(refused.created && refused.canceled);
        assert_eq!(refused.watch_id, INVALID_WATCH_ID);
        assert_eq!(
            refused.cancel_reason,
            "etcdserver: mvcc: required revision has been compacted"
        );
        assert_eq!(refused.header.unwrap().revision, 3);
        assert_eq!(stream.watcher_count(), 0);
    }

    #[test]
    fn duplicate_client_ids_are_refused_and_cancel_answers() {
        let mut stream = WatchStream::new(1 << 20);
        let mut with_id = create("a", "", 0);
        with_id.watch_id = 7;
        stream.handle_create(&with_id, 1);
        stream.handle_create(&with_id, 1);
        let responses = drain(&mut stream);
        assert_eq!(responses[0].watch_id, 7);
        assert!(responses[1].canceled && responses[1].created);
        assert_eq!(responses[1].cancel_reason, DUPLICATE_WATCH_ID);
        stream.handle_cancel(7, 1);
        let canceled = drain(&mut stream);
        assert!(canceled[0].canceled && canceled[0].watch_id == 7);
    }

    #[test]
    fn large_responses_are_fragmented_when_asked() {
        let history: Vec<Event> = (2..6)
            .map(|rev| event(EventType::Put, "k", rev, 400))
            .collect();
        let mut stream = WatchStream::new(1000);
        let mut fragmented = create("k", "", 2);
        fragmented.fragment = true;
        stream.handle_create(&fragmented, 5);
        drain(&mut stream);
        stream.sync(5, 0, &mut reader(&history)).unwrap();
        let responses = drain(&mut stream);
        assert_eq!(responses.len(), 2);
        assert!(responses[0].fragment);
        assert!(!responses[1].fragment);
        let all: Vec<i64> = responses.iter().flat_map(revisions).collect();
        assert_eq!(all, vec![2, 3, 4, 5]);
    }

    #[test]
    fn progress_requests_wait_for_lagging_watchers() {
        let history = history();
        let mut stream = WatchStream::new(1 << 20);
        stream.handle_create(&create("a", "", 2), 5);
        drain(&mut stream);
        stream.handle_progress_request(5);
        assert!(drain(&mut stream).is_empty());
        stream.sync(5, 0, &mut reader(&history)).unwrap();
        let responses = drain(&mut stream);
        let progress = responses.last().unwrap();
        assert_eq!(progress.watch_id, INVALID_WATCH_ID);
        assert!(progress.events.is_empty());
        assert_eq!(progress.header.unwrap().revision, 5);
    }

    /// What a stream's operations may be, in a random run.
    #[derive(Debug, Clone)]
    enum Op {
        Create { key: u8, whole: bool, start: i64 },
        Cancel(i64),
        Commit,
        Compact(i64),
        Sync,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0u8..3, any::<bool>(), 0i64..8).prop_map(|(key, whole, start)| Op::Create {
                key,
                whole,
                start
            }),
            (0i64..6).prop_map(Op::Cancel),
            Just(Op::Commit),
            (0i64..8).prop_map(Op::Compact),
            Just(Op::Sync),
        ]
    }

    /// A live watcher as its client knows it: its key span, the first
    /// revision it watches and the revisions it was sent.
    struct Seen {
        key: Vec<u8>,
        end: Vec<u8>,
        first: i64,
        revisions: Vec<i64>,
    }

    /// Hands the stream's responses to the watchers they are for; a
    /// canceled one is forgotten.
    fn take(stream: &mut WatchStream, watchers: &mut std::collections::BTreeMap<i64, Seen>) {
        for response in drain(stream) {
            if response.canceled {
                watchers.remove(&response.watch_id);
            } else if let Some(watcher) = watchers.get_mut(&response.watch_id) {
                watcher.revisions.extend(revisions(&response));
            }
        }
    }

    proptest::proptest! {
        /// Whatever creates, cancels, commits, compactions and syncs came
        /// before, a stream lags exactly when one of its watchers does,
        /// and once it no longer lags, every watcher compaction left has
        /// had each event it matches from its start, once and in order.
        #[test]
        fn every_watcher_sees_its_events_whatever_the_order_of_operations(
            ops in proptest::collection::vec(op(), 1..60)
        ) {
            // Revisions 2..=13: puts and deletes of a, b and c in turn.
            let history: Vec<Event> = (2..=13)
                .map(|revision| {
                    let key = ["a", "b", "c"][(revision % 3) as usize];
                    let kind = if revision % 4 == 0 { EventType::Delete } else { EventType::Put };
                    event(kind, key, revision, 1)
                })
                .collect();
            let mut stream = WatchStream::new(1 << 20);
            let (mut current, mut compacted) = (1i64, 0i64);
            let mut watchers = std::collections::BTreeMap::new();
            for op in ops {
                match op {
                    Op::Create { key, whole, start } => {
                        let key = vec![b'a' + key];
                        let end = if whole { b"\0".to_vec() } else { Vec::new() };
                        let request = WatchCreateRequest {
                            key: key.clone(),
                            range_end: end.clone(),
                            start_revision: start,
                            ..Default::default()
                        };
                        let first = if start > 0 { start } else { current + 1 };
                        stream.handle_create(&request, current);
                        if let Some(created) = stream.responses.back().filter(|r| !r.canceled) {
                            let seen = Seen { key, end, first, revisions: Vec::new() };
                            watchers.insert(created.watch_id, seen);
                        }
                    }
                    Op::Cancel(id) => {
                        stream.handle_cancel(id, current);
                    }
                    Op::Commit => current = (current + 1).min(13),
                    Op::Compact(revision) => compacted = compacted.max(revision.min(current)),
                    Op::Sync => stream.sync(current, compacted, &mut reader(&history)).unwrap(),
                }
                take(&mut stream, &mut watchers);
                // Lagging as defined, against the floor the stream keeps.
                let lags = stream.watchers.values().any(|w| w.next_revision <= current);
                proptest::prop_assert_eq!(stream.wants_sync(current), lags);
            }
            while stream.wants_sync(current) {
                stream.sync(current, compacted, &mut reader(&history)).unwrap();
                take(&mut stream, &mut watchers);
            }
            for (id, seen) in &watchers {
                let span = KeySpan::new(&seen.key, &seen.end);
                let wanted: Vec<i64> = history
                    .iter()
                    .map(|e| e.kv.as_ref().unwrap())
                    .filter(|kv| kv.mod_revision >= seen.first && kv.mod_revision <= current)
                    .filter(|kv| span.contains(&kv.key))
                    .map(|kv| kv.mod_revision)
                    .collect();
                proptest::prop_assert_eq!(&seen.revisions, &wanted, "watcher {}", id);
            }
        }
    }
}

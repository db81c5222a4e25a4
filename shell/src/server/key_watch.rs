//! [`KeyWatch`]: a watch of one key span held inside the server, for the
//! services that wait on the store themselves (Lock, Election). It drives
//! the same core [`WatchStream`] a client's watch does, over the applied
//! revision and the shared recent event reads, so it sees exactly what a
//! client watching from the same revision would.

use std::collections::VecDeque;
use std::sync::Arc;

use e2d_core::watch::WatchStream;
use e2d_core::Error;
use e2d_proto::etcdserverpb::{watch_create_request::FilterType, WatchCreateRequest};
use e2d_proto::mvccpb::Event;
use tokio::sync::watch;

use super::Node;

/// One batch of events and the revision the store had when they were read.
#[derive(Debug)]
pub struct WatchedEvents {
    pub revision: i64,
    pub events: Vec<Event>,
}

pub struct KeyWatch {
    node: Arc<Node>,
    stream: WatchStream,
    revision: watch::Receiver<i64>,
    /// Events read and not yet handed out (at most one sync step's).
    ready: VecDeque<WatchedEvents>,
}

impl KeyWatch {
    /// Watches `key..range_end` (`range_end` empty: the key alone) from
    /// `start_revision` on, that revision included; with `deletes_only`,
    /// puts are filtered out.
    pub fn new(
        node: Arc<Node>,
        key: Vec<u8>,
        range_end: Vec<u8>,
        start_revision: i64,
        deletes_only: bool,
    ) -> Self {
        assert!(start_revision > 0, "a key watch starts at a given revision");
        // Subscribed before the store is read: no revision slips between.
        let revision = node.subscribe_revision();
        let current = node.read().current_revision();
        let mut stream = WatchStream::new(node.config.max_request_bytes);
        let filters = if deletes_only {
            vec![FilterType::Noput as i32]
        } else {
            Vec::new()
        };
        let create = WatchCreateRequest {
            key,
            range_end,
            start_revision,
            filters,
            ..Default::default()
        };
        stream.handle_create(&create, current);
        // The "created" answer; a key watch has nothing to tell about it.
        while stream.poll_response().is_some() {}
        Self {
            node,
            stream,
            revision,
            ready: VecDeque::new(),
        }
    }

    /// The next events, waiting for the store to change. Fails with
    /// etcd's "required revision has been compacted" when the revisions
    /// still to be seen have been compacted away.
    pub async fn next(&mut self) -> Result<WatchedEvents, Error> {
        loop {
            if let Some(batch) = self.ready.pop_front() {
                return Ok(batch);
            }
            if !self.sync_step()? {
                // The node holds the sender and this watch holds the node.
                self.revision
                    .changed()
                    .await
                    .expect("the node outlives the key watches that hold it");
            }
        }
    }

    /// Reads one bounded step of events if the watch lags the store;
    /// returns whether it did.
    fn sync_step(&mut self) -> Result<bool, Error> {
        let state = self.node.read();
        let current = state.current_revision();
        // Marks the revision seen: a change after this read wakes `next`.
        self.revision.borrow_and_update();
        if !self.stream.wants_sync(current) {
            return Ok(false);
        }
        let mvcc = state.mvcc();
        self.stream.sync(
            current,
            mvcc.compact_revision(),
            &mut |from, to, max, prev| {
                self.node
                    .recent_events
                    .get_or_read((from, to, max, prev), || mvcc.events(from, to, max, prev))
            },
        )?;
        while let Some(response) = self.stream.poll_response() {
            if response.canceled {
                // The only way a watch of the store's own revisions ends.
                return Err(Error::Compacted);
            }
            if !response.events.is_empty() {
                let revision = response.header.map_or(current, |h| h.revision);
                self.ready.push_back(WatchedEvents {
                    revision,
                    events: response.events,
                });
            }
        }
        Ok(true)
    }
}

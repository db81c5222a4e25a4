//! The Watch service: each stream's response body drives a core
//! [`WatchStream`] with client requests, committed revisions and the
//! progress timer. The body is polled by the connection's task for the
//! stream, so an event costs no task hop or channel on its way out, and a
//! client that stops reading stops the stream's work (HTTP/2 flow control).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use e2d_core::watch::WatchStream;
use e2d_proto::etcdserverpb::watch_request::RequestUnion;
use e2d_proto::etcdserverpb::watch_server::Watch;
use e2d_proto::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse};
use futures_util::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::wake_gate::WakeGate;
use crate::server::node::fill_header_from;
use crate::server::Node;

/// New revisions taken in a row before requests and the progress timer
/// are looked at first.
const REVISION_STREAK_MAX: u32 = 16;

type Responses = Pin<Box<dyn futures_util::Stream<Item = Result<WatchResponse, Status>> + Send>>;

pub struct WatchService {
    node: Arc<Node>,
}

impl WatchService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = Responses;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        super::status::check_has_leader(request.metadata(), &self.node)?;
        // Learns a token another member handed out, before any create
        // judges it.
        let _ = crate::auth::identify(&self.node, request.metadata(), request.extensions()).await;
        let (metadata, extensions) = (request.metadata().clone(), request.extensions().clone());
        let node = self.node.clone();
        let interval = Duration::from_millis(node.config.progress_notify_interval_ms);
        node.metrics.watch_streams_add(1);
        let task = StreamTask {
            stream: WatchStream::new(node.config.max_request_bytes),
            revision: node.subscribe_revision(),
            progress: tokio::time::interval_at(tokio::time::Instant::now() + interval, interval),
            incoming: WakeGate::new(request.into_inner()),
            metadata,
            extensions,
            member_header: None,
            node,
            failure: None,
            lagging: false,
            ended: false,
            requests_ended: false,
            revision_streak: 0,
            ticks_wanted: false,
        };
        // Boxed, so each response moves a pointer in and out, not the task.
        let mut task = Box::new(task);
        // The call is answered with its first response, as etcd's is (gRPC
        // sends the headers with the first message): a client that awaits
        // the call, then writes, finds its watcher in place.
        let first = match task.next_response().await {
            Some(Err(status)) => return Err(status),
            first => first,
        };
        let rest = futures_util::stream::unfold(task, |mut task| async move {
            let response = task.next_response().await?;
            Some((response, task))
        });
        let responses = futures_util::stream::iter(first).chain(rest);
        Ok(Response::new(Box::pin(responses)))
    }
}

struct StreamTask {
    node: Arc<Node>,
    /// The stream's metadata and extensions: who creates its watchers.
    metadata: tonic::metadata::MetadataMap,
    extensions: tonic::Extensions,
    stream: WatchStream,
    incoming: WakeGate<Streaming<WatchRequest>>,
    revision: tokio::sync::watch::Receiver<i64>,
    progress: tokio::time::Interval,
    /// Why the stream failed, sent after the responses made before.
    failure: Option<Status>,
    /// The member's part of the headers of the last step's responses,
    /// read for its first response (`None`: not read since the step).
    member_header: Option<Option<ResponseHeader>>,
    /// Watchers still lag the store: the next step syncs without waiting.
    lagging: bool,
    /// The client is gone or the stream failed: nothing after the
    /// responses made and the failure.
    ended: bool,
    /// The client sent its last request. Its watchers go on, as etcd's
    /// do, until it cancels the call or goes away.
    requests_ended: bool,
    /// Wake-ups in a row that were new revisions.
    revision_streak: u32,
    /// Some watcher asked for progress notifications, so the progress
    /// timer runs; otherwise a wake-up skips it.
    ticks_wanted: bool,
}

impl Drop for StreamTask {
    fn drop(&mut self) {
        self.node
            .metrics
            .watchers_add(-(self.stream.watcher_count() as i64));
        self.node.metrics.watch_streams_add(-1);
    }
}

impl StreamTask {
    /// The stream's next response; `None` ends it.
    async fn next_response(&mut self) -> Option<Result<WatchResponse, Status>> {
        loop {
            // Taken from the core stream as the connection asks for them,
            // each moved once on its way out.
            if let Some(mut response) = self.stream.poll_response() {
                let member = *self
                    .member_header
                    .get_or_insert_with(|| self.node.header(0));
                fill_header_from(member, &mut response.header);
                return Some(Ok(response));
            }
            if let Some(status) = self.failure.take() {
                return Some(Err(status));
            }
            if self.ended {
                return None;
            }
            if !self.lagging {
                self.wait_for_input().await;
                if self.ended {
                    // What the end left (its failure) goes first.
                    continue;
                }
            }
            match self.sync_step() {
                Ok(lagging) => self.lagging = lagging,
                Err(status) => {
                    self.failure = Some(status);
                    self.ended = true;
                }
            }
        }
    }

    /// Waits for a client request, a new revision or the progress tick,
    /// and takes it in.
    async fn wait_for_input(&mut self) {
        // Biased: a fixed polling order keeps simulated runs replayable.
        // A new revision, the common wake-up, is looked at first, so an
        // event costs one poll, not three; after a streak of them the
        // others go first once, so a busy store starves neither.
        if self.revision_streak < REVISION_STREAK_MAX {
            tokio::select! {
                biased;
                changed = self.revision.changed() => {
                    self.revision_streak += 1;
                    self.ended |= changed.is_err();
                    return;
                }
                _ = self.progress.tick(), if self.ticks_wanted => self.on_progress_tick(),
                message = self.incoming.next(), if !self.requests_ended => {
                    self.on_message(message.transpose())
                }
            }
        } else {
            tokio::select! {
                biased;
                _ = self.progress.tick(), if self.ticks_wanted => self.on_progress_tick(),
                message = self.incoming.next(), if !self.requests_ended => {
                    self.on_message(message.transpose())
                }
                changed = self.revision.changed() => self.ended |= changed.is_err(),
            }
        }
        self.revision_streak = 0;
    }

    fn on_progress_tick(&mut self) {
        let current = self.node.read().current_revision();
        self.stream.handle_progress_tick(current);
    }

    fn on_message(&mut self, message: Result<Option<WatchRequest>, Status>) {
        match message {
            Ok(Some(request)) => self.handle_request(request),
            Ok(None) => self.requests_ended = true,
            // A request that cannot be decoded ends the stream with its
            // status (tonic's INTERNAL, as grpc-go's for etcd), not OK, so
            // the client learns its stream failed.
            Err(status) => {
                self.failure = Some(status);
                self.ended = true;
            }
        }
    }

    fn handle_request(&mut self, request: WatchRequest) {
        let current = self.node.read().current_revision();
        let before = self.stream.watcher_count() as i64;
        match request.request_union {
            Some(RequestUnion::CreateRequest(mut create)) => {
                if crate::sim_bugs::planted().watch_resume_skips_a_revision
                    && create.start_revision > 1
                {
                    create.start_revision += 1;
                }
                match self.may_watch(&create) {
                    Ok(()) => self.stream.handle_create(&create, current),
                    Err(refused) => {
                        let reason = format!(
                            "rpc error: code = {:?} desc = {}",
                            super::to_status(refused.clone()).code(),
                            refused
                        );
                        self.stream.handle_refused_create(&reason, current)
                    }
                }
            }
            Some(RequestUnion::CancelRequest(cancel)) => {
                self.stream.handle_cancel(cancel.watch_id, current)
            }
            Some(RequestUnion::ProgressRequest(_)) => self.stream.handle_progress_request(current),
            None => {}
        }
        let after = self.stream.watcher_count() as i64;
        self.node.metrics.watchers_add(after - before);
        let ticks_wanted = self.stream.wants_progress_ticks();
        if ticks_wanted && !self.ticks_wanted {
            // A full interval from now, not a burst of the ticks missed
            // while nobody wanted them.
            self.progress.reset();
        }
        self.ticks_wanted = ticks_wanted;
    }

    /// Whether the stream's requester may read what `create` watches (etcd
    /// checks at creation only).
    fn may_watch(&self, create: &WatchCreateRequest) -> Result<(), e2d_core::Error> {
        let who = crate::auth::identify_now(&self.node, &self.metadata, &self.extensions)?;
        self.node.read().auth().check_range(
            &who.unwrap_or_default(),
            &create.key,
            &create.range_end,
            e2d_core::auth::Access::Read,
        )
    }

    /// One bounded step under the read lock: leaves the responses to send
    /// in the core stream and returns whether watchers still lag.
    fn sync_step(&mut self) -> Result<bool, Status> {
        let state = self.node.read();
        let current = state.current_revision();
        let before = self.stream.watcher_count() as i64;
        if self.stream.wants_sync(current) {
            let mvcc = state.mvcc();
            self.stream
                .sync(
                    current,
                    mvcc.compact_revision(),
                    &mut |from, to, max, prev| {
                        self.node
                            .recent_events
                            .get_or_read((from, to, max, prev), || mvcc.events(from, to, max, prev))
                    },
                )
                .map_err(super::to_status)?;
        }
        self.node
            .metrics
            .watchers_add(self.stream.watcher_count() as i64 - before);
        // The member's part of the header is read again for the step's
        // responses, which differ only in their revisions; a step that
        // makes none (its watchers matched nothing) reads nothing.
        self.member_header = None;
        Ok(self.stream.wants_sync(current))
    }
}

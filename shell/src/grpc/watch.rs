//! The Watch service: one task per stream drives a core
//! [`WatchStream`] with client requests, committed revisions and the
//! progress timer, and forwards its responses through a bounded channel.

use std::sync::Arc;
use std::time::Duration;

use e2d_core::watch::WatchStream;
use e2d_proto::etcdserverpb::watch_request::RequestUnion;
use e2d_proto::etcdserverpb::watch_server::Watch;
use e2d_proto::etcdserverpb::{WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::server::Node;

/// Responses buffered per stream before the stream task waits for the client.
const WATCH_RESPONSES_BUFFERED_MAX: usize = 128;

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
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        super::status::check_has_leader(request.metadata(), &self.node)?;
        let incoming = request.into_inner();
        let (responses, outgoing) = mpsc::channel(WATCH_RESPONSES_BUFFERED_MAX);
        let node = self.node.clone();
        tokio::spawn(async move {
            let mut task = StreamTask {
                stream: WatchStream::new(node.config.max_request_bytes),
                node,
                responses,
            };
            task.run(incoming).await;
            task.node
                .metrics
                .watchers_add(-(task.stream.watcher_count() as i64));
        });
        Ok(Response::new(ReceiverStream::new(outgoing)))
    }
}

struct StreamTask {
    node: Arc<Node>,
    stream: WatchStream,
    responses: mpsc::Sender<Result<WatchResponse, Status>>,
}

impl StreamTask {
    async fn run(&mut self, mut incoming: Streaming<WatchRequest>) {
        let mut revision = self.node.subscribe_revision();
        let interval = Duration::from_millis(self.node.config.progress_notify_interval_ms);
        let mut progress =
            tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            // Biased: a fixed polling order keeps simulated runs
            // replayable; each branch is bounded, so none starves.
            tokio::select! {
                biased;
                _ = progress.tick() => {
                    let current = self.node.read().current_revision();
                    self.stream.handle_progress_tick(current);
                }
                message = incoming.message() => match message {
                    Ok(Some(request)) => self.handle_request(request),
                    Ok(None) | Err(_) => return,
                },
                changed = revision.changed() => if changed.is_err() {
                    return;
                },
            }
            if !self.sync_and_send().await {
                return;
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
                self.stream.handle_create(&create, current)
            }
            Some(RequestUnion::CancelRequest(cancel)) => {
                self.stream.handle_cancel(cancel.watch_id, current)
            }
            Some(RequestUnion::ProgressRequest(_)) => self.stream.handle_progress_request(current),
            None => {}
        }
        let after = self.stream.watcher_count() as i64;
        self.node.metrics.watchers_add(after - before);
    }

    /// Catches watchers up and sends what the stream produced; false once
    /// the client is gone.
    async fn sync_and_send(&mut self) -> bool {
        loop {
            let (batch, more) = match self.sync_step() {
                Ok(step) => step,
                Err(status) => {
                    let _ = self.responses.send(Err(status)).await;
                    return false;
                }
            };
            for response in batch {
                if self.responses.send(Ok(response)).await.is_err() {
                    return false;
                }
            }
            if !more {
                return true;
            }
        }
    }

    /// One bounded step under the read lock: returns the responses to send
    /// and whether watchers still lag.
    fn sync_step(&mut self) -> Result<(Vec<WatchResponse>, bool), Status> {
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
        let mut batch = Vec::new();
        while let Some(mut response) = self.stream.poll_response() {
            self.node.fill_header(&mut response.header);
            batch.push(response);
        }
        Ok((batch, self.stream.wants_sync(current)))
    }
}

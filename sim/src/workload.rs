//! Clients on their own simulated hosts: each sends put, get, delete and
//! compare-and-set to a random member and records what it asked, when,
//! and what it was told; watchers follow every change and resume on
//! another member when theirs goes away.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2d_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use e2d_proto::etcdserverpb::kv_client::KvClient;
use e2d_proto::etcdserverpb::request_op::Request as OpRequest;
use e2d_proto::etcdserverpb::watch_client::WatchClient;
use e2d_proto::etcdserverpb::watch_request::RequestUnion;
use e2d_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchRequest,
};
use madsim::rand::{thread_rng, Rng};
use madsim::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::checks::{SeenEvent, WatchLog};
use crate::history::{History, Operation, Request, Response, TimeMs};

/// Keys the clients share: few, so that they contend.
pub const KEYS: usize = 6;
/// How long a client waits for an answer before the outcome is unknown.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// A client's pause between operations, at most.
const THINK_TIME_MS_MAX: u64 = 60;

pub fn key(index: usize) -> String {
    format!("k{index}")
}

/// Where clients find the cluster: the members' client URLs, kept up to
/// date as machines are replaced.
#[derive(Clone, Default)]
pub struct Directory {
    urls: Arc<Mutex<Vec<String>>>,
}

impl Directory {
    pub fn set(&self, urls: Vec<String>) {
        *self.urls.lock().unwrap_or_else(|p| p.into_inner()) = urls;
    }

    pub fn pick(&self) -> String {
        let urls = self.urls.lock().unwrap_or_else(|p| p.into_inner());
        urls[thread_rng().gen_range(0..urls.len())].clone()
    }

    pub fn all(&self) -> Vec<String> {
        self.urls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Simulated ms since `origin`.
pub fn elapsed_ms(origin: Instant) -> TimeMs {
    origin.elapsed().as_millis() as TimeMs
}

pub async fn connect(url: &str) -> Option<Channel> {
    let endpoint = Endpoint::from_shared(url.to_string()).ok()?;
    let connect = endpoint.connect();
    match madsim::time::timeout(CALL_TIMEOUT, connect).await {
        Ok(Ok(channel)) => Some(channel),
        _ => None,
    }
}

/// What one call came to.
enum Outcome {
    Answered(Response),
    /// Refused before it was sent, or a read that failed: no effect.
    NoEffect,
    /// Sent, and no answer: it may have taken effect.
    Unknown,
}

async fn call(kv: &mut KvClient<Channel>, request: &Request) -> Outcome {
    let answered = madsim::time::timeout(CALL_TIMEOUT, send(kv, request)).await;
    match answered {
        Ok(Ok(response)) => Outcome::Answered(response),
        _ if matches!(request, Request::Get { .. }) => Outcome::NoEffect,
        _ => Outcome::Unknown,
    }
}

async fn send(kv: &mut KvClient<Channel>, request: &Request) -> Result<Response, tonic::Status> {
    let revision =
        |header: Option<e2d_proto::etcdserverpb::ResponseHeader>| header.map_or(0, |h| h.revision);
    Ok(match request {
        Request::Put { key, value } => {
            let answer = kv
                .put(PutRequest {
                    key: key.clone().into_bytes(),
                    value: value.clone().into_bytes(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Response::Put {
                revision: revision(answer.header),
            }
        }
        Request::Get { key } => {
            let answer = kv
                .range(RangeRequest {
                    key: key.clone().into_bytes(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            let found = answer.kvs.first().map(|kv| {
                (
                    String::from_utf8_lossy(&kv.value).into_owned(),
                    kv.mod_revision,
                )
            });
            Response::Get {
                revision: revision(answer.header),
                found,
            }
        }
        Request::Delete { key } => {
            let answer = kv
                .delete_range(DeleteRangeRequest {
                    key: key.clone().into_bytes(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Response::Delete {
                revision: revision(answer.header),
                deleted: answer.deleted as u64,
            }
        }
        Request::CompareAndSet {
            key,
            expected,
            value,
        } => {
            let compare = match expected {
                Some(expected) => Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Value as i32,
                    key: key.clone().into_bytes(),
                    target_union: Some(TargetUnion::Value(expected.clone().into_bytes())),
                    ..Default::default()
                },
                None => Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Version as i32,
                    key: key.clone().into_bytes(),
                    target_union: Some(TargetUnion::Version(0)),
                    ..Default::default()
                },
            };
            let put = RequestOp {
                request: Some(OpRequest::RequestPut(PutRequest {
                    key: key.clone().into_bytes(),
                    value: value.clone().into_bytes(),
                    ..Default::default()
                })),
            };
            let answer = kv
                .txn(TxnRequest {
                    compare: vec![compare],
                    success: vec![put],
                    failure: Vec::new(),
                })
                .await?
                .into_inner();
            Response::CompareAndSet {
                revision: revision(answer.header),
                succeeded: answer.succeeded,
            }
        }
    })
}

/// Runs one client until `until` (simulated ms since `origin`), recording
/// into `history`.
pub async fn run_client(
    client: u32,
    directory: Directory,
    origin: Instant,
    until_ms: TimeMs,
    history: Arc<Mutex<History>>,
) {
    let mut sequence = 0u64;
    let mut last_seen: Vec<Option<String>> = vec![None; KEYS];
    while elapsed_ms(origin) < until_ms {
        let pause = thread_rng().gen_range(0..=THINK_TIME_MS_MAX);
        madsim::time::sleep(Duration::from_millis(pause)).await;
        let Some(channel) = connect(&directory.pick()).await else {
            continue;
        };
        let mut kv = KvClient::new(channel);
        // A few operations per connection, as real clients reuse theirs.
        for _ in 0..thread_rng().gen_range(1..=8) {
            sequence += 1;
            let index = thread_rng().gen_range(0..KEYS);
            let value = format!("c{client}-{sequence}");
            let request = match thread_rng().gen_range(0..100) {
                0..=34 => Request::Get { key: key(index) },
                35..=64 => Request::Put {
                    key: key(index),
                    value,
                },
                65..=74 => Request::Delete { key: key(index) },
                _ => Request::CompareAndSet {
                    key: key(index),
                    expected: last_seen[index].clone(),
                    value,
                },
            };
            let invoked_ms = elapsed_ms(origin);
            let outcome = call(&mut kv, &request).await;
            let completed = match outcome {
                Outcome::Answered(response) => {
                    if let Response::Get { found, .. } = &response {
                        last_seen[index] = found.as_ref().map(|(v, _)| v.clone());
                    }
                    Some((elapsed_ms(origin), response))
                }
                Outcome::NoEffect => break,
                Outcome::Unknown => None,
            };
            let failed = completed.is_none();
            history
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Operation {
                    client,
                    invoked_ms,
                    request,
                    completed,
                });
            if failed {
                break;
            }
        }
    }
}

/// Watches every key from `first_revision` until `until_ms`, resuming after the
/// last revision seen whenever a stream ends.
pub async fn run_watcher(
    directory: Directory,
    origin: Instant,
    until_ms: TimeMs,
    log: Arc<Mutex<WatchLog>>,
    first_revision: i64,
) {
    let mut next_revision = first_revision;
    let mut responses = 0u64;
    while elapsed_ms(origin) < until_ms {
        madsim::time::sleep(Duration::from_millis(50)).await;
        let Some(channel) = connect(&directory.pick()).await else {
            continue;
        };
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                start_revision: next_revision,
                ..Default::default()
            })),
        };
        let requests =
            tokio_stream::StreamExt::chain(tokio_stream::iter([create]), tokio_stream::pending());
        let mut client = WatchClient::new(channel);
        let started = madsim::time::timeout(CALL_TIMEOUT, client.watch(requests));
        let Ok(Ok(stream)) = started.await else {
            continue;
        };
        let mut stream = stream.into_inner();
        log.lock().unwrap_or_else(|p| p.into_inner()).resumes += 1;
        loop {
            let left = until_ms.saturating_sub(elapsed_ms(origin));
            let Ok(Ok(Some(response))) =
                madsim::time::timeout(Duration::from_millis(left.max(1)), stream.message()).await
            else {
                break;
            };
            if response.canceled {
                break;
            }
            responses += 1;
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            for event in response.events {
                let Some(kv) = event.kv else { continue };
                next_revision = next_revision.max(kv.mod_revision + 1);
                let is_delete = event.r#type == 1;
                log.events.push(SeenEvent {
                    revision: kv.mod_revision,
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    value: (!is_delete).then(|| String::from_utf8_lossy(&kv.value).into_owned()),
                    response: responses,
                });
            }
        }
    }
}

/// Client hosts get addresses apart from the cluster's.
pub fn client_ip(index: u8) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, index + 1))
}

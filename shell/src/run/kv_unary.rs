//! The KV service's calls (Range, Put, DeleteRange, Txn, Compact) served
//! without tonic's machinery for each call: the request's one message is
//! read from the body and decoded in place, the handler is called, and
//! the answer is one data frame and the `grpc-status` trailer, as tonic
//! writes it. tonic's unary path builds, boxes and drops a decoding
//! stream, an encoding body and their buffers for every call.
//!
//! Only the plain case is served here: a request without compression
//! whose body is one whole message within the size limit, which decodes.
//! Anything else (compression, a message too large, more than one
//! message, trailers, a body that fails, bytes that do not decode) goes
//! to tonic's service with the bytes read so far put back in front of the
//! rest of the body, so its answer is tonic's, word for word.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Request, Response, Version};
use e2d_proto::etcdserverpb::kv_server::{Kv, KvServer};
use hyper::body::{Body as _, Frame};
use prost::bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use tonic::Status;
use tower::Service;

use crate::metrics::metered_body::metered;
use crate::metrics::GrpcCall;

type Body = tonic::body::Body;
type Responding =
    Pin<Box<dyn Future<Output = Result<Response<Body>, std::convert::Infallible>> + Send>>;

/// The length-prefixed message's header: the compressed flag and the length.
const MESSAGE_HEADER_BYTES: usize = 5;

/// The headers a handler's response metadata may not set (tonic drops
/// them too): the call's framing is this module's.
const RESERVED_HEADERS: [&str; 5] = [
    "te",
    "content-type",
    "grpc-message",
    "grpc-message-type",
    "grpc-status",
];

/// The KV service `T`, its plain calls served here and the rest by tonic.
pub struct KvUnary<T> {
    service: Arc<T>,
    tonic: KvServer<T>,
    /// The largest request message taken, in bytes (tonic's limit too).
    request_bytes_max: usize,
}

impl<T: Kv> KvUnary<T> {
    pub fn new(service: T, request_bytes_max: usize) -> Self {
        let service = Arc::new(service);
        Self {
            tonic: KvServer::from_arc(service.clone()).max_decoding_message_size(request_bytes_max),
            service,
            request_bytes_max,
        }
    }

    /// Serves a call of the KV service, the method its path names,
    /// counting its bytes and status in `call` when it is metered.
    pub fn call(&self, request: Request<Body>, call: Option<GrpcCall>) -> Responding {
        let method = request.uri().path().rsplit('/').next().unwrap_or("");
        match Method::named(method) {
            Some(Method::Range) => {
                self.serve(request, call, |kv, r| async move { kv.range(r).await })
            }
            Some(Method::Put) => self.serve(request, call, |kv, r| async move { kv.put(r).await }),
            Some(Method::DeleteRange) => {
                self.serve(
                    request,
                    call,
                    |kv, r| async move { kv.delete_range(r).await },
                )
            }
            Some(Method::Txn) => self.serve(request, call, |kv, r| async move { kv.txn(r).await }),
            Some(Method::Compact) => {
                self.serve(request, call, |kv, r| async move { kv.compact(r).await })
            }
            None => by_tonic(self.tonic.clone(), request, call),
        }
    }

    fn serve<Req, Resp, Handler, Answering>(
        &self,
        request: Request<Body>,
        mut call: Option<GrpcCall>,
        handler: Handler,
    ) -> Responding
    where
        Req: Message + Default + Send + 'static,
        Resp: Message + 'static,
        Handler: FnOnce(Arc<T>, tonic::Request<Req>) -> Answering + Send + 'static,
        Answering: Future<Output = Result<tonic::Response<Resp>, Status>> + Send,
    {
        let service = self.service.clone();
        let tonic = self.tonic.clone();
        let limit = self.request_bytes_max;
        Box::pin(async move {
            let (head, body) = request.into_parts();
            let replay = match read_message(&head.headers, body, limit).await {
                Read::Whole(bytes) => match Req::decode(&bytes[MESSAGE_HEADER_BYTES..]) {
                    Ok(message) => {
                        if let Some(call) = &call {
                            call.count_received_bytes(bytes.len() as u64);
                        }
                        let request = tonic::Request::from_http(Request::from_parts(head, message));
                        return Ok(match handler(service, request).await {
                            Ok(response) => answer(response, call),
                            Err(status) => {
                                if let Some(call) = &mut call {
                                    call.finish(status.code() as i32);
                                }
                                status.into_http()
                            }
                        });
                    }
                    Err(_) => Replay::new(bytes, Tail::Ended),
                },
                Read::Other(replay) => replay,
            };
            by_tonic(tonic, Request::from_parts(head, Body::new(replay)), call).await
        })
    }
}

/// `request` served by tonic's own KV service, metered around it when
/// `call` is.
fn by_tonic<T: Kv>(
    mut tonic: KvServer<T>,
    request: Request<Body>,
    call: Option<GrpcCall>,
) -> Responding {
    match call {
        Some(call) => Box::pin(metered(call, request, |request| tonic.call(request))),
        None => tonic.call(request),
    }
}

/// The KV service's methods, by the name a call's path ends with.
#[derive(Clone, Copy)]
enum Method {
    Range,
    Put,
    DeleteRange,
    Txn,
    Compact,
}

impl Method {
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "Range" => Method::Range,
            "Put" => Method::Put,
            "DeleteRange" => Method::DeleteRange,
            "Txn" => Method::Txn,
            "Compact" => Method::Compact,
            _ => return None,
        })
    }
}

/// What the request's body held.
enum Read {
    /// One whole uncompressed message within the limit, its header first.
    Whole(Bytes),
    /// Anything else, to be read again by tonic.
    Other(Replay),
}

/// Reads the request's message: all of it when it is one plain message
/// within `limit`, otherwise as far as it takes to see that it is not.
async fn read_message(headers: &HeaderMap, mut body: Body, limit: usize) -> Read {
    let compressed = headers
        .get("grpc-encoding")
        .is_some_and(|encoding| encoding != "identity");
    if compressed {
        return Read::Other(Replay::new(Bytes::new(), Tail::Rest(body)));
    }
    let mut received = Received::default();
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let tail = match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    received.push(data);
                    if plain_so_far(received.bytes(), limit) {
                        continue;
                    }
                    Tail::Rest(body)
                }
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => Tail::Trailers(trailers),
                    Err(_) => Tail::Rest(body),
                },
            },
            Some(Err(status)) => Tail::Failed(status),
        };
        return Read::Other(Replay::new(received.into_bytes(), tail));
    }
    let bytes = received.into_bytes();
    match declared_length(&bytes) {
        Some(length) if bytes.len() == MESSAGE_HEADER_BYTES + length => Read::Whole(bytes),
        _ => Read::Other(Replay::new(bytes, Tail::Ended)),
    }
}

/// A body's data frames, joined only when more than one holds bytes (a
/// message of a few hundred bytes comes in one, often followed by an
/// empty one that ends the stream).
#[derive(Default)]
struct Received {
    first: Option<Bytes>,
    joined: BytesMut,
}

impl Received {
    fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        if self.first.is_none() && self.joined.is_empty() {
            self.first = Some(data);
            return;
        }
        if let Some(first) = self.first.take() {
            self.joined.extend_from_slice(&first);
        }
        self.joined.extend_from_slice(&data);
    }

    fn bytes(&self) -> &[u8] {
        self.first.as_deref().unwrap_or(&self.joined)
    }

    fn into_bytes(self) -> Bytes {
        self.first.unwrap_or_else(|| self.joined.freeze())
    }
}

/// The message's length, once its header is read.
fn declared_length(bytes: &[u8]) -> Option<usize> {
    let header: [u8; MESSAGE_HEADER_BYTES] = bytes.get(..MESSAGE_HEADER_BYTES)?.try_into().ok()?;
    Some(u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize)
}

/// Whether what is read so far can still be one plain message: not
/// compressed, within `limit`, and no byte past its end.
fn plain_so_far(bytes: &[u8], limit: usize) -> bool {
    match (bytes.first(), declared_length(bytes)) {
        (None, _) => true,
        (Some(&flag), _) if flag != 0 => false,
        (_, None) => true,
        (_, Some(length)) => length <= limit && bytes.len() <= MESSAGE_HEADER_BYTES + length,
    }
}

/// A handler's answer as tonic writes it: its metadata as headers with
/// the gRPC content type, the message in one data frame, and the
/// `grpc-status` trailer.
fn answer<Resp: Message>(
    response: tonic::Response<Resp>,
    call: Option<GrpcCall>,
) -> Response<Body> {
    let (metadata, message, extensions) = response.into_parts();
    let mut headers = metadata.into_headers();
    if !headers.is_empty() {
        for name in RESERVED_HEADERS {
            headers.remove(name);
        }
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    let length = message.encoded_len();
    let body = match u32::try_from(length) {
        Ok(declared) => {
            let mut bytes = BytesMut::with_capacity(MESSAGE_HEADER_BYTES + length);
            bytes.put_u8(0);
            bytes.put_u32(declared);
            message.encode_raw(&mut bytes);
            debug_assert_eq!(bytes.len(), MESSAGE_HEADER_BYTES + length);
            Answer {
                data: Some(bytes.freeze()),
                refused: None,
                ended: false,
                call,
            }
        }
        Err(_) => Answer {
            data: None,
            refused: Some(Status::resource_exhausted(format!(
                "Cannot return body with more than 4GB of data but got {length} bytes"
            ))),
            ended: false,
            call,
        },
    };
    let mut response = Response::new(Body::new(body));
    *response.version_mut() = Version::HTTP_2;
    *response.headers_mut() = headers;
    *response.extensions_mut() = extensions;
    response
}

/// An answer's body: its message, then its status as trailers (OK
/// unless `refused`); the call it ends, when metered, counts the
/// message's bytes and ends with the status.
struct Answer {
    data: Option<Bytes>,
    refused: Option<Status>,
    ended: bool,
    call: Option<GrpcCall>,
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(data) = self.data.take() {
            if let Some(call) = &self.call {
                call.count_sent_bytes(data.len() as u64);
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        self.ended = true;
        let mut trailers = HeaderMap::with_capacity(1);
        let (code, frame) = match &self.refused {
            None => {
                trailers.insert("grpc-status", HeaderValue::from_static("0"));
                (tonic::Code::Ok, Ok(Frame::trailers(trailers)))
            }
            Some(refused) => match refused.add_header(&mut trailers) {
                Ok(()) => (refused.code(), Ok(Frame::trailers(trailers))),
                // A body that fails ends its call as Internal.
                Err(status) => (tonic::Code::Internal, Err(status)),
            },
        };
        if let Some(call) = &mut self.call {
            call.finish(code as i32);
        }
        Poll::Ready(Some(frame))
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

/// How a request's body went on after the bytes read.
enum Tail {
    /// Not read yet.
    Rest(Body),
    Trailers(HeaderMap),
    Failed(Status),
    Ended,
}

/// A request body read again: the bytes read, then how it went on.
struct Replay {
    read: Option<Bytes>,
    tail: Tail,
}

impl Replay {
    fn new(read: Bytes, tail: Tail) -> Self {
        Self {
            read: (!read.is_empty()).then_some(read),
            tail,
        }
    }
}

impl hyper::body::Body for Replay {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(read) = self.read.take() {
            return Poll::Ready(Some(Ok(Frame::data(read))));
        }
        match std::mem::replace(&mut self.tail, Tail::Ended) {
            Tail::Rest(mut body) => {
                let polled = Pin::new(&mut body).poll_frame(cx);
                self.tail = Tail::Rest(body);
                polled
            }
            Tail::Trailers(trailers) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Tail::Failed(status) => Poll::Ready(Some(Err(status))),
            Tail::Ended => Poll::Ready(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use e2d_proto::etcdserverpb::{
        CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
        PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
    };
    use e2d_proto::mvccpb::KeyValue;

    use super::*;
    use crate::metrics::{Gauges, Metrics};

    /// A marker a request's extensions carry, which `Echo` answers with.
    #[derive(Clone)]
    struct Marker(i64);

    /// A KV service whose answers show what it was handed: the request's
    /// key and value, its `token` metadata and its extensions.
    struct Echo;

    fn header(request_metadata: &tonic::metadata::MetadataMap) -> Option<ResponseHeader> {
        let token = request_metadata
            .get("token")
            .and_then(|token| token.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        Some(ResponseHeader {
            revision: token,
            ..Default::default()
        })
    }

    fn answered<T>(message: T) -> Result<tonic::Response<T>, Status> {
        let mut response = tonic::Response::new(message);
        let metadata = response.metadata_mut();
        metadata.insert("x-answered", "yes".parse().unwrap());
        // A handler's try at the call's framing is dropped, as tonic does.
        metadata.insert("grpc-status", "13".parse().unwrap());
        metadata.insert("content-type", "text/plain".parse().unwrap());
        Ok(response)
    }

    #[tonic::async_trait]
    impl Kv for Echo {
        async fn range(
            &self,
            request: tonic::Request<RangeRequest>,
        ) -> Result<tonic::Response<RangeResponse>, Status> {
            if request.get_ref().key == b"refuse" {
                return Err(Status::invalid_argument("etcdserver: refused, as asked"));
            }
            answered(RangeResponse {
                header: header(request.metadata()),
                kvs: vec![KeyValue {
                    key: request.get_ref().key.clone().into(),
                    value: request.get_ref().range_end.clone().into(),
                    ..Default::default()
                }],
                count: 1,
                ..Default::default()
            })
        }

        async fn put(
            &self,
            request: tonic::Request<PutRequest>,
        ) -> Result<tonic::Response<PutResponse>, Status> {
            let marker = request.extensions().get::<Marker>().map_or(-1, |m| m.0);
            answered(PutResponse {
                header: header(request.metadata()),
                prev_kv: Some(KeyValue {
                    key: request.get_ref().key.clone().into(),
                    value: request.get_ref().value.clone().into(),
                    lease: marker,
                    ..Default::default()
                }),
            })
        }

        async fn delete_range(
            &self,
            request: tonic::Request<DeleteRangeRequest>,
        ) -> Result<tonic::Response<DeleteRangeResponse>, Status> {
            answered(DeleteRangeResponse {
                header: header(request.metadata()),
                deleted: request.get_ref().key.len() as i64,
                ..Default::default()
            })
        }

        async fn txn(
            &self,
            request: tonic::Request<TxnRequest>,
        ) -> Result<tonic::Response<TxnResponse>, Status> {
            answered(TxnResponse {
                header: header(request.metadata()),
                succeeded: request.get_ref().compare.is_empty(),
                ..Default::default()
            })
        }

        async fn compact(
            &self,
            request: tonic::Request<CompactionRequest>,
        ) -> Result<tonic::Response<CompactionResponse>, Status> {
            answered(CompactionResponse {
                header: Some(ResponseHeader {
                    revision: request.get_ref().revision,
                    ..Default::default()
                }),
            })
        }
    }

    /// A request body that yields the frames (or the failure) it is given.
    struct Scripted(VecDeque<Result<Frame<Bytes>, Status>>);

    impl hyper::body::Body for Scripted {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            Poll::Ready(self.0.pop_front())
        }
    }

    fn data(bytes: &[u8]) -> Result<Frame<Bytes>, Status> {
        Ok(Frame::data(Bytes::copy_from_slice(bytes)))
    }

    /// `message` as gRPC frames it: flag 0, its length, its bytes.
    fn framed(message: &impl Message) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&(message.encoded_len() as u32).to_be_bytes());
        bytes.extend_from_slice(&message.encode_to_vec());
        bytes
    }

    fn request(method: &str, headers: &[(&str, &str)], body: Scripted) -> Request<Body> {
        let mut request = Request::builder()
            .method("POST")
            .uri(format!("http://localhost/etcdserverpb.KV/{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("token", "42");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(Body::new(body)).unwrap();
        request.extensions_mut().insert(Marker(7));
        request
    }

    /// An answer as a client sees it: status, headers, data and trailers
    /// (or the body's failure).
    #[derive(Debug, PartialEq)]
    struct Seen {
        status: u16,
        headers: Vec<(String, String)>,
        data: Vec<u8>,
        end: String,
    }

    async fn seen(response: Response<Body>) -> Seen {
        let status = response.status().as_u16();
        let mut headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_string()))
            .collect();
        headers.sort();
        let mut body = response.into_body();
        let mut data = Vec::new();
        let mut end = String::from("no trailers");
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(bytes) => data.extend_from_slice(&bytes),
                    Err(frame) => {
                        let mut trailers: Vec<String> = frame
                            .into_trailers()
                            .unwrap()
                            .iter()
                            .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap()))
                            .collect();
                        trailers.sort();
                        end = trailers.join(", ");
                    }
                },
                Err(status) => end = format!("failed: {status:?}"),
            }
        }
        Seen {
            status,
            headers,
            data,
            end,
        }
    }

    const LIMIT_BYTES: usize = 1024;

    /// The gRPC call metrics of `metrics` once the answers are read: the
    /// calls started and handled by code, their count of handling times,
    /// the bytes received and sent.
    fn counted(metrics: &Metrics) -> Vec<String> {
        metrics
            .render(&Gauges::default(), 0)
            .lines()
            .filter(|line| {
                line.starts_with("grpc_server_started_total")
                    || line.starts_with("grpc_server_handled_total")
                    || line.starts_with("grpc_server_handling_seconds_count")
                    || line.starts_with("etcd_network_client_grpc_")
            })
            .map(str::to_string)
            .collect()
    }

    /// Serves the same request both ways: here, and by tonic alone; both
    /// unmetered, then both metered (tonic's as the client port meters
    /// every other service), and the metrics must agree too.
    async fn both_ways(
        method: &str,
        headers: &[(&str, &str)],
        frames: Vec<Result<Frame<Bytes>, Status>>,
    ) -> (Seen, Seen) {
        let unary = KvUnary::new(Echo, LIMIT_BYTES);
        let tonic = KvServer::new(Echo).max_decoding_message_size(LIMIT_BYTES);
        let scripted = || Scripted(frames.iter().map(copy).collect());
        let here = unary
            .call(request(method, headers, scripted()), None)
            .await
            .unwrap();
        let by_tonic = tonic
            .clone()
            .call(request(method, headers, scripted()))
            .await
            .unwrap();
        let (here, by_tonic) = (seen(here).await, seen(by_tonic).await);

        let path = format!("/etcdserverpb.KV/{method}");
        let (metrics_here, metrics_tonic) = (Arc::new(Metrics::new()), Arc::new(Metrics::new()));
        let metered_here = unary
            .call(
                request(method, headers, scripted()),
                metrics_here.start_grpc_call(&path),
            )
            .await
            .unwrap();
        let request = request(method, headers, scripted());
        let metered_tonic = match metrics_tonic.start_grpc_call(&path) {
            Some(call) => metered(call, request, |request| tonic.clone().call(request)).await,
            None => tonic.clone().call(request).await,
        }
        .unwrap();
        assert_eq!(seen(metered_here).await, here, "{method}: metered here");
        assert_eq!(
            seen(metered_tonic).await,
            by_tonic,
            "{method}: metered by tonic"
        );
        assert_eq!(
            counted(&metrics_here),
            counted(&metrics_tonic),
            "{method} {headers:?}: the call's metrics"
        );
        (here, by_tonic)
    }

    /// A request: the method called, its headers of note, its body.
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<Result<Frame<Bytes>, Status>>,
    );

    fn copy(frame: &Result<Frame<Bytes>, Status>) -> Result<Frame<Bytes>, Status> {
        match frame {
            Ok(frame) => match frame.data_ref() {
                Some(bytes) => Ok(Frame::data(bytes.clone())),
                None => Ok(Frame::trailers(frame.trailers_ref().unwrap().clone())),
            },
            Err(status) => Err(status.clone()),
        }
    }

    fn a_put() -> PutRequest {
        PutRequest {
            key: b"key".to_vec(),
            value: vec![7; 300],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn plain_calls_are_answered_as_tonic_answers_them() {
        let put = framed(&a_put());
        let range = framed(&RangeRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            ..Default::default()
        });
        let cases: Vec<Case> = vec![
            ("Put", vec![], vec![data(&put)]),
            // A message in parts, and the empty frame that ends a stream.
            (
                "Put",
                vec![],
                vec![
                    data(&put[..3]),
                    data(&put[3..100]),
                    data(&put[100..]),
                    data(b""),
                ],
            ),
            ("Put", vec![("grpc-encoding", "identity")], vec![data(&put)]),
            ("Range", vec![], vec![data(&range)]),
            ("DeleteRange", vec![], vec![data(&framed(&a_put()))]),
            ("Txn", vec![], vec![data(&framed(&TxnRequest::default()))]),
            (
                "Compact",
                vec![],
                vec![data(&framed(&CompactionRequest {
                    revision: 9,
                    ..Default::default()
                }))],
            ),
        ];
        for (method, headers, frames) in cases {
            let (here, by_tonic) = both_ways(method, &headers, frames).await;
            assert_eq!(here, by_tonic, "{method} {headers:?}");
            assert_eq!(here.end, "grpc-status: 0");
            assert!(here.headers.contains(&("x-answered".into(), "yes".into())));
        }
        // The handler saw the request's key, value, metadata and extensions.
        let (here, _) = both_ways("Put", &[], vec![data(&put)]).await;
        let answer = PutResponse::decode(&here.data[MESSAGE_HEADER_BYTES..]).unwrap();
        let prev = answer.prev_kv.unwrap();
        assert_eq!(
            (&prev.key[..], prev.value.len(), prev.lease),
            (&b"key"[..], 300, 7)
        );
        assert_eq!(answer.header.unwrap().revision, 42);
    }

    #[tokio::test]
    async fn a_plain_call_counts_its_bytes_and_its_status() {
        let put = framed(&a_put());
        let metrics = Arc::new(Metrics::new());
        let unary = KvUnary::new(Echo, LIMIT_BYTES);
        let call = metrics.start_grpc_call("/etcdserverpb.KV/Put");
        let answer = unary
            .call(request("Put", &[], Scripted([data(&put)].into())), call)
            .await
            .unwrap();
        let answer = seen(answer).await;
        let counted = counted(&metrics);
        for expected in [
            format!("etcd_network_client_grpc_received_bytes_total {}", put.len()),
            format!(
                "etcd_network_client_grpc_sent_bytes_total {}",
                answer.data.len()
            ),
            "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1".to_string(),
            "grpc_server_handling_seconds_count{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1".to_string(),
        ] {
            assert!(counted.contains(&expected), "{expected} in {counted:#?}");
        }
    }

    #[tokio::test]
    async fn every_other_request_gets_tonic_answer() {
        let put = framed(&a_put());
        let mut compressed = put.clone();
        compressed[0] = 1;
        let mut bad_flag = put.clone();
        bad_flag[0] = 2;
        let large = framed(&PutRequest {
            value: vec![1; 2 * LIMIT_BYTES],
            ..a_put()
        });
        let mut trailers = HeaderMap::new();
        trailers.insert("token", HeaderValue::from_static("5"));
        let cases: Vec<Case> = vec![
            ("Put", vec![("grpc-encoding", "gzip")], vec![data(&put)]),
            ("Put", vec![], vec![data(&compressed)]),
            ("Put", vec![], vec![data(&bad_flag)]),
            ("Put", vec![], vec![data(&large)]),
            (
                "Put",
                vec![],
                vec![data(&large[..100]), data(&large[100..])],
            ),
            ("Put", vec![], vec![data(&put), data(&put)]),
            ("Put", vec![], vec![data(&put[..put.len() - 1])]),
            ("Put", vec![], vec![data(&put[..3])]),
            ("Put", vec![], vec![]),
            ("Put", vec![], vec![data(&[0, 0, 0, 0, 2, 0xff, 0xff])]),
            (
                "Put",
                vec![],
                vec![data(&put), Ok(Frame::trailers(trailers))],
            ),
            (
                "Put",
                vec![],
                vec![
                    data(&put[..10]),
                    Err(Status::cancelled("the client went away")),
                ],
            ),
            (
                "Range",
                vec![],
                vec![data(&framed(&RangeRequest {
                    key: b"refuse".to_vec(),
                    ..Default::default()
                }))],
            ),
            ("Watch", vec![], vec![data(&put)]),
        ];
        for (method, headers, frames) in cases {
            let (here, by_tonic) =
                both_ways(method, &headers, frames.iter().map(copy).collect()).await;
            assert_eq!(here, by_tonic, "{method} {headers:?} {frames:?}");
        }
    }

    /// Reads `frames` as a request body with no headers of note.
    async fn read(frames: Vec<Result<Frame<Bytes>, Status>>) -> Read {
        read_message(
            &HeaderMap::new(),
            Body::new(Scripted(frames.into())),
            LIMIT_BYTES,
        )
        .await
    }

    #[tokio::test]
    async fn only_one_whole_plain_message_is_taken_here() {
        let put = framed(&a_put());
        assert!(matches!(read(vec![data(&put)]).await, Read::Whole(bytes) if bytes == put));
        let parts = vec![data(&put[..4]), data(&put[4..]), data(b"")];
        assert!(matches!(read(parts).await, Read::Whole(bytes) if bytes == put));
        assert!(matches!(
            read(vec![data(&put), data(&put)]).await,
            Read::Other(_)
        ));
        assert!(matches!(read(vec![data(&put[..8])]).await, Read::Other(_)));
        assert!(matches!(read(vec![]).await, Read::Other(_)));
    }
}

//! The HTTP endpoints e2d serves on the client port: /health, /livez,
//! /readyz, /version, /metrics.

use std::time::Duration;

use e2d_tests::Server;

#[test]
fn health_is_true() {
    let s = Server::e2d();
    let resp = s.http_get("/health");
    assert_eq!(resp.status, 200, "{resp:?}");
    let json = resp.json();
    assert_eq!(json["health"], "true", "{json}");
}

#[test]
fn livez_and_readyz_answer_ok() {
    let s = Server::e2d();
    for path in ["/livez", "/readyz"] {
        let resp = s.http_get(path);
        assert_eq!(resp.status, 200, "{path}: {resp:?}");
        assert_eq!(resp.body.trim(), "ok", "{path}: {resp:?}");
    }
}

/// Parses "3.5.17" into (3, 5, 17).
fn semver(text: &str) -> (u64, u64, u64) {
    let parts: Vec<u64> = text
        .split(['.', '-', '+'])
        .take(3)
        .map(|p| p.parse().unwrap_or_else(|_| panic!("bad version {text:?}")))
        .collect();
    assert_eq!(parts.len(), 3, "bad version {text:?}");
    (parts[0], parts[1], parts[2])
}

#[test]
fn version_is_a_recent_etcd() {
    let s = Server::e2d();
    let resp = s.http_get("/version");
    assert_eq!(resp.status, 200, "{resp:?}");
    let json = resp.json();
    let server = json["etcdserver"].as_str().expect("etcdserver field");
    let cluster = json["etcdcluster"].as_str().expect("etcdcluster field");
    assert!(semver(server) >= (3, 5, 13), "etcdserver {server} < 3.5.13");
    let (major, minor, _) = semver(cluster);
    assert_eq!((major, minor), (3, 5), "etcdcluster {cluster}");
    // The gRPC status reports the same server version.
    let status = s.etcdctl(&["endpoint", "status", "-w", "json"]).json();
    assert_eq!(status[0]["Status"]["version"], server, "{status}");
}

fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        let bare = key.split('{').next()?;
        (bare == name).then(|| value.parse().ok())?
    })
}

#[test]
fn metrics_track_the_revision() {
    let s = Server::e2d();
    let before = s.http_get("/metrics");
    assert_eq!(before.status, 200, "{before:?}");
    let content_type = before.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain"),
        "content-type {content_type:?}"
    );
    assert_eq!(
        metric(&before.body, "etcd_debugging_mvcc_current_revision"),
        Some(1.0),
        "metrics:\n{}",
        before.body
    );

    for i in 0..3 {
        s.etcdctl(&["put", &format!("k{i}"), "v"]).ok();
    }
    let after = s.http_get("/metrics");
    assert_eq!(
        metric(&after.body, "etcd_debugging_mvcc_current_revision"),
        Some(4.0),
        "metrics:\n{}",
        after.body
    );
}

#[test]
fn metrics_addr_serves_the_metrics_and_health_endpoints_only() {
    let port = e2d_tests::free_port();
    let addr = format!("127.0.0.1:{port}");
    let s = Server::e2d_with(&["--metrics-addr", &addr]);
    s.etcdctl(&["put", "k", "v"]).ok();
    let metrics = e2d_tests::http_get(port, "/metrics").expect("the metrics address answers");
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert_eq!(
        metric(&metrics.body, "etcd_debugging_mvcc_current_revision"),
        Some(2.0),
        "metrics:\n{}",
        metrics.body
    );
    let health = e2d_tests::http_get(port, "/health").expect("the metrics address answers");
    assert_eq!(health.json()["health"], "true", "{health:?}");
    // Not the etcd API: the JSON gateway and the status page stay on the
    // client port.
    let gateway = e2d_tests::http_get(port, "/v3/kv/range").expect("an answer");
    assert_eq!(gateway.status, 404, "{gateway:?}");
}

#[test]
fn unknown_path_is_not_found() {
    // etcd answers unknown paths with 404, so probes pointed at a wrong
    // path (say /healthz) fail instead of passing by accident.
    let s = Server::e2d();
    for path in ["/no-such-endpoint", "/healthz"] {
        let resp = s.http_get(path);
        assert_eq!(resp.status, 404, "GET {path}: {resp:?}");
    }
}

/// Raw bytes in and out, so a test can call any gRPC path.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

#[test]
fn grpc_paths_reach_their_service_or_are_unimplemented() {
    let s = Server::e2d();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let code_of = |path: &'static str| {
        runtime.block_on(async {
            let mut grpc = raw_grpc(&s.url()).await;
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
            grpc.unary(tonic::Request::new(Vec::new()), path, RawCodec)
                .await
                .err()
                .map(|status| status.code())
        })
    };
    // An empty RangeRequest reaches KV.Range, which rejects the empty key
    // as etcd does.
    assert_eq!(
        code_of("/etcdserverpb.KV/Range"),
        Some(tonic::Code::InvalidArgument)
    );
    // An empty StatusRequest succeeds, and so does an empty health check
    // (the whole server's).
    assert_eq!(code_of("/etcdserverpb.Maintenance/Status"), None);
    assert_eq!(code_of("/grpc.health.v1.Health/Check"), None);
    for path in [
        "/etcdserverpb.KV/NoSuchMethod",
        "/etcdserverpb.NoSuchService/Range",
        "/no-slash",
    ] {
        assert_eq!(code_of(path), Some(tonic::Code::Unimplemented), "{path}");
    }
}

#[test]
fn an_undecodable_watch_request_ends_the_stream_with_an_error() {
    // etcd (grpc-go) ends the stream with INTERNAL "grpc: failed to
    // unmarshal the received message"; ending it with OK would tell the
    // client its stream closed cleanly.
    let s = Server::e2d();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let outcome = runtime.block_on(async {
        use tonic::codegen::tokio_stream::{self, StreamExt};
        let mut grpc = raw_grpc(&s.url()).await;
        // Field 1 (the create request) says 5 bytes follow, and one does:
        // no protobuf decoder takes it. The request stream then stays
        // open, as a client's.
        let requests = tokio_stream::iter([vec![0x0a, 0x05, 0x01]]).chain(tokio_stream::pending());
        let path =
            tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.Watch/Watch");
        // etcd answers before the stream's headers, e2d after them: either
        // way the call ends with the status.
        let first_answer = async {
            let mut responses = grpc
                .streaming(tonic::Request::new(requests), path, RawCodec)
                .await?
                .into_inner();
            responses.message().await
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), first_answer)
            .await
            .expect("the stream answers within 10 s")
    });
    match outcome {
        Err(status) => assert_eq!(status.code(), tonic::Code::Internal, "{status:?}"),
        Ok(message) => panic!("expected an INTERNAL status, got {message:?}"),
    }
}

/// A gRPC client of `url` that sends and takes raw bytes.
async fn raw_grpc(url: &str) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    grpc
}

/// The top-level varint field `number` of an encoded message, if there.
fn varint_field(mut message: &[u8], number: u64) -> Option<u64> {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }
    while !message.is_empty() {
        let tag = varint(&mut message)?;
        match tag & 7 {
            0 if tag >> 3 == number => return varint(&mut message),
            0 => {
                varint(&mut message)?;
            }
            2 => {
                let len = usize::try_from(varint(&mut message)?).ok()?;
                message = message.get(len..)?;
            }
            _ => return None,
        }
    }
    None
}

#[test]
fn a_watch_call_is_answered_with_its_first_response_as_etcds_is() {
    // etcd answers a Watch call only with its first response, the
    // watcher's creation. Clients rely on it: the etcd-client crate's
    // watch returns when the call is answered, and a put made after it
    // must be seen.
    let (e2d, etcd) = Server::e2d_and_etcd();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for s in [&e2d, &etcd] {
        runtime.block_on(async {
            let mut grpc = raw_grpc(&s.url()).await;
            let (requests, pending) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
            let path =
                tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.Watch/Watch");
            let stream = tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(pending);
            let mut call = tokio::spawn(async move {
                grpc.streaming(tonic::Request::new(stream), path, RawCodec)
                    .await
            });
            let early = tokio::time::timeout(Duration::from_millis(500), &mut call).await;
            assert!(
                early.is_err(),
                "{}: answered before any request: {early:?}",
                s.url()
            );
            // WatchRequest { create_request: { key: "k" } }.
            requests
                .send(vec![0x0a, 0x03, 0x0a, 0x01, b'k'])
                .await
                .expect("the call takes requests");
            let mut responses = tokio::time::timeout(Duration::from_secs(10), call)
                .await
                .expect("answered once a watcher is asked for")
                .expect("the call's task")
                .expect("the call succeeds")
                .into_inner();
            let first = responses
                .message()
                .await
                .expect("a response")
                .expect("the stream is open");
            // WatchResponse's `created` is field 3.
            assert_eq!(varint_field(&first, 3), Some(1), "{}: {first:?}", s.url());
            drop(requests);
        });
    }
}

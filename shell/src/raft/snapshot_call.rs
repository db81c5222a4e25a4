//! The InstallSnapshot call on the real network, framed here rather than
//! by the generated client: the generated client encodes each chunk into
//! a buffer of its own, a copy of every byte of the snapshot, where this
//! hands a chunk's bytes to the connection as they are, behind a few
//! bytes of framing. What goes on the wire is the same, byte for byte, as
//! the generated client's (a test below holds the two side by side), so
//! members of either make of it the same thing.

use e2d_proto::codec::SizedCodec;
use e2d_proto::peer::{SendAck, SnapshotChunk};
use futures_util::{Stream, StreamExt};
use prost::bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;
use tonic::codec::{Codec, Streaming};
use tonic::codegen::http;
use tonic::transport::Channel;
use tonic::Status;
use tower::{Service, ServiceExt};

const PATH: &str = "/e2d.peer.Peer/InstallSnapshot";
/// `SnapshotChunk.data`'s field number in `peer.proto`.
const DATA_FIELD: u32 = 2;
/// A gRPC message's prefix: the compression flag, then the length.
const MESSAGE_PREFIX_BYTES: usize = 5;

/// Streams `chunks` to the member behind `channel` and waits for its
/// answer. A chunk whose message is longer than `message_bytes_max` ends
/// the call with the generated client's refusal of it.
pub async fn install_snapshot(
    channel: Channel,
    chunks: impl Stream<Item = SnapshotChunk> + Send + 'static,
    message_bytes_max: usize,
) -> Result<SendAck, Status> {
    let frames = chunks.flat_map(move |chunk| {
        let pieces: Vec<Result<_, Status>> = match framed(chunk, message_bytes_max) {
            Ok(pieces) => pieces.into_iter().map(Ok).collect(),
            Err(refused) => vec![Err(refused)],
        };
        futures_util::stream::iter(pieces)
    });
    let frames = frames.map(|piece| piece.map(hyper::body::Frame::data));
    let body = tonic::body::Body::new(http_body_util::StreamBody::new(frames));
    let mut request = http::Request::new(body);
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::from_static(PATH);
    *request.version_mut() = http::Version::HTTP_2;
    let headers = request.headers_mut();
    headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );

    let mut channel = channel;
    let response = channel
        .ready()
        .await
        .map_err(|e| Status::from_error(e.into()))?
        .call(request)
        .await
        .map_err(|e| Status::from_error(e.into()))?;
    let decoder = SizedCodec::<SnapshotChunk, SendAck>::default().decoder();
    let status_code = response.status();
    // A refusal may come as headers alone ("trailers-only").
    let mut answer = match Status::from_header_map(response.headers()) {
        Some(status) if status.code() != tonic::Code::Ok => return Err(status),
        Some(_) => Streaming::new_empty(decoder, response.into_body()),
        None => Streaming::new_response(decoder, response.into_body(), status_code, None, None),
    };
    let ack = answer
        .message()
        .await?
        .ok_or_else(|| Status::internal("the member answered a snapshot with no message"))?;
    // The call's status comes in the trailers: a refusal there is the answer.
    answer.trailers().await?;
    Ok(ack)
}

/// `chunk` as a gRPC message, in three pieces: its prefix and the fields
/// before its data; the data itself, not copied; the fields after it.
/// Refused as tonic's encoder refuses it when longer than
/// `message_bytes_max`.
fn framed(chunk: SnapshotChunk, message_bytes_max: usize) -> Result<[Bytes; 3], Status> {
    let SnapshotChunk {
        raft_message,
        data,
        digest,
    } = chunk;
    let before = SnapshotChunk {
        raft_message,
        ..SnapshotChunk::default()
    };
    let after = SnapshotChunk {
        digest,
        ..SnapshotChunk::default()
    };
    // An empty field is not written, as prost leaves it out.
    let data_head_bytes = if data.is_empty() {
        0
    } else {
        key_len(DATA_FIELD) + encoded_len_varint(data.len() as u64)
    };
    let head_bytes = MESSAGE_PREFIX_BYTES + before.encoded_len() + data_head_bytes;
    let message_bytes = head_bytes - MESSAGE_PREFIX_BYTES + data.len() + after.encoded_len();
    let length = match u32::try_from(message_bytes) {
        Ok(length) if message_bytes <= message_bytes_max => length,
        _ => {
            return Err(Status::out_of_range(format!(
                "Error, encoded message length too large: found {message_bytes} bytes, \
                 the limit is: {message_bytes_max} bytes"
            )))
        }
    };
    let mut head = BytesMut::with_capacity(head_bytes);
    head.put_u8(0);
    head.put_u32(length);
    before.encode_raw(&mut head);
    if !data.is_empty() {
        encode_key(DATA_FIELD, WireType::LengthDelimited, &mut head);
        encode_varint(data.len() as u64, &mut head);
    }
    let mut tail = BytesMut::with_capacity(after.encoded_len());
    after.encode_raw(&mut tail);
    Ok([head.freeze(), data, tail.freeze()])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const MESSAGE_BYTES_MAX: usize = 1024 * 1024;

    /// What the generated client writes for `chunk`: the prefix, then
    /// prost's encoding of the whole message.
    pub(crate) fn as_generated(chunk: &SnapshotChunk) -> Vec<u8> {
        let message = chunk.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(&message);
        out
    }

    #[test]
    fn a_chunk_is_framed_byte_for_byte_as_the_generated_client_frames_it() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let chunks = [
            SnapshotChunk {
                raft_message: vec![8, 1, 16, 2],
                data: Bytes::from(data.clone()),
                digest: 1,
            },
            SnapshotChunk {
                data: Bytes::from(data[..127].to_vec()),
                digest: 1,
                ..SnapshotChunk::default()
            },
            // The first chunk of an empty view; the digest that closes a
            // stream (an older member's name for it is the default).
            SnapshotChunk {
                raft_message: vec![1; 200],
                digest: 1,
                ..SnapshotChunk::default()
            },
            SnapshotChunk {
                data: Bytes::from_static(&[7; 32]),
                ..SnapshotChunk::default()
            },
            SnapshotChunk::default(),
        ];
        for chunk in chunks {
            let pieces = framed(chunk.clone(), MESSAGE_BYTES_MAX).unwrap();
            assert_eq!(pieces[1], chunk.data, "the data goes as it is");
            assert_eq!(pieces.concat(), as_generated(&chunk));
            // The bound is on the message, prefix left out, as tonic's.
            let message_bytes = chunk.encoded_len();
            assert!(framed(chunk.clone(), message_bytes).is_ok());
            if message_bytes > 0 {
                let refused = framed(chunk, message_bytes - 1).unwrap_err();
                assert_eq!(refused.code(), tonic::Code::OutOfRange);
                assert!(refused.message().contains("the limit is"));
            }
        }
    }

    type Frames = Vec<hyper::body::Frame<Bytes>>;

    /// A peer port on loopback that takes one call, hands what its body
    /// held to `bodies`, and answers with `answer`'s status in the headers
    /// (`Err`) or `answer`'s frames.
    async fn peer_answering(
        answer: Result<Frames, &'static str>,
        bodies: tokio::sync::mpsc::Sender<Bytes>,
    ) -> Channel {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answer = std::sync::Arc::new(std::sync::Mutex::new(Some(answer)));
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(move |request: http::Request<_>| {
                let answer = answer.lock().unwrap().take().expect("one call");
                let bodies = bodies.clone();
                async move {
                    assert_eq!(request.uri().path(), PATH);
                    let body: hyper::body::Incoming = request.into_body();
                    bodies
                        .send(body.collect().await.unwrap().to_bytes())
                        .await
                        .unwrap();
                    let response = http::Response::builder()
                        .header(http::header::CONTENT_TYPE, "application/grpc");
                    let (response, frames) = match answer {
                        Err(code) => (response.header("grpc-status", code), Vec::new()),
                        Ok(frames) => (response, frames),
                    };
                    let frames = futures_util::stream::iter(
                        frames.into_iter().map(Ok::<_, std::convert::Infallible>),
                    );
                    response.body(http_body_util::StreamBody::new(frames))
                }
            });
            hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
                .unwrap();
        });
        crate::outgoing::connect(&url).await.unwrap()
    }

    fn trailers(status: &'static str) -> hyper::body::Frame<Bytes> {
        let mut map = http::HeaderMap::new();
        map.insert("grpc-status", http::HeaderValue::from_static(status));
        hyper::body::Frame::trailers(map)
    }

    /// Through a real HTTP/2 connection: the peer reads the chunks as the
    /// generated client would have sent them, and the call's answer is
    /// the peer's, whether a refusal in the headers alone, a refusal in
    /// the trailers (with or without the acknowledgement before it), or
    /// the acknowledgement.
    #[tokio::test]
    async fn the_peer_reads_the_chunks_sent_and_its_answer_is_the_call_s() {
        let chunks = vec![
            SnapshotChunk {
                raft_message: vec![8, 1],
                data: Bytes::from(vec![5; 700_000]),
                digest: 1,
            },
            SnapshotChunk {
                data: Bytes::from_static(b"the digest"),
                ..SnapshotChunk::default()
            },
        ];
        let expected: Vec<u8> = chunks.iter().flat_map(as_generated).collect();
        let mut ack = vec![0, 0, 0, 0, 0];
        SendAck::default().encode(&mut ack).unwrap();
        let ack = || hyper::body::Frame::data(Bytes::from(ack.clone()));
        let answers = [
            (Ok(vec![ack(), trailers("0")]), None),
            (Ok(vec![ack(), trailers("13")]), Some(tonic::Code::Internal)),
            (Err("9"), Some(tonic::Code::FailedPrecondition)),
            (Ok(vec![trailers("15")]), Some(tonic::Code::DataLoss)),
        ];
        for (answer, refused) in answers {
            let (bodies, mut received) = tokio::sync::mpsc::channel(1);
            let channel = peer_answering(answer, bodies).await;
            let sent = install_snapshot(
                channel,
                futures_util::stream::iter(chunks.clone()),
                MESSAGE_BYTES_MAX,
            )
            .await;
            assert_eq!(received.recv().await.unwrap(), expected);
            assert_eq!(sent.err().map(|status| status.code()), refused);
        }
    }
}

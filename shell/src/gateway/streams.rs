//! Streams through the gateway: a request body of JSON messages one after
//! another becomes the gRPC request stream a service reads, and a stream
//! of responses becomes one JSON object per line, `{"result": ...}`, or
//! `{"error": ...}` at the end, as etcd's gateway writes them.

use std::convert::Infallible;
use std::marker::PhantomData;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::codec::{DecodeBuf, Decoder};
use tonic::{Status, Streaming};

use super::json::{self, Limits};

/// The JSON values in a request body, one after another, each at most
/// `limits.json_bytes_max` bytes. A value that cannot be read ends the
/// stream with its error. Fused: it may be polled again after its end.
pub fn json_values<T>(body: Body, limits: Limits) -> impl Stream<Item = Result<T, String>> + Send
where
    T: DeserializeOwned + Send + 'static,
{
    struct Reading {
        data: axum::body::BodyDataStream,
        buffer: Vec<u8>,
        body_done: bool,
        failed: bool,
    }
    let reading = Reading {
        data: body.into_data_stream(),
        buffer: Vec::new(),
        body_done: false,
        failed: false,
    };
    stream::unfold(reading, move |mut reading| async move {
        if reading.failed {
            return None;
        }
        loop {
            let mut values = serde_json::Deserializer::from_slice(&reading.buffer).into_iter::<T>();
            let parsed = values.next();
            let read = values.byte_offset();
            let too_large = || {
                json::body_too_large(limits.json_bytes_max)
                    .message()
                    .to_string()
            };
            let failure = match parsed {
                Some(Ok(value)) if read <= limits.json_bytes_max => {
                    reading.buffer.drain(..read);
                    return Some((Ok(value), reading));
                }
                Some(Ok(_)) => Some(too_large()),
                None if reading.body_done => return None,
                // Only white space so far.
                None => {
                    reading.buffer.clear();
                    None
                }
                Some(Err(e)) if e.is_eof() && !reading.body_done => {
                    (reading.buffer.len() > limits.json_bytes_max).then(too_large)
                }
                Some(Err(e)) => Some(e.to_string()),
            };
            if let Some(failure) = failure {
                reading.failed = true;
                return Some((Err(failure), reading));
            }
            match reading.data.next().await {
                Some(Ok(chunk)) => reading.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    reading.failed = true;
                    return Some((Err(e.to_string()), reading));
                }
                None => reading.body_done = true,
            }
        }
    })
    .fuse()
}

/// The gRPC request stream a streaming service method takes, fed with
/// `first` and then the rest of `values`: each message encoded and framed
/// as on the wire, the size limit the gRPC port applies. The first value
/// that cannot be read stops the sending, as grpc-gateway stops. The
/// stream ends with the body; what the service does then is its own (the
/// Watch service keeps watching, so a watch made with `curl -d` runs
/// until the client goes).
pub fn request_stream<T>(
    first: Option<T>,
    values: impl Stream<Item = Result<T, String>> + Send + 'static,
    limits: Limits,
) -> Streaming<T>
where
    T: prost::Message + Default + Send + 'static,
{
    let messages = stream::iter(first)
        .chain(
            values
                .take_while(|value| std::future::ready(value.is_ok()))
                .filter_map(|value| std::future::ready(value.ok())),
        )
        .map(|message| Ok::<_, Infallible>(grpc_frame(&message)));
    let frames: BoxStream<'static, Result<Bytes, Infallible>> = messages.boxed();
    Streaming::new_request(
        ProstDecoder::<T>(PhantomData),
        Body::from_stream(frames),
        None,
        Some(limits.message_bytes_max),
    )
}

/// `message` as a gRPC length-prefixed message, uncompressed.
fn grpc_frame(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut frame = Vec::with_capacity(5 + len);
    frame.push(0);
    // A message over 4 GiB cannot be framed; JSON bodies are bounded far
    // below that.
    frame.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    message.encode(&mut frame).expect("a Vec grows as needed");
    Bytes::from(frame)
}

/// Decodes the frames [`grpc_frame`] made.
struct ProstDecoder<T>(PhantomData<fn() -> T>);

impl<T: prost::Message + Default> Decoder for ProstDecoder<T> {
    type Item = T;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<T>, Status> {
        T::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// One line of a streamed answer.
#[derive(Serialize)]
struct ResultChunk<'a, T> {
    result: &'a T,
}

/// grpc-gateway v1's error at the end of a stream (its `StreamError`).
#[derive(Serialize)]
struct ErrorChunk<'a> {
    error: StreamError<'a>,
}

#[derive(Serialize)]
struct StreamError<'a> {
    grpc_code: i32,
    http_code: u16,
    message: &'a str,
    http_status: &'a str,
}

fn error_chunk(status: &Status) -> (StatusCode, Vec<u8>) {
    let http = json::http_status(status.code());
    let chunk = ErrorChunk {
        error: StreamError {
            grpc_code: status.code() as i32,
            http_code: http.as_u16(),
            message: status.message(),
            http_status: http.canonical_reason().unwrap_or(""),
        },
    };
    // Strings and numbers only: serializing cannot fail.
    (http, serde_json::to_vec(&chunk).unwrap_or_default())
}

/// One `{"result": ...}` line.
fn result_line<T: Serialize>(message: &T) -> Result<Vec<u8>, Status> {
    let mut line = serde_json::to_vec(&ResultChunk { result: message })
        .map_err(|e| Status::internal(e.to_string()))?;
    line.push(b'\n');
    Ok(line)
}

/// The answer of a streaming call: nothing is sent before the first
/// response, so a call that fails at once answers with the HTTP status of
/// its error; then one line per response, and a failure's error object
/// last.
pub async fn stream_response<T, S>(called: Result<tonic::Response<S>, Status>) -> Response
where
    T: Serialize + Send + 'static,
    S: Stream<Item = Result<T, Status>> + Send + 'static,
{
    let mut responses = match called {
        Ok(response) => response.into_inner().boxed(),
        Err(status) => return stream_error_response(&status),
    };
    let first = match responses.next().await {
        None => return streaming(stream::empty().boxed()),
        Some(Err(status)) => return stream_error_response(&status),
        Some(Ok(first)) => match result_line(&first) {
            Ok(line) => line,
            Err(status) => return stream_error_response(&status),
        },
    };
    let rest = stream::unfold(Some(responses), |responses| async move {
        let mut responses = responses?;
        let line = match responses.next().await? {
            Ok(response) => result_line(&response),
            Err(status) => Err(status),
        };
        match line {
            Ok(line) => Some((line, Some(responses))),
            // The error object ends the answer; etcd's writes no newline
            // after it.
            Err(status) => Some((error_chunk(&status).1, None)),
        }
    });
    streaming(stream::once(std::future::ready(first)).chain(rest).boxed())
}

fn streaming(lines: BoxStream<'static, Vec<u8>>) -> Response {
    // Fused: polling a body past its end must not panic.
    let body = Body::from_stream(
        lines
            .fuse()
            .map(|line| Ok::<_, Infallible>(Bytes::from(line))),
    );
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            json::GRPC_CONTENT_TYPE,
        ],
        body,
    )
        .into_response()
}

fn stream_error_response(status: &Status) -> Response {
    let (http, body) = error_chunk(status);
    (
        http,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use e2d_proto::etcdserverpb::{watch_request::RequestUnion, WatchRequest};

    fn limits() -> Limits {
        Limits {
            json_bytes_max: 64,
            message_bytes_max: 64,
        }
    }

    fn body_in_pieces(pieces: &[&'static str]) -> Body {
        Body::from_stream(stream::iter(
            pieces
                .iter()
                .map(|piece| Ok::<_, Infallible>(Bytes::from_static(piece.as_bytes())))
                .collect::<Vec<_>>(),
        ))
    }

    #[tokio::test]
    async fn values_split_across_chunks_are_read_one_after_another() {
        let body = body_in_pieces(&[
            r#"{"create_request":{"key":"#,
            r#""YQ=="}} {"progress_request":{}}"#,
            "\n{\"cancel",
            r#"_request":{"watch_id":"3"}}"#,
        ]);
        let values: Vec<_> = json_values::<WatchRequest>(body, limits()).collect().await;
        assert_eq!(values.len(), 3);
        assert!(matches!(
            &values[0],
            Ok(WatchRequest { request_union: Some(RequestUnion::CreateRequest(c)) }) if c.key == b"a"
        ));
        assert!(matches!(
            &values[1],
            Ok(WatchRequest {
                request_union: Some(RequestUnion::ProgressRequest(_))
            })
        ));
        assert!(matches!(
            &values[2],
            Ok(WatchRequest { request_union: Some(RequestUnion::CancelRequest(c)) }) if c.watch_id == 3
        ));
    }

    #[tokio::test]
    async fn the_values_of_an_empty_body_may_be_polled_after_their_end() {
        let mut values = Box::pin(json_values::<WatchRequest>(Body::empty(), limits()));
        assert!(values.next().await.is_none());
        assert!(values.next().await.is_none());
    }

    #[tokio::test]
    async fn a_cut_value_or_one_over_the_limit_ends_with_an_error() {
        let cut: Vec<_> = json_values::<WatchRequest>(
            body_in_pieces(&[r#"{"progress_request":{}} {"#]),
            limits(),
        )
        .collect()
        .await;
        assert!(cut[0].is_ok());
        assert!(cut[1].is_err());
        assert_eq!(cut.len(), 2);

        let long =
            r#"{"create_request":{"key":"YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh"}}"#;
        let over: Vec<_> = json_values::<WatchRequest>(body_in_pieces(&[long]), limits())
            .collect()
            .await;
        assert_eq!(over.len(), 1);
        assert!(over[0]
            .as_ref()
            .unwrap_err()
            .contains("larger than 64 bytes"));
    }

    #[tokio::test]
    async fn the_request_stream_carries_the_messages_and_ends() {
        let create = WatchRequest {
            request_union: Some(RequestUnion::ProgressRequest(Default::default())),
        };
        let values = stream::iter(vec![
            Ok(create.clone()),
            Err("bad".to_string()),
            Ok(create.clone()),
        ]);
        let mut ends = request_stream(Some(create.clone()), values, limits());
        assert_eq!(ends.message().await.unwrap(), Some(create.clone()));
        assert_eq!(ends.message().await.unwrap(), Some(create.clone()));
        // The unreadable value stops the sending: nothing after it.
        assert_eq!(ends.message().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_stream_answers_lines_and_ends_with_the_error_object() {
        let responses = stream::iter(vec![
            Ok(WatchRequest::default()),
            Err(Status::failed_precondition("gone")),
        ]);
        let response = stream_response(Ok(tonic::Response::new(responses))).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "{\"result\":{}}\n{\"error\":{\"grpc_code\":9,\"http_code\":412,\"message\":\"gone\",\"http_status\":\"Precondition Failed\"}}"
        );

        let failed = stream_response(Ok(tonic::Response::new(stream::iter(vec![Err::<
            WatchRequest,
            _,
        >(
            Status::not_found("no such lease"),
        )]))))
        .await;
        assert_eq!(failed.status(), StatusCode::NOT_FOUND);
    }
}

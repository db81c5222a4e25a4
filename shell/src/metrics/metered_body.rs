//! The client port's gRPC calls as [`GrpcCall`]s, for services that
//! answer with bodies of their own: the bytes of each request and
//! response body, and the status code the call ends with, read from the
//! response's headers (a call that fails at once answers with headers
//! only) or its trailers. The KV service's plain calls count themselves
//! (`run::kv_unary`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{HeaderMap, Request, Response};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::grpc_calls::GrpcCall;
use super::Metrics;

type Body = tonic::body::Body;
type Data = <Body as HttpBody>::Data;
type Error = <Body as HttpBody>::Error;

/// The `grpc-status` a header map carries, if any.
fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// `serve`'s answer to `request`, its bodies' bytes counted as they are
/// read and `call` ended with the status the answer carries.
pub fn metered<Answering>(
    call: GrpcCall,
    request: Request<Body>,
    serve: impl FnOnce(Request<Body>) -> Answering,
) -> impl Future<Output = Result<Response<Body>, Infallible>> + Send + 'static
where
    Answering: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let answering = serve(meter_request(&call.metrics, request));
    async move { Ok(meter_response(call, answering.await?)) }
}

/// Counts the request body's bytes as they are read.
fn meter_request(metrics: &Arc<Metrics>, request: Request<Body>) -> Request<Body> {
    let metrics = metrics.clone();
    request.map(|inner| {
        Body::new(MeteredBody {
            inner,
            metrics,
            call: None,
            received: true,
        })
    })
}

/// Counts the response body's bytes and ends `call` with the status the
/// response carries.
fn meter_response(mut call: GrpcCall, response: Response<Body>) -> Response<Body> {
    if let Some(code) = grpc_status(response.headers()) {
        call.finish(code);
    }
    let metrics = call.metrics.clone();
    response.map(|inner| {
        Body::new(MeteredBody {
            inner,
            metrics,
            call: Some(call),
            received: false,
        })
    })
}

struct MeteredBody {
    inner: Body,
    metrics: Arc<Metrics>,
    /// The call a response body ends.
    call: Option<GrpcCall>,
    /// A request body (bytes received), or a response's (sent).
    received: bool,
}

impl HttpBody for MeteredBody {
    type Data = Data;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Data>, Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let bytes = data.len() as u64;
                    let grpc = &self.metrics.grpc;
                    if self.received {
                        grpc.count_received_bytes(bytes);
                    } else {
                        grpc.count_sent_bytes(bytes);
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_status(trailers);
                    if let (Some(call), Some(code)) = (self.call.as_mut(), code) {
                        call.finish(code);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                // Code 13 is Internal.
                if let Some(call) = self.call.as_mut() {
                    call.finish(13);
                }
            }
            Poll::Ready(None) => {
                // A body that ends without a status: code 2, Unknown.
                if let Some(call) = self.call.as_mut() {
                    call.finish(2);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

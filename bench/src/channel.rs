//! Connections to the servers under test. A plain-text connection opens
//! each request's HTTP/2 stream from the calling task: tonic's `Channel`
//! puts a request queue and a worker task in front of hyper's client, and
//! hyper's client a dispatch channel and a task per request, which the
//! load generator would pay for on every request, on the CPUs it shares
//! with the server it measures. TLS connections go through tonic.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use e2d_coalesced_io::CoalescedIo;
use etcd_client::{Channel, TlsOptions};
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http_body::{Body as _, Frame};
use hyper_util::rt::TokioIo;
use tonic::body::Body;
use tonic::codegen::http::uri::{Authority, Scheme};
use tonic::codegen::http::{Request, Response, Uri};
use tower::BoxError;

use crate::workloads::Error;

/// One connection to `endpoint` (`host:port`, or a URL). Its writes wait
/// one scheduler round, so the requests its clients send together leave
/// in one syscall, as grpc-go's (etcd's benchmark tool) do.
pub async fn connect(endpoint: &str, tls: Option<TlsOptions>) -> Result<Channel, Error> {
    let url = if endpoint.contains("://") {
        endpoint.to_string()
    } else if tls.is_some() {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    };
    let uri: Uri = url.parse()?;
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("endpoint {endpoint:?} has no host:port"))?;
    match tls {
        None if uri.scheme() != Some(&Scheme::HTTPS) => direct(authority).await,
        tls => {
            let mut target = tonic::transport::Endpoint::from(uri);
            if let Some(tls) = tls {
                target = target.tls_config(tls)?;
            }
            let channel = target
                .connect_with_connector(tower::service_fn(|uri: Uri| async move {
                    let authority = uri.authority().cloned().ok_or("no host:port")?;
                    Ok::<_, BoxError>(TokioIo::new(open(&authority).await?))
                }))
                .await?;
            Ok(Channel::Tonic(channel))
        }
    }
}

async fn open(authority: &Authority) -> Result<CoalescedIo<tokio::net::TcpStream>, BoxError> {
    let host = authority.host().trim_matches(['[', ']']);
    let port = authority.port_u16().unwrap_or(2379);
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    Ok(CoalescedIo::new(stream))
}

async fn direct(authority: Authority) -> Result<Channel, Error> {
    let io = open(&authority).await?;
    let (send, connection) = h2::client::Builder::new()
        .enable_push(false)
        .initial_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .handshake(io)
        .await?;
    // A broken connection fails its requests, which count as errors.
    tokio::spawn(connection);
    Ok(Channel::Custom(tower::util::BoxCloneSyncService::new(
        Direct { send, authority },
    )))
}

/// Flow-control windows, as hyper's client (and so tonic's) sets them.
const STREAM_WINDOW_BYTES: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 5 * 1024 * 1024;

/// Requests on one HTTP/2 connection, opened by the caller's own task:
/// no dispatch channel to a connection task and no task per request.
/// The scheme and authority HTTP/2 requires are filled in.
#[derive(Clone)]
struct Direct {
    send: SendRequest<Bytes>,
    authority: Authority,
}

type Responding = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

impl tower::Service<Request<Body>> for Direct {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Responding;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.send.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<Body>) -> Responding {
        let (mut head, body) = request.into_parts();
        let mut uri = std::mem::take(&mut head.uri).into_parts();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(self.authority.clone());
        let opened = Uri::from_parts(uri)
            .map_err(BoxError::from)
            .and_then(|uri| {
                head.uri = uri;
                let end = body.is_end_stream();
                Ok(self.send.send_request(Request::from_parts(head, ()), end)?)
            });
        Box::pin(async move {
            let (response, sending) = opened?;
            // A unary body is ready at once and is sent here; a stream's
            // body (watch, keep-alive) goes on in a task of its own.
            let mut piping = Box::pin(pipe(body, sending));
            let piped = match std::future::poll_fn(|cx| Poll::Ready(piping.as_mut().poll(cx))).await
            {
                Poll::Ready(piped) => piped,
                Poll::Pending => {
                    tokio::spawn(piping);
                    Ok(())
                }
            };
            // A server may answer, or reset the stream, before it has
            // read the whole request (h2 then refuses the rest as sent on
            // an inactive stream): what it said is the request's outcome.
            let response = match (response.await, piped) {
                (Ok(response), _) => response,
                (Err(answered), Err(_)) if answered.is_reset() || answered.is_go_away() => {
                    return Err(answered.into())
                }
                (Err(_), Err(sending)) => return Err(sending),
                (Err(answered), Ok(())) => return Err(answered.into()),
            };
            Ok(response.map(|received| Body::new(Received(received))))
        })
    }
}

/// Sends `body` on the stream, its end included.
async fn pipe(mut body: Body, mut out: SendStream<Bytes>) -> Result<(), BoxError> {
    use http_body_util::BodyExt;
    if body.is_end_stream() {
        return Ok(());
    }
    while let Some(frame) = body.frame().await {
        match frame?.into_data() {
            Ok(data) => out.send_data(data, body.is_end_stream())?,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    out.send_trailers(trailers)?;
                    return Ok(());
                }
            }
        }
        if body.is_end_stream() {
            return Ok(());
        }
    }
    out.send_data(Bytes::new(), true)?;
    Ok(())
}

/// A response body read from its HTTP/2 stream, handing back flow-control
/// capacity as it is read.
struct Received(RecvStream);

impl http_body::Body for Received {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        match std::task::ready!(self.0.poll_data(cx)) {
            Some(Ok(data)) => {
                let _ = self.0.flow_control().release_capacity(data.len());
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            Some(Err(e)) => return Poll::Ready(Some(Err(e))),
            None => {}
        }
        Poll::Ready(match std::task::ready!(self.0.poll_trailers(cx)) {
            Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        })
    }
}

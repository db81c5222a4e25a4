//! Connections to the servers under test. A plain-text connection hands
//! each request straight to hyper's HTTP/2 client: tonic's `Channel` puts
//! a request queue and a worker task in front of it, which the load
//! generator would pay for on every request, on the CPUs it shares with
//! the server it measures. TLS connections go through tonic's `Channel`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use e2d_shell::coalesced_io::CoalescedIo;
use etcd_client::{Channel, TlsOptions};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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
    let io = TokioIo::new(open(&authority).await?);
    let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(io)
        .await?;
    // A broken connection fails its requests, which count as errors.
    tokio::spawn(connection);
    Ok(Channel::Custom(tower::util::BoxCloneSyncService::new(
        Direct { send, authority },
    )))
}

/// Requests on one HTTP/2 connection, with the scheme and authority that
/// HTTP/2 requires filled in.
#[derive(Clone)]
struct Direct {
    send: SendRequest<Body>,
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

    fn call(&mut self, mut request: Request<Body>) -> Responding {
        let mut parts = request.uri().clone().into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        match Uri::from_parts(parts) {
            Ok(uri) => *request.uri_mut() = uri,
            Err(e) => return Box::pin(std::future::ready(Err(e.into()))),
        }
        let responding = self.send.send_request(request);
        Box::pin(async move { Ok(responding.await?.map(Body::new)) })
    }
}

//! The client port: bound once when `e2d run` starts, it answers before the
//! server runs (`/e2d/status`, and "not started" for the rest) and serves
//! the etcd API once it does. The routes in use can be swapped while
//! connections stay open.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use axum::extract::Request as AxumRequest;
use axum::http::{header, Request, Response, StatusCode};
use axum::response::{IntoResponse, Response as AxumResponse};
use axum::routing::get;
use axum::Router;
use e2d_proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use e2d_proto::health::health_server::HealthServer;
use e2d_proto::v3electionpb::election_server::ElectionServer;
use e2d_proto::v3lockpb::lock_server::LockServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::server::NamedService;
use tower::{Service, ServiceExt};

use super::status_board::StatusBoard;
use super::{listen, RunError};
use crate::cli::RunArgs;
use crate::grpc::{self, grpc_message_bytes_max};
use crate::server::Node;

/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// What the client port serves: the status board, and the etcd API once
/// the node runs.
#[derive(Clone)]
pub struct NodeRoutes {
    routes: ClientRoutes,
    /// What `--metrics-addr` serves: the HTTP endpoints only.
    metrics: Option<ClientRoutes>,
    pub board: Arc<StatusBoard>,
}

impl NodeRoutes {
    /// Serves the etcd API of `node` from now on.
    pub fn serve_node(&self, node: &Arc<Node>) {
        self.board.set_node(Some(node.clone()), "running");
        self.routes.replace(
            Some(GrpcServices::new(node)),
            node_routes(node.clone(), self.board.routes()),
        );
        if let Some(metrics) = &self.metrics {
            metrics.replace(
                None,
                crate::http::router(node.clone()).fallback(crate::http::not_found),
            );
        }
    }
}

/// The client port, served from the start of `run` to its end.
pub struct ClientPort {
    pub routes: NodeRoutes,
    stop: watch::Sender<bool>,
    serving: JoinHandle<Result<(), RunError>>,
}

impl ClientPort {
    /// Binds the client port; until [`NodeRoutes::serve_node`] it answers
    /// `/e2d/status` and "not started".
    pub async fn open(args: &RunArgs, board: Arc<StatusBoard>) -> Result<Self, RunError> {
        let listener = listen(args.client_addr, "clients", "--client-addr").await?;
        let routes = ClientRoutes::new(waiting_routes(board.routes()));
        let (stop, mut stopped) = watch::channel(false);
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let metrics = match args.metrics_addr {
            None => None,
            Some(addr) => {
                let listener = listen(addr, "metrics", "--metrics-addr").await?;
                let metrics = ClientRoutes::new(waiting_routes(Router::new()));
                let mut stopped = stop.subscribe();
                let shutdown = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                let serving = serve(listener, metrics.clone(), shutdown);
                tokio::spawn(async move {
                    if let Err(e) = serving.await {
                        tracing::error!("the --metrics-addr listener stopped: {e}");
                    }
                });
                tracing::info!("serving /metrics and the health endpoints on {addr}");
                Some(metrics)
            }
        };
        let serving = tokio::spawn(serve(listener, routes.clone(), shutdown));
        tracing::info!(
            client_url = %args.advertised_url(args.client_addr),
            "serving clients on {}",
            args.client_addr
        );
        Ok(Self {
            routes: NodeRoutes {
                routes,
                metrics,
                board,
            },
            stop,
            serving,
        })
    }

    /// Resolves if serving stops on its own (an error).
    pub async fn failed(&mut self) -> RunError {
        match (&mut self.serving).await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => RunError::Serve("the client listener stopped".into()),
            Err(e) => RunError::Serve(e.to_string()),
        }
    }

    /// Stops serving: in-flight requests get a grace period, then open
    /// streams (watches, keep-alives, which never end on their own) close.
    pub async fn close(mut self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut self.serving)
            .await
            .is_err()
        {
            tracing::info!("streams still open after {SHUTDOWN_GRACE:?}; closing them");
            self.serving.abort();
        }
    }
}

/// The routes the client port serves now; clones share them.
#[derive(Clone)]
pub struct ClientRoutes {
    current: Arc<RwLock<Arc<Served>>>,
}

/// One generation of what the client port serves: the etcd gRPC services
/// (once the node runs) and the HTTP routes.
struct Served {
    grpc: Option<GrpcServices>,
    http: Router,
}

/// The etcd gRPC services of a running node, and the gRPC health service.
/// A call goes straight to its service by the path's service name, with no
/// HTTP router on its way.
struct GrpcServices {
    kv: super::kv_unary::KvUnary<grpc::KvService>,
    watch: WatchServer<grpc::WatchService>,
    lease: LeaseServer<grpc::LeaseService>,
    cluster: ClusterServer<grpc::ClusterService>,
    maintenance: MaintenanceServer<grpc::MaintenanceService>,
    auth: AuthServer<grpc::AuthService>,
    health: HealthServer<grpc::HealthService>,
    lock: LockServer<grpc::LockService>,
    election: ElectionServer<grpc::ElectionService>,
    metrics: Arc<crate::metrics::Metrics>,
}

type Body = tonic::body::Body;
type Responding = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl GrpcServices {
    fn new(node: &Arc<Node>) -> Self {
        let max = grpc_message_bytes_max(node.config.max_request_bytes);
        Self {
            kv: super::kv_unary::KvUnary::new(grpc::KvService::new(node.clone()), max),
            watch: WatchServer::new(grpc::WatchService::new(node.clone()))
                .max_decoding_message_size(max),
            lease: LeaseServer::new(grpc::LeaseService::new(node.clone()))
                .max_decoding_message_size(max),
            cluster: ClusterServer::new(grpc::ClusterService::new(node.clone()))
                .max_decoding_message_size(max),
            maintenance: MaintenanceServer::new(grpc::MaintenanceService::new(node.clone()))
                .max_decoding_message_size(max),
            auth: AuthServer::new(grpc::AuthService::new(node.clone()))
                .max_decoding_message_size(max),
            health: HealthServer::new(grpc::HealthService::new(node.raft().subscribe())),
            lock: LockServer::new(grpc::LockService::new(node.clone()))
                .max_decoding_message_size(max),
            election: ElectionServer::new(grpc::ElectionService::new(node.clone()))
                .max_decoding_message_size(max),
            metrics: node.metrics.clone(),
        }
    }

    /// Calls the service `request`'s path names, counting the call in the
    /// gRPC metrics when it names a served method.
    fn call_metered(
        &self,
        request: Request<Body>,
        elsewhere: impl FnOnce(Request<Body>) -> Responding,
    ) -> Responding {
        let Some(call) = self.metrics.start_grpc_call(request.uri().path()) else {
            return self.call(request, elsewhere);
        };
        if call.service() == <KvServer<grpc::KvService> as NamedService>::NAME {
            return self.kv.call(request, Some(call));
        }
        let metered = crate::metrics::metered_body::metered;
        Box::pin(metered(call, request, |request| {
            self.call(request, elsewhere)
        }))
    }

    /// Calls the service `request`'s path names (`/etcdserverpb.KV/Put`),
    /// or `elsewhere` when the path names none of them.
    fn call(
        &self,
        request: Request<Body>,
        elsewhere: impl FnOnce(Request<Body>) -> Responding,
    ) -> Responding {
        fn named<S: NamedService>(_: &S, service: &str) -> bool {
            S::NAME == service
        }
        let path = request.uri().path();
        let Some((service, _method)) = path.strip_prefix('/').and_then(|p| p.split_once('/'))
        else {
            return elsewhere(request);
        };
        // Only the service called is cloned (its handle's `call` takes it
        // mutably).
        if service == <KvServer<grpc::KvService> as NamedService>::NAME {
            self.kv.call(request, None)
        } else if named(&self.watch, service) {
            self.watch.clone().call(request)
        } else if named(&self.lease, service) {
            self.lease.clone().call(request)
        } else if named(&self.cluster, service) {
            self.cluster.clone().call(request)
        } else if named(&self.maintenance, service) {
            self.maintenance.clone().call(request)
        } else if named(&self.auth, service) {
            self.auth.clone().call(request)
        } else if named(&self.health, service) {
            self.health.clone().call(request)
        } else if named(&self.lock, service) {
            self.lock.clone().call(request)
        } else if named(&self.election, service) {
            self.election.clone().call(request)
        } else {
            elsewhere(request)
        }
    }
}

impl ClientRoutes {
    fn new(http: Router) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(Served { grpc: None, http }))),
        }
    }

    /// Serves `grpc` and `http` from the next request on.
    fn replace(&self, grpc: Option<GrpcServices>, http: Router) {
        *crate::fail_stop::write(&self.current) = Arc::new(Served { grpc, http });
    }

    fn served(&self) -> Arc<Served> {
        crate::fail_stop::read(&self.current).clone()
    }
}

impl tower::Service<Request<Body>> for ClientRoutes {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Responding;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let served = self.served();
        let http = |request: Request<Body>| -> Responding {
            let http = served.http.clone();
            Box::pin(async move {
                let response = http.oneshot(request).await?;
                Ok(response.map(Body::new))
            })
        };
        match &served.grpc {
            Some(grpc) => grpc.call_metered(request, http),
            None => http(request),
        }
    }
}

/// The HTTP endpoints of a running node (etcd's JSON gateway among
/// them), plus `extra` routes; gRPC calls
/// to no etcd service get `Unimplemented`.
fn node_routes(node: Arc<Node>, extra: Router) -> Router {
    crate::http::router(node.clone())
        .merge(crate::gateway::router(&node))
        .merge(extra)
        .fallback(crate::http::not_found)
}

/// What the client port answers before the server runs: `extra` routes,
/// `/livez` and `/version`; `/health` and `/readyz` say NOT STARTED and
/// gRPC calls fail with Unavailable.
pub fn waiting_routes(extra: Router) -> Router {
    Router::new()
        .route("/health", get(not_started_health))
        .route("/readyz", get(not_started_ready))
        .route("/livez", get(crate::http::livez))
        .route("/version", get(crate::http::version))
        .merge(extra)
        .fallback(not_started)
}

const NOT_STARTED: &str = "NOT STARTED";

async fn not_started_health() -> impl IntoResponse {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"health": "false", "reason": NOT_STARTED}).to_string(),
    )
}

async fn not_started_ready() -> impl IntoResponse {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("[-]{NOT_STARTED}\n"),
    )
}

async fn not_started(request: AxumRequest) -> AxumResponse {
    if crate::http::is_grpc(&request) {
        return tonic::Status::unavailable(
            "etcdserver: this member has not started yet (see e2d status)",
        )
        .into_http();
    }
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

/// Serves the client port with whatever `routes` holds, until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    routes: ClientRoutes,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    match crate::tls::client::installed() {
        Some(material) => {
            let config = material
                .server_config(crate::tls::material::Role::Server)
                .map_err(|e| RunError::Config(e.0))?;
            let incoming = crate::tls::incoming::accept(listener, config, "client port");
            serve_connections(incoming, routes, shutdown).await;
        }
        None => serve_connections(super::without_delay(listener), routes, shutdown).await,
    }
    Ok(())
}

/// What a connection tells of its client: the common name of the
/// certificate it presented, if any.
pub trait ClientIdentity {
    fn client_common_name(&self) -> Option<std::sync::Arc<str>>;
}

impl ClientIdentity for e2d_coalesced_io::CoalescedIo<tokio::net::TcpStream> {
    fn client_common_name(&self) -> Option<std::sync::Arc<str>> {
        None
    }
}

impl ClientIdentity for e2d_coalesced_io::CoalescedIo<crate::tls::incoming::TlsConnection> {
    fn client_common_name(&self) -> Option<std::sync::Arc<str>> {
        self.get_ref().client_common_name()
    }
}

/// Serves each connection `incoming` yields, HTTP/1 or HTTP/2, in a task
/// of its own, with the HTTP/2 settings tonic's server uses. After
/// `shutdown`, no new connection is taken and the open ones finish what
/// they serve.
async fn serve_connections<IO>(
    incoming: impl tokio_stream::Stream<Item = std::io::Result<IO>>,
    routes: ClientRoutes,
    shutdown: impl Future<Output = ()>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + ClientIdentity + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tokio_stream::StreamExt;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(None)
        .max_pending_accept_reset_streams(None)
        .max_local_error_reset_streams(None);
    // hyper enforces its HTTP/1 header read timeout only with a timer.
    builder.http1().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Boxed, so it can be dropped (closing the listening socket) before
    // the open connections finish.
    let mut incoming = Box::pin(incoming);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let io = tokio::select! {
            _ = &mut shutdown => break,
            io = incoming.next() => io,
        };
        let io = match io {
            Some(Ok(io)) => io,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "a client connection failed before it was served");
                continue;
            }
            None => break,
        };
        // Each request carries the connection's client certificate name,
        // for etcd's certificate authentication.
        let common_name = io.client_common_name().map(crate::auth::ClientCommonName);
        let service = hyper_util::service::TowerToHyperService::new(routes.clone().map_request(
            move |request: Request<hyper::body::Incoming>| {
                let mut request = request.map(Body::new);
                if let Some(name) = &common_name {
                    request.extensions_mut().insert(name.clone());
                }
                request
            },
        ));
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            let io = super::url_authority::UrlAuthorityFix::new(io);
            let connection = builder.serve_connection(TokioIo::new(io), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "a client connection ended with an error");
            }
        });
    }
    drop(incoming);
    graceful.shutdown().await;
}

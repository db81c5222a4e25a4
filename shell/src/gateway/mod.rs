//! etcd's HTTP/JSON gateway on the client port: `POST /v3/<service>/<method>`
//! with a JSON body, answered in JSON, as etcd's grpc-gateway serves it
//! (the paths of the HTTP annotations in etcd's `rpc.proto`, also under
//! `/v3beta/`). Each path calls the same service the gRPC port serves, so
//! both answer alike; `json` reads and writes single messages, `streams`
//! the watch, keep-alive and snapshot streams.
//!
//! `/v3/maintenance/hash` is Hash, as in etcd 3.4 and 3.5: etcd annotates
//! HashKV with the same path, and grpc-gateway v1 routes to the method
//! registered first.

mod json;
mod streams;

use std::future::Future;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post, MethodRouter};
use axum::Router;
use e2d_proto::etcdserverpb::auth_server::Auth;
use e2d_proto::etcdserverpb::cluster_server::Cluster;
use e2d_proto::etcdserverpb::kv_server::Kv;
use e2d_proto::etcdserverpb::lease_server::Lease;
use e2d_proto::etcdserverpb::maintenance_server::Maintenance;
use e2d_proto::etcdserverpb::watch_server::Watch;
use e2d_proto::v3electionpb::election_server::Election;
use e2d_proto::v3lockpb::lock_server::Lock;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::Status;

use crate::grpc;
use crate::server::Node;
use json::Limits;

/// The prefixes the gateway answers under; etcd rewrites `/v3beta/` to
/// `/v3/` for older clients.
const PREFIXES: [&str; 2] = ["/v3", "/v3beta"];

/// The gateway's routes for `node`.
pub fn router(node: &Arc<Node>) -> Router {
    let limits = Limits::new(node.config.max_request_bytes);
    let kv = Arc::new(grpc::KvService::new(node.clone()));
    let watch = Arc::new(grpc::WatchService::new(node.clone()));
    let lease = Arc::new(grpc::LeaseService::new(node.clone()));
    let cluster = Arc::new(grpc::ClusterService::new(node.clone()));
    let maintenance = Arc::new(grpc::MaintenanceService::new(node.clone()));
    let auth = Arc::new(grpc::AuthService::new(node.clone()));
    let lock = Arc::new(grpc::LockService::new(node.clone()));
    let election = Arc::new(grpc::ElectionService::new(node.clone()));

    let mut routes = Routes {
        router: Router::new(),
        limits,
    };
    macro_rules! unary {
        ($service:ident . $method:ident, $($path:literal),+) => {{
            let service = $service.clone();
            routes.add(&[$($path),+], move |request, limits| {
                let service = service.clone();
                async move {
                    unary(request, limits, |call| async move { service.$method(call).await }).await
                }
            });
        }};
    }

    macro_rules! server_streaming {
        ($service:ident . $method:ident, $path:literal) => {{
            let service = $service.clone();
            routes.add(&[$path], move |request, limits| {
                let service = service.clone();
                async move {
                    server_streaming(request, limits, |call| async move {
                        service.$method(call).await
                    })
                    .await
                }
            });
        }};
    }

    macro_rules! bidirectional {
        ($service:ident . $method:ident, $path:literal) => {{
            let service = $service.clone();
            routes.add(&[$path], move |request, limits| {
                let service = service.clone();
                async move {
                    bidirectional(request, limits, |call| async move {
                        service.$method(call).await
                    })
                    .await
                }
            });
        }};
    }

    unary!(kv.range, "/kv/range");
    unary!(kv.put, "/kv/put");
    unary!(kv.delete_range, "/kv/deleterange");
    unary!(kv.txn, "/kv/txn");
    unary!(kv.compact, "/kv/compaction");
    bidirectional!(watch.watch, "/watch");

    unary!(lease.lease_grant, "/lease/grant");
    unary!(lease.lease_revoke, "/lease/revoke", "/kv/lease/revoke");
    unary!(
        lease.lease_time_to_live,
        "/lease/timetolive",
        "/kv/lease/timetolive"
    );
    unary!(lease.lease_leases, "/lease/leases", "/kv/lease/leases");
    bidirectional!(lease.lease_keep_alive, "/lease/keepalive");

    unary!(cluster.member_add, "/cluster/member/add");
    unary!(cluster.member_remove, "/cluster/member/remove");
    unary!(cluster.member_update, "/cluster/member/update");
    unary!(cluster.member_list, "/cluster/member/list");
    unary!(cluster.member_promote, "/cluster/member/promote");

    unary!(maintenance.alarm, "/maintenance/alarm");
    unary!(maintenance.status, "/maintenance/status");
    unary!(maintenance.defragment, "/maintenance/defragment");
    unary!(maintenance.hash, "/maintenance/hash");
    unary!(maintenance.move_leader, "/maintenance/transfer-leadership");
    unary!(maintenance.downgrade, "/maintenance/downgrade");
    server_streaming!(maintenance.snapshot, "/maintenance/snapshot");

    unary!(auth.auth_enable, "/auth/enable");
    unary!(auth.auth_disable, "/auth/disable");
    unary!(auth.auth_status, "/auth/status");
    unary!(auth.authenticate, "/auth/authenticate");
    unary!(auth.user_add, "/auth/user/add");
    unary!(auth.user_get, "/auth/user/get");
    unary!(auth.user_list, "/auth/user/list");
    unary!(auth.user_delete, "/auth/user/delete");
    unary!(auth.user_change_password, "/auth/user/changepw");
    unary!(auth.user_grant_role, "/auth/user/grant");
    unary!(auth.user_revoke_role, "/auth/user/revoke");
    unary!(auth.role_add, "/auth/role/add");
    unary!(auth.role_get, "/auth/role/get");
    unary!(auth.role_list, "/auth/role/list");
    unary!(auth.role_delete, "/auth/role/delete");
    unary!(auth.role_grant_permission, "/auth/role/grant");
    unary!(auth.role_revoke_permission, "/auth/role/revoke");

    unary!(lock.lock, "/lock/lock");
    unary!(lock.unlock, "/lock/unlock");

    unary!(election.campaign, "/election/campaign");
    unary!(election.proclaim, "/election/proclaim");
    unary!(election.leader, "/election/leader");
    unary!(election.resign, "/election/resign");
    server_streaming!(election.observe, "/election/observe");

    let mut router = routes.router;
    for prefix in PREFIXES {
        router = router.route(&format!("{prefix}/{{*rest}}"), any(unknown_path));
    }
    router.layer(axum::middleware::map_response(allow_any_origin))
}

/// The routes being built, all under both prefixes.
struct Routes {
    router: Router,
    limits: Limits,
}

impl Routes {
    /// Serves `handler` for POST at each of `paths` (without prefix).
    fn add<H, F>(&mut self, paths: &[&str], handler: H)
    where
        H: Fn(Request, Limits) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response> + Send + 'static,
    {
        let limits = self.limits;
        let method_router: MethodRouter = post(move |request: Request| handler(request, limits))
            .options(preflight)
            .fallback(method_not_allowed);
        for prefix in PREFIXES {
            for path in paths {
                let router = std::mem::take(&mut self.router);
                self.router = router.route(&format!("{prefix}{path}"), method_router.clone());
            }
        }
    }
}

/// Calls a unary method with the body's message and answers its response.
async fn unary<Req, Resp, Call, Fut>(request: Request, limits: Limits, call: Call) -> Response
where
    Req: DeserializeOwned + Default + prost::Message,
    Resp: Serialize,
    Call: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let call_request = match single_message_request::<Req>(request, limits).await {
        Ok(call_request) => call_request,
        Err(refused) => return refused,
    };
    match call(call_request).await {
        Ok(response) => json::message_response(response.get_ref()),
        Err(status) => json::error_response(&status),
    }
}

/// Calls a method that answers a stream with the body's message.
async fn server_streaming<Req, Resp, S, Call, Fut>(
    request: Request,
    limits: Limits,
    call: Call,
) -> Response
where
    Req: DeserializeOwned + Default + prost::Message,
    Resp: Serialize + Send + 'static,
    S: futures_util::Stream<Item = Result<Resp, Status>> + Send + 'static,
    Call: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<S>, Status>>,
{
    let call_request = match single_message_request::<Req>(request, limits).await {
        Ok(call_request) => call_request,
        Err(refused) => return refused,
    };
    streams::stream_response(call(call_request).await).await
}

/// The gRPC request of a method that takes one message: the body's
/// message with the headers as metadata, or the answer that refuses a
/// body that is not one.
async fn single_message_request<Req>(
    request: Request,
    limits: Limits,
) -> Result<tonic::Request<Req>, Response>
where
    Req: DeserializeOwned + Default + prost::Message,
{
    let (parts, body) = request.into_parts();
    let message = json::read_message::<Req>(body, limits)
        .await
        .map_err(|status| json::error_response(&status))?;
    Ok(tonic::Request::from_parts(
        json::metadata(&parts.headers),
        tonic::Extensions::default(),
        message,
    ))
}

/// Calls a method with a stream each way: the body's messages in, the
/// answers out as they come. A first message that cannot be read fails
/// the call (grpc-gateway answers 500 with code Unknown); an empty body
/// opens the stream with nothing on it.
async fn bidirectional<Req, Resp, S, Call, Fut>(
    request: Request,
    limits: Limits,
    call: Call,
) -> Response
where
    Req: DeserializeOwned + Default + prost::Message + 'static,
    Resp: Serialize + Send + 'static,
    S: futures_util::Stream<Item = Result<Resp, Status>> + Send + 'static,
    Call: FnOnce(tonic::Request<tonic::Streaming<Req>>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<S>, Status>>,
{
    let (parts, body) = request.into_parts();
    let mut values = Box::pin(streams::json_values::<Req>(body, limits));
    let first = match values.next().await {
        Some(Err(e)) => return json::error_response(&Status::unknown(e)),
        Some(Ok(first)) => Some(first),
        None => None,
    };
    let call_request = tonic::Request::from_parts(
        json::metadata(&parts.headers),
        tonic::Extensions::default(),
        streams::request_stream(first, values, limits),
    );
    streams::stream_response(call(call_request).await).await
}

/// etcd's cross-origin headers, on every gateway answer.
async fn allow_any_origin(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    response
}

/// A CORS preflight: etcd answers every OPTIONS request with 200.
async fn preflight() -> StatusCode {
    StatusCode::OK
}

async fn method_not_allowed() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n").into_response()
}

/// A path under the gateway's prefixes that names no method.
async fn unknown_path(method: Method) -> Response {
    if method == Method::OPTIONS {
        return StatusCode::OK.into_response();
    }
    (StatusCode::NOT_FOUND, "Not Found\n").into_response()
}

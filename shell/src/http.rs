//! The HTTP endpoints etcd serves beside gRPC on the client port:
//! `/health`, `/livez`, `/readyz`, `/version` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use e2d_proto::etcdserverpb::AlarmType;

use crate::grpc::ETCD_VERSION;
use crate::metrics::Gauges;
use crate::server::Node;

/// The cluster version reported at `/version`.
const ETCD_CLUSTER_VERSION: &str = "3.5.0";

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(node)
}

/// The answer for paths that are neither an endpoint nor a gRPC method:
/// 404 for HTTP clients, `Unimplemented` for gRPC ones.
pub async fn not_found(request: axum::extract::Request) -> axum::response::Response {
    if is_grpc(&request) {
        return tonic::Status::unimplemented(format!("unknown method {}", request.uri().path()))
            .into_http();
    }
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

/// Whether `request` is a gRPC call.
pub fn is_grpc(request: &axum::extract::Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Why the node is unhealthy, in etcd's words, or `None` when healthy.
fn unhealthy_reason(node: &Node) -> Option<String> {
    if node.raft_status().leader_id == 0 {
        return Some("RAFT NO LEADER".to_string());
    }
    let state = node.read();
    let alarms = state.all_alarms();
    let first = alarms.first()?;
    let name = AlarmType::try_from(first.alarm)
        .map(|t| t.as_str_name())
        .unwrap_or("UNKNOWN");
    Some(format!("ALARM {name}"))
}

async fn health(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let (status, body) = match unhealthy_reason(&node) {
        None => (
            StatusCode::OK,
            serde_json::json!({"health": "true", "reason": ""}),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"health": "false", "reason": reason}),
        ),
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

pub async fn livez() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn readyz(State(node): State<Arc<Node>>) -> impl IntoResponse {
    match unhealthy_reason(&node) {
        None => (StatusCode::OK, "ok\n".to_string()),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("[-]{reason}\n")),
    }
}

pub async fn version() -> impl IntoResponse {
    let body = serde_json::json!({
        "etcdserver": ETCD_VERSION,
        "etcdcluster": ETCD_CLUSTER_VERSION,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let gauges = {
        let state = node.read();
        let mvcc = state.mvcc();
        let (db_size_bytes, db_size_in_use_bytes) = crate::grpc::db_sizes_bytes(mvcc);
        Gauges {
            db_size_bytes,
            db_size_in_use_bytes,
            quota_backend_bytes: node.config.quota_backend_bytes,
            revision: mvcc.current_revision(),
            compact_revision: mvcc.compact_revision(),
            keys: mvcc.key_count(),
            leases: state.lessor().len(),
        }
    };
    let now_unix_ms = crate::backup::wall_clock_ms();
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        node.metrics.render(&gauges, now_unix_ms),
    )
}

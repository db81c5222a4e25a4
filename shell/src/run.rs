//! `e2d run`: open the data dir, start the node, serve clients until a
//! signal says stop.

use std::sync::Arc;

use e2d_core::storage::Backend;
use e2d_core::StateMachine;
use e2d_proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use tokio::net::TcpListener;

use crate::cli::RunArgs;
use crate::grpc::{self, grpc_message_bytes_max};
use crate::server::{spawn_duties, Clock, Identity, Node, NodeConfig, WriteOp};
use crate::storage::FjallBackend;

/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Why `e2d run` could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot use data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the database in {path}: {reason} (is another e2d using this data dir?)")]
    Database { path: String, reason: String },
    #[error("cannot listen on {addr} for {what}: {source} (is another process using the port? pass another address with {flag})")]
    Listen {
        addr: std::net::SocketAddr,
        what: &'static str,
        flag: &'static str,
        source: std::io::Error,
    },
    #[error("serving clients failed: {0}")]
    Serve(String),
}

pub async fn run(args: RunArgs) -> Result<(), RunError> {
    let db_dir = args.data_dir.join("db");
    std::fs::create_dir_all(&db_dir).map_err(|source| RunError::DataDir {
        path: args.data_dir.display().to_string(),
        source,
    })?;
    let database_error = |e: e2d_core::Error| RunError::Database {
        path: db_dir.display().to_string(),
        reason: e.to_string(),
    };
    let mut backend = FjallBackend::open(&db_dir).map_err(|e| database_error(e.into()))?;
    let name = args.member_name();
    let (identity, created) = Identity::load_or_create(
        &mut backend,
        name,
        vec![args.advertised_url(args.peer_addr)],
        vec![args.advertised_url(args.client_addr)],
    )
    .map_err(|e| database_error(e.into()))?;
    if created {
        backend.commit(true).map_err(|e| database_error(e.into()))?;
    }
    let clock = Clock::start();
    let state = StateMachine::open(backend, clock.now_ms()).map_err(database_error)?;
    tracing::info!(
        name = %identity.name,
        member_id = format!("{:x}", identity.member_id),
        cluster_id = format!("{:x}", identity.cluster_id),
        revision = state.current_revision(),
        data_dir = %args.data_dir.display(),
        "opened data dir"
    );
    let config = NodeConfig {
        data_dir: args.data_dir.clone(),
        quota_backend_bytes: args.quota_backend_bytes,
        max_request_bytes: args.max_request_bytes,
        progress_notify_interval_ms: args.watch_progress_notify_interval,
    };
    let lease_id_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64)
        << 8;
    let node = Node::start(identity, config, clock, state, lease_id_seed);
    spawn_duties(node.clone());

    let client_listener = listen(args.client_addr, "clients", "--client-addr").await?;
    let metrics_listener = match args.metrics_addr {
        Some(addr) => Some(listen(addr, "metrics", "--metrics-addr").await?),
        None => None,
    };
    tracing::info!(
        client_url = %args.advertised_url(args.client_addr),
        "serving clients on {}",
        args.client_addr
    );
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    if let Some(listener) = metrics_listener {
        let router = crate::http::router(node.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "metrics listener stopped");
            }
        });
    }
    let serving = serve_clients(node.clone(), client_listener, shutdown);
    tokio::pin!(serving);
    tokio::select! {
        served = &mut serving => served?,
        _ = stop_rx.wait_for(|stop| *stop) => {
            // Open watch and keep-alive streams never end on their own: give
            // in-flight requests a grace period, then stop regardless.
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut serving).await.is_err() {
                tracing::info!("streams still open after {SHUTDOWN_GRACE:?}; closing them");
            }
        }
    }
    node.write(WriteOp::LeaseCheckpoint).await;
    tracing::info!("stopped");
    Ok(())
}

async fn listen(
    addr: std::net::SocketAddr,
    what: &'static str,
    flag: &'static str,
) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen {
            addr,
            what,
            flag,
            source,
        })
}

async fn serve_clients(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let max = grpc_message_bytes_max(node.config.max_request_bytes);
    let mut routes = tonic::service::RoutesBuilder::default();
    routes
        .add_service(
            KvServer::new(grpc::KvService::new(node.clone())).max_decoding_message_size(max),
        )
        .add_service(
            WatchServer::new(grpc::WatchService::new(node.clone())).max_decoding_message_size(max),
        )
        .add_service(
            LeaseServer::new(grpc::LeaseService::new(node.clone())).max_decoding_message_size(max),
        )
        .add_service(
            ClusterServer::new(grpc::ClusterService::new(node.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            MaintenanceServer::new(grpc::MaintenanceService::new(node.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            AuthServer::new(grpc::AuthService::new(node.clone())).max_decoding_message_size(max),
        );
    let router = routes
        .routes()
        .into_axum_router()
        .merge(crate::http::router(node))
        .fallback(crate::http::not_found);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(tonic::service::Routes::from(router))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| RunError::Serve(e.to_string()))
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
}

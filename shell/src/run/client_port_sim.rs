//! The client port under `--cfg madsim`: the simulated transport serves
//! gRPC services only (no HTTP, no swappable routes), so the port opens
//! when the server runs; before that, clients find nothing listening.

use std::sync::{Arc, Mutex};

use e2d_proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use e2d_proto::health::health_server::HealthServer;
use e2d_proto::v3electionpb::election_server::ElectionServer;
use e2d_proto::v3lockpb::lock_server::LockServer;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::status_board::StatusBoard;
use super::RunError;
use crate::cli::RunArgs;
use crate::grpc;
use crate::server::Node;

#[derive(Clone)]
pub struct NodeRoutes {
    pub board: Arc<StatusBoard>,
    addr: std::net::SocketAddr,
    stop: watch::Receiver<bool>,
    failures: mpsc::Sender<RunError>,
    serving: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl NodeRoutes {
    /// Starts serving the etcd API of `node`.
    pub fn serve_node(&self, node: &Arc<Node>) {
        self.board.set_node(Some(node.clone()), "running");
        let mut stop = self.stop.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        let router = tonic::transport::Server::builder()
            .add_service(KvServer::new(grpc::KvService::new(node.clone())))
            .add_service(WatchServer::new(grpc::WatchService::new(node.clone())))
            .add_service(LeaseServer::new(grpc::LeaseService::new(node.clone())))
            .add_service(ClusterServer::new(grpc::ClusterService::new(node.clone())))
            .add_service(MaintenanceServer::new(grpc::MaintenanceService::new(
                node.clone(),
            )))
            .add_service(AuthServer::new(grpc::AuthService::new(node.clone())))
            .add_service(HealthServer::new(grpc::HealthService::new(
                node.raft().subscribe(),
            )))
            .add_service(LockServer::new(grpc::LockService::new(node.clone())))
            .add_service(ElectionServer::new(grpc::ElectionService::new(
                node.clone(),
            )));
        let (addr, failures) = (self.addr, self.failures.clone());
        let serving = tokio::spawn(async move {
            if let Err(e) = router.serve_with_shutdown(addr, shutdown).await {
                let _ = failures.try_send(RunError::Serve(e.to_string()));
            }
        });
        let previous = crate::fail_stop::lock(&self.serving).replace(serving);
        assert!(previous.is_none(), "the client port is served once");
    }
}

pub struct ClientPort {
    pub routes: NodeRoutes,
    stop: watch::Sender<bool>,
    failed: mpsc::Receiver<RunError>,
}

impl ClientPort {
    pub async fn open(args: &RunArgs, board: Arc<StatusBoard>) -> Result<Self, RunError> {
        let (stop, stopped) = watch::channel(false);
        let (failures, failed) = mpsc::channel(1);
        Ok(Self {
            routes: NodeRoutes {
                board,
                addr: args.client_addr,
                stop: stopped,
                failures,
                serving: Arc::default(),
            },
            stop,
            failed,
        })
    }

    /// Resolves if serving stops on its own (an error).
    pub async fn failed(&mut self) -> RunError {
        match self.failed.recv().await {
            Some(e) => e,
            None => std::future::pending().await,
        }
    }

    pub async fn close(self) {
        let _ = self.stop.send(true);
        let serving = crate::fail_stop::lock(&self.routes.serving).take();
        if let Some(serving) = serving {
            serving.abort();
        }
    }
}

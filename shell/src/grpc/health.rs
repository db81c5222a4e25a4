//! The gRPC health service (`grpc.health.v1.Health`) on the client port,
//! for load balancers and Kubernetes' gRPC probes. The server as a whole
//! (service name "") is SERVING while this member knows a leader and
//! NOT_SERVING while it does not, as the `/health` endpoint judges it;
//! etcd registers no other service name, and neither does e2d: any other
//! name is NOT_FOUND for Check and SERVICE_UNKNOWN for Watch, as grpc-go's
//! health server answers.

use std::pin::Pin;

use e2d_proto::health::health_check_response::ServingStatus;
use e2d_proto::health::health_server::Health;
use e2d_proto::health::{HealthCheckRequest, HealthCheckResponse};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::raft::RaftStatus;

/// The service name that stands for the whole server.
const WHOLE_SERVER: &str = "";

type Responses =
    Pin<Box<dyn futures_util::Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

pub struct HealthService {
    raft: watch::Receiver<RaftStatus>,
}

impl HealthService {
    /// Reports health from the raft status `raft` publishes.
    pub fn new(raft: watch::Receiver<RaftStatus>) -> Self {
        Self { raft }
    }
}

/// The whole server's status: serving while a leader is known.
pub fn serving_status(raft: &RaftStatus) -> ServingStatus {
    if raft.leader_id != 0 {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        if request.get_ref().service != WHOLE_SERVER {
            return Err(Status::not_found("unknown service"));
        }
        let status = serving_status(&self.raft.borrow());
        Ok(Response::new(response(status)))
    }

    type WatchStream = Responses;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        if request.get_ref().service != WHOLE_SERVER {
            // The status of a service that is not known never changes:
            // one answer, and the stream stays open until the client ends it.
            let unknown =
                futures_util::stream::once(async { Ok(response(ServingStatus::ServiceUnknown)) });
            let responses =
                futures_util::StreamExt::chain(unknown, futures_util::stream::pending());
            return Ok(Response::new(Box::pin(responses)));
        }
        let mut raft = self.raft.clone();
        raft.mark_changed();
        // Each answer is a change from the one before: raft's status moves
        // at every commit, its leader seldom.
        let responses = futures_util::stream::unfold(
            (raft, None::<ServingStatus>),
            |(mut raft, mut sent)| async move {
                loop {
                    if raft.changed().await.is_err() {
                        // The driver has stopped: the member no longer serves.
                        if sent == Some(ServingStatus::NotServing) {
                            return None;
                        }
                        sent = Some(ServingStatus::NotServing);
                        return Some((Ok(response(ServingStatus::NotServing)), (raft, sent)));
                    }
                    let status = serving_status(&raft.borrow_and_update());
                    if sent != Some(status) {
                        return Some((Ok(response(status)), (raft, Some(status))));
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(responses)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raft(leader_id: u64) -> RaftStatus {
        RaftStatus {
            leader_id,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_server_serves_while_a_leader_is_known() {
        let (status, receiver) = watch::channel(raft(0));
        let service = HealthService::new(receiver);
        let check = |name: &str| {
            let request = Request::new(HealthCheckRequest {
                service: name.to_string(),
            });
            service.check(request)
        };
        let answer = check("").await.unwrap().into_inner();
        assert_eq!(answer.status(), ServingStatus::NotServing);
        status.send_replace(raft(7));
        let answer = check("").await.unwrap().into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving);
        let unknown = check("etcdserverpb.KV").await.unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
    }

    #[tokio::test]
    async fn watch_sends_each_change_once() {
        use futures_util::StreamExt;
        let (status, receiver) = watch::channel(raft(0));
        let service = HealthService::new(receiver);
        let request = Request::new(HealthCheckRequest::default());
        let mut answers = service.watch(request).await.unwrap().into_inner();
        async fn next(answers: &mut Responses) -> ServingStatus {
            answers.next().await.unwrap().unwrap().status()
        }
        assert_eq!(next(&mut answers).await, ServingStatus::NotServing);
        status.send_replace(raft(3));
        assert_eq!(next(&mut answers).await, ServingStatus::Serving);
        // A new term under the same leader changes nothing to report.
        status.send_replace(RaftStatus { term: 9, ..raft(3) });
        status.send_replace(raft(0));
        assert_eq!(next(&mut answers).await, ServingStatus::NotServing);
        drop(status);
        let ended = answers.next().await;
        assert!(ended.is_none(), "{ended:?}");
    }
}

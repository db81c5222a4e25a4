//! The gRPC health service on the client port, through tonic-health's
//! client (what grpc_health_probe and Kubernetes' gRPC probes send):
//! SERVING while the member knows a leader, NOT_SERVING once it has lost
//! it, NOT_FOUND for a service name the server does not know.

use std::time::Duration;

use e2d_tests::cluster::Cluster;
use e2d_tests::Server;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// How long a member alone may take to notice it has no leader (an
/// election timeout, then a campaign that gets no votes).
const LEADER_LOST_TIMEOUT: Duration = Duration::from_secs(10);

async fn health_client(endpoint: &str) -> HealthClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    HealthClient::new(channel)
}

fn request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_string(),
    }
}

#[test]
fn a_running_member_is_serving_and_unknown_services_are_not_found() {
    let s = Server::e2d();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut client = health_client(&s.endpoint()).await;
        let answer = client.check(request("")).await.expect("check").into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving);
        let unknown = client
            .check(request("etcdserverpb.KV"))
            .await
            .expect_err("only the whole server has a status");
        assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
        // Watch on an unknown name says so, and the stream stays open.
        let mut unknown = client
            .watch(request("no.such.Service"))
            .await
            .expect("watch")
            .into_inner();
        let first = unknown.message().await.expect("a first answer");
        assert_eq!(
            first.map(|a| a.status()),
            Some(ServingStatus::ServiceUnknown)
        );
    });
}

#[test]
fn a_member_that_loses_its_leader_stops_serving() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let alone = (leader + 1) % 3;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut client = runtime.block_on(health_client(&cluster.members[alone].endpoint()));
    let mut watch =
        runtime.block_on(async { client.watch(request("")).await.expect("watch").into_inner() });
    let first = runtime.block_on(watch.message()).expect("first answer");
    assert_eq!(first.map(|a| a.status()), Some(ServingStatus::Serving));

    cluster.kill9(leader);
    cluster.kill9(3 - leader - alone);
    let next = runtime.block_on(async {
        tokio::time::timeout(LEADER_LOST_TIMEOUT, watch.message())
            .await
            .expect("the watch reports the lost leader")
    });
    assert_eq!(
        next.expect("an answer").map(|a| a.status()),
        Some(ServingStatus::NotServing)
    );
    let answer = runtime
        .block_on(client.check(request("")))
        .expect("check")
        .into_inner();
    assert_eq!(answer.status(), ServingStatus::NotServing);
}

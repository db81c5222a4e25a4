//! gRPC calls on the client port, as go-grpc-prometheus counts them for
//! etcd: `grpc_server_started_total`, `grpc_server_handled_total` (with
//! the call's status code), `grpc_server_handling_seconds`, each labelled
//! `grpc_type`, `grpc_service`, `grpc_method`; and etcd's own
//! `etcd_network_client_grpc_{sent,received}_bytes_total`. As etcd does,
//! every method of the served services starts at zero for every code, so
//! rates and ratios exist before the first call.

use std::sync::Arc;
use std::time::Instant;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

use super::{int_counter, register, Metrics};

/// The status codes, as Go's `codes.Code.String()` names them.
pub const GRPC_CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

const UNARY: &str = "unary";
const SERVER_STREAM: &str = "server_stream";
const BIDI_STREAM: &str = "bidi_stream";

/// Every method the client port serves: service, method, `grpc_type`.
const METHODS: &[(&str, &str, &str)] = &[
    ("etcdserverpb.KV", "Range", UNARY),
    ("etcdserverpb.KV", "Put", UNARY),
    ("etcdserverpb.KV", "DeleteRange", UNARY),
    ("etcdserverpb.KV", "Txn", UNARY),
    ("etcdserverpb.KV", "Compact", UNARY),
    ("etcdserverpb.Watch", "Watch", BIDI_STREAM),
    ("etcdserverpb.Lease", "LeaseGrant", UNARY),
    ("etcdserverpb.Lease", "LeaseRevoke", UNARY),
    ("etcdserverpb.Lease", "LeaseKeepAlive", BIDI_STREAM),
    ("etcdserverpb.Lease", "LeaseTimeToLive", UNARY),
    ("etcdserverpb.Lease", "LeaseLeases", UNARY),
    ("etcdserverpb.Cluster", "MemberAdd", UNARY),
    ("etcdserverpb.Cluster", "MemberRemove", UNARY),
    ("etcdserverpb.Cluster", "MemberUpdate", UNARY),
    ("etcdserverpb.Cluster", "MemberList", UNARY),
    ("etcdserverpb.Cluster", "MemberPromote", UNARY),
    ("etcdserverpb.Maintenance", "Alarm", UNARY),
    ("etcdserverpb.Maintenance", "Status", UNARY),
    ("etcdserverpb.Maintenance", "Defragment", UNARY),
    ("etcdserverpb.Maintenance", "Hash", UNARY),
    ("etcdserverpb.Maintenance", "HashKV", UNARY),
    ("etcdserverpb.Maintenance", "Snapshot", SERVER_STREAM),
    ("etcdserverpb.Maintenance", "MoveLeader", UNARY),
    ("etcdserverpb.Maintenance", "Downgrade", UNARY),
    ("etcdserverpb.Auth", "AuthEnable", UNARY),
    ("etcdserverpb.Auth", "AuthDisable", UNARY),
    ("etcdserverpb.Auth", "AuthStatus", UNARY),
    ("etcdserverpb.Auth", "Authenticate", UNARY),
    ("etcdserverpb.Auth", "UserAdd", UNARY),
    ("etcdserverpb.Auth", "UserGet", UNARY),
    ("etcdserverpb.Auth", "UserList", UNARY),
    ("etcdserverpb.Auth", "UserDelete", UNARY),
    ("etcdserverpb.Auth", "UserChangePassword", UNARY),
    ("etcdserverpb.Auth", "UserGrantRole", UNARY),
    ("etcdserverpb.Auth", "UserRevokeRole", UNARY),
    ("etcdserverpb.Auth", "RoleAdd", UNARY),
    ("etcdserverpb.Auth", "RoleGet", UNARY),
    ("etcdserverpb.Auth", "RoleList", UNARY),
    ("etcdserverpb.Auth", "RoleDelete", UNARY),
    ("etcdserverpb.Auth", "RoleGrantPermission", UNARY),
    ("etcdserverpb.Auth", "RoleRevokePermission", UNARY),
    ("grpc.health.v1.Health", "Check", UNARY),
    ("grpc.health.v1.Health", "Watch", SERVER_STREAM),
    ("v3lockpb.Lock", "Lock", UNARY),
    ("v3lockpb.Lock", "Unlock", UNARY),
    ("v3electionpb.Election", "Campaign", UNARY),
    ("v3electionpb.Election", "Proclaim", UNARY),
    ("v3electionpb.Election", "Leader", UNARY),
    ("v3electionpb.Election", "Observe", SERVER_STREAM),
    ("v3electionpb.Election", "Resign", UNARY),
];

pub(crate) struct GrpcMetrics {
    started: IntCounterVec,
    handled: IntCounterVec,
    handling_seconds: HistogramVec,
    /// Each served method's series, as [`METHODS`] lists them: a call
    /// counts itself without looking its labels up.
    methods: Vec<MethodSeries>,
    sent_bytes: IntCounter,
    received_bytes: IntCounter,
}

/// One method's series in the vectors above.
struct MethodSeries {
    started: IntCounter,
    /// By status code, as [`GRPC_CODES`] lists them.
    handled: Vec<IntCounter>,
    handling_seconds: Histogram,
}

impl GrpcMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let mut metrics = Self {
            started: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "grpc_server_started_total",
                        "Total number of RPCs started on the server.",
                    ),
                    &labels,
                )
                .expect("valid metric"),
            ),
            handled: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "grpc_server_handled_total",
                        "Total number of RPCs completed on the server, regardless of success or failure.",
                    ),
                    &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
                )
                .expect("valid metric"),
            ),
            // Prometheus's default buckets, which go-grpc-prometheus keeps.
            handling_seconds: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "grpc_server_handling_seconds",
                        "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                    ),
                    &labels,
                )
                .expect("valid metric"),
            ),
            sent_bytes: int_counter(
                registry,
                "etcd_network_client_grpc_sent_bytes_total",
                "The total number of bytes sent to grpc clients.",
            ),
            received_bytes: int_counter(
                registry,
                "etcd_network_client_grpc_received_bytes_total",
                "The total number of bytes received from grpc clients.",
            ),
            methods: Vec::with_capacity(METHODS.len()),
        };
        for (service, method, kind) in METHODS {
            let labels = [*kind, *service, *method];
            let series = MethodSeries {
                started: metrics.started.with_label_values(&labels),
                handled: GRPC_CODES
                    .iter()
                    .map(|code| {
                        metrics
                            .handled
                            .with_label_values(&[kind, service, method, code])
                    })
                    .collect(),
                handling_seconds: metrics.handling_seconds.with_label_values(&labels),
            };
            metrics.methods.push(series);
        }
        metrics
    }

    // The simulator's client port is madsim's, with no bodies to meter.
    #[cfg_attr(madsim, allow(dead_code))]
    pub fn count_sent_bytes(&self, bytes: u64) {
        self.sent_bytes.inc_by(bytes);
    }

    #[cfg_attr(madsim, allow(dead_code))]
    pub fn count_received_bytes(&self, bytes: u64) {
        self.received_bytes.inc_by(bytes);
    }
}

impl Metrics {
    /// A call to `path` (`/etcdserverpb.KV/Range`) starts; `None` for a
    /// path that names no served method (it is not counted, so a scan of
    /// made-up paths grows no series).
    pub fn start_grpc_call(self: &Arc<Self>, path: &str) -> Option<GrpcCall> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        let index = METHODS
            .iter()
            .position(|(s, m, _)| *s == service && *m == method)?;
        self.grpc.methods[index].started.inc();
        Some(GrpcCall {
            metrics: self.clone(),
            method: index,
            started: Instant::now(),
            finished: false,
        })
    }
}

/// One call in progress; [`GrpcCall::finish`] records its status code.
/// A call dropped before it finished (its client went away) counts as
/// `Canceled`.
pub struct GrpcCall {
    pub(super) metrics: Arc<Metrics>,
    /// The method's place in [`METHODS`].
    method: usize,
    started: Instant,
    finished: bool,
}

impl GrpcCall {
    /// The service called (`etcdserverpb.KV`).
    #[cfg_attr(madsim, allow(dead_code))]
    pub fn service(&self) -> &'static str {
        METHODS[self.method].0
    }

    /// The call's request carried `bytes` more bytes.
    #[cfg_attr(madsim, allow(dead_code))]
    pub fn count_received_bytes(&self, bytes: u64) {
        self.metrics.grpc.count_received_bytes(bytes);
    }

    /// The call's response carried `bytes` more bytes.
    #[cfg_attr(madsim, allow(dead_code))]
    pub fn count_sent_bytes(&self, bytes: u64) {
        self.metrics.grpc.count_sent_bytes(bytes);
    }

    /// The call ended with status `code` (the `grpc-status` number).
    pub fn finish(&mut self, code: i32) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let series = &self.metrics.grpc.methods[self.method];
        // A code past the known ones counts as Unknown (2).
        let code = usize::try_from(code)
            .ok()
            .filter(|&code| code < GRPC_CODES.len())
            .unwrap_or(2);
        series.handled[code].inc();
        series
            .handling_seconds
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for GrpcCall {
    fn drop(&mut self) {
        // Code 1 is Canceled.
        self.finish(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_counted_once_with_its_code() {
        let metrics = Arc::new(Metrics::new());
        let mut call = metrics.start_grpc_call("/etcdserverpb.KV/Range").unwrap();
        assert_eq!(call.service(), "etcdserverpb.KV");
        call.finish(0);
        drop(call);
        drop(
            metrics
                .start_grpc_call("/etcdserverpb.Watch/Watch")
                .unwrap(),
        );
        assert!(metrics
            .start_grpc_call("/etcdserverpb.KV/Nothing")
            .is_none());
        assert!(metrics.start_grpc_call("nonsense").is_none());
        let mut call = metrics.start_grpc_call("/etcdserverpb.KV/Put").unwrap();
        call.finish(99);
        let grpc = &metrics.grpc;
        let handled = |labels: [&str; 4]| grpc.handled.with_label_values(&labels).get();
        assert_eq!(handled(["unary", "etcdserverpb.KV", "Range", "OK"]), 1);
        assert_eq!(
            handled(["unary", "etcdserverpb.KV", "Range", "Canceled"]),
            0
        );
        assert_eq!(
            handled(["bidi_stream", "etcdserverpb.Watch", "Watch", "Canceled"]),
            1
        );
        assert_eq!(handled(["unary", "etcdserverpb.KV", "Put", "Unknown"]), 1);
        assert_eq!(handled(["unary", "etcdserverpb.KV", "Put", "Canceled"]), 0);
        assert_eq!(
            grpc.started
                .with_label_values(&["unary", "etcdserverpb.KV", "Range"])
                .get(),
            1
        );
    }
}

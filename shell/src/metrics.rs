//! Prometheus metrics, under etcd's names, types, labels, help texts and
//! histogram buckets where etcd has the metric (so etcd's Grafana
//! dashboard and the etcd alerts of kube-prometheus work unchanged), the
//! gRPC ones as go-grpc-prometheus names them, the `process_*` ones as
//! Prometheus's Go client does, and e2d's own under `e2d_`.
//!
//! One [`Metrics`] per member, with its own registry (the simulator runs
//! many members in one process). Each value is recorded where the thing
//! happens: the raft driver (leadership, proposals, log fsyncs, backend
//! commits), the peer transport (round trips, send failures, bytes), the
//! client port (gRPC calls and their status codes), the gossip loop, the
//! cluster manager and the backup schedule; gauges that mirror the state
//! machine (sizes, revisions, keys) are read when scraped.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    exponential_buckets, Counter, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

mod grpc_calls;
#[cfg(not(madsim))]
pub use grpc_calls::GrpcCall;
#[cfg(not(madsim))]
pub mod metered_body;
mod process;

/// An apply slower than this is counted in `etcd_server_slow_apply_total`
/// (etcd's `warnApplyDuration`).
pub const SLOW_APPLY: Duration = Duration::from_millis(100);

/// Why a request was refused before raft saw it, under load.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    /// Apply lagged commit by more than etcd's bound.
    ApplyBehindCommit,
    /// The raft driver's queue stayed full until the request's deadline.
    DriverQueueFull,
}

/// Gauges the scrape reads from the node.
#[derive(Default)]
pub struct Gauges {
    pub db_size_bytes: u64,
    pub db_size_in_use_bytes: u64,
    pub quota_backend_bytes: u64,
    pub revision: i64,
    pub compact_revision: i64,
    pub keys: usize,
    pub leases: usize,
}

/// A gossip member's state, as `e2d_gossip_members` labels it.
pub const GOSSIP_STATES: [&str; 4] = ["alive", "suspect", "dead", "left"];

pub struct Metrics {
    registry: Registry,
    // The server, as etcd's etcdserver package.
    has_leader: IntGauge,
    is_leader: IntGauge,
    is_learner: IntGauge,
    leader_changes_seen: IntCounter,
    proposals_committed: IntGauge,
    proposals_applied: IntGauge,
    proposals_pending: IntGauge,
    proposals_failed: IntCounter,
    slow_apply: IntCounter,
    quota_backend_bytes: IntGauge,
    // The disk, as etcd's wal and backend packages.
    wal_fsync_seconds: Histogram,
    backend_commit_seconds: Histogram,
    // The store, as etcd's mvcc package.
    db_total_size_bytes: IntGauge,
    db_total_size_in_use_bytes: IntGauge,
    current_revision: IntGauge,
    compact_revision: IntGauge,
    keys: IntGauge,
    watchers: IntGauge,
    watch_streams: IntGauge,
    leases: IntGauge,
    // Members and clients, as etcd's rafthttp and v3rpc packages.
    peer_round_trip_seconds: HistogramVec,
    peer_sent_failures: IntCounterVec,
    peer_sent_bytes: IntCounterVec,
    peer_received_bytes: IntCounterVec,
    pub(crate) grpc: grpc_calls::GrpcMetrics,
    process: process::ProcessMetrics,
    // e2d's own.
    requests_refused: IntCounterVec,
    gossip_members: IntGaugeVec,
    // Set from the TLS material, which the simulator runs without.
    #[cfg_attr(madsim, allow(dead_code))]
    certificate_expiry_timestamp_seconds: IntGaugeVec,
    #[cfg_attr(madsim, allow(dead_code))]
    certificate_expiring: IntGaugeVec,
    manager_decisions: IntCounterVec,
    backup_failures: IntCounter,
    backup_last_size_bytes: IntGauge,
    backup_last_timestamp_seconds: IntGauge,
    backup_last_age_seconds: Gauge,
    /// Unix time in ms of the last backup taken, 0 if none yet.
    backup_last_unix_ms: AtomicI64,
    delta_failures: IntCounter,
    delta_last_size_bytes: IntGauge,
    delta_last_timestamp_seconds: IntGauge,
    at_risk_revisions: Gauge,
    at_risk_seconds: Gauge,
    /// What this member's chain of deltas last shipped: revision (-1:
    /// not shipping) and when its last entry applied (Unix ms).
    delta_shipped_revision: AtomicI64,
    delta_shipped_unix_ms: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("each metric's name is registered once");
    collector
}

fn int_gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(
        registry,
        IntGauge::with_opts(Opts::new(name, help)).expect("valid metric"),
    )
}

fn int_counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        registry,
        IntCounter::with_opts(Opts::new(name, help)).expect("valid metric"),
    )
}

fn int_counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

/// A histogram with etcd's exponential buckets: `count` bounds from
/// `start_seconds`, each twice the one before.
fn histogram(registry: &Registry, name: &str, help: &str, start: f64, count: usize) -> Histogram {
    let buckets = exponential_buckets(start, 2.0, count).expect("valid buckets");
    register(
        registry,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
            .expect("valid metric"),
    )
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let version = register(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "etcd_server_version",
                    "Which version is running. 1 for 'server_version' label with current version.",
                ),
                &["server_version"],
            )
            .expect("valid metric"),
        );
        version
            .with_label_values(&[crate::grpc::ETCD_VERSION])
            .set(1);
        let metrics = Self {
            has_leader: int_gauge(
                &r,
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            ),
            is_leader: int_gauge(
                &r,
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            is_learner: int_gauge(
                &r,
                "etcd_server_is_learner",
                "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            ),
            leader_changes_seen: int_counter(
                &r,
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            ),
            proposals_committed: int_gauge(
                &r,
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            ),
            proposals_applied: int_gauge(
                &r,
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            ),
            proposals_pending: int_gauge(
                &r,
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            ),
            proposals_failed: int_counter(
                &r,
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            slow_apply: int_counter(
                &r,
                "etcd_server_slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk).",
            ),
            quota_backend_bytes: int_gauge(
                &r,
                "etcd_server_quota_backend_bytes",
                "Current backend storage quota size in bytes.",
            ),
            wal_fsync_seconds: histogram(
                &r,
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
                0.001,
                14,
            ),
            backend_commit_seconds: histogram(
                &r,
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
                0.001,
                14,
            ),
            db_total_size_bytes: int_gauge(
                &r,
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            db_total_size_in_use_bytes: int_gauge(
                &r,
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            ),
            current_revision: int_gauge(
                &r,
                "etcd_debugging_mvcc_current_revision",
                "The current revision of store.",
            ),
            compact_revision: int_gauge(
                &r,
                "etcd_debugging_mvcc_compact_revision",
                "The revision of the last compaction in store.",
            ),
            keys: int_gauge(
                &r,
                "etcd_debugging_mvcc_keys_total",
                "Total number of keys.",
            ),
            watchers: int_gauge(
                &r,
                "etcd_debugging_mvcc_watcher_total",
                "Total number of watchers.",
            ),
            watch_streams: int_gauge(
                &r,
                "etcd_debugging_mvcc_watch_stream_total",
                "Total number of watch streams.",
            ),
            leases: int_gauge(
                &r,
                "etcd_debugging_lease_total",
                "Leases currently granted.",
            ),
            peer_round_trip_seconds: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "etcd_network_peer_round_trip_time_seconds",
                        "Round-Trip-Time histogram between peers",
                    )
                    .buckets(exponential_buckets(0.0001, 2.0, 16).expect("valid buckets")),
                    &["To"],
                )
                .expect("valid metric"),
            ),
            peer_sent_failures: int_counter_vec(
                &r,
                "etcd_network_peer_sent_failures_total",
                "The total number of send failures from peers.",
                &["To"],
            ),
            peer_sent_bytes: int_counter_vec(
                &r,
                "etcd_network_peer_sent_bytes_total",
                "The total number of bytes sent to peers.",
                &["To"],
            ),
            peer_received_bytes: int_counter_vec(
                &r,
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                &["From"],
            ),
            grpc: grpc_calls::GrpcMetrics::new(&r),
            process: process::ProcessMetrics::new(&r),
            requests_refused: int_counter_vec(
                &r,
                "e2d_server_requests_refused_total",
                "Requests refused before raft saw them, by why: apply too far behind commit (etcd's \"too many requests\"), or the raft driver's queue full until the deadline.",
                &["reason"],
            ),
            gossip_members: int_gauge_vec(
                &r,
                "e2d_gossip_members",
                "Other members of the gossip group this member knows of, by state (alive, suspect, dead, left).",
                &["state"],
            ),
            certificate_expiry_timestamp_seconds: int_gauge_vec(
                &r,
                "e2d_tls_certificate_expiry_timestamp_seconds",
                "When each of the member's certificates (ca, server, peer, client) ends, in unix seconds.",
                &["certificate"],
            ),
            certificate_expiring: int_gauge_vec(
                &r,
                "e2d_tls_certificate_expiring",
                "1 for a certificate that ends within 30 days and that this member does not renew (it was started without the CA key), else 0.",
                &["certificate"],
            ),
            manager_decisions: int_counter_vec(
                &r,
                "e2d_manager_decisions_total",
                "Commands the cluster manager gave, by kind.",
                &["kind"],
            ),
            backup_failures: int_counter(
                &r,
                "e2d_backup_failures_total",
                "Periodic snapshot backups that failed.",
            ),
            backup_last_size_bytes: int_gauge(
                &r,
                "e2d_backup_last_size_bytes",
                "Size of the last snapshot backup this member took.",
            ),
            backup_last_timestamp_seconds: int_gauge(
                &r,
                "e2d_backup_last_timestamp_seconds",
                "Unix time of the last snapshot backup this member took; 0 if none since it started.",
            ),
            backup_last_age_seconds: register(
                &r,
                Gauge::with_opts(Opts::new(
                    "e2d_backup_last_age_seconds",
                    "Seconds since the last snapshot backup this member took; absent (NaN) if none since it started.",
                ))
                .expect("valid metric"),
            ),
            backup_last_unix_ms: AtomicI64::new(0),
            delta_failures: int_counter(
                &r,
                "e2d_backup_delta_failures_total",
                "Backup deltas that failed to ship.",
            ),
            delta_last_size_bytes: int_gauge(
                &r,
                "e2d_backup_delta_last_size_bytes",
                "Size of the last backup delta this member shipped.",
            ),
            delta_last_timestamp_seconds: int_gauge(
                &r,
                "e2d_backup_delta_last_timestamp_seconds",
                "Unix time of the last backup delta this member shipped; 0 if none since it started.",
            ),
            at_risk_revisions: register(
                &r,
                Gauge::with_opts(Opts::new(
                    "e2d_backup_at_risk_revisions",
                    "Committed revisions not yet in the backup store (full snapshot or delta); absent (NaN) on members that do not ship backups.",
                ))
                .expect("valid metric"),
            ),
            at_risk_seconds: register(
                &r,
                Gauge::with_opts(Opts::new(
                    "e2d_backup_at_risk_seconds",
                    "Seconds the oldest change not yet in the backup store has waited; 0 when everything is shipped, absent (NaN) on members that do not ship backups.",
                ))
                .expect("valid metric"),
            ),
            delta_shipped_revision: AtomicI64::new(-1),
            delta_shipped_unix_ms: AtomicI64::new(0),
            registry: r,
        };
        for reason in ["apply_behind_commit", "driver_queue_full"] {
            metrics.requests_refused.with_label_values(&[reason]);
        }
        for state in GOSSIP_STATES {
            metrics.gossip_members.with_label_values(&[state]);
        }
        metrics.backup_last_age_seconds.set(f64::NAN);
        metrics.at_risk_revisions.set(f64::NAN);
        metrics.at_risk_seconds.set(f64::NAN);
        metrics
    }

    /// This member's id, as etcd's `etcd_server_id` shows it.
    pub fn set_member_id(&self, member_id: u64) {
        let id = register(
            &self.registry,
            IntGaugeVec::new(
                Opts::new(
                    "etcd_server_id",
                    "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
                ),
                &["server_id"],
            )
            .expect("valid metric"),
        );
        id.with_label_values(&[&format!("{member_id:x}")]).set(1);
    }

    pub fn count_refused(&self, refusal: Refusal) {
        let reason = match refusal {
            Refusal::ApplyBehindCommit => "apply_behind_commit",
            Refusal::DriverQueueFull => "driver_queue_full",
        };
        self.requests_refused.with_label_values(&[reason]).inc();
    }

    /// Counts watchers created (positive) or gone (negative).
    pub fn watchers_add(&self, delta: i64) {
        // Called for every watch step; most change nothing, and the gauge
        // is shared by every stream.
        if delta != 0 {
            self.watchers.add(delta);
        }
    }

    /// Counts watch streams opened (positive) or ended (negative).
    pub fn watch_streams_add(&self, delta: i64) {
        self.watch_streams.add(delta);
    }

    /// What raft's soft state says after a `Ready`: the leader (0: none),
    /// and whether it is this member. `changed` says the leader is a new one.
    pub fn observe_leadership(&self, leader_id: u64, is_leader: bool, changed: bool) {
        if changed && leader_id != 0 {
            self.leader_changes_seen.inc();
        }
        self.has_leader.set(i64::from(leader_id != 0));
        self.is_leader.set(i64::from(is_leader));
    }

    /// The raft log's commit and apply indexes, and whether this member
    /// is a learner.
    pub fn observe_raft(&self, committed: u64, applied: u64, is_learner: bool) {
        self.is_learner.set(i64::from(is_learner));
        self.proposals_committed
            .set(i64::try_from(committed).unwrap_or(i64::MAX));
        self.proposals_applied
            .set(i64::try_from(applied).unwrap_or(i64::MAX));
    }

    /// A proposal waits for raft until the guard drops.
    pub fn proposal_pending(&self) -> PendingProposal<'_> {
        self.proposals_pending.inc();
        PendingProposal(self)
    }

    /// A proposal that never applied: refused, timed out, or lost with a
    /// leader.
    pub fn count_failed_proposal(&self) {
        self.proposals_failed.inc();
    }

    pub fn observe_apply(&self, took: Duration) {
        if took > SLOW_APPLY {
            self.slow_apply.inc();
        }
    }

    pub fn observe_wal_fsync(&self, took: Duration) {
        self.wal_fsync_seconds.observe(took.as_secs_f64());
    }

    pub fn observe_backend_commit(&self, took: Duration) {
        self.backend_commit_seconds.observe(took.as_secs_f64());
    }

    /// A peer answered a probe after `took`.
    pub fn observe_peer_round_trip(&self, to: u64, took: Duration) {
        self.peer_round_trip_seconds
            .with_label_values(&[&format!("{to:x}")])
            .observe(took.as_secs_f64());
    }

    /// `count` raft messages for peer `to` were dropped: its queue was
    /// full or it could not be reached.
    pub fn count_peer_sent_failures(&self, to: u64, count: u64) {
        self.peer_sent_failures
            .with_label_values(&[&format!("{to:x}")])
            .inc_by(count);
    }

    /// The counter of bytes sent to peer `to`, looked up once by whoever
    /// sends it every message.
    pub fn peer_sent_bytes_to(&self, to: u64) -> IntCounter {
        self.peer_sent_bytes
            .with_label_values(&[&format!("{to:x}")])
    }

    /// The counter of bytes received from peer `from`.
    pub fn peer_received_bytes_from(&self, from: u64) -> IntCounter {
        self.peer_received_bytes
            .with_label_values(&[&format!("{from:x}")])
    }

    /// The gossip group as this member sees it: how many members are in
    /// each of [`GOSSIP_STATES`].
    pub fn set_gossip_members(&self, counts: [usize; GOSSIP_STATES.len()]) {
        for (state, count) in GOSSIP_STATES.iter().zip(counts) {
            self.gossip_members
                .with_label_values(&[state])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// The cluster manager gave a command of `kind`.
    pub fn count_manager_decision(&self, kind: &str) {
        self.manager_decisions.with_label_values(&[kind]).inc();
    }

    /// A backup was taken at `unix_ms`, `size_bytes` long.
    pub fn observe_backup(&self, unix_ms: u64, size_bytes: u64) {
        let unix_ms = i64::try_from(unix_ms).unwrap_or(i64::MAX);
        self.backup_last_unix_ms.store(unix_ms, Ordering::Relaxed);
        self.backup_last_timestamp_seconds.set(unix_ms / 1000);
        self.backup_last_size_bytes
            .set(i64::try_from(size_bytes).unwrap_or(i64::MAX));
    }

    pub fn count_backup_failure(&self) {
        self.backup_failures.inc();
    }

    /// A delta was shipped at `unix_ms`, `size_bytes` long.
    pub fn observe_delta(&self, unix_ms: u64, size_bytes: u64) {
        self.delta_last_timestamp_seconds
            .set(i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX));
        self.delta_last_size_bytes
            .set(i64::try_from(size_bytes).unwrap_or(i64::MAX));
    }

    pub fn count_delta_failure(&self) {
        self.delta_failures.inc();
    }

    /// The backup store holds every change up to `revision`, the last of
    /// which applied at `unix_ms`; `None`: this member ships no backups.
    pub fn set_backed_up(&self, through: Option<(i64, u64)>) {
        let (revision, unix_ms) = through.unwrap_or((-1, 0));
        self.delta_shipped_unix_ms.store(
            i64::try_from(unix_ms).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
        self.delta_shipped_revision
            .store(revision, Ordering::Relaxed);
    }

    /// What the backups' store lacks as of `revision` and `now_unix_ms`:
    /// revisions, and seconds since the last change it holds applied.
    pub fn at_risk(&self, revision: i64, now_unix_ms: u64) -> Option<(i64, f64)> {
        let shipped = self.delta_shipped_revision.load(Ordering::Relaxed);
        if shipped < 0 {
            return None;
        }
        let revisions = (revision - shipped).max(0);
        let since_ms = i64::try_from(now_unix_ms)
            .unwrap_or(i64::MAX)
            .saturating_sub(self.delta_shipped_unix_ms.load(Ordering::Relaxed))
            .max(0);
        let seconds = if revisions == 0 {
            0.0
        } else {
            since_ms as f64 / 1000.0
        };
        Some((revisions, seconds))
    }

    /// The installed TLS material's certificates, as of `now_unix_ms`
    /// (the simulator runs without TLS).
    #[cfg(madsim)]
    fn observe_certificates(&self, _now_unix_ms: u64) {}

    /// The installed TLS material's certificates, as of `now_unix_ms`.
    #[cfg(not(madsim))]
    fn observe_certificates(&self, now_unix_ms: u64) {
        let Some(material) = crate::tls::client::installed() else {
            return;
        };
        let now_s = i64::try_from(now_unix_ms / 1000).unwrap_or(i64::MAX);
        for certificate in material.certificates() {
            let labels = [certificate.name];
            self.certificate_expiry_timestamp_seconds
                .with_label_values(&labels)
                .set(certificate.validity.not_after_s);
            self.certificate_expiring
                .with_label_values(&labels)
                .set(i64::from(certificate.expiring(now_s)));
        }
    }

    /// The Prometheus text exposition of everything, with the scrape-time
    /// gauges set from `gauges` and the process read at `now_unix_ms`.
    pub fn render(&self, gauges: &Gauges, now_unix_ms: u64) -> String {
        let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.db_total_size_bytes.set(to_i64(gauges.db_size_bytes));
        self.db_total_size_in_use_bytes
            .set(to_i64(gauges.db_size_in_use_bytes));
        self.quota_backend_bytes
            .set(to_i64(gauges.quota_backend_bytes));
        self.current_revision.set(gauges.revision);
        self.compact_revision.set(gauges.compact_revision);
        self.keys.set(to_i64(gauges.keys as u64));
        self.leases.set(to_i64(gauges.leases as u64));
        let last_backup_ms = self.backup_last_unix_ms.load(Ordering::Relaxed);
        if last_backup_ms > 0 {
            let age_ms = to_i64(now_unix_ms).saturating_sub(last_backup_ms).max(0);
            self.backup_last_age_seconds.set(age_ms as f64 / 1000.0);
        }
        let (at_risk_revisions, at_risk_seconds) = self
            .at_risk(gauges.revision, now_unix_ms)
            .map_or((f64::NAN, f64::NAN), |(revisions, seconds)| {
                (revisions as f64, seconds)
            });
        self.at_risk_revisions.set(at_risk_revisions);
        self.at_risk_seconds.set(at_risk_seconds);
        self.process.refresh();
        self.observe_certificates(now_unix_ms);
        let mut out = String::new();
        TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut out)
            .expect("the text encoder writes into a string");
        out
    }
}

/// Decrements `etcd_server_proposals_pending` when dropped.
pub struct PendingProposal<'a>(&'a Metrics);

impl Drop for PendingProposal<'_> {
    fn drop(&mut self) {
        self.0.proposals_pending.dec();
    }
}

/// A counter that mirrors a total read elsewhere (the process's CPU time).
fn advance_to(counter: &Counter, total: f64) {
    let delta = total - counter.get();
    if delta > 0.0 {
        counter.inc_by(delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let metrics = Metrics::new();
        metrics.count_refused(Refusal::ApplyBehindCommit);
        metrics.count_refused(Refusal::ApplyBehindCommit);
        metrics.count_refused(Refusal::DriverQueueFull);
        let text = metrics.render(&Gauges::default(), 0);
        assert_eq!(
            sample(
                &text,
                "e2d_server_requests_refused_total{reason=\"apply_behind_commit\"}"
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "e2d_server_requests_refused_total{reason=\"driver_queue_full\"}"
            ),
            Some(1.0),
            "{text}"
        );
    }

    #[test]
    fn a_new_leader_is_counted_once_and_none_is_not() {
        let metrics = Metrics::new();
        metrics.observe_leadership(1, false, true);
        metrics.observe_leadership(0, false, true);
        metrics.observe_leadership(2, true, true);
        metrics.observe_leadership(2, true, false);
        let text = metrics.render(&Gauges::default(), 0);
        assert_eq!(
            sample(&text, "etcd_server_leader_changes_seen_total"),
            Some(2.0)
        );
        assert_eq!(sample(&text, "etcd_server_is_leader"), Some(1.0));
        assert_eq!(sample(&text, "etcd_server_has_leader"), Some(1.0));
    }

    #[test]
    fn histograms_have_etcds_buckets() {
        let metrics = Metrics::new();
        metrics.observe_wal_fsync(Duration::from_micros(1500));
        metrics.observe_peer_round_trip(0xab, Duration::from_micros(150));
        let text = metrics.render(&Gauges::default(), 0);
        // 1 ms doubling 14 times: 0.001 to 8.192 s.
        assert_eq!(
            sample(
                &text,
                "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"}"
            ),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"}"));
        assert!(text.contains(
            "etcd_network_peer_round_trip_time_seconds_bucket{To=\"ab\",le=\"0.0002\"} 1"
        ));
        assert!(text.contains(
            "etcd_network_peer_round_trip_time_seconds_bucket{To=\"ab\",le=\"3.2768\"} 1"
        ));
    }

    #[test]
    fn the_last_backups_age_follows_the_clock() {
        let metrics = Metrics::new();
        let text = metrics.render(&Gauges::default(), 10_000);
        assert!(text.contains("e2d_backup_last_age_seconds NaN"), "{text}");
        metrics.observe_backup(10_000, 4096);
        let text = metrics.render(&Gauges::default(), 25_500);
        assert_eq!(sample(&text, "e2d_backup_last_age_seconds"), Some(15.5));
        assert_eq!(sample(&text, "e2d_backup_last_size_bytes"), Some(4096.0));
        assert_eq!(
            sample(&text, "e2d_backup_last_timestamp_seconds"),
            Some(10.0)
        );
    }
}

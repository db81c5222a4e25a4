//! Prometheus metrics: request counts and latencies per gRPC method, plus
//! gauges read from the state machine when scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Upper bounds of the latency histogram buckets, in seconds.
const LATENCY_BUCKETS_SECONDS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
];

#[derive(Debug, Default, Clone)]
struct MethodStats {
    count: u64,
    sum_seconds: f64,
    buckets: [u64; LATENCY_BUCKETS_SECONDS.len()],
}

/// Why a request was refused before raft saw it, under load.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    /// Apply lagged commit by more than etcd's bound.
    ApplyBehindCommit,
    /// The raft driver's queue stayed full until the request's deadline.
    DriverQueueFull,
}

#[derive(Debug, Default)]
pub struct Metrics {
    methods: Mutex<BTreeMap<&'static str, MethodStats>>,
    watchers: AtomicI64,
    refused_apply_behind_commit: AtomicU64,
    refused_driver_queue_full: AtomicU64,
}

/// Records a request's latency when dropped.
pub struct RequestTimer<'a> {
    metrics: &'a Metrics,
    method: &'static str,
    started: Instant,
}

impl Drop for RequestTimer<'_> {
    fn drop(&mut self) {
        let seconds = self.started.elapsed().as_secs_f64();
        let mut methods = crate::fail_stop::lock(&self.metrics.methods);
        let stats = methods.entry(self.method).or_default();
        stats.count += 1;
        stats.sum_seconds += seconds;
        for (bucket, bound) in stats.buckets.iter_mut().zip(LATENCY_BUCKETS_SECONDS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }
}

/// Gauges the scrape reads from the node.
#[derive(Default)]
pub struct Gauges {
    pub db_size_bytes: u64,
    pub db_size_in_use_bytes: u64,
    pub quota_bytes: u64,
    pub revision: i64,
    pub compact_revision: i64,
    pub keys: usize,
    pub leases: usize,
    pub has_leader: bool,
}

impl Metrics {
    pub fn time(&self, method: &'static str) -> RequestTimer<'_> {
        RequestTimer {
            metrics: self,
            method,
            started: Instant::now(),
        }
    }

    pub fn count_refused(&self, refusal: Refusal) {
        let counter = match refusal {
            Refusal::ApplyBehindCommit => &self.refused_apply_behind_commit,
            Refusal::DriverQueueFull => &self.refused_driver_queue_full,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts watchers created (positive) or gone (negative).
    pub fn watchers_add(&self, delta: i64) {
        self.watchers.fetch_add(delta, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "etcd_server_has_leader",
            "Whether a leader exists (1) or not (0).",
            u8::from(gauges.has_leader).to_string(),
        );
        gauge(
            &mut out,
            "etcd_mvcc_db_total_size_in_bytes",
            "Size of the backend on disk.",
            gauges.db_size_bytes.to_string(),
        );
        gauge(
            &mut out,
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Bytes of the key-value history the backend holds (see Status's db_size_in_use).",
            gauges.db_size_in_use_bytes.to_string(),
        );
        gauge(
            &mut out,
            "etcd_server_quota_backend_bytes",
            "The backend quota.",
            gauges.quota_bytes.to_string(),
        );
        gauge(
            &mut out,
            "etcd_debugging_mvcc_current_revision",
            "The current revision of the store.",
            gauges.revision.to_string(),
        );
        gauge(
            &mut out,
            "etcd_debugging_mvcc_compact_revision",
            "The last compacted revision.",
            gauges.compact_revision.to_string(),
        );
        gauge(
            &mut out,
            "etcd_debugging_mvcc_keys_total",
            "Live keys in the store.",
            gauges.keys.to_string(),
        );
        gauge(
            &mut out,
            "etcd_debugging_mvcc_watcher_total",
            "Watchers on all watch streams.",
            self.watchers.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "etcd_debugging_lease_total",
            "Leases currently granted.",
            gauges.leases.to_string(),
        );
        let methods = crate::fail_stop::lock(&self.methods).clone();
        out.push_str("# HELP e2d_server_requests_refused_total Requests refused before raft saw them, by why: apply too far behind commit (etcd's \"too many requests\"), or the raft driver's queue full until the deadline.\n# TYPE e2d_server_requests_refused_total counter\n");
        for (reason, counter) in [
            ("apply_behind_commit", &self.refused_apply_behind_commit),
            ("driver_queue_full", &self.refused_driver_queue_full),
        ] {
            let _ = writeln!(
                out,
                "e2d_server_requests_refused_total{{reason=\"{reason}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP e2d_grpc_requests_total gRPC requests handled, by method.\n# TYPE e2d_grpc_requests_total counter\n");
        for (method, stats) in &methods {
            let _ = writeln!(
                out,
                "e2d_grpc_requests_total{{method=\"{method}\"}} {}",
                stats.count
            );
        }
        out.push_str("# HELP e2d_grpc_request_duration_seconds gRPC request latency, by method.\n# TYPE e2d_grpc_request_duration_seconds histogram\n");
        for (method, stats) in &methods {
            for (bucket, bound) in stats.buckets.iter().zip(LATENCY_BUCKETS_SECONDS) {
                let _ = writeln!(out, "e2d_grpc_request_duration_seconds_bucket{{method=\"{method}\",le=\"{bound}\"}} {bucket}");
            }
            let _ = writeln!(
                out,
                "e2d_grpc_request_duration_seconds_bucket{{method=\"{method}\",le=\"+Inf\"}} {}",
                stats.count
            );
            let _ = writeln!(
                out,
                "e2d_grpc_request_duration_seconds_sum{{method=\"{method}\"}} {}",
                stats.sum_seconds
            );
            let _ = writeln!(
                out,
                "e2d_grpc_request_duration_seconds_count{{method=\"{method}\"}} {}",
                stats.count
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_by_reason() {
        let metrics = Metrics::default();
        metrics.count_refused(Refusal::ApplyBehindCommit);
        metrics.count_refused(Refusal::ApplyBehindCommit);
        metrics.count_refused(Refusal::DriverQueueFull);
        let text = metrics.render(&Gauges::default());
        assert!(
            text.contains("e2d_server_requests_refused_total{reason=\"apply_behind_commit\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("e2d_server_requests_refused_total{reason=\"driver_queue_full\"} 1\n"),
            "{text}"
        );
    }
}

//! Latencies in an HDR histogram, and the result as text or JSON.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies as taken, in microseconds. Each client keeps a list and one
/// histogram is made of all of them at the end: a histogram per client
/// would pay its allocation and first-touch page faults during the run,
/// on the CPUs the server under test shares.
#[derive(Default)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        let us = latency.as_micros().clamp(1, LATENCY_US_MAX as u128) as u32;
        self.0.push(us);
    }
}

/// The longest latency recorded, 60 s; longer ones count as this.
const LATENCY_US_MAX: u32 = 60_000_000;

/// One histogram of every client's latencies, 1 µs to 60 s, 3 significant
/// digits.
pub fn histogram(all: impl IntoIterator<Item = Latencies>) -> Histogram<u64> {
    let mut histogram =
        Histogram::new_with_bounds(1, LATENCY_US_MAX.into(), 3).expect("the bounds are valid");
    for latencies in all {
        for us in latencies.0 {
            histogram
                .record(us.into())
                .expect("clamped into the bounds");
        }
    }
    histogram
}

pub struct Report {
    pub workload: &'static str,
    pub total: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Operations counted for throughput (watch: events delivered).
    pub operations: u64,
    pub latencies: Histogram<u64>,
}

impl Report {
    fn throughput(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn ms(&self, quantile: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        self.latencies.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn json(&self) -> String {
        serde_json::json!({
            "workload": self.workload,
            "total": self.total,
            "errors": self.errors,
            "seconds": self.elapsed.as_secs_f64(),
            "throughput_ops_per_sec": self.throughput(),
            "latency_ms": {
                "p50": self.ms(0.5),
                "p90": self.ms(0.9),
                "p99": self.ms(0.99),
                "p999": self.ms(0.999),
                "max": self.latencies.max() as f64 / 1000.0,
            },
        })
        .to_string()
    }

    pub fn text(&self) -> String {
        format!(
            "{}: {} requests, {} errors in {:.2} s: {:.0} ops/s; latency ms p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
            self.workload,
            self.total,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.throughput(),
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.ms(0.999),
            self.latencies.max() as f64 / 1000.0
        )
    }
}

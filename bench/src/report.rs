//! Latencies in an HDR histogram, and the result as text or JSON.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies recorded in microseconds, 1 µs to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("the bounds are valid")
}

pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let us = (latency.as_micros() as u64).clamp(1, 60_000_000);
    histogram.record(us).expect("clamped into the bounds");
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

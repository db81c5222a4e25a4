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

fn ms(latencies: &Histogram<u64>, quantile: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    latencies.value_at_quantile(quantile) as f64 / 1000.0
}

pub struct Report {
    pub workload: &'static str,
    pub total: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Operations counted for throughput (watch: events delivered).
    pub operations: u64,
    pub latencies: Histogram<u64>,
    /// Each kind of operation's latencies, in a mixed workload.
    pub by_operation: Vec<(&'static str, Histogram<u64>)>,
    /// Events its watches delivered, and how long they took to reach the
    /// last revision after the load stopped.
    pub watch: Option<(u64, Duration)>,
}

impl Report {
    fn throughput(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn ms(&self, quantile: f64) -> f64 {
        ms(&self.latencies, quantile)
    }

    /// The report as one JSON object; `own_cpu`, the load generator's
    /// CPU time over its whole run (loading included, as the servers'
    /// CPU that `compare.sh` reads around the run), as `client_cpu_s`.
    pub fn json(&self, own_cpu: Option<Duration>) -> String {
        let mut json = serde_json::json!({
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
        });
        if !self.by_operation.is_empty() {
            json["operations"] = self
                .by_operation
                .iter()
                .map(|(name, latencies)| {
                    let summary = serde_json::json!({
                        "count": latencies.len(),
                        "latency_ms": {"p50": ms(latencies, 0.5), "p99": ms(latencies, 0.99)},
                    });
                    (name.to_string(), summary)
                })
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        if let Some(cpu) = own_cpu {
            json["client_cpu_s"] = cpu.as_secs_f64().into();
        }
        if let Some((events, catch_up)) = self.watch {
            json["watch_events"] = events.into();
            json["watch_catch_up_ms"] = (catch_up.as_secs_f64() * 1000.0).into();
        }
        json.to_string()
    }

    pub fn text(&self, own_cpu: Option<Duration>) -> String {
        let mut text = format!(
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
        );
        for (name, latencies) in &self.by_operation {
            text += &format!(
                "\n  {name}: {} ops; latency ms p50 {:.3} p99 {:.3}",
                latencies.len(),
                ms(latencies, 0.5),
                ms(latencies, 0.99)
            );
        }
        if let Some((events, catch_up)) = self.watch {
            text += &format!(
                "\n  watches: {events} events, at the last revision {:.0} ms after the load",
                catch_up.as_secs_f64() * 1000.0
            );
        }
        if let Some(cpu) = own_cpu {
            text += &format!(
                "\n  load generator CPU: {:.2} s, {:.1} µs per request",
                cpu.as_secs_f64(),
                cpu.as_secs_f64() * 1e6 / self.total.max(1) as f64
            );
        }
        text
    }
}

/// Distinct error texts printed so far: each is printed once, at most
/// [`ERROR_TEXTS_MAX`] of them, so a run's errors say what they were
/// without flooding the output.
static ERROR_TEXTS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
const ERROR_TEXTS_MAX: usize = 10;

/// Prints a request's error to stderr the first time its text is seen.
pub fn note_error(error: &dyn std::fmt::Display) {
    let text = error.to_string();
    let mut seen = ERROR_TEXTS.lock().unwrap_or_else(|e| e.into_inner());
    if seen.len() < ERROR_TEXTS_MAX && !seen.contains(&text) {
        eprintln!("request failed: {text}");
        seen.push(text);
    }
}

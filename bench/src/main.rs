//! `e2d-bench`: a put load against any etcd-compatible endpoints, through
//! the third-party `etcd-client` crate, so e2d and etcd are measured alike.
//!
//! Prints throughput and latency percentiles as one line of `key=value`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::sync::Mutex;

#[derive(Debug, Parser)]
#[command(
    name = "e2d-bench",
    about = "Put load against etcd-compatible endpoints"
)]
struct Args {
    /// Comma-separated endpoints, e.g. 127.0.0.1:2379,127.0.0.1:22379.
    #[arg(long)]
    endpoints: String,
    /// Concurrent clients (each its own connection).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Puts in all.
    #[arg(long, default_value_t = 10_000)]
    total: usize,
    /// Distinct keys written (round robin).
    #[arg(long, default_value_t = 1_000)]
    key_space: usize,
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,
    /// A label printed with the results.
    #[arg(long, default_value = "target")]
    label: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.clients == 0 || args.total == 0 || args.key_space == 0 {
        return Err("--clients, --total and --key-space must be greater than zero".into());
    }
    let endpoints: Vec<String> = args.endpoints.split(',').map(str::to_string).collect();
    let value = vec![b'v'; args.value_bytes];
    let next = Arc::new(Mutex::new(0usize));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(args.clients);
    for client_index in 0..args.clients {
        // Spread clients over the endpoints, as a load balancer would.
        let endpoint = endpoints[client_index % endpoints.len()].clone();
        let mut client = etcd_client::Client::connect([endpoint], None).await?;
        let (next, value, total, key_space) =
            (next.clone(), value.clone(), args.total, args.key_space);
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let n = {
                    let mut next = next.lock().await;
                    if *next >= total {
                        break;
                    }
                    *next += 1;
                    *next - 1
                };
                let key = format!("bench/{:08}", n % key_space);
                let begin = Instant::now();
                client.put(key, value.clone(), None).await?;
                latencies.push(begin.elapsed());
            }
            Ok::<_, etcd_client::Error>(latencies)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(args.total);
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[index].as_secs_f64() * 1000.0
    };
    println!(
        "label={} puts={} clients={} seconds={:.2} puts_per_second={:.0} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        args.label,
        latencies.len(),
        args.clients,
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(0.5),
        percentile(0.9),
        percentile(0.99),
        percentile(1.0),
    );
    Ok(())
}

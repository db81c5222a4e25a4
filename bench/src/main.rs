//! `e2d-bench`: etcd's benchmark vocabulary against any etcd-compatible
//! endpoints, through the third-party `etcd-client` crate, so e2d and etcd
//! are measured by the same client code.
//!
//! Connection flags come before the workload, workload flags after it:
//!
//! ```text
//! e2d-bench --endpoints 127.0.0.1:2379 --conns 100 --clients 1000 --json \
//!     put --total 100000 --key-size 8 --val-size 256 --key-space-size 100000
//! ```

mod channel;
mod kube;
mod own_cpu;
mod reaches;
mod report;
mod values;
mod workloads;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "e2d-bench", about = "Benchmarks etcd-compatible servers")]
pub struct Cli {
    /// Comma-separated endpoints.
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Connections, shared by the clients.
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Clients issuing requests at once.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// CA certificate for https endpoints.
    #[arg(long)]
    pub cacert: Option<std::path::PathBuf>,
    /// Client certificate for https endpoints.
    #[arg(long)]
    pub cert: Option<std::path::PathBuf>,
    /// Client key for https endpoints.
    #[arg(long)]
    pub key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub workload: Workload,
}

#[derive(Debug, Args, Clone)]
pub struct Common {
    /// Requests in all.
    #[arg(long, default_value_t = 10_000)]
    pub total: u64,
    /// Requests per second over all clients (0: as fast as they go).
    /// Paced, a request's latency counts from when it was due, so a
    /// server that stalls is charged for the requests it held back.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
}

#[derive(Debug, Args, Clone)]
pub struct KeyArgs {
    /// Bytes per key.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Bytes per value: random, a different slice for each request.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Distinct keys written.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Keys in order rather than at random.
    #[arg(long)]
    pub sequential_keys: bool,
}

#[derive(Debug, Subcommand)]
pub enum Workload {
    /// Puts.
    Put {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Ranges over [key, end).
    Range {
        key: String,
        end: Option<String>,
        #[command(flatten)]
        common: Common,
        /// l: linearizable, s: serializable.
        #[arg(long, default_value = "l", value_parser = ["l", "s"])]
        consistency: String,
        /// Keys and their revisions only, no values (etcdctl's
        /// `--keys-only`).
        #[arg(long)]
        keys_only: bool,
    },
    /// Transactions of puts.
    TxnPut {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        keys: KeyArgs,
        /// Puts per transaction.
        #[arg(long, default_value_t = 1)]
        txn_ops: usize,
    },
    /// One writer, many watchers of its key: events delivered per second
    /// and the time from a put's sending to each watcher's event.
    Watch {
        #[command(flatten)]
        common: Common,
        /// Watchers in all (spread over the connections).
        #[arg(long, default_value_t = 100)]
        watchers: usize,
        #[arg(long, default_value_t = 8)]
        val_size: usize,
    },
    /// Lease keep-alives on one lease per client.
    LeaseKeepalive {
        #[command(flatten)]
        common: Common,
    },
    /// kube-apiserver's storage traffic: guarded creates, updates and
    /// deletes of 1-8 KiB objects, gets, paginated lists, events with
    /// short leases, and a watch per resource (see `kube.rs`).
    Kube {
        #[command(flatten)]
        common: Common,
        /// Objects written before the mix and kept by it.
        #[arg(long, default_value_t = 10_000)]
        objects: u64,
        /// Namespaces the objects of each resource spread over.
        #[arg(long, default_value_t = 10)]
        namespaces: u64,
    },
    /// Not a load: waits until the first endpoint serves `--revision` or
    /// later (a member catching up), polling its status, prints when (in
    /// nanoseconds since the Unix epoch), and fails after `--timeout-s`.
    Reaches {
        #[arg(long)]
        revision: i64,
        /// Milliseconds between polls.
        #[arg(long, default_value_t = 20)]
        poll_ms: u64,
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
    },
}

/// The load generator's own allocation cost is part of every run; a fast
/// allocator leaves more of the machine to the server under test.
#[global_allocator]
static ALLOCATOR: e2d_allocator::MiMalloc = e2d_allocator::MiMalloc;

fn main() -> std::process::ExitCode {
    // SAFETY: the first thing main does; no other thread exists yet.
    unsafe { e2d_allocator::configure() };
    let cli = Cli::parse();
    // A subscriber that wants nothing: h2's and tonic's spans (several a
    // request) are then never built. With none set, tracing's `log`
    // feature (on when the server builds alongside) builds each and
    // offers it to the `log` crate, on the cores the server under test
    // uses: 3% of the generator's CPU in a put run.
    let _ = tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
    if cli.conns == 0 || cli.clients == 0 || cli.endpoints.is_empty() {
        eprintln!("error: --conns, --clients and --endpoints must not be zero or empty");
        return std::process::ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the runtime starts");
    runtime.spawn(stop_on_signal());
    match runtime.block_on(workloads::run(&cli)) {
        Ok(None) => std::process::ExitCode::SUCCESS,
        Ok(Some(report)) => {
            let own_cpu = own_cpu::process_cpu();
            if cli.json {
                println!("{}", report.json(own_cpu));
            } else {
                println!("{}", report.text(own_cpu));
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// SIGINT or SIGTERM ends the run early: the requests under way finish,
/// no new one starts, and the report covers what was done. The load of a
/// run whose length is not known ahead (`--total` large, `--rate` set)
/// stops this way.
async fn stop_on_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    workloads::STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

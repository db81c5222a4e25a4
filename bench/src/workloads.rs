//! The workloads: each client runs requests until the shared count of
//! `--total` is reached, paced by `--rate`, recording every latency.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, Txn, TxnOp};

use crate::report::{histogram, Latencies, Report};
use crate::values::ValuePool;
use crate::{Cli, Common, KeyArgs, Workload};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The largest range response a client accepts.
const RANGE_RESPONSE_BYTES_MAX: usize = 1 << 30;

/// How long watchers wait for the last events after the writer is done.
const WATCH_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The key the watch workload writes and watches.
const WATCHED_KEY: &str = "e2d-bench/watch";

pub(crate) async fn connections(cli: &Cli) -> Result<Vec<Client>, Error> {
    let tls = tls_options(cli)?;
    let mut clients = Vec::with_capacity(cli.conns);
    for i in 0..cli.conns {
        let endpoint = &cli.endpoints[i % cli.endpoints.len()];
        let channel = crate::channel::connect(endpoint, tls.clone()).await?;
        clients.push(Client::from_channel(channel, None).await?);
    }
    Ok(clients)
}

/// The client's TLS settings from `--cacert`, `--cert` and `--key`.
pub(crate) fn tls_options(cli: &Cli) -> Result<Option<etcd_client::TlsOptions>, Error> {
    Ok(match &cli.cacert {
        Some(ca) => {
            let mut tls = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(std::fs::read(ca)?));
            if let (Some(cert), Some(key)) = (&cli.cert, &cli.key) {
                tls = tls.identity(etcd_client::Identity::from_pem(
                    std::fs::read(cert)?,
                    std::fs::read(key)?,
                ));
            }
            Some(tls)
        }
        None => None,
    })
}

/// A small generator per client for random keys.
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn key_of(keys: &KeyArgs, n: u64, rng: &mut XorShift) -> Vec<u8> {
    let index = if keys.sequential_keys {
        n % keys.key_space_size.max(1)
    } else {
        rng.next() % keys.key_space_size.max(1)
    };
    let digits = format!("{index:0width$}", width = keys.key_size);
    digits.as_bytes()[digits.len().saturating_sub(keys.key_size.max(1))..].to_vec()
}

/// Set on SIGINT or SIGTERM: no request starts after it, and the run
/// reports what was done.
pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

/// Counts requests out to the clients and paces them.
pub(crate) struct Pacer {
    next: AtomicU64,
    total: u64,
    rate: u64,
    start: Instant,
}

impl Pacer {
    pub(crate) fn new(common: &Common) -> Pacer {
        Pacer {
            next: AtomicU64::new(0),
            total: common.total,
            rate: common.rate,
            start: Instant::now(),
        }
    }

    /// Requests handed out so far (all of `total` unless stopped early).
    pub(crate) fn issued(&self) -> u64 {
        self.next.load(Ordering::Relaxed).min(self.total)
    }

    /// The next request's number, once it is due, and when its latency
    /// counts from; `None` when all are out.
    ///
    /// Paced by `--rate`, a request counts from when it was due, not from
    /// when a client got round to sending it: a server that stalls holds
    /// back the requests behind the stalled one, and a fixed-rate load
    /// that timed only what it sent would leave that wait out of its
    /// percentiles (coordinated omission). Unpaced, it counts from now.
    pub(crate) async fn take(&self) -> Option<(u64, Instant)> {
        if STOP.load(Ordering::Relaxed) {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if n >= self.total {
            return None;
        }
        if self.rate == 0 {
            return Some((n, Instant::now()));
        }
        let due = self.start + Duration::from_secs_f64(n as f64 / self.rate as f64);
        tokio::time::sleep_until(due.into()).await;
        Some((n, due))
    }
}

/// Runs `clients` copies of `request` over the connections round robin.
/// `request` takes a client's handle and gives it back with the outcome.
async fn run_clients<F, Fut>(
    cli: &Cli,
    common: &Common,
    workload: &'static str,
    request: F,
) -> Result<Report, Error>
where
    F: Fn(Box<Client>, u64, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (Box<Client>, Result<(), etcd_client::Error>)> + Send,
{
    let conns = connections(cli).await?;
    let pacer = Arc::new(Pacer::new(common));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(cli.clients);
    for client_index in 0..cli.clients {
        let mut client = Box::new(conns[client_index % conns.len()].clone());
        let (pacer, request) = (pacer.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            let mut errors = 0u64;
            while let Some((n, begin)) = pacer.take().await {
                // The client goes into the request and comes back: one
                // handle per client, not a clone per request, and boxed, so
                // a pointer moves rather than the handle.
                let (returned, outcome) = request(client, n, client_index).await;
                client = returned;
                match outcome {
                    Ok(()) => latencies.record(begin.elapsed()),
                    Err(e) => {
                        errors += 1;
                        crate::report::note_error(&e);
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await?;
        all.push(latencies);
        errors += e;
    }
    Ok(Report {
        workload,
        total: pacer.issued(),
        errors,
        elapsed: start.elapsed(),
        operations: pacer.issued() - errors,
        latencies: histogram(all),
        by_operation: Vec::new(),
        watch: None,
    })
}

/// Runs the command's workload and reports on it (`None` for `reaches`,
/// which prints when the revision was reached, in nanoseconds since the
/// Unix epoch, as `date +%s%N` does).
pub async fn run(cli: &Cli) -> Result<Option<Report>, Error> {
    let report = match &cli.workload {
        Workload::Reaches {
            revision,
            poll_ms,
            timeout_s,
        } => {
            let (poll, timeout) = (
                Duration::from_millis(*poll_ms),
                Duration::from_secs(*timeout_s),
            );
            let reached_unix_ns = crate::reaches::reaches(cli, *revision, poll, timeout).await?;
            println!("{reached_unix_ns}");
            return Ok(None);
        }
        Workload::Put { common, keys } => {
            let (keys, values) = (Arc::new(keys.clone()), Arc::new(ValuePool::new()));
            run_clients(cli, common, "put", move |mut client, n, who| {
                let (keys, values) = (keys.clone(), values.clone());
                async move {
                    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ (n << 8) ^ who as u64);
                    let value = values.value(keys.val_size, n);
                    let outcome = client
                        .put(key_of(&keys, n, &mut rng), value, None)
                        .await
                        .map(|_| ());
                    (client, outcome)
                }
            })
            .await
        }
        Workload::Range {
            key,
            end,
            common,
            consistency,
            keys_only,
        } => {
            let (key, end, serializable) = (key.clone(), end.clone(), consistency == "s");
            let keys_only = *keys_only;
            let name = match (serializable, keys_only) {
                (false, false) => "range-l",
                (true, false) => "range-s",
                (false, true) => "range-l-keys-only",
                (true, true) => "range-s-keys-only",
            };
            run_clients(cli, common, name, move |client, _, _| {
                let (key, end) = (key.clone(), end.clone());
                async move {
                    let mut options = GetOptions::new();
                    if let Some(end) = end {
                        options = options.with_range(end);
                    }
                    if serializable {
                        options = options.with_serializable();
                    }
                    if keys_only {
                        options = options.with_keys_only();
                    }
                    // A range of many keys answers with more than the
                    // client's default limit of 4 MiB.
                    let mut kv = client
                        .kv_client()
                        .max_decoding_message_size(RANGE_RESPONSE_BYTES_MAX);
                    let outcome = kv.get(key, Some(options)).await.map(|_| ());
                    (client, outcome)
                }
            })
            .await
        }
        Workload::TxnPut {
            common,
            keys,
            txn_ops,
        } => {
            let (keys, values, ops) =
                (Arc::new(keys.clone()), Arc::new(ValuePool::new()), *txn_ops);
            run_clients(cli, common, "txn-put", move |mut client, n, who| {
                let (keys, values) = (keys.clone(), values.clone());
                async move {
                    let mut rng = XorShift(0x2545_f491_4f6c_dd1d ^ (n << 8) ^ who as u64);
                    let puts: Vec<TxnOp> = (0..ops as u64)
                        .map(|op| {
                            let value = values.value(keys.val_size, n * ops as u64 + op);
                            TxnOp::put(key_of(&keys, n, &mut rng), value, None)
                        })
                        .collect();
                    let outcome = client.txn(Txn::new().and_then(puts)).await.map(|_| ());
                    (client, outcome)
                }
            })
            .await
        }
        Workload::LeaseKeepalive { common } => {
            type Stream = (etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream);
            // One lease and one keep-alive stream per client, made on its
            // first request.
            let streams: Arc<Vec<tokio::sync::Mutex<Option<Stream>>>> = Arc::new(
                (0..cli.clients)
                    .map(|_| tokio::sync::Mutex::new(None))
                    .collect(),
            );
            run_clients(cli, common, "lease-keepalive", move |mut client, _, who| {
                let streams = streams.clone();
                async move {
                    let mut slot = streams[who].lock().await;
                    let outcome = async {
                        if slot.is_none() {
                            let id = client.lease_grant(60, None).await?.id();
                            *slot = Some(client.lease_keep_alive(id).await?);
                        }
                        let (keeper, stream) = slot.as_mut().expect("made above");
                        keeper.keep_alive().await?;
                        stream.message().await.map(|_| ())
                    }
                    .await;
                    drop(slot);
                    (client, outcome)
                }
            })
            .await
        }
        Workload::Kube {
            common,
            objects,
            namespaces,
        } => crate::kube::run(cli, common, *objects, *namespaces).await,
        Workload::Watch {
            common,
            watchers,
            val_size,
        } => watch(cli, common, *watchers, *val_size).await,
    };
    report.map(Some)
}

/// One writer puts `total` values into one key, each carrying its number;
/// every watcher records the time from the put's sending to the event.
async fn watch(
    cli: &Cli,
    common: &Common,
    watchers: usize,
    val_size: usize,
) -> Result<Report, Error> {
    let conns = connections(cli).await?;
    let total = common.total;
    // When each put went out, in nanoseconds after `epoch` plus one (zero:
    // not yet); read by every watcher for every event, so without a lock.
    let epoch = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let mut tasks = Vec::with_capacity(watchers);
    let ready = Arc::new(tokio::sync::Barrier::new(watchers + 1));
    for w in 0..watchers {
        let mut client = conns[w % conns.len()].clone();
        let (sent_at, ready) = (sent_at.clone(), ready.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            let mut stream = match client.watch(WATCHED_KEY, None).await {
                Ok(watch) => watch,
                Err(_) => {
                    ready.wait().await;
                    return (latencies, 0u64, total);
                }
            };
            ready.wait().await;
            let mut seen = 0u64;
            // One timer for the whole run, not one per message.
            let deadline =
                tokio::time::sleep(WATCH_DRAIN_TIMEOUT + Duration::from_secs(total / 100));
            tokio::pin!(deadline);
            while seen < total {
                let message = tokio::select! {
                    message = stream.message() => message,
                    _ = &mut deadline => break,
                };
                let Ok(Some(response)) = message else {
                    break;
                };
                let now = Instant::now();
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    seen += 1;
                    let n: usize = std::str::from_utf8(kv.value())
                        .ok()
                        .and_then(|v| v.trim_start_matches('0').parse().ok())
                        .unwrap_or(0);
                    let sent_ns = sent_at.get(n).map_or(0, |at| at.load(Ordering::Acquire));
                    if sent_ns > 0 {
                        let sent = epoch + Duration::from_nanos(sent_ns - 1);
                        latencies.record(now.saturating_duration_since(sent));
                    }
                }
            }
            (latencies, seen, total - seen)
        }));
    }
    ready.wait().await;
    let start = Instant::now();
    // The writer has a thread, a runtime and a connection of its own, so
    // its puts are not queued behind this process's handling of the events
    // they cause: the pace of revisions is the server's, not the load
    // generator's.
    let (done, errors) = tokio::sync::oneshot::channel();
    let writer_target = WriterTarget::of(cli)?;
    let rate = common.rate;
    std::thread::Builder::new()
        .name("watch-writer".into())
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(Error::from)
                .and_then(|runtime| {
                    runtime.block_on(write_watched(
                        writer_target,
                        total,
                        rate,
                        val_size,
                        &sent_at,
                        epoch,
                    ))
                });
            let _ = done.send(outcome);
        })?;
    let errors = errors
        .await
        .map_err(|_| "the watch writer's thread ended without a result")??;
    let mut all = Vec::with_capacity(tasks.len());
    let mut delivered = 0;
    let mut missed = 0;
    for task in tasks {
        let (latencies, seen, lost) = task.await?;
        all.push(latencies);
        delivered += seen;
        missed += lost;
    }
    Ok(Report {
        workload: "watch",
        total: total * watchers as u64,
        errors: errors * watchers as u64 + missed.saturating_sub(errors * watchers as u64),
        elapsed: start.elapsed(),
        operations: delivered,
        latencies: histogram(all),
        by_operation: Vec::new(),
        watch: None,
    })
}

/// What the watch workload's writer needs to connect on its own thread.
struct WriterTarget {
    endpoint: String,
    tls: Option<etcd_client::TlsOptions>,
}

impl WriterTarget {
    fn of(cli: &Cli) -> Result<Self, Error> {
        Ok(Self {
            endpoint: cli.endpoints[0].clone(),
            tls: tls_options(cli)?,
        })
    }
}

/// Puts `total` values into the watched key one after another, each
/// carrying its number, noting when each went out; returns the failures.
async fn write_watched(
    target: WriterTarget,
    total: u64,
    rate: u64,
    val_size: usize,
    sent_at: &[AtomicU64],
    epoch: Instant,
) -> Result<u64, Error> {
    let channel = crate::channel::connect(&target.endpoint, target.tls).await?;
    let mut writer = Client::from_channel(channel, None).await?;
    let start = Instant::now();
    let mut errors = 0;
    for n in 0..total {
        if rate > 0 {
            let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let value = format!("{n:0width$}", width = val_size.max(1));
        let sent_ns = epoch.elapsed().as_nanos() as u64 + 1;
        sent_at[n as usize].store(sent_ns, Ordering::Release);
        if writer.put(WATCHED_KEY, value, None).await.is_err() {
            errors += 1;
        }
    }
    Ok(errors)
}

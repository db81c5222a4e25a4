//! `kube`: the shape of kube-apiserver's storage traffic.
//!
//! Objects of 1 to 8 KiB live under `/registry/<resource>/<namespace>/<name>`.
//! Each client owns every `clients`-th object and remembers its
//! `mod_revision`, as the apiserver's watch cache does, so its guarded
//! writes name the revision they expect:
//!
//! - create: a `Txn` of a put when `mod_revision == 0`, else a get;
//! - update: a put when `mod_revision` is the one last read, else a get;
//! - delete: the same guard around a delete;
//! - get: one linearizable read of an object;
//! - list: one namespace of one resource, `limit 500` a page, every page
//!   after the first read at the first page's revision, continuing from
//!   the last key;
//! - event: an event object created with a short lease shared by the
//!   events of two seconds, as the apiserver reuses its event leases.
//!
//! One watch per resource prefix (events included) asks for `prev_kv` and
//! progress notifications and requests progress every second. After the
//! mix the watchers must reach the store's last revision.
//!
//! The objects are created before the timed mix. The namespaces are named
//! after `--objects`, so runs of different sizes against one server keep
//! apart, and a run against a server that already holds its objects reads
//! their revisions from the refused creates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse,
    TxnResponse, WatchOptions,
};

use crate::report::{histogram, Latencies, Report};
use crate::values::ValuePool;
use crate::workloads::{connections, Error, Pacer, XorShift};
use crate::{Cli, Common};

/// The resources whose objects the clients write, list and read.
const RESOURCES: [&str; 4] = ["pods", "configmaps", "secrets", "services"];
/// The resource of events; watched like the others.
const EVENTS: &str = "events";
/// Keys per page of a list, as the apiserver asks.
const PAGE_LIMIT: i64 = 500;
const OBJECT_BYTES_MIN: usize = 1024;
const OBJECT_BYTES_MAX: usize = 8192;
const EVENT_BYTES: usize = 1024;
const EVENT_LEASE_TTL_SECS: i64 = 10;
/// How long events share one lease before the next event grants another.
const EVENT_LEASE_REUSE: Duration = Duration::from_secs(2);
/// How often each watch asks for a progress notification.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How long the watchers may take to reach the last revision after the mix.
const WATCH_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries of one object's create while loading, and the wait between: two
/// minutes, as a server applying a burst of a thousand clients' 8 KiB
/// creates may refuse for many seconds.
const PRELOAD_RETRIES_MAX: u32 = 1200;
const PRELOAD_RETRY_WAIT: Duration = Duration::from_millis(100);
/// The largest response a client accepts: a page of 500 objects of 8 KiB,
/// or a watch response with a lease's events.
const RESPONSE_BYTES_MAX: usize = 256 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Create,
    Update,
    Delete,
    Get,
    List,
    Event,
}

const OPS: [Op; 6] = [
    Op::Create,
    Op::Update,
    Op::Delete,
    Op::Get,
    Op::List,
    Op::Event,
];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Get => "get",
            Op::List => "list",
            Op::Event => "event",
        }
    }

    /// The mix, in percent: updates 50, events 25, creates and deletes 10
    /// (a client deletes one of its objects when none is gone, else
    /// creates one back), gets 14, lists 1.
    fn of_roll(roll: u64, has_gone: bool) -> Op {
        match roll % 100 {
            0..50 => Op::Update,
            50..75 => Op::Event,
            75..85 if has_gone => Op::Create,
            75..85 => Op::Delete,
            85..99 => Op::Get,
            _ => Op::List,
        }
    }
}

/// Where the objects of one run live.
#[derive(Clone, Copy)]
struct Layout {
    objects: u64,
    namespaces: u64,
}

impl Layout {
    fn resource(self, object: u64) -> &'static str {
        RESOURCES[(object % RESOURCES.len() as u64) as usize]
    }

    fn namespace(self, index: u64) -> String {
        format!("bench-{}-{index:03}", self.objects)
    }

    fn key(self, object: u64) -> String {
        let namespace = (object / RESOURCES.len() as u64) % self.namespaces;
        format!(
            "/registry/{}/{}/obj-{object:08}",
            self.resource(object),
            self.namespace(namespace)
        )
    }
}

/// Object contents: sizes from the object and its version, bytes from
/// the value pool.
struct Contents(ValuePool);

impl Contents {
    fn object(&self, object: u64, version: u64) -> Vec<u8> {
        let seed = 0x9e37_79b9_7f4a_7c15 ^ (object << 20) ^ version;
        let size = OBJECT_BYTES_MIN
            + (XorShift(seed).next() as usize) % (OBJECT_BYTES_MAX - OBJECT_BYTES_MIN + 1);
        self.0.value(size, seed)
    }

    fn event(&self, n: u64) -> Vec<u8> {
        self.0.value(EVENT_BYTES, 0xbb67_ae85_84ca_a73b ^ n)
    }
}

/// One client's objects: the live ones with their last `mod_revision`,
/// and the deleted ones.
#[derive(Default)]
struct Owned {
    live: Vec<(u64, i64)>,
    gone: Vec<u64>,
}

/// The lease events are written with; a new one every `EVENT_LEASE_REUSE`.
struct EventLease(tokio::sync::Mutex<Option<(Instant, i64)>>);

impl EventLease {
    async fn get(&self, client: &mut Client) -> Result<i64, etcd_client::Error> {
        let mut slot = self.0.lock().await;
        match *slot {
            Some((granted, id)) if granted.elapsed() < EVENT_LEASE_REUSE => Ok(id),
            _ => {
                let id = client.lease_grant(EVENT_LEASE_TTL_SECS, None).await?.id();
                *slot = Some((Instant::now(), id));
                Ok(id)
            }
        }
    }
}

/// A guarded write: `then` when `key`'s `mod_revision` is `expected`,
/// else a read of the key.
fn guarded(key: &str, expected: i64, then: TxnOp) -> Txn {
    Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
        .and_then([then])
        .or_else([TxnOp::get(key, None)])
}

/// The revision a guarded write left the key at (0: deleted), or, when its
/// guard failed, the key's revision as read, as an error.
fn outcome(response: &TxnResponse, deleted: bool) -> Result<i64, i64> {
    if response.succeeded() {
        let revision = response.header().map_or(0, |h| h.revision());
        return Ok(if deleted { 0 } else { revision });
    }
    let read = response.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(get) => Some(get.kvs().first().map_or(0, |kv| kv.mod_revision())),
        _ => None,
    });
    Err(read.unwrap_or(0))
}

struct Shared {
    layout: Layout,
    contents: Contents,
    lease: EventLease,
    versions: AtomicU64,
    /// Names this run's events apart from those of runs before it whose
    /// leases have not expired yet.
    run: u64,
}

/// Creates the client's objects (read back when they exist already).
async fn preload(
    shared: &Shared,
    kv: &mut KvClient,
    client: usize,
    clients: usize,
) -> Result<Owned, Error> {
    let mut owned = Owned::default();
    for object in (client as u64..shared.layout.objects).step_by(clients) {
        let key = shared.layout.key(object);
        let put = TxnOp::put(key.as_str(), shared.contents.object(object, 0), None);
        // The load is not timed: a refusal (etcd's "too many requests"
        // while the members apply a burst) is waited out.
        let mut attempt = 0;
        let response = loop {
            match kv.txn(guarded(&key, 0, put.clone())).await {
                Ok(response) => break response,
                Err(e) if attempt >= PRELOAD_RETRIES_MAX => return Err(e.into()),
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(PRELOAD_RETRY_WAIT).await;
                }
            }
        };
        let revision = outcome(&response, false).unwrap_or_else(|read| read);
        owned.live.push((object, revision));
    }
    Ok(owned)
}

/// One request of the mix. `Ok(false)`: a guard failed where the client
/// expected it to hold.
async fn request(
    shared: &Shared,
    client: &mut Client,
    kv: &mut KvClient,
    owned: &mut Owned,
    op: Op,
    rng: &mut XorShift,
    n: u64,
) -> Result<bool, etcd_client::Error> {
    let layout = shared.layout;
    match op {
        Op::Update | Op::Delete | Op::Get if owned.live.is_empty() => Ok(true),
        Op::Update => {
            let slot = (rng.next() as usize) % owned.live.len();
            let (object, expected) = owned.live[slot];
            let key = layout.key(object);
            let version = shared.versions.fetch_add(1, Ordering::Relaxed);
            let put = TxnOp::put(key.as_str(), shared.contents.object(object, version), None);
            let result = outcome(&kv.txn(guarded(&key, expected, put)).await?, false);
            owned.live[slot].1 = result.unwrap_or_else(|read| read);
            Ok(result.is_ok())
        }
        Op::Delete => {
            let slot = (rng.next() as usize) % owned.live.len();
            let (object, expected) = owned.live[slot];
            let key = layout.key(object);
            let delete = TxnOp::delete(key.as_str(), None);
            match outcome(&kv.txn(guarded(&key, expected, delete)).await?, true) {
                Ok(_) => {
                    owned.live.swap_remove(slot);
                    owned.gone.push(object);
                    Ok(true)
                }
                Err(read) => {
                    owned.live[slot].1 = read;
                    Ok(false)
                }
            }
        }
        Op::Create => {
            let object = owned.gone.pop().expect("chosen only when one is gone");
            let key = layout.key(object);
            let put = TxnOp::put(key.as_str(), shared.contents.object(object, 0), None);
            let result = outcome(&kv.txn(guarded(&key, 0, put)).await?, false);
            owned
                .live
                .push((object, result.unwrap_or_else(|read| read)));
            Ok(result.is_ok())
        }
        Op::Get => {
            let (object, _) = owned.live[(rng.next() as usize) % owned.live.len()];
            kv.get(layout.key(object), None).await?;
            Ok(true)
        }
        Op::List => {
            let resource = RESOURCES[(rng.next() as usize) % RESOURCES.len()];
            let namespace = layout.namespace(rng.next() % layout.namespaces);
            let prefix = format!("/registry/{resource}/{namespace}/");
            let mut end = prefix.clone().into_bytes();
            *end.last_mut().expect("not empty") += 1;
            let mut from = prefix.into_bytes();
            let mut revision = 0;
            loop {
                let mut options = GetOptions::new()
                    .with_range(end.clone())
                    .with_limit(PAGE_LIMIT);
                if revision > 0 {
                    options = options.with_revision(revision);
                }
                let page = kv.get(from, Some(options)).await?;
                if revision == 0 {
                    revision = page.header().map_or(0, |h| h.revision());
                }
                match page.kvs().last() {
                    Some(last) if page.more() => {
                        from = last.key().to_vec();
                        from.push(0);
                    }
                    _ => return Ok(true),
                }
            }
        }
        Op::Event => {
            let lease = shared.lease.get(client).await?;
            let namespace = layout.namespace(n % layout.namespaces);
            let key = format!(
                "/registry/{EVENTS}/{namespace}/event-{:x}-{n:010}",
                shared.run
            );
            let put = TxnOp::put(
                key.as_str(),
                shared.contents.event(n),
                Some(PutOptions::new().with_lease(lease)),
            );
            Ok(outcome(&kv.txn(guarded(&key, 0, put)).await?, false).is_ok())
        }
    }
}

/// What one watch saw: events, and whether it reached the target revision.
struct Watched {
    events: u64,
    caught_up: bool,
}

/// Watches `prefix` until a response at or past the revision `target`
/// sends (set once the mix is done), asking for progress every second.
async fn watch(
    client: Client,
    prefix: String,
    mut target: tokio::sync::watch::Receiver<i64>,
    ready: Arc<tokio::sync::Barrier>,
) -> Watched {
    let options = WatchOptions::new()
        .with_prefix()
        .with_prev_key()
        .with_progress_notify();
    // A lease's expiry deletes all its events in one revision, which
    // comes in one response (with prev_kv, megabytes), as from etcd.
    let stream = client
        .watch_client()
        .max_decoding_message_size(RESPONSE_BYTES_MAX)
        .watch(prefix, Some(options))
        .await;
    ready.wait().await;
    let mut watched = Watched {
        events: 0,
        caught_up: false,
    };
    let Ok(stream) = stream else {
        return watched;
    };
    let (mut requests, mut responses) = stream.split();
    let mut progress = tokio::time::interval(PROGRESS_INTERVAL);
    let mut seen_revision = 0;
    let mut deadline = None;
    loop {
        let target_revision = *target.borrow();
        if target_revision > 0 && seen_revision >= target_revision {
            watched.caught_up = true;
            return watched;
        }
        if target_revision > 0 && deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + WATCH_CATCH_UP_TIMEOUT);
        }
        let expire = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = responses.message() => match message {
                Ok(Some(response)) => {
                    watched.events += response.events().len() as u64;
                    let revision = response.header().map_or(0, |h| h.revision());
                    seen_revision = seen_revision.max(revision);
                }
                _ => return watched,
            },
            _ = progress.tick() => {
                if requests.request_progress().await.is_err() {
                    return watched;
                }
            }
            _ = target.changed(), if target_revision == 0 => {}
            _ = expire => return watched,
        }
    }
}

pub async fn run(
    cli: &Cli,
    common: &Common,
    objects: u64,
    namespaces: u64,
) -> Result<Report, Error> {
    if objects == 0 || namespaces == 0 {
        return Err("--objects and --namespaces must be at least 1".into());
    }
    let conns = connections(cli).await?;
    let shared = Arc::new(Shared {
        layout: Layout {
            objects,
            namespaces,
        },
        contents: Contents(ValuePool::new()),
        lease: EventLease(tokio::sync::Mutex::new(None)),
        versions: AtomicU64::new(1),
        run: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64),
    });

    // The objects, before the clock starts.
    let mut loaders = Vec::with_capacity(cli.clients);
    for client in 0..cli.clients {
        let mut kv = conns[client % conns.len()]
            .kv_client()
            .max_decoding_message_size(RESPONSE_BYTES_MAX);
        let (shared, clients) = (shared.clone(), cli.clients);
        loaders.push(tokio::spawn(async move {
            preload(&shared, &mut kv, client, clients).await
        }));
    }
    let mut owned = Vec::with_capacity(cli.clients);
    for loader in loaders {
        owned.push(loader.await??);
    }

    let (target_tx, target_rx) = tokio::sync::watch::channel(0i64);
    let prefixes: Vec<String> = RESOURCES
        .iter()
        .chain([&EVENTS])
        .map(|resource| format!("/registry/{resource}/"))
        .collect();
    let ready = Arc::new(tokio::sync::Barrier::new(prefixes.len() + 1));
    let watchers: Vec<_> = prefixes
        .into_iter()
        .enumerate()
        .map(|(i, prefix)| {
            let client = conns[i % conns.len()].clone();
            tokio::spawn(watch(client, prefix, target_rx.clone(), ready.clone()))
        })
        .collect();
    ready.wait().await;

    let pacer = Arc::new(Pacer::new(common));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(cli.clients);
    for (client_index, mut owned) in owned.into_iter().enumerate() {
        let mut client = conns[client_index % conns.len()].clone();
        let mut kv = client
            .kv_client()
            .max_decoding_message_size(RESPONSE_BYTES_MAX);
        let (pacer, shared) = (pacer.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<Latencies> = OPS.iter().map(|_| Latencies::default()).collect();
            let mut errors = 0u64;
            while let Some((n, begin)) = pacer.take().await {
                let mut rng = XorShift(0x3c6e_f372_fe94_f82b ^ (n << 8) ^ client_index as u64);
                let op = Op::of_roll(rng.next(), !owned.gone.is_empty());
                match request(&shared, &mut client, &mut kv, &mut owned, op, &mut rng, n).await {
                    Ok(true) => latencies[op as usize].record(begin.elapsed()),
                    Ok(false) => errors += 1,
                    Err(e) => {
                        errors += 1;
                        crate::report::note_error(&e);
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut by_op: Vec<Vec<Latencies>> = OPS.iter().map(|_| Vec::new()).collect();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await?;
        for (all, one) in by_op.iter_mut().zip(latencies) {
            all.push(one);
        }
        errors += e;
    }
    let elapsed = start.elapsed();

    // The watchers must reach the revision the mix ended at.
    let mut client = conns[0].clone();
    let last = client.get("/registry/", None).await?;
    let _ = target_tx.send(last.header().map_or(0, |h| h.revision()));
    let caught_up_start = Instant::now();
    let mut watch_events = 0;
    let mut behind = 0;
    for watcher in watchers {
        let watched = watcher.await?;
        watch_events += watched.events;
        behind += u64::from(!watched.caught_up);
    }
    let watch_catch_up = caught_up_start.elapsed();
    if behind > 0 {
        return Err(format!(
            "{behind} of the watches did not reach the last revision within {WATCH_CATCH_UP_TIMEOUT:?} after the mix"
        )
        .into());
    }

    let operations: Vec<_> = OPS
        .iter()
        .zip(by_op.iter_mut())
        .map(|(op, all)| (op.name(), histogram(std::mem::take(all))))
        .collect();
    let mut latencies = histogram(std::iter::empty());
    for (_, h) in &operations {
        latencies.add(h).expect("same bounds");
    }
    Ok(Report {
        workload: "kube",
        total: pacer.issued(),
        errors,
        elapsed,
        operations: pacer.issued() - errors,
        latencies,
        by_operation: operations,
        watch: Some((watch_events, watch_catch_up)),
    })
}

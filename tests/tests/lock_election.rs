//! Locks and elections: etcd's Lock and Election services through the
//! `etcd-client` crate, run against e2d and a real etcd side by side (the
//! transcripts, with lease ids and revisions made relative, must be
//! equal); and the locks and elections clients build from txns and
//! watches: `etcdctl lock`, `etcdctl elect` and python etcd3's `lock()`.

use std::time::{Duration, Instant};

use e2d_tests::{one_at_a_time, Server};
use etcd_client::{
    Client, Error, GetOptions, LeaderKey, LockOptions, ProclaimOptions, ResignOptions,
};
use tokio::task::JoinHandle;

/// How long a call that must wait is given to show it does.
const STILL_WAITING: Duration = Duration::from_millis(500);
/// How long a call that must finish may take.
const FINISHES_WITHIN: Duration = Duration::from_secs(10);

/// Runs a test's client side (the guard of [`one_at_a_time`] is held
/// outside it).
fn run(test: impl std::future::Future<Output = ()>) {
    tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(test);
}

async fn connect(s: &Server) -> Client {
    Client::connect([s.url()], None)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", s.url()))
}

/// What one server answered, with its own lease ids and revisions written
/// as names, so that the transcripts of e2d and etcd can be compared.
struct Transcript {
    lines: Vec<String>,
    names: Vec<(String, String)>,
    base_revision: i64,
}

impl Transcript {
    fn new(base_revision: i64) -> Self {
        Self {
            lines: Vec::new(),
            names: Vec::new(),
            base_revision,
        }
    }

    /// From now on, `lease` (as its hex key suffix) reads `name`.
    fn name_lease(&mut self, lease: i64, name: &str) {
        self.names.push((format!("{lease:x}"), name.to_string()));
    }

    fn text(&self, bytes: &[u8]) -> String {
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        for (from, to) in &self.names {
            text = text.replace(from, to);
        }
        text
    }

    /// A revision as an offset from the scenario's first.
    fn rev(&self, revision: i64) -> String {
        format!("r+{}", revision - self.base_revision)
    }

    fn push(&mut self, line: String) {
        self.lines.push(line);
    }
}

fn header_rev(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.expect("response has a header").revision()
}

/// A failed call as `Code: message`.
fn failure<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::GRpcStatus(status)) => format!("{:?}: {}", status.code(), status.message()),
        other => panic!("expected a gRPC error, got {other:?}"),
    }
}

async fn current_revision(c: &mut Client) -> i64 {
    header_rev(c.get("revision-probe", None).await.unwrap().header())
}

async fn keys_under(c: &mut Client, prefix: &str, t: &Transcript) -> Vec<String> {
    let got = c
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let mut keys: Vec<String> = got.kvs().iter().map(|kv| t.text(kv.key())).collect();
    // In the order of the names, not of the servers' lease ids.
    keys.sort();
    keys
}

/// Waits until the keys under `prefix` are `want`.
async fn wait_for_keys(c: &mut Client, prefix: &str, want: &[&str], t: &Transcript) {
    let deadline = Instant::now() + FINISHES_WITHIN;
    loop {
        let keys = keys_under(c, prefix, t).await;
        if keys == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "keys under {prefix} are {keys:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn finished<T>(task: JoinHandle<T>) -> T {
    tokio::time::timeout(FINISHES_WITHIN, task)
        .await
        .expect("the call finishes")
        .expect("the task ran")
}

/// Locks in a task of its own; the key and the header's revision.
fn lock_in_background(
    c: &Client,
    name: &str,
    lease: i64,
) -> JoinHandle<Result<(Vec<u8>, i64), Error>> {
    let (mut c, name) = (c.clone(), name.to_string());
    tokio::spawn(async move {
        let locked = c
            .lock(name, Some(LockOptions::new().with_lease(lease)))
            .await?;
        Ok((locked.key().to_vec(), header_rev(locked.header())))
    })
}

/// Two holders in turn, a lock taken twice with one lease, unknown
/// leases and keys, a lock without a lease.
async fn lock_scenario(s: &Server) -> Vec<String> {
    let mut c = connect(s).await;
    let mut t = Transcript::new(current_revision(&mut c).await);
    let a = c.lease_grant(30, None).await.unwrap().id();
    let b = c.lease_grant(30, None).await.unwrap().id();
    t.name_lease(a, "A");
    t.name_lease(b, "B");

    let held = c
        .lock("lk", Some(LockOptions::new().with_lease(a)))
        .await
        .unwrap();
    let held_key = held.key().to_vec();
    t.push(format!(
        "A holds {} at {}",
        t.text(&held_key),
        t.rev(header_rev(held.header()))
    ));
    let again = c
        .lock("lk", Some(LockOptions::new().with_lease(a)))
        .await
        .unwrap();
    t.push(format!(
        "A again holds {} at {}",
        t.text(again.key()),
        t.rev(header_rev(again.header()))
    ));

    let waiting = lock_in_background(&c, "lk", b);
    tokio::time::sleep(STILL_WAITING).await;
    t.push(format!("B still waits: {}", !waiting.is_finished()));
    t.push(format!("queue: {:?}", keys_under(&mut c, "lk/", &t).await));

    let unlocked = c.unlock(held_key.clone()).await.unwrap();
    t.push(format!(
        "A unlocked at {}",
        t.rev(header_rev(unlocked.header()))
    ));
    let (b_key, b_rev) = finished(waiting).await.unwrap();
    t.push(format!("B holds {} at {}", t.text(&b_key), t.rev(b_rev)));
    t.push(format!("queue: {:?}", keys_under(&mut c, "lk/", &t).await));

    let unknown = c
        .lock("lk", Some(LockOptions::new().with_lease(0x7e57_0000_0001)))
        .await;
    t.push(format!("unknown lease: {}", failure(unknown)));
    let gone = c.unlock(held_key).await.unwrap();
    t.push(format!(
        "unlock of a gone key at {}",
        t.rev(header_rev(gone.header()))
    ));
    t.push(format!("unlock of no key: {}", failure(c.unlock("").await)));

    // With no lease, the server grants one of 60 s.
    let own = c.lock("free", None).await.unwrap();
    let kv = c.get(own.key(), None).await.unwrap().kvs()[0].clone();
    let granted = c.lease_time_to_live(kv.lease(), None).await.unwrap();
    t.push(format!(
        "lock without lease: key is free/<its lease>: {}, granted TTL {}",
        own.key() == format!("free/{:x}", kv.lease()).as_bytes(),
        granted.granted_ttl()
    ));
    t.lines
}

#[test]
fn lock_and_unlock_as_etcd_does() {
    let _one = one_at_a_time();
    run(async {
        let (e2d, etcd) = Server::e2d_and_etcd();
        let ours = lock_scenario(&e2d).await;
        let theirs = lock_scenario(&etcd).await;
        assert_eq!(ours, theirs, "e2d (left) and etcd (right) differ");
        assert!(
            ours.contains(&"B still waits: true".to_string()),
            "{ours:?}"
        );
        assert!(
            ours.contains(&"B holds lk/B at r+3".to_string()),
            "{ours:?}"
        );
    });
}

/// A waiter whose client gives up.
async fn given_up_scenario(s: &Server) -> Vec<String> {
    let mut c = connect(s).await;
    let mut t = Transcript::new(current_revision(&mut c).await);
    let a = c.lease_grant(30, None).await.unwrap().id();
    let d = c.lease_grant(30, None).await.unwrap().id();
    t.name_lease(a, "A");
    t.name_lease(d, "D");
    c.lock("lk", Some(LockOptions::new().with_lease(a)))
        .await
        .unwrap();
    let mut cd = c.clone();
    let gave_up = tokio::time::timeout(
        STILL_WAITING,
        cd.lock("lk", Some(LockOptions::new().with_lease(d))),
    )
    .await;
    t.push(format!("D gave up: {}", gave_up.is_err()));
    wait_for_keys(&mut c, "lk/", &["lk/A"], &t).await;
    t.push(format!("queue: {:?}", keys_under(&mut c, "lk/", &t).await));
    t.lines
}

#[test]
fn a_waiter_whose_client_gives_up_leaves_the_queue() {
    let _one = one_at_a_time();
    run(async {
        let (e2d, etcd) = Server::e2d_and_etcd();
        let ours = given_up_scenario(&e2d).await;
        let theirs = given_up_scenario(&etcd).await;
        assert_eq!(ours, theirs, "e2d (left) and etcd (right) differ");
        assert_eq!(ours, ["D gave up: true", "queue: [\"lk/A\"]"]);
    });
}

/// etcd 3.5 on fails such a lock with "mutex: session is expired" once the
/// keys before the waiter's are gone (3.4, the etcd here, answers as if it
/// held the lock); e2d fails it as soon as its key is gone.
#[test]
fn a_waiter_whose_lease_ends_fails_with_session_expired() {
    let _one = one_at_a_time();
    run(async {
        let s = Server::e2d();
        let mut c = connect(&s).await;
        let a = c.lease_grant(30, None).await.unwrap().id();
        let b = c.lease_grant(30, None).await.unwrap().id();
        c.lock("lk", Some(LockOptions::new().with_lease(a)))
            .await
            .unwrap();
        let waiting = lock_in_background(&c, "lk", b);
        tokio::time::sleep(STILL_WAITING).await;
        assert!(!waiting.is_finished(), "B did not wait for A");
        c.lease_revoke(b).await.unwrap();
        let lost = finished(waiting).await;
        assert_eq!(failure(lost), "Unknown: mutex: session is expired");
        let t = Transcript::new(0);
        assert_eq!(keys_under(&mut c, "lk/", &t).await, [format!("lk/{a:x}")]);

        // The same for a candidate: it is told at once that it does not lead.
        c.campaign("el", "a", a).await.unwrap();
        let campaigning = campaign_in_background(&c, "el", "b", b);
        let lost = finished(campaigning).await;
        assert_eq!(
            failure(lost),
            "Unknown: etcdserver: requested lease not found"
        );
        let d = c.lease_grant(30, None).await.unwrap().id();
        let campaigning = campaign_in_background(&c, "el", "d", d);
        tokio::time::sleep(STILL_WAITING).await;
        assert!(!campaigning.is_finished(), "D did not wait for A");
        c.lease_revoke(d).await.unwrap();
        let lost = finished(campaigning).await;
        assert_eq!(failure(lost), "Unknown: election: not leader");
    });
}

fn campaign_in_background(
    c: &Client,
    name: &str,
    value: &str,
    lease: i64,
) -> JoinHandle<Result<LeaderKey, Error>> {
    let (mut c, name, value) = (c.clone(), name.to_string(), value.to_string());
    tokio::spawn(async move {
        let mut resp = c.campaign(name, value, lease).await?;
        Ok(resp
            .take_leader()
            .expect("a campaign answers with its leader key"))
    })
}

/// Observes `name` in a task of its own (etcd answers an Observe call
/// only with its first message), handing on each key-value.
fn observe_in_background(
    c: &Client,
    name: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<etcd_client::KeyValue> {
    let (mut c, name) = (c.clone(), name.to_string());
    let (sender, observed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = c.observe(name).await.expect("observe starts");
        while let Ok(Some(resp)) = stream.message().await {
            let kv = resp.kv().expect("observe answers with a key-value").clone();
            if sender.send(kv).is_err() {
                return;
            }
        }
    });
    observed
}

/// The next Observe answer as `key=value`.
async fn observed(
    observer: &mut tokio::sync::mpsc::UnboundedReceiver<etcd_client::KeyValue>,
    t: &Transcript,
) -> String {
    let kv = tokio::time::timeout(FINISHES_WITHIN, observer.recv())
        .await
        .expect("observe answers")
        .expect("observe stream is open");
    format!("observed {}={}", t.text(kv.key()), t.text(kv.value()))
}

async fn leader_now(c: &mut Client, name: &str, t: &Transcript) -> String {
    match c.leader(name).await {
        Ok(resp) => {
            let kv = resp.kv().expect("a leader answer has a key-value");
            format!("leader {}={}", t.text(kv.key()), t.text(kv.value()))
        }
        Err(e) => format!("leader: {}", failure::<()>(Err(e))),
    }
}

fn leader_text(leader: &LeaderKey, t: &Transcript) -> String {
    format!(
        "{} {} lease {} rev {}",
        t.text(leader.name()),
        t.text(leader.key()),
        t.text(format!("{:x}", leader.lease()).as_bytes()),
        t.rev(leader.rev())
    )
}

/// Campaigns, proclamations, resignations and an observer.
async fn election_scenario(s: &Server) -> Vec<String> {
    let mut c = connect(s).await;
    let mut t = Transcript::new(current_revision(&mut c).await);
    let a = c.lease_grant(30, None).await.unwrap().id();
    let b = c.lease_grant(30, None).await.unwrap().id();
    let d = c.lease_grant(30, None).await.unwrap().id();
    t.name_lease(a, "A");
    t.name_lease(b, "B");
    t.name_lease(d, "D");
    t.push(leader_now(&mut c, "el", &t).await);
    let mut observer = observe_in_background(&c, "el");

    let mut elected = c.campaign("el", "a1", a).await.unwrap();
    let la = elected.take_leader().unwrap();
    t.push(format!(
        "A leads: {} (header {})",
        leader_text(&la, &t),
        t.rev(header_rev(elected.header()))
    ));
    t.push(observed(&mut observer, &t).await);
    t.push(leader_now(&mut c, "el", &t).await);

    let b_campaign = campaign_in_background(&c, "el", "b1", b);
    tokio::time::sleep(STILL_WAITING).await;
    t.push(format!("B still waits: {}", !b_campaign.is_finished()));

    let proclaimed = c
        .proclaim("a2", Some(ProclaimOptions::new().with_leader(la.clone())))
        .await
        .unwrap();
    t.push(format!(
        "A proclaimed at {}",
        t.rev(header_rev(proclaimed.header()))
    ));
    t.push(observed(&mut observer, &t).await);
    let stale = LeaderKey::new()
        .with_name("el")
        .with_key(la.key())
        .with_rev(la.rev() + 1000)
        .with_lease(a);
    let refused = c
        .proclaim("x", Some(ProclaimOptions::new().with_leader(stale.clone())))
        .await;
    t.push(format!("stale proclaim: {}", failure(refused)));
    t.push(format!(
        "no leader key: {}",
        failure(c.proclaim("x", None).await)
    ));
    t.push(format!("no leader key: {}", failure(c.resign(None).await)));
    let resigned = c
        .resign(Some(ResignOptions::new().with_leader(stale)))
        .await
        .unwrap();
    t.push(format!(
        "stale resign at {}",
        t.rev(header_rev(resigned.header()))
    ));
    t.push(leader_now(&mut c, "el", &t).await);

    // D's client gives up campaigning: its key leaves the queue.
    let mut cd = c.clone();
    let gave_up = tokio::time::timeout(STILL_WAITING, cd.campaign("el", "d1", d)).await;
    t.push(format!("D gave up: {}", gave_up.is_err()));
    wait_for_keys(&mut c, "el/", &["el/A", "el/B"], &t).await;

    c.resign(Some(ResignOptions::new().with_leader(la.clone())))
        .await
        .unwrap();
    let lb = finished(b_campaign).await.unwrap();
    t.push(format!("B leads: {}", leader_text(&lb, &t)));
    t.push(observed(&mut observer, &t).await);
    t.push(leader_now(&mut c, "el", &t).await);

    c.resign(Some(ResignOptions::new().with_leader(lb)))
        .await
        .unwrap();
    t.push(leader_now(&mut c, "el", &t).await);

    // A campaigns again, then again with another value: one candidacy,
    // whose value changes. (First the observer gets to wait for a leader.)
    tokio::time::sleep(STILL_WAITING).await;
    let mut first = c.campaign("el", "a3", a).await.unwrap();
    let mut second = c.campaign("el", "a4", a).await.unwrap();
    let (first, second) = (first.take_leader().unwrap(), second.take_leader().unwrap());
    t.push(format!(
        "A leads again: {}; again: {}",
        leader_text(&first, &t),
        leader_text(&second, &t)
    ));
    t.push(observed(&mut observer, &t).await);
    t.push(observed(&mut observer, &t).await);
    t.push(leader_now(&mut c, "el", &t).await);
    t.lines
}

#[test]
fn campaign_proclaim_observe_resign_as_etcd_does() {
    let _one = one_at_a_time();
    run(async {
        let (e2d, etcd) = Server::e2d_and_etcd();
        let ours = election_scenario(&e2d).await;
        let theirs = election_scenario(&etcd).await;
        assert_eq!(ours, theirs, "e2d (left) and etcd (right) differ");
        for expected in [
            "leader: Unknown: election: no leader",
            "observed el/A=a2",
            "B still waits: true",
            "stale proclaim: Unknown: election: not leader",
            "observed el/B=b1",
            "observed el/A=a4",
        ] {
            assert!(ours.contains(&expected.to_string()), "{expected}: {ours:?}");
        }
    });
}

// ---------------------------------------------------------------------------
// Clients that build locks and elections from txns and watches
// ---------------------------------------------------------------------------

#[test]
fn etcdctl_lock_runs_one_holder_at_a_time() {
    let _one = one_at_a_time();
    let s = Server::e2d();
    let mut first = s.spawn_etcdctl(&[
        "lock",
        "job",
        "--",
        "sh",
        "-c",
        "echo first; sleep 1.5; echo first done",
    ]);
    assert_eq!(first.lines(1, FINISHES_WITHIN), ["first"]);
    let mut second = s.spawn_etcdctl(&["lock", "job", "--", "sh", "-c", "echo second"]);
    second.assert_quiet(Duration::from_millis(700));
    assert_eq!(first.lines(1, FINISHES_WITHIN), ["first done"]);
    assert_eq!(second.lines(1, FINISHES_WITHIN), ["second"]);
    assert!(first.wait_exit(FINISHES_WITHIN).0.success());
    assert!(second.wait_exit(FINISHES_WITHIN).0.success());
    // Each released its key on the way out.
    let left = s.etcdctl(&["get", "--prefix", "job/"]);
    assert_eq!(left.out(), "");
}

#[test]
fn etcdctl_elect_and_its_listener() {
    let _one = one_at_a_time();
    let s = Server::e2d();
    let mut listener = s.spawn_etcdctl(&["elect", "-l", "boss"]);
    let mut first = s.spawn_etcdctl(&["elect", "boss", "p1"]);
    let elected = first.lines(2, FINISHES_WITHIN);
    assert!(elected[0].starts_with("boss/"), "{elected:?}");
    assert_eq!(elected[1], "p1");
    assert_eq!(listener.lines(2, FINISHES_WITHIN), elected);

    let mut second = s.spawn_etcdctl(&["elect", "boss", "p2"]);
    second.assert_quiet(Duration::from_millis(700));
    // An interrupted candidate resigns.
    first.signal("INT");
    first.wait_exit(FINISHES_WITHIN);
    let next = second.lines(2, FINISHES_WITHIN);
    assert!(
        next[0].starts_with("boss/") && next[0] != elected[0],
        "{next:?}"
    );
    assert_eq!(next[1], "p2");
    assert_eq!(listener.lines(2, FINISHES_WITHIN), next);
}

#[test]
fn python_etcd3_lock_excludes_a_second_holder() {
    let _one = one_at_a_time();
    let s = Server::e2d();
    let script = format!(
        r#"
import types, tenacity, etcd3, etcd3.locks
# etcd3's lock hands tenacity a wait function of tenacity's old signature,
# which the tenacity installed here no longer calls; adapt it.
def retry(*args, wait=None, **kwargs):
    if wait is not None:
        old_wait = wait
        wait = lambda state: old_wait(state.attempt_number, state.seconds_since_start)
    return tenacity.retry(*args, wait=wait, **kwargs)
shim = types.SimpleNamespace(**{{k: getattr(tenacity, k) for k in dir(tenacity)}})
shim.retry = retry
etcd3.locks.tenacity = shim
c = etcd3.client(host="127.0.0.1", port={port})
first = c.lock("py", ttl=10)
second = c.lock("py", ttl=10)
print("first", first.acquire(timeout=5))
print("second while held", second.acquire(timeout=1))
print("first released", first.release())
print("second", second.acquire(timeout=5))
print("second holds", second.is_acquired())
print("second released", second.release())
"#,
        port = s.client_port()
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
        .output()
        .expect("cannot run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "first True",
            "second while held False",
            "first released True",
            "second True",
            "second holds True",
            "second released True",
        ]
    );
}

#[test]
fn a_lock_taken_through_one_member_holds_off_a_caller_on_another() {
    let cluster = e2d_tests::cluster::Cluster::start(3);
    run(async {
        let url = |i: usize| format!("http://{}", cluster.members[i].endpoint());
        let mut first = Client::connect([url(0)], None).await.expect("member 0");
        let mut second = Client::connect([url(1)], None).await.expect("member 1");
        let held = first.lock("shared", None).await.expect("the first lock");
        // The second caller, on another member, waits for the first.
        let waiting = tokio::spawn(async move { second.lock("shared", None).await });
        tokio::time::sleep(STILL_WAITING).await;
        assert!(
            !waiting.is_finished(),
            "the second lock waits for the first"
        );
        first.unlock(held.key()).await.expect("unlock");
        let taken = tokio::time::timeout(FINISHES_WITHIN, waiting)
            .await
            .expect("the second lock is taken once the first is released")
            .expect("the task ran")
            .expect("the second lock");
        assert_ne!(taken.key(), held.key());
        // An election led through member 2 is seen from member 0.
        let mut third = Client::connect([url(2)], None).await.expect("member 2");
        let lease = third.lease_grant(60, None).await.unwrap().id();
        third
            .campaign("leader", "three", lease)
            .await
            .expect("campaign");
        let leader = first.leader("leader").await.expect("a leader");
        assert_eq!(leader.kv().expect("its key").value(), b"three");
    });
}

//! Durability: acknowledged writes, leases and compactions survive a
//! `kill -9` and a restart on the same data dir.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2d_tests::Server;
use etcd_client::{Client, GetOptions, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp};

async fn connect(s: &Server) -> Client {
    Client::connect([s.url()], None)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", s.url()))
}

/// key -> (value, create_revision, mod_revision, version)
type State = BTreeMap<String, (String, i64, i64, i64)>;

async fn read_state(c: &mut Client, revision: i64) -> (State, i64) {
    let resp = c
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_revision(revision)),
        )
        .await
        .expect("range after restart");
    let state = resp
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().unwrap().to_string(),
                (
                    kv.value_str().unwrap().to_string(),
                    kv.create_revision(),
                    kv.mod_revision(),
                    kv.version(),
                ),
            )
        })
        .collect();
    (state, resp.header().expect("header").revision())
}

#[tokio::test]
async fn acknowledged_writes_survive_kill9() {
    let mut s = Server::e2d();
    let mut c = connect(&s).await;
    let mut want = State::new();
    let mut last = 1;
    for i in 0..200 {
        let key = format!("key-{i:03}");
        let value = format!("value-{i}");
        let resp = c.put(key.as_str(), value.as_str(), None).await.unwrap();
        let rev = resp.header().unwrap().revision();
        assert_eq!(rev, last + 1, "put {i} acknowledged at revision {rev}");
        last = rev;
        want.insert(key, (value, rev, rev, 1));
    }
    // Overwrites, a delete and a multi-key txn, too.
    for i in (0..200).step_by(20) {
        let key = format!("key-{i:03}");
        last = c
            .put(key.as_str(), "updated", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        let entry = want.get_mut(&key).unwrap();
        *entry = ("updated".to_string(), entry.1, last, 2);
    }
    let deleted = c.delete("key-199", None).await.unwrap();
    assert_eq!(deleted.deleted(), 1);
    assert_eq!(deleted.header().unwrap().revision(), last + 1);
    want.remove("key-199");
    let txn = Txn::new().and_then([
        TxnOp::put("txn-a", "1", None),
        TxnOp::put("txn-b", "2", None),
        TxnOp::delete("key-198", None),
    ]);
    last = c.txn(txn).await.unwrap().header().unwrap().revision();
    want.insert("txn-a".into(), ("1".into(), last, last, 1));
    want.insert("txn-b".into(), ("2".into(), last, last, 1));
    want.remove("key-198");
    assert_eq!(last, 1 + 200 + 10 + 1 + 1);

    drop(c);
    s.kill9();
    s.start();

    let mut c = connect(&s).await;
    let (got, header_rev) = read_state(&mut c, 0).await;
    assert_eq!(header_rev, last, "revision after restart");
    assert_eq!(got.len(), want.len());
    for (key, expected) in &want {
        assert_eq!(got.get(key), Some(expected), "{key} after restart");
    }
    assert_eq!(got, want);

    // History survived too: the state as of revision 101.
    let (old, _) = read_state(&mut c, 101).await;
    assert_eq!(old.len(), 100);
    assert_eq!(old["key-000"], ("value-0".to_string(), 2, 2, 1));

    // And revisions continue where they were.
    let next = c.put("after", "restart", None).await.unwrap();
    assert_eq!(next.header().unwrap().revision(), last + 1);

    // A second crash right after that write keeps it as well.
    drop(c);
    s.kill9();
    s.start();
    let mut c = connect(&s).await;
    let after = c.get("after", None).await.unwrap();
    assert_eq!(after.kvs()[0].mod_revision(), last + 1);
    assert_eq!(after.header().unwrap().revision(), last + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_a_write_stream_loses_no_acknowledged_write() {
    let mut s = Server::e2d();
    let url = s.url();
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let writer = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut c = Client::connect([url], None).await.expect("connect");
            for i in 0.. {
                let key = format!("stream-{i:05}");
                match c.put(key.as_str(), "x", None).await {
                    Ok(resp) => acked
                        .lock()
                        .unwrap()
                        .push((key, resp.header().unwrap().revision())),
                    Err(_) => return i,
                }
            }
            unreachable!()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 150 {
        assert!(Instant::now() < deadline, "writer too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.kill9();
    let attempted = tokio::time::timeout(Duration::from_secs(20), writer)
        .await
        .expect("writer notices the crash")
        .expect("writer task");
    let acked = acked.lock().unwrap().clone();
    assert!(attempted as usize >= acked.len());

    s.start();
    let mut c = connect(&s).await;
    let (got, header_rev) = read_state(&mut c, 0).await;
    let last_acked = acked.last().unwrap().1;
    assert!(
        header_rev >= last_acked,
        "revision {header_rev} after restart is below the last acknowledged {last_acked}"
    );
    for (key, rev) in &acked {
        match got.get(key) {
            Some((_, _, mod_rev, _)) => assert_eq!(mod_rev, rev, "{key}"),
            None => panic!("acknowledged {key} (revision {rev}) lost in the crash"),
        }
    }
    // At most the one write in flight may have landed unacknowledged.
    assert!(
        got.len() <= acked.len() + 1,
        "{} keys after restart, {} acknowledged",
        got.len(),
        acked.len()
    );
}

#[tokio::test]
async fn leases_survive_kill9() {
    let mut s = Server::e2d();
    let mut c = connect(&s).await;
    let long = c.lease_grant(60, None).await.unwrap().id();
    let short = c.lease_grant(2, None).await.unwrap().id();
    c.put("long/a", "1", Some(PutOptions::new().with_lease(long)))
        .await
        .unwrap();
    c.put("long/b", "2", Some(PutOptions::new().with_lease(long)))
        .await
        .unwrap();
    c.put("short", "3", Some(PutOptions::new().with_lease(short)))
        .await
        .unwrap();
    c.put("plain", "4", None).await.unwrap();

    drop(c);
    s.kill9();
    s.start();
    let mut c = connect(&s).await;

    let ttl = c
        .lease_time_to_live(long, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(ttl.granted_ttl(), 60);
    assert!(
        ttl.ttl() > 0 && ttl.ttl() <= 60,
        "remaining TTL {} after restart of a 60 s lease",
        ttl.ttl()
    );
    let mut keys = ttl.keys().to_vec();
    keys.sort();
    assert_eq!(keys, [b"long/a".to_vec(), b"long/b".to_vec()]);
    let got = c.get("long/a", None).await.unwrap();
    assert_eq!(got.kvs()[0].lease(), long);
    let mut listed: Vec<i64> = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    listed.sort();
    let mut want = vec![long, short];
    want.sort();
    assert_eq!(listed, want);

    // The restored short lease still expires and takes its key along.
    let restarted = Instant::now();
    while c.get("short", None).await.unwrap().count() != 0 {
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "2 s lease's key still there 10 s after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.get("plain", None).await.unwrap().count(), 1);
    assert_eq!(
        c.get("long/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap()
            .count(),
        2
    );

    // Revoking after the restart still deletes the attached keys.
    c.lease_revoke(long).await.unwrap();
    assert_eq!(
        c.get("long/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn compaction_and_revoke_survive_kill9() {
    let mut s = Server::e2d();
    for v in ["v1", "v2", "v3", "v4"] {
        s.etcdctl(&["put", "k", v]).ok(); // 2..=5
    }
    s.etcdctl(&["compaction", "4"]).ok();
    let lease = s.etcdctl(&["lease", "grant", "100"]);
    let id = lease
        .out()
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    s.etcdctl(&["put", "--lease", &id, "leased", "x"]).ok(); // 6
    s.etcdctl(&["lease", "revoke", &id]).ok(); // 7

    s.restart();

    s.etcdctl(&["get", "k", "--rev", "3"])
        .fails_with("required revision has been compacted");
    assert_eq!(s.etcdctl(&["get", "k", "--rev", "4"]).out(), "k\nv3\n");
    s.etcdctl(&["compaction", "4"])
        .fails_with("required revision has been compacted");
    assert_eq!(s.etcdctl(&["get", "leased"]).out(), "");
    assert_eq!(
        s.etcdctl(&["lease", "timetolive", &id]).out(),
        format!("lease {id} already expired\n")
    );
    assert_eq!(s.revision(), 7);
}

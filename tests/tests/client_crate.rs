//! e2d through the Rust `etcd-client` crate: KV, txn, watch, leases,
//! compaction errors and maintenance status.

use std::time::{Duration, Instant};

use e2d_tests::Server;
use etcd_client::{
    AlarmAction, AlarmType, Client, Compare, CompareOp, DeleteOptions, Error, EventType,
    GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};

async fn connect(s: &Server) -> Client {
    Client::connect([s.url()], None)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", s.url()))
}

fn rev(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.expect("response has a header").revision()
}

/// Asserts `result` is a gRPC error with `code` (e.g. "OutOfRange") and
/// exactly `message`.
#[track_caller]
fn assert_grpc_error<T: std::fmt::Debug>(result: Result<T, Error>, code: &str, message: &str) {
    match result {
        Err(Error::GRpcStatus(status)) => {
            assert_eq!(format!("{:?}", status.code()), code, "{status:?}");
            assert_eq!(status.message(), message, "{status:?}");
        }
        other => panic!("expected gRPC {code} {message:?}, got {other:?}"),
    }
}

fn keys_values(kvs: &[etcd_client::KeyValue]) -> Vec<(String, String)> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key_str().expect("utf-8 key").to_string(),
                kv.value_str().expect("utf-8 value").to_string(),
            )
        })
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn kv_put_get_prefix_delete() {
    let s = Server::e2d();
    let mut c = connect(&s).await;

    let put = c.put("p/a", "1", None).await.unwrap();
    assert_eq!(rev(put.header()), 2);
    assert!(put.prev_key().is_none());
    c.put("p/b", "2", None).await.unwrap();
    c.put("q", "3", None).await.unwrap();
    let put = c
        .put("p/a", "11", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(rev(put.header()), 5);
    let prev = put.prev_key().expect("prev kv requested");
    assert_eq!((prev.value(), prev.mod_revision()), (&b"1"[..], 2));

    let got = c.get("p/a", None).await.unwrap();
    assert_eq!(got.count(), 1);
    let kv = &got.kvs()[0];
    assert_eq!(
        (
            kv.value(),
            kv.create_revision(),
            kv.mod_revision(),
            kv.version()
        ),
        (&b"11"[..], 2, 5, 2)
    );

    let prefix = c
        .get("p/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(
        keys_values(prefix.kvs()),
        pairs(&[("p/a", "11"), ("p/b", "2")])
    );
    assert_eq!(rev(prefix.header()), 5);

    let limited = c
        .get("", Some(GetOptions::new().with_all_keys().with_limit(2)))
        .await
        .unwrap();
    assert_eq!(limited.kvs().len(), 2);
    assert!(limited.more());
    assert_eq!(limited.count(), 3);

    let counted = c
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_count_only()),
        )
        .await
        .unwrap();
    assert!(counted.kvs().is_empty());
    assert_eq!(counted.count(), 3);

    let sorted = c
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_sort(SortTarget::Mod, SortOrder::Descend),
            ),
        )
        .await
        .unwrap();
    let order: Vec<_> = keys_values(sorted.kvs())
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(order, ["p/a", "q", "p/b"]);

    let filtered = c
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_min_mod_revision(4)),
        )
        .await
        .unwrap();
    assert_eq!(
        keys_values(filtered.kvs()),
        pairs(&[("p/a", "11"), ("q", "3")])
    );

    let old = c
        .get("p/a", Some(GetOptions::new().with_revision(3)))
        .await
        .unwrap();
    assert_eq!(keys_values(old.kvs()), pairs(&[("p/a", "1")]));

    let del = c
        .delete(
            "p/",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(del.deleted(), 2);
    assert_eq!(rev(del.header()), 6);
    assert_eq!(
        keys_values(del.prev_kvs()),
        pairs(&[("p/a", "11"), ("p/b", "2")])
    );
    let rest = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(keys_values(rest.kvs()), pairs(&[("q", "3")]));
}

#[tokio::test]
async fn txn_compares_choose_the_branch() {
    let s = Server::e2d();
    let mut c = connect(&s).await;
    c.put("k", "v", None).await.unwrap(); // rev 2

    let txn = Txn::new()
        .when([
            Compare::value("k", CompareOp::Equal, "v"),
            Compare::mod_revision("k", CompareOp::Greater, 0),
            Compare::version("absent", CompareOp::Equal, 0),
            Compare::create_revision("k", CompareOp::Less, 3),
        ])
        .and_then([TxnOp::put("then", "yes", None), TxnOp::get("then", None)])
        .or_else([TxnOp::put("else", "yes", None)]);
    let resp = c.txn(txn).await.unwrap();
    assert!(resp.succeeded());
    assert_eq!(rev(resp.header()), 3);
    match &resp.op_responses()[..] {
        [TxnOpResponse::Put(_), TxnOpResponse::Get(get)] => {
            // A read inside the txn sees the txn's own earlier write.
            assert_eq!(keys_values(get.kvs()), pairs(&[("then", "yes")]));
            assert_eq!(get.kvs()[0].mod_revision(), 3);
        }
        other => panic!("unexpected responses {other:?}"),
    }

    let txn = Txn::new()
        .when([
            Compare::value("k", CompareOp::Equal, "v"),
            Compare::value("k", CompareOp::NotEqual, "v"),
        ])
        .and_then([TxnOp::put("then2", "yes", None)])
        .or_else([TxnOp::delete("then", None), TxnOp::put("else", "yes", None)]);
    let resp = c.txn(txn).await.unwrap();
    assert!(!resp.succeeded());
    assert_eq!(rev(resp.header()), 4);
    match &resp.op_responses()[..] {
        [TxnOpResponse::Delete(del), TxnOpResponse::Put(_)] => assert_eq!(del.deleted(), 1),
        other => panic!("unexpected responses {other:?}"),
    }
    let all = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(
        keys_values(all.kvs()),
        pairs(&[("else", "yes"), ("k", "v")])
    );

    // A read-only txn does not create a revision.
    let resp = c
        .txn(Txn::new().and_then([TxnOp::get("k", None)]))
        .await
        .unwrap();
    assert!(resp.succeeded());
    assert_eq!(rev(resp.header()), 4);

    // Nested txn.
    let inner = Txn::new()
        .when([Compare::value("else", CompareOp::Equal, "yes")])
        .and_then([TxnOp::put("nested", "1", None)]);
    let resp = c
        .txn(Txn::new().and_then([TxnOp::txn(inner)]))
        .await
        .unwrap();
    match &resp.op_responses()[..] {
        [TxnOpResponse::Txn(inner)] => assert!(inner.succeeded()),
        other => panic!("unexpected responses {other:?}"),
    }
    assert_eq!(c.get("nested", None).await.unwrap().count(), 1);

    // Two puts of one key in a txn are rejected.
    assert_grpc_error(
        c.txn(Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]))
            .await,
        "InvalidArgument",
        "etcdserver: duplicate key given in txn request",
    );
}

/// Reads watch responses until `n` events arrived; returns
/// (type, key, value, mod_revision, prev value).
async fn events(
    stream: &mut WatchStream,
    n: usize,
) -> Vec<(EventType, String, String, i64, Option<String>)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let resp = tokio::time::timeout(left, stream.message())
            .await
            .unwrap_or_else(|_| panic!("wanted {n} events within 10 s, got {out:?}"))
            .expect("watch stream failed")
            .expect("watch stream ended");
        assert!(!resp.canceled(), "watch canceled: {}", resp.cancel_reason());
        for e in resp.events() {
            let kv = e.kv().expect("event has a kv");
            out.push((
                e.event_type(),
                kv.key_str().unwrap().to_string(),
                kv.value_str().unwrap().to_string(),
                kv.mod_revision(),
                e.prev_kv().map(|p| p.value_str().unwrap().to_string()),
            ));
        }
    }
    assert_eq!(out.len(), n, "more events than expected: {out:?}");
    out
}

#[tokio::test]
async fn watch_replays_from_start_revision_with_prev_kv() {
    let s = Server::e2d();
    let mut c = connect(&s).await;
    c.put("k", "v1", None).await.unwrap(); // 2
    c.put("k", "v2", None).await.unwrap(); // 3
    c.put("other", "x", None).await.unwrap(); // 4
    c.delete("k", None).await.unwrap(); // 5
    c.put("k", "v3", None).await.unwrap(); // 6

    let mut w = c
        .watch(
            "k",
            Some(WatchOptions::new().with_start_revision(2).with_prev_key()),
        )
        .await
        .unwrap();
    let s_ = |t: &str| t.to_string();
    assert_eq!(
        events(&mut w, 4).await,
        vec![
            (EventType::Put, s_("k"), s_("v1"), 2, None),
            (EventType::Put, s_("k"), s_("v2"), 3, Some(s_("v1"))),
            (EventType::Delete, s_("k"), s_(""), 5, Some(s_("v2"))),
            (EventType::Put, s_("k"), s_("v3"), 6, None),
        ]
    );
    // Then live events, in order, with consecutive revisions.
    for i in 4..8 {
        c.put("k", format!("v{i}"), None).await.unwrap();
    }
    let live = events(&mut w, 4).await;
    let revs: Vec<i64> = live.iter().map(|e| e.3).collect();
    assert_eq!(revs, [7, 8, 9, 10]);
    assert_eq!(live[0].4.as_deref(), Some("v3"));
    assert_eq!(live[3].2, "v7");
}

#[tokio::test]
async fn watch_prefix_and_cancel() {
    let s = Server::e2d();
    let mut c = connect(&s).await;
    let mut w = c
        .watch(
            "dir/",
            Some(WatchOptions::new().with_prefix().with_start_revision(2)),
        )
        .await
        .unwrap();
    let created = w.message().await.unwrap().expect("created response");
    assert!(created.created(), "first response confirms creation");
    let watch_id = created.watch_id();

    c.put("dir/a", "1", None).await.unwrap();
    c.put("elsewhere", "x", None).await.unwrap();
    c.txn(Txn::new().and_then([
        TxnOp::put("dir/b", "2", None),
        TxnOp::put("dir/c", "3", None),
    ]))
    .await
    .unwrap();
    let got = events(&mut w, 3).await;
    let summary: Vec<(String, i64)> = got.iter().map(|e| (e.1.clone(), e.3)).collect();
    assert_eq!(
        summary,
        [
            ("dir/a".to_string(), 2),
            ("dir/b".to_string(), 4),
            ("dir/c".to_string(), 4)
        ]
    );

    w.cancel(watch_id).await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), w.message())
        .await
        .expect("cancel confirmation in time")
        .unwrap()
        .expect("stream open");
    assert!(resp.canceled(), "{resp:?}");
    assert_eq!(resp.watch_id(), watch_id);
}

#[tokio::test]
async fn watch_from_compacted_revision_is_canceled_with_compact_revision() {
    let s = Server::e2d();
    let mut c = connect(&s).await;
    for i in 0..4 {
        c.put("k", format!("v{i}"), None).await.unwrap(); // 2..=5
    }
    c.compact(4, None).await.unwrap();
    let mut w = c
        .watch("k", Some(WatchOptions::new().with_start_revision(2)))
        .await
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let resp = w.message().await.unwrap().expect("stream open");
            if resp.canceled() || !resp.events().is_empty() {
                return resp;
            }
        }
    })
    .await
    .expect("a response in time");
    assert!(resp.canceled(), "{resp:?}");
    assert_eq!(resp.compact_revision(), 4, "{resp:?}");
    assert!(resp.events().is_empty(), "{resp:?}");
    // As etcd's, the header of that answer carries no revision.
    assert_eq!(resp.header().map(|h| h.revision()), Some(0), "{resp:?}");
}

#[tokio::test]
async fn watch_from_a_negative_revision_is_canceled_as_compacted() {
    // etcd's answer since 3.5.24 and 3.6.6 (older ones, such as the 3.4
    // the tests may compare with, watch from the next revision instead).
    let s = Server::e2d();
    let mut c = connect(&s).await;
    c.put("k", "v", None).await.unwrap();
    let mut w = c
        .watch("k", Some(WatchOptions::new().with_start_revision(-1)))
        .await
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), w.message())
        .await
        .expect("a response in time")
        .unwrap()
        .expect("stream open");
    assert!(resp.created() && resp.canceled(), "{resp:?}");
    assert_eq!(resp.watch_id(), -1, "{resp:?}");
    assert_eq!(
        resp.cancel_reason(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(rev(resp.header()), 2);
}

#[tokio::test]
async fn watch_progress_notifications() {
    let s = Server::e2d_with(&["--watch-progress-notify-interval", "1s"]);
    let mut c = connect(&s).await;
    c.put("k", "v", None).await.unwrap(); // 2
    let mut w = c
        .watch("idle", Some(WatchOptions::new().with_progress_notify()))
        .await
        .unwrap();
    assert!(w.message().await.unwrap().expect("created").created());
    c.put("k", "v2", None).await.unwrap(); // 3

    // Asked for: comes at once.
    w.request_progress().await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), w.message())
        .await
        .expect("requested progress in time")
        .unwrap()
        .expect("stream open");
    assert!(resp.events().is_empty(), "{resp:?}");
    assert_eq!(rev(resp.header()), 3, "{resp:?}");

    // Periodic: within a few intervals.
    let start = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(5), w.message())
        .await
        .expect("periodic progress notification within 5 s")
        .unwrap()
        .expect("stream open");
    assert!(resp.events().is_empty(), "{resp:?}");
    assert_eq!(rev(resp.header()), 3, "{resp:?}");
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn lease_keep_alive_time_to_live_and_expiry() {
    let s = Server::e2d();
    let mut c = connect(&s).await;
    let lease = c.lease_grant(2, None).await.unwrap();
    assert_eq!(lease.ttl(), 2);
    let id = lease.id();
    assert!(id > 0);
    c.put("leased", "v", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    c.put("free", "v", None).await.unwrap();

    let ttl = c
        .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(ttl.id(), id);
    assert_eq!(ttl.granted_ttl(), 2);
    assert!((0..=2).contains(&ttl.ttl()), "ttl {}", ttl.ttl());
    assert_eq!(ttl.keys(), [b"leased".to_vec()]);
    assert_eq!(c.get("leased", None).await.unwrap().kvs()[0].lease(), id);

    // Keeping it alive for longer than its TTL keeps the key.
    let (mut keeper, mut responses) = c.lease_keep_alive(id).await.unwrap();
    let until = Instant::now() + Duration::from_millis(3000);
    while Instant::now() < until {
        keeper.keep_alive().await.unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(5), responses.message())
            .await
            .expect("keep-alive answered in time")
            .unwrap()
            .expect("keep-alive stream open");
        assert_eq!((resp.id(), resp.ttl()), (id, 2));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        c.get("leased", None).await.unwrap().count(),
        1,
        "kept alive"
    );

    // Stop: it expires, its key goes, the other key stays.
    drop(keeper);
    let stopped = Instant::now();
    loop {
        if c.get("leased", None).await.unwrap().count() == 0 {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "key still there 10 s after the last keep-alive of a 2 s lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        stopped.elapsed() >= Duration::from_millis(1000),
        "lease expired only {:?} after a keep-alive to 2 s",
        stopped.elapsed()
    );
    assert_eq!(c.get("free", None).await.unwrap().count(), 1);
    let ttl = c.lease_time_to_live(id, None).await.unwrap();
    assert_eq!(ttl.ttl(), -1, "expired lease reports ttl -1");
    assert!(c.leases().await.unwrap().leases().is_empty());
}

#[tokio::test]
async fn lease_ids_revoke_and_errors() {
    let s = Server::e2d();
    let mut c = connect(&s).await;
    let lease = c
        .lease_grant(60, Some(LeaseGrantOptions::new().with_id(0x1234)))
        .await
        .unwrap();
    assert_eq!((lease.id(), lease.ttl()), (0x1234, 60));
    assert_grpc_error(
        c.lease_grant(60, Some(LeaseGrantOptions::new().with_id(0x1234)))
            .await,
        "FailedPrecondition",
        "etcdserver: lease already exists",
    );
    c.put("a", "1", Some(PutOptions::new().with_lease(0x1234)))
        .await
        .unwrap();
    c.put("b", "2", Some(PutOptions::new().with_lease(0x1234)))
        .await
        .unwrap();
    let listed: Vec<i64> = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    assert_eq!(listed, [0x1234]);

    let revoke = c.lease_revoke(0x1234).await.unwrap();
    assert_eq!(
        rev(revoke.header()),
        4,
        "revoking deletes both keys in one revision"
    );
    assert_eq!(
        c.get("", Some(GetOptions::new().with_all_keys()))
            .await
            .unwrap()
            .count(),
        0
    );
    assert_grpc_error(
        c.lease_revoke(0x1234).await,
        "NotFound",
        "etcdserver: requested lease not found",
    );
    assert_grpc_error(
        c.put("c", "3", Some(PutOptions::new().with_lease(0x1234)))
            .await,
        "NotFound",
        "etcdserver: requested lease not found",
    );
}

#[tokio::test]
async fn compaction_and_request_errors() {
    let s = Server::e2d();
    let mut c = connect(&s).await;
    for i in 0..4 {
        c.put("k", format!("v{i}"), None).await.unwrap(); // 2..=5
    }
    let compacted = c.compact(3, None).await.unwrap();
    assert_eq!(rev(compacted.header()), 5);
    assert_grpc_error(
        c.get("k", Some(GetOptions::new().with_revision(2))).await,
        "OutOfRange",
        "etcdserver: mvcc: required revision has been compacted",
    );
    assert_grpc_error(
        c.compact(3, None).await,
        "OutOfRange",
        "etcdserver: mvcc: required revision has been compacted",
    );
    assert_grpc_error(
        c.compact(6, None).await,
        "OutOfRange",
        "etcdserver: mvcc: required revision is a future revision",
    );
    assert_grpc_error(
        c.get("k", Some(GetOptions::new().with_revision(6))).await,
        "OutOfRange",
        "etcdserver: mvcc: required revision is a future revision",
    );
    let at3 = c
        .get("k", Some(GetOptions::new().with_revision(3)))
        .await
        .unwrap();
    assert_eq!(keys_values(at3.kvs()), pairs(&[("k", "v1")]));

    assert_grpc_error(
        c.put("", "v", None).await,
        "InvalidArgument",
        "etcdserver: key is not provided",
    );
    assert_grpc_error(
        c.put("big", vec![b'x'; 1_700_000], None).await,
        "InvalidArgument",
        "etcdserver: request is too large",
    );
    assert_eq!(rev(c.get("k", None).await.unwrap().header()), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_get_distinct_consecutive_revisions() {
    let s = Server::e2d();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let url = s.url();
            tokio::spawn(async move {
                let mut c = Client::connect([url], None).await.expect("connect");
                let mut revs = Vec::new();
                for i in 0..50 {
                    let resp = c
                        .put(format!("w{w}/{i:02}"), format!("{i}"), None)
                        .await
                        .unwrap();
                    revs.push(resp.header().unwrap().revision());
                }
                revs
            })
        })
        .collect();
    let mut all = Vec::new();
    for writer in writers {
        let revs = writer.await.unwrap();
        assert!(
            revs.windows(2).all(|w| w[0] < w[1]),
            "one writer's revisions go up: {revs:?}"
        );
        all.extend(revs);
    }
    all.sort();
    assert_eq!(all, (2..=201).collect::<Vec<i64>>());
    let mut c = connect(&s).await;
    let everything = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(everything.count(), 200);
    assert_eq!(rev(everything.header()), 201);
    let mut mods: Vec<i64> = everything
        .kvs()
        .iter()
        .map(|kv| kv.mod_revision())
        .collect();
    mods.sort();
    assert_eq!(mods, (2..=201).collect::<Vec<i64>>());
}

#[tokio::test]
async fn status_members_and_alarms() {
    let s = Server::e2d();
    let mut c = connect(&s).await;
    c.put("k", "v", None).await.unwrap();
    let status = c.status().await.unwrap();
    let header = status.header().expect("header");
    assert_eq!(header.revision(), 2);
    assert_ne!(header.member_id(), 0);
    assert_ne!(header.cluster_id(), 0);
    assert_eq!(status.leader(), header.member_id());
    assert!(status.version().starts_with("3.5."), "{}", status.version());
    assert!(status.db_size() > 0);
    assert!(status.raft_index() > 0);
    assert!(status.raft_term() > 0);
    assert!(status.errors().is_empty(), "{:?}", status.errors());
    assert!(!status.is_learner());

    let members = c.member_list().await.unwrap();
    assert_eq!(members.members().len(), 1);
    let m = &members.members()[0];
    assert_eq!(m.id(), header.member_id());
    assert_eq!(m.client_urls(), [s.url()]);

    let alarms = c
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .unwrap();
    assert!(alarms.alarms().is_empty());
}

#[tokio::test]
async fn defragment_and_move_leader_answer_without_a_header() {
    // etcd leaves these two headers empty, and clients (the etcd-client
    // crate's own tests among them) rely on it.
    let s = Server::e2d();
    let mut c = connect(&s).await;
    let defragmented = c.defragment().await.unwrap();
    assert!(defragmented.header().is_none(), "{defragmented:?}");
    let member_id = c
        .status()
        .await
        .unwrap()
        .header()
        .expect("header")
        .member_id();
    let moved = c.move_leader(member_id).await.unwrap();
    assert!(moved.header().is_none(), "{moved:?}");
}

#[tokio::test]
async fn a_watch_goes_on_after_the_client_sends_its_last_request() {
    // etcd keeps a stream's watchers when the client closes its side of
    // the stream; only the client's end of the call ends them. Both
    // servers are asked the same.
    let (e2d, etcd) = Server::e2d_and_etcd();
    for s in [&e2d, &etcd] {
        let mut c = connect(s).await;
        let before = c.put("k", "before", None).await.unwrap();
        let from = WatchOptions::new().with_start_revision(rev(before.header()) + 1);
        let stream = c.watch("k", Some(from)).await.unwrap();
        let (requests, mut responses) = stream.split();
        drop(requests);
        c.put("k", "after", None).await.unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let resp = responses.message().await.unwrap().expect("stream open");
                if !resp.events().is_empty() {
                    return resp;
                }
            }
        })
        .await
        .expect("the put's event in time");
        assert_eq!(resp.events()[0].kv().unwrap().value(), b"after");
    }
}

//! etcd's HTTP/JSON gateway (`POST /v3/...`), side by side with a real
//! etcd: the same curl calls to both, the answers compared as JSON without
//! `cluster_id`, `member_id` and `raft_term` (which legitimately differ).
//! Both servers start fresh and take the same writes, so revisions match.
//!
//! etcd 3.4 (Debian's) and 3.5 write the same JSON; they differ in what
//! they serve: 3.4 has no `/v3/auth/status`, and answers Alarm with no
//! header (3.5 fills it, as e2d does), so neither is compared here.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use e2d_tests::{normalize_json, Server};
use serde_json::{json, Value};

struct Pair {
    e2d: Server,
    etcd: Server,
}

fn pair() -> Pair {
    let (e2d, etcd) = Server::e2d_and_etcd();
    Pair { e2d, etcd }
}

/// An HTTP answer: status, content type and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The JSON body without the ids and terms that differ between servers.
    #[track_caller]
    fn normalized(&self) -> Value {
        let mut value = self.json();
        normalize_json(&mut value);
        value
    }
}

const STATUS_MARK: &str = "\n--status ";

/// `curl -X method url+path -d body`, as a user of etcd's gateway would.
fn curl(server: &Server, method: &str, path: &str, body: Option<&str>) -> Answer {
    let mut command = Command::new("curl");
    command.args(["-s", "-S", "--max-time", "10", "-X", method]);
    if let Some(body) = body {
        command.args(["--data-binary", body]);
    }
    command.args([
        "-w",
        &format!("{STATUS_MARK}%{{http_code}} %{{content_type}}"),
        &format!("{}{path}", server.url()),
    ]);
    let out = command.output().expect("curl runs");
    assert!(out.status.success(), "curl failed: {out:?}");
    let text = String::from_utf8(out.stdout).expect("UTF-8 answer");
    let (body, tail) = text.rsplit_once(STATUS_MARK).expect("status line");
    let (status, content_type) = tail.split_once(' ').unwrap_or((tail, ""));
    Answer {
        status: status.parse().expect("HTTP status"),
        content_type: content_type.to_string(),
        body: body.to_string(),
    }
}

fn post(server: &Server, path: &str, body: &str) -> Answer {
    curl(server, "POST", path, Some(body))
}

impl Pair {
    /// POSTs `body` to both; asserts the same status and normalized JSON
    /// and returns e2d's answer.
    #[track_caller]
    fn same(&self, path: &str, body: &str) -> Answer {
        let (e2d, etcd) = (post(&self.e2d, path, body), post(&self.etcd, path, body));
        assert_eq!(
            (e2d.status, e2d.normalized()),
            (etcd.status, etcd.normalized()),
            "POST {path} {body}: e2d (left) and etcd (right) differ"
        );
        e2d
    }

    /// POSTs `body` to both; returns both answers.
    fn both(&self, path: &str, body: &str) -> (Answer, Answer) {
        (post(&self.e2d, path, body), post(&self.etcd, path, body))
    }
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The keys of a JSON object, and recursively of its objects, with the
/// JSON type of each value.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

/// Asserts every field etcd answers is in e2d's answer with the same
/// type (e2d answers etcd 3.5's fields, a superset of 3.4's).
#[track_caller]
fn has_etcd_shape(e2d: &Value, etcd: &Value, at: &str) {
    match (e2d, etcd) {
        (Value::Object(ours), Value::Object(theirs)) => {
            for (key, value) in theirs {
                let Some(mine) = ours.get(key) else {
                    panic!("{at}: e2d has no `{key}` (e2d {e2d}, etcd {etcd})");
                };
                has_etcd_shape(mine, value, &format!("{at}.{key}"));
            }
        }
        (Value::Array(ours), Value::Array(theirs)) => {
            assert_eq!(ours.len(), theirs.len(), "{at}: lengths differ");
            for (mine, value) in ours.iter().zip(theirs) {
                has_etcd_shape(mine, value, at);
            }
        }
        _ => assert_eq!(shape(e2d), shape(etcd), "{at}: types differ"),
    }
}

#[test]
fn kv_put_range_delete_txn_and_compaction_answer_as_etcd() {
    let p = pair();
    let (foo, bar, baz) = (b64("foo"), b64("bar"), b64("baz"));

    let put = p.same(
        "/v3/kv/put",
        &format!(r#"{{"key":"{foo}","value":"{bar}"}}"#),
    );
    assert_eq!(put.status, 200);
    assert_eq!(put.content_type, "application/json");
    assert_eq!(put.normalized(), json!({"header": {"revision": "2"}}));
    p.same(
        "/v3/kv/put",
        &format!(
            r#"{{"key":"{}","value":"{baz}","prev_kv":true}}"#,
            b64("fop")
        ),
    );

    let range = p.same("/v3/kv/range", &format!(r#"{{"key":"{foo}"}}"#));
    assert_eq!(
        range.normalized(),
        json!({"header": {"revision": "3"}, "count": "1", "kvs": [{
            "key": foo, "value": bar, "create_revision": "2", "mod_revision": "2", "version": "1"
        }]})
    );
    // camelCase names, enums by name or number, numbers as strings or not,
    // unknown fields: all read as etcd reads them.
    p.same(
        "/v3/kv/range",
        &format!(
            r#"{{"key":"{foo}","rangeEnd":"{}","sortOrder":"DESCEND","sort_target":1,"limit":"1","keys_only":true,"no_such_field":7}}"#,
            b64("g")
        ),
    );
    p.same(
        "/v3/kv/range",
        &format!(r#"{{"key":"{foo}","range_end":"AA==","count_only":true}}"#),
    );
    // Every key: the body may be empty.
    p.same("/v3/kv/range", r#"{"key":"AA==","range_end":"AA=="}"#);
    p.same("/v3/kv/range", "");

    let txn = p.same(
        "/v3/kv/txn",
        &format!(
            r#"{{"compare":[{{"key":"{foo}","result":"EQUAL","target":"VALUE","value":"{bar}"}}],
                "success":[{{"requestPut":{{"key":"{foo}","value":"{baz}","prev_kv":true}}}},
                           {{"request_range":{{"key":"{foo}"}}}}],
                "failure":[]}}"#
        ),
    );
    assert_eq!(txn.json()["succeeded"], json!(true));
    let failed = p.same(
        "/v3/kv/txn",
        &format!(
            r#"{{"compare":[{{"key":"{foo}","result":2,"target":"MOD","mod_revision":"1"}}],
                "failure":[{{"request_delete_range":{{"key":"{foo}","prev_kv":true}}}}]}}"#
        ),
    );
    assert_eq!(failed.json().get("succeeded"), None, "false is left out");

    p.same(
        "/v3/kv/deleterange",
        &format!(r#"{{"key":"{}","prev_kv":true}}"#, b64("fop")),
    );
    p.same(
        "/v3/kv/deleterange",
        &format!(r#"{{"key":"{}"}}"#, b64("none")),
    );

    p.same("/v3/kv/compaction", r#"{"revision":"3"}"#);
    let compacted = p.same(
        "/v3/kv/range",
        &format!(r#"{{"key":"{foo}","revision":2}}"#),
    );
    assert_eq!(compacted.status, 400);
    assert_eq!(
        compacted.json(),
        json!({
            "error": "etcdserver: mvcc: required revision has been compacted",
            "code": 11,
            "message": "etcdserver: mvcc: required revision has been compacted"
        })
    );
    p.same("/v3/kv/compaction", r#"{"revision":"3"}"#);
    p.same("/v3/kv/compaction", r#"{"revision":"100"}"#);
    // `/v3beta/` is the older name of `/v3/`.
    p.same("/v3beta/kv/range", &format!(r#"{{"key":"{foo}"}}"#));
}

#[test]
fn errors_answer_etcds_json_and_http_status() {
    let p = pair();
    let empty_key = p.same("/v3/kv/put", r#"{"key":"","value":"YQ=="}"#);
    assert_eq!(empty_key.status, 400);
    assert_eq!(
        empty_key.json(),
        json!({"error": "etcdserver: key is not provided", "code": 3,
               "message": "etcdserver: key is not provided"})
    );
    let no_lease = p.same("/v3/kv/put", r#"{"key":"YQ==","lease":"123"}"#);
    assert_eq!(no_lease.status, 404);
    p.same("/v3/lease/revoke", r#"{"ID":"123"}"#);
    let (e2d, etcd) = (
        post(&p.e2d, "/v3/cluster/member/promote", r#"{"ID":"1"}"#),
        post(&p.etcd, "/v3/cluster/member/promote", r#"{"ID":"1"}"#),
    );
    assert_eq!((e2d.status, e2d.json()), (etcd.status, etcd.json()));
    let (e2d, etcd) = p.both("/v3/maintenance/transfer-leadership", r#"{"targetID":"1"}"#);
    assert_eq!(e2d.status, 412);
    assert_eq!((e2d.status, e2d.json()), (etcd.status, etcd.json()));

    // What is not JSON of the message's shape: 400 and InvalidArgument;
    // the parser's words differ (Go's and serde's).
    for body in [
        r#"{"key":"#,
        r#"{"key":"!!"}"#,
        r#"{"limit":"abc"}"#,
        r#"{"sort_order":"WHAT"}"#,
    ] {
        let (e2d, etcd) = p.both("/v3/kv/range", body);
        assert_eq!(
            (e2d.status, e2d.json()["code"].clone()),
            (400, json!(3)),
            "{body}: {e2d:?}"
        );
        assert_eq!(
            (etcd.status, etcd.json()["code"].clone()),
            (400, json!(3)),
            "{body}: {etcd:?}"
        );
    }

    // Unknown paths and methods.
    for (method, path) in [
        ("POST", "/v3/kv/rangex"),
        ("GET", "/v3/kv/range"),
        ("OPTIONS", "/v3/kv/range"),
    ] {
        let (e2d, etcd) = (
            curl(&p.e2d, method, path, None),
            curl(&p.etcd, method, path, None),
        );
        assert_eq!(
            (e2d.status, &e2d.body),
            (etcd.status, &etcd.body),
            "{method} {path}"
        );
    }
}

#[test]
fn leases_grant_live_and_go_as_in_etcd() {
    let p = pair();
    let grant = p.same("/v3/lease/grant", r#"{"TTL":"60","ID":"77"}"#);
    assert_eq!(
        grant.normalized(),
        json!({"header": {"revision": "1"}, "ID": "77", "TTL": "60"})
    );
    p.same("/v3/lease/grant", r#"{"TTL":30,"ID":78}"#);
    p.same(
        "/v3/kv/put",
        &format!(r#"{{"key":"{}","lease":"77"}}"#, b64("leased")),
    );
    let duplicate = p.same("/v3/lease/grant", r#"{"TTL":"60","ID":"77"}"#);
    assert_eq!(
        duplicate.json()["message"],
        json!("etcdserver: lease already exists")
    );

    // The TTL left may be a second apart.
    for path in ["/v3/lease/timetolive", "/v3/kv/lease/timetolive"] {
        let (e2d, etcd) = p.both(path, r#"{"ID":"77","keys":true}"#);
        let (mut e2d, mut etcd) = (e2d.normalized(), etcd.normalized());
        for answer in [&mut e2d, &mut etcd] {
            let ttl: i64 = answer["TTL"].as_str().unwrap().parse().unwrap();
            assert!((58..=60).contains(&ttl), "{answer}");
            answer["TTL"] = json!("left");
        }
        assert_eq!(e2d, etcd);
        assert_eq!(e2d["keys"], json!([b64("leased")]));
        assert_eq!(e2d["grantedTTL"], json!("60"));
    }
    for path in ["/v3/lease/leases", "/v3/kv/lease/leases"] {
        let (e2d, etcd) = p.both(path, "{}");
        let ids = |answer: &Answer| {
            let mut ids: Vec<String> = answer.json()["leases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|lease| lease["ID"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&e2d), ["77", "78"]);
        assert_eq!(ids(&e2d), ids(&etcd));
    }
    // A keep-alive through the gateway is a stream of one answer.
    let keep_alive = p.same_stream("/v3/lease/keepalive", r#"{"ID":"77"}"#);
    assert_eq!(
        keep_alive,
        vec![json!({"result": {"header": {"revision": "2"}, "ID": "77", "TTL": "60"}})]
    );
    p.same_stream("/v3/lease/keepalive", r#"{"ID":"999"}"#);

    p.same("/v3/lease/revoke", r#"{"ID":"77"}"#);
    p.same("/v3/kv/lease/revoke", r#"{"ID":78}"#);
    let gone = p.same("/v3/kv/lease/revoke", r#"{"ID":"77"}"#);
    assert_eq!(gone.status, 404);
    p.same("/v3/lease/timetolive", r#"{"ID":"77"}"#);
    let range = p.same("/v3/kv/range", &format!(r#"{{"key":"{}"}}"#, b64("leased")));
    assert_eq!(range.normalized(), json!({"header": {"revision": "3"}}));
}

impl Pair {
    /// POSTs `body` to a streaming path that ends on its own; asserts both
    /// answer the same lines and returns them.
    #[track_caller]
    fn same_stream(&self, path: &str, body: &str) -> Vec<Value> {
        let lines = |server: &Server| -> Vec<Value> {
            let answer = post(server, path, body);
            assert_eq!(answer.status, 200, "{answer:?}");
            answer
                .body
                .lines()
                .map(|line| {
                    let mut value: Value = serde_json::from_str(line).expect("a JSON line");
                    normalize_json(&mut value);
                    value
                })
                .collect()
        };
        let (e2d, etcd) = (lines(&self.e2d), lines(&self.etcd));
        assert_eq!(e2d, etcd, "POST {path} {body}");
        e2d
    }
}

#[test]
fn maintenance_and_cluster_answer_etcds_shape() {
    let p = pair();
    // e2d's dbSizeInUse counts the keys and values stored: 0, and so left
    // out of the JSON, until there is one.
    p.both("/v3/kv/put", r#"{"key":"YQ==","value":"YQ=="}"#);
    let (e2d, etcd) = p.both("/v3/maintenance/status", "{}");
    assert_eq!((e2d.status, etcd.status), (200, 200));
    has_etcd_shape(&e2d.json(), &etcd.json(), "status");
    assert_eq!(
        e2d.json()["leader"],
        e2d.json()["header"]["member_id"],
        "a member of one leads"
    );

    let (e2d, etcd) = p.both("/v3/cluster/member/list", "{}");
    assert_eq!((e2d.status, etcd.status), (200, 200));
    has_etcd_shape(&e2d.json(), &etcd.json(), "member list");
    let member = &e2d.json()["members"][0];
    assert_eq!(member["clientURLs"], json!([p.e2d.url()]));

    // `/v3/maintenance/hash` is Hash in etcd (HashKV shares the path).
    let (e2d, etcd) = p.both("/v3/maintenance/hash", "{}");
    has_etcd_shape(&e2d.json(), &etcd.json(), "hash");
    assert!(e2d.json()["hash"].is_u64());
    assert_eq!(e2d.json().get("compact_revision"), None);

    p.same("/v3/maintenance/defragment", "{}");

    // A snapshot streams its bytes as base64 in `{"result": ...}` lines.
    let snapshot = post(&p.e2d, "/v3/maintenance/snapshot", "{}");
    assert_eq!(snapshot.status, 200);
    let first: Value = serde_json::from_str(snapshot.body.lines().next().unwrap()).unwrap();
    assert!(first["result"]["blob"].is_string(), "{first}");
}

/// A `curl -N` whose output is read line by line.
struct CurlStream {
    child: Child,
    lines: Receiver<String>,
}

impl CurlStream {
    fn start(server: &Server, path: &str, body: &str) -> CurlStream {
        let mut child = Command::new("curl")
            .args([
                "-s",
                "-N",
                "--data-binary",
                body,
                &format!("{}{path}", server.url()),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl runs");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        CurlStream { child, lines }
    }

    /// The next line as normalized JSON.
    #[track_caller]
    fn next(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a line within 10 s");
        let mut value: Value = serde_json::from_str(&line).expect("a JSON line");
        normalize_json(&mut value);
        value
    }
}

impl Drop for CurlStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_watch_with_curl_sees_the_puts_made_after_it_started() {
    let p = pair();
    let (key, one) = (b64("watched"), b64("1"));
    let create = format!(r#"{{"create_request":{{"key":"{key}","prev_kv":true}}}}"#);
    let watches = [
        CurlStream::start(&p.e2d, "/v3/watch", &create),
        CurlStream::start(&p.etcd, "/v3/watch", &create),
    ];
    let created = watches.each(CurlStream::next);
    assert_eq!(
        created[0],
        json!({"result": {"header": {"revision": "1"}, "created": true}})
    );
    assert_eq!(created[0], created[1]);

    // The request body has ended: the watch goes on, as etcd's does.
    p.same(
        "/v3/kv/put",
        &format!(r#"{{"key":"{key}","value":"{one}"}}"#),
    );
    p.same("/v3/kv/deleterange", &format!(r#"{{"key":"{key}"}}"#));
    let put = watches.each(CurlStream::next);
    assert_eq!(put[0], put[1]);
    assert_eq!(
        put[0],
        json!({"result": {"header": {"revision": "2"}, "events": [{"kv": {
            "key": key, "value": one, "create_revision": "2", "mod_revision": "2", "version": "1"
        }}]}})
    );
    let deleted = watches.each(CurlStream::next);
    assert_eq!(deleted[0], deleted[1]);
    assert_eq!(deleted[0]["result"]["events"][0]["type"], json!("DELETE"));

    // Several requests in one body: a second watcher from revision 1, with
    // a filter, named by the client.
    let two = format!(
        r#"{{"create_request":{{"key":"{key}","watch_id":"5","start_revision":"1","filters":["NODELETE"]}}}}
           {{"createRequest":{{"key":"{}"}}}}"#,
        b64("other")
    );
    let watches = [
        CurlStream::start(&p.e2d, "/v3/watch", &two),
        CurlStream::start(&p.etcd, "/v3/watch", &two),
    ];
    // Two created answers and the put at revision 2 (the delete is
    // filtered), in an order that depends on timing.
    let answers = watches.each(|watch| {
        let mut answers: Vec<String> = (0..3).map(|_| watch.next().to_string()).collect();
        answers.sort();
        answers
    });
    assert_eq!(answers[0], answers[1]);
    assert_eq!(
        answers[0]
            .iter()
            .filter(|a| a.contains("\"created\":true"))
            .count(),
        2
    );
    assert!(answers[0]
        .iter()
        .any(|a| a.contains("\"watch_id\":\"5\"") && a.contains("events")));
    watches.each(|watch| {
        assert!(watch
            .lines
            .recv_timeout(Duration::from_millis(300))
            .is_err())
    });
}

trait Each<T> {
    fn each<R>(&self, f: impl Fn(&T) -> R) -> [R; 2];
}

impl<T> Each<T> for [T; 2] {
    fn each<R>(&self, f: impl Fn(&T) -> R) -> [R; 2] {
        [f(&self[0]), f(&self[1])]
    }
}

#[test]
fn a_first_watch_request_that_is_not_json_fails_the_call() {
    let p = pair();
    let (e2d, etcd) = p.both("/v3/watch", r#"{"create_request":{"key":"YQ=="}"#);
    assert_eq!(
        (e2d.status, e2d.json()["code"].clone()),
        (500, json!(2)),
        "{e2d:?}"
    );
    assert_eq!(
        (etcd.status, etcd.json()["code"].clone()),
        (500, json!(2)),
        "{etcd:?}"
    );
}

#[test]
fn request_bodies_are_bounded_by_max_request_bytes() {
    let e2d = Server::e2d_with(&["--max-request-bytes", "1024"]);
    // Over the request limit but within gRPC's allowance: the service
    // refuses it, as etcd's does.
    let value = b64(&"v".repeat(2048));
    let large = post(
        &e2d,
        "/v3/kv/put",
        &format!(r#"{{"key":"YQ==","value":"{value}"}}"#),
    );
    assert_eq!(large.status, 400, "{large:?}");
    assert_eq!(
        large.json()["message"],
        json!("etcdserver: request is too large")
    );
    // Beyond what the gRPC port would take at all: refused unread.
    let file = e2d.scratch_dir().join("huge.json");
    let huge = format!(
        r#"{{"key":"YQ==","value":"{}"}}"#,
        b64(&"v".repeat(3 << 20))
    );
    std::fs::write(&file, huge).unwrap();
    let refused = post(&e2d, "/v3/kv/put", &format!("@{}", file.display()));
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.json()["code"], json!(8));
    let range = post(&e2d, "/v3/kv/range", r#"{"key":"YQ=="}"#);
    assert_eq!(range.json().get("kvs"), None, "nothing was written");
}

#[test]
fn locks_and_elections_answer_as_etcd() {
    let p = pair();
    let no_leader = p.same(
        "/v3/election/leader",
        &format!(r#"{{"name":"{}"}}"#, b64("e")),
    );
    assert_ne!(no_leader.status, 200, "{no_leader:?}");
    for server in [&p.e2d, &p.etcd] {
        let lease = post(server, "/v3/lease/grant", r#"{"TTL":"60"}"#).json()["ID"]
            .as_str()
            .expect("a lease id")
            .to_string();
        let locked = post(
            server,
            "/v3/lock/lock",
            &format!(r#"{{"name":"{}","lease":"{lease}"}}"#, b64("l")),
        );
        assert_eq!(locked.status, 200, "{locked:?}");
        let key = locked.json()["key"].as_str().expect("a key").to_string();
        let lease_hex = format!("{:x}", lease.parse::<i64>().unwrap());
        assert_eq!(key, b64(&format!("l/{lease_hex}")), "{locked:?}");
        let campaign = post(
            server,
            "/v3/election/campaign",
            &format!(
                r#"{{"name":"{}","lease":"{lease}","value":"{}"}}"#,
                b64("e"),
                b64("v")
            ),
        );
        assert_eq!(campaign.status, 200, "{campaign:?}");
        let leader = post(
            server,
            "/v3/election/leader",
            &format!(r#"{{"name":"{}"}}"#, b64("e")),
        );
        assert_eq!(leader.json()["kv"]["value"], json!(b64("v")), "{leader:?}");
        let unlocked = post(server, "/v3/lock/unlock", &format!(r#"{{"key":"{key}"}}"#));
        assert_eq!(unlocked.status, 200, "{unlocked:?}");
    }
}

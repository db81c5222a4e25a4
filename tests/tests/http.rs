//! The HTTP endpoints e2d serves on the client port: /health, /livez,
//! /readyz, /version, /metrics.

use e2d_tests::Server;

#[test]
fn health_is_true() {
    let s = Server::e2d();
    let resp = s.http_get("/health");
    assert_eq!(resp.status, 200, "{resp:?}");
    let json = resp.json();
    assert_eq!(json["health"], "true", "{json}");
}

#[test]
fn livez_and_readyz_answer_ok() {
    let s = Server::e2d();
    for path in ["/livez", "/readyz"] {
        let resp = s.http_get(path);
        assert_eq!(resp.status, 200, "{path}: {resp:?}");
        assert_eq!(resp.body.trim(), "ok", "{path}: {resp:?}");
    }
}

/// Parses "3.5.17" into (3, 5, 17).
fn semver(text: &str) -> (u64, u64, u64) {
    let parts: Vec<u64> = text
        .split(['.', '-', '+'])
        .take(3)
        .map(|p| p.parse().unwrap_or_else(|_| panic!("bad version {text:?}")))
        .collect();
    assert_eq!(parts.len(), 3, "bad version {text:?}");
    (parts[0], parts[1], parts[2])
}

#[test]
fn version_is_a_recent_etcd() {
    let s = Server::e2d();
    let resp = s.http_get("/version");
    assert_eq!(resp.status, 200, "{resp:?}");
    let json = resp.json();
    let server = json["etcdserver"].as_str().expect("etcdserver field");
    let cluster = json["etcdcluster"].as_str().expect("etcdcluster field");
    assert!(semver(server) >= (3, 5, 13), "etcdserver {server} < 3.5.13");
    let (major, minor, _) = semver(cluster);
    assert_eq!((major, minor), (3, 5), "etcdcluster {cluster}");
    // The gRPC status reports the same server version.
    let status = s.etcdctl(&["endpoint", "status", "-w", "json"]).json();
    assert_eq!(status[0]["Status"]["version"], server, "{status}");
}

fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        let bare = key.split('{').next()?;
        (bare == name).then(|| value.parse().ok())?
    })
}

#[test]
fn metrics_track_the_revision() {
    let s = Server::e2d();
    let before = s.http_get("/metrics");
    assert_eq!(before.status, 200, "{before:?}");
    let content_type = before.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain"),
        "content-type {content_type:?}"
    );
    assert_eq!(
        metric(&before.body, "etcd_debugging_mvcc_current_revision"),
        Some(1.0),
        "metrics:\n{}",
        before.body
    );

    for i in 0..3 {
        s.etcdctl(&["put", &format!("k{i}"), "v"]).ok();
    }
    let after = s.http_get("/metrics");
    assert_eq!(
        metric(&after.body, "etcd_debugging_mvcc_current_revision"),
        Some(4.0),
        "metrics:\n{}",
        after.body
    );
}

#[test]
fn unknown_path_is_not_found() {
    // etcd answers unknown paths with 404, so probes pointed at a wrong
    // path (say /healthz) fail instead of passing by accident.
    let s = Server::e2d();
    for path in ["/no-such-endpoint", "/healthz"] {
        let resp = s.http_get(path);
        assert_eq!(resp.status, 404, "GET {path}: {resp:?}");
    }
}

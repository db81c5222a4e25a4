//! `/metrics` under etcd's names: every series etcd's Grafana dashboard
//! and the etcd alerts of kube-prometheus (etcd's `contrib/mixin`) read is
//! there with etcd's type, and the values move with what happens: gRPC
//! calls with their codes, proposals, leadership, peers' round trips.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use e2d_tests::cluster::Cluster;
use e2d_tests::{http_get, Server};

/// Every metric etcd's mixin (`contrib/mixin/mixin.libsonnet`: the
/// Grafana dashboard and the alerts) queries, with its type. The
/// histograms are queried through `_bucket`.
const DASHBOARD_AND_ALERTS: &[(&str, &str)] = &[
    ("etcd_disk_backend_commit_duration_seconds", "histogram"),
    ("etcd_disk_wal_fsync_duration_seconds", "histogram"),
    ("etcd_mvcc_db_total_size_in_bytes", "gauge"),
    ("etcd_network_client_grpc_received_bytes_total", "counter"),
    ("etcd_network_client_grpc_sent_bytes_total", "counter"),
    ("etcd_network_peer_received_bytes_total", "counter"),
    ("etcd_network_peer_round_trip_time_seconds", "histogram"),
    ("etcd_network_peer_sent_bytes_total", "counter"),
    ("etcd_network_peer_sent_failures_total", "counter"),
    ("etcd_server_has_leader", "gauge"),
    ("etcd_server_leader_changes_seen_total", "counter"),
    ("etcd_server_proposals_applied_total", "gauge"),
    ("etcd_server_proposals_committed_total", "gauge"),
    ("etcd_server_proposals_failed_total", "counter"),
    ("etcd_server_proposals_pending", "gauge"),
    ("etcd_server_quota_backend_bytes", "gauge"),
    ("grpc_server_handled_total", "counter"),
    ("grpc_server_handling_seconds", "histogram"),
    ("grpc_server_started_total", "counter"),
    ("process_resident_memory_bytes", "gauge"),
];

/// The other etcd metrics e2d exports, with etcd's types.
const MORE_OF_ETCDS: &[(&str, &str)] = &[
    ("etcd_server_is_leader", "gauge"),
    ("etcd_server_is_learner", "gauge"),
    ("etcd_server_slow_apply_total", "counter"),
    ("etcd_server_version", "gauge"),
    ("etcd_server_id", "gauge"),
    ("etcd_mvcc_db_total_size_in_use_in_bytes", "gauge"),
    ("etcd_debugging_mvcc_keys_total", "gauge"),
    ("etcd_debugging_mvcc_current_revision", "gauge"),
    ("etcd_debugging_mvcc_compact_revision", "gauge"),
    ("etcd_debugging_mvcc_watcher_total", "gauge"),
    ("etcd_debugging_mvcc_watch_stream_total", "gauge"),
    ("process_cpu_seconds_total", "counter"),
    ("process_open_fds", "gauge"),
    ("process_max_fds", "gauge"),
    ("process_start_time_seconds", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
];

/// e2d's own.
const E2DS_OWN: &[(&str, &str)] = &[
    ("e2d_server_requests_refused_total", "counter"),
    ("e2d_gossip_members", "gauge"),
    ("e2d_manager_decisions_total", "counter"),
    ("e2d_backup_failures_total", "counter"),
    ("e2d_backup_last_size_bytes", "gauge"),
    ("e2d_backup_last_timestamp_seconds", "gauge"),
    ("e2d_backup_last_age_seconds", "gauge"),
];

/// One scrape: each family's HELP and TYPE, and each series' value.
struct Scrape {
    text: String,
    types: BTreeMap<String, String>,
    helps: BTreeMap<String, String>,
    /// `name{labels}` (labels as written) to value.
    series: BTreeMap<String, f64>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let (mut types, mut helps, mut series) = Default::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                BTreeMap::insert(&mut types, name.to_string(), kind.to_string());
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                BTreeMap::insert(&mut helps, name.to_string(), help.to_string());
            } else if let Some((key, value)) = line.rsplit_once(' ') {
                let value = match value {
                    "NaN" => f64::NAN,
                    "+Inf" => f64::INFINITY,
                    v => v.parse().unwrap_or_else(|_| panic!("bad sample {line:?}")),
                };
                BTreeMap::insert(&mut series, key.to_string(), value);
            }
        }
        Scrape {
            text,
            types,
            helps,
            series,
        }
    }

    fn of(port: u16) -> Scrape {
        let response = http_get(port, "/metrics").expect("GET /metrics");
        assert_eq!(response.status, 200, "{response:?}");
        Scrape::parse(response.body)
    }

    /// The value of one series, written as the exposition writes it
    /// (labels in name order).
    fn value(&self, series: &str) -> Option<f64> {
        self.series.get(series).copied()
    }

    /// The sum of a family's series whose labels include every one of
    /// `labels` (`name="value"`).
    fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.series
            .iter()
            .filter(|(key, _)| {
                let (bare, rest) = key.split_once('{').unwrap_or((key, ""));
                bare == name && labels.iter().all(|l| rest.contains(l))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Checks each family is there with its HELP and `kind`, and has a
    /// series (`_bucket` ones for a histogram).
    fn assert_families(&self, families: &[(&str, &str)]) {
        for (name, kind) in families {
            assert_eq!(
                self.types.get(*name).map(String::as_str),
                Some(*kind),
                "TYPE of {name}:\n{}",
                self.text
            );
            assert!(
                self.helps.get(*name).is_some_and(|h| !h.is_empty()),
                "HELP of {name}"
            );
            let sample = match *kind {
                "histogram" => format!("{name}_bucket"),
                _ => name.to_string(),
            };
            assert!(
                self.series
                    .keys()
                    .any(|k| k.split('{').next() == Some(sample.as_str())),
                "no series of {sample}"
            );
        }
    }
}

#[test]
fn a_scrape_after_traffic_has_what_the_dashboard_and_alerts_read() {
    let s = Server::e2d();
    s.etcdctl(&["put", "k", "v"]).ok();
    s.etcdctl(&["get", "k"]).ok();
    s.etcdctl(&["get", "k", "--consistency=s"]).ok();
    // Refused: a lease that does not exist (NotFound).
    assert!(!s.etcdctl(&["lease", "revoke", "1234"]).success());
    let scrape = Scrape::of(s.client_port());
    // A lone member has no peers: their series come with them (as in
    // etcd), checked in a cluster below.
    let without_peers: Vec<_> = DASHBOARD_AND_ALERTS
        .iter()
        .copied()
        .filter(|(name, _)| !name.starts_with("etcd_network_peer_"))
        .collect();
    scrape.assert_families(&without_peers);
    scrape.assert_families(MORE_OF_ETCDS);
    scrape.assert_families(E2DS_OWN);

    let range = r#"grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary""#;
    assert_eq!(
        scrape.value(&format!(
            r#"grpc_server_handled_total{{grpc_code="OK",{range}}}"#
        )),
        Some(2.0),
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.value(&format!("grpc_server_started_total{{{range}}}")),
        Some(2.0)
    );
    assert_eq!(
        scrape.value(&format!("grpc_server_handling_seconds_count{{{range}}}")),
        Some(2.0)
    );
    let revoke = r#"grpc_method="LeaseRevoke",grpc_service="etcdserverpb.Lease",grpc_type="unary""#;
    assert_eq!(
        scrape.value(&format!(
            r#"grpc_server_handled_total{{grpc_code="NotFound",{revoke}}}"#
        )),
        Some(1.0)
    );
    // As go-grpc-prometheus: every code of every method from the start.
    assert_eq!(
        scrape.value(&format!(
            r#"grpc_server_handled_total{{grpc_code="Unavailable",{range}}}"#
        )),
        Some(0.0)
    );
    assert!(scrape.value("etcd_network_client_grpc_sent_bytes_total") > Some(0.0));
    assert!(scrape.value("etcd_network_client_grpc_received_bytes_total") > Some(0.0));
    assert_eq!(scrape.value("etcd_server_has_leader"), Some(1.0));
    assert_eq!(scrape.value("etcd_server_is_leader"), Some(1.0));
    assert_eq!(
        scrape.value("etcd_server_leader_changes_seen_total"),
        Some(1.0)
    );
    assert!(scrape.value("etcd_server_proposals_committed_total") > Some(0.0));
    assert!(scrape.value("etcd_server_proposals_applied_total") > Some(0.0));
    assert_eq!(scrape.value("etcd_server_proposals_pending"), Some(0.0));
    assert!(scrape.value("etcd_disk_wal_fsync_duration_seconds_count") > Some(0.0));
    assert!(scrape.value("etcd_disk_backend_commit_duration_seconds_count") > Some(0.0));
    assert_eq!(scrape.value("etcd_debugging_mvcc_keys_total"), Some(1.0));
    assert!(scrape.value("process_resident_memory_bytes") > Some(1e6));
    assert!(scrape.value("process_open_fds") > Some(0.0));
    assert!(scrape.value("process_cpu_seconds_total") > Some(0.0));
    // The etcd version e2d answers as, and its member id in hex.
    assert_eq!(scrape.sum("etcd_server_version", &[]), 1.0);
    assert_eq!(scrape.sum("etcd_server_id", &[]), 1.0);
    // etcd's buckets: the WAL fsync's from 1 ms doubling to 8.192 s.
    assert!(scrape
        .series
        .contains_key(r#"etcd_disk_wal_fsync_duration_seconds_bucket{le="8.192"}"#));
    assert!(scrape
        .series
        .contains_key(r#"etcd_disk_backend_commit_duration_seconds_bucket{le="0.001"}"#));
}

/// Waits up to `within` for `check` on a fresh scrape of `port`.
fn eventually(port: u16, within: Duration, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + within;
    loop {
        let scrape = Scrape::of(port);
        if check(&scrape) {
            return scrape;
        }
        assert!(Instant::now() < deadline, "{what}:\n{}", scrape.text);
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_leader_kill_is_a_leader_change_on_the_survivors() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    cluster.put_eventually(survivors[0], "k", "v");
    let leader_id = cluster.member_id(leader);
    let before: Vec<f64> = survivors
        .iter()
        .map(|&i| {
            let port = cluster.members[i].client_port;
            // Peers probe each other at once, then every 4 s; raft traffic
            // flows both ways.
            let scrape = eventually(port, Duration::from_secs(10), "no round trip", |s| {
                s.sum("etcd_network_peer_round_trip_time_seconds_count", &[]) >= 2.0
            });
            assert!(scrape.sum("etcd_network_peer_sent_bytes_total", &[]) > 0.0);
            assert!(
                scrape.sum(
                    "etcd_network_peer_received_bytes_total",
                    &[&format!(r#"From="{leader_id}""#)]
                ) > 0.0,
                "{}",
                scrape.text
            );
            assert_eq!(scrape.value("etcd_server_is_leader"), Some(0.0));
            scrape
                .value("etcd_server_leader_changes_seen_total")
                .expect("leader changes")
        })
        .collect();
    assert!(before.iter().all(|n| *n >= 1.0), "{before:?}");

    cluster.kill9(leader);
    cluster.wait_for_leader(Some(leader));
    for (&i, before) in survivors.iter().zip(before) {
        let port = cluster.members[i].client_port;
        let scrape = eventually(port, Duration::from_secs(10), "no new leader seen", |s| {
            s.value("etcd_server_leader_changes_seen_total") > Some(before)
                && s.value("etcd_server_has_leader") == Some(1.0)
        });
        assert!(scrape.sum("etcd_server_is_leader", &[]) <= 1.0);
    }
    let is_leader: f64 = survivors
        .iter()
        .map(|&i| Scrape::of(cluster.members[i].client_port).sum("etcd_server_is_leader", &[]))
        .sum();
    assert_eq!(is_leader, 1.0, "one survivor leads");
    // What the new leader still sends the dead member (heartbeats) is
    // dropped and counted.
    let new_leader = cluster.leader();
    let port = cluster.members[new_leader].client_port;
    let scrape = eventually(
        port,
        Duration::from_secs(10),
        "no failed send counted",
        |s| {
            s.sum(
                "etcd_network_peer_sent_failures_total",
                &[&format!(r#"To="{leader_id}""#)],
            ) > 0.0
        },
    );
    scrape.assert_families(DASHBOARD_AND_ALERTS);
}

#[test]
fn etcd_exports_the_same_names_with_the_same_types() {
    let (e2d, etcd) = Server::e2d_and_etcd();
    for server in [&e2d, &etcd] {
        server.etcdctl(&["put", "k", "v"]).ok();
        server.etcdctl(&["get", "k"]).ok();
    }
    let ours = Scrape::of(e2d.client_port());
    let theirs = Scrape::of(etcd.client_port());
    let mut compared = 0;
    for (name, _) in DASHBOARD_AND_ALERTS.iter().chain(MORE_OF_ETCDS) {
        // etcd 3.4 lacks a few: the peer ones on a lone member, and
        // grpc_server_handling_seconds without --metrics extensive.
        let Some(kind) = theirs.types.get(*name) else {
            continue;
        };
        compared += 1;
        assert_eq!(ours.types.get(*name), Some(kind), "TYPE of {name}");
        assert_eq!(
            ours.helps.get(*name),
            theirs.helps.get(*name),
            "HELP of {name}"
        );
    }
    assert!(compared >= 20, "only {compared} names compared");
    // The same series for a Range: labels and their values.
    let range = r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#;
    assert_eq!(ours.value(range), Some(1.0), "{}", ours.text);
    assert_eq!(theirs.value(range), Some(1.0), "{}", theirs.text);
}

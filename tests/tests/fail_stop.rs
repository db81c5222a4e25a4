//! Fail-stop: a member whose data is damaged refuses to start, names the
//! file and says how to recover, and changes nothing on disk; one that
//! finds damage while it serves stops the same way; requests the cluster
//! cannot serve are refused rather than left to hang.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use e2d_tests::cluster::Cluster;
use e2d_tests::Server;
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};

const KEYS: usize = 3000;

async fn connect(url: String) -> Client {
    Client::connect([url.clone()], None)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

async fn put_keys(url: String, count: usize) {
    let mut client = connect(url).await;
    for i in 0..count {
        client
            .put(format!("key-{i:05}"), format!("value-{i}"), None)
            .await
            .expect("put");
    }
}

/// The newest segment of the write-ahead log under `data_dir`.
fn newest_segment(data_dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data_dir.join("wal"))
        .expect("the data dir has a wal/")
        .map(|entry| entry.expect("a dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

/// Changes one byte half way through the written part of the newest
/// segment; returns the file and its damaged bytes.
fn damage_newest_segment(data_dir: &Path) -> (PathBuf, Vec<u8>) {
    let file = newest_segment(data_dir);
    let mut bytes = std::fs::read(&file).expect("read the segment");
    let written = bytes.iter().rposition(|&b| b != 0).expect("records") + 1;
    assert!(written > 100_000, "only {written} bytes written");
    bytes[written / 2] ^= 0x20;
    std::fs::write(&file, &bytes).expect("write the segment");
    (file, bytes)
}

#[track_caller]
fn assert_refusal_names(log: &str, file: &Path) {
    assert!(
        log.contains(&file.display().to_string()) && log.contains("damaged"),
        "the refusal does not name {}:\n{log}",
        file.display()
    );
    assert!(log.contains("etcdctl member remove"), "no way out:\n{log}");
}

#[test]
fn a_damaged_record_in_the_newest_segment_stops_a_single_member() {
    let mut server = Server::e2d();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(put_keys(server.url(), KEYS));
    server.kill9();
    let (file, damaged) = damage_newest_segment(&server.data_dir());
    let log = server
        .try_start()
        .expect_err("a member with a damaged log must not start");
    assert_refusal_names(&log, &file);
    assert_eq!(
        std::fs::read(&file).expect("read the segment"),
        damaged,
        "the refusal changed the file"
    );
}

#[test]
fn a_damaged_record_in_the_newest_segment_stops_a_follower_and_the_cluster_goes_on() {
    const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let url = format!("http://{}", cluster.members[leader].endpoint());
    runtime.block_on(put_keys(url, KEYS));
    cluster.kill9(follower);
    let (file, damaged) = damage_newest_segment(cluster.members[follower].data_dir());
    cluster.start_member(follower);
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while !cluster.has_exited(follower) {
        assert!(
            Instant::now() < deadline,
            "the damaged follower still runs:\n{}",
            cluster.members[follower].log()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_refusal_names(&cluster.members[follower].log(), &file);
    assert_eq!(std::fs::read(&file).expect("read the segment"), damaged);
    cluster.put_eventually(leader, "after", "the damaged member stopped");
}

/// The largest table file of the member's database under `data_dir`.
fn largest_table(data_dir: &Path) -> Option<(PathBuf, u64)> {
    let keyspaces = std::fs::read_dir(data_dir.join("db").join("keyspaces")).ok()?;
    keyspaces
        .filter_map(|keyspace| std::fs::read_dir(keyspace.ok()?.path().join("tables")).ok())
        .flatten()
        .filter_map(|table| {
            let table = table.ok()?;
            Some((table.path(), table.metadata().ok()?.len()))
        })
        .max_by_key(|&(_, bytes)| bytes)
}

/// Tables at least this large hold values: 12 MiB of them are written,
/// more than a memtable holds.
const TABLE_BYTES_MIN: u64 = 4 << 20;

/// A serving member with a table of values no read has touched since they
/// were written; the table and its length.
fn a_member_with_a_table(runtime: &tokio::runtime::Runtime) -> (Server, PathBuf, u64) {
    const VALUE_BYTES: usize = 4096;
    const KEYS: usize = 3000;
    const TABLE_TIMEOUT: Duration = Duration::from_secs(20);
    let server = Server::e2d();
    let url = server.url();
    runtime.block_on(async {
        let mut client = connect(url).await;
        for i in 0..KEYS {
            let value = vec![b'a' + (i % 26) as u8; VALUE_BYTES];
            client
                .put(format!("key-{i:05}"), value, None)
                .await
                .expect("put");
        }
    });
    let deadline = Instant::now() + TABLE_TIMEOUT;
    loop {
        match largest_table(&server.data_dir()) {
            Some((table, bytes)) if bytes >= TABLE_BYTES_MIN => return (server, table, bytes),
            _ => {
                assert!(Instant::now() < deadline, "no table was written");
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Changes one byte half way through `table`, among the values; returns
/// its damaged bytes.
fn damage_table(table: &Path, bytes: u64) -> Vec<u8> {
    let mut damaged = std::fs::read(table).expect("read the table");
    damaged[bytes as usize / 2] ^= 0x20;
    std::fs::write(table, &damaged).expect("write the table");
    damaged
}

/// A serving member with a table damaged under it, among values no read
/// has touched since they were written; the damaged table and its bytes.
fn a_member_with_a_damaged_table(runtime: &tokio::runtime::Runtime) -> (Server, PathBuf, Vec<u8>) {
    let (server, table, bytes) = a_member_with_a_table(runtime);
    let damaged = damage_table(&table, bytes);
    (server, table, damaged)
}

/// Waits for `server` to stop after a failed read, and checks it said
/// why and what to do, and left the damaged table as it was.
#[track_caller]
fn assert_stopped_on_the_damage(server: &mut Server, table: &Path, damaged: &[u8]) {
    const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while server.is_running() {
        assert!(
            Instant::now() < deadline,
            "the member serves on after a failed read:\n{}",
            server.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_names_the_database_and_the_way_out(&server.log(), server, "e2d stops");
    assert_eq!(std::fs::read(table).expect("read the table"), damaged);
}

/// Asserts that `log` names `server`'s database, says `end` (how the
/// member ended) and gives the way out.
#[track_caller]
fn assert_names_the_database_and_the_way_out(log: &str, server: &Server, end: &str) {
    let database = server.data_dir().join("db");
    assert!(
        log.contains(&format!(
            "cannot read the database in {}",
            database.display()
        )) && log.contains(end)
            && log.contains("etcdctl member remove"),
        "the log does not name the database, {end:?} and the way out:\n{log}"
    );
}

/// A table damaged under a serving member: the first range over the
/// damaged block stops the member, naming its database and the way out,
/// rather than failing that one read and serving the rest.
#[test]
fn a_table_damaged_while_the_member_serves_stops_it_at_the_first_read() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (mut server, table, damaged) = a_member_with_a_damaged_table(&runtime);
    let url = server.url();
    let read = runtime.block_on(async {
        let mut client = connect(url).await;
        client
            .get("key-", Some(GetOptions::new().with_prefix()))
            .await
    });
    assert!(read.is_err(), "a range over a damaged block was answered");
    assert_stopped_on_the_damage(&mut server, &table, &damaged);
}

/// A table damaged while the member is down: its start reads the table,
/// refuses for good, naming the database and the way out, and the process
/// ends; the cluster manager does not try the start again on the same
/// data.
#[test]
fn a_table_damaged_while_the_member_is_down_stops_its_start() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (mut server, _, _) = a_member_with_a_table(&runtime);
    // A start after a crash settles which tables the database holds.
    server.kill9();
    server.start();
    server.kill9();
    let (table, bytes) = largest_table(&server.data_dir()).expect("a table");
    assert!(bytes >= TABLE_BYTES_MIN, "the table has {bytes} bytes");
    let damaged = damage_table(&table, bytes);
    let refused = server
        .try_start()
        .expect_err("a member with a damaged table must not start");
    assert!(
        refused.starts_with("exited with"),
        "the member did not stop on the damage: {refused}"
    );
    assert_names_the_database_and_the_way_out(&refused, &server, "Refusing to start");
    assert_eq!(std::fs::read(&table).expect("read the table"), damaged);
}

/// The same damage found by a snapshot's export (`etcdctl snapshot save`)
/// stops the member too, rather than failing the snapshot alone.
#[test]
fn a_table_damaged_while_the_member_serves_stops_it_when_a_snapshot_reads_it() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (mut server, table, damaged) = a_member_with_a_damaged_table(&runtime);
    let saved = server.scratch_dir().join("saved.db");
    let save = server.etcdctl(&["snapshot", "save", &saved.display().to_string()]);
    assert!(!save.success(), "a snapshot of damaged data was saved");
    assert_stopped_on_the_damage(&mut server, &table, &damaged);
}

/// A txn nested as deep as the client port decodes is applied, as etcd
/// applies it, and answered at once. Its answer is a level deeper than the
/// request, too deep for this client's own decoder (as it would be from
/// etcd): the test reads the effect back instead.
#[tokio::test]
async fn a_deeply_nested_txn_is_applied() {
    // Txns inside txns, 49 levels below the outermost: the deepest the
    // client port decodes.
    const DEPTH: usize = 49;
    let server = Server::e2d();
    let mut client = connect(server.url()).await;
    let mut txn = Txn::new().and_then([TxnOp::put("deep", "bottom", None)]);
    for _ in 0..DEPTH {
        txn = Txn::new()
            .when([Compare::version("deep", CompareOp::Equal, 0)])
            .and_then([TxnOp::txn(txn)]);
    }
    let answer = tokio::time::timeout(Duration::from_secs(3), client.txn(txn))
        .await
        .expect("the txn is answered at once");
    if let Err(e) = answer {
        assert!(
            e.to_string().contains("failed to decode") && e.to_string().contains("TxnResponse"),
            "the txn failed: {e}"
        );
    }
    let value = client.get("deep", None).await.expect("get");
    assert_eq!(value.kvs()[0].value_str().expect("utf-8"), "bottom");
}

//! The client and peer ports as `e2d run` binds them: a port in use stops
//! the start with a message naming it, and both queue bursts of
//! connections as etcd's do.

use std::net::{Ipv4Addr, TcpListener};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use e2d_tests::{e2d_bin, free_port, remove_env_with_prefix, Server};

/// How long `e2d run` may take to give up on a port in use.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `e2d run` on fresh ports but `peer_port` with `extra_args`, and
/// returns its exit status and output; fails if it is still running after
/// [`EXIT_TIMEOUT`].
fn run_with_peer_port(peer_port: u16, extra_args: &[&str]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let output = dir.path().join("output");
    let log = std::fs::File::create(&output).expect("an output file");
    let mut cmd = Command::new(e2d_bin());
    cmd.arg("run")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--name", "default"])
        .arg(format!("--client-addr=127.0.0.1:{}", free_port()))
        .arg(format!("--peer-addr=127.0.0.1:{peer_port}"))
        .arg(format!("--gossip-addr=127.0.0.1:{}", free_port()))
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("a file handle"))
        .stderr(log);
    remove_env_with_prefix(&mut cmd, "E2D_");
    let mut child = cmd.spawn().expect("cannot start e2d");
    let deadline = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("cannot wait for e2d") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "e2d still runs {EXIT_TIMEOUT:?} after its peer port was found in use:\n{}",
                std::fs::read_to_string(&output).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(&output).unwrap_or_default())
}

#[test]
fn a_peer_port_in_use_stops_run_with_a_message_naming_it() {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a loopback port");
    let port = taken.local_addr().expect("an address").port();
    let static_cluster = format!("--initial-cluster=default=http://127.0.0.1:{port}");
    // A self-managed member (the default) starts its server only once the
    // manager decides; a static one at once. Either must stop.
    for extra_args in [&[][..], &[static_cluster.as_str()][..]] {
        let (status, output) = run_with_peer_port(port, extra_args);
        assert!(!status.success(), "{extra_args:?}: {status}\n{output}");
        let message = format!("cannot listen on 127.0.0.1:{port} for peers");
        assert!(output.contains(&message), "{extra_args:?}:\n{output}");
        assert!(output.contains("--peer-addr"), "{extra_args:?}:\n{output}");
    }
}

/// The accept queue of the socket listening on `port`, as `ss` shows it
/// (its Send-Q column), or `None` where `ss` cannot run.
fn listen_backlog(port: u16) -> Option<u32> {
    let output = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("ss shows no socket listening on port {port}"));
    let columns: Vec<&str> = line.split_whitespace().collect();
    Some(
        columns[2]
            .parse()
            .unwrap_or_else(|_| panic!("no Send-Q in ss's line {line:?}")),
    )
}

#[test]
fn client_and_peer_ports_queue_bursts_of_connections_as_etcd() {
    // etcd listens with a backlog of 4096 (Linux caps it at somaxconn);
    // with the default 128, a burst of connecting clients waits a second
    // for each retransmitted SYN.
    let s = Server::e2d();
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(4096);
    let expected = somaxconn.min(4096);
    for (port, what) in [(s.client_port(), "client"), (s.peer_port(), "peer")] {
        let Some(backlog) = listen_backlog(port) else {
            eprintln!("skipped: `ss` cannot run here to show the {what} port's backlog");
            return;
        };
        assert_eq!(backlog, expected, "the {what} port's listen backlog");
    }
}

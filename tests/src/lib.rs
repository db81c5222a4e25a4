//! Helpers shared by the black-box tests.
//!
//! The tests drive a real `e2d` binary (and, for comparisons, a real `etcd`
//! server) as child processes, talking to them only over 127.0.0.1 with
//! `etcdctl`, the `etcd-client` crate and plain HTTP.
//!
//! * [`e2d_bin`] finds the binary under test (`E2D_BIN` overrides).
//! * [`Server`] starts `e2d` or `etcd` in its own temp dir on its own ports,
//!   waits until it answers, and SIGKILLs it on drop. [`Server::kill9`] and
//!   [`Server::start`] simulate a crash and a restart on the same data dir.
//! * [`Server::etcdctl`] runs `etcdctl` (API v3) against the server and
//!   captures its output; [`Server::spawn_etcdctl`] runs a long-lived one
//!   (such as `etcdctl watch`) and hands its stdout over line by line.
//! * [`Server::http_get`] fetches an HTTP path on the client port.

pub mod cluster;
pub mod gossip_cluster;
pub mod moto;
pub mod netns;
pub mod stub_digitalocean;
pub mod stub_dns;
pub mod stub_http;
pub mod stub_imds;

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use tempfile::TempDir;

/// How long a server may take to start answering.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a single `etcdctl` invocation may take before it counts as hung.
pub const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Finding the binary
// ---------------------------------------------------------------------------

/// The `e2d` binary under test.
///
/// `E2D_BIN` wins; otherwise the `debug/e2d` next to this test executable's
/// target dir, `$CARGO_TARGET_DIR/debug/e2d`, or the workspace's
/// `target/debug/e2d`. If none exists, `cargo build -p e2d-shell` runs once.
pub fn e2d_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("E2D_BIN") {
            let bin = PathBuf::from(bin);
            assert!(bin.is_file(), "E2D_BIN={} is not a file", bin.display());
            return bin;
        }
        if let Some(bin) = candidate_bins().into_iter().find(|p| p.is_file()) {
            warn_if_stale(&bin);
            return bin;
        }
        let workspace = workspace_dir();
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["build", "-p", "e2d-shell"])
            .current_dir(&workspace)
            .status()
            .expect("cannot run cargo to build the e2d binary");
        assert!(status.success(), "cargo build -p e2d-shell failed");
        candidate_bins()
            .into_iter()
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!("no e2d binary found after building; set E2D_BIN to its path")
            })
    })
    .clone()
}

/// Says so on stderr (shown with failing tests) when server sources are
/// newer than the binary: run `cargo build -p e2d-shell` before the tests.
fn warn_if_stale(bin: &Path) {
    fn newest(dir: &Path, best: &mut Option<(std::time::SystemTime, PathBuf)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                newest(&path, best);
            } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                if best.as_ref().is_none_or(|(t, _)| modified > *t) {
                    *best = Some((modified, path));
                }
            }
        }
    }
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return;
    };
    let mut best = None;
    for dir in ["core/src", "shell/src", "proto"] {
        newest(&workspace_dir().join(dir), &mut best);
    }
    if let Some((modified, path)) = best {
        if modified > built {
            eprintln!(
                "warning: {} is older than {}; run `cargo build -p e2d-shell` to test the current sources",
                bin.display(),
                path.display()
            );
        }
    }
}

fn workspace_dir() -> PathBuf {
    tests_crate_dir()
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// This crate's directory (its scripts, its node client). `cargo test`
/// says where it is when the tests run; the path it was built at comes
/// second, since a target dir shared between two checkouts may run tests
/// the other one built.
pub fn tests_crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.join("scripts").is_dir())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn candidate_bins() -> Vec<PathBuf> {
    let mut out = Vec::new();
    // The test executable lives in <target>/debug/deps/.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            out.push(profile_dir.join("e2d"));
        }
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        out.push(PathBuf::from(dir).join("debug").join("e2d"));
    }
    out.push(workspace_dir().join("target").join("debug").join("e2d"));
    out
}

/// Keeps the variables starting with `prefix` (such as `E2D_`) out of
/// `cmd`'s environment, so that only its flags configure it.
pub fn remove_env_with_prefix(cmd: &mut Command, prefix: &str) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with(prefix) {
            cmd.env_remove(key);
        }
    }
}

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/// A loopback port nobody listened on a moment ago. Ports handed out by this
/// process are never handed out twice.
pub fn free_port() -> u16 {
    static TAKEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let taken = TAKEN.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind a loopback port");
        let port = listener
            .local_addr()
            .expect("bound socket has an address")
            .port();
        drop(listener);
        if taken.lock().unwrap().insert(port) {
            return port;
        }
    }
}

// ---------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------

/// Which server program a [`Server`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The e2d binary under test.
    E2d,
    /// The reference etcd server (`/usr/bin/etcd` or `ETCD_BIN`).
    Etcd,
}

/// A server child process with its own temp dir and ports. Dropping it
/// SIGKILLs the process and removes the temp dir.
pub struct Server {
    kind: Kind,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    gossip_port: u16,
    extra_args: Vec<String>,
    child: Option<Child>,
    starts: u32,
}

impl Server {
    /// Starts a fresh e2d with default settings.
    pub fn e2d() -> Server {
        Server::e2d_with(&[])
    }

    /// Starts a fresh e2d with extra `e2d run` flags.
    pub fn e2d_with(extra_args: &[&str]) -> Server {
        Server::launch(Kind::E2d, extra_args)
    }

    /// Starts a fresh single-member etcd.
    pub fn etcd() -> Server {
        Server::launch(Kind::Etcd, &[])
    }

    /// A fresh e2d and a fresh etcd, started concurrently, for tests that
    /// send both the same calls.
    pub fn e2d_and_etcd() -> (Server, Server) {
        std::thread::scope(|scope| {
            let etcd = scope.spawn(Server::etcd);
            let e2d = Server::e2d();
            (e2d, etcd.join().expect("etcd started"))
        })
    }

    fn launch(kind: Kind, extra_args: &[&str]) -> Server {
        // E2D_TESTS_AGAINST_ETCD=1 runs the e2d tests against the reference
        // etcd instead, to check that the tests' expectations are etcd's.
        let (kind, extra_args) = if kind == Kind::E2d && against_etcd() {
            (Kind::Etcd, etcd_flags(extra_args))
        } else {
            (kind, extra_args.iter().map(|s| s.to_string()).collect())
        };
        let mut server = Server {
            kind,
            dir: tempfile::Builder::new()
                .prefix(match kind {
                    Kind::E2d => "e2d-test-",
                    Kind::Etcd => "etcd-test-",
                })
                .tempdir()
                .expect("cannot create a temp dir"),
            client_port: 0,
            peer_port: 0,
            gossip_port: 0,
            extra_args,
            child: None,
            starts: 0,
        };
        // Another process may grab a port between probing and binding it:
        // try fresh ports a few times before giving up.
        for attempt in 1..=5 {
            server.client_port = free_port();
            server.peer_port = free_port();
            server.gossip_port = free_port();
            // A failed start may have recorded the old URLs in the data dir.
            let _ = std::fs::remove_dir_all(server.data_dir());
            match server.try_start() {
                Ok(()) => return server,
                Err(log) if attempt < 5 && log.contains("in use") => continue,
                Err(log) => panic!("{kind:?} did not start:\n{log}"),
            }
        }
        unreachable!()
    }

    /// Which program this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The data dir (kept across [`Server::kill9`] and [`Server::start`]).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A scratch dir that is removed with the server.
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The client port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// The peer port.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// `127.0.0.1:PORT` of the client API, as etcdctl takes it.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:PORT` of the client API.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("server-{}.log", self.starts))
    }

    /// The server's log output from its latest start.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn command(&self) -> Command {
        let data_dir = self.data_dir();
        let mut cmd = match self.kind {
            Kind::E2d => {
                let mut cmd = Command::new(e2d_bin());
                cmd.arg("run")
                    .arg("--data-dir")
                    .arg(&data_dir)
                    .arg("--client-addr")
                    .arg(format!("127.0.0.1:{}", self.client_port))
                    .arg("--peer-addr")
                    .arg(format!("127.0.0.1:{}", self.peer_port))
                    .arg("--gossip-addr")
                    .arg(format!("127.0.0.1:{}", self.gossip_port))
                    .arg("--name")
                    .arg("default");
                // Flags only, not the environment, configure the server.
                remove_env_with_prefix(&mut cmd, "E2D_");
                cmd
            }
            Kind::Etcd => {
                let bin = std::env::var_os("ETCD_BIN").unwrap_or_else(|| "etcd".into());
                let client = format!("http://127.0.0.1:{}", self.client_port);
                let peer = format!("http://127.0.0.1:{}", self.peer_port);
                let mut cmd = Command::new(bin);
                cmd.arg("--data-dir")
                    .arg(&data_dir)
                    .args(["--name", "default"])
                    .args(["--listen-client-urls", &client])
                    .args(["--advertise-client-urls", &client])
                    .args(["--listen-peer-urls", &peer])
                    .args(["--initial-advertise-peer-urls", &peer])
                    .args(["--initial-cluster", &format!("default={peer}")])
                    .args(["--heartbeat-interval", "20", "--election-timeout", "200"])
                    .args(["--logger", "zap", "--log-level", "warn"]);
                remove_env_with_prefix(&mut cmd, "ETCD_");
                cmd
            }
        };
        cmd.args(&self.extra_args).stdin(Stdio::null());
        cmd
    }

    /// Starts the process (after a [`Server::kill9`]) on the same data dir
    /// and ports, and waits until it answers.
    pub fn start(&mut self) {
        if let Err(log) = self.try_start() {
            panic!("{:?} did not restart:\n{log}", self.kind);
        }
    }

    /// Replaces the extra flags used by the next [`Server::start`].
    pub fn set_extra_args(&mut self, extra_args: &[&str]) {
        self.extra_args = if self.kind == Kind::Etcd {
            etcd_flags(extra_args)
        } else {
            extra_args.iter().map(|s| s.to_string()).collect()
        };
    }

    /// SIGKILLs the process, as a crash would, and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `kill -9`, then start again on the same data dir.
    pub fn restart(&mut self) {
        self.kill9();
        self.start();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the process on its data dir and waits until it answers, or
    /// returns its log if it exits or does not answer in time.
    pub fn try_start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "server already running");
        self.starts += 1;
        let log = File::create(self.log_path()).expect("cannot create the server log");
        let mut cmd = self.command();
        cmd.stdout(log.try_clone().expect("cannot clone a file handle"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?} ({cmd:?}): {e}", self.kind));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "exited with {status} before answering; log:\n{}",
                    self.log()
                ));
            }
            if self.answers() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill9();
                return Err(format!(
                    "no answer on {} within {START_TIMEOUT:?}; log:\n{}",
                    self.endpoint(),
                    self.log()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// e2d is up once `/health` answers with anything but NOT STARTED or
    /// RAFT NO LEADER (a lone member elects itself at once; it may be
    /// unhealthy on purpose, e.g. with a NOSPACE alarm); etcd once
    /// it has a leader (its /health also says false while an alarm is
    /// raised).
    fn answers(&self) -> bool {
        match self.kind {
            Kind::E2d => http_get(self.client_port, "/health").is_ok_and(|r| {
                r.status > 0
                    && !r.body.contains("NOT STARTED")
                    && !r.body.contains("RAFT NO LEADER")
            }),
            Kind::Etcd => http_get(self.client_port, "/metrics")
                .is_ok_and(|r| r.body.lines().any(|l| l == "etcd_server_has_leader 1")),
        }
    }

    /// Runs `etcdctl ARGS` against this server.
    pub fn etcdctl(&self, args: &[&str]) -> CmdOutput {
        etcdctl(&self.endpoint(), args, None)
    }

    /// Runs `etcdctl ARGS` against this server with `stdin` as its input.
    pub fn etcdctl_stdin(&self, args: &[&str], stdin: &str) -> CmdOutput {
        etcdctl(&self.endpoint(), args, Some(stdin.as_bytes()))
    }

    /// Starts a long-running `etcdctl ARGS` (such as `watch`) against this
    /// server.
    pub fn spawn_etcdctl(&self, args: &[&str]) -> LineProcess {
        spawn_etcdctl(&self.endpoint(), args)
    }

    /// `GET path` on the client port.
    pub fn http_get(&self, path: &str) -> HttpResponse {
        http_get(self.client_port, path)
            .unwrap_or_else(|e| panic!("GET {path} on {} failed: {e}", self.endpoint()))
    }

    /// The current revision, from `etcdctl get -w json`.
    pub fn revision(&self) -> i64 {
        self.etcdctl(&["get", "-w", "json", "revision-probe"])
            .json()["header"]["revision"]
            .as_i64()
            .expect("header.revision is a number")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Whether `E2D_TESTS_AGAINST_ETCD=1` asks to run the e2d tests against etcd.
pub fn against_etcd() -> bool {
    std::env::var("E2D_TESTS_AGAINST_ETCD").is_ok_and(|v| v == "1")
}

/// The etcd spelling of `e2d run` flags.
fn etcd_flags(e2d_args: &[&str]) -> Vec<String> {
    e2d_args
        .iter()
        .map(|arg| match *arg {
            "--watch-progress-notify-interval" => {
                "--experimental-watch-progress-notify-interval".to_string()
            }
            other => other.to_string(),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// etcdctl
// ---------------------------------------------------------------------------

/// What a finished command printed, and how it exited.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub command: String,
    pub stdout: String,
    pub stderr: String,
    pub status: ExitStatus,
}

impl CmdOutput {
    /// Whether the command exited with 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Asserts exit status 0 and returns self.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert!(self.success(), "`{}` failed:\n{self}", self.command);
        self
    }

    /// Stdout, asserting success.
    #[track_caller]
    pub fn out(&self) -> &str {
        &self.ok().stdout
    }

    /// Stdout parsed as JSON, asserting success.
    #[track_caller]
    pub fn json(&self) -> Value {
        let out = self.out();
        // `txn -i` prints its prompts before the JSON.
        let start = out
            .find(['{', '['])
            .unwrap_or_else(|| panic!("`{}` did not print JSON:\n{self}", self.command));
        serde_json::from_str(out[start..].trim())
            .unwrap_or_else(|e| panic!("`{}` did not print JSON ({e}):\n{self}", self.command))
    }

    /// The `Error: ...` line etcdctl prints last on failure (empty if none).
    pub fn error_line(&self) -> String {
        self.stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("Error:"))
            .unwrap_or("")
            .to_string()
    }

    /// Asserts a non-zero exit and that stderr contains `needle`.
    #[track_caller]
    pub fn fails_with(&self, needle: &str) -> &Self {
        assert!(
            !self.success() && self.stderr.contains(needle),
            "expected `{}` to fail with {needle:?}, got:\n{self}",
            self.command
        );
        self
    }
}

impl std::fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

fn etcdctl_command(endpoint: &str, args: &[&str]) -> Command {
    let bin = std::env::var_os("ETCDCTL_BIN").unwrap_or_else(|| "etcdctl".into());
    let mut cmd = Command::new(bin);
    remove_env_with_prefix(&mut cmd, "ETCDCTL_");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--dial-timeout=5s")
        .arg("--command-timeout=15s")
        .args(args);
    cmd
}

fn describe(endpoint: &str, args: &[&str]) -> String {
    let mut text = format!("etcdctl --endpoints={endpoint}");
    for arg in args {
        if arg.is_empty() || arg.contains(char::is_whitespace) {
            text.push_str(&format!(" {arg:?}"));
        } else {
            text.push(' ');
            text.push_str(arg);
        }
    }
    text
}

/// Runs `etcdctl ARGS` (API v3) against `endpoint`, feeding it `stdin` if
/// given, and captures its output. Panics if it runs longer than
/// [`ETCDCTL_TIMEOUT`].
pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&[u8]>) -> CmdOutput {
    let command = describe(endpoint, args);
    let mut child = etcdctl_command(endpoint, args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let input = input.to_vec();
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        })
    });
    let stdout = read_all_in_thread(child.stdout.take().expect("stdout is piped"));
    let stderr = read_all_in_thread(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + ETCDCTL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("cannot wait for etcdctl") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{command}` did not finish within {ETCDCTL_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    CmdOutput {
        command,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        status,
    }
}

fn read_all_in_thread(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// A running child process whose stdout is read line by line.
pub struct LineProcess {
    command: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

/// Starts a long-running `etcdctl ARGS` against `endpoint`.
pub fn spawn_etcdctl(endpoint: &str, args: &[&str]) -> LineProcess {
    let command = describe(endpoint, args);
    let mut child = etcdctl_command(endpoint, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = read_all_in_thread(child.stderr.take().expect("stderr is piped"));
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(line) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    LineProcess {
        command,
        child,
        lines,
        seen: Vec::new(),
        stderr: Some(stderr),
    }
}

impl LineProcess {
    /// The next `n` lines of stdout; panics if they don't all arrive within
    /// `timeout`.
    #[track_caller]
    pub fn lines(&mut self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    out.push(line);
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "`{}`: wanted {n} more lines within {timeout:?}, got {out:?} (all output so far: {:?})",
                    self.command, self.seen
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let stderr = self.kill_and_stderr();
                    panic!(
                        "`{}` closed stdout after {out:?} of {n} lines (all output: {:?}); stderr:\n{stderr}",
                        self.command, self.seen
                    )
                }
            }
        }
        out
    }

    /// Asserts nothing more is printed during `quiet`.
    #[track_caller]
    pub fn assert_quiet(&mut self, quiet: Duration) {
        if let Ok(line) = self.lines.recv_timeout(quiet) {
            panic!(
                "`{}` printed {line:?} unexpectedly (output before: {:?})",
                self.command, self.seen
            );
        }
    }

    /// Waits up to `timeout` for the process to exit on its own; returns its
    /// exit status and stderr. Panics if it keeps running.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("cannot wait for etcdctl") {
                return (status, self.take_stderr());
            }
            if Instant::now() > deadline {
                let stderr = self.kill_and_stderr();
                panic!(
                    "`{}` still running after {timeout:?} (output: {:?}); stderr:\n{stderr}",
                    self.command, self.seen
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` (such as `INT`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Kills the process and returns what it wrote to stderr.
    pub fn kill_and_stderr(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.take_stderr()
    }

    fn take_stderr(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for LineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/// A plain HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.body.trim())
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// `GET path` over HTTP/1.1 on 127.0.0.1:port, one connection per request.
pub fn http_get(port: u16, path: &str) -> std::io::Result<HttpResponse> {
    http_get_at(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), path)
}

/// `GET path` over HTTP/1.1 on `addr`, one connection per request.
pub fn http_get_at(addr: SocketAddr, path: &str) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_http_response(&raw)
        .ok_or_else(|| std::io::Error::other(format!("malformed HTTP response: {raw:?}")))
}

fn parse_http_response(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Some(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------

/// Base64 of `text`, as etcdctl's `-w json` prints keys and values.
pub fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Decodes a base64 JSON string field (keys and values in `-w json`).
#[track_caller]
pub fn unb64(value: &Value) -> String {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("expected a base64 string, got {value}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("{text:?} is not base64: {e}"));
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("{text:?} is not UTF-8: {e}"))
}

/// The `(key, value)` pairs of a `-w json` range response, decoded.
pub fn kv_pairs(resp: &Value) -> Vec<(String, String)> {
    resp["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| {
                    (
                        unb64(&kv["key"]),
                        kv.get("value").map(unb64).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A JSON integer field (`-w json` prints some as numbers, some as strings);
/// missing fields count as 0, as protobuf defaults are omitted.
#[track_caller]
pub fn int(value: &Value) -> i64 {
    match value {
        Value::Null => 0,
        Value::Number(n) => n.as_i64().unwrap_or_else(|| panic!("{n} is not an i64")),
        Value::String(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{s:?} is not an integer")),
        other => panic!("expected an integer, got {other}"),
    }
}

/// An unsigned JSON integer field (member and cluster IDs are u64);
/// missing fields count as 0.
#[track_caller]
pub fn uint(value: &Value) -> u64 {
    match value {
        Value::Null => 0,
        Value::Number(n) => n.as_u64().unwrap_or_else(|| panic!("{n} is not a u64")),
        Value::String(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{s:?} is not an integer")),
        other => panic!("expected an integer, got {other}"),
    }
}

/// Removes what legitimately differs between two single-member clusters
/// (`cluster_id`, `member_id`, `raft_term`), at any depth.
pub fn normalize_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for field in ["cluster_id", "member_id", "raft_term"] {
                map.remove(field);
            }
            for v in map.values_mut() {
                normalize_json(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_json),
        _ => {}
    }
}

/// Serializes the tests of one test binary that start many processes or
/// rely on timing: hold the guard for the test's length.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// `e2d run` flags for TLS everywhere, with the files `e2d pki init` and
/// `e2d pki gencerts` write into `dir`.
pub fn tls_run_flags(dir: &std::path::Path) -> Vec<String> {
    let mut flags = Vec::new();
    for (flag, file) in [
        ("--ca-cert", "ca.crt"),
        ("--ca-key", "ca.key"),
        ("--server-cert", "server.crt"),
        ("--server-key", "server.key"),
        ("--peer-cert", "peer.crt"),
        ("--peer-key", "peer.key"),
        ("--client-cert", "client.crt"),
        ("--client-key", "client.key"),
    ] {
        flags.push(flag.to_string());
        flags.push(dir.join(file).display().to_string());
    }
    flags
}

/// Runs `e2d` with `args` (and `envs` on top of a clean `E2D_*`
/// environment) and captures its output.
pub fn e2d_command(args: &[&str], envs: &[(&str, &str)]) -> CmdOutput {
    e2d_command_without(&["E2D_"], args, envs)
}

/// [`e2d_command`] with every variable of `prefixes` removed first.
pub fn e2d_command_without(prefixes: &[&str], args: &[&str], envs: &[(&str, &str)]) -> CmdOutput {
    let mut cmd = Command::new(e2d_bin());
    cmd.args(args);
    for prefix in prefixes {
        remove_env_with_prefix(&mut cmd, prefix);
    }
    cmd.envs(envs.iter().copied()).stdin(Stdio::null());
    let output = cmd.output().expect("cannot run e2d");
    CmdOutput {
        command: format!("e2d {}", args.join(" ")),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        status: output.status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_decoded() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n";
        let resp = parse_http_response(raw).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, "Wikipedia");
    }

    #[test]
    fn normalize_drops_member_specific_fields() {
        let mut v: Value = serde_json::from_str(
            r#"{"header":{"cluster_id":1,"member_id":2,"revision":3,"raft_term":4},"kvs":[]}"#,
        )
        .unwrap();
        normalize_json(&mut v);
        assert_eq!(v, serde_json::json!({"header":{"revision":3},"kvs":[]}));
    }

    #[test]
    fn ports_are_not_handed_out_twice() {
        let a = free_port();
        let b = free_port();
        assert_ne!(a, b);
    }
}

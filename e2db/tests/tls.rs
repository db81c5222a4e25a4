//! e2db over mutual TLS, with certificates from `e2d pki`: against e2d
//! (`--ca-cert` and friends) or, with E2D_TESTS_AGAINST_ETCD=1, etcd
//! (`--client-cert-auth`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2d_tests::{against_etcd, e2d_bin, e2d_command, free_port, remove_env_with_prefix};
use e2db::{Config, Db, Error, TlsFiles};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, e2db::Table)]
#[e2db(table = "notes")]
struct Note {
    #[e2db(increment)]
    id: u64,
    text: String,
}

/// The server process; killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn file(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// A single-member server on `port` that takes only clients with a
/// certificate the CA in `dir` signed.
fn start_tls_server(dir: &Path, port: u16) -> Killed {
    let data = file(dir, "data");
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let mut cmd = if against_etcd() {
        let client = format!("https://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{}", free_port());
        let mut cmd = Command::new(std::env::var_os("ETCD_BIN").unwrap_or_else(|| "etcd".into()));
        cmd.args(["--data-dir", &data, "--name", "default"])
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("default={peer}")])
            .args(["--cert-file", &file(dir, "server.crt")])
            .args(["--key-file", &file(dir, "server.key")])
            .args([
                "--trusted-ca-file",
                &file(dir, "ca.crt"),
                "--client-cert-auth",
            ]);
        remove_env_with_prefix(&mut cmd, "ETCD_");
        cmd
    } else {
        let mut cmd = Command::new(e2d_bin());
        cmd.args(["run", "--data-dir", &data, "--name", "default"])
            .args(["--client-addr", &format!("127.0.0.1:{port}")])
            .args(["--peer-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--gossip-addr", &format!("127.0.0.1:{}", free_port())]);
        cmd.args(e2d_tests::tls_run_flags(dir));
        remove_env_with_prefix(&mut cmd, "E2D_");
        cmd
    };
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    Killed(cmd.spawn().expect("cannot start the server"))
}

fn tls_files(dir: &Path, with_client_certificate: bool) -> TlsFiles {
    let path = |name: &str| -> Option<PathBuf> { with_client_certificate.then(|| dir.join(name)) };
    TlsFiles {
        ca_cert: dir.join("ca.crt"),
        cert: path("client.crt"),
        key: path("client.key"),
        domain: None,
    }
}

#[tokio::test]
async fn tables_over_mutual_tls() {
    let dir = tempfile::Builder::new()
        .prefix("e2db-tls-")
        .tempdir()
        .unwrap();
    let (ca_cert, ca_key) = (file(dir.path(), "ca.crt"), file(dir.path(), "ca.key"));
    let ca = ["--ca-cert", &ca_cert, "--ca-key", &ca_key];
    e2d_command(&[&["pki", "init"], &ca[..]].concat(), &[]).ok();
    let out_dir = dir.path().display().to_string();
    e2d_command(
        &[&["pki", "gencerts"], &ca[..], &["--output-dir", &out_dir]].concat(),
        &[],
    )
    .ok();

    let port = free_port();
    let _server = start_tls_server(dir.path(), port);
    let endpoint = format!("https://127.0.0.1:{port}");
    let config = Config::new([endpoint.clone()])
        .namespace("tls")
        .timeouts(Duration::from_secs(2), Duration::from_secs(2))
        .tls(tls_files(dir.path(), true));

    // Wait until the server answers over TLS.
    let deadline = Instant::now() + Duration::from_secs(30);
    let notes = loop {
        let attempt = async { Db::connect(config.clone()).await?.table::<Note>().await };
        match attempt.await {
            Ok(notes) => break notes,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!(
                "no answer over TLS within 30 s: {e}\n{}",
                std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
            ),
        }
    };
    let note = notes
        .insert(Note {
            id: 0,
            text: "over TLS".into(),
        })
        .await
        .unwrap();
    assert_eq!(notes.get(note.id).await.unwrap(), Some(note));

    // Without a client certificate the server refuses the connection.
    let anonymous = Config::new([endpoint])
        .namespace("tls")
        .timeouts(Duration::from_secs(2), Duration::from_secs(2))
        .tls(tls_files(dir.path(), false));
    let result = match Db::connect(anonymous).await {
        Ok(db) => db.table::<Note>().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(
        matches!(result, Err(Error::Transport(_) | Error::Timeout { .. })),
        "{result:?}"
    );
}

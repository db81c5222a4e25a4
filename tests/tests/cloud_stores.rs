//! Google Cloud Storage and Azure Blob Storage as snapshot stores, each
//! against its emulator on loopback (`gcp-storage-emulator` from PyPI,
//! Azurite from npm): a node backs up there, full snapshot and deltas;
//! a fresh node with an empty disk comes back from it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use e2d_tests::gossip_cluster::{GossipCluster, Node};
use e2d_tests::{e2d_command, free_port, one_at_a_time, Server};
use sha2::{Digest, Sha256};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const FORM_TIMEOUT: Duration = Duration::from_secs(60);
const BACKUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Azurite's well-known development account and key.
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// An emulator process, stopped when dropped.
struct Emulator {
    port: u16,
    child: Child,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Emulator {
    fn start(program: &str, args: &[&str], port: u16, install: &str) -> Emulator {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} ({install}): {e}"));
        let emulator = Emulator { port, child };
        let deadline = Instant::now() + START_TIMEOUT;
        while emulator.request("GET", "/", &[]).is_err() {
            assert!(
                Instant::now() < deadline,
                "{program} did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        emulator
    }

    /// One HTTP request with `headers`; returns the status line.
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
    ) -> std::io::Result<String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n",
            self.port
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer.lines().next().unwrap_or_default().to_string())
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Creates `container` in Azurite, signed with the account's shared key.
fn create_azure_container(azurite: &Emulator, container: &str) {
    let date = String::from_utf8(
        Command::new("date")
            .args(["-u", "+%a, %d %b %Y %H:%M:%S GMT"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let version = "2021-08-06";
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
    );
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine.decode(AZURITE_KEY).unwrap();
    let signature = engine.encode(hmac_sha256(&key, to_sign.as_bytes()));
    let status = azurite
        .request(
            "PUT",
            &format!("/{AZURITE_ACCOUNT}/{container}?restype=container"),
            &[
                ("x-ms-date", date),
                ("x-ms-version", version.to_string()),
                (
                    "Authorization",
                    format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
                ),
            ],
        )
        .unwrap();
    assert!(
        status.contains(" 201"),
        "creating container {container}: {status}"
    );
}

/// A node backs up to `url` (full snapshot, then deltas every second);
/// after its disk is lost, a fresh node restores every write from there.
fn backs_up_and_restores(url: &str, env: &[(&str, String)]) {
    let flags = [
        "--snapshot-backup-url",
        url,
        "--snapshot-interval",
        "1h",
        "--snapshot-delta-interval",
        "1s",
        "--snapshot-compression",
    ];
    let env_owned: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut single = GossipCluster::on_loopback(1, &flags);
    single.nodes[0].env = env_owned.clone();
    single.start(0);
    single.wait_until("the node serves", FORM_TIMEOUT, |c| c.nodes[0].is_healthy());
    for i in 0..10 {
        single.put(0, &format!("cloud-{i}"), &format!("v{i}"));
    }
    let revision = single.nodes[0]
        .etcdctl(&["get", "cloud-9", "-w", "json"])
        .json()["header"]["revision"]
        .as_i64()
        .unwrap();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let deadline = Instant::now() + BACKUP_TIMEOUT;
    loop {
        let listed = e2d_command(&["snapshot", "list", url, "--json"], &env_refs).json();
        let reached = listed
            .as_array()
            .into_iter()
            .flatten()
            .filter(|chain| !chain["deltas"].as_array().unwrap().is_empty())
            .filter_map(|chain| chain["reaches_revision"].as_i64())
            .max()
            .unwrap_or(0);
        if reached >= revision {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{url} holds no delta reaching revision {revision}: {listed:#}\n{}",
            single.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    single.kill9(0);
    single.nodes[0] = Node::replacing(&single.nodes[0]);
    single.nodes[0].env = env_owned;
    single.start(0);
    single.wait_until(
        "the fresh node serves the restored data",
        FORM_TIMEOUT,
        |c| c.nodes[0].is_healthy() && c.count(0, "cloud-") == Some(10),
    );
    let value = single.nodes[0].etcdctl(&["get", "cloud-7", "--print-value-only"]);
    assert_eq!(value.out().trim(), "v7");
    drop(single);
    larger_than_one_part(url, env);
}

/// A snapshot larger than one upload part (16 MiB) goes up in parts and
/// comes back whole.
fn larger_than_one_part(url: &str, env: &[(&str, String)]) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::e2d();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let value: String = (0..1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (b'a' + (state % 26) as u8) as char
        })
        .collect();
    for i in 0..18 {
        server
            .etcdctl_stdin(&["put", &format!("big-{i:02}")], &value)
            .ok();
    }
    let big_url = format!("{url}/big");
    let saved = e2d_command(
        &[
            "snapshot",
            "save",
            &big_url,
            "--endpoint",
            &server.endpoint(),
        ],
        &env,
    );
    assert!(saved.out().contains("Snapshot saved at"), "{saved}");
    let listed = e2d_command(&["snapshot", "list", &big_url, "--json"], &env).json();
    let size = listed[0]["size_bytes"].as_u64().unwrap_or(0);
    assert!(size > 16 * 1024 * 1024, "{listed:#}");
    let data_dir = tempfile::Builder::new()
        .prefix("e2d-cloud-restore-")
        .tempdir()
        .unwrap();
    let target = data_dir.path().join("data");
    let restored = e2d_command(
        &[
            "snapshot",
            "restore",
            &big_url,
            "--data-dir",
            target.to_str().unwrap(),
        ],
        &env,
    );
    assert!(restored.out().contains("Restored"), "{restored}");
}

#[test]
fn google_cloud_storage_on_its_emulator() {
    let _serial = one_at_a_time();
    let port = free_port();
    let emulator = Emulator::start(
        "gcp-storage-emulator",
        &[
            "start",
            "--host=127.0.0.1",
            &format!("--port={port}"),
            "--in-memory",
            "--default-bucket=e2d-backups",
        ],
        port,
        "python3 -m pip install gcp-storage-emulator",
    );
    backs_up_and_restores(
        "gs://e2d-backups/prod/etcd",
        &[("STORAGE_EMULATOR_HOST", emulator.url())],
    );
}

#[test]
fn azure_blob_storage_on_azurite() {
    let _serial = one_at_a_time();
    let port = free_port();
    let azurite = Emulator::start(
        "azurite-blob",
        &[
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--inMemoryPersistence",
            "--silent",
        ],
        port,
        "npm install -g azurite",
    );
    create_azure_container(&azurite, "snapshots");
    backs_up_and_restores(
        &format!("azblob://{AZURITE_ACCOUNT}/snapshots/prod"),
        &[
            ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
            ("AZURITE_BLOB_STORAGE_URL", azurite.url()),
        ],
    );
}

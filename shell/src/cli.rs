//! The command line: `e2d run` and `e2d version`. Every flag can also come
//! from an `E2D_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "e2d",
    about = "Deploys and runs highly available etcd clusters",
    version
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a member.
    Run(Box<RunArgs>),
    /// Show the cluster as one node sees it: members, gossip, leader,
    /// revision, last snapshot.
    Status(StatusArgs),
    /// Print the version of e2d and of the etcd API it serves.
    Version,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Name of this member (defaults to the name kept in the data dir, or
    /// a new one made of the host name and a random suffix).
    #[arg(long, env = "E2D_NAME")]
    pub name: Option<String>,

    /// Voting members the cluster should have: 1, 3, 5, 7 or 9. Every node
    /// of a cluster is started with the same size.
    #[arg(
        short = 'n',
        long,
        env = "E2D_REQUIRED_CLUSTER_SIZE",
        default_value_t = 1
    )]
    pub required_cluster_size: usize,

    /// How often the leader checks gossip for members that are gone.
    #[arg(long, env = "E2D_HEALTH_CHECK_INTERVAL", default_value = "1m", value_parser = parse_duration_ms)]
    pub health_check_interval: u64,

    /// How long a member may be missing from gossip before the cluster
    /// removes it (so that a new node can take its place).
    #[arg(long, env = "E2D_HEALTH_CHECK_TIMEOUT", default_value = "5m", value_parser = parse_duration_ms)]
    pub health_check_timeout: u64,

    /// Directory for this member's data.
    #[arg(long, env = "E2D_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Address other machines reach this one at; used in advertised URLs
    /// when a listen address is unspecified (0.0.0.0).
    #[arg(long, env = "E2D_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Address the etcd client API (gRPC and HTTP) listens on.
    #[arg(long, env = "E2D_CLIENT_ADDR", default_value = "0.0.0.0:2379")]
    pub client_addr: SocketAddr,

    /// Address peer traffic listens on.
    #[arg(long, env = "E2D_PEER_ADDR", default_value = "0.0.0.0:2380")]
    pub peer_addr: SocketAddr,

    /// Address gossip listens on (UDP for probes, TCP for state exchange).
    #[arg(long, env = "E2D_GOSSIP_ADDR", default_value = "0.0.0.0:7980")]
    pub gossip_addr: SocketAddr,

    /// Gossip seeds: host or host:port, separated by commas (the gossip
    /// port of --gossip-addr is added when none is given).
    #[arg(long, env = "E2D_BOOTSTRAP_ADDRS", value_delimiter = ',')]
    pub bootstrap_addrs: Vec<String>,

    /// Members of a new cluster, as name=peer-url pairs separated by
    /// commas (defaults to this member alone).
    #[arg(long, env = "E2D_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Start a new cluster ("new"); joining a running one ("existing")
    /// follows a MemberAdd.
    #[arg(long, env = "E2D_INITIAL_CLUSTER_STATE", default_value = "new", value_parser = ["new", "existing"])]
    pub initial_cluster_state: String,

    /// Token mixed into member and cluster ids, so two clusters built from
    /// the same URLs stay apart.
    #[arg(
        long,
        env = "E2D_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,

    /// Applied raft entries after which the log is compacted; members
    /// further behind catch up from a snapshot.
    #[arg(long, env = "E2D_SNAPSHOT_COUNT", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(2..))]
    pub snapshot_count: u64,

    /// Also serve /metrics and the health endpoints on this address.
    #[arg(long, env = "E2D_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Backend size that raises the NOSPACE alarm.
    #[arg(long, env = "E2D_QUOTA_BACKEND_BYTES", default_value_t = e2d_core::limits::QUOTA_BACKEND_BYTES_DEFAULT)]
    pub quota_backend_bytes: u64,

    /// Largest client request accepted.
    #[arg(long, env = "E2D_MAX_REQUEST_BYTES", default_value_t = e2d_core::limits::REQUEST_BYTES_MAX)]
    pub max_request_bytes: usize,

    /// How often watchers that asked for progress notifications get one.
    #[arg(long, env = "E2D_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m", value_parser = parse_duration_ms)]
    pub watch_progress_notify_interval: u64,

    /// Log filter, as in RUST_LOG (e.g. "info" or "e2d_shell=debug").
    #[arg(long, env = "E2D_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The client address of the node to ask (host:port or http://host:port).
    #[arg(long, env = "E2D_ENDPOINT", default_value = "127.0.0.1:2379")]
    pub endpoint: String,

    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,

    /// How long to wait for the node's answer.
    #[arg(long, default_value = "5s", value_parser = parse_duration_ms)]
    pub timeout: u64,
}

/// Parses durations like "500ms", "10s", "5m", "1h" into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits.parse().map_err(|_| {
        format!(
            "invalid duration {text:?}: expected a number with a unit, like 500ms, 10s, 5m or 1h"
        )
    })?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "invalid duration {text:?}: the unit must be ms, s, m or h"
            ))
        }
    };
    let ms = value
        .checked_mul(unit_ms)
        .ok_or_else(|| format!("duration {text:?} is too long"))?;
    if ms == 0 {
        return Err(format!("duration {text:?} must be greater than zero"));
    }
    Ok(ms)
}

impl RunArgs {
    /// The URL others use to reach `addr`: the host replaces an
    /// unspecified listen address.
    pub fn advertised_url(&self, addr: SocketAddr) -> String {
        if addr.ip().is_unspecified() {
            format!("http://{}:{}", self.host, addr.port())
        } else {
            format!("http://{addr}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("10m"), Ok(600_000));
        assert!(parse_duration_ms("10").unwrap_err().contains("unit"));
        assert!(parse_duration_ms("0s")
            .unwrap_err()
            .contains("greater than zero"));
        assert!(parse_duration_ms("fast").is_err());
    }
}

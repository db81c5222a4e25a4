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
    /// Save, list, inspect and restore snapshot backups.
    #[command(subcommand)]
    Snapshot(Box<SnapshotCommand>),
    /// Copy a running etcd cluster's data (keys with their revisions,
    /// leases, users and roles) into a new data dir, through a snapshot
    /// taken over etcd's Maintenance API.
    Migrate(Box<MigrateArgs>),
    /// Change the running cluster: `e2d cluster resize N`.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Make the cluster's certificates: a CA, then server, peer and client
    /// certificates it signs.
    #[command(subcommand)]
    Pki(Box<PkiCommand>),
    /// Print the peers a node would find with --peer-discovery, to check
    /// tags, IAM policies, tokens and DNS before starting a cluster.
    Discover(Box<DiscoverArgs>),
    /// Print the version of e2d and of the etcd API it serves.
    Version,
}

/// How a node finds its peers besides --bootstrap-addrs.
#[derive(Debug, Clone, Args)]
pub struct DiscoveryArgs {
    /// How to find peers: aws-autoscaling-group,
    /// ec2-tags[:<name>=<value>,...], do-tags[:<tag>,...] or
    /// k8s-dns:<headless-service>. Runs at start and again whenever gossip
    /// has fewer peers than the cluster needs.
    #[arg(long, env = "E2D_PEER_DISCOVERY", value_parser = parse_peer_discovery)]
    pub peer_discovery: Option<crate::discovery::Method>,

    /// DigitalOcean API token for do-tags (read access to droplets).
    #[arg(long, env = "DIGITALOCEAN_ACCESS_TOKEN", hide_env_values = true)]
    pub do_access_token: Option<String>,

    /// DigitalOcean API base URL.
    #[arg(
        long,
        env = "E2D_DO_API_URL",
        default_value = "https://api.digitalocean.com"
    )]
    pub do_api_url: String,

    /// DigitalOcean droplet metadata base URL (this droplet's id and tags).
    #[arg(
        long,
        env = "E2D_DO_METADATA_URL",
        default_value = "http://169.254.169.254/metadata/v1"
    )]
    pub do_metadata_url: String,

    /// DNS servers (ip:port, separated by commas) for k8s-dns, instead of
    /// the system's configuration.
    #[arg(long, env = "E2D_DNS_SERVER", value_delimiter = ',')]
    pub dns_server: Vec<SocketAddr>,
}

impl DiscoveryArgs {
    /// What the discovery sources need, for a node reached at `host`.
    pub fn settings(&self, host: &str) -> crate::discovery::Settings {
        let advertised: Vec<std::net::IpAddr> = host.parse().into_iter().collect();
        crate::discovery::Settings {
            do_access_token: self.do_access_token.clone(),
            do_api_url: self.do_api_url.clone(),
            do_metadata_url: self.do_metadata_url.clone(),
            dns_servers: self.dns_server.clone(),
            own_ips: crate::discovery::own_ips(&advertised),
        }
    }
}

/// A request becomes one raft log record, which the log reads back only up
/// to its largest record (less room for the entry's own fields).
fn parse_max_request_bytes(text: &str) -> Result<usize, String> {
    const REQUEST_BYTES_LIMIT: usize = e2d_core::wal::RECORD_BYTES_MAX - 1024 * 1024;
    let bytes: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of bytes"))?;
    if bytes == 0 || bytes > REQUEST_BYTES_LIMIT {
        return Err(format!(
            "{bytes} is outside 1..={REQUEST_BYTES_LIMIT}: a request must fit in one raft log record"
        ));
    }
    Ok(bytes)
}

fn parse_peer_discovery(text: &str) -> Result<crate::discovery::Method, String> {
    text.parse()
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    /// The gossip address of `e2d run`; its port is the peers' gossip port.
    #[arg(long, env = "E2D_GOSSIP_ADDR", default_value = "0.0.0.0:7980")]
    pub gossip_addr: SocketAddr,
    /// This node's address, left out of what is found.
    #[arg(long, env = "E2D_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot of a running cluster and write it to a store URL
    /// (named by cluster, revision and time) or to a file.
    Save(Box<SnapshotSaveArgs>),
    /// List the snapshots in a store, oldest first.
    List(Box<SnapshotListArgs>),
    /// Check a snapshot file and show what it holds.
    Inspect(Box<SnapshotInspectArgs>),
    /// Restore a snapshot file, or the newest valid snapshot of a store,
    /// into a new data dir (the server must not run on it).
    Restore(Box<SnapshotRestoreArgs>),
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Make a new CA (refuses to replace one without --force).
    Init(PkiInitArgs),
    /// Make server, peer and client certificates signed by the CA.
    Gencerts(PkiGencertsArgs),
}

#[derive(Debug, Args)]
pub struct PkiInitArgs {
    /// Where to write the CA certificate.
    #[arg(long, default_value = "ca.crt")]
    pub ca_cert: PathBuf,
    /// Where to write the CA key (mode 0600).
    #[arg(long, default_value = "ca.key")]
    pub ca_key: PathBuf,
    /// The CA's key: ECDSA P-256 or RSA 2048.
    #[arg(long, value_enum, default_value = "ecdsa")]
    pub key_type: crate::pki::init::KeyType,
    /// Replace an existing CA (what it signed stops being trusted).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PkiGencertsArgs {
    /// The CA certificate.
    #[arg(long, default_value = "ca.crt")]
    pub ca_cert: PathBuf,
    /// The CA key.
    #[arg(long, default_value = "ca.key")]
    pub ca_key: PathBuf,
    /// Host names and addresses the certificates are valid for, besides
    /// 127.0.0.1, localhost and this machine's own addresses.
    #[arg(long, value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Where to write server.crt/key, peer.crt/key and client.crt/key.
    #[arg(long, default_value = ".")]
    pub output_dir: PathBuf,
    /// How many days the certificates are valid (fractions allowed). A
    /// node started with --ca-key renews its own when a third is left.
    #[arg(long, default_value_t = 365.0)]
    pub days: f64,
    /// The certificates' keys: ECDSA P-256 or RSA 2048.
    #[arg(long, value_enum, default_value = "ecdsa")]
    pub key_type: crate::pki::init::KeyType,
    /// Replace existing certificates.
    #[arg(long)]
    pub force: bool,
}

/// Mutual TLS: with a CA, the client and peer ports take only clients
/// whose certificates the CA signed (the client port any client with
/// `--client-cert-auth=false`), and the node presents its own.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// The CA certificate; turns TLS on for the client and peer ports.
    #[arg(long, env = "E2D_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Certificate of the client port.
    #[arg(long, env = "E2D_SERVER_CERT")]
    pub server_cert: Option<PathBuf>,
    /// Key of the client port's certificate.
    #[arg(long, env = "E2D_SERVER_KEY")]
    pub server_key: Option<PathBuf>,
    /// Certificate of the peer port, also shown when calling peers.
    #[arg(long, env = "E2D_PEER_CERT")]
    pub peer_cert: Option<PathBuf>,
    /// Key of the peer certificate.
    #[arg(long, env = "E2D_PEER_KEY")]
    pub peer_key: Option<PathBuf>,
    /// Certificate this node shows when it calls other members' client
    /// ports.
    #[arg(long, env = "E2D_CLIENT_CERT")]
    pub client_cert: Option<PathBuf>,
    /// Key of the client certificate.
    #[arg(long, env = "E2D_CLIENT_KEY")]
    pub client_key: Option<PathBuf>,
    /// Whether the client port asks clients for a certificate the CA
    /// signed (etcd asks whenever it has a trusted CA, as --ca-cert is).
    /// With --client-cert-auth=false it presents its certificate and asks
    /// for none, as etcd with a certificate and no trusted CA; the peer
    /// port keeps mutual TLS.
    #[arg(long, env = "E2D_CLIENT_CERT_AUTH", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub client_cert_auth: bool,
}

/// How snapshots are wrapped: compression and encryption.
#[derive(Debug, Clone, Args)]
pub struct EnvelopeArgs {
    /// Compress snapshots with gzip (at level 0 when encrypted).
    #[arg(long, env = "E2D_SNAPSHOT_COMPRESSION")]
    pub snapshot_compression: bool,

    /// Encrypt snapshots (AES-256-CTR, HMAC-SHA-512/256) with a key derived
    /// from the CA key; needs --ca-key. Unencrypted snapshots are then
    /// refused on restore.
    #[arg(long, env = "E2D_SNAPSHOT_ENCRYPTION")]
    pub snapshot_encryption: bool,

    /// The CA private key (PEM: PKCS#1, SEC1 or PKCS#8); snapshot keys are
    /// derived from it.
    #[arg(long, env = "E2D_CA_KEY")]
    pub ca_key: Option<PathBuf>,
}

/// Credentials of the cloud snapshot stores; without them the standard
/// AWS chain applies (environment, profile, instance role).
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// AWS access key id for S3.
    #[arg(long, env = "E2D_AWS_ACCESS_KEY")]
    pub aws_access_key: Option<String>,
    /// AWS secret access key for S3.
    #[arg(long, env = "E2D_AWS_SECRET_KEY", hide_env_values = true)]
    pub aws_secret_key: Option<String>,
    /// AWS region of the S3 bucket.
    #[arg(long, env = "E2D_AWS_REGION")]
    pub aws_region: Option<String>,
    /// DigitalOcean Spaces access key.
    #[arg(long, env = "E2D_DO_SPACES_KEY")]
    pub do_spaces_key: Option<String>,
    /// DigitalOcean Spaces secret key.
    #[arg(long, env = "E2D_DO_SPACES_SECRET", hide_env_values = true)]
    pub do_spaces_secret: Option<String>,
    /// Spaces endpoint, instead of https://<region>.digitaloceanspaces.com.
    #[arg(long, env = "E2D_DO_SPACES_ENDPOINT")]
    pub do_spaces_endpoint: Option<String>,
}

#[derive(Debug, Args)]
pub struct SnapshotSaveArgs {
    /// A store URL (file://, s3://, https://<region>.digitaloceanspaces.com/)
    /// or a file path.
    pub target: String,
    /// Client URL of a member to take the snapshot from.
    #[arg(long, env = "E2D_ENDPOINT", default_value = "127.0.0.1:2379")]
    pub endpoint: String,
    /// Take the snapshot from this stopped member's data dir instead.
    #[arg(long, conflicts_with = "endpoint")]
    pub data_dir: Option<PathBuf>,
    /// The payload: e2d's own, or etcd's database (what `etcdctl snapshot
    /// save` writes and etcd's tools read); either is sealed the same way.
    #[arg(long, value_enum, default_value = "e2d")]
    pub format: SnapshotFormat,
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[command(flatten)]
    pub envelope: EnvelopeArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// How to reach a client port: etcdctl's flags.
#[derive(Debug, Clone, Default, Args)]
pub struct RemoteArgs {
    /// For https endpoints: the CA that signed the server's certificate.
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// For https endpoints: the client certificate to present.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// For https endpoints: the client certificate's key.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// With auth on: `name:password`.
    #[arg(long)]
    pub user: Option<String>,
}

/// The payload of a snapshot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SnapshotFormat {
    /// e2d's own record stream.
    E2d,
    /// etcd's database (bbolt), as `etcdctl snapshot save` writes it.
    Etcd,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Set the cluster's size (1, 3, 5, 7 or 9). The leader moves the
    /// cluster there one member at a time: spare nodes join as learners
    /// and are promoted, or followers are removed (their data dirs kept).
    Resize(ClusterResizeArgs),
    /// After a majority of the members is lost for good: make the stopped
    /// member in --data-dir a cluster of one from its own data, as etcd's
    /// --force-new-cluster does. Start it again with `e2d run`; new nodes
    /// then join it up to the cluster's size. Writes that only the lost
    /// members held are lost; the old raft log is kept under archive/.
    Recover(ClusterRecoverArgs),
}

#[derive(Debug, Args)]
pub struct ClusterRecoverArgs {
    /// The stopped member's data dir.
    #[arg(long, env = "E2D_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ClusterResizeArgs {
    /// The new size.
    pub size: usize,
    /// Client URL of any member.
    #[arg(long, env = "E2D_ENDPOINT", default_value = "127.0.0.1:2379")]
    pub endpoint: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Client URLs of the etcd cluster, separated by commas; the first
    /// that answers gives the snapshot.
    #[arg(long, required = true, value_delimiter = ',')]
    pub from_endpoints: Vec<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// The data dir to create; it must not exist or be empty.
    #[arg(long, env = "E2D_DATA_DIR")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct SnapshotListArgs {
    /// A store URL.
    pub url: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct SnapshotInspectArgs {
    /// A snapshot file.
    pub file: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub envelope: EnvelopeArgs,
}

#[derive(Debug, Args)]
pub struct SnapshotRestoreArgs {
    /// A snapshot file, or a store URL (its newest valid snapshot and the
    /// deltas after it).
    pub source: String,
    /// The data dir to create; it must not exist or be empty.
    #[arg(long, env = "E2D_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Restore the store as it was at this revision: the newest full
    /// snapshot at or before it, and its deltas up to it (store URLs only).
    #[arg(long, conflicts_with = "to_time", value_parser = clap::value_parser!(i64).range(1..))]
    pub to_revision: Option<i64>,
    /// Restore the store as it was at this time (RFC 3339, such as
    /// 2026-12-04T10:00:00Z): the newest full snapshot taken by then, and
    /// the changes of its deltas applied by then (store URLs only).
    #[arg(long, value_parser = parse_rfc3339_ms)]
    pub to_time: Option<u64>,
    #[command(flatten)]
    pub envelope: EnvelopeArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Name of this member (defaults to the name kept in the data dir, or
    /// a new one made of the host name and a random suffix).
    #[arg(long, env = "E2D_NAME")]
    pub name: Option<String>,

    /// Voting members the cluster should have: 1, 3, 5, 7 or 9. Every node
    /// of a cluster is started with the same size. A member restarted with
    /// another size than it last had proposes it to its cluster, as `e2d
    /// cluster resize` does.
    #[arg(
        short = 'n',
        long,
        env = "E2D_REQUIRED_CLUSTER_SIZE",
        default_value_t = 1
    )]
    pub required_cluster_size: usize,

    /// Whether `-n` was given (flag or environment), not defaulted: only a
    /// given size is proposed to a running cluster.
    #[arg(skip)]
    pub cluster_size_given: bool,

    /// How often the leader checks gossip for members that are gone.
    #[arg(long, env = "E2D_HEALTH_CHECK_INTERVAL", default_value = "1m", value_parser = parse_duration_ms)]
    pub health_check_interval: u64,

    /// How long a member may be missing from gossip before the cluster
    /// removes it (so that a new node can take its place).
    #[arg(long, env = "E2D_HEALTH_CHECK_TIMEOUT", default_value = "5m", value_parser = parse_duration_ms)]
    pub health_check_timeout: u64,

    /// Off unless given. When a majority of the members has been gone from
    /// gossip for this long (more than --health-check-timeout) and the
    /// cluster has no leader, the survivors agree over gossip and the one
    /// with the most up-to-date raft log restarts the cluster alone from
    /// its data (as `e2d cluster recover` does); the others, then new
    /// nodes, join it. Writes only the lost members had are lost.
    #[arg(long, env = "E2D_UNSAFE_AUTO_RECOVER_AFTER", value_parser = parse_duration_ms)]
    pub unsafe_auto_recover_after: Option<u64>,

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

    #[command(flatten)]
    pub discovery: DiscoveryArgs,

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

    /// Applied raft entries after which the log is compacted (it is also
    /// compacted after every 64 MiB of entries); members further behind
    /// catch up from a snapshot.
    #[arg(long, env = "E2D_SNAPSHOT_COUNT", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(2..))]
    pub snapshot_count: u64,

    /// Also serve /metrics and the health endpoints on this address.
    #[arg(long, env = "E2D_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Backend size that raises the NOSPACE alarm.
    #[arg(long, env = "E2D_QUOTA_BACKEND_BYTES", default_value_t = e2d_core::limits::QUOTA_BACKEND_BYTES_DEFAULT)]
    pub quota_backend_bytes: u64,

    /// Largest client request accepted.
    #[arg(long, env = "E2D_MAX_REQUEST_BYTES", default_value_t = e2d_core::limits::REQUEST_BYTES_MAX, value_parser = parse_max_request_bytes)]
    pub max_request_bytes: usize,

    /// How clients' tokens are made: `simple`, or
    /// `jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256,ttl=5m` (etcd's).
    #[arg(long, env = "E2D_AUTH_TOKEN", default_value = "simple", value_parser = crate::auth::parse_auth_token)]
    pub auth_token: crate::auth::TokenKind,

    /// Seconds a simple token lives past its last use.
    #[arg(long, env = "E2D_AUTH_TOKEN_TTL", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub auth_token_ttl: u64,

    /// bcrypt cost of the password hashes of new users and passwords.
    #[arg(long, env = "E2D_BCRYPT_COST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31))]
    pub bcrypt_cost: u32,

    /// How often watchers that asked for progress notifications get one.
    #[arg(long, env = "E2D_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m", value_parser = parse_duration_ms)]
    pub watch_progress_notify_interval: u64,

    /// Before serving, compare this member's data (its HashKV at its
    /// revision) with its peers' and refuse to start when they differ
    /// (etcd 3.4 and 3.5 name it --experimental-initial-corrupt-check).
    #[arg(long, alias = "experimental-initial-corrupt-check", env = "E2D_INITIAL_CORRUPT_CHECK", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub initial_corrupt_check: bool,

    /// How often the leader compares the members' data (their HashKV at
    /// its revision) and raises the CORRUPT alarm when one differs; 0
    /// never (etcd 3.4 and 3.5 name it --experimental-corrupt-check-time).
    #[arg(long, alias = "experimental-corrupt-check-time", env = "E2D_CORRUPT_CHECK_TIME", default_value = "0", value_parser = parse_duration_or_off_ms)]
    pub corrupt_check_time: u64,

    /// How --auto-compaction-retention is read: "periodic" (a duration
    /// such as 30m or 1h; a bare number is hours) or "revision" (a number
    /// of revisions).
    #[arg(long, env = "E2D_AUTO_COMPACTION_MODE", default_value = "periodic", value_parser = ["periodic", "revision"])]
    pub auto_compaction_mode: String,

    /// History the leader keeps when it compacts the store on its own:
    /// periodic mode compacts every period (at most hourly) at the revision
    /// of one period ago, revision mode every 5 minutes at the current
    /// revision minus this many. 0 turns automatic compaction off.
    #[arg(long, env = "E2D_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,

    /// Where the leader keeps periodic snapshots: file://<dir>,
    /// s3://<bucket>[/prefix] or
    /// https://<region>.digitaloceanspaces.com/<bucket>[/prefix]. A new
    /// cluster whose members all start with empty data dirs restores the
    /// newest valid snapshot found there.
    #[arg(long, env = "E2D_SNAPSHOT_BACKUP_URL")]
    pub snapshot_backup_url: Option<String>,

    /// The payload of the periodic snapshots: e2d's own, or etcd's
    /// database (what `etcdctl snapshot save` writes); restores take both.
    #[arg(long, env = "E2D_SNAPSHOT_FORMAT", value_enum, default_value = "e2d")]
    pub snapshot_format: SnapshotFormat,

    /// Time between snapshots (skipped while nothing changed).
    #[arg(long, env = "E2D_SNAPSHOT_INTERVAL", default_value = "1m", value_parser = parse_duration_ms)]
    pub snapshot_interval: u64,

    /// Time between deltas: what was committed since the last full
    /// snapshot or delta, shipped to the same store so a total loss loses
    /// seconds, not a snapshot interval; restores replay them. 0 turns
    /// deltas off. A delta also goes early when the changes waiting reach
    /// half of the in-memory journal (64 MiB).
    #[arg(long, env = "E2D_SNAPSHOT_DELTA_INTERVAL", default_value = "10s", value_parser = parse_duration_ms)]
    pub snapshot_delta_interval: u64,

    /// Snapshots kept: the newest N, then the newest of each of the last H
    /// hours and D days that have one (N[,Hh][,Dd]).
    #[arg(long, env = "E2D_SNAPSHOT_RETENTION", default_value = "5,24h,7d", value_parser = parse_retention)]
    pub snapshot_retention: e2d_core::schedule::Retention,

    #[command(flatten)]
    pub envelope: EnvelopeArgs,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub tls: TlsArgs,

    /// Log filter, as in RUST_LOG (e.g. "info" or "e2d_shell=debug").
    #[arg(long, env = "E2D_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// How log lines are written: `text`, or `json` (one object per line).
    #[arg(long, env = "E2D_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: crate::logging::LogFormat,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The client address of the node to ask (host:port, http://host:port
    /// or https://host:port).
    #[arg(long, env = "E2D_ENDPOINT", default_value = "127.0.0.1:2379")]
    pub endpoint: String,

    /// For an https endpoint: the CA that signed the node's certificate.
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// For an https endpoint: the client certificate to present.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// For an https endpoint: the client certificate's key.
    #[arg(long)]
    pub key: Option<PathBuf>,

    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,

    /// How long to wait for the node's answer.
    #[arg(long, default_value = "5s", value_parser = parse_duration_ms)]
    pub timeout: u64,
}

/// Parses durations like "500ms", "10s", "5m", "1h" into milliseconds.
/// `N[,Hh][,Dd]`: the newest N snapshots, plus the newest of each of the
/// last H hours and D days.
pub fn parse_retention(text: &str) -> Result<e2d_core::schedule::Retention, String> {
    let bad = |why: String| format!("{why}; expected N[,Hh][,Dd], such as 5,24h,7d");
    let mut parts = text.split(',').map(str::trim);
    let count = |part: &str| {
        part.parse::<usize>()
            .map_err(|_| bad(format!("{part:?} is not a count")))
    };
    let keep_newest = count(parts.next().unwrap_or(""))?;
    if keep_newest == 0 {
        return Err(bad("at least one snapshot must be kept".into()));
    }
    let mut retention = e2d_core::schedule::Retention {
        keep_newest,
        keep_hourly: 0,
        keep_daily: 0,
    };
    for part in parts {
        if let Some(hours) = part.strip_suffix('h') {
            retention.keep_hourly = count(hours)?;
        } else if let Some(days) = part.strip_suffix('d') {
            retention.keep_daily = count(days)?;
        } else {
            return Err(bad(format!("{part:?} ends in neither h nor d")));
        }
    }
    Ok(retention)
}

/// An RFC 3339 time (any offset) as milliseconds since the Unix epoch.
pub fn parse_rfc3339_ms(text: &str) -> Result<u64, String> {
    let time =
        time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                format!("invalid time {text:?} ({e}): expected RFC 3339, like 2026-12-04T10:00:00Z")
            })?;
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("invalid time {text:?}: before 1970"))
}

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

/// A duration as [`parse_duration_ms`] reads it, or 0 (with or without a
/// unit) for off.
pub fn parse_duration_or_off_ms(text: &str) -> Result<u64, String> {
    let digits = text.trim().trim_end_matches(|c: char| !c.is_ascii_digit());
    if !digits.is_empty() && digits.bytes().all(|b| b == b'0') {
        return Ok(0);
    }
    parse_duration_ms(text)
}

/// `--auto-compaction-retention` read as `--auto-compaction-mode` says, as
/// etcd reads them; `None` for 0 (off).
pub fn parse_auto_compaction(
    mode: &str,
    retention: &str,
) -> Result<Option<e2d_core::auto_compaction::Retention>, String> {
    use e2d_core::auto_compaction::Retention;
    let retention = retention.trim();
    if let Ok(number) = retention.parse::<u64>() {
        if number == 0 {
            return Ok(None);
        }
        let too_large = || format!("--auto-compaction-retention {retention} is too large");
        return match mode {
            "revision" => Ok(Some(Retention::Revision {
                revisions: i64::try_from(number).map_err(|_| too_large())?,
            })),
            // A bare number is hours, as etcd reads it.
            _ => Ok(Some(Retention::Periodic {
                period_ms: number.checked_mul(3_600_000).ok_or_else(too_large)?,
            })),
        };
    }
    if mode == "revision" {
        return Err(format!(
            "--auto-compaction-retention {retention:?} is not a number of revisions, which --auto-compaction-mode revision needs"
        ));
    }
    let period_ms = parse_duration_ms(retention)
        .map_err(|e| format!("--auto-compaction-retention: {e} (or a bare number of hours)"))?;
    Ok(Some(Retention::Periodic { period_ms }))
}

impl RunArgs {
    /// The automatic compaction the flags ask for; `None` when off.
    pub fn auto_compaction(&self) -> Result<Option<e2d_core::auto_compaction::Retention>, String> {
        parse_auto_compaction(&self.auto_compaction_mode, &self.auto_compaction_retention)
    }

    /// The URL others use to reach `addr`: the host replaces an
    /// unspecified listen address.
    pub fn advertised_url(&self, addr: SocketAddr) -> String {
        let scheme = if self.tls.ca_cert.is_some() {
            "https"
        } else {
            "http"
        };
        if addr.ip().is_unspecified() {
            format!("{scheme}://{}:{}", self.host, addr.port())
        } else {
            format!("{scheme}://{addr}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_flags() {
        let r = parse_retention("5,24h,7d").unwrap();
        assert_eq!((r.keep_newest, r.keep_hourly, r.keep_daily), (5, 24, 7));
        let r = parse_retention("3").unwrap();
        assert_eq!((r.keep_newest, r.keep_hourly, r.keep_daily), (3, 0, 0));
        assert!(parse_retention("0").unwrap_err().contains("at least one"));
        assert!(parse_retention("5,24x")
            .unwrap_err()
            .contains("neither h nor d"));
        assert!(parse_retention("five").unwrap_err().contains("not a count"));
    }

    #[test]
    fn auto_compaction_retention_reads_as_etcd_does() {
        use e2d_core::auto_compaction::Retention;
        let periodic = |period_ms| Ok(Some(Retention::Periodic { period_ms }));
        assert_eq!(parse_auto_compaction("periodic", "0"), Ok(None));
        assert_eq!(parse_auto_compaction("revision", "0"), Ok(None));
        assert_eq!(parse_auto_compaction("periodic", "1"), periodic(3_600_000));
        assert_eq!(
            parse_auto_compaction("periodic", "30m"),
            periodic(1_800_000)
        );
        assert_eq!(parse_auto_compaction("periodic", "1h"), periodic(3_600_000));
        assert_eq!(
            parse_auto_compaction("revision", "1000"),
            Ok(Some(Retention::Revision { revisions: 1000 }))
        );
        assert!(parse_auto_compaction("revision", "1h")
            .unwrap_err()
            .contains("number of revisions"));
        assert!(parse_auto_compaction("periodic", "soon").is_err());
        assert!(parse_auto_compaction("periodic", "-1").is_err());
        assert!(parse_auto_compaction("periodic", &u64::MAX.to_string())
            .unwrap_err()
            .contains("too large"));
    }

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

    #[test]
    fn a_duration_of_zero_turns_a_check_off() {
        assert_eq!(parse_duration_or_off_ms("0"), Ok(0));
        assert_eq!(parse_duration_or_off_ms("0s"), Ok(0));
        assert_eq!(parse_duration_or_off_ms("1s"), Ok(1_000));
        assert_eq!(parse_duration_or_off_ms("3m"), Ok(180_000));
        assert!(parse_duration_or_off_ms("10").unwrap_err().contains("unit"));
        assert!(parse_duration_or_off_ms("").is_err());
        assert!(parse_duration_or_off_ms("s").is_err());
    }

    #[test]
    fn corruption_check_flags_default_off_as_etcd() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            let argv = ["e2d", "run"].iter().chain(args).copied();
            match Cli::try_parse_from(argv).expect("flags parse").command {
                Command::Run(run) => (run.initial_corrupt_check, run.corrupt_check_time),
                _ => unreachable!("e2d run"),
            }
        };
        assert_eq!(parse(&[]), (false, 0));
        assert_eq!(
            parse(&["--initial-corrupt-check", "--corrupt-check-time", "1s"]),
            (true, 1_000)
        );
        assert_eq!(parse(&["--initial-corrupt-check=false"]), (false, 0));
        assert_eq!(
            parse(&[
                "--experimental-initial-corrupt-check=true",
                "--experimental-corrupt-check-time=5m"
            ]),
            (true, 300_000)
        );
    }
}

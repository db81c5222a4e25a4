//! Snapshot backups: where they go (`location`, `store` and the stores),
//! how they are wrapped (`envelope`, with keys from `ca_key`), taking one
//! (`take`), restoring one (`restore`), and the leader's periodic backups
//! (`schedule_task`, driving `core::schedule`).

#[cfg(not(madsim))]
mod azure_store;
pub mod ca_key;
#[cfg(not(madsim))]
mod cloud;
#[cfg(not(madsim))]
pub mod commands;
pub mod delta;
pub mod envelope;
mod file_store;
#[cfg(not(madsim))]
mod gcs_store;
pub mod location;
#[cfg(not(madsim))]
pub mod remote;
pub mod restore;
#[cfg(not(madsim))]
mod s3_store;
pub mod schedule_task;
pub mod store;
pub mod take;

use e2d_core::schedule::{parse_snapshot_name, SnapshotInfo};

use crate::cli::{EnvelopeArgs, StoreArgs};

pub use ca_key::SnapshotKeys;
pub use envelope::Envelope;
pub use location::Location;
pub use store::{Store, StoreSettings};

/// Everything a node needs to write and read its backups.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    pub location: Location,
    /// How snapshots are written.
    pub envelope: Envelope,
    /// The keys snapshots are opened with: those of `--ca-key`, whether or
    /// not new snapshots are encrypted.
    pub open_keys: Option<SnapshotKeys>,
    pub settings: StoreSettings,
    /// The payload of the snapshots taken: e2d's own or etcd's database.
    pub payload_format: crate::payload::PayloadFormat,
    /// Time between deltas; 0: none.
    pub delta_interval_ms: u64,
}

/// A backup a member uploaded.
#[derive(Debug, Clone, Copy)]
pub enum Uploaded<'a> {
    Snapshot(&'a str),
    Delta(&'a str),
}

/// Bytes of applied entries a member keeps for the backups' deltas; a
/// delta goes early once half of it is used.
pub const DELTA_JOURNAL_BYTES: usize = 64 * 1024 * 1024;

/// How to write snapshots, and the keys to open them, from the flags.
pub fn envelope_from_args(args: &EnvelopeArgs) -> Result<(Envelope, Option<SnapshotKeys>), String> {
    if args.snapshot_encryption && args.ca_key.is_none() {
        return Err("--snapshot-encryption needs --ca-key: the CA private key the snapshot key is derived from".into());
    }
    let keys = match &args.ca_key {
        Some(path) => Some(SnapshotKeys::from_ca_key_file(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let envelope = Envelope {
        compress: args.snapshot_compression,
        keys: if args.snapshot_encryption {
            keys.clone()
        } else {
            None
        },
    };
    Ok((envelope, keys))
}

pub fn store_settings(args: &StoreArgs) -> StoreSettings {
    StoreSettings {
        aws_access_key: args.aws_access_key.clone(),
        aws_secret_key: args.aws_secret_key.clone(),
        aws_region: args.aws_region.clone(),
        do_spaces_key: args.do_spaces_key.clone(),
        do_spaces_secret: args.do_spaces_secret.clone(),
        do_spaces_endpoint: args.do_spaces_endpoint.clone(),
    }
}

impl BackupConfig {
    /// The configuration the flags describe, checked; the CA key is read.
    pub fn from_args(
        url: &str,
        envelope: &EnvelopeArgs,
        store: &StoreArgs,
    ) -> Result<Self, String> {
        let location = Location::parse(url)?;
        let (envelope, open_keys) = envelope_from_args(envelope)?;
        Ok(Self {
            location,
            envelope,
            open_keys,
            settings: store_settings(store),
            payload_format: crate::payload::PayloadFormat::E2d,
            delta_interval_ms: 0,
        })
    }

    /// Snapshots must be sealed when encryption is on.
    pub fn require_sealed(&self) -> bool {
        self.envelope.keys.is_some()
    }
}

/// The snapshots in a store's listing, as the scheduler and the restore
/// see them; objects whose names are not e2d's are left out.
pub fn snapshots_in(objects: &[store::StoredObject]) -> Vec<SnapshotInfo> {
    objects
        .iter()
        .filter_map(|object| {
            let (cluster_id, revision, taken_at_ms) = parse_snapshot_name(&object.name)?;
            Some(SnapshotInfo {
                name: object.name.clone(),
                cluster_id,
                revision,
                taken_at_ms,
                size_bytes: object.size_bytes,
                valid: object.size_bytes > 0,
            })
        })
        .collect()
}

/// Milliseconds since the Unix epoch, the clock snapshots are named by.
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A progress bar on stderr for the commands, hidden when stderr is not a
/// terminal.
pub fn progress_bar(what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .expect("the template is valid")
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// The backups of a running member: the store, opened once, and the
/// schedule.
pub struct Backups {
    pub config: BackupConfig,
    pub store: std::sync::Arc<Store>,
    pub schedule: e2d_core::schedule::SchedulerConfig,
}

impl Backups {
    /// The backups `e2d run`'s flags ask for, if any; every flag is checked
    /// and the store opened before the member starts.
    pub async fn from_run_args(args: &crate::cli::RunArgs) -> Result<Option<Self>, String> {
        let Some(url) = &args.snapshot_backup_url else {
            if args.envelope.snapshot_encryption || args.envelope.snapshot_compression {
                return Err("--snapshot-encryption and --snapshot-compression need --snapshot-backup-url: where to keep the snapshots".into());
            }
            return Ok(None);
        };
        let config = BackupConfig {
            payload_format: args.snapshot_format,
            delta_interval_ms: args.snapshot_delta_interval,
            ..BackupConfig::from_args(url, &args.envelope, &args.store)?
        };
        let schedule = e2d_core::schedule::SchedulerConfig::from_interval(
            args.snapshot_interval,
            args.snapshot_retention,
        )
        .map_err(|e| format!("--snapshot-interval: {e}"))?;
        let store = Store::open(&config.location, &config.settings)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(Self {
            config,
            store: std::sync::Arc::new(store),
            schedule,
        }))
    }

    /// Starts the leader's periodic snapshots of `node`.
    pub fn start_schedule(
        &self,
        node: std::sync::Arc<crate::server::Node>,
        uploaded: impl Fn(Uploaded<'_>) + Send + Sync + 'static,
    ) {
        schedule_task::spawn(
            node,
            self.store.clone(),
            self.config.clone(),
            self.schedule.clone(),
            uploaded,
        );
    }
}

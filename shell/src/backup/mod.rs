//! Snapshot backups: where they go (`location`, `store` and the stores),
//! how they are wrapped (`envelope`, with keys from `ca_key`), taking one
//! (`take`), restoring one (`restore`), and the leader's periodic backups
//! (`schedule_task`, driving `core::schedule`).

pub mod ca_key;
pub mod envelope;
mod file_store;
pub mod location;
pub mod restore;
#[cfg(not(madsim))]
mod s3_store;
pub mod schedule_task;
pub mod store;
pub mod take;

use e2d_core::schedule::{parse_snapshot_name, SnapshotInfo};

pub use ca_key::SnapshotKeys;
pub use envelope::Envelope;
pub use location::Location;
pub use store::{Store, StoreSettings};

/// Everything a node needs to write and read its backups.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    pub location: Location,
    pub envelope: Envelope,
    pub settings: StoreSettings,
}

impl BackupConfig {
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

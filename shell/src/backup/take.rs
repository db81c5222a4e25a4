//! Taking a snapshot: the state machine at one revision, through the
//! envelope into a file, then into the store under its name.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use e2d_core::schedule::{snapshot_name, SnapshotInfo};
use indicatif::ProgressBar;

use super::envelope::{Envelope, SnapshotWriter};
use super::{wall_clock_ms, BackupConfig, Store};
use crate::payload::PayloadFormat;
use crate::server::Node;

/// Bytes handed to the envelope at a time.
const PAYLOAD_CHUNK_BYTES: usize = 256 * 1024;

/// A fresh IV for AES-CTR: never reused under one key, so taken from the
/// operating system.
fn fresh_iv() -> std::io::Result<[u8; 16]> {
    let mut iv = [0u8; 16];
    getrandom::fill(&mut iv).map_err(|e| std::io::Error::other(format!("no randomness: {e}")))?;
    Ok(iv)
}

/// Writes a stored snapshot to a new file at `path` (0600): `write_payload`
/// writes the payload, the envelope wraps it. Returns the file's size.
pub fn write_stored(
    path: &Path,
    envelope: &Envelope,
    write_payload: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let file = write_sealed(path, envelope, write_payload)?;
    file.sync_all()?;
    Ok(file.metadata()?.len())
}

/// [`write_stored`] without the sync: for a file uploaded at once and
/// removed after, which a crash may lose (deltas: the store syncs what it
/// keeps).
pub fn write_stored_unsynced(
    path: &Path,
    envelope: &Envelope,
    write_payload: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    Ok(write_sealed(path, envelope, write_payload)?
        .metadata()?
        .len())
}

fn write_sealed(
    path: &Path,
    envelope: &Envelope,
    write_payload: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<std::fs::File> {
    let file = crate::durable_file::create_new(path)?;
    let mut writer = SnapshotWriter::new(BufWriter::new(file), envelope, fresh_iv()?)?;
    // The payload arrives in small pieces (record headers): the layers
    // work on whole chunks.
    let mut chunked = BufWriter::with_capacity(PAYLOAD_CHUNK_BYTES, &mut writer);
    write_payload(&mut chunked)?;
    chunked.flush()?;
    drop(chunked);
    writer.finish()?.into_inner().map_err(|e| e.into_error())
}

/// Wraps the payload file at `payload` into a stored snapshot at `path`.
pub fn seal_file(payload: &Path, path: &Path, envelope: &Envelope) -> std::io::Result<u64> {
    let mut input = std::fs::File::open(payload)?;
    write_stored(path, envelope, |out| {
        std::io::copy(&mut input, out).map(|_| ())
    })
}

/// Removes a file when dropped.
pub struct TempFile(pub PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A snapshot uploaded, and the raft index it holds everything up to:
/// where its chain of deltas starts.
pub struct Taken {
    pub info: SnapshotInfo,
    pub applied_index: u64,
}

/// Snapshots the running member's state machine and uploads it.
pub async fn take_and_upload(
    node: &Node,
    store: &Store,
    config: &BackupConfig,
) -> Result<Taken, String> {
    let (view, revision, applied_index) = {
        let state = node.read();
        let applied_index = e2d_core::storage::read_meta_u64(
            state.mvcc().backend(),
            crate::server::node::META_APPLIED_INDEX,
        )
        .map_err(|e| format!("reading the applied index: {e}"))?
        .unwrap_or(0);
        (
            state.mvcc().backend().point_in_time(),
            state.current_revision(),
            applied_index,
        )
    };
    let cluster_id = node.identity.cluster_id;
    let taken_at_ms = wall_clock_ms();
    let name = snapshot_name(cluster_id, revision, taken_at_ms);
    let dir = node.config.data_dir.join("tmp");
    let temp = TempFile(dir.join(format!(".{name}.taking")));
    let (path, envelope) = (temp.0.clone(), config.envelope.clone());
    let format = config.payload_format;
    crate::blocking::spawn(move || {
        crate::durable_file::create_dir_all(&dir)?;
        match format {
            PayloadFormat::E2d => write_stored(&path, &envelope, |out| {
                crate::snapshot::write_snapshot(&view, &mut &mut *out)
                    .map(|_| ())
                    .map_err(|e| std::io::Error::other(e.0))
            }),
            PayloadFormat::Etcd => {
                // etcd's database is written in place (its meta pages come
                // last), then sealed.
                let payload = TempFile(crate::durable_file::sibling_temp(&path, "payload"));
                let mut file = crate::durable_file::create_new(&payload.0)?;
                crate::payload::write(&view, format, &mut file).map_err(std::io::Error::other)?;
                seal_file(&payload.0, &path, &envelope)
            }
        }
    })
    .await
    .map_err(|e| format!("writing snapshot {name}: {e}"))?
    .map_err(|e| format!("writing snapshot {name}: {e}"))?;
    let size_bytes = store
        .put(&name, &temp.0, &ProgressBar::hidden())
        .await
        .map_err(|e| e.to_string())?;
    Ok(Taken {
        info: SnapshotInfo {
            name,
            cluster_id,
            revision,
            taken_at_ms,
            size_bytes,
            valid: size_bytes > 0,
        },
        applied_index,
    })
}

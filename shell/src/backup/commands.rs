//! `e2d snapshot save | list | inspect | restore`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use e2d_core::schedule::{parse_snapshot_name, snapshot_name, utc_rfc3339, SnapshotInfo};
use e2d_core::storage::Table;
use e2d_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use e2d_proto::etcdserverpb::SnapshotRequest;

use super::envelope::Layers;
use super::location::{Location, Target};
use super::restore::{self, open_verified};
use super::store::Store;
use super::take::{seal_file, TempFile};
use super::{
    envelope_from_args, progress_bar, snapshots_in, store_settings, wall_clock_ms, BackupConfig,
};
use crate::cli::{
    SnapshotCommand, SnapshotInspectArgs, SnapshotListArgs, SnapshotRestoreArgs, SnapshotSaveArgs,
};
use crate::durable_file::{self, sibling_temp};
use crate::snapshot::SnapshotError;

/// Runs one `e2d snapshot` command; the error says what went wrong.
pub fn run(command: SnapshotCommand) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        match command {
            SnapshotCommand::Save(args) => save(*args).await,
            SnapshotCommand::List(args) => list(*args).await,
            SnapshotCommand::Inspect(args) => inspect(*args),
            SnapshotCommand::Restore(args) => restore_command(*args).await,
        }
    })
}

fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// Streams a member's snapshot into a new file at `path`; returns the
/// cluster id and revision its first message carried.
async fn download_payload(endpoint: &str, path: &Path) -> Result<(u64, i64), String> {
    let url = endpoint_url(endpoint);
    let mut client = MaintenanceClient::connect(url.clone())
        .await
        .map_err(|e| format!("cannot reach {url}: {e} (is e2d running there?)"))?;
    let mut stream = client
        .snapshot(SnapshotRequest {})
        .await
        .map_err(|e| format!("{url}: snapshot refused: {}", e.message()))?
        .into_inner();
    let mut file = durable_file::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let progress = progress_bar("receiving");
    let mut ids = None;
    while let Some(message) = stream
        .message()
        .await
        .map_err(|e| format!("{url}: snapshot stream broke: {}", e.message()))?
    {
        if ids.is_none() {
            let header = message.header.unwrap_or_default();
            ids = Some((header.cluster_id, header.revision));
        }
        file.write_all(&message.blob)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        progress.inc(message.blob.len() as u64);
    }
    progress.finish_and_clear();
    file.sync_all()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    ids.ok_or_else(|| format!("{url}: the snapshot stream was empty"))
}

/// Writes the stored snapshot of a stopped member's data dir to a new
/// file at `path`, straight from the database; returns the cluster id and
/// revision.
fn seal_data_dir(
    data_dir: &Path,
    path: &Path,
    envelope: &super::Envelope,
) -> Result<(u64, i64), String> {
    let backend = crate::run::open_backend(data_dir).map_err(|e| e.to_string())?;
    let cluster_id = crate::server::Identity::stored_ids(&backend)
        .map_err(|e| e.to_string())?
        .map_or(0, |(_, cluster_id)| cluster_id);
    let revision = e2d_core::storage::read_meta_u64(&backend, e2d_core::mvcc::META_CURRENT_REVISION)
        .map_err(|e| e.to_string())?
        .unwrap_or(1) as i64;
    let view = backend.point_in_time();
    super::take::write_stored(path, envelope, |out| {
        crate::snapshot::write_snapshot(&view, &mut &mut *out)
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.0))
    })
    .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((cluster_id, revision))
}

async fn save(args: SnapshotSaveArgs) -> Result<(), String> {
    let (envelope, _) = envelope_from_args(&args.envelope)?;
    let target = Location::parse_or_file(&args.target);
    let work_dir = match &target {
        Target::File(path) => path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        Target::Store(_) => std::env::temp_dir(),
    };
    let sealed = TempFile(sibling_temp(&work_dir.join("e2d-snapshot"), "sealed"));
    let (cluster_id, revision) = match &args.data_dir {
        Some(data_dir) => seal_data_dir(data_dir, &sealed.0, &envelope)?,
        None => {
            let payload = TempFile(sibling_temp(&work_dir.join("e2d-snapshot"), "payload"));
            let ids = download_payload(&args.endpoint, &payload.0).await?;
            let mut file = std::fs::File::open(&payload.0).map_err(|e| e.to_string())?;
            crate::snapshot::verify_snapshot(&mut file)
                .map_err(|e| format!("the member sent a bad snapshot: {e}"))?;
            seal_file(&payload.0, &sealed.0, &envelope).map_err(|e| e.to_string())?;
            ids
        }
    };
    match target {
        Target::File(path) => {
            crate::durable_file::rename_synced(&sealed.0, &path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            println!("Snapshot saved at {} (revision {revision})", path.display());
        }
        Target::Store(location) => {
            let location = location?;
            let name = snapshot_name(cluster_id, revision, wall_clock_ms());
            let store = Store::open(&location, &store_settings(&args.store))
                .await
                .map_err(|e| e.to_string())?;
            let progress = progress_bar("uploading");
            store
                .put(&name, &sealed.0, &progress)
                .await
                .map_err(|e| e.to_string())?;
            progress.finish_and_clear();
            println!("Snapshot saved at {location}/{name} (revision {revision})");
        }
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct ListedSnapshot {
    name: String,
    cluster_id: String,
    revision: i64,
    taken_at: String,
    size_bytes: u64,
}

async fn list(args: SnapshotListArgs) -> Result<(), String> {
    let location = Location::parse(&args.url)?;
    let store = Store::open(&location, &store_settings(&args.store))
        .await
        .map_err(|e| e.to_string())?;
    let objects = store.list().await.map_err(|e| e.to_string())?;
    let mut snapshots: Vec<SnapshotInfo> = snapshots_in(&objects);
    snapshots.sort_by(|a, b| a.recency_key().cmp(&b.recency_key()));
    let listed: Vec<ListedSnapshot> = snapshots
        .into_iter()
        .map(|s| ListedSnapshot {
            cluster_id: format!("{:x}", s.cluster_id),
            taken_at: utc_rfc3339(s.taken_at_ms),
            name: s.name,
            revision: s.revision,
            size_bytes: s.size_bytes,
        })
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&listed).unwrap_or_default()
        );
        return Ok(());
    }
    if listed.is_empty() {
        println!("no snapshots in {location}");
        return Ok(());
    }
    println!(
        "{:<82} {:<16} {:>10} {:<24} {:>12}",
        "NAME", "CLUSTER", "REVISION", "TAKEN", "SIZE"
    );
    for s in &listed {
        println!(
            "{:<82} {:<16} {:>10} {:<24} {:>12}",
            s.name, s.cluster_id, s.revision, s.taken_at, s.size_bytes
        );
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct Inspection {
    file: String,
    size_bytes: u64,
    compressed: bool,
    encrypted: bool,
    revision: i64,
    keys: u64,
    leases: u64,
    payload_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    taken_at: Option<String>,
}

fn inspect(args: SnapshotInspectArgs) -> Result<(), String> {
    let (_, keys) = envelope_from_args(&args.envelope)?;
    let file = &args.file;
    let size_bytes = std::fs::metadata(file)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .len();
    let payload = TempFile(sibling_temp(file, "inspect"));
    let layers: Layers = open_verified(
        file,
        &payload.0,
        keys.as_ref(),
        args.envelope.snapshot_encryption,
    )
    .map_err(|e| format!("{}: {e}", file.display()))?;
    let (revision, live_keys, leases) =
        count_payload(&payload.0).map_err(|e| format!("{}: {e}", file.display()))?;
    let named = file
        .file_name()
        .and_then(|n| parse_snapshot_name(&n.to_string_lossy()));
    let inspection = Inspection {
        file: file.display().to_string(),
        size_bytes,
        compressed: layers.compressed,
        encrypted: layers.encrypted,
        revision,
        keys: live_keys,
        leases,
        payload_bytes: std::fs::metadata(&payload.0).map_or(0, |m| m.len()),
        cluster_id: named.map(|(cluster_id, _, _)| format!("{cluster_id:x}")),
        taken_at: named.map(|(_, _, taken_at_ms)| utc_rfc3339(taken_at_ms)),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&inspection).unwrap_or_default()
        );
        return Ok(());
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    println!("file        {}", inspection.file);
    println!("size        {} bytes", inspection.size_bytes);
    println!("compressed  {}", yes_no(inspection.compressed));
    println!("encrypted   {}", yes_no(inspection.encrypted));
    println!("revision    {}", inspection.revision);
    println!("keys        {}", inspection.keys);
    println!("leases      {}", inspection.leases);
    if let Some(cluster_id) = &inspection.cluster_id {
        println!("cluster     {cluster_id}");
    }
    if let Some(taken_at) = &inspection.taken_at {
        println!("taken at    {taken_at}");
    }
    println!("verified    yes");
    Ok(())
}

/// The revision, live keys and leases of a verified payload, read in one
/// pass (records come in revision order, so the last change of each key
/// is the one that counts).
fn count_payload(path: &Path) -> Result<(i64, u64, u64), SnapshotError> {
    let mut input = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut alive: BTreeSet<prost::bytes::Bytes> = BTreeSet::new();
    let (mut revision, mut leases) = (0i64, 0u64);
    crate::snapshot::for_each_record(&mut input, &mut |(table, key, value)| {
        match table {
            Table::Kv => {
                let (tombstone, kv) = e2d_core::mvcc::decode_kv_record(&key, &value)
                    .map_err(|e| SnapshotError::Io(std::io::Error::other(e.0)))?;
                if tombstone {
                    alive.remove(&kv.key);
                } else {
                    alive.insert(kv.key);
                }
            }
            Table::Lease => leases += 1,
            Table::Meta if key == e2d_core::mvcc::META_CURRENT_REVISION => {
                if let Ok(bytes) = <[u8; 8]>::try_from(value.as_slice()) {
                    revision = i64::from_be_bytes(bytes);
                }
            }
            Table::Meta | Table::Auth => {}
        }
        Ok(())
    })?;
    Ok((revision, alive.len() as u64, leases))
}

async fn restore_command(args: SnapshotRestoreArgs) -> Result<(), String> {
    let data_dir = &args.data_dir;
    let occupied = std::fs::read_dir(data_dir).is_ok_and(|mut entries| entries.next().is_some());
    if occupied {
        return Err(format!(
            "data dir {} already exists and is not empty: restore only into a new data dir",
            data_dir.display()
        ));
    }
    let (envelope, open_keys) = envelope_from_args(&args.envelope)?;
    let staging_parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let (name, payload) = match Location::parse_or_file(&args.source) {
        Target::File(path) => {
            let payload = sibling_temp(&staging_parent.join("e2d-restore"), "payload");
            open_verified(
                &path,
                &payload,
                open_keys.as_ref(),
                args.envelope.snapshot_encryption,
            )
            .map_err(|e| format!("{}: {e}; the data dir was not touched", path.display()))?;
            (path.display().to_string(), payload)
        }
        Target::Store(location) => {
            let config = BackupConfig {
                location: location?,
                envelope,
                open_keys,
                settings: store_settings(&args.store),
            };
            let store = Store::open(&config.location, &config.settings)
                .await
                .map_err(|e| e.to_string())?;
            let staging = sibling_temp(&staging_parent.join("e2d-restore"), "staging");
            let mut refused = BTreeMap::new();
            let found = restore::fetch_newest_restorable(&store, &staging, &config, &mut refused)
                .await
                .map_err(|e| format!("{e}; the data dir was not touched"))?;
            let (snapshot, payload) =
                found.ok_or_else(|| format!("no snapshots in {}", config.location))?;
            let moved = sibling_temp(&staging_parent.join("e2d-restore"), "payload");
            std::fs::rename(&payload, &moved).map_err(|e| e.to_string())?;
            let _ = std::fs::remove_dir_all(&staging);
            (format!("{}/{}", config.location, snapshot.name), moved)
        }
    };
    let payload = TempFile(payload);
    let backend = crate::run::open_backend(data_dir).map_err(|e| e.to_string())?;
    let now_ms = wall_clock_ms();
    let restored_at = restore::restored_at_text(now_ms);
    let (backend, revision) = restore::load_into(backend, &payload.0, Some(restored_at), now_ms)
        .map_err(|e| format!("cannot restore into {}: {e}", data_dir.display()))?;
    drop(backend);
    println!(
        "Restored {name} into {} at revision {revision}; start e2d run --data-dir {} to serve it as a new cluster",
        data_dir.display(),
        data_dir.display()
    );
    Ok(())
}

//! `e2d snapshot save | list | inspect | restore`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use e2d_core::schedule::{
    parse_snapshot_name, snapshot_name, utc_rfc3339, ReplayTarget, SnapshotInfo,
};

use super::envelope::Layers;
use super::location::{Location, Target};
use super::remote::Remote;
use super::restore::{self, open_verified};
use super::store::Store;
use super::take::{seal_file, TempFile};
use super::{
    envelope_from_args, progress_bar, snapshots_in, store_settings, wall_clock_ms, BackupConfig,
};
use crate::cli::{
    MigrateArgs, SnapshotCommand, SnapshotFormat, SnapshotInspectArgs, SnapshotListArgs,
    SnapshotRestoreArgs, SnapshotSaveArgs,
};
use crate::durable_file::{self, sibling_temp};

/// Runs one `e2d snapshot` command; the error says what went wrong.
pub fn run(command: SnapshotCommand) -> Result<(), String> {
    runtime()?.block_on(async move {
        match command {
            SnapshotCommand::Save(args) => save(*args).await,
            SnapshotCommand::List(args) => list(*args).await,
            SnapshotCommand::Inspect(args) => inspect(*args),
            SnapshotCommand::Restore(args) => restore_command(*args).await,
        }
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Writes the payload of a stopped member's data dir, in `format`, to a
/// new file at `payload`, straight from the database; returns the cluster
/// id and revision.
fn payload_of_data_dir(
    data_dir: &Path,
    payload: &Path,
    format: SnapshotFormat,
) -> Result<(u64, i64), String> {
    let backend = crate::run::open_backend(data_dir).map_err(|e| e.to_string())?;
    let cluster_id = crate::server::Identity::stored_ids(&backend)
        .map_err(|e| e.to_string())?
        .map_or(0, |(_, cluster_id)| cluster_id);
    let revision = e2d_core::storage::read_meta_u64(&backend, e2d_core::mvcc::META_CURRENT_REVISION)
        .map_err(|e| e.to_string())?
        .unwrap_or(1) as i64;
    let view = backend.point_in_time_offline();
    let mut file =
        durable_file::create_new(payload).map_err(|e| format!("{}: {e}", payload.display()))?;
    crate::payload::write(&view, format, &mut file)
        .map_err(|e| format!("{}: {e}", payload.display()))?;
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
    let payload = TempFile(sibling_temp(&work_dir.join("e2d-snapshot"), "payload"));
    let (cluster_id, mut revision) = match &args.data_dir {
        Some(data_dir) => payload_of_data_dir(data_dir, &payload.0, args.format)?,
        None => {
            let remote = Remote::connect(&args.endpoint, &args.remote).await?;
            let progress = progress_bar("receiving");
            let ids = remote
                .download_snapshot(&payload.0, args.format == SnapshotFormat::E2d, &progress)
                .await?;
            progress.finish_and_clear();
            ids
        }
    };
    let format = crate::payload::verify(&payload.0)
        .map_err(|e| format!("the snapshot taken is damaged: {e}"))?;
    if format != args.format {
        return Err(format!(
            "{} sent a snapshot in {format:?} format where {:?} was asked for (an etcd server always sends its database: pass --format etcd)",
            args.endpoint, args.format
        ));
    }
    if revision == 0 {
        // etcd's snapshot messages carry no header: the payload tells.
        revision = crate::payload::summarize(&payload.0)
            .map_err(|e| e.to_string())?
            .revision;
    }
    seal_file(&payload.0, &sealed.0, &envelope).map_err(|e| e.to_string())?;
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
    /// The chain's deltas, by where they start.
    deltas: Vec<ListedDelta>,
    /// How far the chain reaches without a gap: its full snapshot, then
    /// its deltas.
    reaches_revision: i64,
    reaches_time: String,
    /// The full snapshot and its deltas.
    chain_bytes: u64,
}

#[derive(serde::Serialize)]
struct ListedDelta {
    name: String,
    from_index: u64,
    to_index: u64,
    to_revision: i64,
    to_time: String,
    size_bytes: u64,
}

async fn list(args: SnapshotListArgs) -> Result<(), String> {
    let location = Location::parse(&args.url)?;
    let store = Store::open(&location, &store_settings(&args.store))
        .await
        .map_err(|e| e.to_string())?;
    let objects = store.list().await.map_err(|e| e.to_string())?;
    let snapshots: Vec<SnapshotInfo> = snapshots_in(&objects);
    let deltas = super::delta::deltas_in(&objects);
    let listed: Vec<ListedSnapshot> = e2d_core::schedule::chains(&snapshots, &deltas)
        .into_iter()
        .map(|chain| {
            let s = chain.full;
            let (reaches_revision, reaches_time_ms) = e2d_core::schedule::reach(&chain.deltas)
                .map_or((s.revision, s.taken_at_ms), |reach| {
                    (reach.last.span.to_revision, reach.last.span.to_time_ms)
                });
            ListedSnapshot {
                cluster_id: format!("{:x}", s.cluster_id),
                taken_at: utc_rfc3339(s.taken_at_ms),
                name: s.name.clone(),
                revision: s.revision,
                size_bytes: s.size_bytes,
                chain_bytes: s.size_bytes + chain.deltas.iter().map(|d| d.size_bytes).sum::<u64>(),
                deltas: chain
                    .deltas
                    .iter()
                    .map(|d| ListedDelta {
                        name: d.name.clone(),
                        from_index: d.span.from_index,
                        to_index: d.span.to_index,
                        to_revision: d.span.to_revision,
                        to_time: utc_rfc3339(d.span.to_time_ms),
                        size_bytes: d.size_bytes,
                    })
                    .collect(),
                reaches_revision: reaches_revision.max(s.revision),
                reaches_time: utc_rfc3339(reaches_time_ms.max(s.taken_at_ms)),
            }
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
        "{:<82} {:<16} {:>10} {:<24} {:>12} {:>6} {:>10} {:<24} {:>12}",
        "NAME", "CLUSTER", "REVISION", "TAKEN", "SIZE", "DELTAS", "REACHES", "UNTIL", "CHAIN SIZE"
    );
    for s in &listed {
        println!(
            "{:<82} {:<16} {:>10} {:<24} {:>12} {:>6} {:>10} {:<24} {:>12}",
            s.name,
            s.cluster_id,
            s.revision,
            s.taken_at,
            s.size_bytes,
            s.deltas.len(),
            s.reaches_revision,
            s.reaches_time,
            s.chain_bytes
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
    #[serde(flatten)]
    payload: crate::payload::Summary,
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
    let (layers, _): (Layers, _) = open_verified(
        file,
        &payload.0,
        keys.as_ref(),
        args.envelope.snapshot_encryption,
    )
    .map_err(|e| format!("{}: {e}", file.display()))?;
    let summary =
        crate::payload::summarize(&payload.0).map_err(|e| format!("{}: {e}", file.display()))?;
    let named = file
        .file_name()
        .and_then(|n| parse_snapshot_name(&n.to_string_lossy()));
    let inspection = Inspection {
        file: file.display().to_string(),
        size_bytes,
        compressed: layers.compressed,
        encrypted: layers.encrypted,
        payload: summary,
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
    let summary = &inspection.payload;
    println!("file        {}", inspection.file);
    println!("size        {} bytes", inspection.size_bytes);
    println!("format      {}", summary.format.name());
    println!("compressed  {}", yes_no(inspection.compressed));
    println!("encrypted   {}", yes_no(inspection.encrypted));
    if let Some(hash) = summary.hash {
        println!("hash        {hash:x}");
    }
    println!("revision    {}", summary.revision);
    println!("compacted   {}", summary.compact_revision);
    println!("keys        {}", summary.keys);
    if let Some(total_keys) = summary.total_keys {
        println!("total keys  {total_keys}");
    }
    println!("leases      {}", summary.leases);
    if let Some(cluster_id) = &inspection.cluster_id {
        println!("cluster     {cluster_id}");
    }
    if let Some(taken_at) = &inspection.taken_at {
        println!("taken at    {taken_at}");
    }
    println!("verified    yes");
    Ok(())
}

/// Refuses a data dir that holds anything: restores and migrations make
/// new ones only.
fn require_new_data_dir(data_dir: &Path) -> Result<(), String> {
    let occupied = std::fs::read_dir(data_dir).is_ok_and(|mut entries| entries.next().is_some());
    if occupied {
        return Err(format!(
            "data dir {} already exists and is not empty: restore only into a new data dir",
            data_dir.display()
        ));
    }
    Ok(())
}

/// Where staging files for a restore into `data_dir` go: beside it.
fn staging_parent(data_dir: &Path) -> PathBuf {
    data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Loads the verified payload into a new data dir. e2d's own snapshots
/// get the restore's time under `/_e2d/snapshot` (one new revision);
/// etcd's keep their revision as etcd has it.
fn restore_payload(
    data_dir: &Path,
    payload: &Path,
    format: crate::payload::PayloadFormat,
    replay: &restore::ReplayPlan,
) -> Result<restore::Restored, String> {
    let backend = crate::run::open_backend(data_dir).map_err(|e| e.to_string())?;
    let now_ms = wall_clock_ms();
    let restored_at = match format {
        crate::payload::PayloadFormat::E2d => Some(restore::restored_at_text(now_ms)),
        crate::payload::PayloadFormat::Etcd => None,
    };
    let (backend, restored) = restore::load_into(backend, payload, replay, restored_at, now_ms)
        .map_err(|e| format!("cannot restore into {}: {e}", data_dir.display()))?;
    drop(backend);
    Ok(restored)
}

/// `e2d cluster resize`: the new size, written as the cluster's setting
/// through any member; the leader's cluster manager carries it out.
pub fn resize(args: &crate::cli::ClusterResizeArgs) -> Result<String, String> {
    e2d_core::manager::check_cluster_size(args.size).map_err(|e| e.to_string())?;
    runtime()?.block_on(async {
        let remote = Remote::connect(&args.endpoint, &args.remote).await?;
        let recorded = remote
            .get(crate::server::cluster_version::CLUSTER_VERSION_KEY)
            .await?;
        let cluster = recorded
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| e2d_core::version::Version::parse(&v))
            .unwrap_or(e2d_core::version::CLUSTER_VERSION_BASELINE);
        e2d_core::version::require(e2d_core::version::Feature::ClusterSize, cluster)
            .map_err(|e| e.to_string())?;
        remote
            .put(
                crate::server::cluster_size::CLUSTER_SIZE_KEY,
                args.size.to_string().as_bytes(),
            )
            .await?;
        Ok(format!(
            "the cluster's size is now {}; e2d status shows the members as they follow",
            args.size
        ))
    })
}

/// `e2d migrate`: an etcd cluster's snapshot, taken over its Maintenance
/// API, restored into a new data dir.
pub fn migrate(args: MigrateArgs) -> Result<(), String> {
    require_new_data_dir(&args.data_dir)?;
    runtime()?.block_on(async move {
        let payload = TempFile(sibling_temp(
            &staging_parent(&args.data_dir).join("e2d-migrate"),
            "payload",
        ));
        let mut failures = Vec::new();
        let mut taken_from = None;
        for endpoint in &args.from_endpoints {
            let _ = std::fs::remove_file(&payload.0);
            let progress = progress_bar("receiving");
            let taken = match Remote::connect(endpoint, &args.remote).await {
                Ok(remote) => remote.download_snapshot(&payload.0, false, &progress).await,
                Err(e) => Err(e),
            };
            progress.finish_and_clear();
            match taken {
                Ok(_) => {
                    taken_from = Some(endpoint.clone());
                    break;
                }
                Err(e) => failures.push(e),
            }
        }
        let endpoint = taken_from.ok_or_else(|| {
            format!(
                "no endpoint gave a snapshot: {}; the data dir was not touched",
                failures.join("; ")
            )
        })?;
        let format = crate::payload::verify(&payload.0).map_err(|e| {
            format!("{endpoint} sent a damaged snapshot: {e}; the data dir was not touched")
        })?;
        let revision =
            restore_payload(&args.data_dir, &payload.0, format, &Default::default())?.revision;
        println!(
            "Migrated {endpoint} into {} at revision {revision}; start e2d run --data-dir {} to serve it as a new cluster",
            args.data_dir.display(),
            args.data_dir.display()
        );
        Ok(())
    })
}

async fn restore_command(args: SnapshotRestoreArgs) -> Result<(), String> {
    let data_dir = &args.data_dir;
    require_new_data_dir(data_dir)?;
    let (envelope, open_keys) = envelope_from_args(&args.envelope)?;
    let staging_parent = staging_parent(data_dir);
    let target = match (args.to_revision, args.to_time) {
        (Some(revision), _) => ReplayTarget::Revision(revision),
        (None, Some(time_ms)) => ReplayTarget::Time(time_ms),
        (None, None) => ReplayTarget::Newest,
    };
    let staging = sibling_temp(&staging_parent.join("e2d-restore"), "staging");
    let (name, payload, format, replay) = match Location::parse_or_file(&args.source) {
        Target::File(path) => {
            if target != ReplayTarget::Newest {
                return Err("--to-revision and --to-time need a store URL: a snapshot file has no deltas to replay".into());
            }
            let payload = sibling_temp(&staging_parent.join("e2d-restore"), "payload");
            let (_, format) = open_verified(
                &path,
                &payload,
                open_keys.as_ref(),
                args.envelope.snapshot_encryption,
            )
            .map_err(|e| format!("{}: {e}; the data dir was not touched", path.display()))?;
            (
                path.display().to_string(),
                payload,
                format,
                Default::default(),
            )
        }
        Target::Store(location) => {
            let config = BackupConfig {
                location: location?,
                envelope,
                open_keys,
                settings: store_settings(&args.store),
                payload_format: crate::payload::PayloadFormat::E2d,
                delta_interval_ms: 0,
            };
            let store = Store::open(&config.location, &config.settings)
                .await
                .map_err(|e| e.to_string())?;
            let mut refused = BTreeMap::new();
            let found = restore::fetch_restorable(&store, &staging, &config, target, &mut refused)
                .await
                .map_err(|e| format!("{e}; the data dir was not touched"))?;
            let found = found.ok_or_else(|| format!("no snapshots in {}", config.location))?;
            let reached = found.replay.reached_revision(found.snapshot.revision);
            if let ReplayTarget::Revision(revision) = target {
                if reached < revision && found.replay.lost.is_none() {
                    let _ = std::fs::remove_dir_all(&staging);
                    return Err(format!(
                        "{}'s backups reach revision {reached}: cannot restore revision {revision}; the data dir was not touched",
                        config.location
                    ));
                }
            }
            let moved = sibling_temp(&staging_parent.join("e2d-restore"), "payload");
            std::fs::rename(&found.payload, &moved).map_err(|e| e.to_string())?;
            let format = crate::payload::detect(&moved).map_err(|e| e.to_string())?;
            (
                format!("{}/{}", config.location, found.snapshot.name),
                moved,
                format,
                found.replay,
            )
        }
    };
    let payload = TempFile(payload);
    let restored = restore_payload(data_dir, &payload.0, format, &replay);
    let _ = std::fs::remove_dir_all(&staging);
    let restored = restored?;
    if let Some(stopped) = &restored.stopped {
        eprintln!("warning: {stopped}");
    }
    let deltas = match (restored.replayed, restored.replayed_revision) {
        (0, _) | (_, None) => String::new(),
        (records, Some(revision)) => format!(
            " and {records} changes of {} deltas up to revision {revision}",
            replay.steps.len()
        ),
    };
    println!(
        "Restored {name}{deltas} into {} at revision {}; start e2d run --data-dir {} to serve it as a new cluster",
        data_dir.display(),
        restored.revision,
        data_dir.display()
    );
    Ok(())
}

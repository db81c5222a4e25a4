//! A snapshot's payload in either format: e2d's record stream
//! ([`crate::snapshot`]) or etcd's database ([`crate::etcd_snapshot`]),
//! told apart by the file's first bytes. Backups, restores, `e2d snapshot`
//! and `e2d migrate` take either.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use e2d_core::storage::{StorageError, Table};

use crate::cli::SnapshotFormat;
use crate::snapshot::{SnapshotError, SNAPSHOT_MAGIC};
use crate::storage::{DiskBackend, PointInTime};

pub use crate::cli::SnapshotFormat as PayloadFormat;

impl SnapshotFormat {
    pub fn name(self) -> &'static str {
        match self {
            SnapshotFormat::E2d => "e2d",
            SnapshotFormat::Etcd => "etcd",
        }
    }
}

/// The first bytes of a bbolt file: page 0's header (id 0, the meta
/// page flag) and the meta's magic number, little-endian.
fn is_bbolt_start(first: &[u8; 24]) -> bool {
    use e2d_core::bbolt::layout::{MAGIC, META_PAGE_FLAG};
    first[..8] == [0; 8]
        && u16::from_le_bytes([first[8], first[9]]) == META_PAGE_FLAG
        && u32::from_le_bytes([first[16], first[17], first[18], first[19]]) == MAGIC
}

/// Which format the payload at `path` is in, from its first bytes only.
pub fn detect(path: &Path) -> Result<PayloadFormat, SnapshotError> {
    let mut first = [0u8; 24];
    let mut file = File::open(path)?;
    let mut read = 0;
    while read < first.len() {
        match file.read(&mut first[read..])? {
            0 => break,
            n => read += n,
        }
    }
    if read >= SNAPSHOT_MAGIC.len() && first[..SNAPSHOT_MAGIC.len()] == SNAPSHOT_MAGIC[..] {
        return Ok(PayloadFormat::E2d);
    }
    if read == first.len() && is_bbolt_start(&first) {
        return Ok(PayloadFormat::Etcd);
    }
    Err(SnapshotError::Magic)
}

/// Checks the payload at `path` whole, before anything is written from
/// it: e2d's digest, or etcd's SHA-256 trailer (when present), every page
/// and every entry.
pub fn verify(path: &Path) -> Result<PayloadFormat, SnapshotError> {
    let format = detect(path)?;
    match format {
        PayloadFormat::E2d => crate::snapshot::verify_snapshot(&mut File::open(path)?)?,
        PayloadFormat::Etcd => {
            crate::etcd_snapshot::verify_etcd_snapshot(path)?;
        }
    }
    Ok(format)
}

/// Replaces the keys `replaced` selects with the verified payload's.
/// Commits unsynced; the caller syncs.
pub fn replace_tables(
    backend: DiskBackend,
    path: &Path,
    replaced: crate::snapshot::Replaced,
) -> Result<DiskBackend, StorageError> {
    let failed = |e: &dyn std::fmt::Display| StorageError(format!("{}: {e}", path.display()));
    match detect(path).map_err(|e| failed(&e))? {
        PayloadFormat::E2d => {
            let mut backend = backend;
            let file = File::open(path).map_err(|e| failed(&e))?;
            crate::snapshot_load::replace_tables(&mut backend, file, replaced)?;
            Ok(backend)
        }
        PayloadFormat::Etcd => crate::etcd_snapshot::load_etcd_snapshot(backend, path, replaced)
            .map(|(backend, _)| backend)
            .map_err(|e| failed(&e)),
    }
}

/// Writes `view` as a payload of `format` into the empty `file`; returns
/// its length and leaves the file at its start.
pub fn write(view: &PointInTime, format: PayloadFormat, file: &mut File) -> Result<u64, String> {
    match format {
        PayloadFormat::E2d => {
            let length = {
                let mut out = std::io::BufWriter::new(&mut *file);
                crate::snapshot::write_snapshot(view, &mut out).map_err(|e| e.0)?
            };
            use std::io::Seek;
            file.rewind().map_err(|e| e.to_string())?;
            Ok(length)
        }
        PayloadFormat::Etcd => crate::etcd_snapshot::write_etcd_snapshot(view, file)
            .map(|(_, length)| length)
            .map_err(|e| e.to_string()),
    }
}

/// What a payload holds, as `e2d snapshot inspect` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    #[serde(serialize_with = "format_name")]
    pub format: PayloadFormat,
    /// The store's revision.
    pub revision: i64,
    pub compact_revision: i64,
    /// Keys alive at the revision.
    pub keys: u64,
    pub leases: u64,
    /// etcd's database: `etcdutl snapshot status`'s hash (CRC-32C of
    /// every bucket's name, keys and values) and total of keys in every
    /// bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_keys: Option<u64>,
}

fn format_name<S: serde::Serializer>(format: &PayloadFormat, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(format.name())
}

/// Counts what the tables' records hold, in one pass (the kv table's
/// records come in revision order, so the last change of a key counts).
#[derive(Default)]
struct Counts {
    alive: BTreeSet<prost::bytes::Bytes>,
    revision: i64,
    compact_revision: i64,
    leases: u64,
}

impl Counts {
    fn visit(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        match table {
            Table::Kv => {
                let (tombstone, kv) = e2d_core::mvcc::decode_kv_record(key, value)?;
                if tombstone {
                    self.alive.remove(&kv.key);
                } else {
                    self.alive.insert(kv.key);
                }
            }
            Table::Lease => self.leases += 1,
            Table::Meta => {
                let Ok(number) = <[u8; 8]>::try_from(value).map(i64::from_be_bytes) else {
                    return Ok(());
                };
                if key == e2d_core::mvcc::META_CURRENT_REVISION {
                    self.revision = number;
                } else if key == e2d_core::mvcc::META_COMPACT_REVISION {
                    self.compact_revision = number;
                }
            }
            Table::Auth => {}
        }
        Ok(())
    }
}

/// Reads the verified payload at `path` and sums it up.
pub fn summarize(path: &Path) -> Result<Summary, SnapshotError> {
    let format = detect(path)?;
    let mut counts = Counts::default();
    let storage = |e: StorageError| SnapshotError::Io(std::io::Error::other(e.0));
    let (hash, total_keys) = match format {
        PayloadFormat::E2d => {
            let mut input = File::open(path)?;
            crate::snapshot::for_each_record(&mut input, &mut |table, key, value| {
                counts.visit(table, key, value).map_err(storage)
            })?;
            (None, None)
        }
        PayloadFormat::Etcd => {
            let status = etcd_status(path, &mut |table, key, value| {
                counts.visit(table, key, value)
            })?;
            counts.revision = status.revision;
            counts.compact_revision = status.compact_revision;
            (Some(status.hash), Some(status.total_keys))
        }
    };
    Ok(Summary {
        format,
        revision: counts.revision,
        compact_revision: counts.compact_revision,
        keys: counts.alive.len() as u64,
        leases: counts.leases,
        hash,
        total_keys,
    })
}

/// What `etcdutl snapshot status` reports of an etcd database, and the
/// store's revisions as e2d imports them.
struct EtcdStatus {
    /// CRC-32C of every top-level bucket's name followed by its keys and
    /// values, in order.
    hash: u32,
    /// The main revision of the last key of the `key` bucket.
    revision: i64,
    compact_revision: i64,
    /// Entries of every bucket.
    total_keys: u64,
}

/// Reads the verified etcd file at `path` once, giving its records (as
/// e2d's tables hold them) to `visit`.
fn etcd_status(
    path: &Path,
    visit: &mut e2d_core::etcd_db::RecordSink<'_>,
) -> Result<EtcdStatus, SnapshotError> {
    use e2d_core::bbolt::read::{Db, EntryValue};
    use e2d_core::etcd_db::{EtcdDbError, Importer};
    use e2d_core::revision::Revision;

    let mut file = File::open(path)?;
    let layout = crate::etcd_snapshot::check_digest(&mut file)?;
    let source = crate::etcd_snapshot::FileSource::new(&file, layout.db_bytes);
    let db = Db::open(source)
        .map_err(|e| crate::etcd_snapshot::EtcdSnapshotError::from(EtcdDbError::from(e)))?;
    let mut hash = e2d_core::crc32c::Crc32c::new();
    let (mut revision, mut total_keys) = (0i64, 0u64);
    let mut importer = Importer::new();
    db.walk(&mut |path: &[Vec<u8>], entry| -> Result<(), EtcdDbError> {
        match path {
            [] => hash.update(&entry.key),
            [bucket] => {
                hash.update(&entry.key);
                if let EntryValue::Data(value) = &entry.value {
                    hash.update(value);
                }
                if bucket.as_slice() == b"key" {
                    if let Some(at) = entry.key.get(..e2d_core::revision::REVISION_LEN_BYTES) {
                        revision = Revision::decode(at).map_or(revision, |r| r.main);
                    }
                }
                total_keys += 1;
            }
            _ => {}
        }
        importer.entry(path, entry, visit)
    })
    .map_err(crate::etcd_snapshot::EtcdSnapshotError::from)?;
    let summary = importer
        .finish(visit)
        .map_err(crate::etcd_snapshot::EtcdSnapshotError::from)?;
    Ok(EtcdStatus {
        hash: hash.finish(),
        revision,
        compact_revision: summary.compact_revision,
        total_keys,
    })
}

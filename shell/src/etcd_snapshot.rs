//! etcd's database files, read into e2d and written from it: a member's
//! `member/snap/db`, or what `etcdctl snapshot save` writes (the same
//! bbolt file followed by the SHA-256 of its bytes).
//!
//! The bbolt format and the mapping between etcd's buckets and e2d's
//! tables are core's (`e2d_core::bbolt`, `e2d_core::etcd_db`); here are
//! the file-backed page source and sink and the SHA-256 trailer.
//!
//! - [`verify_etcd_snapshot`]: checks a file whole (digest, every page,
//!   every entry) and changes nothing: run it before loading.
//! - [`load_etcd_snapshot`]: streams a verified file's records into the
//!   tables, as `snapshot_load::replace_tables` does for e2d's own format.
//! - [`write_etcd_snapshot`]: a consistent view of the tables as an etcd
//!   snapshot file, trailer included, as etcd's Maintenance.Snapshot
//!   sends it.
//!
//! Memory stays bounded both ways: pages are read and written one at a
//! time (plus the tree's path), records are committed in batches.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use e2d_core::bbolt::{Db, IoError, PageSink, PageSource};
use e2d_core::etcd_db::{self, EtcdDbError, ExportSummary, ImportSummary};
use e2d_core::mvcc::Mvcc;
use e2d_core::storage::{Backend, StorageError};

use crate::snapshot::{clear_tables, BatchedWrites, SnapshotDigest};
use crate::storage::{DiskBackend, PointInTime};

/// The SHA-256 etcd appends to a snapshot.
const DIGEST_BYTES: u64 = 32;
/// etcd's test for a trailing digest: bbolt files are whole pages, so a
/// size 32 past a multiple of 512 is a file with a digest.
const DIGEST_ALIGN_BYTES: u64 = 512;
/// Bytes the file sink gathers before writing them.
const SINK_BUFFER_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EtcdSnapshotError {
    #[error("cannot read or write the etcd snapshot: {0}")]
    Io(#[from] std::io::Error),
    #[error("the etcd snapshot's SHA-256 does not match its contents: it is damaged or truncated")]
    Digest,
    #[error("the etcd snapshot is damaged: {0}")]
    Db(#[from] EtcdDbError),
    #[error("{0}")]
    Storage(#[from] StorageError),
}

/// What a file holds: the bbolt database's length and whether a checked
/// SHA-256 followed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtcdFileLayout {
    pub db_bytes: u64,
    pub has_digest: bool,
}

/// Finds whether `file` ends with etcd's SHA-256 trailer, as etcd does
/// (its size is 32 past a multiple of 512), and if so checks it, reading
/// the file once in bounded memory.
pub fn check_digest(file: &mut File) -> Result<EtcdFileLayout, EtcdSnapshotError> {
    let layout = layout_of(file)?;
    if !layout.has_digest {
        return Ok(layout);
    }
    let db_bytes = layout.db_bytes;
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = SnapshotDigest::default();
    std::io::copy(&mut (&mut *file).take(db_bytes), &mut hasher)?;
    let mut digest = [0u8; DIGEST_BYTES as usize];
    file.read_exact(&mut digest)?;
    if hasher.finish() != digest {
        return Err(EtcdSnapshotError::Digest);
    }
    Ok(EtcdFileLayout {
        db_bytes,
        has_digest: true,
    })
}

/// Whether `file` ends with a SHA-256 trailer, by its size alone.
fn layout_of(file: &File) -> Result<EtcdFileLayout, EtcdSnapshotError> {
    let size_bytes = file.metadata()?.len();
    let has_digest = size_bytes % DIGEST_ALIGN_BYTES == DIGEST_BYTES;
    Ok(EtcdFileLayout {
        db_bytes: if has_digest {
            size_bytes - DIGEST_BYTES
        } else {
            size_bytes
        },
        has_digest,
    })
}

/// Checks an etcd snapshot or db file whole: its SHA-256 trailer when it
/// has one, every page of the bbolt file (`bbolt check`'s checks too) and
/// every entry of etcd's buckets. Writes nothing.
pub fn verify_etcd_snapshot(
    path: &Path,
) -> Result<(EtcdFileLayout, ImportSummary), EtcdSnapshotError> {
    let mut file = File::open(path)?;
    let layout = check_digest(&mut file)?;
    let db = Db::open(FileSource::new(&file, layout.db_bytes)).map_err(EtcdDbError::from)?;
    let summary = etcd_db::import(&db, &mut |_, _, _| Ok(()))?;
    Ok((layout, summary))
}

/// Replaces the keys `replaced` selects with the records of the etcd file
/// at `path` (which [`verify_etcd_snapshot`] passed): deletes them, then
/// writes the file's in batches of bounded size, then finishes a
/// compaction etcd had scheduled but not finished (as etcd does when it
/// starts). Commits unsynced; the caller syncs. A failure part way leaves
/// the tables part loaded: load into a database that is thrown away then.
pub fn load_etcd_snapshot(
    backend: DiskBackend,
    path: &Path,
    replaced: crate::snapshot::Replaced,
) -> Result<(DiskBackend, ImportSummary), EtcdSnapshotError> {
    let mut backend = backend;
    let file = File::open(path)?;
    // The digest was checked with the rest; the pages are checked again
    // as they are read.
    let layout = layout_of(&file)?;
    let db = Db::open(FileSource::new(&file, layout.db_bytes)).map_err(EtcdDbError::from)?;
    clear_tables(&mut backend, replaced)?;
    let mut writes = BatchedWrites::default();
    let summary = etcd_db::import(&db, &mut |table, key, value| {
        if replaced(table, key) {
            writes.put(&mut backend, table, key, value)?;
        }
        Ok(())
    })?;
    backend.commit(false)?;
    let Some(revision) = summary.unfinished_compaction else {
        return Ok((backend, summary));
    };
    let mut mvcc = Mvcc::open(backend).map_err(|e| StorageError(e.to_string()))?;
    mvcc.compact(revision)
        .map_err(|e| StorageError(format!("finishing etcd's compaction at {revision}: {e}")))?;
    let mut backend = mvcc.into_backend();
    backend.commit(false)?;
    let summary = ImportSummary {
        compact_revision: revision,
        unfinished_compaction: None,
        ..summary
    };
    Ok((backend, summary))
}

/// Writes the tables `view` holds as an etcd snapshot into `file` (open
/// for reading and writing, empty): the bbolt database etcd 3.4 and 3.5
/// open, then the SHA-256 of its bytes, as etcd's Maintenance.Snapshot
/// sends it and `etcdctl snapshot restore` checks it. Returns what was
/// written and the file's length, and leaves the file at its start.
pub fn write_etcd_snapshot(
    view: &PointInTime,
    file: &File,
) -> Result<(ExportSummary, u64), EtcdSnapshotError> {
    let sink = FileSink {
        file,
        pending: Vec::with_capacity(SINK_BUFFER_BYTES),
        pending_at: 0,
    };
    let (mut sink, summary) = etcd_db::export(&crate::storage::View(view), sink)?;
    sink.flush().map_err(|e| std::io::Error::other(e.0))?;
    let db_bytes = summary.written.size_bytes;
    let mut hasher = SnapshotDigest::default();
    let mut reader = file;
    reader.seek(SeekFrom::Start(0))?;
    std::io::copy(&mut reader.take(db_bytes), &mut hasher)?;
    file.write_all_at(&hasher.finish(), db_bytes)?;
    reader.seek(SeekFrom::Start(0))?;
    Ok((summary, db_bytes + DIGEST_BYTES))
}

/// The first `size_bytes` of a file, read at offsets.
pub(crate) struct FileSource<'a> {
    file: &'a File,
    size_bytes: u64,
}

impl<'a> FileSource<'a> {
    pub(crate) fn new(file: &'a File, size_bytes: u64) -> Self {
        FileSource { file, size_bytes }
    }
}

impl PageSource for FileSource<'_> {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        if offset.saturating_add(buf.len() as u64) > self.size_bytes {
            return Err(IoError(format!(
                "read past the end of the database at byte {offset}"
            )));
        }
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| IoError(format!("at byte {offset}: {e}")))
    }
}

/// Writes at offsets, gathering runs of adjacent writes (the data pages
/// come in order) into one.
struct FileSink<'a> {
    file: &'a File,
    pending: Vec<u8>,
    pending_at: u64,
}

impl FileSink<'_> {
    fn flush(&mut self) -> Result<(), IoError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(&self.pending, self.pending_at)
            .map_err(|e| IoError(format!("at byte {}: {e}", self.pending_at)))?;
        self.pending_at += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }
}

impl PageSink for FileSink<'_> {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<(), IoError> {
        let adjacent = offset == self.pending_at + self.pending.len() as u64;
        if !adjacent || self.pending.len() + bytes.len() > SINK_BUFFER_BYTES {
            self.flush()?;
            self.pending_at = offset;
        }
        if bytes.len() > SINK_BUFFER_BYTES {
            return self
                .file
                .write_all_at(bytes, offset)
                .map_err(|e| IoError(format!("at byte {offset}: {e}")))
                .map(|()| self.pending_at = offset + bytes.len() as u64);
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Write;

    use sha2::{Digest, Sha256};

    use e2d_core::storage::Table;
    use e2d_core::StateMachine;
    use e2d_proto::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest};

    use super::*;

    type Records = BTreeMap<(Table, Vec<u8>), Vec<u8>>;

    fn records(view: &PointInTime) -> Records {
        let mut all = BTreeMap::new();
        view.visit_all(&mut |table, key, value| {
            all.insert((table, key.to_vec()), value.to_vec());
            Ok(())
        })
        .unwrap();
        all
    }

    /// A database with puts, an overwrite, a delete, a lease with a key
    /// and a compaction.
    fn loaded_backend(dir: &Path) -> DiskBackend {
        let mut state = StateMachine::open(DiskBackend::open(dir).unwrap(), 0).unwrap();
        state.lease_grant(7, 60, 0).unwrap();
        let put = |key: &str, value: &str, lease: i64| PutRequest {
            key: key.into(),
            value: value.into(),
            lease,
            ..Default::default()
        };
        state.put(&put("a", "1", 0)).unwrap();
        state.put(&put("b", "2", 0)).unwrap();
        state.put(&put("a", "3", 0)).unwrap();
        state
            .delete_range(&DeleteRangeRequest {
                key: b"b".to_vec(),
                ..Default::default()
            })
            .unwrap();
        state.put(&put("leased", "x", 7)).unwrap();
        state
            .compact(&CompactionRequest {
                revision: 3,
                ..Default::default()
            })
            .unwrap();
        while state.compact_step(usize::MAX) {}
        let mut backend = state.into_backend();
        backend.commit(false).unwrap();
        backend
    }

    fn written_snapshot(dir: &Path) -> (std::path::PathBuf, Records, ExportSummary) {
        let backend = loaded_backend(&dir.join("source"));
        let view = backend.point_in_time();
        let path = dir.join("etcd.snap");
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let (summary, length) = write_etcd_snapshot(&view, &file).unwrap();
        assert_eq!(file.metadata().unwrap().len(), length);
        assert_eq!(length % 512, 32);
        (path, records(&view), summary)
    }

    #[test]
    fn a_written_snapshot_verifies_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let (path, source, exported) = written_snapshot(dir.path());
        assert_eq!(exported.current_revision, 6);
        assert_eq!(exported.compact_revision, 3);
        let (layout, verified) = verify_etcd_snapshot(&path).unwrap();
        assert!(layout.has_digest);
        assert_eq!(verified.current_revision, 6);
        assert_eq!(verified.leases, 1);
        // Loading replaces what was there.
        let mut target = DiskBackend::open(&dir.path().join("target")).unwrap();
        target.put(Table::Kv, b"stale", b"x");
        target.put(Table::Meta, b"kept", b"y");
        target.commit(false).unwrap();
        let (target, loaded) = load_etcd_snapshot(target, &path, |table, key| {
            table != Table::Meta || key != b"kept"
        })
        .unwrap();
        assert_eq!(loaded, verified);
        let mut expected = source;
        expected.insert((Table::Meta, b"kept".to_vec()), b"y".to_vec());
        assert_eq!(records(&target.point_in_time()), expected);
    }

    #[test]
    fn damaged_files_are_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _, _) = written_snapshot(dir.path());
        let bytes = std::fs::read(&path).unwrap();
        let check = |name: &str, bytes: &[u8], expected: &str| {
            let damaged = dir.path().join(name);
            std::fs::File::create(&damaged)
                .unwrap()
                .write_all(bytes)
                .unwrap();
            let error = verify_etcd_snapshot(&damaged).unwrap_err().to_string();
            assert!(error.contains(expected), "{name}: {error}");
        };
        let mut flipped = bytes.clone();
        flipped[5000] ^= 0x40;
        check("flipped", &flipped, "SHA-256 does not match");
        check("cut", &bytes[..bytes.len() - 4096 - 32], "truncated file");
        check("text", &[b'x'; 9000], "not a bbolt database");
        // A page damaged before the trailer was computed: the digest holds,
        // the page does not.
        let mut db = bytes[..bytes.len() - 32].to_vec();
        let page = 3 * 4096;
        db[page + 8] = 0x08;
        let mut with_digest = db.clone();
        with_digest.extend_from_slice(&Sha256::digest(&db));
        check("page", &with_digest, "page 3");
        // A bbolt file without etcd's buckets.
        let mut writer = e2d_core::bbolt::DbWriter::new(Vec::new());
        writer.begin_bucket(b"other").unwrap();
        writer.end_bucket().unwrap();
        let (other, _) = writer.finish().unwrap();
        check(
            "other",
            &other,
            "not an etcd database: it has no `key` bucket",
        );
    }
}

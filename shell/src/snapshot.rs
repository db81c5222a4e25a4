//! The snapshot stream: every table of the backend, as e2d's own record
//! format, padded to 512 bytes and closed by a SHA-256 of all before it,
//! the trailer `etcdctl snapshot save` expects.
//!
//! Layout: magic, then records `[table u8][key_len u32][key][value_len u32]
//! [value]` (big-endian lengths), then the end byte, zero padding up to a
//! multiple of 512 bytes, then the 32-byte digest.

use std::io::{Read, Write};

use e2d_core::storage::{Backend, StorageError, Table};

use crate::storage::{DiskBackend, PointInTime, TableIngestion};

pub const SNAPSHOT_MAGIC: &[u8; 8] = b"E2DSNAP\x01";
const END_OF_RECORDS: u8 = 0xff;
const PAD_TO_BYTES: usize = 512;

/// A table's entries as a snapshot carries them.
pub type Record = (Table, Vec<u8>, Vec<u8>);

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read the snapshot: {0}")]
    Io(#[from] std::io::Error),
    #[error("neither an e2d snapshot nor an etcd database (bbolt) file")]
    Magic,
    #[error("the snapshot's SHA-256 does not match its contents: it is damaged or truncated")]
    Digest,
    #[error("the snapshot's records are malformed at byte {0}")]
    Malformed(usize),
    #[error(transparent)]
    Etcd(#[from] crate::etcd_snapshot::EtcdSnapshotError),
}

fn tag_table(tag: u8) -> Option<Table> {
    match tag {
        1 => Some(Table::Kv),
        2 => Some(Table::Lease),
        3 => Some(Table::Meta),
        4 => Some(Table::Auth),
        _ => None,
    }
}

/// Checks a snapshot file's trailing SHA-256 against its contents, reading
/// it once in bounded memory, and leaves the file at its start.
pub fn verify_snapshot(file: &mut std::fs::File) -> Result<(), SnapshotError> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0))?;
    let mut check = VerifyingWriter::new(std::io::sink());
    std::io::copy(file, &mut check)?;
    check.finish()?;
    file.seek(SeekFrom::Start(0))?;
    Ok(())
}

/// Writes a snapshot as it arrives and checks its SHA-256 trailer on the
/// way, so the bytes need not be read again: everything but the last 32
/// bytes is hashed, and those must be the digest.
pub struct VerifyingWriter<W> {
    out: W,
    digest: SnapshotDigest,
    /// The last bytes written, up to 32: the digest, once all has come.
    tail: Vec<u8>,
}

const DIGEST_BYTES: usize = 32;

impl<W: Write> VerifyingWriter<W> {
    pub fn new(out: W) -> Self {
        VerifyingWriter {
            out,
            digest: SnapshotDigest::default(),
            tail: Vec::with_capacity(2 * DIGEST_BYTES),
        }
    }

    /// What was written, once its digest matches.
    pub fn finish(self) -> Result<W, SnapshotError> {
        if self.tail.len() != DIGEST_BYTES || self.digest.finish() != self.tail {
            return Err(SnapshotError::Digest);
        }
        Ok(self.out)
    }
}

impl<W: Write> Write for VerifyingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.out.write_all(data)?;
        // The bytes held back and the new ones, less the last 32, are body.
        let held = self.tail.len() + data.len();
        let body = held.saturating_sub(DIGEST_BYTES);
        let from_tail = body.min(self.tail.len());
        self.digest.update(&self.tail[..from_tail]);
        self.tail.drain(..from_tail);
        let from_data = body - from_tail;
        self.digest.update(&data[..from_data]);
        self.tail.extend_from_slice(&data[from_data..]);
        debug_assert!(self.tail.len() <= DIGEST_BYTES);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The longest key or value a snapshot record may hold: more than any
/// request can write (`--max-request-bytes` fits one raft log record), so
/// a longer length is damage, refused before anything is allocated.
const RECORD_FIELD_BYTES_MAX: usize = e2d_core::wal::RECORD_BYTES_MAX;

/// Visits a snapshot's records in order, one at a time; call
/// [`verify_snapshot`] first.
pub fn for_each_record(
    input: &mut impl Read,
    visit: &mut dyn FnMut(Record) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    let mut at = 0usize;
    let take = |input: &mut dyn Read, n: usize, at: &mut usize| -> Result<Vec<u8>, SnapshotError> {
        let mut bytes = vec![0u8; n];
        input
            .read_exact(&mut bytes)
            .map_err(|_| SnapshotError::Malformed(*at))?;
        *at += n;
        Ok(bytes)
    };
    if take(input, SNAPSHOT_MAGIC.len(), &mut at)? != SNAPSHOT_MAGIC {
        return Err(SnapshotError::Magic);
    }
    let length = |bytes: Vec<u8>, at: usize| -> Result<usize, SnapshotError> {
        let length = u32::from_be_bytes(bytes.try_into().expect("4 bytes")) as usize;
        if length > RECORD_FIELD_BYTES_MAX {
            return Err(SnapshotError::Malformed(at - 4));
        }
        Ok(length)
    };
    loop {
        let tag = take(input, 1, &mut at)?[0];
        if tag == END_OF_RECORDS {
            return Ok(());
        }
        let table = tag_table(tag).ok_or(SnapshotError::Malformed(at - 1))?;
        let key_len = length(take(input, 4, &mut at)?, at)?;
        let key = take(input, key_len, &mut at)?;
        let value_len = length(take(input, 4, &mut at)?, at)?;
        let value = take(input, value_len, &mut at)?;
        visit((table, key, value))?;
    }
}

/// Staged bytes after which loading a snapshot commits, so memory stays
/// bounded whatever the snapshot's size.
const LOAD_BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Keys deleted per batch when clearing the tables for a snapshot.
const LOAD_DELETES_PER_BATCH_MAX: usize = 10_000;

/// Replaces the keys `replaced` selects with those of the (verified)
/// snapshot in `file`: first every such key is deleted (in batches of
/// bounded size), then the snapshot's are loaded table by table in bulk
/// ([`DiskBackend::ingest`]), straight into the storage engine's table
/// files. Keys `replaced` refuses stay as they are, in the backend and in
/// the snapshot alike. A snapshot whose records are not grouped by table
/// and in key order within each is refused.
pub fn replace_tables(
    backend: &mut DiskBackend,
    mut file: std::fs::File,
    replaced: &dyn Fn(Table, &[u8]) -> bool,
) -> Result<(), StorageError> {
    clear_tables(backend, replaced)?;
    let backend = &*backend;
    let mut reader = std::io::BufReader::new(&mut file);
    let mut loading: Option<TableLoad<'_>> = None;
    let mut loaded = Vec::new();
    let mut failure = None;
    let mut load = |(table, key, value): Record| -> Result<(), StorageError> {
        if !replaced(table, &key) {
            return Ok(());
        }
        if loading.as_ref().is_none_or(|l| l.table != table) {
            if loaded.contains(&table) {
                return Err(out_of_order(table));
            }
            if let Some(done) = loading.take() {
                done.ingestion.finish()?;
            }
            loaded.push(table);
            loading = Some(TableLoad {
                table,
                ingestion: backend.ingest(table)?,
                last_key: None,
            });
        }
        let l = loading.as_mut().expect("started above");
        if l.last_key.as_ref().is_some_and(|last| *last >= key) {
            return Err(out_of_order(table));
        }
        l.ingestion.put(&key, &value)?;
        l.last_key = Some(key);
        Ok(())
    };
    for_each_record(&mut reader, &mut |record| {
        load(record).map_err(|e| {
            failure = Some(e);
            SnapshotError::Io(std::io::Error::other("load failed"))
        })
    })
    .map_err(|e| match failure.take() {
        Some(load_failure) => load_failure,
        None => StorageError(format!("snapshot: {e}")),
    })?;
    match loading {
        Some(last) => last.ingestion.finish(),
        None => Ok(()),
    }
}

/// The bulk load of one table under way in [`replace_tables`].
struct TableLoad<'a> {
    table: Table,
    ingestion: TableIngestion<'a>,
    /// The last key loaded: the next must sort after it.
    last_key: Option<Vec<u8>>,
}

fn out_of_order(table: Table) -> StorageError {
    StorageError(format!(
        "snapshot: the records of table {} are not in key order, or not together: the snapshot is damaged",
        table.name()
    ))
}

/// Deletes every key `replaced` selects, in batches of bounded size, each
/// committed (unsynced).
pub(crate) fn clear_tables(
    backend: &mut DiskBackend,
    replaced: &dyn Fn(Table, &[u8]) -> bool,
) -> Result<(), StorageError> {
    for table in Table::ALL {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let mut doomed = Vec::new();
            let start = after.clone().unwrap_or_default();
            backend.scan(table, &start, &[], &mut |key, _| {
                if after.as_deref() != Some(key) && replaced(table, key) {
                    doomed.push(key.to_vec());
                }
                doomed.len() < LOAD_DELETES_PER_BATCH_MAX
            })?;
            let Some(last) = doomed.last().cloned() else {
                break;
            };
            for key in &doomed {
                backend.delete(table, key);
            }
            backend.commit(false)?;
            after = Some(last);
        }
    }
    Ok(())
}

/// Puts into a backend, committing (unsynced) and flushing the storage
/// engine's memtables whenever the staged bytes reach
/// [`LOAD_BATCH_BYTES_MAX`], so the load's memory stays bounded whatever
/// is loaded; the caller commits the rest.
#[derive(Default)]
pub(crate) struct BatchedWrites {
    staged_bytes: usize,
}

impl BatchedWrites {
    pub(crate) fn put(
        &mut self,
        backend: &mut DiskBackend,
        table: Table,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StorageError> {
        self.staged_bytes += key.len() + value.len();
        backend.put(table, key, value);
        if self.staged_bytes >= LOAD_BATCH_BYTES_MAX {
            self.staged_bytes = 0;
            backend.commit(false)?;
            backend.flush_memtables()?;
        }
        Ok(())
    }
}

/// Bytes of records gathered before they are hashed and written on.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

fn table_tag(table: Table) -> u8 {
    match table {
        Table::Kv => 1,
        Table::Lease => 2,
        Table::Meta => 3,
        Table::Auth => 4,
    }
}

/// Writes the snapshot of `view` to `out`; returns the bytes written.
pub fn write_snapshot(view: &PointInTime, out: &mut impl Write) -> Result<u64, StorageError> {
    let io = |e: std::io::Error| StorageError(format!("writing snapshot: {e}"));
    // Records are gathered first, so the digest and `out` see large
    // blocks, not five small writes a record.
    let mut writer = std::io::BufWriter::with_capacity(
        WRITE_BUFFER_BYTES,
        HashingWriter {
            inner: out,
            digest: SnapshotDigest::default(),
        },
    );
    let body_bytes = write_snapshot_body(view, &mut writer)?;
    let writer = writer.into_inner().map_err(|e| io(e.into_error()))?;
    let digest = writer.digest.finish();
    writer.inner.write_all(&digest).map_err(io)?;
    writer.inner.flush().map_err(io)?;
    Ok(body_bytes + digest.len() as u64)
}

/// Writes all of the snapshot of `view` but its digest, which is the
/// [`SnapshotDigest`] of these bytes, record by record: `out` buffers.
/// Returns the bytes written.
pub fn write_snapshot_body(view: &PointInTime, out: &mut impl Write) -> Result<u64, StorageError> {
    let io = |e: std::io::Error| StorageError(format!("writing snapshot: {e}"));
    out.write_all(SNAPSHOT_MAGIC).map_err(io)?;
    let mut written_bytes = SNAPSHOT_MAGIC.len();
    view.visit_all(&mut |table, key, value| {
        let key_len = u32::try_from(key.len()).map_err(|_| StorageError("key too long".into()))?;
        let value_len =
            u32::try_from(value.len()).map_err(|_| StorageError("value too long".into()))?;
        out.write_all(&[table_tag(table)]).map_err(io)?;
        out.write_all(&key_len.to_be_bytes()).map_err(io)?;
        out.write_all(key).map_err(io)?;
        out.write_all(&value_len.to_be_bytes()).map_err(io)?;
        out.write_all(value).map_err(io)?;
        written_bytes += 1 + 4 + key.len() + 4 + value.len();
        Ok(())
    })?;
    out.write_all(&[END_OF_RECORDS]).map_err(io)?;
    written_bytes += 1;
    let padding = (PAD_TO_BYTES - written_bytes % PAD_TO_BYTES) % PAD_TO_BYTES;
    out.write_all(&vec![0u8; padding]).map_err(io)?;
    out.flush().map_err(io)?;
    Ok((written_bytes + padding) as u64)
}

/// The SHA-256 that closes a snapshot (e2d's, and etcd's database file),
/// hashed from its body as it goes by; on aws-lc, the server's crypto
/// provider, which uses the CPU's SHA instructions.
pub struct SnapshotDigest(aws_lc_rs::digest::Context);

impl Default for SnapshotDigest {
    fn default() -> Self {
        SnapshotDigest(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }
}

impl SnapshotDigest {
    pub fn update(&mut self, body: &[u8]) {
        self.0.update(body);
    }

    pub fn finish(self) -> Vec<u8> {
        self.0.finish().as_ref().to_vec()
    }
}

impl Write for SnapshotDigest {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.update(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    digest: SnapshotDigest,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn damaged_snapshots_are_refused() {
        use std::io::{Seek, Write};
        let mut body = SNAPSHOT_MAGIC.to_vec();
        body.extend_from_slice(&[1, 0, 0, 0, 1, b'k', 0, 0, 0, 1, b'v', END_OF_RECORDS]);
        let mut bytes = body.clone();
        bytes.extend_from_slice(&Sha256::digest(&body));
        let dir = std::env::temp_dir();
        let mut file = crate::durable_file::unnamed_in(&dir).unwrap();
        file.write_all(&bytes).unwrap();
        verify_snapshot(&mut file).unwrap();
        let mut records = Vec::new();
        for_each_record(&mut file, &mut |r| {
            records.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(records, vec![(Table::Kv, b"k".to_vec(), b"v".to_vec())]);
        file.rewind().unwrap();
        bytes[9] ^= 1;
        file.write_all(&bytes).unwrap();
        assert!(matches!(
            verify_snapshot(&mut file),
            Err(SnapshotError::Digest)
        ));
    }

    #[test]
    fn a_snapshot_is_verified_as_it_is_written_in_pieces_of_any_size() {
        let mut body = SNAPSHOT_MAGIC.to_vec();
        body.extend_from_slice(&[1, 0, 0, 0, 1, b'k', 0, 0, 0, 1, b'v', END_OF_RECORDS]);
        body.resize(200, 0);
        let mut bytes = body.clone();
        bytes.extend_from_slice(&Sha256::digest(&body));
        for piece in [1, 7, 31, 32, 33, 100, 1000] {
            let mut writer = VerifyingWriter::new(Vec::new());
            for chunk in bytes.chunks(piece) {
                writer.write_all(chunk).unwrap();
            }
            assert_eq!(writer.finish().unwrap(), bytes, "pieces of {piece}");
            let mut damaged = bytes.clone();
            damaged[piece % bytes.len()] ^= 1;
            let mut writer = VerifyingWriter::new(Vec::new());
            for chunk in damaged.chunks(piece) {
                writer.write_all(chunk).unwrap();
            }
            assert!(matches!(writer.finish(), Err(SnapshotError::Digest)));
        }
        let mut short = VerifyingWriter::new(Vec::new());
        short.write_all(&bytes[..20]).unwrap();
        assert!(matches!(short.finish(), Err(SnapshotError::Digest)));
    }

    /// A snapshot file (with its digest) holding `records`.
    fn snapshot_of(dir: &std::path::Path, records: &[(Table, &str, &str)]) -> std::fs::File {
        use std::io::{Seek, Write};
        let mut body = SNAPSHOT_MAGIC.to_vec();
        for (table, key, value) in records {
            body.push(table_tag(*table));
            for field in [key, value] {
                body.extend_from_slice(&(field.len() as u32).to_be_bytes());
                body.extend_from_slice(field.as_bytes());
            }
        }
        body.push(END_OF_RECORDS);
        let digest = Sha256::digest(&body);
        body.extend_from_slice(&digest);
        let mut file = crate::durable_file::unnamed_in(dir).unwrap();
        file.write_all(&body).unwrap();
        file.rewind().unwrap();
        verify_snapshot(&mut file).unwrap();
        file
    }

    #[test]
    fn a_snapshot_loads_table_by_table_and_out_of_order_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = DiskBackend::open(&dir.path().join("db")).unwrap();
        backend.put(Table::Kv, b"old", b"gone");
        backend.put(Table::Meta, b"kept", b"1");
        backend.commit(true).unwrap();
        let everything_but_kept = |_: Table, key: &[u8]| key != b"kept";
        let good = snapshot_of(
            dir.path(),
            &[
                (Table::Kv, "a", "1"),
                (Table::Kv, "b", "2"),
                (Table::Meta, "m", "3"),
            ],
        );
        replace_tables(&mut backend, good, &everything_but_kept).unwrap();
        let read = |backend: &DiskBackend, table, key: &[u8]| backend.get(table, key).unwrap();
        assert_eq!(read(&backend, Table::Kv, b"old"), None);
        assert_eq!(read(&backend, Table::Kv, b"a"), Some(b"1".to_vec()));
        assert_eq!(read(&backend, Table::Kv, b"b"), Some(b"2".to_vec()));
        assert_eq!(read(&backend, Table::Meta, b"m"), Some(b"3".to_vec()));
        assert_eq!(read(&backend, Table::Meta, b"kept"), Some(b"1".to_vec()));

        for damaged in [
            vec![(Table::Kv, "b", "2"), (Table::Kv, "a", "1")],
            vec![(Table::Kv, "a", "1"), (Table::Kv, "a", "1")],
            vec![
                (Table::Kv, "a", "1"),
                (Table::Meta, "m", "3"),
                (Table::Kv, "b", "2"),
            ],
        ] {
            let file = snapshot_of(dir.path(), &damaged);
            let refused = replace_tables(&mut backend, file, &everything_but_kept).unwrap_err();
            assert!(refused.0.contains("not in key order"), "{refused}");
        }
    }
}

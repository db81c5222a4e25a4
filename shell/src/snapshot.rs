//! The snapshot stream: every table of the backend, as e2d's own record
//! format, padded to 512 bytes and closed by a SHA-256 of all before it,
//! the trailer `etcdctl snapshot save` expects.
//!
//! Layout: magic, then records `[table u8][key_len u32][key][value_len u32]
//! [value]` (big-endian lengths), then the end byte, zero padding up to a
//! multiple of 512 bytes, then the 32-byte digest.
//!
//! Between members the same body may close with a cheaper checksum
//! instead ([`DigestKind::Xxh3_128`]): the stream names it in its first
//! chunk.

use std::io::{Read, Write};

use e2d_core::storage::{Backend, StorageError, Table};

use crate::storage::{DiskBackend, PointInTime};

pub const SNAPSHOT_MAGIC: &[u8; 8] = b"E2DSNAP\x01";
const END_OF_RECORDS: u8 = 0xff;
const PAD_TO_BYTES: usize = 512;

/// Which keys a snapshot replaces, by table: the others stay as they
/// are, in the backend and in the snapshot alike.
pub type Replaced = fn(Table, &[u8]) -> bool;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read the snapshot: {0}")]
    Io(#[from] std::io::Error),
    #[error("neither an e2d snapshot nor an etcd database (bbolt) file")]
    Magic,
    #[error("the snapshot's {0} does not match its contents: it is damaged or truncated")]
    Digest(DigestKind),
    #[error("the snapshot's records are malformed at byte {0}")]
    Malformed(usize),
    #[error(transparent)]
    Etcd(#[from] crate::etcd_snapshot::EtcdSnapshotError),
    #[error("cannot load the snapshot: {0}")]
    Load(#[from] StorageError),
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

/// Writes a snapshot as it arrives and checks its digest trailer on the
/// way, so the bytes need not be read again: everything but the digest's
/// length at the end is hashed, and those last bytes must be the digest.
pub struct VerifyingWriter<W> {
    out: W,
    digest: SnapshotDigest,
    /// The last bytes written, up to the digest's length: the digest,
    /// once all has come.
    tail: Vec<u8>,
}

impl<W: Write> VerifyingWriter<W> {
    /// A writer for a snapshot closed by a SHA-256 (a file's).
    pub fn new(out: W) -> Self {
        VerifyingWriter::closed_by(out, DigestKind::Sha256)
    }

    /// A writer for a snapshot closed by a `kind` digest.
    pub fn closed_by(out: W, kind: DigestKind) -> Self {
        VerifyingWriter {
            out,
            digest: SnapshotDigest::new(kind),
            tail: Vec::with_capacity(2 * kind.bytes()),
        }
    }

    /// What was written, once its digest matches.
    pub fn finish(self) -> Result<W, SnapshotError> {
        let kind = self.digest.kind();
        if self.tail.len() != kind.bytes() || self.digest.finish() != self.tail {
            return Err(SnapshotError::Digest(kind));
        }
        Ok(self.out)
    }
}

impl<W: Write> Write for VerifyingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.out.write_all(data)?;
        // The bytes held back and the new ones, less the digest's length,
        // are body.
        let digest_bytes = self.digest.kind().bytes();
        let held = self.tail.len() + data.len();
        let body = held.saturating_sub(digest_bytes);
        let from_tail = body.min(self.tail.len());
        self.digest.update(&self.tail[..from_tail]);
        self.tail.drain(..from_tail);
        let from_data = body - from_tail;
        self.digest.update(&data[..from_data]);
        self.tail.extend_from_slice(&data[from_data..]);
        debug_assert!(self.tail.len() <= digest_bytes);
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

/// Visits a snapshot's records in order, one at a time, until its end
/// record; call [`verify_snapshot`] first.
pub fn for_each_record(
    input: &mut impl Read,
    visit: &mut VisitRecord<'_>,
) -> Result<(), SnapshotError> {
    let mut parser = RecordParser::default();
    let mut block = vec![0u8; READ_BLOCK_BYTES];
    while !parser.ended() {
        let read = input.read(&mut block)?;
        if read == 0 {
            return Err(SnapshotError::Malformed(parser.offset()));
        }
        parser.feed(&block[..read], visit)?;
    }
    Ok(())
}

/// Bytes [`for_each_record`] reads at a time.
const READ_BLOCK_BYTES: usize = 256 * 1024;

/// Takes one record: its table, key and value.
pub type VisitRecord<'a> = dyn FnMut(Table, &[u8], &[u8]) -> Result<(), SnapshotError> + 'a;

/// A snapshot's records read from its bytes as they come, in pieces of any
/// size: whole records in a piece are visited where they lie, and only a
/// record cut by a piece's end is copied, to be completed by the next.
/// What follows the end record (padding and digest) is not read.
#[derive(Default)]
pub struct RecordParser {
    /// The magic is read; records come next.
    past_magic: bool,
    ended: bool,
    /// The start of one item, waiting for the rest of it.
    pending: Vec<u8>,
    /// Bytes of the snapshot taken so far, `pending`'s not counted.
    offset: usize,
}

/// Where the next item of a snapshot stands in the bytes at hand.
enum Item {
    /// Whole, this long.
    Whole(usize),
    /// Cut: at least this many bytes are needed to say more.
    Short(usize),
}

impl RecordParser {
    /// Whether the end record was read.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Bytes read so far, up to the item under way.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Reads `data`, the next bytes of the snapshot, visiting each record
    /// it completes.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        visit: &mut VisitRecord<'_>,
    ) -> Result<(), SnapshotError> {
        // The item the last piece cut is completed first, a field at a
        // time, so `pending` never takes bytes past its end.
        while !self.pending.is_empty() && !data.is_empty() {
            let Item::Short(needed) = self.next_item(&self.pending)? else {
                break;
            };
            let taken = (needed - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..taken]);
            data = &data[taken..];
        }
        if !self.pending.is_empty() {
            if let Item::Short(_) = self.next_item(&self.pending)? {
                return Ok(());
            }
            let pending = std::mem::take(&mut self.pending);
            self.parse(&pending, visit)?;
        }
        if self.ended {
            return Ok(());
        }
        let used = self.parse(data, visit)?;
        if !self.ended {
            self.pending.extend_from_slice(&data[used..]);
        }
        Ok(())
    }

    /// Visits the whole items at the start of `bytes`; returns their length.
    fn parse(&mut self, bytes: &[u8], visit: &mut VisitRecord<'_>) -> Result<usize, SnapshotError> {
        let mut used = 0;
        while !self.ended {
            let Item::Whole(length) = self.next_item(&bytes[used..])? else {
                break;
            };
            let item = &bytes[used..used + length];
            if !self.past_magic {
                if item != SNAPSHOT_MAGIC {
                    return Err(SnapshotError::Magic);
                }
                self.past_magic = true;
            } else if item[0] == END_OF_RECORDS {
                self.ended = true;
            } else {
                let table = tag_table(item[0]).expect("next_item checked the tag");
                let key_end = 5 + field_length(&item[1..5]);
                visit(table, &item[5..key_end], &item[key_end + 4..])?;
            }
            used += length;
            self.offset += length;
        }
        Ok(used)
    }

    /// How long the item at the start of `bytes` is, as far as they say.
    fn next_item(&self, bytes: &[u8]) -> Result<Item, SnapshotError> {
        let whole_or_short = |length: usize| match bytes.len() >= length {
            true => Item::Whole(length),
            false => Item::Short(length),
        };
        if !self.past_magic {
            return Ok(whole_or_short(SNAPSHOT_MAGIC.len()));
        }
        let Some(&tag) = bytes.first() else {
            return Ok(Item::Short(1));
        };
        if tag == END_OF_RECORDS {
            return Ok(Item::Whole(1));
        }
        if tag_table(tag).is_none() {
            return Err(SnapshotError::Malformed(self.offset));
        }
        let checked = |at: usize| -> Result<usize, SnapshotError> {
            let length = field_length(&bytes[at..at + 4]);
            match length > RECORD_FIELD_BYTES_MAX {
                true => Err(SnapshotError::Malformed(self.offset + at)),
                false => Ok(length),
            }
        };
        if bytes.len() < 5 {
            return Ok(Item::Short(5));
        }
        let value_at = 5 + checked(1)?;
        if bytes.len() < value_at + 4 {
            return Ok(Item::Short(value_at + 4));
        }
        Ok(whole_or_short(value_at + 4 + checked(value_at)?))
    }
}

/// A record's big-endian length field.
fn field_length(bytes: &[u8]) -> usize {
    u32::from_be_bytes(bytes.try_into().expect("4 bytes")) as usize
}

/// Staged bytes after which loading a snapshot commits, so memory stays
/// bounded whatever the snapshot's size.
const LOAD_BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Keys deleted per batch when clearing the tables for a snapshot.
const LOAD_DELETES_PER_BATCH_MAX: usize = 10_000;

/// Deletes every key `replaced` selects, in batches of bounded size, each
/// committed (unsynced).
pub(crate) fn clear_tables(
    backend: &mut DiskBackend,
    replaced: Replaced,
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

/// Which digest closes a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestKind {
    /// SHA-256: what files end with, e2d's and etcd's alike, since
    /// `etcdctl snapshot save` and `snapshot restore` check it.
    Sha256,
    /// XXH3's 128-bit hash, big-endian: for the stream from the leader to
    /// a member behind the log. It finds damage as surely as SHA-256 does
    /// and costs a fraction of it (a quarter of both members' CPU went to
    /// SHA-256 in a multi-GiB catch-up); a forger who could change the
    /// bytes could as well recompute either, so the peer connection's TLS
    /// is what guards against one.
    Xxh3_128,
}

impl DigestKind {
    /// The digest's length at the end of the snapshot.
    pub fn bytes(self) -> usize {
        match self {
            DigestKind::Sha256 => 32,
            DigestKind::Xxh3_128 => 16,
        }
    }
}

impl std::fmt::Display for DigestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DigestKind::Sha256 => "SHA-256",
            DigestKind::Xxh3_128 => "XXH3-128 digest",
        })
    }
}

/// The digest that closes a snapshot, hashed from its body as it goes by.
/// SHA-256 runs on aws-lc, the server's crypto provider, which uses the
/// CPU's SHA instructions.
pub enum SnapshotDigest {
    Sha256(aws_lc_rs::digest::Context),
    Xxh3_128(Box<xxhash_rust::xxh3::Xxh3>),
}

impl Default for SnapshotDigest {
    fn default() -> Self {
        SnapshotDigest::new(DigestKind::Sha256)
    }
}

impl SnapshotDigest {
    pub fn new(kind: DigestKind) -> Self {
        match kind {
            DigestKind::Sha256 => {
                SnapshotDigest::Sha256(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
            }
            DigestKind::Xxh3_128 => {
                SnapshotDigest::Xxh3_128(Box::new(xxhash_rust::xxh3::Xxh3::new()))
            }
        }
    }

    pub fn kind(&self) -> DigestKind {
        match self {
            SnapshotDigest::Sha256(_) => DigestKind::Sha256,
            SnapshotDigest::Xxh3_128(_) => DigestKind::Xxh3_128,
        }
    }

    pub fn update(&mut self, body: &[u8]) {
        match self {
            SnapshotDigest::Sha256(context) => context.update(body),
            SnapshotDigest::Xxh3_128(state) => state.update(body),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self {
            SnapshotDigest::Sha256(context) => context.finish().as_ref().to_vec(),
            SnapshotDigest::Xxh3_128(state) => state.digest128().to_be_bytes().to_vec(),
        }
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
pub(crate) mod tests {
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
        for_each_record(&mut file, &mut |table, key, value| {
            records.push((table, key.to_vec(), value.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(records, vec![(Table::Kv, b"k".to_vec(), b"v".to_vec())]);
        file.rewind().unwrap();
        bytes[9] ^= 1;
        file.write_all(&bytes).unwrap();
        assert!(matches!(
            verify_snapshot(&mut file),
            Err(SnapshotError::Digest(_))
        ));
    }

    /// The digest of `body`, computed at once, apart from the streaming
    /// [`SnapshotDigest`].
    fn digest_of(body: &[u8], kind: DigestKind) -> Vec<u8> {
        match kind {
            DigestKind::Sha256 => Sha256::digest(body).to_vec(),
            DigestKind::Xxh3_128 => xxhash_rust::xxh3::xxh3_128(body).to_be_bytes().to_vec(),
        }
    }

    #[test]
    fn a_snapshot_is_verified_as_it_is_written_in_pieces_of_any_size() {
        let mut body = SNAPSHOT_MAGIC.to_vec();
        body.extend_from_slice(&[1, 0, 0, 0, 1, b'k', 0, 0, 0, 1, b'v', END_OF_RECORDS]);
        body.resize(200, 0);
        for kind in [DigestKind::Sha256, DigestKind::Xxh3_128] {
            let mut bytes = body.clone();
            bytes.extend_from_slice(&digest_of(&body, kind));
            for piece in [1, 7, 15, 16, 17, 31, 32, 33, 100, 1000] {
                let mut writer = VerifyingWriter::closed_by(Vec::new(), kind);
                for chunk in bytes.chunks(piece) {
                    writer.write_all(chunk).unwrap();
                }
                assert_eq!(writer.finish().unwrap(), bytes, "{kind}, pieces of {piece}");
                let mut damaged = bytes.clone();
                damaged[piece % bytes.len()] ^= 1;
                let mut writer = VerifyingWriter::closed_by(Vec::new(), kind);
                for chunk in damaged.chunks(piece) {
                    writer.write_all(chunk).unwrap();
                }
                let refused = writer.finish().unwrap_err();
                assert!(matches!(refused, SnapshotError::Digest(k) if k == kind));
                assert!(refused.to_string().contains(&kind.to_string()));
            }
            let mut short = VerifyingWriter::closed_by(Vec::new(), kind);
            short.write_all(&bytes[..20]).unwrap();
            assert!(matches!(short.finish(), Err(SnapshotError::Digest(_))));
        }
        // A body closed by one kind is refused by a check for the other.
        let mut sha_closed = body.clone();
        sha_closed.extend_from_slice(&digest_of(&body, DigestKind::Sha256));
        let mut writer = VerifyingWriter::closed_by(Vec::new(), DigestKind::Xxh3_128);
        writer.write_all(&sha_closed).unwrap();
        assert!(writer.finish().is_err());
    }

    /// A snapshot's bytes holding `records`, closed by a `kind` digest.
    pub(crate) fn snapshot_bytes(records: &[(Table, &[u8], &[u8])], kind: DigestKind) -> Vec<u8> {
        let mut body = SNAPSHOT_MAGIC.to_vec();
        for (table, key, value) in records {
            body.push(table_tag(*table));
            for field in [key, value] {
                body.extend_from_slice(&(field.len() as u32).to_be_bytes());
                body.extend_from_slice(field);
            }
        }
        body.push(END_OF_RECORDS);
        let digest = digest_of(&body, kind);
        body.extend_from_slice(&digest);
        body
    }

    /// A snapshot file (with its digest) holding `records`.
    pub(crate) fn snapshot_of(
        dir: &std::path::Path,
        records: &[(Table, &str, &str)],
    ) -> std::fs::File {
        use std::io::{Seek, Write};
        let records: Vec<(Table, &[u8], &[u8])> = records
            .iter()
            .map(|(table, key, value)| (*table, key.as_bytes(), value.as_bytes()))
            .collect();
        let mut file = crate::durable_file::unnamed_in(dir).unwrap();
        file.write_all(&snapshot_bytes(&records, DigestKind::Sha256))
            .unwrap();
        file.rewind().unwrap();
        verify_snapshot(&mut file).unwrap();
        file
    }
}

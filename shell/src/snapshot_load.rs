//! Loading a snapshot into the backend in two steps: its records go into
//! the storage engine's table files as they are read ([`TablesLoad`]),
//! unseen, and [`StagedTables::install`] later swaps them in for the keys
//! they replace. A snapshot from the leader is loaded while it streams in
//! ([`StreamedLoad`]), so it is written once and never read back before
//! raft takes it; a file (a backup, a restore) goes through both steps at
//! once ([`replace_tables`]).

use std::io::Write;

use e2d_core::mvcc::IndexBuilder;
use e2d_core::storage::{StorageError, Table};

use crate::snapshot::{
    clear_tables, DigestKind, RecordParser, Replaced, SnapshotError, VerifyingWriter,
};
use crate::storage::{DiskBackend, Ingester, TableIngestion};

/// Replaces the keys `replaced` selects with those of the (verified)
/// snapshot in `file`: the snapshot's are loaded table by table in bulk,
/// straight into the storage engine's table files, then every replaced key
/// of the backend is deleted (in batches of bounded size) and the loaded
/// tables take their place. A snapshot whose records are not grouped by
/// table and in key order within each is refused.
pub fn replace_tables(
    backend: &mut DiskBackend,
    mut file: std::fs::File,
    replaced: Replaced,
) -> Result<(), StorageError> {
    let mut load = TablesLoad::new(backend.ingester(), replaced);
    // `for_each_record` reads in large blocks of its own.
    crate::snapshot::for_each_record(&mut file, &mut |t, k, v| {
        load.record(t, k, v).map_err(SnapshotError::from)
    })
    .map_err(|e| match e {
        SnapshotError::Load(e) => e,
        other => StorageError(format!("snapshot: {other}")),
    })?;
    load.staged().install(backend).map(drop)
}

/// A snapshot's records going into the storage engine, table by table,
/// as they are read; nothing of them is seen until they are installed.
pub struct TablesLoad {
    ingester: Ingester,
    replaced: Replaced,
    /// The table whose records are coming.
    current: Option<TableLoad>,
    /// Tables whose records all came.
    written: Vec<TableIngestion>,
    /// Every table begun, in order.
    begun: Vec<Table>,
    /// The key index of the kv table loaded, when asked for.
    index: Option<IndexBuilder>,
}

/// The bulk load of one table under way in a [`TablesLoad`].
struct TableLoad {
    table: Table,
    ingestion: TableIngestion,
    /// The last key loaded: the next must sort after it.
    last_key: Option<Vec<u8>>,
}

impl TablesLoad {
    pub fn new(ingester: Ingester, replaced: Replaced) -> Self {
        TablesLoad {
            ingester,
            replaced,
            current: None,
            written: Vec::new(),
            begun: Vec::new(),
            index: None,
        }
    }

    /// Also builds the key index of the kv table as it loads, so the
    /// store need not read the table back once installed. `replaced` must
    /// take every kv key: the index is of the records loaded.
    pub fn indexing(mut self) -> Self {
        debug_assert!(self.current.is_none(), "indexing from the first record");
        self.index = Some(IndexBuilder::default());
        self
    }

    /// Loads the snapshot's next record, unless `replaced` leaves its key
    /// out. Records must come grouped by table, in key order within each.
    pub fn record(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        if !(self.replaced)(table, key) {
            return Ok(());
        }
        if self.current.as_ref().is_none_or(|l| l.table != table) {
            if self.begun.contains(&table) {
                return Err(out_of_order(table));
            }
            if let Some(done) = self.current.take() {
                self.written.push(done.ingestion);
            }
            self.begun.push(table);
            self.current = Some(TableLoad {
                table,
                ingestion: self.ingester.ingest(table)?,
                last_key: None,
            });
        }
        let load = self.current.as_mut().expect("begun above");
        if load.last_key.as_deref().is_some_and(|last| last >= key) {
            return Err(out_of_order(table));
        }
        if let (Table::Kv, Some(index)) = (table, &mut self.index) {
            index.record(key, value)?;
        }
        load.ingestion.put(key, value)?;
        match &mut load.last_key {
            Some(last) => {
                last.clear();
                last.extend_from_slice(key);
            }
            None => load.last_key = Some(key.to_vec()),
        }
        Ok(())
    }

    /// Every record came: the tables wait to be installed.
    pub fn staged(mut self) -> StagedTables {
        let mut loads = std::mem::take(&mut self.written);
        loads.extend(self.current.take().map(|l| l.ingestion));
        StagedTables {
            loads,
            replaced: self.replaced,
            index: self.index.take(),
        }
    }
}

fn out_of_order(table: Table) -> StorageError {
    StorageError(format!(
        "snapshot: the records of table {} are not in key order, or not together: the snapshot is damaged",
        table.name()
    ))
}

/// A snapshot's tables in the storage engine's files, not yet seen.
/// Dropped uninstalled, they stay on disk until the database next opens.
pub struct StagedTables {
    loads: Vec<TableIngestion>,
    replaced: Replaced,
    index: Option<IndexBuilder>,
}

impl StagedTables {
    /// Deletes every key of the backend the snapshot replaces, then makes
    /// the loaded tables readable and durable in their place. Commits
    /// unsynced; the caller syncs. Returns the kv table's key index, when
    /// it was built as the table loaded.
    pub fn install(self, backend: &mut DiskBackend) -> Result<Option<IndexBuilder>, StorageError> {
        clear_tables(backend, self.replaced)?;
        for load in self.loads {
            backend.finish_ingestion(load)?;
        }
        Ok(self.index)
    }
}

/// A snapshot from the leader loaded as its chunks arrive: parsed and
/// staged, and checked against its digest, which is known when the last
/// chunk is. Records before a bad digest were staged and are dropped.
pub struct StreamedLoad {
    check: VerifyingWriter<std::io::Sink>,
    /// Takes every byte the check does: it reads no further than the end
    /// record, so the padding and the digest after it are left alone.
    parser: RecordParser,
    load: TablesLoad,
}

impl StreamedLoad {
    /// A load of a stream closed by a `digest` digest.
    pub fn new(ingester: Ingester, replaced: Replaced, digest: DigestKind) -> Self {
        StreamedLoad {
            check: VerifyingWriter::closed_by(std::io::sink(), digest),
            parser: RecordParser::default(),
            load: TablesLoad::new(ingester, replaced).indexing(),
        }
    }

    /// Takes the stream's next bytes.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        self.check.write_all(chunk)?;
        let load = &mut self.load;
        self.parser.feed(chunk, &mut |t, k, v| {
            load.record(t, k, v).map_err(SnapshotError::from)
        })
    }

    /// The staged tables, once the digest matches and the records ended.
    pub fn finish(self) -> Result<StagedTables, SnapshotError> {
        self.check.finish()?;
        if !self.parser.ended() {
            return Err(SnapshotError::Malformed(self.parser.offset()));
        }
        Ok(self.load.staged())
    }
}

/// A snapshot from the leader, whole and checked, waiting for raft to
/// take it.
pub enum IncomingSnapshot {
    /// Written to a file as it came; loaded when installed, for the keys
    /// given.
    File(std::fs::File, Replaced),
    /// Loaded as it came.
    Staged(StagedTables),
}

impl IncomingSnapshot {
    /// Replaces the keys the snapshot replaces with its own. Commits
    /// unsynced; the caller syncs. Returns the kv table's key index, when
    /// it was built as the snapshot loaded.
    pub fn install(self, backend: &mut DiskBackend) -> Result<Option<IndexBuilder>, StorageError> {
        match self {
            IncomingSnapshot::File(file, replaced) => {
                replace_tables(backend, file, replaced).map(|()| None)
            }
            IncomingSnapshot::Staged(tables) => tables.install(backend),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::raft::snapshot_sender::STREAM_DIGEST;
    use crate::snapshot::tests::{snapshot_bytes, snapshot_of};
    use e2d_core::storage::Backend;

    pub(crate) fn everything_but_kept(_: Table, key: &[u8]) -> bool {
        key != b"kept"
    }

    /// A backend holding a key a snapshot replaces and one it keeps.
    pub(crate) fn backend_in(dir: &std::path::Path) -> DiskBackend {
        let mut backend = DiskBackend::open(&dir.join("db")).unwrap();
        backend.put(Table::Kv, b"old", b"gone");
        backend.put(Table::Meta, b"kept", b"1");
        backend.commit(true).unwrap();
        backend
    }

    pub(crate) fn read(backend: &DiskBackend, table: Table, key: &[u8]) -> Option<Vec<u8>> {
        backend.get(table, key).unwrap().map(|v| v.to_vec())
    }

    #[test]
    fn a_snapshot_loads_table_by_table_and_out_of_order_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = backend_in(dir.path());
        let good = snapshot_of(
            dir.path(),
            &[
                (Table::Kv, "a", "1"),
                (Table::Kv, "b", "2"),
                (Table::Meta, "kept", "replaced"),
                (Table::Meta, "m", "3"),
            ],
        );
        replace_tables(&mut backend, good, everything_but_kept).unwrap();
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
            let refused = replace_tables(&mut backend, file, everything_but_kept).unwrap_err();
            assert!(refused.0.contains("not in key order"), "{refused}");
        }
    }

    /// Records of every table, the kv table's as a store writes them (a
    /// key put twice, one deleted), one value longer than a load's batch,
    /// so records cross chunks and batches alike.
    pub(crate) fn many_records() -> Vec<(Table, Vec<u8>, Vec<u8>)> {
        use e2d_core::revision::Revision;
        use e2d_proto::mvccpb::KeyValue;
        use prost::Message;
        let entry = |main: i64, key: &str, value: Vec<u8>| {
            let kv = KeyValue {
                key: key.as_bytes().to_vec().into(),
                create_revision: main.min(2),
                mod_revision: main,
                version: 1,
                value: value.into(),
                lease: 0,
            };
            let revision = Revision::new(main, 0).encode().to_vec();
            (Table::Kv, revision, kv.encode_to_vec())
        };
        let mut records: Vec<(Table, Vec<u8>, Vec<u8>)> = (1..300i64)
            .map(|main| {
                let value = vec![main as u8; 1 + (main as usize * 37) % 3000];
                entry(main, &format!("k{main:05}"), value)
            })
            .collect();
        records.push(entry(300, "k00002", vec![7; 1_100_000]));
        let mut tombstone = Revision::new(301, 0).encode().to_vec();
        tombstone.push(b't');
        records.push((
            Table::Kv,
            tombstone,
            KeyValue {
                key: b"k00003".to_vec().into(),
                mod_revision: 301,
                ..KeyValue::default()
            }
            .encode_to_vec(),
        ));
        records.push((Table::Lease, b"l".to_vec(), b"lease".to_vec()));
        records.push((
            Table::Meta,
            e2d_core::mvcc::META_CURRENT_REVISION.to_vec(),
            301u64.to_be_bytes().to_vec(),
        ));
        records.push((Table::Meta, b"kept".to_vec(), b"replaced".to_vec()));
        records.push((Table::Meta, b"m".to_vec(), b"meta".to_vec()));
        records.push((Table::Auth, b"a".to_vec(), Vec::new()));
        records
    }

    pub(crate) fn bytes_of(records: &[(Table, Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let borrowed: Vec<(Table, &[u8], &[u8])> = records
            .iter()
            .map(|(table, key, value)| (*table, key.as_slice(), value.as_slice()))
            .collect();
        snapshot_bytes(&borrowed, STREAM_DIGEST)
    }

    #[test]
    fn a_streamed_load_in_pieces_of_any_size_installs_what_came_and_nothing_before() {
        let records = many_records();
        let bytes = bytes_of(&records);
        for piece in [1, 7, 4096, 300_000, bytes.len()] {
            let dir = tempfile::tempdir().unwrap();
            let mut backend = backend_in(dir.path());
            let mut load =
                StreamedLoad::new(backend.ingester(), everything_but_kept, STREAM_DIGEST);
            for chunk in bytes.chunks(piece) {
                load.write(chunk).unwrap();
            }
            let staged = load.finish().unwrap();
            let first = &records[0].1;
            assert_eq!(read(&backend, Table::Kv, first), None, "piece {piece}");
            assert_eq!(read(&backend, Table::Kv, b"old"), Some(b"gone".to_vec()));
            let built = staged.install(&mut backend).unwrap().expect("indexed");
            for (table, key, value) in &records {
                let expected = match key.as_slice() {
                    b"kept" => b"1".to_vec(),
                    _ => value.clone(),
                };
                assert_eq!(
                    read(&backend, *table, key).as_ref(),
                    Some(&expected),
                    "piece {piece}"
                );
            }
            assert_eq!(read(&backend, Table::Kv, b"old"), None, "piece {piece}");
            assert!(!backend.ingester().abandoned_any());
            // The index built as the records came is the one the table
            // gives when read back.
            let mut streamed = e2d_core::mvcc::Mvcc::open(backend).unwrap();
            streamed.reload_with(built).unwrap();
            let streamed_view = index_view(&streamed);
            streamed.reload().unwrap();
            assert_eq!(streamed_view, index_view(&streamed), "piece {piece}");
            assert_eq!(streamed_view.2, 301, "piece {piece}");
            assert_eq!(
                streamed_view.3[2],
                Some((2, 300, 1_100_000)),
                "piece {piece}"
            );
            assert_eq!(streamed_view.3[3], None, "piece {piece}");
            assert_eq!(streamed_view.3[299], Some((2, 299, 1 + 299 * 37 % 3000)));
        }
    }

    /// A key's create and mod revisions and its value's length.
    type KeyNow = Option<(i64, i64, usize)>;

    /// What a store's key index answers: keys, bytes, revision, and each
    /// key now.
    fn index_view(mvcc: &e2d_core::mvcc::Mvcc<DiskBackend>) -> (usize, u64, i64, Vec<KeyNow>) {
        let keys = (0..305).map(|i| {
            mvcc.get(format!("k{i:05}").as_bytes(), mvcc.current_revision())
                .unwrap()
                .map(|kv| (kv.create_revision, kv.mod_revision, kv.value.len()))
        });
        (
            mvcc.key_count(),
            mvcc.kv_bytes(),
            mvcc.current_revision(),
            keys.collect(),
        )
    }

    #[test]
    fn a_damaged_or_cut_stream_is_refused_and_nothing_of_it_is_seen() {
        let records = many_records();
        let good = bytes_of(&records);
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 1;
        let cut = good[..good.len() - 1].to_vec();
        let records_only = good[..good.len() - STREAM_DIGEST.bytes()].to_vec();
        for (what, bytes) in [
            ("flipped", flipped),
            ("cut", cut),
            ("without a digest", records_only),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut backend = backend_in(dir.path());
            let mut load =
                StreamedLoad::new(backend.ingester(), everything_but_kept, STREAM_DIGEST);
            for chunk in bytes.chunks(64 * 1024) {
                load.write(chunk).unwrap();
            }
            assert!(
                matches!(load.finish(), Err(SnapshotError::Digest(_))),
                "{what}"
            );
            assert!(backend.ingester().abandoned_any(), "{what}");
            backend.commit(true).unwrap();
            assert_eq!(
                read(&backend, Table::Kv, b"old"),
                Some(b"gone".to_vec()),
                "{what}"
            );
            assert_eq!(read(&backend, Table::Kv, &records[0].1), None, "{what}");
            assert_eq!(read(&backend, Table::Meta, b"m"), None, "{what}");
        }
    }

    #[test]
    fn a_stream_that_is_not_a_snapshot_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let backend = backend_in(dir.path());
        let mut load = StreamedLoad::new(backend.ingester(), everything_but_kept, STREAM_DIGEST);
        assert!(matches!(
            load.write(b"not a snapshot at all"),
            Err(SnapshotError::Magic)
        ));
        let mut load = StreamedLoad::new(backend.ingester(), everything_but_kept, STREAM_DIGEST);
        let mut bytes = crate::snapshot::SNAPSHOT_MAGIC.to_vec();
        bytes.extend_from_slice(&[9, 0, 0, 0, 1, b'k']);
        assert!(matches!(
            load.write(&bytes),
            Err(SnapshotError::Malformed(8))
        ));
    }
}

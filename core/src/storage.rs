//! The storage trait the state machine runs over, and an in-memory backend.
//!
//! The shell provides a durable backend (fjall); tests and the simulator use
//! [`MemBackend`]. Writes are staged: they are visible to [`Backend::get`] at
//! once and reach the disk when the shell commits the batch. Scans see only
//! committed data, so callers scan only what they know is committed.

use std::collections::BTreeMap;

/// A value read from a table: shared, so a read that keeps it (a range's
/// answer) need not copy it out of what the backend holds.
pub use prost::bytes::Bytes;

/// The tables of the backend. Each is an ordered map of bytes to bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Encoded revision (plus a tombstone marker) → encoded `mvccpb.KeyValue`.
    Kv,
    /// Lease id (8 bytes, big-endian) → encoded lease record.
    Lease,
    /// Named scalars: current and compacted revision, alarms.
    Meta,
    /// The auth store: users, roles, the enabled flag and the auth
    /// revision (see [`crate::auth`]).
    Auth,
}

impl Table {
    pub const ALL: [Table; 4] = [Table::Kv, Table::Lease, Table::Meta, Table::Auth];

    pub fn name(self) -> &'static str {
        match self {
            Table::Kv => "kv",
            Table::Lease => "lease",
            Table::Meta => "meta",
            Table::Auth => "auth",
        }
    }
}

/// A backend failed to read or write; the node cannot trust its state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage failure: {0}")]
pub struct StorageError(pub String);

/// Reads of e2d's tables as one consistent view of them: a backend, or a
/// point in time of one that writes do not wait for.
pub trait ReadTables {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Bytes>, StorageError>;

    /// Visits entries with `start <= key < end` (an empty `end` means no
    /// bound) in key order until `visit` returns false.
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError>;
}

impl<B: Backend> ReadTables for B {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Backend::get(self, table, key)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        Backend::scan(self, table, start, end, visit)
    }
}

pub trait Backend {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Bytes>, StorageError>;

    /// Visits committed entries with `start <= key < end` in key order (an
    /// empty `end` means no upper bound) until `visit` returns false.
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError>;

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]);

    fn delete(&mut self, table: Table, key: &[u8]);

    /// Makes staged writes durable (when `sync`) and visible to scans.
    fn commit(&mut self, sync: bool) -> Result<(), StorageError>;

    /// Bytes the data takes on disk (or in memory for the memory backend).
    fn size_bytes(&self) -> u64;

    /// Into how many parts a read of a whole table is worth splitting:
    /// how many [`Backend::scan_parts`] reads at once.
    fn scan_parallelism(&self) -> usize {
        1
    }

    /// Visits the committed entries of each part's range (as
    /// [`Backend::scan`]) with that part's visitor, each part in key
    /// order; the parts may be read one after another or at once.
    fn scan_parts(&self, table: Table, parts: &mut [ScanPart<'_>]) -> Result<(), StorageError> {
        for part in parts {
            self.scan(table, &part.start, &part.end, &mut *part.visit)?;
        }
        Ok(())
    }
}

/// One key range of [`Backend::scan_parts`]: `start <= key < end`, an
/// empty `end` meaning no upper bound, and what visits its entries until
/// it returns false.
pub struct ScanPart<'a> {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
    pub visit: Box<PartVisit<'a>>,
}

/// Visits one entry of a [`ScanPart`]; false stops that part.
pub type PartVisit<'a> = dyn FnMut(&[u8], &[u8]) -> bool + Send + 'a;

/// Reads an 8-byte big-endian number from the `Meta` table.
pub fn read_meta_u64(backend: &impl Backend, key: &[u8]) -> Result<Option<u64>, StorageError> {
    let Some(bytes) = backend.get(Table::Meta, key)? else {
        return Ok(None);
    };
    let raw: [u8; 8] = bytes.as_ref().try_into().map_err(|_| {
        StorageError(format!(
            "corrupt meta entry {}",
            String::from_utf8_lossy(key)
        ))
    })?;
    Ok(Some(u64::from_be_bytes(raw)))
}

/// An in-memory backend: everything is committed as soon as it is written.
#[derive(Debug, Default, Clone)]
pub struct MemBackend {
    tables: BTreeMap<Table, BTreeMap<Vec<u8>, Vec<u8>>>,
    /// What [`Backend::scan_parallelism`] answers (0 counts as 1); the
    /// parts are read one after another all the same.
    scan_parallelism: usize,
}

impl MemBackend {
    /// This backend, its whole-table reads split into `parts` as a disk
    /// backend's are, so tests reach the code that joins them.
    pub fn with_scan_parallelism(mut self, parts: usize) -> Self {
        self.scan_parallelism = parts;
        self
    }
}

impl Backend for MemBackend {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Ok(self
            .tables
            .get(&table)
            .and_then(|t| t.get(key))
            .map(|v| Bytes::copy_from_slice(v)))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let Some(t) = self.tables.get(&table) else {
            return Ok(());
        };
        for (k, v) in t.range(start.to_vec()..) {
            if !end.is_empty() && k.as_slice() >= end {
                break;
            }
            if !visit(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) {
        self.tables
            .entry(table)
            .or_default()
            .insert(key.to_vec(), value.to_vec());
    }

    fn delete(&mut self, table: Table, key: &[u8]) {
        if let Some(t) = self.tables.get_mut(&table) {
            t.remove(key);
        }
    }

    fn commit(&mut self, _sync: bool) -> Result<(), StorageError> {
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        self.tables
            .values()
            .flat_map(|t| t.iter())
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }

    fn scan_parallelism(&self) -> usize {
        self.scan_parallelism.max(1)
    }
}

//! etcd's v3 database (a bbolt file of buckets) and e2d's tables, both
//! ways, so data moves from etcd to e2d and back.
//!
//! etcd 3.4 / 3.5 buckets and where they go:
//! - `key`: revision key (8-byte big-endian main, `_`, 8-byte sub; an
//!   18th byte `t` marks a delete) → `mvccpb.KeyValue`: e2d's
//!   [`Table::Kv`] holds the same bytes, so `HashKV` agrees.
//! - `lease`: lease id (8 bytes, big-endian) → `leasepb.Lease {ID, TTL,
//!   RemainingTTL}` (seconds; a remaining time of 0 means the full TTL):
//!   [`Table::Lease`]'s TTL and remaining milliseconds.
//! - `meta`: `finishedCompactRev` and `scheduledCompactRev` (revision
//!   keys), `consistent_index` and `term` (etcd's raft position, which
//!   means nothing to another cluster and is left out both ways).
//! - `auth` (`authEnabled`, one byte; `authRevision`, 8 bytes big-endian),
//!   `authUsers` (name → `authpb.User`), `authRoles` (name →
//!   `authpb.Role`): [`Table::Auth`].
//! - `alarm`: an encoded `AlarmMember` → nothing: alarms in [`Table::Meta`].
//! - `members`, `members_removed`, `cluster`: the old cluster's
//!   membership, which etcd's own restore drops too: ignored on import,
//!   written empty on export.
//!
//! The current revision is not stored: etcd computes it on start as the
//! highest revision in `key`, at least the finished compaction. Import
//! does the same; export writes what makes etcd compute e2d's.
//!
//! - `import`: [`import`], a bbolt [`Db`](crate::bbolt::Db) to e2d records.
//! - `export`: [`export`], e2d's tables to a bbolt file.

mod export;
mod import;

pub use crate::storage::ReadTables;
pub use export::{export, ExportSummary};
pub use import::{import, ImportSummary, Importer};

use crate::bbolt::{BboltError, WriteError};
use crate::storage::{StorageError, Table};

pub const BUCKET_KEY: &[u8] = b"key";
pub const BUCKET_META: &[u8] = b"meta";
pub const BUCKET_LEASE: &[u8] = b"lease";
pub const BUCKET_ALARM: &[u8] = b"alarm";
pub const BUCKET_AUTH: &[u8] = b"auth";
pub const BUCKET_AUTH_USERS: &[u8] = b"authUsers";
pub const BUCKET_AUTH_ROLES: &[u8] = b"authRoles";
pub const BUCKET_MEMBERS: &[u8] = b"members";
pub const BUCKET_MEMBERS_REMOVED: &[u8] = b"members_removed";
pub const BUCKET_CLUSTER: &[u8] = b"cluster";

pub const META_FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
pub const META_SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
pub const AUTH_ENABLED: &[u8] = b"authEnabled";
pub const AUTH_REVISION: &[u8] = b"authRevision";

/// etcd's `leasepb.Lease`: what its lease bucket holds.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeasePb {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// Where one of e2d's records goes: called with its table, key and value.
pub type RecordSink<'a> = dyn FnMut(Table, &[u8], &[u8]) -> Result<(), StorageError> + 'a;

/// Why an etcd database cannot be read into e2d, or e2d's tables cannot be
/// written as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdDbError {
    #[error("{0}")]
    Bbolt(#[from] BboltError),
    #[error("not an etcd database: it has no `{bucket}` bucket")]
    MissingBucket { bucket: &'static str },
    #[error("not an etcd database: the top-level key {name:?} is not a bucket")]
    NotABucket { name: String },
    #[error("bucket `{bucket}` holds a bucket {key:?}; etcd's buckets hold values only")]
    NestedBucket { bucket: String, key: String },
    #[error("bucket `{bucket}`, key {key}: {reason}")]
    BadEntry {
        bucket: &'static str,
        key: String,
        reason: String,
    },
    #[error("e2d's {table} table, key {key}: {reason}")]
    BadRecord {
        table: &'static str,
        key: String,
        reason: String,
    },
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Write(#[from] WriteError),
}

/// A key as an error shows it: text when it is printable, else hex.
fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if text.chars().all(|c| !c.is_control()) => format!("{text:?}"),
        _ => format!(
            "0x{}",
            key.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

#[cfg(test)]
mod tests;

//! Everything that can go wrong, in the caller's terms. Faults of the
//! server or the network are `Transport`; data that cannot be read back is
//! `Decode`; misuse by the caller (an unknown field, a value that cannot be
//! a key) has its own variants with what to do about it.

use crate::value::Value;

/// The result of every e2db operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No row has this primary key.
    #[error("table {table}: no row with primary key {key}")]
    NotFound { table: String, key: Value },

    /// Another row already holds this value in a unique field (or this
    /// primary key, for an insert).
    #[error(
        "table {table}: value {value} of unique field `{field}` is already taken by another row"
    )]
    UniqueViolation {
        table: String,
        field: String,
        value: Value,
    },

    /// A field marked `required` is null (`None`) or empty.
    #[error("table {table}: required field `{field}` is missing or empty; give it a value")]
    RequiredMissing { table: String, field: String },

    /// The schema stored with the table is not the one the code declares.
    #[error("table {table}: {detail}")]
    SchemaMismatch { table: String, detail: String },

    /// The transaction kept losing to concurrent writers.
    #[error("transaction gave up after {attempts} attempts: the keys it read kept changing under it; retry later or write less contended keys")]
    Conflict { attempts: u32 },

    /// The etcd server could not be reached or refused the request.
    #[error("etcd request failed: {0}")]
    Transport(#[from] etcd_client::Error),

    /// A request got no answer in time (`Config::request_timeout`).
    #[error("etcd did not answer {what} within {after_ms} ms; check that the endpoints are up and reachable")]
    Timeout { what: &'static str, after_ms: u64 },

    /// What the server returned cannot be read as this table's data.
    #[error("table {table}: cannot read key {key}: {detail}")]
    Decode {
        table: String,
        key: String,
        detail: String,
    },

    /// A row cannot be written as it is (it does not serialize to an
    /// object, its primary key is not a valid key, ...).
    #[error("table {table}: {detail}")]
    InvalidRow { table: String, detail: String },

    /// The query names a field the table does not have, or uses it in a
    /// way it does not support.
    #[error("table {table}: {detail}")]
    InvalidQuery { table: String, detail: String },

    /// The configuration is incomplete or wrong.
    #[error("e2db configuration: {0}")]
    Config(String),

    /// The table has encrypted fields and the key in the configuration is
    /// missing or not the one its rows were sealed with.
    #[error("table {table}: {detail}")]
    Key { table: String, detail: String },

    /// One transaction would hold more operations than etcd takes.
    #[error("transaction needs {ops} {what}, more than etcd's limit of {limit}; split it")]
    TxnTooLarge {
        what: &'static str,
        ops: usize,
        limit: usize,
    },

    /// A query that must sort in memory matched more rows than it may hold.
    #[error("table {table}: the query sorts in memory and matched more than {limit} rows; narrow the filter, or stream without order_by")]
    TooManyRows { table: String, limit: usize },

    /// The watch stream ended: the server cancelled it (for example after a
    /// compaction) or the connection closed.
    #[error("table {table}: watch ended: {reason}")]
    WatchEnded { table: String, reason: String },
}

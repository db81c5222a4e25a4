//! e2db: typed tables over the etcd API, for e2d or any etcd v3.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, e2db::Table)]
//! #[e2db(table = "users")]
//! struct User {
//!     #[e2db(increment)]
//!     id: u64,
//!     #[e2db(unique, required)]
//!     email: String,
//!     #[e2db(index)]
//!     team: String,
//!     age: u32,
//! }
//!
//! # async fn example() -> e2db::Result<()> {
//! let db = e2db::Db::connect(e2db::Config::new(["http://127.0.0.1:2379"])).await?;
//! let users = db.table::<User>().await?;
//! let ada = users
//!     .insert(User { id: 0, email: "ada@example.com".into(), team: "core".into(), age: 36 })
//!     .await?;
//! assert_eq!(users.get(ada.id).await?.map(|u| u.email), Some("ada@example.com".into()));
//! let core = users.find_by("team", "core").await?;
//! let older = users
//!     .query()
//!     .filter(e2db::gt("age", 30).and(e2db::ne("team", "ops")))
//!     .order_by("age")
//!     .reverse()
//!     .limit(10)
//!     .run()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Tables
//!
//! `#[derive(e2db::Table)]` (with serde's `Serialize` and `Deserialize`)
//! makes a struct a table. Field attributes: `id` (the primary key: an
//! integer, a string or bytes), `increment` (an integer primary key that a
//! counter fills when the row has 0), `index` (looked up by `find_by`),
//! `unique` (an index no two rows share a non-null value of), `required`
//! (not null, not empty), `encrypted` (sealed with AES-256-GCM under the
//! configured key; not allowed on keys and indexes). On the struct,
//! `#[e2db(table = "name", version = N)]`. The schema is stored with the
//! table and checked on every open (`Error::SchemaMismatch`).
//!
//! Rows are stored as serde_json objects. Field names are serde's
//! (`#[serde(rename)]` is followed; `rename_all` is refused).
//!
//! # Atomicity
//!
//! Every write is one etcd Txn that compares the mod revision of every key
//! it depends on (the row, the unique index keys, the counter) and retries
//! on conflict with a fresh read, up to `Config::retries_max` attempts
//! (then `Error::Conflict`). No locks are taken. `Db::tx` runs several
//! operations, on several tables, as one such transaction.
//! `delete_by` deletes row by row; `drop` is one range delete.
//!
//! # Key layout
//!
//! ```text
//! <ns>/<table>/schema                          the stored schema (JSON)
//! <ns>/<table>/seq                             last auto-increment key (decimal)
//! <ns>/<table>/rows/<pk>                       a row (JSON)
//! <ns>/<table>/unique/<field>/<h>              a unique value; holds <pk>
//! <ns>/<table>/index/<field>/<h>/<pk>          an indexed value (empty)
//! ```
//!
//! `<ns>` is `Config::namespace` (default `e2db`); `<h>` the hex SHA-256 of
//! the value's encoding, so values with `/` or `..` are safe and do not
//! show; `<pk>` the primary key encoded to sort in key order (20 decimal
//! digits for an integer, `s` + hex for a string, `x` + hex for bytes).

extern crate self as e2db;

mod config;
mod db;
mod error;
mod keys;
mod query;
mod row;
mod schema;
mod seal;
mod table;
mod txn;
mod value;
mod watch;

pub use config::{Config, TlsFiles, DEFAULT_ENDPOINT, DEFAULT_NAMESPACE, DEFAULT_RETRIES_MAX};
pub use db::Db;
pub use e2db_derive::Table;
pub use error::{Error, Result};
pub use query::{and, eq, ge, gt, is_in, le, lt, ne, not, or, Filter, Query, RowStream};
pub use schema::{Field, StoredSchema, Table};
pub use seal::EncryptionKey;
pub use table::{TableHandle, PAGE_KEYS, ROWS_IN_MEMORY_MAX};
pub use txn::{Tx, TxFuture, TXN_OPS_MAX};
pub use value::Value;
pub use watch::{Change, Changes, Event};

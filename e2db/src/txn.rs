//! `Tx`: optimistic transactions. A `Tx` reads keys one by one, recording
//! each key's mod revision (0 for a missing key), and buffers its writes.
//! `commit` sends one etcd Txn: a compare `mod_revision == recorded` for
//! every key read, then every write. If anything read has changed the Txn
//! does nothing and the transaction runs again (see `Db::tx`). So a
//! committed transaction saw exactly the state it wrote over, with no
//! locks held.
//!
//! All reads of one attempt are made at one revision (that of its first
//! read), so what the transaction decides, including a refusal such as a
//! taken unique value, holds for one state of the store.
//!
//! Every row operation of e2db is a transaction of this kind: an insert
//! reads the row key (it must be missing), the unique index keys of its
//! values (missing, or its own) and the auto-increment counter, and writes
//! the row, its index keys and the counter in one Txn.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::query::Filter;
use crate::row::{Decoded, Object, RowCodec};
use crate::schema::{primary_key, Table};
use crate::value::Value;

/// The most compares, and the most writes, in one etcd Txn (etcd's
/// default `--max-txn-ops`).
pub const TXN_OPS_MAX: usize = 128;

/// What a transaction body returns: `Box::pin(async move { ... })`.
pub type TxFuture<'a, R> = Pin<Box<dyn Future<Output = Result<R>> + Send + 'a>>;

/// An open transaction; see `Db::tx`.
pub struct Tx<'env> {
    db: &'env Db,
    /// Key → (mod revision when read, value).
    reads: BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)>,
    /// Key → the value to put, or `None` to delete.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The revision every read is made at: that of the first read, so the
    /// transaction sees one state of the store, and a refusal (a taken
    /// unique value, a missing row) is true of that state.
    revision: i64,
}

/// What a row write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Insert,
    Update,
    Upsert,
}

impl<'env> Tx<'env> {
    pub(crate) fn new(db: &'env Db) -> Tx<'env> {
        Tx {
            db,
            reads: BTreeMap::new(),
            writes: BTreeMap::new(),
            revision: 0,
        }
    }

    /// The value of `key` as this transaction sees it: its own writes
    /// first, then what it read before, then etcd (recorded).
    async fn read(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        let key = key.as_bytes();
        if let Some(write) = self.writes.get(key) {
            return Ok(write.clone());
        }
        if let Some((_, value)) = self.reads.get(key) {
            return Ok(value.clone());
        }
        let response = self
            .db
            .get(key, GetOptions::new().with_revision(self.revision))
            .await?;
        if self.revision == 0 {
            self.revision = response.header().map_or(0, |h| h.revision());
        }
        let (revision, value) = match response.kvs().first() {
            Some(kv) => (kv.mod_revision(), Some(kv.value().to_vec())),
            None => (0, None),
        };
        self.reads.insert(key.to_vec(), (revision, value.clone()));
        Ok(value)
    }

    fn put(&mut self, key: String, value: Vec<u8>) {
        self.writes.insert(key.into_bytes(), Some(value));
    }

    fn delete_key(&mut self, key: String) {
        self.writes.insert(key.into_bytes(), None);
    }

    /// Sends the Txn. `Ok(false)`: something read had changed, nothing was
    /// written.
    pub(crate) async fn commit(self) -> Result<bool> {
        if self.reads.len() > TXN_OPS_MAX {
            return Err(Error::TxnTooLarge {
                what: "keys read",
                ops: self.reads.len(),
                limit: TXN_OPS_MAX,
            });
        }
        if self.writes.len() > TXN_OPS_MAX {
            return Err(Error::TxnTooLarge {
                what: "writes",
                ops: self.writes.len(),
                limit: TXN_OPS_MAX,
            });
        }
        if self.writes.is_empty() && self.reads.len() <= 1 {
            // One read, or none, is consistent by itself.
            return Ok(true);
        }
        let compares: Vec<Compare> = self
            .reads
            .iter()
            .map(|(key, (revision, _))| {
                Compare::mod_revision(key.clone(), CompareOp::Equal, *revision)
            })
            .collect();
        let ops: Vec<TxnOp> = self
            .writes
            .into_iter()
            .map(|(key, value)| match value {
                Some(value) => TxnOp::put(key, value, None),
                None => TxnOp::delete(key, None),
            })
            .collect();
        let txn = Txn::new().when(compares).and_then(ops);
        let response = self
            .db
            .timed("a transaction", self.db.kv().txn(txn))
            .await?;
        Ok(response.succeeded())
    }

    /// The row of table `T` with primary key `key`.
    pub async fn get<T: Table>(&mut self, key: impl Into<Value>) -> Result<Option<T>> {
        let codec = self.db.codec::<T>()?;
        Ok(self
            .read_row::<T>(&codec, &key.into())
            .await?
            .map(|d| d.row))
    }

    async fn read_row<T: Table>(
        &mut self,
        codec: &RowCodec,
        key: &Value,
    ) -> Result<Option<Decoded<T>>> {
        let segment = crate::keys::encode_pk(key).map_err(|why| Error::InvalidQuery {
            table: T::NAME.to_string(),
            detail: format!("primary key: {why}"),
        })?;
        let row_key = codec.keys.row(&segment);
        match self.read(&row_key).await? {
            Some(bytes) => codec.decode(row_key.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Inserts a new row; `Error::UniqueViolation` if its primary key or a
    /// unique value is taken. An `increment` key of 0 (or null) is given
    /// the next number; the row is returned as stored.
    pub async fn insert<T: Table>(&mut self, row: T) -> Result<T> {
        self.write_row(&row, Mode::Insert).await
    }

    pub(crate) async fn insert_ref<T: Table>(&mut self, row: &T) -> Result<T> {
        self.write_row(row, Mode::Insert).await
    }

    pub(crate) async fn update_ref<T: Table>(&mut self, row: &T) -> Result<T> {
        self.write_row(row, Mode::Update).await
    }

    pub(crate) async fn upsert_ref<T: Table>(&mut self, row: &T) -> Result<T> {
        self.write_row(row, Mode::Upsert).await
    }

    /// Replaces an existing row (`Error::NotFound` if there is none).
    pub async fn update<T: Table>(&mut self, row: T) -> Result<T> {
        self.write_row(&row, Mode::Update).await
    }

    /// Inserts the row, or replaces the row with its primary key.
    pub async fn upsert<T: Table>(&mut self, row: T) -> Result<T> {
        self.write_row(&row, Mode::Upsert).await
    }

    /// Deletes the row with primary key `key` and returns it
    /// (`Error::NotFound` if there is none).
    pub async fn delete<T: Table>(&mut self, key: impl Into<Value>) -> Result<T> {
        let codec = self.db.codec::<T>()?;
        let key = key.into();
        let Some(old) = self.read_row::<T>(&codec, &key).await? else {
            return Err(Error::NotFound {
                table: T::NAME.to_string(),
                key,
            });
        };
        self.delete_decoded(&codec, old)
    }

    /// Deletes the row with primary key `key` if it matches `filter`;
    /// whether it did.
    pub(crate) async fn delete_if_matches<T: Table>(
        &mut self,
        key: &Value,
        filter: &Filter,
    ) -> Result<bool> {
        let codec = self.db.codec::<T>()?;
        match self.read_row::<T>(&codec, key).await? {
            Some(old) if filter.matches::<T>(&codec, &old.object)? => {
                self.delete_decoded(&codec, old)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn delete_decoded<T: Table>(&mut self, codec: &RowCodec, old: Decoded<T>) -> Result<T> {
        self.delete_key(codec.keys.row(&old.pk));
        for field in T::FIELDS.iter().filter(|f| f.index) {
            let value = codec.field_value(&old.object, field.name)?;
            self.remove_index_entry(codec, field, &value, &old.pk);
        }
        Ok(old.row)
    }

    async fn write_row<T: Table>(&mut self, row: &T, mode: Mode) -> Result<T> {
        let codec = self.db.codec::<T>()?;
        let mut object = codec.to_object(row)?;
        codec.check_required::<T>(&object)?;
        let pk_field = primary_key::<T>();
        if pk_field.increment {
            self.assign_increment::<T>(&codec, &mut object).await?;
        }
        let (pk, segment) = codec.primary_key::<T>(&object)?;
        let row_key = codec.keys.row(&segment);
        let old = match self.read(&row_key).await? {
            Some(bytes) => Some(codec.decode::<T>(row_key.as_bytes(), &bytes)?),
            None => None,
        };
        match (mode, &old) {
            (Mode::Insert, Some(_)) => {
                return Err(Error::UniqueViolation {
                    table: T::NAME.to_string(),
                    field: pk_field.name.to_string(),
                    value: pk,
                })
            }
            (Mode::Update, None) => {
                return Err(Error::NotFound {
                    table: T::NAME.to_string(),
                    key: pk,
                })
            }
            _ => {}
        }
        for field in T::FIELDS.iter().filter(|f| f.index) {
            let new_value = codec.field_value(&object, field.name)?;
            let old_value = match &old {
                Some(old) => Some(codec.field_value(&old.object, field.name)?),
                None => None,
            };
            if old_value.as_ref() == Some(&new_value) {
                continue;
            }
            if let Some(old_value) = old_value {
                self.remove_index_entry(&codec, field, &old_value, &segment);
            }
            self.add_index_entry::<T>(&codec, field, &new_value, &segment)
                .await?;
        }
        let stored = codec.encode::<T>(&object, &segment)?;
        self.put(row_key.clone(), stored);
        serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| Error::Decode {
            table: T::NAME.to_string(),
            key: row_key,
            detail: format!("the row does not read back into the struct: {e}"),
        })
    }

    /// Gives an `increment` key of 0 or null the counter's next value, and
    /// raises the counter past a key given explicitly.
    async fn assign_increment<T: Table>(
        &mut self,
        codec: &RowCodec,
        object: &mut Object,
    ) -> Result<()> {
        let field = primary_key::<T>();
        let counter_key = codec.keys.sequence();
        let counter = match self.read(&counter_key).await? {
            None => 0,
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| Error::Decode {
                    table: T::NAME.to_string(),
                    key: counter_key.clone(),
                    detail: "the auto-increment counter is not a decimal number".into(),
                })?,
        };
        let next = match codec.field_value(object, field.name)? {
            Value::Null | Value::U64(0) => {
                let next = counter.checked_add(1).ok_or_else(|| Error::InvalidRow {
                    table: T::NAME.to_string(),
                    detail: "the auto-increment counter is exhausted".into(),
                })?;
                object.insert(field.name.to_string(), serde_json::Value::from(next));
                next
            }
            Value::U64(given) => given,
            other => {
                return Err(Error::InvalidRow {
                    table: T::NAME.to_string(),
                    detail: format!(
                        "`{}` is an increment key and holds {other}; give a positive integer, or 0 for the next number",
                        field.name
                    ),
                })
            }
        };
        if next > counter {
            self.put(counter_key, next.to_string().into_bytes());
        }
        Ok(())
    }

    async fn add_index_entry<T: Table>(
        &mut self,
        codec: &RowCodec,
        field: &crate::schema::Field,
        value: &Value,
        segment: &str,
    ) -> Result<()> {
        if !field.unique {
            self.put(codec.keys.index(field.name, value, segment), Vec::new());
            return Ok(());
        }
        if *value == Value::Null {
            return Ok(());
        }
        let unique_key = codec.keys.unique(field.name, value);
        if let Some(holder) = self.read(&unique_key).await? {
            if holder != segment.as_bytes() {
                return Err(Error::UniqueViolation {
                    table: T::NAME.to_string(),
                    field: field.name.to_string(),
                    value: value.clone(),
                });
            }
        }
        self.put(unique_key, segment.as_bytes().to_vec());
        Ok(())
    }

    fn remove_index_entry(
        &mut self,
        codec: &RowCodec,
        field: &crate::schema::Field,
        value: &Value,
        segment: &str,
    ) {
        if !field.unique {
            self.delete_key(codec.keys.index(field.name, value, segment));
        } else if *value != Value::Null {
            self.delete_key(codec.keys.unique(field.name, value));
        }
    }
}

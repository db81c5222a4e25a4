//! `TableHandle<T>`: the operations on one open table. Writes are
//! transactions (see `txn`); reads of many rows go through `query`.

use std::marker::PhantomData;

use etcd_client::{DeleteOptions, GetOptions};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::keys::{encode_pk, prefix_end};
use crate::query::{eq, Filter, Query};
use crate::row::{Decoded, RowCodec};
use crate::schema::{self, Table};
use crate::value::Value;
use crate::watch::Changes;

/// The most rows that one call which returns a `Vec` collects
/// (`find_by`, `all`, `Query::run`, and the rows a sorted query holds).
pub const ROWS_IN_MEMORY_MAX: usize = 100_000;
/// Keys read per request when paging through a range.
pub const PAGE_KEYS: i64 = 256;

/// An open table; get one from `Db::table`. Cheap to clone.
pub struct TableHandle<T> {
    pub(crate) db: Db,
    pub(crate) codec: RowCodec,
    pub(crate) row_type: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for TableHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TableHandle({})", self.codec.keys.table_prefix())
    }
}

impl<T> Clone for TableHandle<T> {
    fn clone(&self) -> Self {
        TableHandle {
            db: self.db.clone(),
            codec: self.codec.clone(),
            row_type: PhantomData,
        }
    }
}

impl<T: Table> TableHandle<T> {
    /// Inserts a new row and returns it as stored (with its
    /// auto-increment key). `Error::UniqueViolation` if its primary key or
    /// a unique value is taken, `Error::RequiredMissing` if a required
    /// field is empty.
    pub async fn insert(&self, row: T) -> Result<T> {
        self.db.tx(|tx| Box::pin(tx.insert_ref(&row))).await
    }

    /// Replaces the row with the same primary key (`Error::NotFound` if
    /// there is none).
    pub async fn update(&self, row: T) -> Result<T> {
        self.db.tx(|tx| Box::pin(tx.update_ref(&row))).await
    }

    /// Inserts the row or replaces the one with its primary key.
    pub async fn upsert(&self, row: T) -> Result<T> {
        self.db.tx(|tx| Box::pin(tx.upsert_ref(&row))).await
    }

    /// Deletes the row with this primary key and returns it
    /// (`Error::NotFound` if there is none).
    pub async fn delete(&self, key: impl Into<Value>) -> Result<T> {
        let key = key.into();
        self.db.tx(|tx| Box::pin(tx.delete::<T>(key.clone()))).await
    }

    /// The row with this primary key.
    pub async fn get(&self, key: impl Into<Value>) -> Result<Option<T>> {
        let segment = self.pk_segment(&key.into())?;
        let row_key = self.codec.keys.row(&segment);
        let response = self.db.get(row_key.as_str(), GetOptions::new()).await?;
        match response.kvs().first() {
            Some(kv) => Ok(Some(self.codec.decode::<T>(kv.key(), kv.value())?.row)),
            None => Ok(None),
        }
    }

    /// The rows whose indexed (or unique) `field` holds `value`, in primary
    /// key order, read at one revision. A unique index holds no nulls, so
    /// null finds nothing there (a plain index finds the rows with null).
    pub async fn find_by(&self, field: &str, value: impl Into<Value>) -> Result<Vec<T>> {
        let field = schema::field::<T>(field)?;
        if !field.index {
            return Err(self.invalid_query(format!(
                "`{}` is not indexed; mark it #[e2db(index)] or #[e2db(unique)], or use query().filter(e2db::eq(..))",
                field.name
            )));
        }
        let value = value.into();
        let (revision, segments) = if field.unique {
            self.unique_holder(field.name, &value).await?
        } else {
            self.index_entries(field.name, &value).await?
        };
        let mut rows = Vec::new();
        for segment in segments {
            let row_key = self.codec.keys.row(&segment);
            let response = self
                .db
                .get(row_key.as_str(), GetOptions::new().with_revision(revision))
                .await?;
            let Some(kv) = response.kvs().first() else {
                continue;
            };
            let decoded = self.codec.decode::<T>(kv.key(), kv.value())?;
            // An index entry always changes with its row; this guards
            // against entries written by hand.
            if self.codec.field_value(&decoded.object, field.name)? == value {
                rows.push(decoded.row);
            }
        }
        Ok(rows)
    }

    /// The key segment of the row holding unique `value`, if any, and the
    /// revision it was read at.
    async fn unique_holder(&self, field: &str, value: &Value) -> Result<(i64, Vec<String>)> {
        let key = self.codec.keys.unique(field, value);
        let response = self.db.get(key.as_str(), GetOptions::new()).await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let segments = response
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
            .into_iter()
            .collect();
        Ok((revision, segments))
    }

    /// The key segments of the rows indexed under `value`, read page by
    /// page at one revision.
    async fn index_entries(&self, field: &str, value: &Value) -> Result<(i64, Vec<String>)> {
        let prefix = self.codec.keys.index_prefix(field, value);
        let end = prefix_end(prefix.as_bytes());
        let mut start = prefix.clone().into_bytes();
        let mut revision = 0;
        let mut segments = Vec::new();
        loop {
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(PAGE_KEYS)
                .with_keys_only()
                .with_revision(revision);
            let response = self.db.get(start.clone(), options).await?;
            if revision == 0 {
                revision = response.header().map_or(0, |h| h.revision());
            }
            for kv in response.kvs() {
                let key = String::from_utf8_lossy(kv.key());
                if let Some(segment) = key.strip_prefix(&prefix) {
                    segments.push(segment.to_string());
                }
            }
            if segments.len() > ROWS_IN_MEMORY_MAX {
                return Err(Error::TooManyRows {
                    table: T::NAME.to_string(),
                    limit: ROWS_IN_MEMORY_MAX,
                });
            }
            match response.kvs().last() {
                Some(last) if response.more() => start = [last.key(), b"\0"].concat(),
                _ => return Ok((revision, segments)),
            }
        }
    }

    /// Every row, in primary key order.
    pub async fn all(&self) -> Result<Vec<T>> {
        self.query().run().await
    }

    /// How many rows the table has.
    pub async fn count(&self) -> Result<u64> {
        let prefix = self.codec.keys.rows_prefix();
        let response = self
            .db
            .get(prefix, GetOptions::new().with_prefix().with_count_only())
            .await?;
        Ok(u64::try_from(response.count()).unwrap_or(0))
    }

    /// A query over the table: filters, order, skip and limit.
    pub fn query(&self) -> Query<T> {
        Query::new(self.clone())
    }

    /// Deletes every row whose `field` holds `value` and returns how many.
    /// Each row is deleted in its own transaction (a row whose value
    /// changed meanwhile is kept), so the whole is not atomic.
    pub async fn delete_by(&self, field: &str, value: impl Into<Value>) -> Result<u64> {
        let value = value.into();
        let filter = eq(field, value.clone());
        let mut deleted = 0;
        let pages_max = ROWS_IN_MEMORY_MAX / 100;
        for _ in 0..pages_max {
            let keys = self.matching_keys(&filter).await?;
            if keys.is_empty() {
                return Ok(deleted);
            }
            for key in keys {
                let gone = self
                    .db
                    .tx(|tx| Box::pin(tx.delete_if_matches::<T>(&key, &filter)))
                    .await?;
                deleted += u64::from(gone);
            }
        }
        Err(Error::TooManyRows {
            table: T::NAME.to_string(),
            limit: pages_max * 100,
        })
    }

    /// Primary keys of up to 100 rows matching `filter`.
    async fn matching_keys(&self, filter: &Filter) -> Result<Vec<Value>> {
        let primary = schema::primary_key::<T>().name;
        let mut stream = self
            .query()
            .filter(filter.clone())
            .limit(100)
            .decoded()
            .await?;
        let mut keys = Vec::new();
        while let Some(decoded) = stream.next_decoded().await {
            let decoded: Decoded<T> = decoded?;
            keys.push(self.codec.field_value(&decoded.object, primary)?);
        }
        Ok(keys)
    }

    /// Deletes the table: its rows, indexes, counter and schema, in one
    /// request.
    pub async fn drop(self) -> Result<()> {
        let prefix = self.codec.keys.table_prefix().to_string();
        self.db
            .timed(
                "a table drop",
                self.db
                    .kv()
                    .delete(prefix, Some(DeleteOptions::new().with_prefix())),
            )
            .await?;
        self.db.forget_table(T::NAME);
        Ok(())
    }

    /// Changes to the table's rows from now on.
    pub async fn watch(&self) -> Result<Changes<T>> {
        Changes::start(self.db.clone(), self.codec.clone(), 0).await
    }

    /// Changes to the table's rows from `revision` on (history back to the
    /// last compaction).
    pub async fn watch_from(&self, revision: i64) -> Result<Changes<T>> {
        Changes::start(self.db.clone(), self.codec.clone(), revision).await
    }

    fn pk_segment(&self, key: &Value) -> Result<String> {
        encode_pk(key).map_err(|why| self.invalid_query(format!("primary key: {why}")))
    }

    fn invalid_query(&self, detail: String) -> Error {
        Error::InvalidQuery {
            table: T::NAME.to_string(),
            detail,
        }
    }
}

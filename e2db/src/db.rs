//! `Db`: one connection to etcd, the tables opened through it, and
//! transactions over them.

use std::any::TypeId;
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use etcd_client::{Client, Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::keys::TableKeys;
use crate::row::RowCodec;
use crate::schema::{self, StoredSchema, Table};
use crate::table::TableHandle;
use crate::txn::{Tx, TxFuture};

/// A connection to etcd. Clones share it.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    config: Config,
    /// Row types whose schema this connection has checked, and their
    /// tables.
    opened: Mutex<HashMap<TypeId, &'static str>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("endpoints", &self.inner.config.endpoints)
            .field("namespace", &self.inner.config.namespace)
            .finish()
    }
}

impl Db {
    /// Connects to etcd as `config` says.
    pub async fn connect(config: Config) -> Result<Db> {
        config.check()?;
        let options = config.connect_options()?;
        let client = tokio::time::timeout(
            config.connect_timeout,
            Client::connect(config.endpoint_urls(), Some(options)),
        )
        .await
        .map_err(|_| Error::Timeout {
            what: "the connection",
            after_ms: duration_ms(config.connect_timeout),
        })??;
        Ok(Db {
            inner: Arc::new(Inner {
                client,
                config,
                opened: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Opens table `T`: stores its schema on first use, and otherwise
    /// checks the stored schema against `T`'s (`Error::SchemaMismatch`, or
    /// `Error::Key` for another encryption key).
    pub async fn table<T: Table>(&self) -> Result<TableHandle<T>> {
        schema::validate::<T>()?;
        let codec = self.new_codec::<T>();
        let has_encrypted = T::FIELDS.iter().any(|f| f.encrypted);
        if has_encrypted && codec.seal.is_none() {
            return Err(Error::Key {
                table: T::NAME.to_string(),
                detail: "the table has encrypted fields and no encryption key is configured; set Config::encryption_key (or E2DB_ENCRYPTION_KEY_FILE)".into(),
            });
        }
        let expected = StoredSchema::of::<T>(codec.seal.as_ref().map(|k| k.id()));
        let schema_key = codec.keys.schema();
        let stored = self.read_schema(&schema_key, T::NAME).await?;
        match stored {
            Some(stored) => expected.check_stored(&stored)?,
            None => self.store_schema(&schema_key, &expected).await?,
        }
        self.lock_opened().insert(TypeId::of::<T>(), T::NAME);
        Ok(TableHandle {
            db: self.clone(),
            codec,
            row_type: PhantomData,
        })
    }

    async fn read_schema(&self, schema_key: &str, table: &str) -> Result<Option<StoredSchema>> {
        let response = self
            .timed("a schema read", self.kv().get(schema_key, None))
            .await?;
        let Some(kv) = response.kvs().first() else {
            return Ok(None);
        };
        serde_json::from_slice(kv.value())
            .map(Some)
            .map_err(|e| Error::Decode {
                table: table.to_string(),
                key: schema_key.to_string(),
                detail: format!("the stored schema is not e2db's: {e}"),
            })
    }

    /// Stores the schema unless another client stored one first, in which
    /// case that one is checked.
    async fn store_schema(&self, schema_key: &str, expected: &StoredSchema) -> Result<()> {
        let bytes = serde_json::to_vec(expected).map_err(|e| Error::InvalidRow {
            table: expected.table.clone(),
            detail: e.to_string(),
        })?;
        let txn = Txn::new()
            .when([Compare::version(schema_key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(schema_key, bytes, None)]);
        let response = self.timed("a schema write", self.kv().txn(txn)).await?;
        if response.succeeded() {
            return Ok(());
        }
        match self.read_schema(schema_key, &expected.table).await? {
            Some(stored) => expected.check_stored(&stored),
            None => Err(Error::Conflict { attempts: 1 }),
        }
    }

    /// Runs `f` as one transaction: its reads are checked and its writes
    /// applied in one etcd Txn, which commits only if nothing it read has
    /// changed since. On a conflict `f` runs again on fresh reads, up to
    /// `Config::retries_max` times, then `Error::Conflict`. An error from
    /// `f` ends the transaction without writing anything. `f` may run more
    /// than once: keep side effects out of it.
    ///
    /// ```no_run
    /// # async fn f(db: e2db::Db) -> e2db::Result<()> {
    /// # #[derive(serde::Serialize, serde::Deserialize, e2db::Table)]
    /// # struct Account { #[e2db(id)] name: String, balance: i64 }
    /// db.tx(|tx| {
    ///     Box::pin(async move {
    ///         let mut from: Account = tx.get("alice").await?.expect("alice");
    ///         let mut to: Account = tx.get("bob").await?.expect("bob");
    ///         from.balance -= 10;
    ///         to.balance += 10;
    ///         tx.update(from).await?;
    ///         tx.update(to).await?;
    ///         Ok(())
    ///     })
    /// })
    /// .await
    /// # }
    /// ```
    pub async fn tx<'env, R, F>(&'env self, mut f: F) -> Result<R>
    where
        R: Send,
        F: for<'a> FnMut(&'a mut Tx<'env>) -> TxFuture<'a, R> + Send + 'env,
    {
        let attempts_max = self.inner.config.retries_max;
        for attempt in 1..=attempts_max {
            let mut tx = Tx::new(self);
            let result = f(&mut tx).await?;
            if tx.commit().await? {
                return Ok(result);
            }
            if attempt < attempts_max {
                backoff(attempt).await;
            }
        }
        Err(Error::Conflict {
            attempts: attempts_max,
        })
    }

    fn lock_opened(&self) -> std::sync::MutexGuard<'_, HashMap<TypeId, &'static str>> {
        self.inner
            .opened
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn new_codec<T: Table>(&self) -> RowCodec {
        RowCodec {
            table: T::NAME,
            keys: TableKeys::new(&self.inner.config.namespace, T::NAME),
            seal: self.inner.config.encryption_key.clone(),
        }
    }

    /// The codec of an opened table.
    pub(crate) fn codec<T: Table>(&self) -> Result<RowCodec> {
        if !self.lock_opened().contains_key(&TypeId::of::<T>()) {
            return Err(Error::InvalidQuery {
                table: T::NAME.to_string(),
                detail: "the table is not open on this connection; call Db::table first, which checks its schema".into(),
            });
        }
        Ok(self.new_codec::<T>())
    }

    pub(crate) fn forget_table(&self, name: &str) {
        self.lock_opened().retain(|_, table| *table != name);
    }

    pub(crate) fn kv(&self) -> KvClient {
        self.inner.client.kv_client()
    }

    pub(crate) fn client(&self) -> Client {
        self.inner.client.clone()
    }

    /// `request` bounded by the request timeout.
    pub(crate) async fn timed<R>(
        &self,
        what: &'static str,
        request: impl Future<Output = Result<R, etcd_client::Error>>,
    ) -> Result<R> {
        let timeout = self.inner.config.request_timeout;
        match tokio::time::timeout(timeout, request).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(Error::Timeout {
                what,
                after_ms: duration_ms(timeout),
            }),
        }
    }

    /// One range read bounded by the request timeout.
    pub(crate) async fn get(
        &self,
        key: impl Into<Vec<u8>>,
        options: GetOptions,
    ) -> Result<etcd_client::GetResponse> {
        self.timed("a read", self.kv().get(key, Some(options)))
            .await
    }
}

fn duration_ms(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The longest pause between two attempts of a transaction.
const BACKOFF_MAX_MS: u64 = 64;

/// Sleeps before attempt `attempt + 1`: exponential from 1 ms up to 64 ms,
/// with jitter so that racing clients fall out of step.
async fn backoff(attempt: u32) {
    let ceiling_ms = (1u64 << attempt.min(6)).min(BACKOFF_MAX_MS);
    let mut random = [0u8; 2];
    let jitter = if getrandom::fill(&mut random).is_ok() {
        u64::from(u16::from_le_bytes(random))
    } else {
        u64::from(attempt) * 7919
    };
    let pause_us = ceiling_ms * 500 + jitter % (ceiling_ms * 1000);
    tokio::time::sleep(std::time::Duration::from_micros(pause_us)).await;
}

//! Typed change events of one table, from an etcd watch on its row prefix
//! (with previous values, so a change carries the row before it).

use std::collections::VecDeque;

use etcd_client::{EventType, WatchOptions, WatchStream};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::keys::decode_pk;
use crate::row::RowCodec;
use crate::schema::Table;
use crate::value::Value;

/// One change to a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<T> {
    /// A row was inserted (`old` is `None`) or replaced.
    Put { old: Option<T>, new: T },
    /// The row with primary key `key` was deleted; `old` is the row, when
    /// the server still had it.
    Delete { key: Value, old: Option<T> },
}

/// A change and the revision it happened at.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<T> {
    pub revision: i64,
    pub change: Change<T>,
}

/// The changes of a table as they commit; `while let Some(event) =
/// changes.next().await`. Dropping it ends the watch.
pub struct Changes<T> {
    stream: WatchStream,
    codec: RowCodec,
    pending: VecDeque<Result<Event<T>>>,
    ended: bool,
}

impl<T: Table> Changes<T> {
    /// Starts watching at `revision` (0: from now) and waits until the
    /// server confirms, so every change committed after this returns is
    /// seen.
    pub(crate) async fn start(db: Db, codec: RowCodec, revision: i64) -> Result<Changes<T>> {
        let prefix = codec.keys.rows_prefix();
        let mut options = WatchOptions::new().with_prefix().with_prev_key();
        if revision > 0 {
            options = options.with_start_revision(revision);
        }
        let mut watch_client = db.client().watch_client();
        let mut stream = db
            .timed("a watch", watch_client.watch(prefix, Some(options)))
            .await?;
        let first = db.timed("a watch", stream.message()).await?;
        match first {
            Some(response) if response.created() && !response.canceled() => {}
            Some(response) => {
                return Err(Error::WatchEnded {
                    table: T::NAME.to_string(),
                    reason: format!(
                        "the server refused the watch: {}",
                        refusal_reason(&response)
                    ),
                })
            }
            None => {
                return Err(Error::WatchEnded {
                    table: T::NAME.to_string(),
                    reason: "the server closed the stream".into(),
                })
            }
        }
        Ok(Changes {
            stream,
            codec,
            pending: VecDeque::new(),
            ended: false,
        })
    }

    /// The next change, or `None` once the watch has ended (after the error
    /// that says why).
    pub async fn next(&mut self) -> Option<Result<Event<T>>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            let response = match self.stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => {
                    self.ended = true;
                    return Some(Err(self.ended_error("the server closed the stream".into())));
                }
                Err(e) => {
                    self.ended = true;
                    return Some(Err(Error::Transport(e)));
                }
            };
            if response.canceled() {
                self.ended = true;
                let reason = refusal_reason(&response);
                return Some(Err(self.ended_error(reason)));
            }
            for event in response.events() {
                let decoded = self.decode(event);
                self.pending.push_back(decoded);
            }
        }
    }

    fn ended_error(&self, reason: String) -> Error {
        Error::WatchEnded {
            table: self.codec.table.to_string(),
            reason,
        }
    }

    fn decode(&self, event: &etcd_client::Event) -> Result<Event<T>> {
        let Some(kv) = event.kv() else {
            return Err(self.ended_error("an event without a key".into()));
        };
        let old = match event.prev_kv() {
            Some(prev) => Some(self.codec.decode::<T>(prev.key(), prev.value())?.row),
            None => None,
        };
        let change = match event.event_type() {
            EventType::Put => Change::Put {
                old,
                new: self.codec.decode::<T>(kv.key(), kv.value())?.row,
            },
            EventType::Delete => {
                let key_text = String::from_utf8_lossy(kv.key());
                let key = self
                    .codec
                    .keys
                    .pk_of_row(&key_text)
                    .and_then(decode_pk)
                    .ok_or_else(|| Error::Decode {
                        table: self.codec.table.to_string(),
                        key: key_text.to_string(),
                        detail: "not a row key of this table".into(),
                    })?;
                Change::Delete { key, old }
            }
        };
        Ok(Event {
            revision: kv.mod_revision(),
            change,
        })
    }
}

fn refusal_reason(response: &etcd_client::WatchResponse) -> String {
    if response.compact_revision() > 0 {
        format!(
            "the start revision is compacted; history starts at revision {}",
            response.compact_revision()
        )
    } else if response.cancel_reason().is_empty() {
        "cancelled".to_string()
    } else {
        response.cancel_reason().to_string()
    }
}

//! An etcd database into e2d's records, entry by entry, as [`Db::walk`]
//! reads it: nothing is held but counters, so memory stays bounded.

use e2d_proto::authpb::{Role, User};
use e2d_proto::etcdserverpb::AlarmMember;
use prost::Message;

use super::{
    show_key, EtcdDbError, LeasePb, RecordSink, AUTH_ENABLED, AUTH_REVISION, BUCKET_ALARM,
    BUCKET_AUTH, BUCKET_AUTH_ROLES, BUCKET_AUTH_USERS, BUCKET_CLUSTER, BUCKET_KEY, BUCKET_LEASE,
    BUCKET_MEMBERS, BUCKET_MEMBERS_REMOVED, BUCKET_META, META_FINISHED_COMPACT,
    META_SCHEDULED_COMPACT,
};
use crate::auth;
use crate::bbolt::{Db, Entry, EntryValue, PageSource};
use crate::lease::LeaseRecord;
use crate::mvcc::{self, Change};
use crate::revision::{Revision, REVISION_LEN_BYTES};
use crate::storage::Table;

/// Names of unknown buckets an [`ImportSummary`] lists at most.
const IGNORED_BUCKETS_LISTED_MAX: usize = 16;

/// What an import found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportSummary {
    /// The store revision, as etcd computes it on start.
    pub current_revision: i64,
    /// etcd's finished compaction; 0 when it never compacted.
    pub compact_revision: i64,
    /// A compaction etcd scheduled but had not finished when the file was
    /// taken: etcd finishes it when it starts, and so should the caller.
    pub unfinished_compaction: Option<i64>,
    /// Entries of the `key` bucket (every revision kept, deletes too).
    pub kv_entries: u64,
    pub leases: u64,
    pub users: u64,
    pub roles: u64,
    pub alarms: u64,
    pub auth_enabled: bool,
    /// Buckets etcd does not write, skipped (the first few names).
    pub ignored_buckets: Vec<String>,
}

/// Turns the entries of an etcd database into e2d records; see
/// [`import`] for the whole file.
#[derive(Debug, Default)]
pub struct Importer {
    summary: ImportSummary,
    seen_key: bool,
    seen_meta: bool,
    highest_main: i64,
    /// The revision of the `key` bucket's last entry: a delete and a put
    /// at one revision would be two changes there.
    last_revision: Option<Revision>,
    finished_compact: Option<i64>,
    scheduled_compact: Option<i64>,
}

impl Importer {
    pub fn new() -> Self {
        Importer::default()
    }

    /// Takes one entry of a walk over the file: `path` is the buckets it
    /// lies in (empty for a top-level bucket).
    pub fn entry(
        &mut self,
        path: &[Vec<u8>],
        entry: &Entry,
        out: &mut RecordSink<'_>,
    ) -> Result<(), EtcdDbError> {
        match (path, &entry.value) {
            ([], EntryValue::Bucket(_)) => {
                self.top_level_bucket(&entry.key);
                Ok(())
            }
            ([], EntryValue::Data(_)) => Err(EtcdDbError::NotABucket {
                name: show_key(&entry.key),
            }),
            ([bucket], EntryValue::Data(value)) => self.value(bucket, &entry.key, value, out),
            ([bucket, ..], _) => Err(EtcdDbError::NestedBucket {
                bucket: show_key(bucket),
                key: show_key(&entry.key),
            }),
        }
    }

    /// Checks etcd's buckets were there and gives the store's revisions to
    /// `out`.
    pub fn finish(mut self, out: &mut RecordSink<'_>) -> Result<ImportSummary, EtcdDbError> {
        if !self.seen_key {
            return Err(EtcdDbError::MissingBucket { bucket: "key" });
        }
        if !self.seen_meta {
            return Err(EtcdDbError::MissingBucket { bucket: "meta" });
        }
        let compact = self.finished_compact.unwrap_or(0);
        let current = self.highest_main.max(compact).max(1);
        self.summary.current_revision = current;
        self.summary.compact_revision = compact;
        self.summary.unfinished_compaction = self
            .scheduled_compact
            .filter(|&scheduled| scheduled > compact && scheduled <= current);
        out(
            Table::Meta,
            mvcc::META_CURRENT_REVISION,
            &current.to_be_bytes(),
        )?;
        if let Some(compact) = self.finished_compact {
            for key in [
                mvcc::META_COMPACT_REVISION,
                mvcc::META_COMPACT_FINISHED_REVISION,
            ] {
                out(Table::Meta, key, &compact.to_be_bytes())?;
            }
        }
        Ok(self.summary)
    }

    fn top_level_bucket(&mut self, name: &[u8]) {
        match name {
            BUCKET_KEY => self.seen_key = true,
            BUCKET_META => self.seen_meta = true,
            BUCKET_LEASE
            | BUCKET_ALARM
            | BUCKET_AUTH
            | BUCKET_AUTH_USERS
            | BUCKET_AUTH_ROLES
            | BUCKET_MEMBERS
            | BUCKET_MEMBERS_REMOVED
            | BUCKET_CLUSTER => {}
            other => {
                if self.summary.ignored_buckets.len() < IGNORED_BUCKETS_LISTED_MAX {
                    self.summary.ignored_buckets.push(show_key(other));
                }
            }
        }
    }

    fn value(
        &mut self,
        bucket: &[u8],
        key: &[u8],
        value: &[u8],
        out: &mut RecordSink<'_>,
    ) -> Result<(), EtcdDbError> {
        match bucket {
            BUCKET_KEY => self.kv(key, value, out),
            BUCKET_LEASE => self.lease(key, value, out),
            BUCKET_META => self.meta(key, value),
            BUCKET_AUTH => self.auth(key, value, out),
            BUCKET_AUTH_USERS => self.user(key, value, out),
            BUCKET_AUTH_ROLES => self.role(key, value, out),
            BUCKET_ALARM => self.alarm(key, out),
            _ => Ok(()),
        }
    }

    fn kv(
        &mut self,
        key: &[u8],
        value: &[u8],
        out: &mut RecordSink<'_>,
    ) -> Result<(), EtcdDbError> {
        let bad = |reason: String| EtcdDbError::BadEntry {
            bucket: "key",
            key: show_key(key),
            reason,
        };
        let (tombstone, kv) = mvcc::decode_kv_record(key, value).map_err(|_| {
            bad("not a revision (17 bytes, or 18 ending in `t`) with an mvccpb.KeyValue".into())
        })?;
        let revision = Revision::decode(&key[..REVISION_LEN_BYTES]).expect("decoded above");
        if revision.main < 1 || Change::new(revision, tombstone, 0).is_none() {
            return Err(bad(format!(
                "revision {}_{} is out of range",
                revision.main, revision.sub
            )));
        }
        if self.last_revision.is_some_and(|last| revision <= last) {
            return Err(bad(format!(
                "a second change at revision {}_{}",
                revision.main, revision.sub
            )));
        }
        self.last_revision = Some(revision);
        if kv.key.is_empty() {
            return Err(bad("the key-value has an empty key".into()));
        }
        if !tombstone && kv.version < 1 {
            return Err(bad(format!("a put with version {}", kv.version)));
        }
        self.highest_main = self.highest_main.max(revision.main);
        self.summary.kv_entries += 1;
        Ok(out(Table::Kv, key, value)?)
    }

    fn lease(
        &mut self,
        key: &[u8],
        value: &[u8],
        out: &mut RecordSink<'_>,
    ) -> Result<(), EtcdDbError> {
        let bad = |reason: String| EtcdDbError::BadEntry {
            bucket: "lease",
            key: show_key(key),
            reason,
        };
        let id_bytes: [u8; 8] = key
            .try_into()
            .map_err(|_| bad("a lease id is 8 bytes".into()))?;
        let id = i64::from_be_bytes(id_bytes);
        let lease = LeasePb::decode(value).map_err(|e| bad(format!("not a leasepb.Lease: {e}")))?;
        if lease.id != id {
            return Err(bad(format!("holds lease {:x}", lease.id)));
        }
        if lease.ttl < 0 || lease.remaining_ttl < 0 {
            return Err(bad(format!(
                "negative TTL {} or remaining TTL {}",
                lease.ttl, lease.remaining_ttl
            )));
        }
        let seconds = if lease.remaining_ttl > 0 {
            lease.remaining_ttl
        } else {
            lease.ttl
        };
        let record = LeaseRecord {
            ttl_seconds: lease.ttl,
            remaining_ms: (seconds as u64).saturating_mul(1000),
        };
        self.summary.leases += 1;
        Ok(out(Table::Lease, &id_bytes, &record.encode())?)
    }

    fn meta(&mut self, key: &[u8], value: &[u8]) -> Result<(), EtcdDbError> {
        let slot = match key {
            META_FINISHED_COMPACT => &mut self.finished_compact,
            META_SCHEDULED_COMPACT => &mut self.scheduled_compact,
            _ => return Ok(()),
        };
        let revision = Revision::decode(value)
            .filter(|revision| revision.main >= 0)
            .ok_or_else(|| EtcdDbError::BadEntry {
                bucket: "meta",
                key: show_key(key),
                reason: format!("{value:02x?} is not a revision"),
            })?;
        *slot = Some(revision.main);
        Ok(())
    }

    fn auth(
        &mut self,
        key: &[u8],
        value: &[u8],
        out: &mut RecordSink<'_>,
    ) -> Result<(), EtcdDbError> {
        match key {
            AUTH_ENABLED => {
                // etcd takes anything but a single 1 for disabled.
                let enabled = value == [1];
                self.summary.auth_enabled = enabled;
                Ok(out(Table::Auth, auth::KEY_ENABLED, &[u8::from(enabled)])?)
            }
            AUTH_REVISION => {
                if value.len() != 8 {
                    return Err(EtcdDbError::BadEntry {
                        bucket: "auth",
                        key: show_key(key),
                        reason: format!("{} bytes, not 8", value.len()),
                    });
                }
                Ok(out(Table::Auth, auth::KEY_REVISION, value)?)
            }
            _ => Ok(()),
        }
    }

    fn user(
        &mut self,
        key: &[u8],
        value: &[u8],
        out: &mut RecordSink<'_>,
    ) -> Result<(), EtcdDbError> {
        let user = User::decode(value);
        let name = user.as_ref().map(|user| user.name.as_slice());
        check_named("authUsers", key, name.ok(), "authpb.User")?;
        self.summary.users += 1;
        Ok(out(Table::Auth, &prefixed(auth::USER_PREFIX, key), value)?)
    }

    fn role(
        &mut self,
        key: &[u8],
        value: &[u8],
        out: &mut RecordSink<'_>,
    ) -> Result<(), EtcdDbError> {
        let role = Role::decode(value);
        let name = role.as_ref().map(|role| role.name.as_slice());
        check_named("authRoles", key, name.ok(), "authpb.Role")?;
        self.summary.roles += 1;
        Ok(out(Table::Auth, &prefixed(auth::ROLE_PREFIX, key), value)?)
    }

    fn alarm(&mut self, key: &[u8], out: &mut RecordSink<'_>) -> Result<(), EtcdDbError> {
        let alarm = AlarmMember::decode(key).map_err(|e| EtcdDbError::BadEntry {
            bucket: "alarm",
            key: show_key(key),
            reason: format!("not an AlarmMember: {e}"),
        })?;
        self.summary.alarms += 1;
        let key = crate::state_machine::encode_alarm_key(alarm.member_id, alarm.alarm);
        Ok(out(Table::Meta, &key, &[])?)
    }
}

/// A user or role: decoded, named as its key, and the name UTF-8 (e2d's
/// auth store keys them by name).
fn check_named(
    bucket: &'static str,
    key: &[u8],
    name: Option<&[u8]>,
    message: &str,
) -> Result<(), EtcdDbError> {
    let bad = |reason: String| EtcdDbError::BadEntry {
        bucket,
        key: show_key(key),
        reason,
    };
    let name = name.ok_or_else(|| bad(format!("not an {message}")))?;
    if name != key {
        return Err(bad(format!("names {}", show_key(name))));
    }
    if std::str::from_utf8(key).is_err() {
        return Err(bad("the name is not UTF-8".into()));
    }
    Ok(())
}

fn prefixed(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(name);
    key
}

/// Reads every bucket of `db` and gives e2d's records to `out`, in the
/// file's order (the store's revisions last). Run it once with an `out`
/// that keeps nothing to check a file before changing anything.
pub fn import<S: PageSource>(
    db: &Db<S>,
    out: &mut RecordSink<'_>,
) -> Result<ImportSummary, EtcdDbError> {
    let mut importer = Importer::new();
    db.walk(&mut |path: &[Vec<u8>], entry: &Entry| importer.entry(path, entry, out))?;
    importer.finish(out)
}

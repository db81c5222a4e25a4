//! e2d's tables as an etcd database: each bucket written in name order,
//! streamed from a scan of the table (or the part of it) it comes from.

use e2d_proto::authpb::{Role, User};
use e2d_proto::etcdserverpb::AlarmMember;
use prost::Message;

use super::{
    show_key, EtcdDbError, LeasePb, AUTH_ENABLED, AUTH_REVISION, BUCKET_ALARM, BUCKET_AUTH,
    BUCKET_AUTH_ROLES, BUCKET_AUTH_USERS, BUCKET_CLUSTER, BUCKET_KEY, BUCKET_LEASE, BUCKET_MEMBERS,
    BUCKET_MEMBERS_REMOVED, BUCKET_META, META_FINISHED_COMPACT, META_SCHEDULED_COMPACT,
};
use crate::apply::prefix_end;
use crate::auth;
use crate::bbolt::{DbWriter, PageSink, Written};
use crate::lease::LeaseRecord;
use crate::mvcc;
use crate::revision::{Revision, REVISION_LEN_BYTES};
use crate::state_machine::{decode_alarm_key, META_ALARM_PREFIX};
use crate::storage::{ReadTables, StorageError, Table};

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// The revision etcd computes when it opens the file: the highest in
    /// `key`, at least the compacted one.
    pub current_revision: i64,
    /// e2d's own current revision; etcd cannot carry a higher one (no
    /// change of the store stands at it).
    pub e2d_current_revision: i64,
    pub compact_revision: i64,
    pub kv_entries: u64,
    pub leases: u64,
    pub users: u64,
    pub roles: u64,
    pub alarms: u64,
    pub written: Written,
}

/// Writes the etcd database that holds what `tables` hold into `sink`.
pub fn export<T: ReadTables + ?Sized, S: PageSink>(
    tables: &T,
    sink: S,
) -> Result<(S, ExportSummary), EtcdDbError> {
    let mut exporter = Exporter {
        tables,
        writer: DbWriter::new(sink),
        summary: ExportSummary {
            current_revision: 1,
            e2d_current_revision: read_meta_i64(tables, mvcc::META_CURRENT_REVISION)?.unwrap_or(1),
            compact_revision: read_meta_i64(tables, mvcc::META_COMPACT_REVISION)?.unwrap_or(0),
            kv_entries: 0,
            leases: 0,
            users: 0,
            roles: 0,
            alarms: 0,
            written: Written {
                pages: 0,
                size_bytes: 0,
            },
        },
    };
    exporter.alarms()?;
    exporter.auth()?;
    exporter.auth_named(BUCKET_AUTH_ROLES, auth::ROLE_PREFIX)?;
    exporter.auth_named(BUCKET_AUTH_USERS, auth::USER_PREFIX)?;
    exporter.empty(BUCKET_CLUSTER)?;
    exporter.kvs()?;
    exporter.leases()?;
    exporter.empty(BUCKET_MEMBERS)?;
    exporter.empty(BUCKET_MEMBERS_REMOVED)?;
    exporter.meta()?;
    let Exporter {
        writer,
        mut summary,
        ..
    } = exporter;
    let (sink, written) = writer.finish()?;
    summary.written = written;
    summary.current_revision = summary.current_revision.max(summary.compact_revision);
    Ok((sink, summary))
}

/// What [`Exporter::each`] does with one entry of a table.
type ExportEach<'a, S> =
    dyn FnMut(&mut DbWriter<S>, &mut ExportSummary, &[u8], &[u8]) -> Result<(), EtcdDbError> + 'a;

struct Exporter<'t, T: ?Sized, S> {
    tables: &'t T,
    writer: DbWriter<S>,
    summary: ExportSummary,
}

impl<T: ReadTables + ?Sized, S: PageSink> Exporter<'_, T, S> {
    /// Scans `table` from `start` to `end`, giving each entry to `each`
    /// until it fails.
    fn each(
        &mut self,
        table: Table,
        start: &[u8],
        end: &[u8],
        each: &mut ExportEach<'_, S>,
    ) -> Result<(), EtcdDbError> {
        let mut failure = None;
        let (writer, summary) = (&mut self.writer, &mut self.summary);
        self.tables
            .scan(
                table,
                start,
                end,
                &mut |key, value| match each(writer, summary, key, value) {
                    Ok(()) => true,
                    Err(e) => {
                        failure = Some(e);
                        false
                    }
                },
            )?;
        failure.map_or(Ok(()), Err)
    }

    /// etcd keys alarms by the encoded `AlarmMember`, which sorts
    /// otherwise than e2d's keys: the few there are are sorted here.
    fn alarms(&mut self) -> Result<(), EtcdDbError> {
        let mut alarms = Vec::new();
        let mut bad = None;
        self.tables.scan(
            Table::Meta,
            META_ALARM_PREFIX,
            &prefix_end(META_ALARM_PREFIX),
            &mut |key, _| match decode_alarm_key(key) {
                Some((member_id, alarm)) => {
                    alarms.push(AlarmMember { member_id, alarm }.encode_to_vec());
                    true
                }
                None => {
                    bad = Some(bad_record(Table::Meta, key, "not an alarm".into()));
                    false
                }
            },
        )?;
        if let Some(e) = bad {
            return Err(e);
        }
        alarms.sort();
        self.writer.begin_bucket(BUCKET_ALARM)?;
        for alarm in &alarms {
            self.writer.put(alarm, &[])?;
        }
        self.summary.alarms = alarms.len() as u64;
        Ok(self.writer.end_bucket()?)
    }

    fn auth(&mut self) -> Result<(), EtcdDbError> {
        let enabled = get(self.tables, Table::Auth, auth::KEY_ENABLED)?;
        let revision = get(self.tables, Table::Auth, auth::KEY_REVISION)?;
        self.writer.begin_bucket(BUCKET_AUTH)?;
        if let Some(enabled) = enabled {
            self.writer.put(AUTH_ENABLED, &[u8::from(enabled == [1])])?;
        }
        if let Some(revision) = revision {
            if revision.len() != 8 {
                return Err(bad_record(
                    Table::Auth,
                    auth::KEY_REVISION,
                    "not 8 bytes".into(),
                ));
            }
            self.writer.put(AUTH_REVISION, &revision)?;
        }
        Ok(self.writer.end_bucket()?)
    }

    /// Users or roles: the `Auth` table's keys under `prefix`, by name.
    fn auth_named(&mut self, bucket: &[u8], prefix: &[u8]) -> Result<(), EtcdDbError> {
        self.writer.begin_bucket(bucket)?;
        let is_user = prefix == auth::USER_PREFIX;
        self.each(
            Table::Auth,
            prefix,
            &prefix_end(prefix),
            &mut |writer, summary, key, value| {
                let name = &key[prefix.len()..];
                let named = if is_user {
                    User::decode(value).map(|user| user.name)
                } else {
                    Role::decode(value).map(|role| role.name)
                };
                match named {
                    Ok(stored) if stored == name => {}
                    _ => {
                        return Err(bad_record(
                            Table::Auth,
                            key,
                            "not a user or role of that name".into(),
                        ))
                    }
                }
                if is_user {
                    summary.users += 1;
                } else {
                    summary.roles += 1;
                }
                Ok(writer.put(name, value)?)
            },
        )?;
        Ok(self.writer.end_bucket()?)
    }

    fn kvs(&mut self) -> Result<(), EtcdDbError> {
        self.writer.begin_bucket(BUCKET_KEY)?;
        self.each(Table::Kv, &[], &[], &mut |writer, summary, key, value| {
            mvcc::decode_kv_record(key, value).map_err(|e| bad_record(Table::Kv, key, e.0))?;
            let revision = Revision::decode(&key[..REVISION_LEN_BYTES]).expect("decoded above");
            summary.current_revision = summary.current_revision.max(revision.main);
            summary.kv_entries += 1;
            Ok(writer.put(key, value)?)
        })?;
        Ok(self.writer.end_bucket()?)
    }

    fn leases(&mut self) -> Result<(), EtcdDbError> {
        self.writer.begin_bucket(BUCKET_LEASE)?;
        self.each(
            Table::Lease,
            &[],
            &[],
            &mut |writer, summary, key, value| {
                let id = <[u8; 8]>::try_from(key)
                    .map(i64::from_be_bytes)
                    .map_err(|_| bad_record(Table::Lease, key, "not a lease id".into()))?;
                let record = LeaseRecord::decode(value)
                    .ok_or_else(|| bad_record(Table::Lease, key, "not a lease record".into()))?;
                let lease = LeasePb {
                    id,
                    ttl: record.ttl_seconds,
                    remaining_ttl: remaining_ttl_seconds(record),
                };
                summary.leases += 1;
                Ok(writer.put(key, &lease.encode_to_vec())?)
            },
        )?;
        Ok(self.writer.end_bucket()?)
    }

    /// The finished (and scheduled) compaction; etcd's raft position is
    /// left out: the cluster that opens the file has its own.
    fn meta(&mut self) -> Result<(), EtcdDbError> {
        self.writer.begin_bucket(BUCKET_META)?;
        let compact = self.summary.compact_revision;
        // A compaction whose deletes are under way is one etcd finishes
        // when it opens the database.
        let finished =
            read_meta_i64(self.tables, mvcc::META_COMPACT_FINISHED_REVISION)?.unwrap_or(compact);
        if finished > 0 {
            let revision = Revision::new(finished, 0).encode();
            self.writer.put(META_FINISHED_COMPACT, &revision)?;
        }
        if compact > 0 {
            let revision = Revision::new(compact, 0).encode();
            self.writer.put(META_SCHEDULED_COMPACT, &revision)?;
        }
        Ok(self.writer.end_bucket()?)
    }

    fn empty(&mut self, bucket: &[u8]) -> Result<(), EtcdDbError> {
        self.writer.begin_bucket(bucket)?;
        Ok(self.writer.end_bucket()?)
    }
}

/// etcd's `RemainingTTL`: 0 for a lease with its whole TTL left, else the
/// seconds left, rounded up (a lease never ends sooner than e2d promised)
/// and at least 1 (0 would mean the whole TTL).
fn remaining_ttl_seconds(record: LeaseRecord) -> i64 {
    let ttl_ms = u64::try_from(record.ttl_seconds)
        .unwrap_or(0)
        .saturating_mul(1000);
    if record.remaining_ms >= ttl_ms {
        return 0;
    }
    i64::try_from(record.remaining_ms.div_ceil(1000).max(1)).unwrap_or(i64::MAX)
}

fn get<T: ReadTables + ?Sized>(
    tables: &T,
    table: Table,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StorageError> {
    let mut end = key.to_vec();
    end.push(0);
    let mut found = None;
    tables.scan(table, key, &end, &mut |_, value| {
        found = Some(value.to_vec());
        false
    })?;
    Ok(found)
}

fn read_meta_i64<T: ReadTables + ?Sized>(
    tables: &T,
    key: &[u8],
) -> Result<Option<i64>, EtcdDbError> {
    match get(tables, Table::Meta, key)? {
        None => Ok(None),
        Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
            .map(|raw| Some(i64::from_be_bytes(raw)))
            .map_err(|_| bad_record(Table::Meta, key, "not 8 bytes".into())),
    }
}

fn bad_record(table: Table, key: &[u8], reason: String) -> EtcdDbError {
    EtcdDbError::BadRecord {
        table: table.name(),
        key: show_key(key),
        reason,
    }
}

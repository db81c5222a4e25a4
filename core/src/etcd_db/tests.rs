use std::collections::{BTreeMap, BTreeSet};

use e2d_proto::authpb::{Permission, Role, User, UserAddOptions};
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::bbolt::{Db, DbWriter};
use crate::lease::LeaseRecord;
use crate::mvcc::{self, KeySpan, Mvcc};
use crate::revision::Revision;
use crate::storage::{Backend, MemBackend};

/// Every record of every table.
fn records(backend: &MemBackend) -> BTreeMap<(Table, Vec<u8>), Vec<u8>> {
    let mut all = BTreeMap::new();
    for table in Table::ALL {
        Backend::scan(backend, table, &[], &[], &mut |key, value| {
            all.insert((table, key.to_vec()), value.to_vec());
            true
        })
        .unwrap();
    }
    all
}

fn export_bytes(backend: &MemBackend) -> (Vec<u8>, ExportSummary) {
    export(backend, Vec::new()).unwrap()
}

fn import_bytes(bytes: &[u8]) -> Result<(MemBackend, ImportSummary), EtcdDbError> {
    let db = Db::open(bytes)?;
    let mut backend = MemBackend::default();
    let summary = import(&db, &mut |table, key, value| {
        backend.put(table, key, value);
        Ok(())
    })?;
    Ok((backend, summary))
}

#[derive(Debug, Clone)]
enum KvOp {
    Put(u8, Vec<u8>),
    Delete(u8),
    Compact(prop::sample::Index),
}

fn kv_op() -> impl Strategy<Value = KvOp> {
    prop_oneof![
        6 => (0u8..8, proptest::collection::vec(any::<u8>(), 0..30)).prop_map(|(k, v)| KvOp::Put(k, v)),
        2 => (0u8..8).prop_map(KvOp::Delete),
        1 => any::<prop::sample::Index>().prop_map(KvOp::Compact),
    ]
}

fn lease_record() -> impl Strategy<Value = LeaseRecord> {
    (1i64..100_000, any::<prop::sample::Index>(), any::<bool>()).prop_map(|(ttl, left, full)| {
        let remaining_seconds = if full || ttl == 1 {
            ttl
        } else {
            1 + left.index(ttl as usize - 1) as i64
        };
        LeaseRecord {
            ttl_seconds: ttl,
            remaining_ms: remaining_seconds as u64 * 1000,
        }
    })
}

fn user() -> impl Strategy<Value = User> {
    (
        "[a-z]{1,8}",
        proptest::collection::vec(any::<u8>(), 0..20),
        proptest::collection::vec("[a-z]{1,6}", 0..3),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(name, password, roles, no_password)| User {
            name: name.into_bytes(),
            password,
            roles,
            options: no_password.map(|no_password| UserAddOptions { no_password }),
        })
}

fn role() -> impl Strategy<Value = Role> {
    (
        "[a-z]{1,8}",
        proptest::collection::vec((0i32..3, "[a-z]{0,4}", "[a-z]{0,4}"), 0..3),
    )
        .prop_map(|(name, permissions)| Role {
            name: name.into_bytes(),
            key_permission: permissions
                .into_iter()
                .map(|(perm_type, key, range_end)| Permission {
                    perm_type,
                    key: key.into_bytes(),
                    range_end: range_end.into_bytes(),
                })
                .collect(),
        })
}

/// e2d's tables holding what etcd can carry: a history of puts, deletes
/// and compactions, leases whose remaining time is whole seconds, users,
/// roles, the auth flag and revision, alarms.
fn e2d_tables() -> impl Strategy<Value = MemBackend> {
    (
        proptest::collection::vec(kv_op(), 1..40),
        proptest::collection::btree_map(1i64..i64::MAX, lease_record(), 0..5),
        proptest::collection::vec(user(), 0..4),
        proptest::collection::vec(role(), 0..4),
        proptest::option::of(any::<bool>()),
        proptest::option::of(1u64..1000),
        proptest::collection::btree_set((any::<u64>(), 1i32..3), 0..3),
    )
        .prop_map(
            |(ops, leases, users, roles, enabled, auth_revision, alarms)| {
                let mut mvcc = Mvcc::open(MemBackend::default()).unwrap();
                for op in ops {
                    match op {
                        KvOp::Put(key, value) => {
                            let key = [b'k', key];
                            let mut txn = mvcc.write();
                            txn.put(&key, value, |_| 0);
                            txn.end();
                        }
                        KvOp::Delete(key) => {
                            let mut txn = mvcc.write();
                            txn.delete_span(&KeySpan::Single(&[b'k', key]), false)
                                .unwrap();
                            txn.end();
                        }
                        KvOp::Compact(at) => {
                            let (from, to) = (mvcc.compact_revision() + 1, mvcc.current_revision());
                            if from <= to {
                                let revision = from + at.index((to - from + 1) as usize) as i64;
                                mvcc.compact(revision).unwrap();
                                while mvcc.compact_step(usize::MAX) {}
                            }
                        }
                    }
                }
                let mut backend = mvcc.into_backend();
                for (id, record) in leases {
                    backend.put(Table::Lease, &id.to_be_bytes(), &record.encode());
                }
                for user in users {
                    let key = [crate::auth::USER_PREFIX, &user.name].concat();
                    backend.put(Table::Auth, &key, &user.encode_to_vec());
                }
                for role in roles {
                    let key = [crate::auth::ROLE_PREFIX, &role.name].concat();
                    backend.put(Table::Auth, &key, &role.encode_to_vec());
                }
                if let Some(enabled) = enabled {
                    backend.put(Table::Auth, crate::auth::KEY_ENABLED, &[u8::from(enabled)]);
                }
                if let Some(revision) = auth_revision {
                    backend.put(
                        Table::Auth,
                        crate::auth::KEY_REVISION,
                        &revision.to_be_bytes(),
                    );
                }
                for (member, alarm) in alarms {
                    let key = crate::state_machine::encode_alarm_key(member, alarm);
                    backend.put(Table::Meta, &key, &[]);
                }
                backend
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn e2d_records_survive_a_round_trip_through_an_etcd_db(mut tables in e2d_tables()) {
        let (bytes, exported) = export_bytes(&tables);
        // A store never written to has no current revision stored (it is
        // 1); the import always states it.
        if Backend::get(&tables, Table::Meta, mvcc::META_CURRENT_REVISION).unwrap().is_none() {
            tables.put(Table::Meta, mvcc::META_CURRENT_REVISION, &1i64.to_be_bytes());
        }
        let (imported, summary) = import_bytes(&bytes).unwrap();
        prop_assert_eq!(records(&imported), records(&tables));
        let mvcc = Mvcc::open(tables).unwrap();
        prop_assert_eq!(exported.current_revision, mvcc.current_revision());
        prop_assert_eq!(exported.e2d_current_revision, mvcc.current_revision());
        prop_assert_eq!(summary.current_revision, mvcc.current_revision());
        prop_assert_eq!(summary.compact_revision, mvcc.compact_revision());
        let reopened = Mvcc::open(imported).unwrap();
        for revision in mvcc.compact_revision()..=mvcc.current_revision() {
            prop_assert_eq!(reopened.hash_kv(revision).unwrap(), mvcc.hash_kv(revision).unwrap());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Damage is refused, or what is read opens as a state machine (which
    /// may refuse it too); never a panic.
    #[test]
    fn damaged_etcd_dbs_are_refused_or_open(
        tables in e2d_tables(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6),
    ) {
        let (mut bytes, _) = export_bytes(&tables);
        for (at, mask) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= mask;
        }
        if let Ok((backend, _)) = import_bytes(&bytes) {
            let _ = crate::StateMachine::open(backend, 0);
        }
    }
}

/// An etcd database written bucket by bucket: `(bucket, [(key, value)])`,
/// in order.
/// A key and its value.
type Pair = (Vec<u8>, Vec<u8>);
/// A bucket's name and entries.
type BucketEntries<'a> = (&'a [u8], Vec<Pair>);

fn etcd_file(buckets: &[BucketEntries<'_>]) -> Vec<u8> {
    let mut writer = DbWriter::new(Vec::new());
    for (name, entries) in buckets {
        writer.begin_bucket(name).unwrap();
        for (key, value) in entries {
            writer.put(key, value).unwrap();
        }
        writer.end_bucket().unwrap();
    }
    writer.finish().unwrap().0
}

fn kv_entry(main: i64, key: &[u8], tombstone: bool) -> Pair {
    let mut revision = Revision::new(main, 0).encode().to_vec();
    let kv = if tombstone {
        revision.push(b't');
        e2d_proto::mvccpb::KeyValue {
            key: key.to_vec().into(),
            ..Default::default()
        }
    } else {
        e2d_proto::mvccpb::KeyValue {
            key: key.to_vec().into(),
            create_revision: main,
            mod_revision: main,
            version: 1,
            value: b"v".to_vec().into(),
            lease: 0,
        }
    };
    (revision, kv.encode_to_vec())
}

fn lease_entry(id: i64, ttl: i64, remaining_ttl: i64) -> Pair {
    let lease = LeasePb {
        id,
        ttl,
        remaining_ttl,
    };
    (id.to_be_bytes().to_vec(), lease.encode_to_vec())
}

fn compact_entry(key: &[u8], main: i64) -> Pair {
    (key.to_vec(), Revision::new(main, 0).encode().to_vec())
}

#[test]
fn import_takes_what_etcd_would_on_start() {
    let bytes = etcd_file(&[
        (b"alarm", vec![]),
        (
            b"key",
            vec![
                kv_entry(2, b"a", false),
                kv_entry(3, b"b", false),
                kv_entry(4, b"b", true),
            ],
        ),
        (
            b"lease",
            vec![lease_entry(7, 30, 0), lease_entry(8, 60, 12)],
        ),
        (b"members", vec![(b"1".to_vec(), b"{}".to_vec())]),
        (
            b"meta",
            vec![
                (b"consistent_index".to_vec(), 99u64.to_be_bytes().to_vec()),
                compact_entry(META_FINISHED_COMPACT, 6),
                compact_entry(META_SCHEDULED_COMPACT, 6),
                (b"term".to_vec(), 3u64.to_be_bytes().to_vec()),
            ],
        ),
        (b"zzz", vec![]),
    ]);
    let (backend, summary) = import_bytes(&bytes).unwrap();
    // Compacted above the newest change: etcd takes the compaction.
    assert_eq!(summary.current_revision, 6);
    assert_eq!(summary.compact_revision, 6);
    assert_eq!(summary.unfinished_compaction, None);
    assert_eq!(summary.kv_entries, 3);
    assert_eq!(summary.leases, 2);
    assert_eq!(summary.ignored_buckets, vec!["\"zzz\"".to_string()]);
    let mvcc = Mvcc::open(backend.clone()).unwrap();
    assert_eq!(mvcc.current_revision(), 6);
    assert_eq!(mvcc.compact_revision(), 6);
    assert_eq!(mvcc.get(b"a", 6).unwrap().unwrap().value, b"v".to_vec());
    assert_eq!(mvcc.get(b"b", 6).unwrap(), None);
    let lease = |id: i64| {
        LeaseRecord::decode(
            &Backend::get(&backend, Table::Lease, &id.to_be_bytes())
                .unwrap()
                .unwrap(),
        )
        .unwrap()
    };
    // A remaining TTL of 0 means the whole TTL.
    assert_eq!(
        lease(7),
        LeaseRecord {
            ttl_seconds: 30,
            remaining_ms: 30_000
        }
    );
    assert_eq!(
        lease(8),
        LeaseRecord {
            ttl_seconds: 60,
            remaining_ms: 12_000
        }
    );
    // Nothing of etcd's raft position or membership comes along.
    let meta: Vec<Vec<u8>> = records(&backend)
        .into_keys()
        .filter(|(table, _)| *table == Table::Meta)
        .map(|(_, key)| key)
        .collect();
    assert_eq!(
        meta,
        vec![
            mvcc::META_COMPACT_FINISHED_REVISION.to_vec(),
            mvcc::META_COMPACT_REVISION.to_vec(),
            mvcc::META_CURRENT_REVISION.to_vec()
        ]
    );
}

#[test]
fn an_unfinished_compaction_is_reported() {
    let bytes = etcd_file(&[
        (
            b"key",
            vec![kv_entry(2, b"a", false), kv_entry(5, b"a", false)],
        ),
        (
            b"meta",
            vec![
                compact_entry(META_FINISHED_COMPACT, 2),
                compact_entry(META_SCHEDULED_COMPACT, 4),
            ],
        ),
    ]);
    let (_, summary) = import_bytes(&bytes).unwrap();
    assert_eq!(summary.current_revision, 5);
    assert_eq!(summary.compact_revision, 2);
    assert_eq!(summary.unfinished_compaction, Some(4));
}

#[test]
fn files_without_etcds_buckets_are_refused() {
    let bytes = etcd_file(&[(b"other", vec![(b"k".to_vec(), b"v".to_vec())])]);
    let error = import_bytes(&bytes).unwrap_err();
    assert_eq!(error, EtcdDbError::MissingBucket { bucket: "key" });
    assert_eq!(
        error.to_string(),
        "not an etcd database: it has no `key` bucket"
    );
    let bytes = etcd_file(&[(b"key", vec![])]);
    assert_eq!(
        import_bytes(&bytes).unwrap_err(),
        EtcdDbError::MissingBucket { bucket: "meta" }
    );
}

#[test]
fn malformed_entries_are_refused_with_their_bucket_and_key() {
    let cases: Vec<(&[u8], Pair, &str)> = vec![
        (
            b"key",
            (b"short".to_vec(), vec![]),
            "bucket `key`, key \"short\"",
        ),
        (
            b"key",
            (Revision::new(2, 0).encode().to_vec(), vec![0xff, 0xff]),
            "mvccpb.KeyValue",
        ),
        (b"lease", (vec![1, 2], vec![]), "a lease id is 8 bytes"),
        (b"lease", lease_entry(5, -1, 0), "negative TTL"),
        (
            b"lease",
            (7i64.to_be_bytes().to_vec(), lease_entry(8, 1, 0).1),
            "holds lease 8",
        ),
        (
            b"meta",
            (META_FINISHED_COMPACT.to_vec(), vec![1, 2, 3]),
            "is not a revision",
        ),
        (b"auth", (AUTH_REVISION.to_vec(), vec![1]), "1 bytes, not 8"),
        (
            b"authUsers",
            (
                b"alice".to_vec(),
                User {
                    name: b"bob".to_vec(),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            "names \"bob\"",
        ),
    ];
    for (bucket, entry, expected) in cases {
        let mut buckets: Vec<BucketEntries<'_>> = vec![
            (b"auth", vec![]),
            (b"authUsers", vec![]),
            (b"key", vec![]),
            (b"lease", vec![]),
            (b"meta", vec![]),
        ];
        buckets
            .iter_mut()
            .find(|(name, _)| *name == bucket)
            .unwrap()
            .1
            .push(entry);
        let error = import_bytes(&etcd_file(&buckets)).unwrap_err();
        assert!(
            error.to_string().contains(expected),
            "{error} lacks {expected}"
        );
    }
}

#[test]
fn export_writes_etcds_buckets_and_leaves_e2ds_own_meta_out() {
    let mut mvcc = Mvcc::open(MemBackend::default()).unwrap();
    let mut txn = mvcc.write();
    txn.put(b"a", b"1".to_vec(), |_| 0);
    txn.end();
    let mut backend = mvcc.into_backend();
    backend.put(Table::Meta, b"applied_index", &9u64.to_be_bytes());
    backend.put(
        Table::Lease,
        &3i64.to_be_bytes(),
        &LeaseRecord {
            ttl_seconds: 10,
            remaining_ms: 2_500,
        }
        .encode(),
    );
    let (bytes, summary) = export_bytes(&backend);
    assert_eq!(summary.current_revision, 2);
    let db = Db::open(bytes.as_slice()).unwrap();
    let mut names = Vec::new();
    let mut cursor = db.cursor(&db.root());
    while let Some(entry) = cursor.next().unwrap() {
        names.push(String::from_utf8(entry.key).unwrap());
    }
    assert_eq!(
        names,
        [
            "alarm",
            "auth",
            "authRoles",
            "authUsers",
            "cluster",
            "key",
            "lease",
            "members",
            "members_removed",
            "meta"
        ]
    );
    let meta = db.bucket(&db.root(), BUCKET_META).unwrap().unwrap();
    assert_eq!(db.cursor(&meta).next().unwrap(), None);
    let leases = db.bucket(&db.root(), BUCKET_LEASE).unwrap().unwrap();
    let entry = db.cursor(&leases).next().unwrap().unwrap();
    let crate::bbolt::EntryValue::Data(value) = entry.value else {
        panic!("a lease is a value");
    };
    // 2.5 s left: etcd gets 3, never less than e2d promised.
    assert_eq!(
        LeasePb::decode(value.as_slice()).unwrap(),
        LeasePb {
            id: 3,
            ttl: 10,
            remaining_ttl: 3
        }
    );
}

#[test]
fn alarms_are_sorted_as_etcd_keys_them() {
    let mut backend = MemBackend::default();
    let alarms: BTreeSet<(u64, i32)> = [(1, 2), (300, 1), (2, 1)].into();
    for &(member, alarm) in &alarms {
        backend.put(
            Table::Meta,
            &crate::state_machine::encode_alarm_key(member, alarm),
            &[],
        );
    }
    let (bytes, summary) = export_bytes(&backend);
    assert_eq!(summary.alarms, 3);
    let (imported, _) = import_bytes(&bytes).unwrap();
    let back: BTreeSet<(u64, i32)> = records(&imported)
        .into_keys()
        .filter_map(|(_, key)| crate::state_machine::decode_alarm_key(&key))
        .collect();
    assert_eq!(back, alarms);
}

#[test]
fn two_changes_at_one_revision_are_refused() {
    // A put and a delete of one key at one revision: the key index would
    // not know which came first.
    let bytes = etcd_file(&[
        (
            b"key",
            vec![kv_entry(2, b"a", false), kv_entry(2, b"a", true)],
        ),
        (b"meta", vec![]),
    ]);
    let error = import_bytes(&bytes).unwrap_err().to_string();
    assert!(error.contains("a second change at revision 2_0"), "{error}");
}

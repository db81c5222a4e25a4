//! e2db against a real server: a fresh e2d per test (real etcd with
//! E2D_TESTS_AGAINST_ETCD=1), every operation and constraint, races,
//! transactions, sealed fields and watches.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use e2d_tests::Server;
use e2db::{Change, Config, Db, EncryptionKey, Error, Value};
use etcd_client::GetOptions;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, e2db::Table)]
#[e2db(table = "users")]
struct User {
    #[e2db(increment)]
    id: u64,
    #[e2db(unique, required)]
    email: String,
    #[e2db(index)]
    team: String,
    age: u32,
}

fn user(email: &str, team: &str, age: u32) -> User {
    User {
        id: 0,
        email: email.into(),
        team: team.into(),
        age,
    }
}

async fn connect(s: &Server, config: Config) -> Db {
    let config = Config {
        endpoints: vec![s.url()],
        ..config
    };
    Db::connect(config).await.expect("connect")
}

async fn raw_client(s: &Server) -> etcd_client::Client {
    etcd_client::Client::connect([s.url()], None)
        .await
        .expect("raw client")
}

/// Every key and value under `prefix`, as text.
async fn raw_dump(s: &Server, prefix: &str) -> Vec<(String, String)> {
    let mut client = raw_client(s).await;
    let response = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    response
        .kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
            )
        })
        .collect()
}

#[track_caller]
fn assert_unique_violation<T: std::fmt::Debug>(result: e2db::Result<T>, field: &str) {
    match result {
        Err(Error::UniqueViolation { field: f, .. }) if f == field => {}
        other => panic!("expected a unique violation on {field}, got {other:?}"),
    }
}

#[tokio::test]
async fn insert_get_update_upsert_delete_with_their_constraints() {
    let s = Server::e2d();
    let db = connect(&s, Config::default().namespace("crud")).await;
    let users = db.table::<User>().await.unwrap();

    let ada = users.insert(user("ada@x", "core", 36)).await.unwrap();
    let bob = users.insert(user("bob@x", "core", 41)).await.unwrap();
    let eve = users.insert(user("eve@x", "ops", 29)).await.unwrap();
    assert_eq!((ada.id, bob.id, eve.id), (1, 2, 3));
    assert_eq!(users.get(2).await.unwrap(), Some(bob.clone()));
    assert_eq!(users.get(99u64).await.unwrap(), None);
    assert_eq!(users.count().await.unwrap(), 3);

    // insert refuses a taken primary key, a taken unique value and an
    // empty required field, and writes nothing then.
    let mut again = ada.clone();
    again.email = "other@x".into();
    assert_unique_violation(users.insert(again).await, "id");
    assert_unique_violation(users.insert(user("ada@x", "ops", 1)).await, "email");
    match users.insert(user("", "ops", 1)).await {
        Err(Error::RequiredMissing { field, .. }) => assert_eq!(field, "email"),
        other => panic!("empty required field accepted: {other:?}"),
    }
    assert_eq!(users.count().await.unwrap(), 3);

    // An explicit key moves the counter past it.
    let mut explicit = user("max@x", "ops", 50);
    explicit.id = 10;
    users.insert(explicit).await.unwrap();
    assert_eq!(users.insert(user("next@x", "ops", 1)).await.unwrap().id, 11);
    users.delete(11).await.unwrap();
    users.delete(10).await.unwrap();

    // update: needs the row; a changed unique value frees the old one.
    let mut ghost = user("ghost@x", "core", 1);
    ghost.id = 42;
    match users.update(ghost.clone()).await {
        Err(Error::NotFound { key, .. }) => assert_eq!(key, Value::U64(42)),
        other => panic!("update of a missing row: {other:?}"),
    }
    let mut ada2 = ada.clone();
    ada2.email = "ada@new".into();
    ada2.team = "ops".into();
    users.update(ada2.clone()).await.unwrap();
    assert_unique_violation(
        users
            .update(User {
                email: "bob@x".into(),
                ..ada2.clone()
            })
            .await,
        "email",
    );
    assert_eq!(users.find_by("email", "ada@x").await.unwrap(), vec![]);
    assert_eq!(
        users.find_by("email", "ada@new").await.unwrap(),
        vec![ada2.clone()]
    );
    assert_eq!(
        users.find_by("team", "ops").await.unwrap(),
        vec![ada2.clone(), eve.clone()]
    );
    assert_eq!(
        users.find_by("team", "core").await.unwrap(),
        vec![bob.clone()]
    );
    let taken_again = users.insert(user("ada@x", "core", 2)).await.unwrap();

    // upsert inserts, then replaces.
    ghost.email = "ghost@x".into();
    users.upsert(ghost.clone()).await.unwrap();
    ghost.age = 2;
    users.upsert(ghost.clone()).await.unwrap();
    assert_eq!(users.get(42).await.unwrap(), Some(ghost.clone()));

    // delete returns the row and frees its unique values.
    assert_eq!(users.delete(42).await.unwrap(), ghost);
    assert!(matches!(
        users.delete(42).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(users.find_by("email", "ghost@x").await.unwrap(), vec![]);
    users.insert(user("ghost@x", "x", 3)).await.unwrap();

    // find_by needs an index.
    match users.find_by("age", 36).await {
        Err(Error::InvalidQuery { detail, .. }) => {
            assert!(detail.contains("not indexed"), "{detail}")
        }
        other => panic!("find_by on a plain field: {other:?}"),
    }
    match users.find_by("nope", 1).await {
        Err(Error::InvalidQuery { detail, .. }) => {
            assert!(detail.contains("no field `nope`"), "{detail}")
        }
        other => panic!("find_by on an unknown field: {other:?}"),
    }

    // delete_by removes the rows and their index entries.
    assert_eq!(users.delete_by("team", "core").await.unwrap(), 2);
    assert_eq!(users.find_by("team", "core").await.unwrap(), vec![]);
    assert_eq!(users.get(bob.id).await.unwrap(), None);
    assert_eq!(users.get(taken_again.id).await.unwrap(), None);
    assert_eq!(users.delete_by("age", 29).await.unwrap(), 1);
    let left = users.all().await.unwrap();
    assert_eq!(
        left.iter().map(|u| u.email.as_str()).collect::<Vec<_>>(),
        ["ada@new", "ghost@x"]
    );
    let index_keys = raw_dump(&s, "crud/users/index/").await;
    assert_eq!(index_keys.len(), 2, "{index_keys:?}");
    let unique_keys = raw_dump(&s, "crud/users/unique/").await;
    assert_eq!(unique_keys.len(), 2, "{unique_keys:?}");

    // drop removes every key of the table, and nothing else.
    let other = connect(&s, Config::default().namespace("crud2")).await;
    other
        .table::<User>()
        .await
        .unwrap()
        .insert(user("a@x", "t", 1))
        .await
        .unwrap();
    users.drop().await.unwrap();
    assert_eq!(raw_dump(&s, "crud/").await, vec![]);
    assert_eq!(raw_dump(&s, "crud2/users/rows/").await.len(), 1);
    let reopened = db.table::<User>().await.unwrap();
    assert_eq!(reopened.count().await.unwrap(), 0);
    assert_eq!(
        reopened.insert(user("ada@x", "core", 1)).await.unwrap().id,
        1
    );
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, e2db::Table)]
#[e2db(table = "paths")]
struct Path {
    #[e2db(id)]
    path: String,
    #[e2db(unique)]
    alias: Option<String>,
    #[e2db(index)]
    parent: String,
}

#[tokio::test]
async fn keys_and_index_values_with_slashes_and_dots_stay_in_their_place() {
    let s = Server::e2d();
    let db = connect(&s, Config::default().namespace("paths")).await;
    let paths = db.table::<Path>().await.unwrap();
    let weird = ["a/../b", "../../etc/passwd", "/", "..", "ü/ñ\u{0}"];
    for (i, p) in weird.iter().enumerate() {
        paths
            .insert(Path {
                path: p.to_string(),
                alias: (i % 2 == 0).then(|| format!("{p}/alias")),
                parent: "../".into(),
            })
            .await
            .unwrap();
    }
    // Null unique values do not collide.
    assert_eq!(paths.count().await.unwrap(), weird.len() as u64);
    for p in weird {
        assert_eq!(
            paths.get(p).await.unwrap().map(|r| r.path),
            Some(p.to_string())
        );
    }
    assert_eq!(
        paths.find_by("parent", "../").await.unwrap().len(),
        weird.len()
    );
    assert_eq!(
        paths
            .find_by("alias", "../../etc/passwd/alias")
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        paths.find_by("alias", "a/../b/alias").await.unwrap().len(),
        1
    );
    assert_eq!(
        paths
            .find_by("alias", Option::<String>::None)
            .await
            .unwrap()
            .len(),
        0
    );
    let keys = raw_dump(&s, "").await;
    let ours: Vec<&String> = keys
        .iter()
        .map(|(k, _)| k)
        .filter(|k| !k.starts_with("/_e2d/"))
        .collect();
    // schema, 5 rows, 3 unique keys, 5 index keys
    assert_eq!(ours.len(), 14, "{ours:?}");
    for key in ours {
        assert!(key.starts_with("paths/paths/"), "{key}");
        assert!(!key.contains(".."), "{key}");
        assert!(key.matches('/').count() <= 5, "{key}");
    }
    match paths.get("").await {
        Err(Error::InvalidQuery { detail, .. }) => {
            assert!(detail.contains("non-empty"), "{detail}")
        }
        other => panic!("an empty primary key: {other:?}"),
    }
}

mod v2 {
    use super::*;

    /// `users` with a field more, and no new version.
    #[derive(Debug, Clone, Serialize, Deserialize, e2db::Table)]
    #[e2db(table = "users")]
    pub struct UserWithPhone {
        #[e2db(increment)]
        pub id: u64,
        #[e2db(unique, required)]
        pub email: String,
        #[e2db(index)]
        pub team: String,
        pub age: u32,
        pub phone: String,
    }

    /// `users` as it was, under version 2.
    #[derive(Debug, Clone, Serialize, Deserialize, e2db::Table)]
    #[e2db(table = "users", version = 2)]
    pub struct UserV2 {
        #[e2db(increment)]
        pub id: u64,
        #[e2db(unique, required)]
        pub email: String,
        #[e2db(index)]
        pub team: String,
        pub age: u32,
    }
}

#[tokio::test]
async fn the_stored_schema_is_checked_on_open() {
    let s = Server::e2d();
    let db = connect(&s, Config::default().namespace("schema")).await;
    db.table::<User>().await.unwrap();
    db.table::<User>().await.unwrap();
    let stored = raw_dump(&s, "schema/users/schema").await;
    assert!(stored[0].1.contains("\"version\":1"), "{stored:?}");

    match db.table::<v2::UserWithPhone>().await {
        Err(Error::SchemaMismatch { detail, .. }) => {
            assert!(detail.contains("phone"), "{detail}");
            assert!(detail.contains("raise #[e2db(version = N)]"), "{detail}");
        }
        other => panic!("changed fields accepted: {other:?}"),
    }
    match db.table::<v2::UserV2>().await {
        Err(Error::SchemaMismatch { detail, .. }) => {
            assert!(detail.contains("version 1"), "{detail}")
        }
        other => panic!("another version accepted: {other:?}"),
    }
    // A table not opened on this connection cannot be used in a tx.
    match db.tx(|tx| Box::pin(tx.get::<v2::UserV2>(1))).await {
        Err(Error::InvalidQuery { detail, .. }) => {
            assert!(detail.contains("Db::table"), "{detail}")
        }
        other => panic!("unopened table used: {other:?}"),
    }
    db.table::<User>().await.unwrap().drop().await.unwrap();
    db.table::<v2::UserV2>().await.unwrap();

    // A schema that is not e2db's is a decode error, not a panic.
    let mut raw = raw_client(&s).await;
    raw.put("schema/users/schema", "{not json", None)
        .await
        .unwrap();
    assert!(matches!(
        db.table::<User>().await,
        Err(Error::Decode { .. })
    ));
    // So is a row that is not JSON.
    raw.put("schema/users/schema", stored[0].1.clone(), None)
        .await
        .unwrap();
    raw.put("schema/users/rows/00000000000000000007", "\u{1}", None)
        .await
        .unwrap();
    let users = db.table::<User>().await.unwrap();
    assert!(matches!(users.get(7).await, Err(Error::Decode { .. })));
    assert!(matches!(users.all().await, Err(Error::Decode { .. })));
}

#[tokio::test]
async fn racing_inserts_on_a_unique_value_have_one_winner() {
    let s = Server::e2d();
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let url = s.url();
        tasks.push(tokio::spawn(async move {
            let db = Db::connect(Config::new([url]).namespace("race"))
                .await
                .unwrap();
            let users = db.table::<User>().await.unwrap();
            users.insert(user("same@x", &format!("t{i}"), i)).await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(Error::UniqueViolation { field, .. }) => assert_eq!(field, "email"),
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    assert_eq!(won, 1);

    // Racing auto-increment inserts all land, each with its own key.
    let db = connect(&s, Config::default().namespace("race")).await;
    let users = db.table::<User>().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let users = users.clone();
        tasks.push(tokio::spawn(async move {
            users.insert(user(&format!("u{i}@x"), "t", i)).await
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().unwrap().id);
    }
    ids.sort();
    assert_eq!(ids, (2..=9).collect::<Vec<u64>>());
    assert_eq!(users.count().await.unwrap(), 9);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, e2db::Table)]
#[e2db(table = "accounts")]
struct Account {
    #[e2db(id)]
    name: String,
    balance: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, e2db::Table)]
#[e2db(table = "transfers")]
struct Transfer {
    #[e2db(increment)]
    id: u64,
    #[e2db(index)]
    from: String,
    amount: i64,
}

async fn transfer(db: &Db, from: &str, to: &str, amount: i64) -> e2db::Result<()> {
    db.tx(|tx| {
        Box::pin(async move {
            let mut a: Account = tx.get(from).await?.expect("account");
            let mut b: Account = tx.get(to).await?.expect("account");
            a.balance -= amount;
            b.balance += amount;
            tx.update(a).await?;
            tx.update(b).await?;
            tx.insert(Transfer {
                id: 0,
                from: from.into(),
                amount,
            })
            .await?;
            Ok(())
        })
    })
    .await
}

#[tokio::test]
async fn transactions_span_tables_and_retry_on_conflict() {
    let s = Server::e2d();
    let db = connect(&s, Config::default().namespace("bank")).await;
    let accounts = db.table::<Account>().await.unwrap();
    let transfers = db.table::<Transfer>().await.unwrap();
    for name in ["a", "b", "c"] {
        accounts
            .insert(Account {
                name: name.into(),
                balance: 100,
            })
            .await
            .unwrap();
    }

    // Concurrent transfers in a ring: no update is lost.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let db = db.clone();
        let (from, to) = [("a", "b"), ("b", "c"), ("c", "a")][i % 3];
        tasks.push(tokio::spawn(
            async move { transfer(&db, from, to, 5).await },
        ));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let all = accounts.all().await.unwrap();
    assert_eq!(
        all.iter().map(|a| a.balance).collect::<Vec<_>>(),
        [100, 100, 100]
    );
    assert_eq!(transfers.count().await.unwrap(), 12);
    assert_eq!(transfers.find_by("from", "a").await.unwrap().len(), 4);

    // An error inside the transaction writes nothing.
    let failed = db
        .tx(|tx| {
            Box::pin(async move {
                tx.update(Account {
                    name: "a".into(),
                    balance: 0,
                })
                .await?;
                tx.update(Account {
                    name: "nobody".into(),
                    balance: 0,
                })
                .await?;
                Ok(())
            })
        })
        .await;
    assert!(matches!(failed, Err(Error::NotFound { .. })));
    assert_eq!(accounts.get("a").await.unwrap().unwrap().balance, 100);

    // A key read by the transaction that changes before it commits makes it
    // run again, on the new value.
    let runs = AtomicU32::new(0);
    let result = db
        .tx(|tx| {
            let (runs, accounts) = (&runs, &accounts);
            Box::pin(async move {
                let run = runs.fetch_add(1, Ordering::SeqCst);
                let a: Account = tx.get("a").await?.expect("a");
                if run == 0 {
                    accounts
                        .update(Account {
                            name: "a".into(),
                            balance: 7,
                        })
                        .await?;
                }
                tx.update(Account {
                    name: "b".into(),
                    balance: a.balance,
                })
                .await?;
                Ok(a.balance)
            })
        })
        .await
        .unwrap();
    assert_eq!((result, runs.load(Ordering::SeqCst)), (7, 2));
    assert_eq!(accounts.get("b").await.unwrap().unwrap().balance, 7);

    // A transaction that never gets through gives up with Conflict.
    let stubborn = connect(&s, Config::default().namespace("bank").retries_max(3)).await;
    stubborn.table::<Account>().await.unwrap();
    let result: e2db::Result<()> = stubborn
        .tx(|tx| {
            let accounts = &accounts;
            Box::pin(async move {
                let a: Account = tx.get("a").await?.expect("a");
                accounts
                    .update(Account {
                        balance: a.balance + 1,
                        ..a.clone()
                    })
                    .await?;
                tx.update(a).await?;
                Ok(())
            })
        })
        .await;
    assert!(
        matches!(result, Err(Error::Conflict { attempts: 3 })),
        "{result:?}"
    );

    // More writes than etcd takes in one Txn are refused before sending.
    let result = db
        .tx(|tx| {
            Box::pin(async move {
                for i in 0..130 {
                    tx.upsert(Account {
                        name: format!("bulk{i}"),
                        balance: 0,
                    })
                    .await?;
                }
                Ok(())
            })
        })
        .await;
    assert!(
        matches!(result, Err(Error::TxnTooLarge { .. })),
        "{result:?}"
    );
    assert_eq!(accounts.get("bulk0").await.unwrap(), None);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, e2db::Table)]
#[e2db(table = "secrets")]
struct Secret {
    #[e2db(id)]
    name: String,
    #[e2db(encrypted)]
    token: String,
    #[e2db(encrypted)]
    pin: Option<u32>,
}

#[tokio::test]
async fn encrypted_fields_are_sealed_in_etcd() {
    let s = Server::e2d();
    let key = EncryptionKey::from_bytes([42; 32]);
    let config = Config::default().namespace("vault");
    let db = connect(&s, config.clone().encryption_key(key.clone())).await;
    let secrets = db.table::<Secret>().await.unwrap();
    let one = Secret {
        name: "one".into(),
        token: "hunter2-plaintext".into(),
        pin: Some(123456),
    };
    secrets.insert(one.clone()).await.unwrap();
    secrets
        .insert(Secret {
            name: "two".into(),
            token: "other".into(),
            pin: None,
        })
        .await
        .unwrap();
    assert_eq!(secrets.get("one").await.unwrap(), Some(one.clone()));
    let query = secrets
        .query()
        .filter(e2db::eq("pin", 123456))
        .run()
        .await
        .unwrap();
    assert_eq!(query, vec![one.clone()]);

    let raw = raw_dump(&s, "vault/").await;
    for (key, value) in &raw {
        assert!(!value.contains("hunter2"), "{key} = {value}");
        assert!(!value.contains("123456"), "{key} = {value}");
    }
    let row_one = raw
        .iter()
        .find(|(k, _)| k.ends_with(&format!("rows/s{}", "6f6e65")))
        .expect("row one");
    assert!(row_one.1.contains("e2db-seal-v1:"), "{}", row_one.1);

    // Without the key, or with another, the table does not open.
    let no_key = connect(&s, config.clone()).await;
    assert!(matches!(
        no_key.table::<Secret>().await,
        Err(Error::Key { .. })
    ));
    let other_key = connect(
        &s,
        config
            .clone()
            .encryption_key(EncryptionKey::from_bytes([1; 32])),
    )
    .await;
    match other_key.table::<Secret>().await {
        Err(Error::Key { detail, .. }) => assert!(detail.contains(key.id()), "{detail}"),
        other => panic!("another key accepted: {other:?}"),
    }

    // A sealed value moved to another row does not open there.
    let mut client = raw_client(&s).await;
    let row_two_key = raw
        .iter()
        .find(|(k, _)| k.ends_with("rows/s74776f"))
        .unwrap()
        .0
        .clone();
    client
        .put(row_two_key, row_one.1.replace("\"one\"", "\"two\""), None)
        .await
        .unwrap();
    match secrets.get("two").await {
        Err(Error::Decode { detail, .. }) => assert!(detail.contains("authenticate"), "{detail}"),
        other => panic!("a moved sealed value opened: {other:?}"),
    }
}

#[tokio::test]
async fn watch_yields_typed_changes() {
    let s = Server::e2d();
    let db = connect(&s, Config::default().namespace("watched")).await;
    let users = db.table::<User>().await.unwrap();
    let mut changes = users.watch().await.unwrap();
    let ada = users.insert(user("ada@x", "core", 36)).await.unwrap();
    let older = users
        .update(User {
            age: 37,
            ..ada.clone()
        })
        .await
        .unwrap();
    users.delete(ada.id).await.unwrap();
    // Rows of another namespace do not show.
    let other = connect(&s, Config::default().namespace("elsewhere")).await;
    other
        .table::<User>()
        .await
        .unwrap()
        .insert(user("x@x", "t", 1))
        .await
        .unwrap();
    users.insert(user("bob@x", "core", 1)).await.unwrap();

    let mut seen = Vec::new();
    for _ in 0..4 {
        let event = tokio::time::timeout(Duration::from_secs(10), changes.next())
            .await
            .expect("a change within 10 s")
            .expect("the watch goes on")
            .unwrap();
        seen.push(event.change);
    }
    assert_eq!(
        seen[..3],
        [
            Change::Put {
                old: None,
                new: ada.clone()
            },
            Change::Put {
                old: Some(ada.clone()),
                new: older.clone()
            },
            Change::Delete {
                key: Value::U64(ada.id),
                old: Some(older)
            },
        ]
    );
    assert!(matches!(&seen[3], Change::Put { old: None, new } if new.email == "bob@x"));

    // From a past revision, history replays.
    let mut replay = users.watch_from(1).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), replay.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        first.change,
        Change::Put {
            old: None,
            new: ada
        }
    );
}

#[tokio::test]
async fn bad_configuration_is_refused_with_what_to_do() {
    let s = Server::e2d();
    match Db::connect(Config::new([s.url()]).namespace("../x")).await {
        Err(Error::Config(message)) => assert!(message.contains("namespace"), "{message}"),
        other => panic!("bad namespace accepted: {other:?}"),
    }
    // Nothing listens here: requests fail in time with a transport error
    // or a timeout, not a hang.
    let config = Config::new(["http://127.0.0.1:1"])
        .timeouts(Duration::from_millis(500), Duration::from_millis(500));
    let result = match Db::connect(config).await {
        Ok(db) => db.table::<User>().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(
        matches!(result, Err(Error::Transport(_) | Error::Timeout { .. })),
        "{result:?}"
    );
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, e2db::Table)]
#[e2db(table = "events")]
struct LogLine {
    #[e2db(id)]
    seq: u64,
    level: String,
}

#[tokio::test]
async fn large_tables_stream_page_by_page_at_one_revision() {
    let s = Server::e2d();
    let db = connect(&s, Config::default().namespace("big")).await;
    let lines = db.table::<LogLine>().await.unwrap();
    let total = 3 * e2db::PAGE_KEYS as u64 + 17;
    let batch = 100;
    for first in (0..total).step_by(batch) {
        db.tx(|tx| {
            Box::pin(async move {
                for seq in first..(first + batch as u64).min(total) {
                    let level = if seq % 3 == 0 { "error" } else { "info" };
                    tx.insert(LogLine {
                        seq,
                        level: level.into(),
                    })
                    .await?;
                }
                Ok(())
            })
        })
        .await
        .unwrap();
    }
    assert_eq!(lines.count().await.unwrap(), total);

    // Forward, all pages, in key order; a write during the stream is not
    // seen (one revision).
    let mut stream = lines.query().stream().await.unwrap();
    let mut seen = Vec::new();
    while let Some(line) = stream.next().await {
        if seen.len() == 10 {
            lines
                .insert(LogLine {
                    seq: total + 5,
                    level: "late".into(),
                })
                .await
                .unwrap();
        }
        seen.push(line.unwrap().seq);
    }
    assert_eq!(seen, (0..total).collect::<Vec<_>>());

    // Backward with a filter, skip and limit across page boundaries.
    let errors = lines
        .query()
        .filter(e2db::eq("level", "error"))
        .reverse()
        .skip(100)
        .limit(150)
        .run()
        .await
        .unwrap();
    let expected: Vec<u64> = (0..total)
        .rev()
        .filter(|s| s % 3 == 0)
        .skip(100)
        .take(150)
        .collect();
    assert_eq!(errors.iter().map(|l| l.seq).collect::<Vec<_>>(), expected);
    let count = lines
        .query()
        .filter(e2db::ne("level", "error"))
        .count()
        .await
        .unwrap();
    assert_eq!(count, (0..total).filter(|s| s % 3 != 0).count() as u64 + 1);
    let sorted = lines
        .query()
        .order_by("level")
        .limit(3)
        .run()
        .await
        .unwrap();
    assert_eq!(sorted.iter().map(|l| l.seq).collect::<Vec<_>>(), [0, 3, 6]);
}

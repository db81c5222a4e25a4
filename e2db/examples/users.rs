//! A tour of e2db against a running e2d or etcd:
//!
//! ```text
//! e2d run &                                  # or etcd
//! cargo run -p e2db --example users          # 127.0.0.1:2379
//! cargo run -p e2db --example users -- http://10.0.0.5:2379
//! ```
//!
//! The `E2DB_*` variables of `Config::from_env` apply (TLS, namespace,
//! encryption key file). The example works in its own namespace and drops
//! its tables at the end, so it can run again.

use std::time::Duration;

use e2db::{Change, Config, Db, EncryptionKey, Error};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, e2db::Table)]
#[e2db(table = "users")]
struct User {
    #[e2db(increment)]
    id: u64,
    #[e2db(unique, required)]
    email: String,
    #[e2db(index)]
    team: String,
    age: u32,
    #[e2db(encrypted)]
    api_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, e2db::Table)]
#[e2db(table = "teams")]
struct Team {
    #[e2db(id)]
    name: String,
    members: u32,
}

fn user(email: &str, team: &str, age: u32) -> User {
    User {
        id: 0,
        email: email.into(),
        team: team.into(),
        age,
        api_token: format!("token-of-{email}"),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let mut config = Config::from_env()?;
    if let Some(endpoint) = std::env::args().nth(1) {
        config.endpoints = vec![endpoint];
    }
    if std::env::var_os("E2DB_NAMESPACE").is_none() {
        config.namespace = "e2db-example".into();
    }
    if config.encryption_key.is_none() {
        // A real deployment reads its key from E2DB_ENCRYPTION_KEY_FILE.
        config.encryption_key = Some(EncryptionKey::from_secret(
            b"example secret, not for production",
        )?);
    }
    println!(
        "connecting to {:?}, namespace {}",
        config.endpoints, config.namespace
    );
    let db = Db::connect(config).await?;
    let users = db.table::<User>().await?;
    let teams = db.table::<Team>().await?;

    let mut changes = users.watch().await?;

    for (name, members) in [("core", 0), ("ops", 0)] {
        teams
            .upsert(Team {
                name: name.into(),
                members,
            })
            .await?;
    }
    // Inserting a user and counting it in its team is one transaction.
    for (email, team, age) in [
        ("ada@example.com", "core", 36),
        ("grace@example.com", "core", 45),
        ("linus@example.com", "ops", 28),
    ] {
        let row = user(email, team, age);
        let stored = db
            .tx(|tx| {
                let row = row.clone();
                Box::pin(async move {
                    let mut team: Team = tx.get(row.team.as_str()).await?.expect("team exists");
                    team.members += 1;
                    tx.update(team).await?;
                    tx.insert(row).await
                })
            })
            .await?;
        println!("inserted {} with id {}", stored.email, stored.id);
    }

    match users.insert(user("ada@example.com", "ops", 1)).await {
        Err(e @ Error::UniqueViolation { .. }) => println!("refused as expected: {e}"),
        other => println!("unexpected: {other:?}"),
    }

    let core = users.find_by("team", "core").await?;
    println!(
        "team core: {:?}",
        core.iter().map(|u| &u.email).collect::<Vec<_>>()
    );

    let over_30 = users
        .query()
        .filter(e2db::gt("age", 30))
        .order_by("age")
        .reverse()
        .run()
        .await?;
    println!(
        "over 30, oldest first: {:?}",
        over_30
            .iter()
            .map(|u| (&u.email, u.age))
            .collect::<Vec<_>>()
    );

    let mut grace = users.find_by("email", "grace@example.com").await?.remove(0);
    grace.age += 1;
    users.update(grace).await?;
    users.delete(3).await?;
    println!(
        "{} users, teams: {:?}",
        users.count().await?,
        teams.all().await?
    );

    for _ in 0..5 {
        let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(2), changes.next()).await
        else {
            break;
        };
        match event?.change {
            Change::Put { old: None, new } => println!("watch: inserted {}", new.email),
            Change::Put {
                old: Some(old),
                new,
            } => {
                println!("watch: {} age {} -> {}", new.email, old.age, new.age)
            }
            Change::Delete { key, .. } => println!("watch: deleted {key}"),
        }
    }

    users.drop().await?;
    teams.drop().await?;
    println!("dropped the example tables");
    Ok(())
}

//! Who this member is and which cluster it belongs to. Ids are derived
//! from the initial cluster the way every member derives them, so all agree
//! without talking; they are stored in the data dir on first start and
//! checked on every later one.

use e2d_core::storage::{read_meta_u64, Backend, StorageError, Table};
use e2d_core::swim::{RecoveredFrom, RECOVERY_LINEAGE_MAX};
use sha2::{Digest, Sha256};

const META_MEMBER_ID: &[u8] = b"member_id";
const META_CLUSTER_ID: &[u8] = b"cluster_id";
/// The cluster a recovered cluster was recovered from (its id, u64 BE).
/// Replicated with the rest of the meta table, so members that join
/// later know it too.
const META_RECOVERED_FROM: &[u8] = b"recovered_from";
/// How the cluster came from recoveries, newest first: per step the old
/// cluster's id and the recovering member's id (u64 BE each). Replicated like `recovered_from`; gossip carries it so
/// that the members of an old cluster know they were superseded.
const META_RECOVERY_LINEAGE: &[u8] = b"recovery_lineage";

/// Entries of the backend that belong to the cluster, not this member: a
/// snapshot from another member replaces them, and only them.
pub fn is_replicated(table: Table, key: &[u8]) -> bool {
    !(table == Table::Meta
        && (key == META_MEMBER_ID
            || key == META_CLUSTER_ID
            || key == crate::raft::META_INSTALLED_SNAPSHOT))
}

/// One member of `--initial-cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub id: u64,
    pub name: String,
    pub peer_url: String,
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub member_id: u64,
    pub cluster_id: u64,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub initial_members: Vec<InitialMember>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid --initial-cluster entry {entry:?}: expected name=url, like node-a=http://10.0.0.1:2380")]
    BadEntry { entry: String },
    #[error("--initial-cluster names {name:?} twice")]
    DuplicateName { name: String },
    #[error("--name {name:?} is not in --initial-cluster ({names}); add it or fix --name")]
    NotInCluster { name: String, names: String },
    #[error("the data dir belongs to member {stored}, not to member {offered}; start it as it is, or move it away to join as a new member")]
    OtherMember { stored: String, offered: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl InitialMember {
    /// A founding member; its id derives from its name, URL and the token.
    pub fn new(name: &str, peer_url: &str, token: &str) -> Self {
        Self {
            id: hash_u64(&[name.as_bytes(), peer_url.as_bytes(), token.as_bytes()]),
            name: name.to_string(),
            peer_url: peer_url.to_string(),
        }
    }
}

fn hash_u64(parts: &[&[u8]]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("sha256 has 32 bytes")).max(1)
}

/// Parses `name=url,name=url`; member ids come from name, URL and token.
pub fn parse_initial_cluster(text: &str, token: &str) -> Result<Vec<InitialMember>, IdentityError> {
    let mut members: Vec<InitialMember> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, url) = entry
            .split_once('=')
            .filter(|(n, u)| !n.is_empty() && u.contains("://"))
            .ok_or_else(|| IdentityError::BadEntry {
                entry: entry.to_string(),
            })?;
        if members.iter().any(|m| m.name == name) {
            return Err(IdentityError::DuplicateName {
                name: name.to_string(),
            });
        }
        members.push(InitialMember::new(name, url, token));
    }
    Ok(members)
}

/// The cluster id every member derives from the same initial members.
pub fn cluster_id_of(members: &[InitialMember], token: &str) -> u64 {
    let mut ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    hash_u64(&[&bytes, token.as_bytes()])
}

/// The id of the cluster member `member_id` recovers alone from cluster
/// `old_cluster_id` at applied index `applied`: new, so that the lost
/// members, should they come back, are refused as another cluster's.
pub fn recovered_cluster_id(old_cluster_id: u64, member_id: u64, applied: u64) -> u64 {
    hash_u64(&[
        b"recovered",
        &old_cluster_id.to_be_bytes(),
        &member_id.to_be_bytes(),
        &applied.to_be_bytes(),
    ])
}

impl Identity {
    /// Stages the recovered cluster's id, the one it was recovered from,
    /// and that step (by member `by_member_id`) at the head of the
    /// lineage; staging the same step again changes nothing.
    pub fn stage_recovered(
        backend: &mut impl Backend,
        cluster_id: u64,
        recovered_from: u64,
        by_member_id: u64,
    ) -> Result<(), IdentityError> {
        let mut lineage = vec![RecoveredFrom {
            cluster_id: recovered_from,
            by_member_id,
        }];
        lineage.extend(
            Self::recovery_lineage(backend)?
                .into_iter()
                .filter(|step| step.cluster_id != recovered_from),
        );
        lineage.truncate(RECOVERY_LINEAGE_MAX);
        backend.put(Table::Meta, META_CLUSTER_ID, &cluster_id.to_be_bytes());
        backend.put(
            Table::Meta,
            META_RECOVERED_FROM,
            &recovered_from.to_be_bytes(),
        );
        backend.put(
            Table::Meta,
            META_RECOVERY_LINEAGE,
            &encode_lineage(&lineage),
        );
        Ok(())
    }

    /// The cluster this member's cluster was recovered from, if it was.
    pub fn recovered_from(backend: &impl Backend) -> Result<Option<u64>, IdentityError> {
        Ok(read_meta_u64(backend, META_RECOVERED_FROM)?)
    }

    /// How this member's cluster came from recoveries, newest first.
    pub fn recovery_lineage(backend: &impl Backend) -> Result<Vec<RecoveredFrom>, IdentityError> {
        let Some(bytes) = backend.get(Table::Meta, META_RECOVERY_LINEAGE)? else {
            return Ok(Vec::new());
        };
        decode_lineage(&bytes).ok_or_else(|| {
            IdentityError::Storage(StorageError(
                "corrupt meta entry recovery_lineage".to_string(),
            ))
        })
    }

    /// The member and cluster ids stored in the data dir, if any.
    pub fn stored_ids(backend: &impl Backend) -> Result<Option<(u64, u64)>, IdentityError> {
        let member = read_meta_u64(backend, META_MEMBER_ID)?;
        let cluster = read_meta_u64(backend, META_CLUSTER_ID)?;
        Ok(member.zip(cluster))
    }

    /// The identity of a member added to a running cluster, whose ids the
    /// cluster chose; stores them in a new data dir.
    pub fn adopt(
        backend: &mut impl Backend,
        name: String,
        (member_id, cluster_id): (u64, u64),
        peer_url: String,
        client_urls: Vec<String>,
        initial_members: Vec<InitialMember>,
    ) -> Result<Self, IdentityError> {
        match Self::stored_ids(backend)? {
            None => {
                backend.put(Table::Meta, META_MEMBER_ID, &member_id.to_be_bytes());
                backend.put(Table::Meta, META_CLUSTER_ID, &cluster_id.to_be_bytes());
            }
            Some(stored) if stored == (member_id, cluster_id) => {}
            Some((stored_member, stored_cluster)) => {
                return Err(IdentityError::OtherMember {
                    stored: format!("{stored_member:x} of cluster {stored_cluster:x}"),
                    offered: format!("{member_id:x} of cluster {cluster_id:x}"),
                })
            }
        }
        Ok(Self {
            name,
            member_id,
            cluster_id,
            peer_urls: vec![peer_url],
            client_urls,
            initial_members,
        })
    }

    /// Checks the data dir's ids against the flags, or stages them for a
    /// new data dir. Returns whether they were new (and need a commit).
    pub fn load_or_create(
        backend: &mut impl Backend,
        name: String,
        initial_members: Vec<InitialMember>,
        token: &str,
        client_urls: Vec<String>,
    ) -> Result<(Self, bool), IdentityError> {
        let me = initial_members
            .iter()
            .find(|m| m.name == name)
            .cloned()
            .ok_or_else(|| IdentityError::NotInCluster {
                name: name.clone(),
                names: initial_members
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let derived_cluster = cluster_id_of(&initial_members, token);
        // Once a member has data, its stored ids rule and the initial
        // cluster flags are history (as with etcd); peers of another
        // cluster are refused on the peer port.
        let (member_id, cluster_id, created) = match Self::stored_ids(backend)? {
            Some((member, cluster)) => {
                if cluster != derived_cluster {
                    tracing::info!(
                        stored = format!("{cluster:x}"),
                        flags = format!("{derived_cluster:x}"),
                        "the data dir's cluster differs from what --initial-cluster describes; using the data dir's"
                    );
                }
                (member, cluster, false)
            }
            None => {
                backend.put(Table::Meta, META_MEMBER_ID, &me.id.to_be_bytes());
                backend.put(Table::Meta, META_CLUSTER_ID, &derived_cluster.to_be_bytes());
                (me.id, derived_cluster, true)
            }
        };
        let identity = Self {
            name,
            member_id,
            cluster_id,
            peer_urls: vec![me.peer_url.clone()],
            client_urls,
            initial_members,
        };
        Ok((identity, created))
    }
}

fn encode_lineage(lineage: &[RecoveredFrom]) -> Vec<u8> {
    lineage
        .iter()
        .flat_map(|step| [step.cluster_id, step.by_member_id])
        .flat_map(u64::to_be_bytes)
        .collect()
}

fn decode_lineage(bytes: &[u8]) -> Option<Vec<RecoveredFrom>> {
    let steps = bytes.chunks(16);
    let whole = bytes.len().is_multiple_of(16) && steps.len() <= RECOVERY_LINEAGE_MAX;
    whole.then(|| {
        steps
            .map(|step| {
                let (cluster_id, by_member_id) = step.split_at(8);
                RecoveredFrom {
                    cluster_id: u64::from_be_bytes(cluster_id.try_into().expect("8 bytes")),
                    by_member_id: u64::from_be_bytes(by_member_id.try_into().expect("8 bytes")),
                }
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_derives_the_same_ids() {
        let a = parse_initial_cluster("a=http://127.0.0.1:1,b=http://127.0.0.1:2", "t").unwrap();
        let b = parse_initial_cluster("b=http://127.0.0.1:2,a=http://127.0.0.1:1", "t").unwrap();
        assert_eq!(cluster_id_of(&a, "t"), cluster_id_of(&b, "t"));
        assert_ne!(cluster_id_of(&a, "t"), cluster_id_of(&a, "other"));
        assert_ne!(a[0].id, a[1].id);
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(matches!(
            parse_initial_cluster("a", "t"),
            Err(IdentityError::BadEntry { .. })
        ));
        assert!(matches!(
            parse_initial_cluster("a=http://x:1,a=http://y:1", "t"),
            Err(IdentityError::DuplicateName { .. })
        ));
    }

    #[test]
    fn the_recovery_lineage_reads_back_and_refuses_damage() {
        let lineage = vec![
            RecoveredFrom {
                cluster_id: 7,
                by_member_id: 9,
            },
            RecoveredFrom {
                cluster_id: u64::MAX,
                by_member_id: 1,
            },
        ];
        let bytes = encode_lineage(&lineage);
        assert_eq!(decode_lineage(&bytes), Some(lineage));
        assert_eq!(decode_lineage(&[]), Some(Vec::new()));
        assert_eq!(decode_lineage(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_lineage(&[bytes.clone(), bytes].concat()), None);
    }
}

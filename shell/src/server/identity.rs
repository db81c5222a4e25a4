//! Who this member is: its name, ids and URLs. The ids are derived once,
//! when the data dir is created, and read back on every later start.

use e2d_core::storage::{read_meta_u64, Backend, StorageError, Table};
use sha2::{Digest, Sha256};

const META_MEMBER_ID: &[u8] = b"member_id";
const META_CLUSTER_ID: &[u8] = b"cluster_id";

#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub member_id: u64,
    pub cluster_id: u64,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

fn hash_u64(parts: &[&[u8]]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("sha256 has 32 bytes"))
}

impl Identity {
    /// Reads the ids stored in `backend`, or derives and stages them for a
    /// new data dir. Returns whether they were new (and need a commit).
    pub fn load_or_create(
        backend: &mut impl Backend,
        name: String,
        peer_urls: Vec<String>,
        client_urls: Vec<String>,
    ) -> Result<(Self, bool), StorageError> {
        let stored_member = read_meta_u64(backend, META_MEMBER_ID)?;
        let stored_cluster = read_meta_u64(backend, META_CLUSTER_ID)?;
        let (member_id, cluster_id, created) = match (stored_member, stored_cluster) {
            (Some(member), Some(cluster)) => (member, cluster, false),
            _ => {
                let peers = peer_urls.join(",");
                let member = hash_u64(&[name.as_bytes(), peers.as_bytes()]).max(1);
                let cluster = hash_u64(&[&member.to_be_bytes()]).max(1);
                backend.put(Table::Meta, META_MEMBER_ID, &member.to_be_bytes());
                backend.put(Table::Meta, META_CLUSTER_ID, &cluster.to_be_bytes());
                (member, cluster, true)
            }
        };
        let identity = Self {
            name,
            member_id,
            cluster_id,
            peer_urls,
            client_urls,
        };
        Ok((identity, created))
    }
}

//! etcd's auth store: users, roles and their key permissions, the enabled
//! flag and the auth revision, replicated through raft like every other
//! change (applied by [`crate::StateMachine::apply`]) and kept in the
//! backend's [`Table::Auth`], so snapshots carry it.
//!
//! - `permission`: key intervals and a user's merged permissions.
//! - `decide`: whether an identity may do an operation (pure functions
//!   over the store).
//! - `change`: applying one [`AuthChange`](e2d_proto::peer::AuthChange) with etcd's rules and errors.
//! - `tokens`: the simple tokens this member knows, with their TTL.

mod change;
mod decide;
pub mod permission;
pub mod tokens;

use std::collections::BTreeMap;

use e2d_proto::authpb::permission::Type as PermissionType;
use e2d_proto::authpb::{Permission, Role, User};
use prost::Message;

pub use change::Changed;
pub use decide::AuthInfo;
pub use permission::{Access, KeyInterval, UserPermissions};
pub use tokens::SimpleTokens;

use crate::storage::{Backend, StorageError, Table};

/// The user that may do everything, and the role that grants everything.
pub const ROOT: &str = "root";

/// Keys of the `Auth` table: the enabled flag (one byte, 1 when enabled),
/// the auth revision (8 bytes, big-endian), and each user and role
/// (`authpb.User` and `authpb.Role`) under its name.
pub const KEY_ENABLED: &[u8] = b"enabled";
pub const KEY_REVISION: &[u8] = b"revision";
pub const USER_PREFIX: &[u8] = b"user/";
pub const ROLE_PREFIX: &[u8] = b"role/";

/// The auth revision of a store that was never changed: etcd writes 1 when
/// it creates its auth store.
pub const FIRST_REVISION: u64 = 1;

/// The auth store as of the last applied entry, with each user's merged
/// permissions, rebuilt after every change.
#[derive(Debug, Clone)]
pub struct AuthStore {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    permissions: BTreeMap<String, UserPermissions>,
    tokens: SimpleTokens,
}

impl Default for AuthStore {
    fn default() -> Self {
        Self {
            enabled: false,
            revision: FIRST_REVISION,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
            permissions: BTreeMap::new(),
            tokens: SimpleTokens::default(),
        }
    }
}

impl AuthStore {
    /// Reads the store from the backend's committed `Auth` table. The
    /// tokens are the member's own and stay as they are.
    pub fn load(backend: &impl Backend, tokens: SimpleTokens) -> Result<AuthStore, StorageError> {
        let mut store = AuthStore {
            tokens,
            ..AuthStore::default()
        };
        let mut corrupt = None;
        backend.scan(Table::Auth, &[], &[], &mut |key, value| {
            let loaded = if key == KEY_ENABLED {
                store.enabled = value == [1];
                true
            } else if key == KEY_REVISION {
                match <[u8; 8]>::try_from(value) {
                    Ok(bytes) => {
                        store.revision = u64::from_be_bytes(bytes);
                        true
                    }
                    Err(_) => false,
                }
            } else if let Some(name) = key.strip_prefix(USER_PREFIX) {
                match (User::decode(value), String::from_utf8(name.to_vec())) {
                    (Ok(user), Ok(name)) => store.users.insert(name, user).is_none(),
                    _ => false,
                }
            } else if let Some(name) = key.strip_prefix(ROLE_PREFIX) {
                match (Role::decode(value), String::from_utf8(name.to_vec())) {
                    (Ok(role), Ok(name)) => store.roles.insert(name, role).is_none(),
                    _ => false,
                }
            } else {
                false
            };
            if !loaded {
                corrupt = Some(StorageError(format!("corrupt auth entry {key:02x?}")));
            }
            loaded
        })?;
        if let Some(e) = corrupt {
            return Err(e);
        }
        if !store.enabled {
            store.tokens.clear();
        }
        store.refresh_permissions();
        Ok(store)
    }

    /// Gives the member's tokens back, to keep across a reload.
    pub fn into_tokens(self) -> SimpleTokens {
        self.tokens
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Rises with every change to users, roles or the enabled flag (but
    /// enabling, as etcd).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Every user's name, in order.
    pub fn user_names(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// Every role's name, in order.
    pub fn role_names(&self) -> impl Iterator<Item = &str> {
        self.roles.keys().map(String::as_str)
    }

    /// A role's permissions as etcd's RoleGet answers them: root's role
    /// shows one permission on every key.
    pub fn role_permissions(&self, name: &str) -> Result<Vec<Permission>, crate::Error> {
        let role = self.roles.get(name).ok_or(crate::Error::RoleNotFound)?;
        if name == ROOT {
            return Ok(vec![Permission {
                perm_type: PermissionType::Readwrite as i32,
                key: Vec::new(),
                range_end: vec![0],
            }]);
        }
        Ok(role.key_permission.clone())
    }

    pub fn tokens(&self) -> &SimpleTokens {
        &self.tokens
    }

    pub fn tokens_mut(&mut self) -> &mut SimpleTokens {
        &mut self.tokens
    }

    fn refresh_permissions(&mut self) {
        let roles = &self.roles;
        self.permissions = self
            .users
            .iter()
            .map(|(name, user)| {
                let granted = user.roles.iter().filter_map(|r| roles.get(r));
                (name.clone(), UserPermissions::of(granted))
            })
            .collect();
    }

    fn stage_user(&self, backend: &mut impl Backend, name: &str) {
        let key = prefixed(USER_PREFIX, name);
        match self.users.get(name) {
            Some(user) => backend.put(Table::Auth, &key, &user.encode_to_vec()),
            None => backend.delete(Table::Auth, &key),
        }
    }

    fn stage_role(&self, backend: &mut impl Backend, name: &str) {
        let key = prefixed(ROLE_PREFIX, name);
        match self.roles.get(name) {
            Some(role) => backend.put(Table::Auth, &key, &role.encode_to_vec()),
            None => backend.delete(Table::Auth, &key),
        }
    }

    fn stage_enabled(&self, backend: &mut impl Backend) {
        backend.put(Table::Auth, KEY_ENABLED, &[u8::from(self.enabled)]);
    }

    /// Raises the revision by one and stages it, after a change.
    fn commit_revision(&mut self, backend: &mut impl Backend) {
        self.revision += 1;
        backend.put(Table::Auth, KEY_REVISION, &self.revision.to_be_bytes());
        self.refresh_permissions();
    }
}

fn prefixed(prefix: &[u8], name: &str) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

/// Whether a user holds the root role (etcd's `hasRootRole`).
pub fn has_root_role(user: &User) -> bool {
    user.roles.iter().any(|r| r == ROOT)
}

#[cfg(test)]
mod tests;

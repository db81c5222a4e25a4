//! Applying one replicated change to the auth store, with etcd's rules and
//! errors (`server/auth/store.go`). A refused change changes nothing; every
//! change that does raises the revision, except enabling auth (as etcd).

use e2d_proto::authpb::{Permission, Role, User, UserAddOptions};
use e2d_proto::peer::auth_change::Change;
use e2d_proto::peer::{AuthChange, UserAdd, UserChangePassword};

use super::permission::is_valid_permission_range;
use super::{has_root_role, AuthStore, ROOT};
use crate::error::Error;
use crate::storage::Backend;

/// What an applied change answers: a token for `AssignToken`, nothing for
/// the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    Done,
    Token(String),
}

impl AuthStore {
    /// Applies `change`, staging what it writes in `backend`. The caller
    /// has checked that its requester may make it.
    pub fn apply_change(
        &mut self,
        change: &AuthChange,
        backend: &mut impl Backend,
        now_ms: u64,
    ) -> Result<Changed, Error> {
        let Some(change) = &change.change else {
            return Ok(Changed::Done);
        };
        match change {
            Change::Enable(_) => self.enable(backend),
            Change::Disable(_) => {
                self.disable(backend);
                Ok(())
            }
            Change::UserAdd(add) => self.user_add(add, backend),
            Change::UserDelete(delete) => self.user_delete(&delete.name, backend),
            Change::UserChangePassword(change) => self.user_change_password(change, backend),
            Change::UserGrantRole(grant) => self.user_grant_role(&grant.user, &grant.role, backend),
            Change::UserRevokeRole(revoke) => {
                self.user_revoke_role(&revoke.name, &revoke.role, backend)
            }
            Change::RoleAdd(add) => self.role_add(&add.name, backend),
            Change::RoleDelete(delete) => self.role_delete(&delete.role, backend),
            Change::RoleGrantPermission(grant) => {
                self.role_grant_permission(&grant.name, grant.perm.as_ref(), backend)
            }
            Change::RoleRevokePermission(revoke) => {
                self.role_revoke_permission(&revoke.role, &revoke.key, &revoke.range_end, backend)
            }
            Change::AssignToken(assign) => {
                return self
                    .assign_token(&assign.user, &assign.token, now_ms)
                    .map(|()| Changed::Token(assign.token.clone()));
            }
        }
        .map(|()| Changed::Done)
    }

    /// Whether a change needs the requester to be root (every change but
    /// the assignment of a token, whose password was checked).
    pub fn needs_admin(change: &AuthChange) -> bool {
        !matches!(change.change, Some(Change::AssignToken(_)) | None)
    }

    fn enable(&mut self, backend: &mut impl Backend) -> Result<(), Error> {
        if self.enabled {
            return Ok(());
        }
        let root = self.users.get(ROOT).ok_or(Error::RootUserNotExist)?;
        if !has_root_role(root) {
            return Err(Error::RootRoleNotExist);
        }
        self.enabled = true;
        self.stage_enabled(backend);
        Ok(())
    }

    fn disable(&mut self, backend: &mut impl Backend) {
        if !self.enabled {
            return;
        }
        self.enabled = false;
        self.stage_enabled(backend);
        self.commit_revision(backend);
        self.tokens.clear();
    }

    fn user_add(&mut self, add: &UserAdd, backend: &mut impl Backend) -> Result<(), Error> {
        if add.name.is_empty() {
            return Err(Error::UserEmpty);
        }
        if self.users.contains_key(&add.name) {
            return Err(Error::UserAlreadyExist);
        }
        let password = if add.no_password {
            Vec::new()
        } else {
            add.password_hash.clone()
        };
        let user = User {
            name: add.name.as_bytes().to_vec(),
            password,
            roles: Vec::new(),
            options: Some(UserAddOptions {
                no_password: add.no_password,
            }),
        };
        self.users.insert(add.name.clone(), user);
        self.stage_user(backend, &add.name);
        self.commit_revision(backend);
        Ok(())
    }

    fn user_delete(&mut self, name: &str, backend: &mut impl Backend) -> Result<(), Error> {
        if self.enabled && name == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        if self.users.remove(name).is_none() {
            return Err(Error::UserNotFound);
        }
        self.stage_user(backend, name);
        self.commit_revision(backend);
        self.tokens.invalidate_user(name);
        Ok(())
    }

    fn user_change_password(
        &mut self,
        change: &UserChangePassword,
        backend: &mut impl Backend,
    ) -> Result<(), Error> {
        let user = self
            .users
            .get_mut(&change.name)
            .ok_or(Error::UserNotFound)?;
        let no_password = user.options.as_ref().is_some_and(|o| o.no_password);
        user.password = if no_password {
            Vec::new()
        } else {
            change.password_hash.clone()
        };
        self.stage_user(backend, &change.name);
        self.commit_revision(backend);
        self.tokens.invalidate_user(&change.name);
        Ok(())
    }

    fn user_grant_role(
        &mut self,
        name: &str,
        role: &str,
        backend: &mut impl Backend,
    ) -> Result<(), Error> {
        if !self.users.contains_key(name) {
            return Err(Error::UserNotFound);
        }
        if role != ROOT && !self.roles.contains_key(role) {
            return Err(Error::RoleNotFound);
        }
        let user = self.users.get_mut(name).expect("checked above");
        let Err(at) = user.roles.binary_search_by(|r| r.as_str().cmp(role)) else {
            return Ok(());
        };
        user.roles.insert(at, role.to_owned());
        self.stage_user(backend, name);
        self.commit_revision(backend);
        Ok(())
    }

    fn user_revoke_role(
        &mut self,
        name: &str,
        role: &str,
        backend: &mut impl Backend,
    ) -> Result<(), Error> {
        if self.enabled && name == ROOT && role == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        let user = self.users.get_mut(name).ok_or(Error::UserNotFound)?;
        let before = user.roles.len();
        user.roles.retain(|r| r != role);
        if user.roles.len() == before {
            return Err(Error::RoleNotGranted);
        }
        self.stage_user(backend, name);
        self.commit_revision(backend);
        Ok(())
    }

    fn role_add(&mut self, name: &str, backend: &mut impl Backend) -> Result<(), Error> {
        if name.is_empty() {
            return Err(Error::RoleEmpty);
        }
        if self.roles.contains_key(name) {
            return Err(Error::RoleAlreadyExist);
        }
        let role = Role {
            name: name.as_bytes().to_vec(),
            key_permission: Vec::new(),
        };
        self.roles.insert(name.to_owned(), role);
        self.stage_role(backend, name);
        self.commit_revision(backend);
        Ok(())
    }

    fn role_delete(&mut self, name: &str, backend: &mut impl Backend) -> Result<(), Error> {
        if self.enabled && name == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        if self.roles.remove(name).is_none() {
            return Err(Error::RoleNotFound);
        }
        self.stage_role(backend, name);
        let holders: Vec<String> = self
            .users
            .iter()
            .filter(|(_, u)| u.roles.iter().any(|r| r == name))
            .map(|(n, _)| n.clone())
            .collect();
        for holder in holders {
            if let Some(user) = self.users.get_mut(&holder) {
                user.roles.retain(|r| r != name);
            }
            self.stage_user(backend, &holder);
        }
        self.commit_revision(backend);
        Ok(())
    }

    fn role_grant_permission(
        &mut self,
        name: &str,
        permission: Option<&Permission>,
        backend: &mut impl Backend,
    ) -> Result<(), Error> {
        let permission = permission.ok_or(Error::PermissionNotGiven)?;
        if !is_valid_permission_range(&permission.key, &permission.range_end) {
            return Err(Error::InvalidAuthMgmt);
        }
        let role = self.roles.get_mut(name).ok_or(Error::RoleNotFound)?;
        let same_range =
            |p: &Permission| p.key == permission.key && p.range_end == permission.range_end;
        match role.key_permission.iter_mut().find(|p| same_range(p)) {
            Some(existing) => existing.perm_type = permission.perm_type,
            None => {
                // Sorted by key, as etcd keeps them.
                let at = role
                    .key_permission
                    .partition_point(|p| p.key <= permission.key);
                role.key_permission.insert(
                    at,
                    Permission {
                        perm_type: permission.perm_type,
                        key: permission.key.clone(),
                        range_end: permission.range_end.clone(),
                    },
                );
            }
        }
        self.stage_role(backend, name);
        self.commit_revision(backend);
        Ok(())
    }

    fn role_revoke_permission(
        &mut self,
        name: &str,
        key: &[u8],
        range_end: &[u8],
        backend: &mut impl Backend,
    ) -> Result<(), Error> {
        let role = self.roles.get_mut(name).ok_or(Error::RoleNotFound)?;
        let before = role.key_permission.len();
        role.key_permission
            .retain(|p| p.key != key || p.range_end != range_end);
        if role.key_permission.len() == before {
            return Err(Error::PermissionNotGranted);
        }
        self.stage_role(backend, name);
        self.commit_revision(backend);
        Ok(())
    }

    /// etcd's `Authenticate` at apply: the password was checked by the
    /// member that proposed; the user must still exist and have one.
    fn assign_token(&mut self, user: &str, token: &str, now_ms: u64) -> Result<(), Error> {
        if !self.enabled {
            return Err(Error::AuthNotEnabled);
        }
        let found = self.users.get(user).ok_or(Error::AuthFailed)?;
        if found.options.as_ref().is_some_and(|o| o.no_password) {
            return Err(Error::AuthFailed);
        }
        self.tokens.assign(token, user, now_ms);
        Ok(())
    }
}

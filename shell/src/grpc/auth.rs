//! The Auth service: etcd's users, roles and permissions. Changes are
//! proposed through raft with the requester, who must be root once auth
//! is enabled (checked as the change applies, as etcd's
//! `authApplierV3`); passwords are hashed here, before proposing, so the
//! log holds only hashes. Reads are served from this member's store.

use std::sync::Arc;

use e2d_core::auth::AuthInfo;
use e2d_core::Error;
use e2d_proto::etcdserverpb::auth_server::Auth;
use e2d_proto::etcdserverpb::*;
use e2d_proto::peer::auth_change::Change;
use e2d_proto::peer::outcome::Result as Applied;
use e2d_proto::peer::proposal::Op;
use e2d_proto::peer::{AssignToken, AuthChange, UserAdd, UserChangePassword};
use tonic::{Request, Response, Status};

use super::to_status;
use crate::auth::{hash_password, identify, password_matches, requester, TokenKind};
use crate::server::Node;

/// Times an authentication is tried again when the auth store changed
/// while the password was checked.
const AUTHENTICATE_ATTEMPTS_MAX: usize = 3;
/// Letters of a simple token's random part, as etcd's.
const SIMPLE_TOKEN_LETTERS: usize = 16;

pub struct AuthService {
    node: Arc<Node>,
}

impl AuthService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    fn header(&self) -> Option<ResponseHeader> {
        self.node.header(self.node.read().current_revision())
    }

    /// Proposes `change` as `who` and waits for it to apply.
    async fn change(&self, who: &Option<AuthInfo>, change: Change) -> Result<Applied, Status> {
        let op = Op::Auth(AuthChange {
            change: Some(change),
        });
        self.node
            .propose_as(op, Some(requester(who)))
            .await
            .map_err(to_status)
    }

    /// Identifies the caller and proposes the change it asks for.
    async fn change_as<T>(&self, request: &Request<T>, change: Change) -> Result<(), Status> {
        let who = identify(&self.node, request.metadata(), request.extensions()).await?;
        self.change(&who, change).await.map(|_| ())
    }

    async fn who<T>(&self, request: &Request<T>) -> Result<AuthInfo, Status> {
        Ok(
            identify(&self.node, request.metadata(), request.extensions())
                .await?
                .unwrap_or_default(),
        )
    }

    /// A token for `user`, whose password matched at auth revision
    /// `checked_revision`.
    async fn token_for(&self, user: &str, checked_revision: u64) -> Result<String, Status> {
        match &self.node.config.auth.token {
            TokenKind::Simple => {
                let token = format!("{}.{}", random_letters(), random_suffix());
                let change = Change::AssignToken(AssignToken {
                    user: user.to_owned(),
                    token,
                });
                match self.change(&None, change).await? {
                    Applied::Authenticate(response) => Ok(response.token),
                    other => Err(Status::internal(format!(
                        "authentication answered with {other:?}"
                    ))),
                }
            }
            TokenKind::Jwt(keys) => keys
                .sign(user, checked_revision, crate::auth::unix_seconds())
                .map_err(Status::failed_precondition),
        }
    }
}

/// etcd's simple token prefix: random letters.
fn random_letters() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut bytes = [0u8; SIMPLE_TOKEN_LETTERS];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    bytes
        .iter()
        .map(|b| LETTERS[usize::from(*b) % LETTERS.len()] as char)
        .collect()
}

/// A random number after the dot (etcd puts the raft index there).
fn random_suffix() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    u64::from_le_bytes(bytes) >> 16
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_status(
        &self,
        _request: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        let (revision, enabled, auth_revision) = {
            let state = self.node.read();
            let auth = state.auth();
            (state.current_revision(), auth.is_enabled(), auth.revision())
        };
        Ok(Response::new(AuthStatusResponse {
            header: self.node.header(revision),
            enabled,
            auth_revision,
        }))
    }

    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        // Every member must be able to apply what auth replicates.
        let cluster = crate::server::cluster_version::effective(&self.node);
        e2d_core::version::require(e2d_core::version::Feature::Auth, cluster)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        self.change_as(&request, Change::Enable(AuthEnableRequest {}))
            .await?;
        Ok(Response::new(AuthEnableResponse {
            header: self.header(),
        }))
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        self.change_as(&request, Change::Disable(AuthDisableRequest {}))
            .await?;
        Ok(Response::new(AuthDisableResponse {
            header: self.header(),
        }))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let request = request.into_inner();
        self.node.linearizable_barrier().await.map_err(to_status)?;
        for _ in 0..AUTHENTICATE_ATTEMPTS_MAX {
            let (hash, checked_revision) = {
                let state = self.node.read();
                let auth = state.auth();
                if !auth.is_enabled() {
                    return Err(to_status(Error::AuthNotEnabled));
                }
                let user = auth
                    .user(&request.name)
                    .ok_or(to_status(Error::AuthFailed))?;
                if user.options.as_ref().is_some_and(|o| o.no_password) {
                    return Err(to_status(Error::AuthFailed));
                }
                (user.password.clone(), auth.revision())
            };
            if !password_matches(request.password.clone(), hash).await {
                tracing::info!(user = %request.name, "authentication failed: wrong password");
                return Err(to_status(Error::AuthFailed));
            }
            let token = self.token_for(&request.name, checked_revision).await?;
            if self.node.read().auth().revision() == checked_revision {
                return Ok(Response::new(AuthenticateResponse {
                    header: self.header(),
                    token,
                }));
            }
        }
        Err(to_status(Error::AuthOldRevision))
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let who = identify(&self.node, request.metadata(), request.extensions()).await?;
        let request = request.into_inner();
        let no_password = request.options.is_some_and(|o| o.no_password);
        let password_hash = if no_password {
            Vec::new()
        } else {
            hash_password(request.password, self.node.config.auth.bcrypt_cost)
                .await
                .map_err(to_status)?
        };
        let add = UserAdd {
            name: request.name,
            password_hash,
            no_password,
        };
        self.change(&who, Change::UserAdd(add)).await?;
        Ok(Response::new(AuthUserAddResponse {
            header: self.header(),
        }))
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let who = self.who(&request).await?;
        // Linearizable, as etcd's, which reads these through raft.
        self.node.linearizable_barrier().await.map_err(to_status)?;
        let name = request.into_inner().name;
        let roles = {
            let state = self.node.read();
            let auth = state.auth();
            auth.check_user_get(&who, &name).map_err(to_status)?;
            let user = auth.user(&name).ok_or(to_status(Error::UserNotFound))?;
            user.roles.clone()
        };
        Ok(Response::new(AuthUserGetResponse {
            header: self.header(),
            roles,
        }))
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        let who = self.who(&request).await?;
        // Linearizable, as etcd's, which reads these through raft.
        self.node.linearizable_barrier().await.map_err(to_status)?;
        let users = {
            let state = self.node.read();
            let auth = state.auth();
            auth.check_admin(&who).map_err(to_status)?;
            auth.user_names().map(str::to_owned).collect()
        };
        Ok(Response::new(AuthUserListResponse {
            header: self.header(),
            users,
        }))
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let change = Change::UserDelete(request.get_ref().clone());
        self.change_as(&request, change).await?;
        Ok(Response::new(AuthUserDeleteResponse {
            header: self.header(),
        }))
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let who = identify(&self.node, request.metadata(), request.extensions()).await?;
        let request = request.into_inner();
        let password_hash = if request.password.is_empty() {
            Vec::new()
        } else {
            hash_password(request.password, self.node.config.auth.bcrypt_cost)
                .await
                .map_err(to_status)?
        };
        let change = Change::UserChangePassword(UserChangePassword {
            name: request.name,
            password_hash,
        });
        self.change(&who, change).await?;
        Ok(Response::new(AuthUserChangePasswordResponse {
            header: self.header(),
        }))
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let change = Change::UserGrantRole(request.get_ref().clone());
        self.change_as(&request, change).await?;
        Ok(Response::new(AuthUserGrantRoleResponse {
            header: self.header(),
        }))
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let change = Change::UserRevokeRole(request.get_ref().clone());
        self.change_as(&request, change).await?;
        Ok(Response::new(AuthUserRevokeRoleResponse {
            header: self.header(),
        }))
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let change = Change::RoleAdd(request.get_ref().clone());
        self.change_as(&request, change).await?;
        Ok(Response::new(AuthRoleAddResponse {
            header: self.header(),
        }))
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let who = self.who(&request).await?;
        // Linearizable, as etcd's, which reads these through raft.
        self.node.linearizable_barrier().await.map_err(to_status)?;
        let name = request.into_inner().role;
        let perm = {
            let state = self.node.read();
            let auth = state.auth();
            auth.check_role_get(&who, &name).map_err(to_status)?;
            auth.role_permissions(&name).map_err(to_status)?
        };
        Ok(Response::new(AuthRoleGetResponse {
            header: self.header(),
            perm,
        }))
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        let who = self.who(&request).await?;
        // Linearizable, as etcd's, which reads these through raft.
        self.node.linearizable_barrier().await.map_err(to_status)?;
        let roles = {
            let state = self.node.read();
            let auth = state.auth();
            auth.check_admin(&who).map_err(to_status)?;
            auth.role_names().map(str::to_owned).collect()
        };
        Ok(Response::new(AuthRoleListResponse {
            header: self.header(),
            roles,
        }))
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let change = Change::RoleDelete(request.get_ref().clone());
        self.change_as(&request, change).await?;
        Ok(Response::new(AuthRoleDeleteResponse {
            header: self.header(),
        }))
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let change = Change::RoleGrantPermission(request.get_ref().clone());
        self.change_as(&request, change).await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse {
            header: self.header(),
        }))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let change = Change::RoleRevokePermission(request.get_ref().clone());
        self.change_as(&request, change).await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse {
            header: self.header(),
        }))
    }
}

//! The Auth service. e2d secures clients with mutual TLS; etcd's user and
//! role store is not offered, and authentication reports itself disabled.

use std::sync::Arc;

use e2d_proto::etcdserverpb::auth_server::Auth;
use e2d_proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

use crate::server::Node;

const AUTH_UNSUPPORTED: &str =
    "e2d: etcd users and roles are not supported; secure clients with mutual TLS";

pub struct AuthService {
    node: Arc<Node>,
}

impl AuthService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_status(
        &self,
        _request: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        let revision = self.node.read().current_revision();
        Ok(Response::new(AuthStatusResponse {
            header: self.node.header(revision),
            enabled: false,
            auth_revision: 0,
        }))
    }

    async fn auth_enable(
        &self,
        _request: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        Err(Status::unimplemented(AUTH_UNSUPPORTED))
    }

    async fn auth_disable(
        &self,
        _request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        Err(Status::unimplemented(AUTH_UNSUPPORTED))
    }

    async fn authenticate(
        &self,
        _request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        Err(super::to_status(e2d_core::Error::AuthNotEnabled))
    }

    async fn user_add(
        &self,
        _request: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        Err(Status::unimplemented(AUTH_UNSUPPORTED))
    }

    async fn user_get(
        &self,
        _request: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        Err(Status::unimplemented(AUTH_UNSUPPORTED))
    }

    async fn user_list(
        &self,
        _request: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        Err(Status::unimplemented(AUTH_UNSUPPORTED))
    }

    async fn user_delete(
        &self,
        _request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        Err(Status::unimplemented(AUTH_UNSUPPORTED))
    }

    async fn user_change_password(
        &self,
        _request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        Err(Status::unimplemented(AUTH_UNSUPPORTED))
    }

    async fn user_grant_role(
        &self,
        _request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        Err(Status::unimplemented(AUTH_UNSUPPORTED))
    }

    async fn user_revoke_role(
        &self,
        _request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        Err(Status::unimplemented(AUTH_UNSUPPORTED))
    }

    async fn role_add(
        &self,
        _request: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        Err(Status::unimplemented(AUTH_UNSUPPORTED))
    }

    async fn role_get(
        &self,
        _request: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        Err(Status::unimplemented(AUTH_UNSUPPORTED))
    }

    async fn role_list(
        &self,
        _request: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        Err(Status::unimplemented(AUTH_UNSUPPORTED))
    }

    async fn role_delete(
        &self,
        _request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        Err(Status::unimplemented(AUTH_UNSUPPORTED))
    }

    async fn role_grant_permission(
        &self,
        _request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        Err(Status::unimplemented(AUTH_UNSUPPORTED))
    }

    async fn role_revoke_permission(
        &self,
        _request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        Err(Status::unimplemented(AUTH_UNSUPPORTED))
    }
}

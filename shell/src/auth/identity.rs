//! Who a client request comes from, as etcd's `AuthInfoFromCtx` and
//! `AuthInfoFromTLS` tell: the token in the `token` (or `authorization`)
//! metadata, or, without one, the common name of the verified client
//! certificate. Nobody while auth is disabled.

use std::sync::Arc;

use e2d_core::auth::AuthInfo;
use e2d_core::Error;
use e2d_proto::peer::Requester;
use tonic::metadata::MetadataMap;
use tonic::{Extensions, Status};

use super::TokenKind;
use crate::grpc::to_status;
use crate::server::Node;

/// The common name of the client certificate a connection presented and
/// the CA verified; the client port puts it in each request's extensions.
#[derive(Debug, Clone)]
pub struct ClientCommonName(pub Arc<str>);

/// The identity of a request, or `None` for nobody (and while auth is
/// disabled). An unknown or expired token is refused with etcd's
/// "invalid auth token".
pub async fn identify(
    node: &Node,
    metadata: &MetadataMap,
    extensions: &Extensions,
) -> Result<Option<AuthInfo>, Status> {
    match identify_now(node, metadata, extensions) {
        Err(Error::InvalidAuthToken) if matches!(node.config.auth.token, TokenKind::Simple) => {
            // A token handed out by another member may not have applied
            // here yet (etcd waits for its index).
            node.linearizable_barrier().await.map_err(to_status)?;
            identify_now(node, metadata, extensions).map_err(to_status)
        }
        identified => identified.map_err(to_status),
    }
}

/// [`identify`] from what this member holds now, without waiting for a
/// token another member handed out.
pub fn identify_now(
    node: &Node,
    metadata: &MetadataMap,
    extensions: &Extensions,
) -> Result<Option<AuthInfo>, Error> {
    if !node.read().auth().is_enabled() {
        return Ok(None);
    }
    let token = ["token", "authorization"]
        .iter()
        .find_map(|key| metadata.get(*key))
        .and_then(|value| value.to_str().ok())
        .map(|value| value.strip_prefix("Bearer ").unwrap_or(value));
    if let Some(token) = token {
        return from_token(node, token).map(Some);
    }
    Ok(extensions.get::<ClientCommonName>().map(|name| {
        let revision = node.read().auth().revision();
        AuthInfo::new(name.0.as_ref(), revision)
    }))
}

fn from_token(node: &Node, token: &str) -> Result<AuthInfo, Error> {
    match &node.config.auth.token {
        TokenKind::Simple => simple_token_user(node, token).ok_or(Error::InvalidAuthToken),
        TokenKind::Jwt(keys) => keys
            .verify(token, unix_seconds())
            .map(|(user, revision)| AuthInfo::new(user, revision))
            .ok_or(Error::InvalidAuthToken),
    }
}

fn simple_token_user(node: &Node, token: &str) -> Option<AuthInfo> {
    let now_ms = node.clock.now_ms();
    let state = node.read();
    let auth = state.auth();
    let user = auth.tokens().user_of(token, now_ms)?;
    Some(AuthInfo::new(user, auth.revision()))
}

/// The requester a proposal carries, checked again when it applies.
pub fn requester(who: &Option<AuthInfo>) -> Requester {
    let who = who.clone().unwrap_or_default();
    Requester {
        user: who.user,
        auth_revision: who.revision,
    }
}

pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

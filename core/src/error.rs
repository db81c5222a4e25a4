//! Errors of the etcd state machine, with etcd's exact texts and status codes.
//!
//! Clients match on these strings (`etcdserver: ...`), so they must not change.

use crate::storage::StorageError;

/// The gRPC status code an error maps to. Core knows no gRPC library; the
/// shell turns this into its own status type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    InvalidArgument,
    OutOfRange,
    NotFound,
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
    Internal,
    Unimplemented,
    PermissionDenied,
    Unauthenticated,
    DataLoss,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// The CORRUPT alarm is raised: the cluster takes no writes.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: request timed out")]
    Timeout,
    /// This member's raft driver has stopped (the member is stopping, or
    /// starting over as a new member): nothing more is served from it.
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: given member URLs are invalid")]
    BadMemberUrls,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: not capable")]
    NotCapable,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// This member's stored data could not be read or written: the shell
    /// stops the member rather than answer from data it cannot trust.
    #[error("etcdserver: {0}")]
    Storage(#[from] StorageError),
    /// A failure of this member's own that says nothing about its data.
    #[error("etcdserver: {0}")]
    Internal(String),
}

impl Error {
    pub fn status_code(&self) -> StatusCode {
        use Error::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | InvalidSortOption | RequestTooLarge => StatusCode::InvalidArgument,
            Compacted | FutureRevision | LeaseTtlTooLarge => StatusCode::OutOfRange,
            LeaseNotFound | MemberNotFound => StatusCode::NotFound,
            BadLeaderTransferee
            | PeerUrlExists
            | MemberExists
            | NotEnoughStartedMembers
            | MemberNotLearner
            | LearnerNotReady
            | TooManyLearners => StatusCode::FailedPrecondition,
            BadMemberUrls => StatusCode::InvalidArgument,
            LeaseExists | AuthNotEnabled => StatusCode::FailedPrecondition,
            NoSpace | TooManyRequests => StatusCode::ResourceExhausted,
            NoLeader | NotLeader | LeaderChanged | Timeout | Stopped => StatusCode::Unavailable,
            NotCapable => StatusCode::Unimplemented,
            RootUserNotExist | RootRoleNotExist | UserAlreadyExist | UserNotFound
            | RoleAlreadyExist | RoleNotFound | RoleNotGranted | PermissionNotGranted => {
                StatusCode::FailedPrecondition
            }
            UserEmpty | RoleEmpty | AuthFailed | PermissionNotGiven | InvalidAuthMgmt
            | AuthOldRevision => StatusCode::InvalidArgument,
            PermissionDenied => StatusCode::PermissionDenied,
            InvalidAuthToken => StatusCode::Unauthenticated,
            Corrupt => StatusCode::DataLoss,
            Storage(_) | Internal(_) => StatusCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_etcds() {
        assert_eq!(
            Error::Compacted.to_string(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        assert_eq!(Error::Compacted.status_code(), StatusCode::OutOfRange);
        assert_eq!(
            Error::AuthOldRevision.to_string(),
            "etcdserver: revision of auth store is old"
        );
        assert_eq!(
            Error::PermissionDenied.status_code(),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            Error::InvalidAuthToken.status_code(),
            StatusCode::Unauthenticated
        );
        assert_eq!(
            Error::UserNotFound.status_code(),
            StatusCode::FailedPrecondition
        );
        assert_eq!(
            Error::NoSpace.to_string(),
            "etcdserver: mvcc: database space exceeded"
        );
        assert_eq!(Error::Stopped.to_string(), "etcdserver: server stopped");
        assert_eq!(Error::Stopped.status_code(), StatusCode::Unavailable);
        assert_eq!(Error::Corrupt.to_string(), "etcdserver: corrupt cluster");
        assert_eq!(Error::Corrupt.status_code(), StatusCode::DataLoss);
    }
}

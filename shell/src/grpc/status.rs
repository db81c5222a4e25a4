//! Turning core errors into gRPC statuses etcd clients recognise.

use e2d_core::{Error, StatusCode};
use tonic::{Code, Status};

/// The status that answers `error`. [`Error::Storage`] answers nobody:
/// the request read data this member cannot read, and the member stops
/// ([`crate::fail_stop::stop_on_unreadable_data`]).
pub fn to_status(error: Error) -> Status {
    if let Error::Storage(unreadable) = &error {
        crate::fail_stop::stop_on_unreadable_data(unreadable);
    }
    let code = match error.status_code() {
        StatusCode::InvalidArgument => Code::InvalidArgument,
        StatusCode::OutOfRange => Code::OutOfRange,
        StatusCode::NotFound => Code::NotFound,
        StatusCode::FailedPrecondition => Code::FailedPrecondition,
        StatusCode::ResourceExhausted => Code::ResourceExhausted,
        StatusCode::Unavailable => Code::Unavailable,
        StatusCode::Internal => Code::Internal,
        StatusCode::Unimplemented => Code::Unimplemented,
        StatusCode::PermissionDenied => Code::PermissionDenied,
        StatusCode::Unauthenticated => Code::Unauthenticated,
        StatusCode::DataLoss => Code::DataLoss,
    };
    Status::new(code, error.to_string())
}

/// Refuses a request larger than the configured limit.
pub fn check_request_size(encoded_len: usize, max_request_bytes: usize) -> Result<(), Status> {
    if encoded_len > max_request_bytes {
        return Err(to_status(Error::RequestTooLarge));
    }
    Ok(())
}

/// Honours etcd's `hasleader` request metadata: clients that set it want
/// an error rather than an answer from a member cut off from the leader.
pub fn check_has_leader(
    metadata: &tonic::metadata::MetadataMap,
    node: &crate::server::Node,
) -> Result<(), Status> {
    let required = metadata
        .get("hasleader")
        .is_some_and(|value| value.as_bytes() == b"true");
    if required && node.raft_status().leader_id == 0 {
        return Err(to_status(Error::NoLeader));
    }
    Ok(())
}

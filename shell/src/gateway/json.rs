//! One JSON message in, one out: reading a request body as an etcd API
//! message, writing a response or a gRPC status the way etcd's gateway
//! (grpc-gateway v1 with `JSONPb{OrigName: true}`) writes them.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::{Code, Status};

/// The response header that says, as etcd's gateway does, that the answer
/// came from a gRPC call (its `content-type` metadata).
pub const GRPC_CONTENT_TYPE: (HeaderName, HeaderValue) = (
    HeaderName::from_static("grpc-metadata-content-type"),
    HeaderValue::from_static("application/grpc"),
);

/// Request headers that become gRPC metadata with the prefix cut, as
/// grpc-gateway's default header matcher does (`Grpc-Metadata-Hasleader`).
const METADATA_HEADER_PREFIX: &str = "grpc-metadata-";

/// The bounds on what a gateway request may carry.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of JSON one request message may take (base64 makes bytes a
    /// third larger than on the gRPC wire).
    pub json_bytes_max: usize,
    /// Bytes the decoded message may take on the gRPC wire, as the gRPC
    /// port allows.
    pub message_bytes_max: usize,
}

impl Limits {
    pub fn new(max_request_bytes: usize) -> Self {
        let message_bytes_max = crate::grpc::grpc_message_bytes_max(max_request_bytes);
        Self {
            json_bytes_max: message_bytes_max.saturating_mul(2),
            message_bytes_max,
        }
    }
}

/// The gRPC metadata a gateway request carries: the `Authorization`
/// header as the auth `token`, and every `Grpc-Metadata-*` header.
pub fn metadata(headers: &HeaderMap) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix(METADATA_HEADER_PREFIX) else {
            continue;
        };
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_bytes()),
        ) {
            metadata.append(key, value);
        }
    }
    if let Some(Ok(token)) = headers
        .get(header::AUTHORIZATION)
        .map(|value| MetadataValue::try_from(value.as_bytes()))
    {
        metadata.insert("token", token);
    }
    metadata
}

/// Reads the whole body as one message. An empty body is the empty
/// message and what follows the first JSON value is not read, as Go's
/// JSON decoder in etcd's gateway does.
pub async fn read_message<T>(body: Body, limits: Limits) -> Result<T, Status>
where
    T: DeserializeOwned + Default + prost::Message,
{
    // A body whose declared length is over the bound is refused before a
    // byte is read (and before `100 Continue` invites the client to send).
    let declared_bytes = axum::body::HttpBody::size_hint(&body).lower();
    if declared_bytes > limits.json_bytes_max as u64 {
        return Err(body_too_large(limits.json_bytes_max));
    }
    let bytes = http_body_util::Limited::new(body, limits.json_bytes_max)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                body_too_large(limits.json_bytes_max)
            } else {
                Status::invalid_argument(e.to_string())
            }
        })?
        .to_bytes();
    let message = match parse_first(&bytes) {
        Ok(Some(message)) => message,
        Ok(None) => T::default(),
        Err(e) => return Err(Status::invalid_argument(e)),
    };
    check_message_size(&message, limits)?;
    Ok(message)
}

/// The first JSON value in `bytes`, or `None` if there is only white space.
pub fn parse_first<T: DeserializeOwned>(bytes: &[u8]) -> Result<Option<T>, String> {
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<T>()
        .next()
        .transpose()
        .map_err(|e| e.to_string())
}

/// Refuses a message larger than the gRPC port would take, with the
/// status it would answer.
pub fn check_message_size(message: &impl prost::Message, limits: Limits) -> Result<(), Status> {
    let len = message.encoded_len();
    if len > limits.message_bytes_max {
        return Err(Status::out_of_range(format!(
            "Error, decoded message length too large: found {len} bytes, the limit is: {} bytes",
            limits.message_bytes_max
        )));
    }
    Ok(())
}

pub fn body_too_large(limit: usize) -> Status {
    Status::resource_exhausted(format!("request body larger than {limit} bytes"))
}

/// A successful answer: the message as JSON.
pub fn message_response<T: Serialize>(message: &T) -> Response {
    match serde_json::to_vec(message) {
        Ok(body) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                GRPC_CONTENT_TYPE,
            ],
            body,
        )
            .into_response(),
        Err(e) => error_response(&Status::internal(e.to_string())),
    }
}

/// grpc-gateway's error object for a unary call.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    code: i32,
    message: &'a str,
}

/// A failed unary call: the error object, with the HTTP status
/// grpc-gateway maps the gRPC code to.
pub fn error_response(status: &Status) -> Response {
    let body = ErrorBody {
        error: status.message(),
        code: status.code() as i32,
        message: status.message(),
    };
    json_with_status(http_status(status.code()), &body)
}

pub fn json_with_status(http: StatusCode, body: &impl Serialize) -> Response {
    // These bodies are plain structs of strings and numbers.
    let body = serde_json::to_vec(body).unwrap_or_default();
    (
        http,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The HTTP status grpc-gateway v1 (etcd 3.4 and 3.5) answers for a gRPC
/// code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Aborted => StatusCode::CONFLICT,
        Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use e2d_proto::etcdserverpb::RangeRequest;

    #[test]
    fn an_empty_body_is_the_empty_message_and_only_the_first_value_counts() {
        assert_eq!(parse_first::<RangeRequest>(b" \n").unwrap(), None);
        let first = parse_first::<RangeRequest>(br#"{"key":"YQ=="} {"key":"Yg=="}"#)
            .unwrap()
            .unwrap();
        assert_eq!(first.key, b"a");
        assert!(parse_first::<RangeRequest>(br#"{"key":"#).is_err());
    }

    #[test]
    fn metadata_takes_the_token_and_grpc_metadata_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("abc.1"));
        headers.insert("grpc-metadata-hasleader", HeaderValue::from_static("true"));
        headers.insert("x-other", HeaderValue::from_static("no"));
        let metadata = metadata(&headers);
        assert_eq!(metadata.get("token").unwrap(), "abc.1");
        assert_eq!(metadata.get("hasleader").unwrap(), "true");
        assert_eq!(metadata.len(), 2);
    }

    #[test]
    fn codes_map_to_grpc_gateway_v1_statuses() {
        assert_eq!(http_status(Code::FailedPrecondition), 412);
        assert_eq!(http_status(Code::ResourceExhausted), 429);
        assert_eq!(http_status(Code::OutOfRange), 400);
        assert_eq!(http_status(Code::Cancelled), 408);
    }

    #[test]
    fn an_oversized_message_is_refused_as_the_grpc_port_does() {
        let limits = Limits {
            json_bytes_max: 100,
            message_bytes_max: 4,
        };
        let request = RangeRequest {
            key: b"abcdef".to_vec(),
            ..Default::default()
        };
        let status = check_message_size(&request, limits).unwrap_err();
        assert_eq!(status.code(), Code::OutOfRange);
    }
}

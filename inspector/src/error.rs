//! API errors: one JSON shape `{"error": {"code", "message"}}` and the HTTP status each code maps to.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::link::LinkError;
use crate::qemu::QemuError;

/// The body of every error answer.
#[derive(Serialize, ToSchema, Debug)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable machine-readable code and a sentence.
#[derive(Serialize, ToSchema, Debug)]
pub struct ErrorDetail {
    /// e.g. `bad_request`, `not_connected`, `timeout`, `vm_paused`, `unresponsive`,
    /// `no_such_task`, `writes_disabled`.
    pub code: String,
    pub message: String,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The monitor's own error (its `kind` and `message`): the kernel refused a
    /// well-formed request, or the arguments were bad.
    pub fn from_monitor(kind: &str, message: &str) -> ApiError {
        let status = match kind {
            "no_such_task" => StatusCode::NOT_FOUND,
            // The stopped code holds the lock: the next try (after it runs) will do.
            "busy" => StatusCode::SERVICE_UNAVAILABLE,
            "scratch_too_small" => StatusCode::INTERNAL_SERVER_ERROR,
            "no_mem_map" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, kind, message)
    }
}

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> ApiError {
        let (status, code) = match &e {
            LinkError::NotConnected => (StatusCode::SERVICE_UNAVAILABLE, "not_connected"),
            LinkError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            LinkError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            LinkError::Refused(_) => (StatusCode::BAD_GATEWAY, "stub_refused"),
            LinkError::TooLarge(_) => (StatusCode::BAD_GATEWAY, "response_too_large"),
            LinkError::Protocol(_) => (StatusCode::BAD_GATEWAY, "protocol_error"),
            LinkError::Paused(_) => (StatusCode::SERVICE_UNAVAILABLE, "vm_paused"),
            LinkError::Unresponsive => (StatusCode::SERVICE_UNAVAILABLE, "unresponsive"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<QemuError> for ApiError {
    fn from(e: QemuError) -> ApiError {
        let (status, code) = match &e {
            QemuError::NotConfigured => (StatusCode::SERVICE_UNAVAILABLE, "no_qemu"),
            QemuError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "qemu_timeout"),
            QemuError::Io(_) => (StatusCode::SERVICE_UNAVAILABLE, "qemu_unreachable"),
            QemuError::Protocol(_) => (StatusCode::BAD_GATEWAY, "qemu_error"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_errors_map_to_503_and_504() {
        assert_eq!(
            ApiError::from(LinkError::NotConnected).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::from(LinkError::Timeout).status,
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(ApiError::from(LinkError::Busy).code, "busy");
    }

    #[test]
    fn monitor_errors_keep_their_kind() {
        let e = ApiError::from_monitor("no_such_task", "no task with pid 9");
        assert_eq!(
            (e.status, e.code.as_str()),
            (StatusCode::NOT_FOUND, "no_such_task")
        );
        let e = ApiError::from_monitor("out_of_range", "x");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}

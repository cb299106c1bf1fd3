//! REST API errors, each turned into a status code and a `{"error": ...}` body in one place.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Why a REST request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404: no app has this id (or key).
    #[error("unknown app {0:?}")]
    UnknownApp(String),
    /// 403: the app is disabled.
    #[error("app is disabled")]
    AppDisabled,
    /// 401: missing or wrong signature parameters, stale timestamp, wrong body_md5.
    #[error("{0}")]
    Unauthorized(String),
    /// 400: the request is malformed or breaks a limit other than size.
    #[error("{0}")]
    BadRequest(String),
    /// 413: event data or the body is over its limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 404: no such endpoint.
    #[error("not found: {0}")]
    NotFound(String),
    /// 426: a plain HTTP request (or an unsupported WebSocket version) at the WebSocket endpoint.
    #[error("{0}")]
    UpgradeRequired(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownApp(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::AppDisabled => StatusCode::FORBIDDEN,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UpgradeRequired(_) => StatusCode::UPGRADE_REQUIRED,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (
            status,
            Json(json!({ "error": self.to_string(), "code": status.as_u16() })),
        )
            .into_response();
        if let ApiError::UpgradeRequired(_) = self {
            // RFC 6455 section 4.4 names the version; RFC 9110 requires the Upgrade header.
            let headers = response.headers_mut();
            headers.insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        response
    }
}

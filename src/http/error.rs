//! REST API errors, each turned into a status code and a `{"error": ...}` body in one place.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Seconds a client is told to wait before retrying a request a draining server refused.
const DRAINING_RETRY_AFTER: u64 = 5;

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
    /// 403: refused whatever the credentials (a console request from a foreign origin).
    #[error("{0}")]
    Forbidden(String),
    /// 400: the request is malformed or breaks a limit other than size.
    #[error("{0}")]
    BadRequest(String),
    /// 413: event data or the body is over its limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 404: no such endpoint.
    #[error("not found: {0}")]
    NotFound(String),
    /// 405: the path exists but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 408: the request body did not arrive in time.
    #[error("{0}")]
    Timeout(String),
    /// 429: this client has used up what it may do for now; `Retry-After` says when to retry.
    #[error("{message}")]
    TooManyRequests {
        /// What was refused.
        message: String,
        /// When the client may try again.
        retry_after: std::time::Duration,
        /// The limit, for Sockudo's `X-RateLimit-*` headers (none for the console's throttle).
        limit: Option<u32>,
    },
    /// 503 with `Retry-After`: the server is shutting down; another node can take this.
    #[error("the server is shutting down; retry (another node) later")]
    Draining,
    /// 503: a process-wide bound is reached; retrying later can succeed.
    #[error("{0}")]
    Busy(String),
    /// 503: the cluster-wide state (Redis) cannot be reached; a partial answer would mislead.
    #[error("the cluster state cannot be reached; retry later")]
    Unavailable,
    /// 426: a plain HTTP request (or an unsupported WebSocket version) at the WebSocket endpoint.
    #[error("{0}")]
    UpgradeRequired(String),
    /// 500: a bug on our side (a publishing task panicked); logged.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownApp(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::AppDisabled | ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UpgradeRequired(_) => StatusCode::UPGRADE_REQUIRED,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Busy(_) | ApiError::Unavailable | ApiError::Draining => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::cluster::Unavailable> for ApiError {
    fn from(_: crate::cluster::Unavailable) -> ApiError {
        ApiError::Unavailable
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
        let headers = response.headers_mut();
        match self {
            ApiError::UpgradeRequired(_) => {
                // RFC 6455 section 4.4 names the version; RFC 9110 requires the Upgrade header.
                headers.insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            }
            ApiError::Draining => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(DRAINING_RETRY_AFTER));
            }
            ApiError::TooManyRequests {
                retry_after, limit, ..
            } => {
                // Whole seconds, rounded up: a client retrying at once would only be refused.
                let seconds = retry_after.as_millis().div_ceil(1000).max(1) as u64;
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                if let Some(limit) = limit {
                    headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
                    headers.insert("x-ratelimit-remaining", HeaderValue::from(0u32));
                    headers.insert("x-ratelimit-reset", HeaderValue::from(seconds));
                }
            }
            _ => {}
        }
        response
    }
}

/// Turns an error response that is not JSON (an extractor's rejection, a 405 from routing) into
/// the `{"error", "code"}` shape every other error has.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_owned();
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        message
    };
    let mut converted = (
        status,
        Json(json!({ "error": message, "code": status.as_u16() })),
    )
        .into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            converted.headers_mut().insert(name, value.clone());
        }
    }
    converted
}

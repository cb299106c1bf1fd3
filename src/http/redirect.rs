//! The plain port of `ssl.redirect_http`: every HTTP request gets 308 to the same path on the
//! TLS port, and a WebSocket upgrade to `/app/{key}` gets `pusher:error` 4000 and close 4000,
//! which makes pusher-js switch to `wss://` (it cannot follow an HTTP redirect).

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{ws, ApiError};
use crate::protocol::codes::SocketError;
use crate::state::SharedState;
use crate::transport::Handshake;

/// The router of the redirect port, sending clients to TLS on `tls_port`.
pub fn redirect_router(shared: SharedState, tls_port: u16) -> Router {
    Router::new()
        .route("/app/{key}", get(tls_required))
        .fallback(move |request: Request| async move { to_https(&request, tls_port) })
        .with_state(shared)
}

/// A WebSocket to the plain port: upgraded, then told to use TLS (4000).
async fn tls_required(State(shared): State<SharedState>, request: Request) -> Response {
    if !ws::is_upgrade(&request) {
        return ApiError::UpgradeRequired(
            "this endpoint speaks WebSocket over TLS (wss://)".into(),
        )
        .into_response();
    }
    ws::upgrade(
        shared,
        request,
        Handshake::Refused(SocketError::TlsRequired),
    )
}

/// 308 to `https://{host}:{tls_port}{path and query}`.
fn to_https(request: &Request, tls_port: u16) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(host_without_port);
    let Some(host) = host.filter(|host| !host.is_empty()) else {
        return ApiError::BadRequest("a Host header is needed to redirect to TLS".into())
            .into_response();
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{host}:{tls_port}{path}");
    match HeaderValue::from_str(&location) {
        Ok(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => {
            ApiError::BadRequest("the Host header cannot be redirected".into()).into_response()
        }
    }
}

/// `example.com:80` as `example.com`, `[::1]:80` as `[::1]`.
fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::host_without_port;

    #[test]
    fn the_port_is_dropped_from_the_host() {
        assert_eq!(host_without_port("example.com:80"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:8080"), "[::1]");
    }
}

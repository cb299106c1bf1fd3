//! The WebSocket upgrade at `/app/{key}`: path, app and protocol checks before the first frame.
//!
//! The upgrade is done here rather than by axum's extractor because the connection needs the
//! socket itself: fan-out writes frames straight to it (see `crate::outbound`).

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::client_address::{client_address, peer_of};
use super::error::ApiError;
use crate::apps::Lookup;
use crate::outbound::Link;
use crate::protocol::codes::SocketError;
use crate::protocol::deflate;
use crate::state::{Shared, SharedState};
use crate::transport::{self, ConnectionInfo, Handshake};

/// Whether the request asks for a WebSocket upgrade at all.
pub fn is_upgrade(request: &Request) -> bool {
    has_token(request.headers(), header::UPGRADE, "websocket")
}

/// Upgrades, then serves the socket with whatever the handshake decided.
pub fn upgrade(shared: SharedState, mut request: Request, mut handshake: Handshake) -> Response {
    let key = match check_request(&request) {
        Ok(key) => key,
        Err(refusal) => return refusal.into_response(),
    };
    let agreement = negotiate_deflate(&shared, &request, &mut handshake);
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return ApiError::UpgradeRequired("this connection cannot be upgraded".into())
            .into_response();
    };
    let tracker = shared.connections().clone();
    tokio::spawn(tracker.track_future(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => return tracing::debug!(%error, "WebSocket upgrade failed"),
        };
        // The socket itself, and its TLS session when the port speaks TLS: fan-out writes to
        // it directly, encrypting through the session (see `crate::outbound`). One `serve` call
        // for both: two would each take room in every connection task's state.
        let (socket, link, read_ahead) = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => (parts.io.into_inner(), Link::Plain, parts.read_buf),
            Err(upgraded) => match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
                Ok(parts) => {
                    let (socket, session) = parts.io.into_inner().into_inner();
                    (socket, Link::tls(session), parts.read_buf)
                }
                Err(_) => {
                    return tracing::error!(
                        "upgraded connection is not a TCP or TLS stream; closed"
                    )
                }
            },
        };
        transport::serve(socket, link, read_ahead, shared, handshake).await
    }));
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (
                header::SEC_WEBSOCKET_ACCEPT,
                HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
            ),
        ],
    )
        .into_response();
    if let Some(agreement) = agreement {
        let value = HeaderValue::from_str(&agreement.header()).expect("ASCII header value");
        (response.headers_mut()).insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
    }
    response
}

/// The `permessage-deflate` answer to an accepted handshake's offer, when compression is on;
/// the handshake then says whether it was negotiated.
fn negotiate_deflate(
    shared: &Shared,
    request: &Request,
    handshake: &mut Handshake,
) -> Option<deflate::Agreement> {
    let Handshake::Accepted(_, _, negotiated) = handshake else {
        return None;
    };
    if !shared.config().compression.enabled {
        return None;
    }
    let offers = request.headers().get_all(header::SEC_WEBSOCKET_EXTENSIONS);
    let agreement = deflate::negotiate(offers.iter().filter_map(|v| v.to_str().ok()));
    *negotiated = agreement.is_some();
    agreement
}

/// The request's `Sec-WebSocket-Key`, or the response refusing it (RFC 6455 section 4.2.1).
fn check_request(request: &Request) -> Result<String, ApiError> {
    let headers = request.headers();
    if request.method() != Method::GET {
        return Err(ApiError::BadRequest(
            "a WebSocket upgrade must be a GET".into(),
        ));
    }
    if !has_token(headers, header::CONNECTION, "upgrade") || !is_upgrade(request) {
        let why = "this endpoint speaks WebSocket: send Connection: Upgrade and Upgrade: websocket";
        return Err(ApiError::UpgradeRequired(why.into()));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(ApiError::UpgradeRequired(
            "Sec-WebSocket-Version must be 13".into(),
        ));
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return Err(ApiError::BadRequest(
            "exactly one Sec-WebSocket-Key header is required".into(),
        ));
    };
    let key = key.to_str().unwrap_or("").trim();
    if !valid_key(key) {
        return Err(ApiError::BadRequest(
            "Sec-WebSocket-Key must be the base64 encoding of 16 bytes".into(),
        ));
    }
    Ok(key.to_owned())
}

/// RFC 6455 section 4.2.1: the key is a base64-encoded 16-byte value.
fn valid_key(key: &str) -> bool {
    use base64::Engine;
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|bytes| bytes.len() == 16)
}

/// Whether a comma-separated header carries `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

/// Why the query's protocol or client version is refused, before the app is looked up.
fn protocol_refusal(query: &HashMap<String, String>) -> Option<SocketError> {
    if let Some(protocol) = query.get("protocol") {
        match protocol.parse::<u32>() {
            Ok(5..=7) => {}
            _ => return Some(SocketError::UnsupportedProtocol(protocol.clone())),
        }
    }
    let version = query.get("version")?;
    (!valid_version(version)).then(|| SocketError::InvalidVersion(version.clone()))
}

/// What the request resolves to, once its app (by key) was looked up.
fn handshake(
    shared: &Shared,
    (key, lookup): (&str, Lookup),
    request: &Request,
    query: &HashMap<String, String>,
) -> Handshake {
    match lookup {
        Lookup::Found(app) => {
            // Hooks are told who connected (and count calls per address), and so is the
            // console's journal; otherwise nothing is kept.
            let asks = app.decision_hooks.is_some();
            let shown = shared.config().console.enabled;
            let origin = request.headers().get(header::ORIGIN);
            if !app
                .allowed_origins
                .allows(origin.and_then(|o| o.to_str().ok()))
            {
                // Before any hook is asked and before `connection_established`.
                return Handshake::Refused(SocketError::OriginNotAllowed);
            }
            let info = (asks || shown).then(|| Box::new(connection_info(shared, request, query)));
            Handshake::Accepted(app.clone(), info, false)
        }
        Lookup::Unknown => Handshake::Refused(SocketError::UnknownApp(key.to_owned())),
        Lookup::Unavailable => Handshake::Refused(SocketError::AppsUnavailable),
    }
}

/// What the `connection_starting` hook (and the console's journal) is told about the request.
fn connection_info(
    shared: &Shared,
    request: &Request,
    query: &HashMap<String, String>,
) -> ConnectionInfo {
    let headers = request.headers();
    let header = |name: header::HeaderName| {
        let value = headers.get(name)?.to_str().ok()?;
        Some(value.to_owned())
    };
    let trust_hops = shared.config().trust_hops;
    let address = peer_of(request).map(|peer| client_address(peer, headers, trust_hops));
    ConnectionInfo {
        address,
        origin: header(header::ORIGIN),
        user_agent: header(header::USER_AGENT),
        client: query.get("client").cloned(),
        version: query.get("version").cloned(),
        protocol: query.get("protocol").cloned(),
    }
}

/// A client version such as `8.4.0` or `2.1.0-beta.1`.
fn valid_version(version: &str) -> bool {
    version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
}

/// `GET /app/{key}`: the Pusher WebSocket endpoint.
pub async fn connect(
    State(shared): State<SharedState>,
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    if shared.is_draining() {
        // Before the upgrade: the client's next attempt goes to a node that serves.
        return ApiError::Draining.into_response();
    }
    if let Some(limit) = super::rate_limit::upgrade_limit(&shared, &request) {
        if let Some(refused) = super::rate_limit::limit_upgrade(&shared, limit).await {
            return refused;
        }
    }
    let handshake = match protocol_refusal(&query) {
        Some(refusal) => Handshake::Refused(refusal),
        None => {
            let lookup = shared.app_by_key(&key).await;
            handshake(&shared, (&key, lookup), &request, &query)
        }
    };
    upgrade(shared, request, handshake)
}

#[cfg(test)]
mod tests {
    use super::{valid_key, valid_version};

    #[test]
    fn keys() {
        assert!(valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!valid_key("dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!valid_key("short"));
        assert!(!valid_key("dGhlIHNhbXBsZSBub25jZSEh"), "18 bytes");
        assert!(!valid_key("!!!!!!!!!!!!!!!!!!!!!!=="));
    }

    #[test]
    fn versions() {
        assert!(valid_version("8.4.0"));
        assert!(valid_version("7.0.3-beta+1"));
        assert!(!valid_version("abc"));
        assert!(!valid_version("8.4 0"));
        assert!(!valid_version(""));
    }
}

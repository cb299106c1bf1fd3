//! The WebSocket upgrade at `/app/{key}`: path, app and protocol checks before the first frame.

use std::collections::HashMap;

use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::response::Response;

use crate::protocol::codes::SocketError;
use crate::server::state::{Shared, SharedState};
use crate::transport::{self, Handshake};

/// Read buffer per socket: small, because idle sockets dominate memory (DECISIONS.md).
const READ_BUFFER: usize = 2048;

/// Upgrades, then serves the socket with whatever the handshake decided.
pub fn upgrade(shared: SharedState, ws: WebSocketUpgrade, handshake: Handshake) -> Response {
    let max_message = shared.config.websocket_max_payload;
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| {
            let tracker = shared.connections.clone();
            tracker.track_future(transport::serve(socket, shared, handshake))
        })
}

fn handshake(shared: &Shared, key: &str, query: &HashMap<String, String>) -> Handshake {
    if let Some(protocol) = query.get("protocol") {
        match protocol.parse::<u32>() {
            Ok(5..=7) => {}
            _ => return Handshake::Refused(SocketError::UnsupportedProtocol(protocol.clone())),
        }
    }
    if let Some(version) = query.get("version") {
        if !valid_version(version) {
            return Handshake::Refused(SocketError::InvalidVersion(version.clone()));
        }
    }
    match shared.apps.by_key(key) {
        Some(app) => Handshake::Accepted(app.clone()),
        None => Handshake::Refused(SocketError::UnknownApp(key.to_owned())),
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
    ws: WebSocketUpgrade,
) -> Response {
    let handshake = handshake(&shared, &key, &query);
    upgrade(shared, ws, handshake)
}

#[cfg(test)]
mod tests {
    use super::valid_version;

    #[test]
    fn versions() {
        assert!(valid_version("8.4.0"));
        assert!(valid_version("7.0.3-beta+1"));
        assert!(!valid_version("abc"));
        assert!(!valid_version("8.4 0"));
        assert!(!valid_version(""));
    }
}

//! `POST /apps/{id}/users/{user_id}/terminate_connections`.

use axum::extract::{OriginalUri, Path, State};
use axum::http::Method;
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};

use super::auth::authenticate;
use super::error::ApiError;
use crate::protocol::codes::SocketError;
use crate::server::state::SharedState;

async fn terminate(
    shared: SharedState,
    app_id: Option<&str>,
    user_id: &str,
    method: Method,
    uri: axum::http::Uri,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let auth = authenticate(&shared, app_id, &method, &uri, &body)?;
    for outbound in auth.app.users.connections(user_id) {
        outbound.close(SocketError::Unauthorized(
            "connections terminated by the server".into(),
        ));
    }
    Ok(Json(json!({})))
}

/// Closes every connection signed in as the user with 4009.
pub async fn terminate_connections(
    State(shared): State<SharedState>,
    Path((app_id, user_id)): Path<(String, String)>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    terminate(shared, Some(&app_id), &user_id, method, uri, body?).await
}

/// The same without `/apps/{id}`, as pusher-http-python sends it; the app comes from `auth_key`.
pub async fn terminate_connections_unprefixed(
    State(shared): State<SharedState>,
    Path(user_id): Path<String>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    terminate(shared, None, &user_id, method, uri, body?).await
}

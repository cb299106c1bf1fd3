//! `POST /apps/{id}/users/{user_id}/terminate_connections` (also routed without `/apps/{id}`)
//! and `GET /apps/{id}/users/{user_id}`, a user's online status (Herald's own).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::auth::Authenticated;
use super::error::ApiError;
use super::rate_limit::read_quota;
use crate::protocol::user_id::user_id_text;
use crate::state::SharedState;

/// Whether the user has a signed-in connection, and how many, on every node:
/// `{"online": true, "connections": 2}`. A user never seen is offline (200, not 404).
pub async fn status(
    State(shared): State<SharedState>,
    Path((_app_id, user_id)): Path<(String, String)>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    read_quota(&shared, &auth.app).await?;
    let user_id = user_id_text(&Value::String(user_id))
        .map_err(|why| ApiError::BadRequest(format!("the user id {why}")))?;
    let connections = shared
        .cluster()
        .user_connections(&auth.app, &user_id)
        .await?;
    Ok(Json(
        json!({ "online": connections > 0, "connections": connections }),
    ))
}

/// Closes every connection signed in as the user with 4009.
///
/// pusher-http-python posts to `/users/{id}/terminate_connections`; there the app comes from
/// `auth_key`.
pub async fn terminate_connections(
    State(shared): State<SharedState>,
    Path(params): Path<HashMap<String, String>>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let user_id = params
        .get("user_id")
        .ok_or_else(|| ApiError::BadRequest("no user id in the path".into()))?;
    shared
        .cluster()
        .terminate_connections(&auth.app, user_id)
        .await?;
    Ok(Json(json!({})))
}

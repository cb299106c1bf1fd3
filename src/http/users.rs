//! `POST /apps/{id}/users/{user_id}/terminate_connections` (also routed without `/apps/{id}`).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::auth::Authenticated;
use super::error::ApiError;
use crate::state::SharedState;

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

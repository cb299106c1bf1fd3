//! Channel queries: `GET /apps/{id}/channels`, `/channels/{name}` and `/channels/{name}/users`.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Map, Value};

use super::auth::Authenticated;
use super::error::ApiError;
use super::info::{channel_attributes, InfoAttributes};
use super::rate_limit::read_quota;
use crate::protocol::channel::validate_name;
use crate::protocol::ChannelType;
use crate::state::SharedState;

/// Lists occupied channels, optionally filtered by prefix, with the requested counts.
pub async fn list(
    State(shared): State<SharedState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    read_quota(&shared, &auth.app).await?;
    let prefix = auth.param("filter_by_prefix");
    let prefix = prefix.as_deref().unwrap_or("");
    let info = InfoAttributes::parse_for_trigger(auth.param("info").as_deref().unwrap_or(""))?;
    if info.user_count && !prefix.starts_with("presence-") {
        return Err(ApiError::BadRequest(
            "info=user_count needs filter_by_prefix=presence-".into(),
        ));
    }
    let mut channels = Map::new();
    for summary in shared.cluster().channels(&auth.app, prefix).await? {
        let attributes = channel_attributes(&summary.name, Some(&summary), &info);
        channels.insert(summary.name.to_string(), Value::Object(attributes));
    }
    Ok(Json(json!({ "channels": channels })))
}

/// One channel's state: `occupied`, plus `user_count`, `subscription_count`, `cache` on request.
pub async fn show(
    State(shared): State<SharedState>,
    Path((_app_id, channel)): Path<(String, String)>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let app = &auth.app;
    read_quota(&shared, app).await?;
    let kind = validate_name(&channel, app.max_channel_name_length)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let info = InfoAttributes::parse_for_channel(auth.param("info").as_deref().unwrap_or(""))?;
    if info.user_count && !kind.is_presence() {
        return Err(ApiError::BadRequest(
            "user_count is only available for presence channels".into(),
        ));
    }
    if info.cache && !kind.cached {
        return Err(ApiError::BadRequest(
            "cache is only available for cache channels".into(),
        ));
    }
    let summary = shared.cluster().channel(app, &channel).await?;
    let mut body = Map::new();
    body.insert("occupied".into(), json!(summary.is_some()));
    if summary.is_some() {
        body.extend(channel_attributes(&channel, summary.as_ref(), &info));
    }
    if info.cache {
        let cache = shared
            .cluster()
            .cached(app, &channel)
            .await?
            .map(|cached| json!({ "data": cached.data(), "ttl": cached.ttl().as_secs() }));
        body.insert("cache".into(), cache.unwrap_or(Value::Null));
    }
    Ok(Json(Value::Object(body)))
}

/// The user ids of a presence channel.
pub async fn users(
    State(shared): State<SharedState>,
    Path((_app_id, channel)): Path<(String, String)>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    read_quota(&shared, &auth.app).await?;
    validate_name(&channel, auth.app.max_channel_name_length)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if !ChannelType::of(&channel).is_presence() {
        return Err(ApiError::BadRequest(
            "users are only available for presence channels".into(),
        ));
    }
    let users: Vec<Value> = shared
        .cluster()
        .users(&auth.app, &channel)
        .await?
        .iter()
        .map(|id| json!({ "id": &**id }))
        .collect();
    Ok(Json(json!({ "users": users })))
}

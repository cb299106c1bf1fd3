//! The `info` attributes of channel queries and triggers.

use serde_json::{json, Map, Value};

use super::error::ApiError;
use crate::cluster::ChannelSummary;
use crate::protocol::ChannelType;

/// Which attributes a request asked for.
#[derive(Default, Debug, Clone, Copy)]
pub struct InfoAttributes {
    /// `user_count` (presence channels only).
    pub user_count: bool,
    /// `subscription_count`.
    pub subscription_count: bool,
    /// `cache` (single-channel query only).
    pub cache: bool,
}

impl InfoAttributes {
    fn parse(text: &str, allow_cache: bool) -> Result<InfoAttributes, ApiError> {
        let mut info = InfoAttributes::default();
        for attribute in text.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match attribute {
                "user_count" => info.user_count = true,
                "subscription_count" => info.subscription_count = true,
                "cache" if allow_cache => info.cache = true,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown info attribute {other:?}"
                    )))
                }
            }
        }
        Ok(info)
    }

    /// `info` of a trigger or a channel list: `user_count`, `subscription_count`.
    pub fn parse_for_trigger(text: &str) -> Result<InfoAttributes, ApiError> {
        InfoAttributes::parse(text, false)
    }

    /// `info` of a single-channel query: also `cache`.
    pub fn parse_for_channel(text: &str) -> Result<InfoAttributes, ApiError> {
        InfoAttributes::parse(text, true)
    }
}

/// The requested counts of one channel; `user_count` only where it applies.
pub fn channel_attributes(
    channel: &str,
    summary: Option<&ChannelSummary>,
    info: &InfoAttributes,
) -> Map<String, Value> {
    let mut attributes = Map::new();
    if info.user_count && ChannelType::of(channel).is_presence() {
        attributes.insert(
            "user_count".into(),
            json!(summary.and_then(|s| s.user_count).unwrap_or(0)),
        );
    }
    if info.subscription_count {
        attributes.insert(
            "subscription_count".into(),
            json!(summary.map_or(0, |s| s.subscription_count)),
        );
    }
    attributes
}

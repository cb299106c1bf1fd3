//! Server-to-client frames, serialized once into text.
//!
//! Internal events carry `data` as a JSON-encoded string (PROTOCOL.md rule 3); errors, pongs and
//! sign-in success carry objects, as the official clients expect.

use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::codes::{SocketError, SubscriptionError};
use super::SocketId;

#[derive(Serialize)]
struct Frame<'a, D: Serialize> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: D,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

fn frame<D: Serialize>(event: &str, channel: Option<&str>, data: D) -> String {
    let frame = Frame {
        event,
        channel,
        data,
        user_id: None,
    };
    // Serializing plain strings and maps into a String cannot fail.
    serde_json::to_string(&frame).expect("frame serializes")
}

/// `pusher:connection_established` with the socket id and activity timeout (seconds, > 0).
pub fn connection_established(socket_id: SocketId, activity_timeout_secs: u64) -> String {
    let data =
        json!({"socket_id": socket_id.to_string(), "activity_timeout": activity_timeout_secs});
    frame("pusher:connection_established", None, data.to_string())
}

/// `pusher:error` with the error's code (or null) and message.
pub fn error(err: &SocketError) -> String {
    let data = json!({"code": err.code(), "message": err.to_string()});
    frame("pusher:error", None, data)
}

/// `pusher:pong`, the answer to `pusher:ping`.
pub fn pong() -> String {
    frame("pusher:pong", None, json!({}))
}

/// `pusher_internal:subscription_succeeded`; `data` is the presence snapshot or `{}`.
pub fn subscription_succeeded(channel: &str, data: &str) -> String {
    frame(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        data,
    )
}

/// Channel-scoped `pusher:subscription_error` with `{type, error, status}`.
pub fn subscription_error(channel: &str, err: &SubscriptionError) -> String {
    let data = json!({"type": err.kind(), "error": err.to_string(), "status": err.status()});
    frame("pusher:subscription_error", Some(channel), data)
}

/// `pusher_internal:member_added` for the other members of a presence channel.
pub fn member_added(channel: &str, user_id: &str, user_info: Option<&RawValue>) -> String {
    let data = json!({"user_id": user_id, "user_info": user_info});
    frame(
        "pusher_internal:member_added",
        Some(channel),
        data.to_string(),
    )
}

/// `pusher_internal:member_removed` for the other members of a presence channel.
pub fn member_removed(channel: &str, user_id: &str) -> String {
    let data = json!({ "user_id": user_id });
    frame(
        "pusher_internal:member_removed",
        Some(channel),
        data.to_string(),
    )
}

/// `pusher_internal:subscription_count` with the channel's socket count.
pub fn subscription_count(channel: &str, count: usize) -> String {
    let data = json!({ "subscription_count": count });
    frame(
        "pusher_internal:subscription_count",
        Some(channel),
        data.to_string(),
    )
}

/// `pusher:cache_miss` with `data: "{}"` (Java's `getData()` throws on a missing `data`).
pub fn cache_miss(channel: &str) -> String {
    frame("pusher:cache_miss", Some(channel), "{}")
}

/// `pusher:signin_success` carrying the signed `user_data` string.
pub fn signin_success(user_data: &str) -> String {
    frame(
        "pusher:signin_success",
        None,
        json!({ "user_data": user_data }),
    )
}

/// `pusher_internal:watchlist_events` telling of watched users that went `online` (true) or
/// `offline`; `data` is a JSON string, as pusher-js reads every internal event's.
pub fn watchlist_events<'a>(changes: impl IntoIterator<Item = (bool, &'a str)>) -> String {
    let (mut online, mut offline) = (Vec::new(), Vec::new());
    for (is_online, user) in changes {
        match is_online {
            true => online.push(user),
            false => offline.push(user),
        }
    }
    // pusher-js hands every event to the app's bindings: none goes out without ids.
    let events: Vec<_> = [("online", online), ("offline", offline)]
        .into_iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(name, ids)| json!({ "name": name, "user_ids": ids }))
        .collect();
    frame(
        "pusher_internal:watchlist_events",
        None,
        json!({ "events": events }).to_string(),
    )
}

/// An app event published through the REST API: `data` is the publisher's string, untouched.
pub fn channel_event(event: &str, channel: &str, data: &str) -> String {
    frame(event, Some(channel), data)
}

/// A relayed client event: `data` exactly as the client sent it, `user_id` on presence channels.
pub fn client_event(event: &str, channel: &str, data: &RawValue, user_id: Option<&str>) -> String {
    let frame = Frame {
        event,
        channel: Some(channel),
        data,
        user_id,
    };
    serde_json::to_string(&frame).expect("frame serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn connection_established_has_string_data() {
        let id: SocketId = "1.2".parse().unwrap();
        let v = parse(&connection_established(id, 120));
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["socket_id"], "1.2");
        assert_eq!(data["activity_timeout"], 120);
    }

    #[test]
    fn errors_carry_numeric_or_null_codes() {
        let v = parse(&error(&SocketError::UnknownApp("k".into())));
        assert_eq!(v["data"]["code"], 4001);
        let v = parse(&error(&SocketError::MalformedMessage("x".into())));
        assert!(v["data"]["code"].is_null());
    }

    #[test]
    fn client_event_keeps_data_verbatim() {
        let data = RawValue::from_string(r#"{"b":1, "a":2}"#.into()).unwrap();
        let text = client_event("client-x", "presence-r", &data, Some("7"));
        assert_eq!(
            text,
            r#"{"event":"client-x","channel":"presence-r","data":{"b":1, "a":2},"user_id":"7"}"#
        );
    }

    #[test]
    fn internal_events_stringify_data() {
        let v = parse(&member_removed("presence-r", "7"));
        assert_eq!(v["data"], r#"{"user_id":"7"}"#);
        let v = parse(&cache_miss("cache-x"));
        assert_eq!(v["data"], "{}");
    }
}

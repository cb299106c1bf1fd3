//! Client-to-server frames, parsed once into [`ClientMessage`].

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::codes::SocketError;

/// One parsed client frame.
#[derive(Debug)]
pub enum ClientMessage {
    /// `pusher:ping`, with or without `data` (pusher-websocket-java sends none).
    Ping,
    /// `pusher:pong`, an answer to a server `pusher:ping`.
    Pong,
    /// `pusher:subscribe`.
    Subscribe(SubscribeRequest),
    /// `pusher:unsubscribe`.
    Unsubscribe { channel: String },
    /// `pusher:signin`.
    Signin(SigninRequest),
    /// A `client-*` event to relay.
    ClientEvent {
        event: String,
        channel: String,
        data: Box<RawValue>,
    },
}

/// The `data` of `pusher:subscribe`.
#[derive(Debug, Deserialize)]
pub struct SubscribeRequest {
    /// The channel to join.
    pub channel: String,
    /// `app_key:signature`; optional on public and `#server-to-user-` channels.
    #[serde(default)]
    pub auth: Option<String>,
    /// Presence member data: a JSON string, signed byte for byte.
    #[serde(default)]
    pub channel_data: Option<String>,
}

/// The `data` of `pusher:signin`.
#[derive(Debug, Deserialize)]
pub struct SigninRequest {
    /// `app_key:signature` over `socket_id::user::user_data`.
    pub auth: String,
    /// The user object as a JSON string, signed byte for byte.
    pub user_data: String,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    event: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct UnsubscribeData {
    channel: String,
}

fn malformed(why: impl Into<String>) -> SocketError {
    SocketError::MalformedMessage(why.into())
}

/// Reads a `pusher:*` event's `data`, which clients send as an object or as a JSON string.
fn event_data<T: DeserializeOwned>(event: &str, raw: Option<&RawValue>) -> Result<T, SocketError> {
    let raw = raw.ok_or_else(|| malformed(format!("{event} needs a data object")))?;
    let parsed = match serde_json::from_str::<String>(raw.get()) {
        Ok(inner) => serde_json::from_str(&inner),
        Err(_) => serde_json::from_str(raw.get()),
    };
    parsed.map_err(|e| malformed(format!("invalid data for {event}: {e}")))
}

impl ClientMessage {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<ClientMessage, SocketError> {
        let envelope: Envelope<'_> = serde_json::from_str(text)
            .map_err(|e| malformed(format!("expected a JSON object with an event: {e}")))?;
        let event = envelope.event;
        match event.as_str() {
            "pusher:ping" => Ok(ClientMessage::Ping),
            "pusher:pong" => Ok(ClientMessage::Pong),
            "pusher:subscribe" => Ok(ClientMessage::Subscribe(event_data(&event, envelope.data)?)),
            "pusher:unsubscribe" => {
                let data: UnsubscribeData = event_data(&event, envelope.data)?;
                Ok(ClientMessage::Unsubscribe {
                    channel: data.channel,
                })
            }
            "pusher:signin" => Ok(ClientMessage::Signin(event_data(&event, envelope.data)?)),
            _ if event.starts_with("client-") => {
                let channel = envelope
                    .channel
                    .ok_or_else(|| malformed(format!("client event {event} has no channel")))?;
                let data = envelope
                    .data
                    .map(|raw| raw.to_owned())
                    .unwrap_or_else(|| RawValue::from_string("null".into()).expect("valid JSON"));
                Ok(ClientMessage::ClientEvent {
                    event,
                    channel,
                    data,
                })
            }
            _ => Err(SocketError::UnknownEvent(event)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_without_data() {
        assert!(matches!(
            ClientMessage::parse(r#"{"event":"pusher:ping"}"#),
            Ok(ClientMessage::Ping)
        ));
    }

    #[test]
    fn parses_subscribe_object_and_string_data() {
        let obj = r#"{"event":"pusher:subscribe","data":{"auth":"","channel":"c"}}"#;
        let Ok(ClientMessage::Subscribe(s)) = ClientMessage::parse(obj) else {
            panic!("not a subscribe")
        };
        assert_eq!(s.channel, "c");
        let text = r#"{"event":"pusher:subscribe","data":"{\"channel\":\"d\"}"}"#;
        let Ok(ClientMessage::Subscribe(s)) = ClientMessage::parse(text) else {
            panic!("not a subscribe")
        };
        assert_eq!(s.channel, "d");
        assert_eq!(s.auth, None);
    }

    #[test]
    fn client_event_keeps_raw_data() {
        let text = r#"{"event":"client-x","channel":"private-a","data":"plain"}"#;
        let Ok(ClientMessage::ClientEvent { data, .. }) = ClientMessage::parse(text) else {
            panic!("not a client event")
        };
        assert_eq!(data.get(), r#""plain""#);
    }

    #[test]
    fn rejects_garbage_and_unknown_events() {
        assert!(matches!(
            ClientMessage::parse("not json"),
            Err(SocketError::MalformedMessage(_))
        ));
        assert!(matches!(
            ClientMessage::parse(r#"{"event":"pusher:nope"}"#),
            Err(SocketError::UnknownEvent(_))
        ));
        assert!(matches!(
            ClientMessage::parse(r#"{"event":"pusher:subscribe"}"#),
            Err(SocketError::MalformedMessage(_))
        ));
    }
}

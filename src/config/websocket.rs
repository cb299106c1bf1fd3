//! Sockudo's `websocket` block, mapped onto Herald's own bounds: never refused. The queue bounds
//! (`max_messages`, `max_bytes`, `max_backpressure`) bound a socket's outbound queue together
//! with `outbound_buffer_kb` (the tightest wins), `disconnect_on_buffer_full` picks what
//! happens to a slow consumer, and the inbound caps (`max_message_size`, `max_frame_size`)
//! join `websocket_max_payload_kb` (the smallest wins). A key that is absent bounds nothing.

use serde::Deserialize;

use super::lenient;

/// The `websocket` block as written.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawWebSocket {
    #[serde(deserialize_with = "lenient::opt")]
    pub max_messages: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_bytes: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_backpressure: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub disconnect_on_buffer_full: Option<bool>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_message_size: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_frame_size: Option<u64>,
}

/// What a socket's outbound queue may hold, and what happens to a frame past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboundLimits {
    /// Unsent bytes (`outbound_buffer_kb`, `websocket.max_bytes`, `websocket.max_backpressure`).
    pub bytes: usize,
    /// Unsent frames (`websocket.max_messages`); `None` counts none.
    pub frames: Option<usize>,
    /// Past a bound, drop the frame that does not fit and keep the socket
    /// (`websocket.disconnect_on_buffer_full: false`), instead of closing it with 4100.
    pub drop_when_full: bool,
}

/// Herald's outbound bounds tightened by the `websocket` block.
pub(super) fn outbound_limits(herald_bytes: usize, raw: &RawWebSocket) -> OutboundLimits {
    let positive = |value: Option<u64>| value.filter(|v| *v > 0).map(|v| v as usize);
    let bytes = [positive(raw.max_bytes), positive(raw.max_backpressure)]
        .into_iter()
        .flatten()
        .fold(herald_bytes, usize::min);
    OutboundLimits {
        bytes,
        frames: positive(raw.max_messages),
        drop_when_full: raw.disconnect_on_buffer_full == Some(false),
    }
}

/// The largest inbound message: `websocket_max_payload_kb` tightened by the block's caps.
pub(super) fn inbound_limit(herald_bytes: usize, raw: &RawWebSocket) -> usize {
    [raw.max_message_size, raw.max_frame_size]
        .into_iter()
        .flatten()
        .filter(|v| *v > 0)
        .fold(herald_bytes, |limit, cap| limit.min(cap as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tightest_bound_wins_and_absent_keys_bound_nothing() {
        let none = RawWebSocket::default();
        let herald = outbound_limits(1 << 20, &none);
        assert_eq!(
            herald,
            OutboundLimits {
                bytes: 1 << 20,
                frames: None,
                drop_when_full: false
            }
        );
        let sockudo = RawWebSocket {
            max_messages: Some(1000),
            max_bytes: Some(4 << 20),
            max_backpressure: Some(512 << 10),
            disconnect_on_buffer_full: Some(false),
            max_message_size: Some(64 << 20),
            max_frame_size: Some(16 << 10),
        };
        let tightened = outbound_limits(1 << 20, &sockudo);
        assert_eq!(
            tightened,
            OutboundLimits {
                bytes: 512 << 10,
                frames: Some(1000),
                drop_when_full: true
            }
        );
        assert_eq!(inbound_limit(64 << 10, &none), 64 << 10);
        assert_eq!(inbound_limit(64 << 10, &sockudo), 16 << 10);
    }
}

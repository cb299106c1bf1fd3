//! Sockudo's `websocket` block, mapped onto Herald's own bounds: never refused. The queue bounds
//! (`max_messages`, `max_bytes`, `max_backpressure`) bound a socket's outbound queue together
//! with `outbound_buffer_kb` (the tightest wins), `disconnect_on_buffer_full` picks what
//! happens to a slow consumer, and the inbound caps (`max_message_size`, `max_frame_size`)
//! join `websocket_max_payload_kb` (the smallest wins). A key that is absent bounds nothing.

use serde::Deserialize;

use super::{lenient, ConfigError};

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
    #[serde(deserialize_with = "lenient::opt_string")]
    pub compression: Option<String>,
    /// Herald's: frames smaller than this go uncompressed.
    #[serde(deserialize_with = "lenient::opt")]
    pub compression_threshold_bytes: Option<u64>,
}

/// `permessage-deflate` as `websocket.compression` allows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompressionConfig {
    /// Negotiate it with clients that offer it; broadcasts are compressed once for all of them.
    pub enabled: bool,
    /// Frames with a smaller payload go uncompressed (`websocket.compression_threshold_bytes`).
    pub threshold: usize,
    /// Set when the configured mode runs as `"shared"`: the start-up warning that says so.
    pub runs_as_shared: Option<String>,
}

impl CompressionConfig {
    /// The smallest payload a broadcast is compressed from, when compression is on.
    pub fn compress_above(&self) -> Option<usize> {
        self.enabled.then_some(self.threshold)
    }
}

/// The smallest `compression_threshold_bytes` accepted: below it deflate's framing costs more
/// than it saves on a typical event.
const MIN_THRESHOLD: u64 = 256;

/// `websocket.compression` (Sockudo's values) and `websocket.compression_threshold_bytes`.
pub(super) fn compression(raw: &RawWebSocket) -> Result<CompressionConfig, ConfigError> {
    let threshold = match raw.compression_threshold_bytes {
        None => 1024,
        Some(bytes) if bytes >= MIN_THRESHOLD => bytes as usize,
        Some(bytes) => {
            return Err(ConfigError::invalid(
                "websocket.compression_threshold_bytes",
                format!("{bytes} is below the minimum of {MIN_THRESHOLD} bytes"),
            ))
        }
    };
    // Sockudo's default is "disabled"; Herald's is "shared": measured on a 1.5 KiB JSON event,
    // 71% fewer bytes on the wire for no measurable server CPU (benches/BASELINE.md).
    let mode = raw.compression.as_deref().unwrap_or("shared");
    let (enabled, runs_as_shared) = match mode.to_ascii_lowercase().as_str() {
        "disabled" => (false, None),
        "shared" => (true, None),
        "dedicated" | "window256b" | "window1kb" | "window2kb" | "window4kb" | "window8kb"
        | "window16kb" | "window32kb" => (
            true,
            Some(format!(
                "websocket.compression \"{mode}\" runs as \"shared\": each broadcast is compressed once, without context between messages, for every socket that negotiated permessage-deflate"
            )),
        ),
        _ => {
            return Err(ConfigError::invalid(
                "websocket.compression",
                format!(
                    "{mode:?} is not one of \"disabled\", \"shared\", \"dedicated\", \"window256b\" ... \"window32kb\""
                ),
            ))
        }
    };
    Ok(CompressionConfig {
        enabled,
        threshold,
        runs_as_shared,
    })
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
            ..RawWebSocket::default()
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

    fn compression_of(
        mode: Option<&str>,
        threshold: Option<u64>,
    ) -> Result<CompressionConfig, ConfigError> {
        compression(&RawWebSocket {
            compression: mode.map(str::to_owned),
            compression_threshold_bytes: threshold,
            ..RawWebSocket::default()
        })
    }

    #[test]
    fn compression_modes_are_sockudos_and_every_other_value_is_refused() {
        let default = compression_of(None, None).unwrap();
        assert_eq!(
            (default.compress_above(), default.runs_as_shared),
            (Some(1024), None)
        );
        let off = compression_of(Some("disabled"), None).unwrap();
        assert_eq!((off.enabled, off.compress_above()), (false, None));
        let shared = compression_of(Some("shared"), Some(256)).unwrap();
        assert_eq!(
            (shared.compress_above(), shared.runs_as_shared),
            (Some(256), None)
        );
        for mode in ["dedicated", "Window32KB", "window256b"] {
            let config = compression_of(Some(mode), None).unwrap();
            assert!(config.enabled, "{mode}");
            assert!(config.runs_as_shared.unwrap().contains(mode));
        }
        assert!(!compression_of(Some("Disabled"), None).unwrap().enabled);
        let error = compression_of(Some("gzip"), None).unwrap_err();
        assert_eq!(error.path, "websocket.compression");
        let error = compression_of(Some("shared"), Some(255)).unwrap_err();
        assert_eq!(error.path, "websocket.compression_threshold_bytes");
    }
}

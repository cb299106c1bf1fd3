//! Errors sent to a socket, each mapped to its Pusher code and whether it closes the connection.

use std::fmt;

/// An error the server reports on a connection as `pusher:error`, sometimes followed by a close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketError {
    /// 4000: this port speaks plain WebSocket but the server wants TLS: pusher-js switches to
    /// `wss://`.
    TlsRequired,
    /// 4001: no app has this key.
    UnknownApp(String),
    /// 4003: the app exists but `enabled` is false.
    AppDisabled,
    /// 4004: the app already has `max_connections` sockets.
    OverQuota,
    /// 4004: the server already has its process-wide `max_connections` sockets.
    ServerFull,
    /// 4005: the upgrade path is not `/app/{key}`.
    PathNotFound(String),
    /// 4006: the `version` query parameter does not parse.
    InvalidVersion(String),
    /// 4007: a `protocol` outside 5..=7.
    UnsupportedProtocol(String),
    /// 4009: sign-in failed or timed out, or the user's connections were terminated.
    Unauthorized(String),
    /// 4009: the app's decision hook refused the connection (the reason, as it gave it).
    RefusedByHook(String),
    /// 4009: the page's `Origin` is not in the app's `allowed_origins` (pusher-js does not
    /// reconnect).
    OriginNotAllowed,
    /// 4100: the app's decision hook could not decide and refuses: retry after a back-off.
    /// The client is told no more (why it failed names the hook's backend: the log has it).
    HookUnavailable,
    /// 4100: the outbound queue overflowed (slow consumer); the client backs off and reconnects.
    OverCapacity,
    /// 4100: the app database cannot be reached and the key is not known here: the client
    /// backs off and reconnects (4001 would make it give up on a key that may exist).
    AppsUnavailable,
    /// 4200: the server is shutting down; the client reconnects at once.
    ServerShutdown,
    /// 4201: nothing answered the liveness ping in time.
    PongTimeout,
    /// 4301: client events sent faster than the app allows; the socket stays open.
    ClientEventRateLimited,
    /// 4301: messages sent faster than the app's `message_rate_limit`; dropped, the socket
    /// stays open.
    MessageRateLimited,
    /// 4301, and the connection closes: over a rate limit of an app that asked for
    /// `terminate_on_limit`.
    RateLimitClosed,
    /// 4302: the sign-in's watchlist has more than 100 ids; the first 100 are watched and the
    /// socket stays open.
    WatchlistLimit,
    /// `code: null`: a frame that is not JSON or lacks an `event`.
    MalformedMessage(String),
    /// `code: null`: an unknown `pusher:` event.
    UnknownEvent(String),
    /// `code: null`: a client event that breaks a rule (channel type, size, disabled).
    ClientEventRejected(String),
    /// `code: null`: a client event the app's decision hook refused (the reason, as it gave it).
    ClientEventRefused(String),
}

impl SocketError {
    /// The Pusher error code, `None` for errors Pusher reports with `code: null`.
    pub fn code(&self) -> Option<u16> {
        match self {
            SocketError::TlsRequired => Some(4000),
            SocketError::UnknownApp(_) => Some(4001),
            SocketError::AppDisabled => Some(4003),
            SocketError::OverQuota | SocketError::ServerFull => Some(4004),
            SocketError::PathNotFound(_) => Some(4005),
            SocketError::InvalidVersion(_) => Some(4006),
            SocketError::UnsupportedProtocol(_) => Some(4007),
            SocketError::Unauthorized(_)
            | SocketError::RefusedByHook(_)
            | SocketError::OriginNotAllowed => Some(4009),
            SocketError::OverCapacity
            | SocketError::HookUnavailable
            | SocketError::AppsUnavailable => Some(4100),
            SocketError::ServerShutdown => Some(4200),
            SocketError::PongTimeout => Some(4201),
            SocketError::ClientEventRateLimited
            | SocketError::MessageRateLimited
            | SocketError::RateLimitClosed => Some(4301),
            SocketError::WatchlistLimit => Some(4302),
            SocketError::MalformedMessage(_)
            | SocketError::UnknownEvent(_)
            | SocketError::ClientEventRejected(_)
            | SocketError::ClientEventRefused(_) => None,
        }
    }

    /// The WebSocket close code to close with after the error frame, if the error is fatal.
    ///
    /// 43xx errors close only when the app asked for it (`terminate_on_limit`): pusher-js
    /// does not reconnect after one.
    pub fn close_code(&self) -> Option<u16> {
        match (self, self.code()) {
            (SocketError::RateLimitClosed, code) => code,
            (_, Some(code)) if code < 4300 => Some(code),
            _ => None,
        }
    }
}

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketError::TlsRequired => f.write_str("Use the TLS port (wss://)"),
            SocketError::UnknownApp(key) => write!(f, "App key {key} does not exist"),
            SocketError::AppDisabled => f.write_str("Application is disabled"),
            SocketError::OverQuota => f.write_str("Application is over connection quota"),
            SocketError::ServerFull => f.write_str("Server is over its connection limit"),
            SocketError::PathNotFound(path) => write!(f, "Path not found: {path}"),
            SocketError::InvalidVersion(v) => write!(f, "Invalid version string format: {v:?}"),
            SocketError::UnsupportedProtocol(p) => {
                write!(
                    f,
                    "Unsupported protocol version: {p:?} (supported: 5, 6, 7)"
                )
            }
            SocketError::Unauthorized(why) => write!(f, "Connection is unauthorized: {why}"),
            SocketError::RefusedByHook(reason) | SocketError::ClientEventRefused(reason) => {
                f.write_str(reason)
            }
            SocketError::HookUnavailable => f.write_str(HOOK_UNAVAILABLE),
            SocketError::AppsUnavailable => {
                f.write_str("The app database is unavailable; reconnect later")
            }
            SocketError::OverCapacity => {
                f.write_str("Over capacity: the client is not reading its messages fast enough")
            }
            SocketError::ServerShutdown => f.write_str("Server is shutting down; reconnect"),
            SocketError::PongTimeout => f.write_str("Pong reply not received"),
            SocketError::ClientEventRateLimited => {
                f.write_str("Client event rejected due to rate limit")
            }
            SocketError::MessageRateLimited => f.write_str("Message rejected due to rate limit"),
            SocketError::RateLimitClosed => {
                f.write_str("Rate limit exceeded; the connection is closed")
            }
            SocketError::OriginNotAllowed => f.write_str("Origin not allowed"),
            SocketError::WatchlistLimit => {
                f.write_str("Watchlist limit exceeded: only the first 100 user ids are watched")
            }
            SocketError::MalformedMessage(why) => write!(f, "Malformed message: {why}"),
            SocketError::UnknownEvent(event) => write!(f, "Unsupported event: {event}"),
            SocketError::ClientEventRejected(why) => write!(f, "Client event rejected: {why}"),
        }
    }
}

/// Why a subscription was refused, sent as channel-scoped `pusher:subscription_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionError {
    /// Missing or wrong `auth` signature, or `#server-to-user-` for another user.
    Auth(String),
    /// The app's decision hook refused it (the reason, as it gave it).
    Refused(String),
    /// The channel name breaks the naming rules.
    InvalidChannel(String),
    /// `channel_data` is missing or not the expected JSON.
    InvalidChannelData(String),
    /// The presence channel already has `max_presence_members_per_channel` members.
    MembersLimit(usize),
    /// The member's `user_info` is over `max_presence_member_size_in_kb`.
    MemberTooLarge { size: usize, max: usize },
    /// The connection is already in `channel_limits.max_channels_per_connection` channels.
    TooManyChannels(usize),
    /// The cluster's shared state (Redis) cannot be reached; retrying later can succeed.
    Unavailable(String),
}

/// What a client is told when the app's decision hook could not decide: nothing of why.
pub const HOOK_UNAVAILABLE: &str = "The app's decision hook could not decide; retry later";

impl SubscriptionError {
    /// The `type` field pusher-js and Laravel Echo listeners see.
    pub fn kind(&self) -> &'static str {
        match self {
            SubscriptionError::Auth(_) | SubscriptionError::Refused(_) => "AuthError",
            SubscriptionError::InvalidChannel(_) | SubscriptionError::InvalidChannelData(_) => {
                "InvalidChannel"
            }
            SubscriptionError::MembersLimit(_)
            | SubscriptionError::MemberTooLarge { .. }
            | SubscriptionError::TooManyChannels(_) => "LimitReached",
            SubscriptionError::Unavailable(_) => "ServerUnavailable",
        }
    }

    /// The `status` field: an HTTP-like status for auth, the Pusher code for limits (as soketi).
    pub fn status(&self) -> u16 {
        match self {
            SubscriptionError::Auth(_) => 401,
            SubscriptionError::Refused(_) => 403,
            SubscriptionError::InvalidChannel(_) | SubscriptionError::InvalidChannelData(_) => 4009,
            SubscriptionError::MembersLimit(_) | SubscriptionError::TooManyChannels(_) => 4100,
            SubscriptionError::MemberTooLarge { .. } => 4301,
            SubscriptionError::Unavailable(_) => 503,
        }
    }
}

impl fmt::Display for SubscriptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionError::Auth(why) => write!(f, "The connection is unauthorized: {why}"),
            SubscriptionError::Refused(reason) => f.write_str(reason),
            SubscriptionError::InvalidChannel(why) => write!(f, "Invalid channel: {why}"),
            SubscriptionError::InvalidChannelData(why) => write!(f, "Invalid channel_data: {why}"),
            SubscriptionError::Unavailable(why) => write!(f, "Service unavailable: {why}"),
            SubscriptionError::MembersLimit(max) => {
                write!(
                    f,
                    "The maximum number of presence members ({max}) is reached"
                )
            }
            SubscriptionError::TooManyChannels(max) => {
                write!(
                    f,
                    "This connection is already subscribed to the maximum of {max} channels"
                )
            }
            SubscriptionError::MemberTooLarge { size, max } => write!(
                f,
                "The presence member data is {size} bytes, over the limit of {max} bytes"
            ),
        }
    }
}

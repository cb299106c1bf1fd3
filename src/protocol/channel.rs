//! Channel names: the allowed characters, the length limit and the type a prefix gives.

/// What a channel's prefix makes it, for auth and client-event rules.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChannelKind {
    /// No prefix (or `cache-`): anyone may subscribe.
    Public,
    /// `private-` (and `private-cache-`): signed `socket_id:channel`.
    Private,
    /// `private-encrypted-`: signed like private; payloads are opaque and client events refused.
    PrivateEncrypted,
    /// `presence-` (and `presence-cache-`): signed with `channel_data`, member tracking.
    Presence,
    /// `#server-to-user-{id}`: only for a connection signed in as `{id}`.
    ServerToUser,
    /// `#user:{id}`: Herald's own, never named by a client. Every connection signed in as
    /// `{id}` is in it, so its occupancy is the user's online status (watchlists, the
    /// `user_online` / `user_offline` webhooks) and its subscription count their connections.
    User,
}

/// A channel's kind plus whether it keeps the last event (cache channels).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChannelType {
    /// The prefix-derived kind.
    pub kind: ChannelKind,
    /// True for `cache-`, `private-cache-`, `private-encrypted-cache-` and `presence-cache-`.
    pub cached: bool,
}

/// Prefix of the channel pusher-js subscribes to after sign-in.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// Prefix of a user's own channel ([`ChannelKind::User`]).
pub const USER_CHANNEL_PREFIX: &str = "#user:";

/// The channel whose occupancy is `user_id`'s online status.
pub fn user_channel(user_id: &str) -> String {
    format!("{USER_CHANNEL_PREFIX}{user_id}")
}

/// The user whose status a [`ChannelKind::User`] channel is.
pub fn user_of_channel(name: &str) -> Option<&str> {
    name.strip_prefix(USER_CHANNEL_PREFIX)
}

impl ChannelType {
    /// Classifies a name by its longest matching prefix.
    pub fn of(name: &str) -> ChannelType {
        let (kind, rest) = if let Some(rest) = name.strip_prefix("private-encrypted-") {
            (ChannelKind::PrivateEncrypted, rest)
        } else if let Some(rest) = name.strip_prefix("private-") {
            (ChannelKind::Private, rest)
        } else if let Some(rest) = name.strip_prefix("presence-") {
            (ChannelKind::Presence, rest)
        } else if name.starts_with(SERVER_TO_USER_PREFIX) {
            (ChannelKind::ServerToUser, "")
        } else if name.starts_with(USER_CHANNEL_PREFIX) {
            (ChannelKind::User, "")
        } else {
            (ChannelKind::Public, name)
        };
        ChannelType {
            kind,
            cached: rest.starts_with("cache-"),
        }
    }

    /// Whether subscribing needs an `auth` signature.
    pub fn needs_auth(self) -> bool {
        matches!(
            self.kind,
            ChannelKind::Private | ChannelKind::PrivateEncrypted | ChannelKind::Presence
        )
    }

    /// Whether clients may send `client-*` events on this channel.
    pub fn allows_client_events(self) -> bool {
        matches!(self.kind, ChannelKind::Private | ChannelKind::Presence)
    }

    /// Whether this is a presence channel.
    pub fn is_presence(self) -> bool {
        self.kind == ChannelKind::Presence
    }

    /// Whether this is a user's own channel, which no client sees (no reply, not listed).
    pub fn is_user(self) -> bool {
        self.kind == ChannelKind::User
    }
}

/// Why a channel name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelNameError {
    /// Empty name.
    #[error("channel name is empty")]
    Empty,
    /// Longer than the app's `max_channel_name_length`.
    #[error("channel name is {len} characters long, over the limit of {max}")]
    TooLong { len: usize, max: usize },
    /// A character outside `[A-Za-z0-9_\-=@,.;:]`.
    #[error("channel name {0:?} has characters outside [A-Za-z0-9_-=@,.;:]")]
    BadCharacters(String),
}

/// Pusher's characters, and `:` as Sockudo allows it: its channel namespaces (`chat:room`)
/// are named by it.
fn allowed_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';' | b':')
}

/// Checks a channel name against the Pusher rules and the app's length limit.
pub fn validate_name(name: &str, max_len: usize) -> Result<ChannelType, ChannelNameError> {
    if name.is_empty() {
        return Err(ChannelNameError::Empty);
    }
    if name.len() > max_len {
        return Err(ChannelNameError::TooLong {
            len: name.len(),
            max: max_len,
        });
    }
    // `#` is reserved for server channels; only the server-to-user one exists.
    let body = name.strip_prefix(SERVER_TO_USER_PREFIX).unwrap_or(name);
    if body.is_empty() || !body.bytes().all(allowed_char) {
        return Err(ChannelNameError::BadCharacters(name.to_owned()));
    }
    Ok(ChannelType::of(name))
}

/// The user id of a `#server-to-user-{id}` channel.
pub fn server_to_user_id(name: &str) -> Option<&str> {
    name.strip_prefix(SERVER_TO_USER_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str) -> (ChannelKind, bool) {
        let t = ChannelType::of(name);
        (t.kind, t.cached)
    }

    #[test]
    fn classifies_by_longest_prefix() {
        assert_eq!(kind("chat"), (ChannelKind::Public, false));
        assert_eq!(kind("cache-chat"), (ChannelKind::Public, true));
        assert_eq!(kind("private-chat"), (ChannelKind::Private, false));
        assert_eq!(kind("private-cache-x"), (ChannelKind::Private, true));
        assert_eq!(
            kind("private-encrypted-x"),
            (ChannelKind::PrivateEncrypted, false)
        );
        assert_eq!(
            kind("private-encrypted-cache-x"),
            (ChannelKind::PrivateEncrypted, true)
        );
        assert_eq!(kind("presence-room"), (ChannelKind::Presence, false));
        assert_eq!(kind("presence-cache-room"), (ChannelKind::Presence, true));
        assert_eq!(
            kind("#server-to-user-42"),
            (ChannelKind::ServerToUser, false)
        );
        // Prefixes are anchored, unlike soketi's regexes.
        assert_eq!(kind("foo-private-x"), (ChannelKind::Public, false));
    }

    #[test]
    fn validates_characters_and_length() {
        assert!(validate_name("foo-bar_1234@=,.;", 200).is_ok());
        assert!(validate_name("#server-to-user-42", 200).is_ok());
        assert_eq!(kind("#user:42"), (ChannelKind::User, false));
        assert!(
            validate_name("#user:42", 200).is_err(),
            "a client never names a user's channel"
        );
        assert_eq!(user_of_channel(&user_channel("a:b")), Some("a:b"));
        assert_eq!(validate_name("", 200), Err(ChannelNameError::Empty));
        assert!(matches!(
            validate_name("a b", 200),
            Err(ChannelNameError::BadCharacters(_))
        ));
        assert!(matches!(
            validate_name("#other", 200),
            Err(ChannelNameError::BadCharacters(_))
        ));
        assert!(matches!(
            validate_name("#server-to-user-", 200),
            Err(ChannelNameError::BadCharacters(_))
        ));
        assert_eq!(
            validate_name(&"a".repeat(201), 200),
            Err(ChannelNameError::TooLong { len: 201, max: 200 })
        );
        assert!(validate_name(&"a".repeat(200), 200).is_ok());
    }

    #[test]
    fn client_event_rules() {
        assert!(!ChannelType::of("chat").allows_client_events());
        assert!(!ChannelType::of("private-encrypted-x").allows_client_events());
        assert!(ChannelType::of("private-x").allows_client_events());
        assert!(ChannelType::of("presence-cache-x").allows_client_events());
    }
}

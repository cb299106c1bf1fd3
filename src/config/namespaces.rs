//! An app's `channel_namespaces` (Sockudo's `policy.channels.channel_namespaces`): a channel
//! whose name, after its type prefix (`private-`, `presence-`, ...), starts with a namespace's
//! `name` and a `:` (`chat:room-1`, `private-chat:room-1`) must match that namespace's
//! `channel_name_pattern` and `max_channel_name_length`, and clients may be kept from
//! subscribing to it, joining its presence channels, or sending client events on it.

use regex_lite::Regex;
use serde::Deserialize;

use super::{lenient, ConfigError};

/// One namespace as written.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct RawNamespace {
    pub name: Option<String>,
    pub channel_name_pattern: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_channel_name_length: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub allow_subscribe_for_client: Option<bool>,
    #[serde(deserialize_with = "lenient::opt")]
    pub allow_publish_for_client: Option<bool>,
    #[serde(deserialize_with = "lenient::opt")]
    pub allow_presence_for_client: Option<bool>,
}

/// A validated namespace.
#[derive(Clone, Debug)]
struct Namespace {
    name: String,
    pattern: Option<Regex>,
    max_length: Option<usize>,
    subscribe: bool,
    publish: bool,
    presence: bool,
}

/// Two namespaces are the same when written the same (a reload compares apps this way).
impl PartialEq for Namespace {
    fn eq(&self, other: &Namespace) -> bool {
        let pattern = |n: &Namespace| n.pattern.as_ref().map(|p| p.as_str().to_owned());
        (self.name == other.name && pattern(self) == pattern(other))
            && (self.max_length, self.subscribe, self.publish, self.presence)
                == (
                    other.max_length,
                    other.subscribe,
                    other.publish,
                    other.presence,
                )
    }
}

/// An app's namespaces; none configured allows every channel.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChannelNamespaces {
    namespaces: Vec<Namespace>,
}

/// Type prefixes stripped before a channel's namespace is read, longest first.
const TYPE_PREFIXES: [&str; 7] = [
    "private-encrypted-cache-",
    "private-cache-",
    "presence-cache-",
    "cache-",
    "private-encrypted-",
    "presence-",
    "private-",
];

impl ChannelNamespaces {
    /// Validates the namespaces at `path` (regular expressions included).
    pub(super) fn parse(path: &str, raw: Option<&[RawNamespace]>) -> Result<Self, ConfigError> {
        let namespaces = raw.unwrap_or_default().iter().enumerate();
        let namespaces = namespaces.map(|(i, raw)| namespace(&format!("{path}[{i}]"), raw));
        Ok(ChannelNamespaces {
            namespaces: namespaces.collect::<Result<_, _>>()?,
        })
    }

    /// Why a client may not subscribe to `channel`, if it may not.
    pub fn refuse_subscription(&self, channel: &str, presence: bool) -> Option<String> {
        let (namespace, logical) = self.of(channel)?;
        if let Some(refusal) = namespace.refuse_name(channel, logical) {
            return Some(refusal);
        }
        if !namespace.subscribe {
            return Some(format!(
                "clients may not subscribe to namespace {:?}",
                namespace.name
            ));
        }
        if presence && !namespace.presence {
            return Some(format!(
                "clients may not join presence channels of namespace {:?}",
                namespace.name
            ));
        }
        None
    }

    /// Why a client may not send a client event on `channel`, if it may not.
    pub fn refuse_client_event(&self, channel: &str) -> Option<String> {
        let (namespace, _) = self.of(channel)?;
        (!namespace.publish)
            .then(|| format!("clients may not publish on namespace {:?}", namespace.name))
    }

    /// The namespace `channel` belongs to, with its name past the type prefix.
    fn of<'c>(&self, channel: &'c str) -> Option<(&Namespace, &'c str)> {
        if self.namespaces.is_empty() {
            return None;
        }
        let logical = TYPE_PREFIXES
            .iter()
            .find_map(|prefix| channel.strip_prefix(prefix))
            .unwrap_or(channel);
        let (name, _) = logical.split_once(':')?;
        let namespace = self.namespaces.iter().find(|ns| ns.name == name)?;
        Some((namespace, logical))
    }
}

impl Namespace {
    fn refuse_name(&self, channel: &str, logical: &str) -> Option<String> {
        if let Some(max) = self.max_length.filter(|max| channel.len() > *max) {
            return Some(format!(
                "channel names of namespace {:?} are at most {max} characters",
                self.name
            ));
        }
        let pattern = self.pattern.as_ref()?;
        // Sockudo matches the name without its type prefix and its user-limit suffix.
        let matched = logical.split_once('#').map_or(logical, |(base, _)| base);
        (!pattern.is_match(matched)).then(|| {
            format!(
                "channel {channel:?} does not match the pattern of namespace {:?}",
                self.name
            )
        })
    }
}

fn namespace(path: &str, raw: &RawNamespace) -> Result<Namespace, ConfigError> {
    let key = |name: &str| format!("{path}.{name}");
    let name = raw.name.clone().unwrap_or_default();
    if name.is_empty() || name.contains(':') {
        return Err(ConfigError::invalid(
            &key("name"),
            "is required and must not contain ':'",
        ));
    }
    let pattern = raw
        .channel_name_pattern
        .as_deref()
        .map(|pattern| {
            Regex::new(pattern).map_err(|e| {
                ConfigError::invalid(&key("channel_name_pattern"), format!("{pattern:?}: {e}"))
            })
        })
        .transpose()?;
    let max_length = match raw.max_channel_name_length {
        Some(0) => {
            return Err(ConfigError::invalid(
                &key("max_channel_name_length"),
                "must be at least 1",
            ))
        }
        other => other.map(|n| n as usize),
    };
    Ok(Namespace {
        name,
        pattern,
        max_length,
        subscribe: raw.allow_subscribe_for_client.unwrap_or(true),
        publish: raw.allow_publish_for_client.unwrap_or(true),
        presence: raw.allow_presence_for_client.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> ChannelNamespaces {
        let raw = RawNamespace {
            name: Some("chat".into()),
            channel_name_pattern: Some("^chat:[a-z0-9-]+$".into()),
            max_channel_name_length: Some(30),
            allow_publish_for_client: Some(false),
            allow_presence_for_client: Some(false),
            ..RawNamespace::default()
        };
        ChannelNamespaces::parse("ns", Some(&[raw])).unwrap()
    }

    #[test]
    fn a_namespaced_channel_must_match_its_pattern_and_length() {
        let namespaces = chat();
        assert_eq!(namespaces.refuse_subscription("chat:room-1", false), None);
        assert_eq!(
            namespaces.refuse_subscription("private-chat:room-1", false),
            None
        );
        assert!(namespaces
            .refuse_subscription("chat:Room_1", false)
            .is_some());
        let long = format!("chat:{}", "a".repeat(30));
        assert!(namespaces.refuse_subscription(&long, false).is_some());
        assert!(namespaces
            .refuse_subscription("presence-chat:room", true)
            .is_some());
        assert!(namespaces
            .refuse_client_event("private-chat:room")
            .is_some());
        // Outside every namespace: not the namespaces' business.
        assert_eq!(namespaces.refuse_subscription("lobby", false), None);
        assert_eq!(
            namespaces.refuse_subscription("news:Anything_Goes", false),
            None
        );
        assert_eq!(namespaces.refuse_client_event("private-news:x"), None);
    }

    #[test]
    fn a_bad_pattern_names_its_key() {
        let raw = RawNamespace {
            name: Some("chat".into()),
            channel_name_pattern: Some("[".into()),
            ..RawNamespace::default()
        };
        let error =
            ChannelNamespaces::parse("apps[0].channel_namespaces", Some(&[raw])).unwrap_err();
        assert_eq!(
            error.path,
            "apps[0].channel_namespaces[0].channel_name_pattern"
        );
    }
}

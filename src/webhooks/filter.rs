//! Which events an endpoint receives: `event_types` AND `filter.channel_type` AND `filter.channel_prefix`.

use super::event::WebhookEvent;
use crate::config::WebhookEndpoint;
use crate::protocol::{ChannelKind, ChannelType};

/// `filter.channel_type`, see DESIGN.md for how encrypted and cache channels are classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChannelTypeFilter {
    /// No prefix (`cache-` included).
    Public,
    /// Every `private-` channel (encrypted and cache ones included).
    Private,
    /// Every `presence-` channel.
    Presence,
    /// Only `private-encrypted-`.
    Encrypted,
    /// Any cache channel.
    Cache,
}

/// An endpoint's filter, compiled once at start-up.
#[derive(Clone, Debug)]
pub struct EndpointFilter {
    kinds: u8,
    channel_type: Option<ChannelTypeFilter>,
    prefix: Option<String>,
}

impl EndpointFilter {
    /// Compiles the endpoint's validated filter keys.
    pub fn new(endpoint: &WebhookEndpoint) -> EndpointFilter {
        let kinds = endpoint
            .event_types
            .iter()
            .filter_map(|t| crate::config::EVENT_TYPES.iter().position(|k| k == t))
            .fold(0u8, |bits, i| bits | 1 << i);
        let channel_type = endpoint.channel_type.as_deref().map(|t| match t {
            "public" => ChannelTypeFilter::Public,
            "private" => ChannelTypeFilter::Private,
            "presence" => ChannelTypeFilter::Presence,
            "encrypted" => ChannelTypeFilter::Encrypted,
            // The config accepts only the five values of CHANNEL_TYPES.
            _ => ChannelTypeFilter::Cache,
        });
        EndpointFilter {
            kinds,
            channel_type,
            prefix: endpoint.channel_prefix.clone(),
        }
    }

    /// The event types this endpoint wants, as a bit set over `EVENT_TYPES`.
    pub fn kinds(&self) -> u8 {
        self.kinds
    }

    /// Whether the endpoint receives `event`.
    pub fn matches(&self, event: &WebhookEvent) -> bool {
        if self.kinds & (1 << event.kind_index()) == 0 {
            return false;
        }
        let channel = event.channel();
        if let Some(prefix) = &self.prefix {
            if !channel.starts_with(prefix.as_str()) {
                return false;
            }
        }
        let Some(wanted) = self.channel_type else {
            return true;
        };
        let kind = ChannelType::of(channel);
        match wanted {
            ChannelTypeFilter::Public => kind.kind == ChannelKind::Public,
            ChannelTypeFilter::Private => matches!(
                kind.kind,
                ChannelKind::Private | ChannelKind::PrivateEncrypted
            ),
            ChannelTypeFilter::Presence => kind.kind == ChannelKind::Presence,
            ChannelTypeFilter::Encrypted => kind.kind == ChannelKind::PrivateEncrypted,
            ChannelTypeFilter::Cache => kind.cached,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn filter(hook: &str) -> EndpointFilter {
        let json = format!(
            r#"{{"app_manager":{{"array":{{"apps":[{{"id":"a","key":"k","secret":"s","webhooks":[{hook}]}}]}}}}}}"#
        );
        EndpointFilter::new(&Config::from_json(&json).unwrap().apps[0].webhooks[0])
    }

    fn occupied(channel: &str) -> WebhookEvent {
        WebhookEvent::ChannelOccupied {
            channel: channel.into(),
        }
    }

    #[test]
    fn event_types_select_events() {
        let f = filter(r#"{"url":"http://x","event_types":["channel_occupied"]}"#);
        assert!(f.matches(&occupied("a")));
        assert!(!f.matches(&WebhookEvent::ChannelVacated {
            channel: "a".into()
        }));
    }

    #[test]
    fn channel_types_classify_encrypted_and_cache() {
        let cases = [
            (
                "public",
                ["chat", "cache-x"].as_slice(),
                ["private-x", "presence-x"].as_slice(),
            ),
            (
                "private",
                &["private-x", "private-encrypted-x", "private-cache-x"],
                &["chat", "presence-x"],
            ),
            (
                "presence",
                &["presence-x", "presence-cache-x"],
                &["private-x"],
            ),
            (
                "encrypted",
                &["private-encrypted-x", "private-encrypted-cache-x"],
                &["private-x"],
            ),
            (
                "cache",
                &["cache-x", "private-cache-x", "presence-cache-x"],
                &["chat", "private-x"],
            ),
        ];
        for (kind, yes, no) in cases {
            let f = filter(&format!(
                r#"{{"url":"http://x","event_types":["channel_occupied"],"filter":{{"channel_type":"{kind}"}}}}"#
            ));
            for channel in yes {
                assert!(
                    f.matches(&occupied(channel)),
                    "{kind} should match {channel}"
                );
            }
            for channel in no {
                assert!(
                    !f.matches(&occupied(channel)),
                    "{kind} should not match {channel}"
                );
            }
        }
    }

    #[test]
    fn type_and_prefix_combine_with_and() {
        let f = filter(
            r#"{"url":"http://x","event_types":["channel_occupied"],"filter":{"channel_type":"private","channel_prefix":"private-team-"}}"#,
        );
        assert!(f.matches(&occupied("private-team-1")));
        assert!(!f.matches(&occupied("private-other")));
        assert!(!f.matches(&occupied("team-1")));
    }
}

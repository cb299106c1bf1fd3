//! Which events an endpoint receives: `event_types` AND `filter.channel_type` AND `filter.channel_prefix`.

use super::event::WebhookEvent;
use crate::config::{ChannelTypeFilter, EventKinds, WebhookEndpoint};
use crate::protocol::{ChannelKind, ChannelType};

/// An endpoint's filter, compiled once at start-up.
#[derive(Clone, Debug)]
pub struct EndpointFilter {
    kinds: EventKinds,
    channel_type: Option<ChannelTypeFilter>,
    prefix: Option<String>,
}

impl EndpointFilter {
    /// The endpoint's validated filter keys.
    pub fn new(endpoint: &WebhookEndpoint) -> EndpointFilter {
        EndpointFilter {
            kinds: endpoint.event_types,
            channel_type: endpoint.channel_type,
            prefix: endpoint.channel_prefix.clone(),
        }
    }

    /// The event types this endpoint wants.
    pub fn kinds(&self) -> EventKinds {
        self.kinds
    }

    /// Whether the endpoint receives `event`.
    pub fn matches(&self, event: &WebhookEvent) -> bool {
        if !self.kinds.contains(event.kind()) {
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

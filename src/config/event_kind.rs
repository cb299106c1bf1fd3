//! The typed values of a webhook endpoint's `event_types` and `filter.channel_type`.

/// A webhook event type, as named in `event_types` and in each event's `name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A channel's first subscriber arrived.
    ChannelOccupied,
    /// A channel's last subscriber left.
    ChannelVacated,
    /// A user's first socket joined a presence channel.
    MemberAdded,
    /// A user's last socket left a presence channel.
    MemberRemoved,
    /// A client event was relayed.
    ClientEvent,
    /// A cache channel was subscribed with nothing cached.
    CacheMiss,
    /// A channel's subscription count changed.
    SubscriptionCount,
    /// A user's first signed-in connection anywhere arrived (Herald's own; only endpoints
    /// naming it get it).
    UserOnline,
    /// A user's last signed-in connection closed, after the grace period (Herald's own).
    UserOffline,
}

impl EventKind {
    /// Every kind, in the order the README lists them.
    pub const ALL: [EventKind; 9] = [
        EventKind::ChannelOccupied,
        EventKind::ChannelVacated,
        EventKind::MemberAdded,
        EventKind::MemberRemoved,
        EventKind::ClientEvent,
        EventKind::CacheMiss,
        EventKind::SubscriptionCount,
        EventKind::UserOnline,
        EventKind::UserOffline,
    ];

    /// The name in `event_types` and in the event's `name` field.
    pub const fn name(self) -> &'static str {
        match self {
            EventKind::ChannelOccupied => "channel_occupied",
            EventKind::ChannelVacated => "channel_vacated",
            EventKind::MemberAdded => "member_added",
            EventKind::MemberRemoved => "member_removed",
            EventKind::ClientEvent => "client_event",
            EventKind::CacheMiss => "cache_miss",
            EventKind::SubscriptionCount => "subscription_count",
            EventKind::UserOnline => "user_online",
            EventKind::UserOffline => "user_offline",
        }
    }

    /// The kind with this name.
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The other half of an occupancy or membership pair (the grace period cancels the two).
    pub const fn partner(self) -> Option<EventKind> {
        match self {
            EventKind::ChannelOccupied => Some(EventKind::ChannelVacated),
            EventKind::ChannelVacated => Some(EventKind::ChannelOccupied),
            EventKind::MemberAdded => Some(EventKind::MemberRemoved),
            EventKind::MemberRemoved => Some(EventKind::MemberAdded),
            EventKind::UserOnline => Some(EventKind::UserOffline),
            EventKind::UserOffline => Some(EventKind::UserOnline),
            EventKind::ClientEvent | EventKind::CacheMiss | EventKind::SubscriptionCount => None,
        }
    }

    /// Whether events of this kind are about a user, not a channel (no channel filter applies).
    pub const fn is_user(self) -> bool {
        matches!(self, EventKind::UserOnline | EventKind::UserOffline)
    }

    const fn bit(self) -> u16 {
        1 << self as u8
    }
}

/// The names of every [`EventKind`], in [`EventKind::ALL`] order.
pub const EVENT_TYPES: [&str; 9] = {
    let mut names = [""; 9];
    let mut i = 0;
    while i < names.len() {
        names[i] = EventKind::ALL[i].name();
        i += 1;
    }
    names
};

/// A set of event kinds.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct EventKinds(u16);

impl EventKinds {
    /// Whether `kind` is in the set.
    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// Both sets together.
    pub fn union(self, other: EventKinds) -> EventKinds {
        EventKinds(self.0 | other.0)
    }

    /// The set plus the partner of each paired kind in it.
    pub fn with_partners(self) -> EventKinds {
        EventKind::ALL
            .into_iter()
            .filter(|kind| self.contains(*kind))
            .filter_map(EventKind::partner)
            .fold(self, |set, partner| set.union(EventKinds(partner.bit())))
    }
}

impl FromIterator<EventKind> for EventKinds {
    fn from_iter<I: IntoIterator<Item = EventKind>>(kinds: I) -> EventKinds {
        EventKinds(kinds.into_iter().fold(0, |bits, kind| bits | kind.bit()))
    }
}

/// `filter.channel_type`: see DESIGN.md for how encrypted and cache channels are classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelTypeFilter {
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

impl ChannelTypeFilter {
    /// Every value, in the order error messages list them.
    pub const ALL: [ChannelTypeFilter; 5] = [
        ChannelTypeFilter::Public,
        ChannelTypeFilter::Private,
        ChannelTypeFilter::Presence,
        ChannelTypeFilter::Encrypted,
        ChannelTypeFilter::Cache,
    ];

    /// The value as written in `filter.channel_type`.
    pub const fn name(self) -> &'static str {
        match self {
            ChannelTypeFilter::Public => "public",
            ChannelTypeFilter::Private => "private",
            ChannelTypeFilter::Presence => "presence",
            ChannelTypeFilter::Encrypted => "encrypted",
            ChannelTypeFilter::Cache => "cache",
        }
    }

    /// The filter with this name.
    pub fn from_name(name: &str) -> Option<ChannelTypeFilter> {
        ChannelTypeFilter::ALL
            .into_iter()
            .find(|filter| filter.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(EVENT_TYPES[4], "client_event");
        for filter in ChannelTypeFilter::ALL {
            assert_eq!(ChannelTypeFilter::from_name(filter.name()), Some(filter));
        }
        assert_eq!(EventKind::from_name("channel"), None);
    }

    #[test]
    fn a_set_gains_the_partners_of_its_pairs() {
        let set: EventKinds = [EventKind::ChannelVacated, EventKind::ClientEvent]
            .into_iter()
            .collect();
        let widened = set.with_partners();
        assert!(widened.contains(EventKind::ChannelOccupied));
        assert!(widened.contains(EventKind::ClientEvent));
        assert!(!widened.contains(EventKind::MemberAdded));
        assert!(!set.contains(EventKind::ChannelOccupied));
    }
}

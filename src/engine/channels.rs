//! The registry of live channels of one app and the subscribe/unsubscribe rules.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use super::presence::{Members, PresenceMember};
use super::Transition;
use crate::protocol::SocketId;

struct Subscription<S> {
    handle: S,
    /// The presence member this socket joined as.
    user_id: Option<Arc<str>>,
}

struct Channel<S> {
    subscribers: HashMap<SocketId, Subscription<S>>,
    /// Present on presence channels only.
    members: Option<Members>,
    /// The subscribers as a list to fan out to, built by the first broadcast after a change.
    fanout: OnceLock<Subscribers<S>>,
}

/// A channel's subscribers at one moment, shared by every broadcast until the next change.
pub type Subscribers<S> = Arc<[(SocketId, S)]>;

/// The channels of one app that have at least one subscriber.
///
/// Locks are DashMap shard locks held only inside these plain `fn`s, never across `.await`.
pub struct ChannelRegistry<S> {
    channels: DashMap<Arc<str>, Channel<S>>,
}

/// What a successful subscribe changed.
#[derive(Debug, Clone)]
pub struct Joined {
    /// `Occupied` and/or `MemberAdded`, in that order.
    pub transitions: Vec<Transition>,
    /// The presence snapshot for `subscription_succeeded`, on presence channels.
    pub presence_snapshot: Option<String>,
    /// Sockets subscribed after this operation.
    pub subscription_count: usize,
    /// True when the socket was already subscribed; nothing changed.
    pub already_subscribed: bool,
}

/// What an unsubscribe changed.
#[derive(Debug, Clone)]
pub struct Left {
    /// `MemberRemoved` and/or `Vacated`, in that order.
    pub transitions: Vec<Transition>,
    /// Sockets still subscribed.
    pub subscription_count: usize,
}

/// One occupied channel, as the REST API reports it.
#[derive(Debug, Clone)]
pub struct ChannelSummary {
    /// The channel name.
    pub name: Arc<str>,
    /// Subscribed sockets.
    pub subscription_count: usize,
    /// Distinct presence users, on presence channels.
    pub user_count: Option<usize>,
}

/// A channel while it is locked: what a caller may read to fix the order of what it caused.
pub struct ChannelView<'a, S> {
    name: &'a Arc<str>,
    state: &'a Channel<S>,
}

impl<'a, S> ChannelView<'a, S> {
    fn new(name: &'a Arc<str>, state: &'a Channel<S>) -> Self {
        ChannelView { name, state }
    }

    /// The channel's name, shared.
    pub fn name(&self) -> &Arc<str> {
        self.name
    }

    /// Sockets subscribed now.
    pub fn subscription_count(&self) -> usize {
        self.state.subscribers.len()
    }

    /// Calls `deliver` with every subscriber's handle except `except`; returns how many.
    pub fn for_each(&self, except: Option<SocketId>, mut deliver: impl FnMut(&S)) -> usize {
        let mut delivered = 0;
        for (socket, subscription) in &self.state.subscribers {
            if Some(*socket) != except {
                deliver(&subscription.handle);
                delivered += 1;
            }
        }
        delivered
    }

    /// Every subscriber with the presence member it joined as (a cluster node puts them back
    /// into a Redis that lost them).
    pub fn members(&self) -> Vec<(SocketId, Option<PresenceMember>)> {
        let members = self.state.members.as_ref();
        let member = |user_id: &Arc<str>| PresenceMember {
            user_id: user_id.clone(),
            user_info: members.and_then(|m| m.info(user_id)),
        };
        self.state
            .subscribers
            .iter()
            .map(|(socket, s)| (*socket, s.user_id.as_ref().map(member)))
            .collect()
    }

    /// The subscribers as they are now, to deliver to once the lock is released. Built once
    /// per change of the channel and shared by every broadcast until the next one.
    pub fn recipients(&self) -> Subscribers<S>
    where
        S: Clone,
    {
        self.state.fanout_list().clone()
    }
}

impl<S> Channel<S> {
    /// Adds a socket that is not subscribed yet; returns `Occupied` and/or `MemberAdded`.
    fn join(
        &mut self,
        name: &Arc<str>,
        socket: SocketId,
        handle: S,
        member: Option<&PresenceMember>,
        max_members: usize,
    ) -> Result<Vec<Transition>, ChannelFull> {
        let mut transitions = Vec::new();
        if let (Some(member), Some(members)) = (member, self.members.as_ref()) {
            if !members.contains(&member.user_id) && members.len() >= max_members {
                return Err(ChannelFull);
            }
        }
        if self.subscribers.is_empty() {
            transitions.push(Transition::Occupied {
                channel: name.clone(),
            });
        }
        if let (Some(member), Some(members)) = (member, self.members.as_mut()) {
            if members.add_socket(member) {
                transitions.push(Transition::MemberAdded {
                    channel: name.clone(),
                    user_id: member.user_id.clone(),
                    user_info: member.user_info.clone(),
                });
            }
        }
        self.fanout = OnceLock::new();
        let user_id = member.map(|m| m.user_id.clone());
        self.subscribers
            .insert(socket, Subscription { handle, user_id });
        Ok(transitions)
    }

    fn fanout_list(&self) -> &Subscribers<S>
    where
        S: Clone,
    {
        self.fanout.get_or_init(|| {
            self.subscribers
                .iter()
                .map(|(socket, subscription)| (*socket, subscription.handle.clone()))
                .collect()
        })
    }
}

/// A presence join refused because the channel is full.
#[derive(Debug, PartialEq, Eq)]
pub struct ChannelFull;

impl<S> Default for ChannelRegistry<S> {
    fn default() -> Self {
        ChannelRegistry {
            channels: DashMap::new(),
        }
    }
}

impl<S> ChannelRegistry<S> {
    /// Subscribes `socket` to `channel`; `member` is given for presence channels.
    ///
    /// `then` runs while the channel is still locked, so the replies and notifications it queues
    /// are ordered with every other change of the channel (a joiner's member list can never be
    /// overtaken by a `member_added` it already contains). It must not block.
    /// A presence join of a new user fails with [`ChannelFull`] at `max_members`.
    pub fn subscribe<R>(
        &self,
        channel: &str,
        socket: SocketId,
        handle: S,
        member: Option<&PresenceMember>,
        max_members: usize,
        then: impl FnOnce(Joined, ChannelView<'_, S>) -> R,
    ) -> Result<R, ChannelFull> {
        let mut entry = self
            .channels
            .entry(Arc::from(channel))
            .or_insert_with(|| Channel {
                subscribers: HashMap::new(),
                members: member.map(|_| Members::default()),
                fanout: OnceLock::new(),
            });
        let name = entry.key().clone();
        let state = entry.value_mut();
        let already_subscribed = state.subscribers.contains_key(&socket);
        let transitions = if already_subscribed {
            Vec::new()
        } else {
            match state.join(&name, socket, handle, member, max_members) {
                Ok(transitions) => transitions,
                Err(full) => {
                    drop(entry);
                    self.remove_if_empty(channel);
                    return Err(full);
                }
            }
        };
        let joined = Joined {
            transitions,
            presence_snapshot: state.members.as_ref().map(Members::snapshot_json),
            subscription_count: state.subscribers.len(),
            already_subscribed,
        };
        Ok(then(joined, ChannelView::new(&name, state)))
    }

    /// Unsubscribes `socket` from `channel`; `None` when it was not subscribed.
    ///
    /// `then` runs while the channel is still locked (see [`ChannelRegistry::subscribe`]).
    pub fn unsubscribe<R>(
        &self,
        channel: &str,
        socket: SocketId,
        then: impl FnOnce(Left, ChannelView<'_, S>) -> R,
    ) -> Option<R> {
        let mut state = self.channels.get_mut(channel)?;
        let name = state.key().clone();
        let subscription = state.subscribers.remove(&socket)?;
        state.fanout = OnceLock::new();
        let mut transitions = Vec::new();
        if let (Some(user_id), Some(members)) = (subscription.user_id, state.members.as_mut()) {
            if members.remove_socket(&user_id) {
                transitions.push(Transition::MemberRemoved {
                    channel: name.clone(),
                    user_id,
                });
            }
        }
        let subscription_count = state.subscribers.len();
        if subscription_count == 0 {
            transitions.push(Transition::Vacated {
                channel: name.clone(),
            });
        }
        let left = Left {
            transitions,
            subscription_count,
        };
        let result = then(left, ChannelView::new(&name, &state));
        drop(state);
        if subscription_count == 0 {
            self.remove_if_empty(channel);
        }
        Some(result)
    }

    fn remove_if_empty(&self, channel: &str) {
        self.channels
            .remove_if(channel, |_, state| state.subscribers.is_empty());
    }

    /// Runs `then` while the channel is locked for reading (`None`: nobody is subscribed).
    ///
    /// With `lock_absent`, an unoccupied channel is locked too (a shard write lock, taken
    /// without creating the channel), so nothing can subscribe to it until `then` returns.
    pub fn with_channel<R>(
        &self,
        channel: &str,
        lock_absent: bool,
        then: impl FnOnce(Option<ChannelView<'_, S>>) -> R,
    ) -> R {
        if !lock_absent {
            return match self.channels.get(channel) {
                Some(state) => then(Some(ChannelView::new(state.key(), state.value()))),
                None => then(None),
            };
        }
        match self.channels.entry(Arc::from(channel)) {
            Entry::Occupied(entry) => then(Some(ChannelView::new(entry.key(), entry.get()))),
            Entry::Vacant(_held) => then(None),
        }
    }

    /// Whether `socket` is subscribed to `channel`.
    pub fn is_subscribed(&self, channel: &str, socket: SocketId) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|state| state.subscribers.contains_key(&socket))
    }

    /// The channel's counts, `None` when nobody is subscribed.
    pub fn summary(&self, channel: &str) -> Option<ChannelSummary> {
        self.channels.get(channel).map(|state| ChannelSummary {
            name: state.key().clone(),
            subscription_count: state.subscribers.len(),
            user_count: state.members.as_ref().map(Members::len),
        })
    }

    /// Every occupied channel whose name starts with `prefix`.
    pub fn summaries(&self, prefix: &str) -> Vec<ChannelSummary> {
        self.channels
            .iter()
            .filter(|state| state.key().starts_with(prefix))
            .map(|state| ChannelSummary {
                name: state.key().clone(),
                subscription_count: state.subscribers.len(),
                user_count: state.members.as_ref().map(Members::len),
            })
            .collect()
    }

    /// The user ids present in a presence channel (empty when unoccupied).
    pub fn user_ids(&self, channel: &str) -> Vec<Arc<str>> {
        self.channels
            .get(channel)
            .and_then(|state| state.members.as_ref().map(Members::user_ids))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u64) -> SocketId {
        format!("{n}.{n}").parse().unwrap()
    }

    fn member(id: &str) -> PresenceMember {
        PresenceMember {
            user_id: Arc::from(id),
            user_info: None,
        }
    }

    fn join<S>(
        reg: &ChannelRegistry<S>,
        channel: &str,
        n: u64,
        handle: S,
        user: Option<&str>,
        max: usize,
    ) -> Result<Joined, ChannelFull> {
        let member = user.map(member);
        reg.subscribe(
            channel,
            sid(n),
            handle,
            member.as_ref(),
            max,
            |joined, _| joined,
        )
    }

    fn leave<S>(reg: &ChannelRegistry<S>, channel: &str, n: u64) -> Option<Left> {
        reg.unsubscribe(channel, sid(n), |left, _| left)
    }

    fn names(transitions: &[Transition]) -> Vec<String> {
        transitions
            .iter()
            .map(|t| match t {
                Transition::Occupied { channel } => format!("occupied {channel}"),
                Transition::Vacated { channel } => format!("vacated {channel}"),
                Transition::MemberAdded { user_id, .. } => format!("added {user_id}"),
                Transition::MemberRemoved { user_id, .. } => format!("removed {user_id}"),
            })
            .collect()
    }

    #[test]
    fn occupancy_counts_sockets() {
        let reg = ChannelRegistry::default();
        assert_eq!(
            names(&join(&reg, "c", 1, (), None, 100).unwrap().transitions),
            ["occupied c"]
        );
        let b = join(&reg, "c", 2, (), None, 100).unwrap();
        assert!(b.transitions.is_empty());
        assert_eq!(b.subscription_count, 2);
        let again = join(&reg, "c", 2, (), None, 100).unwrap();
        assert!(again.already_subscribed && again.transitions.is_empty());
        assert!(leave(&reg, "c", 1).unwrap().transitions.is_empty());
        assert_eq!(
            names(&leave(&reg, "c", 2).unwrap().transitions),
            ["vacated c"]
        );
        assert!(leave(&reg, "c", 2).is_none());
        assert!(reg.summary("c").is_none());
    }

    #[test]
    fn presence_counts_users_not_sockets() {
        let reg = ChannelRegistry::default();
        let j = join(&reg, "presence-r", 1, (), Some("u"), 100).unwrap();
        assert_eq!(names(&j.transitions), ["occupied presence-r", "added u"]);
        assert!(join(&reg, "presence-r", 2, (), Some("u"), 100)
            .unwrap()
            .transitions
            .is_empty());
        assert_eq!(reg.summary("presence-r").unwrap().user_count, Some(1));
        assert!(leave(&reg, "presence-r", 1).unwrap().transitions.is_empty());
        let left = leave(&reg, "presence-r", 2).unwrap();
        assert_eq!(
            names(&left.transitions),
            ["removed u", "vacated presence-r"]
        );
    }

    #[test]
    fn presence_limit_counts_distinct_users() {
        let reg = ChannelRegistry::default();
        join(&reg, "presence-r", 1, (), Some("a"), 1).unwrap();
        // A second socket of a present user is not a new member.
        join(&reg, "presence-r", 2, (), Some("a"), 1).unwrap();
        assert_eq!(
            join(&reg, "presence-r", 3, (), Some("b"), 1).unwrap_err(),
            ChannelFull
        );
        assert_eq!(reg.summary("presence-r").unwrap().subscription_count, 2);
    }

    #[test]
    fn refused_first_join_leaves_no_channel_behind() {
        let reg = ChannelRegistry::default();
        assert!(join(&reg, "presence-r", 1, (), Some("a"), 0).is_err());
        assert!(reg.summary("presence-r").is_none());
    }

    #[test]
    fn the_callback_sees_the_other_subscribers_under_the_lock() {
        let reg = ChannelRegistry::default();
        for n in 1..=3 {
            join(&reg, "c", n, n, None, 100).unwrap();
        }
        let mut seen = Vec::new();
        reg.subscribe("c", sid(4), 4, None, 100, |_, view| {
            view.for_each(Some(sid(4)), |h| seen.push(*h))
        })
        .unwrap();
        seen.sort();
        assert_eq!(seen, [1, 2, 3]);
    }

    #[test]
    fn the_fan_out_list_follows_every_change() {
        let reg = ChannelRegistry::default();
        let handles = |reg: &ChannelRegistry<u64>| {
            let list = reg
                .with_channel("c", false, |view| view.map(|v| v.recipients()))
                .expect("occupied");
            let mut handles: Vec<u64> = list.iter().map(|(_, h)| *h).collect();
            handles.sort();
            handles
        };
        join(&reg, "c", 1, 1, None, 100).unwrap();
        join(&reg, "c", 2, 2, None, 100).unwrap();
        assert_eq!(handles(&reg), [1, 2]);
        assert_eq!(handles(&reg), [1, 2], "a second broadcast reuses the list");
        join(&reg, "c", 3, 3, None, 100).unwrap();
        assert_eq!(handles(&reg), [1, 2, 3]);
        leave(&reg, "c", 2).unwrap();
        assert_eq!(handles(&reg), [1, 3]);
        leave(&reg, "c", 1).unwrap();
        leave(&reg, "c", 3).unwrap();
        assert!(reg.with_channel("c", true, |view| view.is_none()));
    }
}

//! Carrying out a channel's steps on a cluster node, in line order and with no lock held
//! across a wait: a joiner's `subscription_succeeded` (with the member list Redis returned),
//! its leave, and every broadcast received from Redis.
//!
//! Member notices and cache-channel events carry the channel's version. Each local socket of a
//! presence or cache channel keeps the version its list (or cached event) was read at and gets
//! exactly the versioned broadcasts above it. The join script's reply and the notices published
//! after it come over two connections, in either order, so while a join is in flight the
//! channel keeps the versioned broadcasts it delivered; the joiner's step replays those above its
//! version.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::value::RawValue;

use super::app::{JoinRequest, Op, RedisApp};
use super::channel_state::Joined;
use super::fanout::{Broadcast, BroadcastBody};
use crate::cluster::{delivery, Outcome, Refusal};
use crate::engine::{Subscribers, Transition};
use crate::outbound::{Outbound, WireFrame};
use crate::protocol::codes::SubscriptionError;
use crate::protocol::{frames, ChannelType, SocketId};

/// Versioned broadcasts a channel keeps while joins are in flight; more means the joiner's
/// list is read again.
const RECENT: usize = 256;

/// One thing that happened on a channel, in the order this node is to carry it out.
pub enum Step {
    /// Redis added the socket (boxed: the largest step by far); with no reply, the node is
    /// offline and the socket joins this node's sockets only.
    Joined(Box<(JoinRequest, Option<Joined>)>),
    /// The socket leaves: it gets nothing more. `local`: the node is offline, so this node
    /// tells its own sockets of a member that left (Redis is not there to).
    Left {
        channel: Arc<str>,
        socket: SocketId,
        local: bool,
    },
    /// A broadcast came from Redis.
    Received(Broadcast),
}

/// The versioned-delivery state of one line's channels.
pub type LineReplay = HashMap<Arc<str>, ChannelReplay>;

/// What a channel keeps for versioned delivery on this node.
#[derive(Default)]
pub struct ChannelReplay {
    /// Joins whose step is not carried out yet.
    joining: usize,
    /// Per local socket, the version it has been sent everything up to.
    seen: HashMap<SocketId, u64>,
    /// Versioned broadcasts delivered while joins were in flight.
    recent: VecDeque<(u64, WireFrame, Option<SocketId>)>,
    /// Broadcasts up to this version are not in `recent` any more.
    forgotten: u64,
}

impl ChannelReplay {
    /// A join of this channel is in flight.
    pub fn begin_join(&mut self) {
        self.joining += 1;
    }

    /// A join ended without a step (refused, failed).
    pub fn abandon_join(&mut self) {
        self.joining = self.joining.saturating_sub(1);
        self.forget_if_idle();
    }

    /// No join is in flight.
    pub fn is_idle(&self) -> bool {
        self.joining == 0
    }

    fn forget_if_idle(&mut self) {
        if self.joining == 0 {
            if let Some((version, ..)) = self.recent.back() {
                self.forgotten = self.forgotten.max(*version);
            }
            self.recent.clear();
        }
    }

    fn remember(&mut self, version: u64, frame: &WireFrame, except: Option<SocketId>) {
        if self.joining == 0 {
            self.forgotten = self.forgotten.max(version);
            return;
        }
        if self.recent.len() == RECENT {
            if let Some((dropped, ..)) = self.recent.pop_front() {
                self.forgotten = dropped;
            }
        }
        self.recent.push_back((version, frame.clone(), except));
    }
}

impl RedisApp {
    /// Carries out one step.
    pub(super) fn carry_out(&self, line: usize, step: Step) {
        match step {
            Step::Joined(joined) => match *joined {
                (request, Some(reply)) => self.joined(line, request, reply),
                (request, None) => self.joined_here(line, request),
            },
            Step::Left {
                channel,
                socket,
                local,
            } => self.left(line, &channel, socket, local),
            Step::Received(broadcast) => self.received(line, broadcast),
        }
    }

    fn joined(&self, line: usize, request: JoinRequest, reply: Joined) {
        let mut replay = self.replay(line);
        let entry = replay.entry(request.channel.clone()).or_default();
        if reply.version < entry.forgotten {
            // More notices came meanwhile than the channel keeps: read the list again (the join
            // script is idempotent), still before the joiner hears anything.
            drop(replay);
            self.enqueue(line, Op::Join(request.again()));
            return;
        }
        entry.joining = entry.joining.saturating_sub(1);
        let JoinRequest {
            channel,
            socket,
            outbound,
            member,
            cached,
            done,
            ..
        } = request;
        let newly = self
            .channels
            .subscribe(
                &channel,
                socket,
                outbound.clone(),
                member.as_ref(),
                usize::MAX,
                |joined, _| !joined.already_subscribed,
            )
            .unwrap_or(false);
        // A user's own channel is the server's: its client hears nothing of it.
        let hidden = ChannelType::of(&channel).is_user();
        if newly && !hidden {
            self.metrics.subscription(1);
        }
        let data = match member {
            Some(_) => presence_snapshot(&reply.members),
            None => "{}".to_owned(),
        };
        if !hidden {
            outbound.push(&WireFrame::text(&frames::subscription_succeeded(
                &channel, &data,
            )));
        }
        if cached {
            outbound.push(&cache_replay(&channel, reply.cached.as_deref()));
        }
        let mut seen = reply.version;
        for (version, frame, except) in &entry.recent {
            if *version > reply.version && *except != Some(socket) {
                outbound.push(frame);
            }
            seen = seen.max(*version);
        }
        if member.is_some() || cached {
            entry.seen.insert(socket, seen);
        }
        entry.forget_if_idle();
        let _ = done.send(Outcome::Done);
    }

    /// An offline join: this node's member list, and this node's members told of the joiner.
    fn joined_here(&self, line: usize, request: JoinRequest) {
        let mut replay = self.replay(line);
        let entry = replay.entry(request.channel.clone()).or_default();
        entry.joining = entry.joining.saturating_sub(1);
        let JoinRequest {
            channel,
            socket,
            outbound,
            member,
            cached,
            done,
            ..
        } = request;
        let max = self.app.max_presence_members_per_channel;
        let subscribed = self.channels.subscribe(
            &channel,
            socket,
            outbound.clone(),
            member.as_ref(),
            max,
            |joined, view| {
                let added = joined
                    .transitions
                    .iter()
                    .any(|t| matches!(t, Transition::MemberAdded { .. }));
                let others = (added && member.is_some()).then(|| view.recipients());
                (joined, others)
            },
        );
        entry.forget_if_idle();
        drop(replay);
        let Ok((joined, others)) = subscribed else {
            let refusal = Refusal {
                channel,
                error: SubscriptionError::MembersLimit(max),
            };
            let _ = done.send(Outcome::Refused(refusal));
            return;
        };
        let hidden = ChannelType::of(&channel).is_user();
        if !joined.already_subscribed && !hidden {
            self.metrics.subscription(1);
        }
        let data = joined.presence_snapshot.as_deref().unwrap_or("{}");
        if !hidden {
            outbound.push(&WireFrame::text(&frames::subscription_succeeded(
                &channel, data,
            )));
        }
        if cached {
            outbound.push(&WireFrame::text(&frames::cache_miss(&channel)));
        }
        if let (Some(others), Some(member)) = (others, &member) {
            let info = member.user_info.as_deref();
            let frame = WireFrame::text(&frames::member_added(&channel, &member.user_id, info));
            self.deliver(&others, &frame, |s| s != socket);
        }
        let _ = done.send(Outcome::Done);
    }

    fn left(&self, line: usize, channel: &Arc<str>, socket: SocketId, local: bool) {
        let mut replay = self.replay(line);
        let left = self.channels.unsubscribe(channel, socket, |left, view| {
            let removed = left.transitions.into_iter().find_map(|t| match t {
                Transition::MemberRemoved { user_id, .. } => Some(user_id),
                _ => None,
            });
            removed
                .filter(|_| local)
                .map(|user| (user, view.recipients()))
        });
        if let Some(removed) = left {
            if !ChannelType::of(channel).is_user() {
                self.metrics.subscription(-1);
            }
            if let Some((user_id, others)) = removed {
                let frame = WireFrame::text(&frames::member_removed(channel, &user_id));
                self.deliver(&others, &frame, |_| true);
            }
        }
        if let Some(entry) = replay.get_mut(channel) {
            entry.seen.remove(&socket);
            if entry.joining == 0 && self.channels.summary(channel).is_none() {
                replay.remove(channel);
            }
        }
    }

    fn received(&self, line: usize, broadcast: Broadcast) {
        let Broadcast {
            channel,
            except,
            version,
            body,
            ..
        } = broadcast;
        let except: Option<SocketId> = except.and_then(|e| e.parse().ok());
        let frame = match body {
            // From another node as plain frames: compressed here, once, when it may be.
            BroadcastBody::Event(frame) => frame.compressible(self.app.compress_above),
            BroadcastBody::MemberAdded { user_id, user_info } => {
                let info = serde_json::from_str::<&RawValue>(&user_info).ok();
                WireFrame::text(&frames::member_added(&channel, &user_id, info))
            }
            BroadcastBody::MemberRemoved { user_id } => {
                WireFrame::text(&frames::member_removed(&channel, &user_id))
            }
            BroadcastBody::SubscriptionCount(count) => {
                WireFrame::text(&frames::subscription_count(&channel, count))
            }
            BroadcastBody::Terminate { .. } | BroadcastBody::Watchlist { .. } => return,
        };
        let recipients = || {
            self.channels
                .with_channel(&channel, false, |view| view.map(|v| v.recipients()))
        };
        let Some(version) = version else {
            if let Some(recipients) = recipients() {
                // Broadcasts: a large channel's on every core.
                let delivered = delivery::deliver(&recipients, &frame, except);
                self.metrics.messages_out(delivered * frame.messages());
            }
            return;
        };
        let mut replay = self.replay(line);
        let Some(entry) = replay.get_mut(channel.as_str()) else {
            // Nobody here, and no join in flight: nobody needs it.
            return;
        };
        entry.remember(version, &frame, except);
        if let Some(recipients) = recipients() {
            let seen = &mut entry.seen;
            self.deliver(&recipients, &frame, |socket| {
                let below = seen.get(&socket).is_none_or(|v| *v < version);
                if below {
                    seen.insert(socket, version);
                }
                below && Some(socket) != except
            });
        }
    }

    /// Writes the shared frame to every recipient `to` picks; one counter update per call.
    fn deliver(
        &self,
        recipients: &Subscribers<Outbound>,
        frame: &WireFrame,
        mut to: impl FnMut(SocketId) -> bool,
    ) {
        let mut delivered = 0;
        for (socket, outbound) in recipients.iter() {
            if to(*socket) && outbound.push(frame) {
                delivered += 1;
            }
        }
        self.metrics.messages_out(delivered * frame.messages());
    }
}

/// What a cache channel's joiner is replayed: its cached event, or `pusher:cache_miss`.
fn cache_replay(channel: &str, cached: Option<&str>) -> WireFrame {
    match cached {
        Some(frame) => WireFrame::text(frame),
        None => WireFrame::text(&frames::cache_miss(channel)),
    }
}

/// A presence channel's `subscription_succeeded` data from the member list Redis returned.
pub fn presence_snapshot(members: &[(String, String)]) -> String {
    crate::engine::presence_snapshot_json(
        members
            .iter()
            .map(|(id, info)| (id.as_str(), serde_json::from_str::<&RawValue>(info).ok())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_has_pushers_shape() {
        let members = [
            ("1".into(), r#"{"name":"a"}"#.into()),
            ("2".into(), String::new()),
        ];
        let snapshot: serde_json::Value =
            serde_json::from_str(&presence_snapshot(&members)).unwrap();
        assert_eq!(snapshot["presence"]["count"], 2);
        assert_eq!(snapshot["presence"]["ids"], serde_json::json!(["1", "2"]));
        assert_eq!(snapshot["presence"]["hash"]["1"]["name"], "a");
        assert!(snapshot["presence"]["hash"]["2"].is_null());
    }

    #[test]
    fn broadcasts_are_kept_only_while_a_join_is_in_flight() {
        let frame = WireFrame::text("{}");
        let mut replay = ChannelReplay::default();
        replay.remember(3, &frame, None);
        assert_eq!((replay.recent.len(), replay.forgotten), (0, 3));
        replay.begin_join();
        for version in 4..(4 + RECENT as u64 + 1) {
            replay.remember(version, &frame, None);
        }
        assert_eq!(replay.recent.len(), RECENT);
        assert_eq!(replay.forgotten, 4, "the oldest was dropped");
        replay.abandon_join();
        assert!(replay.recent.is_empty());
        assert_eq!(replay.forgotten, 4 + RECENT as u64);
    }
}

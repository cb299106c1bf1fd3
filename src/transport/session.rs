//! The Pusher-level state of one connection, the single path by which it leaves a channel, and
//! the cleanup that runs when the session is dropped, whatever ended the connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::time::Instant;

use super::liveness::Liveness;
use super::outbound::Outbound;
use super::subscription_counts::{announce_later, Announce};
use super::wire::WireFrame;
use crate::apps::App;
use crate::engine::{ChannelView, Transition};
use crate::protocol::codes::SocketError;
use crate::protocol::{frames, ChannelKind, ChannelType, SocketId};
use crate::server::state::{Shared, SharedState};
use crate::webhooks::WebhookEvent;

/// Client events accepted in the current one-second window.
pub(super) struct RateWindow {
    started: Instant,
    count: u32,
}

impl RateWindow {
    fn new(now: Instant) -> Self {
        RateWindow {
            started: now,
            count: 0,
        }
    }

    /// Counts one event; false when it would exceed `max` in this second.
    pub(super) fn allow(&mut self, now: Instant, max: u32) -> bool {
        if now.duration_since(self.started).as_secs() >= 1 {
            self.started = now;
            self.count = 0;
        }
        if self.count >= max {
            return false;
        }
        self.count += 1;
        true
    }
}

/// The process-wide connection count and its optional bound (`max_connections`).
pub struct ConnectionLimit {
    open: AtomicUsize,
    max: usize,
}

impl ConnectionLimit {
    /// At most `max` connections at once (`None`: unbounded).
    pub fn new(max: Option<usize>) -> ConnectionLimit {
        ConnectionLimit {
            open: AtomicUsize::new(0),
            max: max.unwrap_or(usize::MAX),
        }
    }

    fn try_add(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    fn remove(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection counted against the process limit, its app's quota and the metrics; released
/// on drop.
pub struct ConnectionSlot {
    app: Arc<App>,
    shared: SharedState,
}

impl ConnectionSlot {
    /// Takes a slot, or the refusal when the server or the app is at `max_connections`.
    pub fn acquire(app: &Arc<App>, shared: &SharedState) -> Result<ConnectionSlot, SocketError> {
        if !shared.connection_limit.try_add() {
            return Err(SocketError::ServerFull);
        }
        if !app.try_add_connection() {
            shared.connection_limit.remove();
            return Err(SocketError::OverQuota);
        }
        shared.metrics.connection(1);
        Ok(ConnectionSlot {
            app: app.clone(),
            shared: shared.clone(),
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.app.remove_connection();
        self.shared.connection_limit.remove();
        self.shared.metrics.connection(-1);
    }
}

/// A signed-in user: its id and its `user_info`, reused for presence without `channel_data`.
pub(super) struct SignedInUser {
    pub id: Arc<str>,
    pub user_info: Option<Arc<serde_json::value::RawValue>>,
}

/// One connection's session.
pub(super) struct Session {
    pub socket_id: SocketId,
    pub app: Arc<App>,
    pub shared: SharedState,
    pub outbound: Outbound,
    /// Subscribed channels, with the presence user id this socket joined as.
    pub channels: HashMap<Arc<str>, Option<Arc<str>>>,
    /// The id this connection signed in as.
    pub user: Option<SignedInUser>,
    pub liveness: Liveness,
    pub client_events: RateWindow,
    /// Dropped after [`Session::drop`] has left every channel.
    _slot: ConnectionSlot,
}

impl Session {
    pub fn new(
        app: Arc<App>,
        shared: SharedState,
        outbound: Outbound,
        liveness: Liveness,
        slot: ConnectionSlot,
    ) -> Self {
        Session {
            socket_id: SocketId::random(),
            app,
            shared,
            outbound,
            channels: HashMap::new(),
            user: None,
            liveness,
            client_events: RateWindow::new(Instant::now()),
            _slot: slot,
        }
    }

    /// Queues a frame for this socket only.
    pub fn send(&self, frame: String) {
        self.outbound.push(&WireFrame::text(&frame));
    }

    /// Queues a frame for every subscriber of `channel` except `except`.
    pub fn broadcast(&self, channel: &str, frame: String, except: Option<SocketId>) {
        let shared = &self.shared;
        shared.cluster.broadcast(
            &self.app,
            channel,
            WireFrame::text(&frame),
            except,
            &shared.metrics,
        );
    }

    /// Leaves one channel: the one path shared by unsubscribe, disconnect, terminate and shutdown.
    pub fn leave(&mut self, channel: &str) {
        if self.channels.remove(channel).is_none() {
            return;
        }
        let (shared, app, me) = (&self.shared, &self.app, self.socket_id);
        let left = app.channels.unsubscribe(channel, me, |left, view| {
            publish_locked(
                shared,
                app,
                me,
                channel,
                &left.transitions,
                Some(left.subscription_count),
                view,
            )
        });
        if let Some(deferred) = left {
            shared.metrics.subscription(-1);
            announce_deferred(shared, app, channel, deferred);
        }
    }

    fn leave_all(&mut self) {
        let channels: Vec<Arc<str>> = self.channels.keys().cloned().collect();
        for channel in channels {
            self.leave(&channel);
        }
        if let Some(user) = self.user.take() {
            self.app.users.remove(&user.id, self.socket_id);
        }
    }
}

impl Drop for Session {
    /// Every exit path (close, error, terminate, shutdown, even a panic) leaves every channel.
    fn drop(&mut self) {
        self.leave_all();
    }
}

/// Queues what a subscription change means for others, while the channel is locked: member
/// notices, the subscription count (when `count` changed), and the webhook events.
///
/// Frames are only queued here (no write under the lock), so holding the lock is short. Returns
/// when a throttled subscription count is due, for [`announce_deferred`] after the lock.
pub(super) fn publish_locked(
    shared: &Shared,
    app: &App,
    me: SocketId,
    channel: &str,
    transitions: &[Transition],
    count: Option<usize>,
    view: ChannelView<'_, Outbound>,
) -> Option<Instant> {
    let mut queued = 0;
    let mut to_others = |frame: String, except: Option<SocketId>| {
        let frame = WireFrame::text(&frame);
        queued += view.for_each(except, |q| {
            q.push_queued(&frame);
        });
    };
    for transition in transitions {
        match transition {
            Transition::MemberAdded {
                channel,
                user_id,
                user_info,
            } => {
                to_others(
                    frames::member_added(channel, user_id, user_info.as_deref()),
                    Some(me),
                );
            }
            Transition::MemberRemoved { channel, user_id } => {
                to_others(frames::member_removed(channel, user_id), Some(me));
            }
            Transition::Occupied { .. } | Transition::Vacated { .. } => {}
        }
    }
    shared.emit(app, transitions);
    // Not on presence (user counts are the members), server-to-user or encrypted channels
    // (pusher-websocket-java tries to decrypt any internal event there that is not "{}").
    let counted = !matches!(
        ChannelType::of(channel).kind,
        ChannelKind::Presence | ChannelKind::ServerToUser | ChannelKind::PrivateEncrypted
    );
    let mut deferred = None;
    if let (Some(count), true, true) = (count, app.enable_subscription_count, counted) {
        match app
            .subscription_counts
            .changed(channel, count, Instant::now())
        {
            Announce::Now => {
                let event = WebhookEvent::SubscriptionCount {
                    channel: Arc::from(channel),
                    subscription_count: count,
                };
                shared.webhooks.submit(&app.id, event);
                if count > 0 {
                    to_others(frames::subscription_count(channel, count), None);
                }
            }
            Announce::Later(at) => deferred = Some(at),
            Announce::Pending => {}
        }
    }
    shared.metrics.messages_out(queued);
    deferred
}

/// Starts the deferred subscription-count announcement [`publish_locked`] asked for, if any.
pub(super) fn announce_deferred(
    shared: &SharedState,
    app: &Arc<App>,
    channel: &str,
    at: Option<Instant>,
) {
    if let Some(at) = at {
        tokio::spawn(announce_later(
            shared.clone(),
            app.clone(),
            Arc::from(channel),
            at,
        ));
    }
}

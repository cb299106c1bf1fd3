//! The Pusher-level state of one connection, the single path by which it leaves a channel, and
//! the cleanup that runs when the session is dropped, whatever ended the connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::liveness::Liveness;
use crate::apps::App;
use crate::cluster::{Admission, Refusal, Watching};
use crate::metrics::AppMetrics;
use crate::outbound::{Outbound, WireFrame};
use crate::protocol::codes::SocketError;
use crate::protocol::{frames, SocketId};
use crate::state::SharedState;

/// Events accepted in the current fixed window.
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

    /// Counts one event; false when it would exceed `max` in this `window`.
    pub(super) fn allow(&mut self, now: Instant, max: u32, window: Duration) -> bool {
        if now.duration_since(self.started) >= window {
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

/// A connection counted against the process limit, its app's quota and the metrics; released
/// on drop.
pub struct ConnectionSlot {
    app: Arc<App>,
    shared: SharedState,
    metrics: Arc<AppMetrics>,
    /// Redis counted it against the app's cluster-wide `max_connections`.
    counted_in_cluster: bool,
}

impl ConnectionSlot {
    /// Takes a slot, or the refusal when the server or the app is at `max_connections`.
    pub async fn acquire(
        app: &Arc<App>,
        shared: &SharedState,
    ) -> Result<ConnectionSlot, SocketError> {
        if !shared.connection_limit().try_add() {
            return Err(SocketError::ServerFull);
        }
        let counted_in_cluster = match shared.cluster().admit_connection(app).await {
            Admission::Admitted { counted_in_cluster } => counted_in_cluster,
            Admission::Full => {
                shared.connection_limit().remove();
                return Err(SocketError::OverQuota);
            }
        };
        let metrics = shared.metrics().app(&app.id);
        metrics.connection(1);
        Ok(ConnectionSlot {
            app: app.clone(),
            shared: shared.clone(),
            metrics,
            counted_in_cluster,
        })
    }

    /// The app's metrics.
    pub fn metrics(&self) -> &AppMetrics {
        &self.metrics
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let counted = self.counted_in_cluster;
        self.shared.cluster().remove_connection(&self.app, counted);
        self.shared.connection_limit().remove();
        self.metrics.connection(-1);
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
    /// The app as of `app_generation` (see [`Session::refresh_app`]).
    pub app: Arc<App>,
    app_generation: u64,
    pub shared: SharedState,
    pub outbound: Outbound,
    /// Subscribed channels, with the presence user id this socket joined as.
    pub channels: HashMap<Arc<str>, Option<Arc<str>>>,
    /// The id this connection signed in as.
    pub user: Option<SignedInUser>,
    /// The users this connection watches, once signed in with a watchlist.
    pub watching: Option<Arc<Watching<Outbound>>>,
    pub liveness: Liveness,
    pub client_events: RateWindow,
    /// Every inbound message, for the app's `message_rate_limit`.
    pub messages: RateWindow,
    /// The client's address, for its share of the app's decision hook calls.
    pub address: Option<IpAddr>,
    /// Dropped after [`Session::drop`] has left every channel.
    pub slot: ConnectionSlot,
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
            // Below every generation: the first message looks the app up once more.
            app_generation: 0,
            shared,
            outbound,
            channels: HashMap::new(),
            user: None,
            watching: None,
            liveness,
            client_events: RateWindow::new(Instant::now()),
            messages: RateWindow::new(Instant::now()),
            address: None,
            slot,
        }
    }

    /// Takes the app as a reload left it, when a reload changed any app since the last look:
    /// each message is handled under the app's current limits and secret. `Err` when the app
    /// was removed or disabled (the socket closes with 4003).
    pub fn refresh_app(&mut self) -> Result<(), SocketError> {
        let directory = self.shared.apps();
        let now = directory.generation();
        if now == self.app_generation {
            return Ok(());
        }
        self.app_generation = now;
        match directory.by_id(&self.app.id) {
            Some(app) if app.enabled => {
                self.app = app;
                Ok(())
            }
            _ => Err(SocketError::AppDisabled),
        }
    }

    /// Counts an inbound message against the app's `message_rate_limit`: `Err` with what to
    /// tell the client when it is over (a closing error when the app asks to terminate).
    pub fn count_message(&mut self) -> Result<(), SocketError> {
        let Some(limit) = self.app.message_rate_limit else {
            return Ok(());
        };
        if self.messages.allow(Instant::now(), limit.max, limit.window) {
            return Ok(());
        }
        Err(if limit.terminate {
            SocketError::RateLimitClosed
        } else {
            SocketError::MessageRateLimited
        })
    }

    /// Queues a frame for this socket only.
    pub fn send(&self, frame: String) {
        self.outbound.push(&WireFrame::text(&frame));
    }

    /// Leaves one channel: the one path shared by unsubscribe, disconnect, terminate and shutdown.
    pub fn leave(&mut self, channel: &str) {
        if self.channels.remove(channel).is_some() {
            self.shared
                .cluster()
                .leave(&self.app, channel, self.socket_id);
            self.journal_unsubscribed(channel);
        }
    }

    /// A subscription the cluster refused after the socket asked: forgotten, and reported.
    pub fn refused(&mut self, refusal: Refusal) {
        self.channels.remove(&refusal.channel);
        self.send(frames::subscription_error(&refusal.channel, &refusal.error));
    }

    fn leave_all(&mut self) {
        let channels: Vec<Arc<str>> = self.channels.keys().cloned().collect();
        for channel in channels {
            self.leave(&channel);
        }
        if let Some(watching) = self.watching.take() {
            self.shared.cluster().unwatch(&self.app, &watching);
        }
        if let Some(user) = self.user.take() {
            self.shared
                .cluster()
                .sign_out(&self.app, &user.id, self.socket_id);
        }
    }
}

impl Drop for Session {
    /// Every exit path (close, error, terminate, shutdown, even a panic) leaves every channel.
    fn drop(&mut self) {
        self.leave_all();
    }
}

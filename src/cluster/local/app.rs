//! The live state of one app on this node, and the operations that fix each channel change's
//! place in line while the channel is locked.
//!
//! Under a channel lock only the engine's bookkeeping runs and a [`Step`] is put in line (plus,
//! when others must hear of the change, the channel's recipient list, shared with broadcasts);
//! nothing is written and nothing waits. The step is carried out after the lock is released.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::counts::{Announce, CountThrottle};
use super::steps::{Change, Join, Step};
use crate::apps::App;
use crate::cluster::recipient::{Recipient, WebhookOut};
use crate::cluster::sequence::{ChannelSequence, Ran, Ticket};
use crate::cluster::watchlist::Watchlists;
use crate::cluster::{ClientEvent, Pending, Subscribed, Subscription};
use crate::config::EventKind;
use crate::engine::{ChannelCache, ChannelFull, ChannelRegistry, UserRegistry};
use crate::limits::ConnectionLimit;
use crate::metrics::AppMetrics;
use crate::outbound::WireFrame;
use crate::protocol::{frames, ChannelKind, ChannelType, SocketId};
use crate::webhooks::WebhookEvent;

/// Steps one caller carries out before the rest of the line moves to a task of its own.
const STEPS_PER_RUN: usize = 256;

/// One app on this node: channels, signed-in users, cache, connections, the ordered lines of
/// its channels, and where its webhook events go.
pub struct AppChannels<R: Recipient> {
    /// The app as configured now (a reload may replace it).
    app: RwLock<Arc<App>>,
    /// The server's compression threshold (never changes while running): read without a lock
    /// on every client event.
    compress_above: Option<usize>,
    pub(super) channels: ChannelRegistry<R>,
    pub(super) users: UserRegistry<R>,
    /// The sockets watching users' online status.
    pub(super) watchlists: Watchlists<R>,
    pub(super) cache: ChannelCache,
    pub(super) counts: CountThrottle,
    pub(super) sequence: ChannelSequence<Step<R>>,
    /// Set once the app has webhook endpoints (at start or by a reload); kept after they go,
    /// when it wants nothing.
    pub(super) webhooks: OnceLock<Box<dyn WebhookOut>>,
    pub(super) metrics: Arc<AppMetrics>,
    /// Lines handed to a task of their own and throttled count announcements: shutdown waits
    /// for them, so the vacates and removals they carry reach the webhooks.
    pub(super) tasks: TaskTracker,
    connections: ConnectionLimit,
    /// Cancelled when the app is removed or disabled: its sockets close with 4003. A child of
    /// the server's shutdown token, so sockets wait on this one alone.
    closing: Mutex<CancellationToken>,
    shutdown: CancellationToken,
    /// Non-zero while the app is removed: the retirement it is waiting for (see
    /// [`AppChannels::retire`]).
    retired: AtomicU64,
}

/// Tells retirements apart, so a removal undone by a re-add is not carried out later.
static RETIREMENTS: AtomicU64 = AtomicU64::new(1);

impl<R: Recipient> AppChannels<R> {
    /// The app's empty state; `webhooks` is `None` for an app without endpoints.
    pub fn new(
        app: Arc<App>,
        cache: ChannelCache,
        counts: CountThrottle,
        webhooks: Option<Box<dyn WebhookOut>>,
        metrics: Arc<AppMetrics>,
        (tasks, shutdown): (TaskTracker, CancellationToken),
    ) -> AppChannels<R> {
        let connections = ConnectionLimit::new(app.max_connections);
        let sink = OnceLock::new();
        if let Some(webhooks) = webhooks {
            let _ = sink.set(webhooks);
        }
        AppChannels {
            compress_above: app.compress_above,
            app: RwLock::new(app),
            channels: ChannelRegistry::default(),
            users: UserRegistry::default(),
            watchlists: Watchlists::default(),
            cache,
            counts,
            sequence: ChannelSequence::default(),
            webhooks: sink,
            metrics,
            tasks,
            connections,
            closing: Mutex::new(shutdown.child_token()),
            shutdown,
            retired: AtomicU64::new(0),
        }
    }

    /// The app as configured now.
    pub fn app(&self) -> Arc<App> {
        self.app.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Follows a reload that changed the app: its limits apply to what happens next, and
    /// sockets close with 4003 when it is now disabled.
    pub fn reconfigure(&self, app: Arc<App>) {
        self.connections.set_max(app.max_connections);
        let disabled = !app.enabled;
        *self.app.write().unwrap_or_else(|e| e.into_inner()) = app;
        if disabled {
            self.close_sockets();
        }
    }

    /// The app was removed: closes its sockets with 4003 and returns the retirement to carry
    /// out once they are gone, unless the app comes back first ([`AppChannels::revive`]).
    pub fn retire(&self) -> u64 {
        let retirement = RETIREMENTS.fetch_add(1, Ordering::Relaxed);
        self.retired.store(retirement, Ordering::Release);
        self.close_sockets();
        retirement
    }

    /// The app is back (a reload or the database added it again): no retirement applies.
    pub fn revive(&self) {
        self.retired.store(0, Ordering::Release);
    }

    /// Whether `retirement` is still the one the app waits for.
    pub fn still_retired(&self, retirement: u64) -> bool {
        self.retired.load(Ordering::Acquire) == retirement
    }

    /// Connections of the app on this node now.
    pub fn open_connections(&self) -> usize {
        self.connections.open()
    }

    /// Closes every socket of the app with 4003 (removed or disabled); sockets that connect
    /// later get a fresh token.
    pub fn close_sockets(&self) {
        let mut closing = self.closing.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = self.shutdown.child_token();
        std::mem::replace(&mut *closing, fresh).cancel();
    }

    /// Cancelled when the socket must close: the app was removed or disabled, or the server
    /// shuts down.
    pub fn closing(&self) -> CancellationToken {
        self.closing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether a webhook of this kind is wanted (so it is worth building).
    pub(super) fn wants(&self, kind: EventKind) -> bool {
        self.webhooks.get().is_some_and(|sink| sink.wants(kind))
    }

    /// Submits a webhook event, in the order of the steps that caused it.
    pub(super) fn submit(&self, event: WebhookEvent) {
        if let Some(sink) = self.webhooks.get() {
            sink.submit(event);
        }
    }

    /// Whether `pusher_internal:subscription_count` is sent on this channel: not on presence
    /// (the member count is the count), server-to-user or encrypted channels
    /// (pusher-websocket-java tries to decrypt any internal event there that is not "{}").
    pub(super) fn counts_subscriptions(&self, channel: &str) -> bool {
        self.app().enable_subscription_count
            && match ChannelType::of(channel).kind {
                ChannelKind::Public | ChannelKind::Private => true,
                ChannelKind::Presence
                | ChannelKind::ServerToUser
                | ChannelKind::User
                | ChannelKind::PrivateEncrypted => false,
            }
    }

    /// When a changed count goes out (`None`: this channel announces no counts). Called under
    /// the channel lock, so the decisions follow the order of the changes.
    fn announce(&self, counted: bool, channel: &str, count: usize) -> Option<Announce> {
        counted.then(|| self.counts.changed(channel, count, Instant::now()))
    }

    /// Subscribes. The joiner's reply is sent in the channel's line; when another thread is
    /// carrying the line out, [`Subscribed::pending`] resolves once the reply has been sent.
    pub fn subscribe(
        self: &Arc<Self>,
        request: Subscription<'_, R>,
    ) -> Result<Subscribed, ChannelFull> {
        let Subscription {
            channel,
            socket,
            outbound,
            member,
            cached,
        } = request;
        let line = self.sequence.line_of(channel);
        let counted = self.counts_subscriptions(channel);
        let max_members = self.app().max_presence_members_per_channel;
        let mut ticket = None;
        let handle = outbound.clone();
        let joined = self.channels.subscribe(
            channel,
            socket,
            handle,
            member,
            max_members,
            |joined, view| {
                let newly = !joined.already_subscribed;
                let change = newly.then(|| {
                    let count = joined.subscription_count;
                    let announce = self.announce(counted, view.name(), count);
                    Change::new(joined.transitions, count, Some(socket), announce, &view)
                });
                let join = Join {
                    channel: view.name().clone(),
                    joiner: outbound.clone(),
                    snapshot: joined.presence_snapshot,
                    cached,
                    change,
                };
                ticket = Some(self.sequence.push(line, Step::Joined(Box::new(join))));
                newly
            },
        );
        let newly = joined?;
        // A user's own channel is no client's subscription.
        if newly && !ChannelType::of(channel).is_user() {
            self.metrics.subscription(1);
        }
        self.run(line);
        Ok(Subscribed {
            newly,
            pending: self.pending(ticket),
        })
    }

    /// Unsubscribes; false when the socket was not subscribed.
    pub fn leave(self: &Arc<Self>, channel: &str, socket: SocketId) -> bool {
        let line = self.sequence.line_of(channel);
        let counted = self.counts_subscriptions(channel);
        let left = self.channels.unsubscribe(channel, socket, |left, view| {
            let count = left.subscription_count;
            let announce = self.announce(counted, view.name(), count);
            let change = Change::new(left.transitions, count, None, announce, &view);
            let channel = view.name().clone();
            self.sequence.push(line, Step::Left { channel, change });
        });
        if left.is_none() {
            return false;
        }
        if !ChannelType::of(channel).is_user() {
            self.metrics.subscription(-1);
        }
        self.run(line);
        true
    }

    /// Sends `frame` to every subscriber except `except`; on cache channels `cache` (the last
    /// event's frame) becomes the channel's cached event, in line with joins.
    pub fn publish(
        self: &Arc<Self>,
        channel: &str,
        frame: WireFrame,
        except: Option<SocketId>,
        cache: Option<Arc<str>>,
    ) -> Option<Pending> {
        let line = self.sequence.line_of(channel);
        // A cache channel is locked even when empty: a join must not slip between the store
        // and the choice of recipients (it would miss the event, or see it twice).
        let ticket = self
            .channels
            .with_channel(channel, cache.is_some(), |view| {
                let recipients = view.as_ref().map(|v| v.recipients());
                if recipients.is_none() && cache.is_none() {
                    return None;
                }
                let cache = cache.map(|text| (Arc::from(channel), text));
                let step = Step::Published {
                    frame,
                    except,
                    cache,
                    recipients,
                };
                Some(self.sequence.push(line, step))
            });
        self.run_for(ticket)
    }

    /// Relays a client event to the channel's other subscribers, with its webhook.
    pub fn client_event(self: &Arc<Self>, event: ClientEvent<'_>) -> Option<Pending> {
        let ClientEvent {
            channel,
            name,
            data,
            socket,
            user_id,
        } = event;
        let line = self.sequence.line_of(channel);
        let text = frames::client_event(name, channel, data, user_id);
        let frame = WireFrame::event(&text, self.compress_above);
        let webhook = self
            .wants(EventKind::ClientEvent)
            .then(|| WebhookEvent::ClientEvent {
                channel: Arc::from(channel),
                event: name.to_owned(),
                data: data_as_string(data),
                socket_id: socket.to_string(),
                user_id: user_id.map(Arc::from),
            });
        let ticket = self.channels.with_channel(channel, false, |view| {
            let view = view?;
            let step = Step::ClientEvent {
                frame,
                except: socket,
                webhook,
                recipients: view.recipients(),
            };
            Some(self.sequence.push(line, step))
        });
        self.run_for(ticket)
    }

    /// Announces the channel's count at `at`, reading it then (a throttled change).
    pub(super) async fn announce_count_at(self: Arc<Self>, channel: Arc<str>, at: Instant) {
        sleep_until(at).await;
        let line = self.sequence.line_of(&channel);
        // Locked even when the channel is gone: a subscribe recreating it must come before or
        // after this reading, not between the reset of the window and the count.
        self.channels.with_channel(&channel, true, |view| {
            // Under the lock that orders the changes: each one before this reads the count
            // below, each one after starts the next window.
            self.counts.announcing(&channel, Instant::now());
            let count = view.as_ref().map_or(0, |v| v.subscription_count());
            let recipients = view.map(|v| v.recipients());
            let step = Step::CountDue {
                channel: channel.clone(),
                count,
                recipients,
            };
            self.sequence.push(line, step);
        });
        self.run(line);
    }

    /// Runs the ticket's line; `Some` when its step is still to be carried out by another thread.
    fn run_for(self: &Arc<Self>, ticket: Option<Ticket>) -> Option<Pending> {
        let ticket = ticket?;
        self.run(ticket.line());
        self.pending(Some(ticket))
    }

    fn pending(&self, ticket: Option<Ticket>) -> Option<Pending> {
        self.sequence.wait_for(ticket?).map(Pending::new)
    }

    /// Carries out the line's steps; a long line moves on to a task of its own.
    pub(super) fn run(self: &Arc<Self>, line: usize) {
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.sequence
                .run(line, STEPS_PER_RUN, |step| self.carry_out(step))
        }));
        match ran {
            Ok(Ran::Done) => {}
            Ok(Ran::More) => self.run_elsewhere(line),
            Err(panic) => {
                // A bug in a step: the steps behind it (and whoever waits for them) must not
                // wait for the next push to this line, which may never come.
                tracing::error!(
                    line,
                    "a channel step panicked; the rest of its line goes on"
                );
                self.run_elsewhere(line);
                std::panic::resume_unwind(panic);
            }
        }
    }

    /// Runs the line on a task of its own (or here, outside a runtime).
    fn run_elsewhere(self: &Arc<Self>, line: usize) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let app = self.clone();
                runtime.spawn(self.tasks.track_future(async move { app.run(line) }));
            }
            Err(_) => self.run(line),
        }
    }

    /// Counts a new connection against the app's quota on this node; false when full.
    pub fn try_add_connection(&self) -> bool {
        self.connections.try_add()
    }

    /// Releases a connection counted by [`AppChannels::try_add_connection`].
    pub fn remove_connection(&self) {
        self.connections.remove()
    }
}

/// The `data` of a `client_event` webhook: the client's string, or its JSON encoded as a string.
fn data_as_string(data: &serde_json::value::RawValue) -> String {
    serde_json::from_str::<String>(data.get()).unwrap_or_else(|_| data.get().to_owned())
}

//! One app on a cluster node: the node's own sockets (to deliver to), the ordered lines of its
//! channels, and the queues of Redis operations that feed them.
//!
//! A subscribe or leave is queued for its line's worker ([`super::worker`]), which runs the
//! Redis round trips in the order the sockets asked and then puts the step in line; the line
//! carries it out ([`super::line`]). Broadcasts from Redis go into the same lines. Events are
//! published to Redis and delivered, here too, when they come back, so every node sees a
//! channel's events in Redis's order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use super::arrival_order::PublishOrder;
use super::availability::{members, only, Partitions};
use super::channel_state::partition_of;
use super::fanout::{Broadcast, BroadcastBody};
use super::line::{LineReplay, Step};
use super::link::NodeLink;
use super::worker::Resync;
use crate::apps::App;
use crate::cluster::sequence::{ChannelSequence, Ran, LINES};
use crate::cluster::watchlist::{Watching, Watchlists};
use crate::cluster::{ClientEvent, Outcome, Pending, Subscribed, Subscription};
use crate::config::EventKind;
use crate::engine::{ChannelRegistry, PresenceMember, UserRegistry};
use crate::limits::ConnectionLimit;
use crate::metrics::AppMetrics;
use crate::outbound::{Outbound, WireFrame};
use crate::protocol::channel::user_channel;
use crate::protocol::codes::SocketError;
use crate::protocol::{frames, SocketId};
use crate::webhooks::WebhookEvent;

/// Steps one caller carries out before the rest of the line moves to a task of its own.
const STEPS_PER_RUN: usize = 256;

/// A subscription on its way through Redis.
pub struct JoinRequest {
    pub channel: Arc<str>,
    pub socket: SocketId,
    pub outbound: Outbound,
    pub member: Option<PresenceMember>,
    pub cached: bool,
    /// Resolved once the joiner's reply is queued, or with the refusal.
    pub done: oneshot::Sender<Outcome>,
    /// Asked again (its list was too old when it arrived): already counted as in flight.
    pub again: bool,
}

impl JoinRequest {
    /// The same request, to be run again.
    pub fn again(self) -> JoinRequest {
        JoinRequest {
            again: true,
            ..self
        }
    }
}

/// A Redis operation of one line, run by its worker in order.
pub enum Op {
    Join(JoinRequest),
    Leave {
        channel: Arc<str>,
        socket: SocketId,
    },
    /// The line's share of the node's resync after an outage.
    Resync(Resync),
}

/// One app on a cluster node.
pub struct RedisApp {
    pub(super) app: Arc<App>,
    pub(super) link: Arc<NodeLink>,
    pub(super) channels: ChannelRegistry<Outbound>,
    users: UserRegistry<Outbound>,
    /// The sockets of this node watching users' online status.
    pub(super) watchlists: Watchlists<Outbound>,
    sequence: ChannelSequence<Step>,
    /// Per line, the versioned-delivery state of its channels.
    replay: Box<[Mutex<LineReplay>]>,
    ops: Box<[mpsc::UnboundedSender<Op>]>,
    pub(super) metrics: Arc<AppMetrics>,
    /// Publishes and line runs on tasks of their own: shutdown waits for them.
    tasks: TaskTracker,
    connections: ConnectionLimit,
}

impl RedisApp {
    /// The app's empty state, and the receiving ends of its lines' operation queues (one per
    /// line, in line order) for the workers.
    pub fn new(
        app: Arc<App>,
        link: Arc<NodeLink>,
        metrics: Arc<AppMetrics>,
        tasks: TaskTracker,
    ) -> (Arc<RedisApp>, Vec<mpsc::UnboundedReceiver<Op>>) {
        let (ops, queues): (Vec<_>, Vec<_>) = (0..LINES).map(|_| mpsc::unbounded_channel()).unzip();
        let connections = ConnectionLimit::new(app.max_connections);
        let app = Arc::new(RedisApp {
            app,
            link,
            channels: ChannelRegistry::default(),
            users: UserRegistry::default(),
            watchlists: Watchlists::default(),
            sequence: ChannelSequence::default(),
            replay: (0..LINES).map(|_| Mutex::default()).collect(),
            ops: ops.into_boxed_slice(),
            metrics,
            tasks,
            connections,
        });
        (app, queues)
    }

    pub(super) fn replay(&self, line: usize) -> MutexGuard<'_, LineReplay> {
        self.replay[line].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an operation for its line's worker.
    pub(super) fn enqueue(&self, line: usize, op: Op) {
        self.link.ops_begun();
        if self.ops[line].send(op).is_err() {
            // The workers are gone (shutdown ended): nothing will run it.
            self.link.ops_ended();
        }
    }

    /// Puts a step in its line and carries the line out; `Some` while another thread does.
    pub(super) fn push(self: &Arc<Self>, line: usize, step: Step) -> Option<oneshot::Receiver<()>> {
        let ticket = self.sequence.push(line, step);
        self.run(line);
        self.sequence.wait_for(ticket)
    }

    /// The line of `channel`.
    pub(super) fn line_of(&self, channel: &str) -> usize {
        self.sequence.line_of(channel)
    }

    fn run(self: &Arc<Self>, line: usize) {
        let ran = self
            .sequence
            .run(line, STEPS_PER_RUN, |step| self.carry_out(line, step));
        if ran == Ran::More {
            let app = self.clone();
            tokio::spawn(self.tasks.track_future(async move { app.run(line) }));
        }
    }

    /// Subscribes: Redis decides (the member limit counts the whole cluster), so the socket
    /// always waits on the returned `Pending`.
    pub fn subscribe(&self, request: Subscription<'_>) -> Subscribed {
        let Subscription {
            channel,
            socket,
            outbound,
            member,
            cached,
        } = request;
        // O(1): a big channel must not make every join walk its subscribers.
        let subscribed = self.channels.is_subscribed(channel, socket);
        let (done, decided) = oneshot::channel();
        let join = JoinRequest {
            channel: Arc::from(channel),
            socket,
            outbound: outbound.clone(),
            member: member.cloned(),
            cached,
            done,
            again: false,
        };
        self.enqueue(self.line_of(channel), Op::Join(join));
        Subscribed {
            newly: !subscribed,
            pending: Some(Pending::decided(decided, false)),
        }
    }

    /// Unsubscribes: the socket gets nothing more of the channel, then Redis forgets it.
    pub fn leave(&self, channel: &str, socket: SocketId) -> bool {
        let channel = Arc::from(channel);
        self.enqueue(self.line_of(&channel), Op::Leave { channel, socket });
        true
    }

    /// Publishes a frame through Redis; the `Pending` resolves once Redis took it. While the
    /// node is offline (or when the publish fails) the frame goes to this node's sockets only.
    /// `order`: the request it is an item of, when it has several.
    pub fn publish(
        self: &Arc<Self>,
        channel: &str,
        frame: WireFrame,
        except: Option<SocketId>,
        cache: Option<Arc<str>>,
        order: Option<&mut PublishOrder>,
    ) -> Option<Pending> {
        if !self.link.is_online_for(&self.app.id, channel) {
            self.deliver_here(channel, frame, except);
            return None;
        }
        // A cached event goes through its channel's script and is ordered by its version only:
        // it is not stamped, and later items do not wait for it.
        let stamp = match cache {
            Some(_) => None,
            None => order.and_then(|order| self.link.fanout.stamp(order, &self.app.id, channel)),
        };
        let (done, decided) = oneshot::channel();
        let app = self.clone();
        let channel = channel.to_owned();
        self.tasks.spawn(async move {
            let sent_except = except.map(|s| s.to_string());
            let published = app
                .link
                .publish(
                    &app.app.id,
                    &channel,
                    &frame,
                    sent_except.as_deref(),
                    cache.as_deref(),
                    stamp.as_ref(),
                )
                .await;
            if let Err(error) = published {
                app.link.failed_for(&app.app.id, &channel, &error);
                app.deliver_here(&channel, frame, except);
            }
            let _ = done.send(Outcome::Done);
        });
        Some(Pending::decided(decided, true))
    }

    /// Delivers an event to this node's subscribers only, in line (the node is offline).
    fn deliver_here(self: &Arc<Self>, channel: &str, frame: WireFrame, except: Option<SocketId>) {
        let broadcast = Broadcast {
            app: self.app.id.to_string(),
            channel: channel.to_owned(),
            origin: String::new(),
            except: except.map(|s| s.to_string()),
            version: None,
            body: BroadcastBody::Event(frame),
        };
        let _ = self.push(self.line_of(channel), Step::Received(broadcast));
    }

    /// Relays a client event through Redis, and its webhook into the channel's stream.
    pub fn client_event(self: &Arc<Self>, event: ClientEvent<'_>) -> Option<Pending> {
        let ClientEvent {
            channel,
            name,
            data,
            socket,
            user_id,
        } = event;
        let text = frames::client_event(name, channel, data, user_id);
        let frame = WireFrame::event(&text, self.app.compress_above);
        if self.link.wants(&self.app.id, EventKind::ClientEvent) {
            let webhook = WebhookEvent::ClientEvent {
                channel: Arc::from(channel),
                event: name.to_owned(),
                data: serde_json::from_str::<String>(data.get())
                    .unwrap_or_else(|_| data.get().to_owned()),
                socket_id: socket.to_string(),
                user_id: user_id.map(Arc::from),
            };
            self.append(webhook);
        }
        self.publish(channel, frame, Some(socket), None, None)
    }

    /// Appends a webhook event this node saw to its channel's stream, on a task.
    pub(super) fn append(&self, event: WebhookEvent) {
        let link = self.link.clone();
        let app = self.app.id.clone();
        self.tasks
            .spawn(async move { link.append(&app, &event).await });
    }

    /// Records that `socket` signed in as `user_id`, and adds it to the user's own channel
    /// (whose occupancy across the cluster is the user's online status).
    pub fn sign_in(&self, user_id: &Arc<str>, socket: SocketId, outbound: Outbound) {
        self.users.add(user_id, socket, outbound.clone());
        let channel = user_channel(user_id);
        let request = Subscription::to_user_channel(&channel, socket, &outbound);
        // Nobody waits for it: the client hears nothing of its user's channel.
        drop(self.subscribe(request));
    }

    /// Forgets `socket`'s sign-in.
    pub fn sign_out(&self, user_id: &str, socket: SocketId) {
        self.users.remove(user_id, socket);
        self.leave(&user_channel(user_id), socket);
    }

    /// Registers `socket` as watching `ids`; its initial status is read from Redis on a task
    /// (changes heard meanwhile follow it).
    pub fn watch(
        self: &Arc<Self>,
        socket: SocketId,
        outbound: Outbound,
        ids: &[String],
    ) -> Arc<Watching<Outbound>> {
        let watching = Arc::new(self.watchlists.watch(socket, outbound, ids));
        let (app, started) = (self.clone(), watching.clone());
        self.tasks.spawn(async move {
            let channels: Vec<String> = started.ids().iter().map(|id| user_channel(id)).collect();
            let link = &app.link;
            let counts = link
                .state()
                .subscription_counts(&mut link.con(), &app.app.id, &channels)
                .await;
            let counts = counts.unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot read watched users' status; none sent as online");
                vec![0; channels.len()]
            });
            let online: std::collections::HashSet<&str> = (started.ids().iter())
                .zip(&counts)
                .filter(|(_, count)| **count > 0)
                .map(|(id, _)| &**id)
                .collect();
            app.watchlists.start(&started, |id| online.contains(id));
        });
        watching
    }

    /// Once every line resynced `partitions` (within a bound), reads the status of every
    /// watched user there again (but not in a partition a newer recovery took over) and tells
    /// this node's watchers what changed meanwhile.
    pub(super) fn reconcile_watchlists_after(
        self: &Arc<Self>,
        synced: Arc<super::worker::LinesSynced>,
        (generation, partitions): (u64, Partitions),
    ) {
        let app = self.clone();
        self.tasks.spawn(async move {
            let bound = std::time::Duration::from_secs(30);
            if tokio::time::timeout(bound, synced.wait()).await.is_err() {
                return;
            }
            let availability = &app.link.availability;
            let current = members(partitions)
                .filter(|p| availability.generation_of(*p) == generation)
                .fold(0, |set, p| set | only(p));
            app.reconcile_watchlists(current).await;
        });
    }

    /// Reads the status of the users watched in `partitions` and tells the watchers what
    /// changed; a partition whose read fails goes offline again (its recovery reconciles).
    async fn reconcile_watchlists(&self, partitions: Partitions) {
        let read_from = self.watchlists.mark();
        let mut by_partition: HashMap<u32, Vec<Arc<str>>> = HashMap::new();
        for user in self.watchlists.watched() {
            let partition = partition_of(&self.app.id, &user_channel(&user));
            if partitions & only(partition) != 0 {
                by_partition.entry(partition).or_default().push(user);
            }
        }
        let mut online = HashMap::new();
        let link = &self.link;
        for (partition, users) in by_partition {
            for chunk in users.chunks(1000) {
                let channels: Vec<String> = chunk.iter().map(|id| user_channel(id)).collect();
                let state = link.state();
                let counts = state
                    .subscription_counts(&mut link.con(), &self.app.id, &channels)
                    .await;
                match counts {
                    Ok(counts) => {
                        online.extend(chunk.iter().zip(counts).map(|(id, n)| (id.clone(), n > 0)))
                    }
                    // Scoped: the other partitions go on; else the whole node goes offline.
                    Err(error) if link.availability.is_scoped() => {
                        link.availability.went_offline_in(only(partition), &error);
                        break;
                    }
                    Err(error) => return link.availability.went_offline(&error),
                }
            }
        }
        let told = (self.watchlists).reconcile(read_from, |id: &str| online.get(id).copied());
        if told > 0 {
            tracing::info!(app = %self.app.id, users = told, "watchers told what changed while this node was cut off");
        }
    }

    /// Forgets a socket's watchlist.
    pub fn unwatch(&self, watching: &Watching<Outbound>) {
        self.watchlists.unwatch(watching);
    }

    /// The user's signed-in connections across the cluster.
    pub async fn user_connections(&self, user_id: &str) -> Result<u64, ::redis::RedisError> {
        let (link, channel) = (&self.link, user_channel(user_id));
        let state = link.state();
        state
            .subscription_count(&mut link.con(), &self.app.id, &channel)
            .await
    }

    /// Closes this node's connections signed in as the user (asked by any node).
    pub(super) fn terminate_here(&self, user_id: &str) {
        for outbound in self.users.connections(user_id) {
            outbound.close(SocketError::Unauthorized(
                "connections terminated by the server".into(),
            ));
        }
    }

    /// Closes every subscribed socket of this node with 4200 (the node rejoined after a fence:
    /// its sockets were reaped, their clients must subscribe again); returns how many.
    pub(super) fn close_subscribed(&self) -> usize {
        let mut closed = std::collections::HashSet::new();
        for summary in self.channels.summaries("") {
            let recipients = self
                .channels
                .with_channel(&summary.name, false, |view| view.map(|v| v.recipients()));
            for (socket, outbound) in recipients.iter().flat_map(|r| r.iter()) {
                if closed.insert(*socket) {
                    outbound.close(SocketError::ServerShutdown);
                }
            }
        }
        closed.len()
    }

    /// Counts a new connection against the app's quota on this node; false when full (the
    /// cluster-wide count is the stage's, see `connection_counts`).
    pub fn try_add_connection(&self) -> bool {
        self.connections.try_add()
    }

    /// Releases a connection counted by [`RedisApp::try_add_connection`].
    pub fn remove_connection(&self) {
        self.connections.remove()
    }

    /// The app's connections on this node now.
    pub fn open_connections(&self) -> usize {
        self.connections.open()
    }
}

//! Cross-node fan-out on Redis pub/sub: one PUBLISH per event, the frame serialized once; each
//! node delivers to its own sockets and applies the `socket_id` exclusion there.
//!
//! A node listens only to the topics of channels it has local subscribers for, so a publish
//! nobody remote listens to costs nothing remote. One Redis connection receives every topic of
//! the node, in the order Redis published them, which is what keeps a channel's order across
//! nodes. [`Fanout::listen`] resolves once Redis confirmed the subscription: a node replies
//! `subscription_succeeded` only after it, so an event published after the client saw the reply
//! reaches it. A broken pub/sub connection, or one that stops answering its PING, is
//! reconnected with back-off and every wanted topic subscribed again; what was published in
//! between is lost, which [`Fanout::connected`] tells the node (it resyncs).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::arrival_order::{topic_hash, ArrivalOrder, PublishOrder, Stamp};
use super::availability::{only, Availability, EVERY_PARTITION};
use super::broadcast_wire::{decode, partition_of_key, users_topic, Topics, VERSION};
use super::channel_state::{partition_of, PARTITIONS};

pub use super::broadcast_wire::topic;
use super::connection::RedisConnection;
use super::subscriber::{self, Incoming, PubSubTarget, SubscriberSink, SubscriberStream};
use ::redis::RedisError;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::outbound::WireFrame;

/// What a broadcast carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BroadcastBody {
    /// An event's frames as the wire carries them, for every subscriber but the excluded
    /// socket (framed once, by the publishing node).
    Event(WireFrame),
    /// Close every socket signed in as this user (`terminate_connections`).
    Terminate {
        /// The user.
        user_id: String,
    },
    /// A presence member joined the channel (published by the join script).
    MemberAdded {
        /// The user.
        user_id: String,
        /// Its `user_info` JSON.
        user_info: String,
    },
    /// A presence member's last socket left the channel (published by the leave script).
    MemberRemoved {
        /// The user.
        user_id: String,
    },
    /// The channel's subscription count across the cluster (published by the script that
    /// announced it, throttled per the app's window).
    SubscriptionCount(usize),
    /// A user's first signed-in connection arrived (`online`) or their last one closed,
    /// anywhere in the cluster (published by the script that made the change).
    Watchlist {
        /// The user.
        user_id: String,
        /// Online now, or offline.
        online: bool,
    },
}

/// One event received from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// The app.
    pub app: String,
    /// The channel.
    pub channel: String,
    /// The incarnation that published it.
    pub origin: String,
    /// The socket that must not get it (`socket_id` of a trigger, a client event's sender).
    pub except: Option<String>,
    /// A member notice's place in the channel's sequence of notices: deliver it to a socket
    /// only when it is above the version of the member list the socket was sent.
    pub version: Option<u64>,
    /// The event or notice.
    pub body: BroadcastBody,
}

/// A node's side of the fan-out.
pub struct Fanout {
    pub(super) prefix: String,
    /// The apps' ids, longest first: a topic names its app by one of them.
    app_ids: Arc<[String]>,
    origin: String,
    /// Told when the primary changed: the pub/sub connection is dropped and opened again.
    reconnect: Notify,
    /// Set with `reconnect` when the connection must be opened again wherever it goes.
    reopen: std::sync::atomic::AtomicBool,
    /// The server the pub/sub connection was opened to (the command connection's then).
    subscribed_to: Mutex<String>,
    /// Where reconnects and the connection's last proof of life are reported, once set.
    metrics: OnceLock<Arc<Metrics>>,
    /// When the pub/sub connection last proved alive, in ms since `started`.
    alive_at_ms: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
    publisher: RedisConnection,
    pub(super) listening: Mutex<Listening>,
    connected: watch::Sender<bool>,
    /// What the node may use; with failures scoped per partition, a dropped topic takes only
    /// its partition down, and `pubsub_shards` checks each shard.
    pub(super) availability: Arc<Availability>,
}

/// The topics this node wants, and the pub/sub connection they are subscribed on (`None` while
/// it is being reconnected: every wanted topic is subscribed again on the new one).
pub(super) struct Listening {
    pub(super) sink: Option<SubscriberSink>,
    pub(super) topics: HashSet<String>,
    /// The topics' hashes, counted (stamps name topics by hash).
    hashes: HashMap<u32, u32>,
    /// Sharded unsubscribes this node sent and Redis has not confirmed yet: their confirmation
    /// arrives as the same push as a slot's move away, which must not be taken for one.
    pub(super) unsubscribing: HashMap<String, u32>,
    /// Wanted topics not subscribed on the connection yet (their shard was out, or the
    /// connection was opened again on a Redis Cluster): a partition goes online only once none
    /// of its topics is left here.
    pub(super) unsubscribed: HashSet<String>,
    /// Topics given up while their shard was out, perhaps still subscribed there.
    pub(super) forgotten: HashSet<String>,
}

impl Listening {
    /// Wants `topic`; true when it was not wanted yet.
    fn want(&mut self, topic: &str) -> bool {
        let new = self.topics.insert(topic.to_owned());
        if new {
            *self.hashes.entry(topic_hash(topic)).or_default() += 1;
        }
        new
    }

    /// Whether an unsubscribe push for `topic` is Redis dropping a wanted topic (not the
    /// confirmation of one this node sent).
    fn server_dropped(&mut self, topic: &str) -> bool {
        if let Some(pending) = self.unsubscribing.get_mut(topic) {
            *pending -= 1;
            if *pending == 0 {
                self.unsubscribing.remove(topic);
            }
            return false;
        }
        self.topics.contains(topic)
    }

    /// An unsubscribe of `topic` is about to be sent: with sharded pub/sub its confirmation is
    /// counted, so it is not taken for the slot moving away.
    pub(super) fn unsubscribing_now(&mut self, topic: &str) {
        if self.sink.as_ref().is_some_and(|s| s.confirms_by_push()) {
            *self.unsubscribing.entry(topic.to_owned()).or_default() += 1;
        }
    }

    /// No longer wants `topic`; true when it was wanted.
    fn drop_topic(&mut self, topic: &str) -> bool {
        let was = self.topics.remove(topic);
        if was {
            let hash = topic_hash(topic);
            if let Some(count) = self.hashes.get_mut(&hash) {
                *count -= 1;
                if *count == 0 {
                    self.hashes.remove(&hash);
                }
            }
        }
        was
    }
}

/// Where a node's received broadcasts go, and the task reading them.
pub struct Received {
    /// Every broadcast of the topics listened to, in Redis order.
    pub broadcasts: mpsc::Receiver<Broadcast>,
    /// Reads the pub/sub connection, reconnecting it, until the receiver is dropped.
    pub task: JoinHandle<()>,
}

/// Broadcasts read from Redis and not yet taken by the node. When the node falls this far
/// behind, the reader stops reading. On a Redis Cluster the connection's own queue is bounded
/// too (`subscriber.rs`: past it the connection counts as broken and the node resyncs). On one
/// Redis, redis-rs's pub/sub connection reads its socket eagerly into a queue of its own, which
/// is not bounded: a node that stays behind a flood for long grows there.
const BROADCAST_QUEUE: usize = 16_384;

/// How long a pub/sub connection, a resubscription or a check may take before the connection
/// is taken for broken.
const PUBSUB_BOUND: Duration = Duration::from_secs(2);

/// What the reader does after taking one thing received.
enum Next {
    /// Read on.
    Read,
    /// The connection broke (or lost a subscription): open it again.
    Reconnect,
    /// Nobody receives the broadcasts any more.
    Stop,
}

/// Hands broadcasts to the node in order; false once nobody receives them.
async fn pass_on(broadcasts: Vec<Broadcast>, deliver: &mpsc::Sender<Broadcast>) -> bool {
    for broadcast in broadcasts {
        if deliver.send(broadcast).await.is_err() {
            return false;
        }
    }
    true
}

/// Sleeps until `due`, or for ever without one.
async fn sleep_until(due: Option<std::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

fn bounded_error(what: &'static str) -> RedisError {
    RedisError::from((::redis::ErrorKind::Io, what))
}

impl Fanout {
    /// Connects the node's pub/sub connection; `publisher` sends the PUBLISH commands. The
    /// connection is checked every `check_every` (a PING) and reconnected when it breaks or
    /// stops answering; [`Fanout::connected`] tells when it is.
    pub async fn start(
        prefix: &str,
        app_ids: impl IntoIterator<Item = String>,
        origin: &str,
        (publisher, availability): (RedisConnection, Arc<Availability>),
        check_every: Duration,
    ) -> Result<(Arc<Fanout>, Received), RedisError> {
        let mut app_ids: Vec<String> = app_ids.into_iter().collect();
        app_ids.sort_by_key(|id| std::cmp::Reverse(id.len()));
        let fanout = Arc::new(Fanout {
            prefix: prefix.to_owned(),
            app_ids: app_ids.into(),
            origin: origin.to_owned(),
            reconnect: Notify::new(),
            reopen: std::sync::atomic::AtomicBool::new(false),
            subscribed_to: Mutex::new(String::new()),
            metrics: OnceLock::new(),
            alive_at_ms: std::sync::atomic::AtomicU64::new(0),
            started: std::time::Instant::now(),
            publisher,
            listening: Mutex::new(Listening {
                sink: None,
                topics: HashSet::new(),
                hashes: HashMap::new(),
                unsubscribing: HashMap::new(),
                unsubscribed: HashSet::new(),
                forgotten: HashSet::new(),
            }),
            connected: watch::Sender::new(false),
            availability,
        });
        let messages = fanout.connect().await?;
        if fanout.availability.is_scoped() {
            let owners = fanout.publisher.slot_ranges().await?;
            let recorded = (fanout.relisten(EVERY_PARTITION, &owners, PUBSUB_BOUND)).await;
            if recorded != EVERY_PARTITION {
                return Err(bounded_error("a shard's pub/sub connection did not answer"));
            }
        }
        fanout.connected.send_replace(true);
        let (deliver, broadcasts) = mpsc::channel(BROADCAST_QUEUE);
        let task = tokio::spawn(fanout.clone().receive(messages, deliver, check_every));
        Ok((fanout, Received { broadcasts, task }))
    }

    /// The connection delivered a message or answered a PING.
    pub(super) fn proved_alive(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.alive_at_ms
            .store(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reports how long ago the connection last proved alive.
    fn report_age(&self) {
        if let Some(metrics) = self.metrics.get() {
            let alive_at = self.alive_at_ms.load(std::sync::atomic::Ordering::Relaxed);
            let age = (self.started.elapsed().as_millis() as u64).saturating_sub(alive_at);
            metrics.redis_link().heard("pubsub", age / 1000);
        }
    }

    /// Reports reconnects and the connection's last proof of life to `metrics` from now on.
    pub fn report_to(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Drops the pub/sub connection and opens it again to the server the command connection
    /// was moved to (a new primary): what was published meanwhile is lost, as after any break,
    /// and the node resyncs.
    pub fn reconnect(&self) {
        // A stored permit, so a call while the connection is being opened is not lost; a
        // connection already opened to the new server ignores it (see `moved`).
        self.reconnect.notify_one();
    }

    /// Drops the pub/sub connection and opens it again (on a Redis Cluster: it keeps asking
    /// another server than the one owning a slot): what was published meanwhile is lost, and
    /// the node resyncs.
    pub fn reopen(&self) {
        self.reopen
            .store(true, std::sync::atomic::Ordering::Release);
        self.reconnect.notify_one();
    }

    /// Whether the command connection went to another server than this one's.
    fn moved(&self) -> bool {
        let subscribed_to = self.subscribed_to.lock().unwrap_or_else(|e| e.into_inner());
        *subscribed_to != self.publisher.url()
    }

    /// Whether the pub/sub connection is up (every wanted topic subscribed on it), as it changes.
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    pub(super) fn listening(&self) -> std::sync::MutexGuard<'_, Listening> {
        self.listening.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a pub/sub connection and subscribes every wanted topic on it.
    async fn connect(&self) -> Result<SubscriberStream, RedisError> {
        // The server the commands go to: with Sentinel, the primary the node's recovery last
        // found (it moves the command connection first, then asks for a reconnection).
        let url = self.publisher.url();
        let target = self.publisher.pubsub_target();
        let (sink, messages) = tokio::time::timeout(PUBSUB_BOUND, subscriber::open(&target))
            .await
            .map_err(|_| bounded_error("no pub/sub connection in time"))??;
        *self.subscribed_to.lock().unwrap_or_else(|e| e.into_inner()) = url;
        let topics: Vec<String> = {
            let mut listening = self.listening();
            listening.sink = Some(sink.clone());
            listening.unsubscribing.clear();
            listening.forgotten.clear();
            if self.availability.is_scoped() {
                // Subscribed partition by partition as each shard answers (`pubsub_shards`):
                // one shard out must not keep the whole connection down.
                listening.unsubscribed = listening.topics.clone();
                Vec::new()
            } else {
                listening.topics.iter().cloned().collect()
            }
        };
        if !topics.is_empty() {
            let mut resubscribing = sink.clone();
            let subscribed = tokio::time::timeout(PUBSUB_BOUND, resubscribing.subscribe(topics))
                .await
                .unwrap_or_else(|_| Err(bounded_error("no resubscription in time")));
            if let Err(error) = subscribed {
                self.listening().sink = None;
                return Err(error);
            }
        }
        Ok(messages)
    }

    /// Reads broadcasts until the receiver is dropped, reconnecting with back-off whenever the
    /// connection breaks or fails its check.
    async fn receive(
        self: Arc<Self>,
        mut messages: SubscriberStream,
        deliver: mpsc::Sender<Broadcast>,
        check_every: Duration,
    ) {
        loop {
            if !self.read(&mut messages, &deliver, check_every).await {
                return;
            }
            self.listening().sink = None;
            self.connected.send_replace(false);
            tracing::warn!("the cluster's pub/sub connection broke; reconnecting");
            let mut delay = Duration::from_millis(100);
            messages = loop {
                match self.connect().await {
                    Ok(messages) => break messages,
                    Err(error) => {
                        tracing::warn!(%error, "cannot reconnect the cluster's pub/sub connection")
                    }
                }
                if deliver.is_closed() {
                    return;
                }
                self.report_age();
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            };
            self.connected.send_replace(true);
            if let Some(metrics) = self.metrics.get() {
                metrics.redis_link().reconnected("pubsub");
            }
            tracing::info!("the cluster's pub/sub connection is back");
        }
    }

    /// Delivers broadcasts until the connection breaks (true) or nobody receives them (false).
    async fn read(
        &self,
        messages: &mut SubscriberStream,
        deliver: &mpsc::Sender<Broadcast>,
        check_every: Duration,
    ) -> bool {
        let mut checks = tokio::time::interval(check_every);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let topics = Topics {
            prefix: format!("{}:", self.prefix),
            app_ids: self.app_ids.clone(),
        };
        let mut order = ArrivalOrder::default();
        let listened = |hash: u32| self.listening().hashes.contains_key(&hash);
        loop {
            let due = order.next_deadline();
            tokio::select! {
                _ = sleep_until(due) => {
                    let now = std::time::Instant::now();
                    if !pass_on(order.expire(&listened, now), deliver).await {
                        return false;
                    }
                }
                incoming = messages.next() => {
                    match self.take(incoming, &topics, &mut order, &listened, deliver).await {
                        Next::Read => {}
                        Next::Reconnect => return true,
                        Next::Stop => return false,
                    }
                }
                _ = self.reconnect.notified() => {
                    let reopen = self.reopen.swap(false, std::sync::atomic::Ordering::AcqRel);
                    if reopen || self.moved() {
                        return true;
                    }
                }
                _ = checks.tick() => {
                    self.report_age();
                    // Scoped: the supervisor checks each shard's connection (`pubsub_shards`).
                    if self.availability.is_scoped() {
                        continue;
                    }
                    if let Err(error) = self.check(PUBSUB_BOUND).await {
                        tracing::warn!(%error, "the cluster's pub/sub connection failed its check");
                        return true;
                    }
                    self.proved_alive();
                }
            }
        }
    }

    /// Hands what the connection received to the node, in its order.
    async fn take(
        &self,
        incoming: Option<Incoming>,
        topics: &Topics,
        order: &mut ArrivalOrder,
        listened: &(dyn Fn(u32) -> bool + Sync),
        deliver: &mpsc::Sender<Broadcast>,
    ) -> Next {
        let scoped = self.availability.is_scoped();
        let (topic, payload) = match incoming {
            None | Some(Incoming::Overflowed) => return Next::Reconnect,
            // Which shard's connection broke is not told: everything is opened again (on a
            // Redis Cluster the partitions are then subscribed again as their shards answer).
            Some(Incoming::Broken) => return Next::Reconnect,
            Some(Incoming::Message { topic, payload }) => (topic, payload),
            // A slot moved (what was published on the topic meanwhile is lost), unless it
            // confirms an unsubscribe of this node's.
            Some(Incoming::Dropped(topic)) if self.listening().server_dropped(&topic) => {
                match partition_of_key(&self.prefix, &topic) {
                    Some(partition) if scoped => {
                        let why = "a slot moved to another shard";
                        self.availability.went_offline_in(only(partition), &why);
                        return Next::Read;
                    }
                    _ => return Next::Reconnect,
                }
            }
            Some(Incoming::Dropped(_) | Incoming::Other) => return Next::Read,
        };
        self.proved_alive();
        let Some((broadcast, stamp)) = decode(topics, &topic, &payload) else {
            tracing::warn!(
                topic,
                "a cluster broadcast this node cannot read (another Herald version?); dropped"
            );
            return Next::Read;
        };
        // Most broadcasts: no stamp, and nothing held on their topic.
        let hash = (stamp.is_some() || order.next_deadline().is_some()).then(|| topic_hash(&topic));
        let passed = match hash {
            Some(hash) if stamp.is_some() || order.must_wait(hash) => {
                let now = std::time::Instant::now();
                let ready = order.arrive(broadcast, stamp, hash, listened, now);
                pass_on(ready, deliver).await
            }
            _ => deliver.send(broadcast).await.is_ok(),
        };
        match passed {
            true => Next::Read,
            false => Next::Stop,
        }
    }

    fn topic(&self, app: &str, channel: &str) -> String {
        topic(&self.prefix, app, channel)
    }

    /// Starts receiving a channel's broadcasts; resolves once Redis confirmed it. A topic
    /// wanted already is not subscribed again. On an error the topic stays wanted: the
    /// reconnected connection subscribes it.
    pub async fn listen(&self, app: &str, channel: &str) -> Result<(), RedisError> {
        let topic = self.topic(app, channel);
        let sink = {
            let mut listening = self.listening();
            let new = listening.want(&topic);
            let pending = listening.unsubscribed.contains(&topic);
            match &listening.sink {
                Some(_) if !new && !pending => return Ok(()),
                sink => sink.clone(),
            }
        };
        self.subscribe(sink, topic).await
    }

    /// Subscribes a wanted topic on `sink`; once confirmed, it is subscribed.
    async fn subscribe(
        &self,
        sink: Option<SubscriberSink>,
        topic: String,
    ) -> Result<(), RedisError> {
        let Some(mut sink) = sink else {
            return Err(bounded_error("the pub/sub connection is being reconnected"));
        };
        // Bounded: a worker waiting here holds its whole line.
        tokio::time::timeout(PUBSUB_BOUND, sink.subscribe(vec![topic.clone()]))
            .await
            .map_err(|_| bounded_error("no subscription in time"))??;
        let mut listening = self.listening();
        listening.unsubscribed.remove(&topic);
        listening.forgotten.remove(&topic);
        Ok(())
    }

    /// While `down` (checked under the same lock the partition's recovery takes it online
    /// under), wants a channel's topic without subscribing it now (its shard is out): the
    /// recovery subscribes it before the partition goes online. False when not down.
    pub fn want_while_down(&self, app: &str, channel: &str, down: impl Fn() -> bool) -> bool {
        let topic = self.topic(app, channel);
        let mut listening = self.listening();
        if !down() {
            return false;
        }
        listening.want(&topic);
        listening.forgotten.remove(&topic);
        listening.unsubscribed.insert(topic);
        true
    }

    /// No longer wants a channel's topic, without unsubscribing it now (its shard is out): the
    /// partition's recovery unsubscribes it.
    pub fn forget(&self, app: &str, channel: &str) {
        let topic = self.topic(app, channel);
        let mut listening = self.listening();
        if listening.drop_topic(&topic) && !listening.unsubscribed.remove(&topic) {
            listening.forgotten.insert(topic);
        }
    }

    /// Stops receiving a channel's broadcasts (its last local subscriber left).
    pub async fn unlisten(&self, app: &str, channel: &str) -> Result<(), RedisError> {
        let topic = self.topic(app, channel);
        let sink = {
            let mut listening = self.listening();
            if !listening.drop_topic(&topic) {
                return Ok(());
            }
            listening.unsubscribed.remove(&topic);
            listening.unsubscribing_now(&topic);
            listening.sink.clone()
        };
        match sink {
            Some(mut sink) => sink.unsubscribe(topic).await,
            None => Ok(()),
        }
    }

    /// PINGs the pub/sub connection: one that stays open but delivers nothing (a silently dead
    /// path) fails this within `bound`, where waiting for broadcasts would hear nothing forever.
    pub async fn check(&self, bound: Duration) -> Result<(), RedisError> {
        let Some(mut sink) = self.listening().sink.clone() else {
            return Err(bounded_error("the pub/sub connection is being reconnected"));
        };
        match tokio::time::timeout(bound, sink.ping()).await {
            Ok(reply) => reply.map(drop),
            Err(_) => Err(bounded_error(
                "the pub/sub connection did not answer PING in time",
            )),
        }
    }

    /// Starts receiving the app's user-wide commands (every node listens to them).
    pub async fn listen_users(&self, app: &str) -> Result<(), RedisError> {
        let topics: Vec<String> = (0..PARTITIONS)
            .map(|partition| users_topic(&self.prefix, app, partition))
            .collect();
        let sink = {
            let mut listening = self.listening();
            for topic in &topics {
                listening.want(topic);
            }
            listening.sink.clone()
        };
        let Some(mut sink) = sink else {
            return Err(bounded_error("the pub/sub connection is being reconnected"));
        };
        sink.subscribe(topics).await
    }

    /// The start of an event's message, up to its version.
    pub fn event_header(&self, except: Option<&str>) -> String {
        format!("{VERSION}\ne\n{}\n{}\n", self.origin, except.unwrap_or(""))
    }

    /// The stamp of a request's next item, on `channel`: only on a Redis Cluster, where the
    /// shards reach a node on connections of their own (see `arrival_order`).
    pub fn stamp(&self, order: &mut PublishOrder, app: &str, channel: &str) -> Option<Stamp> {
        let on_shards = matches!(self.publisher.pubsub_target(), PubSubTarget::Cluster { .. });
        on_shards.then(|| order.stamp(&self.topic(app, channel)))
    }

    /// Publishes one event to every node listening to its channel; returns how many received it.
    /// A stamped one is an item of a request, delivered in the request's order.
    pub async fn publish(
        &self,
        app: &str,
        channel: &str,
        except: Option<&str>,
        frame: &WireFrame,
        stamp: Option<&Stamp>,
    ) -> Result<u64, RedisError> {
        let mut message = match stamp {
            None => self.event_header(except).into_bytes(),
            Some(stamp) => {
                let except = except.unwrap_or("");
                let header = format!(
                    "{VERSION}\no\n{}\n{except}\n\n{}",
                    self.origin,
                    stamp.encode()
                );
                header.into_bytes()
            }
        };
        message.push(b'\n');
        message.extend_from_slice(frame.as_ref());
        ::redis::cmd(self.publisher.publish_command())
            .arg(self.topic(app, channel))
            .arg(message)
            .query_async(&mut self.publisher.clone())
            .await
    }

    /// Asks every node to close the sockets signed in as `user_id`.
    pub async fn terminate(&self, app: &str, user_id: &str) -> Result<u64, RedisError> {
        let message = format!("{VERSION}\nt\n{}\n\n\n{user_id}", self.origin);
        // Every node listens to all the app's users topics: any one will do.
        let partition = partition_of(app, user_id);
        ::redis::cmd(self.publisher.publish_command())
            .arg(users_topic(&self.prefix, app, partition))
            .arg(message)
            .query_async(&mut self.publisher.clone())
            .await
    }
}

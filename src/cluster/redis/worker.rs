//! The worker of one line of one app: runs the line's Redis operations one after another, in
//! the order its sockets asked, then puts their steps in line.
//!
//! A join first listens to the channel's topic (when this node does not yet), so every event
//! published after the join script reaches the node; its `subscription_succeeded` goes out only
//! after both. A leave takes the socket out of local delivery first, then out of Redis, then
//! stops listening when the node has nobody left on the channel.
//!
//! While the node is offline (Redis unreachable or its state lost), or the channel's partition
//! is (its shard is out), joins and leaves change only the node's own sockets; the resync after
//! it ([`Op::Resync`], one per line, queued behind what was asked before it) puts the line's
//! share of the shared state right, idempotently. Until its worker carried out the resync of a
//! partition's current generation, a line stays offline for that partition.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::app::{JoinRequest, Op, RedisApp};
use super::availability::{members, only, Partitions};
use super::channel_state::{partition_of, PARTITIONS};
use super::channel_state::{JoinMode, Joined, Joining, Transition};
use super::line::Step;
use crate::cluster::{Outcome, Refusal};
use crate::config::EventKind;
use crate::engine::PresenceMember;
use crate::journal::{shown_text, MemberDetail, NoDetail};
use crate::protocol::channel::user_of_channel;
use crate::protocol::codes::{SocketError, SubscriptionError};
use crate::protocol::{ChannelType, SocketId};
use crate::webhooks::WebhookEvent;

/// Runs the operations of `line` until the queue closes or the node is closed (the queue's
/// sender lives in `app`, which this task holds: only `close` ends it at shutdown, once the
/// stage has waited for the queued operations).
pub async fn run(
    app: Arc<RedisApp>,
    line: usize,
    mut ops: mpsc::UnboundedReceiver<Op>,
    close: CancellationToken,
) {
    let mut worker = Worker {
        app,
        line,
        synced: [0; PARTITIONS as usize],
        joined_offline: HashSet::new(),
    };
    while let Some(op) = tokio::select! {
        op = ops.recv() => op,
        _ = close.cancelled() => None,
    } {
        match op {
            Op::Join(request) => worker.join(request).await,
            Op::Leave { channel, socket } => worker.leave(channel, socket).await,
            Op::Resync(resync) => worker.resync(resync).await,
        }
        worker.app.link.ops_ended();
    }
}

struct Worker {
    app: Arc<RedisApp>,
    line: usize,
    /// Per partition, the resync generation this line carried out last.
    synced: [u64; PARTITIONS as usize],
    /// Sockets that joined while the node was offline: new to the cluster, so a rebuild adds
    /// them as joins that announce, not as restored ones.
    joined_offline: HashSet<(Arc<str>, SocketId)>,
}

/// A line's share of a resync: put its sockets back into Redis and take out those that left.
pub struct Resync {
    /// The generation it belongs to.
    pub generation: u64,
    /// Per channel of the line, the sockets Redis holds for this incarnation.
    pub in_redis: HashMap<String, Vec<String>>,
    /// Redis lost its data: the sockets go back without events ([`JoinMode::Rebuild`]).
    pub rebuild: bool,
    /// The partitions resynced (every one after an outage of the whole node).
    pub partitions: Partitions,
    /// Told when this line's share is done.
    pub synced: Arc<LinesSynced>,
}

/// Counts an app's lines down to the end of a resync: what waits for every line to be back in
/// Redis (the watchlists' reconciliation) waits on it.
pub struct LinesSynced {
    left: std::sync::atomic::AtomicUsize,
    all: tokio::sync::Notify,
}

impl LinesSynced {
    /// Waiting for `lines` lines.
    pub fn new(lines: usize) -> LinesSynced {
        LinesSynced {
            left: std::sync::atomic::AtomicUsize::new(lines),
            all: tokio::sync::Notify::new(),
        }
    }

    fn line_done(&self) {
        if self.left.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            // A stored permit: the waiter may start waiting after the last line is done.
            self.all.notify_one();
        }
    }

    /// Whether every line is done.
    pub fn is_done(&self) -> bool {
        self.left.load(std::sync::atomic::Ordering::Acquire) == 0
    }

    /// Resolves once every line is done (a line whose resync failed never is: a later
    /// recovery resyncs again).
    pub async fn wait(&self) {
        if self.left.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return;
        }
        self.all.notified().await;
    }
}

impl Worker {
    async fn join(&mut self, request: JoinRequest) {
        if !request.again {
            let mut replay = self.app.replay(self.line);
            replay
                .entry(request.channel.clone())
                .or_default()
                .begin_join();
        }
        if self.wanted_while_down(&request.channel) {
            return self.join_locally(request).await;
        }
        let listened = self.listen(&request.channel).await;
        let joined = match listened {
            Ok(()) if self.online(&request.channel) => self.run_join(&request, JoinMode::New).await,
            Ok(()) => return self.join_locally(request).await,
            Err(error) => Err(error),
        };
        let refused = |error| Refusal {
            channel: request.channel.clone(),
            error,
        };
        let refusal = match joined {
            Ok(reply) if reply.fenced => {
                // This incarnation was taken for dead: the client must go to another node.
                request.outbound.close(SocketError::ServerShutdown);
                None
            }
            Ok(reply) if reply.full => {
                let max = self.app.app.max_presence_members_per_channel;
                Some(refused(SubscriptionError::MembersLimit(max)))
            }
            Ok(reply) => return self.joined(request, reply),
            Err(error) => {
                self.app
                    .link
                    .failed_for(&self.app.app.id, &request.channel, &error);
                return self.join_locally(request).await;
            }
        };
        self.abandon(&request.channel).await;
        let outcome = refusal.map_or(Outcome::Done, Outcome::Refused);
        let _ = request.done.send(outcome);
    }

    /// Whether this line uses Redis for `channel`: its partition is online and this line
    /// resynced it since.
    fn online(&self, channel: &str) -> bool {
        let partition = partition_of(&self.app.app.id, channel);
        let availability = &self.app.link.availability;
        availability.is_online_in(partition)
            && self.synced[partition as usize] == availability.generation_of(partition)
    }

    /// Whether `channel`'s partition is down (its shard out); if so its topic is wanted, not
    /// subscribed: subscribing there would wait for a timeout, and the partition's recovery
    /// subscribes every topic wanted in it before it goes online.
    fn wanted_while_down(&self, channel: &str) -> bool {
        let down = || self.partition_down(channel);
        if ChannelType::of(channel).is_user() {
            // Nothing is published on a user's own channel: no topic.
            return down();
        }
        let app = &self.app.app.id;
        self.app.link.fanout.want_while_down(app, channel, down)
    }

    /// Whether `channel`'s partition alone is down (its shard is out, the node online).
    fn partition_down(&self, channel: &str) -> bool {
        let partition = partition_of(&self.app.app.id, channel);
        self.app.link.availability.is_down(partition)
    }

    /// Offline: the socket joins this node's sockets only (the resync adds it to Redis). The
    /// worker waits for the step, so a resync behind it finds the socket subscribed.
    async fn join_locally(&mut self, request: JoinRequest) {
        let joined = (request.channel.clone(), request.socket);
        self.joined_offline.insert(joined);
        if let Some(carried) = self
            .app
            .push(self.line, Step::Joined(Box::new((request, None))))
        {
            let _ = carried.await;
        }
    }

    async fn run_join(
        &self,
        request: &JoinRequest,
        mode: JoinMode,
    ) -> Result<Joined, ::redis::RedisError> {
        let (channel, member) = (&request.channel, request.member.as_ref());
        self.join_redis(channel, request.socket, member, request.cached, mode)
            .await
    }

    async fn join_redis(
        &self,
        channel: &str,
        socket: SocketId,
        member: Option<&PresenceMember>,
        cached: bool,
        mode: JoinMode,
    ) -> Result<Joined, ::redis::RedisError> {
        let socket = socket.to_string();
        let info = member.map(|m| m.user_info.as_ref().map_or("", |i| i.get()));
        let joining = Joining {
            app: &self.app.app.id,
            channel,
            socket: &socket,
            member: member.map(|m| (&*m.user_id, info.unwrap_or(""))),
            max_members: self.app.app.max_presence_members_per_channel,
            cached,
        };
        let link = &self.app.link;
        link.state().join_as(&mut link.con(), &joining, mode).await
    }

    fn joined(&mut self, request: JoinRequest, reply: Joined) {
        let link = &self.app.link;
        link.changed(&self.app.app.id, &request.channel, &reply.transition);
        let user = request.member.as_ref().map(|m| &*m.user_id);
        self.journal(&request.channel, &reply.transition, true, user);
        if request.cached
            && reply.cached.is_none()
            && link.wants(&self.app.app.id, EventKind::CacheMiss)
        {
            let channel = request.channel.clone();
            self.app.append(WebhookEvent::CacheMiss { channel });
        }
        // The joiner's reply goes out when its line carries the step out; the socket waits.
        let _ = self
            .app
            .push(self.line, Step::Joined(Box::new((request, Some(reply)))));
    }

    /// A join that added nothing: stop listening if nobody else needs the topic.
    async fn abandon(&mut self, channel: &Arc<str>) {
        {
            let mut replay = self.app.replay(self.line);
            if let Some(entry) = replay.get_mut(channel) {
                entry.abandon_join();
                if entry.is_idle() && self.app.channels.summary(channel).is_none() {
                    replay.remove(channel);
                }
            }
        }
        self.unlisten_if_unused(channel).await;
    }

    async fn leave(&mut self, channel: Arc<str>, socket: SocketId) {
        let online = self.online(&channel);
        let step = Step::Left {
            channel: channel.clone(),
            socket,
            local: !online,
        };
        let carried = self.app.push(self.line, step);
        if online {
            self.leave_redis(&channel, &socket.to_string()).await;
        }
        if let Some(carried) = carried {
            let _ = carried.await;
        }
        self.unlisten_if_unused(&channel).await;
    }

    /// Takes the socket out of Redis; on a failure the node goes offline and its resync does it.
    async fn leave_redis(&self, channel: &str, socket: &str) {
        let link = &self.app.link;
        let left = link
            .state()
            .leave(&mut link.con(), &self.app.app.id, channel, socket)
            .await;
        match left {
            Ok(transition) => {
                link.changed(&self.app.app.id, channel, &transition);
                self.journal(channel, &transition, false, transition.user.as_deref());
            }
            Err(error) => link.failed_for(&self.app.app.id, channel, &error),
        }
    }

    /// The console's entries for what this node's join or leave changed across the cluster
    /// (the event log is the node's own; the webhook events are the cluster's, appended by the
    /// scripts).
    fn journal(&self, channel: &str, transition: &Transition, joined: bool, user: Option<&str>) {
        let journal = self.app.metrics.journal();
        if let Some(user) = user_of_channel(channel) {
            if transition.occupancy_changed {
                let kind = if joined {
                    "user_online"
                } else {
                    "user_offline"
                };
                journal.record(kind, None, None, || MemberDetail {
                    user_id: Some(shown_text(user)),
                });
            }
            return;
        }
        if transition.occupancy_changed {
            let kind = if joined {
                "channel_occupied"
            } else {
                "channel_vacated"
            };
            journal.record(kind, Some(channel), None, || NoDetail {});
        }
        if transition.membership_changed {
            let kind = if joined {
                "member_added"
            } else {
                "member_removed"
            };
            journal.record(kind, Some(channel), None, || MemberDetail {
                user_id: user.map(shown_text),
            });
        }
    }

    /// Puts the line's sockets of the resynced partitions back into Redis as they are on this
    /// node now, and takes out those Redis holds that are gone; every step is idempotent, so a
    /// resync cut short is simply done again by the next one.
    async fn resync(&mut self, resync: Resync) {
        let Resync {
            generation,
            mut in_redis,
            rebuild,
            partitions,
            synced,
        } = resync;
        let app = self.app.clone();
        let availability = &app.link.availability;
        let partition = |channel: &str| partition_of(&app.app.id, channel);
        for summary in app.channels.summaries("") {
            let p = partition(&summary.name);
            if app.line_of(&summary.name) != self.line || partitions & only(p) == 0 {
                continue;
            }
            let held = in_redis.remove(&*summary.name).unwrap_or_default();
            // A partition that failed meanwhile waits for its next resync (no timeout per
            // channel of a shard that is out).
            if !availability.is_online_in(p) {
                continue;
            }
            if let Err(error) = self.resync_channel(&summary.name, held, rebuild).await {
                app.link.failed_for(&app.app.id, &summary.name, &error);
            }
        }
        for (channel, held) in in_redis {
            if !availability.is_online_in(partition(&channel)) {
                continue;
            }
            for socket in held {
                self.leave_redis(&channel, &socket).await;
            }
        }
        let mut done = true;
        for p in members(partitions) {
            if availability.is_online_in(p) && availability.generation_of(p) == generation {
                self.synced[p as usize] = generation;
            } else {
                done = false;
            }
        }
        let synced_now = |channel: &str| {
            let p = partition(channel);
            partitions & only(p) != 0 && self.synced[p as usize] == generation
        };
        self.joined_offline
            .retain(|(channel, _)| !synced_now(channel));
        if done {
            synced.line_done();
        }
    }

    /// One channel's share of a resync: listen, add the local sockets Redis lacks, take out
    /// those Redis holds that left.
    async fn resync_channel(
        &mut self,
        channel: &Arc<str>,
        held: Vec<String>,
        rebuild: bool,
    ) -> Result<(), ::redis::RedisError> {
        // Scoped: the partition's recovery subscribed its topics before it went online.
        self.listen(channel).await?;
        self.rejoin_here(channel, &held, rebuild).await?;
        for socket in held {
            let here = (socket.parse::<SocketId>())
                .is_ok_and(|s| self.app.channels.is_subscribed(channel, s));
            if !here {
                self.leave_redis(channel, &socket).await;
            }
        }
        Ok(())
    }

    /// Adds the channel's local sockets Redis does not hold: on a rebuild, those that were in
    /// before restored first, then those that joined offline as new joins.
    async fn rejoin_here(
        &self,
        channel: &Arc<str>,
        held: &[String],
        rebuild: bool,
    ) -> Result<(), ::redis::RedisError> {
        let members = (self.app.channels)
            .with_channel(channel, false, |view| view.map(|v| v.members()))
            .unwrap_or_default();
        let (restored, new): (Vec<_>, Vec<_>) = members
            .into_iter()
            .filter(|(socket, _)| !held.contains(&socket.to_string()))
            .partition(|(socket, _)| {
                rebuild && !self.joined_offline.contains(&(channel.clone(), *socket))
            });
        let restored = restored.into_iter().map(|m| (m, JoinMode::Rebuild));
        for ((socket, member), mode) in restored.chain(new.into_iter().map(|m| (m, JoinMode::New)))
        {
            let reply = self.join_redis(channel, socket, member.as_ref(), false, mode);
            let transition = reply.await?.transition;
            self.app
                .link
                .changed(&self.app.app.id, channel, &transition);
        }
        Ok(())
    }

    async fn listen(&mut self, channel: &Arc<str>) -> Result<(), ::redis::RedisError> {
        // Nothing is published on a user's own channel: its changes go to the app's user
        // topic, which every node listens to.
        if ChannelType::of(channel).is_user() {
            return Ok(());
        }
        let app = &self.app.app.id;
        self.app.link.fanout.listen(app, channel).await
    }

    async fn unlisten_if_unused(&mut self, channel: &Arc<str>) {
        let in_use = self.app.channels.summary(channel).is_some()
            || self.app.replay(self.line).contains_key(channel);
        if in_use || ChannelType::of(channel).is_user() {
            return;
        }
        let app = &self.app.app.id;
        if self.partition_down(channel) {
            // Its shard is out: an unsubscribe would wait for a timeout.
            self.app.link.fanout.forget(app, channel);
            return;
        }
        if let Err(error) = self.app.link.fanout.unlisten(app, channel).await {
            tracing::warn!(%error, %channel, "cannot stop listening to a channel's topic");
        }
    }
}

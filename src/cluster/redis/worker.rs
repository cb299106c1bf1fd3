//! The worker of one line of one app: runs the line's Redis operations one after another, in
//! the order its sockets asked, then puts their steps in line.
//!
//! A join first listens to the channel's topic (when this node does not yet), so every event
//! published after the join script reaches the node; its `subscription_succeeded` goes out only
//! after both. A leave takes the socket out of local delivery first, then out of Redis, then
//! stops listening when the node has nobody left on the channel.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::app::{JoinRequest, Op, RedisApp};
use super::channel_state::{Joined, Joining};
use super::line::Step;
use crate::cluster::{Outcome, Refusal};
use crate::config::EventKind;
use crate::protocol::codes::{SocketError, SubscriptionError};
use crate::protocol::SocketId;
use crate::webhooks::WebhookEvent;

/// Runs the operations of `line` until the queue closes.
pub async fn run(app: Arc<RedisApp>, line: usize, mut ops: mpsc::UnboundedReceiver<Op>) {
    let mut worker = Worker {
        app,
        line,
        listening: HashSet::new(),
    };
    while let Some(op) = ops.recv().await {
        match op {
            Op::Join(request) => worker.join(request).await,
            Op::Leave { channel, socket } => worker.leave(channel, socket).await,
        }
        worker.app.link.ops_ended();
    }
}

struct Worker {
    app: Arc<RedisApp>,
    line: usize,
    /// The channels whose topic this node listens to (only this worker changes them).
    listening: HashSet<Arc<str>>,
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
        let joined = match self.listen(&request.channel).await {
            Ok(()) => self.run_join(&request).await,
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
                tracing::warn!(%error, channel = %request.channel, "a subscription could not reach Redis");
                Some(refused(SubscriptionError::Unavailable(
                    "the cluster cannot be reached; retry later".into(),
                )))
            }
        };
        self.abandon(&request.channel).await;
        let outcome = refusal.map_or(Outcome::Done, Outcome::Refused);
        let _ = request.done.send(outcome);
    }

    async fn run_join(&self, request: &JoinRequest) -> Result<Joined, ::redis::RedisError> {
        let socket = request.socket.to_string();
        let info = request
            .member
            .as_ref()
            .map(|m| m.user_info.as_ref().map_or("", |i| i.get()));
        let joining = Joining {
            app: &self.app.app.id,
            channel: &request.channel,
            socket: &socket,
            member: request
                .member
                .as_ref()
                .map(|m| (&*m.user_id, info.unwrap_or(""))),
            max_members: self.app.app.max_presence_members_per_channel,
            cached: request.cached,
        };
        let link = &self.app.link;
        link.state().join(&mut link.con(), &joining).await
    }

    fn joined(&mut self, request: JoinRequest, reply: Joined) {
        let link = &self.app.link;
        let t = reply.transition;
        if t.changed && (t.occupancy_changed || t.membership_changed) {
            link.webhooks_due.notify_one();
        }
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
            .push(self.line, Step::Joined(Box::new((request, reply))));
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
        let step = Step::Left {
            channel: channel.clone(),
            socket,
        };
        let carried = self.app.push(self.line, step);
        let link = &self.app.link;
        let left = link
            .state()
            .leave(
                &mut link.con(),
                &self.app.app.id,
                &channel,
                &socket.to_string(),
            )
            .await;
        match left {
            Ok(t) if t.changed && (t.occupancy_changed || t.membership_changed) => {
                link.webhooks_due.notify_one()
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, %channel, "a leave could not reach Redis; the socket stays counted until this node is reaped")
            }
        }
        if let Some(carried) = carried {
            let _ = carried.await;
        }
        self.unlisten_if_unused(&channel).await;
    }

    async fn listen(&mut self, channel: &Arc<str>) -> Result<(), ::redis::RedisError> {
        if self.listening.contains(channel) {
            return Ok(());
        }
        self.app
            .link
            .fanout
            .listen(&self.app.app.id, channel)
            .await?;
        self.listening.insert(channel.clone());
        Ok(())
    }

    async fn unlisten_if_unused(&mut self, channel: &Arc<str>) {
        let in_use = self.app.channels.summary(channel).is_some()
            || self.app.replay(self.line).contains_key(channel);
        if in_use || !self.listening.remove(channel) {
            return;
        }
        if let Err(error) = self
            .app
            .link
            .fanout
            .unlisten(&self.app.app.id, channel)
            .await
        {
            tracing::warn!(%error, %channel, "cannot stop listening to a channel's topic");
        }
    }
}

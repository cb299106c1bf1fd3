//! The cluster-wide state of channels, changed only by Lua scripts that return the transition,
//! so exactly one node sees a channel go 0 → 1 or a user join it, however many nodes change it
//! at the same instant.
//!
//! Entries are per socket, so a repeated add or remove changes nothing: a script retried after
//! a broken connection (it may or may not have run) is harmless. Presence keeps a socket count
//! per user. The webhook events a transition generates are appended to its partition's stream
//! in the same script, so a crash can never separate a transition from its event; the grace
//! period is a pending entry in the partition, released by [`ChannelState::sweep`] after an
//! atomic re-check. Times are Redis `TIME`.
//!
//! Every key of a channel carries its partition as the hash tag (`{prefix}:{pN}:...`), so each
//! script touches one slot, as Redis Cluster requires.

use super::availability::{members, Partitions};
use super::connection::RedisConnection;
use ::redis::{RedisError, Script};

use super::channel_scripts::{JOIN, LEAVE, PUBLISH_CACHED, REAP, SWEEP};
use super::fanout::topic;

/// Partitions: the unit of webhook ordering and of leases, and the hash tag of channel keys.
pub const PARTITIONS: u32 = 64;

/// What became of a change's subscription count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountAnnouncement {
    /// Nothing to do: the channel announces no counts, or an announcement is held already.
    None,
    /// Announced to every node's subscribers and the webhooks, in the script.
    Now,
    /// Held until the app's window ends: a sweep of the partition then announces it.
    Held(std::time::Duration),
}

impl CountAnnouncement {
    fn from_reply(value: i64) -> CountAnnouncement {
        match value {
            -1 => CountAnnouncement::Now,
            ms if ms > 0 => CountAnnouncement::Held(std::time::Duration::from_millis(ms as u64)),
            _ => CountAnnouncement::None,
        }
    }
}

/// What a join or leave changed, cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// False when the socket was already in (join) or already out (leave): nothing changed.
    pub changed: bool,
    /// The channel's subscription count across the cluster, after the change.
    pub subscription_count: u64,
    /// The channel went 0 → 1 (join) or 1 → 0 (leave) across the cluster.
    pub occupancy_changed: bool,
    /// The user went 0 → 1 sockets (join) or 1 → 0 (leave) in this channel across the cluster.
    pub membership_changed: bool,
    /// What became of the new subscription count.
    pub count: CountAnnouncement,
    /// On a leave, the user id the socket had (presence channels); the joiner knows its own.
    pub user: Option<String>,
}

impl Transition {
    fn from_reply(
        (changed, count, occupancy, membership, announced): (i64, u64, i64, i64, i64),
    ) -> Transition {
        Transition {
            changed: changed == 1,
            subscription_count: count,
            occupancy_changed: occupancy == 1,
            membership_changed: membership == 1,
            count: CountAnnouncement::from_reply(announced),
            user: None,
        }
    }

    /// Whether the change appended webhook events the partition's deliverer should look at.
    pub fn appended_events(&self) -> bool {
        self.changed
            && (self.occupancy_changed
                || self.membership_changed
                || self.count == CountAnnouncement::Now)
    }
}

/// What a join changed, and the member list the joiner is to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The change (none when fenced or full).
    pub transition: Transition,
    /// This incarnation was reaped as dead: it must close its sockets and rejoin as a new one.
    pub fenced: bool,
    /// The user would have been one member more than the channel's limit: nothing changed.
    pub full: bool,
    /// On cache channels, the cached event's frame as of `version`.
    pub cached: Option<String>,
    /// The channel's member-notice version the list was read at: the joiner gets exactly the
    /// notices above it.
    pub version: u64,
    /// On presence channels, every member (user id, `user_info` JSON), the joiner included.
    pub members: Vec<(String, String)>,
}

impl Joined {
    fn from_reply(reply: Vec<::redis::Value>) -> Result<Joined, RedisError> {
        let malformed =
            || RedisError::from((::redis::ErrorKind::UnexpectedReturnType, "JOIN reply"));
        let int = |value: Option<&::redis::Value>| -> Result<i64, RedisError> {
            Ok(::redis::from_redis_value_ref(value.ok_or_else(malformed)?)?)
        };
        let changed = int(reply.first())?;
        let transition = Transition::from_reply((
            changed.max(0),
            int(reply.get(1))? as u64,
            int(reply.get(2))?,
            int(reply.get(3))?,
            int(reply.get(4))?,
        ));
        let version = int(reply.get(5))? as u64;
        let cached: String = ::redis::from_redis_value_ref(reply.get(6).ok_or_else(malformed)?)?;
        let members = reply
            .get(7..)
            .unwrap_or_default()
            .chunks(2)
            .map(|pair| match pair {
                [user, info] => Ok((
                    ::redis::from_redis_value_ref::<String>(user)?,
                    ::redis::from_redis_value_ref::<String>(info)?,
                )),
                _ => Err(malformed()),
            })
            .collect::<Result<_, RedisError>>()?;
        Ok(Joined {
            fenced: changed == -1,
            full: changed == -2,
            cached: Some(cached).filter(|c| !c.is_empty()),
            transition,
            version,
            members,
        })
    }
}

/// A socket joining a channel.
pub struct Joining<'a> {
    /// The app.
    pub app: &'a str,
    /// The channel.
    pub channel: &'a str,
    /// The socket id.
    pub socket: &'a str,
    /// The presence member, with its `user_info` JSON.
    pub member: Option<(&'a str, &'a str)>,
    /// The channel's member limit (0: none).
    pub max_members: usize,
    /// A cache channel: the reply carries its cached event.
    pub cached: bool,
}

/// How a join counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinMode {
    /// A subscription: its transitions emit their events and notices.
    New,
    /// A socket that was in before Redis lost its data, put back: the channel's occupancy and
    /// the member are restored without an event or a notice (they were announced already).
    Rebuild,
}

/// The scripts and key names of the channel state, for one node incarnation.
pub struct ChannelState {
    pub(super) prefix: String,
    /// The apps whose events go into the streams: `*`, or their ids one per line.
    webhook_apps: String,
    /// The apps that announce subscription counts, `{app}\t{window ms}` per line.
    counted_apps: String,
    incarnation: String,
    /// The cluster's epoch the scripts check ('' : unchecked).
    epoch: String,
    grace_ms: u64,
    join: Script,
    leave: Script,
    reap: Script,
    sweep: Script,
    pub(super) publish_cached: Script,
}

/// A stable hash (FNV-1a), the same in every build: a channel's partition must not change
/// between two nodes of a rolling deploy.
pub(super) fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The partition of a channel.
pub fn partition_of(app: &str, channel: &str) -> u32 {
    (fnv1a(&[app, channel]) % u64::from(PARTITIONS)) as u32
}

impl ChannelState {
    /// The state under `prefix`, changed on behalf of `incarnation`, holding vacates and removes
    /// for `grace_ms`.
    pub fn new(prefix: &str, incarnation: &str, grace_ms: u64) -> ChannelState {
        let script = Script::new;
        ChannelState {
            prefix: prefix.to_owned(),
            webhook_apps: "*".to_owned(),
            counted_apps: String::new(),
            incarnation: incarnation.to_owned(),
            epoch: String::new(),
            grace_ms,
            join: script(JOIN),
            leave: script(LEAVE),
            reap: script(REAP),
            sweep: script(SWEEP),
            publish_cached: Script::new(PUBLISH_CACHED),
        }
    }

    /// Publishes its notices and cached events with `SPUBLISH` (Redis Cluster's sharded
    /// pub/sub) instead of `PUBLISH`.
    pub fn with_sharded_pubsub(mut self, sharded: bool) -> ChannelState {
        if sharded {
            let script = |lua: &str| Script::new(&super::channel_scripts::sharded(lua));
            self.join = script(JOIN);
            self.leave = script(LEAVE);
            self.reap = script(REAP);
            self.sweep = script(SWEEP);
            self.publish_cached = script(PUBLISH_CACHED);
        }
        self
    }

    /// Only these apps' transitions go into the webhook streams (the apps with endpoints);
    /// without this call, every app's do.
    pub fn with_webhook_apps<'a>(
        mut self,
        apps: impl IntoIterator<Item = &'a str>,
    ) -> ChannelState {
        self.webhook_apps = apps.into_iter().collect::<Vec<_>>().join("\n");
        self
    }

    /// These apps announce subscription counts (`pusher_internal:subscription_count` and its
    /// webhook), at most once per channel per window; without this call, no app does.
    pub fn with_counted_apps<'a>(
        mut self,
        apps: impl IntoIterator<Item = (&'a str, std::time::Duration)>,
    ) -> ChannelState {
        self.counted_apps = apps
            .into_iter()
            .map(|(app, window)| format!("{app}\t{}\n", window.as_millis()))
            .collect();
        self
    }

    /// Joins and leaves check that Redis still holds the state of this epoch (see
    /// [`super::node::cluster_epoch`]) and fail with `EPOCH` when it does not; without this
    /// call, they do not check.
    pub fn with_epoch(mut self, epoch: &str) -> ChannelState {
        self.epoch = epoch.to_owned();
        self
    }

    /// The epoch the scripts check.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Marks every partition as holding the state of this epoch (idempotent).
    pub async fn write_epochs(&self, con: &mut RedisConnection) -> Result<(), RedisError> {
        let mut pipe = ::redis::pipe();
        for partition in 0..PARTITIONS {
            pipe.set(
                format!("{}epoch", self.partition_base(partition)),
                &self.epoch,
            )
            .ignore();
        }
        pipe.query_async(con).await
    }

    /// Every socket this incarnation holds in Redis in `partitions`, as (app, channel, socket
    /// id).
    pub async fn owned(
        &self,
        con: &mut RedisConnection,
        partitions: Partitions,
    ) -> Result<Vec<(String, String, String)>, RedisError> {
        let mut pipe = ::redis::pipe();
        for partition in members(partitions) {
            let base = self.partition_base(partition);
            pipe.smembers(format!("{base}owned:{}", self.incarnation));
        }
        let sets: Vec<Vec<String>> = pipe.query_async(con).await?;
        Ok(sets
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let mut parts = entry.splitn(3, '\n');
                let (app, channel, socket) = (parts.next()?, parts.next()?, parts.next()?);
                Some((app.to_owned(), channel.to_owned(), socket.to_owned()))
            })
            .collect())
    }

    /// Whether the app's events go into the streams.
    pub(super) fn streams_app(&self, app: &str) -> bool {
        self.webhook_apps == "*" || self.webhook_apps.lines().any(|hooked| hooked == app)
    }

    pub(super) fn partition_base(&self, partition: u32) -> String {
        format!("{}:{{p{partition}}}:", self.prefix)
    }

    /// The stem of a channel's keys: `{prefix}:{pN}:ch:{app}:{channel}`.
    pub(super) fn channel_stem(&self, app: &str, channel: &str) -> String {
        let base = self.partition_base(partition_of(app, channel));
        format!("{base}ch:{app}:{channel}")
    }

    /// The keys of one channel, in the order JOIN takes them.
    fn channel_keys(&self, app: &str, channel: &str) -> [String; 11] {
        let base = self.partition_base(partition_of(app, channel));
        let keys = format!("{base}ch:{app}:{channel}");
        [
            format!("{keys}:sockets"),
            format!("{keys}:users"),
            format!("{keys}:infos"),
            format!("{keys}:flags"),
            format!("{base}owned:{}", self.incarnation),
            format!("{base}pending"),
            format!("{base}events"),
            format!("{base}reaped"),
            format!("{base}occupied:{app}"),
            format!("{keys}:cache"),
            format!("{base}epoch"),
        ]
    }

    /// The webhook event stream of a partition.
    pub fn stream(&self, partition: u32) -> String {
        format!("{}events", self.partition_base(partition))
    }

    fn owned_entry(app: &str, channel: &str, socket: &str) -> String {
        format!("{app}\n{channel}\n{socket}")
    }

    /// Adds the socket to the channel (nothing when it is in already).
    pub async fn join(
        &self,
        con: &mut RedisConnection,
        joining: &Joining<'_>,
    ) -> Result<Joined, RedisError> {
        self.join_as(con, joining, JoinMode::New).await
    }

    /// Adds the socket to the channel, as `mode` says.
    pub async fn join_as(
        &self,
        con: &mut RedisConnection,
        joining: &Joining<'_>,
        mode: JoinMode,
    ) -> Result<Joined, RedisError> {
        let (user, info) = joining.member.unwrap_or(("", ""));
        let mut invocation = self.join.prepare_invoke();
        for key in self.channel_keys(joining.app, joining.channel) {
            invocation.key(key);
        }
        let reply = invocation
            .arg(joining.socket)
            .arg(&self.incarnation)
            .arg(user)
            .arg(info)
            .arg(joining.app)
            .arg(joining.channel)
            .arg(Self::owned_entry(
                joining.app,
                joining.channel,
                joining.socket,
            ))
            .arg(topic(&self.prefix, joining.app, joining.channel))
            .arg(self.channel_stem(joining.app, joining.channel))
            .arg(joining.max_members)
            .arg(if joining.cached { "1" } else { "" })
            .arg(&self.epoch)
            .arg(match mode {
                JoinMode::New => "",
                JoinMode::Rebuild => "r",
            })
            .arg(&self.counted_apps)
            .arg(&self.webhook_apps)
            .invoke_async(con)
            .await?;
        Joined::from_reply(reply)
    }

    /// Removes the socket from the channel (nothing when it is not in).
    pub async fn leave(
        &self,
        con: &mut RedisConnection,
        app: &str,
        channel: &str,
        socket: &str,
    ) -> Result<Transition, RedisError> {
        let [_, _, _, _, owned, pending, stream, _, index, _, epoch] =
            self.channel_keys(app, channel);
        let reply = self
            .leave
            .key(self.channel_stem(app, channel))
            .key(owned)
            .key(pending)
            .key(stream)
            .key(index)
            .key(epoch)
            .arg(socket)
            .arg(app)
            .arg(channel)
            .arg(Self::owned_entry(app, channel, socket))
            .arg(self.grace_ms)
            .arg(topic(&self.prefix, app, channel))
            .arg(&self.incarnation)
            .arg(&self.epoch)
            .arg(&self.counted_apps)
            .arg(&self.webhook_apps)
            .invoke_async(con)
            .await?;
        let (changed, count, vacated, removed, announced, user): (i64, u64, i64, i64, i64, String) =
            reply;
        let mut transition = Transition::from_reply((changed, count, vacated, removed, announced));
        transition.user = Some(user).filter(|user| !user.is_empty());
        Ok(transition)
    }

    /// Removes every socket a dead incarnation left, partition by partition, as if each had
    /// left (the grace period applies); returns how many it removed. Idempotent: a reap cut
    /// short by a failure is simply run again, by this node or another.
    pub async fn reap(&self, con: &mut RedisConnection, dead: &str) -> Result<u64, RedisError> {
        const BATCH: usize = 500;
        let mut removed = 0;
        for partition in 0..PARTITIONS {
            let base = self.partition_base(partition);
            loop {
                let (done, left): (u64, u64) = self
                    .reap
                    .key(format!("{base}owned:{dead}"))
                    .key(format!("{base}pending"))
                    .key(self.stream(partition))
                    .key(format!("{base}reaped"))
                    .arg(format!("{base}ch:"))
                    .arg(dead)
                    .arg(self.grace_ms)
                    .arg(BATCH)
                    .arg(format!("{base}bc:"))
                    .arg(&self.incarnation)
                    .arg(&self.counted_apps)
                    .arg(&self.webhook_apps)
                    .invoke_async(con)
                    .await?;
                removed += done;
                if left == 0 {
                    break;
                }
            }
        }
        Ok(removed)
    }

    /// The channel's subscription count across the cluster.
    pub async fn subscription_count(
        &self,
        con: &mut RedisConnection,
        app: &str,
        channel: &str,
    ) -> Result<u64, RedisError> {
        ::redis::cmd("HLEN")
            .arg(format!("{}:sockets", self.channel_stem(app, channel)))
            .query_async(con)
            .await
    }

    /// The channel's presence members across the cluster, with their `user_info` JSON.
    pub async fn members(
        &self,
        con: &mut RedisConnection,
        app: &str,
        channel: &str,
    ) -> Result<Vec<(String, String)>, RedisError> {
        ::redis::cmd("HGETALL")
            .arg(format!("{}:infos", self.channel_stem(app, channel)))
            .query_async(con)
            .await
    }

    /// Releases up to `limit` due holds of one partition; returns the events emitted.
    pub async fn sweep(
        &self,
        con: &mut RedisConnection,
        partition: u32,
        limit: usize,
    ) -> Result<u64, RedisError> {
        let base = self.partition_base(partition);
        self.sweep
            .key(format!("{base}pending"))
            .key(self.stream(partition))
            .arg(format!("{base}ch:"))
            .arg(limit)
            .arg(format!("{base}bc:"))
            .arg(&self.incarnation)
            .arg(&self.counted_apps)
            .arg(&self.webhook_apps)
            .invoke_async(con)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        // Fixed values: a change here would split a running cluster's partitions.
        assert_eq!(
            partition_of("app", "presence-room"),
            partition_of("app", "presence-room")
        );
        assert_ne!(
            fnv1a(&["ab", "c"]),
            fnv1a(&["a", "bc"]),
            "parts are separated"
        );
        let used: std::collections::HashSet<u32> = (0..1000)
            .map(|i| partition_of("app", &format!("c{i}")))
            .collect();
        assert_eq!(used.len(), PARTITIONS as usize);
    }
}

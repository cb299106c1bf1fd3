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

use ::redis::aio::ConnectionManager;
use ::redis::{RedisError, Script};

/// Partitions: the unit of webhook ordering and of leases, and the hash tag of channel keys.
pub const PARTITIONS: u32 = 64;

/// Helpers every script shares: the time, and appending one webhook event to the stream.
const PRELUDE: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
local function emit(stream, name, app, channel, user)
  if user and user ~= '' then
    redis.call('XADD', stream, '*', 'name', name, 'app', app, 'channel', channel, 'user_id', user, 'time_ms', now_ms())
  else
    redis.call('XADD', stream, '*', 'name', name, 'app', app, 'channel', channel, 'time_ms', now_ms())
  end
end
";

/// KEYS: sockets, users, infos, flags, owned, pending, stream.
/// ARGV: socket, incarnation, user id ('' off presence), user info, app, channel, owned entry.
/// Returns {changed, subscription count, occupied now, member added now}.
const JOIN: &str = r"
local socket, inc, user, info, app, channel, entry = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if redis.call('HSETNX', KEYS[1], socket, inc .. '|' .. user) == 0 then
  return {0, redis.call('HLEN', KEYS[1]), 0, 0}
end
redis.call('SADD', KEYS[5], entry)
local count = redis.call('HLEN', KEYS[1])
local occupied, added = 0, 0
if count == 1 then
  occupied = 1
  local held = redis.call('ZREM', KEYS[6], 'v\n' .. app .. '\n' .. channel)
  if held == 0 and redis.call('HSETNX', KEYS[4], 'occupied', '1') == 1 then
    emit(KEYS[7], 'channel_occupied', app, channel)
  end
end
if user ~= '' and redis.call('HINCRBY', KEYS[2], user, 1) == 1 then
  added = 1
  redis.call('HSET', KEYS[3], user, info)
  local held = redis.call('ZREM', KEYS[6], 'r\n' .. app .. '\n' .. channel .. '\n' .. user)
  if held == 0 then
    emit(KEYS[7], 'member_added', app, channel, user)
  end
end
return {1, count, occupied, added}
";

/// KEYS: as JOIN. ARGV: socket, app, channel, owned entry, grace ms.
/// Returns {changed, subscription count, vacated now, member removed now}.
const LEAVE: &str = r"
local socket, app, channel, entry, grace = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local held = redis.call('HGET', KEYS[1], socket)
if not held then
  return {0, redis.call('HLEN', KEYS[1]), 0, 0}
end
redis.call('HDEL', KEYS[1], socket)
redis.call('SREM', KEYS[5], entry)
local user = string.sub(held, string.find(held, '|', 1, true) + 1)
local count = redis.call('HLEN', KEYS[1])
local vacated, removed = 0, 0
local due = now_ms() + grace
if user ~= '' and redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
  removed = 1
  redis.call('HDEL', KEYS[2], user)
  redis.call('HDEL', KEYS[3], user)
  if grace > 0 then
    redis.call('ZADD', KEYS[6], due, 'r\n' .. app .. '\n' .. channel .. '\n' .. user)
  else
    emit(KEYS[7], 'member_removed', app, channel, user)
  end
end
if count == 0 then
  vacated = 1
  if grace > 0 then
    redis.call('ZADD', KEYS[6], due, 'v\n' .. app .. '\n' .. channel)
  elseif redis.call('HDEL', KEYS[4], 'occupied') == 1 then
    emit(KEYS[7], 'channel_vacated', app, channel)
  end
end
return {1, count, vacated, removed}
";

/// Releases the partition's due holds whose channel is still empty or user still absent.
/// KEYS: pending, stream. ARGV: the partition's key prefix (`{prefix}:{pN}:ch:`), limit.
/// Returns the number of events emitted. The channel keys are derived here; they share the
/// partition's hash tag, so they are in the script's slot.
const SWEEP: &str = r"
local base, limit = ARGV[1], tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, limit)
local emitted = 0
for _, hold in ipairs(due) do
  redis.call('ZREM', KEYS[1], hold)
  local kind, app, channel, user = string.match(hold, '^(%a)\n([^\n]*)\n([^\n]*)\n?(.*)$')
  local keys = base .. app .. ':' .. channel
  if kind == 'v' then
    if redis.call('HLEN', keys .. ':sockets') == 0 and redis.call('HDEL', keys .. ':flags', 'occupied') == 1 then
      emit(KEYS[2], 'channel_vacated', app, channel)
      emitted = emitted + 1
    end
  elseif kind == 'r' then
    if redis.call('HEXISTS', keys .. ':users', user) == 0 then
      emit(KEYS[2], 'member_removed', app, channel, user)
      emitted = emitted + 1
    end
  end
end
return emitted
";

/// What a join or leave changed, cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// False when the socket was already in (join) or already out (leave): nothing changed.
    pub changed: bool,
    /// The channel's subscription count across the cluster, after the change.
    pub subscription_count: u64,
    /// The channel went 0 → 1 (join) or 1 → 0 (leave) across the cluster.
    pub occupancy_changed: bool,
    /// The user went 0 → 1 sockets (join) or 1 → 0 (leave) in this channel across the cluster.
    pub membership_changed: bool,
}

impl Transition {
    fn from_reply((changed, count, occupancy, membership): (i64, u64, i64, i64)) -> Transition {
        Transition {
            changed: changed == 1,
            subscription_count: count,
            occupancy_changed: occupancy == 1,
            membership_changed: membership == 1,
        }
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
}

/// The scripts and key names of the channel state, for one node incarnation.
pub struct ChannelState {
    prefix: String,
    incarnation: String,
    grace_ms: u64,
    join: Script,
    leave: Script,
    sweep: Script,
}

/// A stable hash (FNV-1a), the same in every build: a channel's partition must not change
/// between two nodes of a rolling deploy.
fn fnv1a(parts: &[&str]) -> u64 {
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
        let script = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        ChannelState {
            prefix: prefix.to_owned(),
            incarnation: incarnation.to_owned(),
            grace_ms,
            join: script(JOIN),
            leave: script(LEAVE),
            sweep: script(SWEEP),
        }
    }

    fn partition_base(&self, partition: u32) -> String {
        format!("{}:{{p{partition}}}:", self.prefix)
    }

    /// The keys of one channel, in the order JOIN and LEAVE take them.
    fn channel_keys(&self, app: &str, channel: &str) -> [String; 7] {
        let base = self.partition_base(partition_of(app, channel));
        let keys = format!("{base}ch:{app}:{channel}");
        [
            format!("{keys}:sockets"),
            format!("{keys}:users"),
            format!("{keys}:infos"),
            format!("{keys}:flags"),
            format!("{base}owned:{}", self.incarnation),
            format!("{base}pending"),
            self.stream(partition_of(app, channel)),
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
        con: &mut ConnectionManager,
        joining: &Joining<'_>,
    ) -> Result<Transition, RedisError> {
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
            .invoke_async(con)
            .await?;
        Ok(Transition::from_reply(reply))
    }

    /// Removes the socket from the channel (nothing when it is not in).
    pub async fn leave(
        &self,
        con: &mut ConnectionManager,
        app: &str,
        channel: &str,
        socket: &str,
    ) -> Result<Transition, RedisError> {
        let mut invocation = self.leave.prepare_invoke();
        for key in self.channel_keys(app, channel) {
            invocation.key(key);
        }
        let reply = invocation
            .arg(socket)
            .arg(app)
            .arg(channel)
            .arg(Self::owned_entry(app, channel, socket))
            .arg(self.grace_ms)
            .invoke_async(con)
            .await?;
        Ok(Transition::from_reply(reply))
    }

    /// Releases up to `limit` due holds of one partition; returns the events emitted.
    pub async fn sweep(
        &self,
        con: &mut ConnectionManager,
        partition: u32,
        limit: usize,
    ) -> Result<u64, RedisError> {
        let base = self.partition_base(partition);
        self.sweep
            .key(format!("{base}pending"))
            .key(self.stream(partition))
            .arg(format!("{base}ch:"))
            .arg(limit)
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

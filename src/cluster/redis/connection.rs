//! The node's command connection to Redis, whichever Redis that is now.
//!
//! Every module of the stage holds a clone of one [`RedisConnection`] and sends its commands,
//! scripts and pipelines through it. Behind it is either
//! - one redis-rs `ConnectionManager` (one multiplexed connection, reconnected in the background
//!   with back-off, every command bounded by a response timeout). A manager reconnects to the
//!   address it was made for, which is not enough when Sentinel promotes another server: then
//!   the recovery makes a manager for the new primary and [`RedisConnection::replace`]s it, and
//!   every clone uses it from its next command on; or
//! - one redis-rs cluster connection (Redis Cluster), which routes each command to the shard
//!   owning its key's slot and follows `MOVED` / `ASK` and shard failovers itself. Every key of
//!   Herald carries a hash tag, so a script touches one slot; a pipeline that spans slots (a
//!   read of all 64 partitions) is split here into one pipeline per slot, sent at once, and its
//!   replies put back in order.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::Slot;
use ::redis::{Arg, Cmd, Pipeline, RedisError, RedisFuture, Value};

use super::subscriber::PubSubTarget;
use crate::config::{redacted, RedisConfig, SentinelConfig};

/// A shared, replaceable command connection (cheap to clone).
#[derive(Clone)]
pub struct RedisConnection {
    current: Arc<RwLock<Current>>,
}

struct Current {
    backend: Backend,
    /// Where the pub/sub connection goes.
    pubsub: PubSubTarget,
    /// The server's URL, or the first seed of a Redis Cluster (credentials included: never
    /// logged as it is).
    url: String,
}

#[derive(Clone)]
enum Backend {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConnection {
    /// Connects to `url`.
    pub async fn open(url: &str) -> Result<RedisConnection, RedisError> {
        let backend = Backend::Single(manage(url).await?);
        let pubsub = PubSubTarget::Server(url.to_owned());
        Ok(RedisConnection::of(backend, pubsub, url))
    }

    /// Connects to the Redis Cluster `seeds` belong to; the node's pub/sub on it is sharded
    /// when `sharded_pubsub`.
    pub async fn open_cluster(
        seeds: &[String],
        sharded_pubsub: bool,
    ) -> Result<RedisConnection, RedisError> {
        let client = ClusterClientBuilder::new(seeds.to_vec())
            .connection_timeout(Duration::from_secs(1))
            .response_timeout(Duration::from_secs(5))
            .retries(3)
            .build()?;
        let con = client.get_async_connection().await?;
        let first = seeds.first().cloned().unwrap_or_default();
        let pubsub = PubSubTarget::Cluster {
            seeds: seeds.to_vec(),
            sharded: sharded_pubsub,
        };
        Ok(RedisConnection::of(Backend::Cluster(con), pubsub, &first))
    }

    /// On a Redis Cluster, a new cluster connection in place of the current one, which learns
    /// the topology from the seeds afresh: after a shard failed over, redis-rs's connection can
    /// keep asking the dead primary. One Redis: nothing to do.
    pub async fn reopen_cluster(&self) -> Result<(), RedisError> {
        let PubSubTarget::Cluster { seeds, sharded } = self.pubsub_target() else {
            return Ok(());
        };
        let fresh = RedisConnection::open_cluster(&seeds, sharded).await?;
        let backend = fresh.backend();
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        current.backend = backend;
        Ok(())
    }

    /// The primaries the commands go to now, as `host:port` (no credentials): the one server,
    /// or each shard's of a Redis Cluster (from `CLUSTER SLOTS`).
    pub async fn primaries(&self) -> Result<Vec<String>, RedisError> {
        let mut primaries: Vec<String> = (self.slot_ranges().await?)
            .into_iter()
            .map(|range| range.primary)
            .collect();
        primaries.sort();
        primaries.dedup();
        Ok(primaries)
    }

    /// Each range of slots with its primary: all of them on the one server.
    pub async fn slot_ranges(&self) -> Result<Vec<SlotRange>, RedisError> {
        match self.backend() {
            Backend::Single(_) => Ok(vec![SlotRange {
                slots: 0..=SLOTS - 1,
                primary: address_of(&self.url()),
                id: String::new(),
            }]),
            Backend::Cluster(mut con) => {
                let mut slots = ::redis::cmd("CLUSTER");
                let slots: Value = slots.arg("SLOTS").query_async(&mut con).await?;
                Ok(ranges_in(&slots))
            }
        }
    }

    fn of(backend: Backend, pubsub: PubSubTarget, url: &str) -> RedisConnection {
        let current = Current {
            backend,
            pubsub,
            url: url.to_owned(),
        };
        RedisConnection {
            current: Arc::new(RwLock::new(current)),
        }
    }

    fn backend(&self) -> Backend {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.backend.clone()
    }

    /// Where the node's pub/sub connection goes: to the server the commands go to, or to the
    /// same Redis Cluster.
    pub fn pubsub_target(&self) -> PubSubTarget {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.pubsub.clone()
    }

    /// The command that publishes to a topic: `SPUBLISH` on sharded pub/sub, else `PUBLISH`.
    pub fn publish_command(&self) -> &'static str {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        match current.pubsub {
            PubSubTarget::Cluster { sharded: true, .. } => "SPUBLISH",
            _ => "PUBLISH",
        }
    }

    /// The URL of the server the commands go to now.
    pub fn url(&self) -> String {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.url.clone()
    }

    /// Sends every command from now on to the server at `url` (a new primary); the old
    /// connection closes once the commands in flight on it are answered.
    pub async fn replace(&self, url: &str) -> Result<(), RedisError> {
        let backend = Backend::Single(manage(url).await?);
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = Current {
            backend,
            pubsub: PubSubTarget::Server(url.to_owned()),
            url: url.to_owned(),
        };
        Ok(())
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let backend = self.backend();
        Box::pin(async move {
            match backend {
                Backend::Single(mut manager) => manager.req_packed_command(cmd).await,
                Backend::Cluster(mut con) => con.req_packed_command(cmd).await,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let backend = self.backend();
        Box::pin(async move {
            match backend {
                Backend::Single(mut manager) => {
                    manager.req_packed_commands(pipeline, offset, count).await
                }
                Backend::Cluster(con) => per_slot(con, pipeline, offset, count).await,
            }
        })
    }

    fn get_db(&self) -> i64 {
        match self.backend() {
            Backend::Single(manager) => manager.get_db(),
            Backend::Cluster(_) => 0,
        }
    }
}

/// `host:port` of a `redis[s]://[user:password@]host:port/db#fragment` URL.
fn address_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    let end = rest.find(['/', '#', '?']).unwrap_or(rest.len());
    rest[..end].to_owned()
}

/// A range of slots and the primary serving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    pub slots: std::ops::RangeInclusive<u16>,
    /// `host:port`, no credentials.
    pub primary: String,
    /// The primary's node id (`CLUSTER MYID`; empty on one server).
    pub id: String,
}

impl SlotRange {
    /// The range holding the slot of keys with the hash tag `tag`.
    pub fn owner<'a>(ranges: &'a [SlotRange], tag: &str) -> Option<&'a SlotRange> {
        let slot = slot_of_tag(tag);
        ranges.iter().find(|range| range.slots.contains(&slot))
    }
}

/// The slots of a Redis Cluster.
const SLOTS: u16 = 16_384;

/// The slot of keys with the hash tag `tag` (CRC16-XMODEM, as Redis Cluster computes it).
fn slot_of_tag(tag: &str) -> u16 {
    let mut crc: u16 = 0;
    for byte in tag.bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS
}

/// Each range with its primary in a `CLUSTER SLOTS` reply (`[start, end, [ip, port, id],
/// ...]`).
fn ranges_in(slots: &Value) -> Vec<SlotRange> {
    let Value::Array(ranges) = slots else {
        return Vec::new();
    };
    let slot = |value: Option<&Value>| match value {
        Some(Value::Int(slot)) => u16::try_from(*slot).ok(),
        _ => None,
    };
    ranges
        .iter()
        .filter_map(|range| {
            let Value::Array(range) = range else {
                return None;
            };
            let (start, end) = (slot(range.first())?, slot(range.get(1))?);
            let Some(Value::Array(primary)) = range.get(2) else {
                return None;
            };
            let text = |value: Option<&Value>| match value {
                Some(Value::BulkString(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
                Some(Value::SimpleString(text)) => Some(text.clone()),
                _ => None,
            };
            let host = text(primary.first())?;
            let Value::Int(port) = primary.get(1)? else {
                return None;
            };
            Some(SlotRange {
                slots: start..=end,
                primary: format!("{host}:{port}"),
                id: text(primary.get(2)).unwrap_or_default(),
            })
        })
        .collect()
}

/// The slot of a command's first key: its first argument with a hash tag (every key of Herald
/// has one; a command without any goes anywhere).
fn slot_of(cmd: &Cmd) -> Option<Slot> {
    cmd.args_iter().skip(1).find_map(|arg| match arg {
        Arg::Simple(bytes) if bytes.contains(&b'{') => Some(Slot::for_key(bytes)),
        _ => None,
    })
}

/// Sends a pipeline through a cluster connection: as it is when its commands share a slot (or
/// it is a transaction, which must), else as one pipeline per slot, concurrently, with the
/// replies put back in the pipeline's order. The first error fails the whole, as on one server.
async fn per_slot(
    mut cluster: ClusterConnection,
    pipeline: &Pipeline,
    offset: usize,
    count: usize,
) -> Result<Vec<Value>, RedisError> {
    let mut groups: HashMap<Option<Slot>, (Pipeline, Vec<usize>)> = HashMap::new();
    for (index, cmd) in pipeline.cmd_iter().enumerate() {
        let (part, places) = groups.entry(slot_of(cmd)).or_default();
        part.add_command(cmd.clone());
        places.push(index);
    }
    if groups.len() <= 1 || pipeline.is_transaction() {
        return cluster.req_packed_commands(pipeline, offset, count).await;
    }
    let sent = groups.into_values().map(|(part, places)| {
        let mut cluster = cluster.clone();
        async move {
            let replies = cluster.req_packed_commands(&part, 0, part.len()).await;
            replies.map(|replies| (places, replies))
        }
    });
    let mut ordered = vec![Value::Nil; pipeline.len()];
    for answered in futures_util::future::join_all(sent).await {
        let (places, replies) = answered?;
        for (place, reply) in places.into_iter().zip(replies) {
            ordered[place] = reply;
        }
    }
    Ok(ordered)
}

/// A connection manager for `url`.
async fn manage(url: &str) -> Result<ConnectionManager, RedisError> {
    let client = ::redis::Client::open(url)?;
    // Short and few: a command sent just before a failover waits for its manager's reconnection
    // to the dead server (the node's other work goes to the new primary meanwhile, but a task
    // blocked on such a command, such as a webhook round, is held up that long). One retry of
    // at most 2 s bounds it; the node's own recovery does the rest of the retrying.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2));
    client.get_connection_manager_with_config(config).await
}

/// Where the primary is: one URL, or wherever the sentinels say it is now (Redis Cluster is
/// reached through [`RedisConnection::open_cluster`]).
#[derive(Clone)]
pub enum RedisTarget {
    /// `adapter.redis.url` or `database.redis`'s host.
    Url(String),
    /// `database.redis.sentinels`.
    Sentinel(SentinelConfig),
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTarget::Url(url) => f.debug_tuple("Url").field(&redacted(url)).finish(),
            RedisTarget::Sentinel(sentinel) => f.debug_tuple("Sentinel").field(sentinel).finish(),
        }
    }
}

impl RedisTarget {
    /// The target `redis` configures.
    pub fn of(redis: &RedisConfig) -> RedisTarget {
        match &redis.sentinel {
            Some(sentinel) => RedisTarget::Sentinel(sentinel.clone()),
            None => RedisTarget::Url(redis.url.clone()),
        }
    }

    /// The URL of the primary now (the sentinels are asked each time).
    pub async fn resolve(&self) -> Result<String, RedisError> {
        match self {
            RedisTarget::Url(url) => Ok(url.clone()),
            RedisTarget::Sentinel(sentinel) => super::sentinel::primary(sentinel).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_carries_no_credentials() {
        assert_eq!(
            address_of("rediss://u:p@w@cache:6380/2#insecure"),
            "cache:6380"
        );
        assert_eq!(address_of("redis://127.0.0.1:6379"), "127.0.0.1:6379");
    }

    #[test]
    fn each_range_is_read_with_its_primary() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![Value::BulkString(host.into()), Value::Int(port)])
        };
        let range = |start: i64, primary: Value, replica: Value| {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(start + 9),
                primary,
                replica,
            ])
        };
        let slots = Value::Array(vec![
            range(0, node("10.0.0.2", 7001), node("10.0.0.5", 7004)),
            range(10, node("10.0.0.1", 7000), node("10.0.0.4", 7003)),
            range(20, node("10.0.0.2", 7001), node("10.0.0.5", 7004)),
        ]);
        let ranges = ranges_in(&slots);
        assert_eq!(ranges[1].slots, 10..=19);
        assert_eq!(ranges[1].primary, "10.0.0.1:7000");
        assert_eq!(ranges.len(), 3);
    }

    #[test]
    fn a_tags_slot_is_redis_clusters() {
        // CRC16-XMODEM's check value, and what redis-rs computes for Herald's partition tags.
        assert_eq!(slot_of_tag("123456789"), 0x31C3);
        for partition in [0, 7, 63] {
            let tag = format!("p{partition}");
            let key = format!("herald:{{{tag}}}:epoch");
            let theirs = format!("{:?}", Slot::for_key(&key));
            assert_eq!(theirs, format!("Slot({})", slot_of_tag(&tag)));
        }
    }
}

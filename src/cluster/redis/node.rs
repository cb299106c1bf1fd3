//! A node's membership of the cluster: its id, its incarnation, its heartbeat, and how a node is
//! found dead (its heartbeat key expired) or fenced (it finds its own key gone).
//!
//! Keys, under one hash tag so each script touches one slot:
//! - `{prefix}:{nodes}:id:{node_id}`: the live incarnation holding that id, with a TTL of the
//!   node timeout, renewed by every heartbeat;
//! - `{prefix}:{nodes}:live`: a sorted set of incarnations by the Redis time of their last
//!   heartbeat, which is how the others find a dead node's incarnation to clean up after;
//! - `{prefix}:{nodes}:console:{incarnation}`: the incarnation's figures for the console's
//!   overview ([`super::node_figures`]), with a TTL of the node timeout.
//! - `{prefix}:{nodes}:wire`: the broadcast format's version and pub/sub commands the live nodes
//!   use (`h1 spublish`, `h1 publish`), renewed by every heartbeat with a TTL of the node
//!   timeout: a node on another wire is refused at start, since the two would not hear each
//!   other.
//!
//! An incarnation is new at every start, so a node restarting with the same id never adds to
//! the counts of the one before it: the old incarnation is cleaned up as dead.

use std::time::{Duration, Instant};

use super::connection::RedisConnection;
use ::redis::{RedisError, Script};
use rand::Rng;

use crate::config::RedisConfig;

/// Registers an incarnation under an id unless a live one holds it.
/// KEYS: id key, live set. ARGV: incarnation, node id, timeout ms.
/// Returns `{1, '', 0}` when registered, `{0, holder, pttl}` when the id is held.
const REGISTER: &str = include_str!("lua/node_register.lua");

/// Renews a heartbeat when the incarnation still holds its id and is not yet dead by [`DEAD`]'s
/// measure: a beat must never revive a node whose sockets the others may already be reaping.
/// Returns 1 when renewed; 0 when fenced (another incarnation holds the id, or this one was
/// reaped: it left the live set); 2 when it lapsed (the id expired or the last beat is older
/// than the timeout, say Redis stalled: only a revive may tell whether a reap began).
/// KEYS: id key, live set. ARGV: incarnation, timeout ms.
const HEARTBEAT: &str = include_str!("lua/node_heartbeat.lua");

/// Incarnations whose last heartbeat is older than the timeout, by Redis time.
/// KEYS: live set. ARGV: timeout ms.
const DEAD: &str = include_str!("lua/node_dead.lua");

/// Leaves the cluster: frees the id if this incarnation holds it, drops it from the live set
/// and drops its console figures. KEYS: id key, live set, figures. ARGV: incarnation.
const LEAVE: &str = include_str!("lua/node_leave.lua");

/// Makes a live incarnation alive again after Redis could not be reached for longer than the
/// timeout (its last heartbeat is old, but nobody reaped it: it is still in the live set and
/// its id is free or its own). KEYS: id key, live set. ARGV: incarnation, timeout ms.
/// Returns 1 when revived, 0 when it was reaped (it must rejoin as a new incarnation).
const REVIVE: &str = include_str!("lua/node_revive.lua");

/// Claims or renews the wire the live nodes speak. KEYS: the wire key. ARGV: wire, timeout ms.
/// Returns the wire held.
const WIRE: &str = include_str!("lua/node_wire.lua");

/// The cluster's epoch: created (as the Redis time in ms) by the first node to find none.
/// KEYS: the epoch key.
const EPOCH: &str = include_str!("lua/node_epoch.lua");

/// The cluster's epoch under `prefix`, created when missing. A Redis that lost its data (a
/// restart without persistence, `FLUSHALL`) has none, so the first node to look creates a new
/// one, and every node that knew the old one learns that the shared state must be rebuilt.
pub async fn cluster_epoch(con: &mut RedisConnection, prefix: &str) -> Result<String, RedisError> {
    Script::new(EPOCH)
        .key(format!("{prefix}:{{nodes}}:epoch"))
        .invoke_async(con)
        .await
}

/// What a node's broadcasts need of the others: the wire format's version and whether topics are
/// sharded (`SPUBLISH`) or classic (`PUBLISH`, on one Redis too).
fn wire_of(config: &RedisConfig) -> String {
    let sharded = config.cluster.as_ref().is_some_and(|c| c.sharded_pubsub);
    let commands = if sharded { "spublish" } else { "publish" };
    format!("{} {commands}", super::broadcast_wire::VERSION)
}

/// Why a node could not join the cluster.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// Redis refused or could not be reached.
    #[error("Redis: {0}")]
    Redis(#[from] RedisError),
    /// The live nodes speak another wire (another Herald version, or other pub/sub commands).
    #[error(
        "the cluster's live nodes publish as {theirs:?} and this node as {ours:?}: nodes of \
         different Herald versions, or with different adapter.cluster.use_sharded_pubsub, do not \
         hear each other; restart every node together with the same setting"
    )]
    OtherWire {
        /// This node's.
        ours: String,
        /// The live nodes'.
        theirs: String,
    },
    /// A live node holds the id.
    #[error(
        "node id {id:?} is in use by a live node (incarnation {holder}); give this node another \
         adapter.node_id / HERALD_NODE_ID, or leave both unset to have one generated"
    )]
    IdInUse {
        /// The id asked for.
        id: String,
        /// The live incarnation holding it.
        holder: String,
    },
}

/// What a heartbeat found.
#[derive(Debug, PartialEq, Eq)]
pub enum Beat {
    /// The node still holds its id.
    Alive,
    /// The id is no longer this incarnation's: the others took it for dead (a pause longer than
    /// the timeout, a lost Redis). Its sockets must close so their clients reconnect.
    Fenced,
    /// The heartbeat is older than the timeout but the incarnation was not reaped yet (Redis
    /// stalled, or this node did): it must not beat on, only revive and resync.
    Lapsed,
}

/// This node's place in the cluster.
pub struct NodeMembership {
    id: String,
    /// The broadcast format and pub/sub commands this node uses (see [`wire_of`]).
    wire: String,
    incarnation: String,
    keys: NodeKeys,
    timeout: Duration,
    heartbeat: Duration,
}

/// The key names of the node registry.
#[derive(Clone)]
struct NodeKeys {
    prefix: String,
}

impl NodeKeys {
    fn id(&self, id: &str) -> String {
        format!("{}:{{nodes}}:id:{id}", self.prefix)
    }

    fn live(&self) -> String {
        format!("{}:{{nodes}}:live", self.prefix)
    }

    fn figures(&self, incarnation: &str) -> String {
        format!("{}:{{nodes}}:console:{incarnation}", self.prefix)
    }
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

impl NodeMembership {
    /// Joins under the configured id (or a generated one). A held id is waited on for one
    /// timeout: a live holder renews it and this node is refused; a dead one's key expires.
    pub async fn join(
        con: &mut RedisConnection,
        config: &RedisConfig,
    ) -> Result<NodeMembership, JoinError> {
        let id = config
            .node_id
            .clone()
            .unwrap_or_else(|| format!("node-{}", random_hex(6)));
        let membership = NodeMembership {
            wire: wire_of(config),
            incarnation: format!("{id}.{}", random_hex(8)),
            id,
            keys: NodeKeys {
                prefix: config.prefix.clone(),
            },
            timeout: config.node_timeout,
            heartbeat: config.heartbeat_interval,
        };
        let theirs = membership.claim_wire(con).await?;
        if theirs != membership.wire {
            let ours = membership.wire.clone();
            return Err(JoinError::OtherWire { ours, theirs });
        }
        membership.register(con).await?;
        Ok(membership)
    }

    /// Claims or renews the cluster's wire for this node's; returns the wire held.
    async fn claim_wire(&self, con: &mut RedisConnection) -> Result<String, RedisError> {
        Script::new(WIRE)
            .key(format!("{}:{{nodes}}:wire", self.keys.prefix))
            .arg(&self.wire)
            .arg(self.timeout.as_millis() as u64)
            .invoke_async(con)
            .await
    }

    async fn register(&self, con: &mut RedisConnection) -> Result<(), JoinError> {
        // The holder and its key's TTL when last read, to tell a renewing holder from a dead one.
        let mut seen: Option<(String, i64, Instant)> = None;
        let started = Instant::now();
        loop {
            let Some((holder, pttl)) = self.try_register(con).await? else {
                return Ok(());
            };
            // A key without a TTL is nobody's heartbeat; it is not ours to take.
            let unexpiring = pttl < 0;
            if let Some((before, pttl_before, at)) = &seen {
                let elapsed = at.elapsed().as_millis() as i64;
                // A TTL that went down by less than the time that passed was renewed; and after
                // a full timeout of waiting, whoever still holds the id is alive.
                let renewed = *before == holder && pttl > pttl_before - elapsed + 20;
                if renewed || unexpiring || started.elapsed() > self.timeout + self.heartbeat * 2 {
                    return Err(JoinError::IdInUse {
                        id: self.id.clone(),
                        holder,
                    });
                }
            } else {
                tracing::warn!(
                    node_id = %self.id,
                    %holder,
                    "node id held by another incarnation; waiting to see whether it is alive"
                );
            }
            seen = Some((holder, pttl, Instant::now()));
            // Two heartbeats show a live holder; a dead one's key is gone after its TTL.
            let wait = Duration::from_millis(pttl.max(0) as u64 + 10).min(self.heartbeat * 2);
            tokio::time::sleep(wait).await;
        }
    }

    /// `None` when registered; otherwise the incarnation holding the id and its key's TTL.
    async fn try_register(
        &self,
        con: &mut RedisConnection,
    ) -> Result<Option<(String, i64)>, JoinError> {
        let (registered, holder, pttl): (i64, String, i64) = Script::new(REGISTER)
            .key(self.keys.id(&self.id))
            .key(self.keys.live())
            .arg(&self.incarnation)
            .arg(&self.id)
            .arg(self.timeout.as_millis() as u64)
            .invoke_async(con)
            .await?;
        Ok((registered == 0).then_some((holder, pttl)))
    }

    /// Renews the heartbeat.
    pub async fn beat(&self, con: &mut RedisConnection) -> Result<Beat, RedisError> {
        let alive: i64 = Script::new(HEARTBEAT)
            .key(self.keys.id(&self.id))
            .key(self.keys.live())
            .arg(&self.incarnation)
            .arg(self.timeout.as_millis() as u64)
            .invoke_async(con)
            .await?;
        let wire = self.claim_wire(con).await?;
        if wire != self.wire {
            // Only after every node of the other wire was gone a full timeout, then one came.
            tracing::error!(ours = %self.wire, theirs = %wire, "a node publishing on another wire joined: the two do not hear each other");
        }
        Ok(match alive {
            1 => Beat::Alive,
            2 => Beat::Lapsed,
            _ => Beat::Fenced,
        })
    }

    /// Makes this incarnation alive again after an outage; false when it was reaped meanwhile.
    pub async fn revive(&self, con: &mut RedisConnection) -> Result<bool, RedisError> {
        let revived: i64 = Script::new(REVIVE)
            .key(self.keys.id(&self.id))
            .key(self.keys.live())
            .arg(&self.incarnation)
            .arg(self.timeout.as_millis() as u64)
            .invoke_async(con)
            .await?;
        Ok(revived == 1)
    }

    /// Registers this incarnation again in a Redis that lost its data.
    pub async fn register_again(&self, con: &mut RedisConnection) -> Result<(), JoinError> {
        match self.try_register(con).await? {
            None => Ok(()),
            Some((holder, _)) => Err(JoinError::IdInUse {
                id: self.id.clone(),
                holder,
            }),
        }
    }

    /// Incarnations (other than this one) whose heartbeat is older than the timeout.
    pub async fn dead_incarnations(
        &self,
        con: &mut RedisConnection,
    ) -> Result<Vec<String>, RedisError> {
        let dead: Vec<String> = Script::new(DEAD)
            .key(self.keys.live())
            .arg(self.timeout.as_millis() as u64)
            .invoke_async(con)
            .await?;
        Ok(dead
            .into_iter()
            .filter(|i| *i != self.incarnation)
            .collect())
    }

    /// Every incarnation in the live set, the dead that are not reaped yet included.
    pub async fn live_incarnations(
        &self,
        con: &mut RedisConnection,
    ) -> Result<Vec<String>, RedisError> {
        ::redis::cmd("ZRANGE")
            .arg(self.keys.live())
            .arg(0)
            .arg(-1)
            .query_async(con)
            .await
    }

    /// The key of an incarnation's console figures (in the registry's slot, so one `MGET`
    /// reads every node's).
    pub fn figures_key(&self, incarnation: &str) -> String {
        self.keys.figures(incarnation)
    }

    /// Drops a dead incarnation from the live set, once its sockets have been reaped.
    pub async fn forget(&self, con: &mut RedisConnection, dead: &str) -> Result<(), RedisError> {
        ::redis::cmd("ZREM")
            .arg(self.keys.live())
            .arg(dead)
            .query_async(con)
            .await
    }

    /// Leaves the cluster at a graceful stop, once every socket of this incarnation has left:
    /// its id is free at once for the next start, and nobody takes it for dead.
    pub async fn leave(&self, con: &mut RedisConnection) -> Result<(), RedisError> {
        Script::new(LEAVE)
            .key(self.keys.id(&self.id))
            .key(self.keys.live())
            .key(self.keys.figures(&self.incarnation))
            .arg(&self.incarnation)
            .invoke_async(con)
            .await
    }

    /// How long a silent incarnation lives before the others take it for dead.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// This start's incarnation: the id plus a random suffix.
    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }
}

/// Redis's `maxmemory-policy`, when the server lets us read it (`CONFIG` may be disabled).
pub async fn maxmemory_policy(con: &mut RedisConnection) -> Option<String> {
    let reply: Result<Vec<String>, _> = ::redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(con)
        .await;
    reply.ok()?.into_iter().nth(1)
}

/// Warns unless Redis never evicts: an evicted heartbeat or state key means a false reap.
pub async fn check_eviction_policy(con: &mut RedisConnection) {
    match maxmemory_policy(con).await.as_deref() {
        Some("noeviction") => {}
        Some(policy) => tracing::warn!(
            policy,
            "Redis maxmemory-policy is not noeviction: an evicted heartbeat or channel key makes \
             the cluster take live nodes for dead; set maxmemory-policy noeviction"
        ),
        None => tracing::warn!(
            "could not read Redis maxmemory-policy (CONFIG GET refused); make sure it is noeviction"
        ),
    }
}

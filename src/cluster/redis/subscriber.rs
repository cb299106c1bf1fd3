//! The node's pub/sub connection, on one Redis or on a Redis Cluster.
//!
//! - **One Redis** (Sentinel-managed or not): one dedicated connection, classic `SUBSCRIBE`.
//! - **Redis Cluster**: one redis-rs cluster connection in RESP3, whose pushes arrive on one
//!   queue in the order each shard sent them. With sharded pub/sub (`SSUBSCRIBE`) a topic is
//!   subscribed on the shard owning its slot only; classic `SUBSCRIBE` on any node hears every
//!   `PUBLISH` of the cluster. A broken connection to any node, or a subscription the server
//!   dropped (a slot migrated away: Redis unsubscribes its sharded channels), is reported: with
//!   sharded pub/sub the node takes the partitions concerned down (`pubsub_shards`), else the
//!   fan-out opens everything again and the node resyncs, as after any break.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ::redis::aio::{AsyncPushSender, PubSubSink, PubSubStream, SendError};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr,
};
use ::redis::{PushInfo, PushKind, RedisError, Value};
use futures_util::StreamExt;
use tokio::sync::mpsc;

/// Where the pub/sub connection goes.
#[derive(Clone)]
pub enum PubSubTarget {
    /// One server (the command connection's).
    Server(String),
    /// A Redis Cluster, through any of its `seeds`; `sharded`: `SSUBSCRIBE`, else `SUBSCRIBE`.
    Cluster { seeds: Vec<String>, sharded: bool },
}

/// The side that subscribes and checks (cheap to clone).
#[derive(Clone)]
pub enum SubscriberSink {
    Server(PubSubSink),
    Cluster {
        con: ClusterConnection,
        sharded: bool,
    },
}

/// The side that receives.
pub enum SubscriberStream {
    Server(PubSubStream),
    Cluster {
        pushes: mpsc::Receiver<PushInfo>,
        overflowed: Arc<AtomicBool>,
    },
}

/// Pushes of a cluster connection not yet read, at most: past it the connection is taken for
/// broken (the node reconnects and resyncs) rather than queueing without a bound.
const PUSH_QUEUE: usize = 16_384;

/// The cluster connection's push sender: bounded, and never blocking the connection.
struct BoundedPushes {
    queue: mpsc::Sender<PushInfo>,
    overflowed: Arc<AtomicBool>,
}

impl AsyncPushSender for BoundedPushes {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        match self.queue.try_send(info) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflowed.store(true, Ordering::Release);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError),
        }
    }
}

/// What the connection received.
pub enum Incoming {
    /// A message on a topic.
    Message { topic: String, payload: Vec<u8> },
    /// The server unsubscribed this topic itself (its slot moved to another shard).
    Dropped(String),
    /// A connection to one of the servers broke (which one is not told; redis-rs reconnects it
    /// and subscribes its topics again).
    Broken,
    /// More arrived than the queue holds: messages of any topic were lost.
    Overflowed,
    /// Nothing the fan-out acts on (a subscription's confirmation).
    Other,
}

/// Opens a pub/sub connection to `target`.
pub async fn open(target: &PubSubTarget) -> Result<(SubscriberSink, SubscriberStream), RedisError> {
    match target {
        PubSubTarget::Server(url) => {
            let pubsub = ::redis::Client::open(url.as_str())?
                .get_async_pubsub()
                .await?;
            let (sink, stream) = pubsub.split();
            Ok((
                SubscriberSink::Server(sink),
                SubscriberStream::Server(stream),
            ))
        }
        PubSubTarget::Cluster { seeds, sharded } => {
            let (queue, pushes) = mpsc::channel(PUSH_QUEUE);
            let overflowed = Arc::new(AtomicBool::new(false));
            let sender = BoundedPushes {
                queue,
                overflowed: overflowed.clone(),
            };
            let client = ClusterClientBuilder::new(seeds.clone())
                .use_protocol(::redis::ProtocolVersion::RESP3)
                .push_sender(sender)
                .connection_timeout(std::time::Duration::from_secs(1))
                .response_timeout(std::time::Duration::from_secs(5))
                .build()?;
            let con = client.get_async_connection().await?;
            let sink = SubscriberSink::Cluster {
                con,
                sharded: *sharded,
            };
            let stream = SubscriberStream::Cluster { pushes, overflowed };
            Ok((sink, stream))
        }
    }
}

impl SubscriberSink {
    /// Subscribes `topics`; resolves once every server confirmed.
    pub async fn subscribe(&mut self, topics: Vec<String>) -> Result<(), RedisError> {
        match self {
            SubscriberSink::Server(sink) => sink.subscribe(topics).await,
            SubscriberSink::Cluster { con, sharded } => {
                // One command per slot: a sharded subscription names channels of one slot.
                let mut by_slot: HashMap<Slot, Vec<String>> = HashMap::new();
                for topic in topics {
                    by_slot
                        .entry(Slot::for_key(&topic))
                        .or_default()
                        .push(topic);
                }
                let sent = by_slot.into_values().map(|topics| {
                    let mut con = con.clone();
                    let sharded = *sharded;
                    async move {
                        match sharded {
                            true => con.ssubscribe(topics).await,
                            false => con.subscribe(topics).await,
                        }
                    }
                });
                futures_util::future::try_join_all(sent).await.map(drop)
            }
        }
    }

    /// Whether Redis confirms an unsubscribe with the push that also tells of a dropped
    /// subscription (sharded pub/sub on a Redis Cluster).
    pub fn confirms_by_push(&self) -> bool {
        matches!(self, SubscriberSink::Cluster { sharded: true, .. })
    }

    /// Unsubscribes `topic`.
    pub async fn unsubscribe(&mut self, topic: String) -> Result<(), RedisError> {
        match self {
            SubscriberSink::Server(sink) => sink.unsubscribe(topic).await,
            SubscriberSink::Cluster { con, sharded: true } => con.sunsubscribe(topic).await,
            SubscriberSink::Cluster { con, .. } => con.unsubscribe(topic).await,
        }
    }

    /// PINGs the server owning `key`'s slot (on a Redis Cluster; the one server otherwise).
    pub async fn ping_slot(&mut self, key: &str) -> Result<(), RedisError> {
        let SubscriberSink::Cluster { con, .. } = self else {
            return self.ping().await;
        };
        let route = Route::with_key(key, SlotAddr::Master);
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
        con.route_command(::redis::cmd("PING"), routing)
            .await
            .map(drop)
    }

    /// The node id of the server that answers for `key`'s slot on this connection: redis-rs
    /// sends a command for a slot whose server it has no connection to (yet) to any server.
    pub async fn node_of_slot(&mut self, key: &str) -> Result<String, RedisError> {
        let SubscriberSink::Cluster { con, .. } = self else {
            return Ok(String::new());
        };
        let route = Route::with_key(key, SlotAddr::Master);
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
        let mut myid = ::redis::cmd("CLUSTER");
        myid.arg("MYID");
        Ok(::redis::from_redis_value(
            con.route_command(myid, routing).await?,
        )?)
    }

    /// PINGs every server the connection subscribes on.
    pub async fn ping(&mut self) -> Result<(), RedisError> {
        match self {
            SubscriberSink::Server(sink) => sink.ping::<Value>().await.map(drop),
            SubscriberSink::Cluster { con, .. } => {
                let every_primary = MultipleNodeRoutingInfo::AllMasters;
                let routing = RoutingInfo::MultiNode((every_primary, None));
                con.route_command(::redis::cmd("PING"), routing)
                    .await
                    .map(drop)
            }
        }
    }
}

impl SubscriberStream {
    /// The next thing received; `None` once the connection is gone for good.
    pub async fn next(&mut self) -> Option<Incoming> {
        match self {
            SubscriberStream::Server(stream) => {
                let message = stream.next().await?;
                Some(Incoming::Message {
                    topic: message.get_channel_name().to_owned(),
                    payload: message.get_payload_bytes().to_vec(),
                })
            }
            SubscriberStream::Cluster { pushes, overflowed } => {
                if overflowed.swap(false, Ordering::AcqRel) {
                    return Some(Incoming::Overflowed);
                }
                Some(incoming(pushes.recv().await?))
            }
        }
    }
}

/// What a RESP3 push of the cluster connection means to the fan-out.
fn incoming(push: PushInfo) -> Incoming {
    let text = |value: Option<&Value>| match value {
        Some(Value::BulkString(bytes)) => Some(bytes.clone()),
        _ => None,
    };
    match push.kind {
        PushKind::Message | PushKind::SMessage => {
            let (Some(topic), Some(payload)) = (text(push.data.first()), text(push.data.get(1)))
            else {
                return Incoming::Other;
            };
            match String::from_utf8(topic) {
                Ok(topic) => Incoming::Message { topic, payload },
                Err(_) => Incoming::Other,
            }
        }
        PushKind::SUnsubscribe => match text(push.data.first()).map(String::from_utf8) {
            Some(Ok(topic)) => Incoming::Dropped(topic),
            _ => Incoming::Other,
        },
        PushKind::Disconnection => Incoming::Broken,
        _ => Incoming::Other,
    }
}

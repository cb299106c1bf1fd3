//! Reading the cluster-wide channel state for the REST API, and the writes that are not
//! subscription changes: a cache channel's event, and webhook events a node saw itself.
//!
//! Every read goes to the channel keys; no node is asked, so an answer never waits for the
//! slowest node or depends on who answered.

use std::time::Duration;

use super::connection::RedisConnection;
use ::redis::RedisError;

use super::channel_state::{partition_of, ChannelState, PARTITIONS};
use super::fanout::{topic, Fanout};
use crate::outbound::WireFrame;
use crate::protocol::ChannelType;
use crate::webhooks::WebhookEvent;

/// A channel's counts across the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelCounts {
    /// The channel.
    pub name: String,
    /// Sockets subscribed, on every node.
    pub subscription_count: u64,
    /// Distinct presence members.
    pub user_count: u64,
}

impl ChannelState {
    /// The channel's counts; `None` when nobody is subscribed anywhere.
    pub async fn counts(
        &self,
        con: &mut RedisConnection,
        app: &str,
        channel: &str,
    ) -> Result<Option<ChannelCounts>, RedisError> {
        let stem = self.channel_stem(app, channel);
        let (subscription_count, user_count): (u64, u64) = ::redis::pipe()
            .cmd("HLEN")
            .arg(format!("{stem}:sockets"))
            .cmd("HLEN")
            .arg(format!("{stem}:users"))
            .query_async(con)
            .await?;
        Ok((subscription_count > 0).then(|| ChannelCounts {
            name: channel.to_owned(),
            subscription_count,
            user_count,
        }))
    }

    /// The subscription count of each channel across the cluster (0 when unoccupied), in one
    /// pipeline.
    pub async fn subscription_counts(
        &self,
        con: &mut RedisConnection,
        app: &str,
        channels: &[String],
    ) -> Result<Vec<u64>, RedisError> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let mut counting = ::redis::pipe();
        for channel in channels {
            let stem = self.channel_stem(app, channel);
            counting.cmd("HLEN").arg(format!("{stem}:sockets"));
        }
        counting.query_async(con).await
    }

    /// Every occupied channel of the app whose name starts with `prefix`, with its counts.
    pub async fn occupied(
        &self,
        con: &mut RedisConnection,
        app: &str,
        prefix: &str,
    ) -> Result<Vec<ChannelCounts>, RedisError> {
        let mut listing = ::redis::pipe();
        for partition in 0..PARTITIONS {
            let base = self.partition_base(partition);
            listing.cmd("SMEMBERS").arg(format!("{base}occupied:{app}"));
        }
        let per_partition: Vec<Vec<String>> = listing.query_async(con).await?;
        let names: Vec<String> = per_partition
            .into_iter()
            .flatten()
            // A user's own channel is no client's: not listed.
            .filter(|name| name.starts_with(prefix) && !ChannelType::of(name).is_user())
            .collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut counting = ::redis::pipe();
        for name in &names {
            let stem = self.channel_stem(app, name);
            counting.cmd("HLEN").arg(format!("{stem}:sockets"));
            counting.cmd("HLEN").arg(format!("{stem}:users"));
        }
        let counts: Vec<u64> = counting.query_async(con).await?;
        Ok(names
            .into_iter()
            .zip(counts.chunks(2))
            .filter_map(|(name, pair)| match pair {
                [subscription_count, user_count] if *subscription_count > 0 => {
                    Some(ChannelCounts {
                        name,
                        subscription_count: *subscription_count,
                        user_count: *user_count,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// The user ids present in a presence channel, on every node.
    pub async fn user_ids(
        &self,
        con: &mut RedisConnection,
        app: &str,
        channel: &str,
    ) -> Result<Vec<String>, RedisError> {
        ::redis::cmd("HKEYS")
            .arg(format!("{}:users", self.channel_stem(app, channel)))
            .query_async(con)
            .await
    }

    /// A cache channel's last event (its frame JSON) and the time it has left.
    pub async fn cached(
        &self,
        con: &mut RedisConnection,
        app: &str,
        channel: &str,
    ) -> Result<Option<(String, Duration)>, RedisError> {
        let key = format!("{}:cache", self.channel_stem(app, channel));
        let (frame, ttl_ms): (Option<String>, i64) = ::redis::pipe()
            .cmd("GET")
            .arg(&key)
            .cmd("PTTL")
            .arg(&key)
            .query_async(con)
            .await?;
        Ok(frame.map(|frame| (frame, Duration::from_millis(ttl_ms.max(0) as u64))))
    }

    /// Keeps `text` (the frame JSON) as the cache channel's event for `ttl` and publishes the
    /// frame with the channel's next version, in one step.
    pub async fn publish_cached(
        &self,
        con: &mut RedisConnection,
        fanout: &Fanout,
        target: (&str, &str),
        frame: (&str, &WireFrame),
        except: Option<&str>,
        ttl: Duration,
    ) -> Result<u64, RedisError> {
        let (app, channel) = target;
        let (text, framed) = frame;
        let stem = self.channel_stem(app, channel);
        self.publish_cached
            .key(format!("{stem}:cache"))
            .key(format!("{stem}:flags"))
            .arg(ttl.as_millis().max(1) as u64)
            .arg(text)
            .arg(topic(&self.prefix, app, channel))
            .arg(fanout.event_header(except))
            .arg(framed.bytes().as_ref())
            .invoke_async(con)
            .await
    }

    /// Appends a webhook event this node saw (a client event, a cache miss, a subscription
    /// count) to its channel's partition stream, if the app has endpoints.
    pub async fn append(
        &self,
        con: &mut RedisConnection,
        app: &str,
        event: &WebhookEvent,
    ) -> Result<(), RedisError> {
        if !self.streams_app(app) {
            return Ok(());
        }
        let channel = event.channel_name();
        let mut command = ::redis::cmd("XADD");
        command
            .arg(self.stream(partition_of(app, channel)))
            .arg("*")
            .arg("name")
            .arg(event.kind().name())
            .arg("app")
            .arg(app)
            .arg("channel")
            .arg(&**channel);
        for (name, value) in event.extra_fields() {
            command.arg(name).arg(value);
        }
        command.query_async(con).await
    }
}

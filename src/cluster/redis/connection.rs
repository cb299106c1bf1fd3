//! The node's command connection to Redis, whichever Redis that is now.
//!
//! Every module of the stage holds a clone of one [`RedisConnection`] and sends its commands,
//! scripts and pipelines through it. Behind it is one redis-rs `ConnectionManager` (one
//! multiplexed connection, reconnected in the background with back-off, every command bounded by
//! a response timeout). A manager reconnects to the address it was made for, which is not enough
//! when Sentinel promotes another server: then the recovery makes a manager for the new primary
//! and [`RedisConnection::replace`]s it, and every clone uses it from its next command on.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use crate::config::{redacted, RedisConfig, SentinelConfig};

/// A shared, replaceable command connection (cheap to clone).
#[derive(Clone)]
pub struct RedisConnection {
    current: Arc<RwLock<Current>>,
}

struct Current {
    manager: ConnectionManager,
    /// The server's URL (credentials included: never logged as it is).
    url: String,
}

impl RedisConnection {
    /// Connects to `url`.
    pub async fn open(url: &str) -> Result<RedisConnection, RedisError> {
        let manager = manage(url).await?;
        let current = Current {
            manager,
            url: url.to_owned(),
        };
        Ok(RedisConnection {
            current: Arc::new(RwLock::new(current)),
        })
    }

    fn manager(&self) -> ConnectionManager {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.manager.clone()
    }

    /// The URL of the server the commands go to now.
    pub fn url(&self) -> String {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.url.clone()
    }

    /// Sends every command from now on to the server at `url` (a new primary); the old
    /// connection closes once the commands in flight on it are answered.
    pub async fn replace(&self, url: &str) -> Result<(), RedisError> {
        let manager = manage(url).await?;
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = Current {
            manager,
            url: url.to_owned(),
        };
        Ok(())
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let mut manager = self.manager();
        Box::pin(async move { manager.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut manager = self.manager();
        Box::pin(async move { manager.req_packed_commands(pipeline, offset, count).await })
    }

    fn get_db(&self) -> i64 {
        self.manager().get_db()
    }
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

/// Where the primary is: one URL, or wherever the sentinels say it is now.
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

//! Fixed-window counts shared by every node of the cluster: the rate limits per client
//! address and the per-app quotas, so N nodes never allow N times a limit. One script call per
//! request or upgrade (never per delivery). Each key carries the partition tag of what it
//! counts (`{pN}`, N = FNV-1a of the address or the app id mod 64), so a script touches one
//! slot.
//!
//! Keys: `{prefix}:{pN}:rl:{limit}:{address}` and `{prefix}:{pN}:q:{quota}:{app}`.

use std::time::Duration;

use super::connection::RedisConnection;
use ::redis::{RedisError, Script};

use super::channel_state::{fnv1a, PARTITIONS};
use crate::cluster::WindowKey;

const WINDOW_COUNT: &str = include_str!("lua/window_count.lua");

/// The counters of one cluster.
pub struct SharedWindows {
    con: RedisConnection,
    prefix: String,
    script: Script,
}

impl SharedWindows {
    /// The counters under `prefix`, over `con`.
    pub fn new(con: RedisConnection, prefix: &str) -> SharedWindows {
        SharedWindows {
            con,
            prefix: prefix.to_owned(),
            script: Script::new(WINDOW_COUNT),
        }
    }

    /// Adds `amount` hits to `key`'s window: the count in it, and the time until it ends.
    pub async fn hit(
        &self,
        key: &WindowKey<'_>,
        window: Duration,
        amount: u32,
    ) -> Result<(u64, Duration), RedisError> {
        let mut con = self.con.clone();
        let (count, ttl_ms): (u64, i64) = self
            .script
            .key(self.key(key))
            .arg(window.as_millis() as u64)
            .arg(amount)
            .invoke_async(&mut con)
            .await?;
        Ok((count, Duration::from_millis(ttl_ms.max(0) as u64)))
    }

    pub(super) fn key(&self, key: &WindowKey<'_>) -> String {
        let prefix = &self.prefix;
        match key {
            WindowKey::Address { limit, address } => {
                let address = address.to_string();
                let partition = fnv1a(&[&address]) % u64::from(PARTITIONS);
                format!("{prefix}:{{p{partition}}}:rl:{limit}:{address}")
            }
            WindowKey::App { quota, app } => {
                let partition = fnv1a(&[app]) % u64::from(PARTITIONS);
                format!("{prefix}:{{p{partition}}}:q:{quota}:{app}")
            }
        }
    }
}

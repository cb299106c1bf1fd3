//! Sockudo's `rate_limiter`: per client address, the REST API's requests and the WebSocket
//! upgrades in a window. **Herald's default differs from Sockudo's**: without the block, or with
//! `enabled: false`, nothing is limited (Sockudo's 20 connections a minute per address refuses
//! every load test, and every client behind one proxy). With `enabled: true` an omitted limit
//! takes Sockudo's value. `websocket_rate_limit.trust_hops` is read either way: it is the proxy
//! depth of every per-address rule (see the README's "Client addresses").

use std::time::Duration;

use serde::Deserialize;

use super::{lenient, ConfigError};

/// The block as written.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawRateLimiter {
    #[serde(deserialize_with = "lenient::opt")]
    pub enabled: Option<bool>,
    pub driver: Option<String>,
    pub api_rate_limit: RawRateLimit,
    pub websocket_rate_limit: RawRateLimit,
}

/// One limit as written.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawRateLimit {
    #[serde(deserialize_with = "lenient::opt")]
    pub max_requests: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub window_seconds: Option<u64>,
    /// A name for the limit's counters in Sockudo; Herald names them itself.
    pub identifier: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub trust_hops: Option<u64>,
}

/// One limit: `max` requests per client address per `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed in a window.
    pub max: u32,
    /// The window.
    pub window: Duration,
    /// The proxies whose `X-Forwarded-For` entries are trusted for this limit's address.
    pub trust_hops: usize,
}

/// The enabled rate limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimiterConfig {
    /// The REST API (`/apps/...`, `/users/...`).
    pub api: RateLimit,
    /// WebSocket upgrades at `/app/{key}`.
    pub websocket: RateLimit,
    /// `driver` was `memory`: in a cluster the counts live in Redis anyway (warned).
    pub memory_driver: bool,
}

/// The block; `None` when absent or not enabled. A limit without a `trust_hops` of its own
/// takes `default_hops` (the proxies every per-address rule trusts).
pub(super) fn rate_limiter(
    raw: &RawRateLimiter,
    default_hops: usize,
) -> Result<Option<RateLimiterConfig>, ConfigError> {
    if raw.enabled != Some(true) {
        return Ok(None);
    }
    let memory_driver = match raw.driver.as_deref() {
        None | Some("memory") => raw.driver.is_some(),
        Some("redis") => false,
        Some(other) => {
            return Err(ConfigError::invalid(
                "rate_limiter.driver",
                format!("{other:?} is not one of \"memory\", \"redis\""),
            ))
        }
    };
    Ok(Some(RateLimiterConfig {
        api: limit(
            "rate_limiter.api_rate_limit",
            &raw.api_rate_limit,
            100,
            default_hops,
        )?,
        websocket: limit(
            "rate_limiter.websocket_rate_limit",
            &raw.websocket_rate_limit,
            20,
            default_hops,
        )?,
        memory_driver,
    }))
}

/// One limit, Sockudo's window (60 s) and `max_requests` when omitted.
fn limit(
    path: &str,
    raw: &RawRateLimit,
    default_max: u32,
    default_hops: usize,
) -> Result<RateLimit, ConfigError> {
    let max = match raw.max_requests {
        Some(0) => {
            return Err(ConfigError::invalid(
                &format!("{path}.max_requests"),
                "must be at least 1",
            ))
        }
        Some(n) => n.min(u64::from(u32::MAX)) as u32,
        None => default_max,
    };
    let window = match raw.window_seconds {
        Some(0) => {
            return Err(ConfigError::invalid(
                &format!("{path}.window_seconds"),
                "must be at least 1",
            ))
        }
        other => Duration::from_secs(other.unwrap_or(60)),
    };
    Ok(RateLimit {
        max,
        window,
        trust_hops: raw.trust_hops.map_or(default_hops, |n| n.min(16) as usize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_sockudos_limits_when_on() {
        assert_eq!(rate_limiter(&RawRateLimiter::default(), 0).unwrap(), None);
        let on = RawRateLimiter {
            enabled: Some(true),
            api_rate_limit: RawRateLimit {
                max_requests: Some(5),
                trust_hops: Some(1),
                ..RawRateLimit::default()
            },
            ..RawRateLimiter::default()
        };
        let config = rate_limiter(&on, 2).unwrap().unwrap();
        assert_eq!(
            config.api,
            RateLimit {
                max: 5,
                window: Duration::from_secs(60),
                trust_hops: 1
            }
        );
        assert_eq!(config.websocket.max, 20);
        assert_eq!(
            config.websocket.trust_hops, 2,
            "the global proxy depth by default"
        );
        let bad = RawRateLimiter {
            driver: Some("nats".into()),
            ..on
        };
        assert_eq!(
            rate_limiter(&bad, 0).unwrap_err().path,
            "rate_limiter.driver"
        );
    }
}

//! Asking Redis Sentinel which server is the primary, and hearing when it changes.
//!
//! The sentinels are asked in the order configured (`SENTINEL get-master-addr-by-name`); the
//! server named is asked `ROLE` before it is used, since a sentinel may still name a primary it
//! is demoting. One sentinel's pub/sub connection carries `+switch-master`: when the primary
//! changes, the node is taken offline at once and its recovery asks again and reconnects every
//! connection to the new primary.

use std::sync::Arc;
use std::time::Duration;

use ::redis::{RedisError, Value};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::link::NodeLink;
use crate::config::{redacted, SentinelConfig};
use crate::metrics::Metrics;

/// How long one sentinel or candidate primary may take to answer.
const ASK_BOUND: Duration = Duration::from_secs(2);

fn error(what: &'static str, detail: String) -> RedisError {
    RedisError::from((::redis::ErrorKind::Io, what, detail))
}

/// The URL of the primary, as the first sentinel that answers names it, once that server says
/// it is a primary.
pub async fn primary(sentinel: &SentinelConfig) -> Result<String, RedisError> {
    let mut last = error("no sentinel is configured", String::new());
    for url in &sentinel.sentinels {
        match ask(url, &sentinel.master_name).await {
            Ok((host, port)) => {
                let primary = sentinel.primary_url(&host, port);
                match confirm(&primary).await {
                    Ok(()) => return Ok(primary),
                    // A sentinel may still name a server it is demoting: ask the next.
                    Err(error) => last = error,
                }
            }
            Err(error) => {
                tracing::warn!(sentinel = %redacted(url), %error, "a sentinel did not name the primary");
                last = error;
            }
        }
    }
    Err(last)
}

async fn ask(url: &str, name: &str) -> Result<(String, u16), RedisError> {
    let asked = async {
        let mut con = ::redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        ::redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(name)
            .query_async::<Option<(String, u16)>>(&mut con)
            .await
    };
    match tokio::time::timeout(ASK_BOUND, asked).await {
        Ok(Ok(Some(address))) => Ok(address),
        Ok(Ok(None)) => Err(error("the sentinel does not monitor", name.to_owned())),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(error("no answer from the sentinel in time", String::new())),
    }
}

/// How often the connection that hears switches is checked.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Checks that the server at `url` is a primary now (`ROLE`).
pub async fn confirm(url: &str) -> Result<(), RedisError> {
    let asked = async {
        let mut con = ::redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        ::redis::cmd("ROLE").query_async::<Value>(&mut con).await
    };
    let role = tokio::time::timeout(ASK_BOUND, asked)
        .await
        .map_err(|_| error("no answer from the primary in time", String::new()))??;
    match role {
        Value::Array(parts) if matches!(parts.first(), Some(Value::BulkString(r)) if r == b"master") => {
            Ok(())
        }
        _ => Err(error(
            "the server the sentinels named is not a primary yet",
            redacted(url),
        )),
    }
}

/// Listens for `+switch-master` of the primary on one sentinel after another (the next one
/// when the connection breaks), until `close`; each switch takes the node offline, so its
/// recovery follows the new primary.
pub async fn follow_switches(
    sentinel: SentinelConfig,
    link: Arc<NodeLink>,
    metrics: Arc<Metrics>,
    close: CancellationToken,
) {
    let mut turn = 0;
    loop {
        if turn > 0 {
            metrics.redis_link().reconnected("sentinel");
        }
        let url = &sentinel.sentinels[turn % sentinel.sentinels.len()];
        tokio::select! {
            _ = close.cancelled() => return,
            ended = listen(url, &sentinel.master_name, &link) => {
                if let Err(error) = ended {
                    tracing::warn!(sentinel = %redacted(url), %error, "cannot hear the sentinel's failovers; trying the next one");
                }
            }
        }
        turn += 1;
        tokio::select! {
            _ = close.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn listen(url: &str, name: &str, link: &NodeLink) -> Result<(), RedisError> {
    let pubsub = ::redis::Client::open(url)?.get_async_pubsub().await?;
    let (mut sink, mut messages) = pubsub.split();
    sink.subscribe("+switch-master").await?;
    // A sentinel that vanished without closing the connection (a dead host) would never tell
    // of a switch: one that does not answer a PING in time is left for the next.
    let mut checks = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { break };
                // `{name} {old ip} {old port} {new ip} {new port}`.
                let payload: String = message.get_payload().unwrap_or_default();
                if payload.split(' ').next() == Some(name) {
                    tracing::warn!(switch = %payload, "Sentinel switched the primary");
                    link.availability.went_offline(&"Sentinel switched the primary");
                }
            }
            _ = checks.tick() => {
                let answered = tokio::time::timeout(ASK_BOUND, sink.ping::<Value>()).await;
                if !matches!(answered, Ok(Ok(_))) {
                    return Err(error("the sentinel did not answer PING in time", String::new()));
                }
            }
        }
    }
    Err(error(
        "the sentinel's pub/sub connection ended",
        String::new(),
    ))
}

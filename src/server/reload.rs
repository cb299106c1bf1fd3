//! Changing apps without a restart: `SIGHUP`, or `--watch-config` seeing the file's content
//! change, reads the config file again. A file that fails validation is refused whole and the
//! running configuration stays.
//!
//! Apps added, removed (their sockets close with 4003) and changed (limits, flags, secret,
//! origins, webhooks, decision hooks) take effect on a single node. Every other setting is
//! reported, with whether it ever can change without a restart; none is applied yet.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigFormat, DotEnv};
use crate::state::Shared;

/// How often `--watch-config` reads the file to compare its content.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Where the configuration came from, and whether its content is watched.
#[derive(Clone, Debug)]
pub struct ConfigSource {
    /// The config file.
    pub path: PathBuf,
    /// `--watch-config`: re-read when the content changes (ConfigMaps), not only on SIGHUP.
    pub watch: bool,
    /// `--config-format`: the file's schema (soketi's or Sockudo's), detected when `Auto`.
    pub format: ConfigFormat,
}

/// Settings that only a restart can change: listeners, TLS on or off, the metrics port, the
/// cluster's Redis, how rate limits are counted.
const NEEDS_RESTART: [&str; 8] = [
    "host",
    "port",
    "ssl.enabled",
    "metrics",
    "adapter / database.redis",
    "rate_limiter.driver",
    "websocket.compression",
    "app_manager / database",
];

/// What one reload did.
#[derive(Debug, Default, PartialEq)]
pub struct Reloaded {
    /// Ids of the apps added, removed and changed (empty on a cluster node, which keeps its
    /// apps).
    pub added: Vec<String>,
    /// Ids of the apps removed: their sockets were closed with 4003.
    pub removed: Vec<String>,
    /// Ids of the apps whose configuration changed.
    pub changed: Vec<String>,
    /// Settings other than apps that differ from the running ones, and were not applied.
    pub not_applied: Vec<&'static str>,
}

/// Reloads on SIGHUP and, when watched, whenever the file's content changes, until `stop`.
pub async fn watch(source: ConfigSource, shared: std::sync::Arc<Shared>, stop: CancellationToken) {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut interval = tokio::time::interval(WATCH_INTERVAL);
    let mut seen = digest(&source).await;
    loop {
        let hungup = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        let why = tokio::select! {
            _ = stop.cancelled() => return,
            _ = hungup => "SIGHUP",
            _ = interval.tick(), if source.watch => {
                let now = digest(&source).await;
                if now == seen {
                    continue;
                }
                "the file changed"
            }
        };
        seen = digest(&source).await;
        reload(&shared, &source, why).await;
    }
}

/// The SHA-256 of the file's content; `None` while it cannot be read. Read off the runtime's
/// threads: a slow volume must not hold one.
async fn digest(source: &ConfigSource) -> Option<[u8; 32]> {
    let path = source.path.clone();
    let read = tokio::task::spawn_blocking(move || std::fs::read(path).ok());
    let bytes = read.await.ok().flatten()?;
    Some(Sha256::digest(&bytes).into())
}

/// Reads the file again and applies it, or logs why it was refused.
async fn reload(shared: &Shared, source: &ConfigSource, why: &str) {
    let path = source.path.display();
    // As at start-up: the file in its format, then `.env` and the environment, read again
    // (off the runtime's threads).
    let (file, format) = (source.path.clone(), source.format);
    let loading = tokio::task::spawn_blocking(move || {
        DotEnv::read(Path::new(".env"))
            .and_then(|dotenv| Config::load_with(Some(&file), format, &|name| dotenv.var(name)))
    });
    let Ok(loaded) = loading.await else {
        return tracing::error!("config reload ({why}) failed: the reading task ended early");
    };
    match loaded {
        Err(error) => tracing::error!(
            "config reload ({why}) refused: {error}; the running configuration stays"
        ),
        Ok(next) => {
            let reloaded = apply(shared, &next);
            tracing::info!(
                file = %path,
                added = ?reloaded.added,
                removed = ?reloaded.removed,
                changed = ?reloaded.changed,
                "config reloaded ({why})"
            );
            if !reloaded.not_applied.is_empty() {
                tracing::warn!(
                    settings = ?reloaded.not_applied,
                    "config reload: these settings changed and take effect only after a restart ({} never change while the server runs)",
                    NEEDS_RESTART.join(", ")
                );
            }
        }
    }
}

/// Applies `next`'s apps (alone; a cluster node keeps its apps and says so) and reports the
/// other settings that differ.
pub fn apply(shared: &Shared, next: &Config) -> Reloaded {
    let mut reloaded = Reloaded {
        not_applied: differing_settings(shared.config(), next),
        ..Reloaded::default()
    };
    if matches!(shared.cluster(), crate::cluster::Cluster::Redis(_)) {
        if shared
            .apps()
            .snapshot()
            .iter()
            .map(|a| &a.config)
            .ne(next.apps.iter())
        {
            tracing::warn!("config reload: apps changed, but a cluster node keeps the apps it started with; restart the nodes one by one to apply them");
            reloaded.not_applied.push("app_manager.array.apps");
        }
        return reloaded;
    }
    if shared.apps().is_stored() {
        // The apps are the database's: the file's `apps` are not read with a database driver.
        return reloaded;
    }
    let changes = shared
        .apps()
        .replace(&next.apps, &|c| shared.follow_apps(c));
    let ids = |apps: &mut dyn Iterator<Item = &String>| apps.cloned().collect::<Vec<_>>();
    reloaded.added = ids(&mut changes.added.iter().map(|a| &a.id));
    reloaded.removed = ids(&mut changes.removed.iter().map(|a| &a.id));
    reloaded.changed = ids(&mut changes.changed.iter().map(|(_, a)| &a.id));
    reloaded
}

/// The settings other than apps whose value differs between `running` and `next`.
fn differing_settings(running: &Config, next: &Config) -> Vec<&'static str> {
    let tls_on = |c: &Config| c.tls.is_some();
    let mut differ = Vec::new();
    let mut check = |name: &'static str, same: bool| {
        if !same {
            differ.push(name);
        }
    };
    let debug = |value: &dyn std::fmt::Debug| format!("{value:?}");
    check("host", running.host == next.host);
    check("port", running.port == next.port);
    check("ssl.enabled", tls_on(running) == tls_on(next));
    check("ssl", debug(&running.tls) == debug(&next.tls));
    check("metrics", debug(&running.metrics) == debug(&next.metrics));
    check(
        "adapter / database.redis",
        debug(&running.cluster) == debug(&next.cluster),
    );
    check(
        "rate_limiter",
        debug(&running.rate_limiter) == debug(&next.rate_limiter),
    );
    check(
        "websocket.compression",
        debug(&running.compression) == debug(&next.compression),
    );
    check("cors", debug(&running.cors) == debug(&next.cors));
    check("console", debug(&running.console) == debug(&next.console));
    check(
        "webhooks",
        debug(&running.webhooks) == debug(&next.webhooks),
    );
    check("http_api", debug(&running.http) == debug(&next.http));
    check("timeouts", timeouts(running) == timeouts(next));
    check("limits", limits(running) == limits(next));
    check("debug", running.debug == next.debug);
    check(
        "app_manager / database",
        debug(&running.app_store) == debug(&next.app_store),
    );
    differ
}

/// The server's timeouts, compared as one.
fn timeouts(config: &Config) -> [Duration; 7] {
    [
        config.activity_timeout,
        config.pong_timeout,
        config.user_authentication_timeout,
        config.shutdown_grace_period,
        config.shutdown_drain_delay,
        config.channel_cache_ttl,
        config.subscription_count_interval,
    ]
}

/// The server's size limits and proxy trust, compared as one.
fn limits(config: &Config) -> String {
    format!(
        "{} {:?} {:?} {} {} {}",
        config.websocket_max_payload,
        config.outbound,
        config.max_connections,
        config.max_channels_per_connection,
        config.trust_x_forwarded_for,
        config.trust_hops
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_port_and_cors_are_reported_and_an_unchanged_file_reports_nothing() {
        let running = Config::from_json(r#"{"port": 6001}"#).unwrap();
        assert!(differing_settings(&running, &running.clone()).is_empty());
        let next = Config::from_json(
            r#"{"port": 6002, "cors": {"origin": ["https://a.example"], "credentials": false}}"#,
        )
        .unwrap();
        assert_eq!(differing_settings(&running, &next), ["port", "cors"]);
    }
}

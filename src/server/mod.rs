//! The [`Server`] facade: bind the listeners, run until a shutdown signal, drain, stop.
//!
//! The binary, the tests and the benchmark all start Herald through this type.

mod listener;
pub mod open_files;
pub mod reload;
mod tls;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::http;
use crate::state::{Shared, SharedState};
use tls::ServerCertificate;

/// How often expired cache-channel entries are dropped.
const CACHE_PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// A bound, not yet running server.
pub struct Server {
    shared: SharedState,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    /// With `ssl`: the certificate the main port presents, and the plain redirect port.
    tls: Option<(Arc<ServerCertificate>, Option<TcpListener>)>,
    /// The config file a reload reads again (SIGHUP, `--watch-config`), when there is one.
    config_source: Option<reload::ConfigSource>,
}

impl Server {
    /// Binds the WebSocket/REST listener and, when enabled, the metrics listener.
    pub async fn bind(config: Config) -> io::Result<Server> {
        for key in &config.ignored_keys {
            tracing::warn!(key = %key.path, "{}", key.reason);
        }
        if let Some(limits) = &config.rate_limiter {
            let cluster = matches!(config.cluster, crate::config::ClusterConfig::Redis(_));
            if cluster && limits.memory_driver {
                tracing::warn!("rate_limiter.driver is \"memory\", but a cluster node counts every limit in the cluster's Redis, so N nodes never allow N times a limit");
            }
        }
        if let Some(warning) = &config.compression.runs_as_shared {
            tracing::warn!("{warning}");
        }
        if config.trust_x_forwarded_for {
            tracing::warn!(
                trust_hops = config.trust_hops,
                "trust_x_forwarded_for is read as trusted proxy hops (rate_limiter.websocket_rate_limit.trust_hops, 1 unless set): a client is the X-Forwarded-For entry that many from the right; the left-most entry can be forged by any client"
            );
        }
        // Certificates first: a bad file stops start-up before anything listens.
        let certificate = match &config.tls {
            Some(tls) => Some(ServerCertificate::load(tls).map_err(io::Error::other)?),
            None => None,
        };
        let listener = listener::listen(&config.host, config.port).await?;
        let metrics_listener = if config.metrics.enabled {
            Some(listener::listen(&config.metrics.host, config.metrics.port).await?)
        } else {
            None
        };
        let redirect = match config.tls.as_ref().and_then(|tls| tls.redirect_port) {
            Some(port) => Some(listener::listen(&config.host, port).await?),
            None => None,
        };
        let shared = Shared::start(config).await?;
        Ok(Server {
            shared,
            listener,
            metrics_listener,
            tls: certificate.map(|certificate| (certificate, redirect)),
            config_source: None,
        })
    }

    /// Reads `source` again on SIGHUP (and when its content changes, if watched) while
    /// running: apps follow it without a restart.
    pub fn reloading(mut self, source: reload::ConfigSource) -> Server {
        self.config_source = Some(source);
        self
    }

    /// The address of the plain port that sends clients to TLS (`ssl.redirect_http`).
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        let (_, redirect) = self.tls.as_ref()?;
        redirect.as_ref()?.local_addr().ok()
    }

    /// The address of the WebSocket/REST listener.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of the metrics listener, when enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The shared state (for tests and the benchmark).
    pub fn state(&self) -> SharedState {
        self.shared.clone()
    }

    /// Serves until `shutdown` resolves, then drains: readiness fails and new sockets and REST
    /// writes are refused at once (the listeners keep answering), every socket is closed with
    /// 4200 after `shutdown_drain_delay_ms`, and the webhook pipelines are flushed (bounded by
    /// `shutdown_grace_period`).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
        let shared = self.shared;
        let sockets = shared.shutdown().clone();
        // The listeners outlive the drain: they stop only once everything else has.
        let listening = CancellationToken::new();
        let limits = listener::HeadLimits {
            timeout: shared.config().http.header_timeout,
            max_bytes: shared.config().http.max_header,
        };
        if let Some(listener) = self.metrics_listener {
            // The same accept loop and header timeout as the main port: the two share the
            // process's file descriptors, so an idle metrics connection must not live forever.
            let router = http::metrics_router(shared.clone());
            spawn_plain(listener, router, limits, &listening);
        }
        tokio::spawn(purge_caches(shared.clone()));
        if let Some(interval) = shared.apps().refresh_interval() {
            tokio::spawn(refresh_stored_apps(shared.clone(), interval));
        }
        if let Some(source) = self.config_source {
            tokio::spawn(reload::watch(source, shared.clone(), listening.clone()));
        }
        let tls_port = self.listener.local_addr()?.port();
        let security = security(self.tls, &shared, tls_port, limits, &listening);
        let requests = TaskTracker::new();
        let router = http::router(shared.clone());
        let accepting = tokio::spawn(listener::accept(
            self.listener,
            router,
            listening.clone(),
            requests.clone(),
            limits,
            security,
        ));
        tokio::select! {
            _ = shutdown => {}
            _ = sockets.cancelled() => {}
        }
        drain(&shared).await;
        listening.cancel();
        let _ = accepting.await;
        requests.close();
        let _ = tokio::time::timeout(REQUESTS_GRACE, requests.wait()).await;
        Ok(())
    }

    /// Runs on a background task; the returned handle stops the server when told or dropped.
    pub fn spawn(self) -> io::Result<RunningServer> {
        let addr = self.local_addr()?;
        let metrics_addr = self.metrics_addr();
        let redirect_addr = self.redirect_addr();
        let shared = self.shared.clone();
        let token = shared.shutdown().clone();
        let task = tokio::spawn(self.run(async move { token.cancelled().await }));
        Ok(RunningServer {
            addr,
            metrics_addr,
            redirect_addr,
            shared,
            task: Some(task),
        })
    }
}

/// Serves a side listener (metrics, the TLS redirect port) over plain HTTP until `listening`
/// is cancelled.
fn spawn_plain(
    listener: TcpListener,
    router: axum::Router,
    limits: listener::HeadLimits,
    listening: &CancellationToken,
) {
    let plain = listener::Security::Plain;
    tokio::spawn(listener::accept(
        listener,
        router,
        listening.clone(),
        TaskTracker::new(),
        limits,
        plain,
    ));
}

/// What the main port speaks: plain, or TLS with its certificate's reload and, when asked, the
/// plain port that redirects to `tls_port`.
fn security(
    tls: Option<(Arc<ServerCertificate>, Option<TcpListener>)>,
    shared: &SharedState,
    tls_port: u16,
    limits: listener::HeadLimits,
    listening: &CancellationToken,
) -> listener::Security {
    let Some((certificate, redirect)) = tls else {
        return listener::Security::Plain;
    };
    if let Some(redirect) = redirect {
        let router = http::redirect_router(shared.clone(), tls_port);
        spawn_plain(redirect, router, limits, listening);
    }
    tokio::spawn(certificate.clone().watch(listening.clone()));
    let acceptor = tokio_rustls::TlsAcceptor::from(certificate.server_config());
    listener::Security::Tls(acceptor, shared.clone())
}

/// How long requests still in flight get once everything else has stopped.
const REQUESTS_GRACE: Duration = Duration::from_secs(1);

/// The drain after a shutdown signal: refuse new work at once, close every socket with 4200
/// after the drain delay, wait for them, then flush the webhook pipelines.
async fn drain(shared: &SharedState) {
    shared.start_draining();
    let sockets = shared.shutdown();
    let delay = shared.config().shutdown_drain_delay;
    tracing::info!(
        delay_ms = delay.as_millis() as u64,
        "draining: /ready answers 503; sockets close with 4200 after the delay"
    );
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = sockets.cancelled() => {}
    }
    sockets.cancel();
    let connections = shared.connections();
    connections.close();
    let grace_period = shared.config().shutdown_grace_period;
    let deadline = tokio::time::Instant::now() + grace_period;
    if tokio::time::timeout_at(deadline, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown grace period"
        );
    }
    // The flush has a budget of its own, so a slow socket drain cannot starve it.
    shared.cluster().flush(grace_period).await;
}

/// With apps from a database: every `interval` (the cache TTL), reads the apps kept here again,
/// so a changed, disabled or deleted row takes effect within the TTL.
async fn refresh_stored_apps(shared: SharedState, interval: Duration) {
    loop {
        tokio::select! {
            _ = shared.shutdown().cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let refreshed = shared.apps().refresh(&|c| shared.follow_apps(c)).await;
        shared.metrics().app_database_answered(refreshed.is_some());
        if refreshed.is_none() {
            tracing::warn!("the app database did not answer; apps known here stay as they were");
        }
    }
}

async fn purge_caches(shared: SharedState) {
    let mut interval = tokio::time::interval(CACHE_PURGE_INTERVAL);
    loop {
        tokio::select! {
            _ = shared.shutdown().cancelled() => return,
            _ = interval.tick() => shared.cluster().purge_caches(),
        }
    }
}

/// A server running on a background task.
pub struct RunningServer {
    /// The WebSocket/REST address.
    pub addr: SocketAddr,
    /// The metrics address, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The plain port that sends clients to TLS (`ssl.redirect_http`), when there is one.
    pub redirect_addr: Option<SocketAddr>,
    /// The shared state.
    pub shared: SharedState,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl RunningServer {
    /// Shuts down and waits for the server to finish draining.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.shared.shutdown().cancel();
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shared.shutdown().cancel();
    }
}

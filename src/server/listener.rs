//! The accept loop of the WebSocket/REST listener: HTTP/1.1 with upgrades, over plain TCP or
//! inside TLS.
//!
//! Herald runs its own loop instead of `axum::serve` so that an upgraded connection can be taken
//! back as the `TcpStream` it is (`axum::serve` hands hyper a wrapper that cannot be unwrapped),
//! which lets fan-out write frames straight to the socket.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::state::SharedState;

/// After an accept error (out of file descriptors, say), wait this long before the next accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Accept errors are logged at most once per this period, with how many there were.
const ACCEPT_WARNING_PERIOD: Duration = Duration::from_secs(10);

/// Connections the kernel may hold for the accept loop (it caps this at `net.core.somaxconn`):
/// std's and tokio's default of 128 overflows when a few hundred clients reconnect at once, and
/// every SYN dropped then waits a second to be sent again.
const BACKLOG: u32 = 4096;

/// A listener on `host:port` (the first address the host resolves to) with Herald's backlog.
pub async fn listen(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        // As std's listeners do: a restarted server binds while old connections linger.
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("{host} resolves to no address"),
        )
    }))
}

/// Logs accept errors without flooding the log while the condition lasts.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<tokio::time::Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    fn record(&mut self, error: &std::io::Error) {
        let now = tokio::time::Instant::now();
        self.unlogged += 1;
        if self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= ACCEPT_WARNING_PERIOD)
        {
            tracing::warn!(%error, errors = self.unlogged, "accept failed; retrying (logged at most every 10 s)");
            self.last_logged = Some(now);
            self.unlogged = 0;
        }
    }
}

/// What every request head on a listener is held to.
#[derive(Clone, Copy)]
pub struct HeadLimits {
    /// Headers must arrive within this, on a new connection and between the requests of a
    /// kept-alive one.
    pub timeout: Duration,
    /// A longer head (request line and headers) gets 431 before any handler sees it.
    pub max_bytes: usize,
}

/// Whether a listener speaks TLS, and what to count a failed handshake on.
#[derive(Clone)]
pub enum Security {
    /// Plain HTTP.
    Plain,
    /// TLS first (bounded by the head timeout), then HTTP inside it.
    Tls(TlsAcceptor, SharedState),
}

/// Accepts connections until `stop` is cancelled; each HTTP connection runs on a task of
/// `connections`, which finishes in-flight requests and closes once `stop` is cancelled.
/// Every request carries the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn accept(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
    connections: TaskTracker,
    limits: HeadLimits,
    security: Security,
) {
    let mut errors = AcceptErrors::default();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    errors.record(&error);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Frames are written whole, one write each: nothing to gain from Nagle's delay.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            },
        ));
        let (stop, security) = (stop.clone(), security.clone());
        connections.spawn(async move {
            match security {
                Security::Plain => serve_http(stream, service, limits, stop).await,
                Security::Tls(acceptor, shared) => {
                    let metrics = shared.metrics();
                    // A peer that never finishes its handshake holds a descriptor no longer
                    // than one that never finishes its request head.
                    match tokio::time::timeout(limits.timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve_http(tls, service, limits, stop).await,
                        Ok(Err(error)) => {
                            metrics.tls_handshake_failed();
                            tracing::debug!(%error, "TLS handshake failed");
                        }
                        Err(_) => {
                            metrics.tls_handshake_failed();
                            tracing::debug!("TLS handshake stalled; closed");
                        }
                    }
                }
            }
        });
    }
}

/// Serves HTTP/1.1 (with upgrades) on `io` until it closes, or gracefully once `stop`.
async fn serve_http<I, S>(io: I, service: S, limits: HeadLimits, stop: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.timeout)
        .max_header_size(limits.max_bytes)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

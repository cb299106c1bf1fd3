//! The accept loop of the WebSocket/REST listener: HTTP/1.1 with upgrades, over plain TCP.
//!
//! Herald runs its own loop instead of `axum::serve` so that an upgraded connection can be taken
//! back as the `TcpStream` it is (`axum::serve` hands hyper a wrapper that cannot be unwrapped),
//! which lets fan-out write frames straight to the socket.

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// After an accept error (out of file descriptors, say), wait this long before the next accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Accept errors are logged at most once per this period, with how many there were.
const ACCEPT_WARNING_PERIOD: Duration = Duration::from_secs(10);

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

/// Accepts connections until `stop` is cancelled; each HTTP connection runs on a task of
/// `connections`, which finishes in-flight requests and closes once `stop` is cancelled.
/// Request headers must arrive within `header_timeout`, on a new connection and between the
/// requests of a kept-alive one.
pub async fn accept(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
    connections: TaskTracker,
    header_timeout: Duration,
) {
    let mut errors = AcceptErrors::default();
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    errors.record(&error);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Frames are written whole, one write each: nothing to gain from Nagle's delay.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let stop = stop.clone();
        connections.spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
}

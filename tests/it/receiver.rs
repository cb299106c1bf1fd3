//! Webhook receivers for tests: an axum server that records requests and answers with scripted
//! (or random) statuses after an optional (or random) delay, and a raw TCP one that keeps header
//! names exactly as sent.
//!
//! The axum receiver can also be held closed (requests wait at a gate until it is released), and
//! be reserved on a port before it listens, so that connections are refused until it starts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use axum::Router;
use rand::Rng;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{watch, Notify};

use crate::support::WAIT;

/// One received request.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    /// The status this request was (or is being) answered with.
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("webhook body is JSON")
    }

    pub fn events(&self) -> Vec<Value> {
        self.json()["events"]
            .as_array()
            .expect("events array")
            .clone()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no header {name} in {:?}", self.headers))
    }

    /// Whether the request was answered with a 2xx status.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Random answers: each request independently fails with probability `fail` (with `status`),
/// and is answered after a delay drawn uniformly from `delay`.
#[derive(Clone, Debug)]
struct Chaos {
    fail: f64,
    status: u16,
    delay: RangeInclusive<Duration>,
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// Statuses to answer with, in order; 200 once empty (or chaos, when set).
    script: VecDeque<u16>,
    /// Answer after this long (a hanging endpoint).
    delay: Option<Duration>,
    /// Random failures and delays, after the script.
    chaos: Option<Chaos>,
    /// Requests being answered right now, and the most there ever were at once.
    in_flight: usize,
    max_in_flight: usize,
    /// `webhook-id`s answered 2xx, and how many events their first 2xx request held.
    accepted_ids: HashSet<String>,
    accepted_events: usize,
}

/// Counts a request as in flight until it is answered (or abandoned by the client).
struct InFlight(Arc<Mutex<Inner>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        inner.in_flight -= 1;
    }
}

/// An HTTP webhook receiver on an ephemeral loopback port.
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    notify: Arc<Notify>,
    /// `true` while requests may be answered; `false` holds them at the gate.
    gate: Arc<watch::Sender<bool>>,
    pub addr: SocketAddr,
}

/// A receiver's port, bound but not listening: connections to it are refused until `start`.
pub struct PendingReceiver {
    socket: TcpSocket,
    pub addr: SocketAddr,
}

impl PendingReceiver {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Starts listening on the reserved port.
    pub fn start(self) -> Receiver {
        let listener = self
            .socket
            .listen(1024)
            .expect("listen on the reserved port");
        Receiver::serve(listener)
    }
}

async fn record(
    State(receiver): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (status, delay, _in_flight) = {
        let mut inner = receiver.inner.lock().unwrap();
        let (status, delay) = match (inner.script.pop_front(), &inner.chaos) {
            (Some(status), _) => (status, inner.delay),
            (None, Some(chaos)) => {
                let mut rng = rand::rng();
                let status = if rng.random_bool(chaos.fail) {
                    chaos.status
                } else {
                    200
                };
                let delay = rng.random_range(chaos.delay.clone());
                (status, Some(inner.delay.unwrap_or_default() + delay))
            }
            (None, None) => (200, inner.delay),
        };
        let body = String::from_utf8_lossy(&body).into_owned();
        let webhook_id = headers.get("webhook-id").and_then(|v| v.to_str().ok());
        if let (true, Some(id)) = ((200..300).contains(&status), webhook_id) {
            if inner.accepted_ids.insert(id.to_owned()) {
                inner.accepted_events += serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|b| b["events"].as_array().map(Vec::len))
                    .unwrap_or(0);
            }
        }
        inner.received.push(Received {
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or("").to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body,
            status,
        });
        inner.in_flight += 1;
        inner.max_in_flight = inner.max_in_flight.max(inner.in_flight);
        (status, delay, InFlight(receiver.inner.clone()))
    };
    receiver.notify.notify_waiters();
    let mut gate = receiver.gate.subscribe();
    let _ = gate.wait_for(|open| *open).await;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::serve(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    /// Reserves a loopback port without listening on it yet.
    pub fn reserve() -> PendingReceiver {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        PendingReceiver {
            addr: socket.local_addr().unwrap(),
            socket,
        }
    }

    fn serve(listener: TcpListener) -> Receiver {
        let receiver = Receiver {
            inner: Arc::default(),
            notify: Arc::default(),
            gate: Arc::new(watch::channel(true).0),
            addr: listener.local_addr().unwrap(),
        };
        let app = Router::new()
            .fallback(post(record))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with these statuses.
    pub fn script(&self, statuses: &[u16]) {
        self.inner.lock().unwrap().script.extend(statuses);
    }

    /// Answers every request only after `delay`.
    pub fn hang(&self, delay: Duration) {
        self.inner.lock().unwrap().delay = Some(delay);
    }

    /// Each request (after the script) fails with `status` with probability `fail`, and every
    /// request is answered after a random delay in `delay` (added to a `hang` delay, if any).
    pub fn chaos(&self, fail: f64, status: u16, delay: RangeInclusive<Duration>) {
        self.inner.lock().unwrap().chaos = Some(Chaos {
            fail,
            status,
            delay,
        });
    }

    /// Holds every request (recorded, status chosen) unanswered until [`Receiver::release`].
    pub fn hold(&self) {
        self.gate.send_replace(false);
    }

    /// Answers the held requests and stops holding.
    pub fn release(&self) {
        self.gate.send_replace(true);
    }

    /// The most requests that were being answered at the same moment.
    pub fn max_concurrent(&self) -> usize {
        self.inner.lock().unwrap().max_in_flight
    }

    /// Waits until the first 2xx-answered requests of the distinct `webhook-id`s held at least
    /// `count` events (counted as the requests arrive), for at most `bound`.
    pub async fn wait_accepted_events(&self, count: usize, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let notified = self.notify.notified();
            let (accepted, requests) = {
                let inner = self.inner.lock().unwrap();
                (inner.accepted_events, inner.received.len())
            };
            if accepted >= count {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "timed out after {bound:?} waiting for {count} accepted webhook events; \
                     {accepted} accepted in {requests} requests"
                );
            }
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Requests to `path` so far.
    pub fn at(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// All events received at `path`, in arrival order.
    pub fn events_at(&self, path: &str) -> Vec<Value> {
        self.at(path).iter().flat_map(Received::events).collect()
    }

    /// Waits until `done` holds for the received requests (bounded by [`WAIT`]).
    pub async fn wait_until(&self, mut done: impl FnMut(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.notify.notified();
            let received = self.received();
            if done(&received) {
                return received;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for webhooks; received so far: {received:#?}");
            }
        }
    }

    /// Waits until `path` has received at least `count` events; returns them.
    pub async fn wait_events(&self, path: &str, count: usize) -> Vec<Value> {
        self.wait_until(|r| {
            r.iter()
                .filter(|r| r.path == path)
                .map(|r| r.events().len())
                .sum::<usize>()
                >= count
        })
        .await;
        self.events_at(path)
    }
}

/// A raw TCP receiver: records each request's header block byte for byte and answers 200.
pub struct RawReceiver {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl RawReceiver {
    pub async fn start() -> RawReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let store = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buffer).into_owned();
                        let Some(end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let length: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buffer.len() < end + 4 + length {
                            continue;
                        }
                        store.lock().unwrap().push(text[..end].to_owned());
                        buffer.drain(..end + 4 + length);
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                            .await;
                    }
                });
            }
        });
        RawReceiver { addr, requests }
    }

    /// Waits for the first request's header block.
    pub async fn first_request(&self) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(first) = self.requests.lock().unwrap().first() {
                return first.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no request reached the raw receiver"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

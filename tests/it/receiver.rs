//! Webhook receivers for tests: an axum server that records requests and answers with scripted
//! statuses, and a raw TCP one that keeps header names exactly as sent.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::support::WAIT;

/// One received request.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: String,
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
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// Statuses to answer with, in order; 200 once empty.
    script: VecDeque<u16>,
    /// Answer after this long (a hanging endpoint).
    delay: Option<Duration>,
}

/// An HTTP webhook receiver on an ephemeral loopback port.
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    notify: Arc<Notify>,
    pub addr: SocketAddr,
}

async fn record(
    State(receiver): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (status, delay) = {
        let mut inner = receiver.inner.lock().unwrap();
        inner.received.push(Received {
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or("").to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        (inner.script.pop_front().unwrap_or(200), inner.delay)
    };
    receiver.notify.notify_waiters();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            inner: Arc::default(),
            notify: Arc::default(),
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

//! A decision hook endpoint for tests: an axum server on an ephemeral loopback port that records
//! every call and answers it as the test's `decide` function says (status, body, delay).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::support::WAIT;

/// How the hook answers one call.
#[derive(Clone, Debug)]
pub struct HookAnswer {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl HookAnswer {
    /// 200 `{"allow": true}`.
    pub fn allow() -> HookAnswer {
        HookAnswer::json(json!({"allow": true}))
    }

    /// 200 with this JSON body.
    pub fn json(body: Value) -> HookAnswer {
        HookAnswer::raw(200, &body.to_string())
    }

    /// `status` with this body, as it is.
    pub fn raw(status: u16, body: &str) -> HookAnswer {
        HookAnswer {
            status,
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    /// The same answer after `delay`.
    pub fn after(mut self, delay: Duration) -> HookAnswer {
        self.delay = delay;
        self
    }
}

/// One call as the hook saw it.
#[derive(Clone, Debug)]
pub struct HookRequest {
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl HookRequest {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("hook body is JSON")
    }
}

type Decide = dyn Fn(&Value) -> HookAnswer + Send + Sync;

#[derive(Default)]
struct Calls {
    received: Vec<HookRequest>,
    in_flight: usize,
    max_in_flight: usize,
    /// Calls whose client went away before the answer.
    abandoned: usize,
}

#[derive(Clone)]
pub struct HookServer {
    calls: Arc<Mutex<Calls>>,
    decide: Arc<Decide>,
    notify: Arc<Notify>,
    pub addr: SocketAddr,
}

/// Counts a call in flight until it is answered; one dropped before that was abandoned.
struct InFlight {
    calls: Arc<Mutex<Calls>>,
    answered: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.in_flight -= 1;
        if !self.answered {
            calls.abandoned += 1;
        }
    }
}

async fn call(
    State(server): State<HookServer>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let body = String::from_utf8_lossy(&body).into_owned();
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let answer = (server.decide)(&parsed);
    let mut guard = {
        let mut calls = server.calls.lock().unwrap();
        calls.received.push(HookRequest {
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body,
        });
        calls.in_flight += 1;
        calls.max_in_flight = calls.max_in_flight.max(calls.in_flight);
        InFlight {
            calls: server.calls.clone(),
            answered: false,
        }
    };
    server.notify.notify_waiters();
    tokio::time::sleep(answer.delay).await;
    guard.answered = true;
    (StatusCode::from_u16(answer.status).unwrap(), answer.body)
}

impl HookServer {
    /// Starts a hook that answers every call with `decide(body)`.
    pub async fn start(
        decide: impl Fn(&Value) -> HookAnswer + Send + Sync + 'static,
    ) -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = HookServer {
            calls: Arc::default(),
            decide: Arc::new(decide),
            notify: Arc::new(Notify::new()),
            addr: listener.local_addr().unwrap(),
        };
        let app = Router::new()
            .route("/decide", post(call))
            .with_state(server.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        server
    }

    /// The URL to configure as `decision_hooks.url`.
    pub fn url(&self) -> String {
        format!("http://{}/decide", self.addr)
    }

    pub fn received(&self) -> Vec<HookRequest> {
        self.calls.lock().unwrap().received.clone()
    }

    /// The calls of one `type`.
    pub fn of_type(&self, kind: &str) -> Vec<Value> {
        let received = self.received();
        received
            .iter()
            .map(HookRequest::json)
            .filter(|body| body["type"] == kind)
            .collect()
    }

    pub fn max_in_flight(&self) -> usize {
        self.calls.lock().unwrap().max_in_flight
    }

    pub fn in_flight(&self) -> usize {
        self.calls.lock().unwrap().in_flight
    }

    pub fn abandoned(&self) -> usize {
        self.calls.lock().unwrap().abandoned
    }

    /// Waits (bounded) until `count` calls have arrived.
    pub async fn wait_calls(&self, count: usize) -> Vec<HookRequest> {
        let wait = async {
            loop {
                let notified = self.notify.notified();
                let received = self.received();
                if received.len() >= count {
                    return received;
                }
                notified.await;
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("{count} hook calls in time; got {:?}", self.received()))
    }
}

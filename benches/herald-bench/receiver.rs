//! A webhook receiver that counts events and POSTs, de-duplicating retries by `webhook-id`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use serde_json::Value;

#[derive(Default)]
struct Tally {
    posts: u64,
    seen_ids: HashSet<String>,
    /// Occurrences of each event (name, channel, user) across distinct deliveries.
    events: HashMap<(String, String, String), u64>,
    total_events: u64,
}

/// Counts what arrives.
#[derive(Clone, Default)]
pub struct WebhookCounter {
    tally: Arc<Mutex<Tally>>,
}

async fn receive(
    State(counter): State<WebhookCounter>,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return "bad";
    };
    let mut tally = counter.tally.lock().unwrap();
    tally.posts += 1;
    if !id.is_empty() && !tally.seen_ids.insert(id) {
        return "ok";
    }
    for event in json["events"].as_array().into_iter().flatten() {
        let field = |k: &str| event[k].as_str().unwrap_or("").to_owned();
        *tally
            .events
            .entry((field("name"), field("channel"), field("user_id")))
            .or_default() += 1;
        tally.total_events += 1;
    }
    "ok"
}

impl WebhookCounter {
    /// Serves on an ephemeral loopback port; returns the URL.
    pub async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhooks", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/webhooks", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// (POSTs, distinct events).
    pub fn totals(&self) -> (u64, u64) {
        let tally = self.tally.lock().unwrap();
        (tally.posts, tally.total_events)
    }

    /// How often this event arrived.
    pub fn count(&self, name: &str, channel: &str, user: &str) -> u64 {
        let tally = self.tally.lock().unwrap();
        tally
            .events
            .get(&(name.to_owned(), channel.to_owned(), user.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

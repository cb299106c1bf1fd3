//! A webhook receiver that counts events and POSTs, de-duplicating retries by `webhook-id`, and
//! checks that each channel's occupied/vacated and each member's added/removed alternate.

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
    /// Each (family, channel, user): whether it is open (occupied, added) after what arrived,
    /// and how many events repeated the state they should change (added after added, a first
    /// removal).
    pairs: HashMap<(&'static str, String, String), (bool, u64)>,
}

/// The pair an event belongs to and whether it opens it; `None` for other events.
fn transition(name: &str) -> Option<(&'static str, bool)> {
    match name {
        "channel_occupied" => Some(("channel", true)),
        "channel_vacated" => Some(("channel", false)),
        "member_added" => Some(("member", true)),
        "member_removed" => Some(("member", false)),
        _ => None,
    }
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
        let (name, channel, user) = (field("name"), field("channel"), field("user_id"));
        if let Some((family, opens)) = transition(&name) {
            let key = (family, channel.clone(), user.clone());
            let pair = tally.pairs.entry(key).or_default();
            pair.1 += u64::from(pair.0 == opens);
            pair.0 = opens;
        }
        *tally.events.entry((name, channel, user)).or_default() += 1;
        tally.total_events += 1;
    }
    "ok"
}

impl WebhookCounter {
    /// Serves on an ephemeral loopback port; returns the URL.
    pub async fn start(&self) -> String {
        serve_webhooks(
            Router::new()
                .route("/webhooks", post(receive))
                .with_state(self.clone()),
        )
        .await
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

    /// For the channels under `prefix`: events that broke the alternation of their channel or
    /// member, and channels and members whose last event left them open.
    pub fn alternation(&self, prefix: &str) -> (u64, u64) {
        let tally = self.tally.lock().unwrap();
        let ours = tally
            .pairs
            .iter()
            .filter(|((_, c, _), _)| c.starts_with(prefix));
        ours.fold((0, 0), |(breaks, open), (_, pair)| {
            (breaks + pair.1, open + u64::from(pair.0))
        })
    }
}

/// Serves `app` (whose route is `/webhooks`) on an ephemeral loopback port; returns its URL.
pub async fn serve_webhooks(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

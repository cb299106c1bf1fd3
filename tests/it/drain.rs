//! The drain at shutdown, on the real binary: from SIGTERM on, `/ready` and `/up` answer 503
//! while the listener keeps answering, new sockets and REST writes get 503 with `Retry-After`,
//! open sockets close with 4200 after `shutdown_drain_delay_ms`, and every queued webhook
//! (the vacates of those sockets included) reaches a slow receiver before the process exits.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::probe_support::LoggedHerald;
use crate::receiver::Receiver;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_closes_sockets_and_delivers_every_queued_webhook() {
    let receiver = Receiver::start().await;
    receiver.hang(Duration::from_millis(300));
    let mut config = base_config();
    config["shutdown_drain_delay_ms"] = json!(1500);
    config["shutdown_grace_period"] = json!(10);
    config["webhooks"] = json!({"batching": {"enabled": false}, "grace_period_ms": 0});
    config["app_manager"]["array"]["apps"][0]["webhooks"] = json!([{
        "url": receiver.url("/w"), "event_types": ["channel_occupied", "channel_vacated"],
        "max_in_flight": 1,
    }]);
    let mut herald = LoggedHerald::start("drain", &config);
    let mut clients = Vec::new();
    for n in 0..5 {
        let mut client = Client::connect(&herald.ws_url(KEY)).await;
        client.subscribe(&format!("room-{n}")).await;
        clients.push(client);
    }
    let http = reqwest::Client::new();
    let status = |path: &str| {
        let request = http.get(herald.http_url(path)).timeout(WAIT);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/ready").await, 200);

    herald.signal("TERM");
    let signalled = Instant::now();
    let mut ready = 200;
    while ready == 200 && signalled.elapsed() < Duration::from_secs(1) {
        ready = status("/ready").await;
    }
    assert_eq!(ready, 503, "/ready fails at once");
    assert_eq!(status("/up").await, 503);
    assert_eq!(status(&format!("/up/{APP_ID}")).await, 503);
    assert_eq!(status("/live").await, 200, "alive while draining");
    let rest = Rest::new(&herald);
    let body = json!({"name": "e", "channel": "room-0", "data": "x"}).to_string();
    let url = rest.signed_url("POST", &format!("/apps/{APP_ID}/events"), &body, &[]);
    let refused = http
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    let refused = refused.send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    let upgrade = tokio_tungstenite::connect_async(herald.ws_url(KEY)).await;
    assert!(
        upgrade.is_err(),
        "a new socket is refused before the upgrade"
    );
    let reads = rest.get(&format!("/apps/{APP_ID}/channels"), &[]).await;
    assert_eq!(reads.0, 200, "reads still answer: {reads:?}");

    let closed = clients.pop().unwrap().closed().await;
    assert_eq!(closed.code, Some(4200), "{closed:?}");
    assert!(
        signalled.elapsed() >= Duration::from_millis(1400),
        "sockets stay for the drain delay"
    );

    let status = herald.wait_exit(Duration::from_secs(15));
    assert!(status.is_some(), "exited: {}", herald.log());
    let events = receiver.events_at("/w");
    let count = |name: &str| events.iter().filter(|e| e["name"] == name).count();
    assert_eq!(
        (count("channel_occupied"), count("channel_vacated")),
        (5, 5),
        "{events:?}"
    );
}

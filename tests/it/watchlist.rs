//! Who is online, on one node: watchlist events as pusher-js reads them, the `user_online` /
//! `user_offline` webhooks with their grace period, and the REST user status.

use std::time::Duration;

use serde_json::{json, Value};

use crate::receiver::Receiver;
use crate::support::*;

async fn watching_server() -> TestServer {
    TestServer::start_with(|c| TestServer::app(c)["enable_watchlist_events"] = json!(true)).await
}

/// A client signed in as `id` watching `watchlist`; returns it and the sign-in reply.
async fn signed_in(server: &TestServer, id: Value, watchlist: Value) -> (Client, Value) {
    let mut client = server.client().await;
    client
        .send_signin(json!({"id": id, "watchlist": watchlist}))
        .await;
    let reply = client.recv().await;
    assert_eq!(reply["event"], "pusher:signin_success", "{reply}");
    (client, reply)
}

/// The `events` of a `pusher_internal:watchlist_events` frame, checked for pusher-js's shape.
fn watchlist_events(frame: &Value) -> Vec<Value> {
    assert_eq!(
        frame["event"], "pusher_internal:watchlist_events",
        "{frame}"
    );
    assert!(frame.get("channel").is_none(), "{frame}");
    let data: Value = serde_json::from_str(frame["data"].as_str().expect("data is a string"))
        .expect("data is JSON");
    let events = data["events"].as_array().expect("events").clone();
    for event in &events {
        let ids = event["user_ids"].as_array().expect("user_ids");
        assert!(!ids.is_empty(), "never an empty user_ids: {frame}");
    }
    events
}

async fn next_change(client: &mut Client) -> Value {
    let events = watchlist_events(&client.recv().await);
    assert_eq!(events.len(), 1, "{events:?}");
    events[0].clone()
}

#[tokio::test]
async fn a_watcher_gets_the_initial_status_then_each_change() {
    let server = watching_server().await;
    let (_bob, _) = signed_in(&server, json!("bob"), json!([])).await;
    let (mut alice, _) = signed_in(&server, json!("alice"), json!(["bob", 7, "carol"])).await;
    let initial = watchlist_events(&alice.recv().await);
    assert_eq!(
        initial,
        [json!({"name": "online", "user_ids": ["bob"]})],
        "only the online ones, and no initial offline list"
    );

    let (seven_a, _) = signed_in(&server, json!(7), json!([])).await;
    assert_eq!(
        next_change(&mut alice).await,
        json!({"name": "online", "user_ids": ["7"]}),
        "a numeric id is watched in its string form"
    );
    let (seven_b, _) = signed_in(&server, json!("7"), json!([])).await;
    seven_a.disconnect().await;
    alice.expect_silence(Duration::from_millis(300)).await;
    seven_b.disconnect().await;
    assert_eq!(
        next_change(&mut alice).await,
        json!({"name": "offline", "user_ids": ["7"]}),
        "offline only once the last connection closed"
    );
}

#[tokio::test]
async fn nobody_online_sends_no_initial_frame() {
    let server = watching_server().await;
    let (mut alice, _) = signed_in(&server, json!("alice"), json!(["bob"])).await;
    alice.expect_silence(Duration::from_millis(300)).await;
    let (_bob, _) = signed_in(&server, json!("bob"), json!([])).await;
    assert_eq!(next_change(&mut alice).await["name"], "online");
}

#[tokio::test]
async fn a_watchlist_past_a_hundred_ids_keeps_the_first_hundred_with_4302() {
    let server = watching_server().await;
    let ids: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let (mut alice, _) = signed_in(&server, json!("alice"), json!(ids)).await;
    let error = alice.recv().await;
    assert_eq!(error["event"], "pusher:error", "{error}");
    assert_eq!(error["data"]["code"], 4302);
    let (_in_list, _) = signed_in(&server, json!("u99"), json!([])).await;
    assert_eq!(
        next_change(&mut alice).await,
        json!({"name": "online", "user_ids": ["u99"]})
    );
    let (_cut, _) = signed_in(&server, json!("u100"), json!([])).await;
    alice.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn an_app_without_watchlist_events_ignores_a_watchlist() {
    let server = TestServer::start().await;
    let (_bob, _) = signed_in(&server, json!("bob"), json!([])).await;
    let ids: Vec<u32> = (0..150).collect();
    let mut list = json!(ids);
    list.as_array_mut().unwrap().push(json!("bob"));
    let (mut alice, _) = signed_in(&server, json!("alice"), list).await;
    alice.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_bad_watchlist_refuses_the_sign_in_naming_the_entry() {
    let server = watching_server().await;
    let mut client = server.client().await;
    client
        .send_signin(json!({"id": "a", "watchlist": ["b", {"id": 1}]}))
        .await;
    let closed = client.closed().await;
    assert_eq!(closed.code, Some(4009), "{closed:?}");
    let message = closed.errors[0]["data"]["message"].as_str().unwrap();
    assert!(message.contains("watchlist[1]"), "{message}");
}

#[tokio::test]
async fn the_user_channel_is_invisible_to_clients_and_listings() {
    let server = watching_server().await;
    let (mut bob, _) = signed_in(&server, json!("bob"), json!([])).await;
    bob.expect_silence(Duration::from_millis(200)).await;
    let reply = bob.subscribe_with(json!({"channel": "#user:bob"})).await;
    assert_eq!(reply["event"], "pusher:subscription_error", "{reply}");
    let (status, body) = Rest::new(&server)
        .get(&format!("/apps/{APP_ID}/channels"), &[])
        .await;
    assert_eq!((status, body), (200, json!({"channels": {}})));
}

#[tokio::test]
async fn the_rest_api_tells_a_users_status() {
    let server = watching_server().await;
    let status = |user: &str| {
        let path = format!("/apps/{APP_ID}/users/{user}");
        let server = &server;
        async move { Rest::new(server).get(&path, &[]).await }
    };
    assert_eq!(
        status("bob").await,
        (200, json!({"online": false, "connections": 0})),
        "an unknown user is offline, not a 404"
    );
    let (_one, _) = signed_in(&server, json!("bob"), json!([])).await;
    let (two, _) = signed_in(&server, json!("bob"), json!([])).await;
    assert_eq!(
        status("bob").await,
        (200, json!({"online": true, "connections": 2}))
    );
    two.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        status("bob").await,
        (200, json!({"online": true, "connections": 1}))
    );
    let unsigned = reqwest::get(server.http_url(&format!("/apps/{APP_ID}/users/bob")))
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401, "signed like every REST call");
}

async fn hooked_server(receiver: &Receiver, grace_ms: u64) -> TestServer {
    TestServer::start_with(|c| {
        TestServer::app(c)["webhooks"] = json!([
            {"url": receiver.url("/users"), "event_types": ["user_online", "user_offline"]},
            {"url": receiver.url("/channels"), "event_types": ["channel_occupied", "channel_vacated"]},
        ]);
        c["webhooks"] = json!({"grace_period_ms": grace_ms});
    })
    .await
}

#[tokio::test]
async fn user_webhooks_go_only_to_endpoints_naming_them() {
    let receiver = Receiver::start().await;
    let server = hooked_server(&receiver, 0).await;
    let (first, _) = signed_in(&server, json!(5), json!([])).await;
    let (second, _) = signed_in(&server, json!("5"), json!([])).await;
    first.disconnect().await;
    second.disconnect().await;
    let events = receiver.wait_events("/users", 2).await;
    assert_eq!(
        events,
        [
            json!({"name": "user_online", "user_id": "5"}),
            json!({"name": "user_offline", "user_id": "5"}),
        ]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.events_at("/users").len(), 2, "once per transition");
    assert!(
        receiver.events_at("/channels").is_empty(),
        "a user's channel is nobody's channel_occupied"
    );
    let post = &receiver.at("/users")[0];
    let time_ms = post.json()["time_ms"].as_u64().unwrap();
    assert!(time_ms > 0);
}

#[tokio::test]
async fn a_sign_in_within_the_grace_period_cancels_the_offline_and_the_online() {
    let receiver = Receiver::start().await;
    let server = hooked_server(&receiver, 600).await;
    let (first, _) = signed_in(&server, json!("u"), json!([])).await;
    receiver.wait_events("/users", 1).await;
    first.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (again, _) = signed_in(&server, json!("u"), json!([])).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        receiver.events_at("/users"),
        [json!({"name": "user_online", "user_id": "u"})],
        "a page reload sends nothing"
    );
    again.disconnect().await;
    let events = receiver.wait_events("/users", 2).await;
    assert_eq!(events[1], json!({"name": "user_offline", "user_id": "u"}));
}

#[tokio::test]
async fn user_events_with_a_channel_filter_stop_start_up() {
    let mut config = base_config();
    TestServer::app(&mut config)["webhooks"] = json!([{
        "url": "http://127.0.0.1:9/h",
        "event_types": ["user_online"],
        "filter": {"channel_prefix": "presence-"}
    }]);
    let error = herald::config::Config::from_json(&config.to_string()).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("webhooks[0].filter"), "{text}");
}

//! Decision hooks against a real HTTP hook server: what each call carries and how it is signed,
//! what every kind of answer (and failure) does, the concurrency cap, sign-in by hook, that a
//! refusal leaves no trace, and that only the socket that asked waits.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::hook_server::{HookAnswer, HookServer};
use crate::receiver::Receiver;
use crate::support::*;

const EVERY_HOOK: [&str; 3] = [
    "connection_starting",
    "subscription_starting",
    "client_event_sending",
];

/// A server whose app asks `hook` about `events`, with `extra` merged into `decision_hooks`.
async fn server_with(hook: &HookServer, events: &[&str], extra: Value) -> TestServer {
    server_and(hook, events, extra, |_| {}).await
}

async fn server_and(
    hook: &HookServer,
    events: &[&str],
    extra: Value,
    edit: impl FnOnce(&mut Value),
) -> TestServer {
    let mut hooks = json!({"url": hook.url(), "events": events, "request_timeout_ms": 1000});
    for (key, value) in extra.as_object().into_iter().flatten() {
        hooks[key] = value.clone();
    }
    TestServer::start_with(|c| {
        TestServer::app(c)["decision_hooks"] = hooks;
        edit(c);
    })
    .await
}

/// The reply to a subscribe of a private channel, signed correctly.
async fn subscribe_private_reply(client: &mut Client, channel: &str) -> Value {
    let auth = format!(
        "{KEY}:{}",
        hmac_hex(SECRET, &format!("{}:{channel}", client.socket_id))
    );
    client
        .subscribe_with(json!({"auth": auth, "channel": channel}))
        .await
}

#[tokio::test]
async fn an_allowed_connection_is_asked_about_with_its_request_and_signed_like_a_webhook() {
    let hook = HookServer::start(|_| HookAnswer::allow()).await;
    let server = server_and(
        &hook,
        &EVERY_HOOK,
        json!({"headers": {"X-Custom": "yes"}}),
        |c| {
            c["trust_x_forwarded_for"] = json!(false);
        },
    )
    .await;
    let client = server.client().await;
    let calls = hook.wait_calls(1).await;
    let call = &calls[0];
    let body = call.json();
    assert_eq!(body["type"], "connection_starting");
    assert!(body["time_ms"].as_u64().is_some(), "{body}");
    let data = &body["data"];
    assert_eq!(data["app_id"], APP_ID);
    assert_eq!(data["socket_id"], client.socket_id.as_str());
    assert_eq!(data["ip"], "127.0.0.1");
    assert_eq!(
        (&data["client"], &data["version"], &data["protocol"]),
        (&json!("js"), &json!("8.4.0"), &json!("7"))
    );
    assert!(
        data.get("origin").is_some() && data.get("user_agent").is_some(),
        "{data}"
    );

    assert_eq!(call.headers["content-type"], "application/json");
    assert_eq!(call.headers["x-pusher-key"], KEY);
    assert_eq!(
        call.headers["x-pusher-signature"],
        hmac_hex(SECRET, &call.body)
    );
    assert!(call.headers["webhook-id"].starts_with("msg_"));
    assert_eq!(call.headers["x-custom"], "yes");

    // Every call has its own Webhook-Id.
    let second = server.client().await;
    let calls = hook.wait_calls(2).await;
    assert_ne!(
        calls[0].headers["webhook-id"],
        calls[1].headers["webhook-id"]
    );
    drop((client, second));
}

/// The hook's `ip` is the client address every per-address rule uses: the peer, or behind
/// `trust_hops` proxies the entry that many from the right of `X-Forwarded-For` (the left end
/// is whatever the client wrote). The older `trust_x_forwarded_for` counts as one hop.
#[tokio::test]
async fn the_forwarded_address_is_the_trusted_hop_from_the_right() {
    let cases = [
        (json!({}), "127.0.0.1"),
        (json!({"trust_x_forwarded_for": true}), "10.0.0.1"),
        (
            json!({"rate_limiter": {"websocket_rate_limit": {"trust_hops": 1}}}),
            "10.0.0.1",
        ),
        (
            json!({"rate_limiter": {"websocket_rate_limit": {"trust_hops": 2}}}),
            "203.0.113.9",
        ),
    ];
    for (keys, expected) in cases {
        let hook = HookServer::start(|_| HookAnswer::allow()).await;
        let server = server_and(&hook, &["connection_starting"], json!({}), |c| {
            for (key, value) in keys.as_object().unwrap() {
                c[key] = value.clone();
            }
        })
        .await;
        let mut request =
            tungstenite::client::IntoClientRequest::into_client_request(server.ws_url(KEY))
                .unwrap();
        request
            .headers_mut()
            .insert("x-forwarded-for", "203.0.113.9, 10.0.0.1".parse().unwrap());
        let (_ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let calls = hook.wait_calls(1).await;
        assert_eq!(calls[0].json()["data"]["ip"], expected, "{keys}");
    }
}

#[tokio::test]
async fn a_refused_connection_gets_4009_with_the_reason() {
    let hook =
        HookServer::start(|_| HookAnswer::json(json!({"allow": false, "reason": "banned user"})))
            .await;
    let server = server_with(&hook, &["connection_starting"], json!({})).await;
    let closed = Client::unestablished(&server.ws_url(KEY))
        .await
        .closed()
        .await;
    assert_eq!(closed.code, Some(4009), "{closed:?}");
    assert_eq!(
        closed.errors.len(),
        1,
        "no connection_established before the error"
    );
    assert_eq!(
        closed.errors[0]["data"],
        json!({"code": 4009, "message": "banned user"})
    );
}

#[tokio::test]
async fn null_empty_and_non_json_answers_refuse() {
    for body in ["null", "{}", "not json", r#"{"allow":"yes"}"#] {
        let hook = HookServer::start(move |_| HookAnswer::raw(200, body)).await;
        let server = server_with(&hook, &["connection_starting"], json!({})).await;
        let closed = Client::unestablished(&server.ws_url(KEY))
            .await
            .closed()
            .await;
        assert_eq!(closed.code, Some(4009), "{body}: {closed:?}");
        assert_eq!(
            closed.errors[0]["data"]["message"],
            "refused by the app's decision hook"
        );
    }
}

#[tokio::test]
async fn a_timeout_applies_on_failure() {
    let slow = |_: &Value| HookAnswer::allow().after(Duration::from_secs(3));
    // reject (the default): 4100, so clients back off and retry.
    let hook = HookServer::start(slow).await;
    let server = server_with(
        &hook,
        &["connection_starting"],
        json!({"request_timeout_ms": 200}),
    )
    .await;
    let closed = Client::unestablished(&server.ws_url(KEY))
        .await
        .closed()
        .await;
    assert_eq!(closed.code, Some(4100), "{closed:?}");
    assert_eq!(closed.errors[0]["data"]["code"], 4100);
    // allow: the connection goes ahead.
    let hook = HookServer::start(slow).await;
    let extra = json!({"request_timeout_ms": 200, "on_failure": "allow"});
    let server = server_with(&hook, &["connection_starting"], extra).await;
    let mut client = server.client().await;
    client.subscribe("public-after-timeout").await;
}

#[tokio::test]
async fn a_non_2xx_answer_or_an_unreachable_hook_applies_on_failure() {
    let hook = HookServer::start(|_| HookAnswer::raw(500, r#"{"allow":true}"#)).await;
    let server = server_with(&hook, &["connection_starting"], json!({})).await;
    let closed = Client::unestablished(&server.ws_url(KEY))
        .await
        .closed()
        .await;
    assert_eq!(
        closed.code,
        Some(4100),
        "a 500 is a failure, whatever its body: {closed:?}"
    );

    // Nothing listens on the hook's port any more.
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = TestServer::start_with(|c| {
        TestServer::app(c)["decision_hooks"] = json!({"url": format!("http://{gone}/decide"), "events": ["subscription_starting"], "on_failure": "reject"});
    })
    .await;
    let mut client = server.client().await;
    let reply = client
        .subscribe_with(json!({"channel": "public-unreachable"}))
        .await;
    assert_eq!(reply["event"], "pusher:subscription_error", "{reply}");
    assert_eq!(reply["data"]["status"], 503);
}

#[tokio::test]
async fn calls_over_max_concurrent_fail_at_once() {
    let hook = HookServer::start(|_| HookAnswer::allow().after(Duration::from_millis(1500))).await;
    let server = server_with(
        &hook,
        &["subscription_starting"],
        json!({"max_concurrent": 1, "request_timeout_ms": 3000}),
    )
    .await;
    let mut first = server.client().await;
    let mut second = server.client().await;
    first
        .send(json!({"event": "pusher:subscribe", "data": {"channel": "public-cap"}}))
        .await;
    hook.wait_calls(1).await;
    let started = Instant::now();
    let reply = second
        .subscribe_with(json!({"channel": "public-cap"}))
        .await;
    assert_eq!(reply["event"], "pusher:subscription_error", "{reply}");
    assert_eq!(reply["data"]["status"], 503);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "the capped call did not wait"
    );
    let reply = first.recv().await;
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
    assert_eq!(hook.max_in_flight(), 1);
    assert_eq!(hook.received().len(), 1, "the capped call was never sent");
}

#[tokio::test]
async fn a_hook_can_sign_the_connection_in_and_server_to_user_events_reach_it() {
    let hook = HookServer::start(|_| {
        HookAnswer::json(
            json!({"allow": true, "user": {"id": "u-7", "user_info": {"name": "Seven"}}}),
        )
    })
    .await;
    let server = server_and(&hook, &["connection_starting"], json!({}), |c| {
        TestServer::app(c)["enable_user_authentication"] = json!(true);
        c["user_authentication_timeout"] = json!(1);
    })
    .await;
    let mut client = server.client().await;
    let (status, _) = Rest::new(&server)
        .post(
            &format!("/apps/{APP_ID}/events"),
            json!({"name": "note", "channels": ["#server-to-user-u-7"], "data": "hi"}),
        )
        .await;
    assert_eq!(status, 200);
    let got = client.recv_event("note").await;
    assert_eq!(got["channel"], "#server-to-user-u-7");
    // Signed in: presence without channel_data uses the hook's user.
    let channel = "presence-by-hook";
    let auth = format!(
        "{KEY}:{}",
        hmac_hex(SECRET, &format!("{}:{channel}", client.socket_id))
    );
    let reply = client
        .subscribe_with(json!({"auth": auth, "channel": channel}))
        .await;
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
    let presence: Value = serde_json::from_str(reply["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        presence["presence"]["hash"]["u-7"],
        json!({"name": "Seven"})
    );
    // ... and the sign-in timer is cleared: still open after it.
    client.expect_silence(Duration::from_millis(1300)).await;
    // Terminate by user id reaches it.
    let (status, _) = Rest::new(&server)
        .post(
            &format!("/apps/{APP_ID}/users/u-7/terminate_connections"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(client.closed().await.code, Some(4009));
}

#[tokio::test]
async fn a_hook_signed_connection_watches_its_answers_watchlist() {
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let hook = HookServer::start(move |_| {
        let user = match answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => json!({"id": "bob"}),
            1 => {
                let mut watchlist = vec![json!("bob")];
                watchlist.extend((1..=100).map(|i| json!(format!("u{i}"))));
                json!({"id": "alice", "watchlist": watchlist})
            }
            _ => json!({"id": "u5"}),
        };
        HookAnswer::json(json!({"allow": true, "user": user}))
    })
    .await;
    let server = server_and(&hook, &["connection_starting"], json!({}), |c| {
        TestServer::app(c)["enable_watchlist_events"] = json!(true);
    })
    .await;
    let _bob = server.client().await;
    let mut alice = server.client().await;
    let error = alice.recv().await;
    assert_eq!(error["data"]["code"], 4302, "{error}");
    let initial = alice.recv().await;
    assert_eq!(initial["event"], "pusher_internal:watchlist_events");
    let data: Value = serde_json::from_str(initial["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        data,
        json!({"events": [{"name": "online", "user_ids": ["bob"]}]})
    );
    let _u5 = server.client().await;
    // After its own `#server-to-user-alice` subscription's reply.
    let online = alice.recv_event("pusher_internal:watchlist_events").await;
    let data: Value = serde_json::from_str(online["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        data,
        json!({"events": [{"name": "online", "user_ids": ["u5"]}]})
    );
}

#[tokio::test]
async fn a_hooks_bad_watchlist_refuses_the_sign_in_only_where_watchlists_are_on() {
    let hook = HookServer::start(|_| {
        HookAnswer::json(json!({"allow": true, "user": {"id": "u", "watchlist": "not a list"}}))
    })
    .await;
    let watching =
        |on: bool| move |c: &mut Value| TestServer::app(c)["enable_watchlist_events"] = json!(on);
    let server = server_and(&hook, &["connection_starting"], json!({}), watching(true)).await;
    let closed = server.client().await.closed().await;
    assert_eq!(closed.code, Some(4009), "{closed:?}");
    let message = closed.errors[0]["data"]["message"].as_str().unwrap();
    assert!(message.contains("user.watchlist"), "{message}");

    let ignoring = server_and(&hook, &["connection_starting"], json!({}), watching(false)).await;
    let mut client = ignoring.client().await;
    let reply = client.recv().await;
    assert_eq!(reply["channel"], "#server-to-user-u", "signed in: {reply}");
    let status = Rest::new(&ignoring)
        .get(&format!("/apps/{APP_ID}/users/u"), &[])
        .await;
    assert_eq!(status, (200, json!({"online": true, "connections": 1})));
    client.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_refused_subscription_leaves_no_trace() {
    let hook = HookServer::start(|body| {
        let channel = body["data"]["channel"].as_str().unwrap_or("");
        if channel.contains("secret") {
            HookAnswer::json(json!({"allow": false, "reason": "not for you"}))
        } else {
            HookAnswer::allow()
        }
    })
    .await;
    let receiver = Receiver::start().await;
    let server = server_and(&hook, &["subscription_starting"], json!({}), |c| {
        TestServer::app(c)["enable_subscription_count"] = json!(true);
        TestServer::app(c)["webhooks"] =
            json!([{"url": receiver.url("/w"), "event_types": herald::config::EVENT_TYPES}]);
        c["webhooks"] = json!({"grace_period_ms": 0, "batching": {"enabled": false}});
    })
    .await;
    let mut client = server.client().await;
    for channel in ["private-secret-room", "cache-secret", "public-secret"] {
        let reply = if channel.starts_with("private-") {
            subscribe_private_reply(&mut client, channel).await
        } else {
            client.subscribe_with(json!({"channel": channel})).await
        };
        assert_eq!(reply["event"], "pusher:subscription_error", "{reply}");
        assert_eq!(reply["channel"], channel);
        assert_eq!(
            reply["data"],
            json!({"type": "AuthError", "error": "not for you", "status": 403})
        );
    }
    let call = &hook.of_type("subscription_starting")[0];
    assert_eq!(call["data"]["channel"], "private-secret-room");
    assert_eq!(call["data"]["socket_id"], client.socket_id.as_str());
    // An allowed one goes through; its webhooks (occupied, subscription_count) are the only ones.
    client.subscribe("public-open").await;
    receiver.wait_events("/w", 2).await;
    let (_, channels) = Rest::new(&server)
        .get(&format!("/apps/{APP_ID}/channels"), &[])
        .await;
    assert_eq!(channels, json!({"channels": {"public-open": {}}}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = receiver.events_at("/w");
    assert_eq!(
        events,
        vec![
            json!({"name": "channel_occupied", "channel": "public-open"}),
            json!({"name": "subscription_count", "channel": "public-open", "subscription_count": 1}),
        ]
    );
}

#[tokio::test]
async fn a_presence_subscription_call_carries_the_member() {
    let hook = HookServer::start(|_| HookAnswer::allow()).await;
    let server = server_with(&hook, &["subscription_starting"], json!({})).await;
    let mut client = server.client().await;
    client.join_presence("presence-room", "alice").await;
    let call = &hook.of_type("subscription_starting")[0];
    assert_eq!(call["data"]["user_id"], "alice");
    let channel_data: Value =
        serde_json::from_str(call["data"]["channel_data"].as_str().unwrap()).unwrap();
    assert_eq!(channel_data["user_id"], "alice");
}

#[tokio::test]
async fn a_refused_client_event_reaches_no_one_and_no_webhook() {
    let hook = HookServer::start(|body| {
        if body["data"]["event"] == "client-bad" {
            HookAnswer::json(json!({"allow": false, "reason": "no shouting"}))
        } else {
            HookAnswer::allow()
        }
    })
    .await;
    let receiver = Receiver::start().await;
    let server = server_and(&hook, &["client_event_sending"], json!({}), |c| {
        TestServer::app(c)["webhooks"] =
            json!([{"url": receiver.url("/w"), "event_types": ["client_event"]}]);
        c["webhooks"] = json!({"grace_period_ms": 0, "batching": {"enabled": false}});
    })
    .await;
    let mut sender = server.client().await;
    let mut other = server.client().await;
    let channel = "private-chat";
    sender.subscribe_private(channel).await;
    other.subscribe_private(channel).await;
    sender
        .send(json!({"event": "client-bad", "channel": channel, "data": {"x": 1}}))
        .await;
    let error = sender.recv_event("pusher:error").await;
    assert_eq!(
        error["data"],
        json!({"code": null, "message": "no shouting"})
    );
    sender
        .send(json!({"event": "client-good", "channel": channel, "data": {"x": 2}}))
        .await;
    let got = other.recv().await;
    assert_eq!(
        got["event"], "client-good",
        "the refused event was delivered: {got}"
    );
    let events = receiver.wait_events("/w", 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"], "client-good");
    let call = &hook.of_type("client_event_sending")[0];
    assert_eq!(call["data"]["event"], "client-bad");
    assert_eq!(call["data"]["data"], json!({"x": 1}));
    assert_eq!(call["data"]["channel"], channel);
}

#[tokio::test]
async fn a_slow_hook_for_one_socket_does_not_delay_another() {
    let hook = HookServer::start(|body| {
        if body["data"]["channel"] == "public-slow" {
            HookAnswer::allow().after(Duration::from_millis(1500))
        } else {
            HookAnswer::allow()
        }
    })
    .await;
    let server = server_with(
        &hook,
        &["subscription_starting"],
        json!({"request_timeout_ms": 3000}),
    )
    .await;
    let mut slow = server.client().await;
    let mut fast = server.client().await;
    fast.subscribe("public-news").await;
    slow.send(json!({"event": "pusher:subscribe", "data": {"channel": "public-slow"}}))
        .await;
    hook.wait_calls(2).await;
    let started = Instant::now();
    let (status, _) = Rest::new(&server)
        .post(
            &format!("/apps/{APP_ID}/events"),
            json!({"name": "tick", "channels": ["public-news"], "data": "1"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(fast.recv().await["event"], "tick");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "the other socket waited for the slow hook"
    );
    let reply = slow.recv().await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
}

#[tokio::test]
async fn a_client_event_after_a_slowly_judged_subscribe_is_judged_after_it() {
    let hook = HookServer::start(|body| match body["type"].as_str() {
        Some("subscription_starting") => HookAnswer::allow().after(Duration::from_millis(500)),
        _ => HookAnswer::allow(),
    })
    .await;
    let hooks = ["subscription_starting", "client_event_sending"];
    let server = server_with(&hook, &hooks, json!({})).await;
    let mut watcher = server.client().await;
    let channel = "private-order";
    watcher.subscribe_private(channel).await;
    let mut sender = server.client().await;
    let auth = format!(
        "{KEY}:{}",
        hmac_hex(SECRET, &format!("{}:{channel}", sender.socket_id))
    );
    // Both frames at once: the client event must wait for the subscribe's verdict.
    sender
        .send(json!({"event": "pusher:subscribe", "data": {"auth": auth, "channel": channel}}))
        .await;
    sender
        .send(json!({"event": "client-hello", "channel": channel, "data": {}}))
        .await;
    assert_eq!(
        sender.recv().await["event"],
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(watcher.recv().await["event"], "client-hello");
    let types: Vec<Value> = hook
        .received()
        .iter()
        .map(|r| r.json()["type"].clone())
        .collect();
    assert_eq!(
        types,
        vec![
            json!("subscription_starting"),
            json!("subscription_starting"),
            json!("client_event_sending")
        ]
    );
}

#[tokio::test]
async fn a_call_whose_socket_closes_is_cancelled() {
    let hook = HookServer::start(|_| HookAnswer::allow().after(Duration::from_secs(4))).await;
    let server = server_with(
        &hook,
        &["subscription_starting"],
        json!({"request_timeout_ms": 5000}),
    )
    .await;
    let mut client = server.client().await;
    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": "public-gone"}}))
        .await;
    hook.wait_calls(1).await;
    client.disconnect().await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while hook.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hook.abandoned(), 1, "the call outlived its socket");
    let (_, channels) = Rest::new(&server)
        .get(&format!("/apps/{APP_ID}/channels"), &[])
        .await;
    assert_eq!(channels, json!({"channels": {}}));
}

#[tokio::test]
async fn hook_calls_are_counted_per_app_and_hook() {
    let hook = HookServer::start(|body| {
        if body["data"]["channel"] == "public-no" {
            HookAnswer::json(json!({"allow": false}))
        } else {
            HookAnswer::allow()
        }
    })
    .await;
    let server = server_with(&hook, &["subscription_starting"], json!({})).await;
    let mut client = server.client().await;
    client.subscribe("public-yes").await;
    client.subscribe_with(json!({"channel": "public-no"})).await;
    let text = server.metrics_text().await;
    let series = |name: &str| {
        format!(
            "herald_app_decision_hook_{name}{{app_id=\"{APP_ID}\",hook=\"subscription_starting\"}}"
        )
    };
    for (name, value) in [
        ("calls_total", 2),
        ("allowed_total", 1),
        ("refused_total", 1),
        ("failures_total", 0),
        ("latency_seconds_count", 2),
    ] {
        let line = format!("{} {value}", series(name));
        assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
    }
}

//! The debug console's endpoints: every route behind the token (401 without it, 403 from a
//! foreign origin), the token traded for a cookie, and the live stream showing a connection, a
//! subscription, a REST event, a client event and a webhook delivery; the channels and a presence
//! channel's members.

use std::time::Duration;

use serde_json::{json, Value};

use crate::receiver::Receiver;
use crate::support::*;

const TOKEN: &str = "console-test-token-0123456789";

/// `GET path` of `server` with the session `cookie`, as JSON (asserting 200).
pub async fn console_get(server: &dyn Served, cookie: &str, path: &str) -> Value {
    let response = client()
        .get(server.http_url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

/// Every console route, with its method.
const ROUTES: [(&str, &str); 9] = [
    ("GET", "/console"),
    ("GET", "/console/console.js"),
    ("GET", "/console/console.css"),
    ("GET", "/console/api/overview"),
    ("GET", "/console/api/apps/app-1/channels"),
    (
        "GET",
        "/console/api/apps/app-1/channels/presence-room/users",
    ),
    ("GET", "/console/api/apps/app-1/stream"),
    ("POST", "/console/api/apps/app-1/events"),
    ("GET", "/console/anything-else"),
];

async fn console_server(edit: impl FnOnce(&mut Value)) -> TestServer {
    TestServer::start_with(|c| {
        c["console"] = json!({"token": TOKEN});
        edit(c);
    })
    .await
}

/// An HTTP client that shows redirects instead of following them.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(WAIT)
        .build()
        .unwrap()
}

async fn session(server: &TestServer) -> String {
    console_session(server, TOKEN).await
}

/// Trades `token` for the session cookie of `server`; returns the `Cookie` header value.
pub async fn console_session(server: &dyn Served, token: &str) -> String {
    let url = server.http_url(&format!("/console?token={token}"));
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/console");
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains(token), "the cookie must not be the token");
    cookie.split(';').next().unwrap().to_owned()
}

fn request(server: &TestServer, method: &str, path: &str) -> reqwest::RequestBuilder {
    let url = server.http_url(path);
    match method {
        "POST" => client()
            .post(url)
            .body(r#"{"channel":"c","name":"e","data":"x"}"#),
        _ => client().get(url),
    }
}

#[tokio::test]
async fn every_route_needs_the_token_and_reveals_nothing_without_it() {
    let server = console_server(|_| {}).await;
    for (method, path) in ROUTES {
        let response = request(&server, method, path).send().await.unwrap();
        assert_eq!(response.status(), 401, "{method} {path}");
        let body = response.text().await.unwrap();
        for secret in [APP_ID, KEY, SECRET] {
            assert!(
                !body.contains(secret),
                "{method} {path} revealed {secret}: {body}"
            );
        }
        let wrong = request(&server, method, &format!("{path}?token=not-the-token"));
        assert_eq!(
            wrong.send().await.unwrap().status(),
            401,
            "{method} {path} with a wrong token"
        );
    }
}

#[tokio::test]
async fn a_foreign_origin_is_refused_even_with_the_cookie() {
    let server = console_server(|_| {}).await;
    let cookie = session(&server).await;
    let own = format!("http://{}", server.running.addr);
    // A <script src> or <img> of another port of this host sends no Origin, only Sec-Fetch-Site.
    let senders = [
        ("origin", "http://127.0.0.1:1", true),
        ("sec-fetch-site", "same-site", true),
        ("origin", own.as_str(), false),
    ];
    for (method, path) in ROUTES {
        for (header, value, refused) in senders {
            let response = request(&server, method, path)
                .header("cookie", &cookie)
                .header(header, value)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status() == 403,
                refused,
                "{method} {path} with {header}: {value}"
            );
        }
    }
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy_and_no_secret() {
    let server = console_server(|_| {}).await;
    let cookie = session(&server).await;
    let response = request(&server, "GET", "/console")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("script-src 'self'") && policy.contains("default-src 'none'"),
        "{policy}"
    );
    assert!(!policy.contains("unsafe-inline"));
    let page = response.text().await.unwrap();
    assert!(page.contains("/console/console.js"));
    let overview = console_get(&server, &cookie, "/console/api/overview").await;
    assert_eq!(overview["apps"][0]["id"], APP_ID);
    assert!(!overview.to_string().contains(SECRET), "{overview}");
}

#[tokio::test]
async fn the_console_can_be_turned_off() {
    let server = console_server(|c| c["console"]["enabled"] = json!(false)).await;
    let url = server.http_url(&format!("/console?token={TOKEN}"));
    assert_eq!(client().get(url).send().await.unwrap().status(), 404);
}

/// Opens the app's live stream with the session `cookie`.
/// Opens the app's live stream of the console with the session `cookie`.
pub async fn open_stream(server: &TestServer, cookie: &str) -> reqwest::Response {
    let path = format!("/console/api/apps/{APP_ID}/stream");
    let opened = request(server, "GET", &path).header("cookie", cookie);
    opened.send().await.unwrap()
}

/// Reads the stream's entries until `done` holds for them (bounded by `WAIT`).
pub async fn read_stream(
    response: &mut reqwest::Response,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut pending = String::new();
    let read = async {
        while !done(&entries) {
            let chunk = response
                .chunk()
                .await
                .unwrap()
                .expect("the stream stays open");
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                for line in event.lines() {
                    if let Some(data) = line.strip_prefix("data: ") {
                        entries.push(serde_json::from_str(data).unwrap());
                    }
                }
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("entries in time"));
    entries
}

/// Whether an entry of `kind` passes `check`.
pub fn has(entries: &[Value], kind: &str, check: impl Fn(&Value) -> bool) -> bool {
    entries.iter().any(|e| e["kind"] == kind && check(e))
}

#[tokio::test]
async fn the_stream_shows_connections_subscriptions_events_and_webhook_deliveries() {
    let receiver = Receiver::start().await;
    let server = console_server(|c| {
        TestServer::app(c)["webhooks"] =
            json!([{"url": receiver.url("/w"), "event_types": ["channel_occupied"]}]);
        c["webhooks"] = json!({"batching": {"enabled": false}});
    })
    .await;
    let cookie = session(&server).await;
    let mut stream = open_stream(&server, &cookie).await;
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));

    let mut a = server.client().await;
    let mut b = server.client().await;
    let channel = "private-room";
    a.subscribe_private(channel).await;
    b.subscribe_private(channel).await;
    let script = "<img src=x onerror=alert(1)>";
    a.send(json!({"event": "client-note", "channel": channel, "data": {"html": script}}))
        .await;
    b.recv_event("client-note").await;
    // Sent from the console's form: as the REST API would.
    let sent = request(
        &server,
        "POST",
        &format!("/console/api/apps/{APP_ID}/events"),
    )
    .header("cookie", &cookie)
    .header("content-type", "application/json")
    .body(json!({"channel": channel, "name": "from-console", "data": "hi"}).to_string())
    .send()
    .await
    .unwrap();
    assert_eq!(sent.status(), 200);
    assert_eq!(a.recv_event("from-console").await["data"], "hi");

    let socket = a.socket_id.clone();
    let entries = read_stream(&mut stream, |e| {
        has(e, "connection_opened", |x| {
            x["socket_id"] == socket.as_str()
        }) && has(e, "subscribed", |x| x["channel"] == channel)
            && has(e, "channel_occupied", |x| x["channel"] == channel)
            && has(e, "client_event", |x| x["detail"]["event"] == "client-note")
            && has(e, "api_event", |x| x["detail"]["event"] == "from-console")
            && has(e, "webhook_delivery", |x| {
                x["detail"]["outcome"] == "delivered"
            })
    })
    .await;
    let client_event = entries
        .iter()
        .find(|e| e["kind"] == "client_event")
        .unwrap();
    assert!(
        client_event["detail"]["data"]
            .as_str()
            .unwrap()
            .contains(script),
        "{client_event}"
    );
    let delivery = entries
        .iter()
        .find(|e| e["kind"] == "webhook_delivery")
        .unwrap();
    assert!(delivery["detail"]["webhook_id"]
        .as_str()
        .unwrap()
        .starts_with("msg_"));
    assert_eq!(delivery["detail"]["attempt"], 1);
    assert_eq!(delivery["detail"]["status"], 200);
    let occupied = entries.iter().find(|e| e["kind"] == "channel_occupied");
    assert_eq!(
        occupied.unwrap()["detail"],
        json!({}),
        "a channel's entry has no user"
    );

    // A viewer that opens the console later gets the recent entries at once.
    b.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut late = open_stream(&server, &cookie).await;
    let replayed = read_stream(&mut late, |e| has(e, "connection_closed", |_| true)).await;
    assert!(has(&replayed, "connection_opened", |x| x["socket_id"]
        == socket.as_str()));

    let path = format!("/console/api/apps/{APP_ID}/channels");
    let channels = console_get(&server, &cookie, &path).await;
    assert_eq!(channels["channels"][0]["name"], channel);
    assert_eq!(channels["channels"][0]["subscription_count"], 1);
}

#[tokio::test]
async fn the_members_of_a_presence_channel_are_listed_and_other_channels_refused() {
    let server = console_server(|_| {}).await;
    let cookie = session(&server).await;
    let mut member = server.client().await;
    member.join_presence("presence-room", "ada").await;
    let path = format!("/console/api/apps/{APP_ID}/channels/presence-room/users");
    let users = console_get(&server, &cookie, &path).await;
    assert_eq!(users, json!({"users": ["ada"]}));

    let public = format!("/console/api/apps/{APP_ID}/channels/room/users");
    let refused = request(&server, "GET", &public)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn the_stream_shows_users_going_online_and_offline() {
    let server = console_server(|_| {}).await;
    let cookie = session(&server).await;
    let mut stream = open_stream(&server, &cookie).await;
    let mut client = server.client().await;
    assert_eq!(
        client.sign_in("u-9").await["event"],
        "pusher:signin_success"
    );
    client.disconnect().await;
    let entries = read_stream(&mut stream, |e| {
        has(e, "user_online", |x| x["detail"]["user_id"] == "u-9")
            && has(e, "user_offline", |x| x["detail"]["user_id"] == "u-9")
    })
    .await;
    let online = entries.iter().find(|e| e["kind"] == "user_online").unwrap();
    assert!(
        online["channel"].is_null(),
        "a user is no channel: {online}"
    );
    assert!(
        !has(&entries, "channel_occupied", |_| true),
        "the user's own channel is not shown as one"
    );
}

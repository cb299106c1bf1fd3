//! Attacker's probes of secrets and redirects: a failing decision hook's URL (its query and
//! credentials) never reaches the client, the console or the log; neither webhooks nor hooks
//! follow a redirect (a 3xx is a failed attempt, retried for a webhook, `on_failure` for a
//! hook).

use std::time::Duration;

use serde_json::{json, Value};

use crate::console::{console_session, has, read_stream};
use crate::probe_support::{connect_from, resetting_endpoint, LoggedHerald, Outcome, Redirector};
use crate::receiver::Receiver;
use crate::support::*;

const SECRETS: [&str; 4] = ["hook-secret", "hook-pass", "pw-secret", "tok-secret"];

/// Panics when `text` shows any of [`SECRETS`] or `also`.
fn assert_no_secret(text: &str, also: &str, what: &str) {
    for secret in SECRETS.iter().chain([&also]) {
        assert!(!text.contains(secret), "{what} shows {secret:?}: {text}");
    }
}

/// A server whose app asks the hook at `url` about `events`, refusing when it fails.
async fn hooked(url: &str, events: &[&str]) -> TestServer {
    let hooks = json!({"url": url, "events": events, "request_timeout_ms": 2000});
    TestServer::start_with(|c| TestServer::app(c)["decision_hooks"] = hooks).await
}

/// The hook URLs of two failing backends: one that resets, one that redirects to itself.
async fn failing_hooks() -> Vec<(String, String)> {
    let reset = resetting_endpoint().await;
    let looping = Redirector::start(302, "").await;
    looping.answer(302, &looping.url("/decide?token=hook-secret"));
    let with_secrets =
        |authority: String| format!("http://user:hook-pass@{authority}/decide?token=hook-secret");
    vec![
        (with_secrets(reset.to_string()), reset.to_string()),
        (
            with_secrets(looping.addr.to_string()),
            looping.addr.to_string(),
        ),
    ]
}

#[tokio::test]
async fn a_failing_hooks_url_never_reaches_the_client() {
    for (url, authority) in failing_hooks().await {
        let server = hooked(&url, &["connection_starting"]).await;
        let localhost = "127.0.0.1".parse().unwrap();
        let closed = connect_from(localhost, &server.ws_url(KEY), WAIT).await;
        let Outcome::Closed {
            code,
            reason,
            errors,
        } = closed
        else {
            panic!("a failing hook let the connection in");
        };
        assert_eq!(code, Some(4100), "{reason}");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0]["data"]["code"], 4100);
        let shown = format!("{reason} {errors:?}");
        assert_no_secret(&shown, &authority, "the close");

        let server = hooked(&url, &["subscription_starting"]).await;
        let mut client = server.client().await;
        let refused = client.subscribe_with(json!({"channel": "room"})).await;
        assert_eq!(refused["event"], "pusher:subscription_error");
        assert_eq!(refused["data"]["status"], 503);
        assert_no_secret(&refused.to_string(), &authority, "the subscription error");

        let server = hooked(&url, &["client_event_sending"]).await;
        let mut client = server.client().await;
        client.subscribe_private("private-room").await;
        let event = json!({"event": "client-a", "channel": "private-room", "data": {}});
        client.send(event).await;
        let error = client.recv_event("pusher:error").await;
        assert_no_secret(&error.to_string(), &authority, "the client event's error");
    }
}

/// A server with one webhook endpoint for `channel_occupied` at `url`, retrying quickly.
async fn webhooked(url: &str, edit: impl FnOnce(&mut Value)) -> TestServer {
    TestServer::start_with(|c| {
        TestServer::app(c)["webhooks"] = json!([{
            "url": url, "event_types": ["channel_occupied"],
            "retry": {"initial_backoff_ms": 50, "max_backoff_ms": 100, "max_elapsed_time_ms": 20000},
        }]);
        c["webhooks"] = json!({"batching": {"enabled": false}});
        edit(c);
    })
    .await
}

#[tokio::test]
async fn a_webhook_answered_with_a_redirect_is_retried_never_followed() {
    let elsewhere = Redirector::start(200, "").await;
    let endpoint = Redirector::start(302, &elsewhere.url("/stolen")).await;
    let server = webhooked(&endpoint.url("/w"), |_| {}).await;
    let mut client = server.client().await;
    client.subscribe("room").await;
    let seen = endpoint.wait_seen(2).await;
    assert!(seen.len() >= 2, "a 302 is retried: {seen:?}");
    endpoint.answer(307, &elsewhere.url("/stolen"));
    let count = endpoint.seen().len();
    let seen = endpoint.wait_seen(count + 2).await;
    endpoint.answer(200, "");
    let count = endpoint.seen().len();
    let delivered = endpoint.wait_seen(count + 1).await;
    assert!(
        delivered.len() > count,
        "delivered once the endpoint answers 200"
    );
    for request in &seen {
        assert_eq!(request.method, "POST", "{request:?}");
        assert!(request.body.contains("channel_occupied"), "{request:?}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        elsewhere.seen().is_empty(),
        "a redirect was followed: {:?}",
        elsewhere.seen()
    );
}

#[tokio::test]
async fn a_hook_answered_with_a_redirect_fails_and_on_failure_decides() {
    let elsewhere = Redirector::start(200, "").await;
    let hook = Redirector::start(307, &elsewhere.url("/decide")).await;
    let server = hooked(&hook.url("/decide"), &["connection_starting"]).await;
    let localhost = "127.0.0.1".parse().unwrap();
    let outcome = connect_from(localhost, &server.ws_url(KEY), WAIT).await;
    assert!(
        matches!(
            outcome,
            Outcome::Closed {
                code: Some(4100),
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(hook.seen().len(), 1);
    assert!(elsewhere.seen().is_empty(), "the redirect was followed");
}

#[tokio::test]
async fn the_console_shows_webhook_urls_without_credentials_or_query() {
    const TOKEN: &str = "probe-console-token-0123456789";
    let receiver = Receiver::start().await;
    let url = format!("http://bob:pw-secret@{}/w?token=tok-secret", receiver.addr);
    let server = webhooked(&url, |c| c["console"] = json!({"token": TOKEN})).await;
    let cookie = console_session(&server, TOKEN).await;
    let mut stream = crate::console::open_stream(&server, &cookie).await;
    let mut client = server.client().await;
    client.subscribe("room").await;
    let entries = read_stream(&mut stream, |es| has(es, "webhook_delivery", |_| true)).await;
    let entry = entries
        .iter()
        .find(|e| e["kind"] == "webhook_delivery")
        .unwrap();
    assert_eq!(entry["detail"]["outcome"], "delivered", "{entry}");
    assert_no_secret(&entry.to_string(), "bob:pw", "the console");
    let endpoint = entry["detail"]["endpoint"].as_str().unwrap();
    assert_eq!(endpoint, format!("http://bob:***@{}/w?***", receiver.addr));
}

/// The real binary's log, through a failing hook, a redirected and an unreachable webhook,
/// and wrong console tokens: no secret in it, redirects named with their (redacted)
/// `Location`, and wrong tokens counted rather than logged one by one.
#[tokio::test]
async fn the_log_names_failures_without_their_secrets() {
    let reset = resetting_endpoint().await;
    let redirecting = Redirector::start(302, "http://127.0.0.1:1/next?token=loc-secret").await;
    let mut config = base_config();
    config["console"] = json!({"token": "probe-console-token-0123456789"});
    config["webhooks"] = json!({"batching": {"enabled": false}});
    let retry = json!({"initial_backoff_ms": 50, "max_backoff_ms": 100});
    let app = &mut config["app_manager"]["array"]["apps"][0];
    app["webhooks"] = json!([
        {"url": format!("http://bob:pw-secret@{}/w?token=tok-secret", redirecting.addr),
         "event_types": ["channel_occupied"], "retry": retry},
        {"url": "http://bob:pw-secret@127.0.0.1:1/w?token=tok-secret",
         "event_types": ["channel_occupied"], "retry": retry},
    ]);
    app["decision_hooks"] = json!({
        "url": format!("http://user:hook-pass@{reset}/decide?token=hook-secret"),
        "events": ["subscription_starting"], "on_failure": "allow",
    });
    let herald = LoggedHerald::start("log-secrets", &config);
    let mut client = Client::connect(&herald.ws_url(KEY)).await;
    client.subscribe("room").await;
    let console = crate::console::client();
    for _ in 0..15 {
        let url = herald.http_url("/console?token=wrong-token-0123456789");
        console.get(url).send().await.unwrap();
    }
    redirecting.wait_seen(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = herald.log();
    assert_no_secret(&log, "loc-secret", "the log");
    assert!(log.contains("not followed"), "{log}");
    assert!(log.contains("http://127.0.0.1:1/next?***"), "{log}");
    assert!(log.contains("decision hook failed"), "{log}");
    let token_lines = (log.lines())
        .filter(|l| l.contains("wrong console tokens") || l.contains("too many wrong tokens"))
        .count();
    assert_eq!(token_lines, 2, "the first report and the throttle: {log}");
}

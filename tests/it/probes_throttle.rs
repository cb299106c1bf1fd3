//! Attacker's probes of shared capacity: one client address holds at most its share of an
//! app's decision hook calls, and console token guesses are throttled per address (the client
//! address every per-address rule uses: the peer, or the trusted hop of `X-Forwarded-For`).

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use crate::hook_server::{HookAnswer, HookServer};
use crate::probe_support::{connect_from, Outcome};
use crate::support::*;

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_hook_call() {
    let hook = HookServer::start(|_| HookAnswer::allow().after(Duration::from_millis(900))).await;
    let server = TestServer::start_with(|c| {
        TestServer::app(c)["decision_hooks"] = json!({
            "url": hook.url(), "events": ["connection_starting"],
            "request_timeout_ms": 3000, "max_concurrent": 32,
        });
    })
    .await;
    let url = server.ws_url(KEY);
    // The attacker: 64 connections a second from one address, for two seconds.
    let attack_url = url.clone();
    let attack = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / 64));
        let mut tries = Vec::new();
        for _ in 0..128 {
            tick.tick().await;
            let url = attack_url.clone();
            let bound = Duration::from_secs(5);
            tries.push(tokio::spawn(async move {
                connect_from(loopback(1), &url, bound).await
            }));
        }
        futures_util::future::join_all(tries).await
    });
    // Thirteen other clients, each from an address of its own, once the attack is under way.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut legitimate = Vec::new();
    for n in 0..13 {
        let url = url.clone();
        let bound = Duration::from_secs(5);
        legitimate.push(tokio::spawn(async move {
            connect_from(loopback(2 + n), &url, bound).await
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let legitimate = futures_util::future::join_all(legitimate).await;
    let refused: Vec<_> = legitimate
        .iter()
        .map(|outcome| outcome.as_ref().unwrap())
        .filter(|outcome| !matches!(outcome, Outcome::Established))
        .collect();
    assert!(
        refused.is_empty(),
        "legitimate clients refused: {refused:?}"
    );
    let attack = attack.await.unwrap();
    let attacker_refused = (attack.iter())
        .filter(|o| {
            matches!(
                o.as_ref().unwrap(),
                Outcome::Closed {
                    code: Some(4100),
                    ..
                }
            )
        })
        .count();
    assert!(
        attacker_refused > 64,
        "the attacker got only its share: {attacker_refused} of 128 refused"
    );
    assert!(hook.max_in_flight() <= 8 + 13, "{}", hook.max_in_flight());
}

const TOKEN: &str = "probe-console-token-0123456789";

/// `GET /console?token=` from `source`, with `forwarded` as `X-Forwarded-For` when given.
async fn open_console(
    server: &TestServer,
    source: IpAddr,
    token: &str,
    forwarded: Option<&str>,
) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(source)
        .timeout(WAIT)
        .build()
        .unwrap();
    let mut request = client.get(server.http_url(&format!("/console?token={token}")));
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn wrong_console_tokens_are_throttled_per_address() {
    let server = TestServer::start_with(|c| c["console"] = json!({"token": TOKEN})).await;
    for _ in 0..10 {
        let wrong = open_console(&server, loopback(1), "not-the-token", None).await;
        assert_eq!(wrong.status(), 401, "a few mistakes are only wrong");
    }
    let throttled = open_console(&server, loopback(1), "not-the-token", None).await;
    assert_eq!(throttled.status(), 429);
    let retry_after: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = serde_json::from_str(&throttled.text().await.unwrap()).unwrap();
    assert_eq!(body["code"], 429);
    let right = open_console(&server, loopback(1), TOKEN, None).await;
    assert_eq!(right.status(), 429, "the address waits out the minute");
    // Another address is not held back by the first.
    let other = open_console(&server, loopback(2), "not-the-token", None).await;
    assert_eq!(other.status(), 401);
    let other = open_console(&server, loopback(2), TOKEN, None).await;
    assert_eq!(other.status(), 303);
    let cookie = other.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("Max-Age=43200"), "{cookie}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_throttle_counts_the_forwarded_client() {
    let server = TestServer::start_with(|c| {
        c["console"] = json!({"token": TOKEN});
        c["rate_limiter"] = json!({"websocket_rate_limit": {"trust_hops": 1}});
    })
    .await;
    // Every request comes from the proxy (127.0.0.1); the client is what the proxy appended.
    // A client forging the left end of the list is still counted by what the proxy wrote.
    for n in 0..10 {
        let forged = format!("203.0.113.{n}, 198.51.100.1");
        let wrong = open_console(&server, loopback(1), "nope", Some(&forged)).await;
        assert_eq!(wrong.status(), 401);
    }
    let forged = "203.0.113.99, 198.51.100.1";
    let throttled = open_console(&server, loopback(1), "nope", Some(forged)).await;
    assert_eq!(throttled.status(), 429);
    let another = open_console(&server, loopback(1), "nope", Some("198.51.100.2")).await;
    assert_eq!(
        another.status(),
        401,
        "another client behind the same proxy"
    );
}

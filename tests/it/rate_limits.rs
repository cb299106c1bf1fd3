//! Sockudo's `rate_limiter` and the per-app quotas on one node: 429 with Sockudo's headers,
//! then room again after the window; upgrades refused before the upgrade; the address behind
//! trusted proxies; health routes never limited.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

async fn limited_server(rate_limiter: Value, app: Value) -> TestServer {
    TestServer::start_with(|c| {
        c["rate_limiter"] = rate_limiter;
        for (key, value) in app.as_object().into_iter().flatten() {
            TestServer::app(c)[key] = value.clone();
        }
    })
    .await
}

/// A signed GET of the app's channels, with `forwarded` as `X-Forwarded-For`.
async fn read_channels(server: &TestServer, forwarded: Option<&str>) -> reqwest::Response {
    let url = Rest::new(server).signed_url("GET", &format!("/apps/{APP_ID}/channels"), "", &[]);
    let mut request = reqwest::Client::new().get(url);
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    request.send().await.unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers()[name].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_rest_api_gets_429_with_headers_then_room_after_the_window() {
    let limits =
        json!({"enabled": true, "api_rate_limit": {"max_requests": 3, "window_seconds": 1}});
    let server = limited_server(limits, json!({})).await;
    for remaining in ["2", "1", "0"] {
        let response = read_channels(&server, None).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit"), "3");
        assert_eq!(header(&response, "x-ratelimit-remaining"), remaining);
    }
    let refused = read_channels(&server, None).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), "1");
    assert_eq!(header(&refused, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&refused, "x-ratelimit-reset"), "1");
    let body: Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
    assert_eq!(body["code"], 429);
    for path in ["/", "/up", "/ready", "/live", &format!("/up/{APP_ID}")] {
        let status = reqwest::get(server.http_url(path)).await.unwrap().status();
        assert_eq!(status, 200, "{path} is never limited");
    }
    assert!(server
        .metrics_text()
        .await
        .contains("herald_rate_limited_total 1"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        read_channels(&server, None).await.status(),
        200,
        "a new window"
    );
}

#[tokio::test]
async fn upgrades_over_the_limit_are_refused_before_the_upgrade() {
    let limits = json!({"enabled": true, "websocket_rate_limit": {"max_requests": 2}});
    let server = limited_server(limits, json!({})).await;
    let _first = server.client().await;
    let _second = server.client().await;
    let refused = tokio_tungstenite::connect_async(server.ws_url(KEY)).await;
    match refused {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            assert!(response.headers().contains_key("retry-after"));
        }
        other => panic!("the third upgrade got through: {other:?}"),
    }
    // The REST API has its own limit (Sockudo's 100 a minute): untouched.
    assert_eq!(read_channels(&server, None).await.status(), 200);
}

#[tokio::test]
async fn behind_trusted_proxies_each_forwarded_client_has_its_own_count() {
    let limits = json!({"enabled": true,
        "api_rate_limit": {"max_requests": 1, "window_seconds": 60, "trust_hops": 1}});
    let server = limited_server(limits, json!({})).await;
    assert_eq!(
        read_channels(&server, Some("9.9.9.9, 198.51.100.1"))
            .await
            .status(),
        200
    );
    let forged = read_channels(&server, Some("8.8.8.8, 198.51.100.1")).await;
    assert_eq!(
        forged.status(),
        429,
        "the left end is the client's to forge"
    );
    assert_eq!(
        read_channels(&server, Some("198.51.100.2")).await.status(),
        200
    );
}

#[tokio::test]
async fn an_apps_quotas_count_events_one_by_one_and_reads() {
    let app = json!({"max_backend_events_per_second": 2, "max_read_requests_per_second": 1});
    let server = limited_server(json!({}), app).await;
    let rest = Rest::new(&server);
    let events = format!("/apps/{APP_ID}/events");
    let batch = format!("/apps/{APP_ID}/batch_events");
    let one = json!({"name": "e", "channel": "c", "data": "x"});
    assert_eq!(rest.post(&events, one.clone()).await.0, 200);
    let two = json!({"batch": [one.clone(), one.clone()]});
    let (status, body) = rest.post(&batch, two).await;
    assert_eq!(
        (status, &body["code"]),
        (429, &json!(429)),
        "1 + 2 events in a second: {body}"
    );
    assert_eq!(read_channels(&server, None).await.status(), 200);
    assert_eq!(read_channels(&server, None).await.status(), 429);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(rest.post(&events, one).await.0, 200);
    assert_eq!(read_channels(&server, None).await.status(), 200);
}

#[tokio::test]
async fn a_quotas_refusal_keeps_its_own_headers_under_the_api_limit() {
    let limits = json!({"enabled": true, "api_rate_limit": {"max_requests": 100}});
    let server = limited_server(limits, json!({"max_read_requests_per_second": 1})).await;
    assert_eq!(read_channels(&server, None).await.status(), 200);
    let refused = read_channels(&server, None).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        header(&refused, "x-ratelimit-limit"),
        "1",
        "the quota's, not the API limit's"
    );
    assert_eq!(header(&refused, "retry-after"), "1");
}

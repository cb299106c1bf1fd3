//! CORS on the REST API: none without a `cors` block; with one, listed origins get the headers
//! (a preflight included), others none, `*` with credentials mirrors the `Origin`; the console,
//! the WebSocket endpoint and the metrics never carry them.

use serde_json::{json, Value};

use crate::support::*;

/// `method path` with `origin`, and the `Access-Control-Allow-Origin` and `-Credentials` it got.
async fn cors_headers(
    server: &TestServer,
    method: &str,
    path: &str,
    origin: &str,
) -> (u16, Option<String>, Option<String>) {
    let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    let method: reqwest::Method = method.parse().unwrap();
    let mut request = client
        .request(method.clone(), server.http_url(path))
        .header("origin", origin);
    if method == reqwest::Method::OPTIONS {
        request = request.header("access-control-request-method", "POST");
    }
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    (
        response.status().as_u16(),
        header("access-control-allow-origin"),
        header("access-control-allow-credentials"),
    )
}

async fn with_cors(cors: Value) -> TestServer {
    TestServer::start_with(|c| c["cors"] = cors).await
}

const EVENTS: &str = "/apps/app-1/events";

#[tokio::test]
async fn without_a_block_no_cors_headers_are_sent() {
    let server = TestServer::start().await;
    let (_, allow, _) = cors_headers(&server, "OPTIONS", EVENTS, "https://app.example").await;
    assert_eq!(allow, None);
    let (_, allow, _) = cors_headers(
        &server,
        "GET",
        "/apps/app-1/channels",
        "https://app.example",
    )
    .await;
    assert_eq!(allow, None);
}

#[tokio::test]
async fn listed_origins_get_the_headers_and_others_do_not() {
    let server = with_cors(
        json!({"origin": ["https://app.example", "*.example.org"], "credentials": false}),
    )
    .await;
    let (status, allow, credentials) =
        cors_headers(&server, "OPTIONS", EVENTS, "https://app.example").await;
    assert_eq!(
        (status, allow.as_deref(), credentials),
        (200, Some("https://app.example"), None)
    );
    let (_, allow, _) = cors_headers(
        &server,
        "GET",
        "/apps/app-1/channels",
        "https://a.example.org",
    )
    .await;
    assert_eq!(
        allow.as_deref(),
        Some("https://a.example.org"),
        "the unsigned GET is 401 but still CORS'd"
    );
    let (_, allow, _) = cors_headers(&server, "OPTIONS", EVENTS, "https://evil.example").await;
    assert_eq!(allow, None);
}

#[tokio::test]
async fn any_origin_with_credentials_mirrors_the_origin_and_other_routes_never_get_headers() {
    // Sockudo's own default block: every origin, with credentials.
    let server = with_cors(json!({"credentials": true, "origin": ["*"]})).await;
    let (_, allow, credentials) =
        cors_headers(&server, "OPTIONS", EVENTS, "https://page.example").await;
    assert_eq!(allow.as_deref(), Some("https://page.example"));
    assert_eq!(credentials.as_deref(), Some("true"));
    for path in ["/console", "/app/key-1", "/up", "/ready"] {
        let (_, allow, _) = cors_headers(&server, "GET", path, "https://page.example").await;
        assert_eq!(allow, None, "{path}");
    }
    let metrics = format!("http://{}/metrics", server.running.metrics_addr.unwrap());
    let response = reqwest::Client::new()
        .get(metrics)
        .header("origin", "https://page.example")
        .send()
        .await
        .unwrap();
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

#[test]
fn a_bad_method_or_header_is_refused_with_its_key() {
    let error =
        herald::config::Config::from_json(r#"{"cors":{"allowed_headers":["ok","bad header"]}}"#)
            .unwrap_err();
    assert_eq!(error.path, "cors.allowed_headers[1]");
}

#[tokio::test]
async fn a_wildcard_with_credentials_mirrors_and_an_empty_origin_list_allows_no_page() {
    // tower-http refuses `*` with credentials (it panics); Herald mirrors the request instead.
    let server =
        with_cors(json!({"origin": ["*"], "methods": ["*"], "allowed_headers": ["*"]})).await;
    let (status, allow, _) = cors_headers(&server, "OPTIONS", EVENTS, "https://page.example").await;
    assert_eq!(
        (status, allow.as_deref()),
        (200, Some("https://page.example"))
    );
    let server = with_cors(json!({"origin": []})).await;
    let (_, allow, _) = cors_headers(&server, "OPTIONS", EVENTS, "https://page.example").await;
    assert_eq!(allow, None);
}

//! REST request signing: signature, timestamp window, body_md5, unknown and disabled apps.

use serde_json::json;

use crate::support::*;

fn events_path() -> String {
    format!("/apps/{APP_ID}/events")
}

fn event() -> serde_json::Value {
    json!({"name": "e", "channels": ["c"], "data": "{}"})
}

#[tokio::test]
async fn correctly_signed_request_succeeds_with_an_empty_object() {
    let server = TestServer::start().await;
    assert_eq!(
        Rest::new(&server).post(&events_path(), event()).await,
        (200, json!({}))
    );
}

#[tokio::test]
async fn wrong_secret_is_401_with_a_json_error() {
    let server = TestServer::start().await;
    let rest = Rest {
        secret: "wrong",
        ..Rest::new(&server)
    };
    let (status, body) = rest.post(&events_path(), event()).await;
    assert_eq!(status, 401);
    assert!(
        body["error"].as_str().unwrap().contains("signature"),
        "{body}"
    );
}

#[tokio::test]
async fn wrong_key_is_401() {
    let server = TestServer::start().await;
    let rest = Rest {
        key: "other-key",
        ..Rest::new(&server)
    };
    assert_eq!(rest.post(&events_path(), event()).await.0, 401);
}

#[tokio::test]
async fn timestamps_outside_600_seconds_are_401() {
    let server = TestServer::start().await;
    let now = Rest::new(&server).timestamp;
    // A few seconds past the bound: the clock may tick between here and the check.
    for timestamp in [now - 605, now + 605] {
        let rest = Rest {
            timestamp,
            ..Rest::new(&server)
        };
        let (status, body) = rest.post(&events_path(), event()).await;
        assert_eq!(status, 401, "{body}");
        assert!(body["error"].as_str().unwrap().contains("auth_timestamp"));
    }
    let rest = Rest {
        timestamp: now - 590,
        ..Rest::new(&server)
    };
    assert_eq!(rest.post(&events_path(), event()).await.0, 200);
}

#[tokio::test]
async fn body_md5_must_match_the_body() {
    let server = TestServer::start().await;
    let rest = Rest::new(&server);
    let signed_body = event().to_string();
    let url = rest.signed_url("POST", &events_path(), &signed_body, &[]);
    let tampered = json!({"name": "evil", "channels": ["c"], "data": "{}"}).to_string();
    let (status, body) = send(reqwest::Client::new().post(url).body(tampered)).await;
    assert_eq!(status, 401);
    assert!(body["error"].as_str().unwrap().contains("body_md5"));
}

#[tokio::test]
async fn body_md5_of_the_empty_body_is_accepted_on_get() {
    // pusher-http-python adds body_md5 to every request, GET included.
    let server = TestServer::start().await;
    let rest = Rest::new(&server);
    let empty_md5 = "d41d8cd98f00b204e9800998ecf8427e";
    let url = rest.signed_url(
        "GET",
        &format!("/apps/{APP_ID}/channels"),
        "",
        &[("body_md5", empty_md5)],
    );
    assert_eq!(
        send(reqwest::Client::new().get(url)).await,
        (200, json!({"channels": {}}))
    );
}

#[tokio::test]
async fn identical_requests_are_not_treated_as_replays() {
    let server = TestServer::start().await;
    let rest = Rest::new(&server);
    let body = event().to_string();
    let url = rest.signed_url("POST", &events_path(), &body, &[]);
    for _ in 0..2 {
        assert_eq!(
            send(reqwest::Client::new().post(&url).body(body.clone()))
                .await
                .0,
            200
        );
    }
}

#[tokio::test]
async fn missing_auth_parameters_are_401() {
    let server = TestServer::start().await;
    let (status, body) = send(
        reqwest::Client::new()
            .post(server.http_url(&events_path()))
            .body(event().to_string()),
    )
    .await;
    assert_eq!(status, 401);
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn unknown_app_is_404() {
    let server = TestServer::start().await;
    let (status, body) = Rest::new(&server).post("/apps/nope/events", event()).await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn disabled_app_is_403() {
    let server = TestServer::start_with(|c| TestServer::app(c)["enabled"] = json!(false)).await;
    assert_eq!(
        Rest::new(&server).post(&events_path(), event()).await.0,
        403
    );
}

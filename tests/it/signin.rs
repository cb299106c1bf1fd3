//! User sign-in, #server-to-user channels and the sign-in timeout.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn signin_succeeds_and_server_to_user_delivery_works() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let reply = client.sign_in("42").await;
    assert_eq!(reply["event"], "pusher:signin_success");
    let user_data: serde_json::Value =
        serde_json::from_str(reply["data"]["user_data"].as_str().unwrap()).unwrap();
    assert_eq!(user_data["id"], "42");
    client.subscribe("#server-to-user-42").await;
    let (status, _) = Rest::new(&server)
        .post(
            &format!("/apps/{APP_ID}/events"),
            json!({"name": "hello", "channels": ["#server-to-user-42"], "data": "hi"}),
        )
        .await;
    assert_eq!(status, 200);
    let got = client.recv().await;
    assert_eq!(
        got,
        json!({"event": "hello", "channel": "#server-to-user-42", "data": "hi"})
    );
}

#[tokio::test]
async fn server_to_user_channel_is_only_for_that_user() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let reply = client
        .subscribe_with(json!({"channel": "#server-to-user-42"}))
        .await;
    assert_eq!(reply["event"], "pusher:subscription_error");
    client.sign_in("7").await;
    let reply = client
        .subscribe_with(json!({"channel": "#server-to-user-42"}))
        .await;
    assert_eq!(reply["event"], "pusher:subscription_error");
    assert_eq!(reply["data"]["type"], "AuthError");
}

#[tokio::test]
async fn bad_signin_signature_closes_with_4009() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let user_data = json!({"id": "42"}).to_string();
    client.send(json!({"event": "pusher:signin", "data": {"auth": format!("{KEY}:{}", "0".repeat(64)), "user_data": user_data}})).await;
    let closed = client.closed().await;
    assert_eq!(closed.code, Some(4009), "{closed:?}");
    assert_eq!(closed.errors[0]["data"]["code"], 4009);
}

/// Laravel's `authenticateUser` signs the model's integer id: it is the id's string form
/// everywhere, the echo included (pusher-js drops a sign-in whose echoed id is not a string).
#[tokio::test]
async fn a_numeric_id_signs_in_as_its_string_form() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client
        .send_signin(json!({"id": 42, "user_info": {"name": "Ada", "score": 1.5}}))
        .await;
    let reply = client.recv().await;
    assert_eq!(reply["event"], "pusher:signin_success", "{reply}");
    let echoed: serde_json::Value =
        serde_json::from_str(reply["data"]["user_data"].as_str().unwrap()).unwrap();
    assert_eq!(
        echoed,
        json!({"id": "42", "user_info": {"name": "Ada", "score": 1.5}})
    );
    client.subscribe("#server-to-user-42").await;
    let (status, _) = Rest::new(&server)
        .post(
            &format!("/apps/{APP_ID}/events"),
            json!({"name": "hello", "channels": ["#server-to-user-42"], "data": "hi"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(client.recv().await["event"], "hello");
    // Neither an empty id nor a boolean is an id.
    for id in [json!(""), json!(true)] {
        let mut other = server.client().await;
        other.send_signin(json!({"id": id})).await;
        assert_eq!(other.closed().await.code, Some(4009), "{id}");
    }
}

#[tokio::test]
async fn apps_requiring_signin_close_silent_sockets_with_4009() {
    let server = TestServer::start_with(|c| {
        TestServer::app(c)["enable_user_authentication"] = json!(true);
        c["user_authentication_timeout"] = json!(1);
    })
    .await;
    let mut signed = server.client().await;
    signed.sign_in("1").await;
    let silent = server.client().await;
    let closed = silent.closed().await;
    assert_eq!(closed.code, Some(4009), "{closed:?}");
    // The signed-in socket is still there.
    signed.send(json!({"event": "pusher:ping"})).await;
    assert_eq!(signed.recv().await["event"], "pusher:pong");
}

#[tokio::test]
async fn presence_without_channel_data_uses_the_signed_in_user() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.sign_in("55").await;
    let auth = format!(
        "{KEY}:{}",
        hmac_hex(SECRET, &format!("{}:presence-me", client.socket_id))
    );
    let reply = client
        .subscribe_with(json!({"auth": auth, "channel": "presence-me"}))
        .await;
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
    assert_eq!(data_of(&reply)["presence"]["ids"], json!(["55"]));
}

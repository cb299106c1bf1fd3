//! Channel queries, presence users and terminating a user's connections.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn channel_list_shows_occupied_channels_filtered_by_prefix() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    a.subscribe("news").await;
    a.join_presence("presence-room", "u1").await;
    let mut b = server.client().await;
    b.join_presence("presence-room", "u2").await;
    let rest = Rest::new(&server);
    let path = format!("/apps/{APP_ID}/channels");
    let (status, all) = rest.get(&path, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(all, json!({"channels": {"news": {}, "presence-room": {}}}));
    let (_, presence) = rest
        .get(
            &path,
            &[
                ("filter_by_prefix", "presence-"),
                ("info", "user_count,subscription_count"),
            ],
        )
        .await;
    assert_eq!(
        presence,
        json!({"channels": {"presence-room": {"user_count": 2, "subscription_count": 2}}})
    );
    let (status, body) = rest.get(&path, &[("info", "user_count")]).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn vacated_channels_disappear_from_the_list() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    a.subscribe("brief").await;
    a.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, body) = Rest::new(&server)
        .get(&format!("/apps/{APP_ID}/channels"), &[])
        .await;
    assert_eq!(body, json!({"channels": {}}));
}

#[tokio::test]
async fn single_channel_reports_occupancy_and_counts() {
    let server = TestServer::start().await;
    let rest = Rest::new(&server);
    let (status, body) = rest
        .get(
            &format!("/apps/{APP_ID}/channels/presence-x"),
            &[("info", "user_count")],
        )
        .await;
    assert_eq!((status, body), (200, json!({"occupied": false})));
    let mut a = server.client().await;
    a.join_presence("presence-x", "u1").await;
    let mut b = server.client().await;
    b.join_presence("presence-x", "u1").await;
    let (_, body) = rest
        .get(
            &format!("/apps/{APP_ID}/channels/presence-x"),
            &[("info", "user_count,subscription_count")],
        )
        .await;
    assert_eq!(
        body,
        json!({"occupied": true, "user_count": 1, "subscription_count": 2})
    );
    let (status, _) = rest
        .get(
            &format!("/apps/{APP_ID}/channels/public-x"),
            &[("info", "user_count")],
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = rest
        .get(&format!("/apps/{APP_ID}/channels/bad%20name"), &[])
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn cache_info_shows_the_last_event() {
    let server = TestServer::start().await;
    let rest = Rest::new(&server);
    let path = format!("/apps/{APP_ID}/channels/cache-c");
    assert_eq!(
        rest.get(&path, &[("info", "cache")]).await.1,
        json!({"occupied": false, "cache": null})
    );
    rest.post(
        &format!("/apps/{APP_ID}/events"),
        json!({"name": "e", "channel": "cache-c", "data": "d"}),
    )
    .await;
    let (_, body) = rest.get(&path, &[("info", "cache")]).await;
    assert_eq!(body["cache"]["data"], "d");
    assert!(body["cache"]["ttl"].as_u64().unwrap() > 0);
    assert_eq!(
        rest.get(
            &format!("/apps/{APP_ID}/channels/plain"),
            &[("info", "cache")]
        )
        .await
        .0,
        400
    );
}

#[tokio::test]
async fn presence_users_are_listed() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    a.join_presence("presence-u", "1").await;
    let mut b = server.client().await;
    b.join_presence("presence-u", "2").await;
    let rest = Rest::new(&server);
    let (status, body) = rest
        .get(&format!("/apps/{APP_ID}/channels/presence-u/users"), &[])
        .await;
    assert_eq!(status, 200);
    let mut ids: Vec<String> = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["1", "2"]);
    assert_eq!(
        rest.get(&format!("/apps/{APP_ID}/channels/public/users"), &[])
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn terminate_connections_closes_only_that_users_signed_in_sockets() {
    let server = TestServer::start().await;
    let mut target1 = server.client().await;
    target1.sign_in("victim").await;
    let mut target2 = server.client().await;
    target2.sign_in("victim").await;
    let mut presence_only = server.client().await;
    presence_only.join_presence("presence-t", "victim").await;
    let mut other = server.client().await;
    other.sign_in("bystander").await;

    let (status, body) = Rest::new(&server)
        .post(
            &format!("/apps/{APP_ID}/users/victim/terminate_connections"),
            json!({}),
        )
        .await;
    assert_eq!((status, body), (200, json!({})));
    for target in [target1, target2] {
        let closed = target.closed().await;
        assert_eq!(closed.code, Some(4009), "{closed:?}");
        assert_eq!(closed.errors[0]["data"]["code"], 4009);
    }
    for survivor in [&mut presence_only, &mut other] {
        survivor.send(json!({"event": "pusher:ping"})).await;
        assert_eq!(survivor.recv().await["event"], "pusher:pong");
    }
}

#[tokio::test]
async fn terminate_connections_without_the_apps_prefix_uses_the_auth_key() {
    // pusher-http-python posts to /users/{id}/terminate_connections.
    let server = TestServer::start().await;
    let mut target = server.client().await;
    target.sign_in("u9").await;
    let (status, _) = Rest::new(&server)
        .post("/users/u9/terminate_connections", json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(target.closed().await.code, Some(4009));
}

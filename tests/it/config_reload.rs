//! Apps change without a restart, on the real binary: SIGHUP (and `--watch-config` seeing the
//! file change) reads `config.json` again; apps added, removed and changed take effect, open
//! sockets of the others stay, and a file that fails validation is refused whole.

use serde_json::{json, Value};

use crate::probe_support::LoggedHerald;
use crate::receiver::Receiver;
use crate::support::*;

/// The base config with a second app, `app-2`.
fn two_apps() -> Value {
    let mut config = base_config();
    let second = json!({"id": "app-2", "key": "key-2", "secret": "secret-2"});
    config["app_manager"]["array"]["apps"]
        .as_array_mut()
        .unwrap()
        .push(second);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_removes_and_changes_apps_while_open_sockets_stay() {
    let receiver = Receiver::start().await;
    let herald = LoggedHerald::start("reload-hup", &two_apps());
    let mut staying = Client::connect(&herald.ws_url(KEY)).await;
    staying.subscribe("news").await;
    let mut removed = Client::connect(&herald.ws_url("key-2")).await;
    removed.subscribe("room").await;

    let mut next = base_config();
    let app = &mut next["app_manager"]["array"]["apps"][0];
    app["secret"] = json!("secret-rotated");
    app["webhooks"] = json!([{"url": receiver.url("/w"), "event_types": ["channel_occupied"]}]);
    next["webhooks"] = json!({"batching": {"enabled": false}});
    let added = json!({"id": "app-3", "key": "key-3", "secret": "secret-3"});
    next["app_manager"]["array"]["apps"]
        .as_array_mut()
        .unwrap()
        .push(added);
    herald.rewrite(&next.to_string());
    herald.signal("HUP");
    herald.wait_for_log("config reloaded (SIGHUP)", 1).await;

    // The removed app's socket closes with 4003; its REST API is gone.
    assert_eq!(removed.closed().await.code, Some(4003));
    assert_eq!(
        trigger_as(&herald, "app-2", ("key-2", "secret-2"), "room").await,
        404
    );
    // The changed app: the old secret no longer signs, the new one does, and the socket
    // that was open before the reload gets the event.
    assert_eq!(
        trigger_as(&herald, APP_ID, (KEY, SECRET), "news").await,
        401
    );
    assert_eq!(
        trigger_as(&herald, APP_ID, (KEY, "secret-rotated"), "news").await,
        200
    );
    assert_eq!(staying.recv_event("news").await["data"], "hello");
    // Its new webhook endpoint gets the events that happen after the reload.
    staying.subscribe("fresh").await;
    let occupied = receiver
        .wait_until(|got| {
            got.iter()
                .flat_map(|r| r.events())
                .any(|e| e["channel"] == "fresh")
        })
        .await;
    assert!(!occupied.is_empty());
    // The added app takes connections and REST calls.
    let mut newcomer = Client::connect(&herald.ws_url("key-3")).await;
    newcomer.subscribe("hello").await;
    assert_eq!(
        trigger_as(&herald, "app-3", ("key-3", "secret-3"), "hello").await,
        200
    );
    assert_eq!(newcomer.recv_event("news").await["data"], "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_fails_validation_is_refused_whole_and_the_old_apps_keep_serving() {
    let herald = LoggedHerald::start("reload-broken", &two_apps());
    let mut open = Client::connect(&herald.ws_url("key-2")).await;
    open.subscribe("room").await;
    // Valid JSON, one bad value: nothing of it applies (app-2 would otherwise be removed).
    let mut broken = base_config();
    broken["app_manager"]["array"]["apps"][0]["max_connections"] = json!("many");
    herald.rewrite(&broken.to_string());
    herald.signal("HUP");
    herald
        .wait_for_log("config reload (SIGHUP) refused", 1)
        .await;
    assert!(herald.log().contains("max_connections"), "{}", herald.log());
    herald.rewrite("{ not json");
    herald.signal("HUP");
    herald
        .wait_for_log("config reload (SIGHUP) refused", 2)
        .await;

    assert_eq!(
        trigger_as(&herald, "app-2", ("key-2", "secret-2"), "room").await,
        200
    );
    assert_eq!(open.recv_event("news").await["data"], "hello");
    Client::connect(&herald.ws_url(KEY))
        .await
        .subscribe("still")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_config_applies_a_changed_file_without_a_signal() {
    let herald = LoggedHerald::start_with_args("reload-watch", &base_config(), &["--watch-config"]);
    let mut disabled = Client::connect(&herald.ws_url(KEY)).await;
    disabled.subscribe("room").await;
    let mut next = two_apps();
    next["app_manager"]["array"]["apps"][0]["enabled"] = json!(false);
    herald.rewrite(&next.to_string());
    herald
        .wait_for_log("config reloaded (the file changed)", 1)
        .await;

    // A disabled app's sockets close with 4003; the added app serves.
    assert_eq!(disabled.closed().await.code, Some(4003));
    let mut added = Client::connect(&herald.ws_url("key-2")).await;
    added.subscribe("room").await;
    assert_eq!(
        trigger_as(&herald, "app-2", ("key-2", "secret-2"), "room").await,
        200
    );
    assert_eq!(added.recv_event("news").await["data"], "hello");
    // Settings other than apps are reported, not applied.
    let mut moved = next.clone();
    moved["activity_timeout"] = json!(45);
    herald.rewrite(&moved.to_string());
    herald
        .wait_for_log("take effect only after a restart", 1)
        .await;
}

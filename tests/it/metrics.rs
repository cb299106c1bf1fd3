//! Per-app metric series: labelled `app_id`, present from start-up, moving with their app only,
//! and adding up to the server-wide series.

use std::time::Duration;

use serde_json::json;

use crate::receiver::Receiver;
use crate::support::*;

/// The value of the sample `series` (name with labels), parsed.
fn sample(text: &str, series: &str) -> f64 {
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap_or_else(|e| panic!("{series}: {e}"))
}

fn of_app(name: &str, app: &str) -> String {
    format!("herald_{name}{{app_id=\"{app}\"}}")
}

/// Waits until the metrics page shows `series` at `value` (a gauge that settles after a close).
async fn settled(server: &TestServer, series: &str, value: f64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = server.metrics_text().await;
        if sample(&text, series) == value || tokio::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn per_app_series_are_labelled_and_move_with_their_app_only() {
    let receiver = Receiver::start().await;
    // The first delivery fails, so the event is retried once before it is delivered.
    receiver.script(&[500]);
    let hook = json!({"url": receiver.url("/h"), "event_types": ["channel_occupied"],
        "retry": {"initial_backoff_ms": 20, "max_backoff_ms": 50, "max_elapsed_time_ms": 5000}});
    let server = TestServer::start_with(|c| {
        TestServer::app(c)["webhooks"] = json!([hook]);
        c["webhooks"] = json!({"grace_period_ms": 0});
        let apps = c["app_manager"]["array"]["apps"].as_array_mut().unwrap();
        apps.push(json!({"id": "quiet", "key": "quiet-key", "secret": "quiet-secret"}));
    })
    .await;

    let before = server.metrics_text().await;
    for app in [APP_ID, "quiet"] {
        for name in [
            "app_connected",
            "app_ws_messages_received_total",
            "app_webhook_events_delivered_total",
        ] {
            assert_eq!(sample(&before, &of_app(name, app)), 0.0, "{name} {app}");
        }
    }
    assert_eq!(
        sample(&before, &of_app("app_webhook_queue_depth", APP_ID)),
        0.0
    );

    let mut client = server.client().await;
    client.subscribe("m").await;
    client.send(json!({"event": "pusher:ping"})).await;
    client.recv().await;
    let (status, _) = Rest::new(&server)
        .post(
            &format!("/apps/{APP_ID}/events"),
            json!({"name": "e", "channel": "m", "data": "x"}),
        )
        .await;
    assert_eq!(status, 200);
    client.recv_event("e").await;
    receiver
        .wait_accepted_events(1, Duration::from_secs(5))
        .await;

    let text = settled(
        &server,
        &of_app("app_webhook_events_delivered_total", APP_ID),
        1.0,
    )
    .await;
    for (name, value) in [
        ("app_connected", 1.0),
        ("app_subscriptions", 1.0),
        ("app_ws_messages_received_total", 2.0),
        ("app_ws_messages_sent_total", 1.0),
        ("app_webhook_events_submitted_total", 1.0),
        ("app_webhook_events_delivered_total", 1.0),
        ("app_webhook_events_retried_total", 1.0),
        ("app_webhook_events_dead_total", 0.0),
        ("app_webhook_events_dropped_total", 0.0),
        ("app_webhook_delivery_latency_seconds_count", 1.0),
    ] {
        assert_eq!(
            sample(&text, &of_app(name, APP_ID)),
            value,
            "{name}\n{text}"
        );
        if name != "app_webhook_delivery_latency_seconds_count" {
            assert_eq!(sample(&text, &of_app(name, "quiet")), 0.0, "{name} quiet");
        }
    }
    // The retry waited at least its back-off, so the event's latency is above zero.
    assert!(
        sample(
            &text,
            &of_app("app_webhook_delivery_latency_seconds_sum", APP_ID)
        ) > 0.0
    );
    // One app is active: the server-wide series equal its own.
    for (total, per_app) in [
        ("herald_connected", "app_connected"),
        (
            "herald_ws_messages_received_total",
            "app_ws_messages_received_total",
        ),
        (
            "herald_ws_messages_sent_total",
            "app_ws_messages_sent_total",
        ),
        (
            "herald_webhook_events_delivered_total",
            "app_webhook_events_delivered_total",
        ),
    ] {
        assert_eq!(
            sample(&text, total),
            sample(&text, &of_app(per_app, APP_ID)),
            "{total}"
        );
    }
    assert!(sample(&text, "herald_http_request_duration_seconds_count") >= 1.0);

    client.disconnect().await;
    let text = settled(&server, &of_app("app_connected", APP_ID), 0.0).await;
    assert_eq!(sample(&text, &of_app("app_connected", APP_ID)), 0.0);
    assert_eq!(sample(&text, &of_app("app_subscriptions", APP_ID)), 0.0);
}

//! The local stage without sockets: recording subscribers and a recording webhook side.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::app::AppChannels;
use super::counts::CountThrottle;
use crate::apps::AppRegistry;
use crate::cluster::recipient::{Recipient, WebhookOut};
use crate::cluster::{ClientEvent, Subscription};
use crate::config::{Config, EventKind};
use crate::engine::{ChannelCache, PresenceMember};
use crate::metrics::Metrics;
use crate::outbound::WireFrame;
use crate::protocol::codes::SocketError;
use crate::protocol::SocketId;
use crate::webhooks::WebhookEvent;

/// A subscriber that records the frames it is sent.
#[derive(Clone, Default)]
struct Recorder {
    stream: Arc<Mutex<Vec<Value>>>,
    gate: Option<Gate>,
}

/// Holds a recorder's `push` while closed, so the thread carrying its line out stays busy.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<GateState>, Condvar)>);

#[derive(Default)]
struct GateState {
    closed: bool,
    held: bool,
}

impl Gate {
    fn set(&self, closed: bool) {
        let (state, changed) = &*self.0;
        state.lock().unwrap().closed = closed;
        changed.notify_all();
    }

    /// Blocks while the gate is closed; says so to [`Gate::wait_held`].
    fn pass(&self) {
        let (state, changed) = &*self.0;
        let mut state = state.lock().unwrap();
        while state.closed {
            state.held = true;
            changed.notify_all();
            state = changed.wait(state).unwrap();
        }
    }

    /// Waits until a push is held at the gate.
    fn wait_held(&self) {
        let (state, changed) = &*self.0;
        let mut state = state.lock().unwrap();
        while !state.held {
            state = changed.wait(state).unwrap();
        }
    }
}

/// The payload of an unmasked server text frame, as JSON.
fn payload(frame: &WireFrame) -> Value {
    let bytes = frame.bytes();
    let (len, start) = match bytes[1] & 0x7f {
        126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
        127 => panic!("no test frame is that large"),
        n => (n as usize, 2),
    };
    serde_json::from_slice(&bytes[start..start + len]).expect("frames are JSON")
}

impl Recipient for Recorder {
    fn push(&self, frame: &WireFrame) -> bool {
        if let Some(gate) = &self.gate {
            gate.pass();
        }
        let frame = payload(frame);
        assert_ne!(
            frame["event"], "boom",
            "a subscriber that panics (a bug in a step)"
        );
        self.stream.lock().unwrap().push(frame);
        true
    }

    fn close(&self, _: SocketError) {}
}

impl Recorder {
    /// Every frame, in the order it was sent.
    fn frames(&self) -> Vec<Value> {
        self.stream.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<String> {
        let name = |f: &Value| f["event"].as_str().unwrap_or_default().to_owned();
        self.frames().iter().map(name).collect()
    }
}

#[derive(Default)]
struct RecordedWebhooks(Arc<Mutex<Vec<WebhookEvent>>>);

impl WebhookOut for RecordedWebhooks {
    fn wants(&self, _: EventKind) -> bool {
        true
    }

    fn submit(&self, event: WebhookEvent) {
        self.0.lock().unwrap().push(event);
    }
}

struct Stage {
    app: Arc<AppChannels<Recorder>>,
    webhooks: Arc<Mutex<Vec<WebhookEvent>>>,
}

fn stage(app_keys: &str) -> Stage {
    let json = format!(
        r#"{{"app_manager":{{"array":{{"apps":[{{"id":"a","key":"k","secret":"s"{app_keys}}}]}}}}}}"#
    );
    let config = Config::from_json(&json).unwrap();
    let apps = AppRegistry::new(&config.apps, None);
    let recorded = RecordedWebhooks::default();
    let webhooks = recorded.0.clone();
    let app = AppChannels::new(
        apps.by_id("a").unwrap().clone(),
        ChannelCache::new(Duration::from_secs(60)),
        CountThrottle::new(Duration::ZERO),
        Some(Box::new(recorded)),
        Metrics::new("t_", []).app("a"),
        (
            tokio_util::task::TaskTracker::new(),
            tokio_util::sync::CancellationToken::new(),
        ),
    );
    Stage {
        app: Arc::new(app),
        webhooks,
    }
}

fn sid(n: u64) -> SocketId {
    format!("{n}.{n}").parse().unwrap()
}

impl Stage {
    fn join(&self, channel: &str, n: u64, socket: &Recorder, user: Option<&str>) {
        let member = user.map(|id| PresenceMember {
            user_id: Arc::from(id),
            user_info: None,
        });
        let request = Subscription {
            channel,
            socket: sid(n),
            outbound: socket,
            member: member.as_ref(),
            cached: channel.starts_with("cache-"),
        };
        let subscribed = self.app.subscribe(request).expect("room for the member");
        // A socket handles nothing before its reply is sent; the tests' sockets wait here.
        if let Some(mut pending) = subscribed.pending {
            wait_done(&mut pending);
        }
    }

    fn webhooks(&self) -> Vec<String> {
        let events = self.webhooks.lock().unwrap();
        events
            .iter()
            .map(|e| {
                let json = serde_json::to_value(e).unwrap();
                let who = json["user_id"].as_str().map(|u| format!(" {u}"));
                format!("{}{}", e.kind().name(), who.unwrap_or_default())
            })
            .collect()
    }
}

#[test]
fn presence_joins_and_leaves_reach_the_others_and_the_webhooks() {
    let stage = stage("");
    let (a, b) = (Recorder::default(), Recorder::default());
    stage.join("presence-r", 1, &a, Some("u1"));
    stage.join("presence-r", 2, &b, Some("u2"));
    // A second socket of u2 is no new member: nobody hears of it.
    let b2 = Recorder::default();
    stage.join("presence-r", 3, &b2, Some("u2"));
    assert!(stage.app.leave("presence-r", sid(3)));
    assert!(stage.app.leave("presence-r", sid(2)));
    assert!(!stage.app.leave("presence-r", sid(2)), "already gone");
    assert!(stage.app.leave("presence-r", sid(1)));

    let first = &b.frames()[0];
    assert_eq!(first["event"], "pusher_internal:subscription_succeeded");
    let data: Value = serde_json::from_str(first["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["presence"]["count"], 2, "{data}");
    assert_eq!(
        a.events(),
        [
            "pusher_internal:subscription_succeeded",
            "pusher_internal:member_added",
            "pusher_internal:member_removed"
        ]
    );
    assert_eq!(b.events(), ["pusher_internal:subscription_succeeded"]);
    assert_eq!(
        stage.webhooks(),
        [
            "channel_occupied",
            "member_added u1",
            "member_added u2",
            "member_removed u2",
            "member_removed u1",
            "channel_vacated"
        ]
    );
}

#[test]
fn subscription_counts_reach_every_subscriber_and_the_webhooks() {
    let stage = stage(r#","enable_subscription_count":true"#);
    let (a, b) = (Recorder::default(), Recorder::default());
    stage.join("room", 1, &a, None);
    stage.join("room", 2, &b, None);
    stage.app.leave("room", sid(2));
    let counts = |r: &Recorder| -> Vec<String> {
        let frames = r.frames();
        let counted = frames
            .iter()
            .filter(|f| f["event"] == "pusher_internal:subscription_count");
        counted
            .map(|f| f["data"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        counts(&a),
        [
            r#"{"subscription_count":1}"#,
            r#"{"subscription_count":2}"#,
            r#"{"subscription_count":1}"#
        ]
    );
    assert_eq!(counts(&b), [r#"{"subscription_count":2}"#]);
    assert_eq!(
        stage.webhooks(),
        [
            "channel_occupied",
            "subscription_count",
            "subscription_count",
            "subscription_count"
        ]
    );
    // Presence channels are not counted: their member count is the count.
    let before = stage.webhooks().len();
    stage.join("presence-x", 3, &Recorder::default(), Some("u"));
    assert_eq!(
        stage.webhooks()[before..],
        ["channel_occupied", "member_added u"]
    );
}

#[test]
fn cache_channels_replay_in_line_with_publishes() {
    let stage = stage("");
    let (a, b) = (Recorder::default(), Recorder::default());
    stage.join("cache-empty", 1, &a, None);
    assert_eq!(
        a.events(),
        [
            "pusher_internal:subscription_succeeded",
            "pusher:cache_miss"
        ]
    );
    let event = r#"{"event":"e","channel":"cache-x","data":"1"}"#;
    stage
        .app
        .publish("cache-x", WireFrame::text(event), None, Some(event.into()));
    stage.join("cache-x", 2, &b, None);
    assert_eq!(b.events(), ["pusher_internal:subscription_succeeded", "e"]);
    assert_eq!(
        stage.webhooks(),
        ["cache_miss", "channel_occupied", "channel_occupied"]
    );
}

#[test]
fn client_events_reach_the_others_only_with_their_webhook() {
    let stage = stage("");
    let (a, b) = (Recorder::default(), Recorder::default());
    stage.join("presence-c", 1, &a, Some("ua"));
    stage.join("presence-c", 2, &b, Some("ub"));
    let data = serde_json::value::RawValue::from_string(r#"{"x":1}"#.into()).unwrap();
    stage.app.client_event(ClientEvent {
        channel: "presence-c",
        name: "client-hi",
        data: &data,
        socket: sid(1),
        user_id: Some("ua"),
    });
    assert!(!a.events().contains(&"client-hi".to_owned()), "not echoed");
    let relayed = b.frames().pop().unwrap();
    assert_eq!(
        (relayed["event"].as_str(), relayed["user_id"].as_str()),
        (Some("client-hi"), Some("ua"))
    );
    let events = stage.webhooks.lock().unwrap();
    match events.last() {
        Some(WebhookEvent::ClientEvent {
            data,
            socket_id,
            user_id,
            ..
        }) => {
            assert_eq!(data, r#"{"x":1}"#);
            assert_eq!(socket_id, "1.1");
            assert_eq!(user_id.as_deref(), Some("ua"));
        }
        other => panic!("expected a client_event webhook, got {other:?}"),
    }
}

/// Replays one socket's stream against the member list its `subscription_succeeded` gave it:
/// a notice of a member it already has (or lacks) means the list was overtaken.
fn check_member_stream(frames: &[Value]) {
    let mut members: Option<HashSet<String>> = None;
    for frame in frames {
        let data = || -> Value { serde_json::from_str(frame["data"].as_str().unwrap()).unwrap() };
        match frame["event"].as_str().unwrap() {
            "pusher_internal:subscription_succeeded" => {
                let ids = data()["presence"]["ids"].clone();
                let ids = ids.as_array().unwrap().iter();
                members = Some(ids.map(|id| id.as_str().unwrap().to_owned()).collect());
            }
            "pusher_internal:member_added" => {
                let list = members.as_mut().expect("a notice before the member list");
                let id = data()["user_id"].as_str().unwrap().to_owned();
                assert!(list.insert(id.clone()), "member_added {id} already listed");
            }
            "pusher_internal:member_removed" => {
                let list = members.as_mut().expect("a notice before the member list");
                let id = data()["user_id"].as_str().unwrap().to_owned();
                assert!(list.remove(&id), "member_removed {id} not listed");
            }
            other => panic!("unexpected {other}"),
        }
    }
}

#[test]
fn concurrent_joins_and_leaves_stay_ordered_per_channel() {
    let stage = Arc::new(stage(""));
    let sockets: Vec<Recorder> = (0..4).map(|_| Recorder::default()).collect();
    let threads: Vec<_> = sockets
        .iter()
        .enumerate()
        .map(|(t, socket)| {
            let (stage, socket) = (stage.clone(), socket.clone());
            std::thread::spawn(move || {
                let user = format!("u{t}");
                for round in 0..300 {
                    let n = (t * 1000 + round) as u64 + 1;
                    stage.join("presence-busy", n, &socket, Some(&user));
                    stage.app.leave("presence-busy", sid(n));
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    for socket in &sockets {
        check_member_stream(&socket.frames());
    }
    // Per channel, and per member of it, openers and closers alternate.
    let mut occupied = false;
    let mut present = HashSet::new();
    for event in stage.webhooks.lock().unwrap().iter() {
        match event {
            WebhookEvent::ChannelOccupied { .. } => {
                assert!(!std::mem::replace(&mut occupied, true))
            }
            WebhookEvent::ChannelVacated { .. } => assert!(std::mem::replace(&mut occupied, false)),
            WebhookEvent::MemberAdded { user_id, .. } => assert!(present.insert(user_id.clone())),
            WebhookEvent::MemberRemoved { user_id, .. } => assert!(present.remove(user_id)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(!occupied && present.is_empty(), "everyone left in the end");
}

/// Waits for a step to be carried out, for at most 5 s.
fn wait_done(pending: &mut crate::cluster::Pending) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !pending.is_done() {
        assert!(
            std::time::Instant::now() < deadline,
            "the step was never carried out"
        );
        std::thread::yield_now();
    }
}

fn event_frame(name: &str, channel: &str) -> WireFrame {
    WireFrame::text(&format!(
        r#"{{"event":"{name}","channel":"{channel}","data":"1"}}"#
    ))
}

/// Sockets 1 (held at a closed gate: whoever carries its line out stays busy) and 2 on
/// `channel`; returns the gate and both.
fn gated_pair(stage: &Stage, channel: &str) -> (Gate, Recorder, Recorder) {
    let gate = Gate::default();
    let held = Recorder {
        gate: Some(gate.clone()),
        ..Recorder::default()
    };
    let other = Recorder::default();
    stage.join(channel, 1, &held, None);
    stage.join(channel, 2, &other, None);
    gate.set(true);
    (gate, held, other)
}

#[test]
fn a_publish_on_a_busy_line_is_pending_until_it_is_delivered() {
    let stage = stage("");
    let (gate, slow, other) = gated_pair(&stage, "cache-a");
    let app = stage.app.clone();
    let runner = std::thread::spawn(move || {
        let pending = app.publish("cache-a", event_frame("e0", "cache-a"), None, None);
        pending.is_none()
    });
    gate.wait_held();
    let cached = r#"{"event":"e1","channel":"cache-a","data":"1"}"#;
    let mut pending = stage
        .app
        .publish(
            "cache-a",
            WireFrame::text(cached),
            None,
            Some(cached.into()),
        )
        .expect("the line is busy on the runner's thread");
    assert!(!pending.is_done());
    assert!(!other.events().contains(&"e1".to_owned()));
    assert!(stage.app.cache.get("cache-a").is_none(), "not stored yet");
    gate.set(false);
    assert!(
        runner.join().unwrap(),
        "the runner carried out its own step"
    );
    wait_done(&mut pending);
    // Done means delivered and stored: a caller that waited reads its own write.
    assert!(other
        .events()
        .ends_with(&["e0".to_owned(), "e1".to_owned()]));
    assert!(slow.events().ends_with(&["e0".to_owned(), "e1".to_owned()]));
    assert!(stage.app.cache.get("cache-a").is_some());
}

#[test]
fn a_step_that_panics_does_not_strand_the_steps_behind_it() {
    let stage = stage("");
    let (gate, _fragile, other) = gated_pair(&stage, "c");
    let app = stage.app.clone();
    let runner = std::thread::spawn(move || {
        let publish = || app.publish("c", event_frame("boom", "c"), Some(sid(2)), None);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(publish)).is_err()
    });
    gate.wait_held();
    let mut pending = stage
        .app
        .publish("c", event_frame("after", "c"), Some(sid(1)), None)
        .expect("the line is busy on the runner's thread");
    gate.set(false);
    assert!(runner.join().unwrap(), "the step panicked");
    wait_done(&mut pending);
    assert!(
        other.events().ends_with(&["after".to_owned()]),
        "the step behind it was carried out"
    );
}

//! `POST /apps/{id}/events` and `POST /apps/{id}/batch_events`.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::auth::Authenticated;
use super::error::ApiError;
use super::info::{channel_attributes, InfoAttributes};
use super::rate_limit::backend_events_quota;
use crate::apps::App;
use crate::cluster::{Pending, PublishOrder};
use crate::outbound::WireFrame;
use crate::protocol::channel::validate_name;
use crate::protocol::{frames, ChannelType, SocketId};
use crate::state::{Shared, SharedState};

#[derive(Deserialize)]
struct EventRequest {
    name: Option<String>,
    data: Option<Box<RawValue>>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    socket_id: Option<String>,
    #[serde(default)]
    info: Option<String>,
}

/// `{"batch": [...]}`, parsed so that an item past `max` stops the parse instead of being
/// built: a huge batch costs no more memory than an allowed one.
struct BatchSeed {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for BatchSeed {
    type Value = Vec<EventRequest>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed {
    type Value = Vec<EventRequest>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(r#"an object {"batch": [...]}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut batch = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "batch" {
                batch = Some(map.next_value_seed(BatchItems { max: self.max })?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        batch.ok_or_else(|| A::Error::missing_field("batch"))
    }
}

struct BatchItems {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for BatchItems {
    type Value = Vec<EventRequest>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BatchItems {
    type Value = Vec<EventRequest>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while items.len() < self.max {
            match seq.next_element()? {
                Some(item) => items.push(item),
                None => return Ok(items),
            }
        }
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(A::Error::custom(TooManyEvents(self.max)));
        }
        Ok(items)
    }
}

/// The message of a batch over the limit, recognised after the parse fails.
struct TooManyEvents(usize);

impl std::fmt::Display for TooManyEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "batch has more than {0} events; at most {0} are allowed",
            self.0
        )
    }
}

fn parse_batch(body: &[u8], max: usize) -> Result<Vec<EventRequest>, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let items = BatchSeed { max }
        .deserialize(&mut deserializer)
        .and_then(|items| deserializer.end().map(|()| items));
    items.map_err(|e| {
        let limit = TooManyEvents(max).to_string();
        if e.to_string().starts_with(&limit) {
            bad(limit)
        } else {
            bad(format!("invalid JSON body: {e}"))
        }
    })
}

/// An event that passed every check, ready to publish.
struct ValidEvent {
    name: String,
    data: String,
    channels: Vec<String>,
    except: Option<SocketId>,
    info: Option<InfoAttributes>,
}

fn bad(why: impl Into<String>) -> ApiError {
    ApiError::BadRequest(why.into())
}

/// Publishers send `data` as a string; anything else is JSON-encoded, as Pusher expects a string.
fn data_string(raw: Option<Box<RawValue>>) -> Result<String, ApiError> {
    let raw = raw.ok_or_else(|| bad("data is required"))?;
    match serde_json::from_str::<String>(raw.get()) {
        Ok(text) => Ok(text),
        Err(_) => Ok(raw.get().to_owned()),
    }
}

fn validate(app: &App, request: EventRequest) -> Result<ValidEvent, ApiError> {
    let name = request
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("name is required"))?;
    if name.len() > app.max_event_name_length {
        return Err(bad(format!(
            "event name is longer than {} characters",
            app.max_event_name_length
        )));
    }
    let channels = match (request.channels, request.channel) {
        (Some(channels), _) if !channels.is_empty() => channels,
        (_, Some(channel)) => vec![channel],
        _ => return Err(bad("channels (or channel) is required")),
    };
    if channels.len() > app.max_event_channels_at_once {
        return Err(bad(format!(
            "{} channels given; at most {} per event",
            channels.len(),
            app.max_event_channels_at_once
        )));
    }
    for channel in &channels {
        validate_name(channel, app.max_channel_name_length).map_err(|e| bad(e.to_string()))?;
    }
    let data = data_string(request.data)?;
    if data.len() > app.max_event_payload {
        return Err(ApiError::PayloadTooLarge(format!(
            "event data is {} bytes, over the limit of {} bytes",
            data.len(),
            app.max_event_payload
        )));
    }
    let except = match request.socket_id.as_deref() {
        None | Some("") => None,
        Some(id) => Some(id.parse::<SocketId>().map_err(|e| bad(e.to_string()))?),
    };
    let info = request
        .info
        .as_deref()
        .map(InfoAttributes::parse_for_trigger)
        .transpose()?;
    Ok(ValidEvent {
        name,
        data,
        channels,
        except,
        info,
    })
}

/// Bytes of frames joined into one write at most: a run stays far below any outbound bound.
const MAX_JOINED_BYTES: usize = 64 * 1024;

/// Publishes the events in order, each carried out before the next starts: a socket on two
/// channels gets them in the order given, and the response goes out only once every event is in
/// its subscribers' queues and caches.
///
/// Usually every line is idle and all is done here, at once. When one is busy on another thread,
/// the rest goes on a task of its own, so it completes even if the client hangs up meanwhile
/// (hyper drops a handler whose client went away).
async fn publish_all(
    shared: &SharedState,
    app: &Arc<App>,
    events: Vec<ValidEvent>,
) -> Result<Vec<ValidEvent>, ApiError> {
    journal(shared, app, &events);
    // A request of several items keeps its order on every node (see `PublishOrder`).
    let items: usize = events.iter().map(|e| e.channels.len()).sum();
    let mut order = (items > 1).then(PublishOrder::new);
    let start = Cursor::default();
    let Some(mut waiting) = publish_from(shared, app, &events, start, &mut order) else {
        return Ok(events);
    };
    let (shared, app) = (shared.clone(), app.clone());
    let task = tokio::spawn(async move {
        loop {
            let (mut pending, next) = waiting;
            pending.done().await;
            match publish_from(&shared, &app, &events, next, &mut order) {
                Some(more) => waiting = more,
                None => return events,
            }
        }
    });
    task.await.map_err(|error| {
        tracing::error!(%error, "publishing REST events failed");
        ApiError::Internal("the events could not be published".into())
    })
}

/// The next event, and channel of it, to publish.
#[derive(Clone, Copy, Default)]
struct Cursor {
    event: usize,
    channel: usize,
}

/// Publishes from `from` on, until all are published (`None`) or one must be waited for: then
/// its `Pending` and where to go on once it is done.
///
/// A run of consecutive events for the same channel (and the same excluded socket) reaches each
/// subscriber in one write instead of one write per event; a run ends with its publish, so a
/// wait never splits one.
fn publish_from(
    shared: &Shared,
    app: &App,
    events: &[ValidEvent],
    from: Cursor,
    order: &mut Option<PublishOrder>,
) -> Option<(Pending, Cursor)> {
    let mut run: Vec<WireFrame> = Vec::new();
    let mut run_bytes = 0;
    for (i, event) in events.iter().enumerate().skip(from.event) {
        let first_channel = if i == from.event { from.channel } else { 0 };
        for (j, channel) in event.channels.iter().enumerate().skip(first_channel) {
            let text = frames::channel_event(&event.name, channel, &event.data);
            let frame = WireFrame::event(&text, app.compress_above);
            run_bytes += frame.len();
            run.push(frame);
            let next = events.get(i + 1);
            let continues = event.channels.len() == 1
                && run_bytes < MAX_JOINED_BYTES
                && next.is_some_and(|n| n.channels == event.channels && n.except == event.except);
            if continues {
                continue;
            }
            // The cluster stage keeps it in line with joins: a socket joining meanwhile is
            // replayed it or sent it, never both.
            let cached = ChannelType::of(channel).cached;
            let cache = cached.then(|| Arc::from(text));
            let frame = match run.len() {
                1 => run.pop().expect("one frame"),
                _ => WireFrame::joined(&std::mem::take(&mut run)),
            };
            run_bytes = 0;
            let pending = (shared.cluster()).publish(
                app,
                channel,
                frame,
                event.except,
                cache,
                order.as_mut(),
            );
            let last = next.is_none() && j + 1 == event.channels.len();
            // The last event of a request on a plain channel needs no wait: nothing of this
            // request can overtake it, and nothing reads it back.
            // Except an event handed to Redis: a trigger sent after this answer must not reach
            // Redis first.
            let skip = |pending: &Pending| last && !cached && !pending.is_publish();
            if let Some(pending) = pending.filter(|p| !skip(p)) {
                let next = Cursor {
                    event: i,
                    channel: j + 1,
                };
                return Some((pending, next));
            }
        }
    }
    None
}

async fn info_for(
    shared: &Shared,
    app: &App,
    event: &ValidEvent,
) -> Result<Map<String, Value>, ApiError> {
    let mut channels = Map::new();
    if let Some(info) = &event.info {
        for channel in &event.channels {
            let summary = shared.cluster().channel(app, channel).await?;
            channels.insert(
                channel.clone(),
                Value::Object(channel_attributes(channel, summary.as_ref(), info)),
            );
        }
    }
    Ok(channels)
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

/// Publishes one event given as a REST trigger body (the console's send form).
pub(in crate::http) async fn publish_request(
    shared: &SharedState,
    app: &Arc<App>,
    body: &[u8],
) -> Result<(), ApiError> {
    let event = validate(app, parse_body(body)?)?;
    publish_all(shared, app, vec![event]).await.map(drop)
}

/// One journal entry per event (never per subscriber).
fn journal(shared: &Shared, app: &App, events: &[ValidEvent]) {
    let journal = shared.metrics().journal(&app.id);
    for event in events {
        let channel = (event.channels.len() == 1).then(|| event.channels[0].as_str());
        journal.record("api_event", channel, None, || {
            json!({
                "event": event.name,
                "channels": event.channels,
                "data": crate::journal::shown_data(&event.data),
                "socket_id_excluded": event.except.map(|s| s.to_string()),
            })
        });
    }
}

/// Triggers one event on one or more channels.
pub async fn trigger(
    State(shared): State<SharedState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let app: Arc<App> = auth.app;
    let event = validate(&app, parse_body(&auth.body)?)?;
    backend_events_quota(&shared, &app, 1).await?;
    let event = publish_all(&shared, &app, vec![event]).await?.remove(0);
    if event.info.is_some() {
        Ok(Json(
            json!({ "channels": info_for(&shared, &app, &event).await? }),
        ))
    } else {
        Ok(Json(json!({})))
    }
}

/// Triggers up to `max_event_batch_size` events; all are validated before any is published.
pub async fn batch(
    State(shared): State<SharedState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let app = auth.app;
    let batch = parse_batch(&auth.body, app.max_event_batch_size)?;
    let events = batch
        .into_iter()
        .enumerate()
        .map(|(i, item)| validate(&app, item).map_err(|e| with_index(i, e)))
        .collect::<Result<Vec<_>, _>>()?;
    // Each item counts, as Sockudo counts them.
    backend_events_quota(&shared, &app, events.len()).await?;
    let events = publish_all(&shared, &app, events).await?;
    if events.iter().all(|e| e.info.is_none()) {
        return Ok(Json(json!({})));
    }
    let mut results = Vec::with_capacity(events.len());
    for event in &events {
        // Each batch item has one channel; report that channel's attributes.
        let attributes = info_for(&shared, &app, event)
            .await?
            .into_iter()
            .next()
            .map(|(_, v)| v);
        results.push(attributes.unwrap_or_else(|| json!({})));
    }
    Ok(Json(json!({ "batch": results })))
}

fn with_index(index: usize, error: ApiError) -> ApiError {
    match error {
        ApiError::BadRequest(why) => ApiError::BadRequest(format!("batch[{index}]: {why}")),
        ApiError::PayloadTooLarge(why) => {
            ApiError::PayloadTooLarge(format!("batch[{index}]: {why}"))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_over_the_limit_stops_the_parse() {
        let items = (0..50).map(|i| format!(r#"{{"name":"e","channel":"c","data":"{i}"}}"#));
        let body = format!(r#"{{"batch":[{}]}}"#, items.collect::<Vec<_>>().join(","));
        assert_eq!(parse_batch(body.as_bytes(), 50).unwrap().len(), 50);
        let error = parse_batch(body.as_bytes(), 10).err().unwrap();
        assert_eq!(
            error.to_string(),
            "batch has more than 10 events; at most 10 are allowed"
        );
        assert!(parse_batch(br#"{"other":1}"#, 10).is_err());
        assert!(parse_batch(br#"{"batch":[]} x"#, 10).is_err());
    }
}

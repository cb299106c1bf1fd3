//! The console's JSON API and its live stream: the overview, an app's channels and presence
//! members, sending an event, and the app's journal as server-sent events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::stream::{self, Stream};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

use crate::apps::App;
use crate::cluster::figures::{self, NodeFigures};
use crate::cluster::Unavailable;
use crate::http::ApiError;
use crate::protocol::channel::validate_name;
use crate::protocol::ChannelType;
use crate::state::SharedState;

fn app_of(shared: &SharedState, app_id: &str) -> Result<Arc<App>, ApiError> {
    shared
        .apps()
        .by_id(app_id)
        .ok_or_else(|| ApiError::UnknownApp(app_id.to_owned()))
}

/// One app's figures: the sums over `nodes`, and the channels of the whole cluster (not asked
/// when the shared state was found unreachable: each query would wait out its bound again).
async fn app_overview(
    shared: &SharedState,
    app: &App,
    nodes: &[NodeFigures],
    reach: bool,
) -> Value {
    let total = figures::app_total(nodes, &app.id);
    let channels = if reach {
        shared
            .cluster()
            .channels(app, "")
            .await
            .ok()
            .map(|c| c.len())
    } else {
        None
    };
    json!({
        "id": app.id,
        "key": app.key,
        "enabled": app.enabled,
        "figures": total.figures,
        "channels": channels,
        "webhook_queue": total.webhook_queue,
        "decision_hooks": app.decision_hooks.as_ref().map(|h| h.events.iter().map(|k| k.as_str()).collect::<Vec<_>>()),
    })
}

/// `GET /console/api/overview`: every live node's figures (`nodes`), and per app their sums.
/// When Redis cannot be read, this node's own figures alone, with `cluster_unavailable` set.
/// In a cluster, `redis` tells which primaries this node uses (`host:port`, no credentials),
/// those whose shard it serves locally now (`shards_out`), the failovers it followed, and its pub/sub connection's reconnects and last sign of life.
pub async fn overview(State(shared): State<SharedState>) -> Json<Value> {
    let cluster = shared.cluster();
    let (nodes, reach) = match cluster.node_figures().await {
        Ok(nodes) => (nodes, true),
        Err(Unavailable) => (vec![cluster.own_figures()], false),
    };
    let mut apps = Vec::new();
    for app in shared.apps().snapshot().iter() {
        apps.push(app_overview(&shared, app, &nodes, reach).await);
    }
    // This node's connections to Redis, in a cluster.
    let redis = cluster.node_name().map(|_| {
        let (metrics, link) = (shared.metrics(), shared.metrics().redis_link());
        json!({
            "primaries": link.primaries(),
            "shards_out": link.shards_out(),
            "failovers": metrics.redis_failovers(),
            "pubsub_reconnects": link.reconnects("pubsub"),
            "pubsub_heard_seconds_ago": link.age("pubsub"),
        })
    });
    Json(json!({
        "node": cluster.node_name(),
        "time_ms": crate::journal::unix_millis(),
        "cluster_unavailable": !reach,
        "redis": redis,
        "nodes": nodes,
        "apps": apps,
    }))
}

/// `GET /console/api/apps/{app_id}/channels`: occupied channels with their counts.
pub async fn channels(
    State(shared): State<SharedState>,
    Path(app_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let app = app_of(&shared, &app_id)?;
    let mut list = Vec::new();
    for summary in shared.cluster().channels(&app, "").await? {
        list.push(json!({
            "name": &*summary.name,
            "subscription_count": summary.subscription_count,
            "user_count": summary.user_count,
        }));
    }
    Ok(Json(json!({ "channels": list })))
}

/// `GET /console/api/apps/{app_id}/channels/{channel}/users`: a presence channel's members.
pub async fn users(
    State(shared): State<SharedState>,
    Path((app_id, channel)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let app = app_of(&shared, &app_id)?;
    validate_name(&channel, app.max_channel_name_length)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if !ChannelType::of(&channel).is_presence() {
        return Err(ApiError::BadRequest(
            "only presence channels have members".into(),
        ));
    }
    let users = shared.cluster().users(&app, &channel).await?;
    let users: Vec<&str> = users.iter().map(|id| &**id).collect();
    Ok(Json(json!({ "users": users })))
}

/// `POST /console/api/apps/{app_id}/events`: `{"channel", "name", "data"}`, published as the
/// REST API would.
pub async fn send(
    State(shared): State<SharedState>,
    Path(app_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let app = app_of(&shared, &app_id)?;
    crate::http::events::publish_request(&shared, &app, &body).await?;
    Ok(Json(json!({})))
}

/// `GET /console/api/apps/{app_id}/stream`: the recent entries, then the live ones.
pub async fn stream(
    State(shared): State<SharedState>,
    Path(app_id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let app = app_of(&shared, &app_id)?;
    let (recent, feed) = shared.metrics().journal(&app.id).follow();
    let shutdown = shared.shutdown().clone();
    let entries = stream::unfold(
        (VecDeque::from(recent), feed, shutdown),
        |(mut recent, mut feed, shutdown)| async move {
            let entry = match recent.pop_front() {
                Some(entry) => entry,
                None => next_live(&mut feed, &shutdown).await?,
            };
            Some((Ok(Event::default().data(&*entry)), (recent, feed, shutdown)))
        },
    );
    Ok(Sse::new(entries).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The next live entry; a viewer that fell behind is told how many it lost. `None` ends the
/// stream (shutdown).
async fn next_live(
    feed: &mut Receiver<Arc<str>>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<Arc<str>> {
    let next = tokio::select! {
        next = feed.recv() => next,
        _ = shutdown.cancelled() => return None,
    };
    match next {
        Ok(entry) => Some(entry),
        Err(RecvError::Lagged(lost)) => {
            let notice = json!({"kind": "dropped", "detail": {"count": lost}});
            Some(notice.to_string().into())
        }
        Err(RecvError::Closed) => None,
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::journal::{AppJournal, NoDetail, FEED};

    #[tokio::test]
    async fn a_viewer_that_falls_behind_is_told_how_many_entries_it_lost() {
        let journal = AppJournal::new(true);
        let (_, mut feed) = journal.follow();
        for i in 0..FEED + 10 {
            journal.record("test", Some(&i.to_string()), None, || NoDetail {});
        }
        let shutdown = CancellationToken::new();
        let notice: Value =
            serde_json::from_str(&next_live(&mut feed, &shutdown).await.unwrap()).unwrap();
        assert_eq!(notice, json!({"kind": "dropped", "detail": {"count": 10}}));
        let next: Value =
            serde_json::from_str(&next_live(&mut feed, &shutdown).await.unwrap()).unwrap();
        assert_eq!(
            next["channel"], "10",
            "the oldest entry still in the feed follows"
        );
        shutdown.cancel();
        assert!(next_live(&mut AppJournal::new(true).follow().1, &shutdown)
            .await
            .is_none());
    }
}

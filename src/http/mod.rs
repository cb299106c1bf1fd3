//! The axum routers: WebSocket upgrade at `/app/{key}`, the REST API at `/apps/{id}/...`,
//! health checks, the debug console at `/console`, and `/metrics` on its own listener.

mod auth;
mod channels;
mod client_address;
mod console;
mod error;
mod events;
mod info;
mod users;
mod ws;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use auth::verify_query;
pub use error::ApiError;

use crate::protocol::codes::SocketError;
use crate::state::SharedState;
use crate::transport::Handshake;

/// The main router: WebSocket, REST API and health.
pub fn router(shared: SharedState) -> Router {
    let api = Router::new()
        .route("/apps/{app_id}/events", post(events::trigger))
        .route("/apps/{app_id}/batch_events", post(events::batch))
        .route("/apps/{app_id}/channels", get(channels::list))
        .route("/apps/{app_id}/channels/{channel}", get(channels::show))
        .route(
            "/apps/{app_id}/channels/{channel}/users",
            get(channels::users),
        )
        .route(
            "/apps/{app_id}/users/{user_id}/terminate_connections",
            post(users::terminate_connections),
        )
        .route(
            "/users/{user_id}/terminate_connections",
            post(users::terminate_connections),
        )
        .layer(middleware::from_fn_with_state(shared.clone(), count_status));
    Router::new()
        .route("/app/{key}", get(ws::connect))
        .route("/", get(health))
        .route("/up", get(health))
        .route("/up/{app_id}", get(app_health))
        .merge(api)
        .merge(console::router(shared.clone()))
        .fallback(fallback)
        .layer(middleware::from_fn(error::json_errors))
        .with_state(shared)
}

/// The metrics router, served on the metrics port.
pub fn metrics_router(shared: SharedState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|request: Request| async move {
            ApiError::NotFound(request.uri().path().to_owned()).into_response()
        })
        .layer(middleware::from_fn(error::json_errors))
        .with_state(shared)
}

async fn count_status(State(shared): State<SharedState>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    shared
        .metrics()
        .rest_request(response.status().as_u16(), started.elapsed());
    response
}

async fn health() -> &'static str {
    "OK"
}

/// `{"status": "ok", "webhooks": {...}}`: a degraded webhook queue shows here, never as a
/// non-200 status, so a load balancer does not drain a node for it.
async fn app_health(State(shared): State<SharedState>, Path(app_id): Path<String>) -> Response {
    match shared.apps().by_id(&app_id) {
        Some(app) if app.enabled => {
            let webhooks = shared.cluster().webhook_health(&app_id).map(|health| {
                serde_json::json!({
                    "degraded": health.degraded,
                    "queued_events": health.queue.events,
                    "queued_bytes": health.queue.bytes,
                    "oldest_undelivered_ms": health.queue.oldest_age.map_or(0, |age| age.as_millis() as u64),
                    "dropped_events": health.queue.dropped,
                    "suppressed_events": health.queue.suppressed,
                })
            });
            axum::Json(serde_json::json!({"status": "ok", "webhooks": webhooks})).into_response()
        }
        Some(_) => ApiError::AppDisabled.into_response(),
        None => ApiError::UnknownApp(app_id).into_response(),
    }
}

async fn metrics(State(shared): State<SharedState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        shared.metrics().render(),
    )
}

/// Unknown paths: a WebSocket upgrade is accepted and closed with 4005; anything else is a 404.
async fn fallback(State(shared): State<SharedState>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    if ws::is_upgrade(&request) {
        ws::upgrade(
            shared,
            request,
            Handshake::Refused(SocketError::PathNotFound(path)),
        )
    } else {
        ApiError::NotFound(path).into_response()
    }
}

//! Health and readiness: `/up`, `/up/{app_id}`, `/ready` and `/live`, and the refusal of state
//! changes while the server drains (after SIGTERM or SIGINT, before its sockets close).
//!
//! While draining, `/ready`, `/up` and `/up/{app_id}` answer 503 (`/up` with Sockudo's
//! `DRAINING` body and `X-Health-Check` header), so a load balancer stops sending new clients;
//! `/live` stays 200, so an orchestrator does not kill the process before it drained.

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::apps::Lookup;
use crate::state::SharedState;

/// 503 `DRAINING`, as Sockudo answers a health check once shutdown began.
fn draining() -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, "DRAINING").into_response();
    (response.headers_mut()).insert("x-health-check", HeaderValue::from_static("DRAINING"));
    response
}

/// `GET /up` (and `GET /`): `OK` while serving.
pub async fn up(State(shared): State<SharedState>) -> Response {
    if shared.is_draining() {
        return draining();
    }
    "OK".into_response()
}

/// `GET /ready`: 200 while serving, 503 from the shutdown signal on.
pub async fn ready(State(shared): State<SharedState>) -> Response {
    up(State(shared)).await
}

/// `GET /live`: 200 as long as the process answers at all, draining included.
pub async fn live() -> &'static str {
    "OK"
}

/// `{"status": "ok", "webhooks": {...}}`: a degraded webhook queue shows here, never as a
/// non-200 status, so a load balancer does not drain a node for it.
pub async fn app_up(State(shared): State<SharedState>, Path(app_id): Path<String>) -> Response {
    if shared.is_draining() {
        return draining();
    }
    match shared.app_by_id(&app_id).await {
        Lookup::Found(app) if app.enabled => {
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
        Lookup::Found(_) => ApiError::AppDisabled.into_response(),
        Lookup::Unknown => ApiError::UnknownApp(app_id).into_response(),
        Lookup::Unavailable => ApiError::Unavailable.into_response(),
    }
}

/// Refuses a state-changing request (a trigger, a batch, a termination) while draining: 503
/// JSON with `Retry-After`.
pub async fn refuse_while_draining(
    State(shared): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    if shared.is_draining() {
        return ApiError::Draining.into_response();
    }
    next.run(request).await
}

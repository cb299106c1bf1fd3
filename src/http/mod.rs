//! The axum routers: WebSocket upgrade at `/app/{key}`, the REST API at `/apps/{id}/...`,
//! health checks, the debug console at `/console`, and `/metrics` on its own listener.

mod auth;
mod channels;
mod client_address;
mod console;
mod error;
mod events;
mod health;
mod info;
mod rate_limit;
mod redirect;
mod users;
mod ws;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use auth::verify_query;
pub use error::ApiError;
pub use redirect::redirect_router;

use crate::protocol::codes::SocketError;
use crate::state::SharedState;
use crate::transport::Handshake;

/// The main router: WebSocket, REST API and health.
pub fn router(shared: SharedState) -> Router {
    // A draining server refuses what changes state, so a client retries on another node.
    let writes = Router::new()
        .route("/apps/{app_id}/events", post(events::trigger))
        .route("/apps/{app_id}/batch_events", post(events::batch))
        .route(
            "/apps/{app_id}/users/{user_id}/terminate_connections",
            post(users::terminate_connections),
        )
        .route(
            "/users/{user_id}/terminate_connections",
            post(users::terminate_connections),
        )
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            health::refuse_while_draining,
        ));
    let api = Router::new()
        .route("/apps/{app_id}/channels", get(channels::list))
        .route("/apps/{app_id}/channels/{channel}", get(channels::show))
        .route(
            "/apps/{app_id}/channels/{channel}/users",
            get(channels::users),
        )
        .route("/apps/{app_id}/users/{user_id}", get(users::status))
        .merge(writes)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            rate_limit::limit_api,
        ))
        .layer(middleware::from_fn_with_state(shared.clone(), count_status));
    // CORS covers the REST API only: never the console, the metrics or the WebSocket.
    let api = match &shared.config().cors {
        Some(cors) => api.layer(cors_layer(cors)),
        None => api,
    };
    Router::new()
        .route("/app/{key}", get(ws::connect))
        .route("/", get(health::up))
        .route("/up", get(health::up))
        .route("/up/{app_id}", get(health::app_up))
        .route("/ready", get(health::ready))
        .route("/live", get(health::live))
        .merge(api)
        .merge(console::router(shared.clone()))
        .fallback(fallback)
        .layer(middleware::from_fn(error::json_errors))
        .with_state(shared)
}

/// The CORS layer of the `cors` block: `*` with credentials mirrors the request's `Origin`.
fn cors_layer(cors: &crate::config::CorsConfig) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};
    // A literal `*` with credentials is refused by browsers (and makes tower-http panic): with
    // credentials, `*` mirrors what the request asks for.
    let mirror = cors.credentials;
    let methods = match cors.methods.iter().any(|m| m.as_str() == "*") {
        true if mirror => AllowMethods::mirror_request(),
        true => AllowMethods::any(),
        false => AllowMethods::list(cors.methods.clone()),
    };
    let headers = match cors.allowed_headers.iter().any(|h| h.as_str() == "*") {
        true if mirror => AllowHeaders::mirror_request(),
        true => AllowHeaders::any(),
        false => AllowHeaders::list(cors.allowed_headers.clone()),
    };
    let origins = cors.origins.clone();
    let allow = match (cors.any_origin, mirror) {
        (true, true) => AllowOrigin::mirror_request(),
        (true, false) => AllowOrigin::any(),
        // An empty list allows no page (unlike `allowed_origins`, where it allows any).
        (false, _) => AllowOrigin::predicate(move |origin, _| {
            !origins.is_empty() && origin.to_str().is_ok_and(|o| origins.allows(Some(o)))
        }),
    };
    CorsLayer::new()
        .allow_methods(methods)
        .allow_headers(headers)
        .allow_credentials(cors.credentials)
        .allow_origin(allow)
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

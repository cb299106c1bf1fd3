//! The debug console at `/console`: a page (built into the binary) that shows each app's
//! figures, channels and live event log, and sends events. Every route is behind the console
//! token (see `gate`).

mod api;
mod gate;

use axum::http::{header, HeaderValue};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::state::SharedState;

/// What the page may load and run: its own script and style only, nothing inline, no frames.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn not_found(request: axum::extract::Request) -> Response {
    crate::http::ApiError::NotFound(request.uri().path().to_owned()).into_response()
}

/// The console's routes, every one behind the token check.
pub fn router(shared: SharedState) -> Router<SharedState> {
    Router::new()
        .route("/console", get(page))
        .route("/console/console.js", get(script))
        .route("/console/console.css", get(style))
        .route("/console/api/overview", get(api::overview))
        .route("/console/api/apps/{app_id}/channels", get(api::channels))
        .route(
            "/console/api/apps/{app_id}/channels/{channel}/users",
            get(api::users),
        )
        .route("/console/api/apps/{app_id}/events", post(api::send))
        .route("/console/api/apps/{app_id}/stream", get(api::stream))
        .route("/console/{*rest}", get(not_found).post(not_found))
        .layer(middleware::from_fn_with_state(shared, gate::guard))
}

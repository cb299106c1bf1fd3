//! Rate limits (`rate_limiter`) and per-app quotas (`max_backend_events_per_second`,
//! `max_read_requests_per_second`) at the HTTP edge: a REST request or a WebSocket upgrade
//! over its limit gets 429 with `Retry-After` and Sockudo's `X-RateLimit-*` headers. In a
//! cluster the windows are counted in Redis for every node together; a node that cannot reach
//! Redis counts in its own memory meanwhile, logs it and counts it in a metric.
//!
//! Only the REST API and the `/app/{key}` upgrade are limited: never `/`, `/up`, `/ready`,
//! `/live`, `/metrics` or `/console`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::client_address::{client_address, peer_of};
use super::ApiError;
use crate::apps::App;
use crate::cluster::WindowKey;
use crate::config::RateLimit;
use crate::journal::unix_millis;
use crate::limits::{address_key, WindowCounts, WindowDecision};
use crate::state::{Shared, SharedState};

/// When a fallback to local counting was last logged (ms since the epoch).
static LAST_FALLBACK_LOG: AtomicU64 = AtomicU64::new(0);

/// The decision of one window, counted for the cluster when there is one.
async fn decide<K: std::hash::Hash + Eq + Clone>(
    shared: &Shared,
    key: WindowKey<'_>,
    local: (&WindowCounts<K>, K),
    window: Duration,
    limit: u32,
    amount: u32,
) -> WindowDecision {
    match shared.cluster().hit_window(&key, window, amount).await {
        Ok(Some((count, resets_in))) => return WindowDecision::of(count, limit, resets_in),
        Ok(None) => {}
        Err(_) => {
            shared.metrics().rate_limit_local_fallback();
            let now = unix_millis();
            let last = LAST_FALLBACK_LOG.swap(now, Ordering::Relaxed);
            if now.saturating_sub(last) >= 10_000 {
                tracing::warn!("Redis unreachable: rate limits and quotas are counted on this node alone meanwhile (logged at most every 10 s)");
            }
        }
    }
    let (counts, local_key) = local;
    counts.hit(&local_key, amount, limit, Instant::now())
}

/// `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds until the window ends).
fn add_headers(headers: &mut HeaderMap, decision: &WindowDecision) {
    let reset = decision.resets_in.as_millis().div_ceil(1000) as u64;
    let figures = [
        ("x-ratelimit-limit", u64::from(decision.limit)),
        ("x-ratelimit-remaining", u64::from(decision.remaining)),
        ("x-ratelimit-reset", reset),
    ];
    for (name, value) in figures {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}

/// 429 JSON with `Retry-After` and the `X-RateLimit-*` headers.
fn refused(shared: &Shared, decision: &WindowDecision, message: &str) -> ApiError {
    shared.metrics().rate_limited();
    ApiError::TooManyRequests {
        message: message.to_owned(),
        retry_after: decision.resets_in,
        limit: Some(decision.limit),
    }
}

/// The client address a limit with `trust_hops` counts `request` under.
fn address(request: &Request, limit: &RateLimit) -> IpAddr {
    let peer = peer_of(request).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    address_key(client_address(peer, request.headers(), limit.trust_hops))
}

/// Middleware of the REST API: `rate_limiter.api_rate_limit` per client address.
pub async fn limit_api(
    State(shared): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(limit) = shared.config().rate_limiter.as_ref().map(|l| l.api) else {
        return next.run(request).await;
    };
    let address = address(&request, &limit);
    let key = WindowKey::Address {
        limit: "api",
        address,
    };
    let local = (&shared.local_windows().api, address);
    let decision = decide(&shared, key, local, limit.window, limit.max, 1).await;
    if !decision.allowed {
        let message = "too many requests from this address; retry later";
        return refused(&shared, &decision, message).into_response();
    }
    let mut response = next.run(request).await;
    // A quota's refusal carries its own window's figures.
    if !response.headers().contains_key("x-ratelimit-limit") {
        add_headers(response.headers_mut(), &decision);
    }
    response
}

/// The limit a WebSocket upgrade of `request` is counted against, with its client address
/// (read before any await: a request is not `Sync`).
pub fn upgrade_limit(shared: &Shared, request: &Request) -> Option<(RateLimit, IpAddr)> {
    let limit = shared.config().rate_limiter.as_ref()?.websocket;
    Some((limit, address(request, &limit)))
}

/// The refusal of a WebSocket upgrade over `rate_limiter.websocket_rate_limit`, if it is over.
pub async fn limit_upgrade(
    shared: &Shared,
    (limit, address): (RateLimit, IpAddr),
) -> Option<Response> {
    let key = WindowKey::Address {
        limit: "ws",
        address,
    };
    let local = (&shared.local_windows().websocket, address);
    let decision = decide(shared, key, local, limit.window, limit.max, 1).await;
    let message = "too many connections from this address; retry later";
    (!decision.allowed).then(|| refused(shared, &decision, message).into_response())
}

/// Counts `events` REST-published events against the app's `max_backend_events_per_second`.
pub async fn backend_events_quota(
    shared: &Shared,
    app: &App,
    events: usize,
) -> Result<(), ApiError> {
    let Some(limit) = app.max_backend_events_per_second else {
        return Ok(());
    };
    let amount = u32::try_from(events).unwrap_or(u32::MAX);
    quota(
        shared,
        app,
        "events",
        &shared.local_windows().events,
        limit,
        amount,
    )
    .await
}

/// Counts a REST read against the app's `max_read_requests_per_second`.
pub async fn read_quota(shared: &Shared, app: &App) -> Result<(), ApiError> {
    let Some(limit) = app.max_read_requests_per_second else {
        return Ok(());
    };
    quota(
        shared,
        app,
        "reads",
        &shared.local_windows().reads,
        limit,
        1,
    )
    .await
}

async fn quota(
    shared: &Shared,
    app: &App,
    quota: &'static str,
    local: &WindowCounts<String>,
    limit: u32,
    amount: u32,
) -> Result<(), ApiError> {
    let key = WindowKey::App {
        quota,
        app: &app.id,
    };
    let second = Duration::from_secs(1);
    let decision = decide(shared, key, (local, app.id.clone()), second, limit, amount).await;
    if decision.allowed {
        return Ok(());
    }
    let message = format!("the app's {quota} quota per second is used up; retry later");
    Err(refused(shared, &decision, &message))
}

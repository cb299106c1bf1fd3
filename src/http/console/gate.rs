//! Who may use the console: a request from the console's own origin with the token (only to
//! open it) or the session cookie that opening it set.
//!
//! The cookie holds the time it was issued and an HMAC of a fixed label and that time keyed with
//! the token, not the token: it proves the token was presented without being it, and the server
//! refuses it [`SESSION_MAX_AGE`] seconds after it was issued, whatever the browser keeps. Both
//! checks compare MACs in constant time.
//!
//! Wrong tokens are counted per client address: past `CONSOLE_GUESSES` a minute the address
//! gets 429 until the minute is over, and the log says how many there were, once a minute.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::client_address::{client_address, peer_of};
use crate::http::ApiError;
use crate::protocol::signing::Signer;
use crate::state::SharedState;

/// The session cookie's name.
const COOKIE: &str = "herald_console";
/// What the session cookie is the MAC of.
const SESSION: &[u8] = b"herald console session";
/// Seconds a console session lasts (12 hours).
const SESSION_MAX_AGE: u64 = 12 * 3600;

/// The session cookie's value for `token`, issued at `issued` (Unix seconds).
fn session(token: &str, issued: u64) -> String {
    let issued = issued.to_string();
    let mac = Signer::new(token).sign_hex(format!("{}.{issued}", hex::encode(SESSION)).as_bytes());
    format!("{issued}.{mac}")
}

/// Whether `given` is the token, in constant time (the MACs are compared, not the strings).
fn is_token(token: &str, given: &str) -> bool {
    Signer::new(token).verify_hex(&[SESSION], &Signer::new(given).sign_hex(SESSION))
}

/// Whether a cookie of the request is a session of `token` issued within the last
/// [`SESSION_MAX_AGE`] seconds (before `now`).
fn has_session(token: &str, headers: &HeaderMap, now: u64) -> bool {
    let cookies = headers.get_all(header::COOKIE).iter();
    let cookies = cookies.filter_map(|value| value.to_str().ok());
    cookies
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .any(|value| {
            let Some((issued, mac)) = value.split_once('.') else {
                return false;
            };
            let fresh = issued
                .parse::<u64>()
                .is_ok_and(|at| at <= now && now - at < SESSION_MAX_AGE);
            let label = format!("{}.{issued}", hex::encode(SESSION));
            fresh && Signer::new(token).verify_hex(&[label.as_bytes()], mac)
        })
}

/// Unix seconds now.
fn unix_now() -> u64 {
    crate::journal::unix_millis() / 1000
}

/// A request from another page (cookies do not tell ports of one host apart) is refused
/// whatever it carries. `Sec-Fetch-Site` catches what carries no `Origin` (a `<script src>` or
/// an `<img>` of another port of the host); a request with neither is not from a page.
fn same_origin(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").map(HeaderValue::as_bytes);
    if matches!(fetch_site, Some(b"cross-site" | b"same-site")) {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = origin.to_str().ok();
    match (origin, host) {
        (Some(origin), Some(host)) => {
            let bare = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            bare == Some(host)
        }
        _ => false,
    }
}

/// The token in `?token=`, if any.
fn query_token(request: &Request) -> Option<String> {
    let query = request.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned())
}

fn refused(why: &str) -> Response {
    ApiError::Unauthorized(why.into()).into_response()
}

/// Whether `given` is the token, counting a wrong one against the client's address; the
/// refusal is 401, or 429 once the address has used up its guesses.
fn check_token(
    shared: &SharedState,
    request: &Request,
    token: &str,
    given: &str,
) -> Result<(), ApiError> {
    let peer = peer_of(request).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let address = client_address(peer, request.headers(), shared.config().trust_hops);
    let guesses = shared.console_guesses();
    // Counted before it is checked: concurrent guesses cannot pass the limit together.
    let failed = guesses
        .attempt(address, Instant::now())
        .map_err(|retry_after| {
            let message = "too many wrong console tokens from this address; retry later".into();
            ApiError::TooManyRequests {
                message,
                retry_after,
                limit: None,
            }
        })?;
    if is_token(token, given) {
        guesses.forgive(address);
        return Ok(());
    }
    if let Some(tally) = failed.report {
        tracing::warn!(
            %address,
            wrong_tokens = tally.failures,
            refused = tally.refused,
            throttled_addresses = tally.throttled,
            "wrong console tokens since the last report (reported at most once a minute)"
        );
    }
    if failed.now_throttled {
        tracing::warn!(%address, "console: too many wrong tokens from this address; refused with 429 for the rest of the minute (further addresses are counted in the next report)");
    }
    Err(ApiError::Unauthorized("wrong console token".into()))
}

/// Guards every console route; `GET /console?token=` trades the token for the cookie.
pub async fn guard(State(shared): State<SharedState>, request: Request, next: Next) -> Response {
    let Some(token) = shared.console_token().map(|t| t.secret().to_owned()) else {
        return ApiError::NotFound(request.uri().path().to_owned()).into_response();
    };
    if !same_origin(request.headers()) {
        return ApiError::Forbidden("the console answers only its own pages".into())
            .into_response();
    }
    if let Some(given) = query_token(&request) {
        if let Err(refusal) = check_token(&shared, &request, &token, &given) {
            return refusal.into_response();
        }
        // The token leaves the URL (history, access logs) at once.
        // Under TLS the cookie never goes out over plain HTTP.
        let secure = if shared.config().tls.is_some() {
            "; Secure"
        } else {
            ""
        };
        let cookie = format!(
            "{COOKIE}={}; Path=/console; Max-Age={SESSION_MAX_AGE}; HttpOnly; SameSite=Strict{secure}",
            session(&token, unix_now())
        );
        let cookie = HeaderValue::from_str(&cookie).expect("hex and ASCII");
        return (
            StatusCode::SEE_OTHER,
            [
                (header::SET_COOKIE, cookie),
                (header::LOCATION, HeaderValue::from_static("/console")),
            ],
        )
            .into_response();
    }
    if !has_session(&token, request.headers(), unix_now()) {
        return refused("open the console with ?token= (Herald logs the URL at start-up)");
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_proves_the_token_without_being_it_and_expires() {
        let token = "0123456789abcdef-token";
        assert!(is_token(token, token));
        assert!(!is_token(token, "0123456789abcdef-tokeN"));
        assert!(!is_token(token, ""));
        let mut headers = HeaderMap::new();
        let now = 1_800_000_000;
        let cookie = format!("other=1; {COOKIE}={}", session(token, now));
        headers.insert(header::COOKIE, cookie.parse().unwrap());
        assert!(has_session(token, &headers, now + 60));
        assert!(
            !has_session(token, &headers, now + SESSION_MAX_AGE),
            "expired"
        );
        assert!(!has_session("another-token-0123456789", &headers, now));
        assert!(!session(token, now).contains(token));
        // A forged time does not verify.
        let forged = session(token, now).replacen(&now.to_string(), &(now + 9).to_string(), 1);
        headers.insert(
            header::COOKIE,
            format!("{COOKIE}={forged}").parse().unwrap(),
        );
        assert!(!has_session(token, &headers, now + 60));
        headers.insert(header::COOKIE, format!("{COOKIE}={token}").parse().unwrap());
        assert!(!has_session(token, &headers, now));
    }

    #[test]
    fn only_the_consoles_own_origin_passes() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:6001".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, "http://127.0.0.1:6001".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(!same_origin(&headers));
        headers.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&headers));
        headers.remove(header::ORIGIN);
        for (site, passes) in [
            ("same-origin", true),
            ("none", true),
            ("same-site", false),
            ("cross-site", false),
        ] {
            headers.insert("sec-fetch-site", site.parse().unwrap());
            assert_eq!(same_origin(&headers), passes, "{site}");
        }
    }
}

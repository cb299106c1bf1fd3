//! Pusher REST request signing: `auth_key`, `auth_timestamp`, `auth_version`, `body_md5`,
//! `auth_signature` over method, path and the sorted query.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::{header, HeaderMap, Method, Uri};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::error::ApiError;
use crate::apps::{App, Lookup};
use crate::protocol::signing::md5_hex;
use crate::state::{Shared, SharedState};

/// Requests whose `auth_timestamp` is further than this from the server clock are refused.
const TIMESTAMP_WINDOW_SECS: u64 = 600;

/// A request whose signature checked out: the extractor every REST handler takes last.
///
/// The app comes from the `{app_id}` path segment, or from `auth_key` on routes without one.
pub struct Authenticated {
    /// The app it is for.
    pub app: Arc<App>,
    /// The raw body, as signed.
    pub body: Bytes,
    query: String,
}

impl FromRequest<SharedState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request(request: Request, shared: &SharedState) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let app_id = RawPathParams::from_request_parts(&mut parts, shared)
            .await
            .ok()
            .and_then(|params| {
                params
                    .iter()
                    .find(|(k, _)| *k == "app_id")
                    .map(|(_, v)| v.to_owned())
            });
        // Everything the query can prove is checked before a byte of the body is read, so an
        // unsigned request costs no memory and holds nothing open.
        let (app, body_md5) =
            authenticate(shared, app_id.as_deref(), &parts.method, &parts.uri).await?;
        let body = read_body(shared, &parts.headers, body).await?;
        match body_md5 {
            Some(md5) if md5 != md5_hex(&body) => {
                return Err(unauthorized("body_md5 does not match the body"))
            }
            None if !body.is_empty() => return Err(unauthorized("body_md5 is missing")),
            _ => {}
        }
        shared.metrics().app(&app.id).rest_request();
        Ok(Authenticated {
            app,
            body,
            query: parts.uri.query().unwrap_or("").to_owned(),
        })
    }
}

impl Authenticated {
    /// The first value of a query parameter, decoded.
    pub fn param(&self, name: &str) -> Option<Cow<'_, str>> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

fn unauthorized(why: impl Into<String>) -> ApiError {
    ApiError::Unauthorized(why.into())
}

/// Reads a signed request's body: at most `http_api.request_limit_in_mb` (a larger declared
/// `Content-Length` is refused at once), within `http_api.body_timeout_ms`, and only while the
/// process-wide budget for bodies being read has room.
async fn read_body(shared: &Shared, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = shared.config().http.request_limit;
    let too_large =
        || ApiError::PayloadTooLarge("request body is over http_api.request_limit_in_mb".into());
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    if declared == Some(0) {
        return Ok(Bytes::new());
    }
    // Chunked bodies reserve the whole limit: their length is known only at the end.
    let reserve = declared.map_or(limit, |length| length as usize).max(1);
    let _reserved = shared
        .body_budget()
        .try_reserve(reserve)
        .ok_or(ApiError::Busy(
            "too many request bodies are being read at once; retry shortly".into(),
        ))?;
    let read = async {
        let mut stream = body.into_data_stream();
        let mut bytes = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadRequest(format!("malformed request body: {e}")))?;
            if bytes.len() + chunk.len() > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes.freeze())
    };
    tokio::time::timeout(shared.config().http.body_timeout, read)
        .await
        .map_err(|_| {
            ApiError::Timeout(
                "the request body did not arrive within http_api.body_timeout_ms".into(),
            )
        })?
}

/// Verifies a signed request for app `app_id` (or, without one, the app of `auth_key`) from
/// its method, path and query alone; returns the app and the `body_md5` the body must match.
async fn authenticate(
    shared: &Shared,
    app_id: Option<&str>,
    method: &Method,
    uri: &Uri,
) -> Result<(Arc<App>, Option<String>), ApiError> {
    let query = uri.query().unwrap_or("");
    let auth_key = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "auth_key")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| unauthorized("auth_key is missing"))?;
    let lookup = match app_id {
        Some(id) => shared.app_by_id(id).await,
        None => shared.app_by_key(&auth_key).await,
    };
    let app = match lookup {
        Lookup::Found(app) => app,
        Lookup::Unknown => {
            return Err(ApiError::UnknownApp(app_id.map_or(auth_key, str::to_owned)))
        }
        // The app database is down and the app not known here: retry later.
        Lookup::Unavailable => return Err(ApiError::Unavailable),
    };
    let body_md5 = verify_query(&app, method.as_str(), uri.path(), query, unix_now())?;
    if !app.enabled {
        return Err(ApiError::AppDisabled);
    }
    Ok((app, body_md5))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Checks `auth_key`, `auth_version`, `auth_timestamp` (against `now`) and `auth_signature` of
/// a request to `app`; returns the `body_md5` the body must match. Pure: no I/O, no clock.
pub fn verify_query(
    app: &App,
    method: &str,
    path: &str,
    query: &str,
    now: i64,
) -> Result<Option<String>, ApiError> {
    // Borrowed from the query unless a value needs decoding.
    let params: Vec<(Cow<'_, str>, Cow<'_, str>)> =
        form_urlencoded::parse(query.as_bytes()).collect();
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    };
    let auth_key = get("auth_key").ok_or_else(|| unauthorized("auth_key is missing"))?;
    if auth_key != app.key {
        return Err(unauthorized(format!(
            "auth_key {auth_key:?} is not this app's key"
        )));
    }
    if let Some(version) = get("auth_version") {
        if version != "1.0" {
            return Err(unauthorized(format!(
                "auth_version {version:?} is not supported (1.0)"
            )));
        }
    }
    let timestamp: i64 = get("auth_timestamp")
        .ok_or_else(|| unauthorized("auth_timestamp is missing"))?
        .parse()
        .map_err(|_| unauthorized("auth_timestamp is not a number"))?;
    if now.abs_diff(timestamp) > TIMESTAMP_WINDOW_SECS {
        return Err(unauthorized(format!(
            "auth_timestamp {timestamp} is more than {TIMESTAMP_WINDOW_SECS} s from the server time {now}"
        )));
    }
    // pusher-http-python sends body_md5 on GET too: the MD5 of the empty body. It is signed
    // with the rest of the query, so it is checked against the body once that has been read.
    let body_md5 = get("body_md5").map(str::to_owned);
    let signature =
        get("auth_signature").ok_or_else(|| unauthorized("auth_signature is missing"))?;
    let signed = |path: &str| app.signer.verify_rest(method, path, &params, signature);
    // SDKs differ in whether they sign the escaped path; accept either.
    if !(signed(path) || (path.contains('%') && signed(&percent_decode(path)))) {
        return Err(unauthorized("invalid signature"));
    }
    Ok(body_md5)
}

/// Decodes `%XX` escapes (SDKs differ in whether they sign the escaped path).
fn percent_decode(path: &str) -> String {
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_escapes() {
        assert_eq!(
            percent_decode("/apps/1/channels/%23server-to-user-1"),
            "/apps/1/channels/#server-to-user-1"
        );
        assert_eq!(percent_decode("/a%2"), "/a%2");
        assert_eq!(percent_decode("/plain"), "/plain");
    }
}

//! Sockudo's `cors` block: which pages may call the REST API from a browser. Without the block
//! Herald sends no CORS headers at all (Sockudo's default of every origin with credentials is
//! not copied). With it, a missing key takes Sockudo's value. `*` (or `any`) with
//! `credentials: true` mirrors the request's `Origin`, since a literal `*` with credentials is
//! refused by browsers (and makes tower-http panic).

use serde::Deserialize;

use super::origins::OriginAllowlist;
use super::{lenient, ConfigError};

/// The `cors` block as written.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawCors {
    #[serde(deserialize_with = "lenient::opt")]
    pub credentials: Option<bool>,
    pub origin: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub allowed_headers: Option<Vec<String>>,
}

/// Which origins may call the REST API from a page, and what they may send.
#[derive(Clone, Debug)]
pub struct CorsConfig {
    /// `Access-Control-Allow-Credentials`.
    pub credentials: bool,
    /// Every origin (`*` or `any` in the list).
    pub any_origin: bool,
    /// The origins otherwise allowed (Sockudo's patterns).
    pub origins: OriginAllowlist,
    /// `Access-Control-Allow-Methods`.
    pub methods: Vec<axum::http::Method>,
    /// `Access-Control-Allow-Headers`.
    pub allowed_headers: Vec<axum::http::HeaderName>,
}

const DEFAULT_METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
const DEFAULT_HEADERS: [&str; 4] = [
    "Authorization",
    "Content-Type",
    "X-Requested-With",
    "Accept",
];

/// The `cors` block, if there is one.
pub(super) fn cors(raw: Option<&RawCors>) -> Result<Option<CorsConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let origin = raw.origin.clone().unwrap_or_else(|| vec!["*".into()]);
    let any_origin = origin
        .iter()
        .any(|o| o.trim() == "*" || o.trim().eq_ignore_ascii_case("any"));
    let names = |given: &Option<Vec<String>>, default: &[&str]| -> Vec<String> {
        given
            .clone()
            .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
    };
    let methods = names(&raw.methods, &DEFAULT_METHODS)
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.parse::<axum::http::Method>().map_err(|_| {
                ConfigError::invalid(
                    &format!("cors.methods[{i}]"),
                    format!("{m:?} is not an HTTP method"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let allowed_headers = names(&raw.allowed_headers, &DEFAULT_HEADERS)
        .iter()
        .enumerate()
        .map(|(i, h)| {
            h.parse::<axum::http::HeaderName>().map_err(|_| {
                ConfigError::invalid(
                    &format!("cors.allowed_headers[{i}]"),
                    format!("{h:?} is not a header name"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(CorsConfig {
        credentials: raw.credentials.unwrap_or(true),
        any_origin,
        origins: OriginAllowlist::parse("cors.origin", Some(&origin))?,
        methods,
        allowed_headers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_block_no_cors_and_a_block_takes_sockudos_defaults() {
        assert!(cors(None).unwrap().is_none());
        let config = cors(Some(&RawCors::default())).unwrap().unwrap();
        assert!(config.credentials && config.any_origin);
        assert_eq!(config.methods.len(), 6);
        let raw = RawCors {
            origin: Some(vec!["https://app.example".into()]),
            methods: Some(vec!["GET".into(), "NOT A METHOD".into()]),
            ..RawCors::default()
        };
        assert_eq!(cors(Some(&raw)).unwrap_err().path, "cors.methods[1]");
    }
}

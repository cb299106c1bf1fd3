//! An app's `decision_hooks`: the backend endpoint Herald asks, and waits for, before a
//! connection, a subscription or a client event takes effect.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::lenient;
use super::ConfigError;

/// The moments a decision hook can be asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookKind {
    /// Before `pusher:connection_established` is sent.
    ConnectionStarting,
    /// After Herald's own checks of a subscription, before it takes effect.
    SubscriptionStarting,
    /// Before a client event is delivered or reported.
    ClientEventSending,
}

impl HookKind {
    /// Every kind, in the order they are documented.
    pub const ALL: [HookKind; 3] = [
        HookKind::ConnectionStarting,
        HookKind::SubscriptionStarting,
        HookKind::ClientEventSending,
    ];

    /// The `type` of the request body, and the name in `events`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::ConnectionStarting => "connection_starting",
            HookKind::SubscriptionStarting => "subscription_starting",
            HookKind::ClientEventSending => "client_event_sending",
        }
    }

    fn parse(name: &str) -> Option<HookKind> {
        HookKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// What a call that could not be decided (timeout, error, non-2xx, over the cap) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// Refuse the action (the default).
    Reject,
    /// Let the action happen.
    Allow,
}

/// The validated `decision_hooks` of one app.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionHooksConfig {
    /// Where every call is POSTed.
    pub url: reqwest::Url,
    /// The kinds the app asked for; the others are never called.
    pub events: Vec<HookKind>,
    /// How long one call may take, answer included.
    pub request_timeout: Duration,
    /// What a failed call does.
    pub on_failure: OnFailure,
    /// Calls of the app in flight at once; one more fails at once.
    pub max_concurrent: usize,
    /// Calls in flight at once for one client address (its share of `max_concurrent`), so one
    /// client cannot hold every slot.
    pub max_concurrent_per_address: usize,
    /// Extra request headers.
    pub headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
}

impl DecisionHooksConfig {
    /// Whether calls of this kind are made.
    pub fn asks(&self, kind: HookKind) -> bool {
        self.events.contains(&kind)
    }
}

/// `decision_hooks` as written.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawDecisionHooks {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    #[serde(deserialize_with = "lenient::opt")]
    pub request_timeout_ms: Option<u64>,
    pub on_failure: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_concurrent: Option<u64>,
    #[serde(deserialize_with = "lenient::opt")]
    pub max_concurrent_per_address: Option<u64>,
    pub headers: Option<BTreeMap<String, String>>,
}

/// Validates an app's `decision_hooks` (`path` is its key path).
pub(super) fn decision_hooks(
    path: &str,
    raw: &RawDecisionHooks,
) -> Result<DecisionHooksConfig, ConfigError> {
    let key = |name: &str| format!("{path}.{name}");
    let url = raw
        .url
        .as_deref()
        .ok_or_else(|| ConfigError::invalid(&key("url"), "is required"))?;
    let url = reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            ConfigError::invalid(
                &key("url"),
                format!("{:?} is not an http(s) URL", super::redacted(url)),
            )
        })?;
    let events = events(&key("events"), raw.events.as_deref())?;
    let request_timeout = match raw.request_timeout_ms {
        Some(0) => {
            return Err(ConfigError::invalid(
                &key("request_timeout_ms"),
                "must be above 0",
            ))
        }
        Some(ms) => Duration::from_millis(ms),
        None => Duration::from_millis(1000),
    };
    let on_failure = match raw.on_failure.as_deref() {
        None | Some("reject") => OnFailure::Reject,
        Some("allow") => OnFailure::Allow,
        Some(other) => {
            return Err(ConfigError::invalid(
                &key("on_failure"),
                format!("{other:?} is not one of \"reject\", \"allow\""),
            ))
        }
    };
    let max_concurrent = at_least_one(&key("max_concurrent"), raw.max_concurrent)?.unwrap_or(256);
    // A quarter by default: four clients at their share fill the cap, one alone cannot.
    let max_concurrent_per_address = at_least_one(
        &key("max_concurrent_per_address"),
        raw.max_concurrent_per_address,
    )?
    .unwrap_or((max_concurrent / 4).max(1))
    .min(max_concurrent);
    Ok(DecisionHooksConfig {
        url,
        events,
        request_timeout,
        on_failure,
        max_concurrent,
        max_concurrent_per_address,
        headers: headers(&key("headers"), raw.headers.as_ref())?,
    })
}

/// A count that must be at least 1 when given.
fn at_least_one(path: &str, value: Option<u64>) -> Result<Option<usize>, ConfigError> {
    match value {
        Some(0) => Err(ConfigError::invalid(path, "must be at least 1")),
        other => Ok(other.map(|n| usize::try_from(n).unwrap_or(usize::MAX))),
    }
}

/// `events`: required, known names only (a misspelt one would silently ask nothing).
fn events(path: &str, names: Option<&[String]>) -> Result<Vec<HookKind>, ConfigError> {
    let names = names.ok_or_else(|| ConfigError::invalid(path, "is required"))?;
    if names.is_empty() {
        return Err(ConfigError::invalid(path, "must name at least one event"));
    }
    names
        .iter()
        .map(|name| {
            HookKind::parse(name).ok_or_else(|| {
                let known: Vec<_> = HookKind::ALL.iter().map(|k| k.as_str()).collect();
                ConfigError::invalid(path, format!("{name:?} is not one of {known:?}"))
            })
        })
        .collect()
}

/// Headers Herald sets on every call: a custom one may not replace them.
const SIGNED_HEADERS: [&str; 4] = [
    "content-type",
    "x-pusher-key",
    "x-pusher-signature",
    "webhook-id",
];

fn headers(
    path: &str,
    raw: Option<&BTreeMap<String, String>>,
) -> Result<Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>, ConfigError> {
    use reqwest::header::{HeaderName, HeaderValue};
    raw.into_iter()
        .flatten()
        .map(|(name, value)| {
            let invalid = |what: &str| ConfigError::invalid(&format!("{path}.{name}"), what);
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid("is not a valid header name"))?;
            if SIGNED_HEADERS.contains(&name.as_str()) {
                return Err(invalid(
                    "is set by Herald on every call and cannot be replaced",
                ));
            }
            let value =
                HeaderValue::from_str(value).map_err(|_| invalid("is not a valid header value"))?;
            Ok((name, value))
        })
        .collect()
}

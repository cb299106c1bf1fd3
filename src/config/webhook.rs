//! Per-app webhook endpoints: validated from the raw file into typed values.

use std::collections::BTreeMap;
use std::time::Duration;

use super::event_kind::{ChannelTypeFilter, EventKind, EventKinds, EVENT_TYPES};
use super::raw::{RawFilter, RawRetry, RawWebhook};
use super::ConfigError;

/// Where an endpoint's deliveries go.
#[derive(Clone, Debug, PartialEq)]
pub enum WebhookTarget {
    /// An HTTP(S) URL that receives POSTs.
    Url(String),
    /// An AWS Lambda function.
    Lambda(LambdaTarget),
}

/// An AWS Lambda target (`lambda` or `lambda_function`).
#[derive(Clone, Debug, PartialEq)]
pub struct LambdaTarget {
    /// The function name or ARN.
    pub function_name: String,
    /// `Event` (default) or `RequestResponse`.
    pub invocation_type: String,
    /// Version or alias.
    pub qualifier: Option<String>,
    /// Region; `AWS_REGION` from the environment when absent.
    pub region: Option<String>,
    /// A custom endpoint (LocalStack, tests).
    pub endpoint_url: Option<String>,
}

/// How an endpoint's requests are signed beyond the Pusher headers.
#[derive(Clone, Debug, PartialEq)]
pub enum SignatureScheme {
    /// Only `X-Pusher-Key` / `X-Pusher-Signature`.
    Pusher,
    /// Also `webhook-signature` per the Standard Webhooks spec, with this decoded secret.
    StandardWebhooks(Vec<u8>),
    /// Also `Authorization`: a JWT over the body's SHA-256, as LiveKit signs its webhooks.
    Jwt,
}

/// Retry policy of one endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// False: one attempt only.
    pub enabled: bool,
    /// Attempts at most (the first included); `None` bounds by time only.
    pub max_attempts: Option<u64>,
    /// Give up once this much time has passed since the first attempt.
    pub max_elapsed: Duration,
    /// First back-off, doubled after each failure up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Largest back-off.
    pub max_backoff: Duration,
}

/// One validated webhook endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookEndpoint {
    /// Where to deliver.
    pub target: WebhookTarget,
    /// The event types it receives.
    pub event_types: EventKinds,
    /// `filter.channel_type`.
    pub channel_type: Option<ChannelTypeFilter>,
    /// `filter.channel_prefix`.
    pub channel_prefix: Option<String>,
    /// Custom headers added to every request of this endpoint.
    pub headers: BTreeMap<String, String>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Requests this endpoint may have in flight at once.
    pub max_in_flight: usize,
    /// Signature scheme.
    pub signature: SignatureScheme,
}

/// Requests one endpoint may have in flight when neither the endpoint nor `webhooks` says.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 8;

/// `max_in_flight` (endpoint or global): at least 1, at most 1024.
pub(super) fn max_in_flight(
    path: &str,
    value: Option<u64>,
    default: usize,
) -> Result<usize, ConfigError> {
    match value {
        None => Ok(default),
        Some(n @ 1..=1024) => Ok(n as usize),
        Some(n) => Err(ConfigError::invalid(
            path,
            format!("must be between 1 and 1024, got {n}"),
        )),
    }
}

/// Global webhook settings that endpoints inherit.
#[derive(Clone, Debug)]
pub(super) struct WebhookDefaults {
    pub retry: RetryPolicy,
    pub request_timeout: Duration,
    pub max_in_flight: usize,
}

impl WebhookDefaults {
    /// Pusher's values: 4 s per request, retries with back-off 1 s..60 s for 5 minutes.
    pub fn pusher() -> Self {
        WebhookDefaults {
            retry: RetryPolicy {
                enabled: true,
                max_attempts: None,
                max_elapsed: Duration::from_secs(300),
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(60),
            },
            request_timeout: Duration::from_secs(4),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

fn millis(path: &str, value: Option<i64>, default: Duration) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(ms) if ms < 0 => Err(ConfigError::invalid(
            path,
            format!("must not be negative, got {ms}"),
        )),
        Some(ms) => Ok(Duration::from_millis(ms as u64)),
    }
}

pub(super) fn retry_policy(
    path: &str,
    raw: Option<&RawRetry>,
    base: &RetryPolicy,
) -> Result<RetryPolicy, ConfigError> {
    let Some(raw) = raw else {
        return Ok(base.clone());
    };
    let policy = RetryPolicy {
        enabled: raw.enabled.unwrap_or(base.enabled),
        max_attempts: raw.max_attempts.or(base.max_attempts),
        max_elapsed: millis(
            &format!("{path}.max_elapsed_time_ms"),
            raw.max_elapsed_time_ms,
            base.max_elapsed,
        )?,
        initial_backoff: millis(
            &format!("{path}.initial_backoff_ms"),
            raw.initial_backoff_ms,
            base.initial_backoff,
        )?,
        max_backoff: millis(
            &format!("{path}.max_backoff_ms"),
            raw.max_backoff_ms,
            base.max_backoff,
        )?,
    };
    if policy.max_attempts == Some(0) {
        return Err(ConfigError::invalid(
            &format!("{path}.max_attempts"),
            "must be at least 1",
        ));
    }
    Ok(policy)
}

fn target(path: &str, raw: &RawWebhook) -> Result<WebhookTarget, ConfigError> {
    if let Some(url) = &raw.url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                &format!("{path}.url"),
                format!("{:?} is not an http(s) URL", super::redacted(url)),
            ));
        }
        return Ok(WebhookTarget::Url(url.clone()));
    }
    let lambda = if let Some(lambda) = &raw.lambda {
        let function_name = lambda
            .function_name
            .clone()
            .filter(|name| !name.is_empty())
            .ok_or_else(|| {
                ConfigError::invalid(&format!("{path}.lambda.function_name"), "is required")
            })?;
        let invocation_type = lambda
            .invocation_type
            .clone()
            .unwrap_or_else(|| "Event".to_owned());
        if !matches!(
            invocation_type.as_str(),
            "Event" | "RequestResponse" | "DryRun"
        ) {
            return Err(ConfigError::invalid(
                &format!("{path}.lambda.invocation_type"),
                format!("{invocation_type:?} is not one of Event, RequestResponse, DryRun"),
            ));
        }
        LambdaTarget {
            function_name,
            invocation_type,
            qualifier: lambda.qualifier.clone(),
            region: lambda.region.clone(),
            endpoint_url: lambda.endpoint_url.clone(),
        }
    } else if let Some(function_name) = raw.lambda_function.clone().filter(|n| !n.is_empty()) {
        LambdaTarget {
            function_name,
            invocation_type: "Event".to_owned(),
            qualifier: None,
            region: None,
            endpoint_url: None,
        }
    } else {
        return Err(ConfigError::invalid(
            path,
            "a webhook needs a url, lambda or lambda_function",
        ));
    };
    Ok(WebhookTarget::Lambda(lambda))
}

fn event_types(path: &str, raw: Option<&[String]>) -> Result<EventKinds, ConfigError> {
    let names =
        raw.ok_or_else(|| ConfigError::invalid(&format!("{path}.event_types"), "is required"))?;
    if names.is_empty() {
        return Err(ConfigError::invalid(
            &format!("{path}.event_types"),
            "must list at least one event type",
        ));
    }
    let kind = |(i, name): (usize, &String)| {
        EventKind::from_name(name).ok_or_else(|| {
            ConfigError::invalid(
                &format!("{path}.event_types[{i}]"),
                format!("{name:?} is not one of {}", EVENT_TYPES.join(", ")),
            )
        })
    };
    names.iter().enumerate().map(kind).collect()
}

fn filter(
    path: &str,
    raw: Option<&RawFilter>,
) -> Result<(Option<ChannelTypeFilter>, Option<String>), ConfigError> {
    let Some(raw) = raw else {
        return Ok((None, None));
    };
    let channel_type = match raw.channel_type.as_deref() {
        None => None,
        Some(name) => Some(ChannelTypeFilter::from_name(name).ok_or_else(|| {
            let names = ChannelTypeFilter::ALL.map(ChannelTypeFilter::name);
            ConfigError::invalid(
                &format!("{path}.filter.channel_type"),
                format!("{name:?} is not one of {}", names.join(", ")),
            )
        })?),
    };
    Ok((channel_type, raw.channel_prefix.clone()))
}

fn signature(path: &str, raw: &RawWebhook) -> Result<SignatureScheme, ConfigError> {
    match raw.signature.as_deref() {
        None | Some("pusher") => Ok(SignatureScheme::Pusher),
        Some("standard-webhooks") => {
            let key = format!("{path}.standard_webhooks_secret");
            let secret = raw.standard_webhooks_secret.as_deref().ok_or_else(|| {
                ConfigError::invalid(&key, "is required when signature is \"standard-webhooks\"")
            })?;
            let encoded = secret
                .strip_prefix("whsec_")
                .ok_or_else(|| ConfigError::invalid(&key, "must start with whsec_"))?;
            let bytes = decode_base64(encoded)
                .ok_or_else(|| ConfigError::invalid(&key, "is not valid base64 after whsec_"))?;
            Ok(SignatureScheme::StandardWebhooks(bytes))
        }
        Some("jwt") => Ok(SignatureScheme::Jwt),
        Some(other) => Err(ConfigError::invalid(
            &format!("{path}.signature"),
            format!("{other:?} is not one of \"pusher\", \"standard-webhooks\", \"jwt\""),
        )),
    }
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

pub(super) fn endpoint(
    path: &str,
    raw: &RawWebhook,
    defaults: &WebhookDefaults,
) -> Result<WebhookEndpoint, ConfigError> {
    let target = target(path, raw)?;
    let event_types = event_types(path, raw.event_types.as_deref())?;
    let (channel_type, channel_prefix) = filter(path, raw.filter.as_ref())?;
    let filtered = channel_type.is_some() || channel_prefix.is_some();
    if filtered
        && EventKind::ALL
            .iter()
            .any(|k| k.is_user() && event_types.contains(*k))
    {
        return Err(ConfigError::invalid(
            &format!("{path}.filter"),
            "cannot be used with user_online or user_offline in event_types: user events \
             have no channel (give them an endpoint of their own)",
        ));
    }
    let request_timeout = match raw.request_timeout_ms {
        Some(0) => {
            return Err(ConfigError::invalid(
                &format!("{path}.request_timeout_ms"),
                "must be above 0",
            ))
        }
        Some(ms) => Duration::from_millis(ms),
        None => defaults.request_timeout,
    };
    Ok(WebhookEndpoint {
        target,
        event_types,
        channel_type,
        channel_prefix,
        headers: raw.headers.clone().unwrap_or_default(),
        retry: retry_policy(
            &format!("{path}.retry"),
            raw.retry.as_ref(),
            &defaults.retry,
        )?,
        request_timeout,
        max_in_flight: max_in_flight(
            &format!("{path}.max_in_flight"),
            raw.max_in_flight,
            defaults.max_in_flight,
        )?,
        signature: signature(path, raw)?,
    })
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64_decodes_standard_alphabet() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert!(decode_base64("!!!!").is_none());
    }
}

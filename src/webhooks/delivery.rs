//! Delivering one batch: the Pusher envelope, signatures, headers, and retries with back-off.
//!
//! A batch is frozen at its first attempt: every retry resends the same events under the same
//! `webhook-id`, with a fresh `time_ms`, timestamp and signatures (a JWT included: its claim is
//! the digest of this attempt's body).

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::event::WebhookEvent;
use super::lambda::invoke_lambda;
use super::schedule::Batch;
use crate::config::{AppConfig, SignatureScheme, WebhookEndpoint, WebhookTarget};
use crate::journal::unix_millis;
use crate::metrics::{AppMetrics, Metrics};
use crate::protocol::jwt::webhook_token;
use crate::protocol::signing::{standard_webhooks_signature, Signer};

/// Why one attempt failed.
pub(super) enum Failure {
    /// Connection error, timeout, 5xx, 408 or 429: worth another attempt.
    Retryable(String),
    /// Anything else (other 4xx, an unusable request): retrying cannot help.
    Final(String),
}

/// An endpoint's answer to one attempt: its HTTP status, and what that status means.
pub(super) struct Answer {
    pub status: u16,
    pub verdict: Result<(), Failure>,
}

/// The one HTTP client of the process: HTTP/1.1 with title-case header names, keep-alive,
/// and no redirects followed: a 3xx is an answer like any other (a failed attempt), never a
/// second request that would carry the signed body elsewhere or turn a POST into a GET.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http1_title_case_headers()
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the HTTP client builds")
}

/// A redirect's `Location` as logs may show it (redacted), or `(none)`.
pub fn redirect_location(headers: &HeaderMap) -> String {
    let location = headers.get(reqwest::header::LOCATION);
    match location.map(|value| value.to_str()) {
        Some(Ok(location)) => crate::config::redacted(location),
        Some(Err(_)) => "(not text)".into(),
        None => "(none)".into(),
    }
}

/// A request error as logs and the console show it: reqwest's text without the URL (whose
/// query may hold a token), with its causes.
pub fn describe_error(error: reqwest::Error) -> String {
    use std::error::Error;
    let error = error.without_url();
    let mut text = format!("request failed: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// A fresh `Webhook-Id`: `msg_` and 128 random bits in hex.
pub(crate) fn delivery_id() -> String {
    format!("msg_{:032x}", rand::rng().random::<u128>())
}

/// The body of one attempt: `{"time_ms": .., "events": [..]}` around the frozen events.
pub(super) fn envelope(time_ms: u64, events_json: &str) -> String {
    format!("{{\"time_ms\":{time_ms},\"events\":{events_json}}}")
}

/// What an attempt must hold while it is in flight.
pub enum Slots<'a> {
    /// One of the endpoint's in-flight permits (`first` for the first attempt).
    Bounded {
        /// The permit the first attempt already holds.
        first: Option<OwnedSemaphorePermit>,
        /// Where later attempts take theirs.
        in_flight: &'a Arc<Semaphore>,
    },
    /// Nothing: the caller bounds its requests itself (one per partition of a cluster).
    Unbounded,
}

impl Slots<'_> {
    /// The permit for the next attempt (`Some(None)` when unbounded); `None` when closed.
    async fn take(&mut self) -> Option<Option<OwnedSemaphorePermit>> {
        match self {
            Slots::Bounded { first, in_flight } => match first.take() {
                Some(permit) => Some(Some(permit)),
                None => in_flight.clone().acquire_owned().await.ok().map(Some),
            },
            Slots::Unbounded => Some(None),
        }
    }
}

/// Delivers batches to one endpoint.
pub struct Deliverer {
    endpoint: WebhookEndpoint,
    app_id: String,
    app_key: String,
    signer: Signer,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    app_metrics: Arc<AppMetrics>,
}

impl Deliverer {
    /// A deliverer for one endpoint of `app`.
    pub fn new(
        app: &AppConfig,
        endpoint: WebhookEndpoint,
        client: reqwest::Client,
        metrics: Arc<Metrics>,
    ) -> Deliverer {
        Deliverer {
            endpoint,
            app_id: app.id.clone(),
            app_key: app.key.clone(),
            signer: Signer::new(&app.secret),
            client,
            app_metrics: metrics.app(&app.id),
            metrics,
        }
    }

    /// Delivers one batch, retrying as the endpoint's policy allows; gives up loudly.
    ///
    /// Each attempt holds one of the endpoint's in-flight permits (`permit` for the first); the
    /// back-off between attempts holds none, so a failing batch never blocks others.
    pub async fn deliver(
        &self,
        batch: &Batch,
        permit: OwnedSemaphorePermit,
        in_flight: &Arc<Semaphore>,
    ) {
        let slots = Slots::Bounded {
            first: Some(permit),
            in_flight,
        };
        if self.deliver_as(&delivery_id(), &batch.events, slots).await {
            let now = tokio::time::Instant::now();
            self.app_metrics
                .webhook_delivered(batch.queued_at.iter().map(|at| now - *at));
        }
    }

    /// Delivers `events` under the given `webhook-id` (a batch resent after a takeover keeps
    /// its id), retrying as the endpoint's policy allows; true when a 2xx answered it.
    pub async fn deliver_as(
        &self,
        id: &str,
        events: &[WebhookEvent],
        mut slots: Slots<'_>,
    ) -> bool {
        let events_json = serde_json::to_string(events).expect("events serialize");
        let policy = &self.endpoint.retry;
        let started = Instant::now();
        let mut backoff = policy.initial_backoff;
        let mut attempts = 0u64;
        loop {
            attempts += 1;
            let Some(held) = slots.take().await else {
                return false;
            };
            let sent = Instant::now();
            let (status, result) = match self.attempt(id, &events_json).await {
                Ok(answer) => (Some(answer.status), answer.verdict),
                Err(unanswered) => (None, Err(unanswered)),
            };
            drop(held);
            let took = sent.elapsed();
            self.journal(id, attempts, events.len(), took, status, &result);
            let failure = match result {
                Ok(()) => {
                    self.metrics.webhook_request_delivered();
                    return true;
                }
                Err(failure) => failure,
            };
            self.metrics.webhook_attempt_failed();
            let (retryable, why) = match failure {
                Failure::Retryable(why) => (true, why),
                Failure::Final(why) => (false, why),
            };
            let wait = jittered(backoff);
            let may_retry = retryable
                && policy.enabled
                && policy.max_attempts.is_none_or(|max| attempts < max)
                && started.elapsed() + wait <= policy.max_elapsed;
            if !may_retry {
                self.app_metrics.webhook_dead(events.len());
                tracing::error!(app = %self.app_id, webhook_id = %id, attempts, events = events.len(), %why, "webhook delivery failed for good");
                return false;
            }
            self.app_metrics.webhook_retried(events.len());
            tracing::warn!(app = %self.app_id, webhook_id = %id, attempts, %why, retry_in_ms = wait.as_millis() as u64, "webhook delivery failed; retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(policy.max_backoff);
        }
    }

    /// One console journal entry per attempt (a POST, never an event).
    fn journal(
        &self,
        id: &str,
        attempt: u64,
        events: usize,
        took: Duration,
        status: Option<u16>,
        result: &Result<(), Failure>,
    ) {
        let target = match &self.endpoint.target {
            WebhookTarget::Url(url) => crate::config::redacted(url),
            WebhookTarget::Lambda(lambda) => format!("lambda:{}", lambda.function_name),
        };
        let journal = self.app_metrics.journal();
        journal.record("webhook_delivery", None, None, || {
            let (outcome, why) = match result {
                Ok(()) => ("delivered", None),
                Err(Failure::Retryable(why)) => ("failed", Some(why.as_str())),
                Err(Failure::Final(why)) => ("failed for good", Some(why.as_str())),
            };
            serde_json::json!({
                "webhook_id": id, "attempt": attempt, "events": events, "endpoint": target,
                "status": status, "outcome": outcome, "error": why, "latency_ms": took.as_millis() as u64,
            })
        });
    }

    /// Counts `events` delivered through [`Deliverer::deliver_as`] by a caller that cannot
    /// measure their wait.
    pub fn count_delivered(&self, events: usize) {
        self.app_metrics.webhook_delivered_unmeasured(events);
    }

    /// One request; an `Err` when the endpoint never answered (or the request could not be made).
    async fn attempt(&self, id: &str, events_json: &str) -> Result<Answer, Failure> {
        let time_ms = unix_millis();
        let body = envelope(time_ms, events_json);
        match &self.endpoint.target {
            WebhookTarget::Url(url) => self.post(url, id, time_ms / 1000, body).await,
            WebhookTarget::Lambda(lambda) => {
                invoke_lambda(&self.client, lambda, self.endpoint.request_timeout, body).await
            }
        }
    }

    fn headers(&self, id: &str, timestamp: u64, body: &str) -> Result<HeaderMap, Failure> {
        let mut headers = HeaderMap::new();
        for (name, value) in &self.endpoint.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| Failure::Final(format!("header {name:?}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| Failure::Final(format!("header {name}: {e}")))?;
            headers.insert(name, value);
        }
        // Set after the custom headers so these can never be overridden.
        let mut set = |name: &'static str, value: String| {
            let value = HeaderValue::from_str(&value)
                .map_err(|e| Failure::Final(format!("{name}: {e}")))?;
            headers.insert(HeaderName::from_static(name), value);
            Ok::<(), Failure>(())
        };
        set("x-pusher-key", self.app_key.clone())?;
        set("x-pusher-signature", self.signer.sign_hex(body.as_bytes()))?;
        set("webhook-id", id.to_owned())?;
        set("webhook-timestamp", timestamp.to_string())?;
        match &self.endpoint.signature {
            SignatureScheme::Pusher => {}
            SignatureScheme::StandardWebhooks(secret) => set(
                "webhook-signature",
                standard_webhooks_signature(secret, id, timestamp, body),
            )?,
            // The raw token, no "Bearer ": LiveKit's receivers take the header value as it is.
            SignatureScheme::Jwt => set(
                "authorization",
                webhook_token(&self.app_key, &self.signer, body.as_bytes(), timestamp),
            )?,
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(headers)
    }

    async fn post(
        &self,
        url: &str,
        id: &str,
        timestamp: u64,
        body: String,
    ) -> Result<Answer, Failure> {
        let headers = self.headers(id, timestamp, &body)?;
        let request = self
            .client
            .post(url)
            .timeout(self.endpoint.request_timeout)
            .headers(headers)
            .body(body);
        let response = request
            .send()
            .await
            .map_err(|e| Failure::Retryable(describe_error(e)))?;
        let status = response.status().as_u16();
        let verdict = match classify(status) {
            // Retried like a 5xx; the log says where it pointed.
            Err(Failure::Retryable(_)) if response.status().is_redirection() => {
                let location = redirect_location(response.headers());
                Err(Failure::Retryable(format!(
                    "status {status}: a redirect to {location}, not followed"
                )))
            }
            verdict => verdict,
        };
        discard_body(response).await;
        Ok(Answer { status, verdict })
    }
}

/// Reads (and drops) a small response body so the connection can be reused; a large one is
/// abandoned after 64 KiB instead of being buffered.
pub(super) async fn discard_body(mut response: reqwest::Response) {
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read > 64 * 1024 {
            return;
        }
    }
}

/// 2xx is success; 3xx (never followed), 408, 429 and 5xx are retried; any other status is
/// final.
pub(super) fn classify(status: u16) -> Result<(), Failure> {
    match status {
        200..=299 => Ok(()),
        300..=399 | 408 | 429 | 500..=599 => Err(Failure::Retryable(format!("status {status}"))),
        _ => Err(Failure::Final(format!("status {status}"))),
    }
}

/// Between half and all of `backoff`, so endpoints recovering together are not hit in step.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(rand::rng().random_range(0.5..=1.0))
}

//! Decision hooks: the app's backend is asked, and Herald waits for its answer, before a
//! connection, a subscription or a client event takes effect.
//!
//! A call is a future the connection task polls itself: only the socket that caused it waits
//! (its later frames queue behind it), and dropping the future when the socket closes cancels
//! the request. The calls of one app in flight are capped by `max_concurrent`, and those of one
//! client address by its share of that cap (`max_concurrent_per_address`), so one client
//! cannot hold every slot; a call over either fails at once, as a timeout would.
//!
//! What fails a call (a connection error, a redirect, a status) is logged with the hook's URL
//! redacted (no credentials, no query); the client only ever gets a fixed message.

mod answer;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, CONTENT_TYPE};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use answer::HookUser;

use crate::apps::{App, AppRegistry};
use crate::config::{redacted, DecisionHooksConfig, HookKind, OnFailure};
use crate::journal::unix_millis;
use crate::limits::{AddressShare, AddressSlot};
use crate::metrics::{HookMetrics, HookOutcome, Metrics};
use crate::protocol::signing::Signer;
use crate::webhooks::delivery_id;

/// Bytes of a hook's answer Herald reads; a longer one is a failed call.
const MAX_ANSWER: usize = 64 * 1024;

/// Failed calls of one app are logged at most this often.
const WARN_EVERY_MS: u64 = 1000;

/// What the app's backend decided, with `on_failure` already applied to a failed call.
#[derive(Debug)]
pub enum Verdict {
    /// Go ahead; a `connection_starting` answer may sign the connection in as `user`.
    Allowed(Option<HookUser>),
    /// The hook refused, with the reason to pass to the client when it gave one.
    Refused(Option<String>),
    /// The hook could not decide and `on_failure` is `reject`.
    Failed(String),
}

/// A call in flight; resolves to its verdict. Dropping it cancels the request.
pub type HookCall = Pin<Box<dyn Future<Output = Verdict> + Send>>;

/// One app's hook endpoint.
struct AppHook {
    config: DecisionHooksConfig,
    key: String,
    /// The secret the signer was made with: a hook is rebuilt only when what it sends changes.
    secret: String,
    signer: Signer,
    in_flight: Arc<Semaphore>,
    per_address: Arc<AddressShare>,
    metrics: Vec<(HookKind, HookMetrics)>,
    /// When a failure was last logged (ms since `started`): an outage fails every call, and
    /// one line per second says so as well as thousands would.
    last_warned: AtomicU64,
    started: Instant,
}

/// The decision hooks of every app that configures one, by app id.
pub struct DecisionHooks {
    by_app: RwLock<HashMap<String, Arc<AppHook>>>,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
}

/// The request body: `{"type": .., "time_ms": .., "data": {..}}`.
#[derive(Serialize)]
struct Request<'a, D: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    time_ms: u64,
    data: &'a D,
}

impl DecisionHooks {
    /// The hooks of `apps` that configure one; requests go out through `client`.
    pub fn new(apps: &AppRegistry, client: reqwest::Client, metrics: Arc<Metrics>) -> Self {
        let hooks = DecisionHooks {
            by_app: RwLock::default(),
            client,
            metrics,
        };
        apps.iter().for_each(|app| hooks.set_app(app));
        hooks
    }

    /// `app`'s hook as configured now (none when it has none); a reload calls it for every
    /// added or changed app. A changed hook (its settings, the app's key or secret) starts
    /// with fresh slots; calls in flight finish under the old one.
    pub fn set_app(&self, app: &App) {
        let mut by_app = self.by_app.write().unwrap_or_else(|e| e.into_inner());
        let Some(config) = app.decision_hooks.clone() else {
            by_app.remove(&app.id);
            return;
        };
        // Another change of the app (a limit, say) keeps the hook and its slots in flight.
        let unchanged = by_app.get(&app.id).is_some_and(|hook| {
            hook.config == config && hook.key == app.key && hook.secret == app.secret
        });
        if unchanged {
            return;
        }
        let metrics = (config.events.iter())
            .map(|&kind| (kind, self.metrics.decision_hook(&app.id, kind.as_str())))
            .collect();
        let hook = Arc::new(AppHook {
            in_flight: Arc::new(Semaphore::new(config.max_concurrent)),
            per_address: AddressShare::new(config.max_concurrent_per_address),
            key: app.key.clone(),
            secret: app.secret.clone(),
            signer: app.signer.clone(),
            metrics,
            config,
            last_warned: AtomicU64::new(0),
            started: Instant::now(),
        });
        by_app.insert(app.id.clone(), hook);
    }

    /// Forgets the hook of a removed app.
    pub fn remove_app(&self, app_id: &str) {
        let mut by_app = self.by_app.write().unwrap_or_else(|e| e.into_inner());
        by_app.remove(app_id);
    }

    /// The call asking `app`'s hook about `kind` with `data` for the client at `address`;
    /// `None` when the app does not ask.
    pub fn ask(
        &self,
        app: &App,
        kind: HookKind,
        data: &impl Serialize,
        address: Option<IpAddr>,
    ) -> Option<HookCall> {
        let by_app = self.by_app.read().unwrap_or_else(|e| e.into_inner());
        let hook = by_app.get(&app.id)?.clone();
        drop(by_app);
        let metrics = hook.metrics.iter().find(|(k, _)| *k == kind)?.1.clone();
        let body = serde_json::to_string(&Request {
            kind: kind.as_str(),
            time_ms: unix_millis(),
            data,
        })
        .expect("hook data serializes");
        let started = Instant::now();
        let slot = hook.take_slot(address);
        let (hook, client) = (hook.clone(), self.client.clone());
        Some(Box::pin(async move {
            let answer = match slot {
                Ok(slot) => hook.post(&client, body, kind, slot).await,
                Err(why) => Err(why),
            };
            hook.verdict(answer, kind, &metrics, started.elapsed())
        }))
    }
}

/// What a call holds while in flight: one of the app's slots and one of its address's.
struct CallSlot {
    _app: OwnedSemaphorePermit,
    _address: Option<AddressSlot>,
}

impl AppHook {
    /// A slot of the app's cap and of `address`'s share of it, or why there is none.
    fn take_slot(&self, address: Option<IpAddr>) -> Result<CallSlot, String> {
        let max = self.config.max_concurrent;
        let app = (self.in_flight.clone().try_acquire_owned())
            .map_err(|_| format!("{max} calls already in flight (max_concurrent)"))?;
        let address = match address {
            Some(ip) => Some(self.per_address.try_take(ip).ok_or_else(|| {
                let share = self.config.max_concurrent_per_address;
                format!("{ip} already has {share} calls in flight (max_concurrent_per_address)")
            })?),
            None => None,
        };
        Ok(CallSlot {
            _app: app,
            _address: address,
        })
    }

    /// Sends one call and reads its answer within the request timeout.
    async fn post(
        &self,
        client: &reqwest::Client,
        body: String,
        kind: HookKind,
        _slot: CallSlot,
    ) -> Result<answer::Answer, String> {
        let timeout = self.config.request_timeout;
        match tokio::time::timeout(timeout, self.exchange(client, body, kind)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    async fn exchange(
        &self,
        client: &reqwest::Client,
        body: String,
        kind: HookKind,
    ) -> Result<answer::Answer, String> {
        let signature = self.signer.sign_hex(body.as_bytes());
        let mut request = client
            .post(self.config.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("X-Pusher-Key", &self.key)
            .header("X-Pusher-Signature", signature)
            .header("Webhook-Id", delivery_id());
        for (name, value) in &self.config.headers {
            request = request.header(name, value);
        }
        let mut response = request.body(body).send().await.map_err(describe)?;
        let status = response.status();
        if status.is_redirection() {
            // Never followed: the answer must come from the configured backend.
            let location = crate::webhooks::redirect_location(response.headers());
            return Err(format!(
                "answered HTTP {} (a redirect to {location}, not followed)",
                status.as_u16()
            ));
        }
        if !status.is_success() {
            return Err(format!("answered HTTP {}", status.as_u16()));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(format!("answer longer than {MAX_ANSWER} bytes"));
            }
            bytes.extend_from_slice(&chunk);
        }
        answer::parse(&bytes, kind)
    }

    /// The verdict of a call that ended with `answer`, counted and logged.
    fn verdict(
        &self,
        answer: Result<answer::Answer, String>,
        kind: HookKind,
        metrics: &HookMetrics,
        took: Duration,
    ) -> Verdict {
        match answer {
            Ok(answer::Answer::Allow(user)) => {
                metrics.called(HookOutcome::Allowed, took);
                Verdict::Allowed(user)
            }
            Ok(answer::Answer::Refuse(reason)) => {
                metrics.called(HookOutcome::Refused, took);
                Verdict::Refused(reason)
            }
            Err(why) => {
                metrics.called(HookOutcome::Failed, took);
                self.warn(kind, &why);
                match self.config.on_failure {
                    OnFailure::Allow => Verdict::Allowed(None),
                    OnFailure::Reject => Verdict::Failed(why),
                }
            }
        }
    }
}

impl AppHook {
    /// Logs a failed call, at most once a second per app (the metrics count every one).
    fn warn(&self, kind: HookKind, why: &str) {
        let now = self.started.elapsed().as_millis() as u64 + WARN_EVERY_MS;
        let last = self.last_warned.load(Ordering::Relaxed);
        if now.saturating_sub(last) < WARN_EVERY_MS {
            return;
        }
        if self
            .last_warned
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let hook = kind.as_str();
            let url = redacted(self.config.url.as_str());
            tracing::warn!(%hook, %url, %why, "decision hook failed (logged at most once a second)");
        }
    }
}

/// A request error without its URL (whose query may hold a token).
fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "could not connect".into()
    } else {
        crate::webhooks::describe_error(error)
    }
}

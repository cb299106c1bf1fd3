//! Webhooks: admitted events → per-endpoint filter → batches, several in flight per endpoint →
//! signed delivery with retries (HTTP or AWS Lambda).
//!
//! The cluster stage decides which events happen (and holds vacates for the grace period); this
//! module takes them from there. Every endpoint runs on its own task, so a slow or dead endpoint
//! never delays sockets, other endpoints or other apps. The queues are bounded by bytes
//! ([`budget`]): an event is dropped only when its app's or the process's budget is exhausted,
//! under a policy that keeps receivers consistent. Per channel, events reach the receiver in
//! order ([`schedule`]).

mod app_pipeline;
mod budget;
mod credentials;
mod delivery;
mod event;
mod filter;
mod lambda;
mod pipeline;
mod schedule;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use event::{PairKey, PairRole, WebhookEvent};

pub(crate) use delivery::{delivery_id, describe_error, http_client, redirect_location};

use crate::config::{AppConfig, EventKind, WebhookEndpoint, WebhookTarget, WebhooksConfig};
use crate::metrics::{Metrics, WebhookHealth};
use app_pipeline::{AppPipeline, PipelineBuilder};
use budget::{Admission, ProcessBudget};
use delivery::Deliverer;
use filter::EndpointFilter;

/// An event admitted under its app's budget, on its way to the endpoints that take it.
///
/// Dispatch it or cancel it: either returns what it counts against the budget. It goes to the
/// endpoints of the pipeline that admitted it, even when a reload has replaced that pipeline
/// since (a changed endpoint list applies to events accepted after the change).
pub struct Admitted {
    event: WebhookEvent,
    /// Its JSON length, counted once per endpoint copy.
    bytes: usize,
    /// How many endpoints take it.
    copies: usize,
    pipeline: Arc<AppPipeline>,
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("event", &self.event)
            .field("bytes", &self.bytes)
            .field("copies", &self.copies)
            .finish_non_exhaustive()
    }
}

impl AsRef<WebhookEvent> for Admitted {
    fn as_ref(&self) -> &WebhookEvent {
        &self.event
    }
}

/// One endpoint as the cluster's stream delivery uses it: its filter and its deliverer. Batches
/// come from the Redis streams there, not from this process's queues.
pub struct StreamEndpoint {
    key: String,
    app_id: String,
    filter: EndpointFilter,
    deliverer: Deliverer,
}

impl StreamEndpoint {
    /// Every endpoint of every app.
    pub fn all(apps: &[AppConfig], metrics: Arc<Metrics>) -> Vec<StreamEndpoint> {
        let client = delivery::http_client();
        let mut endpoints = Vec::new();
        for app in apps {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for endpoint in &app.webhooks {
                let identity = identity(endpoint);
                // Twin endpoints (the same target and filter listed twice) each get their own.
                let twin = seen.entry(identity.clone()).or_default();
                *twin += 1;
                endpoints.push(StreamEndpoint {
                    key: format!("{}\n{identity}.{twin}", app.id),
                    app_id: app.id.clone(),
                    filter: EndpointFilter::new(endpoint),
                    deliverer: Deliverer::new(
                        app,
                        endpoint.clone(),
                        client.clone(),
                        metrics.clone(),
                    ),
                });
            }
        }
        endpoints
    }

    /// The endpoint's name in the streams' cursors: its app, then a digest of what it is (its
    /// target and filter), so reordering or adding endpoints in the config keeps every cursor
    /// with its own endpoint.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the endpoint receives some events of this kind of app `app_id`.
    pub fn wants(&self, app_id: &str, kind: EventKind) -> bool {
        app_id == self.app_id && self.filter.kinds().contains(kind)
    }

    /// The app the endpoint belongs to.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// Whether the endpoint receives `event` of app `app_id`.
    pub fn takes(&self, app_id: &str, event: &WebhookEvent) -> bool {
        app_id == self.app_id && self.filter.matches(event)
    }

    /// POSTs the batch under `id`, with the endpoint's retries; true when it was delivered.
    pub async fn send(&self, id: &str, events: &[WebhookEvent]) -> bool {
        let delivered = self
            .deliverer
            .deliver_as(id, events, delivery::Slots::Unbounded)
            .await;
        if delivered {
            self.deliverer.count_delivered(events.len());
        }
        delivered
    }
}

/// A digest of an endpoint's target and filter (the first 16 hex digits of their SHA-256).
fn identity(endpoint: &WebhookEndpoint) -> String {
    use sha2::{Digest, Sha256};
    let target = match &endpoint.target {
        WebhookTarget::Url(url) => format!("url {url}"),
        WebhookTarget::Lambda(lambda) => format!(
            "lambda {} {} {:?} {:?}",
            lambda.function_name, lambda.invocation_type, lambda.qualifier, lambda.region
        ),
    };
    let kinds: Vec<&str> = EventKind::ALL
        .into_iter()
        .filter(|kind| endpoint.event_types.contains(*kind))
        .map(EventKind::name)
        .collect();
    let channel_type = endpoint.channel_type.map(|t| t.name());
    let described = format!(
        "{target}\n{kinds:?}\n{channel_type:?}\n{:?}",
        endpoint.channel_prefix
    );
    hex::encode(&Sha256::digest(described.as_bytes())[..8])
}

/// The handle through which the rest of the server submits webhook events.
pub struct Webhooks {
    /// Each app's pipeline, by app id; a reload replaces or removes one (see [`Self::set_app`]).
    apps: RwLock<HashMap<String, Arc<AppPipeline>>>,
    /// What a new pipeline is built from.
    builder: PipelineBuilder,
    metrics: Arc<Metrics>,
    /// Cancelled at shutdown: endpoint tasks take no more input and flush.
    close: CancellationToken,
    tasks: TaskTracker,
}

impl Webhooks {
    /// Starts one pipeline per app that has endpoints.
    pub fn start(apps: &[AppConfig], settings: &WebhooksConfig, metrics: Arc<Metrics>) -> Webhooks {
        let webhooks = Webhooks {
            apps: RwLock::default(),
            builder: PipelineBuilder {
                client: delivery::http_client(),
                process: ProcessBudget::new(settings.queue_max_total_bytes),
                settings: settings.clone(),
            },
            metrics,
            close: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        apps.iter().for_each(|app| webhooks.set_app(app));
        webhooks
    }

    /// Gives `app` the pipeline of its endpoints as configured now: events admitted from now on
    /// go to them. What the pipeline it replaces had queued is still delivered (its endpoint
    /// tasks drain once their input closes); an app without endpoints has no pipeline.
    pub fn set_app(&self, app: &AppConfig) {
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        let old = apps.get(&app.id);
        // The same endpoints, signed with the same key and secret: nothing to rebuild.
        let same = |old: &AppPipeline| {
            let (key, secret) = &old.signed_as;
            old.configured == app.webhooks && *key == app.key && *secret == app.secret
        };
        if old.is_some_and(|old| same(old)) {
            return;
        }
        if app.webhooks.is_empty() {
            apps.remove(&app.id);
            return;
        }
        let budget = old.map(|old| old.budget.clone());
        let spawning = (&self.metrics, &self.close, &self.tasks);
        let pipeline = self.builder.start(app, budget, spawning);
        apps.insert(app.id.clone(), Arc::new(pipeline));
    }

    /// Drops the app's pipeline (a reload removed the app, and its sockets' last events have
    /// been admitted): what it had queued is still delivered, nothing more is admitted.
    pub fn remove_app(&self, app_id: &str) {
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        apps.remove(app_id);
    }

    /// The app's pipeline as it is now.
    fn pipeline(&self, app_id: &str) -> Option<Arc<AppPipeline>> {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        apps.get(app_id).cloned()
    }

    /// Whether the app has any endpoint at all.
    pub fn has_endpoints(&self, app_id: &str) -> bool {
        self.pipeline(app_id).is_some()
    }

    /// Whether any endpoint of the app wants events of this kind (or its partner).
    pub fn wants(&self, app_id: &str, kind: EventKind) -> bool {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        apps.get(app_id).is_some_and(|p| p.wanted.contains(kind))
    }

    /// Counts one event against the app's budget, without waiting; `None` when no endpoint
    /// wants it or a budget is exhausted (logged and counted, see [`budget`]).
    pub fn admit(&self, app_id: &str, event: WebhookEvent) -> Option<Admitted> {
        let pipeline = self.pipeline(app_id)?;
        if !pipeline.wanted.contains(event.kind()) {
            return None;
        }
        let copies = pipeline
            .endpoints
            .iter()
            .filter(|(f, _)| f.matches(&event))
            .count();
        // An opener or closer no endpoint takes is still admitted (counting nothing), so the
        // grace period can cancel its partner with it.
        if copies == 0 && event.pair().is_none() {
            return None;
        }
        let bytes = if copies == 0 { 0 } else { event.json_len() };
        match pipeline.budget.admit(&event, bytes, copies) {
            Admission::Admitted => Some(Admitted {
                event,
                bytes,
                copies,
                pipeline,
            }),
            Admission::Dropped | Admission::Suppressed => None,
        }
    }

    /// Hands an admitted event to every endpoint whose filter takes it.
    pub fn dispatch(&self, app_id: &str, admitted: Admitted) {
        let pipeline = admitted.pipeline.clone();
        let mut sent = 0;
        for (filter, queue) in &pipeline.endpoints {
            if filter.matches(&admitted.event)
                && queue.send((admitted.event.clone(), admitted.bytes)).is_ok()
            {
                sent += 1;
            }
        }
        pipeline.metrics.webhook_submitted(sent);
        // Only when an endpoint task has stopped taking input (shutdown).
        let unsent = admitted.copies.saturating_sub(sent);
        if unsent > 0 {
            pipeline.budget.release(unsent, unsent * admitted.bytes);
            self.metrics.webhook_events_abandoned(unsent as u64);
            tracing::warn!(app = app_id, "webhook event after shutdown began; not sent");
        }
    }

    /// Returns the budget of an admitted event that will not be sent (the grace period
    /// cancelled it).
    pub fn cancel(&self, admitted: Admitted) {
        let Admitted {
            bytes,
            copies,
            pipeline,
            ..
        } = admitted;
        pipeline.budget.release(copies, copies * bytes);
    }

    /// The state of an app's webhook queues, when it has endpoints.
    pub fn health(&self, app_id: &str) -> Option<WebhookHealth> {
        let pipeline = self.pipeline(app_id)?;
        let queue = pipeline.budget.gauges().read();
        Some(WebhookHealth {
            degraded: queue.dropped_recently || pipeline.budget.nearly_full(),
            queue,
        })
    }

    /// Flushes batches and waits for deliveries, for at most `bound`; what is still
    /// undelivered then is logged with its count and counted as abandoned.
    ///
    /// Call once nothing more is dispatched (sockets drained, held events released).
    pub async fn flush(&self, bound: Duration) {
        self.close.cancel();
        self.tasks.close();
        if tokio::time::timeout(bound, self.tasks.wait()).await.is_ok() {
            return;
        }
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner()).clone();
        let left: u64 = apps.values().map(|p| p.budget.gauges().read().events).sum();
        self.metrics.webhook_events_abandoned(left);
        tracing::error!(
            events = left,
            "webhook events still undelivered when the shutdown grace period ran out; they are lost"
        );
    }
}

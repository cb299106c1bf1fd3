//! Webhooks: engine events → per-app grace stage → per-endpoint filter → timed batcher → signed
//! delivery with retries (HTTP or AWS Lambda).
//!
//! Every stage runs on its own task behind a bounded queue, so a slow or dead endpoint never
//! delays sockets, other endpoints or other apps. When a queue is full the event is dropped,
//! logged and counted (`herald_webhook_events_dropped_total`).

mod delivery;
mod event;
mod filter;
mod grace;
mod lambda;
mod pipeline;
mod sigv4;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use event::WebhookEvent;

use crate::config::{AppConfig, WebhooksConfig};
use crate::metrics::Metrics;
use delivery::Deliverer;
use filter::EndpointFilter;

/// Events one app's pipeline may hold before new ones are dropped.
pub const APP_QUEUE_EVENTS: usize = 10_000;
/// Events one endpoint may have waiting for delivery before new ones are dropped.
pub const ENDPOINT_QUEUE_EVENTS: usize = 10_000;

struct AppPipeline {
    events: mpsc::Sender<WebhookEvent>,
    /// Union of the event kinds the app's endpoints want, as bits over `EVENT_TYPES`.
    wanted: u8,
}

/// The handle through which the rest of the server submits webhook events.
pub struct Webhooks {
    apps: HashMap<String, AppPipeline>,
    metrics: Arc<Metrics>,
    /// Cancelled once sockets are drained: pipelines release held events and flush.
    close: CancellationToken,
    tasks: TaskTracker,
}

impl Webhooks {
    /// Starts one pipeline per app that has endpoints.
    pub fn start(apps: &[AppConfig], settings: &WebhooksConfig, metrics: Arc<Metrics>) -> Webhooks {
        let close = CancellationToken::new();
        let tasks = TaskTracker::new();
        let client = delivery::http_client();
        let mut pipelines = HashMap::new();
        for app in apps.iter().filter(|app| !app.webhooks.is_empty()) {
            let mut endpoints = Vec::new();
            let mut wanted = 0;
            for endpoint in &app.webhooks {
                let filter = EndpointFilter::new(endpoint);
                wanted |= filter.kinds();
                let (tx, rx) = mpsc::channel(ENDPOINT_QUEUE_EVENTS);
                let deliverer =
                    Deliverer::new(app, endpoint.clone(), client.clone(), metrics.clone());
                tasks.spawn(pipeline::run_endpoint(rx, deliverer, settings.clone()));
                endpoints.push((filter, tx));
            }
            // The grace stage cancels a held vacate/remove with the occupy/add that follows, so it
            // needs both halves of a pair even when an endpoint wants only one of them.
            for (a, b) in [(0, 1), (2, 3)] {
                if wanted & (1 << a | 1 << b) != 0 {
                    wanted |= 1 << a | 1 << b;
                }
            }
            let (tx, rx) = mpsc::channel(APP_QUEUE_EVENTS);
            let grace = settings.grace_period;
            tasks.spawn(pipeline::run_app(
                rx,
                endpoints,
                grace,
                close.clone(),
                metrics.clone(),
            ));
            pipelines.insert(app.id.clone(), AppPipeline { events: tx, wanted });
        }
        Webhooks {
            apps: pipelines,
            metrics,
            close,
            tasks,
        }
    }

    /// Whether any endpoint of the app wants events of this kind (an index into `EVENT_TYPES`).
    pub fn wants(&self, app_id: &str, kind_index: usize) -> bool {
        self.apps
            .get(app_id)
            .is_some_and(|p| p.wanted & (1 << kind_index) != 0)
    }

    /// Submits one event without waiting; a full queue drops it (logged and counted).
    pub fn submit(&self, app_id: &str, event: WebhookEvent) {
        let Some(pipeline) = self.apps.get(app_id) else {
            return;
        };
        if pipeline.wanted & (1 << event.kind_index()) == 0 {
            return;
        }
        if let Err(error) = pipeline.events.try_send(event) {
            self.metrics.webhook_events_dropped(1);
            tracing::warn!(app = app_id, %error, "webhook event dropped: the app's webhook queue is full or closed");
        }
    }

    /// Releases held events, flushes batches and waits for in-flight deliveries.
    ///
    /// Call after the sockets have been drained, so their vacate/remove events are included.
    pub async fn flush(&self) {
        self.close.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

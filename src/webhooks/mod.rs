//! Webhooks: engine events → per-app grace stage → per-endpoint filter → batches, several in
//! flight per endpoint → signed delivery with retries (HTTP or AWS Lambda).
//!
//! Every stage runs on its own task, so a slow or dead endpoint never delays sockets, other
//! endpoints or other apps. The queues are bounded by bytes ([`budget`]): an event is dropped only
//! when its app's or the process's budget is exhausted, under a policy that keeps receivers
//! consistent. Per channel, events reach the receiver in order ([`schedule`]).

mod budget;
mod delivery;
mod event;
mod filter;
mod grace;
mod lambda;
mod pipeline;
mod schedule;
mod sigv4;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use event::WebhookEvent;

use crate::config::{AppConfig, WebhooksConfig};
use crate::metrics::{Metrics, WebhookQueueReading};
use budget::{Admission, AppBudget, ProcessBudget};
use delivery::Deliverer;
use filter::EndpointFilter;
use pipeline::{EndpointWorker, Queued};

struct AppPipeline {
    events: mpsc::UnboundedSender<Queued>,
    /// The endpoints' filters, in the same order as the app task's.
    filters: Vec<EndpointFilter>,
    /// Union of the event kinds the app's endpoints want, as bits over `EVENT_TYPES`.
    wanted: u8,
    budget: Arc<AppBudget>,
}

/// The state of one app's webhook queues, for `GET /up/{app_id}`.
#[derive(Clone, Debug)]
pub struct WebhookHealth {
    /// Depth, age and drop counts.
    pub queue: WebhookQueueReading,
    /// A drop within the last minute, or a budget at least 90% used.
    pub degraded: bool,
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
        let process = ProcessBudget::new(settings.queue_max_total_bytes);
        let mut pipelines = HashMap::new();
        for app in apps.iter().filter(|app| !app.webhooks.is_empty()) {
            let gauges = metrics.register_webhook_queue(&app.id, app.webhooks.len());
            let budget = Arc::new(AppBudget::new(
                &app.id,
                settings.queue_max_bytes,
                process.clone(),
                gauges,
                metrics.clone(),
            ));
            let mut endpoints = Vec::new();
            let mut wanted = 0;
            for (index, endpoint) in app.webhooks.iter().enumerate() {
                let filter = EndpointFilter::new(endpoint);
                wanted |= filter.kinds();
                let (tx, rx) = mpsc::unbounded_channel();
                let worker = EndpointWorker {
                    index,
                    deliverer: Arc::new(Deliverer::new(
                        app,
                        endpoint.clone(),
                        client.clone(),
                        metrics.clone(),
                    )),
                    settings: settings.clone(),
                    max_in_flight: endpoint.max_in_flight,
                    budget: budget.clone(),
                };
                tasks.spawn(pipeline::run_endpoint(rx, worker));
                endpoints.push((filter, tx));
            }
            // The grace stage cancels a held vacate/remove with the occupy/add that follows, so it
            // needs both halves of a pair even when an endpoint wants only one of them.
            for (a, b) in [(0, 1), (2, 3)] {
                if wanted & (1 << a | 1 << b) != 0 {
                    wanted |= 1 << a | 1 << b;
                }
            }
            let filters = endpoints.iter().map(|(f, _)| f.clone()).collect();
            let (tx, rx) = mpsc::unbounded_channel();
            tasks.spawn(pipeline::run_app(
                rx,
                endpoints,
                settings.grace_period,
                close.clone(),
                budget.clone(),
            ));
            pipelines.insert(
                app.id.clone(),
                AppPipeline {
                    events: tx,
                    filters,
                    wanted,
                    budget,
                },
            );
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

    /// Submits one event without waiting. It is dropped only when a queue budget is exhausted
    /// (logged and counted, see [`budget`]).
    pub fn submit(&self, app_id: &str, event: WebhookEvent) {
        let Some(pipeline) = self.apps.get(app_id) else {
            return;
        };
        if pipeline.wanted & (1 << event.kind_index()) == 0 {
            return;
        }
        let copies = pipeline
            .filters
            .iter()
            .filter(|f| f.matches(&event))
            .count();
        // An opener or closer no endpoint takes still goes to the grace stage, to cancel its
        // partner there.
        if copies == 0 && event.pair().is_none() {
            return;
        }
        let bytes = if copies == 0 { 0 } else { event.json_len() };
        if pipeline.budget.admit(&event, bytes, copies) != Admission::Admitted {
            return;
        }
        let queued = Queued {
            event,
            bytes,
            copies,
        };
        if pipeline.events.send(queued).is_err() {
            pipeline.budget.release(copies, copies * bytes);
            self.metrics.webhook_events_abandoned(copies as u64);
            tracing::warn!(app = app_id, "webhook event after shutdown began; not sent");
        }
    }

    /// The state of an app's webhook queues, when it has endpoints.
    pub fn health(&self, app_id: &str) -> Option<WebhookHealth> {
        let pipeline = self.apps.get(app_id)?;
        let queue = pipeline.budget.gauges().read();
        Some(WebhookHealth {
            degraded: queue.dropped_recently || pipeline.budget.nearly_full(),
            queue,
        })
    }

    /// Releases held events, flushes batches and waits for deliveries, for at most `bound`;
    /// what is still undelivered then is logged with its count and counted as abandoned.
    ///
    /// Call after the sockets have been drained, so their vacate/remove events are included.
    pub async fn flush(&self, bound: Duration) {
        self.close.cancel();
        self.tasks.close();
        if tokio::time::timeout(bound, self.tasks.wait()).await.is_ok() {
            return;
        }
        let left: u64 = self
            .apps
            .values()
            .map(|p| p.budget.gauges().read().events)
            .sum();
        self.metrics.webhook_events_abandoned(left);
        tracing::error!(
            events = left,
            "webhook events still undelivered when the shutdown grace period ran out; they are lost"
        );
    }
}

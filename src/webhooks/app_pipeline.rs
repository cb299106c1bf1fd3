//! One app's pipeline: a task per endpoint behind its filter, under the app's queue budget.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::budget::{AppBudget, ProcessBudget};
use super::delivery::Deliverer;
use super::filter::EndpointFilter;
use super::pipeline::{self, EndpointInput, EndpointWorker};
use crate::config::{AppConfig, EventKinds, WebhookEndpoint, WebhooksConfig};
use crate::metrics::{AppMetrics, Metrics};

/// The endpoints of one app, as configured when the pipeline started.
pub(super) struct AppPipeline {
    /// Each endpoint's filter and the input of its task.
    pub endpoints: Vec<(EndpointFilter, mpsc::UnboundedSender<EndpointInput>)>,
    /// The event kinds the app's endpoints want, widened by the partners of paired kinds: the
    /// grace period cancels a held vacate/remove with the occupy/add that follows, so it needs
    /// both halves of a pair even when an endpoint wants only one of them.
    pub wanted: EventKinds,
    pub budget: Arc<AppBudget>,
    pub metrics: Arc<AppMetrics>,
    /// The endpoint list it was built from: a reload with the same list (and the same key
    /// and secret, which sign every request) keeps the pipeline.
    pub configured: Vec<WebhookEndpoint>,
    /// The app key and secret its deliverers sign with.
    pub signed_as: (String, String),
}

/// What every app's pipeline shares: the HTTP client, the process's queue budget, the
/// `webhooks` settings.
pub(super) struct PipelineBuilder {
    pub client: reqwest::Client,
    pub process: Arc<ProcessBudget>,
    pub settings: WebhooksConfig,
}

impl PipelineBuilder {
    /// Starts a task per endpoint of `app` on `tasks`; `budget` is the app's budget when it had
    /// a pipeline before (its queued events still count), else a new one is registered.
    pub fn start(
        &self,
        app: &AppConfig,
        budget: Option<Arc<AppBudget>>,
        (metrics, close, tasks): (&Arc<Metrics>, &CancellationToken, &TaskTracker),
    ) -> AppPipeline {
        let budget = budget.unwrap_or_else(|| {
            let gauges = metrics.register_webhook_queue(&app.id, app.webhooks.len());
            Arc::new(AppBudget::new(
                &app.id,
                self.settings.queue_max_bytes,
                self.process.clone(),
                gauges,
                metrics.app(&app.id),
            ))
        });
        let mut endpoints = Vec::new();
        let mut wanted = EventKinds::default();
        for (index, endpoint) in app.webhooks.iter().enumerate() {
            let filter = EndpointFilter::new(endpoint);
            wanted = wanted.union(filter.kinds());
            let (tx, rx) = mpsc::unbounded_channel();
            let worker = EndpointWorker {
                index,
                deliverer: Arc::new(Deliverer::new(
                    app,
                    endpoint.clone(),
                    self.client.clone(),
                    metrics.clone(),
                )),
                settings: self.settings.clone(),
                max_in_flight: endpoint.max_in_flight,
                budget: budget.clone(),
                close: close.clone(),
            };
            tasks.spawn(pipeline::run_endpoint(rx, worker));
            endpoints.push((filter, tx));
        }
        AppPipeline {
            endpoints,
            wanted: wanted.with_partners(),
            budget,
            metrics: metrics.app(&app.id),
            configured: app.webhooks.clone(),
            signed_as: (app.key.clone(), app.secret.clone()),
        }
    }
}

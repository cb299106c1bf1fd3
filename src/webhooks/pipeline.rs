//! The two kinds of webhook tasks: one per app (grace stage, filter, fan-out to endpoints) and
//! one per endpoint (timed batcher, then delivery).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::delivery::Deliverer;
use super::event::WebhookEvent;
use super::filter::EndpointFilter;
use super::grace::GraceStage;
use crate::config::WebhooksConfig;
use crate::metrics::Metrics;
use std::sync::Arc;

type Endpoints = Vec<(EndpointFilter, mpsc::Sender<WebhookEvent>)>;

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn dispatch(released: &mut Vec<WebhookEvent>, endpoints: &Endpoints, metrics: &Metrics) {
    for event in released.drain(..) {
        for (filter, queue) in endpoints {
            if filter.matches(&event) && queue.try_send(event.clone()).is_err() {
                metrics.webhook_events_dropped(1);
                tracing::warn!(
                    event = event.kind(),
                    channel = event.channel(),
                    "webhook event dropped: endpoint queue full"
                );
            }
        }
    }
}

/// One app's pipeline: holds vacate/remove events for the grace period, then hands each
/// released event to every endpoint whose filter matches, in release order.
pub async fn run_app(
    mut events: mpsc::Receiver<WebhookEvent>,
    endpoints: Endpoints,
    grace: Duration,
    close: CancellationToken,
    metrics: Arc<Metrics>,
) {
    let mut stage = GraceStage::new(grace);
    let mut released = Vec::new();
    loop {
        tokio::select! {
            biased;
            event = events.recv() => match event {
                Some(event) => stage.accept(event, Instant::now(), &mut released),
                None => break,
            },
            _ = sleep_until_some(stage.next_deadline()) => stage.release_due(Instant::now(), &mut released),
            _ = close.cancelled() => break,
        }
        dispatch(&mut released, &endpoints, &metrics);
    }
    // Shutdown: take what is still queued, then release every hold at once.
    while let Ok(event) = events.try_recv() {
        stage.accept(event, Instant::now(), &mut released);
    }
    stage.release_all(&mut released);
    dispatch(&mut released, &endpoints, &metrics);
}

/// One endpoint's worker: collects a batch for `duration` after its first event (or until
/// `max_events`), then delivers it; batches go out one after another, keeping their order.
pub async fn run_endpoint(
    mut events: mpsc::Receiver<WebhookEvent>,
    deliverer: Deliverer,
    settings: WebhooksConfig,
) {
    while let Some(first) = events.recv().await {
        let mut batch = vec![first];
        if settings.batching_enabled {
            let deadline = Instant::now() + settings.batching_duration;
            while batch.len() < settings.batching_max_events {
                tokio::select! {
                    event = events.recv() => match event {
                        Some(event) => batch.push(event),
                        None => break,
                    },
                    _ = sleep_until(deadline) => break,
                }
            }
        }
        deliverer.deliver(batch).await;
    }
}

//! The two kinds of webhook tasks: one per app (grace stage, filter, fan-out to endpoints) and
//! one per endpoint (batches from its [`EndpointQueue`], several in flight, each delivered with
//! retries on a task of its own).
//!
//! The queues between them are unbounded channels; what bounds them is the byte budget every
//! event was admitted under at submission ([`super::budget`]), returned when it is delivered,
//! given up on or cancelled by the grace stage.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::budget::AppBudget;
use super::delivery::Deliverer;
use super::event::WebhookEvent;
use super::filter::EndpointFilter;
use super::grace::GraceStage;
use super::schedule::EndpointQueue;
use crate::config::WebhooksConfig;

/// An event on its way through an app's pipeline, with what it counts against the budget.
pub struct Queued {
    /// The event.
    pub event: WebhookEvent,
    /// Its JSON length, counted once per endpoint copy.
    pub bytes: usize,
    /// How many endpoints take it.
    pub copies: usize,
}

impl AsRef<WebhookEvent> for Queued {
    fn as_ref(&self) -> &WebhookEvent {
        &self.event
    }
}

/// What an endpoint task receives: the event and the bytes its copy counts.
pub type EndpointInput = (WebhookEvent, usize);

/// An app's endpoints as the app task sees them.
pub type Endpoints = Vec<(EndpointFilter, mpsc::UnboundedSender<EndpointInput>)>;

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn dispatch(released: &mut Vec<Queued>, endpoints: &Endpoints, budget: &AppBudget) {
    for queued in released.drain(..) {
        let mut sent = 0;
        for (filter, queue) in endpoints {
            if filter.matches(&queued.event)
                && queue.send((queued.event.clone(), queued.bytes)).is_ok()
            {
                sent += 1;
            }
        }
        // Only when an endpoint task is gone (shutdown): what it would hold is returned.
        let unsent = queued.copies.saturating_sub(sent);
        if unsent > 0 {
            budget.release(unsent, unsent * queued.bytes);
        }
    }
}

fn release_cancelled(cancelled: &mut Vec<Queued>, budget: &AppBudget) {
    for queued in cancelled.drain(..) {
        budget.release(queued.copies, queued.copies * queued.bytes);
    }
}

/// One app's pipeline: holds vacate/remove events for the grace period, then hands each
/// released event to every endpoint whose filter matches, in release order.
pub async fn run_app(
    mut events: mpsc::UnboundedReceiver<Queued>,
    endpoints: Endpoints,
    grace: Duration,
    close: CancellationToken,
    budget: Arc<AppBudget>,
) {
    let mut stage = GraceStage::new(grace);
    let (mut released, mut cancelled) = (Vec::new(), Vec::new());
    loop {
        tokio::select! {
            biased;
            event = events.recv() => match event {
                Some(event) => stage.accept(event, Instant::now(), &mut released, &mut cancelled),
                None => break,
            },
            _ = sleep_until_some(stage.next_deadline()) => stage.release_due(Instant::now(), &mut released),
            _ = close.cancelled() => break,
        }
        dispatch(&mut released, &endpoints, &budget);
        release_cancelled(&mut cancelled, &budget);
    }
    // Shutdown: take what is still queued, then release every hold at once.
    events.close();
    while let Ok(event) = events.try_recv() {
        stage.accept(event, Instant::now(), &mut released, &mut cancelled);
    }
    stage.release_all(&mut released);
    dispatch(&mut released, &endpoints, &budget);
    release_cancelled(&mut cancelled, &budget);
}

/// What an endpoint task needs besides its input.
pub struct EndpointWorker {
    /// The endpoint's position in the app's list (for its age gauge).
    pub index: usize,
    /// Sends and retries batches.
    pub deliverer: Arc<Deliverer>,
    /// Batching settings.
    pub settings: WebhooksConfig,
    /// Requests the endpoint may have in flight.
    pub max_in_flight: usize,
    /// Where delivered bytes are returned.
    pub budget: Arc<AppBudget>,
}

/// Waits until `at`, then for an in-flight permit.
async fn permit_at(at: Option<Instant>, in_flight: Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    let at = at?;
    if at > Instant::now() {
        sleep_until(at).await;
    }
    in_flight.acquire_owned().await.ok()
}

/// One endpoint's worker: a batch goes out `duration` after its oldest event (or at
/// `max_events`), up to `max_in_flight` requests at once, each channel's events in order.
/// Ends once its input is closed and everything has been delivered or given up on.
pub async fn run_endpoint(
    mut input: mpsc::UnboundedReceiver<EndpointInput>,
    worker: EndpointWorker,
) {
    let (window, max_events) = if worker.settings.batching_enabled {
        (
            worker.settings.batching_duration,
            worker.settings.batching_max_events,
        )
    } else {
        (Duration::ZERO, 1)
    };
    let in_flight = Arc::new(Semaphore::new(worker.max_in_flight));
    let mut queue = EndpointQueue::default();
    let mut batches = JoinSet::new();
    let mut batch_of_task = HashMap::new();
    let mut open = true;
    loop {
        if !open && queue.is_empty() {
            break;
        }
        // Once the input is closed (shutdown) nothing waits for a batching window.
        let ready_at = queue.ready_at(window, max_events, !open);
        tokio::select! {
            biased;
            Some(done) = batches.join_next_with_id() => {
                let task = match done {
                    Ok((task, ())) => task,
                    Err(error) => error.id(),
                };
                if let Some(batch) = batch_of_task.remove(&task) {
                    let (events, bytes) = queue.complete(batch);
                    worker.budget.release(events, bytes);
                }
            }
            Some(permit) = permit_at(ready_at, in_flight.clone()) => {
                if let Some(batch) = queue.take_batch(max_events) {
                    let deliverer = worker.deliverer.clone();
                    let in_flight = in_flight.clone();
                    let task = batches.spawn(async move {
                        deliverer.deliver(&batch.events, permit, &in_flight).await;
                    });
                    batch_of_task.insert(task.id(), batch.id);
                }
            }
            event = input.recv(), if open => match event {
                Some((event, bytes)) => queue.push(event, bytes, Instant::now()),
                None => open = false,
            },
            else => break,
        }
        worker
            .budget
            .gauges()
            .set_oldest(worker.index, queue.oldest_since().map(Instant::into_std));
    }
}

//! One task per endpoint: batches from its [`EndpointQueue`], several in flight, each delivered
//! with retries on a task of its own.
//!
//! Its input is an unbounded channel; what bounds it is the byte budget every event was admitted
//! under ([`super::budget`]), returned when it is delivered or given up on.

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
use super::schedule::EndpointQueue;
use crate::config::WebhooksConfig;

/// What an endpoint task receives: the event and the bytes its copy counts.
pub type EndpointInput = (WebhookEvent, usize);

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
    /// Cancelled at shutdown: take what is in the input, then no more.
    pub close: CancellationToken,
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
                    let id = batch.id;
                    let task = batches.spawn(async move {
                        deliverer.deliver(&batch, permit, &in_flight).await;
                    });
                    batch_of_task.insert(task.id(), id);
                }
            }
            event = input.recv(), if open => match event {
                Some((event, bytes)) => queue.push(event, bytes, Instant::now()),
                None => open = false,
            },
            // Closing the input lets `recv` hand over what is buffered, then end it.
            _ = worker.close.cancelled(), if open => input.close(),
            else => break,
        }
        worker
            .budget
            .gauges()
            .set_oldest(worker.index, queue.oldest_since().map(Instant::into_std));
    }
}

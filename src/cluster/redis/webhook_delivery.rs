//! Delivering a partition's webhook stream: for each endpoint, batch after batch in stream
//! order, each under the `webhook-id` recorded before its first POST.
//!
//! One batch per partition and endpoint is outstanding at a time, which is what keeps the order
//! of every channel (a channel belongs to one partition) at the receiver, across a takeover too.

use super::connection::RedisConnection;
use ::redis::RedisError;

use super::webhook_stream::{Next, StreamEntry, WebhookStreams};
use crate::webhooks::{StreamEndpoint, WebhookEvent};

/// Events per POST at most.
pub const BATCH_EVENTS: usize = 100;

/// The event of an entry, with its app; `None` for an entry this build cannot read.
fn event_of(entry: &StreamEntry) -> Option<(&str, WebhookEvent)> {
    let event = WebhookEvent::from_fields(|name| entry.field(name))?;
    Some((entry.field("app")?, event))
}

/// How a round over one partition ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Round {
    /// Another node holds the partition.
    NotHeld,
    /// Every endpoint is caught up; this many events were delivered (or given up on).
    CaughtUp(usize),
    /// The lease was lost half-way: the new holder resends what was in flight.
    LeaseLost,
}

/// Delivers what the partition holds for every endpoint, if this node holds its lease.
pub async fn deliver_partition(
    con: &mut RedisConnection,
    streams: &WebhookStreams,
    partition: u32,
    endpoints: &[StreamEndpoint],
) -> Result<Round, RedisError> {
    if !streams.lease(con, partition).await? {
        return Ok(Round::NotHeld);
    }
    let mut sent = 0;
    for endpoint in endpoints {
        let takes = |entry: &StreamEntry| {
            event_of(entry).is_some_and(|(app, event)| endpoint.takes(app, &event))
        };
        loop {
            // Renewed before every batch, so a holder busy with a long backlog keeps it.
            if !streams.lease(con, partition).await? {
                return Ok(Round::LeaseLost);
            }
            let next = streams.next_batch(con, partition, endpoint.key(), BATCH_EVENTS, takes);
            let batch = match next.await? {
                Next::Batch(batch) => batch,
                Next::Empty => break,
                Next::LeaseLost => return Ok(Round::LeaseLost),
            };
            let events: Vec<WebhookEvent> = batch
                .entries
                .iter()
                .filter_map(|entry| event_of(entry).map(|(_, event)| event))
                .collect();
            // A failed batch is logged and counted as dead by the deliverer; the stream moves on
            // as the single-node queue does.
            if !events.is_empty()
                && !send_holding_lease(con, streams, partition, endpoint, &batch.id, &events)
                    .await?
            {
                return Ok(Round::LeaseLost);
            }
            if !streams.done(con, partition, endpoint.key(), &batch).await? {
                return Ok(Round::LeaseLost);
            }
            sent += events.len();
        }
    }
    Ok(Round::CaughtUp(sent))
}

/// POSTs a batch (with its retries) while renewing the partition's lease every third of it, so
/// a slow receiver cannot make the lease lapse and a second holder send newer batches first.
/// False when the lease was lost anyway (Redis unreachable, this node paused): the POST is
/// abandoned, and the new holder resends the batch under its id.
async fn send_holding_lease(
    con: &mut RedisConnection,
    streams: &WebhookStreams,
    partition: u32,
    endpoint: &StreamEndpoint,
    id: &str,
    events: &[WebhookEvent],
) -> Result<bool, RedisError> {
    let send = endpoint.send(id, events);
    tokio::pin!(send);
    let mut renew = tokio::time::interval(streams.lease_duration() / 3);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    renew.tick().await;
    loop {
        tokio::select! {
            _ = &mut send => return Ok(true),
            _ = renew.tick() => {
                if !streams.lease(con, partition).await? {
                    return Ok(false);
                }
            }
        }
    }
}

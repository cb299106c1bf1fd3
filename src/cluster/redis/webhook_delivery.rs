//! Delivering a partition's webhook stream: for each endpoint, batch after batch in stream
//! order, each under the `webhook-id` recorded before its first POST.
//!
//! One batch per partition and endpoint is outstanding at a time, which is what keeps the order
//! of every channel (a channel belongs to one partition) at the receiver, across a takeover too.

use ::redis::aio::ConnectionManager;
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
    con: &mut ConnectionManager,
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
            if !events.is_empty() {
                endpoint.send(&batch.id, &events).await;
            }
            if !streams.done(con, partition, endpoint.key(), &batch).await? {
                return Ok(Round::LeaseLost);
            }
            sent += events.len();
        }
    }
    Ok(Round::CaughtUp(sent))
}

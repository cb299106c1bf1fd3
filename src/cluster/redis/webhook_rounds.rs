//! The node's webhook task: round after round over every partition, delivering those whose
//! lease this node holds or takes (a partition held by a live node is skipped in one command).
//!
//! A round starts when a script of this node appended events, or every [`ROUND_INTERVAL`]
//! (events appended by other nodes to a partition this node holds, a dead holder's backlog).
//! Partitions are delivered several at a time, so one slow receiver holds up only its own.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::channel_state::PARTITIONS;
use super::link::NodeLink;
use super::webhook_delivery::deliver_partition;
use super::webhook_stream::WebhookStreams;

/// The longest a held partition's new events wait for a round.
const ROUND_INTERVAL: Duration = Duration::from_millis(250);
/// Partitions delivered at once.
const CONCURRENT_PARTITIONS: usize = 16;
/// Rounds between two trims of the delivered entries.
const ROUNDS_PER_TRIM: u32 = 40;

/// Runs rounds until `close`.
pub async fn run(link: Arc<NodeLink>, streams: Arc<WebhookStreams>, close: CancellationToken) {
    let mut rounds = 0u32;
    loop {
        tokio::select! {
            _ = close.cancelled() => return,
            _ = round(&link, &streams) => {}
        }
        rounds = rounds.wrapping_add(1);
        if rounds % ROUNDS_PER_TRIM == 0 {
            trim(&link, &streams).await;
        }
        tokio::select! {
            _ = close.cancelled() => return,
            _ = link.webhooks_due.notified() => {}
            _ = tokio::time::sleep(ROUND_INTERVAL) => {}
        }
    }
}

/// One round over every partition.
pub async fn round(link: &NodeLink, streams: &WebhookStreams) {
    futures_util::stream::iter(0..PARTITIONS)
        .for_each_concurrent(CONCURRENT_PARTITIONS, |partition| async move {
            // A shard out would hold the round up to a timeout per partition: its partitions
            // are delivered once they are back.
            if link.availability.is_down(partition) {
                return;
            }
            let mut con = link.con();
            if let Err(error) =
                deliver_partition(&mut con, streams, partition, &link.endpoints).await
            {
                tracing::warn!(%error, partition, "cannot deliver a webhook partition");
            }
        })
        .await;
}

/// Drops what every endpoint has delivered.
async fn trim(link: &NodeLink, streams: &WebhookStreams) {
    let keys: Vec<&str> = link.endpoints.iter().map(|e| e.key()).collect();
    let mut con = link.con();
    for partition in 0..PARTITIONS {
        if link.availability.is_down(partition) {
            continue;
        }
        if let Err(error) = streams.trim(&mut con, partition, &keys).await {
            tracing::warn!(%error, partition, "cannot trim a webhook partition");
            return;
        }
    }
}

//! Reading a partition's webhook stream for delivery, so that each event is sent by one node,
//! in order, and a batch cut short by a node's death is resent under the same `webhook-id`.
//!
//! A partition is leased to one node at a time. For each endpoint the partition keeps a cursor
//! (the last entry delivered) and at most one batch record (its `webhook-id` and last entry),
//! written before the batch's first POST: a node that takes the partition over finds the record
//! and resends exactly that batch, under that id, before anything newer. Every change is a
//! script that checks the lease, so a node that lost it (paused, fenced) cannot move a cursor.

use super::connection::RedisConnection;
use ::redis::{RedisError, Script};

/// Takes or renews the lease. KEYS: lease. ARGV: holder, lease ms. Returns 1 when held.
const LEASE: &str = include_str!("lua/stream_lease.lua");

/// Records a batch before its first POST. KEYS: lease, batches. ARGV: holder, endpoint field,
/// `webhook-id`, last entry id. Returns 1 when recorded, 0 when the lease is lost.
const RECORD: &str = include_str!("lua/stream_record.lua");

/// A batch was delivered (or given up on): the cursor moves past it and its record goes.
/// KEYS: lease, batches, cursors. ARGV: holder, endpoint field, last entry id, `webhook-id`.
/// A holder whose lease ran out while Redis did not answer (a stall longer than the lease)
/// may still commit while nobody holds the lease and the endpoint's open batch is still this
/// one: moving past it skips nothing, and refusing would only make the next holder send it
/// again.
const DONE: &str = include_str!("lua/stream_done.lua");

/// Drops the entries every endpoint has delivered. KEYS: cursors, events. ARGV: every endpoint's
/// field. Returns the entries removed (none while an endpoint has no cursor yet).
const TRIM: &str = include_str!("lua/stream_trim.lua");

/// One stream entry: its id and fields (`name`, `app`, `channel`, `user_id`, `time_ms`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// The Redis stream id.
    pub id: String,
    /// Field name and value pairs, in the order they were written.
    pub fields: Vec<(String, String)>,
}

impl StreamEntry {
    /// A field's value.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A batch to POST: its id (the same on every attempt, and after a takeover) and its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamBatch {
    /// The `webhook-id`.
    pub id: String,
    /// The last stream entry it covers (entries the endpoint does not take included).
    pub last: String,
    /// The entries the endpoint takes, in stream order.
    pub entries: Vec<StreamEntry>,
}

/// What [`WebhookStreams::next_batch`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// A batch to POST (recorded, or the recorded one resent).
    Batch(StreamBatch),
    /// The endpoint is caught up.
    Empty,
    /// Another node holds the partition now: stop; it resends what was in flight.
    LeaseLost,
}

impl Next {
    /// The batch, if there is one.
    pub fn batch(self) -> Option<StreamBatch> {
        match self {
            Next::Batch(batch) => Some(batch),
            Next::Empty | Next::LeaseLost => None,
        }
    }
}

/// A node's access to the webhook streams of every partition.
pub struct WebhookStreams {
    prefix: String,
    holder: String,
    lease_ms: u64,
    lease: Script,
    record: Script,
    done: Script,
    trim: Script,
}

impl WebhookStreams {
    /// Streams under `prefix`, leased by `holder` (the node's incarnation) for `lease_ms`.
    pub fn new(prefix: &str, holder: &str, lease_ms: u64) -> WebhookStreams {
        WebhookStreams {
            prefix: prefix.to_owned(),
            holder: holder.to_owned(),
            lease_ms,
            lease: Script::new(LEASE),
            record: Script::new(RECORD),
            done: Script::new(DONE),
            trim: Script::new(TRIM),
        }
    }

    /// How long a lease lasts unless renewed.
    pub fn lease_duration(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.lease_ms)
    }

    fn key(&self, partition: u32, name: &str) -> String {
        format!("{}:{{p{partition}}}:{name}", self.prefix)
    }

    /// Takes or renews the partition's lease; false while another node holds it.
    pub async fn lease(
        &self,
        con: &mut RedisConnection,
        partition: u32,
    ) -> Result<bool, RedisError> {
        let held: i64 = self
            .lease
            .key(self.key(partition, "lease"))
            .arg(&self.holder)
            .arg(self.lease_ms)
            .invoke_async(con)
            .await?;
        Ok(held == 1)
    }

    /// The endpoint's next batch: the recorded one if a batch was cut short, otherwise up to
    /// `max` new entries it `takes`, recorded before it is returned.
    pub async fn next_batch(
        &self,
        con: &mut RedisConnection,
        partition: u32,
        endpoint: &str,
        max: usize,
        takes: impl Fn(&StreamEntry) -> bool,
    ) -> Result<Next, RedisError> {
        let recorded: Option<String> = ::redis::cmd("HGET")
            .arg(self.key(partition, "batches"))
            .arg(endpoint)
            .query_async(con)
            .await?;
        let cursor: Option<String> = ::redis::cmd("HGET")
            .arg(self.key(partition, "cursors"))
            .arg(endpoint)
            .query_async(con)
            .await?;
        // Exclusive of the cursor: the entries after the last one delivered.
        let after = cursor.map_or_else(|| "-".to_owned(), |c| format!("({c}"));
        if let Some((id, last)) = recorded.as_deref().and_then(|r| r.split_once('\n')) {
            let entries = self.range(con, partition, &after, last, None).await?;
            let entries = entries.into_iter().filter(|e| takes(e)).collect();
            return Ok(Next::Batch(StreamBatch {
                id: id.to_owned(),
                last: last.to_owned(),
                entries,
            }));
        }
        let scanned = self.range(con, partition, &after, "+", Some(max)).await?;
        let Some(last) = scanned.last().map(|e| e.id.clone()) else {
            return Ok(Next::Empty);
        };
        let entries: Vec<StreamEntry> = scanned.into_iter().filter(|e| takes(e)).collect();
        let id = format!("msg_{:032x}", rand::random::<u128>());
        let recorded: i64 = self
            .record
            .key(self.key(partition, "lease"))
            .key(self.key(partition, "batches"))
            .arg(&self.holder)
            .arg(endpoint)
            .arg(&id)
            .arg(&last)
            .invoke_async(con)
            .await?;
        Ok(match recorded {
            1 => Next::Batch(StreamBatch { id, last, entries }),
            _ => Next::LeaseLost,
        })
    }

    /// The batch was delivered or given up on; false when another node took the lease meanwhile
    /// (it resends the batch under the same id).
    pub async fn done(
        &self,
        con: &mut RedisConnection,
        partition: u32,
        endpoint: &str,
        batch: &StreamBatch,
    ) -> Result<bool, RedisError> {
        let moved: i64 = self
            .done
            .key(self.key(partition, "lease"))
            .key(self.key(partition, "batches"))
            .key(self.key(partition, "cursors"))
            .arg(&self.holder)
            .arg(endpoint)
            .arg(&batch.last)
            .arg(&batch.id)
            .invoke_async(con)
            .await?;
        Ok(moved == 1)
    }

    /// Drops the partition's entries that every endpoint in `endpoints` has delivered.
    pub async fn trim(
        &self,
        con: &mut RedisConnection,
        partition: u32,
        endpoints: &[&str],
    ) -> Result<u64, RedisError> {
        let mut invocation = self.trim.key(self.key(partition, "cursors"));
        invocation.key(self.key(partition, "events"));
        for endpoint in endpoints {
            invocation.arg(*endpoint);
        }
        invocation.invoke_async(con).await
    }

    async fn range(
        &self,
        con: &mut RedisConnection,
        partition: u32,
        from: &str,
        to: &str,
        count: Option<usize>,
    ) -> Result<Vec<StreamEntry>, RedisError> {
        let mut command = ::redis::cmd("XRANGE");
        command.arg(self.key(partition, "events")).arg(from).arg(to);
        if let Some(count) = count {
            command.arg("COUNT").arg(count);
        }
        let entries: Vec<(String, Vec<String>)> = command.query_async(con).await?;
        Ok(entries
            .into_iter()
            .map(|(id, flat)| StreamEntry {
                id,
                fields: flat
                    .chunks(2)
                    .filter_map(|pair| match pair {
                        [name, value] => Some((name.clone(), value.clone())),
                        _ => None,
                    })
                    .collect(),
            })
            .collect())
    }
}

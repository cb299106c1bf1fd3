//! Byte budgets of the webhook queues and the overflow policy that keeps receivers consistent.
//!
//! An event counts its serialized JSON length once per endpoint queue that holds it, from the
//! moment it is submitted until it is delivered or given up on. Each app has `max_bytes`; the
//! process has `max_total_bytes` over every app. When a budget is exhausted:
//! - an opening event (`channel_occupied`, `member_added`) is dropped, and its closing partner
//!   is suppressed when it comes, so a receiver never sees half a pair;
//! - a closing event whose opener was admitted is always admitted, over the budget if need be:
//!   dropping it would leave a ghost channel or member at the receiver. The overdraw is bounded
//!   by the channels and members that are live, which the server holds in memory anyway;
//! - any other event (`client_event`, `cache_miss`, `subscription_count`) is dropped.
//!
//! Every drop is counted per app and logged.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::event::{PairKey, PairRole, WebhookEvent};
use crate::metrics::{AppMetrics, WebhookQueueGauges};

/// The process-wide budget, shared by every app.
pub struct ProcessBudget {
    bytes: AtomicU64,
    max: u64,
}

impl ProcessBudget {
    /// A budget of `max` bytes over every app.
    pub fn new(max: usize) -> Arc<ProcessBudget> {
        Arc::new(ProcessBudget {
            bytes: AtomicU64::new(0),
            max: max as u64,
        })
    }

    fn try_add(&self, bytes: u64, force: bool) -> bool {
        let before = self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if !force && bytes > 0 && before + bytes > self.max {
            self.bytes.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn remove(&self, bytes: u64) {
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Whether the process holds at least 90% of its budget.
    pub fn nearly_full(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) >= self.max / 10 * 9
    }
}

/// What became of a submitted event.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Queued; its bytes are now counted.
    Admitted,
    /// Dropped because a budget was exhausted.
    Dropped,
    /// A closer whose opener was dropped: not sent, so the receiver never sees half a pair.
    Suppressed,
}

/// One app's budget and overflow state.
pub struct AppBudget {
    app_id: String,
    max: u64,
    process: Arc<ProcessBudget>,
    gauges: Arc<WebhookQueueGauges>,
    metrics: Arc<AppMetrics>,
    /// Pairs whose opener was dropped; their closer is suppressed.
    suppressed: Mutex<HashSet<PairKey>>,
    /// `suppressed.len()`, so the common path takes no lock.
    suppressed_len: AtomicUsize,
}

impl AppBudget {
    /// The budget of one app.
    pub fn new(
        app_id: &str,
        max: usize,
        process: Arc<ProcessBudget>,
        gauges: Arc<WebhookQueueGauges>,
        metrics: Arc<AppMetrics>,
    ) -> AppBudget {
        AppBudget {
            app_id: app_id.to_owned(),
            max: max as u64,
            process,
            gauges,
            metrics,
            suppressed: Mutex::new(HashSet::new()),
            suppressed_len: AtomicUsize::new(0),
        }
    }

    /// The app's queue gauges.
    pub fn gauges(&self) -> &Arc<WebhookQueueGauges> {
        &self.gauges
    }

    /// Counts `copies` copies of an event of `bytes` bytes, or refuses it under the policy above.
    pub fn admit(&self, event: &WebhookEvent, bytes: usize, copies: usize) -> Admission {
        let total = (bytes * copies) as u64;
        let pair = event.pair();
        let admission = match &pair {
            Some((key, PairRole::Closes)) => {
                if self.take_suppressed(key) {
                    Admission::Suppressed
                } else {
                    self.add(copies, total, true);
                    Admission::Admitted
                }
            }
            _ if self.add(copies, total, false) => Admission::Admitted,
            Some((key, PairRole::Opens)) => {
                let mut suppressed = self.suppressed.lock().unwrap_or_else(|e| e.into_inner());
                suppressed.insert(key.clone());
                self.suppressed_len
                    .store(suppressed.len(), Ordering::Relaxed);
                Admission::Dropped
            }
            None => Admission::Dropped,
        };
        if admission != Admission::Admitted {
            self.gauges.record_drop(admission == Admission::Suppressed);
            self.metrics.webhook_dropped();
            tracing::warn!(
                app = %self.app_id,
                event = event.kind().name(),
                channel = event.channel(),
                queued_bytes = self.gauges.bytes(),
                outcome = ?admission,
                "webhook event dropped: the webhook queue budget (webhooks.queue.max_bytes / max_total_bytes) is exhausted"
            );
        }
        admission
    }

    fn take_suppressed(&self, key: &PairKey) -> bool {
        if self.suppressed_len.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let mut suppressed = self.suppressed.lock().unwrap_or_else(|e| e.into_inner());
        let found = suppressed.remove(key);
        self.suppressed_len
            .store(suppressed.len(), Ordering::Relaxed);
        found
    }

    fn add(&self, copies: usize, bytes: u64, force: bool) -> bool {
        if !self.process.try_add(bytes, force) {
            return false;
        }
        if !self.gauges.try_add(copies as u64, bytes, self.max, force) {
            self.process.remove(bytes);
            return false;
        }
        true
    }

    /// Returns the bytes of `events` events that were delivered, given up on or cancelled.
    pub fn release(&self, events: usize, bytes: usize) {
        self.gauges.remove(events as u64, bytes as u64);
        self.process.remove(bytes as u64);
    }

    /// Whether the app's queues hold at least 90% of their budget or the process is nearly full.
    pub fn nearly_full(&self) -> bool {
        self.gauges.bytes() >= self.max / 10 * 9 || self.process.nearly_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(max: usize, total: usize) -> AppBudget {
        let metrics = crate::metrics::Metrics::new("t_", ["a"]);
        let gauges = metrics.register_webhook_queue("a", 1);
        AppBudget::new(
            "a",
            max,
            ProcessBudget::new(total),
            gauges,
            metrics.app("a"),
        )
    }

    fn occupied(c: &str) -> WebhookEvent {
        WebhookEvent::ChannelOccupied { channel: c.into() }
    }
    fn vacated(c: &str) -> WebhookEvent {
        WebhookEvent::ChannelVacated { channel: c.into() }
    }

    #[test]
    fn a_dropped_opener_suppresses_its_closer_only() {
        let b = budget(100, 1000);
        assert_eq!(b.admit(&occupied("a"), 60, 1), Admission::Admitted);
        assert_eq!(b.admit(&occupied("b"), 60, 1), Admission::Dropped);
        assert_eq!(b.admit(&vacated("b"), 60, 1), Admission::Suppressed);
        // The closer of an admitted opener goes in over the budget.
        assert_eq!(b.admit(&vacated("a"), 60, 1), Admission::Admitted);
        let reading = b.gauges().read();
        assert_eq!((reading.events, reading.bytes), (2, 120));
        assert_eq!((reading.dropped, reading.suppressed), (1, 1));
        b.release(2, 120);
        assert_eq!(b.admit(&occupied("b"), 60, 1), Admission::Admitted);
        assert_eq!(b.admit(&vacated("b"), 60, 1), Admission::Admitted);
    }

    #[test]
    fn the_process_budget_binds_every_app() {
        let b = budget(1000, 100);
        let cache_miss = WebhookEvent::CacheMiss {
            channel: "cache-x".into(),
        };
        assert_eq!(b.admit(&cache_miss, 40, 2), Admission::Admitted);
        assert_eq!(b.admit(&cache_miss, 40, 1), Admission::Dropped);
        assert_eq!(
            b.gauges().read().bytes,
            80,
            "a refused event leaves nothing counted"
        );
    }
}

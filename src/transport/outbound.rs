//! A connection's outbound queue: bounded in bytes, shared frames, one close request.
//!
//! Producers (fan-out, REST handlers, the socket's own handlers) push without blocking; the
//! connection task drains everything queued at once and flushes once. A push that would exceed
//! the byte bound marks the queue overflowed instead: the connection closes with 4100 and no
//! producer ever waits on a slow consumer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;

use crate::protocol::codes::SocketError;

/// A cheap-clone handle to a connection's queue, as stored in channel registries.
pub type Outbound = Arc<OutboundQueue>;

/// What the connection task takes from the queue.
pub enum Drained {
    /// Frames to write, in order.
    Frames,
    /// Write nothing more: close with this error.
    Close(SocketError),
}

struct Inner {
    frames: VecDeque<Utf8Bytes>,
    bytes: usize,
    close: Option<SocketError>,
}

/// The outbound queue of one connection.
pub struct OutboundQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    limit_bytes: usize,
}

impl OutboundQueue {
    /// An empty queue holding at most `limit_bytes` of unsent frames.
    pub fn new(limit_bytes: usize) -> Outbound {
        Arc::new(OutboundQueue {
            inner: Mutex::new(Inner {
                frames: VecDeque::new(),
                bytes: 0,
                close: None,
            }),
            notify: Notify::new(),
            limit_bytes,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the queue inconsistent: keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame; false when the queue is closing or just overflowed.
    pub fn push(&self, frame: Utf8Bytes) -> bool {
        let mut inner = self.lock();
        if inner.close.is_some() {
            return false;
        }
        if inner.bytes + frame.len() > self.limit_bytes {
            inner.close = Some(SocketError::OverCapacity);
            inner.frames.clear();
            inner.bytes = 0;
            drop(inner);
            self.notify.notify_one();
            return false;
        }
        inner.bytes += frame.len();
        inner.frames.push_back(frame);
        drop(inner);
        self.notify.notify_one();
        true
    }

    /// Asks the connection to close after the frames already queued.
    pub fn close(&self, error: SocketError) {
        let mut inner = self.lock();
        if inner.close.is_none() {
            inner.close = Some(error);
        }
        drop(inner);
        self.notify.notify_one();
    }

    /// Wakes the connection again if frames or a close request are still waiting.
    pub fn rearm(&self) {
        let inner = self.lock();
        let waiting = !inner.frames.is_empty() || inner.close.is_some();
        drop(inner);
        if waiting {
            self.notify.notify_one();
        }
    }

    /// Waits until something was pushed or a close was requested.
    pub async fn ready(&self) {
        self.notify.notified().await
    }

    /// Moves every queued frame into `out` (swapping buffers, so no allocation in steady state).
    ///
    /// Returns `Close` once the frames queued before the close request are drained.
    pub fn drain(&self, out: &mut VecDeque<Utf8Bytes>) -> Drained {
        let mut inner = self.lock();
        std::mem::swap(&mut inner.frames, out);
        inner.bytes = 0;
        match (&inner.close, out.is_empty()) {
            (Some(SocketError::OverCapacity), _) => {
                out.clear();
                Drained::Close(SocketError::OverCapacity)
            }
            (Some(error), true) => Drained::Close(error.clone()),
            _ => Drained::Frames,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_turns_into_over_capacity() {
        let q = OutboundQueue::new(10);
        assert!(q.push(Utf8Bytes::from("12345")));
        assert!(q.push(Utf8Bytes::from("12345")));
        assert!(!q.push(Utf8Bytes::from("1")));
        let mut out = VecDeque::new();
        assert!(matches!(
            q.drain(&mut out),
            Drained::Close(SocketError::OverCapacity)
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn close_waits_for_queued_frames() {
        let q = OutboundQueue::new(100);
        q.push(Utf8Bytes::from("a"));
        q.close(SocketError::ServerShutdown);
        assert!(!q.push(Utf8Bytes::from("b")));
        let mut out = VecDeque::new();
        assert!(matches!(q.drain(&mut out), Drained::Frames));
        assert_eq!(out.len(), 1);
        out.clear();
        assert!(matches!(
            q.drain(&mut out),
            Drained::Close(SocketError::ServerShutdown)
        ));
    }
}

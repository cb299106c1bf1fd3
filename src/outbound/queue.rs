//! A connection's outbound side: the socket's write half, a byte-bounded queue, one close request.
//!
//! A producer (fan-out, a REST handler, the socket's own handlers) writes a frame straight to the
//! socket when nothing is queued before it: one non-blocking `write`, no task wake-up, no copy.
//! What the socket cannot take at once is queued, and the connection task writes it when the
//! socket drains. A push that would exceed a bound (bytes, and frames when Sockudo's
//! `websocket.max_messages` sets one) marks the queue overflowed instead: the connection closes
//! with 4100 and no producer ever waits on a slow consumer. With `drop_when_full` (Sockudo's
//! `disconnect_on_buffer_full: false`) the frame that does not fit is dropped instead, counted,
//! and the socket stays. Every write happens
//! under the queue's lock, so frames reach the wire whole and in the order they were pushed.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, Bytes};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::link::Link;
use super::wire::WireFrame;
use crate::config::OutboundLimits;
use crate::protocol::codes::SocketError;

/// A cheap-clone handle to a connection's outbound side, as stored in channel registries.
pub type Outbound = Arc<OutboundQueue>;

/// Frames written per vectored write when the connection task drains its queue.
const WRITE_BATCH: usize = 64;

/// What the connection task found when it flushed the queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything queued is on the wire; nothing else is asked.
    Idle,
    /// The socket cannot take more now: wait until it is writable, then flush again.
    Blocked,
    /// Write nothing more: close with this error.
    Close(SocketError),
    /// The socket failed; the connection is gone.
    Broken,
}

struct State {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// The first queued frame is partly written: it must be finished before anything else.
    front_started: bool,
    close: Option<SocketError>,
    /// A write failed: the peer is gone.
    broken: bool,
    /// The connection ended: nobody writes any more.
    shut: bool,
    /// Frames dropped because the queue was full (with `drop_when_full`).
    dropped: u64,
    /// Plain, or the TLS session every byte goes through.
    link: Link,
    /// The TLS `close_notify` went out after the last frames.
    close_notified: bool,
}

/// The outbound side of one connection.
pub struct OutboundQueue {
    state: Mutex<State>,
    notify: Notify,
    limits: OutboundLimits,
    socket: TcpStream,
    /// The socket negotiated `permessage-deflate`: frames that may be go compressed.
    deflate: bool,
}

impl OutboundQueue {
    /// The outbound side of `socket` (through `link`), holding at most what `limits` allow of
    /// unsent frames; `deflate` when it negotiated `permessage-deflate`.
    pub fn new(socket: TcpStream, link: Link, limits: OutboundLimits, deflate: bool) -> Outbound {
        Arc::new(OutboundQueue {
            state: Mutex::new(State {
                frames: VecDeque::new(),
                bytes: 0,
                front_started: false,
                close: None,
                broken: false,
                shut: false,
                dropped: 0,
                link,
                close_notified: false,
            }),
            notify: Notify::new(),
            limits,
            socket,
            deflate,
        })
    }

    /// The socket, for the connection task's reads and readiness waits.
    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a frame, writing it at once when nothing is queued before it; false when the
    /// connection is closing or just overflowed.
    pub fn push(&self, frame: &WireFrame) -> bool {
        self.push_inner(frame, true)
    }

    /// Queues a frame for the connection task without writing: for callers holding a channel
    /// lock, which must not spend a system call per subscriber under it.
    pub fn push_queued(&self, frame: &WireFrame) -> bool {
        self.push_inner(frame, false)
    }

    fn push_inner(&self, frame: &WireFrame, write_now: bool) -> bool {
        // Compressed (once for every socket) before the lock, which guards writes only.
        let bytes = frame.bytes_for(self.deflate);
        let mut state = self.lock();
        if state.close.is_some() || state.shut || state.broken {
            return false;
        }
        let mut written = 0;
        if write_now && state.frames.is_empty() && !state.link.pending() {
            let frame_slice = [IoSlice::new(bytes)];
            match state.link.write(&self.socket, &frame_slice) {
                Ok(n) if n == bytes.len() => {
                    if state.link.pending() {
                        // Ciphertext the socket did not take: the connection task sends it.
                        drop(state);
                        self.notify.notify_one();
                    }
                    return true;
                }
                Ok(n) => written = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    state.broken = true;
                    drop(state);
                    self.notify.notify_one();
                    return false;
                }
            }
        }
        self.queue(state, bytes.slice(written..), written > 0)
    }

    /// Queues what the socket did not take at once (`started`: part of the frame is on the
    /// wire already); false when it did not fit.
    fn queue(&self, mut state: MutexGuard<'_, State>, rest: Bytes, started: bool) -> bool {
        // Queue first: a frame already partly on the wire must be finished even if it overflows.
        state.front_started |= started;
        state.bytes += rest.len();
        state.frames.push_back(rest);
        let full = state.bytes > self.limits.bytes
            || (self.limits.frames).is_some_and(|max| state.frames.len() > max);
        if full && self.limits.drop_when_full && !started {
            // Never on the wire: taken back whole, the stream stays valid.
            let dropped = state.frames.pop_back().expect("just queued");
            state.bytes -= dropped.len();
            state.dropped += 1;
            return false;
        }
        let overflowed = full && !self.limits.drop_when_full;
        if overflowed {
            state.overflow();
        }
        drop(state);
        self.notify.notify_one();
        !overflowed
    }

    /// Asks the connection to close after the frames already queued.
    pub fn close(&self, error: SocketError) {
        let mut state = self.lock();
        if state.close.is_none() {
            state.close = Some(error);
        }
        drop(state);
        self.notify.notify_one();
    }

    /// Ends all writing by producers and queues the connection's last frames (an error, a
    /// close), which the connection task then writes with [`OutboundQueue::flush`].
    ///
    /// A frame left half-written by an overflow is finished first, so the stream stays valid.
    pub fn shut(&self, last: &[WireFrame]) {
        let mut state = self.lock();
        state.shut = true;
        for frame in last {
            state.bytes += frame.len();
            state.frames.push_back(frame.bytes().clone());
        }
    }

    /// Frames dropped because the queue was full (only with `drop_when_full`).
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Waits until something was queued, a close was requested or a write failed.
    pub async fn ready(&self) {
        self.notify.notified().await
    }

    /// Writes as much of the queue as the socket takes now; called by the connection task.
    pub fn flush(&self) -> Flushed {
        let mut state = self.lock();
        loop {
            if state.broken {
                return Flushed::Broken;
            }
            // Past the bound: what is queued is dropped, unless the final frames are going out.
            let overflowed = matches!(state.close, Some(SocketError::OverCapacity));
            if overflowed && !state.shut {
                return Flushed::Close(SocketError::OverCapacity);
            }
            if state.frames.is_empty() {
                if state.shut && !state.close_notified {
                    // After the last frames (a close frame), TLS says it is done too.
                    state.link.close_notify();
                    state.close_notified = true;
                }
                match state.link.drain(&self.socket) {
                    Ok(true) => {}
                    Ok(false) => return Flushed::Blocked,
                    Err(_) => {
                        state.broken = true;
                        continue;
                    }
                }
                return match &state.close {
                    Some(error) => Flushed::Close(error.clone()),
                    None => Flushed::Idle,
                };
            }
            let written = {
                let State { frames, link, .. } = &mut *state;
                let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
                let count = frames.len().min(WRITE_BATCH);
                for (slice, frame) in slices.iter_mut().zip(frames.iter()) {
                    *slice = IoSlice::new(frame);
                }
                link.write(&self.socket, &slices[..count])
            };
            match written {
                Ok(n) => state.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flushed::Blocked,
                Err(_) => state.broken = true,
            }
        }
    }

    /// Reads what the peer sent (decrypted, through TLS); called by the connection task.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut state = self.lock();
        let read = state.link.read(&self.socket, buf);
        if state.link.pending() {
            // The session has something to say (an alert, a key update): the task sends it.
            drop(state);
            self.notify.notify_one();
        }
        read
    }
}

impl State {
    /// Drops everything not yet started and asks for a 4100 close.
    fn overflow(&mut self) {
        let keep = usize::from(self.front_started);
        self.frames.truncate(keep);
        self.bytes = self.frames.iter().map(Bytes::len).sum();
        self.close = Some(SocketError::OverCapacity);
    }

    /// Forgets the first `written` bytes of the queue.
    fn consume(&mut self, mut written: usize) {
        self.bytes -= written;
        while written > 0 {
            let front = self.frames.front_mut().expect("wrote more than was queued");
            if written < front.len() {
                front.advance(written);
                self.front_started = true;
                return;
            }
            written -= front.len();
            self.frames.pop_front();
            self.front_started = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpSocket};

    /// Limits of `bytes` and nothing else, closing when full.
    fn bytes_only(bytes: usize) -> OutboundLimits {
        OutboundLimits {
            bytes,
            frames: None,
            drop_when_full: false,
        }
    }

    /// A connected loopback pair: the server side (ours) and the peer.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        ours.writable().await.unwrap();
        (ours, peer)
    }

    /// Reads `len` bytes, failing the test after 5 s rather than hanging.
    async fn read_exactly(peer: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        tokio::time::timeout(std::time::Duration::from_secs(5), peer.read_exact(&mut buf))
            .await
            .expect("every byte within 5 s")
            .unwrap();
        buf
    }

    #[tokio::test]
    async fn an_idle_socket_is_written_at_once() {
        let (ours, mut peer) = pair().await;
        let q = OutboundQueue::new(ours, Link::Plain, bytes_only(1024), false);
        let frame = WireFrame::text("hello");
        assert!(q.push(&frame));
        assert_eq!(read_exactly(&mut peer, frame.len()).await, frame.as_ref());
        assert_eq!(q.flush(), Flushed::Idle);
    }

    #[tokio::test]
    async fn queued_frames_go_out_in_order_on_flush() {
        let (ours, mut peer) = pair().await;
        let q = OutboundQueue::new(ours, Link::Plain, bytes_only(1024), false);
        let (a, b) = (WireFrame::text("a"), WireFrame::text("b"));
        assert!(q.push_queued(&a));
        // Something is queued, so this one must wait behind it rather than overtake it.
        assert!(q.push(&b));
        assert_eq!(q.flush(), Flushed::Idle);
        let expected = [a.as_ref(), b.as_ref()].concat();
        assert_eq!(read_exactly(&mut peer, expected.len()).await, expected);
    }

    /// A pair whose peer takes little at a time, so large frames are written in parts.
    async fn narrow_pair() -> (TcpStream, TcpStream) {
        // Accepted sockets inherit the listener's send buffer size.
        let listening = TcpSocket::new_v4().unwrap();
        listening.set_send_buffer_size(4096).unwrap();
        listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listening.listen(16).unwrap();
        let connecting = TcpSocket::new_v4().unwrap();
        connecting.set_recv_buffer_size(4096).unwrap();
        let peer = connecting
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        ours.writable().await.unwrap();
        (ours, peer)
    }

    /// Flushes until the queue is empty (the peer reads meanwhile); returns the last result.
    async fn flush_all(q: &OutboundQueue) -> Flushed {
        let flushing = async {
            loop {
                match q.flush() {
                    Flushed::Blocked => q.socket().writable().await.unwrap(),
                    done => return done,
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), flushing)
            .await
            .expect("flushed within 5 s")
    }

    #[tokio::test]
    async fn a_frame_too_big_for_the_socket_is_finished_by_flush() {
        let (ours, mut peer) = narrow_pair().await;
        let q = OutboundQueue::new(ours, Link::Plain, bytes_only(4 << 20), false);
        let frame = WireFrame::text(&"z".repeat(1 << 20));
        assert!(q.push(&frame));
        assert_eq!(
            q.flush(),
            Flushed::Blocked,
            "the socket took only part of it"
        );
        let expected = frame.as_ref().to_vec();
        let reader = tokio::spawn(async move { read_exactly(&mut peer, expected.len()).await });
        assert_eq!(flush_all(&q).await, Flushed::Idle);
        assert_eq!(reader.await.unwrap(), frame.as_ref());
    }

    #[tokio::test]
    async fn an_overflow_still_finishes_the_frame_already_started() {
        let (ours, mut peer) = narrow_pair().await;
        let q = OutboundQueue::new(ours, Link::Plain, bytes_only(64 * 1024), false);
        // Bigger than the bound: part goes out at once, the rest overflows the queue.
        let frame = WireFrame::text(&"z".repeat(1 << 20));
        assert!(!q.push(&frame));
        assert_eq!(q.flush(), Flushed::Close(SocketError::OverCapacity));
        let last = WireFrame::close(4100, "over capacity");
        q.shut(std::slice::from_ref(&last));
        let expected = [frame.as_ref(), last.as_ref()].concat();
        let reader = tokio::spawn(async move { read_exactly(&mut peer, expected.len()).await });
        flush_all(&q).await;
        assert_eq!(
            reader.await.unwrap(),
            [frame.as_ref(), last.as_ref()].concat(),
            "the started frame is completed before the close frame"
        );
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_overflows_into_over_capacity() {
        let (ours, _peer) = pair().await;
        let q = OutboundQueue::new(ours, Link::Plain, bytes_only(64 * 1024), false);
        let frame = WireFrame::text(&"x".repeat(16 * 1024));
        // The kernel buffers take some frames; then the queue fills up and overflows.
        let mut pushes = 0;
        while q.push(&frame) {
            pushes += 1;
            assert!(pushes < 100_000, "never overflowed");
        }
        assert!(!q.push(&frame));
        assert_eq!(q.flush(), Flushed::Close(SocketError::OverCapacity));
    }

    #[tokio::test]
    async fn with_drop_when_full_a_frame_past_a_bound_is_dropped_and_the_socket_stays() {
        let (ours, mut peer) = pair().await;
        let limits = OutboundLimits {
            bytes: 1 << 20,
            frames: Some(2),
            drop_when_full: true,
        };
        let q = OutboundQueue::new(ours, Link::Plain, limits, false);
        let frames = [
            WireFrame::text("a"),
            WireFrame::text("b"),
            WireFrame::text("c"),
        ];
        for frame in &frames[..2] {
            assert!(q.push_queued(frame));
        }
        assert!(
            !q.push_queued(&frames[2]),
            "a third frame is over max_messages"
        );
        assert_eq!(q.dropped(), 1);
        assert_eq!(q.flush(), Flushed::Idle, "no close: the socket stays");
        let expected = [frames[0].as_ref(), frames[1].as_ref()].concat();
        assert_eq!(read_exactly(&mut peer, expected.len()).await, expected);
        assert!(q.push(&frames[2]), "room again once the queue drained");
    }

    #[tokio::test]
    async fn close_waits_for_queued_frames() {
        let (ours, mut peer) = pair().await;
        let q = OutboundQueue::new(ours, Link::Plain, bytes_only(1024), false);
        let a = WireFrame::text("a");
        q.push_queued(&a);
        q.close(SocketError::ServerShutdown);
        assert!(!q.push(&WireFrame::text("b")));
        assert_eq!(q.flush(), Flushed::Close(SocketError::ServerShutdown));
        assert_eq!(read_exactly(&mut peer, a.len()).await, a.as_ref());
        let last = WireFrame::close(4200, "bye");
        q.shut(std::slice::from_ref(&last));
        assert!(
            !q.push(&a),
            "nobody writes after shut but the connection task"
        );
        assert_eq!(q.flush(), Flushed::Close(SocketError::ServerShutdown));
        assert_eq!(read_exactly(&mut peer, last.len()).await, last.as_ref());
    }

    #[test]
    fn consume_tracks_a_half_written_frame() {
        let mut state = State {
            frames: VecDeque::from([Bytes::from_static(b"abc"), Bytes::from_static(b"de")]),
            bytes: 5,
            front_started: false,
            close: None,
            broken: false,
            dropped: 0,
            link: Link::Plain,
            close_notified: false,
            shut: false,
        };
        state.consume(4);
        assert_eq!(state.frames, VecDeque::from([Bytes::from_static(b"e")]));
        assert!(state.front_started);
        state.overflow();
        assert_eq!(
            state.frames.len(),
            1,
            "the started frame is kept to finish it"
        );
        assert_eq!(state.bytes, 1);
        state.consume(1);
        assert!(state.frames.is_empty() && !state.front_started && state.bytes == 0);
    }
}

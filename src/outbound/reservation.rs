//! A reply's place in a socket's stream, fixed before its content is known.
//!
//! The cluster stage carries out a subscription in the channel's line, possibly on another
//! thread and after the socket has sent more; the socket's own later frames (a `pusher:pong`,
//! the next reply) must still follow its `subscription_succeeded`. The socket reserves the place
//! when it subscribes; the stage fills it.

use super::queue::Outbound;
use super::wire::WireFrame;

/// A reserved place in one socket's outbound stream; released empty if dropped unfilled.
pub struct Reservation {
    outbound: Outbound,
    id: Option<u64>,
}

impl Reservation {
    /// Reserves the next place in `outbound`'s stream (nothing, if it is closing).
    pub fn new(outbound: &Outbound) -> Reservation {
        Reservation {
            id: outbound.reserve(),
            outbound: outbound.clone(),
        }
    }

    /// The socket the place belongs to.
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// Puts `frames` in the reserved place; what was pushed after it follows them.
    pub fn fill(mut self, frames: &[WireFrame]) {
        if let Some(id) = self.id.take() {
            self.outbound.fill(id, frames);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.outbound.fill(id, &[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::OutboundQueue;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn queue() -> (Outbound, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        ours.writable().await.unwrap();
        (OutboundQueue::new(ours, 1024), peer)
    }

    async fn read(peer: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        tokio::time::timeout(std::time::Duration::from_secs(5), peer.read_exact(&mut buf))
            .await
            .expect("in time")
            .unwrap();
        buf
    }

    #[tokio::test]
    async fn later_frames_wait_behind_the_reserved_reply() {
        let (q, mut peer) = queue().await;
        let (first, second) = (Reservation::new(&q), Reservation::new(&q));
        let (a, b, c) = (
            WireFrame::text("a"),
            WireFrame::text("b"),
            WireFrame::text("c"),
        );
        assert!(q.push(&c), "queued behind the reservations");
        second.fill(std::slice::from_ref(&b));
        first.fill(std::slice::from_ref(&a));
        let expected = [a.as_ref(), b.as_ref(), c.as_ref()].concat();
        assert_eq!(read(&mut peer, expected.len()).await, expected);
    }

    #[tokio::test]
    async fn a_dropped_reservation_releases_what_waits() {
        let (q, mut peer) = queue().await;
        let unfilled = Reservation::new(&q);
        let frame = WireFrame::text("after");
        assert!(q.push(&frame));
        drop(unfilled);
        assert_eq!(read(&mut peer, frame.len()).await, frame.as_ref());
    }
}
